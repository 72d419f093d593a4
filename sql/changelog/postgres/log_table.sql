-- legacy-bridge change-log table, PostgreSQL (11 or later).
--
-- A template: `legacy-bridge changelog ddl` fills in the {{placeholders}} and prints or
-- applies the result. A line `-- statement: <what>` starts a statement; other comment lines
-- are documentation and never sent. Placeholders (all identifiers come out quoted):
--   {{schema_prefix}}   "schema". when the source names a schema, else empty
--   {{log_table}}       the log table, `capture.changelog_table` (default LB_CHANGELOG)
--   {{log_index}}       its index on (TABLE_NAME, CHANGE_ID), read and prune path
--   {{CHANGE_ID}} {{TABLE_NAME}} {{OP}} {{KEY_1}}..{{KEY_4}} {{CHANGED_AT}}  its columns
--
-- Names are quoted, so they keep their case: in psql write "LB_CHANGELOG", "CHANGE_ID".
-- An identity column needs no grant on a sequence; CHANGED_AT is the change's transaction
-- start time, with zone.

-- statement: log table {{log_table}}
CREATE TABLE IF NOT EXISTS {{schema_prefix}}{{log_table}} (
    {{CHANGE_ID}}  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    {{TABLE_NAME}} VARCHAR(128) NOT NULL,
    {{OP}}         CHAR(1) NOT NULL,
    {{KEY_1}}      VARCHAR(255) NULL,
    {{KEY_2}}      VARCHAR(255) NULL,
    {{KEY_3}}      VARCHAR(255) NULL,
    {{KEY_4}}      VARCHAR(255) NULL,
    {{CHANGED_AT}} TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- statement: index {{log_index}} on the log table
CREATE INDEX IF NOT EXISTS {{log_index}}
    ON {{schema_prefix}}{{log_table}} ({{TABLE_NAME}}, {{CHANGE_ID}});
