//! JSON Lines exports: one object per line, columns are its top-level members. Only the
//! requested members are kept, as raw JSON text (`serde_json`'s `RawValue`), so a number is
//! converted from its exact digits (`0.1` stays `0.1`) instead of passing through a float.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;

use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::encoding::Charset;
use super::lines::{Line, LineReader};
use super::text::{Why, described, parse_text};
use super::{BadRow, Column, FileError, FileRecord, Item, RAW_LIMIT_BYTES, cap_raw};
use crate::config::FileDef;
use crate::model::{FieldType, Value};

/// Reads a JSON Lines export.
pub(super) struct JsonlReader {
    lines: LineReader,
    charset: Charset,
    columns: Vec<Column>,
}

impl JsonlReader {
    pub(super) fn open(
        file: File,
        def: &FileDef,
        columns: Vec<Column>,
    ) -> Result<JsonlReader, FileError> {
        let charset = Charset::from_config(def.encoding);
        let mut lines = LineReader::new(file, matches!(charset, Charset::Utf8))?;
        lines.skip(def.skip_lines)?;
        Ok(JsonlReader {
            lines,
            charset,
            columns,
        })
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.lines.consumed()
    }

    pub(super) fn next_item(&mut self) -> Result<Option<Item>, FileError> {
        loop {
            let Some(line) = self.lines.next_line()? else {
                return Ok(None);
            };
            if line.bytes.trim_ascii().is_empty() {
                continue;
            }
            return Ok(Some(decode(&line, self.charset, &self.columns)));
        }
    }
}

fn decode(line: &Line<'_>, charset: Charset, columns: &[Column]) -> Item {
    let bad = |reason: String| {
        let shown = &line.bytes[..line.bytes.len().min(RAW_LIMIT_BYTES + 1)];
        Item::Bad(BadRow {
            position: line.number,
            reason,
            raw: cap_raw(&charset.decode_lossy(shown)),
        })
    };
    let Some(text) = charset.decode(line.bytes) else {
        return bad(charset.invalid_text_reason().to_owned());
    };
    let mut slots: Vec<Option<&RawValue>> = vec![None; columns.len()];
    let mut de = serde_json::Deserializer::from_str(&text);
    let parsed = Members {
        columns,
        slots: &mut slots,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Err(e) = parsed {
        // serde_json's messages can quote the input; only its category and place are used.
        return bad(if e.is_data() {
            "expected a JSON object".to_owned()
        } else {
            format!(
                "not a valid JSON object (error at character {})",
                e.column()
            )
        });
    }
    let mut values = Vec::with_capacity(columns.len());
    for (column, slot) in columns.iter().zip(&slots) {
        let value = match slot {
            None => Ok(Value::Null),
            Some(raw) => convert(column, raw.get()),
        };
        match value {
            Ok(v) => values.push(v),
            Err(why) => return bad(column.reason(&why)),
        }
    }
    Item::Record(FileRecord {
        position: line.number,
        values,
    })
}

/// Converts one member's JSON text to the column's type.
fn convert(column: &Column, json: &str) -> Result<Value, Why> {
    let found =
        |what: &str| -> Why { format!("expected {}, found {what}", described(column.ty)).into() };
    match json.as_bytes().first() {
        Some(b'"') => {
            let s = serde_json::from_str::<Text<'_>>(json)
                .map_err(|_| Cow::Borrowed("expected a JSON string"))?;
            parse_text(column, s.0)
        }
        Some(b'n') => Ok(Value::Null),
        Some(b't' | b'f') => match column.ty {
            FieldType::Boolean => Ok(Value::Bool(json == "true")),
            FieldType::String => Ok(Value::Text(json.to_owned())),
            _ => Err(found("a boolean")),
        },
        Some(b'{') => Err(found("an object")),
        Some(b'[') => Err(found("an array")),
        _ => match column.ty {
            FieldType::String => Ok(Value::Text(json.to_owned())),
            FieldType::Decimal => exact_decimal(json)
                .map(Value::Decimal)
                .ok_or(Cow::Borrowed("decimal number out of range")),
            FieldType::Integer => {
                if let Ok(i) = json.parse::<i64>() {
                    return Ok(Value::Int(i));
                }
                match exact_decimal(json) {
                    Some(d) if !d.fract().is_zero() => {
                        Err("expected an integer, found a fraction".into())
                    }
                    Some(d) => i64::try_from(d)
                        .map(Value::Int)
                        .map_err(|_| "integer out of range".into()),
                    None => Err("integer out of range".into()),
                }
            }
            FieldType::Boolean => match json {
                "1" => Ok(Value::Bool(true)),
                "0" => Ok(Value::Bool(false)),
                _ => Err(found("a number other than 0 or 1")),
            },
            _ => Err(found("a number")),
        },
    }
}

/// A JSON number's exact value; `None` when it does not fit a decimal.
fn exact_decimal(json: &str) -> Option<Decimal> {
    Decimal::from_str_exact(json)
        .ok()
        .or_else(|| Decimal::from_scientific(json).ok())
}

/// Collects the raw text of the requested members of one object.
struct Members<'a, 'de> {
    columns: &'a [Column],
    slots: &'a mut [Option<&'de RawValue>],
}

impl<'de> DeserializeSeed<'de> for Members<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if self.columns.iter().any(|c| c.name == key.0) {
                let raw: &'de RawValue = map.next_value()?;
                for (slot, column) in self.slots.iter_mut().zip(self.columns) {
                    if column.name == key.0 {
                        *slot = Some(raw);
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A JSON string, borrowed from the line unless it has escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ExportReader;
    use super::super::test_support::*;
    use crate::model::{FieldType, Value};
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str_exact(s).unwrap())
    }

    #[test]
    fn numbers_stay_exact_and_members_map_to_types() {
        let dir = tempfile::tempdir().unwrap();
        let content = "\u{feff}{\"sku\":\"A1\",\"price\":0.1,\"sum\":0.30000000000000004,\"qty\":3,\"on\":true,\"day\":\"2024-03-01\"}\n\
             \n\
             {\"price\":1e-5,\"sku\":\"A\\u00e92\",\"qty\":4.0,\"extra\":{\"a\":[1,2]},\"on\":null}\n\
             {\"sku\":12345678901234567890,\"price\":\"12.50\",\"qty\":\"7\",\"on\":\"Y\"}\n";
        let path = write(&dir, "a.jsonl", content.as_bytes());
        let cols = [
            req("sku", FieldType::String),
            req("price", FieldType::Decimal),
            req("sum", FieldType::Decimal),
            req("qty", FieldType::Integer),
            req("on", FieldType::Boolean),
            req("day", FieldType::Date),
        ];
        let (items, err) = read_all(&path, &def("format = \"jsonl\""), &cols);
        assert!(err.is_none(), "{err:?}");
        let day = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
        assert_eq!(
            records(&items),
            vec![
                (
                    1,
                    vec![
                        Value::Text("A1".into()),
                        dec("0.1"),
                        dec("0.30000000000000004"),
                        Value::Int(3),
                        Value::Bool(true),
                        Value::Date(day),
                    ]
                ),
                (
                    3,
                    vec![
                        Value::Text("Aé2".into()),
                        dec("0.00001"),
                        Value::Null,
                        Value::Int(4),
                        Value::Null,
                        Value::Null,
                    ]
                ),
                (
                    4,
                    vec![
                        Value::Text("12345678901234567890".into()),
                        dec("12.50"),
                        Value::Null,
                        Value::Int(7),
                        Value::Bool(true),
                        Value::Null,
                    ]
                ),
            ]
        );
    }

    #[test]
    fn lines_that_are_not_objects_are_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"{\"qty\":1}\n[1,2]\n{\"qty\":\"SECRET\"}\n{\"qty\":1.5}\n{\"qty\":2} trailing\n{\"qty\":\n\xFF\n{\"qty\":{}}\n{\"qty\":3}";
        let path = write(&dir, "b.jsonl", content);
        let (items, err) = read_all(
            &path,
            &def("format = \"jsonl\""),
            &[req("qty", FieldType::Integer)],
        );
        assert!(err.is_none());
        assert_eq!(
            records(&items),
            vec![(1, vec![Value::Int(1)]), (9, vec![Value::Int(3)])]
        );
        let bad: Vec<(u64, String)> = bad_rows(&items)
            .into_iter()
            .map(|b| (b.position, b.reason))
            .collect();
        assert_eq!(
            bad,
            vec![
                (2, "expected a JSON object".to_owned()),
                (3, "column qty: expected an integer".to_owned()),
                (
                    4,
                    "column qty: expected an integer, found a fraction".to_owned()
                ),
                (
                    5,
                    "not a valid JSON object (error at character 11)".to_owned()
                ),
                (
                    6,
                    "not a valid JSON object (error at character 7)".to_owned()
                ),
                (
                    7,
                    "not valid UTF-8 text (set `encoding` if the export uses another code page)"
                        .to_owned()
                ),
                (
                    8,
                    "column qty: expected an integer, found an object".to_owned()
                ),
            ]
        );
        assert!(bad.iter().all(|(_, r)| !r.contains("SECRET")));
    }

    #[test]
    fn an_empty_file_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "e.jsonl", b"");
        let mut reader = ExportReader::open(&path, &def("format = \"jsonl\""), &[]).unwrap();
        assert!(reader.next().is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn arbitrary_bytes_never_panic_and_positions_increase(
            content in proptest::collection::vec(
                prop_oneof![Just(b'{'), Just(b'}'), Just(b'"'), Just(b':'), Just(b'\n'),
                            Just(b'a'), Just(b'1'), Just(b'.'), Just(b'e'), any::<u8>()],
                0..400),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = write(&dir, "p.jsonl", &content);
            let reader = ExportReader::open(
                &path,
                &def("format = \"jsonl\""),
                &[req("a", FieldType::Decimal), req("1", FieldType::String)],
            ).unwrap();
            assert_positions_increase(reader, content.len() as u64);
        }
    }
}
