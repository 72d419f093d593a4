//! From events to statements: each event becomes one JSON row (its fields, or its key for a
//! delete, plus seq, event id and subject), and each resource of a batch gets at most two
//! set-based statements, an upsert and a delete, taking all its rows as one `jsonb` array.
//!
//! Both statements are guarded by seq, which makes applying any event again (a redelivery, a
//! replay of an older one) harmless:
//! - upsert: a row is inserted unless a tombstone of its record has a seq at least as high;
//!   an existing row is overwritten only when its `_lb_seq` is lower; tombstones of the record
//!   older than the event are removed;
//! - delete: the row goes only when its `_lb_seq` is lower; a tombstone keeps the highest
//!   delete seq, unless a newer row exists (then the delete is simply stale).

use base64::Engine as _;
use serde_json::{Map, Value as Json};

use super::ddl::{APPLIED_AT, EVENT_ID, SEQ, TOMBSTONES, qualified, quote_ident};
use crate::model::{ChangeOp, FieldType, ResourceSchema, StoredEvent};

/// The record's subject travels in each JSON row under this name (not a column).
const SUBJECT: &str = "_lb_subject";

/// What an event does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Change {
    Upsert,
    Delete,
}

/// One event of a batch, ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Planned {
    /// Position in the batch.
    pub index: usize,
    /// Outbox seq of the event.
    pub seq: u64,
    /// Position of its table in the sink.
    pub table: usize,
    pub change: Change,
    /// Column name to JSON value, plus seq, event id and subject.
    pub row: Json,
}

/// What the sink knows of one resource's table: its fields and the statements writing it.
#[derive(Debug, Clone)]
pub(super) struct TableWriter {
    pub resource: String,
    fields: Vec<(String, FieldType)>,
    key: Vec<String>,
    pub upsert_sql: String,
    pub delete_sql: String,
}

impl TableWriter {
    /// Builds the statements of a resource's table in `schema` (no I/O).
    pub fn new(schema: &str, resource: &ResourceSchema) -> TableWriter {
        let fields: Vec<(String, FieldType)> = resource
            .fields
            .iter()
            .map(|(name, f)| (name.clone(), f.ty))
            .collect();
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        let key: Vec<&str> = resource.key.iter().map(String::as_str).collect();
        TableWriter {
            resource: resource.name.clone(),
            upsert_sql: upsert_sql(schema, &resource.name, &names, &key),
            delete_sql: delete_sql(schema, &resource.name, &key),
            fields,
            key: resource.key.clone(),
        }
    }

    /// Turns an event of this resource into its row; `Err` is the reason the event cannot be
    /// applied at all (shown to operators; names fields, never values).
    pub fn plan(&self, index: usize, table: usize, event: &StoredEvent) -> Result<Planned, String> {
        let data = &event.event.data;
        let op: ChangeOp = data
            .get("op")
            .and_then(|op| serde_json::from_value(op.clone()).ok())
            .ok_or("event data has no valid `op`")?;
        let seq = i64::try_from(event.seq).map_err(|_| "seq does not fit a bigint")?;
        let (change, source) = match op {
            ChangeOp::Deleted => {
                let key = [data.get("key"), data.get("before")]
                    .into_iter()
                    .flatten()
                    .find_map(Json::as_object)
                    .ok_or("delete event has neither `key` nor `before`")?;
                (Change::Delete, key)
            }
            ChangeOp::Created | ChangeOp::Updated | ChangeOp::Snapshot => {
                let after = data
                    .get("after")
                    .and_then(Json::as_object)
                    .ok_or("event has no `after` record")?;
                (Change::Upsert, after)
            }
        };
        let mut row = Map::with_capacity(self.fields.len() + 3);
        for (name, ty) in &self.fields {
            let is_key = self.key.contains(name);
            if change == Change::Delete && !is_key {
                continue;
            }
            let value = source.get(name).cloned().unwrap_or(Json::Null);
            if is_key && value.is_null() {
                return Err(format!("key field `{name}` is missing or null"));
            }
            let value = match ty {
                FieldType::Binary => bytea_text(value)
                    .ok_or_else(|| format!("field `{name}` is not base64 binary"))?,
                _ => value,
            };
            row.insert(name.clone(), value);
        }
        row.insert(SEQ.to_owned(), Json::from(seq));
        row.insert(EVENT_ID.to_owned(), Json::from(event.event.id.clone()));
        row.insert(SUBJECT.to_owned(), Json::from(event.event.subject.clone()));
        Ok(Planned {
            index,
            seq: event.seq,
            table,
            change,
            row: Json::Object(row),
        })
    }
}

/// Events use base64 for binary; `bytea` reads its hex form (`\x0102`) from text.
fn bytea_text(value: Json) -> Option<Json> {
    match value {
        Json::Null => Some(Json::Null),
        Json::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .map(|bytes| Json::String(format!("\\x{}", hex::encode(bytes)))),
        _ => None,
    }
}

/// The rows of `$1` typed as the table's row type, plus each row's subject.
fn input_cte(table: &str) -> String {
    format!(
        "\"_lb_in\" AS (\
         SELECT \"_lb_r\".*, \"_lb_e\" ->> '{SUBJECT}' AS {subject} \
         FROM pg_catalog.jsonb_array_elements($1::jsonb) AS \"_lb_e\" \
         CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(NULL::{table}, \"_lb_e\") AS \"_lb_r\")",
        subject = quote_ident(SUBJECT),
    )
}

/// `$2` = resource name: the tombstone of the input row's record.
fn tombstone_of_input(op: &str) -> String {
    format!(
        "\"_lb_t\".\"resource\" = $2 AND \"_lb_t\".\"subject\" = \"_lb_in\".{subject} \
         AND \"_lb_t\".\"seq\" {op} \"_lb_in\".{seq}",
        subject = quote_ident(SUBJECT),
        seq = quote_ident(SEQ),
    )
}

/// The upsert of a resource: `$1` = jsonb array of rows, `$2` = resource name.
pub(super) fn upsert_sql(schema: &str, resource: &str, fields: &[&str], key: &[&str]) -> String {
    let table = qualified(schema, resource);
    let tombstones = qualified(schema, TOMBSTONES);
    let mut columns: Vec<String> = fields.iter().map(|f| quote_ident(f)).collect();
    columns.extend([SEQ, EVENT_ID].map(quote_ident));
    let set: Vec<String> = fields
        .iter()
        .filter(|f| !key.contains(f))
        .copied()
        .chain([SEQ, EVENT_ID, APPLIED_AT])
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
        .collect();
    let conflict: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
    format!(
        "WITH {input}, \
         \"_lb_cleared\" AS (DELETE FROM {tombstones} AS \"_lb_t\" USING \"_lb_in\" WHERE {older}) \
         INSERT INTO {table} AS \"_lb_cur\" ({columns}, {applied}) \
         SELECT {columns}, now() FROM \"_lb_in\" \
         WHERE NOT EXISTS (SELECT 1 FROM {tombstones} AS \"_lb_t\" WHERE {newer}) \
         ON CONFLICT ({conflict}) DO UPDATE SET {set} \
         WHERE \"_lb_cur\".{seq} < EXCLUDED.{seq}",
        input = input_cte(&table),
        older = tombstone_of_input("<"),
        newer = tombstone_of_input(">="),
        columns = columns.join(", "),
        applied = quote_ident(APPLIED_AT),
        conflict = conflict.join(", "),
        set = set.join(", "),
        seq = quote_ident(SEQ),
    )
}

/// The delete of a resource: `$1` = jsonb array of key rows, `$2` = resource name.
pub(super) fn delete_sql(schema: &str, resource: &str, key: &[&str]) -> String {
    let table = qualified(schema, resource);
    let tombstones = qualified(schema, TOMBSTONES);
    let same_key: Vec<String> = key
        .iter()
        .map(|k| format!("\"_lb_cur\".{0} = \"_lb_in\".{0}", quote_ident(k)))
        .collect();
    let same_key = same_key.join(" AND ");
    format!(
        "WITH {input}, \
         \"_lb_removed\" AS (DELETE FROM {table} AS \"_lb_cur\" USING \"_lb_in\" \
         WHERE {same_key} AND \"_lb_cur\".{seq} < \"_lb_in\".{seq}) \
         INSERT INTO {tombstones} AS \"_lb_t\" (\"resource\", \"subject\", \"seq\") \
         SELECT $2, {subject}, {seq} FROM \"_lb_in\" \
         WHERE NOT EXISTS (SELECT 1 FROM {table} AS \"_lb_cur\" \
         WHERE {same_key} AND \"_lb_cur\".{seq} > \"_lb_in\".{seq}) \
         ON CONFLICT (\"resource\", \"subject\") DO UPDATE SET \"seq\" = EXCLUDED.\"seq\" \
         WHERE \"_lb_t\".\"seq\" < EXCLUDED.\"seq\"",
        input = input_cte(&table),
        subject = quote_ident(SUBJECT),
        seq = quote_ident(SEQ),
    )
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::super::ddl::tests::schema;
    use super::*;
    use crate::model::NewEvent;

    fn event(seq: u64, data: Json) -> StoredEvent {
        StoredEvent {
            seq,
            event: NewEvent {
                id: format!("id-{seq}"),
                resource: "stock".into(),
                source: "/sources/pos/stock".into(),
                event_type: "stock.updated".into(),
                subject: "A1/7".into(),
                time: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
                data,
            },
        }
    }

    fn writer() -> TableWriter {
        TableWriter::new(
            "lb",
            &schema(
                "stock",
                &["sku", "store"],
                &[
                    ("sku", FieldType::String),
                    ("store", FieldType::Integer),
                    ("qty", FieldType::Decimal),
                    ("photo", FieldType::Binary),
                ],
            ),
        )
    }

    #[test]
    fn upsert_rows_carry_fields_seq_id_and_subject() {
        let e = event(
            42,
            serde_json::json!({
                "op": "updated",
                "key": {"sku": "A1", "store": 7},
                "after": {"sku": "A1", "store": 7, "qty": "12.50", "photo": "AQL/", "ignored": 1},
            }),
        );
        let p = writer().plan(3, 0, &e).unwrap();
        assert_eq!((p.index, p.table, p.change), (3, 0, Change::Upsert));
        assert_eq!(
            p.row,
            serde_json::json!({
                "sku": "A1", "store": 7, "qty": "12.50", "photo": "\\x0102ff",
                "_lb_seq": 42, "_lb_event_id": "id-42", "_lb_subject": "A1/7",
            })
        );
    }

    #[test]
    fn delete_rows_carry_the_key_only() {
        let e = event(
            9,
            serde_json::json!({
                "op": "deleted",
                "key": {"sku": "A1", "store": 7},
                "before": {"sku": "A1", "store": 7, "qty": "1"},
                "after": null,
            }),
        );
        let p = writer().plan(0, 0, &e).unwrap();
        assert_eq!(p.change, Change::Delete);
        assert_eq!(
            p.row,
            serde_json::json!({
                "sku": "A1", "store": 7,
                "_lb_seq": 9, "_lb_event_id": "id-9", "_lb_subject": "A1/7",
            })
        );
    }

    #[test]
    fn refuses_events_it_cannot_apply_without_echoing_values() {
        let w = writer();
        let reason = |data: Json| w.plan(0, 0, &event(1, data)).unwrap_err();
        assert!(reason(serde_json::json!({"after": {}})).contains("`op`"));
        assert!(reason(serde_json::json!({"op": "created", "after": null})).contains("after"));
        let missing_key = reason(serde_json::json!({"op": "created", "after": {"sku": "A1"}}));
        assert_eq!(missing_key, "key field `store` is missing or null");
        let bad_binary = reason(serde_json::json!({
            "op": "created", "after": {"sku": "A1", "store": 1, "photo": "%%secret%%"}
        }));
        assert_eq!(bad_binary, "field `photo` is not base64 binary");
        let huge = w.plan(0, 0, &event(u64::MAX, serde_json::json!({"op": "created"})));
        assert!(huge.unwrap_err().contains("bigint"));
    }

    #[test]
    fn upsert_is_guarded_by_seq_and_tombstones() {
        let sql = upsert_sql("lb", "stock", &["sku", "store", "qty"], &["sku", "store"]);
        assert!(sql.contains("jsonb_populate_record(NULL::\"lb\".\"stock\", \"_lb_e\")"));
        assert!(sql.contains(
            "DELETE FROM \"lb\".\"_lb_tombstones\" AS \"_lb_t\" USING \"_lb_in\" WHERE \
             \"_lb_t\".\"resource\" = $2 AND \"_lb_t\".\"subject\" = \"_lb_in\".\"_lb_subject\" \
             AND \"_lb_t\".\"seq\" < \"_lb_in\".\"_lb_seq\""
        ));
        assert!(sql.contains(
            "INSERT INTO \"lb\".\"stock\" AS \"_lb_cur\" (\"sku\", \"store\", \"qty\", \
             \"_lb_seq\", \"_lb_event_id\", \"_lb_applied_at\")"
        ));
        assert!(sql.contains("AND \"_lb_t\".\"seq\" >= \"_lb_in\".\"_lb_seq\")"));
        assert!(sql.contains(
            "ON CONFLICT (\"sku\", \"store\") DO UPDATE SET \"qty\" = EXCLUDED.\"qty\", \
             \"_lb_seq\" = EXCLUDED.\"_lb_seq\", \"_lb_event_id\" = EXCLUDED.\"_lb_event_id\", \
             \"_lb_applied_at\" = EXCLUDED.\"_lb_applied_at\" \
             WHERE \"_lb_cur\".\"_lb_seq\" < EXCLUDED.\"_lb_seq\""
        ));
    }

    #[test]
    fn delete_is_guarded_by_seq_and_keeps_the_highest_tombstone() {
        let sql = delete_sql("lb", "stock", &["sku", "store"]);
        assert!(sql.contains(
            "DELETE FROM \"lb\".\"stock\" AS \"_lb_cur\" USING \"_lb_in\" WHERE \
             \"_lb_cur\".\"sku\" = \"_lb_in\".\"sku\" AND \"_lb_cur\".\"store\" = \
             \"_lb_in\".\"store\" AND \"_lb_cur\".\"_lb_seq\" < \"_lb_in\".\"_lb_seq\""
        ));
        assert!(sql.contains("\"_lb_cur\".\"_lb_seq\" > \"_lb_in\".\"_lb_seq\")"));
        assert!(sql.ends_with(
            "ON CONFLICT (\"resource\", \"subject\") DO UPDATE SET \"seq\" = EXCLUDED.\"seq\" \
             WHERE \"_lb_t\".\"seq\" < EXCLUDED.\"seq\""
        ));
    }

    #[test]
    fn names_are_quoted_in_statements() {
        let sql = upsert_sql("lb", "we\"ird", &["k\"ey"], &["k\"ey"]);
        assert!(sql.contains("NULL::\"lb\".\"we\"\"ird\""));
        assert!(sql.contains("ON CONFLICT (\"k\"\"ey\")"));
    }
}
