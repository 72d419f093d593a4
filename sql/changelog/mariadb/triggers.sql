-- legacy-bridge change-log triggers for one table, MariaDB (10.2.3 or later: several
-- triggers per table and event, CREATE OR REPLACE TRIGGER).
--
-- A template: `legacy-bridge changelog ddl` fills in the {{placeholders}} and prints or
-- applies the result. A line `-- statement: <what>` starts a statement; other comment lines
-- are documentation and never sent. Placeholders (identifiers come out quoted):
--   {{schema_prefix}}     `schema`. when the source names a schema, else empty
--   {{table}}             the captured table, as the catalog spells it
--   {{table_literal}}     its name as an SQL string literal: the TABLE_NAME value
--   {{log_table}}         the log table (see log_table.sql)
--   {{trigger_insert}} {{trigger_update}} {{trigger_delete}}  the three trigger names
--   {{key_columns}}       `KEY_1`, `KEY_2`, ... one per key column
--   {{new_key_values}}    CAST(NEW.`<key column>` AS CHAR), ... in key order
--   {{old_key_values}}    the same for OLD
--   {{key_changed}}       true when any key column's value changed (compared as bytes,
--                         so a case-only change under a _ci collation counts too)
--
-- Keys are logged as MariaDB returns the column (CHAR values without trailing spaces).
-- An UPDATE logs the new key and, when the key changed, the old key first, so capture sees
-- the old key gone. Triggers run with their definer's rights: the legacy application's
-- user needs no privilege on the log table.
-- The bodies contain `;`: sent through an API each CREATE is one statement; the script
-- printed for the mariadb client wraps them in DELIMITER lines.

-- statement: trigger {{trigger_insert}} after insert on {{table}}
CREATE OR REPLACE TRIGGER {{schema_prefix}}{{trigger_insert}}
AFTER INSERT ON {{schema_prefix}}{{table}} FOR EACH ROW
BEGIN
    INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    VALUES ({{table_literal}}, 'I', {{new_key_values}});
END;

-- statement: trigger {{trigger_update}} after update on {{table}}
CREATE OR REPLACE TRIGGER {{schema_prefix}}{{trigger_update}}
AFTER UPDATE ON {{schema_prefix}}{{table}} FOR EACH ROW
BEGIN
    IF {{key_changed}} THEN
        INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
        VALUES ({{table_literal}}, 'U', {{old_key_values}});
    END IF;
    INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    VALUES ({{table_literal}}, 'U', {{new_key_values}});
END;

-- statement: trigger {{trigger_delete}} after delete on {{table}}
CREATE OR REPLACE TRIGGER {{schema_prefix}}{{trigger_delete}}
AFTER DELETE ON {{schema_prefix}}{{table}} FOR EACH ROW
BEGIN
    INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    VALUES ({{table_literal}}, 'D', {{old_key_values}});
END;
