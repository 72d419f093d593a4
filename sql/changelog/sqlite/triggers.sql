-- legacy-bridge change-log triggers for one table, SQLite 3.
--
-- A template: `legacy-bridge changelog ddl` fills in the {{placeholders}} and prints or
-- applies the result. A line `-- statement: <what>` starts a statement; other comment lines
-- are documentation and never sent. Placeholders (identifiers come out quoted):
--   {{schema_prefix}}     "schema". when the source names a schema, else empty
--   {{table}}             the captured table, as the catalog spells it
--   {{table_literal}}     its name as an SQL string literal: the TABLE_NAME value
--   {{log_table}}         the log table (see log_table.sql)
--   {{trigger_insert}} {{trigger_update}} {{trigger_delete}}  the three trigger names
--   {{key_columns}}       "KEY_1", "KEY_2", ... one per key column
--   {{new_key_values}}    CAST(NEW."<key column>" AS TEXT), ... in key order
--   {{old_key_values}}    the same for OLD
--   {{key_changed}}       true when any key column's value changed (compared bytewise)
--
-- Keys are logged as the column's text exactly as stored (CHAR padding included: SQLite
-- keeps what was written). An UPDATE logs the new key and, when the key changed, the old
-- key first, so capture sees the old key gone.
-- Re-running drops and re-creates the triggers, so a changed key definition takes effect.
-- Inside a trigger SQLite allows neither a schema on the target table nor a log table in
-- another database: the log table is the one in the captured table's schema.

-- statement: drop trigger {{trigger_insert}} if it exists
DROP TRIGGER IF EXISTS {{schema_prefix}}{{trigger_insert}};

-- statement: trigger {{trigger_insert}} after insert on {{table}}
CREATE TRIGGER {{schema_prefix}}{{trigger_insert}} AFTER INSERT ON {{table}} FOR EACH ROW
BEGIN
    INSERT INTO {{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    VALUES ({{table_literal}}, 'I', {{new_key_values}});
END;

-- statement: drop trigger {{trigger_update}} if it exists
DROP TRIGGER IF EXISTS {{schema_prefix}}{{trigger_update}};

-- statement: trigger {{trigger_update}} after update on {{table}}
CREATE TRIGGER {{schema_prefix}}{{trigger_update}} AFTER UPDATE ON {{table}} FOR EACH ROW
BEGIN
    INSERT INTO {{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    SELECT {{table_literal}}, 'U', {{old_key_values}}
    WHERE {{key_changed}};
    INSERT INTO {{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    VALUES ({{table_literal}}, 'U', {{new_key_values}});
END;

-- statement: drop trigger {{trigger_delete}} if it exists
DROP TRIGGER IF EXISTS {{schema_prefix}}{{trigger_delete}};

-- statement: trigger {{trigger_delete}} after delete on {{table}}
CREATE TRIGGER {{schema_prefix}}{{trigger_delete}} AFTER DELETE ON {{table}} FOR EACH ROW
BEGIN
    INSERT INTO {{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
    VALUES ({{table_literal}}, 'D', {{old_key_values}});
END;
