//! SQL Server values to our [`Value`]s, exactly: decimal/numeric through their integer
//! mantissa, money and smallmoney back from tiberius's float to their four-decimal fixed
//! point, date/time types through chrono, rowversion as the unsigned big-endian number it
//! is. A value whose type does not fit the mapped field type is converted through its text
//! (like the ODBC source does) or refused with the column named, never the value.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use tiberius::{ColumnData, ColumnType, FromSql};

use crate::model::{FieldType, Value};
use crate::source::{SelectColumn, SourceError, SourceErrorKind, rowversion};

/// Decodes one cell of column `col`, whose SQL Server type is `ty`.
pub(super) fn cell(
    col: &SelectColumn,
    ty: ColumnType,
    data: &ColumnData<'static>,
) -> Result<Value, SourceError> {
    if is_null(data) {
        return Ok(Value::Null);
    }
    let fail = |expected: &str| {
        SourceError::new(
            SourceErrorKind::Decode,
            format!(
                "column `{}`: a {} value is not a valid {expected}",
                col.name,
                type_name(ty)
            ),
        )
    };
    let value = match (col.decode, data) {
        (FieldType::Binary, ColumnData::Binary(Some(b))) => Value::Binary(b.to_vec()),
        (FieldType::Binary, _) => return Err(fail("binary value")),
        (FieldType::Integer, _) => match integer(ty, data) {
            Some(i) => Value::Int(i),
            None => return via_text(col, ty, data).map_err(|_| fail("integer")),
        },
        (FieldType::Decimal, _) => match decimal(ty, data) {
            Some(d) => Value::Decimal(d),
            None => return via_text(col, ty, data).map_err(|_| fail("decimal")),
        },
        (FieldType::Boolean, ColumnData::Bit(Some(b))) => Value::Bool(*b),
        (FieldType::Boolean, _) => match integer(ty, data) {
            Some(0) => Value::Bool(false),
            Some(1) => Value::Bool(true),
            _ => return via_text(col, ty, data),
        },
        (FieldType::Date, ColumnData::Date(_)) => {
            Value::Date(from_sql::<NaiveDate>(data).ok_or_else(|| fail("date"))?)
        }
        (FieldType::Time, ColumnData::Time(_)) => {
            Value::Time(from_sql::<NaiveTime>(data).ok_or_else(|| fail("time"))?)
        }
        (FieldType::Timestamp, ColumnData::DateTimeOffset(_)) => Value::Timestamp(
            from_sql::<DateTime<FixedOffset>>(data).ok_or_else(|| fail("timestamp"))?,
        ),
        // DATETIME counts 1/300 s; SQL Server shows it rounded to the millisecond (.997,
        // not .996666666), and so do we.
        (FieldType::Timestamp, ColumnData::DateTime(_)) => Value::NaiveTimestamp(round_to_millis(
            from_sql::<NaiveDateTime>(data).ok_or_else(|| fail("timestamp"))?,
        )),
        (FieldType::Timestamp, ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_)) => {
            Value::NaiveTimestamp(from_sql::<NaiveDateTime>(data).ok_or_else(|| fail("timestamp"))?)
        }
        (FieldType::Timestamp, ColumnData::Date(_)) => Value::NaiveTimestamp(
            from_sql::<NaiveDate>(data)
                .ok_or_else(|| fail("timestamp"))?
                .and_time(NaiveTime::MIN),
        ),
        (
            FieldType::Date,
            ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_),
        ) => Value::Date(
            from_sql::<NaiveDateTime>(data)
                .ok_or_else(|| fail("date"))?
                .date(),
        ),
        _ => return via_text(col, ty, data),
    };
    Ok(value)
}

fn round_to_millis(ts: NaiveDateTime) -> NaiveDateTime {
    let nanos = i64::from(ts.and_utc().timestamp_subsec_nanos());
    let rounded = (nanos + 500_000) / 1_000_000 * 1_000_000;
    ts + chrono::Duration::nanoseconds(rounded - nanos)
}

/// Through the value's text, like the ODBC source reads every value.
fn via_text(
    col: &SelectColumn,
    ty: ColumnType,
    data: &ColumnData<'static>,
) -> Result<Value, SourceError> {
    let Some(text) = text(ty, data) else {
        return Err(SourceError::new(
            SourceErrorKind::Decode,
            format!(
                "column `{}`: a {} value cannot be read as {}",
                col.name,
                type_name(ty),
                col.decode.as_str()
            ),
        ));
    };
    Value::parse(col.decode, &text).map_err(|e| {
        SourceError::new(
            SourceErrorKind::Decode,
            format!("column `{}`: value is not a valid {}", col.name, e.expected),
        )
    })
}

fn from_sql<'a, T: FromSql<'a>>(data: &'a ColumnData<'static>) -> Option<T> {
    T::from_sql(data).ok().flatten()
}

fn is_null(data: &ColumnData<'_>) -> bool {
    match data {
        ColumnData::U8(v) => v.is_none(),
        ColumnData::I16(v) => v.is_none(),
        ColumnData::I32(v) => v.is_none(),
        ColumnData::I64(v) => v.is_none(),
        ColumnData::F32(v) => v.is_none(),
        ColumnData::F64(v) => v.is_none(),
        ColumnData::Bit(v) => v.is_none(),
        ColumnData::String(v) => v.is_none(),
        ColumnData::Guid(v) => v.is_none(),
        ColumnData::Binary(v) => v.is_none(),
        ColumnData::Numeric(v) => v.is_none(),
        ColumnData::Xml(v) => v.is_none(),
        ColumnData::DateTime(v) => v.is_none(),
        ColumnData::SmallDateTime(v) => v.is_none(),
        ColumnData::Time(v) => v.is_none(),
        ColumnData::Date(v) => v.is_none(),
        ColumnData::DateTime2(v) => v.is_none(),
        ColumnData::DateTimeOffset(v) => v.is_none(),
    }
}

/// Money and smallmoney are integers of 1/10,000 on the wire; tiberius hands them over as
/// `value / 10_000` in an `f64`, which recovers the integer exactly up to 2^53 / 10^4
/// (about 900 billion), far beyond any price.
fn is_money(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::Money | ColumnType::Money4)
}

fn integer(ty: ColumnType, data: &ColumnData<'_>) -> Option<i64> {
    match data {
        ColumnData::U8(Some(v)) => Some(i64::from(*v)),
        ColumnData::I16(Some(v)) => Some(i64::from(*v)),
        ColumnData::I32(Some(v)) => Some(i64::from(*v)),
        ColumnData::I64(Some(v)) => Some(*v),
        ColumnData::Bit(Some(b)) => Some(i64::from(*b)),
        ColumnData::Numeric(Some(n)) if n.scale() == 0 => i64::try_from(n.value()).ok(),
        // rowversion / timestamp: 8 bytes, an unsigned big-endian counter.
        ColumnData::Binary(Some(b)) if b.len() == 8 => rowversion::from_bytes(b),
        _ => {
            let _ = ty;
            None
        }
    }
}

fn decimal(ty: ColumnType, data: &ColumnData<'_>) -> Option<Decimal> {
    match data {
        ColumnData::Numeric(Some(n)) => Some(Decimal::from_i128_with_scale(
            n.value(),
            u32::from(n.scale()),
        )),
        ColumnData::F64(Some(v)) if is_money(ty) => money(*v),
        ColumnData::F32(Some(v)) if is_money(ty) => money(f64::from(*v)),
        _ => integer(ty, data).map(Decimal::from),
    }
}

fn money(v: f64) -> Option<Decimal> {
    let scaled = (v * 10_000.0).round();
    if !scaled.is_finite() || scaled.abs() > 9.007_199_254_740_992e15 {
        return None;
    }
    // In range, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    Some(Decimal::new(scaled as i64, 4))
}

/// The value as text, the way SQL Server would print it (for string fields, and for types a
/// field does not read natively).
fn text(ty: ColumnType, data: &ColumnData<'static>) -> Option<String> {
    Some(match data {
        ColumnData::String(Some(s)) => s.to_string(),
        ColumnData::U8(_) | ColumnData::I16(_) | ColumnData::I32(_) | ColumnData::I64(_) => {
            integer(ty, data)?.to_string()
        }
        ColumnData::Bit(Some(b)) => if *b { "1" } else { "0" }.to_owned(),
        ColumnData::Numeric(_) => decimal(ty, data)?.to_string(),
        ColumnData::F64(Some(v)) if is_money(ty) => money(*v)?.to_string(),
        ColumnData::F64(Some(v)) => v.to_string(),
        ColumnData::F32(Some(v)) => v.to_string(),
        // SQL Server shows uniqueidentifiers in upper case.
        ColumnData::Guid(Some(g)) => g.hyphenated().to_string().to_uppercase(),
        ColumnData::Date(_) => from_sql::<NaiveDate>(data)?.format("%Y-%m-%d").to_string(),
        ColumnData::Time(_) => from_sql::<NaiveTime>(data)?
            .format("%H:%M:%S%.f")
            .to_string(),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            from_sql::<NaiveDateTime>(data)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
        }
        ColumnData::DateTimeOffset(_) => from_sql::<DateTime<FixedOffset>>(data)?.to_rfc3339(),
        ColumnData::Xml(Some(x)) => x.to_string(),
        _ => return None,
    })
}

/// The SQL Server type name, for messages.
pub(super) fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Null => "null",
        ColumnType::Bit | ColumnType::Bitn => "bit",
        ColumnType::Int1 => "tinyint",
        ColumnType::Int2 => "smallint",
        ColumnType::Int4 => "int",
        ColumnType::Int8 => "bigint",
        ColumnType::Intn => "int",
        ColumnType::Float4 => "real",
        ColumnType::Float8 | ColumnType::Floatn => "float",
        ColumnType::Money | ColumnType::Money4 => "money",
        ColumnType::Decimaln | ColumnType::Numericn => "decimal",
        ColumnType::Datetime4 => "smalldatetime",
        ColumnType::Datetime | ColumnType::Datetimen => "datetime",
        ColumnType::Daten => "date",
        ColumnType::Timen => "time",
        ColumnType::Datetime2 => "datetime2",
        ColumnType::DatetimeOffsetn => "datetimeoffset",
        ColumnType::Guid => "uniqueidentifier",
        ColumnType::BigVarBin | ColumnType::BigBinary | ColumnType::Image => "binary",
        ColumnType::BigVarChar | ColumnType::BigChar | ColumnType::Text => "varchar",
        ColumnType::NVarchar | ColumnType::NChar | ColumnType::NText => "nvarchar",
        ColumnType::Xml => "xml",
        ColumnType::Udt => "udt",
        ColumnType::SSVariant => "sql_variant",
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use tiberius::numeric::Numeric;

    use super::*;

    fn col(ty: FieldType) -> SelectColumn {
        SelectColumn {
            name: "c".into(),
            decode: ty,
        }
    }

    #[test]
    fn decimals_and_money_are_exact() {
        let n = ColumnData::Numeric(Some(Numeric::new_with_scale(-1234567, 4)));
        assert_eq!(
            cell(&col(FieldType::Decimal), ColumnType::Decimaln, &n).unwrap(),
            Value::Decimal(Decimal::new(-1234567, 4))
        );
        // 922,337,203,685.4775 is the largest money tiberius's float carries exactly.
        for (raw, scaled) in [
            (12.99, 129_900),
            (0.0001, 1),
            (-42.5, -425_000),
            (922_337_203.685_4, 9_223_372_036_854),
        ] {
            let m = ColumnData::F64(Some(raw));
            assert_eq!(
                cell(&col(FieldType::Decimal), ColumnType::Money, &m).unwrap(),
                Value::Decimal(Decimal::new(scaled, 4)),
                "{raw}"
            );
        }
    }

    #[test]
    fn rowversion_reads_as_an_unsigned_counter() {
        let rv = ColumnData::Binary(Some(Cow::Owned(vec![0, 0, 0, 0, 0, 0, 7, 0xD1])));
        assert_eq!(
            cell(&col(FieldType::Integer), ColumnType::BigBinary, &rv).unwrap(),
            Value::Int(2001)
        );
    }

    #[test]
    fn text_and_nulls_and_mismatches() {
        let s = ColumnData::String(Some(Cow::Borrowed("A1001     ")));
        assert_eq!(
            cell(&col(FieldType::String), ColumnType::NChar, &s).unwrap(),
            Value::Text("A1001     ".into()),
            "CHAR padding is the mapping's to trim"
        );
        assert_eq!(
            cell(
                &col(FieldType::Integer),
                ColumnType::Intn,
                &ColumnData::I32(None)
            )
            .unwrap(),
            Value::Null
        );
        let err = cell(
            &col(FieldType::Integer),
            ColumnType::NVarchar,
            &ColumnData::String(Some(Cow::Borrowed("secret-abc"))),
        )
        .unwrap_err();
        assert!(!err.message.contains("secret"), "{}", err.message);
        assert!(err.message.contains("`c`"), "{}", err.message);
    }

    #[test]
    fn guids_read_upper_case() {
        let g = tiberius::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        assert_eq!(
            cell(
                &col(FieldType::String),
                ColumnType::Guid,
                &ColumnData::Guid(Some(g))
            )
            .unwrap(),
            Value::Text("6F9619FF-8B86-D011-B42D-00C04FC964FF".into())
        );
    }
}
