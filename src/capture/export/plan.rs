//! Planning an export: the staged records, in key order, merged against the stored key state
//! to find what is created, updated and deleted, before anything is committed, so the delete
//! guard can hold a suspicious export whole.

use super::read::Entry;
use crate::capture::CaptureError;
use crate::capture::key::TOMBSTONE;
use crate::capture::snapshot::StoredKeys;
use crate::capture::target::Target;
use crate::model::ChangeOp;
use crate::store::{KeyState, Store};

/// One change to apply.
#[derive(Debug, Clone)]
pub enum Planned {
    /// The staged record `entry` (index into the entries) with the key's stored state.
    Upsert {
        op: ChangeOp,
        entry: usize,
        prior: Option<KeyState>,
    },
    Delete(KeyState),
}

/// What applying an export would do.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Planned>,
    /// Records new to the resource (`snapshot` events on a first export).
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Live records before the export (the base of the delete share).
    pub live_before: u64,
}

impl Plan {
    /// Share of the live records the export deletes.
    pub fn delete_share(&self) -> f64 {
        if self.live_before == 0 {
            0.0
        } else {
            self.deleted as f64 / self.live_before as f64
        }
    }
}

/// Merges `entries` (sorted by key, unique) with the stored state of the target. With
/// `snapshot`, every record is planned as a `snapshot` change (initial load).
pub async fn plan(
    target: &Target,
    store: &dyn Store,
    entries: &[Entry],
    snapshot: bool,
) -> Result<Plan, CaptureError> {
    let mut plan = Plan::default();
    let mut stored = StoredKeys::new(target, store);
    for (i, entry) in entries.iter().enumerate() {
        // Stored keys below this one are gone from the export.
        while let Some(old) = stored.next_below(&entry.key).await? {
            plan.note_stored(old);
        }
        let prior = stored.take_equal(&entry.key).await?;
        let live = prior.as_ref().filter(|p| p.hash != TOMBSTONE);
        if live.is_some() {
            plan.live_before += 1;
        }
        let op = match live {
            // Unchanged since it was last emitted; in a first export cut short by a restart,
            // these are the records whose snapshot events are already committed.
            Some(p) if p.hash == entry.hash => None,
            _ if snapshot => Some(ChangeOp::Snapshot),
            None => Some(ChangeOp::Created),
            Some(_) => Some(ChangeOp::Updated),
        };
        match op {
            // A first export's records are new to the resource, whatever the event says.
            Some(ChangeOp::Created | ChangeOp::Snapshot) => plan.created += 1,
            Some(ChangeOp::Updated) => plan.updated += 1,
            _ => {}
        }
        if let Some(op) = op {
            plan.steps.push(Planned::Upsert {
                op,
                entry: i,
                prior,
            });
        }
    }
    while let Some(old) = stored.next_any().await? {
        plan.note_stored(old);
    }
    Ok(plan)
}

impl Plan {
    /// A stored key the export does not have.
    fn note_stored(&mut self, old: KeyState) {
        if old.hash != TOMBSTONE {
            self.live_before += 1;
            self.deleted += 1;
            self.steps.push(Planned::Delete(old));
        }
    }
}
