-- legacy-bridge change-log table, MariaDB (10.2.3 or later).
--
-- A template: `legacy-bridge changelog ddl` fills in the {{placeholders}} and prints or
-- applies the result. A line `-- statement: <what>` starts a statement; other comment lines
-- are documentation and never sent. Placeholders (all identifiers come out quoted):
--   {{schema_prefix}}   `schema`. when the source names a schema, else empty
--   {{log_table}}       the log table, `capture.changelog_table` (default LB_CHANGELOG)
--   {{log_index}}       its index on (TABLE_NAME, CHANGE_ID), read and prune path
--   {{CHANGE_ID}} {{TABLE_NAME}} {{OP}} {{KEY_1}}..{{KEY_4}} {{CHANGED_AT}}  its columns
--
-- InnoDB, so a log row commits or rolls back with the change that wrote it. utf8mb4_bin:
-- TABLE_NAME compares exactly (table names are case-sensitive on Linux). CHANGED_AT is the
-- writing session's local time (DATETIME: no year-2038 limit that could fail a write).

-- statement: log table {{log_table}}
CREATE TABLE IF NOT EXISTS {{schema_prefix}}{{log_table}} (
    {{CHANGE_ID}}  BIGINT NOT NULL AUTO_INCREMENT,
    {{TABLE_NAME}} VARCHAR(128) NOT NULL,
    {{OP}}         CHAR(1) NOT NULL,
    {{KEY_1}}      VARCHAR(255) NULL,
    {{KEY_2}}      VARCHAR(255) NULL,
    {{KEY_3}}      VARCHAR(255) NULL,
    {{KEY_4}}      VARCHAR(255) NULL,
    {{CHANGED_AT}} DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY ({{CHANGE_ID}}),
    INDEX {{log_index}} ({{TABLE_NAME}}, {{CHANGE_ID}})
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
