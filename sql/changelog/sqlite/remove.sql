-- Removing legacy-bridge's change log from one table, SQLite 3 (placeholders as in
-- triggers.sql). Printed, commented out, at the end of the generated script.

-- statement: drop trigger {{trigger_insert}}
DROP TRIGGER IF EXISTS {{schema_prefix}}{{trigger_insert}};

-- statement: drop trigger {{trigger_update}}
DROP TRIGGER IF EXISTS {{schema_prefix}}{{trigger_update}};

-- statement: drop trigger {{trigger_delete}}
DROP TRIGGER IF EXISTS {{schema_prefix}}{{trigger_delete}};

-- statement: drop the log table {{log_table}} (only once no table's triggers write to it)
DROP TABLE IF EXISTS {{schema_prefix}}{{log_table}};
