//! Outbox retention: a task that removes events older than the configured age, a prefix at a
//! time, never one a subscription still needs (the store enforces that), so the state store
//! does not grow without bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;

/// How often retention runs.
const EVERY: Duration = Duration::from_secs(600);
/// Events removed per transaction, so a large backlog never holds the writer for long.
const CHUNK: usize = 10_000;

/// Runs until `shutdown`: every [`EVERY`] (and shortly after start) removes events committed
/// more than `keep` ago.
pub(super) async fn run(
    store: Arc<dyn Store>,
    keep: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(30);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = EVERY;
        if let Err(e) = prune_once(store.as_ref(), keep).await {
            tracing::warn!(error = %e, "outbox retention failed; retrying later");
        }
    }
}

/// Removes everything due now, in chunks; returns how many events were removed.
pub async fn prune_once(
    store: &dyn Store,
    keep: Duration,
) -> Result<u64, crate::store::StoreError> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = chrono::Utc::now()
        .timestamp_millis()
        .saturating_sub(keep_ms);
    let mut removed = 0;
    loop {
        let n = store.prune(cutoff, CHUNK).await?;
        removed += n;
        if n < CHUNK as u64 {
            break;
        }
    }
    if removed > 0 {
        let through = store.pruned_through().await?;
        tracing::info!(
            removed,
            pruned_through = through,
            "outbox retention removed old events"
        );
    }
    Ok(removed)
}
