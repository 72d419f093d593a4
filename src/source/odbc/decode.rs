//! Running statements and decoding their rows exactly: every value is read as the driver's
//! text (or bytes, for binary) and parsed into its mapped type, so decimals never pass through
//! a float. Parameters are bound as text tagged with the SQL type of the column they meet.

use std::num::NonZeroUsize;

use odbc_api::parameter::{InputParameter, VarCharBox, WithDataType};
use odbc_api::{Connection, Cursor, DataType};

use crate::model::{FieldType, Value};
use crate::source::{Param, Row, SelectColumn, SourceError, SourceErrorKind, SqlType};

/// Runs `sql` and decodes every row as `columns` says.
pub(super) fn fetch(
    conn: &Connection<'static>,
    sql: &str,
    params: &[Param],
    columns: &[SelectColumn],
    timeout_secs: usize,
) -> Result<Vec<Row>, SourceError> {
    let mut rows = Vec::new();
    for_each_row(conn, sql, params, columns, timeout_secs, |row| {
        rows.push(row);
        true
    })?;
    Ok(rows)
}

/// Runs `sql` and hands each decoded row to `sink` until it returns `false` or the rows end;
/// the row buffer is reused, so memory does not grow with the result.
pub(super) fn for_each_row(
    conn: &Connection<'static>,
    sql: &str,
    params: &[Param],
    columns: &[SelectColumn],
    timeout_secs: usize,
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
    let mut buf = Vec::new();
    while let Some(mut row) = cursor.next_row().map_err(|e| classify(&e, conn))? {
        let mut out = Vec::with_capacity(columns.len());
        for (i, col) in columns.iter().enumerate() {
            let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
            buf.clear();
            let present = if col.decode == FieldType::Binary {
                row.get_binary(n, &mut buf)
            } else {
                row.get_text(n, &mut buf)
            }
            .map_err(|e| classify(&e, conn))?;
            out.push(if present {
                decode_cell(col, &buf)?
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

fn decode_cell(col: &SelectColumn, bytes: &[u8]) -> Result<Value, SourceError> {
    if col.decode == FieldType::Binary {
        return Ok(Value::Binary(bytes.to_vec()));
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

/// Binds a parameter as text with the SQL type of its column. Text for a CHAR(n) column is
/// padded to n, so engines that store the padding (SQLite) match like those that ignore it.
fn bind(param: &Param) -> Box<dyn InputParameter> {
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
