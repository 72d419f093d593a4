//! One subscription's delivery loop: due retries first, then the outbox after the cursor,
//! handed to the sink in waves that hold at most one event per record.
//!
//! How the guarantees hold:
//! - **At least once, nothing lost.** The cursor moves only in [`DeliveryStore::advance`],
//!   after every event it passes was delivered, or parked (retry, or waiting behind its
//!   record) or dead-lettered in the same transaction. A crash before that redelivers the
//!   window, with the same ids.
//! - **Per-record order.** A window's events are grouped by record (resource + subject);
//!   wave `i` holds the `i`-th event of each record, so a record's event goes out only after
//!   its predecessor's outcome. When one fails, the record's later events are parked behind
//!   it, and so are new events of any record that has parked events, until the store
//!   releases them one by one (see `store::delivery`).
//! - **Unrelated records are not blocked.** A failing event is parked with its retry time
//!   and the cursor moves on; only when the endpoint as a whole throttles (429/5xx gateway
//!   answers, unreachable) is the whole subscription held back, and then the rest of the
//!   window is parked rather than hammered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use indexmap::IndexMap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::retry::RetryPolicy;
use super::sink::{Outcome, Sink, SinkError};
use super::stats::SubscriptionStats;
use crate::model::StoredEvent;
use crate::store::{
    Control, DeliveryStore, DueEvent, EventFilter, Parked, Settlement, StoreError,
    SubscriptionState, record_key,
};

/// The actor named in the audit log for the dispatcher's own actions.
pub const SYSTEM_ACTOR: &str = "system";
/// Wait between sink start-up attempts, growing to [`MAX_STARTUP_BACKOFF`].
const STARTUP_BACKOFF: Duration = Duration::from_secs(1);
const MAX_STARTUP_BACKOFF: Duration = Duration::from_secs(30);
/// Wait after a store failure before the next round.
const STORE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest idle wait; a missed wake-up costs at most this.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// What the dispatcher of one subscription needs.
pub struct Dispatcher {
    pub name: String,
    pub sink: Arc<dyn Sink>,
    pub store: Arc<dyn DeliveryStore>,
    pub filter: EventFilter,
    pub batch_size: usize,
    pub retry: RetryPolicy,
    pub stats: Arc<SubscriptionStats>,
    /// The outbox's last committed seq (from capture).
    pub committed: watch::Receiver<u64>,
    /// Bumped after every operator action on this subscription.
    pub control: watch::Receiver<u64>,
}

/// The dispatcher's copy of its durable state.
struct Position {
    cursor: u64,
    state: SubscriptionState,
    /// Records with parked events.
    parked: HashSet<String>,
    /// Deliveries held back until then (throttling endpoint).
    held_until: Option<Instant>,
}

/// Why a round stopped early.
enum Halt {
    /// The endpoint throttles or is unreachable: hold everything until then (unix ms).
    Hold(i64),
    /// The endpoint answered 410 Gone.
    Gone(String),
}

impl Dispatcher {
    /// Runs until `shutdown` turns true. Never returns an error: failures are reported in
    /// the stats and retried.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if !self.start_sink(&mut shutdown).await {
            return;
        }
        let mut position = None;
        while !*shutdown.borrow() {
            if self.control.has_changed().unwrap_or(false) {
                self.control.borrow_and_update();
                position = None;
            }
            let pos = match position.as_mut() {
                Some(pos) => pos,
                None => match self.load().await {
                    Ok(pos) => position.insert(pos),
                    Err(e) => {
                        self.store_failed(&e);
                        self.pause(STORE_BACKOFF, &mut shutdown).await;
                        continue;
                    }
                },
            };
            let wait = match self.round(pos).await {
                Ok(Some(wait)) => wait,
                Ok(None) => continue,
                Err(e) => {
                    self.store_failed(&e);
                    position = None;
                    STORE_BACKOFF
                }
            };
            self.pause(wait, &mut shutdown).await;
        }
        self.sink.shutdown().await;
        tracing::info!(subscription = %self.name, "delivery stopped");
    }

    /// Starts the sink, retrying with backoff; `false` when shut down first.
    async fn start_sink(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut backoff = STARTUP_BACKOFF;
        loop {
            match self.sink.startup().await {
                Ok(()) => {
                    self.stats.update(|l| {
                        l.sink_ready = true;
                        l.last_error = None;
                    });
                    tracing::info!(subscription = %self.name, "sink started");
                    return true;
                }
                Err(e) => {
                    let hint = match &e {
                        SinkError::Unavailable(_) => "retrying",
                        SinkError::Misconfigured(_) => "needs an operator; retrying",
                    };
                    tracing::warn!(subscription = %self.name, error = %e, hint, "sink did not start");
                    self.stats.update(|l| {
                        l.sink_ready = false;
                        l.last_error = Some(format!("sink start-up: {e}"));
                    });
                }
            }
            if !self.pause(backoff, shutdown).await {
                return false;
            }
            backoff = (backoff * 2).min(MAX_STARTUP_BACKOFF);
        }
    }

    /// Sleeps up to `wait`, waking early for new events, operator actions or shutdown.
    /// Returns `false` on shutdown.
    async fn pause(&mut self, wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
        if *shutdown.borrow() {
            return false;
        }
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        tokio::select! {
            () = &mut sleep => {}
            changed = self.committed.changed() => {
                // Capture stopped before us: nothing new will be committed, so only time
                // (due retries) can bring work; never spin on the closed channel.
                if changed.is_err() {
                    tokio::select! {
                        () = &mut sleep => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            changed = self.control.changed() => {
                if changed.is_ok() {
                    // Seen again at the top of the loop.
                    self.control.mark_changed();
                } else {
                    tokio::select! {
                        () = &mut sleep => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
            _ = shutdown.changed() => {}
        }
        !*shutdown.borrow()
    }

    async fn load(&self) -> Result<Position, StoreError> {
        let row = self.store.subscription(&self.name).await?.ok_or_else(|| {
            StoreError::Io(format!("subscription {} is not registered", self.name))
        })?;
        let parked = self.store.parked_records(&self.name).await?;
        Ok(Position {
            cursor: row.cursor,
            state: row.state,
            parked: parked.into_iter().collect(),
            held_until: None,
        })
    }

    fn store_failed(&self, e: &StoreError) {
        tracing::warn!(subscription = %self.name, error = %e, "delivery store failure, retrying");
        self.stats
            .update(|l| l.last_error = Some(format!("state store: {e}")));
    }

    /// One round: due retries, then a window of new events. Returns how long to wait before
    /// the next round (`None`: go on at once).
    async fn round(&mut self, pos: &mut Position) -> Result<Option<Duration>, StoreError> {
        if pos.state != SubscriptionState::Active {
            return Ok(Some(IDLE_POLL));
        }
        if let Some(until) = pos.held_until {
            let now = Instant::now();
            if until > now {
                return Ok(Some(until - now));
            }
            pos.held_until = None;
            self.stats.update(|l| l.held_until = None);
        }
        let due = self
            .store
            .due(&self.name, now_ms(), self.batch_size)
            .await?;
        let had_due = !due.is_empty();
        if had_due && let Some(halt) = self.deliver_due(pos, due).await? {
            self.halt(pos, halt).await?;
            return Ok(None);
        }
        // Marked seen before reading, so a commit during the read wakes the next wait.
        self.committed.borrow_and_update();
        let page = self
            .store
            .events(pos.cursor, self.batch_size, &self.filter)
            .await?;
        if page.next_after <= pos.cursor {
            if had_due {
                return Ok(None);
            }
            return Ok(Some(self.idle_wait().await?));
        }
        let full = page.events.len() >= self.batch_size;
        let halt = self
            .deliver_window(pos, page.events, page.next_after)
            .await?;
        if let Some(halt) = halt {
            self.halt(pos, halt).await?;
            return Ok(None);
        }
        Ok(if full || had_due {
            None
        } else {
            Some(Duration::ZERO)
        })
    }

    /// How long until the next parked event is due (bounded by [`IDLE_POLL`]).
    async fn idle_wait(&self) -> Result<Duration, StoreError> {
        let wait = match self.store.next_due(&self.name).await? {
            Some(at) => Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)),
            None => IDLE_POLL,
        };
        Ok(wait.min(IDLE_POLL))
    }

    async fn halt(&mut self, pos: &mut Position, halt: Halt) -> Result<(), StoreError> {
        match halt {
            Halt::Hold(until_ms) => {
                let wait = Duration::from_millis(u64::try_from(until_ms - now_ms()).unwrap_or(0));
                pos.held_until = Some(Instant::now() + wait);
                let shown = chrono::DateTime::from_timestamp_millis(until_ms);
                self.stats.update(|l| l.held_until = shown);
                tracing::info!(subscription = %self.name, wait_ms = wait.as_millis() as u64, "endpoint throttled or unreachable, holding deliveries");
            }
            Halt::Gone(reason) => {
                self.store
                    .control(
                        &self.name,
                        SYSTEM_ACTOR,
                        Control::SetState {
                            state: SubscriptionState::Disabled,
                            reason: Some(reason.clone()),
                        },
                        now_ms(),
                    )
                    .await?;
                pos.state = SubscriptionState::Disabled;
                self.stats.disabled();
                self.stats.update(|l| l.last_error = Some(reason.clone()));
                tracing::warn!(subscription = %self.name, reason = %reason, "subscription disabled by its endpoint");
            }
        }
        Ok(())
    }

    /// Delivers due parked events (in waves, by record) and settles them.
    async fn deliver_due(
        &self,
        pos: &mut Position,
        due: Vec<DueEvent>,
    ) -> Result<Option<Halt>, StoreError> {
        let attempts: HashMap<u64, u32> = due.iter().map(|d| (d.event.seq, d.attempts)).collect();
        let mut queues = by_record(due.into_iter().map(|d| d.event));
        let mut settled = Vec::new();
        let mut halt = None;
        while halt.is_none() && !queues.is_empty() {
            let wave = next_wave(&mut queues);
            let events: Vec<StoredEvent> = wave.into_iter().map(|(_, e)| e).collect();
            let outcomes = self.sink.deliver(&events).await;
            for (event, outcome) in events.iter().zip(outcomes_for(&events, outcomes)) {
                let made = attempts.get(&event.seq).copied().unwrap_or(0) + 1;
                match outcome {
                    Outcome::Delivered => {
                        self.stats.delivered(1);
                        settled.push((event.seq, Settlement::Delivered));
                    }
                    Outcome::Retry(failure) => {
                        let settlement = match self.retry.next_delay(made, failure.retry_after) {
                            Some(delay) => {
                                self.stats.retried(1);
                                let next_at_ms = now_ms() + millis(delay);
                                if failure.throttle {
                                    halt = Some(Halt::Hold(next_at_ms));
                                }
                                Settlement::Retry {
                                    attempts: made,
                                    next_at_ms,
                                    error: failure.reason.clone(),
                                }
                            }
                            None => {
                                self.stats.dead_lettered(1);
                                tracing::warn!(subscription = %self.name, seq = event.seq, attempts = made, reason = %failure.reason, "event dead-lettered");
                                Settlement::Dead {
                                    attempts: made,
                                    reason: failure.reason.clone(),
                                }
                            }
                        };
                        self.stats
                            .update(|l| l.last_error = Some(failure.reason.clone()));
                        settled.push((event.seq, settlement));
                    }
                    // Left parked and due: delivered first once an operator resumes.
                    Outcome::Gone(reason) => halt = Some(Halt::Gone(reason)),
                }
            }
        }
        if !settled.is_empty() {
            let cleared = self.store.settle(&self.name, now_ms(), settled).await?;
            for record in cleared {
                pos.parked.remove(&record);
            }
        }
        Ok(halt)
    }

    /// Delivers a window of new events and moves the cursor to `next_after`, parking what
    /// could not be delivered.
    async fn deliver_window(
        &self,
        pos: &mut Position,
        events: Vec<StoredEvent>,
        next_after: u64,
    ) -> Result<Option<Halt>, StoreError> {
        let mut parked: Vec<Parked> = Vec::new();
        let mut queued = Vec::with_capacity(events.len());
        for event in events {
            let record = record_key(&event);
            if pos.parked.contains(&record) {
                parked.push(waiting(&event, record));
            } else {
                queued.push(event);
            }
        }
        let mut queues = by_record(queued.into_iter());
        // Records with a parked event from this window: their later events wait behind it.
        let mut blocked: HashSet<String> = HashSet::new();
        let mut halt: Option<Halt> = None;
        while !queues.is_empty() {
            let wave = next_wave(&mut queues);
            if let Some(h) = &halt {
                // Held back: park the rest, first of each record due when the hold ends.
                let due_at = match h {
                    Halt::Hold(at) => *at,
                    Halt::Gone(_) => now_ms(),
                };
                for (record, event) in wave {
                    let first = blocked.insert(record.clone());
                    let mut p = waiting(&event, record);
                    if first {
                        p.next_at_ms = Some(due_at);
                    }
                    parked.push(p);
                }
                continue;
            }
            let (records, events): (Vec<String>, Vec<StoredEvent>) = wave.into_iter().unzip();
            let outcomes = self.sink.deliver(&events).await;
            let mut delivered = 0;
            for ((record, event), outcome) in records
                .into_iter()
                .zip(&events)
                .zip(outcomes_for(&events, outcomes))
            {
                match outcome {
                    Outcome::Delivered => delivered += 1,
                    Outcome::Retry(failure) => {
                        self.stats
                            .update(|l| l.last_error = Some(failure.reason.clone()));
                        let mut p = waiting(event, record.clone());
                        p.attempts = 1;
                        p.last_error = Some(failure.reason.clone());
                        match self.retry.next_delay(1, failure.retry_after) {
                            Some(delay) => {
                                self.stats.retried(1);
                                let at = now_ms() + millis(delay);
                                p.next_at_ms = Some(at);
                                if failure.throttle && halt.is_none() {
                                    halt = Some(Halt::Hold(at));
                                }
                                blocked.insert(record);
                            }
                            None => {
                                self.stats.dead_lettered(1);
                                tracing::warn!(subscription = %self.name, seq = event.seq, attempts = 1, reason = %failure.reason, "event dead-lettered");
                                p.dead = Some(failure.reason);
                            }
                        }
                        parked.push(p);
                    }
                    Outcome::Gone(reason) => {
                        let mut p = waiting(event, record.clone());
                        p.next_at_ms = Some(now_ms());
                        p.last_error = Some(reason.clone());
                        parked.push(p);
                        blocked.insert(record);
                        halt = Some(Halt::Gone(reason));
                    }
                }
            }
            self.stats.delivered(delivered);
            // Later events of a record that just failed wait behind it.
            for record in &blocked {
                if let Some(rest) = queues.shift_remove(record) {
                    parked.extend(rest.into_iter().map(|e| waiting(&e, record.clone())));
                }
            }
        }
        let newly: Vec<String> = parked
            .iter()
            .filter(|p| p.dead.is_none())
            .map(|p| p.record.clone())
            .collect();
        let moved = self
            .store
            .advance(&self.name, pos.cursor, next_after, parked)
            .await?;
        if moved {
            pos.cursor = next_after;
            pos.parked.extend(newly);
        } else {
            // An operator moved the cursor meanwhile: what we delivered is delivered (at
            // least once), the rest is read again from the new position.
            tracing::info!(subscription = %self.name, "cursor moved by an operator during delivery");
            *pos = self.load().await?;
        }
        Ok(halt)
    }
}

/// A parked entry for `event` that waits behind an earlier event of its record.
fn waiting(event: &StoredEvent, record: String) -> Parked {
    Parked {
        seq: event.seq,
        record,
        attempts: 0,
        next_at_ms: None,
        last_error: None,
        dead: None,
    }
}

/// Events grouped by record, each group in seq order, groups in order of first appearance.
fn by_record(events: impl Iterator<Item = StoredEvent>) -> IndexMap<String, VecDeque<StoredEvent>> {
    let mut queues: IndexMap<String, VecDeque<StoredEvent>> = IndexMap::new();
    for event in events {
        queues
            .entry(record_key(&event))
            .or_default()
            .push_back(event);
    }
    for queue in queues.values_mut() {
        queue.make_contiguous().sort_by_key(|e| e.seq);
    }
    queues
}

/// The next event of every record (at most one per record), removing emptied groups.
fn next_wave(queues: &mut IndexMap<String, VecDeque<StoredEvent>>) -> Vec<(String, StoredEvent)> {
    let mut wave = Vec::with_capacity(queues.len());
    for (record, queue) in queues.iter_mut() {
        if let Some(event) = queue.pop_front() {
            wave.push((record.clone(), event));
        }
    }
    queues.retain(|_, q| !q.is_empty());
    wave
}

/// The sink's outcomes, made exactly one per event: a sink that answered too few is a bug,
/// and the missing ones are treated as failures rather than as deliveries.
fn outcomes_for(events: &[StoredEvent], mut outcomes: Vec<Outcome>) -> Vec<Outcome> {
    if outcomes.len() != events.len() {
        tracing::error!(
            expected = events.len(),
            got = outcomes.len(),
            "sink returned the wrong number of outcomes"
        );
        outcomes.resize(
            events.len(),
            Outcome::Retry(super::sink::Failure::endpoint("sink gave no outcome")),
        );
    }
    outcomes
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}
