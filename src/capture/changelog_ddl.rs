//! Change-log trigger DDL: for one resource, the statements that create the shared log table
//! ([`super::changelog_table`]) and the triggers that fill it, rendered from the per-dialect
//! templates in `sql/changelog/`. Pure: `changelog ddl` prints the result for a DBA or applies
//! it statement by statement.
//!
//! Every identifier is quoted by the dialect. The one literal, the captured table's name that
//! triggers write into `TABLE_NAME`, is validated and escaped; no other text is pasted in.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::changelog_table::{
    CHANGED_AT_COLUMN, ID_COLUMN, MAX_KEY_COLUMNS, OP_COLUMN, TABLE_COLUMN, key_column,
};
use crate::resource::Resource;
use crate::source::{Dialect, DialectKind, Relation, SqlType};

/// Width of the log's `KEY_n` columns: wider declared keys would fail the legacy system's
/// writes (or be cut), so they are refused up front.
pub const KEY_TEXT_WIDTH: usize = 255;
/// Width of the log's `TABLE_NAME` column.
pub const TABLE_NAME_WIDTH: usize = 128;
/// Longest name PostgreSQL keeps (NAMEDATALEN - 1 bytes; longer ones are silently cut) and
/// within MariaDB's 64 characters: generated names are shortened to fit, and a log table name
/// must fit as it is, since capture reads it by that name.
pub const MAX_NAME_BYTES: usize = 63;
/// Start of every trigger (and trigger function) name, so a DBA can tell ours apart.
pub const TRIGGER_PREFIX: &str = "LB_CL_";

/// Dialects that have change-log templates, as the `dialect` setting spells them.
const SUPPORTED: &str = "sqlite, mysql/mariadb (MariaDB 10.2.3 or later), postgres";

/// A key column of the captured table, as the catalog spells and types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: String,
    pub sql_type: SqlType,
}

/// Why no DDL could be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    #[error(
        "change-log triggers are available for {SUPPORTED}; this source's dialect is {dialect}"
    )]
    UnsupportedDialect { dialect: String },
    #[error(
        "the resource reads an adapter `query`, and triggers need a table to be installed on; \
         capture it with another strategy (`cursor` or `snapshot-diff`)"
    )]
    NotATable,
    #[error("table `{table}` has no key column to log")]
    NoKeyColumns { table: String },
    #[error(
        "table `{table}` has {count} key columns; a change-log row holds at most {MAX_KEY_COLUMNS}"
    )]
    TooManyKeyColumns { table: String, count: usize },
    #[error(
        "key column `{column}` holds up to {len} characters; the log's KEY columns hold \
         {KEY_TEXT_WIDTH}, and a longer key would make the legacy system's writes fail"
    )]
    KeyTooWide { column: String, len: usize },
    #[error("key column `{column}` is binary; the change log stores keys as text")]
    BinaryKey { column: String },
    #[error("{what} `{name}` cannot be used in change-log DDL: {reason}")]
    BadName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A template names a placeholder the renderer does not know (a bug, caught by the tests).
    #[error("change-log template {template} uses unknown placeholder {{{{{placeholder}}}}}")]
    Template {
        template: &'static str,
        placeholder: String,
    },
}

/// One statement to run, with what it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlStatement {
    /// For people: e.g. `trigger "LB_CL_STOCK_LEVEL_AI" after insert on "STOCK_LEVEL"`.
    pub what: String,
    /// One complete statement, without a trailing terminator.
    pub sql: String,
}

/// The rendered change-log DDL for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogDdl {
    dialect: DialectKind,
    table: String,
    log_table: String,
    statements: Vec<DdlStatement>,
    removal: Vec<DdlStatement>,
}

impl ChangelogDdl {
    /// The statements in order: log table, its index, then the table's triggers. Each is run
    /// on its own (`--apply`); all are safe to run again.
    pub fn statements(&self) -> &[DdlStatement] {
        &self.statements
    }

    /// The statements' SQL, one string per statement.
    pub fn sql(&self) -> Vec<String> {
        self.statements.iter().map(|s| s.sql.clone()).collect()
    }

    /// Statements that remove this table's triggers, then the log table (for the README and
    /// the script's closing comment; never applied by the bridge).
    pub fn removal(&self) -> &[DdlStatement] {
        &self.removal
    }

    /// The whole script for a DBA, ready for the dialect's own client (`sqlite3`, `mariadb`
    /// with DELIMITER lines around trigger bodies, `psql`), one transaction where the
    /// dialect's DDL is transactional, with the removal statements as a closing comment.
    pub fn script(&self) -> String {
        let mut out = String::new();
        let (engine, client) = match self.dialect {
            DialectKind::Sqlite => ("SQLite", "sqlite3"),
            DialectKind::Mysql => ("MariaDB", "mariadb"),
            _ => ("PostgreSQL", "psql"),
        };
        let _ = writeln!(
            out,
            "-- legacy-bridge change log ({engine}): triggers on {} write every changed row's \
             key to {}.",
            self.table, self.log_table
        );
        let _ = writeln!(
            out,
            "-- Generated by `legacy-bridge changelog ddl`; run it with {client}. Running it again \
             is harmless. See sql/changelog/README.md."
        );
        out.push('\n');
        match self.dialect {
            DialectKind::Mysql => self.mysql_body(&mut out),
            _ => {
                // SQLite and PostgreSQL DDL is transactional: all or nothing.
                out.push_str("BEGIN;\n\n");
                for s in &self.statements {
                    let _ = writeln!(out, "{};\n", s.sql);
                }
                out.push_str("COMMIT;\n");
            }
        }
        out.push_str("\n-- To remove it again:\n");
        for s in &self.removal {
            let _ = writeln!(out, "-- {}", s.what);
            let _ = writeln!(out, "--   {};", s.sql.replace('\n', "\n--   "));
        }
        out
    }

    /// MariaDB: statements whose body holds `;` go between DELIMITER lines, as the `mariadb`
    /// client would otherwise cut them at the first `;`.
    fn mysql_body(&self, out: &mut String) {
        let delimiter = ["$$", "//", ";;", "$$$$"]
            .into_iter()
            .find(|d| self.statements.iter().all(|s| !s.sql.contains(d)))
            .unwrap_or("$$$$");
        let mut custom = false;
        for s in &self.statements {
            let needs = s.sql.contains(';');
            if needs && !custom {
                let _ = writeln!(out, "DELIMITER {delimiter}\n");
                custom = true;
            } else if !needs && custom {
                out.push_str("DELIMITER ;\n\n");
                custom = false;
            }
            let end = if custom { delimiter } else { ";" };
            let _ = writeln!(out, "{}{end}\n", s.sql);
        }
        if custom {
            out.push_str("DELIMITER ;\n");
        }
    }
}

/// The templates of one dialect.
struct Templates {
    log_table: &'static str,
    triggers: &'static str,
    remove: &'static str,
}

fn templates(kind: DialectKind) -> Option<Templates> {
    match kind {
        DialectKind::Sqlite => Some(Templates {
            log_table: include_str!("../../sql/changelog/sqlite/log_table.sql"),
            triggers: include_str!("../../sql/changelog/sqlite/triggers.sql"),
            remove: include_str!("../../sql/changelog/sqlite/remove.sql"),
        }),
        DialectKind::Mysql => Some(Templates {
            log_table: include_str!("../../sql/changelog/mariadb/log_table.sql"),
            triggers: include_str!("../../sql/changelog/mariadb/triggers.sql"),
            remove: include_str!("../../sql/changelog/mariadb/remove.sql"),
        }),
        DialectKind::Postgres => Some(Templates {
            log_table: include_str!("../../sql/changelog/postgres/log_table.sql"),
            triggers: include_str!("../../sql/changelog/postgres/triggers.sql"),
            remove: include_str!("../../sql/changelog/postgres/remove.sql"),
        }),
        _ => None,
    }
}

/// Renders the DDL for a bound resource: its table and key columns as the catalog spells
/// them, logging into `log_table` (`CaptureDef::changelog_table()`, or the default).
pub fn for_resource(
    dialect: &Dialect,
    log_table: &str,
    resource: &Resource,
) -> Result<ChangelogDdl, DdlError> {
    let keys: Vec<KeyColumn> = resource
        .key_fields()
        .into_iter()
        .map(|f| KeyColumn {
            name: f.column.clone(),
            sql_type: f.sql_type,
        })
        .collect();
    render(dialect, log_table, &resource.relation, &keys)
}

/// Renders the DDL for `relation`'s triggers writing `keys` (in key order) into `log_table`,
/// which lives in the same schema as the table.
pub fn render(
    dialect: &Dialect,
    log_table: &str,
    relation: &Relation,
    keys: &[KeyColumn],
) -> Result<ChangelogDdl, DdlError> {
    let Some(templates) = templates(dialect.kind) else {
        return Err(DdlError::UnsupportedDialect {
            dialect: format!("{:?}", dialect.kind).to_lowercase(),
        });
    };
    let Relation::Table {
        schema,
        name: table,
    } = relation
    else {
        return Err(DdlError::NotATable);
    };
    check_name("table", table)?;
    if let Some(s) = schema {
        check_name("schema", s)?;
    }
    check_name("log table", log_table)?;
    if log_table.len() > MAX_NAME_BYTES {
        return Err(DdlError::BadName {
            what: "log table",
            name: log_table.to_owned(),
            reason: "longer than 63 bytes, which PostgreSQL would silently cut",
        });
    }
    if table.chars().count() > TABLE_NAME_WIDTH {
        return Err(DdlError::BadName {
            what: "table",
            name: table.clone(),
            reason: "longer than the log's TABLE_NAME column (128 characters)",
        });
    }
    if table.contains('\\') {
        // MariaDB (and PostgreSQL without standard_conforming_strings) read a backslash in a
        // string literal as an escape: the TABLE_NAME value would not be the table's name.
        return Err(DdlError::BadName {
            what: "table",
            name: table.clone(),
            reason: "contains a backslash, which some engines read as an escape in literals",
        });
    }
    if keys.is_empty() {
        return Err(DdlError::NoKeyColumns {
            table: table.clone(),
        });
    }
    if keys.len() > MAX_KEY_COLUMNS {
        return Err(DdlError::TooManyKeyColumns {
            table: table.clone(),
            count: keys.len(),
        });
    }
    for k in keys {
        check_key(dialect.kind, k)?;
    }

    let values = Values::new(dialect, log_table, schema.as_deref(), table, keys);
    let mut statements = Vec::new();
    for (name, text) in [
        ("log_table.sql", templates.log_table),
        ("triggers.sql", templates.triggers),
    ] {
        statements.extend(render_template(name, text, &values)?);
    }
    let removal = render_template("remove.sql", templates.remove, &values)?;
    Ok(ChangelogDdl {
        dialect: dialect.kind,
        table: relation.describe(),
        log_table: match schema {
            Some(s) => format!("{s}.{log_table}"),
            None => log_table.to_owned(),
        },
        statements,
        removal,
    })
}

fn check_name(what: &'static str, name: &str) -> Result<(), DdlError> {
    let bad = |reason| {
        Err(DdlError::BadName {
            what,
            name: name.to_owned(),
            reason,
        })
    };
    if name.trim().is_empty() {
        return bad("it is empty");
    }
    if name.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    Ok(())
}

fn check_key(kind: DialectKind, key: &KeyColumn) -> Result<(), DdlError> {
    check_name("key column", &key.name)?;
    match key.sql_type {
        SqlType::Binary => Err(DdlError::BinaryKey {
            column: key.name.clone(),
        }),
        // SQLite neither enforces declared widths nor reports them reliably for TEXT.
        SqlType::Char { len: Some(len) } | SqlType::Varchar { len: Some(len) }
            if len > KEY_TEXT_WIDTH && kind != DialectKind::Sqlite =>
        {
            Err(DdlError::KeyTooWide {
                column: key.name.clone(),
                len,
            })
        }
        _ => Ok(()),
    }
}

/// A generated object name: `prefix + table + suffix`, or, when that exceeds
/// [`MAX_NAME_BYTES`], the table part cut and followed by a hash of the whole table name,
/// so two long names never end up the same.
fn object_name(prefix: &str, table: &str, suffix: &str) -> String {
    let full = format!("{prefix}{table}{suffix}");
    if full.len() <= MAX_NAME_BYTES {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(table.as_bytes())[..4]);
    let mut room = MAX_NAME_BYTES - prefix.len() - suffix.len() - 1 - hash.len();
    while !table.is_char_boundary(room) {
        room -= 1;
    }
    format!("{prefix}{}_{hash}{suffix}", &table[..room])
}

/// An SQL string literal: single quotes doubled. Callers reject backslashes and control
/// characters first.
fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The placeholder values for one table.
struct Values {
    pairs: Vec<(&'static str, String)>,
}

impl Values {
    fn new(
        dialect: &Dialect,
        log_table: &str,
        schema: Option<&str>,
        table: &str,
        keys: &[KeyColumn],
    ) -> Self {
        let q = |name: &str| dialect.quote(name);
        let pg = dialect.kind == DialectKind::Postgres;
        let key_list = |row: &str| {
            keys.iter()
                .map(|k| key_text(dialect, row, k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let key_changed = keys
            .iter()
            .map(|k| {
                let (old, new) = (format!("OLD.{}", q(&k.name)), format!("NEW.{}", q(&k.name)));
                match dialect.kind {
                    DialectKind::Sqlite => format!("{old} IS NOT {new} COLLATE BINARY"),
                    DialectKind::Mysql => {
                        format!("NOT (CAST({old} AS BINARY) <=> CAST({new} AS BINARY))")
                    }
                    _ => format!("{old} IS DISTINCT FROM {new}"),
                }
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let key_columns = (1..=keys.len())
            .map(|n| q(&key_column(n)))
            .collect::<Vec<_>>()
            .join(", ");
        // PostgreSQL names read best in its folded case; the others follow the table's style.
        let (prefix, fold): (String, fn(&str) -> String) = if pg {
            (TRIGGER_PREFIX.to_lowercase(), str::to_lowercase)
        } else {
            (TRIGGER_PREFIX.to_owned(), str::to_owned)
        };
        let mut pairs: Vec<(&'static str, String)> = vec![
            (
                "schema_prefix",
                schema.map(|s| format!("{}.", q(s))).unwrap_or_default(),
            ),
            ("table", q(table)),
            ("table_literal", string_literal(table)),
            ("log_table", q(log_table)),
            ("log_index", q(&object_name("IX_", log_table, "_TABLE"))),
            (
                "trigger_insert",
                q(&object_name(&prefix, table, &fold("_AI"))),
            ),
            (
                "trigger_update",
                q(&object_name(&prefix, table, &fold("_AU"))),
            ),
            (
                "trigger_delete",
                q(&object_name(&prefix, table, &fold("_AD"))),
            ),
            ("trigger", q(&object_name(&prefix, table, ""))),
            ("function", q(&object_name(&prefix, table, &fold("_FN")))),
            ("CHANGE_ID", q(ID_COLUMN)),
            ("TABLE_NAME", q(TABLE_COLUMN)),
            ("OP", q(OP_COLUMN)),
            ("CHANGED_AT", q(CHANGED_AT_COLUMN)),
            ("key_columns", key_columns),
            ("new_key_values", key_list("NEW")),
            ("old_key_values", key_list("OLD")),
            ("key_changed", key_changed),
        ];
        const KEY_PLACEHOLDERS: [&str; MAX_KEY_COLUMNS] = ["KEY_1", "KEY_2", "KEY_3", "KEY_4"];
        for (i, placeholder) in KEY_PLACEHOLDERS.into_iter().enumerate() {
            pairs.push((placeholder, q(&key_column(i + 1))));
        }
        // A dollar-quote tag that no substituted text contains, so none can end the body.
        let mut tag = "$lb$".to_owned();
        let mut n = 0;
        while pairs.iter().any(|(_, v)| v.contains(&tag)) {
            n += 1;
            tag = format!("$lb{n}$");
        }
        pairs.push(("dollar_quote", tag));
        Self { pairs }
    }

    fn get(&self, placeholder: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(p, _)| *p == placeholder)
            .map(|(_, v)| v.as_str())
    }
}

/// A key column of `row` (`NEW` or `OLD`) as text, as the engine returns the column.
fn key_text(dialect: &Dialect, row: &str, key: &KeyColumn) -> String {
    let column = format!("{row}.{}", dialect.quote(&key.name));
    match (dialect.kind, key.sql_type) {
        (DialectKind::Sqlite, _) => format!("CAST({column} AS TEXT)"),
        (DialectKind::Mysql, _) => format!("CAST({column} AS CHAR)"),
        // character(n) cast to text loses its padding; reads return it padded.
        (_, SqlType::Char { len: Some(n) }) => format!("rpad(CAST({column} AS text), {n})"),
        _ => format!("CAST({column} AS text)"),
    }
}

/// Splits a template into its statements (a line `-- statement: <what>` starts one; other
/// comment lines are dropped), then fills each statement's placeholders in a single pass, so
/// text that came from a name is never read as a placeholder.
fn render_template(
    template: &'static str,
    text: &str,
    values: &Values,
) -> Result<Vec<DdlStatement>, DdlError> {
    let mut parts: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(what) = trimmed.strip_prefix("-- statement:") {
            parts.push((what.trim(), Vec::new()));
        } else if trimmed.starts_with("--") {
            continue;
        } else if let Some((_, body)) = parts.last_mut() {
            body.push(line);
        }
    }
    parts
        .into_iter()
        .map(|(what, body)| {
            let body = body.join("\n");
            let body = body.trim().trim_end_matches(';').trim_end();
            Ok(DdlStatement {
                what: fill(template, what, values)?,
                sql: fill(template, body, values)?,
            })
        })
        .collect()
}

fn fill(template: &'static str, text: &str, values: &Values) -> Result<String, DdlError> {
    let mut out = String::with_capacity(text.len() * 2);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(DdlError::Template {
                template,
                placeholder: after.chars().take(20).collect(),
            });
        };
        let name = &after[..end];
        let value = values.get(name).ok_or_else(|| DdlError::Template {
            template,
            placeholder: name.to_owned(),
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Relation {
        Relation::Table {
            schema: None,
            name: name.into(),
        }
    }

    fn char_key(name: &str, len: usize) -> KeyColumn {
        KeyColumn {
            name: name.into(),
            sql_type: SqlType::Char { len: Some(len) },
        }
    }

    fn stock_keys(item: &str, store: &str) -> Vec<KeyColumn> {
        vec![char_key(item, 10), char_key(store, 4)]
    }

    fn ddl(kind: DialectKind, relation: &Relation, keys: &[KeyColumn]) -> ChangelogDdl {
        render(&Dialect::of(kind), "LB_CHANGELOG", relation, keys).unwrap()
    }

    /// The statement whose description starts with `what`.
    fn stmt<'a>(ddl: &'a ChangelogDdl, what: &str) -> &'a str {
        &ddl.statements()
            .iter()
            .find(|s| s.what.starts_with(what))
            .unwrap_or_else(|| panic!("no statement `{what}` in {:#?}", ddl.statements()))
            .sql
    }

    #[test]
    fn sqlite_one_column_key() {
        let d = ddl(
            DialectKind::Sqlite,
            &table("ITEM_MASTER"),
            &[char_key("ITEM_CODE", 10)],
        );
        let whats: Vec<&str> = d.statements().iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                r#"log table "LB_CHANGELOG""#,
                r#"index "IX_LB_CHANGELOG_TABLE" on the log table"#,
                r#"drop trigger "LB_CL_ITEM_MASTER_AI" if it exists"#,
                r#"trigger "LB_CL_ITEM_MASTER_AI" after insert on "ITEM_MASTER""#,
                r#"drop trigger "LB_CL_ITEM_MASTER_AU" if it exists"#,
                r#"trigger "LB_CL_ITEM_MASTER_AU" after update on "ITEM_MASTER""#,
                r#"drop trigger "LB_CL_ITEM_MASTER_AD" if it exists"#,
                r#"trigger "LB_CL_ITEM_MASTER_AD" after delete on "ITEM_MASTER""#,
            ]
        );
        assert_eq!(
            stmt(&d, "trigger \"LB_CL_ITEM_MASTER_AI\""),
            "CREATE TRIGGER \"LB_CL_ITEM_MASTER_AI\" AFTER INSERT ON \"ITEM_MASTER\" FOR EACH ROW\n\
             BEGIN\n    \
             INSERT INTO \"LB_CHANGELOG\" (\"TABLE_NAME\", \"OP\", \"KEY_1\")\n    \
             VALUES ('ITEM_MASTER', 'I', CAST(NEW.\"ITEM_CODE\" AS TEXT));\n\
             END"
        );
        let update = stmt(&d, "trigger \"LB_CL_ITEM_MASTER_AU\"");
        assert!(
            update.contains(
                "SELECT 'ITEM_MASTER', 'U', CAST(OLD.\"ITEM_CODE\" AS TEXT)\n    \
                 WHERE OLD.\"ITEM_CODE\" IS NOT NEW.\"ITEM_CODE\" COLLATE BINARY;"
            ),
            "{update}"
        );
        assert!(update.contains("VALUES ('ITEM_MASTER', 'U', CAST(NEW.\"ITEM_CODE\" AS TEXT));"));
        let delete = stmt(&d, "trigger \"LB_CL_ITEM_MASTER_AD\"");
        assert!(delete.contains("VALUES ('ITEM_MASTER', 'D', CAST(OLD.\"ITEM_CODE\" AS TEXT));"));
        assert_eq!(
            stmt(&d, "drop trigger \"LB_CL_ITEM_MASTER_AU\""),
            "DROP TRIGGER IF EXISTS \"LB_CL_ITEM_MASTER_AU\""
        );
        let log = stmt(&d, "log table");
        assert!(log.starts_with("CREATE TABLE IF NOT EXISTS \"LB_CHANGELOG\" ("));
        assert!(log.contains("\"CHANGE_ID\"  INTEGER PRIMARY KEY AUTOINCREMENT,"));
        assert_eq!(
            stmt(&d, "index"),
            "CREATE INDEX IF NOT EXISTS \"IX_LB_CHANGELOG_TABLE\"\n    \
             ON \"LB_CHANGELOG\" (\"TABLE_NAME\", \"CHANGE_ID\")"
        );
    }

    #[test]
    fn sqlite_two_column_key() {
        let d = ddl(
            DialectKind::Sqlite,
            &table("STOCK_LEVEL"),
            &stock_keys("ITEM_CODE", "STORE_NO"),
        );
        let insert = stmt(&d, "trigger \"LB_CL_STOCK_LEVEL_AI\"");
        assert!(insert.contains("(\"TABLE_NAME\", \"OP\", \"KEY_1\", \"KEY_2\")"));
        assert!(insert.contains(
            "VALUES ('STOCK_LEVEL', 'I', CAST(NEW.\"ITEM_CODE\" AS TEXT), CAST(NEW.\"STORE_NO\" AS TEXT));"
        ));
        let update = stmt(&d, "trigger \"LB_CL_STOCK_LEVEL_AU\"");
        assert!(update.contains(
            "WHERE OLD.\"ITEM_CODE\" IS NOT NEW.\"ITEM_CODE\" COLLATE BINARY \
             OR OLD.\"STORE_NO\" IS NOT NEW.\"STORE_NO\" COLLATE BINARY;"
        ));
        // The old key is logged before the new one.
        let old = update.find("CAST(OLD.").unwrap();
        let new = update.find("CAST(NEW.").unwrap();
        assert!(old < new, "{update}");
    }

    #[test]
    fn mariadb_one_and_two_column_keys() {
        let d = ddl(
            DialectKind::Mysql,
            &table("ITEM_MASTER"),
            &[char_key("ITEM_CODE", 10)],
        );
        assert_eq!(d.statements().len(), 4, "{:#?}", d.statements());
        let log = stmt(&d, "log table");
        assert!(log.starts_with("CREATE TABLE IF NOT EXISTS `LB_CHANGELOG` ("));
        assert!(log.contains("`CHANGE_ID`  BIGINT NOT NULL AUTO_INCREMENT,"));
        assert!(log.contains("INDEX `IX_LB_CHANGELOG_TABLE` (`TABLE_NAME`, `CHANGE_ID`)"));
        assert!(log.ends_with("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"));
        assert_eq!(
            stmt(&d, "trigger `LB_CL_ITEM_MASTER_AI`"),
            "CREATE OR REPLACE TRIGGER `LB_CL_ITEM_MASTER_AI`\n\
             AFTER INSERT ON `ITEM_MASTER` FOR EACH ROW\n\
             BEGIN\n    \
             INSERT INTO `LB_CHANGELOG` (`TABLE_NAME`, `OP`, `KEY_1`)\n    \
             VALUES ('ITEM_MASTER', 'I', CAST(NEW.`ITEM_CODE` AS CHAR));\n\
             END"
        );

        let d = ddl(
            DialectKind::Mysql,
            &table("STOCK_LEVEL"),
            &stock_keys("ITEM_CODE", "STORE_NO"),
        );
        let update = stmt(&d, "trigger `LB_CL_STOCK_LEVEL_AU`");
        assert!(update.contains(
            "IF NOT (CAST(OLD.`ITEM_CODE` AS BINARY) <=> CAST(NEW.`ITEM_CODE` AS BINARY)) \
             OR NOT (CAST(OLD.`STORE_NO` AS BINARY) <=> CAST(NEW.`STORE_NO` AS BINARY)) THEN"
        ));
        assert!(update.contains(
            "VALUES ('STOCK_LEVEL', 'U', CAST(OLD.`ITEM_CODE` AS CHAR), CAST(OLD.`STORE_NO` AS CHAR));\n    END IF;"
        ));
        assert!(update.contains(
            "VALUES ('STOCK_LEVEL', 'U', CAST(NEW.`ITEM_CODE` AS CHAR), CAST(NEW.`STORE_NO` AS CHAR));\nEND"
        ));
        let delete = stmt(&d, "trigger `LB_CL_STOCK_LEVEL_AD`");
        assert!(delete.contains("AFTER DELETE ON `STOCK_LEVEL` FOR EACH ROW"));
        assert!(delete.contains("(`TABLE_NAME`, `OP`, `KEY_1`, `KEY_2`)"));
    }

    #[test]
    fn postgres_one_and_two_column_keys() {
        let integer = KeyColumn {
            name: "txn_no".into(),
            sql_type: SqlType::Integer,
        };
        let d = ddl(DialectKind::Postgres, &table("sales_journal"), &[integer]);
        let whats: Vec<&str> = d.statements().iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            whats,
            [
                r#"log table "LB_CHANGELOG""#,
                r#"index "IX_LB_CHANGELOG_TABLE" on the log table"#,
                r#"function "lb_cl_sales_journal_fn""#,
                r#"trigger "lb_cl_sales_journal" after insert, update, delete on "sales_journal""#,
            ]
        );
        let function = stmt(&d, "function");
        assert!(function.starts_with(
            "CREATE OR REPLACE FUNCTION \"lb_cl_sales_journal_fn\"() RETURNS trigger\n\
             LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT\n\
             AS $lb$\n"
        ));
        assert!(function.ends_with("\nEND\n$lb$"));
        assert!(function.contains("VALUES ('sales_journal', 'I', CAST(NEW.\"txn_no\" AS text));"));
        assert!(function.contains("IF OLD.\"txn_no\" IS DISTINCT FROM NEW.\"txn_no\" THEN"));
        assert_eq!(
            stmt(&d, "trigger"),
            "DO $lb$\n\
             BEGIN\n    \
             DROP TRIGGER IF EXISTS \"lb_cl_sales_journal\" ON \"sales_journal\";\n    \
             CREATE TRIGGER \"lb_cl_sales_journal\"\n        \
             AFTER INSERT OR UPDATE OR DELETE ON \"sales_journal\"\n        \
             FOR EACH ROW EXECUTE FUNCTION \"lb_cl_sales_journal_fn\"();\n\
             END\n\
             $lb$"
        );
        assert!(
            stmt(&d, "log table")
                .contains("\"CHANGE_ID\"  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,")
        );

        // CHAR(n) keeps the padding PostgreSQL returns on reads (a plain cast drops it).
        let d = ddl(
            DialectKind::Postgres,
            &table("stock_level"),
            &stock_keys("item_code", "store_no"),
        );
        let function = stmt(&d, "function");
        assert!(function.contains(
            "VALUES ('stock_level', 'D', rpad(CAST(OLD.\"item_code\" AS text), 10), \
             rpad(CAST(OLD.\"store_no\" AS text), 4));"
        ));
        assert!(function.contains(
            "IF OLD.\"item_code\" IS DISTINCT FROM NEW.\"item_code\" \
             OR OLD.\"store_no\" IS DISTINCT FROM NEW.\"store_no\" THEN"
        ));
        assert!(function.contains("(\"TABLE_NAME\", \"OP\", \"KEY_1\", \"KEY_2\")"));
    }

    #[test]
    fn the_log_table_has_exactly_the_shape_capture_reads() {
        for kind in [
            DialectKind::Sqlite,
            DialectKind::Mysql,
            DialectKind::Postgres,
        ] {
            let d = ddl(kind, &table("T"), &[char_key("K", 1)]);
            let dialect = Dialect::of(kind);
            let log = stmt(&d, "log table");
            let mut columns = vec![ID_COLUMN.to_owned(), TABLE_COLUMN.into(), OP_COLUMN.into()];
            columns.extend((1..=MAX_KEY_COLUMNS).map(key_column));
            columns.push(CHANGED_AT_COLUMN.into());
            let declared: Vec<String> = log
                .lines()
                .skip(1)
                .filter_map(|l| l.trim_start().strip_prefix(dialect.quote_open))
                .filter_map(|l| l.split(dialect.quote_close).next())
                .map(str::to_owned)
                .collect();
            assert_eq!(declared, columns, "{kind:?}: {log}");
            let collapsed: Vec<String> = log
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            for n in 1..=MAX_KEY_COLUMNS {
                let line = format!("{} VARCHAR(255) NULL,", dialect.quote(&key_column(n)));
                assert!(collapsed.contains(&line), "{kind:?}: {line} in {log}");
            }
        }
    }

    #[test]
    fn names_are_quoted_and_the_table_name_literal_escaped() {
        let name = r#"O'Brien "Items""#;
        let d = ddl(DialectKind::Postgres, &table(name), &[char_key("K'1", 5)]);
        let function = stmt(&d, "function");
        assert!(
            function
                .contains(r#"VALUES ('O''Brien "Items"', 'I', rpad(CAST(NEW."K'1" AS text), 5));"#)
        );
        assert!(stmt(&d, "trigger").contains(r#"ON "O'Brien ""Items""";"#));

        let d = ddl(DialectKind::Mysql, &table("a`b"), &[char_key("c`d", 5)]);
        let insert = stmt(&d, "trigger `LB_CL_a``b_AI`");
        assert!(
            insert.contains("AFTER INSERT ON `a``b` FOR EACH ROW"),
            "{insert}"
        );
        assert!(insert.contains("VALUES ('a`b', 'I', CAST(NEW.`c``d` AS CHAR));"));
    }

    #[test]
    fn names_are_never_read_as_placeholders() {
        let d = ddl(
            DialectKind::Sqlite,
            &table("{{log_table}}"),
            &[char_key("{{table_literal}}", 5)],
        );
        let insert = stmt(&d, "trigger \"LB_CL_{{log_table}}_AI\"");
        assert!(
            insert.contains("AFTER INSERT ON \"{{log_table}}\""),
            "{insert}"
        );
        assert!(
            insert.contains(
                "VALUES ('{{log_table}}', 'I', CAST(NEW.\"{{table_literal}}\" AS TEXT));"
            )
        );
    }

    #[test]
    fn the_dollar_quote_tag_never_occurs_in_a_name() {
        let d = ddl(DialectKind::Postgres, &table("x$lb$y"), &[char_key("k", 1)]);
        let function = stmt(&d, "function");
        assert!(function.contains("AS $lb1$\n"), "{function}");
        assert!(function.ends_with("$lb1$"));
        assert!(stmt(&d, "trigger").starts_with("DO $lb1$\n"));
    }

    #[test]
    fn a_schema_qualifies_what_each_engine_allows() {
        let relation = Relation::Table {
            schema: Some("legacy".into()),
            name: "stock_level".into(),
        };
        let d = ddl(
            DialectKind::Postgres,
            &relation,
            &stock_keys("item_code", "store_no"),
        );
        assert!(
            stmt(&d, "log table")
                .starts_with("CREATE TABLE IF NOT EXISTS \"legacy\".\"LB_CHANGELOG\" (")
        );
        assert!(
            stmt(&d, "index")
                .contains("\"IX_LB_CHANGELOG_TABLE\"\n    ON \"legacy\".\"LB_CHANGELOG\"")
        );
        assert!(stmt(&d, "function").contains("INSERT INTO \"legacy\".\"LB_CHANGELOG\""));
        assert!(
            stmt(&d, "trigger").contains("EXECUTE FUNCTION \"legacy\".\"lb_cl_stock_level_fn\"()")
        );

        // SQLite: the schema goes on created objects, never on a trigger's tables.
        let relation = Relation::Table {
            schema: Some("aux".into()),
            name: "T".into(),
        };
        let d = ddl(DialectKind::Sqlite, &relation, &[char_key("K", 1)]);
        assert!(stmt(&d, "index").starts_with(
            "CREATE INDEX IF NOT EXISTS \"aux\".\"IX_LB_CHANGELOG_TABLE\"\n    ON \"LB_CHANGELOG\""
        ));
        let insert = stmt(&d, "trigger \"LB_CL_T_AI\"");
        assert!(insert.starts_with(
            "CREATE TRIGGER \"aux\".\"LB_CL_T_AI\" AFTER INSERT ON \"T\" FOR EACH ROW"
        ));
        assert!(insert.contains("INSERT INTO \"LB_CHANGELOG\" ("));
    }

    #[test]
    fn long_names_are_shortened_distinctly() {
        let a = format!("{}_A", "X".repeat(70));
        let b = format!("{}_B", "X".repeat(70));
        let name_a = object_name(TRIGGER_PREFIX, &a, "_AU");
        let name_b = object_name(TRIGGER_PREFIX, &b, "_AU");
        assert_eq!(name_a.len(), MAX_NAME_BYTES);
        assert!(name_a.starts_with("LB_CL_XXX") && name_a.ends_with("_AU"));
        assert_ne!(name_a, name_b);
        assert_eq!(name_a, object_name(TRIGGER_PREFIX, &a, "_AU"));
        // Cut on a character boundary.
        let umlauts = "Ä".repeat(40);
        assert!(object_name(TRIGGER_PREFIX, &umlauts, "_AI").len() <= MAX_NAME_BYTES);
        assert_eq!(
            object_name(TRIGGER_PREFIX, "STOCK_LEVEL", "_AI"),
            "LB_CL_STOCK_LEVEL_AI"
        );
    }

    #[test]
    fn refuses_what_it_cannot_install() {
        let pg = Dialect::of(DialectKind::Postgres);
        let key = [char_key("K", 1)];
        let err = |relation: &Relation, keys: &[KeyColumn]| {
            render(&pg, "LB_CHANGELOG", relation, keys).unwrap_err()
        };
        assert_eq!(
            err(&Relation::Query("SELECT 1 AS K".into()), &key),
            DdlError::NotATable
        );
        let five: Vec<KeyColumn> = (1..=5).map(|n| char_key(&format!("K{n}"), 1)).collect();
        let e = err(&table("T"), &five);
        assert_eq!(
            e,
            DdlError::TooManyKeyColumns {
                table: "T".into(),
                count: 5
            }
        );
        assert!(e.to_string().contains("at most 4"), "{e}");
        assert_eq!(
            err(&table("T"), &[]),
            DdlError::NoKeyColumns { table: "T".into() }
        );
        let e = render(
            &Dialect::of(DialectKind::Mssql),
            "LB_CHANGELOG",
            &table("T"),
            &key,
        )
        .unwrap_err();
        assert_eq!(
            e,
            DdlError::UnsupportedDialect {
                dialect: "mssql".into()
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("sqlite") && msg.contains("mariadb") && msg.contains("postgres"),
            "{msg}"
        );
        assert!(matches!(
            err(&table(r"a\b"), &key),
            DdlError::BadName { what: "table", .. }
        ));
        assert!(matches!(
            err(&table("a\nb"), &key),
            DdlError::BadName { what: "table", .. }
        ));
        assert!(matches!(
            err(&table(&"t".repeat(129)), &key),
            DdlError::BadName { what: "table", .. }
        ));
        assert!(matches!(
            render(&pg, &"L".repeat(64), &table("T"), &key).unwrap_err(),
            DdlError::BadName {
                what: "log table",
                ..
            }
        ));
        assert!(matches!(
            render(&pg, " ", &table("T"), &key).unwrap_err(),
            DdlError::BadName {
                what: "log table",
                ..
            }
        ));
        let wide = KeyColumn {
            name: "CODE".into(),
            sql_type: SqlType::Varchar { len: Some(300) },
        };
        assert_eq!(
            err(&table("T"), std::slice::from_ref(&wide)),
            DdlError::KeyTooWide {
                column: "CODE".into(),
                len: 300
            }
        );
        // SQLite neither enforces nor reliably reports text widths.
        assert!(render(&Dialect::of(DialectKind::Sqlite), "L", &table("T"), &[wide]).is_ok());
        let binary = KeyColumn {
            name: "B".into(),
            sql_type: SqlType::Binary,
        };
        assert_eq!(
            err(&table("T"), &[binary]),
            DdlError::BinaryKey { column: "B".into() }
        );
    }

    #[test]
    fn every_template_renders_completely() {
        for kind in [
            DialectKind::Sqlite,
            DialectKind::Mysql,
            DialectKind::Postgres,
        ] {
            let d = ddl(
                kind,
                &table("STOCK_LEVEL"),
                &stock_keys("ITEM_CODE", "STORE_NO"),
            );
            for s in d.statements().iter().chain(d.removal()) {
                assert!(!s.sql.is_empty() && !s.what.is_empty(), "{kind:?}: {s:?}");
                assert!(
                    !s.sql.contains("{{") && !s.what.contains("{{"),
                    "{kind:?}: {s:?}"
                );
                assert!(!s.sql.ends_with(';'), "{kind:?}: {s:?}");
                assert!(!s.sql.lines().any(|l| l.trim_start().starts_with("--")));
            }
            assert!(
                d.removal()
                    .iter()
                    .any(|s| s.sql.starts_with("DROP TABLE IF EXISTS"))
            );
        }
    }

    #[test]
    fn mariadb_script_wraps_trigger_bodies_in_delimiter_lines() {
        let d = ddl(
            DialectKind::Mysql,
            &table("STOCK_LEVEL"),
            &stock_keys("ITEM_CODE", "STORE_NO"),
        );
        let script = d.script();
        assert!(
            script.contains("COLLATE=utf8mb4_bin;\n\nDELIMITER $$\n\nCREATE OR REPLACE TRIGGER"),
            "{script}"
        );
        assert_eq!(script.matches("\nEND$$\n").count(), 3, "{script}");
        assert!(script.contains("END$$\n\nDELIMITER ;\n"), "{script}");
        assert!(!script.contains("BEGIN;"));
        assert_eq!(script.matches("DELIMITER").count(), 2);
        // The removal statements are comments only.
        let tail = &script[script.find("-- To remove").unwrap()..];
        assert!(tail.lines().all(|l| l.starts_with("--")), "{tail}");
        assert!(tail.contains("--   DROP TRIGGER IF EXISTS `LB_CL_STOCK_LEVEL_AI`;"));
    }

    #[test]
    fn mariadb_delimiter_avoids_text_in_the_statements() {
        let d = ddl(DialectKind::Mysql, &table("a$$b"), &[char_key("K", 1)]);
        let script = d.script();
        assert!(script.contains("DELIMITER //\n"), "{script}");
        assert_eq!(script.matches("\nEND//\n").count(), 3);
    }

    #[test]
    fn sqlite_and_postgres_scripts_are_one_transaction() {
        for kind in [DialectKind::Sqlite, DialectKind::Postgres] {
            let d = ddl(kind, &table("T"), &[char_key("K", 1)]);
            let script = d.script();
            let body = &script[..script.find("-- To remove").unwrap()];
            assert!(
                body.contains("\nBEGIN;\n\nCREATE TABLE IF NOT EXISTS"),
                "{script}"
            );
            assert!(body.trim_end().ends_with("COMMIT;"), "{script}");
            for s in d.statements() {
                assert!(body.contains(&format!("{};\n", s.sql)), "{kind:?}");
            }
            assert!(!script.contains("DELIMITER"));
        }
    }
}
