//! Full passes: scan the whole relation ordered by key and merge it against the stored key
//! state, which the store walks in the same order. Used by the `snapshot-diff` strategy, the
//! initial load, reconciliation and resync.
//!
//! Memory stays bounded whatever the table size: source rows arrive in batches over a
//! bounded channel, stored state is read a page at a time, and found changes are committed
//! every `batch_size`. The source must return keys in byte order (text keys are ordered with
//! a binary collation); a key arriving out of order stops the pass with an error instead of
//! being taken for a deletion.

use std::collections::VecDeque;

use chrono::Utc;

use super::CaptureError;
use super::event::{Found, materialize};
use super::key::{Identified, TOMBSTONE, identify};
use super::target::{Checkpoint, PassProgress, Target};
use crate::model::{ChangeOp, ChangeOrigin, FieldType};
use crate::resource::Resource;
use crate::source::{OrderBy, SelectQuery};
use crate::store::{Commit, KeyState, StateChange, Store};

/// Stored key states read per page during the merge.
const STATE_PAGE: usize = 5_000;

/// What a pass emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Only differences: created, updated, deleted.
    Diff,
    /// Every row as a `snapshot` event, plus deletions (initial load, resync).
    All,
    /// Nothing: record the state as the baseline (`initial = "none"`).
    Silent,
}

/// Counters of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub rows: u64,
    pub changes: u64,
    pub duplicate_keys: u64,
    pub last_seq: Option<u64>,
}

/// The query of a full pass: every mapped column of the whole relation, ordered by the key
/// (text key columns in binary order).
pub fn scan_query(resource: &Resource) -> SelectQuery {
    let order_by = resource
        .key_fields()
        .into_iter()
        .map(|f| OrderBy {
            column: f.column.clone(),
            descending: false,
            binary: f.decode_type() == FieldType::String,
        })
        .collect();
    SelectQuery {
        relation: resource.relation.clone(),
        columns: resource.select_columns(),
        filter: Vec::new(),
        order_by,
        limit: None,
    }
}

/// Runs one full pass and commits it (in batches). `progress` gets the rows scanned so far.
pub async fn run_pass(
    target: &Target,
    store: &dyn Store,
    checkpoint: &mut Checkpoint,
    origin: ChangeOrigin,
    emit: Emit,
    mut progress: impl FnMut(u64),
) -> Result<PassStats, CaptureError> {
    // A pass of the same kind cut short earlier resumes: keys up to `through` are already
    // emitted, so they are only diffed.
    let resume_through = match &checkpoint.pass {
        Some(p) if p.origin == origin => hex::decode(&p.through).ok(),
        _ => None,
    };
    let started_at = match &checkpoint.pass {
        Some(p) if p.origin == origin => p.started_at,
        _ => Utc::now(),
    };
    if emit != Emit::Diff {
        checkpoint.pass = Some(PassProgress {
            origin,
            through: resume_through
                .as_deref()
                .map(hex::encode)
                .unwrap_or_default(),
            started_at,
        });
    }
    let resource = &target.resource;
    let query = scan_query(resource);
    let batch_size = target.def.batch_size;
    let mut rows = target.source.scan(query, batch_size).await;
    let mut stored = StoredKeys::new(target, store);
    let mut merge = Merge {
        target,
        store,
        origin,
        emit,
        resume_through,
        pending: Vec::new(),
        stats: PassStats::default(),
        last_key: None,
    };
    let mut complete = false;
    while let Some(batch) = rows.recv().await {
        let batch = batch?;
        if batch.is_empty() {
            complete = true;
            break;
        }
        for row in batch {
            merge.stats.rows += 1;
            let seen = identify(target, row)?;
            if seen.null_key {
                continue;
            }
            if let Some(last) = &merge.last_key {
                if seen.key == *last {
                    merge.stats.duplicate_keys += 1;
                    continue;
                }
                if seen.key < *last {
                    // No key values in the message: keys may be customer data.
                    return Err(CaptureError::Order(format!(
                        "{} returned row {} with a key lower than the row before; the scan \
                         needs keys in binary order (is a key column collated case- or \
                         accent-insensitively, or padded with characters below the space?)",
                        resource.relation.describe(),
                        merge.stats.rows
                    )));
                }
            }
            // Stored keys below this one are gone from the source.
            while let Some(old) = stored.next_below(&seen.key).await? {
                merge.deleted(old);
            }
            let prior = stored.take_equal(&seen.key).await?;
            merge.present(seen, prior);
        }
        progress(merge.stats.rows);
        if merge.pending.len() >= batch_size {
            merge.flush(checkpoint).await?;
        }
    }
    if !complete {
        // Taking a cut stream for the end of the table would delete every unread key.
        return Err(CaptureError::Source(crate::source::SourceError::new(
            crate::source::SourceErrorKind::Unavailable,
            "the scan stopped before the end of the table",
        )));
    }
    while let Some(old) = stored.next_any().await? {
        merge.deleted(old);
        if merge.pending.len() >= batch_size {
            merge.flush(checkpoint).await?;
        }
    }
    checkpoint.pass = None;
    checkpoint.passes += 1;
    // Marked in the pass's last commit, so a crash cannot separate "done" from its events.
    match origin {
        ChangeOrigin::Initial => {
            // The initial load is a full pass: reconciliation is not due right after it.
            checkpoint.initial_done = true;
            checkpoint.last_reconciliation_at = Some(Utc::now());
        }
        ChangeOrigin::Reconciliation => checkpoint.last_reconciliation_at = Some(Utc::now()),
        ChangeOrigin::Capture | ChangeOrigin::Resync => {}
    }
    merge.flush(checkpoint).await?;
    if merge.stats.duplicate_keys > 0 {
        tracing::warn!(resource = %target.name, duplicates = merge.stats.duplicate_keys, "rows with a duplicate key were skipped; the key does not identify rows uniquely");
    }
    Ok(merge.stats)
}

/// The merge's state between batches.
struct Merge<'a> {
    target: &'a Target,
    store: &'a dyn Store,
    origin: ChangeOrigin,
    emit: Emit,
    resume_through: Option<Vec<u8>>,
    pending: Vec<Found>,
    stats: PassStats,
    last_key: Option<Vec<u8>>,
}

impl Merge<'_> {
    fn position(&self) -> serde_json::Value {
        serde_json::json!({
            "strategy": self.target.strategy().as_str(),
            "pass": self.origin,
        })
    }

    fn emit_all_for(&self, key: &[u8]) -> bool {
        self.emit == Emit::All
            && self
                .resume_through
                .as_deref()
                .is_none_or(|through| key > through)
    }

    /// A source row, with the stored state of its key if any.
    fn present(&mut self, seen: Identified, prior: Option<KeyState>) {
        let live = prior.as_ref().filter(|p| p.hash != TOMBSTONE);
        let op = match live {
            _ if self.emit_all_for(&seen.key) => Some(ChangeOp::Snapshot),
            None => Some(ChangeOp::Created),
            Some(p) if p.hash != seen.hash => Some(ChangeOp::Updated),
            Some(_) => None,
        };
        self.last_key = Some(seen.key.clone());
        let Some(op) = op else { return };
        let position = self.position();
        self.pending.push(Found::of_row(
            op,
            seen.observe(self.target),
            prior.as_ref(),
            position,
        ));
    }

    /// A stored key the source no longer has.
    fn deleted(&mut self, old: KeyState) {
        if old.hash == TOMBSTONE {
            return;
        }
        let position = self.position();
        self.pending.push(Found::deletion(old, position));
    }

    async fn flush(&mut self, checkpoint: &mut Checkpoint) -> Result<(), CaptureError> {
        let found = std::mem::take(&mut self.pending);
        if let (Some(pass), Some(last)) = (checkpoint.pass.as_mut(), &self.last_key) {
            pass.through = hex::encode(last);
        }
        let (mut events, mut state) = if found.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            materialize(self.target, self.store, self.origin, found).await?
        };
        if self.emit == Emit::Silent {
            events.clear();
            // Nothing was emitted, so the count of changes emitted stays (0 on a first
            // load): that marks the rows as a baseline a change signal may still override.
            for change in &mut state {
                if let StateChange::Put { state, .. } = change {
                    state.version = state.version.saturating_sub(1);
                }
            }
        }
        self.stats.changes += events.len() as u64;
        let appended = self
            .store
            .commit(Commit {
                resource: self.target.name.clone(),
                events,
                state,
                checkpoint: Some(checkpoint.to_stored()),
            })
            .await?;
        if let Some(a) = appended {
            self.stats.last_seq = Some(a.last_seq);
        }
        Ok(())
    }
}

/// The stored key states of a resource, read page by page in key order.
pub(super) struct StoredKeys<'a> {
    target: &'a Target,
    store: &'a dyn Store,
    page: VecDeque<KeyState>,
    after: Option<Vec<u8>>,
    exhausted: bool,
}

impl<'a> StoredKeys<'a> {
    pub(super) fn new(target: &'a Target, store: &'a dyn Store) -> Self {
        Self {
            target,
            store,
            page: VecDeque::new(),
            after: None,
            exhausted: false,
        }
    }

    async fn peek(&mut self) -> Result<Option<&KeyState>, CaptureError> {
        if self.page.is_empty() && !self.exhausted {
            let page = self
                .store
                .key_state_page(&self.target.name, self.after.clone(), STATE_PAGE)
                .await?;
            self.exhausted = page.len() < STATE_PAGE;
            self.after = page.last().map(|s| s.key.clone());
            self.page = page.into();
        }
        Ok(self.page.front())
    }

    /// The next stored key if it sorts below `key`.
    pub(super) async fn next_below(
        &mut self,
        key: &[u8],
    ) -> Result<Option<KeyState>, CaptureError> {
        match self.peek().await? {
            Some(s) if s.key.as_slice() < key => Ok(self.page.pop_front()),
            _ => Ok(None),
        }
    }

    /// The stored state of exactly `key`, consumed.
    pub(super) async fn take_equal(
        &mut self,
        key: &[u8],
    ) -> Result<Option<KeyState>, CaptureError> {
        match self.peek().await? {
            Some(s) if s.key.as_slice() == key => Ok(self.page.pop_front()),
            _ => Ok(None),
        }
    }

    pub(super) async fn next_any(&mut self) -> Result<Option<KeyState>, CaptureError> {
        self.peek().await?;
        Ok(self.page.pop_front())
    }
}
