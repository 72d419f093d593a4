//! What capture reports about itself, per resource: strategy, state, checkpoint, counters and
//! the last error. Served by `GET /admin/capture` and summarised by `/readyz`.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde::Serialize;
use utoipa::ToSchema;

/// Where a resource's capture stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureState {
    /// Not yet run a cycle.
    Starting,
    /// Emitting the first snapshot (or a resync).
    Loading,
    /// Following changes.
    Running,
    /// Stopped on purpose until a condition clears (schema drift); see `paused_reason`.
    Paused,
    /// The last cycle failed (source down, store busy); retried every interval.
    Failing,
}

/// Progress of a snapshot pass (initial load, reconciliation, resync).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ScanProgress {
    /// `initial`, `reconciliation` or `resync`.
    pub kind: String,
    pub rows_scanned: u64,
    /// Keys stored before the pass began: a rough total for progress bars.
    pub rows_expected: u64,
    pub started_at: DateTime<Utc>,
}

/// One resource's capture status.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResourceCaptureStatus {
    pub resource: String,
    /// `cursor`, `snapshot-diff` or `changelog`.
    pub strategy: String,
    pub state: CaptureState,
    /// Why the resource is paused; no secrets, no row data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// The strategy's checkpoint as stored.
    #[schema(value_type = Object)]
    pub checkpoint: Option<serde_json::Value>,
    pub last_cycle_at: Option<DateTime<Utc>>,
    pub last_cycle_ms: Option<u64>,
    /// How far capture trails the source after its last successful cycle: the cycle's
    /// duration, plus the settle delay for timestamp cursors (rows younger than that are
    /// left for the next cycle).
    pub lag_ms: Option<u64>,
    /// Rows read from the source since start.
    pub rows_scanned: u64,
    /// Events appended to the outbox since start.
    pub changes_emitted: u64,
    pub last_error: Option<String>,
    pub last_reconciliation_at: Option<DateTime<Utc>>,
    /// A snapshot pass under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanProgress>,
}

impl ResourceCaptureStatus {
    /// The status of a resource that has not run yet.
    pub fn starting(resource: &str, strategy: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            strategy: strategy.to_owned(),
            state: CaptureState::Starting,
            paused_reason: None,
            checkpoint: None,
            last_cycle_at: None,
            last_cycle_ms: None,
            lag_ms: None,
            rows_scanned: 0,
            changes_emitted: 0,
            last_error: None,
            last_reconciliation_at: None,
            scan: None,
        }
    }
}

/// Every captured resource's status; written by capture tasks, read by the API. Critical
/// sections are a clone or a field update, never I/O.
#[derive(Debug, Default)]
pub struct StatusBoard {
    resources: Mutex<IndexMap<String, ResourceCaptureStatus>>,
    resync_requested: Mutex<HashSet<String>>,
}

impl StatusBoard {
    /// Registers a resource in `Starting` state.
    pub fn register(&self, resource: &str, strategy: &str) {
        if let Ok(mut map) = self.resources.lock() {
            map.insert(
                resource.to_owned(),
                ResourceCaptureStatus::starting(resource, strategy),
            );
        }
    }

    /// Applies `f` to a resource's status.
    pub fn update(&self, resource: &str, f: impl FnOnce(&mut ResourceCaptureStatus)) {
        if let Ok(mut map) = self.resources.lock()
            && let Some(status) = map.get_mut(resource)
        {
            f(status);
        }
    }

    /// A copy of every status, in configuration order.
    pub fn snapshot(&self) -> Vec<ResourceCaptureStatus> {
        self.resources
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Asks the resource's task to run a resync pass at its next step; `false` when the
    /// resource is not captured.
    pub fn request_resync(&self, resource: &str) -> bool {
        let known = self
            .resources
            .lock()
            .is_ok_and(|m| m.contains_key(resource));
        if known && let Ok(mut set) = self.resync_requested.lock() {
            set.insert(resource.to_owned());
        }
        known
    }

    /// Takes a pending resync request.
    pub fn take_resync(&self, resource: &str) -> bool {
        self.resync_requested
            .lock()
            .is_ok_and(|mut set| set.remove(resource))
    }

    /// One resource's state, without copying its status.
    pub fn state(&self, resource: &str) -> Option<CaptureState> {
        self.resources.lock().ok()?.get(resource).map(|s| s.state)
    }

    /// A copy of one resource's status.
    pub fn get(&self, resource: &str) -> Option<ResourceCaptureStatus> {
        self.resources.lock().ok()?.get(resource).cloned()
    }
}
