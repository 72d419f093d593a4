//! dBASE III/IV and FoxPro tables (`.dbf`), with memo text from the `.dbt`/`.fpt` file next
//! to them. Positions are physical record numbers from 1, deleted records included.
//!
//! What the `dbase` crate does here: it parses and checks the header and the field
//! descriptors (names, types, widths, the Visual FoxPro backlink) and maps the
//! language-driver byte to a code page ([`dbase::CodePageMark`]). What it cannot do, and why
//! records and memo blocks are read here from the fixed layout instead:
//! - `Reader::iter_records` skips deleted records without saying so, so physical record
//!   numbers are lost; `File::record(i)` keeps them but reads through the same value API.
//! - Values come as `FieldValue`: `Numeric` as `f64` and `Float` as `f32` (digits beyond ~15
//!   are lost, which money must not be) and `Currency` as an `f64`, while Visual FoxPro
//!   stores an integer in ten-thousandths. No public call returns a field's raw bytes
//!   (`read_next_field_raw` is crate-private, behind its `serde` feature).
//! - Memo text is decoded with the crate's own encoding types (ours, e.g. true ISO-8859-1 or
//!   a fallback for a zero code-page byte, cannot be passed in together with a memo file),
//!   its memo reader is private, and it looks for the memo file only with a lower-case
//!   extension (DOS exports are usually `PRICES.DBT`).
//!
//! Known limits kept from the crate: field types it does not know (Visual FoxPro `V`, `Q`,
//! `G`, `W`, `0` null flags; dBASE 7 `@`, `O`, `+`) and a header whose date is not a
//! valid date make the file a [`FileError::Layout`].

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use dbase::{CodePageMark, FieldType as DbfType};
use rust_decimal::Decimal;

use super::encoding::Charset;
use super::number::{NumberStyle, parse_decimal, parse_integer};
use super::text::{Why, parse_text};
use super::{
    BadRow, Column, FileError, FileRecord, Item, MAX_RECORD_BYTES, READ_BUFFER_BYTES, cap_raw,
    name_list,
};
use crate::config::{FileDef, TextEncoding};
use crate::model::{FieldType, Value};

/// Header bytes before the field descriptors.
const HEADER_BYTES: usize = 32;
/// Version bytes the `dbase` crate reads (it accepts any byte, calling the rest unknown).
const KNOWN_VERSIONS: [u8; 12] = [
    0x02, 0x03, 0x30, 0x31, 0x32, 0x43, 0x63, 0x83, 0x8B, 0xCB, 0xF5, 0xFB,
];
/// Julian day number of 0001-01-01 minus one: `NaiveDate` counts days from the common era.
const JULIAN_DAY_OF_CE_DAY_0: i32 = 1_721_425;

/// Reads a DBF table.
pub(super) struct DbfReader {
    source: BufReader<File>,
    charset: Charset,
    columns: Vec<Column>,
    /// The field of each requested column.
    wanted: Vec<Field>,
    /// Every field, to show a bad record.
    fields: Vec<Field>,
    /// Bytes per record, deletion flag included.
    record_len: usize,
    num_records: u64,
    /// Physical index (from 0) of the next record.
    next_record: u64,
    header_len: u64,
    buf: Vec<u8>,
    memo: Option<MemoFile>,
}

/// A field of the table and where it lies in a record.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: DbfType,
    offset: usize,
    len: usize,
}

impl DbfReader {
    pub(super) fn open(
        path: &Path,
        file: File,
        def: &FileDef,
        columns: Vec<Column>,
    ) -> Result<DbfReader, FileError> {
        let mut source = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let mut head = [0u8; HEADER_BYTES];
        if let Err(e) = source.read_exact(&mut head) {
            return Err(match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    FileError::Layout("not a DBF: shorter than a DBF header".into())
                }
                _ => FileError::Io(e),
            });
        }
        if !KNOWN_VERSIONS.contains(&head[0]) {
            return Err(FileError::Layout(format!(
                "not a DBF, or an unsupported version (first byte 0x{:02X})",
                head[0]
            )));
        }
        source.seek(SeekFrom::Start(0))?;
        // Field names are ASCII in practice; the crate needs some encoding for them.
        let (header, infos) = {
            let reader = dbase::ReaderBuilder::new()
                .with_encoding(dbase::UnicodeLossy)
                .build(&mut source)
                .map_err(header_error)?;
            (*reader.header(), reader.fields().to_vec())
        };
        let mut fields = Vec::with_capacity(infos.len());
        let mut offset = 1;
        for info in &infos {
            let len = usize::from(info.length());
            fields.push(Field {
                name: info.name().trim().to_owned(),
                kind: info.field_type(),
                offset,
                len,
            });
            offset += len;
        }
        // Some writers leave the deletion flag out of the header's record length; the crate
        // then trusts the fields, and so do we unless the header says more.
        let header_record_len = usize::from(u16::from_le_bytes([head[10], head[11]]));
        let record_len = offset.max(header_record_len);
        let charset = charset_for(head[29], def.encoding)?;

        let mut wanted = Vec::with_capacity(columns.len());
        for column in &columns {
            let wanted_name = column.name.trim().to_lowercase();
            let Some(field) = fields.iter().find(|f| f.name.to_lowercase() == wanted_name) else {
                return Err(FileError::Layout(format!(
                    "column `{}` is not a field of the DBF (fields: {})",
                    column.name,
                    name_list(fields.iter().map(|f| f.name.as_str()))
                )));
            };
            check_field(column, field)?;
            wanted.push(field.clone());
        }
        let memo = if wanted.iter().any(|f| f.kind == DbfType::Memo) {
            Some(MemoFile::open(path, head[0])?)
        } else {
            None
        };
        source.seek(SeekFrom::Start(u64::from(header.offset_to_first_record)))?;
        Ok(DbfReader {
            source,
            charset,
            columns,
            wanted,
            fields,
            record_len,
            num_records: u64::from(header.num_records),
            next_record: 0,
            header_len: u64::from(header.offset_to_first_record),
            buf: vec![0; record_len],
            memo,
        })
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.header_len + self.next_record * self.record_len as u64
    }

    pub(super) fn next_item(&mut self) -> Result<Option<Item>, FileError> {
        while self.next_record < self.num_records {
            let number = self.next_record + 1;
            if let Err(e) = self.source.read_exact(&mut self.buf) {
                return Err(match e.kind() {
                    io::ErrorKind::UnexpectedEof => FileError::Malformed(format!(
                        "the file ends inside record {number} of {}",
                        self.num_records
                    )),
                    _ => FileError::Io(e),
                });
            }
            self.next_record += 1;
            match self.buf[0] {
                b'*' => continue,
                0x1A => {
                    return Err(FileError::Malformed(format!(
                        "end-of-file mark at record {number} of {}",
                        self.num_records
                    )));
                }
                _ => return self.decode(number).map(Some),
            }
        }
        Ok(None)
    }

    fn decode(&mut self, position: u64) -> Result<Item, FileError> {
        let mut values = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter().zip(&self.wanted) {
            let bytes = &self.buf[field.offset..field.offset + field.len];
            match field_value(column, field, bytes, self.charset, &mut self.memo)? {
                Ok(v) => values.push(v),
                Err(why) => {
                    return Ok(Item::Bad(BadRow {
                        position,
                        reason: column.reason(&why),
                        raw: self.raw(),
                    }));
                }
            }
        }
        Ok(Item::Record(FileRecord { position, values }))
    }

    /// The current record as `NAME=value` pairs, for the quarantine table.
    fn raw(&self) -> String {
        let shown: Vec<String> = self
            .fields
            .iter()
            .map(|f| {
                let bytes = &self.buf[f.offset..f.offset + f.len];
                format!("{}={}", f.name, render(f.kind, bytes, self.charset))
            })
            .collect();
        cap_raw(&shown.join(" | "))
    }
}

fn header_error(e: dbase::Error) -> FileError {
    match e.kind() {
        dbase::ErrorKind::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            FileError::Layout("not a DBF: the header is cut short".into())
        }
        dbase::ErrorKind::InvalidFieldType(c) => FileError::Layout(format!(
            "the DBF has a field of type `{}`, which cannot be read",
            c.escape_default()
        )),
        // The crate reports a header date that is not a date as invalid data.
        dbase::ErrorKind::IoError(io) if io.kind() != io::ErrorKind::InvalidData => {
            FileError::Io(io::Error::new(io.kind(), io.to_string()))
        }
        _ => FileError::Layout(format!("not a readable DBF header: {e}")),
    }
}

/// The character set named by the header's language-driver byte; the configured encoding
/// (UTF-8 when absent) when the byte is 0, or names a code page that cannot be decoded.
fn charset_for(byte: u8, configured: Option<TextEncoding>) -> Result<Charset, FileError> {
    use CodePageMark as M;
    let web = |e| Some(Charset::Web(e));
    let found = match M::from(byte) {
        M::Undefined => return Ok(Charset::from_config(configured)),
        M::Utf8 => Some(Charset::Utf8),
        M::CP437 => Charset::oem(437),
        M::CP850 => Charset::oem(850),
        M::CP852 => Charset::oem(852),
        M::CP857 => Charset::oem(857),
        M::CP861 => Charset::oem(861),
        M::CP865 => Charset::oem(865),
        M::CP866 => Charset::oem(866),
        M::CP737 => Charset::oem(737),
        M::CP874 => web(encoding_rs::WINDOWS_874),
        M::CP1250 => web(encoding_rs::WINDOWS_1250),
        M::CP1251 => web(encoding_rs::WINDOWS_1251),
        M::CP1252 => web(encoding_rs::WINDOWS_1252),
        M::CP1253 => web(encoding_rs::WINDOWS_1253),
        M::CP1254 => web(encoding_rs::WINDOWS_1254),
        M::CP1255 => web(encoding_rs::WINDOWS_1255),
        M::CP1256 => web(encoding_rs::WINDOWS_1256),
        M::CP932 => web(encoding_rs::SHIFT_JIS),
        M::CP936 => web(encoding_rs::GBK),
        M::CP949 => web(encoding_rs::EUC_KR),
        M::CP950 => web(encoding_rs::BIG5),
        _ => None,
    };
    match (found, configured) {
        (Some(charset), _) => Ok(charset),
        (None, Some(_)) => Ok(Charset::from_config(configured)),
        (None, None) => Err(FileError::Layout(format!(
            "the DBF's code-page byte 0x{byte:02X} names no supported code page; set `encoding`"
        ))),
    }
}

/// Whether a field of `field.kind` can be read as the column's type, and is wide enough.
fn check_field(column: &Column, field: &Field) -> Result<(), FileError> {
    use FieldType as F;
    let (fits, width) = match field.kind {
        DbfType::Character | DbfType::Memo => (true, 1),
        DbfType::Numeric | DbfType::Float => {
            (matches!(column.ty, F::String | F::Integer | F::Decimal), 1)
        }
        DbfType::Integer => (matches!(column.ty, F::String | F::Integer | F::Decimal), 4),
        DbfType::Currency | DbfType::Double => {
            (matches!(column.ty, F::String | F::Integer | F::Decimal), 8)
        }
        DbfType::Date => (matches!(column.ty, F::String | F::Date | F::Timestamp), 8),
        DbfType::DateTime => (matches!(column.ty, F::String | F::Timestamp), 8),
        DbfType::Logical => (matches!(column.ty, F::String | F::Boolean), 1),
    };
    if !fits {
        return Err(FileError::Layout(format!(
            "column `{}` is a DBF {:?} field and cannot be read as {}",
            column.name, field.kind, column.ty
        )));
    }
    if field.len < width {
        return Err(FileError::Layout(format!(
            "DBF field `{}` ({:?}) is {} bytes wide, expected at least {width}",
            field.name, field.kind, field.len
        )));
    }
    Ok(())
}

/// Bytes without surrounding spaces and NULs (DBF padding).
fn trim_padding(bytes: &[u8]) -> &[u8] {
    let pad = |b: &u8| matches!(b, b' ' | 0);
    let start = bytes.iter().position(|b| !pad(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Bytes without trailing spaces and NULs (character fields keep leading spaces).
fn trim_end_padding(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | 0))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

fn ascii_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok().filter(|s| s.is_ascii())
}

/// One field's value; the outer error is an I/O failure reading the memo file.
fn field_value(
    column: &Column,
    field: &Field,
    bytes: &[u8],
    charset: Charset,
    memo: &mut Option<MemoFile>,
) -> Result<Result<Value, Why>, FileError> {
    let value = match field.kind {
        DbfType::Character => {
            let trimmed = trim_end_padding(bytes);
            match charset.decode(trimmed) {
                Some(text) => parse_text(column, text),
                None => Err(charset.invalid_text_reason().into()),
            }
        }
        DbfType::Memo => {
            let block = match memo_block(bytes) {
                Ok(block) => block,
                Err(why) => return Ok(Err(why)),
            };
            let Some(block) = block else {
                return Ok(parse_text(column, Cow::Borrowed("")));
            };
            let Some(memo) = memo.as_mut() else {
                return Ok(Err("memo file is not open".into()));
            };
            match memo.read(block)? {
                None => Err(format!("memo block {block} is missing from the memo file").into()),
                Some(data) => match charset.decode(data) {
                    Some(text) => parse_text(column, text),
                    None => Err(charset.invalid_text_reason().into()),
                },
            }
        }
        DbfType::Numeric | DbfType::Float => numeric(column, trim_padding(bytes)),
        DbfType::Date => {
            let t = trim_padding(bytes);
            if t.iter().all(|b| *b == b'0') {
                Ok(Value::Null)
            } else {
                match ascii_text(t).and_then(|t| NaiveDate::parse_from_str(t, "%Y%m%d").ok()) {
                    None => Err("expected a date (YYYYMMDD)".into()),
                    Some(d) => Ok(match column.ty {
                        FieldType::Timestamp => Value::NaiveTimestamp(d.and_time(NaiveTime::MIN)),
                        FieldType::String => Value::Text(d.format("%Y-%m-%d").to_string()),
                        _ => Value::Date(d),
                    }),
                }
            }
        }
        DbfType::Logical => match bytes.first().copied().unwrap_or(b' ') {
            b' ' | b'?' | 0 => Ok(Value::Null),
            b @ (b'T' | b't' | b'Y' | b'y' | b'F' | b'f' | b'N' | b'n') => Ok(match column.ty {
                FieldType::String => Value::Text(char::from(b).to_string()),
                _ => Value::Bool(matches!(b, b'T' | b't' | b'Y' | b'y')),
            }),
            _ => Err("expected a logical value (T, F, Y, N or ?)".into()),
        },
        DbfType::Integer => {
            let v = i32::from_le_bytes(le_bytes(bytes));
            Ok(match column.ty {
                FieldType::Decimal => Value::Decimal(Decimal::from(v)),
                FieldType::String => Value::Text(v.to_string()),
                _ => Value::Int(i64::from(v)),
            })
        }
        DbfType::Currency => exact(column, Decimal::new(i64::from_le_bytes(le_bytes(bytes)), 4)),
        DbfType::Double => {
            let v = f64::from_le_bytes(le_bytes(bytes));
            // The shortest text that reads back as the same double: what the writer meant.
            match v.is_finite().then(|| v.to_string()) {
                None => Err("expected a number, found infinity or NaN".into()),
                Some(text) => match Decimal::from_str_exact(&text) {
                    Ok(d) => exact(column, d),
                    Err(_) => Err("decimal number out of range".into()),
                },
            }
        }
        DbfType::DateTime => {
            let day = i32::from_le_bytes(le_bytes(bytes));
            let millis = i32::from_le_bytes(le_bytes(&bytes[4..]));
            if day == 0 && millis == 0 {
                Ok(Value::Null)
            } else {
                match datetime(day, millis) {
                    None => Err("expected a timestamp (Julian day and milliseconds)".into()),
                    Some(ts) => Ok(match column.ty {
                        FieldType::String => {
                            Value::Text(ts.format("%Y-%m-%dT%H:%M:%S%.f").to_string())
                        }
                        _ => Value::NaiveTimestamp(ts),
                    }),
                }
            }
        }
    };
    Ok(value)
}

/// A numeric field's text as the column's type, exact.
fn numeric(column: &Column, t: &[u8]) -> Result<Value, Why> {
    if t.is_empty() {
        return Ok(match column.ty {
            FieldType::String => Value::Text(String::new()),
            _ => Value::Null,
        });
    }
    if t.iter().all(|b| *b == b'*') {
        return Err("numeric field holds an overflow marker (the value did not fit)".into());
    }
    let Some(text) = ascii_text(t) else {
        return Err("expected a decimal number".into());
    };
    // DBF numbers are always written with a point and a leading sign.
    let style = NumberStyle::default();
    match column.ty {
        FieldType::String => Ok(Value::Text(text.to_owned())),
        FieldType::Integer => parse_integer(text, style)
            .map(Value::Int)
            .map_err(|e| e.reason(true).into()),
        _ => parse_decimal(text, style)
            .map(Value::Decimal)
            .map_err(|e| e.reason(false).into()),
    }
}

/// An exact decimal as the column's type (integer only when integral).
fn exact(column: &Column, d: Decimal) -> Result<Value, Why> {
    match column.ty {
        FieldType::String => Ok(Value::Text(d.to_string())),
        FieldType::Integer if !d.fract().is_zero() => {
            Err("expected an integer, found a fraction".into())
        }
        FieldType::Integer => i64::try_from(d)
            .map(Value::Int)
            .map_err(|_| "integer out of range".into()),
        _ => Ok(Value::Decimal(d)),
    }
}

fn le_bytes<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = bytes.len().min(N);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// A Visual FoxPro timestamp: Julian day number and milliseconds since midnight.
fn datetime(day: i32, millis: i32) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_num_days_from_ce_opt(day.checked_sub(JULIAN_DAY_OF_CE_DAY_0)?)?;
    let millis = u32::try_from(millis).ok()?;
    let time =
        NaiveTime::from_num_seconds_from_midnight_opt(millis / 1000, (millis % 1000) * 1_000_000)?;
    Some(date.and_time(time))
}

/// The memo block a memo field points to: ten ASCII digits (dBASE, FoxPro 2) or a 4-byte
/// integer (Visual FoxPro); `None` for an empty memo.
fn memo_block(bytes: &[u8]) -> Result<Option<u64>, Why> {
    if bytes.len() == 4 {
        let n = u32::from_le_bytes(le_bytes(bytes));
        return Ok((n != 0).then_some(u64::from(n)));
    }
    let t = trim_padding(bytes);
    if t.is_empty() {
        return Ok(None);
    }
    match ascii_text(t).and_then(|t| t.parse::<u64>().ok()) {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Err("expected a memo block number".into()),
    }
}

/// How a field is shown in a bad record's raw text.
fn render(kind: DbfType, bytes: &[u8], charset: Charset) -> String {
    match kind {
        DbfType::Integer => i32::from_le_bytes(le_bytes(bytes)).to_string(),
        DbfType::Currency => Decimal::new(i64::from_le_bytes(le_bytes(bytes)), 4).to_string(),
        DbfType::Double => f64::from_le_bytes(le_bytes(bytes)).to_string(),
        DbfType::DateTime => {
            let day = i32::from_le_bytes(le_bytes(bytes));
            let millis = i32::from_le_bytes(le_bytes(bytes.get(4..).unwrap_or_default()));
            match datetime(day, millis) {
                Some(ts) => ts.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
                None => format!("(day {day}, {millis} ms)"),
            }
        }
        DbfType::Memo => match memo_block(bytes) {
            Ok(Some(block)) => format!("(memo block {block})"),
            Ok(None) => String::new(),
            Err(_) => "(bad memo block number)".into(),
        },
        _ => charset.decode_lossy(trim_padding(bytes)).into_owned(),
    }
}

/// The layout of a memo file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemoKind {
    /// dBASE III `.dbt`: 512-byte blocks, text ends at 0x1A.
    Dbt3,
    /// dBASE IV `.dbt`: blocks start with `FF FF 08 00` and a little-endian length.
    Dbt4,
    /// FoxPro `.fpt`: big-endian block size in the header; blocks start with a big-endian
    /// type and length.
    Fpt,
}

/// A memo file, read block by block.
struct MemoFile {
    file: BufReader<File>,
    kind: MemoKind,
    block_size: u64,
    buf: Vec<u8>,
}

impl MemoFile {
    /// Finds and opens the memo file next to the table at `dbf`, whatever the case of its
    /// extension.
    fn open(dbf: &Path, version: u8) -> Result<MemoFile, FileError> {
        let foxpro = matches!(version, 0x30..=0x32 | 0xF5 | 0xFB | 0x02);
        let order: [&str; 2] = if foxpro {
            ["fpt", "dbt"]
        } else {
            ["dbt", "fpt"]
        };
        let candidates: Vec<PathBuf> = order
            .iter()
            .flat_map(|ext| {
                let upper = ext.to_uppercase();
                let title = format!("{}{}", &upper[..1], &ext[1..]);
                [ext.to_string(), upper, title]
            })
            .map(|ext| dbf.with_extension(ext))
            .collect();
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            return Err(FileError::Layout(format!(
                "a requested memo field needs the memo file {}, which is not there",
                dbf.with_extension(order[0])
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )));
        };
        let is_fpt = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("fpt"));
        let mut file = BufReader::new(File::open(path)?);
        let mut head = [0u8; 32];
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        let (kind, block_size) = if is_fpt {
            // A block size of 0 means space is allocated by the byte.
            let size = u16::from_be_bytes([head[6], head[7]]);
            (MemoKind::Fpt, u64::from(size.max(1)))
        } else if matches!(version, 0x8B | 0xCB) {
            let at20 = u16::from_le_bytes([head[20], head[21]]);
            let at4 = u16::from_le_bytes([head[4], head[5]]);
            let size = [at20, at4].into_iter().find(|s| *s > 0).unwrap_or(512);
            (MemoKind::Dbt4, u64::from(size))
        } else {
            (MemoKind::Dbt3, 512)
        };
        Ok(MemoFile {
            file,
            kind,
            block_size,
            buf: Vec::new(),
        })
    }

    /// The bytes of the memo at `block`, or `None` when the memo file does not hold it.
    fn read(&mut self, block: u64) -> io::Result<Option<&[u8]>> {
        let Some(at) = block.checked_mul(self.block_size) else {
            return Ok(None);
        };
        self.file.seek(SeekFrom::Start(at))?;
        self.buf.clear();
        let limit = MAX_RECORD_BYTES as u64;
        match self.kind {
            MemoKind::Fpt => {
                let mut head = [0u8; 8];
                if !read_full(&mut self.file, &mut head)? {
                    return Ok(None);
                }
                let len = u64::from(u32::from_be_bytes(le_bytes(&head[4..])));
                if len > limit {
                    return Ok(None);
                }
                (&mut self.file).take(len).read_to_end(&mut self.buf)?;
                if (self.buf.len() as u64) < len {
                    return Ok(None);
                }
            }
            MemoKind::Dbt4 | MemoKind::Dbt3 => {
                let mut head = [0u8; 8];
                let dbase4 = self.kind == MemoKind::Dbt4
                    && read_full(&mut self.file, &mut head)?
                    && head[..4] == [0xFF, 0xFF, 0x08, 0x00];
                if dbase4 {
                    // The length counts the 8-byte block header.
                    let len = u64::from(u32::from_le_bytes(le_bytes(&head[4..])));
                    let len = len.saturating_sub(8).min(limit);
                    (&mut self.file).take(len).read_to_end(&mut self.buf)?;
                    if let Some(end) = self.buf.iter().position(|b| *b == 0x1F) {
                        self.buf.truncate(end);
                    }
                } else {
                    self.file.seek(SeekFrom::Start(at))?;
                    (&mut self.file)
                        .take(limit)
                        .read_until(0x1A, &mut self.buf)?;
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    if self.buf.last() == Some(&0x1A) {
                        self.buf.pop();
                    }
                }
            }
        }
        Ok(Some(&self.buf))
    }
}

/// Fills `buf`; false when the file ends first.
fn read_full(file: &mut BufReader<File>, buf: &mut [u8]) -> io::Result<bool> {
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{ExportReader, FileError};
    use crate::model::{FieldType, Value};
    use chrono::{NaiveDate, NaiveDateTime};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    /// A field descriptor for [`dbf`].
    struct F(&'static str, u8, u8);

    /// The bytes of a table: `version`, `code_page` (byte 29), fields, and records as
    /// (deleted, bytes without the flag).
    fn dbf(version: u8, code_page: u8, fields: &[F], records: &[(bool, Vec<u8>)]) -> Vec<u8> {
        let backlink = if (0x30..=0x32).contains(&version) {
            263
        } else {
            0
        };
        let header_len = 32 + 32 * fields.len() + 1 + backlink;
        let record_len = 1 + fields.iter().map(|f| usize::from(f.2)).sum::<usize>();
        let mut out = vec![version, 124, 3, 1];
        out.extend((records.len() as u32).to_le_bytes());
        out.extend((header_len as u16).to_le_bytes());
        out.extend((record_len as u16).to_le_bytes());
        out.extend([0u8; 17]);
        out.push(code_page);
        out.extend([0u8; 2]);
        for F(name, kind, len) in fields {
            let mut n = [0u8; 11];
            n[..name.len()].copy_from_slice(name.as_bytes());
            out.extend(n);
            out.push(*kind);
            out.extend([0u8; 4]);
            out.push(*len);
            out.push(if *kind == b'N' { 2 } else { 0 });
            out.extend([0u8; 14]);
        }
        out.push(0x0D);
        out.extend(vec![0u8; backlink]);
        for (deleted, bytes) in records {
            assert_eq!(bytes.len(), record_len - 1, "test record width");
            out.push(if *deleted { b'*' } else { b' ' });
            out.extend(bytes);
        }
        out.push(0x1A);
        out
    }

    /// Left-aligned, space-padded.
    fn left(bytes: &[u8], len: usize) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.resize(len, b' ');
        v
    }

    /// Right-aligned, space-padded.
    fn right(text: &str, len: usize) -> Vec<u8> {
        format!("{text:>len$}").into_bytes()
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str_exact(s).unwrap())
    }

    const ARTICLE: [F; 4] = [
        F("NAME", b'C', 20),
        F("PRICE", b'N', 20),
        F("DAY", b'D', 8),
        F("ACTIVE", b'L', 1),
    ];

    fn article(name: &[u8], price: &str, day: &str, active: u8) -> Vec<u8> {
        [
            left(name, 20),
            right(price, 20),
            left(day.as_bytes(), 8),
            vec![active],
        ]
        .concat()
    }

    fn article_columns() -> Vec<super::super::ColumnRequest> {
        vec![
            req("name", FieldType::String),
            req("Price", FieldType::Decimal),
            req("DAY", FieldType::Date),
            req("ACTIVE", FieldType::Boolean),
        ]
    }

    #[test]
    fn deleted_records_count_in_positions_and_the_code_page_byte_decodes_text() {
        let dir = tempfile::tempdir().unwrap();
        let name = "Müller Ölgemälde";
        let rows = vec![
            (
                false,
                article(&encode_437(name), "12345678901234.5678", "20240301", b'T'),
            ),
            (true, article(b"gone", "1", "20240301", b'T')),
            (
                false,
                article(&encode_437("café"), "-0.10", "        ", b'?'),
            ),
            (true, article(b"gone too", "2", "20240301", b'F')),
            (false, article(b"SECRET", "12x", "20240301", b'F')),
            (false, article(b"overflow", "*****", "20240301", b'F')),
            (false, article(b"bad date", "1", "20241301", b'F')),
            (false, article(b"last", "7", "00000000", b'n')),
        ];
        let path = write(&dir, "ART.DBF", &dbf(0x03, 0x01, &ARTICLE, &rows));
        let (items, err) = read_all(&path, &def("format = \"dbf\""), &article_columns());
        assert!(err.is_none(), "{err:?}");
        let day = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(
            records(&items),
            vec![
                (
                    1,
                    vec![
                        Value::Text(name.into()),
                        dec("12345678901234.5678"),
                        Value::Date(day),
                        Value::Bool(true),
                    ]
                ),
                (
                    3,
                    vec![
                        Value::Text("café".into()),
                        dec("-0.10"),
                        Value::Null,
                        Value::Null
                    ]
                ),
                (
                    8,
                    vec![
                        Value::Text("last".into()),
                        dec("7"),
                        Value::Null,
                        Value::Bool(false)
                    ]
                ),
            ]
        );
        let bad: Vec<(u64, String)> = bad_rows(&items)
            .into_iter()
            .map(|b| (b.position, b.reason))
            .collect();
        assert_eq!(
            bad,
            vec![
                (5, "column Price: expected a decimal number".to_owned()),
                (
                    6,
                    "column Price: numeric field holds an overflow marker (the value did not fit)"
                        .to_owned()
                ),
                (7, "column DAY: expected a date (YYYYMMDD)".to_owned()),
            ]
        );
        let raw = &bad_rows(&items)[0].raw;
        assert_eq!(raw, "NAME=SECRET | PRICE=12x | DAY=20240301 | ACTIVE=F");
    }

    #[test]
    fn a_zero_code_page_byte_falls_back_to_the_configured_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![(
            false,
            article(&encode_1252("Ölgemälde"), "1.5", "20240301", b'Y'),
        )];
        let path = write(&dir, "a.dbf", &dbf(0x03, 0x00, &ARTICLE, &rows));
        let d = def("format = \"dbf\"\nencoding = \"windows-1252\"");
        let (items, _) = read_all(&path, &d, &article_columns()[..1]);
        assert_eq!(
            records(&items),
            vec![(1, vec![Value::Text("Ölgemälde".into())])]
        );
        // Without a configured encoding the text must be UTF-8: the row is bad, not garbled.
        let (items, _) = read_all(&path, &def("format = \"dbf\""), &article_columns()[..1]);
        assert!(bad_rows(&items)[0].reason.contains("not valid UTF-8"));
    }

    #[test]
    fn a_table_written_by_the_dbase_crate_reads_back() {
        use dbase::{FieldName, TableWriterBuilder};
        dbase::dbase_record!(
            struct Article {
                name: String,
                price: f64,
                day: dbase::Date,
                active: bool,
            }
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crate.dbf");
        let name = |n: &str| FieldName::try_from(n).unwrap();
        let writer = TableWriterBuilder::with_encoding(dbase::yore::code_pages::CP850)
            .add_character_field(name("NAME"), 20)
            .add_numeric_field(name("PRICE"), 12, 2)
            .add_date_field(name("DAY"))
            .add_logical_field(name("ACTIVE"))
            .build_with_file_dest(&path)
            .unwrap();
        writer
            .write_records(&[
                Article {
                    name: "Müller".into(),
                    price: 12.5,
                    day: dbase::Date::new(1, 3, 2024).unwrap(),
                    active: true,
                },
                Article {
                    name: "Ölgemälde".into(),
                    price: -3.0,
                    day: dbase::Date::new(29, 2, 2024).unwrap(),
                    active: false,
                },
            ])
            .unwrap();
        let (items, err) = read_all(&path, &def("format = \"dbf\""), &article_columns());
        assert!(err.is_none());
        assert_eq!(
            records(&items),
            vec![
                (
                    1,
                    vec![
                        Value::Text("Müller".into()),
                        dec("12.50"),
                        Value::Date(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()),
                        Value::Bool(true),
                    ]
                ),
                (
                    2,
                    vec![
                        Value::Text("Ölgemälde".into()),
                        dec("-3.00"),
                        Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
                        Value::Bool(false),
                    ]
                ),
            ]
        );
    }

    #[test]
    fn visual_foxpro_binary_fields_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let fields = [
            F("ID", b'I', 4),
            F("PRICE", b'Y', 8),
            F("RATE", b'B', 8),
            F("STAMP", b'T', 8),
        ];
        let stamp = |day: i32, ms: i32| [day.to_le_bytes(), ms.to_le_bytes()].concat();
        let rows = vec![
            (
                false,
                [
                    (-42i32).to_le_bytes().to_vec(),
                    1_234_567i64.to_le_bytes().to_vec(),
                    0.1f64.to_le_bytes().to_vec(),
                    // 2024-03-01 is Julian day 2460371; 10:15:00.250.
                    stamp(2_460_371, 36_900_250),
                ]
                .concat(),
            ),
            (
                false,
                [
                    7i32.to_le_bytes().to_vec(),
                    (-50_000i64).to_le_bytes().to_vec(),
                    (-2.5f64).to_le_bytes().to_vec(),
                    stamp(0, 0),
                ]
                .concat(),
            ),
        ];
        let path = write(&dir, "vfp.dbf", &dbf(0x30, 0x03, &fields, &rows));
        let cols = [
            req("ID", FieldType::Integer),
            req("PRICE", FieldType::Decimal),
            req("RATE", FieldType::Decimal),
            req("STAMP", FieldType::Timestamp),
            req("PRICE", FieldType::Integer),
        ];
        let (items, err) = read_all(&path, &def("format = \"dbf\""), &cols);
        assert!(err.is_none());
        let ts = NaiveDateTime::parse_from_str("2024-03-01 10:15:00.25", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        assert_eq!(
            records(&items),
            vec![(
                2,
                vec![
                    Value::Int(7),
                    dec("-5.0000"),
                    dec("-2.5"),
                    Value::Null,
                    Value::Int(-5),
                ]
            )]
        );
        let bad = bad_rows(&items);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position, 1);
        assert_eq!(
            bad[0].reason,
            "column PRICE: expected an integer, found a fraction"
        );
        let (items, _) = read_all(&path, &def("format = \"dbf\""), &cols[..4]);
        assert_eq!(
            records(&items)[0],
            (
                1,
                vec![
                    Value::Int(-42),
                    dec("123.4567"),
                    dec("0.1"),
                    Value::NaiveTimestamp(ts),
                ]
            )
        );
    }

    #[test]
    fn memo_fields_from_dbt_and_fpt_files() {
        let dir = tempfile::tempdir().unwrap();
        let fields = [F("SKU", b'C', 4), F("NOTE", b'M', 10)];
        let table = |blocks: [&str; 3]| -> Vec<(bool, Vec<u8>)> {
            blocks
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    (
                        false,
                        [format!("A{i}  ").into_bytes(), right(b, 10)].concat(),
                    )
                })
                .collect()
        };
        let note = "Müller: 12 Ölgemälde\r\nzweite Zeile";

        // dBASE III: 512-byte blocks ending at 0x1A, code page 1252.
        let mut dbt = vec![0u8; 512];
        dbt[..4].copy_from_slice(&3u32.to_le_bytes());
        let mut block = encode_1252(note);
        block.extend([0x1A, 0x1A]);
        block.resize(512, 0);
        dbt.extend(block);
        let path = write(
            &dir,
            "notes.dbf",
            &dbf(0x83, 0x03, &fields, &table(["1", "", "9"])),
        );
        write(&dir, "notes.dbt", &dbt);
        let cols = [
            req("SKU", FieldType::String),
            req("NOTE", FieldType::String),
        ];
        let (items, err) = read_all(&path, &def("format = \"dbf\""), &cols);
        assert!(err.is_none());
        assert_eq!(
            records(&items),
            vec![
                (1, vec![Value::Text("A0".into()), Value::Text(note.into())]),
                (
                    2,
                    vec![Value::Text("A1".into()), Value::Text(String::new())]
                ),
            ]
        );
        assert_eq!(
            bad_rows(&items)[0].reason,
            "column NOTE: memo block 9 is missing from the memo file"
        );

        // FoxPro 2: big-endian header and blocks, an upper-case `.FPT`.
        let mut fpt = vec![0u8; 512];
        fpt[..4].copy_from_slice(&10u32.to_be_bytes());
        fpt[6..8].copy_from_slice(&64u16.to_be_bytes());
        let text = encode_437(note);
        let mut block = 1u32.to_be_bytes().to_vec();
        block.extend((text.len() as u32).to_be_bytes());
        block.extend(&text);
        block.resize(128, 0);
        fpt.extend(block);
        let path = write(
            &dir,
            "FOX.DBF",
            &dbf(0xF5, 0x01, &fields, &table(["8", "0", "8"])),
        );
        write(&dir, "FOX.FPT", &fpt);
        let (items, err) = read_all(&path, &def("format = \"dbf\""), &cols);
        assert!(err.is_none());
        let got: Vec<Value> = records(&items)
            .into_iter()
            .map(|r| r.1[1].clone())
            .collect();
        assert_eq!(
            got,
            vec![
                Value::Text(note.into()),
                Value::Text(String::new()),
                Value::Text(note.into()),
            ]
        );

        // The memo file is only needed when a memo column is requested.
        std::fs::remove_file(dir.path().join("FOX.FPT")).unwrap();
        assert!(ExportReader::open(&path, &def("format = \"dbf\""), &cols[..1]).is_ok());
        let err = ExportReader::open(&path, &def("format = \"dbf\""), &cols).unwrap_err();
        assert!(
            matches!(&err, FileError::Layout(m) if m.contains("FOX.fpt")),
            "{err}"
        );
    }

    #[test]
    fn layout_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = def("format = \"dbf\"");
        let csv = write(&dir, "not.dbf", b"SKU,PRICE\nA1,1.00\n");
        let err = ExportReader::open(&csv, &d, &[]).unwrap_err();
        assert!(
            matches!(&err, FileError::Layout(m) if m.starts_with("not a DBF")),
            "{err}"
        );
        let tiny = write(&dir, "tiny.dbf", &[0x03, 1, 2]);
        assert!(matches!(
            ExportReader::open(&tiny, &d, &[]),
            Err(FileError::Layout(_))
        ));

        let path = write(&dir, "a.dbf", &dbf(0x03, 0x01, &ARTICLE, &[]));
        let err = ExportReader::open(&path, &d, &[req("QTY", FieldType::Integer)]).unwrap_err();
        assert!(
            matches!(&err, FileError::Layout(m) if m.contains("`QTY`") && m.contains("`NAME`, `PRICE`, `DAY`, `ACTIVE`")),
            "{err}"
        );
        let err = ExportReader::open(&path, &d, &[req("ACTIVE", FieldType::Decimal)]).unwrap_err();
        assert!(
            matches!(&err, FileError::Layout(m) if m.contains("Logical") && m.contains("decimal")),
            "{err}"
        );
        let odd_code_page = write(&dir, "cp.dbf", &dbf(0x03, 0x68, &ARTICLE, &[]));
        assert!(matches!(
            ExportReader::open(&odd_code_page, &d, &[]),
            Err(FileError::Layout(m)) if m.contains("0x68")
        ));
    }

    #[test]
    fn a_truncated_table_is_malformed_after_its_good_records() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            (false, article(b"one", "1", "20240301", b'T')),
            (false, article(b"two", "2", "20240301", b'T')),
        ];
        let mut bytes = dbf(0x03, 0x01, &ARTICLE, &rows);
        bytes.truncate(bytes.len() - 20);
        let path = write(&dir, "cut.dbf", &bytes);
        let (items, err) = read_all(&path, &def("format = \"dbf\""), &article_columns());
        assert_eq!(records(&items).len(), 1);
        assert!(
            matches!(&err, Some(FileError::Malformed(m)) if m.contains("record 2 of 2")),
            "{err:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn arbitrary_records_never_panic_and_positions_increase(
            body in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'*'), Just(b'1'), Just(b'.'), Just(b'T'),
                            Just(0x1A), Just(0), any::<u8>()],
                0..600),
            claimed in 0u32..20,
            code_page in prop_oneof![Just(0u8), Just(0x01), Just(0x03), Just(0xF0), any::<u8>()],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let fields = [
                F("NAME", b'C', 5), F("PRICE", b'N', 6), F("DAY", b'D', 8), F("ON", b'L', 1),
                F("ID", b'I', 4), F("CUR", b'Y', 8), F("DBL", b'B', 8), F("TS", b'T', 8),
            ];
            let mut bytes = dbf(0x30, code_page, &fields, &[]);
            bytes.pop();
            bytes[4..8].copy_from_slice(&claimed.to_le_bytes());
            bytes.extend(&body);
            let path = write(&dir, "p.dbf", &bytes);
            let cols = [
                req("NAME", FieldType::String), req("PRICE", FieldType::Decimal),
                req("DAY", FieldType::Date), req("ON", FieldType::Boolean),
                req("ID", FieldType::Integer), req("CUR", FieldType::Decimal),
                req("DBL", FieldType::Decimal), req("TS", FieldType::Timestamp),
                req("PRICE", FieldType::Integer), req("DBL", FieldType::String),
            ];
            let d = def("format = \"dbf\"\nencoding = \"cp437\"");
            let reader = ExportReader::open(&path, &d, &cols).unwrap();
            let items = assert_positions_increase(reader, bytes.len() as u64);
            prop_assert!(items.len() <= claimed as usize);
        }

        #[test]
        fn arbitrary_files_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            first in prop_oneof![Just(0x03u8), Just(0x30), Just(0x83), any::<u8>()],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = bytes;
            if let Some(b) = bytes.first_mut() {
                *b = first;
            }
            let path = write(&dir, "x.dbf", &bytes);
            if let Ok(reader) = ExportReader::open(&path, &def("format = \"dbf\""), &[]) {
                assert_positions_increase(reader, bytes.len() as u64);
            }
        }
    }
}
