//! Helpers for the format tests: adapter sections from TOML, export files in a temporary
//! folder, and reading a whole export.

use std::path::PathBuf;

use super::{BadRow, ColumnRequest, ExportReader, FileError, Item};
use crate::config::FileDef;
use crate::model::{FieldType, Value};

/// A `file` section; `pattern` is filled in.
pub(super) fn def(toml_text: &str) -> FileDef {
    toml::from_str(&format!("pattern = \"*\"\n{toml_text}")).expect("test file section")
}

pub(super) fn req(name: &str, decode: FieldType) -> ColumnRequest {
    ColumnRequest {
        name: name.to_owned(),
        decode,
    }
}

/// Writes `content` to `name` in `dir`.
pub(super) fn write(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write test export");
    path
}

/// Every item of an export, and the error that ended it, if any.
pub(super) fn read_all(
    path: &std::path::Path,
    def: &FileDef,
    columns: &[ColumnRequest],
) -> (Vec<Item>, Option<FileError>) {
    let reader = ExportReader::open(path, def, columns).expect("open test export");
    let mut items = Vec::new();
    for item in reader {
        match item {
            Ok(item) => items.push(item),
            Err(e) => return (items, Some(e)),
        }
    }
    (items, None)
}

/// The good records as (position, values).
pub(super) fn records(items: &[Item]) -> Vec<(u64, Vec<Value>)> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Record(r) => Some((r.position, r.values.clone())),
            Item::Bad(_) => None,
        })
        .collect()
}

pub(super) fn bad_rows(items: &[Item]) -> Vec<BadRow> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Bad(b) => Some(b.clone()),
            Item::Record(_) => None,
        })
        .collect()
}

/// Drains `reader`, checking positions strictly increase, that progress never runs past
/// the file, and that bad rows have a reason and a bounded raw text.
pub(super) fn assert_positions_increase(reader: ExportReader, file_len: u64) -> Vec<Item> {
    let mut reader = reader;
    let mut last = 0;
    let mut items = Vec::new();
    while let Some(item) = reader.next() {
        assert!(reader.bytes_read() <= file_len.max(1 << 20));
        let Ok(item) = item else { break };
        let position = match &item {
            Item::Record(r) => r.position,
            Item::Bad(b) => {
                assert!(!b.reason.is_empty());
                assert!(b.raw.len() <= super::RAW_LIMIT_BYTES + 4);
                b.position
            }
        };
        assert!(position > last, "position {position} after {last}");
        last = position;
        items.push(item);
    }
    assert!(reader.next().is_none(), "the reader ends for good");
    items
}

pub(super) fn encode_1252(s: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(s);
    assert!(!unmappable);
    bytes.into_owned()
}

pub(super) fn encode_437(s: &str) -> Vec<u8> {
    oem_cp::encode_string_checked(s, &oem_cp::code_table::ENCODING_TABLE_CP437)
        .expect("text fits CP437")
}

pub(super) fn encode_latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("text fits Latin-1"))
        .collect()
}
