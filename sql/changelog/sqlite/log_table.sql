-- legacy-bridge change-log table, SQLite 3.
--
-- A template: `legacy-bridge changelog ddl` fills in the {{placeholders}} and prints or
-- applies the result. A line `-- statement: <what>` starts a statement; other comment lines
-- are documentation and never sent. Placeholders (all identifiers come out quoted):
--   {{schema_prefix}}   "schema". when the source names a schema, else empty
--   {{log_table}}       the log table, `capture.changelog_table` (default LB_CHANGELOG)
--   {{log_index}}       its index on (TABLE_NAME, CHANGE_ID), read and prune path
--   {{CHANGE_ID}} {{TABLE_NAME}} {{OP}} {{KEY_1}}..{{KEY_4}} {{CHANGED_AT}}  its columns
--
-- AUTOINCREMENT (not just INTEGER PRIMARY KEY): ids are never reused, even after pruning
-- has emptied the table. CHANGED_AT is UTC with milliseconds.
-- SQLite wants the schema on the created index, not on the table it indexes.

-- statement: log table {{log_table}}
CREATE TABLE IF NOT EXISTS {{schema_prefix}}{{log_table}} (
    {{CHANGE_ID}}  INTEGER PRIMARY KEY AUTOINCREMENT,
    {{TABLE_NAME}} VARCHAR(128) NOT NULL,
    {{OP}}         CHAR(1) NOT NULL,
    {{KEY_1}}      VARCHAR(255) NULL,
    {{KEY_2}}      VARCHAR(255) NULL,
    {{KEY_3}}      VARCHAR(255) NULL,
    {{KEY_4}}      VARCHAR(255) NULL,
    {{CHANGED_AT}} TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- statement: index {{log_index}} on the log table
CREATE INDEX IF NOT EXISTS {{schema_prefix}}{{log_index}}
    ON {{log_table}} ({{TABLE_NAME}}, {{CHANGE_ID}});
