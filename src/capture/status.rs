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
    /// Stopped because changes were lost at the source (an expired change-tracking
    /// version); see `paused_reason`. Stays so until an operator asks for a resync.
    Stopped,
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
    /// `cursor`, `snapshot-diff`, `changelog`, `export` or `mssql-change-tracking`.
    pub strategy: String,
    pub state: CaptureState,
    /// Why the resource is paused or stopped; no secrets, no row data.
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
    /// File resources: the export folder as last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportStatus>,
}

/// Where a file resource's newest export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExportState {
    /// No file matches the pattern yet.
    NoFile,
    /// The newest file is still being written (or lacks its marker).
    Waiting,
    /// The newest file is being read and applied.
    Applying,
    /// The newest file is applied.
    Applied,
    /// The newest file has the content already applied; nothing to do.
    Unchanged,
    /// The newest file would delete too much; see `held`. Approve it or drop a sane export.
    Held,
    /// The newest file is unusable (too many bad rows, wrong layout); see `rejected`.
    Rejected,
}

/// A file in the export folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExportFile {
    pub name: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
    /// SHA-256 of the content, once read.
    pub sha256: Option<String>,
}

/// An applied export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AppliedExport {
    pub file: String,
    pub sha256: String,
    pub at: DateTime<Utc>,
    /// Records read, good and bad.
    pub records: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Bad records set aside (see `GET /admin/files/{resource}/quarantine`).
    pub quarantined: u64,
}

/// An export held by the delete guard.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HeldExport {
    pub file: String,
    pub sha256: String,
    pub at: DateTime<Utc>,
    /// Records the export would delete, of `live_records`.
    pub deletes: u64,
    pub live_records: u64,
    /// `max_delete_share` of the adapter.
    pub limit: f64,
}

/// An export refused whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RejectedExport {
    pub file: String,
    pub sha256: String,
    pub at: DateTime<Utc>,
    /// Why; names no row data.
    pub reason: String,
}

/// A file resource's view of its export folder.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ExportStatus {
    pub folder: String,
    pub pattern: String,
    pub state: ExportState,
    /// The newest matching file.
    pub last_seen: Option<ExportFile>,
    /// Matching files not complete yet, with why.
    pub waiting: Vec<String>,
    pub last_applied: Option<AppliedExport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldExport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RejectedExport>,
    /// Bad records set aside since start.
    pub quarantined_total: u64,
    /// The content hash an operator approved despite the delete guard.
    #[serde(skip)]
    pub approved: Option<String>,
}

/// The answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    Approved,
    /// The resource is not a captured file resource.
    Unknown,
    /// No export is held.
    NothingHeld,
    /// The held export has another content hash (a newer file replaced it).
    Mismatch {
        held: String,
    },
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
            export: None,
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

    /// Lets the held export with content hash `sha256` through the delete guard.
    pub fn approve_export(&self, resource: &str, sha256: &str) -> Approval {
        let Ok(mut map) = self.resources.lock() else {
            return Approval::Unknown;
        };
        let Some(export) = map.get_mut(resource).and_then(|s| s.export.as_mut()) else {
            return Approval::Unknown;
        };
        match &export.held {
            None => Approval::NothingHeld,
            Some(h) if !h.sha256.eq_ignore_ascii_case(sha256) => Approval::Mismatch {
                held: h.sha256.clone(),
            },
            Some(h) => {
                export.approved = Some(h.sha256.clone());
                Approval::Approved
            }
        }
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
