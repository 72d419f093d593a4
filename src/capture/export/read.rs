//! Reading an export, twice. Pass 1 ([`read_entries`]) maps, keys and hashes every record
//! without keeping it, setting bad records aside (unreadable, unmappable, without key or
//! required value, duplicate key); that is all the plan and the guards need. Pass 2
//! ([`replay`]) reads the file again once the plan is known and writes to the mirror only
//! what it needs (the changed records, or every record when the mirror is rebuilt), handing
//! the changed records on for their events. Both run on the blocking pool.

use std::path::Path;

use crate::capture::CaptureError;
use crate::capture::key::identify;
use crate::capture::target::Target;
use crate::config::FileDef;
use crate::model::Value;
use crate::source::Row;
use crate::source::files::format::{ColumnRequest, ExportReader, FileError, Item, Wanted};
use crate::source::files::mirror::{Mirror, MirrorTable, WriteMode};
use crate::store::RowHash;

/// Bad rows of one file kept for the quarantine table (all are counted).
pub const QUARANTINE_PER_FILE: usize = 1_000;

/// A good record: its key, row hash and position in the file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Box<[u8]>,
    pub hash: RowHash,
    pub position: u64,
}

/// A record set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub position: u64,
    pub reason: String,
    pub raw: String,
}

/// Pass 1's result.
#[derive(Debug, Default)]
pub struct Staged {
    /// Good records, sorted by key, one per key.
    pub entries: Vec<Entry>,
    /// The first [`QUARANTINE_PER_FILE`] bad records.
    pub bad: Vec<Rejected>,
    pub bad_count: u64,
}

impl Staged {
    /// Records read, good and bad.
    pub fn records(&self) -> u64 {
        self.entries.len() as u64 + self.bad_count
    }

    fn reject(&mut self, position: u64, reason: String, raw: impl FnOnce() -> String) {
        self.bad_count += 1;
        if self.bad.len() < QUARANTINE_PER_FILE {
            self.bad.push(Rejected {
                position,
                reason,
                raw: raw(),
            });
        }
    }
}

/// Why an export could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file does not fit the adapter (missing column, not a DBF): rejected until a new
    /// file arrives.
    #[error("{0}")]
    Unfit(String),
    /// Reading failed (I/O, mirror, a file changed under us): retried.
    #[error(transparent)]
    Failed(#[from] CaptureError),
}

fn failed(message: String) -> ReadError {
    ReadError::Failed(super::unavailable(message))
}

/// A record read as the resource sees it.
enum Read {
    Good {
        position: u64,
        values: Row,
        key: Vec<u8>,
        hash: RowHash,
    },
    Bad {
        position: u64,
        reason: String,
        raw: String,
    },
}

/// Reads the export record by record, mapping, keying and hashing each record at a position
/// `wanted` accepts (others are skipped unmapped); `each` returning false stops the read.
fn read_records(
    target: &Target,
    table: &MirrorTable,
    def: &FileDef,
    path: &Path,
    mut wanted: impl FnMut(u64) -> bool,
    only: Option<Wanted>,
    mut each: impl FnMut(Read, u64) -> Result<bool, ReadError>,
) -> Result<(), ReadError> {
    let requests: Vec<ColumnRequest> = table
        .columns
        .iter()
        .map(|c| ColumnRequest {
            name: c.name.clone(),
            decode: c.decode,
        })
        .collect();
    // Where each field's column sits in a table row.
    let field_columns = field_columns(target, table);
    let not_null: Vec<bool> = table
        .columns
        .iter()
        .map(|c| table.not_null.contains(&c.name))
        .collect();
    let file_error = |e: FileError| match e {
        FileError::Io(io) => failed(format!("reading {} failed: {io}", path.display())),
        other => ReadError::Unfit(other.to_string()),
    };
    let mut reader = ExportReader::open(path, def, &requests).map_err(file_error)?;
    if let Some(only) = only {
        reader.only(only);
    }
    while let Some(item) = reader.next() {
        let bytes = reader.bytes_read();
        let read = match item.map_err(file_error)? {
            Item::Bad(bad) => Read::Bad {
                position: bad.position,
                reason: bad.reason,
                raw: bad.raw,
            },
            Item::Record(record) if !wanted(record.position) => continue,
            Item::Record(record) => {
                let empty = table
                    .columns
                    .iter()
                    .zip(&record.values)
                    .zip(&not_null)
                    .find(|((_, v), required)| **required && matches!(v, Value::Null));
                if let Some(((column, _), _)) = empty {
                    Read::Bad {
                        position: record.position,
                        reason: format!("column {} is required but empty", column.name),
                        raw: raw_of(&record.values),
                    }
                } else {
                    let row: Row = field_columns
                        .iter()
                        .map(|&i| record.values.get(i).cloned().unwrap_or(Value::Null))
                        .collect();
                    match identify(target, row) {
                        Err(e) => Read::Bad {
                            position: record.position,
                            reason: format!("field {}: {}", e.field, e.reason),
                            raw: raw_of(&record.values),
                        },
                        Ok(seen) if seen.null_key => Read::Bad {
                            position: record.position,
                            reason: "a key field is empty".to_owned(),
                            raw: raw_of(&record.values),
                        },
                        Ok(seen) => Read::Good {
                            position: record.position,
                            values: record.values,
                            key: seen.key,
                            hash: seen.hash,
                        },
                    }
                }
            }
        };
        if !each(read, bytes)? {
            break;
        }
    }
    Ok(())
}

/// Where each field's column sits in a mirror row.
pub fn field_columns(target: &Target, table: &MirrorTable) -> Vec<usize> {
    target
        .resource
        .fields
        .iter()
        .map(|f| {
            table
                .columns
                .iter()
                .position(|c| c.name == f.column)
                .unwrap_or(0)
        })
        .collect()
}

/// Pass 1: keys, hashes and positions of the good records, sorted by key (the first of
/// duplicate keys wins), and the bad records. `progress` gets (records, bytes read).
pub fn read_entries(
    target: &Target,
    table: &MirrorTable,
    def: &FileDef,
    path: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Staged, ReadError> {
    let mut staged = Staged::default();
    let mut count = 0u64;
    read_records(
        target,
        table,
        def,
        path,
        |_| true,
        None,
        |read, bytes| {
            count += 1;
            match read {
                Read::Bad {
                    position,
                    reason,
                    raw,
                } => staged.reject(position, reason, || raw),
                Read::Good {
                    position,
                    key,
                    hash,
                    ..
                } => staged.entries.push(Entry {
                    key: key.into_boxed_slice(),
                    hash,
                    position,
                }),
            }
            if count.is_multiple_of(10_000) {
                progress(count, bytes);
            }
            Ok(true)
        },
    )?;
    progress(count, 0);
    staged
        .entries
        .sort_unstable_by(|a, b| a.key.cmp(&b.key).then(a.position.cmp(&b.position)));
    let mut kept: Vec<Entry> = Vec::with_capacity(staged.entries.len());
    for e in std::mem::take(&mut staged.entries) {
        match kept.last() {
            Some(first) if first.key == e.key => {
                let first_at = first.position;
                staged.reject(
                    e.position,
                    format!("duplicate key (first seen at {first_at})"),
                    String::new,
                );
            }
            _ => kept.push(e),
        }
    }
    staged.entries = kept;
    Ok(staged)
}

/// What pass 2 writes and hands on.
pub struct Replay {
    /// How the mirror is written; `None` when it already holds this export.
    pub mode: Option<WriteMode>,
    /// Positions of the records to write in `Rebuild` mode (every kept record) with their
    /// entry, ascending.
    pub kept: Vec<(u64, usize)>,
    /// Positions of the changed records with their index in the plan and their entry,
    /// ascending.
    pub wanted: Vec<(u64, usize, usize)>,
    /// Encoded keys to delete in `Delta` mode.
    pub deletes: Vec<Vec<u8>>,
    pub entries: std::sync::Arc<Vec<Entry>>,
    pub sha256: String,
    pub file_name: String,
    /// Changed records handed on per batch.
    pub batch: usize,
}

/// Pass 2: re-reads the file, writes the mirror as `replay.mode` says (nothing when the
/// mirror already holds this export), and sends the changed records (plan index, row) in
/// batches to `changed`. Every record it writes or sends is checked against pass 1 (key and
/// hash), so a file rewritten between the passes fails the apply instead of serving a mix.
/// The mirror write commits only after the whole file was read; a failure rolls it back.
pub fn replay(
    target: &Target,
    mirror: &Mirror,
    table: &MirrorTable,
    def: &FileDef,
    path: &Path,
    replay: Replay,
    changed: &tokio::sync::mpsc::Sender<Vec<(usize, Row)>>,
) -> Result<(), ReadError> {
    let mut write = match replay.mode {
        Some(mode) => Some(mirror.begin(table, mode).map_err(CaptureError::from)?),
        None => None,
    };
    if let Some(w) = write.as_mut() {
        for key in &replay.deletes {
            w.delete(key).map_err(CaptureError::from)?;
        }
    }
    let rebuild = replay.mode == Some(WriteMode::Rebuild);
    let mut kept = replay.kept.iter().peekable();
    let mut wanted = replay.wanted.iter().peekable();
    let mut batch = Vec::new();
    let mut written = 0u64;
    let changed_file = || failed(format!("{} changed while it was applied", path.display()));
    // Records neither kept nor wanted are skipped before they are mapped.
    let needed = {
        let kept: Vec<u64> = replay.kept.iter().map(|(p, _)| *p).collect();
        let wanted: Vec<u64> = replay.wanted.iter().map(|(p, _, _)| *p).collect();
        std::sync::Arc::new(move |position: u64| {
            kept.binary_search(&position).is_ok() || wanted.binary_search(&position).is_ok()
        })
    };
    let in_reader = std::sync::Arc::clone(&needed);
    let only: Wanted = Box::new(move |position| in_reader(position));
    read_records(
        target,
        table,
        def,
        path,
        |p| needed(p),
        Some(only),
        |read, _| {
            let Read::Good {
                position,
                values,
                key,
                hash,
            } = read
            else {
                return Ok(true);
            };
            let kept_entry = kept.next_if(|(p, _)| *p == position).map(|(_, e)| *e);
            let want = wanted.next_if(|(p, _, _)| *p == position);
            let Some(entry) = kept_entry.or(want.map(|(_, _, e)| *e)) else {
                return Ok(kept.peek().is_some() || wanted.peek().is_some());
            };
            // The same record as pass 1 saw at this position?
            let e = &replay.entries[entry];
            if *e.key != key[..] || e.hash != hash {
                return Err(changed_file());
            }
            let is_kept = rebuild && kept_entry.is_some();
            let want = want.map(|(_, step, _)| *step);
            if let Some(w) = write.as_mut()
                && (is_kept || want.is_some())
            {
                w.put(&key, &values).map_err(CaptureError::from)?;
                written += 1;
            }
            if let Some(step) = want {
                batch.push((step, values));
                if batch.len() >= replay.batch {
                    changed
                        .blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| failed("the apply stopped".to_owned()))?;
                }
            }
            Ok(kept.peek().is_some() || wanted.peek().is_some())
        },
    )?;
    if kept.peek().is_some() || wanted.peek().is_some() {
        return Err(changed_file());
    }
    if !batch.is_empty() {
        changed
            .blocking_send(batch)
            .map_err(|_| failed("the apply stopped".to_owned()))?;
    }
    if let Some(w) = write {
        let rows = if rebuild {
            written
        } else {
            replay.entries.len() as u64
        };
        w.finish(&replay.sha256, &replay.file_name, rows)
            .map_err(CaptureError::from)?;
    }
    Ok(())
}

/// A record's values as text, for the quarantine (never logged).
fn raw_of(values: &[Value]) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v.to_json() {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    parts.join("|")
}
