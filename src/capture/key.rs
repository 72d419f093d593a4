//! Record identity for capture: an order-preserving byte encoding of a record's key (the
//! store keeps key state sorted by it, and snapshot scans merge on it), the event `subject`,
//! and the row hash that tells a real change from a re-read.
//!
//! Encoding, per key value: a tag byte, then
//! - integers: big-endian with the sign bit flipped;
//! - text and booleans: bytes with `00` escaped as `00 FF`, ended by `00 01`;
//! - decimals: sign class, then exponent and digits (inverted for negatives);
//! - dates, times and timestamps: a fixed-width count (days, nanoseconds, microseconds UTC).
//!
//! Each part is self-delimiting, so comparing encodings bytewise compares key tuples.

use rust_decimal::Decimal;

use chrono::{Datelike, Timelike};

use super::target::Target;
use crate::model::Value;
use crate::resource::MappingError;
use crate::source::Row;
use crate::store::RowHash;

const TAG_NULL: u8 = 0x00;
const TAG_INT: u8 = 0x10;
const TAG_TEXT: u8 = 0x20;
const TAG_DATE: u8 = 0x30;
const TAG_TIMESTAMP: u8 = 0x40;
const TAG_DECIMAL: u8 = 0x50;
const TAG_BOOL: u8 = 0x60;
const TAG_TIME: u8 = 0x70;

/// The hash stored for a deleted key: keeps its version counting, so a key that comes back
/// gets new event ids instead of repeating old ones.
pub const TOMBSTONE: RowHash = [0; 16];

/// Encodes key values (in key order) so that byte order is key order.
pub fn encode_key(values: &[&Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 12);
    for v in values {
        encode_value(v, &mut out);
    }
    out
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Int(i) => {
            out.push(TAG_INT);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Text(s) => {
            out.push(TAG_TEXT);
            escaped(s.as_bytes(), out);
        }
        Value::Binary(b) => {
            out.push(TAG_TEXT);
            escaped(b, out);
        }
        Value::Bool(b) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*b));
        }
        Value::Date(d) => {
            out.push(TAG_DATE);
            let days = d.signed_duration_since(chrono::NaiveDate::MIN).num_days();
            out.extend_from_slice(&(days as u64).to_be_bytes());
        }
        Value::Time(t) => {
            out.push(TAG_TIME);
            let nanos = t
                .signed_duration_since(chrono::NaiveTime::MIN)
                .num_nanoseconds()
                .unwrap_or_default();
            out.extend_from_slice(&(nanos as u64).to_be_bytes());
        }
        Value::Timestamp(ts) => {
            out.push(TAG_TIMESTAMP);
            let micros = ts.timestamp_micros();
            out.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::NaiveTimestamp(ts) => {
            out.push(TAG_TIMESTAMP);
            let micros = ts.and_utc().timestamp_micros();
            out.extend_from_slice(&((micros as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Decimal(d) => {
            out.push(TAG_DECIMAL);
            encode_decimal(*d, out);
        }
    }
}

fn escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Sign class (negative < zero < positive), then for positives the decimal exponent and the
/// significant digits; negatives invert both so larger magnitudes sort first.
fn encode_decimal(d: Decimal, out: &mut Vec<u8>) {
    let d = d.normalize();
    if d.is_zero() {
        out.push(0x80);
        return;
    }
    let digits = d.mantissa().unsigned_abs().to_string();
    // value = 0.DIGITS * 10^exp
    let exp = digits.len() as i64 - i64::from(d.scale());
    let exp = (exp as i16 as u16) ^ 0x8000;
    let digits = digits.trim_end_matches('0');
    if d.is_sign_positive() {
        out.push(0x81);
        out.extend_from_slice(&exp.to_be_bytes());
        out.extend(digits.bytes().map(|b| b - b'0' + 1));
        out.push(0x00);
    } else {
        out.push(0x7F);
        out.extend_from_slice(&(!exp).to_be_bytes());
        out.extend(digits.bytes().map(|b| !(b - b'0' + 1)));
        out.push(0xFF);
    }
}

/// The event subject: key values joined by `/` as in the resource's item URL, each
/// percent-encoded so a `/` inside a value cannot be mistaken for a separator.
pub fn subject(values: &[&Value]) -> String {
    json_subject(values.iter().map(|v| v.to_json()))
}

/// [`subject`] from the JSON form of the key values (as events and the store hold them).
pub fn json_subject(values: impl Iterator<Item = serde_json::Value>) -> String {
    values
        .map(|v| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            form_urlencoded::byte_serialize(text.as_bytes())
                .collect::<String>()
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A source row as every pass first sees it: its mapped values, its key and its hash.
/// Building the JSON, the subject and the key object is left to [`Identified::observe`],
/// which only rows that produce an event pay for.
#[derive(Debug, Clone)]
pub struct Identified {
    pub key: Vec<u8>,
    pub hash: RowHash,
    /// A key field is NULL: such a row cannot be addressed and is skipped.
    pub null_key: bool,
    /// Field values after the mapping's transforms, in field order.
    values: Vec<Value>,
}

/// A row that produces an event: identity plus what the event carries.
#[derive(Debug, Clone)]
pub struct Observed {
    pub key: Vec<u8>,
    pub subject: String,
    pub key_json: serde_json::Value,
    pub json: serde_json::Value,
    pub hash: RowHash,
    pub null_key: bool,
}

/// Maps a row (selected with the resource's columns first; extra columns are ignored) and
/// derives its key and hash without building JSON.
pub fn identify(target: &Target, row: Row) -> Result<Identified, MappingError> {
    let resource = &target.resource;
    let mut values = Vec::with_capacity(resource.fields.len());
    for (field, raw) in resource.fields.iter().zip(row) {
        values.push(field.to_field_value(raw)?);
    }
    let key_values = key_values_of(target, &values);
    let null_key = key_values.iter().any(|v| matches!(v, Value::Null));
    let key = encode_key(&key_values);
    let hash = hash_values(&values);
    Ok(Identified {
        key,
        hash,
        null_key,
        values,
    })
}

/// Maps a row and builds everything an event needs.
pub fn observe(target: &Target, row: Row) -> Result<Observed, MappingError> {
    Ok(identify(target, row)?.observe(target))
}

/// The key values among a record's field values, in key order.
fn key_values_of<'a>(target: &Target, values: &'a [Value]) -> Vec<&'a Value> {
    target
        .key_positions()
        .iter()
        .map(|&i| values.get(i).unwrap_or(&Value::Null))
        .collect()
}

/// `{"sku": "A1001", "location": "S01"}`: the key of an event, from key values in key order.
pub fn key_json(target: &Target, key_values: &[&Value]) -> serde_json::Value {
    serde_json::Value::Object(
        target
            .resource
            .schema
            .key
            .iter()
            .zip(key_values)
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect(),
    )
}

impl Identified {
    /// The event-facing form of the row.
    pub fn observe(self, target: &Target) -> Observed {
        let key_values = key_values_of(target, &self.values);
        let subject = subject(&key_values);
        let key_json = key_json(target, &key_values);
        let json = serde_json::Value::Object(
            target
                .resource
                .fields
                .iter()
                .zip(&self.values)
                .map(|(f, v)| (f.name.clone(), v.to_json()))
                .collect(),
        );
        Observed {
            key: self.key,
            subject,
            key_json,
            json,
            hash: self.hash,
            null_key: self.null_key,
        }
    }
}

/// A 128-bit hash of a record's values, in field order; equal values (as the API would print
/// them) hash equally. Never equal to [`TOMBSTONE`].
pub fn hash_values(values: &[Value]) -> RowHash {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for v in values {
        match v {
            Value::Null => h.update(&[0]),
            Value::Bool(b) => h.update(&[1, u8::from(*b)]),
            Value::Int(i) => {
                h.update(&[2]);
                h.update(&i.to_be_bytes());
            }
            Value::Decimal(d) => {
                // Scale is part of the printed value (`12.50` vs `12.5`), so it is hashed.
                h.update(&[3]);
                h.update(&d.serialize());
            }
            Value::Text(t) => {
                h.update(&[4]);
                h.update(&(t.len() as u64).to_be_bytes());
                h.update(t.as_bytes());
            }
            Value::Binary(b) => {
                h.update(&[5]);
                h.update(&(b.len() as u64).to_be_bytes());
                h.update(b);
            }
            Value::Date(d) => {
                h.update(&[6]);
                h.update(&d.num_days_from_ce().to_be_bytes());
            }
            Value::Time(t) => {
                h.update(&[7]);
                h.update(&t.num_seconds_from_midnight().to_be_bytes());
                h.update(&t.nanosecond().to_be_bytes());
            }
            Value::Timestamp(ts) => {
                h.update(&[8]);
                h.update(&ts.timestamp_micros().to_be_bytes());
                h.update(&ts.offset().local_minus_utc().to_be_bytes());
            }
            Value::NaiveTimestamp(ts) => {
                h.update(&[9]);
                h.update(&ts.and_utc().timestamp_micros().to_be_bytes());
            }
        }
    }
    let mut hash = h.digest128().to_be_bytes();
    if hash == TOMBSTONE {
        hash[15] = 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn enc(v: Value) -> Vec<u8> {
        encode_key(&[&v])
    }

    proptest! {
        #[test]
        fn integer_order_is_byte_order(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), enc(Value::Int(a)).cmp(&enc(Value::Int(b))));
        }

        #[test]
        fn text_order_is_byte_order(a: String, b: String) {
            prop_assert_eq!(
                a.as_bytes().cmp(b.as_bytes()),
                enc(Value::Text(a.clone())).cmp(&enc(Value::Text(b.clone())))
            );
        }

        #[test]
        fn decimal_order_is_numeric_order(a: i64, sa in 0u32..8, b: i64, sb in 0u32..8) {
            let (x, y) = (Decimal::new(a, sa), Decimal::new(b, sb));
            prop_assert_eq!(x.cmp(&y), enc(Value::Decimal(x)).cmp(&enc(Value::Decimal(y))));
        }

        #[test]
        fn tuples_compare_field_by_field(a: String, b: i64, c: String, d: i64) {
            let left = encode_key(&[&Value::Text(a.clone()), &Value::Int(b)]);
            let right = encode_key(&[&Value::Text(c.clone()), &Value::Int(d)]);
            let expected = a.as_bytes().cmp(c.as_bytes()).then(b.cmp(&d));
            prop_assert_eq!(expected, left.cmp(&right));
        }
    }

    #[test]
    fn equal_decimals_encode_equally() {
        let a = Decimal::from_str("12.50").unwrap();
        let b = Decimal::from_str("12.5").unwrap();
        assert_eq!(enc(Value::Decimal(a)), enc(Value::Decimal(b)));
        assert!(
            enc(Value::Decimal(Decimal::from_str("-0.5").unwrap()))
                < enc(Value::Decimal(Decimal::ZERO))
        );
    }

    #[test]
    fn subjects_escape_separators() {
        let a = Value::Text("A/1 x".into());
        let b = Value::Int(7);
        assert_eq!(subject(&[&a, &b]), "A%2F1%20x/7");
    }

    #[test]
    fn hashes_follow_printed_content() {
        let a = [Value::Text("A1".into()), Value::Int(1)];
        let b = [Value::Text("A1".into()), Value::Int(2)];
        assert_eq!(hash_values(&a), hash_values(&a.clone()));
        assert_ne!(hash_values(&a), hash_values(&b));
        assert_ne!(hash_values(&a), TOMBSTONE);
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let x = [Value::Text("ab".into()), Value::Text("c".into())];
        let y = [Value::Text("a".into()), Value::Text("bc".into())];
        assert_ne!(hash_values(&x), hash_values(&y));
        // 12.50 and 12.5 print differently, so they differ.
        let p = [Value::Decimal(Decimal::new(1250, 2))];
        let q = [Value::Decimal(Decimal::new(125, 1))];
        assert_ne!(hash_values(&p), hash_values(&q));
    }
}
