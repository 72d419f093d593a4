//! A subscription's status as operators see it: durable position and backlog from the
//! store, live counters and conditions from the dispatcher, and the lag derived from both.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::runtime::{DeliveryHandle, SubscriptionHandle};
use crate::store::{EventFilter, StoreError, SubscriptionState};

/// One subscription, for `/admin/subscriptions` and `/metrics`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionStatus {
    #[schema(example = "crm")]
    pub name: String,
    /// `webhook`, `nats` or `postgres`.
    #[schema(example = "webhook")]
    pub sink: String,
    pub state: SubscriptionState,
    /// Why it is paused or disabled.
    pub reason: Option<String>,
    /// Every matching event up to this outbox position is delivered, parked or dead.
    #[schema(example = 1200)]
    pub cursor: u64,
    /// Outbox positions after the cursor (events of any resource; an upper bound of the
    /// matching events still to read).
    #[schema(example = 34)]
    pub behind: u64,
    /// Events waiting for a retry, or behind an earlier event of their record.
    pub parked: u64,
    /// Events that exhausted their retries (see `dead-letters`).
    pub dead_letters: u64,
    /// The `time` of the oldest matching event not yet delivered (parked or unread), and its
    /// age in seconds: 0 and null when nothing is waiting.
    pub oldest_undelivered_time: Option<String>,
    #[schema(example = 2.5)]
    pub oldest_undelivered_age_seconds: f64,
    /// Counted since the service started.
    pub delivered: u64,
    /// Failed attempts that were rescheduled, since start.
    pub retried: u64,
    /// Events moved to the dead letters, since start.
    pub dead_lettered: u64,
    /// Times the endpoint disabled the subscription (410), since start.
    pub disabled: u64,
    /// The sink started (connected; stream or tables checked).
    pub sink_ready: bool,
    pub last_error: Option<String>,
    /// Deliveries are held until then (the endpoint throttled or is unreachable).
    pub held_until: Option<String>,
    pub last_delivered_at: Option<String>,
}

/// The status of every subscription, in configuration order. `last_seq` is the outbox head.
pub async fn statuses(
    handle: &DeliveryHandle,
    last_seq: u64,
) -> Result<Vec<SubscriptionStatus>, StoreError> {
    let mut out = Vec::with_capacity(handle.subscriptions.len());
    for (name, sub) in handle.subscriptions.iter() {
        out.push(status_of(handle, name, sub, last_seq).await?);
    }
    Ok(out)
}

async fn status_of(
    handle: &DeliveryHandle,
    name: &str,
    sub: &SubscriptionHandle,
    last_seq: u64,
) -> Result<SubscriptionStatus, StoreError> {
    let store = &handle.store;
    let row = store
        .subscription(name)
        .await?
        .ok_or_else(|| StoreError::Io(format!("subscription {name} is not registered")))?;
    let counts = store.delivery_counts(name).await?;
    // The oldest waiting event: the oldest parked one, or the first unread match.
    let mut oldest: Option<DateTime<Utc>> = None;
    if let Some(seq) = counts.oldest_pending_seq {
        let page = store
            .events(seq.saturating_sub(1), 1, &EventFilter::default())
            .await?;
        oldest = page.events.first().map(|e| e.event.time);
    }
    let unread = store.events(row.cursor, 1, &sub.filter).await?;
    if let Some(first) = unread.events.first() {
        oldest = Some(oldest.map_or(first.event.time, |o| o.min(first.event.time)));
    }
    let age = oldest
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    let counters = sub.stats.counters();
    let live = sub.stats.live();
    let show = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    Ok(SubscriptionStatus {
        name: name.to_owned(),
        sink: sub.sink_kind.to_owned(),
        state: row.state,
        reason: row.reason,
        cursor: row.cursor,
        behind: last_seq.saturating_sub(row.cursor),
        parked: counts.pending,
        dead_letters: counts.dead,
        oldest_undelivered_time: oldest.map(show),
        oldest_undelivered_age_seconds: age,
        delivered: counters.delivered,
        retried: counters.retried,
        dead_lettered: counters.dead_lettered,
        disabled: counters.disabled,
        sink_ready: live.sink_ready,
        last_error: live.last_error,
        held_until: live.held_until.map(show),
        last_delivered_at: live.last_delivered_at.map(show),
    })
}
