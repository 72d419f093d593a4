//! Diffing the current rows of known keys against the stored state: the strategies that learn
//! *which* keys changed (the trigger change log, SQL Server Change Tracking) and then read the
//! rows back share this. A key whose row is gone is a deletion if it was live; a row whose
//! hash equals the one last emitted is suppressed, so reading a key again never emits twice.

use std::collections::HashMap;

use chrono::Utc;

use super::CaptureError;
use super::event::Found;
use super::key::{Observed, TOMBSTONE, encode_key, key_json, subject};
use super::target::{BaselineWindow, Target};
use crate::model::{ChangeOp, Value};
use crate::store::{KeyRecord, Store};

/// A changed key, identified as its row would be: encoded key, subject and key object.
pub struct ChangedKey {
    key: Vec<u8>,
    subject: String,
    key_json: serde_json::Value,
    /// Where the change was seen (log id, change-tracking version).
    position: serde_json::Value,
    /// The change was signalled inside a silent baseline's window, so a row only that
    /// baseline holds is emitted even when it hashes the same (the pass may have read it
    /// after the write).
    in_baseline_window: bool,
}

impl ChangedKey {
    /// Identifies a key from its raw values (as the source returned the key columns).
    pub fn from_raw(
        target: &Target,
        raw: &[Value],
        position: serde_json::Value,
    ) -> Result<Self, CaptureError> {
        let mut values = Vec::with_capacity(raw.len());
        // By the target's cached key positions: this runs for every changed row.
        let key_fields = target
            .key_positions()
            .iter()
            .map(|&i| &target.resource.fields[i]);
        for (f, v) in key_fields.zip(raw) {
            values.push(f.to_field_value(v.clone())?);
        }
        let refs: Vec<&Value> = values.iter().collect();
        Ok(Self {
            key: encode_key(&refs),
            subject: subject(&refs),
            key_json: key_json(target, &refs),
            position,
            in_baseline_window: false,
        })
    }

    /// Marks the change as signalled inside `window` when it is (see the field).
    pub fn within(mut self, window: Option<&BaselineWindow>, position: i64) -> Self {
        self.in_baseline_window = window.is_some_and(|w| w.holds_id(position));
        self
    }
}

/// The changes of `keys` (in their order): `current` holds the rows still there, by encoded
/// key. A row that hashes as last emitted is suppressed; one only a silent baseline holds
/// (version 0) is emitted once if its change was signalled inside the baseline's window.
pub async fn diff(
    target: &Target,
    store: &dyn Store,
    keys: Vec<ChangedKey>,
    mut current: HashMap<Vec<u8>, Observed>,
) -> Result<Vec<Found>, CaptureError> {
    let known: HashMap<Vec<u8>, KeyRecord> = store
        .key_records(&target.name, keys.iter().map(|k| k.key.clone()).collect())
        .await?
        .into_iter()
        .map(|k| (k.state.key.clone(), k))
        .collect();
    let mut found = Vec::new();
    for k in keys {
        let prior = known.get(&k.key);
        let live = prior.filter(|p| p.state.hash != TOMBSTONE);
        let prior_version = prior.map_or(0, |p| p.state.version);
        let before = Some(live.map_or_else(|| "null".to_owned(), |p| p.record.clone()));
        match (current.remove(&k.key), live) {
            (Some(o), Some(p))
                if p.state.hash == o.hash && (p.state.version > 0 || !k.in_baseline_window) => {}
            (Some(o), live) => found.push(Found {
                op: if live.is_some() {
                    ChangeOp::Updated
                } else {
                    ChangeOp::Created
                },
                key: k.key,
                subject: o.subject,
                key_json: o.key_json,
                after: Some(o.json),
                hash: o.hash,
                prior_version,
                before,
                time: Utc::now(),
                position: k.position,
            }),
            (None, Some(_)) => found.push(Found {
                op: ChangeOp::Deleted,
                key: k.key,
                subject: k.subject,
                key_json: k.key_json,
                after: None,
                hash: TOMBSTONE,
                prior_version,
                before,
                time: Utc::now(),
                position: k.position,
            }),
            (None, None) => {}
        }
    }
    Ok(found)
}
