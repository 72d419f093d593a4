//! The replica's tables: the PostgreSQL type of each field type, identifier quoting, the
//! `CREATE` statements, and the check that a table already there has exactly the shape the
//! sink writes (the sink never alters a table by itself).
//!
//! Layout, in the configured schema:
//! - one table per resource, named after it: one column per field (key columns form the
//!   primary key), then `_lb_seq bigint not null` (outbox seq of the last event applied to the
//!   row), `_lb_event_id text not null` and `_lb_applied_at timestamptz not null default now()`;
//! - `_lb_tombstones (resource, subject, seq)`: the seq of the last delete of a record, so that
//!   an older event replayed after the delete cannot bring the row back.

use crate::model::{FieldType, ResourceSchema};

/// Outbox seq of the event a row was last written by.
pub(super) const SEQ: &str = "_lb_seq";
/// CloudEvents id of that event.
pub(super) const EVENT_ID: &str = "_lb_event_id";
/// When the replica applied it (transaction time).
pub(super) const APPLIED_AT: &str = "_lb_applied_at";
/// The shared table of deleted records.
pub(super) const TOMBSTONES: &str = "_lb_tombstones";
/// Names starting with this belong to the sink; a resource or field may not use them.
pub(super) const RESERVED_PREFIX: &str = "_lb_";
/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
const MAX_IDENTIFIER_BYTES: usize = 63;

const BIGINT: &str = "bigint";
const TEXT: &str = "text";
const TIMESTAMPTZ: &str = "timestamp with time zone";

/// The column type a field is stored as, spelt as `format_type` prints it so that the same
/// text serves in `CREATE TABLE` and in the comparison with the catalog.
///
/// Timestamps are `timestamptz`: the mapping gives every naive legacy timestamp the adapter's
/// time zone before an event is built, so `after` always holds RFC 3339 with an offset, and
/// the instant is what must be kept. Decimals are unconstrained `numeric` (scale preserved as
/// sent); binary arrives base64-encoded and is stored decoded in `bytea`.
pub fn pg_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => TEXT,
        FieldType::Integer => BIGINT,
        FieldType::Decimal => "numeric",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::Time => "time without time zone",
        FieldType::Timestamp => TIMESTAMPTZ,
        FieldType::Binary => "bytea",
    }
}

/// `name` as a quoted SQL identifier: the only way a name reaches a statement.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// One column: its name and its type as `format_type` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Column {
    pub name: String,
    pub ty: String,
}

/// A table as the sink writes it, or as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TableShape {
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary key columns, in key order.
    pub key: Vec<String>,
}

impl TableShape {
    /// The table of a resource.
    pub fn of_resource(schema: &ResourceSchema) -> TableShape {
        let mut columns: Vec<Column> = schema
            .fields
            .iter()
            .map(|(name, f)| Column {
                name: name.clone(),
                ty: pg_type(f.ty).to_owned(),
            })
            .collect();
        for (name, ty) in [(SEQ, BIGINT), (EVENT_ID, TEXT), (APPLIED_AT, TIMESTAMPTZ)] {
            columns.push(Column {
                name: name.to_owned(),
                ty: ty.to_owned(),
            });
        }
        TableShape {
            name: schema.name.clone(),
            columns,
            key: schema.key.clone(),
        }
    }

    /// The shared tombstone table.
    pub fn tombstones() -> TableShape {
        let column = |name: &str, ty: &str| Column {
            name: name.to_owned(),
            ty: ty.to_owned(),
        };
        TableShape {
            name: TOMBSTONES.to_owned(),
            columns: vec![
                column("resource", TEXT),
                column("subject", TEXT),
                column("seq", BIGINT),
            ],
            key: vec!["resource".into(), "subject".into()],
        }
    }

    /// `CREATE TABLE IF NOT EXISTS`. Non-key fields are nullable whatever the schema says: the
    /// replica mirrors what the legacy system holds and must not refuse a row it emitted.
    pub fn create_sql(&self, schema: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let not_null = self.key.contains(&c.name)
                    || [SEQ, EVENT_ID, APPLIED_AT].contains(&c.name.as_str())
                    || self.name == TOMBSTONES;
                let default = if c.name == APPLIED_AT {
                    " DEFAULT now()"
                } else {
                    ""
                };
                format!(
                    "{} {}{}{}",
                    quote_ident(&c.name),
                    c.ty,
                    if not_null { " NOT NULL" } else { "" },
                    default
                )
            })
            .collect();
        let key: Vec<String> = self.key.iter().map(|k| quote_ident(k)).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            qualified(schema, &self.name),
            columns.join(", "),
            key.join(", ")
        )
    }

    /// Every difference between this (wanted) shape and `found`, naming table and column;
    /// `Ok` when the sink can write to `found` as it is. Column order does not matter.
    pub fn compare(&self, schema: &str, found: &TableShape) -> Result<(), String> {
        let table = format!("{schema}.{}", self.name);
        let mut problems = Vec::new();
        for want in &self.columns {
            match found.columns.iter().find(|c| c.name == want.name) {
                None => problems.push(format!("column `{}` ({}) is missing", want.name, want.ty)),
                Some(have) if have.ty != want.ty => problems.push(format!(
                    "column `{}` is {} where the sink writes {}",
                    want.name, have.ty, want.ty
                )),
                Some(_) => {}
            }
        }
        for have in &found.columns {
            if !self.columns.iter().any(|c| c.name == have.name) {
                problems.push(format!(
                    "column `{}` is not written by the sink (no such field)",
                    have.name
                ));
            }
        }
        let mut want_key = self.key.clone();
        let mut have_key = found.key.clone();
        want_key.sort();
        have_key.sort();
        if want_key != have_key {
            problems.push(format!(
                "primary key is ({}) where the sink needs ({})",
                found.key.join(", "),
                self.key.join(", ")
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "table `{table}` has another shape: {}; the replica never alters a table: \
                 drop it (it is rebuilt from the outbox) or change it by hand",
                problems.join("; ")
            ))
        }
    }
}

/// Names the sink cannot use as they are: empty, too long (PostgreSQL would silently cut
/// them), holding NUL, or in the sink's own `_lb_` namespace. Also a resource needs a key.
pub(super) fn check_names(schema_name: &str, resource: &ResourceSchema) -> Result<(), String> {
    let check = |what: &str, name: &str, reserved: bool| {
        if name.is_empty() || name.contains('\0') {
            Err(format!("{what} `{name}` is not a usable PostgreSQL name"))
        } else if name.len() > MAX_IDENTIFIER_BYTES {
            Err(format!(
                "{what} `{name}` is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte names"
            ))
        } else if reserved && name.starts_with(RESERVED_PREFIX) {
            Err(format!(
                "{what} `{name}` starts with `{RESERVED_PREFIX}`, which the replica reserves"
            ))
        } else {
            Ok(())
        }
    };
    check("schema", schema_name, false)?;
    check("resource", &resource.name, true)?;
    for name in resource.fields.keys() {
        check(&format!("field of `{}`", resource.name), name, true)?;
    }
    if resource.key.is_empty() {
        return Err(format!(
            "resource `{}` has no key, so it has no primary key",
            resource.name
        ));
    }
    Ok(())
}

/// Whether a schema exists; `$1` = schema.
pub(super) const SCHEMA_EXISTS_SQL: &str =
    "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1";

/// Columns of a table (not of a view or anything else); `$1` = schema, `$2` = table.
pub(super) const COLUMNS_SQL: &str = "\
SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
FROM pg_catalog.pg_attribute a \
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') \
  AND a.attnum > 0 AND NOT a.attisdropped \
ORDER BY a.attnum";

/// Primary key columns of a table in key order; `$1` = schema, `$2` = table.
pub(super) const PRIMARY_KEY_SQL: &str = "\
SELECT a.attname::text \
FROM pg_catalog.pg_index i \
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) \
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
ORDER BY pg_catalog.array_position(i.indkey::int2[], a.attnum)";

/// `CREATE SCHEMA IF NOT EXISTS`.
pub(super) fn create_schema_sql(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema))
}

#[cfg(test)]
pub(super) mod tests {
    use indexmap::IndexMap;

    use super::*;
    use crate::model::FieldSchema;

    /// A schema built by hand: every field nullable.
    pub(crate) fn schema(name: &str, key: &[&str], fields: &[(&str, FieldType)]) -> ResourceSchema {
        ResourceSchema {
            name: name.into(),
            component: "X".into(),
            description: None,
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            fields: fields
                .iter()
                .map(|(n, ty)| {
                    (
                        (*n).to_owned(),
                        FieldSchema {
                            ty: *ty,
                            nullable: true,
                            description: None,
                            filterable: false,
                            sortable: false,
                        },
                    )
                })
                .collect::<IndexMap<_, _>>(),
        }
    }

    #[test]
    fn maps_every_field_type() {
        let expected = [
            (FieldType::String, "text"),
            (FieldType::Integer, "bigint"),
            (FieldType::Decimal, "numeric"),
            (FieldType::Boolean, "boolean"),
            (FieldType::Date, "date"),
            (FieldType::Time, "time without time zone"),
            (FieldType::Timestamp, "timestamp with time zone"),
            (FieldType::Binary, "bytea"),
        ];
        for (ty, pg) in expected {
            assert_eq!(pg_type(ty), pg, "{ty}");
        }
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("sku"), "\"sku\"");
        assert_eq!(quote_ident("Weird \"Name\""), "\"Weird \"\"Name\"\"\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(
            qualified("legacy_bridge", "stock"),
            "\"legacy_bridge\".\"stock\""
        );
    }

    #[test]
    fn creates_columns_key_and_bookkeeping() {
        let s = schema(
            "stock",
            &["sku", "store"],
            &[
                ("sku", FieldType::String),
                ("store", FieldType::Integer),
                ("qty", FieldType::Decimal),
            ],
        );
        assert_eq!(
            TableShape::of_resource(&s).create_sql("lb"),
            "CREATE TABLE IF NOT EXISTS \"lb\".\"stock\" (\"sku\" text NOT NULL, \
             \"store\" bigint NOT NULL, \"qty\" numeric, \"_lb_seq\" bigint NOT NULL, \
             \"_lb_event_id\" text NOT NULL, \
             \"_lb_applied_at\" timestamp with time zone NOT NULL DEFAULT now(), \
             PRIMARY KEY (\"sku\", \"store\"))"
        );
        assert_eq!(
            TableShape::tombstones().create_sql("lb"),
            "CREATE TABLE IF NOT EXISTS \"lb\".\"_lb_tombstones\" (\"resource\" text NOT NULL, \
             \"subject\" text NOT NULL, \"seq\" bigint NOT NULL, \
             PRIMARY KEY (\"resource\", \"subject\"))"
        );
    }

    #[test]
    fn compare_names_table_and_column() {
        let s = schema(
            "stock",
            &["sku"],
            &[("sku", FieldType::String), ("qty", FieldType::Decimal)],
        );
        let want = TableShape::of_resource(&s);
        assert_eq!(want.compare("lb", &want.clone()), Ok(()));

        let mut reordered = want.clone();
        reordered.columns.reverse();
        assert_eq!(want.compare("lb", &reordered), Ok(()));

        let mut other = want.clone();
        other.columns[1].ty = "text".into();
        other.columns.retain(|c| c.name != EVENT_ID);
        other.columns.push(Column {
            name: "extra".into(),
            ty: "text".into(),
        });
        other.key = vec!["qty".into()];
        let err = want.compare("lb", &other).unwrap_err();
        assert!(err.contains("table `lb.stock`"), "{err}");
        assert!(
            err.contains("column `qty` is text where the sink writes numeric"),
            "{err}"
        );
        assert!(
            err.contains("column `_lb_event_id` (text) is missing"),
            "{err}"
        );
        assert!(err.contains("column `extra` is not written"), "{err}");
        assert!(
            err.contains("primary key is (qty) where the sink needs (sku)"),
            "{err}"
        );
    }

    #[test]
    fn refuses_names_it_cannot_use() {
        let ok = schema("stock", &["sku"], &[("sku", FieldType::String)]);
        assert_eq!(check_names("lb", &ok), Ok(()));
        let reserved = schema(
            "stock",
            &["sku"],
            &[("sku", FieldType::String), ("_lb_seq", FieldType::Integer)],
        );
        assert!(
            check_names("lb", &reserved)
                .unwrap_err()
                .contains("_lb_seq")
        );
        let long = "x".repeat(64);
        let too_long = schema(&long, &["sku"], &[("sku", FieldType::String)]);
        assert!(
            check_names("lb", &too_long)
                .unwrap_err()
                .contains("63-byte")
        );
        let tombstones = schema(TOMBSTONES, &["sku"], &[("sku", FieldType::String)]);
        assert!(check_names("lb", &tombstones).is_err());
        let keyless = schema("stock", &[], &[("sku", FieldType::String)]);
        assert!(check_names("lb", &keyless).unwrap_err().contains("no key"));
    }
}
