//! Reading one export into the mirror's staging table: every good record is stored, mapped,
//! keyed and hashed; bad records (unreadable, unmappable, without key, duplicate key) are
//! set aside with their position and reason. Blocking: runs on the blocking pool.

use std::path::Path;

use crate::capture::CaptureError;
use crate::capture::key::identify;
use crate::capture::target::Target;
use crate::config::FileDef;
use crate::model::Value;
use crate::source::files::format::{ColumnRequest, ExportReader, FileError, Item};
use crate::source::files::mirror::{Mirror, MirrorTable};
use crate::store::RowHash;

/// Bad rows of one file kept for the quarantine table (all are counted).
pub const QUARANTINE_PER_FILE: usize = 1_000;

/// A staged record: its key, row hash, row id in the staging table and file position.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Box<[u8]>,
    pub hash: RowHash,
    pub rowid: i64,
    pub position: u64,
}

/// A record set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub position: u64,
    pub reason: String,
    pub raw: String,
}

/// An export loaded into staging.
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

/// Why an export could not be staged at all.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The file does not fit the adapter (missing column, not a DBF): rejected until a new
    /// file arrives.
    #[error("{0}")]
    Unfit(String),
    /// Reading failed (I/O, mirror): retried.
    #[error(transparent)]
    Failed(#[from] CaptureError),
}

/// Reads `path` into the staging table of `table`. `progress` gets (records, bytes read).
pub fn stage(
    target: &Target,
    mirror: &Mirror,
    table: &MirrorTable,
    def: &FileDef,
    path: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Staged, StageError> {
    let requests: Vec<ColumnRequest> = table
        .columns
        .iter()
        .map(|c| ColumnRequest {
            name: c.name.clone(),
            decode: c.decode,
        })
        .collect();
    // Where each field's column sits in a table row.
    let field_columns: Vec<usize> = target
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
        .collect();
    let mut reader = ExportReader::open(path, def, &requests).map_err(|e| match e {
        FileError::Io(io) => {
            StageError::Failed(CaptureError::Source(crate::source::SourceError::new(
                crate::source::SourceErrorKind::Unavailable,
                format!("cannot read {}: {io}", path.display()),
            )))
        }
        other => StageError::Unfit(other.to_string()),
    })?;
    let mut stager = mirror.stage(table).map_err(CaptureError::from)?;
    let mut staged = Staged::default();
    let mut count = 0u64;
    while let Some(item) = reader.next() {
        let item = item.map_err(|e| match e {
            FileError::Io(io) => {
                StageError::Failed(CaptureError::Source(crate::source::SourceError::new(
                    crate::source::SourceErrorKind::Unavailable,
                    format!("reading {} failed: {io}", path.display()),
                )))
            }
            other => StageError::Unfit(other.to_string()),
        })?;
        count += 1;
        match item {
            Item::Bad(bad) => staged.reject(bad.position, bad.reason, || bad.raw),
            Item::Record(record) => {
                let empty =
                    table.columns.iter().zip(&record.values).find(|(c, v)| {
                        matches!(v, Value::Null) && table.not_null.contains(&c.name)
                    });
                if let Some((column, _)) = empty {
                    staged.reject(
                        record.position,
                        format!("column {} is required but empty", column.name),
                        || raw_of(&record.values),
                    );
                    continue;
                }
                let row: Vec<Value> = field_columns
                    .iter()
                    .map(|&i| record.values.get(i).cloned().unwrap_or(Value::Null))
                    .collect();
                match identify(target, row) {
                    Err(e) => staged.reject(
                        record.position,
                        format!("field {}: {}", e.field, e.reason),
                        || raw_of(&record.values),
                    ),
                    Ok(seen) if seen.null_key => {
                        staged.reject(record.position, "a key field is empty".to_owned(), || {
                            raw_of(&record.values)
                        })
                    }
                    Ok(seen) => {
                        let rowid = stager.insert(&record.values).map_err(CaptureError::from)?;
                        staged.entries.push(Entry {
                            key: seen.key.into_boxed_slice(),
                            hash: seen.hash,
                            rowid,
                            position: record.position,
                        });
                    }
                }
            }
        }
        if count.is_multiple_of(10_000) {
            progress(count, reader.bytes_read());
        }
    }
    progress(count, reader.bytes_read());
    // One record per key: the first in the file wins, later ones are set aside.
    staged
        .entries
        .sort_by(|a, b| a.key.cmp(&b.key).then(a.position.cmp(&b.position)));
    let mut duplicates = Vec::new();
    let mut kept: Vec<Entry> = Vec::with_capacity(staged.entries.len());
    for e in std::mem::take(&mut staged.entries) {
        match kept.last() {
            Some(first) if first.key == e.key => {
                let first_at = first.position;
                duplicates.push(e.rowid);
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
    stager.remove(&duplicates).map_err(CaptureError::from)?;
    stager.finish().map_err(CaptureError::from)?;
    Ok(staged)
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
