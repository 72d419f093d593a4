//! Archiving processed exports. A file and its markers move together into the archive folder
//! as `<UTC time>[-<n>]_<name>`: the prefix is unique in the folder, so one prefix names one
//! archiving, and pruning removes a file with its markers. The original is never removed
//! before its copy is safely in place; files not named this way are never touched.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use globset::GlobMatcher;

use super::WatchError;
use super::listing::{Candidate, Rule, stem};

/// `strftime` format of the archive prefix: fixed width, so names sort by time.
const STAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.6fZ";
/// Length of a formatted [`STAMP_FORMAT`], e.g. `20240501T101502.123456Z`.
const STAMP_LEN: usize = 23;

/// Where processed files go, and how many of each pattern stay there.
#[derive(Debug, Clone)]
pub(super) struct Archive {
    pub dir: PathBuf,
    pub keep: usize,
}

/// The prefix of one archiving: its time, and a counter when that time was taken.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Stamp {
    time: String,
    seq: u32,
}

impl Stamp {
    fn prefix(&self) -> String {
        if self.seq == 0 {
            self.time.clone()
        } else {
            format!("{}-{}", self.time, self.seq)
        }
    }
}

/// Splits an archived name into its stamp and the original name; `None` for names this
/// module did not write.
fn parse_archived(name: &str) -> Option<(Stamp, &str)> {
    let (prefix, original) = name.split_once('_')?;
    if original.is_empty() {
        return None;
    }
    let (time, seq) = match prefix.split_once('-') {
        Some((time, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (time, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (prefix, 0),
    };
    let shape_ok = time.len() == STAMP_LEN
        && time.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'.',
            22 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    shape_ok.then(|| {
        (
            Stamp {
                time: time.to_owned(),
                seq,
            },
            original,
        )
    })
}

/// The names of the files (not folders, not hidden) in `dir`.
fn file_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string()
            && !name.starts_with('.')
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// Moves `file` (from `folder`) and its markers into the archive under one fresh prefix
/// taken from `now`, then prunes the archive for `pattern`. Returns the archived path.
pub(super) fn archive(
    archive: &Archive,
    folder: &Path,
    file: &Candidate,
    pattern: &GlobMatcher,
    rule: &Rule,
    now: DateTime<Utc>,
) -> Result<PathBuf, WatchError> {
    // Not the file that was processed (rewritten in place since): leave it to be read.
    let meta = fs::metadata(&file.path).map_err(|source| WatchError::Move {
        from: file.path.clone(),
        to: archive.dir.clone(),
        source,
    })?;
    if meta.len() != file.size || meta.modified().ok() != Some(file.modified) {
        return Err(WatchError::ChangedSinceListed {
            path: file.path.clone(),
        });
    }
    let folder_error = |source| WatchError::ArchiveFolder {
        dir: archive.dir.clone(),
        source,
    };
    fs::create_dir_all(&archive.dir).map_err(folder_error)?;
    let taken: HashSet<Stamp> = file_names(&archive.dir)
        .map_err(folder_error)?
        .iter()
        .filter_map(|n| parse_archived(n).map(|(s, _)| s))
        .collect();
    let mut stamp = Stamp {
        time: now.format(STAMP_FORMAT).to_string(),
        seq: 0,
    };
    while taken.contains(&stamp) {
        stamp.seq += 1;
    }
    let prefix = stamp.prefix();
    // Markers first: a marker left behind would mark the next export of the same name
    // complete before it is written, while a file left without its marker only waits.
    for marker in markers_to_move(folder, file, rule)? {
        move_file(
            &folder.join(&marker),
            &archive.dir.join(format!("{prefix}_{marker}")),
        )?;
    }
    let to = archive.dir.join(format!("{prefix}_{}", file.name));
    move_file(&file.path, &to)?;
    tracing::info!(file = %file.name, to = %to.display(), "archived export file");
    prune(archive, pattern, rule);
    Ok(to)
}

/// The markers of `file` present in `folder`. A `<stem><suffix>` marker shared with another
/// file of the same stem (`PRICES.done` for `PRICES.csv` and `PRICES.dbf`) stays until the
/// last of them is archived. An unreadable folder is an error, not "no markers": archiving
/// the file without them would leave a stale marker behind.
fn markers_to_move(
    folder: &Path,
    file: &Candidate,
    rule: &Rule,
) -> Result<Vec<String>, WatchError> {
    let markers = rule.marker_names(&file.name);
    if markers.is_empty() {
        return Ok(markers);
    }
    let names = file_names(folder).map_err(|source| WatchError::Unreadable {
        dir: folder.to_owned(),
        source,
    })?;
    let own_stem = stem(&file.name);
    let stem_shared = names
        .iter()
        .any(|n| n != &file.name && !rule.is_marker(n) && stem(n) == own_stem);
    Ok(markers
        .into_iter()
        .filter(|m| names.contains(m))
        .filter(|m| !stem_shared || m.starts_with(file.name.as_str()))
        .collect())
}

/// Removes the oldest archivings of files matching `pattern` beyond `keep`, each with the
/// markers archived with it. Failures are logged: the file itself is archived by then.
fn prune(archive: &Archive, pattern: &GlobMatcher, rule: &Rule) {
    let names = match file_names(&archive.dir) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(dir = %archive.dir.display(), error = %e, "cannot list archive folder to prune it");
            return;
        }
    };
    // Newest first; per stamp, its files and whether one of them is of this pattern.
    let mut groups: BTreeMap<std::cmp::Reverse<Stamp>, (Vec<String>, bool)> = BTreeMap::new();
    for name in names {
        let Some((stamp, original)) = parse_archived(&name) else {
            continue;
        };
        let ours = pattern.is_match(original) && !rule.is_marker(original);
        let group = groups.entry(std::cmp::Reverse(stamp)).or_default();
        group.1 |= ours;
        group.0.push(name);
    }
    for (files, _) in groups
        .into_values()
        .filter(|(_, ours)| *ours)
        .skip(archive.keep)
    {
        for name in files {
            let path = archive.dir.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(file = %name, "removed old archived export"),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove old archived export");
                }
            }
        }
    }
}

/// Moves `from` to `to`: a rename, or across file systems a copy that is synced and renamed
/// into place before the original is removed.
pub(super) fn move_file(from: &Path, to: &Path) -> Result<(), WatchError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => copy_then_remove(from, to),
        Err(source) => Err(WatchError::Move {
            from: from.to_owned(),
            to: to.to_owned(),
            source,
        }),
    }
}

/// The cross-file-system move. The copy is written under a hidden `.partial` name so a crash
/// leaves nothing that looks archived; if the original cannot be removed, the copy is
/// removed instead, so the file stays where it was, once.
pub(super) fn copy_then_remove(from: &Path, to: &Path) -> Result<(), WatchError> {
    let error = |source| WatchError::Move {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    };
    let dir = to.parent().unwrap_or(Path::new("."));
    let partial = dir.join(format!(
        ".{}.partial",
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    let copied = (|| -> io::Result<()> {
        fs::copy(from, &partial)?;
        let copy = fs::File::options().write(true).open(&partial)?;
        if let Ok(modified) = fs::metadata(from).and_then(|m| m.modified()) {
            // Keeps the export's own time; only cosmetic, so a refusal is no failure.
            let _ = copy.set_modified(modified);
        }
        copy.sync_all()?;
        fs::rename(&partial, to)?;
        sync_dir(dir);
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = fs::remove_file(&partial);
        return Err(error(e));
    }
    if let Err(e) = fs::remove_file(from) {
        let _ = fs::remove_file(to);
        return Err(error(e));
    }
    Ok(())
}

/// Makes a rename inside `dir` durable where the platform allows opening a folder.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_names_parse_back() {
        let (s, original) = parse_archived("20240501T101502.123456Z_PRICES_1.csv").expect("ours");
        assert_eq!((s.seq, original), (0, "PRICES_1.csv"));
        let (s2, _) = parse_archived("20240501T101502.123456Z-2_PRICES_1.csv").expect("ours");
        assert!(s2 > s && s2.prefix() == "20240501T101502.123456Z-2");
        for foreign in [
            "PRICES_1.csv",
            "20240501T101502.123456Z_",
            "20240501T101502Z_P.csv",
            "20240501T101502.123456Z-_P.csv",
            "20240501X101502.123456Z_P.csv",
        ] {
            assert!(parse_archived(foreign).is_none(), "{foreign}");
        }
        let now = DateTime::parse_from_rfc3339("2024-05-01T10:15:02.5Z")
            .expect("time")
            .with_timezone(&Utc);
        let stamp = now.format(STAMP_FORMAT).to_string();
        assert_eq!(stamp, "20240501T101502.500000Z");
        assert!(parse_archived(&format!("{stamp}_x")).is_some());
    }

    #[test]
    fn copy_then_remove_moves_contents_and_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (from, to) = (tmp.path().join("a.csv"), tmp.path().join("b.csv"));
        fs::write(&from, b"x;y\n").expect("write");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&from)
            .and_then(|f| f.set_modified(old))
            .expect("set mtime");
        copy_then_remove(&from, &to).expect("move");
        assert!(!from.exists());
        assert_eq!(fs::read(&to).expect("read"), b"x;y\n");
        assert_eq!(fs::metadata(&to).and_then(|m| m.modified()).ok(), Some(old));
        assert_eq!(
            fs::read_dir(tmp.path()).expect("dir").count(),
            1,
            "no partial left"
        );
        // A source that cannot be read: error, nothing created.
        let e = copy_then_remove(&from, &tmp.path().join("c.csv")).expect_err("missing");
        assert!(e.to_string().contains("a.csv"), "{e}");
        assert_eq!(fs::read_dir(tmp.path()).expect("dir").count(), 1);
    }
}
