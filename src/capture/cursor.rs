//! The `cursor` strategy: poll rows whose cursor column (last-update timestamp, incrementing
//! id, rowversion) lies between the checkpoint minus a lookback window and an upper bound,
//! ordered by (cursor, key) and paged by keyset.
//!
//! Why nothing is missed or invented:
//! - The upper bound of a timestamp cursor is the database clock minus the settle delay, so
//!   rows of transactions committing "now" are left for the next cycle.
//! - The checkpoint is the largest cursor value read and the next cycle reads from it
//!   *inclusive*, so a group of equal values cut by a page end, a poll boundary or a restart
//!   is read again whole.
//! - Every cycle re-reads the lookback window below the checkpoint (late commits with older
//!   values); rows whose hash equals the stored one are suppressed, so re-reading never
//!   emits twice.
//! - Naive local timestamps repeat an hour when daylight saving ends; while the upper bound
//!   is below the checkpoint, the window is measured from the upper bound instead.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::CaptureError;
use super::event::{Found, commit_found};
use super::key::{Observed, TOMBSTONE, observe};
use super::target::{BaselineWindow, Checkpoint, CursorColumn, CursorKind, Target};
use crate::model::{ChangeOp, ChangeOrigin, FieldType, Value};
use crate::source::{CompareOp, OrderBy, Param, Predicate, SelectQuery};
use crate::store::Store;

/// Counters of one cursor cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub rows: u64,
    pub changes: u64,
    pub last_seq: Option<u64>,
    /// How much older than the cycle the newest fully read data may be: the settle delay
    /// (timestamp cursors).
    pub lag_ms: Option<u64>,
}

/// The clock capture measures the settle window on: the database's, else ours.
pub async fn database_now(target: &Target) -> Result<DateTime<Utc>, CaptureError> {
    Ok(target.source.utc_now().await?.unwrap_or_else(Utc::now))
}

/// Where a cursor starts when the initial load begins: at the upper bound (timestamps) or
/// the current maximum (integers). Changes made during the load are read from there.
pub async fn start_position(target: &Target) -> Result<serde_json::Value, CaptureError> {
    let cursor = cursor_of(target)?;
    match cursor.kind {
        CursorKind::Timestamp => {
            let now = database_now(target).await?;
            Ok(naive_bound(cursor, now - settle(target)).to_json())
        }
        CursorKind::Rowversion => Ok(rowversion_bound(target).await?.to_json()),
        CursorKind::Integer => {
            let query = SelectQuery {
                relation: target.resource.relation.clone(),
                columns: vec![crate::source::SelectColumn {
                    name: cursor.column.clone(),
                    decode: cursor.decode_type(),
                }],
                filter: Vec::new(),
                order_by: vec![OrderBy {
                    column: cursor.column.clone(),
                    descending: true,
                    binary: false,
                }],
                limit: Some(1),
            };
            let rows = target.source.fetch(query).await?;
            let max = rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
                .filter(|v| !matches!(v, Value::Null))
                .unwrap_or(Value::Int(i64::MIN));
            Ok(max.to_json())
        }
    }
}

/// Where a silent baseline's window ends once its pass is done: the highest value a row the
/// pass could have read may carry. For an integer or a rowversion that is the current
/// maximum; a timestamp is written by the legacy client's clock (often to the second, and
/// not the database's), so stamps up to the lookback ahead of the database clock count: the
/// lookback is the skew the adapter already tolerates.
pub async fn baseline_end(target: &Target) -> Result<serde_json::Value, CaptureError> {
    let cursor = cursor_of(target)?;
    match cursor.kind {
        CursorKind::Timestamp => {
            let lookback =
                Duration::milliseconds(i64::try_from(target.def.lookback_ms).unwrap_or(i64::MAX));
            let now = database_now(target).await?;
            let end = now.checked_add_signed(lookback).unwrap_or(now);
            Ok(naive_bound(cursor, end).to_json())
        }
        CursorKind::Integer | CursorKind::Rowversion => start_position(target).await,
    }
}

fn cursor_of(target: &Target) -> Result<&CursorColumn, CaptureError> {
    target
        .cursor
        .as_ref()
        .ok_or_else(|| CaptureError::Config("cursor strategy without a cursor column".into()))
}

fn settle(target: &Target) -> Duration {
    Duration::milliseconds(i64::try_from(target.def.settle_ms).unwrap_or(i64::MAX))
}

/// An instant as the naive local time the legacy column stores.
fn naive_bound(cursor: &CursorColumn, instant: DateTime<Utc>) -> Value {
    Value::NaiveTimestamp(instant.with_timezone(&cursor.timezone).naive_local())
}

/// Runs one cycle: reads every page of the window and commits each with the advanced
/// checkpoint.
pub async fn run_cycle(
    target: &Target,
    store: &dyn Store,
    checkpoint: &mut Checkpoint,
) -> Result<CycleStats, CaptureError> {
    let cursor = cursor_of(target)?;
    let decode = cursor.decode_type();
    let high = match &checkpoint.cursor {
        Some(json) => Value::from_json(decode, json)
            .map_err(|e| CaptureError::Config(format!("stored cursor is invalid: {e}")))?,
        None => {
            let start = start_position(target).await?;
            Value::from_json(decode, &start)
                .map_err(|e| CaptureError::Config(format!("cursor start is invalid: {e}")))?
        }
    };
    let now = match cursor.kind {
        CursorKind::Timestamp => Some(database_now(target).await?),
        CursorKind::Integer | CursorKind::Rowversion => None,
    };
    let upper = match cursor.kind {
        CursorKind::Rowversion => Some(rowversion_bound(target).await?),
        _ => now.map(|n| naive_bound(cursor, n - settle(target))),
    };
    // After a daylight-saving fall-back the legacy clock repeats an hour: the upper bound
    // drops below the checkpoint, and the window must follow it down or rows stamped in the
    // repeated hour would never be read.
    let reference = match &upper {
        Some(u) if greater(&high, u) => u,
        _ => &high,
    };
    let low = lower_bound(target, cursor, reference);
    let baseline = match &checkpoint.baseline {
        Some(window) => Some(CursorWindow::read(decode, window)?),
        None => None,
    };
    let mut stats = CycleStats::default();
    let mut after: Option<(Value, Vec<Value>)> = None;
    let mut high = high;
    loop {
        let query = page_query(target, cursor, &low, upper.as_ref(), after.as_ref());
        let rows = target.source.fetch(query).await?;
        let full = rows.len() >= target.def.batch_size;
        stats.rows += rows.len() as u64;
        let cursor_at = target.cursor_index().unwrap_or_default();
        let mut seen: Vec<(Observed, Value)> = Vec::with_capacity(rows.len());
        for row in rows {
            let raw_cursor = row.get(cursor_at).cloned().unwrap_or(Value::Null);
            let raw_key = target.raw_key(&row);
            after = Some((raw_cursor.clone(), raw_key));
            let observed = observe(target, row)?;
            if observed.null_key || matches!(raw_cursor, Value::Null) {
                continue;
            }
            seen.push((observed, raw_cursor));
        }
        if let Some((c, _)) = &after
            && greater(c, &high)
        {
            high = c.clone();
        }
        let found = compare_with_state(target, store, cursor, baseline.as_ref(), seen).await?;
        checkpoint.cursor = Some(high.to_json());
        let committed = commit_found(
            target,
            store,
            ChangeOrigin::Capture,
            found,
            checkpoint.to_stored(),
        )
        .await?;
        stats.changes += committed.events;
        stats.last_seq = committed.last_seq.or(stats.last_seq);
        if !full {
            break;
        }
    }
    if now.is_some() {
        // Everything committed before the upper bound has been read.
        stats.lag_ms = Some(target.def.settle_ms);
    }
    Ok(stats)
}

/// A silent baseline's window in cursor values.
struct CursorWindow {
    from: Value,
    until: Option<Value>,
}

impl CursorWindow {
    fn read(decode: FieldType, window: &BaselineWindow) -> Result<Self, CaptureError> {
        let value = |json| {
            Value::from_json(decode, json)
                .map_err(|e| CaptureError::Config(format!("stored baseline is invalid: {e}")))
        };
        Ok(Self {
            from: value(&window.from)?,
            until: window.until.as_ref().map(value).transpose()?,
        })
    }

    /// `from` exclusive, `until` inclusive.
    fn holds(&self, cursor: &Value) -> bool {
        greater(cursor, &self.from) && self.until.as_ref().is_none_or(|u| !greater(cursor, u))
    }
}

/// Rows whose hash differs from the stored state, as changes; and rows stamped inside a
/// silent baseline's window that only the baseline holds (the pass may have read them after
/// their write).
async fn compare_with_state(
    target: &Target,
    store: &dyn Store,
    cursor: &CursorColumn,
    baseline: Option<&CursorWindow>,
    seen: Vec<(Observed, Value)>,
) -> Result<Vec<Found>, CaptureError> {
    if seen.is_empty() {
        return Ok(Vec::new());
    }
    let keys = seen.iter().map(|(o, _)| o.key.clone()).collect();
    let known: std::collections::HashMap<Vec<u8>, crate::store::KeyRecord> = store
        .key_records(&target.name, keys)
        .await?
        .into_iter()
        .map(|k| (k.state.key.clone(), k))
        .collect();
    let mut found = Vec::new();
    for (o, raw_cursor) in seen {
        let prior = known.get(&o.key);
        let live = prior.filter(|p| p.state.hash != TOMBSTONE);
        let op = match live {
            None => ChangeOp::Created,
            Some(p) if p.state.hash != o.hash => ChangeOp::Updated,
            Some(p) if p.state.version == 0 && baseline.is_some_and(|w| w.holds(&raw_cursor)) => {
                ChangeOp::Updated
            }
            Some(_) => continue,
        };
        let time = match (&raw_cursor, cursor.kind) {
            (Value::NaiveTimestamp(ts), CursorKind::Timestamp) => cursor
                .timezone
                .from_local_datetime(ts)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(Utc::now),
            (Value::Timestamp(ts), _) => ts.with_timezone(&Utc),
            _ => Utc::now(),
        };
        found.push(Found {
            op,
            key: o.key,
            subject: o.subject,
            key_json: o.key_json,
            after: Some(o.json),
            hash: o.hash,
            prior_version: prior.map_or(0, |p| p.state.version),
            before: Some(live.map_or_else(|| "null".to_owned(), |p| p.record.clone())),
            time,
            position: serde_json::json!({
                "strategy": "cursor",
                "column": cursor.column,
                "value": raw_cursor.to_json(),
            }),
        });
    }
    Ok(found)
}

/// The highest rowversion every transaction below has committed: `MIN_ACTIVE_ROWVERSION()`
/// minus one (not `@@DBTS`, which counts values of transactions still in flight).
async fn rowversion_bound(target: &Target) -> Result<Value, CaptureError> {
    let query = SelectQuery {
        relation: crate::source::Relation::Query(
            "SELECT MIN_ACTIVE_ROWVERSION() AS MIN_ACTIVE".into(),
        ),
        columns: vec![crate::source::SelectColumn {
            name: "MIN_ACTIVE".into(),
            decode: crate::model::FieldType::Integer,
        }],
        filter: Vec::new(),
        order_by: Vec::new(),
        limit: Some(1),
    };
    let rows = target.source.fetch(query).await?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Int(min_active)) => Ok(Value::Int(min_active.saturating_sub(1))),
        _ => Err(CaptureError::Config(
            "MIN_ACTIVE_ROWVERSION() returned no value; rowversion cursors need SQL Server".into(),
        )),
    }
}

/// The checkpoint minus the lookback window.
fn lower_bound(target: &Target, cursor: &CursorColumn, high: &Value) -> Value {
    match (cursor.kind, high) {
        (CursorKind::Timestamp, Value::NaiveTimestamp(ts)) => {
            let lookback =
                Duration::milliseconds(i64::try_from(target.def.lookback_ms).unwrap_or(i64::MAX));
            Value::NaiveTimestamp(ts.checked_sub_signed(lookback).unwrap_or(*ts))
        }
        (CursorKind::Timestamp, Value::Timestamp(ts)) => {
            let lookback =
                Duration::milliseconds(i64::try_from(target.def.lookback_ms).unwrap_or(i64::MAX));
            Value::Timestamp(ts.checked_sub_signed(lookback).unwrap_or(*ts))
        }
        (CursorKind::Integer | CursorKind::Rowversion, Value::Int(i)) => Value::Int(
            i.saturating_sub(i64::try_from(target.def.lookback_values).unwrap_or(i64::MAX)),
        ),
        (_, other) => other.clone(),
    }
}

fn greater(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x > y,
        (Value::NaiveTimestamp(x), Value::NaiveTimestamp(y)) => x > y,
        (Value::Timestamp(x), Value::Timestamp(y)) => x > y,
        (Value::Decimal(x), Value::Decimal(y)) => x > y,
        (_, Value::Null) => true,
        _ => false,
    }
}

/// `cursor >= low [AND cursor <= upper] [AND (cursor, key) > after] ORDER BY cursor, key`.
fn page_query(
    target: &Target,
    cursor: &CursorColumn,
    low: &Value,
    upper: Option<&Value>,
    after: Option<&(Value, Vec<Value>)>,
) -> SelectQuery {
    let param = |value: &Value, sql_type| Param {
        value: value.clone(),
        sql_type,
    };
    let mut filter = vec![Predicate::Compare {
        column: cursor.column.clone(),
        op: CompareOp::Ge,
        param: param(low, cursor.sql_type),
    }];
    if let Some(upper) = upper {
        filter.push(Predicate::Compare {
            column: cursor.column.clone(),
            op: CompareOp::Le,
            param: param(upper, cursor.sql_type),
        });
    }
    let key_fields = target.resource.key_fields();
    let mut order: Vec<(String, crate::source::SqlType)> =
        vec![(cursor.column.clone(), cursor.sql_type)];
    order.extend(key_fields.iter().map(|f| (f.column.clone(), f.sql_type)));
    if let Some((c, key)) = after {
        let mut values = vec![c.clone()];
        values.extend(key.iter().cloned());
        let columns: Vec<_> = order
            .iter()
            .map(|(column, sql_type)| (column.clone(), *sql_type, false))
            .collect();
        filter.push(Predicate::keyset_after(&columns, &values));
    }
    SelectQuery {
        relation: target.resource.relation.clone(),
        columns: target.select_columns(),
        filter,
        order_by: order
            .into_iter()
            .map(|(column, _)| OrderBy {
                column,
                descending: false,
                binary: false,
            })
            .collect(),
        limit: Some(target.def.batch_size as u64),
    }
}
