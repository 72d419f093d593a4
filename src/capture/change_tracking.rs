//! The `mssql-change-tracking` strategy: SQL Server records which keys of a tracked table
//! changed, under a database-wide version; each cycle reads the keys changed after the synced
//! version joined back to their current rows (one snapshot transaction, see
//! `source::mssql::change_tracking`), diffs them against the stored state and commits.
//!
//! Why nothing is missed or invented:
//! - The checkpoint's version moves only in the commit of a cycle's last batch, to the version
//!   the snapshot reported; earlier batches commit with the old version, so a crash re-reads
//!   the whole cycle and rows already emitted are suppressed by hash.
//! - SQL Server keeps change history for a retention period only. Before reading, the synced
//!   version is checked against `CHANGE_TRACKING_MIN_VALID_VERSION`; when it has expired,
//!   changes were lost and the cycle reports it instead of reading what is left (see
//!   [`crate::config::OnExpired`] for what happens then).
//! - Full passes (initial load, resync, recovery from expiry) take the current version
//!   *before* they read the table, so a change made during the pass is read afterwards.

use std::collections::HashMap;

use super::CaptureError;
use super::event::{CycleStats, Found, commit_found};
use super::key::observe;
use super::recheck::{self, ChangedKey};
use super::target::{BaselineWindow, Checkpoint, Target};
use crate::model::{ChangeOrigin, Value};
use crate::source::{
    ChangeTracking, SelectColumn, TrackedChanges, TrackedChangesQuery, TrackingVersions,
};
use crate::store::Store;

/// What a cycle found.
pub enum Cycle {
    /// Changes read and committed; the checkpoint is at the snapshot's version.
    Read(CycleStats),
    /// The synced version is older than the table's min valid version: nothing was read.
    Expired(Expiry),
}

/// An expired synced version, and the version a recovery pass would follow from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub synced: i64,
    pub min_valid: i64,
    pub current: i64,
}

impl Expiry {
    /// The operator's message: what happened, why, and the ways out. No row data.
    pub fn describe(&self, target: &Target) -> String {
        format!(
            "change tracking version {} of {} has expired (SQL Server kept changes from version \
             {} on): changes made while the bridge was not reading were cleaned up, so events \
             were lost; ask for a resync (POST /admin/capture/{}/resync) to re-emit every row, \
             or set capture.on_expired to \"reconcile\" (catch up by diff) or \"resync\" \
             (re-emit every row) to do so by itself; raise the database's CHANGE_RETENTION \
             above the longest outage",
            self.synced,
            target.resource.relation.describe(),
            self.min_valid,
            target.name
        )
    }
}

fn tracking(target: &Target) -> Result<&dyn ChangeTracking, CaptureError> {
    target.source.change_tracking().ok_or_else(|| {
        CaptureError::Config(
            "strategy `mssql-change-tracking` needs a source of kind \"mssql\"".into(),
        )
    })
}

/// The version a full pass follows from: the current one, taken before the pass reads the
/// table. Fails clearly when change tracking is off for the table.
pub async fn start_version(target: &Target) -> Result<i64, CaptureError> {
    let versions = tracking(target)?
        .tracking_versions(&target.resource.relation)
        .await?;
    match versions {
        TrackingVersions {
            current: Some(current),
            min_valid: Some(_),
        } => Ok(current),
        _ => Err(CaptureError::Config(format!(
            "change tracking is not enabled on {} or its database (or the login lacks VIEW \
             CHANGE TRACKING); see sql/mssql/enable-change-tracking.sql",
            target.resource.relation.describe()
        ))),
    }
}

/// Runs one cycle from the synced version in `checkpoint.ct_version`.
pub async fn run_cycle(
    target: &Target,
    store: &dyn Store,
    checkpoint: &mut Checkpoint,
) -> Result<Cycle, CaptureError> {
    let since = checkpoint.ct_version.ok_or_else(|| {
        CaptureError::Config("change tracking cycle without a synced version".into())
    })?;
    let key: Vec<SelectColumn> = target
        .resource
        .key_fields()
        .iter()
        .map(|f| SelectColumn {
            name: f.column.clone(),
            decode: f.decode_type(),
        })
        .collect();
    let key_len = key.len();
    let query = TrackedChangesQuery {
        table: target.resource.relation.clone(),
        key,
        columns: target.resource.select_columns(),
        since,
    };
    let (versions, mut rows) = match tracking(target)?
        .tracked_changes(query, target.def.batch_size)
        .await?
    {
        TrackedChanges::Expired(v) => {
            return Ok(Cycle::Expired(Expiry {
                synced: since,
                min_valid: v.min_valid.unwrap_or_default(),
                current: v.current.unwrap_or_default(),
            }));
        }
        TrackedChanges::Rows { versions, rows } => (versions, rows),
    };
    let current = versions.current.unwrap_or(since);
    let mut stats = CycleStats::default();
    // A batch's changes are committed when the next message shows whether it was the last.
    let mut held: Option<Vec<Found>> = None;
    loop {
        let batch = rows.recv().await.ok_or_else(|| {
            CaptureError::Source(crate::source::SourceError::new(
                crate::source::SourceErrorKind::Unavailable,
                "the change-tracking read stopped before its end",
            ))
        })??;
        let last = batch.is_empty();
        if let Some(found) = held.take() {
            if last {
                checkpoint.ct_version = Some(current);
            }
            commit(target, store, found, checkpoint, &mut stats).await?;
        } else if last && current != since {
            checkpoint.ct_version = Some(current);
            commit(target, store, Vec::new(), checkpoint, &mut stats).await?;
        }
        if last {
            return Ok(Cycle::Read(stats));
        }
        stats.rows += batch.len() as u64;
        let baseline = checkpoint.baseline.as_ref();
        held = Some(changes_of(target, store, batch, key_len, baseline).await?);
    }
}

/// The changes in one batch of `[version, key..., columns...]` rows.
async fn changes_of(
    target: &Target,
    store: &dyn Store,
    batch: Vec<Vec<Value>>,
    key_len: usize,
    baseline: Option<&BaselineWindow>,
) -> Result<Vec<Found>, CaptureError> {
    let key_positions = target.key_positions();
    let mut keys = Vec::with_capacity(batch.len());
    let mut current = HashMap::new();
    for row in batch {
        let mut cells = row.into_iter();
        let version = match cells.next() {
            Some(Value::Int(v)) => v,
            _ => 0,
        };
        let raw_key: Vec<Value> = cells.by_ref().take(key_len).collect();
        let columns: Vec<Value> = cells.collect();
        let position = serde_json::json!({"strategy": "mssql-change-tracking", "version": version});
        let changed = ChangedKey::from_raw(target, &raw_key, position)?.within(baseline, version);
        // The join finds no row when it is gone (its key columns are NULL then).
        let gone = key_positions
            .iter()
            .any(|&i| matches!(columns.get(i), None | Some(Value::Null)));
        if !gone {
            // Filed under its own key: under a case-insensitive collation the join can find
            // the row of `ABC` for a tracked `abc` (a key update), which is then a deletion.
            let o = observe(target, columns)?;
            current.insert(o.key.clone(), o);
        }
        keys.push(changed);
    }
    recheck::diff(target, store, keys, current).await
}

async fn commit(
    target: &Target,
    store: &dyn Store,
    found: Vec<Found>,
    checkpoint: &Checkpoint,
    stats: &mut CycleStats,
) -> Result<(), CaptureError> {
    let stored = checkpoint.to_stored();
    stats.record(commit_found(target, store, ChangeOrigin::Capture, found, stored).await?);
    Ok(())
}
