//! A captured resource bound for capture: the resource, its capture section, its source, the
//! resolved cursor column, and the checkpoint format every strategy shares.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::CaptureError;
use crate::config::{CaptureDef, FileDef, StrategyKind};
use crate::model::{ChangeOrigin, FieldType, Value};
use crate::resource::Resource;
use crate::source::{ColumnInfo, Row, SelectColumn, Source, SqlType};

/// What a cursor column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// A last-update timestamp: bounded above by the database clock minus the settle delay.
    Timestamp,
    /// An incrementing id or rowversion-like number.
    Integer,
    /// A SQL Server `rowversion`: read as an unsigned counter, bounded above by
    /// `MIN_ACTIVE_ROWVERSION()` so a transaction still in flight (which stamped a lower
    /// value than rows committed after it) is waited for rather than skipped.
    Rowversion,
}

/// The column a `cursor` strategy polls on, resolved against the catalog.
#[derive(Debug, Clone)]
pub struct CursorColumn {
    /// Spelled as the catalog spells it.
    pub column: String,
    pub sql_type: SqlType,
    pub kind: CursorKind,
    /// Zone of a naive timestamp cursor: the mapped field's, else UTC.
    pub timezone: Tz,
}

impl CursorColumn {
    /// Resolves `name` among `columns`, refusing types that cannot order changes.
    pub fn resolve(
        name: &str,
        columns: &[ColumnInfo],
        resource: &Resource,
    ) -> Result<Self, CaptureError> {
        let column = columns
            .iter()
            .find(|c| c.name == name)
            .or_else(|| columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| {
                CaptureError::Config(format!(
                    "cursor column `{name}` does not exist in {}",
                    resource.relation.describe()
                ))
            })?;
        let type_name = column.type_name.to_ascii_lowercase();
        let zoned = ["tz", "time zone", "offset"]
            .iter()
            .any(|z| type_name.contains(z));
        let kind = match column.sql_type {
            SqlType::Timestamp if zoned => {
                // Bounds are bound as naive local text; a zone-aware column would compare
                // them in the session's zone, which may not be the adapter's.
                return Err(CaptureError::Config(format!(
                    "cursor column `{}` is {}; timestamp cursors must be naive (without time \
                     zone), as legacy systems write them; use an integer cursor or snapshot-diff",
                    column.name, column.type_name
                )));
            }
            SqlType::Timestamp => CursorKind::Timestamp,
            SqlType::Binary if type_name == "timestamp" || type_name == "rowversion" => {
                CursorKind::Rowversion
            }
            SqlType::Integer => CursorKind::Integer,
            SqlType::Decimal { scale: 0, .. } => CursorKind::Integer,
            _ => {
                return Err(CaptureError::Config(format!(
                    "cursor column `{}` is {}; a cursor must be an integer, a timestamp or a SQL Server rowversion",
                    column.name, column.type_name
                )));
            }
        };
        let timezone = resource
            .fields
            .iter()
            .find(|f| f.column == column.name)
            .map(|f| f.transform.timezone)
            .unwrap_or(chrono_tz::UTC);
        Ok(Self {
            column: column.name.clone(),
            sql_type: column.sql_type,
            kind,
            timezone,
        })
    }

    /// How the source should decode the cursor column.
    pub fn decode_type(&self) -> FieldType {
        match self.kind {
            CursorKind::Timestamp => FieldType::Timestamp,
            CursorKind::Integer | CursorKind::Rowversion => FieldType::Integer,
        }
    }
}

/// A resource under capture.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub resource: Arc<Resource>,
    pub def: CaptureDef,
    pub source: Arc<dyn Source>,
    /// CloudEvents `source` of its events.
    pub event_source: String,
    pub cursor: Option<CursorColumn>,
    /// `export`: the resource's file section.
    pub file: Option<FileDef>,
    /// Positions of the key fields among the resource's fields, in key order; worked out once
    /// because every row read needs them.
    key_positions: Vec<usize>,
}

impl Target {
    /// A target for `resource` under the capture section `def`.
    pub fn new(
        name: &str,
        resource: Arc<Resource>,
        def: CaptureDef,
        source: Arc<dyn Source>,
        event_source: String,
        cursor: Option<CursorColumn>,
    ) -> Self {
        let key_positions = resource.key_positions();
        Self {
            name: name.to_owned(),
            resource,
            def,
            source,
            event_source,
            cursor,
            file: None,
            key_positions,
        }
    }

    /// See the field.
    pub fn key_positions(&self) -> &[usize] {
        &self.key_positions
    }

    /// The strategy's name for status output.
    pub fn strategy(&self) -> StrategyKind {
        self.def.strategy
    }

    /// The resource's columns, plus the cursor column at the end when it is not mapped.
    pub fn select_columns(&self) -> Vec<SelectColumn> {
        let mut columns = self.resource.select_columns();
        if let Some(c) = &self.cursor
            && !self.resource.fields.iter().any(|f| f.column == c.column)
        {
            columns.push(SelectColumn {
                name: c.column.clone(),
                decode: c.decode_type(),
            });
        }
        columns
    }

    /// Where the raw cursor value sits in a row selected with [`Target::select_columns`].
    pub fn cursor_index(&self) -> Option<usize> {
        let c = self.cursor.as_ref()?;
        Some(
            self.resource
                .fields
                .iter()
                .position(|f| f.column == c.column)
                .unwrap_or(self.resource.fields.len()),
        )
    }

    /// Raw key values (as the source returned them) of a selected row, for keyset paging.
    pub fn raw_key(&self, row: &Row) -> Vec<Value> {
        self.key_positions
            .iter()
            .map(|&i| row.get(i).cloned().unwrap_or(Value::Null))
            .collect()
    }
}

/// How far a full pass (initial load, reconciliation, resync) has come; stored so a pass cut
/// by a crash resumes instead of emitting its first half twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassProgress {
    pub origin: ChangeOrigin,
    /// Hex of the last key whose events are committed.
    pub through: String,
    pub started_at: DateTime<Utc>,
}

/// The checkpoint every strategy stores (one JSON document per resource).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The initial load (or silent baseline) is complete.
    #[serde(default)]
    pub initial_done: bool,
    /// `cursor`: every row with a cursor value below this has been read (JSON of the raw
    /// value); the next cycle reads from it minus the lookback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Value>,
    /// `changelog`: the last log id processed (informational; the log itself is the queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog_id: Option<i64>,
    /// A silent baseline (`initial = "none"`) whose writes-while-it-ran are still to be
    /// emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineWindow>,
    /// `mssql-change-tracking`: every change up to this version is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_version: Option<i64>,
    /// `mssql-change-tracking`: a full diff pass is due (the synced version expired, or the
    /// strategy was switched on for a resource already loaded); once it completes, changes
    /// are followed from this version, taken before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ct_pending: Option<i64>,
    /// Full passes completed.
    #[serde(default)]
    pub passes: u64,
    /// A full pass under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<PassProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciliation_at: Option<DateTime<Utc>>,
    /// `export`: which export is applied, and which one is being applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportCheckpoint>,
}

/// Where the followed position stood while a silent baseline pass ran. The pass may read a
/// row after a write the strategy signals later (a cursor value, a log row or a change-tracking
/// version inside the window); the row then hashes as the baseline, yet nothing was emitted
/// for it. A change signalled inside the window for a row only the baseline holds (key
/// version 0) is therefore emitted once. Outside it, a row that hashes the same is a no-op
/// write, suppressed as usual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineWindow {
    /// Taken before the pass (JSON of the cursor value, the log's highest id or `null`
    /// while the log is empty, the change-tracking version).
    pub from: serde_json::Value,
    /// Taken after the pass (`null` for a log still empty then); `None` until then: no
    /// upper limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<serde_json::Value>,
}

impl BaselineWindow {
    /// Whether a log id or change-tracking version lies inside the window (`from` is
    /// exclusive, `until` inclusive).
    pub fn holds_id(&self, id: i64) -> bool {
        // A `null` end is a log still empty after the pass: nothing was written meanwhile.
        let below_until = match &self.until {
            None => true,
            Some(until) => until.as_i64().is_some_and(|until| id <= until),
        };
        self.from.as_i64().is_none_or(|from| id > from) && below_until
    }
}

/// How far the `export` strategy has come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    /// Content hash and name of the export whose changes are all committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_file: Option<String>,
    /// Content hash of an export whose changes are being committed: it passed (or was
    /// approved past) the guards, so a restart finishes it without asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applying_sha256: Option<String>,
}

impl Checkpoint {
    /// Reads the stored JSON; an unreadable checkpoint is an error, never silently reset.
    pub fn from_stored(value: Option<serde_json::Value>) -> Result<Self, CaptureError> {
        match value {
            None => Ok(Self::default()),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| CaptureError::Config(format!("stored checkpoint is invalid: {e}"))),
        }
    }

    /// The JSON to store.
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::BaselineWindow;

    fn window(from: Value, until: Option<Value>) -> BaselineWindow {
        BaselineWindow { from, until }
    }

    #[test]
    fn a_window_holds_ids_after_its_start_up_to_its_end() {
        let w = window(json!(10), Some(json!(12)));
        assert_eq!(
            [10, 11, 12, 13].map(|id| w.holds_id(id)),
            [false, true, true, false]
        );
    }

    #[test]
    fn an_empty_log_bounds_nothing_at_the_start_and_everything_at_the_end() {
        // Empty when the pass began: every id up to the end is inside.
        assert!(window(Value::Null, Some(json!(3))).holds_id(1));
        // Still empty when it ended: nothing was written meanwhile, so nothing is inside.
        assert!(!window(Value::Null, Some(Value::Null)).holds_id(1));
        // Not closed yet: no upper limit.
        assert!(window(json!(3), None).holds_id(1_000));
    }
}
