-- Removing legacy-bridge's change log from one table, PostgreSQL (placeholders as in
-- triggers.sql). Printed, commented out, at the end of the generated script.

-- statement: drop trigger {{trigger}}
DROP TRIGGER IF EXISTS {{trigger}} ON {{schema_prefix}}{{table}};

-- statement: drop function {{function}}
DROP FUNCTION IF EXISTS {{schema_prefix}}{{function}}();

-- statement: drop the log table {{log_table}} (only once no table's triggers write to it)
DROP TABLE IF EXISTS {{schema_prefix}}{{log_table}};
