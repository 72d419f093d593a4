//! Turning what a strategy found into outbox events and key-state updates. Event ids are
//! derived from the resource, the key, the key's change count and the new row hash, so the
//! same change always gets the same id and a later change of the same key never does.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::CaptureError;
use super::key::{Observed, TOMBSTONE, json_subject};
use super::target::Target;
use crate::model::{ChangeOp, ChangeOrigin, NewEvent, event_type};
use crate::store::{Commit, KeyState, RowHash, StateChange, Store};

/// A change a strategy found, before the store is asked for its `before` image.
#[derive(Debug, Clone)]
pub struct Found {
    pub op: ChangeOp,
    pub key: Vec<u8>,
    pub subject: String,
    /// `{"sku": "A1001", ...}`: the key fields of the record. `Null` when only the key's
    /// encoding is known (a deletion found by a full pass): key and subject are then taken
    /// from the `before` image.
    pub key_json: serde_json::Value,
    /// The record now; `None` for deletes.
    pub after: Option<serde_json::Value>,
    /// Hash of `after`, [`TOMBSTONE`] for deletes.
    pub hash: RowHash,
    /// Changes emitted for this key before (0 when none).
    pub prior_version: u64,
    /// The record last emitted for this key (or recorded by a silent baseline), when the
    /// strategy already has it; otherwise it is looked up.
    pub before: Option<String>,
    pub time: DateTime<Utc>,
    /// Where in the source the change was seen (cursor value, log id, pass).
    pub position: serde_json::Value,
}

impl Found {
    /// A row whose change is `op`, given the stored state of its key (if any) and where in
    /// the source it was seen.
    pub fn of_row(
        op: ChangeOp,
        seen: Observed,
        prior: Option<&KeyState>,
        position: serde_json::Value,
    ) -> Found {
        let live = prior.is_some_and(|p| p.hash != TOMBSTONE);
        Found {
            op,
            key: seen.key,
            subject: seen.subject,
            key_json: seen.key_json,
            after: Some(seen.json),
            hash: seen.hash,
            prior_version: prior.map_or(0, |p| p.version),
            // A key with no live record has `null` as its before image; otherwise it is
            // looked up from the store.
            before: (!live).then(|| "null".to_owned()),
            time: Utc::now(),
            position,
        }
    }

    /// A stored key the source no longer has. Only the key's encoding is known here;
    /// [`materialize`] names it from the last record.
    pub fn deletion(old: KeyState, position: serde_json::Value) -> Found {
        Found {
            op: ChangeOp::Deleted,
            key: old.key,
            subject: String::new(),
            key_json: serde_json::Value::Null,
            after: None,
            hash: TOMBSTONE,
            prior_version: old.version,
            before: None,
            time: Utc::now(),
            position,
        }
    }
}

/// The deterministic id of the `version`th change of a key.
pub fn event_id(resource: &str, key: &[u8], version: u64, op: ChangeOp, hash: &RowHash) -> String {
    let mut h = Sha256::new();
    h.update(resource.as_bytes());
    h.update([0]);
    h.update(key);
    h.update([0]);
    h.update(version.to_be_bytes());
    h.update(op.as_str().as_bytes());
    h.update(hash);
    hex::encode(&h.finalize()[..16])
}

/// Events and state changes for `found`, with `before` images from the store where the
/// strategy did not have them. Keeps the order of `found`.
pub async fn materialize(
    target: &Target,
    store: &dyn Store,
    origin: ChangeOrigin,
    found: Vec<Found>,
) -> Result<(Vec<NewEvent>, Vec<StateChange>), CaptureError> {
    let missing: Vec<Vec<u8>> = found
        .iter()
        // Version 0 can be a live row too: one a silent baseline recorded.
        .filter(|f| f.before.is_none())
        .map(|f| f.key.clone())
        .collect();
    let mut befores: HashMap<Vec<u8>, String> = HashMap::new();
    if !missing.is_empty() {
        for kr in store.key_records(&target.name, missing).await? {
            befores.insert(kr.state.key, kr.record);
        }
    }
    let mut events = Vec::with_capacity(found.len());
    let mut state = Vec::with_capacity(found.len());
    for f in found {
        let before_text = f.before.or_else(|| befores.remove(&f.key));
        let before: Option<serde_json::Value> = before_text
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .filter(|v: &serde_json::Value| !v.is_null());
        let (subject, key_json) = match (&f.key_json, &before) {
            (serde_json::Value::Null, Some(b)) => identity_from(target, b),
            _ => (f.subject, f.key_json),
        };
        let version = f.prior_version + 1;
        let changed = changed_fields(f.op, before.as_ref(), f.after.as_ref());
        let data = serde_json::json!({
            "op": f.op,
            "origin": origin,
            "key": key_json,
            "before": before,
            "after": f.after,
            "changed": changed,
            "position": f.position,
        });
        events.push(NewEvent {
            id: event_id(&target.name, &f.key, version, f.op, &f.hash),
            resource: target.name.clone(),
            source: target.event_source.clone(),
            event_type: event_type(&target.name, f.op),
            subject,
            time: f.time,
            data,
        });
        let record = match &f.after {
            Some(a) => a.to_string(),
            None => "null".to_owned(),
        };
        state.push(StateChange::Put {
            state: KeyState {
                key: f.key,
                hash: if f.op == ChangeOp::Deleted {
                    TOMBSTONE
                } else {
                    f.hash
                },
                version,
            },
            record,
        });
    }
    Ok((events, state))
}

/// Key object and subject of a record, read from its JSON.
fn identity_from(target: &Target, record: &serde_json::Value) -> (String, serde_json::Value) {
    let key: serde_json::Map<String, serde_json::Value> = target
        .resource
        .schema
        .key
        .iter()
        .map(|k| (k.clone(), record.get(k).cloned().unwrap_or_default()))
        .collect();
    let subject = json_subject(key.values().cloned());
    (subject, serde_json::Value::Object(key))
}

/// What a step committed: events appended and the last outbox position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    pub events: u64,
    pub last_seq: Option<u64>,
}

/// Counters of one strategy cycle that reads changed keys (changelog, change tracking).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub rows: u64,
    pub changes: u64,
    pub last_seq: Option<u64>,
}

impl CycleStats {
    /// Counts a commit of the cycle.
    pub fn record(&mut self, committed: Committed) {
        self.changes += committed.events;
        self.last_seq = committed.last_seq.or(self.last_seq);
    }
}

/// Materializes `found` and commits it with `checkpoint` in one transaction.
pub async fn commit_found(
    target: &Target,
    store: &dyn Store,
    origin: ChangeOrigin,
    found: Vec<Found>,
    checkpoint: serde_json::Value,
) -> Result<Committed, CaptureError> {
    let (events, state) = materialize(target, store, origin, found).await?;
    let count = events.len() as u64;
    let appended = store
        .commit(Commit {
            resource: target.name.clone(),
            events,
            state,
            checkpoint: Some(checkpoint),
        })
        .await?;
    Ok(Committed {
        events: count,
        last_seq: appended.map(|a| a.last_seq),
    })
}

/// Field names whose value differs; every field for a creation, none for deletes and
/// snapshots.
fn changed_fields(
    op: ChangeOp,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
) -> Vec<String> {
    let Some(after) = after.and_then(|a| a.as_object()) else {
        return Vec::new();
    };
    match (op, before.and_then(|b| b.as_object())) {
        (ChangeOp::Created, _) => after.keys().cloned().collect(),
        (ChangeOp::Updated, Some(before)) => after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect(),
        (ChangeOp::Updated, None) => after.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct_per_change() {
        let h = [7; 16];
        let a = event_id("inventory", b"k", 1, ChangeOp::Updated, &h);
        assert_eq!(a, event_id("inventory", b"k", 1, ChangeOp::Updated, &h));
        assert_ne!(a, event_id("inventory", b"k", 2, ChangeOp::Updated, &h));
        assert_ne!(a, event_id("prices", b"k", 1, ChangeOp::Updated, &h));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn changed_lists_differing_fields_only() {
        let before = serde_json::json!({"sku": "A", "qty": "1", "at": "x"});
        let after = serde_json::json!({"sku": "A", "qty": "2", "at": "y"});
        assert_eq!(
            changed_fields(ChangeOp::Updated, Some(&before), Some(&after)),
            vec!["qty", "at"]
        );
        assert!(changed_fields(ChangeOp::Deleted, Some(&before), None).is_empty());
    }
}
