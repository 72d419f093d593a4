//! Change capture: per resource, a task runs the configured strategy every interval, turns
//! what it reads into change events, and commits events, key state and checkpoint to the
//! store in one transaction. Strategies only read the legacy system (except the changelog
//! strategy's pruning of its own log table).

mod change_tracking;
mod changelog;
pub mod changelog_ddl;
pub mod changelog_table;
mod cursor;
mod drift;
mod engine;
mod event;
mod export;
mod key;
#[cfg(test)]
mod model_tests;
mod recheck;
mod retention;
mod snapshot;
mod status;
mod target;

use std::sync::Arc;

use tokio::sync::watch;

pub use engine::{CaptureRuntime, StepOutcome, bind_targets, resync_once, step_once};
pub use export::apply_once as apply_export_once;
pub use retention::prune_once as prune_outbox_once;
pub use snapshot::scan_query;
pub use status::{
    AppliedExport, Approval, CaptureState, ExportFile, ExportState, ExportStatus, HeldExport,
    RejectedExport, ResourceCaptureStatus, ScanProgress, StatusBoard,
};
pub use target::Target;

use crate::source::SourceError;
use crate::store::{Store, StoreError};

/// What the API needs from a running capture: the store to read the outbox from, the status
/// board, and a signal carrying the last committed outbox sequence number (long-polls and
/// SSE wait on it instead of polling the store).
#[derive(Clone)]
pub struct CaptureHandle {
    pub store: Arc<dyn Store>,
    pub status: Arc<StatusBoard>,
    pub committed: watch::Receiver<u64>,
}

/// Why a capture step failed, and so what happens next: transient failures are retried with
/// backoff, drift pauses the resource, the rest need an operator (the resource keeps
/// retrying, loudly, so a fix needs no restart).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("row does not map: {0}")]
    Mapping(#[from] crate::resource::MappingError),
    /// The source returned keys out of the order the merge needs.
    #[error("{0}")]
    Order(String),
    /// The legacy table changed shape; the resource is paused.
    #[error("schema drift: {0}")]
    Drift(String),
    /// Changes were lost at the source (SQL Server cleaned up change tracking history the
    /// bridge had not read); the resource stops until an operator resyncs it.
    #[error("{0}")]
    Lost(String),
    /// The capture section does not fit the source.
    #[error("{0}")]
    Config(String),
    /// Pruning the change log failed (rows will be read again, nothing is lost).
    #[error("cannot prune the change log: {0}")]
    Prune(SourceError),
}
