//! The state store: per-resource checkpoints, the key -> row-hash state that lets capture tell
//! a real change from a re-read, and the outbox of change events.
//!
//! Invariants every backend keeps:
//! - **One transaction per commit.** A [`Commit`]'s events, state changes and checkpoint are
//!   all visible or none is; a crash at any point leaves the previous commit intact.
//! - **Gap-free outbox.** Events get consecutive sequence numbers starting at 1, in the order
//!   they are committed; a sequence number is never reused and never skipped. Retention
//!   ([`Store::prune`]) only removes a prefix, never past what a subscription still needs, and
//!   a read after a removed position fails ([`StoreError::Expired`]) instead of skipping.
//! - **Ordered key state.** [`Store::key_state_page`] walks a resource's keys in ascending
//!   byte order of their encoding, which is how snapshot scans merge against it.
//!
//! SQLite is the default backend (one file, `store::sqlite`); the trait leaves room for a
//! PostgreSQL backend for multi-instance deployments.

pub mod delivery;
mod error;
pub mod sqlite;

use async_trait::async_trait;

pub use delivery::{
    AuditEntry, Control, DeadLetter, DeliveryCounts, DeliveryStore, DueEvent, Parked, Settlement,
    SubscriptionRow, SubscriptionState, record_key,
};
pub use error::StoreError;
pub use sqlite::SqliteStore;

use crate::model::{NewEvent, StoredEvent};

/// A 128-bit hash of a record's canonical JSON: equal hashes mean an unchanged record.
pub type RowHash = [u8; 16];

/// What the store knows of one key of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// Order-preserving encoding of the key (see `capture::key`).
    pub key: Vec<u8>,
    pub hash: RowHash,
    /// Number of changes emitted for this key so far; part of deterministic event ids. 0 for
    /// a row known only from a silent baseline (`initial = "none"`), which capture may still
    /// owe an event (see `capture::target::BaselineWindow`).
    pub version: u64,
}

/// A key's state together with the last record emitted for it (JSON text), used as the
/// `before` image of the next change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub state: KeyState,
    pub record: String,
}

/// A change to the key state, applied in the same transaction as the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// Insert or replace the state of `state.key`, with the record as JSON text.
    Put { state: KeyState, record: String },
    /// Forget a key (after its deletion was emitted).
    Remove { key: Vec<u8> },
}

/// Everything one capture step persists, atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    pub resource: String,
    /// Appended to the outbox in this order.
    pub events: Vec<NewEvent>,
    pub state: Vec<StateChange>,
    /// The resource's new checkpoint (strategy-specific JSON); `None` leaves it unchanged.
    pub checkpoint: Option<serde_json::Value>,
}

/// The outbox positions a commit was given; `None` when it carried no events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Which events a reader wants. Empty lists mean "no restriction".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of these resources.
    pub resources: Vec<String>,
    /// Only events of these exact CloudEvents types (`inventory.updated`).
    pub types: Vec<String>,
}

/// A page of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// Matching events with `seq > after`, ascending.
    pub events: Vec<StoredEvent>,
    /// Where the next read should start (`after` for the next call): the last seq this read
    /// examined, so a filtered reader does not re-scan events it skipped. Never less than
    /// the `after` it was called with.
    pub next_after: u64,
}

/// Durable capture state. Contract: methods may be called concurrently from several tasks;
/// [`Store::commit`] is atomic and, once it returns `Ok`, durable (survives kill -9).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The resource's checkpoint, `None` before its first commit with one.
    async fn checkpoint(&self, resource: &str) -> Result<Option<serde_json::Value>, StoreError>;

    /// States and records of the given keys that the store knows (unknown keys are absent).
    async fn key_records(
        &self,
        resource: &str,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<KeyRecord>, StoreError>;

    /// Up to `limit` key states with `key > after` (all when `after` is `None`), ascending by
    /// key bytes.
    async fn key_state_page(
        &self,
        resource: &str,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyState>, StoreError>;

    /// Number of keys stored for a resource.
    async fn key_count(&self, resource: &str) -> Result<u64, StoreError>;

    /// Persists events, state changes and checkpoint in one transaction.
    async fn commit(&self, commit: Commit) -> Result<Option<Appended>, StoreError>;

    /// Reads up to `limit` events with `seq > after` matching `filter`.
    async fn events(
        &self,
        after: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventPage, StoreError>;

    /// The highest sequence number committed (0 when the outbox is empty).
    async fn last_seq(&self) -> Result<u64, StoreError>;

    /// Every seq up to this was removed by retention (0 when none was); reading after a
    /// lower position fails with [`StoreError::Expired`].
    async fn pruned_through(&self) -> Result<u64, StoreError>;

    /// Retention: removes up to `max_rows` of the oldest events committed before
    /// `older_than_ms` (unix ms), only a prefix of the outbox and never an event a
    /// subscription still needs. Returns how many were removed.
    async fn prune(&self, older_than_ms: i64, max_rows: usize) -> Result<u64, StoreError>;
}
