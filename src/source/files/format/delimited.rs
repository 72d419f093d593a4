//! CSV and TSV exports, split by the `csv` crate into reused byte records and decoded field
//! by field (delimiters and quotes are ASCII, so splitting before decoding is safe for the
//! supported encodings).
//!
//! Two things the `csv` crate does not give are recovered from a window over its input:
//! - A record's true start. `ByteRecord::position` is where the previous record ended, so
//!   blank lines before a record and the `\n` of a `\r\n` would be counted in the wrong
//!   record; the line ends at the start of the span are skipped. Lines are counted here too,
//!   because the crate counts only `\n` while it also ends records at a lone `\r`.
//! - A bad record's raw text, for the quarantine table.
//!
//! Known limit of the crate: `trim` also trims inside quoted fields (the crate does not say
//! whether a field was quoted), and a quote after leading spaces (`a, "b,c"`) is not a quote.

use std::fs::File;
use std::io::{self, BufReader, Read};

use csv::{ByteRecord, ReaderBuilder, Trim};

use super::encoding::Charset;
use super::lines::LineReader;
use super::text::parse_text;
use super::{
    BadRow, Column, FileError, FileRecord, Item, MAX_RECORD_BYTES, RAW_LIMIT_BYTES,
    READ_BUFFER_BYTES, cap_raw, name_list,
};
use crate::config::FileDef;

/// Reads a delimited export.
pub(super) struct DelimitedReader {
    csv: csv::Reader<Window>,
    record: ByteRecord,
    charset: Charset,
    columns: Vec<Column>,
    /// Field index of each requested column.
    fields: Vec<usize>,
    /// Fields every record must have: the header's, or the first record's.
    expected_fields: usize,
    /// Physical lines and bytes before the csv reader's input (byte-order mark, skipped
    /// lines).
    lines_before: u64,
    bytes_before: u64,
    /// Where `record` lies in the csv reader's input.
    span: Span,
    /// Line (from 1) at input offset `counted_to`.
    line: u64,
    counted_to: u64,
    /// `record` holds a data record not yet returned (read at open to count its fields).
    pending: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Span {
    /// Line of the record's first byte (1-based, in the csv reader's input).
    line: u64,
    start: u64,
    end: u64,
}

impl DelimitedReader {
    pub(super) fn open(
        file: File,
        def: &FileDef,
        columns: Vec<Column>,
    ) -> Result<DelimitedReader, FileError> {
        let charset = Charset::from_config(def.encoding);
        let delimiter = ascii(def.delimiter(), "delimiter")?;
        let quote = ascii(def.quote, "quote")?;
        let mut lines = LineReader::new(file, matches!(charset, Charset::Utf8))?;
        lines.skip(def.skip_lines)?;
        let lines_before = lines.lines_consumed();
        let bytes_before = lines.consumed();
        let csv = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .quote(quote)
            .trim(if def.trim { Trim::All } else { Trim::None })
            .buffer_capacity(READ_BUFFER_BYTES)
            .from_reader(Window::new(lines.into_inner()));
        let mut reader = DelimitedReader {
            csv,
            record: ByteRecord::new(),
            charset,
            columns,
            fields: Vec::new(),
            expected_fields: 0,
            lines_before,
            bytes_before,
            span: Span::default(),
            line: 1,
            counted_to: 0,
            pending: false,
        };
        if def.header {
            reader.read_header()?;
        } else {
            reader.locate_by_position(def)?;
        }
        Ok(reader)
    }

    /// Reads the header and finds each requested column in it: by exact name, else ignoring
    /// case and surrounding spaces.
    fn read_header(&mut self) -> Result<(), FileError> {
        if !self.advance()? {
            return Err(FileError::Layout(
                "the file is empty: expected a header line".into(),
            ));
        }
        let names: Vec<String> = self
            .record
            .iter()
            .map(|f| self.charset.decode_lossy(f).into_owned())
            .collect();
        self.expected_fields = names.len();
        let mut fields = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let wanted = column.name.trim().to_lowercase();
            let found = names
                .iter()
                .position(|n| *n == column.name)
                .or_else(|| names.iter().position(|n| n.trim().to_lowercase() == wanted));
            match found {
                Some(i) => fields.push(i),
                None => {
                    return Err(FileError::Layout(format!(
                        "column `{}` is not in the header (header: {})",
                        column.name,
                        name_list(names.iter().map(String::as_str))
                    )));
                }
            }
        }
        self.fields = fields;
        Ok(())
    }

    /// Without a header, columns are found by their configured position; the first record
    /// sets the number of fields.
    fn locate_by_position(&mut self, def: &FileDef) -> Result<(), FileError> {
        let mut fields = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            match def.column(&column.name).and_then(|c| c.position) {
                Some(p) if p >= 1 => fields.push(p - 1),
                _ => {
                    return Err(FileError::Layout(format!(
                        "column `{}` needs a position: the file has no header",
                        column.name
                    )));
                }
            }
        }
        let widest = fields.iter().map(|f| f + 1).max().unwrap_or(0);
        self.fields = fields;
        if self.advance()? {
            self.pending = true;
            self.expected_fields = self.record.len();
            if let Some((column, field)) = self
                .columns
                .iter()
                .zip(&self.fields)
                .find(|(_, f)| **f >= self.expected_fields)
            {
                return Err(FileError::Layout(format!(
                    "column `{}` is field {} but the first record has {} fields",
                    column.name,
                    field + 1,
                    self.expected_fields
                )));
            }
        } else {
            self.expected_fields = widest;
        }
        Ok(())
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.bytes_before + self.csv.position().byte()
    }

    pub(super) fn next_item(
        &mut self,
        wanted: &mut Option<super::Wanted>,
    ) -> Result<Option<Item>, FileError> {
        if self.pending {
            self.pending = false;
        } else if !self.advance()? {
            return Ok(None);
        }
        // Records the caller does not want are split but never decoded.
        if let Some(wanted) = wanted.as_mut() {
            while !wanted(self.position()) {
                if !self.advance()? {
                    return Ok(None);
                }
            }
        }
        Ok(Some(self.decode()))
    }

    /// Reads the next record that is not blank into `record`; false at the end.
    fn advance(&mut self) -> Result<bool, FileError> {
        loop {
            // The previous record is done with: its bytes may go.
            let done = self.span.end.min(self.counted_to);
            self.csv.get_mut().release(done);
            match self.csv.read_byte_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => return Err(self.read_error(e)),
            }
            let reported = self.record.position().map_or(self.span.end, |p| p.byte());
            let end = self.csv.position().byte();
            // The crate's start is the previous record's end: skip the line ends before
            // the record.
            let lead = self.csv.get_ref().bytes(reported, end);
            let skipped = lead
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            let start = reported + skipped as u64;
            self.count_lines(start);
            let line = self.line;
            self.count_lines(end);
            self.span = Span { line, start, end };
            if !self.is_blank() {
                return Ok(true);
            }
        }
    }

    /// Counts the line ends from `counted_to` up to `upto`: `\n`, `\r\n`, or a lone `\r`
    /// (which the crate takes as a record end too, so that no two records share a line). A
    /// `\r` at the end waits until the next byte is known.
    fn count_lines(&mut self, upto: u64) {
        let window = self.csv.get_ref();
        let bytes = window.bytes(self.counted_to, upto);
        let (breaks, counted) = if bytes.contains(&b'\r') {
            // One byte further, where the window has it, to see what follows a `\r`.
            let ahead = window.bytes(self.counted_to, upto + 1);
            let mut breaks = 0;
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\n' => breaks += 1,
                    b'\r' => match ahead.get(i + 1) {
                        Some(b'\n') => {}
                        Some(_) => breaks += 1,
                        None => break,
                    },
                    _ => {}
                }
                i += 1;
            }
            (breaks, i)
        } else {
            (bytes.iter().filter(|b| **b == b'\n').count(), bytes.len())
        };
        self.line += breaks as u64;
        self.counted_to += counted as u64;
    }

    fn read_error(&self, e: csv::Error) -> FileError {
        let line = self.lines_before + self.line;
        if self.csv.get_ref().overflow {
            return FileError::Malformed(format!(
                "the record after line {line} is longer than {} MiB (an unclosed quote?)",
                MAX_RECORD_BYTES >> 20
            ));
        }
        match e.into_kind() {
            csv::ErrorKind::Io(e) => FileError::Io(e),
            _ => FileError::Malformed(format!("unreadable after line {line}")),
        }
    }

    /// A line of nothing but spaces (or a DOS end-of-file mark).
    fn is_blank(&self) -> bool {
        self.record.len() == 1
            && self.record[0]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | 0x1A))
    }

    /// The record's position as reported: its first physical line, skipped lines included.
    fn position(&self) -> u64 {
        self.lines_before + self.span.line
    }

    fn decode(&self) -> Item {
        let position = self.position();
        let bad = |reason: String| {
            Item::Bad(BadRow {
                position,
                reason,
                raw: self.raw(),
            })
        };
        if self.record.len() != self.expected_fields {
            return bad(format!(
                "expected {} fields, found {}",
                self.expected_fields,
                self.record.len()
            ));
        }
        let mut values = Vec::with_capacity(self.columns.len());
        for (column, &field) in self.columns.iter().zip(&self.fields) {
            let bytes = self.record.get(field).unwrap_or_default();
            let Some(text) = self.charset.decode(bytes) else {
                return bad(column.reason(self.charset.invalid_text_reason()));
            };
            match parse_text(column, text) {
                Ok(v) => values.push(v),
                Err(why) => return bad(column.reason(&why)),
            }
        }
        Item::Record(FileRecord { position, values })
    }

    /// The current record as it is in the file, without its line end.
    fn raw(&self) -> String {
        let bytes = self.csv.get_ref().bytes(self.span.start, self.span.end);
        let mut bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let bytes = &bytes[..bytes.len().min(RAW_LIMIT_BYTES + 1)];
        cap_raw(&self.charset.decode_lossy(bytes))
    }
}

fn ascii(c: char, what: &str) -> Result<u8, FileError> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| FileError::Layout(format!("the {what} must be an ASCII character")))
}

/// The csv reader's input, keeping what was read since the last released offset, so that
/// the current record's bytes can be looked at. Each byte is copied once more; dead bytes are
/// dropped when they are at least half the window, so the copying stays linear.
struct Window {
    inner: BufReader<File>,
    buf: Vec<u8>,
    /// Input offset of `buf[0]`.
    base: u64,
    /// Offset before which bytes are no longer needed.
    released: u64,
    /// The window outgrew one record plus read-ahead: a runaway record.
    overflow: bool,
}

impl Window {
    fn new(inner: BufReader<File>) -> Window {
        Window {
            inner,
            buf: Vec::new(),
            base: 0,
            released: 0,
            overflow: false,
        }
    }

    /// Bytes `from..to` of the input, as far as they are still held.
    fn bytes(&self, from: u64, to: u64) -> &[u8] {
        let len = self.buf.len();
        let at = |offset: u64| (offset.saturating_sub(self.base) as usize).min(len);
        &self.buf[at(from)..at(to).max(at(from))]
    }

    /// Bytes before `offset` are no longer needed.
    fn release(&mut self, offset: u64) {
        self.released = self.released.max(offset);
        let dead = (self.released.saturating_sub(self.base) as usize).min(self.buf.len());
        if dead > 0 && dead * 2 >= self.buf.len() {
            self.buf.drain(..dead);
            self.base += dead as u64;
        }
    }
}

impl Read for Window {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let live = (self.base + self.buf.len() as u64).saturating_sub(self.released);
        if live > (MAX_RECORD_BYTES + 2 * READ_BUFFER_BYTES) as u64 {
            self.overflow = true;
            return Err(io::Error::other("record too long"));
        }
        let n = self.inner.read(out)?;
        self.buf.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ExportReader;
    use super::super::test_support::*;
    use super::*;
    use crate::model::{FieldType, Value};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn quoted_delimiters_and_newlines_keep_physical_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let content = "SKU,NAME,QTY\r\n\
                       A1,\"Hammer, large\",3\r\n\
                       A2,\"two\r\nline\r\nname\",4\r\n\
                       \r\n\
                       A3,\"say \"\"hi\"\"\",5\r\n\
                       \n\
                       \n\
                       A4,plain,6";
        let path = write(&dir, "a.csv", content.as_bytes());
        let (items, err) = read_all(
            &path,
            &def("format = \"csv\""),
            &[
                req("SKU", FieldType::String),
                req("name", FieldType::String),
                req("QTY", FieldType::Integer),
            ],
        );
        assert!(err.is_none(), "{err:?}");
        let got: Vec<(u64, Vec<Value>)> = records(&items);
        assert_eq!(
            got,
            vec![
                (2, vec![text("A1"), text("Hammer, large"), Value::Int(3)]),
                (
                    3,
                    vec![text("A2"), text("two\r\nline\r\nname"), Value::Int(4)]
                ),
                (7, vec![text("A3"), text("say \"hi\""), Value::Int(5)]),
                (10, vec![text("A4"), text("plain"), Value::Int(6)]),
            ]
        );
    }

    #[test]
    fn skipped_banner_lines_count_in_positions_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let content = "\u{feff}Price list\nprinted 2024-03-01\nSKU;PRICE\nA1;12,50\nA2;-0,99\n";
        let path = write(&dir, "p.csv", content.as_bytes());
        let d =
            def("format = \"csv\"\ndelimiter = \";\"\ndecimal_separator = \",\"\nskip_lines = 2");
        let mut reader =
            ExportReader::open(&path, &d, &[req("PRICE", FieldType::Decimal)]).unwrap();
        let items: Vec<Item> = reader.by_ref().map(Result::unwrap).collect();
        assert_eq!(
            records(&items),
            vec![
                (4, vec![Value::Decimal(Decimal::new(1250, 2))]),
                (5, vec![Value::Decimal(Decimal::new(-99, 2))]),
            ]
        );
        assert_eq!(reader.bytes_read(), content.len() as u64);
    }

    #[test]
    fn only_the_wanted_positions_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let content = "Price list\nSKU;PRICE\nA1;12,50\nA2;oops\n\nA3;1,00\nA4;2,00\n";
        let path = write(&dir, "p.csv", content.as_bytes());
        let d =
            def("format = \"csv\"\ndelimiter = \";\"\ndecimal_separator = \",\"\nskip_lines = 1");
        let mut reader =
            ExportReader::open(&path, &d, &[req("PRICE", FieldType::Decimal)]).unwrap();
        reader.only(Box::new(|p| p == 6 || p == 7));
        let items: Vec<Item> = reader.by_ref().map(Result::unwrap).collect();
        // The bad record at line 4 is not wanted, so it is not even decoded.
        assert_eq!(
            records(&items),
            vec![
                (6, vec![Value::Decimal(Decimal::new(100, 2))]),
                (7, vec![Value::Decimal(Decimal::new(200, 2))]),
            ]
        );
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn headerless_files_use_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "h.tsv", b"A1\t3\tx\nA2\t4\ty\n\nA3\t5\n");
        let d = def("format = \"tsv\"\nheader = false\n\
             [[columns]]\nname = \"QTY\"\nposition = 2\n\
             [[columns]]\nname = \"SKU\"\nposition = 1");
        let (items, err) = read_all(
            &path,
            &d,
            &[
                req("QTY", FieldType::Integer),
                req("SKU", FieldType::String),
            ],
        );
        assert!(err.is_none());
        assert_eq!(
            records(&items),
            vec![
                (1, vec![Value::Int(3), text("A1")]),
                (2, vec![Value::Int(4), text("A2")]),
            ]
        );
        let bad = bad_rows(&items);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position, 4);
        assert_eq!(bad[0].reason, "expected 3 fields, found 2");
        assert_eq!(bad[0].raw, "A3\t5");
    }

    #[test]
    fn a_missing_header_column_is_a_layout_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "m.csv", b"SKU,QTY\nA1,3\n");
        let err = ExportReader::open(
            &path,
            &def("format = \"csv\""),
            &[req("PRICE", FieldType::Decimal)],
        )
        .unwrap_err();
        match err {
            FileError::Layout(msg) => {
                assert!(msg.contains("`PRICE`"), "{msg}");
                assert!(msg.contains("`SKU`, `QTY`"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        // Case and spaces are forgiven.
        let path = write(&dir, "n.csv", b" Sku ,qty\nA1,3\n");
        let (items, _) = read_all(
            &path,
            &def("format = \"csv\""),
            &[
                req("SKU", FieldType::String),
                req("QTY", FieldType::Integer),
            ],
        );
        assert_eq!(records(&items), vec![(2, vec![text("A1"), Value::Int(3)])]);
    }

    #[test]
    fn bad_rows_name_the_column_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = b"SKU,QTY,DAY\nA1,3,2024-03-01\nSECRET1,12x7,2024-03-01\n".to_vec();
        content.extend_from_slice(b"A3,3,2024-02-30\nA4,3\n");
        content.extend_from_slice(b"\xC3\x28SECRET2,3,2024-03-01\nA6,1,2024-03-02\n");
        let path = write(&dir, "b.csv", &content);
        let (items, err) = read_all(
            &path,
            &def("format = \"csv\""),
            &[
                req("SKU", FieldType::String),
                req("QTY", FieldType::Decimal),
                req("DAY", FieldType::Date),
            ],
        );
        assert!(err.is_none());
        let bad = bad_rows(&items);
        let summary: Vec<(u64, &str)> = bad
            .iter()
            .map(|b| (b.position, b.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (3, "column QTY: expected a decimal number"),
                (4, "column DAY: expected a date (YYYY-MM-DD)"),
                (5, "expected 3 fields, found 2"),
                (
                    6,
                    "column SKU: not valid UTF-8 text (set `encoding` if the export uses another code page)"
                ),
            ]
        );
        for b in &bad {
            assert!(!b.reason.contains("12x7") && !b.reason.contains("SECRET"));
        }
        assert_eq!(bad[0].raw, "SECRET1,12x7,2024-03-01");
        assert_eq!(bad[3].raw, "\u{FFFD}(SECRET2,3,2024-03-01");
        assert_eq!(records(&items).last().map(|r| r.0), Some(7));
    }

    #[test]
    fn single_byte_encodings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["Müller Ölgemälde", "café", "Straße"];
        for (encoding, encode) in [
            ("windows-1252", encode_1252 as fn(&str) -> Vec<u8>),
            ("cp437", encode_437),
            ("iso-8859-1", encode_latin1),
        ] {
            let mut content = b"NAME;NOTE\n".to_vec();
            for n in names {
                content.extend(encode(n));
                content.extend_from_slice(b";\"x;y\"\n");
            }
            let path = write(&dir, &format!("{encoding}.csv"), &content);
            let d = def(&format!(
                "format = \"csv\"\ndelimiter = \";\"\nencoding = \"{encoding}\""
            ));
            let (items, err) = read_all(&path, &d, &[req("NAME", FieldType::String)]);
            assert!(err.is_none());
            let got: Vec<Value> = records(&items)
                .into_iter()
                .map(|r| r.1[0].clone())
                .collect();
            assert_eq!(got, names.map(text).to_vec(), "{encoding}");
        }
    }

    #[test]
    fn latin1_c1_bytes_are_controls_not_windows_1252() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "c1.csv", b"N\n\x80\x9F\n");
        let read = |encoding: &str| {
            let d = def(&format!("format = \"csv\"\nencoding = \"{encoding}\""));
            let (items, _) = read_all(&path, &d, &[req("N", FieldType::String)]);
            records(&items)[0].1[0].clone()
        };
        assert_eq!(read("iso-8859-1"), text("\u{80}\u{9F}"));
        assert_eq!(read("windows-1252"), text("€Ÿ"));
    }

    #[test]
    fn utf8_bom_is_stripped_before_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "bom.csv", "\u{feff}SKU,NAME\nA1,café\n".as_bytes());
        let (items, err) = read_all(
            &path,
            &def("format = \"csv\""),
            &[
                req("SKU", FieldType::String),
                req("NAME", FieldType::String),
            ],
        );
        assert!(err.is_none(), "{err:?}");
        assert_eq!(records(&items), vec![(2, vec![text("A1"), text("café")])]);
    }

    #[test]
    fn trim_and_empty_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "t.csv", b"A,B,C\n  x  , ,\n");
        let cols = [
            req("A", FieldType::String),
            req("B", FieldType::Decimal),
            req("C", FieldType::String),
        ];
        let (items, _) = read_all(&path, &def("format = \"csv\"\ntrim = true"), &cols);
        assert_eq!(
            records(&items),
            vec![(2, vec![text("x"), Value::Null, text("")])]
        );
        let (items, _) = read_all(&path, &def("format = \"csv\""), &cols);
        assert_eq!(
            records(&items),
            vec![(2, vec![text("  x  "), Value::Null, text("")])]
        );
    }

    #[test]
    fn an_empty_file_with_a_header_is_a_layout_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "e.csv", b"");
        let err = ExportReader::open(&path, &def("format = \"csv\""), &[]).unwrap_err();
        assert!(matches!(err, FileError::Layout(_)));
    }

    #[test]
    fn an_unclosed_quote_is_a_bad_row_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "q.csv", b"A,B,C\n1,2,3\n4,\"oops\n5,6,7\n8,9,10\n");
        let (items, err) = read_all(
            &path,
            &def("format = \"csv\""),
            &[req("A", FieldType::Integer)],
        );
        assert!(err.is_none());
        assert_eq!(records(&items), vec![(2, vec![Value::Int(1)])]);
        assert_eq!(bad_rows(&items)[0].position, 3);
    }

    /// A million rows of nine columns, as the diff benchmark reads them. Run with
    /// `cargo test --release --lib source::files::format::delimited -- --ignored --nocapture`.
    #[test]
    #[ignore = "throughput measurement"]
    fn throughput_of_a_million_rows() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "SKU,NAME,PRICE,QTY,ACTIVE,DAY,CHANGED,NOTE,GROUP").unwrap();
        for i in 0..1_000_000u32 {
            writeln!(
                out,
                "SKU{i:07},\"Article {i}, blue\",{}.{:02},{},{},2024-03-{:02},2024-03-01 10:{:02}:00,Müller Ölgemälde,G{}",
                i % 1000,
                i % 100,
                i % 5000,
                if i % 2 == 0 { "true" } else { "false" },
                i % 28 + 1,
                i % 60,
                i % 17
            )
            .unwrap();
        }
        drop(out);
        let len = std::fs::metadata(&path).unwrap().len();
        let cols = [
            req("SKU", FieldType::String),
            req("NAME", FieldType::String),
            req("PRICE", FieldType::Decimal),
            req("QTY", FieldType::Integer),
            req("ACTIVE", FieldType::Boolean),
            req("DAY", FieldType::Date),
            req("CHANGED", FieldType::Timestamp),
            req("NOTE", FieldType::String),
            req("GROUP", FieldType::String),
        ];
        let started = std::time::Instant::now();
        let reader = ExportReader::open(&path, &def("format = \"csv\""), &cols).unwrap();
        let mut good = 0;
        for item in reader {
            if let Item::Record(_) = item.unwrap() {
                good += 1;
            }
        }
        let took = started.elapsed();
        assert_eq!(good, 1_000_000);
        eprintln!(
            "{good} rows, {} MB in {took:?}: {:.0} MB/s",
            len >> 20,
            len as f64 / 1e6 / took.as_secs_f64()
        );
    }

    #[test]
    fn a_runaway_quoted_field_is_malformed_not_held_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = b"A,B\n1,2\n3,\"never closed".to_vec();
        content.resize(
            content.len() + MAX_RECORD_BYTES + 3 * READ_BUFFER_BYTES,
            b'x',
        );
        let path = write(&dir, "r.csv", &content);
        let (items, err) = read_all(
            &path,
            &def("format = \"csv\""),
            &[req("A", FieldType::Integer)],
        );
        assert_eq!(records(&items), vec![(2, vec![Value::Int(1)])]);
        match err {
            Some(FileError::Malformed(m)) => assert!(m.contains("after line 3"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn arbitrary_bytes_never_panic_and_positions_increase(
            content in proptest::collection::vec(
                prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), Just(b' '),
                            Just(b'1'), Just(b'A'), Just(0x1A), Just(0xC3), any::<u8>()],
                0..400),
            header in any::<bool>(),
            skip in 0usize..3,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = write(&dir, "p.csv", &content);
            let d = if header {
                def(&format!("format = \"csv\"\nskip_lines = {skip}"))
            } else {
                def(&format!("format = \"csv\"\nheader = false\nskip_lines = {skip}\n\
                              [[columns]]\nname = \"A\"\nposition = 1"))
            };
            let cols = if header { vec![] } else { vec![req("A", FieldType::Decimal)] };
            if let Ok(reader) = ExportReader::open(&path, &d, &cols) {
                assert_positions_increase(reader, content.len() as u64);
            }
        }
    }
}
