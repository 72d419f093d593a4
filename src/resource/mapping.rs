//! Rows to records: a bound resource knows, per field, which column to read, how to decode it
//! and which legacy quirks to undo (CHAR padding, Y/N flags, naive local timestamps, decimal
//! scale). The reverse direction turns request values into parameters the legacy column
//! compares correctly with.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};

use crate::config::Trim;
use crate::model::{FieldType, Record, ResourceSchema, Value};
use crate::source::{Param, Relation, Row, SelectColumn, SqlType};

/// The legacy quirks undone for one field.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    pub trim: Trim,
    /// Decimal places of the output; defaults to the column's declared scale.
    pub scale: Option<u32>,
    /// Zone of naive timestamps; UTC unless the adapter says otherwise.
    pub timezone: Tz,
    pub true_values: Option<Vec<String>>,
    pub false_values: Option<Vec<String>>,
}

/// What a column of a field of type `ty` is decoded as: booleans with legacy spellings
/// (`Y`/`N`) are read as text and turned into booleans by the transform.
pub fn decode_type_of(ty: FieldType, has_spellings: bool) -> FieldType {
    if ty == FieldType::Boolean && has_spellings {
        FieldType::String
    } else {
        ty
    }
}

/// A field bound to an existing column.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundField {
    pub name: String,
    /// The column name exactly as the catalog spells it.
    pub column: String,
    pub ty: FieldType,
    pub sql_type: SqlType,
    pub transform: Transform,
}

impl BoundField {
    /// What the source should decode the column as before the transform runs.
    pub fn decode_type(&self) -> FieldType {
        decode_type_of(self.ty, self.has_spellings())
    }

    fn has_spellings(&self) -> bool {
        self.transform.true_values.is_some() || self.transform.false_values.is_some()
    }

    /// Applies the transform to a decoded value.
    pub fn to_field_value(&self, raw: Value) -> Result<Value, MappingError> {
        let t = &self.transform;
        Ok(match raw {
            Value::Null => Value::Null,
            Value::Text(s) if self.ty == FieldType::Boolean => Value::Bool(self.spelled_bool(&s)?),
            Value::Text(s) => Value::Text(match t.trim {
                Trim::None => s,
                Trim::End => s.trim_end().to_owned(),
                Trim::Start => s.trim_start().to_owned(),
                Trim::Both => s.trim().to_owned(),
            }),
            Value::Decimal(d) => Value::Decimal(match t.scale {
                Some(scale) => rescale(d, scale),
                None => d.normalize(),
            }),
            Value::NaiveTimestamp(ts) => Value::Timestamp(localize(ts, t.timezone)),
            other => other,
        })
    }

    fn spelled_bool(&self, text: &str) -> Result<bool, MappingError> {
        let text = text.trim();
        let is = |list: &Option<Vec<String>>| {
            list.as_ref()
                .is_some_and(|l| l.iter().any(|v| v.trim() == text))
        };
        let t = &self.transform;
        match (is(&t.true_values), is(&t.false_values)) {
            (true, _) => Ok(true),
            (false, true) => Ok(false),
            (false, false) if t.false_values.is_none() => Ok(false),
            (false, false) if t.true_values.is_none() => Ok(true),
            _ => Err(MappingError {
                field: self.name.clone(),
                reason: "value is none of the configured true/false spellings".into(),
            }),
        }
    }

    /// Turns a request value (already parsed as the field's type) into the parameter values
    /// that select it in the legacy column: boolean spellings, local time for timestamps.
    pub fn to_params(&self, value: &Value) -> Vec<Param> {
        let param = |value: Value| Param {
            value,
            sql_type: self.sql_type,
        };
        match value {
            Value::Bool(b) if self.has_spellings() => {
                let list = if *b {
                    &self.transform.true_values
                } else {
                    &self.transform.false_values
                };
                list.iter()
                    .flatten()
                    .map(|s| param(Value::Text(s.clone())))
                    .collect()
            }
            Value::Timestamp(ts) => vec![param(Value::NaiveTimestamp(
                ts.with_timezone(&self.transform.timezone).naive_local(),
            ))],
            other => vec![param(other.clone())],
        }
    }
}

/// Rounds half away from zero (commercial rounding) and fixes the number of places, so
/// `12.99` from one engine and `12.9900` from another print the same.
fn rescale(d: Decimal, scale: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    r
}

/// Interprets a naive legacy timestamp in `tz`. In the autumn overlap the earlier instant is
/// taken; a time inside the spring gap is moved forward by the gap.
fn localize(ts: NaiveDateTime, tz: Tz) -> DateTime<FixedOffset> {
    match tz.from_local_datetime(&ts).earliest() {
        Some(t) => t.fixed_offset(),
        None => {
            let shifted = ts + chrono::Duration::hours(1);
            tz.from_local_datetime(&shifted)
                .earliest()
                .map(|t| t.fixed_offset())
                .unwrap_or_else(|| ts.and_utc().fixed_offset())
        }
    }
}

/// A value that does not fit its field; names the field, never the value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("field `{field}`: {reason}")]
pub struct MappingError {
    pub field: String,
    pub reason: String,
}

/// A resource bound to a live source: schema, relation and fields with their columns.
#[derive(Debug, Clone)]
pub struct Resource {
    pub schema: ResourceSchema,
    /// Name of the source in the deployment config.
    pub source: String,
    pub relation: Relation,
    pub fields: Vec<BoundField>,
}

impl Resource {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&BoundField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Key fields in key order.
    pub fn key_fields(&self) -> Vec<&BoundField> {
        self.schema
            .key
            .iter()
            .filter_map(|k| self.field(k))
            .collect()
    }

    /// Positions of the key fields in `fields`, in key order.
    pub fn key_positions(&self) -> Vec<usize> {
        self.schema
            .key
            .iter()
            .filter_map(|k| self.fields.iter().position(|f| &f.name == k))
            .collect()
    }

    /// Columns to select, in field order.
    pub fn select_columns(&self) -> Vec<SelectColumn> {
        self.fields
            .iter()
            .map(|f| SelectColumn {
                name: f.column.clone(),
                decode: f.decode_type(),
            })
            .collect()
    }

    /// Builds a record from a row selected with [`Resource::select_columns`].
    pub fn record(&self, row: Row) -> Result<Record, MappingError> {
        let mut record = Record::with_capacity(self.fields.len());
        for (field, raw) in self.fields.iter().zip(row) {
            record.insert(field.name.clone(), field.to_field_value(raw)?);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(ty: FieldType, transform: Transform) -> BoundField {
        BoundField {
            name: "f".into(),
            column: "F".into(),
            ty,
            sql_type: SqlType::Char { len: Some(10) },
            transform,
        }
    }

    fn plain() -> Transform {
        Transform {
            trim: Trim::None,
            scale: None,
            timezone: Tz::UTC,
            true_values: None,
            false_values: None,
        }
    }

    #[test]
    fn undoes_char_padding_and_fixes_scale() {
        let f = field(
            FieldType::String,
            Transform {
                trim: Trim::End,
                ..plain()
            },
        );
        assert_eq!(
            f.to_field_value(Value::Text("A1001     ".into())).unwrap(),
            Value::Text("A1001".into())
        );
        let f = field(
            FieldType::Decimal,
            Transform {
                scale: Some(2),
                ..plain()
            },
        );
        let v = f
            .to_field_value(Value::parse(FieldType::Decimal, "12.995").unwrap())
            .unwrap();
        assert_eq!(v.to_json(), serde_json::json!("13.00"));
    }

    #[test]
    fn reads_legacy_flags() {
        let f = field(
            FieldType::Boolean,
            Transform {
                true_values: Some(vec!["Y".into()]),
                false_values: Some(vec!["N".into()]),
                ..plain()
            },
        );
        assert_eq!(f.decode_type(), FieldType::String);
        assert_eq!(
            f.to_field_value(Value::Text("Y".into())).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            f.to_field_value(Value::Text("N".into())).unwrap(),
            Value::Bool(false)
        );
        let err = f.to_field_value(Value::Text("?".into())).unwrap_err();
        assert_eq!(err.field, "f");
        assert_eq!(
            f.to_params(&Value::Bool(true))[0].value,
            Value::Text("Y".into())
        );
    }

    #[test]
    fn naive_timestamps_get_the_configured_zone() {
        let f = field(
            FieldType::Timestamp,
            Transform {
                timezone: "Europe/Berlin".parse().unwrap(),
                ..plain()
            },
        );
        let raw = Value::parse(FieldType::Timestamp, "2024-07-01 12:00:00").unwrap();
        let v = f.to_field_value(raw).unwrap();
        assert_eq!(v.to_json(), serde_json::json!("2024-07-01T12:00:00+02:00"));
        // And back: a UTC instant in a filter becomes Berlin local time for the legacy column.
        let utc = Value::parse(FieldType::Timestamp, "2024-07-01T10:00:00Z").unwrap();
        assert_eq!(
            f.to_params(&utc)[0].value.to_sql_text().unwrap(),
            "2024-07-01 12:00:00"
        );
        // Spring gap: 02:30 does not exist in Berlin on 2024-03-31.
        let gap = Value::parse(FieldType::Timestamp, "2024-03-31 02:30:00").unwrap();
        assert_eq!(
            f.to_field_value(gap).unwrap().to_json(),
            serde_json::json!("2024-03-31T03:30:00+02:00")
        );
    }
}
