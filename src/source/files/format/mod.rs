//! Reading export files (CSV/TSV, fixed-width, DBF, JSON Lines) in their text encoding into
//! typed values, record by record, telling bad records apart from unreadable files.
//!
//! [`ExportReader`] yields one [`Item`] per record: a [`FileRecord`] with one [`Value`] per
//! requested column, or a [`BadRow`] when a record cannot be read (the rest of the file goes
//! on). A [`FileError`] ends the file: it cannot be opened ([`FileError::Io`], retried), it
//! does not fit the adapter ([`FileError::Layout`]), or it is unreadable from some point on
//! ([`FileError::Malformed`]). Reasons and errors never contain field values: they are logged,
//! and values may be customer data.

mod dbf;
mod delimited;
mod encoding;
mod fixed;
mod jsonl;
mod lines;
mod number;
mod text;

use std::fs::File;
use std::path::Path;

use crate::config::{FileDef, FileFormat};
use crate::model::{FieldType, Value};

use self::number::NumberStyle;
use self::text::DateFormat;

/// Size of the read buffer: exports run to millions of rows.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// The longest record (or line) read: a longer one is taken as a sign of a broken file (an
/// unclosed quote swallowing the rest of a CSV), not held in memory.
const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// How much of a bad record's text is kept for the quarantine table.
const RAW_LIMIT_BYTES: usize = 4 * 1024;

/// A column the caller wants and the type to decode it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRequest {
    /// The column's name in the file (header name, layout entry, DBF field or JSON member).
    pub name: String,
    /// The type of the field that maps the column: it decides how the text is read.
    pub decode: FieldType,
}

/// A good record: where it starts and one value per requested column, in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    /// 1-based physical line of the record's start (text formats, counting skipped lines and
    /// the header), or 1-based physical record number (DBF, counting deleted records): what
    /// an operator needs to find the record in the file.
    pub position: u64,
    /// One value per requested column, in request order.
    pub values: Vec<Value>,
}

/// A record that cannot be read; the rest of the file goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// As [`FileRecord::position`].
    pub position: u64,
    /// The column and what was expected, e.g. `column QTY: expected a decimal number`; never
    /// the field's value, because reasons are logged.
    pub reason: String,
    /// The record's text (decoded, at most about 4 KiB) for the quarantine table operators
    /// see.
    pub raw: String,
}

/// One record of an export: read, or set aside with the reason (bad rows count against the
/// export's `max_bad_row_share` and go to quarantine, they do not stop the file).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A record whose requested columns all decoded.
    Record(FileRecord),
    /// A record that could not be read.
    Bad(BadRow),
}

/// Why an export cannot be read (further). Messages name lines, columns and layout, never
/// field values.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading the file failed; transient (a share went away), so it is retried.
    #[error("reading the export failed: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not fit the adapter: a mapped column missing from the header, not a
    /// DBF, a DBF field missing or of the wrong type. Retrying will not help; the export or
    /// the adapter must change.
    #[error("the export does not fit the adapter: {0}")]
    Layout(String),
    /// The file is unreadable from some point on (truncated, a runaway quoted field).
    #[error("the export is malformed: {0}")]
    Malformed(String),
}

/// Reads an export record by record, streaming: memory stays bounded by one record and the
/// read buffer whatever the file's size. After an error the iterator ends.
pub struct ExportReader {
    format: FileFormat,
    inner: Inner,
    done: bool,
    wanted: Option<Wanted>,
}

/// Which record positions a caller wants decoded.
pub type Wanted = Box<dyn FnMut(u64) -> bool + Send>;

enum Inner {
    Delimited(Box<delimited::DelimitedReader>),
    Fixed(Box<fixed::FixedReader>),
    Dbf(Box<dbf::DbfReader>),
    Jsonl(Box<jsonl::JsonlReader>),
}

impl ExportReader {
    /// Opens `path` as `def` describes, to read `columns`. Header/layout problems are
    /// FileError::Layout here.
    pub fn open(
        path: &Path,
        def: &FileDef,
        columns: &[ColumnRequest],
    ) -> Result<ExportReader, FileError> {
        let file = File::open(path)?;
        let columns = columns
            .iter()
            .map(|c| Column::new(def, c))
            .collect::<Result<Vec<_>, _>>()?;
        let inner = match def.format {
            FileFormat::Csv | FileFormat::Tsv => Inner::Delimited(Box::new(
                delimited::DelimitedReader::open(file, def, columns)?,
            )),
            FileFormat::FixedWidth => {
                Inner::Fixed(Box::new(fixed::FixedReader::open(file, def, columns)?))
            }
            FileFormat::Dbf => {
                Inner::Dbf(Box::new(dbf::DbfReader::open(path, file, def, columns)?))
            }
            FileFormat::Jsonl => {
                Inner::Jsonl(Box::new(jsonl::JsonlReader::open(file, def, columns)?))
            }
        };
        Ok(ExportReader {
            format: def.format,
            inner,
            done: false,
            wanted: None,
        })
    }

    /// Reads only records at positions `wanted` accepts (a second pass that needs a few
    /// records of a large file). Delimited files skip the others without decoding them;
    /// other formats still decode them, and callers must skip them too.
    pub fn only(&mut self, wanted: Wanted) {
        self.wanted = Some(wanted);
    }

    /// Bytes consumed so far (for progress on long files).
    pub fn bytes_read(&self) -> u64 {
        match &self.inner {
            Inner::Delimited(r) => r.bytes_read(),
            Inner::Fixed(r) => r.bytes_read(),
            Inner::Dbf(r) => r.bytes_read(),
            Inner::Jsonl(r) => r.bytes_read(),
        }
    }

    fn next_item(&mut self) -> Result<Option<Item>, FileError> {
        match &mut self.inner {
            Inner::Delimited(r) => r.next_item(&mut self.wanted),
            Inner::Fixed(r) => r.next_item(),
            Inner::Dbf(r) => r.next_item(),
            Inner::Jsonl(r) => r.next_item(),
        }
    }
}

impl std::fmt::Debug for ExportReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportReader")
            .field("format", &self.format.as_str())
            .field("bytes_read", &self.bytes_read())
            .field("done", &self.done)
            .finish()
    }
}

impl Iterator for ExportReader {
    type Item = Result<Item, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_item() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for ExportReader {}

/// A requested column with its decoding options.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: FieldType,
    /// chrono format of dates, times and timestamps.
    format: Option<DateFormat>,
    number: NumberStyle,
}

impl Column {
    fn new(def: &FileDef, request: &ColumnRequest) -> Result<Column, FileError> {
        let options = def.column(&request.name);
        let format = match options.and_then(|o| o.format.as_deref()) {
            None => None,
            Some(text) => Some(DateFormat::new(text).ok_or_else(|| {
                FileError::Layout(format!(
                    "column `{}`: `{text}` is not a valid date/time format",
                    request.name
                ))
            })?),
        };
        Ok(Column {
            name: request.name.clone(),
            ty: request.decode,
            format,
            number: NumberStyle {
                decimal_separator: def.decimal_separator,
                implied_decimals: options.and_then(|o| o.implied_decimals).unwrap_or(0),
                sign: options.map(|o| o.sign).unwrap_or_default(),
            },
        })
    }

    /// A reason naming this column.
    fn reason(&self, why: &str) -> String {
        format!("column {}: {why}", self.name)
    }
}

/// A bad record's text for the quarantine table: at most [`RAW_LIMIT_BYTES`], cut on a
/// character boundary and marked when cut.
fn cap_raw(text: &str) -> String {
    if text.len() <= RAW_LIMIT_BYTES {
        return text.to_owned();
    }
    let mut end = RAW_LIMIT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(&text[..end]);
    out.push('…');
    out
}

/// A short list of names for a layout message.
fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 50;
    let names: Vec<&str> = names.collect();
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_text_is_capped_on_a_character_boundary() {
        let long = "é".repeat(RAW_LIMIT_BYTES);
        let capped = cap_raw(&long);
        assert!(capped.len() <= RAW_LIMIT_BYTES + '…'.len_utf8());
        assert!(capped.ends_with('…'));
        assert_eq!(cap_raw("short"), "short");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let def = test_support::def("format = \"csv\"");
        let err = ExportReader::open(&dir.path().join("nope.csv"), &def, &[]).unwrap_err();
        assert!(matches!(err, FileError::Io(_)), "{err:?}");
    }
}
