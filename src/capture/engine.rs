//! Running capture: one task per captured resource, each looping "check drift, run a step,
//! commit, report, sleep" until shutdown. A step is the initial load, a requested resync, a
//! strategy cycle, or a due reconciliation pass; each commits atomically, so stopping (or
//! being killed) between or inside steps loses nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use indexmap::IndexMap;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::change_tracking::{self, Cycle};
use super::snapshot::{Emit, PassStats, run_pass};
use super::status::{CaptureState, ScanProgress, StatusBoard};
use super::target::{BaselineWindow, Checkpoint, CursorColumn, Target};
use super::{CaptureError, CaptureHandle, changelog, cursor, drift, export};
use crate::config::{InitialLoad, LoadedConfig, OnExpired, StrategyKind};
use crate::model::ChangeOrigin;
use crate::resource::Resource;
use crate::source::files::watch::FolderChanges;
use crate::source::{SourceErrorKind, Sources};
use crate::store::{Commit, Store};

/// How often a running resource re-reads its table's columns to detect drift.
const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait between retries of a failing resource.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long shutdown waits for steps in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Binds every resource that has a `capture` section: resolves its cursor column and names
/// its events' source.
pub async fn bind_targets(
    config: &LoadedConfig,
    resources: &IndexMap<String, Arc<Resource>>,
    sources: &Sources,
) -> Result<Vec<Target>, CaptureError> {
    let mut targets = Vec::new();
    for (file, name, def) in config.resources() {
        let Some(capture) = def.capture_def() else {
            continue;
        };
        let (Some(resource), Some(source)) = (resources.get(name), sources.get(&def.source)) else {
            continue;
        };
        let cursor = match &capture.cursor_column {
            Some(column) => {
                let columns = source.columns(&resource.relation).await?;
                Some(
                    CursorColumn::resolve(column, &columns, resource).map_err(|e| {
                        CaptureError::Config(format!(
                            "{}: resources.{name}.capture.cursor_column: {e}",
                            file.display()
                        ))
                    })?,
                )
            }
            None => None,
        };
        let mut target = Target::new(
            name,
            Arc::clone(resource),
            capture,
            Arc::clone(source),
            format!("/sources/{}/{}", def.source, name),
            cursor,
        );
        target.file = def.file.clone();
        targets.push(target);
    }
    Ok(targets)
}

/// Running capture tasks.
pub struct CaptureRuntime {
    pub handle: CaptureHandle,
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
}

impl CaptureRuntime {
    /// Starts one task per target.
    pub async fn start(
        targets: Vec<Target>,
        store: Arc<dyn Store>,
    ) -> Result<CaptureRuntime, CaptureError> {
        let last = store.last_seq().await?;
        let (committed_tx, committed) = watch::channel(last);
        let committed_tx = Arc::new(committed_tx);
        let status = Arc::new(StatusBoard::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for target in targets {
            status.register(&target.name, target.strategy().as_str());
            let folder = target.source.files().map(|f| f.watch().subscribe());
            let worker = Worker {
                target,
                store: Arc::clone(&store),
                status: Arc::clone(&status),
                committed: Arc::clone(&committed_tx),
                drift_checked: None,
                force_drift_check: true,
                folder,
            };
            tasks.spawn(worker.run(shutdown_rx.clone()));
        }
        Ok(CaptureRuntime {
            handle: CaptureHandle {
                store,
                status,
                committed,
            },
            tasks,
            shutdown,
        })
    }

    /// Starts outbox retention beside the capture tasks (stopped with them): events older than
    /// `keep` are removed unless a subscription still needs them.
    pub fn start_retention(&mut self, keep: Duration) {
        let store = Arc::clone(&self.handle.store);
        let shutdown = self.shutdown.subscribe();
        self.tasks
            .spawn(super::retention::run(store, keep, shutdown));
    }

    /// Asks every task to stop after its current step and waits (bounded) for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("capture steps still running at shutdown; they resume after restart");
            self.tasks.abort_all();
        }
    }
}

/// Runs a resync pass of one target outside the service (the `resync` command), reporting
/// rows scanned to `progress`.
pub async fn resync_once(
    target: &Target,
    store: &dyn Store,
    progress: impl FnMut(u64),
) -> Result<PassStats, CaptureError> {
    let mut checkpoint = Checkpoint::from_stored(store.checkpoint(&target.name).await?)?;
    if target.def.strategy == StrategyKind::MssqlChangeTracking {
        // As in the service: the resync is the way out of an expired version.
        checkpoint.ct_version = Some(change_tracking::start_version(target).await?);
        checkpoint.ct_pending = None;
    }
    run_pass(
        target,
        store,
        &mut checkpoint,
        ChangeOrigin::Resync,
        Emit::All,
        progress,
    )
    .await
}

/// Runs one step of one target exactly as its capture task would (drift check, then the
/// initial load if it is not done yet, else a strategy cycle), outside the service: for
/// benchmarks and tools. The store must not be held by a running service.
pub async fn step_once(target: Target, store: Arc<dyn Store>) -> Result<StepOutcome, CaptureError> {
    let last = store.last_seq().await?;
    let (committed, _) = watch::channel(last);
    let status = Arc::new(StatusBoard::default());
    status.register(&target.name, target.strategy().as_str());
    let mut worker = Worker {
        target,
        store,
        status,
        committed: Arc::new(committed),
        drift_checked: None,
        force_drift_check: true,
        folder: None,
    };
    worker.step(&mut None).await
}

/// One resource's capture loop.
struct Worker {
    target: Target,
    store: Arc<dyn Store>,
    status: Arc<StatusBoard>,
    committed: Arc<watch::Sender<u64>>,
    drift_checked: Option<Instant>,
    force_drift_check: bool,
    /// File resources: wake-ups from the export folder.
    folder: Option<FolderChanges>,
}

/// What a step did, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// Source rows read.
    pub rows: u64,
    /// Events appended to the outbox.
    pub changes: u64,
    pub last_seq: Option<u64>,
    pub lag_ms: Option<u64>,
}

impl Worker {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let name = self.target.name.clone();
        let interval = Duration::from_millis(self.target.def.interval_ms);
        let mut checkpoint: Option<Checkpoint> = None;
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let started = Instant::now();
            let span = tracing::info_span!("capture", resource = %name);
            let result = self.step(&mut checkpoint).instrument(span).await;
            let elapsed = started.elapsed();
            match result {
                Ok(outcome) => {
                    failures = 0;
                    self.report_success(&outcome, elapsed, checkpoint.as_ref());
                }
                Err(CaptureError::Drift(reason)) => {
                    failures = 0;
                    tracing::warn!(resource = %name, %reason, "capture paused: schema drift");
                    self.status.update(&name, |s| {
                        s.state = CaptureState::Paused;
                        s.paused_reason = Some(reason);
                        s.scan = None;
                    });
                }
                Err(CaptureError::Lost(reason)) => {
                    failures = 0;
                    if self.status.state(&name) != Some(CaptureState::Stopped) {
                        tracing::error!(resource = %name, %reason, "capture stopped: changes were lost at the source");
                    }
                    self.status.update(&name, |s| {
                        s.state = CaptureState::Stopped;
                        s.paused_reason = Some(reason);
                        s.scan = None;
                    });
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if matches!(&e, CaptureError::Source(se) if se.kind == SourceErrorKind::Query) {
                        // A query that suddenly fails often means the table changed.
                        self.force_drift_check = true;
                    }
                    // Reload the checkpoint: the failed step may have advanced it in memory
                    // without committing.
                    checkpoint = None;
                    let message = e.to_string();
                    tracing::warn!(resource = %name, error = %message, failures, "capture step failed");
                    self.status.update(&name, |s| {
                        s.state = CaptureState::Failing;
                        s.last_error = Some(message);
                        s.scan = None;
                    });
                }
            }
            let delay = if failures > 0 {
                let backoff = interval.max(Duration::from_millis(500)) * 2u32.pow(failures.min(6));
                backoff.min(MAX_BACKOFF)
            } else {
                interval.saturating_sub(elapsed)
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = folder_changed(&mut self.folder), if failures == 0 => {}
                _ = shutdown.changed() => break,
            }
        }
        tracing::debug!(resource = %name, "capture stopped");
    }

    fn report_success(
        &self,
        outcome: &StepOutcome,
        elapsed: Duration,
        checkpoint: Option<&Checkpoint>,
    ) {
        if let Some(seq) = outcome.last_seq {
            announce(&self.committed, seq);
        }
        // Data read by this cycle was at most this old when the cycle ended.
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let lag = outcome.lag_ms.unwrap_or(0).saturating_add(elapsed_ms);
        self.status.update(&self.target.name, |s| {
            s.state = CaptureState::Running;
            s.paused_reason = None;
            s.last_error = None;
            s.scan = None;
            s.last_cycle_at = Some(Utc::now());
            s.last_cycle_ms = Some(elapsed_ms);
            s.rows_scanned += outcome.rows;
            s.changes_emitted += outcome.changes;
            s.lag_ms = Some(lag);
            if let Some(cp) = checkpoint {
                s.checkpoint = Some(cp.to_stored());
                s.last_reconciliation_at = cp.last_reconciliation_at;
            }
        });
    }

    async fn step(&mut self, slot: &mut Option<Checkpoint>) -> Result<StepOutcome, CaptureError> {
        self.check_drift().await?;
        let cp = match slot {
            Some(cp) => cp,
            None => slot.insert(Checkpoint::from_stored(
                self.store.checkpoint(&self.target.name).await?,
            )?),
        };
        let target = &self.target;
        let store = self.store.as_ref();
        let resuming_resync = cp
            .pass
            .as_ref()
            .is_some_and(|p| p.origin == ChangeOrigin::Resync);
        if target.def.strategy == StrategyKind::Export {
            // The first export is the initial load; a resync re-emits the applied one.
            if resuming_resync || self.status.take_resync(&target.name) {
                let stats = self.pass(cp, ChangeOrigin::Resync, Emit::All).await?;
                return Ok(pass_outcome(stats));
            }
            return export::run_cycle(target, store, cp, &self.status).await;
        }
        if !cp.initial_done {
            if target.def.strategy == StrategyKind::Cursor && cp.cursor.is_none() {
                // Taken before the load: changes made while it runs are read afterwards.
                cp.cursor = Some(cursor::start_position(target).await?);
            }
            if target.def.strategy == StrategyKind::MssqlChangeTracking && cp.ct_version.is_none() {
                cp.ct_version = Some(change_tracking::start_version(target).await?);
            }
            let silent = target.def.initial == InitialLoad::None;
            if silent && cp.baseline.is_none() {
                // Taken before the pass like the positions above (which it copies).
                let from = match target.def.strategy {
                    StrategyKind::Cursor => cp.cursor.clone(),
                    StrategyKind::Changelog => Some(changelog::highest_id(target).await?.into()),
                    StrategyKind::MssqlChangeTracking => cp.ct_version.map(Into::into),
                    _ => None,
                };
                cp.baseline = from.map(|from| BaselineWindow { from, until: None });
            }
            let emit = match target.def.initial {
                InitialLoad::Snapshot => Emit::All,
                InitialLoad::None => Emit::Silent,
            };
            let stats = self.pass(cp, ChangeOrigin::Initial, emit).await?;
            if silent {
                self.close_baseline(cp).await?;
            }
            return Ok(pass_outcome(stats));
        }
        if cp.baseline.as_ref().is_some_and(|w| w.until.is_none()) {
            // The load ended without its window closed (a crash or an error right after it):
            // closed now, later than the pass ended, which only widens it.
            self.close_baseline(cp).await?;
        }
        let resync_requested = !resuming_resync && self.status.take_resync(&target.name);
        if resync_requested && target.def.strategy == StrategyKind::MssqlChangeTracking {
            // A resync is also the way out of an expired version: it follows from now.
            match change_tracking::start_version(target).await {
                Ok(version) => cp.ct_version = Some(version),
                Err(e) => {
                    // Kept for the next step rather than dropped.
                    self.status.request_resync(&target.name);
                    return Err(e);
                }
            }
            cp.ct_pending = None;
        }
        if resuming_resync || resync_requested {
            let stats = self.pass(cp, ChangeOrigin::Resync, Emit::All).await?;
            return Ok(pass_outcome(stats));
        }
        let mut outcome = match target.def.strategy {
            StrategyKind::Cursor => {
                let s = cursor::run_cycle(target, store, cp).await?;
                StepOutcome {
                    rows: s.rows,
                    changes: s.changes,
                    last_seq: s.last_seq,
                    lag_ms: s.lag_ms,
                }
            }
            StrategyKind::Changelog => {
                let s = changelog::run_cycle(target, store, cp).await?;
                StepOutcome {
                    rows: s.rows,
                    changes: s.changes,
                    last_seq: s.last_seq,
                    lag_ms: None,
                }
            }
            StrategyKind::SnapshotDiff => {
                let stats = self.pass(cp, ChangeOrigin::Capture, Emit::Diff).await?;
                return Ok(pass_outcome(stats));
            }
            StrategyKind::MssqlChangeTracking => match self.change_tracking_cycle(cp).await? {
                Some(outcome) => outcome,
                None => return self.change_tracking_recovery(cp).await,
            },
            StrategyKind::Export => unreachable!("export targets return above"),
        };
        if self.reconciliation_due(cp) {
            let stats = self
                .pass(cp, ChangeOrigin::Reconciliation, Emit::Diff)
                .await?;
            outcome.rows += stats.rows;
            outcome.changes += stats.changes;
            outcome.last_seq = stats.last_seq.or(outcome.last_seq);
        }
        Ok(outcome)
    }

    /// Records where the followed position stands now that the silent baseline pass is
    /// done: the end of the window whose changes are emitted even if the pass read them.
    /// Until it is recorded the window is open-ended (more events, none lost).
    async fn close_baseline(&self, cp: &mut Checkpoint) -> Result<(), CaptureError> {
        let target = &self.target;
        let until = match target.def.strategy {
            StrategyKind::Cursor => cursor::baseline_end(target).await?,
            StrategyKind::Changelog => changelog::highest_id(target).await?.into(),
            StrategyKind::MssqlChangeTracking => {
                change_tracking::start_version(target).await?.into()
            }
            _ => return Ok(()),
        };
        if let Some(window) = cp.baseline.as_mut() {
            window.until = Some(until);
            self.commit_checkpoint(cp).await?;
        }
        Ok(())
    }

    /// A change-tracking cycle; `None` when a recovery pass is due instead (an expired
    /// version under `on_expired = "reconcile"`, or no synced version yet).
    async fn change_tracking_cycle(
        &self,
        cp: &mut Checkpoint,
    ) -> Result<Option<StepOutcome>, CaptureError> {
        let target = &self.target;
        if cp.ct_pending.is_none() && cp.ct_version.is_none() {
            // Switched to this strategy after the initial load: catch up by diff.
            cp.ct_pending = Some(change_tracking::start_version(target).await?);
        }
        if cp.ct_pending.is_some() {
            return Ok(None);
        }
        match change_tracking::run_cycle(target, self.store.as_ref(), cp).await? {
            Cycle::Read(s) => Ok(Some(StepOutcome {
                rows: s.rows,
                changes: s.changes,
                last_seq: s.last_seq,
                lag_ms: None,
            })),
            Cycle::Expired(expiry) => {
                let reason = expiry.describe(target);
                match target.def.on_expired() {
                    OnExpired::Stop => Err(CaptureError::Lost(reason)),
                    OnExpired::Resync => {
                        tracing::error!(resource = %target.name, %reason, "change tracking version expired; re-emitting every row (resync)");
                        // The pass records itself in the checkpoint with its first commit, so
                        // a crash resumes it; before that, the old version expires again.
                        cp.ct_version = Some(expiry.current);
                        let stats = self.pass(cp, ChangeOrigin::Resync, Emit::All).await?;
                        Ok(Some(pass_outcome(stats)))
                    }
                    OnExpired::Reconcile => {
                        tracing::error!(resource = %target.name, %reason, "change tracking version expired; reconciling the whole table by diff");
                        cp.ct_pending = Some(expiry.current);
                        self.commit_checkpoint(cp).await?;
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The full diff pass a change-tracking resource catches up with; it follows from the
    /// pending version once the pass is complete. A pass cut short runs again whole (diffs
    /// emit nothing twice).
    async fn change_tracking_recovery(
        &self,
        cp: &mut Checkpoint,
    ) -> Result<StepOutcome, CaptureError> {
        let stats = self
            .pass(cp, ChangeOrigin::Reconciliation, Emit::Diff)
            .await?;
        cp.ct_version = cp.ct_pending.take();
        cp.last_reconciliation_at = Some(Utc::now());
        self.commit_checkpoint(cp).await?;
        Ok(pass_outcome(stats))
    }

    async fn commit_checkpoint(&self, cp: &Checkpoint) -> Result<(), CaptureError> {
        self.store
            .commit(Commit {
                resource: self.target.name.clone(),
                events: Vec::new(),
                state: Vec::new(),
                checkpoint: Some(cp.to_stored()),
            })
            .await?;
        Ok(())
    }

    fn reconciliation_due(&self, cp: &Checkpoint) -> bool {
        let Some(every) = self.target.def.reconcile_interval_secs else {
            return false;
        };
        match cp.last_reconciliation_at {
            None => true,
            Some(at) => (Utc::now() - at).num_seconds() >= i64::try_from(every).unwrap_or(i64::MAX),
        }
    }

    async fn pass(
        &self,
        cp: &mut Checkpoint,
        origin: ChangeOrigin,
        emit: Emit,
    ) -> Result<PassStats, CaptureError> {
        let name = self.target.name.clone();
        let visible = emit != Emit::Diff || origin == ChangeOrigin::Reconciliation;
        if visible {
            // Counting keys reads the whole key state: only for passes shown as progress, not
            // for every snapshot-diff cycle.
            let expected = self.store.key_count(&name).await.unwrap_or_default();
            let kind = origin.as_str().to_owned();
            let started_at = Utc::now();
            self.status.update(&name, |s| {
                if emit != Emit::Diff {
                    s.state = CaptureState::Loading;
                }
                s.scan = Some(ScanProgress {
                    kind,
                    rows_scanned: 0,
                    rows_expected: expected,
                    started_at,
                });
            });
        }
        let status = Arc::clone(&self.status);
        let committed = Arc::clone(&self.committed);
        let stats = run_pass(
            &self.target,
            self.store.as_ref(),
            cp,
            origin,
            emit,
            |rows| {
                if visible {
                    status.update(&name, |s| {
                        if let Some(scan) = s.scan.as_mut() {
                            scan.rows_scanned = rows;
                        }
                    });
                }
            },
        )
        .await?;
        if let Some(seq) = stats.last_seq {
            // Long-polls need not wait for the whole (possibly long) step to end.
            announce(&committed, seq);
        }
        Ok(stats)
    }

    /// Re-reads the table's columns when due; drift stops the step.
    async fn check_drift(&mut self) -> Result<(), CaptureError> {
        let due = self.force_drift_check
            || self
                .drift_checked
                .is_none_or(|at| at.elapsed() >= DRIFT_CHECK_INTERVAL);
        let paused = self.status.state(&self.target.name) == Some(CaptureState::Paused);
        if !due && !paused {
            return Ok(());
        }
        let columns = self
            .target
            .source
            .columns(&self.target.resource.relation)
            .await?;
        self.drift_checked = Some(Instant::now());
        self.force_drift_check = false;
        match drift::check(&self.target, &columns) {
            Some(reason) => Err(CaptureError::Drift(reason)),
            None => Ok(()),
        }
    }
}

/// Resolves when a file resource's export folder may have changed; never for other sources
/// (nor once the watch stopped: the interval then paces the resource).
async fn folder_changed(folder: &mut Option<FolderChanges>) {
    let woke = match folder {
        Some(changes) => changes.changed().await.is_ok(),
        None => false,
    };
    if !woke {
        std::future::pending::<()>().await;
    }
}

/// Tells waiting readers that the outbox reached `seq` (never moves backwards).
fn announce(committed: &watch::Sender<u64>, seq: u64) {
    committed.send_if_modified(|v| {
        let newer = seq > *v;
        if newer {
            *v = seq;
        }
        newer
    });
}

fn pass_outcome(stats: PassStats) -> StepOutcome {
    StepOutcome {
        rows: stats.rows,
        changes: stats.changes,
        last_seq: stats.last_seq,
        lag_ms: None,
    }
}
