//! Faults a test can inject, and the counters it can assert on. Every fault is shared by all
//! connections of one server: the next login fails, the next result drops the connection
//! after n rows, responses are delayed, the next requests are deadlock victims (1205), or new
//! connections are reset.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Armed faults.
#[derive(Debug, Default)]
pub struct Faults {
    fail_logins: AtomicU32,
    drop_after_rows: Mutex<Option<u64>>,
    delay_millis: AtomicU64,
    deadlocks: AtomicU32,
    refuse: AtomicBool,
}

impl Faults {
    pub fn fail_next_login(&self) {
        self.fail_logins.fetch_add(1, Ordering::SeqCst);
    }

    /// Consumes one armed login failure.
    pub fn take_login_failure(&self) -> bool {
        take_one(&self.fail_logins)
    }

    pub fn drop_after_rows(&self, rows: u64) {
        *lock(&self.drop_after_rows) = Some(rows);
    }

    /// The armed row count after which the connection is dropped.
    pub fn drop_point(&self) -> Option<u64> {
        *lock(&self.drop_after_rows)
    }

    /// Disarms the drop (it fired).
    pub fn fired_drop(&self) {
        *lock(&self.drop_after_rows) = None;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_millis.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    pub fn delay(&self) -> Option<Duration> {
        match self.delay_millis.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub fn deadlock_next(&self, requests: u32) {
        self.deadlocks.store(requests, Ordering::SeqCst);
    }

    /// Consumes one armed deadlock.
    pub fn take_deadlock(&self) -> bool {
        take_one(&self.deadlocks)
    }

    pub fn set_refuse(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    pub fn refusing(&self) -> bool {
        self.refuse.load(Ordering::SeqCst)
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counters of what the server saw.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub logins: AtomicU64,
    pub failed_logins: AtomicU64,
    pub batches: AtomicU64,
    pub rpcs: AtomicU64,
    pub attentions: AtomicU64,
    pub protocol_errors: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> TdsStats {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        TdsStats {
            connections: get(&self.connections),
            logins: get(&self.logins),
            failed_logins: get(&self.failed_logins),
            batches: get(&self.batches),
            rpcs: get(&self.rpcs),
            attentions: get(&self.attentions),
            protocol_errors: get(&self.protocol_errors),
        }
    }
}

/// What the server saw so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdsStats {
    /// TCP connections accepted (refused ones included).
    pub connections: u64,
    /// Successful logins.
    pub logins: u64,
    pub failed_logins: u64,
    /// SQL batches (simple queries).
    pub batches: u64,
    /// RPC requests (`sp_executesql`: tiberius' `query` and `execute`).
    pub rpcs: u64,
    pub attentions: u64,
    /// Connections closed for malformed packets or messages.
    pub protocol_errors: u64,
}
