//! The `export` strategy: a file resource's newest complete export is its current state.
//! Each cycle lists the folder; a new export (by content hash) is staged into the mirror,
//! planned against the stored key state, checked by the guards, committed as events in
//! batches, swapped into the mirror and archived.
//!
//! Guards: a file whose share of bad records exceeds `max_bad_row_share`, or that does not fit
//! the adapter, is rejected whole; one that would delete more than `max_delete_share` of the
//! live records (a truncated export) is held until approved or superseded. Crash safety: the
//! checkpoint names the export being applied; a restart redoes it, and the stored key state
//! makes the redo emit only what is not committed yet (event ids are deterministic).

mod plan;
mod read;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use self::plan::Planned;
use self::read::{ReadError, Replay, Staged, field_columns};
use super::event::{Found, materialize};
use super::key::observe;
use super::status::{
    AppliedExport, ExportFile, ExportState, ExportStatus, HeldExport, RejectedExport, ScanProgress,
    StatusBoard,
};
use super::target::{Checkpoint, ExportCheckpoint, Target};
use super::{CaptureError, StepOutcome};
use crate::config::{FileDef, InitialLoad};
use crate::model::{ChangeOrigin, Value};
use crate::source::files::FilesSource;
use crate::source::files::mirror::{MirrorTable, WriteMode};
use crate::source::files::watch::Candidate;
use crate::source::{SourceError, SourceErrorKind};
use crate::store::{Commit, KeyState, Store};

/// A delta is written into the live table only while it changes at most one record in this
/// many; beyond, the mirror table is rebuilt.
const REBUILD_FACTOR: u64 = 4;

/// The content hash of the export the mirror table of `export` holds.
async fn mirrored_export(export: &Export<'_>) -> Result<Option<String>, CaptureError> {
    let mirror = Arc::clone(export.files.mirror());
    let table = export.table.name.clone();
    Ok(blocking(move || mirror.applied(&table)).await??)
}

/// A transient failure (a file unreadable for now, a task lost): retried with backoff.
pub(super) fn unavailable(message: String) -> CaptureError {
    CaptureError::Source(SourceError::new(SourceErrorKind::Unavailable, message))
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CaptureError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(format!("blocking task failed: {e}")))
}

/// The parts of a target an export cycle needs.
struct Export<'a> {
    target: &'a Target,
    files: &'a FilesSource,
    table: &'a MirrorTable,
    def: &'a FileDef,
    matcher: globset::GlobMatcher,
}

impl<'a> Export<'a> {
    fn of(target: &'a Target) -> Result<Self, CaptureError> {
        let files = target.source.files().ok_or_else(|| {
            CaptureError::Config(format!(
                "resource `{}` uses strategy export but its source is not a files source",
                target.name
            ))
        })?;
        let def = target.file.as_ref().ok_or_else(|| {
            CaptureError::Config(format!("resource `{}` has no file section", target.name))
        })?;
        let table = files.table(&target.name).ok_or_else(|| {
            CaptureError::Config(format!("no mirror table for `{}`", target.name))
        })?;
        let matcher = globset::Glob::new(&def.pattern)
            .map_err(|e| CaptureError::Config(format!("file pattern: {e}")))?
            .compile_matcher();
        Ok(Export {
            target,
            files,
            table,
            def,
            matcher,
        })
    }

    fn status(&self, board: &StatusBoard) -> ExportStatus {
        board
            .get(&self.target.name)
            .and_then(|s| s.export)
            .unwrap_or_else(|| ExportStatus {
                folder: self.files.dir().display().to_string(),
                pattern: self.def.pattern.clone(),
                state: ExportState::NoFile,
                last_seen: None,
                waiting: Vec::new(),
                last_applied: None,
                held: None,
                rejected: None,
                quarantined_total: 0,
                approved: None,
            })
    }
}

/// One cycle: looks at the folder and applies the newest export if it is new.
pub async fn run_cycle(
    target: &Target,
    store: &dyn Store,
    cp: &mut Checkpoint,
    board: &Arc<StatusBoard>,
) -> Result<StepOutcome, CaptureError> {
    let export = Export::of(target)?;
    let mut status = export.status(board);
    let watch = Arc::clone(export.files.watch());
    let matcher = export.matcher.clone();
    let listing = blocking(move || watch.list(&matcher))
        .await?
        .map_err(|e| unavailable(e.to_string()))?;
    status.waiting = listing
        .waiting
        .iter()
        .map(|w| format!("{}: {}", w.file.name, w.reason))
        .collect();
    let Some(newest) = listing.complete.first().cloned() else {
        // A held export taken out of the folder can no longer be approved.
        status.held = None;
        status.approved = None;
        status.state = match (&status.last_applied, listing.waiting.is_empty()) {
            (_, false) => ExportState::Waiting,
            (Some(_), true) => ExportState::Applied,
            (None, true) => ExportState::NoFile,
        };
        publish(board, &target.name, status);
        return Ok(StepOutcome::default());
    };
    let sha256 = match &status.last_seen {
        Some(seen)
            if seen.name == newest.name
                && seen.size == newest.size
                && seen.modified == modified_utc(&newest) =>
        {
            seen.sha256.clone()
        }
        _ => None,
    };
    let sha256 = match sha256 {
        Some(s) => s,
        None => {
            let path = newest.path.clone();
            blocking(move || hash_file(&path))
                .await?
                .map_err(|e| unavailable(format!("cannot read {}: {e}", newest.path.display())))?
        }
    };
    status.last_seen = Some(ExportFile {
        name: newest.name.clone(),
        size: newest.size,
        modified: modified_utc(&newest),
        sha256: Some(sha256.clone()),
    });
    let state = cp.export.clone().unwrap_or_default();
    let mirrored = mirrored_export(&export).await?;
    if state.applied_sha256.as_deref() == Some(sha256.as_str())
        && mirrored.as_deref() == Some(sha256.as_str())
    {
        status.state = if state.applied_file.as_deref() == Some(newest.name.as_str()) {
            ExportState::Applied
        } else {
            ExportState::Unchanged
        };
        status.held = None;
        publish(board, &target.name, status);
        archive(&export, &listing.complete).await;
        return Ok(StepOutcome::default());
    }
    if status.rejected.as_ref().is_some_and(|r| r.sha256 == sha256) {
        status.state = ExportState::Rejected;
        publish(board, &target.name, status);
        return Ok(StepOutcome::default());
    }
    let approved = status.approved.as_deref() == Some(sha256.as_str())
        || state.applying_sha256.as_deref() == Some(sha256.as_str());
    if !approved && status.held.as_ref().is_some_and(|h| h.sha256 == sha256) {
        status.state = ExportState::Held;
        publish(board, &target.name, status);
        return Ok(StepOutcome::default());
    }
    status.state = ExportState::Applying;
    publish(board, &target.name, status.clone());
    let pending = Pending {
        file: &newest,
        sha256: &sha256,
        approved,
        mirrored,
    };
    let outcome = apply(&export, store, cp, board, pending, &mut status).await;
    board.update(&target.name, |s| s.scan = None);
    let outcome = outcome?;
    publish(board, &target.name, status.clone());
    if status.state == ExportState::Applied {
        archive(&export, &listing.complete).await;
    }
    Ok(outcome)
}

/// Shows `status` on the board, keeping an approval that arrived while the cycle ran.
fn publish(board: &StatusBoard, resource: &str, mut status: ExportStatus) {
    board.update(resource, |s| {
        let approved_meanwhile = s.export.as_ref().and_then(|prev| prev.approved.clone());
        if status.approved.is_none()
            && status
                .held
                .as_ref()
                .is_some_and(|h| approved_meanwhile.as_deref() == Some(h.sha256.as_str()))
        {
            status.approved = approved_meanwhile;
        }
        s.export = Some(status);
    });
}

fn modified_utc(c: &Candidate) -> DateTime<Utc> {
    DateTime::<Utc>::from(c.modified)
}

/// The file's SHA-256, hex.
fn hash_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Moves processed and superseded exports to the archive, if one is configured. Failures are
/// logged: the file stays and is recognised by its hash next time.
async fn archive(export: &Export<'_>, files: &[Candidate]) {
    if export.files.config().archive_dir.is_none() {
        return;
    }
    for file in files {
        let watch = Arc::clone(export.files.watch());
        let matcher = export.matcher.clone();
        let candidate = file.clone();
        let archived = blocking(move || {
            watch
                .archive(&candidate, &matcher)
                .map_err(|e| e.to_string())
        });
        if let Err(error) = archived.await.map_err(|e| e.to_string()).and_then(|r| r) {
            tracing::warn!(resource = %export.target.name, file = %file.name, %error, "cannot archive export");
        }
    }
}

/// An export about to be applied.
struct Pending<'a> {
    file: &'a Candidate,
    sha256: &'a str,
    /// Past the delete guard: approved by an operator, or its apply was under way.
    approved: bool,
    /// The content hash of the export the mirror holds now.
    mirrored: Option<String>,
}

/// Reads, guards and applies one export; fills `status` with the outcome.
async fn apply(
    export: &Export<'_>,
    store: &dyn Store,
    cp: &mut Checkpoint,
    board: &Arc<StatusBoard>,
    pending: Pending<'_>,
    status: &mut ExportStatus,
) -> Result<StepOutcome, CaptureError> {
    let Pending {
        file,
        sha256,
        approved,
        mirrored,
    } = pending;
    let target = export.target;
    let name = target.name.clone();
    let started_at = Utc::now();
    board.update(&name, |s| {
        s.scan = Some(ScanProgress {
            kind: "export".to_owned(),
            rows_scanned: 0,
            rows_expected: 0,
            started_at,
        });
    });
    tracing::info!(resource = %name, file = %file.name, size = file.size, "applying export");
    let staged = {
        let target = target.clone();
        let table = export.table.clone();
        let def = export.def.clone();
        let path: PathBuf = file.path.clone();
        let board = Arc::clone(board);
        let resource = name.clone();
        blocking(move || {
            read::read_entries(&target, &table, &def, &path, |records, _bytes| {
                board.update(&resource, |s| {
                    if let Some(scan) = s.scan.as_mut() {
                        scan.rows_scanned = records;
                    }
                });
            })
        })
        .await?
    };
    let staged = match staged {
        Ok(s) => s,
        Err(ReadError::Unfit(reason)) => {
            tracing::warn!(resource = %name, file = %file.name, %reason, "export rejected");
            reject(status, file, sha256, reason);
            return Ok(StepOutcome::default());
        }
        Err(ReadError::Failed(e)) => return Err(e),
    };
    quarantine(export, file, &staged, status).await?;
    let records = staged.records();
    let share = if records == 0 {
        0.0
    } else {
        staged.bad_count as f64 / records as f64
    };
    if share > export.def.max_bad_row_share {
        let reason = format!(
            "{} of {records} records are bad ({:.2}%), above max_bad_row_share {:.2}%",
            staged.bad_count,
            share * 100.0,
            export.def.max_bad_row_share * 100.0
        );
        tracing::warn!(resource = %name, file = %file.name, bad = staged.bad_count, records, "export rejected: too many bad records");
        reject(status, file, sha256, reason);
        return Ok(StepOutcome::default());
    }
    let initial = !cp.initial_done;
    let plan = plan::plan(
        target,
        store,
        &staged.entries,
        initial && target.def.initial == InitialLoad::Snapshot,
    )
    .await?;
    if !approved && plan.delete_share() > export.def.max_delete_share {
        tracing::warn!(resource = %name, file = %file.name, deletes = plan.deleted, live = plan.live_before, "export held: it would delete too many records");
        status.state = ExportState::Held;
        status.held = Some(HeldExport {
            file: file.name.clone(),
            sha256: sha256.to_owned(),
            at: Utc::now(),
            deletes: plan.deleted,
            live_records: plan.live_before,
            limit: export.def.max_delete_share,
        });
        return Ok(StepOutcome {
            rows: records,
            ..StepOutcome::default()
        });
    }
    let mut export_cp = cp.export.clone().unwrap_or_default();
    // A cut apply (of this or another export) may have committed events whose mirror writes
    // were rolled back: only a rebuild makes the mirror match the key state again.
    let cut_short = export_cp.applying_sha256.is_some();
    let previous = export_cp.applied_sha256.clone();
    export_cp.applying_sha256 = Some(sha256.to_owned());
    cp.export = Some(export_cp);
    let upserts = plan.created + plan.updated;
    let mode = if mirrored.as_deref() == Some(sha256) {
        None
    } else if !cut_short
        && mirrored == previous
        && upserts.saturating_mul(REBUILD_FACTOR) <= staged.entries.len() as u64
    {
        Some(WriteMode::Delta)
    } else {
        // Also when most records change (a first export): bulk loading a new table and
        // indexing it once beats updating two indexes record by record.
        Some(WriteMode::Rebuild)
    };
    let origin = if initial {
        ChangeOrigin::Initial
    } else {
        ChangeOrigin::Capture
    };
    let silent = initial && target.def.initial == InitialLoad::None;
    let commit = Committer {
        export,
        store,
        origin,
        silent,
        checkpoint: cp.to_stored(),
    };
    let mut changes = 0;
    let mut last_seq = None;
    // Deletions first: they need nothing from the file.
    let deletes: Vec<&KeyState> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Planned::Delete(old) => Some(old),
            Planned::Upsert { .. } => None,
        })
        .collect();
    for chunk in deletes.chunks(target.def.batch_size.max(1)) {
        let position = serde_json::json!({"strategy": "export", "file": file.name});
        let found = chunk
            .iter()
            .map(|old| Found::deletion((*old).clone(), position.clone()))
            .collect();
        let (n, seq) = commit.commit(found).await?;
        changes += n;
        last_seq = seq.or(last_seq);
    }
    // Pass 2: the changed records, and the mirror write.
    let entries = Arc::new(staged.entries);
    let mut wanted: Vec<(u64, usize, usize)> = plan
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Planned::Upsert { entry, .. } => Some((entries[*entry].position, i, *entry)),
            Planned::Delete(_) => None,
        })
        .collect();
    wanted.sort_unstable();
    let mut kept: Vec<(u64, usize)> = if mode == Some(WriteMode::Rebuild) {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.position, i))
            .collect()
    } else {
        Vec::new()
    };
    kept.sort_unstable();
    let replay = Replay {
        mode,
        kept,
        wanted,
        deletes: deletes.iter().map(|d| d.key.clone()).collect(),
        entries: Arc::clone(&entries),
        sha256: sha256.to_owned(),
        file_name: file.name.clone(),
        batch: target.def.batch_size.max(1),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let pass2 = {
        let target = target.clone();
        let mirror = Arc::clone(export.files.mirror());
        let table = export.table.clone();
        let def = export.def.clone();
        let path = file.path.clone();
        tokio::task::spawn_blocking(move || {
            read::replay(&target, &mirror, &table, &def, &path, replay, &tx)
        })
    };
    let columns = field_columns(target, export.table);
    while let Some(batch) = rx.recv().await {
        let mut found = Vec::with_capacity(batch.len());
        for (step, values) in batch {
            let Planned::Upsert { op, entry, prior } = &plan.steps[step] else {
                continue;
            };
            let row: Vec<Value> = columns
                .iter()
                .map(|&i| values.get(i).cloned().unwrap_or(Value::Null))
                .collect();
            let seen = observe(target, row)?;
            let position = serde_json::json!({
                "strategy": "export",
                "file": file.name,
                "line": entries[*entry].position,
            });
            found.push(Found::of_row(*op, seen, prior.as_ref(), position));
        }
        let (n, seq) = commit.commit(found).await?;
        changes += n;
        last_seq = seq.or(last_seq);
    }
    match pass2.await {
        Ok(Ok(())) => {}
        Ok(Err(ReadError::Failed(e))) => return Err(e),
        Ok(Err(ReadError::Unfit(reason))) => {
            return Err(unavailable(format!("{}: {reason}", file.name)));
        }
        Err(e) => return Err(unavailable(format!("reading the export failed: {e}"))),
    }
    // The export is applied once this commits; a crash before it redoes the (now empty) plan
    // and rebuilds the mirror.
    cp.export = Some(ExportCheckpoint {
        applied_sha256: Some(sha256.to_owned()),
        applied_file: Some(file.name.clone()),
        applying_sha256: None,
    });
    if initial {
        cp.initial_done = true;
    }
    store
        .commit(Commit {
            resource: name.clone(),
            events: Vec::new(),
            state: Vec::new(),
            checkpoint: Some(cp.to_stored()),
        })
        .await?;
    tracing::info!(resource = %name, file = %file.name, records, created = plan.created, updated = plan.updated, deleted = plan.deleted, quarantined = staged.bad_count, mirror = ?mode, "export applied");
    status.state = ExportState::Applied;
    status.held = None;
    status.rejected = None;
    status.approved = None;
    status.last_applied = Some(AppliedExport {
        file: file.name.clone(),
        sha256: sha256.to_owned(),
        at: Utc::now(),
        records,
        created: plan.created,
        updated: plan.updated,
        deleted: plan.deleted,
        quarantined: staged.bad_count,
    });
    Ok(StepOutcome {
        rows: records,
        changes,
        last_seq,
        lag_ms: None,
    })
}

/// Commits found changes with the export's checkpoint (`applying` set).
struct Committer<'a> {
    export: &'a Export<'a>,
    store: &'a dyn Store,
    origin: ChangeOrigin,
    silent: bool,
    checkpoint: serde_json::Value,
}

impl Committer<'_> {
    /// Events appended and the last sequence number.
    async fn commit(&self, found: Vec<Found>) -> Result<(u64, Option<u64>), CaptureError> {
        let target = self.export.target;
        let (mut events, state) = materialize(target, self.store, self.origin, found).await?;
        if self.silent {
            events.clear();
        }
        let n = events.len() as u64;
        let appended = self
            .store
            .commit(Commit {
                resource: target.name.clone(),
                events,
                state,
                checkpoint: Some(self.checkpoint.clone()),
            })
            .await?;
        Ok((n, appended.map(|a| a.last_seq)))
    }
}

fn reject(status: &mut ExportStatus, file: &Candidate, sha256: &str, reason: String) {
    status.state = ExportState::Rejected;
    status.rejected = Some(RejectedExport {
        file: file.name.clone(),
        sha256: sha256.to_owned(),
        at: Utc::now(),
        reason,
    });
}

/// Records the file's bad rows for operators; logs only positions and counts.
async fn quarantine(
    export: &Export<'_>,
    file: &Candidate,
    staged: &Staged,
    status: &mut ExportStatus,
) -> Result<(), CaptureError> {
    if staged.bad_count == 0 {
        return Ok(());
    }
    status.quarantined_total += staged.bad_count;
    let first = &staged.bad[0];
    tracing::warn!(resource = %export.target.name, file = %file.name, bad = staged.bad_count, first_position = first.position, first_reason = %first.reason, "export records quarantined");
    let rows: Vec<(u64, String, String)> = staged
        .bad
        .iter()
        .map(|b| (b.position, b.reason.clone(), b.raw.clone()))
        .collect();
    let mirror = Arc::clone(export.files.mirror());
    let table = export.table.name.clone();
    let name = file.name.clone();
    blocking(move || mirror.quarantine_rows(&table, &name, &rows)).await??;
    Ok(())
}

/// Applies one given file now, outside the folder watch (the `apply-export` command and
/// benchmarks): the same staging, guards and commits as a cycle. `approve` lets it past the
/// delete guard. The store must not be held by a running service.
pub async fn apply_once(
    target: &Target,
    store: &dyn Store,
    path: &std::path::Path,
    approve: bool,
) -> Result<(ExportStatus, StepOutcome), CaptureError> {
    let export = Export::of(target)?;
    let board = Arc::new(StatusBoard::default());
    board.register(&target.name, target.strategy().as_str());
    let meta = std::fs::metadata(path)
        .map_err(|e| unavailable(format!("cannot read {}: {e}", path.display())))?;
    let file = Candidate {
        path: path.to_owned(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: meta.len(),
        modified: meta
            .modified()
            .map_err(|e| unavailable(format!("cannot read {}: {e}", path.display())))?,
    };
    let hashed = path.to_owned();
    let sha256 = blocking(move || hash_file(&hashed))
        .await?
        .map_err(|e| unavailable(format!("cannot read {}: {e}", path.display())))?;
    let mut cp = Checkpoint::from_stored(store.checkpoint(&target.name).await?)?;
    let mut status = export.status(&board);
    let mirrored = mirrored_export(&export).await?;
    let pending = Pending {
        file: &file,
        sha256: &sha256,
        approved: approve,
        mirrored,
    };
    let outcome = apply(&export, store, &mut cp, &board, pending, &mut status).await?;
    Ok((status, outcome))
}
