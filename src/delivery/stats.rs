//! Live counters and conditions of one subscription, written by its dispatcher and read by
//! `/admin/subscriptions` and `/metrics`. Counters count since start-up (Prometheus
//! semantics); durable state (cursor, parked, dead letters) is read from the store.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

/// Shared by a dispatcher and the readers of its status.
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    disabled: AtomicU64,
    live: Mutex<Live>,
}

/// Conditions that are replaced rather than counted.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The sink started (connected, stream or tables checked).
    pub sink_ready: bool,
    /// The last failure (sink start-up, delivery or store), cleared by the next success.
    pub last_error: Option<String>,
    /// Deliveries are held back until then (the endpoint throttled or is unreachable).
    pub held_until: Option<DateTime<Utc>>,
    /// When an event was last delivered.
    pub last_delivered_at: Option<DateTime<Utc>>,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub disabled: u64,
}

impl SubscriptionStats {
    pub(crate) fn delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Ordering::Relaxed);
            self.update(|l| {
                l.last_delivered_at = Some(Utc::now());
                l.last_error = None;
            });
        }
    }

    pub(crate) fn retried(&self, n: u64) {
        self.retried.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn disabled(&self) {
        self.disabled.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes the live conditions.
    pub(crate) fn update(&self, change: impl FnOnce(&mut Live)) {
        change(&mut self.live.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            disabled: self.disabled.load(Ordering::Relaxed),
        }
    }

    /// The live conditions now.
    pub fn live(&self) -> Live {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
