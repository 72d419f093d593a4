//! Parameters for SQL Server: our SQL uses `?` placeholders (the ODBC convention every dialect
//! renders); tiberius sends `sp_executesql` with `@P1`, `@P2`, ... So placeholders are
//! renumbered outside quoted identifiers and string literals, and each [`Param`] becomes a
//! typed tiberius parameter (never text spliced into SQL).

use std::borrow::Cow;

use tiberius::{ColumnData, IntoSql};

use crate::model::Value;
use crate::source::{Param, SqlType, rowversion};

/// `sql` with every `?` outside `[...]`, `"..."` and `'...'` replaced by `@P1`, `@P2`, ...,
/// and how many there were.
pub(super) fn numbered(sql: &str) -> (String, usize) {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut close: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match close {
            Some(end) => {
                out.push(c);
                if c == end {
                    // A doubled closer (`]]`, `''`) is an escaped one: still inside.
                    if chars.peek() == Some(&end) {
                        out.push(end);
                        chars.next();
                    } else {
                        close = None;
                    }
                }
            }
            None => match c {
                '[' => {
                    close = Some(']');
                    out.push(c);
                }
                '\'' | '"' => {
                    close = Some(c);
                    out.push(c);
                }
                '?' => {
                    n += 1;
                    out.push_str(&format!("@P{n}"));
                }
                _ => out.push(c),
            },
        }
    }
    (out, n)
}

/// A parameter as tiberius binds it: typed like the column it meets where that matters
/// (CHAR(n) text padded to n, decimals exact, timestamps without zone).
pub(super) fn bind(param: &Param) -> ColumnData<'static> {
    match &param.value {
        Value::Null => null_of(param.sql_type),
        Value::Bool(b) => ColumnData::Bit(Some(*b)),
        // A rowversion compared with a counter: as the 8 big-endian bytes it is.
        Value::Int(i) if param.sql_type == SqlType::Binary => {
            ColumnData::Binary(Some(Cow::Owned(rowversion::to_bytes(*i).to_vec())))
        }
        Value::Int(i) => ColumnData::I64(Some(*i)),
        Value::Decimal(d) => d.into_sql(),
        Value::Text(s) => {
            let text = match param.sql_type {
                SqlType::Char { len: Some(n) } if s.chars().count() < n => {
                    let pad = n - s.chars().count();
                    let mut padded = s.clone();
                    padded.extend(std::iter::repeat_n(' ', pad));
                    padded
                }
                _ => s.clone(),
            };
            ColumnData::String(Some(Cow::Owned(text)))
        }
        Value::Date(d) => d.into_sql(),
        Value::Time(t) => t.into_sql(),
        Value::Timestamp(ts) => ts.naive_local().into_sql(),
        Value::NaiveTimestamp(ts) => ts.into_sql(),
        Value::Binary(b) => ColumnData::Binary(Some(Cow::Owned(b.clone()))),
    }
}

fn null_of(sql_type: SqlType) -> ColumnData<'static> {
    match sql_type {
        SqlType::Integer => ColumnData::I64(None),
        SqlType::Boolean => ColumnData::Bit(None),
        SqlType::Float => ColumnData::F64(None),
        SqlType::Binary => ColumnData::Binary(None),
        _ => ColumnData::String(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbers_only_real_placeholders() {
        let (sql, n) =
            numbered("SELECT [a?b], 'it''s ?' FROM [t]]?] WHERE [x] = ? AND \"y?\" IN (?, ?)");
        assert_eq!(
            sql,
            "SELECT [a?b], 'it''s ?' FROM [t]]?] WHERE [x] = @P1 AND \"y?\" IN (@P2, @P3)"
        );
        assert_eq!(n, 3);
    }

    #[test]
    fn char_parameters_are_padded_to_the_column() {
        let p = Param {
            value: Value::Text("A1".into()),
            sql_type: SqlType::Char { len: Some(5) },
        };
        assert_eq!(bind(&p), ColumnData::String(Some(Cow::Borrowed("A1   "))));
    }
}
