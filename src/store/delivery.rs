//! What the store keeps for delivery: per subscription a cursor over the outbox, the events
//! parked for a retry (or waiting behind an earlier event of the same record), dead letters,
//! and an audit log of operator actions.
//!
//! Invariants every backend keeps:
//! - **The cursor only covers settled events.** Every matching event at or below a
//!   subscription's cursor was delivered, is parked, or is a dead letter; parking and moving
//!   the cursor happen in one transaction ([`DeliveryStore::advance`]).
//! - **Per-record order.** Of a subscription's parked events of one record, only the lowest
//!   seq can be due (`next_at_ms` set); the others wait (`None`) and are released one by one,
//!   in seq order, as their predecessor is settled ([`DeliveryStore::settle`]). An event
//!   parked to wait for a predecessor that was settled meanwhile is due at once
//!   ([`DeliveryStore::advance`]), so no waiter is ever left without one ahead of it. Replayed
//!   dead letters are the exception: they are due at once, being old news by then.
//! - **Operator actions are audited** in the same transaction as the action.

use async_trait::async_trait;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};
use crate::model::StoredEvent;

/// Whether a subscription delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    Active,
    /// Stopped by an operator; resumes where it stopped.
    Paused,
    /// Stopped because the endpoint answered 410 Gone; an operator resumes it.
    Disabled,
}

impl SubscriptionState {
    /// The stored and displayed spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Active => "active",
            SubscriptionState::Paused => "paused",
            SubscriptionState::Disabled => "disabled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(SubscriptionState::Active),
            "paused" => Some(SubscriptionState::Paused),
            "disabled" => Some(SubscriptionState::Disabled),
            _ => None,
        }
    }
}

/// A subscription's durable delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub name: String,
    /// Every matching event with `seq <= cursor` is settled (delivered, parked or dead).
    pub cursor: u64,
    pub state: SubscriptionState,
    /// Why it is paused or disabled.
    pub reason: Option<String>,
}

/// The per-record ordering key of an event: its resource and subject.
pub fn record_key(event: &StoredEvent) -> String {
    // Resource names never contain `/`, so the split is unambiguous.
    format!("{}/{}", event.event.resource, event.event.subject)
}

/// An event to park when the cursor passes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub seq: u64,
    /// See [`record_key`].
    pub record: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it is due (unix ms); `None` while an earlier event of the record is parked.
    pub next_at_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Out of attempts already (a schedule with no retries): goes straight to the dead
    /// letters with this reason instead of being parked.
    pub dead: Option<String>,
}

/// A parked event that is due, with the event itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DueEvent {
    pub event: StoredEvent,
    pub attempts: u32,
}

/// How a parked event's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered: forget it and release the record's next waiting event.
    Delivered,
    /// Failed again: try at `next_at_ms`.
    Retry {
        attempts: u32,
        next_at_ms: i64,
        error: String,
    },
    /// Out of attempts: move it to the dead letters and release the record's next event.
    Dead { attempts: u32, reason: String },
}

/// A dead-lettered event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeadLetter {
    #[schema(example = 1234)]
    pub seq: u64,
    #[schema(example = "inventory.updated")]
    pub event_type: String,
    #[schema(example = "A1001/MAIN")]
    pub subject: String,
    #[schema(example = "4f1c2a9e0b7d3c51")]
    pub event_id: String,
    pub attempts: u32,
    /// The last failure (status code or error kind; never the payload).
    #[schema(example = "HTTP 500 Internal Server Error")]
    pub reason: String,
    /// RFC 3339.
    pub failed_at: String,
}

/// One operator action.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: u64,
    /// RFC 3339.
    pub at: String,
    /// The API key's name, or `system` for the dispatcher's own actions (disabling on 410).
    #[schema(example = "ops-team")]
    pub actor: String,
    #[schema(example = "replay")]
    pub action: String,
    pub subscription: Option<String>,
    /// What exactly (seqs replayed, rewound to, reason).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Counts behind a subscription's lag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: u64,
    pub dead: u64,
    /// The lowest parked seq, if any.
    pub oldest_pending_seq: Option<u64>,
}

/// An operator's (or the dispatcher's) change to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Set the state, with a reason shown to operators.
    SetState {
        state: SubscriptionState,
        reason: Option<String>,
    },
    /// Move the cursor back (or forward) to `seq`: events after it are delivered again.
    /// Parked events and dead letters after it are dropped (they will be read again).
    Rewind { seq: u64 },
    /// Make dead letters due again (all of them when `seqs` is `None`); returns how many.
    Replay { seqs: Option<Vec<u64>> },
    /// Remove a subscription that is no longer configured, with its parked events and dead
    /// letters, so it stops holding back outbox retention; returns how many events it held.
    Forget,
}

/// Durable delivery state, next to the outbox it reads. Same contract as [`Store`]: methods
/// may be called concurrently, and each is atomic and durable once it returns `Ok`.
#[async_trait]
pub trait DeliveryStore: Store {
    /// The subscription's row, created at cursor `start` (and active) when new.
    async fn open_subscription(
        &self,
        name: &str,
        start: u64,
    ) -> Result<SubscriptionRow, StoreError>;

    /// One subscription's row.
    async fn subscription(&self, name: &str) -> Result<Option<SubscriptionRow>, StoreError>;

    /// Every subscription the store knows, configured or not, by name.
    async fn subscription_rows(&self) -> Result<Vec<SubscriptionRow>, StoreError>;

    /// Moves the cursor from `from` to `to` and parks `parked`, atomically. Returns `false`
    /// (and changes nothing) when the cursor is no longer `from`: an operator rewound it.
    /// A waiting event whose record has nothing parked ahead of it is made due at once.
    async fn advance(
        &self,
        name: &str,
        from: u64,
        to: u64,
        parked: Vec<Parked>,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` parked events due at `now_ms`, by due time then seq.
    async fn due(&self, name: &str, now_ms: i64, limit: usize)
    -> Result<Vec<DueEvent>, StoreError>;

    /// The earliest due time of the subscription's parked events.
    async fn next_due(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// Records with parked events (delivery of their new events must wait).
    async fn parked_records(&self, name: &str) -> Result<Vec<String>, StoreError>;

    /// Settles parked events (`now_ms` is when released successors become due). Returns the
    /// records that no longer have parked events.
    async fn settle(
        &self,
        name: &str,
        now_ms: i64,
        settled: Vec<(u64, Settlement)>,
    ) -> Result<Vec<String>, StoreError>;

    /// Applies an operator action and records it in the audit log, in one transaction.
    /// Returns how many events it touched (replayed or dropped).
    async fn control(
        &self,
        name: &str,
        actor: &str,
        control: Control,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Up to `limit` dead letters with `seq > after`, ascending.
    async fn dead_letters(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Counts of parked and dead events.
    async fn delivery_counts(&self, name: &str) -> Result<DeliveryCounts, StoreError>;

    /// Up to `limit` audit entries with `id < before` (all when `None`), newest first.
    async fn audit_log(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}
