//! Fixed-width exports: every column is `length` characters from character `start` of a
//! line. In single-byte encodings a character is a byte, so columns are cut from the bytes
//! and only the cut is decoded; UTF-8 lines that are not ASCII are decoded first and cut by
//! characters. Text keeps its padding (an adapter's `trim` mapping strips it).

use std::borrow::Cow;
use std::fs::File;

use super::encoding::Charset;
use super::lines::{Line, LineReader};
use super::text::parse_text;
use super::{BadRow, Column, FileError, FileRecord, Item, RAW_LIMIT_BYTES, cap_raw};
use crate::config::FileDef;

/// Reads a fixed-width export.
pub(super) struct FixedReader {
    lines: LineReader,
    charset: Charset,
    columns: Vec<Column>,
    /// First character (from 0) and width of each requested column.
    ranges: Vec<(usize, usize)>,
    /// Byte offset of each character of the current line, reused between lines.
    char_starts: Vec<usize>,
}

impl FixedReader {
    pub(super) fn open(
        file: File,
        def: &FileDef,
        columns: Vec<Column>,
    ) -> Result<FixedReader, FileError> {
        let charset = Charset::from_config(def.encoding);
        let mut ranges = Vec::with_capacity(columns.len());
        for column in &columns {
            let layout = def.column(&column.name);
            match layout.and_then(|c| Some((c.start?, c.length?))) {
                Some((start, length)) if start >= 1 && length >= 1 => {
                    ranges.push((start - 1, length));
                }
                _ => {
                    return Err(FileError::Layout(format!(
                        "column `{}` needs a start and a length in a fixed-width file",
                        column.name
                    )));
                }
            }
        }
        let mut lines = LineReader::new(file, matches!(charset, Charset::Utf8))?;
        lines.skip(def.skip_lines)?;
        Ok(FixedReader {
            lines,
            charset,
            columns,
            ranges,
            char_starts: Vec::new(),
        })
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.lines.consumed()
    }

    pub(super) fn next_item(&mut self) -> Result<Option<Item>, FileError> {
        let FixedReader {
            lines,
            charset,
            columns,
            ranges,
            char_starts,
        } = self;
        loop {
            let Some(line) = lines.next_line()? else {
                return Ok(None);
            };
            if line.is_blank() {
                continue;
            }
            return Ok(Some(decode(&line, *charset, columns, ranges, char_starts)));
        }
    }
}

fn decode(
    line: &Line<'_>,
    charset: Charset,
    columns: &[Column],
    ranges: &[(usize, usize)],
    char_starts: &mut Vec<usize>,
) -> Item {
    let bad = |reason: String| {
        let shown = &line.bytes[..line.bytes.len().min(RAW_LIMIT_BYTES + 1)];
        Item::Bad(BadRow {
            position: line.number,
            reason,
            raw: cap_raw(&charset.decode_lossy(shown)),
        })
    };
    let mut values = Vec::with_capacity(columns.len());
    if charset.is_single_byte() || line.bytes.is_ascii() {
        for (column, &(start, length)) in columns.iter().zip(ranges) {
            let field = cut(line.bytes, start, length);
            let Some(text) = charset.decode(field) else {
                return bad(column.reason(charset.invalid_text_reason()));
            };
            match parse_text(column, text) {
                Ok(v) => values.push(v),
                Err(why) => return bad(column.reason(&why)),
            }
        }
    } else {
        let Some(text) = charset.decode(line.bytes) else {
            return bad(charset.invalid_text_reason().to_owned());
        };
        char_starts.clear();
        char_starts.extend(text.char_indices().map(|(i, _)| i));
        char_starts.push(text.len());
        let chars = char_starts.len() - 1;
        for (column, &(start, length)) in columns.iter().zip(ranges) {
            let from = char_starts[start.min(chars)];
            let to = char_starts[start.saturating_add(length).min(chars)];
            match parse_text(column, Cow::Borrowed(&text[from..to])) {
                Ok(v) => values.push(v),
                Err(why) => return bad(column.reason(&why)),
            }
        }
    }
    Item::Record(FileRecord {
        position: line.number,
        values,
    })
}

/// Bytes `start..start + length` of `bytes`, as far as they exist.
fn cut(bytes: &[u8], start: usize, length: usize) -> &[u8] {
    let from = start.min(bytes.len());
    let to = start.saturating_add(length).min(bytes.len());
    &bytes[from..to]
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{ExportReader, Item};
    use crate::model::{FieldType, Value};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    const LAYOUT: &str = "format = \"fixed-width\"\n\
        [[columns]]\nname = \"SKU\"\nstart = 1\nlength = 6\n\
        [[columns]]\nname = \"NAME\"\nstart = 7\nlength = 18\n\
        [[columns]]\nname = \"PRICE\"\nstart = 25\nlength = 8\nimplied_decimals = 2\n\
        [[columns]]\nname = \"DELTA\"\nstart = 33\nlength = 8\nsign = \"trailing\"\n\
        [[columns]]\nname = \"STOCK\"\nstart = 41\nlength = 5\nsign = \"overpunch\"\n";

    fn columns() -> Vec<super::super::ColumnRequest> {
        vec![
            req("SKU", FieldType::String),
            req("NAME", FieldType::String),
            req("PRICE", FieldType::Decimal),
            req("DELTA", FieldType::Decimal),
            req("STOCK", FieldType::Integer),
        ]
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str_exact(s).unwrap())
    }

    #[test]
    fn implied_decimals_trailing_minus_and_overpunch() {
        let dir = tempfile::tempdir().unwrap();
        let row = |sku: &str, name: &str, price: &str, delta: &str, stock: &str| {
            format!("{sku:<6}{name:<18}{price:>8}{delta:>8}{stock:>5}\r\n")
        };
        let mut content = String::from("PRICE LIST 2024\r\n");
        content += &row("A00001", "Hammer", "00001250", "12.50-", "0012{");
        content += "\r\n";
        content += &row("A00002", "Nails", "00000099", "0.99 ", "0003J");
        content += "A00003Short\r\n";
        content += &row("A00004", "Bad price", "0000x250", "1.00", "00001");
        content += "\u{1A}";
        let content = content.into_bytes();
        let path = write(&dir, "f.txt", &content);
        let d = def(&format!("skip_lines = 1\n{LAYOUT}"));
        let (items, err) = read_all(&path, &d, &columns());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            records(&items),
            vec![
                (
                    2,
                    vec![
                        Value::Text("A00001".into()),
                        Value::Text("Hammer            ".into()),
                        dec("12.50"),
                        dec("-12.50"),
                        Value::Int(120),
                    ]
                ),
                (
                    4,
                    vec![
                        Value::Text("A00002".into()),
                        Value::Text("Nails             ".into()),
                        dec("0.99"),
                        dec("0.99"),
                        Value::Int(-31),
                    ]
                ),
                (
                    5,
                    vec![
                        Value::Text("A00003".into()),
                        Value::Text("Short".into()),
                        Value::Null,
                        Value::Null,
                        Value::Null,
                    ]
                ),
            ]
        );
        let bad = bad_rows(&items);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position, 6);
        assert_eq!(bad[0].reason, "column PRICE: expected a decimal number");
        assert!(bad[0].raw.starts_with("A00004Bad price"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let name = "Müller Ölgemälde  ";
        let line = format!("A00001{name}00001250");
        for (encoding, bytes) in [
            ("utf-8", line.as_bytes().to_vec()),
            ("windows-1252", encode_1252(&line)),
            ("cp437", encode_437(&line)),
            ("iso-8859-1", encode_latin1(&line)),
        ] {
            let path = write(&dir, &format!("{encoding}.txt"), &bytes);
            let d = def(&format!("encoding = \"{encoding}\"\n{LAYOUT}"));
            let (items, err) = read_all(
                &path,
                &d,
                &[
                    req("NAME", FieldType::String),
                    req("PRICE", FieldType::Decimal),
                ],
            );
            assert!(err.is_none());
            assert_eq!(
                records(&items),
                vec![(1, vec![Value::Text(name.into()), dec("12.50")])],
                "{encoding}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = format!("{:<6}{:<18}{:>8}\n", "A00001", "Ok", "00000100").into_bytes();
        content.extend_from_slice(b"A00002\xFF\xFE");
        content.extend_from_slice(format!("{:<16}{:>8}\n", "bad", "00000100").as_bytes());
        let path = write(&dir, "u.txt", &content);
        let (items, _) = read_all(&path, &def(LAYOUT), &[req("PRICE", FieldType::Decimal)]);
        assert_eq!(records(&items), vec![(1, vec![dec("1.00")])]);
        let bad = bad_rows(&items);
        assert_eq!(bad[0].position, 2);
        assert!(
            bad[0].reason.starts_with("not valid UTF-8"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn a_column_without_layout_is_a_layout_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "x.txt", b"A\n");
        let err =
            ExportReader::open(&path, &def(LAYOUT), &[req("NOPE", FieldType::String)]).unwrap_err();
        assert!(err.to_string().contains("`NOPE`"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn arbitrary_bytes_never_panic_and_positions_increase(
            content in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'1'), Just(b'}'),
                            Just(0x1A), Just(0xC3), Just(0xA9), any::<u8>()],
                0..400),
            encoding in prop_oneof![Just("utf-8"), Just("cp437")],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = write(&dir, "p.txt", &content);
            let d = def(&format!("encoding = \"{encoding}\"\nskip_lines = 1\n{LAYOUT}"));
            let reader = ExportReader::open(&path, &d, &columns()).unwrap();
            let items = assert_positions_increase(reader, content.len() as u64);
            let shaped = items.iter().all(|i| match i {
                Item::Record(r) => r.values.len() == 5,
                Item::Bad(b) => !b.reason.is_empty(),
            });
            prop_assert!(shaped);
        }
    }
}
