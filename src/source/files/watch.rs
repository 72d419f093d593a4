//! Watching an export folder: which files match a resource's pattern and are complete
//! (stable, marked, or renamed into place), and archiving them once processed.
//!
//! One [`FolderWatch`] per `files` source, shared by its resources. A background thread
//! turns file-system events (coalesced) and poll ticks into wake-ups that every resource's
//! [`FolderChanges`] sees; listing and archiving are plain blocking calls on the folder.

mod archive;
mod listing;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use globset::GlobMatcher;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::watch;

pub use listing::{Candidate, Listing, WaitReason, Waiting};

use crate::config::FilesSourceConfig;
use archive::Archive;
use listing::{Rule, Stability};

/// File-system events are gathered for this long before waking the resources, so a file
/// written in many small pieces costs a few listings, not one per write.
const EVENT_COALESCE: Duration = Duration::from_millis(100);

/// Why the folder could not be watched, listed or archived from.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The export folder does not exist (not mounted, or a typo in `dir`).
    #[error("export folder {} does not exist: {source}", dir.display())]
    Missing {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The export folder path names something that is not a folder.
    #[error("export folder {} is not a folder", dir.display())]
    NotAFolder { dir: PathBuf },
    /// The export folder exists but cannot be listed (permissions, a dropped share).
    #[error("cannot read export folder {}: {source}", dir.display())]
    Unreadable {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// [`FolderWatch::stop`] was called (or the watch dropped): no more wake-ups will come.
    #[error("the watch of export folder {} was stopped", dir.display())]
    Stopped { dir: PathBuf },
    /// The file is not the one that was listed (rewritten since): it was left in place, to
    /// be read again.
    #[error("{} changed since it was listed; not archived", path.display())]
    ChangedSinceListed { path: PathBuf },
    /// The archive folder cannot be created or listed; nothing was moved.
    #[error("cannot use archive folder {}: {source}", dir.display())]
    ArchiveFolder {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The thread that delivers poll ticks could not be started.
    #[error("cannot start watching export folder {}: {source}", dir.display())]
    Thread {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A file (or one of its markers) could not be moved; the original is still in place.
    #[error("cannot move {} to {}: {source}", from.display(), to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// What the wake-up channel carries: only whether the watch has stopped. Every send is a
/// wake-up; the channel's version tells each receiver whether it has seen the latest one.
#[derive(Debug, Clone, Copy, Default)]
struct Wake {
    stopped: bool,
}

/// Messages to the ticker thread.
#[derive(Debug)]
enum Tick {
    /// A file-system event arrived.
    Event,
    /// A `stable` file's wait ends then: wake the resources so they list again.
    WakeAt(Instant),
    Stop,
}

/// Watches one export folder for complete files; shared (`Arc`) by the resources of one
/// source. Listing and archiving block on the file system: on a slow share, call them from
/// `spawn_blocking`. Dropping it stops the watch.
pub struct FolderWatch {
    dir: PathBuf,
    archive: Option<Archive>,
    rule: Rule,
    events: bool,
    stability: Mutex<Stability>,
    /// One archiving at a time, so two resources never pick the same archive prefix.
    archiving: Mutex<()>,
    wake: watch::Sender<Wake>,
    ticks: mpsc::Sender<Tick>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<RecommendedWatcher>>,
}

/// One resource's view of the folder's wake-ups. Each resource subscribes once and keeps its
/// handle: a wake-up that comes while it is busy listing is remembered, not lost.
#[derive(Debug)]
pub struct FolderChanges {
    dir: PathBuf,
    rx: watch::Receiver<Wake>,
}

impl FolderChanges {
    /// Resolves when the folder may have changed since the last call returned (a file-system
    /// event, a poll tick, or the end of a `stable` wait); at once on the first call, so a
    /// "wait, then list" loop starts with a listing. Wake-ups in between coalesce into one.
    /// Fails with [`WatchError::Stopped`] once the watch is stopped. Cancel-safe (fine in
    /// `tokio::select!`): a wake-up is only consumed when this returns `Ok`.
    pub async fn changed(&mut self) -> Result<(), WatchError> {
        let stopped = || WatchError::Stopped {
            dir: self.dir.clone(),
        };
        if self.rx.borrow().stopped {
            return Err(stopped());
        }
        self.rx.changed().await.map_err(|_| stopped())?;
        if self.rx.borrow_and_update().stopped {
            return Err(stopped());
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is valid after every statement, so a panic in another holder does
    // not make it unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FolderWatch {
    /// Starts watching `dir`: file-system events (`notify`) when `config.watch`, falling back
    /// to polling alone, with a warning, when the watcher cannot be set up (network shares,
    /// exhausted inotify watches); plus a poll tick every `poll_interval_ms` either way.
    /// `dir` and `archive_dir` are the config's folders already resolved against the config
    /// file (the config's own `dir` and `archive_dir` are not read here). Fails when `dir` is
    /// not a readable folder.
    pub fn start(
        dir: PathBuf,
        archive_dir: Option<PathBuf>,
        config: &FilesSourceConfig,
    ) -> Result<FolderWatch, WatchError> {
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(WatchError::NotAFolder { dir }),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(WatchError::Missing { dir, source });
            }
            Err(source) => return Err(WatchError::Unreadable { dir, source }),
        }
        std::fs::read_dir(&dir).map_err(|source| WatchError::Unreadable {
            dir: dir.clone(),
            source,
        })?;
        let (wake, _) = watch::channel(Wake::default());
        let (ticks, rx) = mpsc::channel();
        let watcher = if config.watch {
            match event_watcher(&dir, ticks.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "file system events unavailable, polling only");
                    None
                }
            }
        } else {
            None
        };
        let interval = Duration::from_millis(config.poll_interval_ms.max(1));
        let ticker = {
            let wake = wake.clone();
            std::thread::Builder::new()
                .name("folder-watch".into())
                .spawn(move || run_ticker(&rx, &wake, interval))
                .map_err(|source| WatchError::Thread {
                    dir: dir.clone(),
                    source,
                })?
        };
        tracing::debug!(dir = %dir.display(), events = watcher.is_some(), "watching export folder");
        Ok(FolderWatch {
            dir,
            archive: archive_dir.map(|dir| Archive {
                dir,
                keep: config.archive_keep,
            }),
            rule: Rule {
                completion: config.completion,
                stable: Duration::from_millis(config.stable_ms),
                marker_suffixes: config.marker_suffixes.clone(),
            },
            events: watcher.is_some(),
            stability: Mutex::new(Stability::default()),
            archiving: Mutex::new(()),
            wake,
            ticks,
            ticker: Mutex::new(Some(ticker)),
            watcher: Mutex::new(watcher),
        })
    }

    /// A handle that wakes one resource when the folder may have changed; see
    /// [`FolderChanges::changed`]. One per resource (each remembers what it has seen).
    pub fn subscribe(&self) -> FolderChanges {
        let mut rx = self.wake.subscribe();
        rx.mark_changed();
        FolderChanges {
            dir: self.dir.clone(),
            rx,
        }
    }

    /// Lists the folder for `pattern` and sorts matches into complete and waiting under the
    /// completion rule. Hidden files (leading `.`), folders and, under `marker`, marker files
    /// never match. `stable` is stateful: a file is complete once its size and modification
    /// time were seen unchanged for `stable_ms` (counted from the first listing that saw them
    /// so, a change starts the count again); a wake-up is scheduled for when the wait ends.
    pub fn list(&self, pattern: &GlobMatcher) -> Result<Listing, WatchError> {
        self.list_at(pattern, Instant::now())
    }

    fn list_at(&self, pattern: &GlobMatcher, now: Instant) -> Result<Listing, WatchError> {
        let scan = listing::scan(
            &self.dir,
            pattern,
            &self.rule,
            &mut lock(&self.stability),
            now,
        )?;
        if let Some(at) = scan.recheck_at {
            let _ = self.ticks.send(Tick::WakeAt(at));
        }
        Ok(scan.listing)
    }

    /// The export folder, for messages and status.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether file-system events arrive (false: polling alone), for status.
    pub fn has_events(&self) -> bool {
        self.events
    }

    /// Moves a processed file (and, under `marker`, its marker files) into `archive_dir` as
    /// `<UTC time>_<name>` (with `-<n>` after the time if that prefix is taken), then deletes
    /// the oldest archived files of `pattern` beyond `archive_keep`, with their markers.
    /// `Ok(None)` when no archive folder is configured. Nothing is deleted before its move
    /// succeeded (rename, or across file systems copy, sync, then remove); a file changed
    /// since it was listed is left in place. Failed deletions of old copies are logged, not
    /// returned: the file is archived by then.
    pub fn archive(
        &self,
        file: &Candidate,
        pattern: &GlobMatcher,
    ) -> Result<Option<PathBuf>, WatchError> {
        self.archive_at(file, pattern, chrono::Utc::now())
    }

    fn archive_at(
        &self,
        file: &Candidate,
        pattern: &GlobMatcher,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<PathBuf>, WatchError> {
        let Some(target) = &self.archive else {
            return Ok(None);
        };
        let _one_at_a_time = lock(&self.archiving);
        let to = archive::archive(target, &self.dir, file, pattern, &self.rule, now)?;
        lock(&self.stability).forget(&file.name);
        Ok(Some(to))
    }

    /// Stops the file-system watcher and the poll thread; every [`FolderChanges::changed`]
    /// then fails with [`WatchError::Stopped`]. Also done on drop; calling it twice is fine.
    pub fn stop(&self) {
        drop(lock(&self.watcher).take());
        let _ = self.ticks.send(Tick::Stop);
        if let Some(ticker) = lock(&self.ticker).take() {
            // The thread only waits on its channel, so it ends at once.
            let _ = ticker.join();
        }
        self.wake
            .send_if_modified(|w| !std::mem::replace(&mut w.stopped, true));
    }
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for FolderWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatch")
            .field("dir", &self.dir)
            .field("completion", &self.rule.completion)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A `notify` watcher on `dir` (not recursive) that forwards events to the ticker thread.
fn event_watcher(dir: &Path, ticks: mpsc::Sender<Tick>) -> notify::Result<RecommendedWatcher> {
    let shown = dir.display().to_string();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(e) if is_noise(&e.kind) => {}
            Ok(_) => {
                let _ = ticks.send(Tick::Event);
            }
            Err(e) => {
                // Lost events (a queue overflow, say): a listing finds what they were.
                tracing::warn!(dir = %shown, error = %e, "file system event error");
                let _ = ticks.send(Tick::Event);
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Reads of the folder's files (ours included) change nothing; a writer closing its file
/// does, so that one is kept.
fn is_noise(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

/// The ticker thread: wakes the resources on every poll tick, [`EVENT_COALESCE`] after the
/// first of a burst of events, and when a `stable` wait ends. Ends on [`Tick::Stop`].
fn run_ticker(rx: &mpsc::Receiver<Tick>, wake: &watch::Sender<Wake>, interval: Duration) {
    let mut next_poll = Instant::now() + interval;
    let mut event_due: Option<Instant> = None;
    let mut wait_due: Option<Instant> = None;
    loop {
        let deadline = [Some(next_poll), event_due, wait_due]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_poll);
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Tick::Event) => {
                event_due.get_or_insert_with(|| Instant::now() + EVENT_COALESCE);
            }
            Ok(Tick::WakeAt(at)) => wait_due = Some(wait_due.map_or(at, |w| w.min(at))),
            Ok(Tick::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let poll = now >= next_poll;
        let event = event_due.is_some_and(|d| now >= d);
        let waited = wait_due.is_some_and(|d| now >= d);
        if poll || event || waited {
            if poll {
                next_poll = now + interval;
            }
            if waited {
                wait_due = None;
            }
            // Any wake-up covers every event before it: the listing it causes sees them.
            event_due = None;
            wake.send_modify(|_| {});
        }
    }
}

#[cfg(test)]
mod tests;
