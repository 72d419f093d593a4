//! Running statements and decoding their rows exactly: every value is read as the driver's
//! text (or bytes, for binary) and parsed into its mapped type, so decimals never pass through
//! a float. Parameters are bound as text tagged with the SQL type of the column they meet;
//! an integer meeting a binary column (a SQL Server rowversion cursor) is bound as its 8
//! big-endian bytes, and a binary column read as an integer is decoded from those bytes.
//!
//! Rows are read one of two ways: row by row (`SQLFetch`, then `SQLGetData` per cell: any
//! column width), or, for scans whose columns all have a known, bounded width, in bulk
//! (column-wise text buffers bound once, up to [`BULK_MAX_ROWS`] rows per `SQLFetch`). Both
//! ask the driver for the same text. A bulk fetch never truncates silently: a value longer
//! than its column's reported width fails the statement, and the source reads row by row from
//! then on.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};

use odbc_api::buffers::TextRowSet;
use odbc_api::parameter::{InputParameter, VarBinaryBox, VarCharBox, WithDataType};
use odbc_api::{BlockCursor, Connection, Cursor, DataType, ResultSetMetadata};

use crate::model::{FieldType, Value};
use crate::source::{Param, Row, SelectColumn, SourceError, SourceErrorKind, SqlType, rowversion};

/// Runs `sql` and decodes every row as `columns` says.
pub(super) fn fetch(
    conn: &Connection<'static>,
    sql: &str,
    params: &[Param],
    columns: &[SelectColumn],
    timeout_secs: usize,
) -> Result<Vec<Row>, SourceError> {
    let mut rows = Vec::new();
    for_each_row(conn, sql, params, columns, timeout_secs, None, |row| {
        rows.push(row);
        true
    })?;
    Ok(rows)
}

/// Most rows one bulk fetch asks the driver for.
const BULK_MAX_ROWS: usize = 1000;
/// Memory the buffers of one bulk fetch may take; wide rows get fewer rows per fetch.
const BULK_BUFFER_BYTES: usize = 4 << 20;
/// Widest row (sum of the columns' reported widths in UTF-8 bytes) read in bulk; wider rows,
/// and columns of unknown width or binary ones, are read row by row.
const BULK_MAX_ROW_BYTES: usize = 16 << 10;

/// Runs `sql` and hands each decoded row to `sink` until it returns `false` or the rows end;
/// buffers are reused, so memory does not grow with the result. With `bulk` set (and still
/// `true`), rows are fetched in bulk when every column has a bounded width; a value longer
/// than its column's reported width then fails the statement and clears `bulk`, so later
/// statements read row by row.
pub(super) fn for_each_row(
    conn: &Connection<'static>,
    sql: &str,
    params: &[Param],
    columns: &[SelectColumn],
    timeout_secs: usize,
    bulk: Option<&AtomicBool>,
    mut sink: impl FnMut(Row) -> bool,
) -> Result<(), SourceError> {
    let bound: Vec<Box<dyn InputParameter>> = params.iter().map(bind).collect();
    let cursor = conn
        .execute(sql, &bound[..], Some(timeout_secs))
        .map_err(|e| classify(&e, conn))?;
    let Some(mut cursor) = cursor else {
        return Err(SourceError::new(
            SourceErrorKind::Query,
            "statement returned no result set",
        ));
    };
    let reads = read_modes(&mut cursor, columns);
    if let Some(flag) = bulk.filter(|f| f.load(Ordering::Relaxed)) {
        let widths = bulk_widths(&mut cursor, &reads).map_err(|e| classify(&e, conn))?;
        if let Some(widths) = widths {
            return bulk_rows(conn, cursor, columns, widths, flag, sink);
        }
    }
    let mut buf = Vec::new();
    while let Some(mut row) = cursor.next_row().map_err(|e| classify(&e, conn))? {
        let mut out = Vec::with_capacity(columns.len());
        for (i, (col, read)) in columns.iter().zip(&reads).enumerate() {
            let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
            buf.clear();
            let present = match read {
                Read::Bytes => row.get_binary(n, &mut buf),
                Read::Text => row.get_text(n, &mut buf),
            }
            .map_err(|e| classify(&e, conn))?;
            out.push(if present {
                decode_cell(col, *read, &buf)?
            } else {
                Value::Null
            });
        }
        if !sink(out) {
            break;
        }
    }
    Ok(())
}

/// How a column's cells are asked of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// As text, parsed into the mapped type.
    Text,
    /// As the raw bytes: binary fields, and binary columns mapped to integers (rowversion).
    Bytes,
}

/// How each column is read. A binary column mapped to an integer is a counter such as a SQL
/// Server rowversion: as text the driver would hand over hex digits, which can parse as the
/// wrong decimal number, so its bytes are read instead. A driver that cannot describe a
/// column has it read as text.
fn read_modes(cursor: &mut impl ResultSetMetadata, columns: &[SelectColumn]) -> Vec<Read> {
    let mut reads = Vec::with_capacity(columns.len());
    for (i, col) in columns.iter().enumerate() {
        let read = match col.decode {
            FieldType::Binary => Read::Bytes,
            FieldType::Integer => {
                let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
                match cursor.col_data_type(n) {
                    Ok(
                        DataType::Binary { .. }
                        | DataType::Varbinary { .. }
                        | DataType::LongVarbinary { .. },
                    ) => Read::Bytes,
                    _ => Read::Text,
                }
            }
            _ => Read::Text,
        };
        reads.push(read);
    }
    reads
}

/// The UTF-8 width of every column when all are text-readable and bounded, and the row is
/// narrow enough for a bulk fetch; `None` otherwise.
fn bulk_widths(
    cursor: &mut impl ResultSetMetadata,
    reads: &[Read],
) -> Result<Option<Vec<usize>>, odbc_api::Error> {
    if reads.contains(&Read::Bytes) {
        return Ok(None);
    }
    let mut widths = Vec::with_capacity(reads.len());
    for i in 1..=reads.len() {
        let n = u16::try_from(i).unwrap_or(u16::MAX);
        match cursor.col_data_type(n)?.utf8_len() {
            Some(w) => widths.push(w.get()),
            None => return Ok(None),
        }
    }
    let row_bytes: usize = widths.iter().sum();
    Ok((row_bytes <= BULK_MAX_ROW_BYTES).then_some(widths))
}

/// Reads the rows of `cursor` through bound text buffers of `widths`, many rows per fetch.
fn bulk_rows<C: Cursor>(
    conn: &Connection<'static>,
    cursor: C,
    columns: &[SelectColumn],
    widths: Vec<usize>,
    bulk: &AtomicBool,
    mut sink: impl FnMut(Row) -> bool,
) -> Result<(), SourceError> {
    // Each value also has an 8-byte length indicator and a terminating zero.
    let row_bytes: usize = widths.iter().map(|w| w + 1 + 8).sum();
    let rows = (BULK_BUFFER_BYTES / row_bytes.max(1)).clamp(1, BULK_MAX_ROWS);
    let buffer = TextRowSet::from_max_str_lens(rows, widths).map_err(|e| classify(&e, conn))?;
    let mut block: BlockCursor<C, TextRowSet> =
        cursor.bind_buffer(buffer).map_err(|e| classify(&e, conn))?;
    loop {
        let batch = match block.fetch_with_truncation_check(true) {
            Ok(Some(batch)) => batch,
            Ok(None) => return Ok(()),
            Err(odbc_api::Error::TooLargeValueForBuffer { buffer_index, .. }) => {
                bulk.store(false, Ordering::Relaxed);
                let column = columns.get(buffer_index).map_or("?", |c| c.name.as_str());
                tracing::warn!(
                    column,
                    "a value is wider than its column's reported width; reading this source row by row from now on"
                );
                return Err(SourceError::new(
                    SourceErrorKind::Query,
                    format!(
                        "column `{column}` holds a value wider than the driver reported; \
                         the next attempt reads row by row"
                    ),
                ));
            }
            Err(e) => return Err(classify(&e, conn)),
        };
        for r in 0..batch.num_rows() {
            let mut out = Vec::with_capacity(columns.len());
            for (i, col) in columns.iter().enumerate() {
                out.push(match batch.at(i, r) {
                    Some(bytes) => decode_cell(col, Read::Text, bytes)?,
                    None => Value::Null,
                });
            }
            if !sink(out) {
                return Ok(());
            }
        }
    }
}

/// Runs a statement that returns no rows (a write); parameters bound as for queries.
pub(super) fn execute_statement(
    conn: &Connection<'static>,
    sql: &str,
    params: &[Param],
    timeout_secs: usize,
) -> Result<(), SourceError> {
    let bound: Vec<Box<dyn InputParameter>> = params.iter().map(bind).collect();
    conn.execute(sql, &bound[..], Some(timeout_secs))
        .map_err(|e| classify(&e, conn))?;
    Ok(())
}

/// Runs a statement and drops whatever it returns (used to ping).
pub(super) fn execute_discard(
    conn: &Connection<'static>,
    sql: &str,
    timeout_secs: usize,
) -> Result<(), SourceError> {
    let cursor = conn
        .execute(sql, (), Some(timeout_secs))
        .map_err(|e| classify(&e, conn))?;
    if let Some(mut cursor) = cursor {
        while cursor.next_row().map_err(|e| classify(&e, conn))?.is_some() {}
    }
    Ok(())
}

fn decode_cell(col: &SelectColumn, read: Read, bytes: &[u8]) -> Result<Value, SourceError> {
    match (read, col.decode) {
        (Read::Bytes, FieldType::Integer) => return counter(col, bytes),
        (Read::Bytes, _) => return Ok(Value::Binary(bytes.to_vec())),
        (Read::Text, _) => {}
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        SourceError::new(
            SourceErrorKind::Decode,
            format!("column `{}` holds text that is not UTF-8", col.name),
        )
    })?;
    Value::parse(col.decode, text).map_err(|e| {
        SourceError::new(
            SourceErrorKind::Decode,
            format!("column `{}`: value is not a valid {}", col.name, e.expected),
        )
    })
}

/// A binary counter (a rowversion) as an integer.
fn counter(col: &SelectColumn, bytes: &[u8]) -> Result<Value, SourceError> {
    rowversion::from_bytes(bytes)
        .map(Value::Int)
        .ok_or_else(|| {
            SourceError::new(
                SourceErrorKind::Decode,
                format!(
                    "column `{}`: a binary value of {} bytes does not fit an integer counter \
                 (a rowversion holds 8, below 2^63)",
                    col.name,
                    bytes.len()
                ),
            )
        })
}

/// Binds a parameter as text with the SQL type of its column. Text for a CHAR(n) column is
/// padded to n, so engines that store the padding (SQLite) match like those that ignore it.
fn bind(param: &Param) -> Box<dyn InputParameter> {
    if let (Value::Int(i), SqlType::Binary) = (&param.value, param.sql_type) {
        // A rowversion cursor: compared as bytes, so the number goes as its 8 big-endian
        // bytes, as SQL Server stores it (text would compare as the digits' ASCII codes).
        return Box::new(VarBinaryBox::from_vec(rowversion::to_bytes(*i).to_vec()));
    }
    let Some(mut text) = param.value.to_sql_text() else {
        return Box::new(VarCharBox::null());
    };
    let len = NonZeroUsize::new(text.len().max(1));
    let data_type = match param.sql_type {
        SqlType::Char { len: Some(n) } if text.chars().count() <= n => {
            let pad = n - text.chars().count();
            text.extend(std::iter::repeat_n(' ', pad));
            DataType::Char {
                length: NonZeroUsize::new(text.len().max(1)),
            }
        }
        SqlType::Char { .. } | SqlType::Varchar { .. } | SqlType::Other => {
            DataType::Varchar { length: len }
        }
        SqlType::Integer => DataType::BigInt,
        SqlType::Decimal { precision, scale } => DataType::Decimal { precision, scale },
        SqlType::Float => DataType::Double,
        SqlType::Boolean => DataType::Bit,
        SqlType::Date => DataType::Date,
        SqlType::Time => DataType::Time { precision: 0 },
        SqlType::Timestamp => DataType::Timestamp { precision: 6 },
        SqlType::Binary => DataType::Varchar { length: len },
    };
    Box::new(WithDataType::new(VarCharBox::from_string(text), data_type))
}

/// Maps an ODBC error to what the caller should do about it; a dead connection means the
/// legacy system is unavailable whatever the SQLSTATE says.
pub(super) fn classify(e: &odbc_api::Error, conn: &Connection<'static>) -> SourceError {
    let (kind, detail) = classify_connect(e);
    let kind = if kind == SourceErrorKind::Query && conn.is_dead().unwrap_or(false) {
        SourceErrorKind::Unavailable
    } else {
        kind
    };
    SourceError::new(kind, detail)
}

/// Classifies an error by SQLSTATE (and the native codes MySQL-family drivers use for lost
/// connections).
pub(super) fn classify_connect(e: &odbc_api::Error) -> (SourceErrorKind, String) {
    match e {
        odbc_api::Error::Diagnostics { record, .. } => {
            let state = record.state.as_str();
            let native = record.native_error;
            let kind = if state.starts_with("08")
                || state == "HYT01"
                || state == "28000"
                || matches!(native, 2002 | 2003 | 2006 | 2013 | 2055)
            {
                SourceErrorKind::Unavailable
            } else if state == "HYT00" || state == "57014" {
                SourceErrorKind::Timeout
            } else if state == "IM002" || state == "IM003" {
                SourceErrorKind::Config
            } else {
                SourceErrorKind::Query
            };
            let message = String::from_utf8_lossy(&record.message);
            (kind, format!("SQLSTATE {state}: {}", message.trim()))
        }
        other => (SourceErrorKind::Query, other.to_string()),
    }
}
