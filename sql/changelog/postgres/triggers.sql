-- legacy-bridge change-log trigger for one table, PostgreSQL (11 or later).
--
-- A template: `legacy-bridge changelog ddl` fills in the {{placeholders}} and prints or
-- applies the result. A line `-- statement: <what>` starts a statement; other comment lines
-- are documentation and never sent. Placeholders (identifiers come out quoted):
--   {{schema_prefix}}     "schema". when the source names a schema, else empty
--   {{table}}             the captured table, as the catalog spells it (lower case when it
--                         was created unquoted)
--   {{table_literal}}     its name as an SQL string literal: the TABLE_NAME value
--   {{log_table}}         the log table (see log_table.sql)
--   {{function}}          the trigger function, {{trigger}} the trigger
--   {{dollar_quote}}      a dollar-quote tag ($lb$) that occurs nowhere in the names
--   {{key_columns}}       "KEY_1", "KEY_2", ... one per key column
--   {{new_key_values}}    NEW's key columns as text, in key order: CAST(... AS text), and
--                         rpad(CAST(... AS text), n) for CHAR(n), whose cast to text
--                         would drop the padding PostgreSQL returns when reading
--   {{old_key_values}}    the same for OLD
--   {{key_changed}}       true when any key column IS DISTINCT FROM its old value
--
-- An UPDATE logs the new key and, when the key changed, the old key first, so capture sees
-- the old key gone.
-- SECURITY DEFINER: the function writes with its owner's rights, so the legacy
-- application's user needs no grant on the log table (a trigger function cannot be called
-- directly, so it lends those rights to nothing else). SET search_path FROM CURRENT pins the
-- search path of the installing session, so the unqualified log table is found whatever
-- search path the writing session has.
-- The trigger is dropped and re-created inside one DO block: one statement, hence one
-- transaction, so no write slips through between drop and create.

-- statement: function {{function}}
CREATE OR REPLACE FUNCTION {{schema_prefix}}{{function}}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
AS {{dollar_quote}}
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
        VALUES ({{table_literal}}, 'I', {{new_key_values}});
    ELSIF TG_OP = 'UPDATE' THEN
        IF {{key_changed}} THEN
            INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
            VALUES ({{table_literal}}, 'U', {{old_key_values}});
        END IF;
        INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
        VALUES ({{table_literal}}, 'U', {{new_key_values}});
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{OP}}, {{key_columns}})
        VALUES ({{table_literal}}, 'D', {{old_key_values}});
    END IF;
    RETURN NULL;
END
{{dollar_quote}};

-- statement: trigger {{trigger}} after insert, update, delete on {{table}}
DO {{dollar_quote}}
BEGIN
    DROP TRIGGER IF EXISTS {{trigger}} ON {{schema_prefix}}{{table}};
    CREATE TRIGGER {{trigger}}
        AFTER INSERT OR UPDATE OR DELETE ON {{schema_prefix}}{{table}}
        FOR EACH ROW EXECUTE FUNCTION {{schema_prefix}}{{function}}();
END
{{dollar_quote}};
