//! Change capture: per resource, a task runs the configured strategy every interval, turns
//! what it reads into change events, and commits events, key state and checkpoint to the
//! store in one transaction. Strategies only read the legacy system (except the changelog
//! strategy's pruning of its own log table).

pub mod changelog_ddl;
pub mod changelog_table;
mod status;

use std::sync::Arc;

use tokio::sync::watch;

pub use status::{CaptureState, ResourceCaptureStatus, ScanProgress, StatusBoard};

use crate::store::Store;

/// What the API needs from a running capture: the store to read the outbox from, the status
/// board, and a signal carrying the last committed outbox sequence number (long-polls and
/// SSE wait on it instead of polling the store).
#[derive(Clone)]
pub struct CaptureHandle {
    pub store: Arc<dyn Store>,
    pub status: Arc<StatusBoard>,
    pub committed: watch::Receiver<u64>,
}
