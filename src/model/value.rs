//! Typed values as they travel from a legacy column to a JSON response. Money stays an exact
//! decimal end to end; timestamps carry their offset once a time zone has been applied.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use indexmap::IndexMap;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The type of a resource field, as declared in an adapter; it decides decoding, parameter
/// binding, JSON encoding and the OpenAPI schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Integer,
    Decimal,
    Boolean,
    Date,
    Time,
    Timestamp,
    Binary,
}

impl FieldType {
    /// The name used in adapter files and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Time => "time",
            FieldType::Timestamp => "timestamp",
            FieldType::Binary => "binary",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One typed value. Decimals never pass through a float; binary is base64 in JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Decimal(Decimal),
    Text(String),
    Date(NaiveDate),
    Time(NaiveTime),
    /// A timestamp whose offset is known (given by the source or applied from the adapter's
    /// time zone).
    Timestamp(DateTime<FixedOffset>),
    /// A timestamp as the legacy system stored it, without zone; used for query parameters.
    NaiveTimestamp(NaiveDateTime),
    Binary(Vec<u8>),
}

/// A resource record: field name to value, in schema order.
pub type Record = IndexMap<String, Value>;

/// Why a piece of text could not be read as a value of a field type.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a valid {expected}")]
pub struct ValueParseError {
    /// The offending text, shortened for messages.
    pub input: String,
    /// What was expected.
    pub expected: &'static str,
}

impl ValueParseError {
    fn new(input: &str, expected: &'static str) -> Self {
        let input: String = input.chars().take(64).collect();
        Self { input, expected }
    }
}

impl Value {
    /// Parses the textual form used in URLs and cursors (and by most ODBC drivers) into a value
    /// of `ty`. Timestamps given without offset stay naive.
    pub fn parse(ty: FieldType, text: &str) -> Result<Value, ValueParseError> {
        let t = text.trim();
        match ty {
            FieldType::String => Ok(Value::Text(text.to_owned())),
            FieldType::Integer => t
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| ValueParseError::new(text, "integer")),
            FieldType::Decimal => parse_decimal(t)
                .map(Value::Decimal)
                .ok_or_else(|| ValueParseError::new(text, "decimal number")),
            FieldType::Boolean => parse_bool(t)
                .map(Value::Bool)
                .ok_or_else(|| ValueParseError::new(text, "boolean (true/false)")),
            FieldType::Date => NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(Value::Date)
                .map_err(|_| ValueParseError::new(text, "date (YYYY-MM-DD)")),
            FieldType::Time => NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
                .map(Value::Time)
                .map_err(|_| ValueParseError::new(text, "time (HH:MM:SS)")),
            FieldType::Timestamp => {
                parse_timestamp(t).ok_or_else(|| ValueParseError::new(text, "timestamp (RFC 3339)"))
            }
            FieldType::Binary => base64::engine::general_purpose::STANDARD
                .decode(t)
                .map(Value::Binary)
                .map_err(|_| ValueParseError::new(text, "base64 string")),
        }
    }

    /// The value as JSON: decimals as strings (exact), timestamps as RFC 3339, binary as base64.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Decimal(d) => J::String(d.to_string()),
            Value::Text(s) => J::String(s.clone()),
            Value::Date(d) => J::String(d.format("%Y-%m-%d").to_string()),
            Value::Time(t) => J::String(t.format("%H:%M:%S%.f").to_string()),
            Value::Timestamp(ts) => J::String(ts.to_rfc3339()),
            Value::NaiveTimestamp(ts) => J::String(ts.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
            Value::Binary(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    /// Reads a value back from the JSON form produced by [`Value::to_json`].
    pub fn from_json(ty: FieldType, json: &serde_json::Value) -> Result<Value, ValueParseError> {
        use serde_json::Value as J;
        match (ty, json) {
            (_, J::Null) => Ok(Value::Null),
            (FieldType::Boolean, J::Bool(b)) => Ok(Value::Bool(*b)),
            (FieldType::Integer, J::Number(n)) => n
                .as_i64()
                .map(Value::Int)
                .ok_or_else(|| ValueParseError::new(&n.to_string(), "integer")),
            (_, J::String(s)) => Value::parse(ty, s),
            (_, other) => Err(ValueParseError::new(&other.to_string(), ty.as_str())),
        }
    }

    /// The text an ODBC driver accepts for this value when bound as a character parameter.
    pub fn to_sql_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
            Value::Int(i) => Some(i.to_string()),
            Value::Decimal(d) => Some(d.to_string()),
            Value::Text(s) => Some(s.clone()),
            Value::Date(d) => Some(d.format("%Y-%m-%d").to_string()),
            Value::Time(t) => Some(t.format("%H:%M:%S").to_string()),
            Value::Timestamp(ts) => {
                Some(ts.naive_local().format("%Y-%m-%d %H:%M:%S%.f").to_string())
            }
            Value::NaiveTimestamp(ts) => Some(ts.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            Value::Binary(b) => Some(hex::encode(b)),
        }
    }
}

/// Parses an exact decimal, accepting the scientific notation some drivers print.
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
        .or_else(|| Decimal::from_str(text).ok())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "f" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Accepts RFC 3339 and the `YYYY-MM-DD HH:MM:SS[.f][+HH[:MM]]` forms drivers print; without an
/// offset the result is naive.
fn parse_timestamp(text: &str) -> Option<Value> {
    // Most legacy columns hold naive timestamps: try those first when no offset is present
    // (an offset is a `Z`, or a sign after the date).
    let time_part = text.get(10..).unwrap_or("");
    let has_offset = time_part.contains(['Z', 'z', '+', '-']);
    if !has_offset && let Some(v) = parse_naive_timestamp(text) {
        return Some(v);
    }
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(Value::Timestamp(ts));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(ts) = DateTime::parse_from_str(text, fmt) {
            return Some(Value::Timestamp(ts));
        }
    }
    parse_naive_timestamp(text)
}

fn parse_naive_timestamp(text: &str) -> Option<Value> {
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(text, fmt) {
            return Some(Value::NaiveTimestamp(ts));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(Value::NaiveTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_stay_exact_through_json() {
        let v = Value::parse(FieldType::Decimal, "12.9900").unwrap();
        assert_eq!(v.to_json(), serde_json::json!("12.9900"));
        let back = Value::from_json(FieldType::Decimal, &v.to_json()).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            Value::parse(FieldType::Decimal, "1e-5").unwrap(),
            Value::Decimal(Decimal::new(1, 5))
        );
    }

    #[test]
    fn timestamps_keep_or_lack_offsets() {
        let naive = Value::parse(FieldType::Timestamp, "2024-03-01 10:15:00").unwrap();
        assert!(matches!(naive, Value::NaiveTimestamp(_)));
        let zoned = Value::parse(FieldType::Timestamp, "2024-03-01T10:15:00+01:00").unwrap();
        assert_eq!(
            zoned.to_json(),
            serde_json::json!("2024-03-01T10:15:00+01:00")
        );
        let pg = Value::parse(FieldType::Timestamp, "2024-03-01 10:15:00.5+01").unwrap();
        assert!(matches!(pg, Value::Timestamp(_)));
    }

    #[test]
    fn rejects_garbage_with_a_clear_message() {
        let err = Value::parse(FieldType::Integer, "12a").unwrap_err();
        assert_eq!(err.to_string(), "`12a` is not a valid integer");
        assert!(Value::parse(FieldType::Boolean, "maybe").is_err());
        assert!(Value::parse(FieldType::Date, "2024-13-01").is_err());
    }
}
