//! The `changelog` strategy: triggers (DDL in `sql/changelog/`) write the key of every
//! changed row to a log table; capture reads the log in id order, re-reads the current rows
//! of the logged keys, diffs them against the stored state, commits, and only then prunes the
//! log rows it read.
//!
//! The log is the queue, so no checkpoint is needed to be correct: a crash before pruning
//! re-reads the same log rows, and unchanged rows are suppressed by hash. Pruning deletes
//! exactly the ids read (never a range), so a row committed late with a lower id by a long
//! transaction stays in the log for the next cycle.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::CaptureError;
use super::changelog_table::{ID_COLUMN, TABLE_COLUMN, key_column};
use super::event::{CycleStats, Found, commit_found};
use super::key::{Observed, observe};
use super::recheck::{self, ChangedKey};
use super::target::{BaselineWindow, Checkpoint, Target};
use crate::model::{ChangeOrigin, FieldType, Value};
use crate::source::{
    CompareOp, OrderBy, Param, Predicate, Relation, Row, SelectColumn, SelectQuery, SqlType,
};
use crate::store::Store;

/// Keys re-read per query (each adds one OR branch).
const KEYS_PER_QUERY: usize = 100;
/// Log ids deleted per statement.
const IDS_PER_PRUNE: usize = 200;

/// The log table, in the resource table's schema.
fn log_relation(target: &Target) -> Relation {
    let schema = match &target.resource.relation {
        Relation::Table { schema, .. } => schema.clone(),
        Relation::Query(_) => None,
    };
    Relation::Table {
        schema,
        name: target.def.changelog_table().to_owned(),
    }
}

/// The name triggers write into `TABLE_NAME`: the table as the catalog spells it.
fn logged_table_name(target: &Target) -> Result<String, CaptureError> {
    match &target.resource.relation {
        Relation::Table { name, .. } => Ok(name.clone()),
        Relation::Query(_) => Err(CaptureError::Config(
            "the changelog strategy needs a `table`, not a `query`".into(),
        )),
    }
}

/// Runs one cycle: drains the log in pages.
pub async fn run_cycle(
    target: &Target,
    store: &dyn Store,
    checkpoint: &mut Checkpoint,
) -> Result<CycleStats, CaptureError> {
    let table = logged_table_name(target)?;
    let key_fields = target.resource.key_fields();
    let mut stats = CycleStats::default();
    loop {
        let mut columns = vec![SelectColumn {
            name: ID_COLUMN.to_owned(),
            decode: FieldType::Integer,
        }];
        for n in 1..=key_fields.len() {
            columns.push(SelectColumn {
                name: key_column(n),
                decode: FieldType::String,
            });
        }
        let query = SelectQuery {
            relation: log_relation(target),
            columns,
            filter: vec![table_filter(table.clone())],
            order_by: vec![OrderBy {
                column: ID_COLUMN.to_owned(),
                descending: false,
                binary: false,
            }],
            limit: Some(target.def.batch_size as u64),
        };
        let log = read_log(target, query).await?;
        if log.is_empty() {
            break;
        }
        let full = log.len() >= target.def.batch_size;
        let mut ids = Vec::with_capacity(log.len());
        // Raw key values per distinct key, in order of first appearance, with the key's last
        // log id.
        let mut keys: Vec<(Vec<Value>, i64)> = Vec::new();
        let mut seen_keys: HashMap<String, usize> = HashMap::new();
        for entry in log {
            let mut cells = entry.into_iter();
            let id = match cells.next() {
                Some(Value::Int(id)) => id,
                _ => continue,
            };
            ids.push(id);
            let raw: Vec<Value> = key_fields
                .iter()
                .zip(cells)
                .map(|(f, cell)| match cell {
                    Value::Text(t) => Value::parse(f.decode_type(), &t).unwrap_or(Value::Null),
                    other => other,
                })
                .collect();
            if raw.iter().any(|v| matches!(v, Value::Null)) {
                continue;
            }
            match seen_keys.entry(format!("{raw:?}")) {
                Entry::Occupied(at) => keys[*at.get()].1 = id,
                Entry::Vacant(slot) => {
                    slot.insert(keys.len());
                    keys.push((raw, id));
                }
            }
        }
        stats.rows += keys.len() as u64;
        let baseline = checkpoint.baseline.as_ref();
        let found = diff_keys(target, store, &keys, baseline, ids.last().copied()).await?;
        checkpoint.changelog_id = ids.last().copied().or(checkpoint.changelog_id);
        let committed = commit_found(
            target,
            store,
            ChangeOrigin::Capture,
            found,
            checkpoint.to_stored(),
        )
        .await?;
        stats.record(committed);
        prune(target, &table, &ids).await?;
        if !full {
            break;
        }
    }
    Ok(stats)
}

/// Re-reads the current rows of `keys` (raw key, last log id) and compares them with the
/// stored state.
async fn diff_keys(
    target: &Target,
    store: &dyn Store,
    keys: &[(Vec<Value>, i64)],
    baseline: Option<&BaselineWindow>,
    log_id: Option<i64>,
) -> Result<Vec<Found>, CaptureError> {
    let resource = &target.resource;
    let key_fields = resource.key_fields();
    let position = serde_json::json!({"strategy": "changelog", "log_id": log_id});
    let wanted = keys
        .iter()
        .map(|(raw, id)| {
            Ok(ChangedKey::from_raw(target, raw, position.clone())?.within(baseline, *id))
        })
        .collect::<Result<Vec<_>, CaptureError>>()?;
    let mut current: HashMap<Vec<u8>, Observed> = HashMap::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let alternatives = chunk
            .iter()
            .map(|(raw, _)| {
                Predicate::And(
                    key_fields
                        .iter()
                        .zip(raw)
                        .map(|(f, v)| Predicate::Compare {
                            column: f.column.clone(),
                            op: CompareOp::Eq,
                            param: Param {
                                value: v.clone(),
                                sql_type: f.sql_type,
                            },
                        })
                        .collect(),
                )
            })
            .collect();
        let query = SelectQuery {
            relation: resource.relation.clone(),
            columns: resource.select_columns(),
            filter: vec![Predicate::Or(alternatives)],
            order_by: Vec::new(),
            limit: Some((chunk.len() * 2) as u64),
        };
        for row in target.source.fetch(query).await? {
            let o = observe(target, row)?;
            current.insert(o.key.clone(), o);
        }
    }
    recheck::diff(target, store, wanted, current).await
}

/// The log's highest id for the resource's table (`None` while it is empty): where a silent
/// baseline begins.
pub async fn highest_id(target: &Target) -> Result<Option<i64>, CaptureError> {
    let query = SelectQuery {
        relation: log_relation(target),
        columns: vec![SelectColumn {
            name: ID_COLUMN.to_owned(),
            decode: FieldType::Integer,
        }],
        filter: vec![table_filter(logged_table_name(target)?)],
        order_by: vec![OrderBy {
            column: ID_COLUMN.to_owned(),
            descending: true,
            binary: false,
        }],
        limit: Some(1),
    };
    let rows = read_log(target, query).await?;
    Ok(rows.into_iter().next().and_then(|r| match r.first() {
        Some(Value::Int(id)) => Some(*id),
        _ => None,
    }))
}

/// Rows of this resource's table in the log.
fn table_filter(table: String) -> Predicate {
    Predicate::Compare {
        column: TABLE_COLUMN.to_owned(),
        op: CompareOp::Eq,
        param: Param {
            value: Value::Text(table),
            sql_type: SqlType::Varchar { len: None },
        },
    }
}

/// Reads the log; a log that cannot be read says how to install it.
async fn read_log(target: &Target, query: SelectQuery) -> Result<Vec<Row>, CaptureError> {
    target.source.fetch(query).await.map_err(|e| {
        if e.kind == crate::source::SourceErrorKind::Query {
            CaptureError::Config(format!(
                "cannot read the change log {}: {}; install it with `legacy-bridge \
                 changelog ddl --resource {} --apply` (or give a DBA its output)",
                target.def.changelog_table(),
                e.message,
                target.name
            ))
        } else {
            e.into()
        }
    })
}

/// Deletes exactly the log rows read. A failure is reported but does not undo the commit:
/// the rows are read again next cycle and suppressed by hash.
async fn prune(target: &Target, table: &str, ids: &[i64]) -> Result<(), CaptureError> {
    let dialect = target.source.dialect();
    let from = dialect.from_clause(&log_relation(target));
    for chunk in ids.chunks(IDS_PER_PRUNE) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "DELETE FROM {from} WHERE {} = ? AND {} IN ({marks})",
            dialect.quote(TABLE_COLUMN),
            dialect.quote(ID_COLUMN)
        );
        let mut params = vec![Param {
            value: Value::Text(table.to_owned()),
            sql_type: SqlType::Varchar { len: None },
        }];
        params.extend(chunk.iter().map(|id| Param {
            value: Value::Int(*id),
            sql_type: SqlType::Integer,
        }));
        target
            .source
            .execute(sql, params)
            .await
            .map_err(CaptureError::Prune)?;
    }
    Ok(())
}
