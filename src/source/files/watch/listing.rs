//! One listing of an export folder for one pattern: which files match, and which of them the
//! completion rule lets a resource read now. Only `stable` keeps state between listings (when
//! each file's size and modification time were first seen as they are).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use globset::GlobMatcher;

use super::WatchError;
use crate::config::Completion;

/// A file that matches a pattern, as last listed: what a resource reads, and what
/// [`FolderWatch::archive`](super::FolderWatch::archive) checks is still the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Full path inside the export folder.
    pub path: PathBuf,
    /// The file name the pattern matched.
    pub name: String,
    /// Size in bytes when listed.
    pub size: u64,
    /// Modification time when listed (the order of exports: newest is the current state).
    pub modified: SystemTime,
}

/// Why a matching file may not be read yet, for logs and `/admin/files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// `completion = "stable"`: its size or modification time changed too recently (or it was
    /// first seen too recently: a file found at start-up waits once too, because an old
    /// modification time does not prove a copy has finished).
    Unstable {
        /// How long it has been seen unchanged.
        unchanged_for: Duration,
        /// How long it must stay unchanged (`stable_ms`).
        needed: Duration,
    },
    /// `completion = "marker"`: none of these marker files exists yet.
    NoMarker {
        /// The names that would mark it complete, `<name><suffix>` first.
        expected: Vec<String>,
    },
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Unstable {
                unchanged_for,
                needed,
            } => write!(
                f,
                "waiting for completion (last change seen {:.1} s ago, needs {:.1} s unchanged)",
                unchanged_for.as_secs_f64(),
                needed.as_secs_f64()
            ),
            WaitReason::NoMarker { expected } => {
                write!(f, "waiting for marker {}", expected.join(" or "))
            }
        }
    }
}

/// A matching file that is not complete yet, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The file as listed.
    pub file: Candidate,
    /// What it waits for, to show on `/admin/files`.
    pub reason: WaitReason,
}

/// One listing of the folder for one pattern. Both lists are newest first: modification time
/// descending, then name descending (so `PRICES_0102` beats `PRICES_0101` written in the same
/// second).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Files the completion rule lets a resource read.
    pub complete: Vec<Candidate>,
    /// Files that match but are not complete yet.
    pub waiting: Vec<Waiting>,
}

impl Listing {
    /// The newest complete file: a resource's current state.
    pub fn newest(&self) -> Option<&Candidate> {
        self.complete.first()
    }
}

/// The completion rule of a source, taken from its config.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub completion: Completion,
    pub stable: Duration,
    pub marker_suffixes: Vec<String>,
}

impl Rule {
    /// Whether `name` is a marker file (never a candidate itself). Only under
    /// `completion = "marker"`: elsewhere a `.ok` file is just a file.
    pub fn is_marker(&self, name: &str) -> bool {
        self.completion == Completion::Marker
            && self
                .marker_suffixes
                .iter()
                .any(|s| name.len() > s.len() && name.ends_with(s.as_str()))
    }

    /// The marker names that would mark `name` complete: `<name><suffix>` for every suffix,
    /// then `<stem><suffix>`. Empty unless `completion = "marker"`.
    pub fn marker_names(&self, name: &str) -> Vec<String> {
        if self.completion != Completion::Marker {
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::new();
        let stem = stem(name);
        for base in [name, stem] {
            for suffix in &self.marker_suffixes {
                let marker = format!("{base}{suffix}");
                if !names.contains(&marker) {
                    names.push(marker);
                }
            }
        }
        names
    }
}

/// The file name without its last extension (`PRICES.csv` -> `PRICES`, `a.tar.gz` ->
/// `a.tar`, `README` -> `README`).
pub(super) fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// `completion = "stable"`: when each matching file was first seen with its current size and
/// modification time, by file name.
#[derive(Debug, Default)]
pub(super) struct Stability {
    seen: HashMap<String, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    modified: SystemTime,
    since: Instant,
}

impl Stability {
    /// Forgets a file (archived, so a new file of the same name starts afresh).
    pub fn forget(&mut self, name: &str) {
        self.seen.remove(name);
    }
}

/// A listing, and when it may change by time alone (a `stable` file's wait ends).
#[derive(Debug)]
pub(super) struct Scan {
    pub listing: Listing,
    pub recheck_at: Option<Instant>,
}

/// The names in `dir` that are files (or links to files), without hidden ones.
struct Entry {
    name: String,
    path: PathBuf,
}

fn read_folder(dir: &Path) -> Result<Vec<Entry>, WatchError> {
    let unreadable = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            WatchError::Missing {
                dir: dir.to_owned(),
                source,
            }
        } else {
            WatchError::Unreadable {
                dir: dir.to_owned(),
                source,
            }
        }
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!(dir = %dir.display(), "skipping a file name that is not utf-8");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_file = match entry.file_type() {
            Ok(t) if t.is_symlink() => fs::metadata(&path).is_ok_and(|m| m.is_file()),
            Ok(t) => t.is_file(),
            // Gone since the folder was read, or unreadable: not a candidate this time.
            Err(_) => false,
        };
        if is_file {
            entries.push(Entry { name, path });
        }
    }
    Ok(entries)
}

/// Lists `dir` for `pattern` and sorts matches under `rule`, at time `now`.
pub(super) fn scan(
    dir: &Path,
    pattern: &GlobMatcher,
    rule: &Rule,
    stability: &mut Stability,
    now: Instant,
) -> Result<Scan, WatchError> {
    let entries = read_folder(dir)?;
    let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut listing = Listing::default();
    let mut recheck_at: Option<Instant> = None;
    let mut present = HashSet::new();
    for entry in &entries {
        if rule.is_marker(&entry.name) || !pattern.is_match(&entry.name) {
            continue;
        }
        let meta = match fs::metadata(&entry.path) {
            Ok(m) => m,
            Err(e) => {
                // Renamed or deleted since the folder was read: the next listing tells.
                tracing::debug!(file = %entry.name, error = %e, "cannot read file metadata, skipping");
                continue;
            }
        };
        present.insert(entry.name.clone());
        let file = Candidate {
            path: entry.path.clone(),
            name: entry.name.clone(),
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let reason = match rule.completion {
            Completion::Rename => None,
            Completion::Marker => {
                let expected = rule.marker_names(&file.name);
                if expected.iter().any(|m| names.contains(m.as_str())) {
                    None
                } else {
                    Some(WaitReason::NoMarker { expected })
                }
            }
            Completion::Stable => {
                let seen = stability
                    .seen
                    .entry(file.name.clone())
                    .and_modify(|s| {
                        if s.size != file.size || s.modified != file.modified {
                            *s = Seen {
                                size: file.size,
                                modified: file.modified,
                                since: now,
                            };
                        }
                    })
                    .or_insert(Seen {
                        size: file.size,
                        modified: file.modified,
                        since: now,
                    });
                let unchanged_for = now.saturating_duration_since(seen.since);
                if unchanged_for >= rule.stable {
                    None
                } else {
                    let due = seen.since + rule.stable;
                    recheck_at = Some(recheck_at.map_or(due, |r| r.min(due)));
                    Some(WaitReason::Unstable {
                        unchanged_for,
                        needed: rule.stable,
                    })
                }
            }
        };
        match reason {
            None => listing.complete.push(file),
            Some(reason) => listing.waiting.push(Waiting { file, reason }),
        }
    }
    // Files of this pattern that are gone start afresh if they come back; other patterns'
    // files are theirs to forget.
    stability
        .seen
        .retain(|name, _| present.contains(name) || !pattern.is_match(name));
    listing.complete.sort_by(newest_first);
    listing
        .waiting
        .sort_by(|a, b| newest_first(&a.file, &b.file));
    Ok(Scan {
        listing,
        recheck_at,
    })
}

fn newest_first(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.modified
        .cmp(&a.modified)
        .then_with(|| b.name.cmp(&a.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(completion: Completion) -> Rule {
        Rule {
            completion,
            stable: Duration::from_millis(200),
            marker_suffixes: vec![".done".into(), ".ok".into()],
        }
    }

    fn glob(p: &str) -> GlobMatcher {
        globset::Glob::new(p).expect("test glob").compile_matcher()
    }

    #[test]
    fn marker_names_cover_name_and_stem() {
        let r = rule(Completion::Marker);
        assert_eq!(
            r.marker_names("PRICES.csv"),
            [
                "PRICES.csv.done",
                "PRICES.csv.ok",
                "PRICES.done",
                "PRICES.ok"
            ]
        );
        assert_eq!(r.marker_names("README"), ["README.done", "README.ok"]);
        assert!(r.is_marker("PRICES.csv.done") && r.is_marker("PRICES.ok"));
        assert!(!r.is_marker(".done") && !r.is_marker("PRICES.csv"));
        assert!(!rule(Completion::Stable).is_marker("PRICES.ok"));
        assert_eq!(stem(".profile"), ".profile");
        assert_eq!(stem("a.tar.gz"), "a.tar");
    }

    #[test]
    fn stable_wait_is_measured_from_the_last_change_seen() {
        // Synthetic instants: the clock is a parameter, so this needs no sleeping.
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("P.csv");
        fs::write(&path, b"a").expect("write");
        let (r, p) = (rule(Completion::Stable), glob("*.csv"));
        let mut st = Stability::default();
        let t0 = Instant::now();
        let s = scan(tmp.path(), &p, &r, &mut st, t0).expect("scan");
        assert!(s.listing.complete.is_empty());
        assert_eq!(s.recheck_at, Some(t0 + r.stable));
        let s = scan(tmp.path(), &p, &r, &mut st, t0 + Duration::from_millis(150)).expect("scan");
        assert_eq!(
            s.listing.waiting[0].reason,
            WaitReason::Unstable {
                unchanged_for: Duration::from_millis(150),
                needed: r.stable
            }
        );
        // A change resets the wait.
        fs::write(&path, b"ab").expect("write");
        let t1 = t0 + Duration::from_millis(250);
        let s = scan(tmp.path(), &p, &r, &mut st, t1).expect("scan");
        assert!(s.listing.complete.is_empty(), "{s:?}");
        let s = scan(tmp.path(), &p, &r, &mut st, t1 + r.stable).expect("scan");
        assert_eq!(s.listing.complete.len(), 1);
        assert_eq!(s.recheck_at, None);
        // Deleted and written again with the same size and time: waits afresh, because a
        // listing without it forgot it.
        let modified = fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        fs::remove_file(&path).expect("remove");
        let s = scan(tmp.path(), &p, &r, &mut st, t1 + r.stable).expect("scan");
        assert_eq!(s.listing, Listing::default());
        fs::write(&path, b"ab").expect("write");
        let f = fs::File::options().write(true).open(&path).expect("open");
        f.set_modified(modified).expect("set mtime");
        let s = scan(tmp.path(), &p, &r, &mut st, t1 + r.stable * 2).expect("scan");
        assert!(s.listing.complete.is_empty(), "{s:?}");
    }

    #[test]
    fn wait_reasons_read_well() {
        let unstable = WaitReason::Unstable {
            unchanged_for: Duration::from_millis(400),
            needed: Duration::from_secs(2),
        };
        assert_eq!(
            unstable.to_string(),
            "waiting for completion (last change seen 0.4 s ago, needs 2.0 s unchanged)"
        );
        let marker = WaitReason::NoMarker {
            expected: vec!["P.csv.done".into(), "P.done".into()],
        };
        assert_eq!(
            marker.to_string(),
            "waiting for marker P.csv.done or P.done"
        );
    }
}
