//! Turning the text of one field into a typed value of the requested [`FieldType`], with the
//! column's options (number style, date format). Shared by every format: delimited and
//! fixed-width fields, DBF character fields, JSON strings.

use std::borrow::Cow;

use base64::Engine as _;
use chrono::format::Fixed::Nanosecond;
use chrono::format::Item::{Fixed, Literal, Numeric as Num};
use chrono::format::Numeric::{Day, Hour, Minute, Month, Second, Year};
use chrono::format::Pad::Zero;
use chrono::format::{Item, Parsed, StrftimeItems, parse};

use super::Column;
use super::number::{parse_decimal, parse_integer};
use crate::model::{FieldType, Value};

/// Why a field could not be read, after "column X: "; never contains the field's text.
pub(super) type Why = Cow<'static, str>;

/// Decodes `text` as `column` asks. Strings are kept as they are (the caller decides about
/// trimming); other types ignore surrounding whitespace, and an empty field is `Null`.
pub(super) fn parse_text(column: &Column, text: Cow<'_, str>) -> Result<Value, Why> {
    let t = text.trim();
    match column.ty {
        FieldType::String => Ok(Value::Text(text.into_owned())),
        _ if t.is_empty() => Ok(Value::Null),
        FieldType::Integer => parse_integer(t, column.number)
            .map(Value::Int)
            .map_err(|e| e.reason(true).into()),
        FieldType::Decimal => parse_decimal(t, column.number)
            .map(Value::Decimal)
            .map_err(|e| e.reason(false).into()),
        FieldType::Boolean => parse_bool(t).map(Value::Bool).ok_or(Cow::Borrowed(
            "expected a boolean (true/false, 1/0, Y/N, T/F)",
        )),
        FieldType::Date => parse_date(t, column.format.as_ref())
            .ok_or_else(|| expected_format("a date", "YYYY-MM-DD", column.format.as_ref())),
        FieldType::Time => parse_time(t, column.format.as_ref())
            .ok_or_else(|| expected_format("a time", "HH:MM:SS", column.format.as_ref())),
        FieldType::Timestamp => parse_timestamp(t, column.format.as_ref()).ok_or_else(|| {
            expected_format("a timestamp", "YYYY-MM-DD HH:MM:SS", column.format.as_ref())
        }),
        FieldType::Binary => base64::engine::general_purpose::STANDARD
            .decode(t)
            .map(Value::Binary)
            .map_err(|_| Cow::Borrowed("expected base64 data")),
    }
}

/// The type with its article, for "expected ..." reasons.
pub(super) fn described(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Integer => "an integer",
        FieldType::Decimal => "a decimal number",
        FieldType::Boolean => "a boolean",
        FieldType::Date => "a date",
        FieldType::Time => "a time",
        FieldType::Timestamp => "a timestamp",
        FieldType::Binary => "binary data",
    }
}

fn expected_format(what: &str, iso: &str, format: Option<&DateFormat>) -> Why {
    match format {
        Some(f) => format!("expected {what} in the format `{}`", f.text).into(),
        None => format!("expected {what} ({iso})").into(),
    }
}

/// `true/false`, `1/0`, `Y/N`, `T/F`, in any case.
pub(super) fn parse_bool(t: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "1", "y", "t"];
    const FALSE: [&str; 4] = ["false", "0", "n", "f"];
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// A chrono format, parsed once per column instead of once per value.
#[derive(Debug, Clone)]
pub(super) struct DateFormat {
    /// The format as configured, for messages.
    pub text: String,
    items: Vec<Item<'static>>,
    /// Whether it reads an offset, making timestamps zoned.
    offset: bool,
}

impl DateFormat {
    /// Parses `text`; `None` when chrono cannot read it as a format.
    pub(super) fn new(text: &str) -> Option<DateFormat> {
        let items = StrftimeItems::new(text).parse_to_owned().ok()?;
        Some(DateFormat {
            text: text.to_owned(),
            items,
            offset: has_offset(text),
        })
    }
}

const ISO_DATE: &[Item<'static>] = &[
    Num(Year, Zero),
    Literal("-"),
    Num(Month, Zero),
    Literal("-"),
    Num(Day, Zero),
];
const ISO_TIME: &[Item<'static>] = &[
    Num(Hour, Zero),
    Literal(":"),
    Num(Minute, Zero),
    Literal(":"),
    Num(Second, Zero),
    Fixed(Nanosecond),
];
const ISO_TIMESTAMP_T: &[Item<'static>] = &[
    Num(Year, Zero),
    Literal("-"),
    Num(Month, Zero),
    Literal("-"),
    Num(Day, Zero),
    Literal("T"),
    Num(Hour, Zero),
    Literal(":"),
    Num(Minute, Zero),
    Literal(":"),
    Num(Second, Zero),
    Fixed(Nanosecond),
];
const ISO_TIMESTAMP_SPACE: &[Item<'static>] = &[
    Num(Year, Zero),
    Literal("-"),
    Num(Month, Zero),
    Literal("-"),
    Num(Day, Zero),
    Literal(" "),
    Num(Hour, Zero),
    Literal(":"),
    Num(Minute, Zero),
    Literal(":"),
    Num(Second, Zero),
    Fixed(Nanosecond),
];

fn parsed(t: &str, items: &[Item<'_>]) -> Option<Parsed> {
    let mut p = Parsed::new();
    parse(&mut p, t, items.iter()).ok()?;
    Some(p)
}

fn parse_date(t: &str, format: Option<&DateFormat>) -> Option<Value> {
    let items = format.map_or(ISO_DATE, |f| &f.items);
    parsed(t, items)?.to_naive_date().ok().map(Value::Date)
}

fn parse_time(t: &str, format: Option<&DateFormat>) -> Option<Value> {
    let items = format.map_or(ISO_TIME, |f| &f.items);
    parsed(t, items)?.to_naive_time().ok().map(Value::Time)
}

fn parse_timestamp(t: &str, format: Option<&DateFormat>) -> Option<Value> {
    match format {
        // With an offset in the format the value is zoned; otherwise it is naive.
        Some(f) if f.offset => parsed(t, &f.items)?
            .to_datetime()
            .ok()
            .map(Value::Timestamp),
        Some(f) => parsed(t, &f.items)?
            .to_naive_datetime_with_offset(0)
            .ok()
            .map(Value::NaiveTimestamp),
        None => {
            // The common ISO forms without offset first; the rest (an offset, a date
            // alone) as the model reads timestamps.
            let items = match t.as_bytes().get(10) {
                Some(b'T') => Some(ISO_TIMESTAMP_T),
                Some(b' ') => Some(ISO_TIMESTAMP_SPACE),
                _ => None,
            };
            items
                .and_then(|items| parsed(t, items))
                .and_then(|p| p.to_naive_datetime_with_offset(0).ok())
                .map(Value::NaiveTimestamp)
                .or_else(|| Value::parse(FieldType::Timestamp, t).ok())
        }
    }
}

/// Whether a chrono format reads an offset (`%z`, `%:z`, `%::z`, `%#z`).
fn has_offset(format: &str) -> bool {
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        rest = &rest[i + 1..];
        let spec = rest.trim_start_matches([':', '#']);
        if spec.starts_with('z') {
            return true;
        }
        // Skip the specifier so `%%z` is not read as an offset.
        rest = rest.get(1..).unwrap_or("");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SignConvention;
    use crate::source::files::format::number::NumberStyle;
    use chrono::{NaiveDate, NaiveTime};
    use rust_decimal::Decimal;

    fn col(ty: FieldType, format: Option<&str>) -> Column {
        Column {
            name: "C".into(),
            ty,
            format: format.map(|f| DateFormat::new(f).unwrap()),
            number: NumberStyle::default(),
        }
    }

    fn parse(ty: FieldType, format: Option<&str>, text: &str) -> Result<Value, Why> {
        parse_text(&col(ty, format), Cow::Borrowed(text))
    }

    #[test]
    fn empty_fields_are_null_except_strings() {
        assert_eq!(parse(FieldType::Decimal, None, "   "), Ok(Value::Null));
        assert_eq!(parse(FieldType::Date, None, ""), Ok(Value::Null));
        assert_eq!(
            parse(FieldType::String, None, ""),
            Ok(Value::Text(String::new()))
        );
        assert_eq!(
            parse(FieldType::String, None, " a "),
            Ok(Value::Text(" a ".into()))
        );
    }

    #[test]
    fn numbers_ignore_surrounding_spaces_and_use_the_style() {
        assert_eq!(
            parse(FieldType::Decimal, None, "  12.50 "),
            Ok(Value::Decimal(Decimal::new(1250, 2)))
        );
        let mut c = col(FieldType::Integer, None);
        c.number.sign = SignConvention::Trailing;
        assert_eq!(parse_text(&c, Cow::Borrowed(" 7- ")), Ok(Value::Int(-7)));
        let err = parse(FieldType::Decimal, None, "12x").unwrap_err();
        assert_eq!(err, "expected a decimal number");
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "1", "y", "Y", "t"] {
            assert_eq!(parse(FieldType::Boolean, None, t), Ok(Value::Bool(true)));
        }
        for t in ["false", "False", "0", "n", "N", "f"] {
            assert_eq!(parse(FieldType::Boolean, None, t), Ok(Value::Bool(false)));
        }
        assert!(parse(FieldType::Boolean, None, "yes please").is_err());
    }

    #[test]
    fn dates_times_and_timestamps() {
        let d = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(
            parse(FieldType::Date, None, "2024-03-01"),
            Ok(Value::Date(d))
        );
        assert_eq!(
            parse(FieldType::Date, Some("%d.%m.%Y"), "01.03.2024"),
            Ok(Value::Date(d))
        );
        let err = parse(FieldType::Date, Some("%d.%m.%Y"), "2024-03-01").unwrap_err();
        assert_eq!(err, "expected a date in the format `%d.%m.%Y`");
        assert!(parse(FieldType::Date, None, "2024-13-01").is_err());
        assert_eq!(
            parse(FieldType::Time, None, "10:15:00.5"),
            Ok(Value::Time(
                NaiveTime::from_hms_milli_opt(10, 15, 0, 500).unwrap()
            ))
        );
        let naive = d.and_hms_opt(10, 15, 0).unwrap();
        for t in ["2024-03-01T10:15:00", "2024-03-01 10:15:00"] {
            assert_eq!(
                parse(FieldType::Timestamp, None, t),
                Ok(Value::NaiveTimestamp(naive))
            );
        }
        assert!(matches!(
            parse(FieldType::Timestamp, None, "2024-03-01T10:15:00+01:00"),
            Ok(Value::Timestamp(_))
        ));
        assert_eq!(
            parse(FieldType::Timestamp, Some("%d%m%Y%H%M%S"), "01032024101500"),
            Ok(Value::NaiveTimestamp(naive))
        );
        assert!(matches!(
            parse(
                FieldType::Timestamp,
                Some("%d.%m.%Y %H:%M %z"),
                "01.03.2024 10:15 +0100"
            ),
            Ok(Value::Timestamp(_))
        ));
        assert!(has_offset("%Y %:z"));
        assert!(!has_offset("%Y %%z"));
    }

    #[test]
    fn binary_is_base64() {
        assert_eq!(
            parse(FieldType::Binary, None, "AAEC"),
            Ok(Value::Binary(vec![0, 1, 2]))
        );
        assert!(parse(FieldType::Binary, None, "!!").is_err());
    }
}
