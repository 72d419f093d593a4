//! SQL Server data types as the harness knows them: parsed from SQLite's declared column
//! types (written in SQL Server spelling), encoded as TDS 7.4 TYPE_INFO, and values converted
//! between SQLite's storage form and the wire form in both directions.
//!
//! Storage form in SQLite (what tests write with `TdsServer::execute` and read back):
//! integers and bit as INTEGER; decimal/numeric/money as numbers (SQLite's NUMERIC affinity
//! keeps 15 significant digits); float/real as REAL; strings as TEXT; binary as BLOB;
//! uniqueidentifier as uppercase TEXT `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`; date/time types
//! as TEXT `YYYY-MM-DD HH:MM:SS[.fffffff]` (fraction without trailing zeros), `YYYY-MM-DD`,
//! `HH:MM:SS[.fffffff]`, datetimeoffset with a ` +HH:MM` suffix (local time and offset);
//! rowversion as an 8-byte big-endian BLOB.

use chrono::{Datelike, NaiveDate};
use rusqlite::types::Value;
use rust_decimal::{Decimal, RoundingStrategy};

use super::sql::SqlError;

/// SQL_Latin1_General_CP1_CI_AS: LCID 0x0409 with CI/AI-off/width flags, sort id 52.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
/// The user type SQL Server sends for `timestamp`/`rowversion` columns.
const USER_TYPE_TIMESTAMP: u32 = 0x50;
/// Days from 0001-01-01 to 1900-01-01 (the `datetime` epoch).
const DAYS_TO_1900: i64 = 693_595;
const NANOS_PER_DAY: u64 = 86_400_000_000_000;

/// A length that may be `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    N(u16),
    Max,
}

/// A SQL Server data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Bit,
    Decimal {
        precision: u8,
        scale: u8,
        numeric: bool,
    },
    Money,
    SmallMoney,
    Float,
    Real,
    Char(u16),
    VarChar(Len),
    NChar(u16),
    NVarChar(Len),
    Text,
    NText,
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    Date,
    Time(u8),
    DateTimeOffset(u8),
    UniqueIdentifier,
    Binary(u16),
    VarBinary(Len),
    Image,
    RowVersion,
}

impl SqlType {
    /// Parses a declared type such as `NVARCHAR(200)`, `decimal(12, 4)` or `ROWVERSION`.
    /// `None` for anything the harness does not know (the column is then typed from its values).
    pub fn parse(decl: &str) -> Option<SqlType> {
        let decl = decl.trim();
        let (base, args) = match decl.find('(') {
            Some(open) => {
                let close = decl.rfind(')')?;
                if close < open {
                    return None;
                }
                (&decl[..open], Some(&decl[open + 1..close]))
            }
            None => (decl, None),
        };
        let base = base
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        let args: Vec<String> = args
            .map(|a| {
                a.split(',')
                    .map(|x| x.trim().to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default();
        let num = |i: usize, default: u32| -> Option<u32> {
            match args.get(i) {
                None => Some(default),
                Some(a) => a.parse().ok(),
            }
        };
        let len = |default: u32, max_n: u32| -> Option<Len> {
            match args.first().map(String::as_str) {
                // SQLite does not accept `(MAX)` in a declaration: `(-1)` stands for it
                Some("MAX" | "-1") => Some(Len::Max),
                _ => {
                    let n = num(0, default)?;
                    (1..=max_n).contains(&n).then_some(Len::N(n as u16))
                }
            }
        };
        let fixed = |default: u32, max_n: u32| -> Option<u16> {
            let n = num(0, default)?;
            (1..=max_n).contains(&n).then_some(n as u16)
        };
        let frac = || -> Option<u8> {
            let s = num(0, 7)?;
            (s <= 7).then_some(s as u8)
        };
        let ty = match base.as_str() {
            "TINYINT" => SqlType::TinyInt,
            "SMALLINT" => SqlType::SmallInt,
            "INT" | "INTEGER" => SqlType::Int,
            "BIGINT" => SqlType::BigInt,
            "BIT" | "BOOLEAN" => SqlType::Bit,
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let precision = num(0, 18)?;
                let scale = num(1, 0)?;
                if !(1..=38).contains(&precision) || scale > precision {
                    return None;
                }
                SqlType::Decimal {
                    precision: precision as u8,
                    scale: scale as u8,
                    numeric: base == "NUMERIC",
                }
            }
            "MONEY" => SqlType::Money,
            "SMALLMONEY" => SqlType::SmallMoney,
            "FLOAT" => match num(0, 53)? {
                1..=24 => SqlType::Real,
                25..=53 => SqlType::Float,
                _ => return None,
            },
            "DOUBLE" | "DOUBLE PRECISION" => SqlType::Float,
            "REAL" => SqlType::Real,
            "CHAR" | "CHARACTER" => SqlType::Char(fixed(1, 8000)?),
            "VARCHAR" | "CHARACTER VARYING" | "CHAR VARYING" => SqlType::VarChar(len(30, 8000)?),
            "NCHAR" | "NATIONAL CHAR" | "NATIONAL CHARACTER" => SqlType::NChar(fixed(1, 4000)?),
            "NVARCHAR" | "NATIONAL CHAR VARYING" | "NATIONAL CHARACTER VARYING" => {
                SqlType::NVarChar(len(30, 4000)?)
            }
            "SYSNAME" => SqlType::NVarChar(Len::N(128)),
            "TEXT" | "CLOB" => SqlType::Text,
            "NTEXT" => SqlType::NText,
            "DATETIME" => SqlType::DateTime,
            "SMALLDATETIME" => SqlType::SmallDateTime,
            "DATETIME2" => SqlType::DateTime2(frac()?),
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time(frac()?),
            "DATETIMEOFFSET" => SqlType::DateTimeOffset(frac()?),
            "UNIQUEIDENTIFIER" => SqlType::UniqueIdentifier,
            "BINARY" => SqlType::Binary(fixed(1, 8000)?),
            "VARBINARY" | "BINARY VARYING" => SqlType::VarBinary(len(30, 8000)?),
            "BLOB" => SqlType::VarBinary(Len::Max),
            "IMAGE" => SqlType::Image,
            "ROWVERSION" | "TIMESTAMP" => SqlType::RowVersion,
            _ => return None,
        };
        Some(ty)
    }

    /// The lowercase type name of INFORMATION_SCHEMA.COLUMNS.DATA_TYPE.
    pub fn data_type(&self) -> &'static str {
        match self {
            SqlType::TinyInt => "tinyint",
            SqlType::SmallInt => "smallint",
            SqlType::Int => "int",
            SqlType::BigInt => "bigint",
            SqlType::Bit => "bit",
            SqlType::Decimal { numeric: true, .. } => "numeric",
            SqlType::Decimal { .. } => "decimal",
            SqlType::Money => "money",
            SqlType::SmallMoney => "smallmoney",
            SqlType::Float => "float",
            SqlType::Real => "real",
            SqlType::Char(_) => "char",
            SqlType::VarChar(_) => "varchar",
            SqlType::NChar(_) => "nchar",
            SqlType::NVarChar(_) => "nvarchar",
            SqlType::Text => "text",
            SqlType::NText => "ntext",
            SqlType::DateTime => "datetime",
            SqlType::SmallDateTime => "smalldatetime",
            SqlType::DateTime2(_) => "datetime2",
            SqlType::Date => "date",
            SqlType::Time(_) => "time",
            SqlType::DateTimeOffset(_) => "datetimeoffset",
            SqlType::UniqueIdentifier => "uniqueidentifier",
            SqlType::Binary(_) => "binary",
            SqlType::VarBinary(_) => "varbinary",
            SqlType::Image => "image",
            SqlType::RowVersion => "timestamp",
        }
    }

    /// CHARACTER_MAXIMUM_LENGTH: characters (bytes for binary), -1 for MAX.
    pub fn char_max_len(&self) -> Option<i64> {
        let len = |l: &Len| match l {
            Len::N(n) => i64::from(*n),
            Len::Max => -1,
        };
        match self {
            SqlType::Char(n) | SqlType::NChar(n) | SqlType::Binary(n) => Some(i64::from(*n)),
            SqlType::VarChar(l) | SqlType::NVarChar(l) | SqlType::VarBinary(l) => Some(len(l)),
            SqlType::Text | SqlType::Image => Some(2_147_483_647),
            SqlType::NText => Some(1_073_741_823),
            _ => None,
        }
    }

    /// CHARACTER_OCTET_LENGTH.
    pub fn octet_len(&self) -> Option<i64> {
        match self {
            SqlType::NChar(n) => Some(2 * i64::from(*n)),
            SqlType::NVarChar(Len::N(n)) => Some(2 * i64::from(*n)),
            SqlType::NText => Some(2_147_483_646),
            other => other.char_max_len(),
        }
    }

    /// NUMERIC_PRECISION and NUMERIC_SCALE.
    pub fn numeric_precision_scale(&self) -> (Option<i64>, Option<i64>) {
        match self {
            SqlType::TinyInt => (Some(3), Some(0)),
            SqlType::SmallInt => (Some(5), Some(0)),
            SqlType::Int => (Some(10), Some(0)),
            SqlType::BigInt => (Some(19), Some(0)),
            SqlType::Decimal {
                precision, scale, ..
            } => (Some(i64::from(*precision)), Some(i64::from(*scale))),
            SqlType::Money => (Some(19), Some(4)),
            SqlType::SmallMoney => (Some(10), Some(4)),
            SqlType::Float => (Some(53), None),
            SqlType::Real => (Some(24), None),
            _ => (None, None),
        }
    }

    /// DATETIME_PRECISION.
    pub fn datetime_precision(&self) -> Option<i64> {
        match self {
            SqlType::DateTime => Some(3),
            SqlType::SmallDateTime | SqlType::Date => Some(0),
            SqlType::DateTime2(s) | SqlType::Time(s) | SqlType::DateTimeOffset(s) => {
                Some(i64::from(*s))
            }
            _ => None,
        }
    }

    /// True for the character types (their comparisons use the server collation).
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            SqlType::Char(_)
                | SqlType::VarChar(_)
                | SqlType::NChar(_)
                | SqlType::NVarChar(_)
                | SqlType::Text
                | SqlType::NText
        )
    }

    /// The type of an expression column, from the values SQLite produced for it.
    pub fn infer<'a>(values: impl Iterator<Item = &'a Value>) -> SqlType {
        let (mut ints, mut big, mut reals, mut texts, mut blobs) =
            (false, false, false, false, false);
        let (mut text_len, mut blob_len) = (0usize, 0usize);
        for v in values {
            match v {
                Value::Null => {}
                Value::Integer(i) => {
                    ints = true;
                    big |= i32::try_from(*i).is_err();
                }
                Value::Real(_) => reals = true,
                Value::Text(t) => {
                    texts = true;
                    text_len = text_len.max(t.encode_utf16().count());
                }
                Value::Blob(b) => {
                    blobs = true;
                    blob_len = blob_len.max(b.len());
                }
            }
        }
        if texts {
            SqlType::NVarChar(if text_len > 4000 {
                Len::Max
            } else {
                Len::N(4000)
            })
        } else if blobs {
            SqlType::VarBinary(if blob_len > 8000 {
                Len::Max
            } else {
                Len::N(8000)
            })
        } else if reals {
            SqlType::Float
        } else if ints && big {
            SqlType::BigInt
        } else {
            SqlType::Int
        }
    }

    /// The user type of COLMETADATA.
    pub fn user_type(&self) -> u32 {
        if *self == SqlType::RowVersion {
            USER_TYPE_TIMESTAMP
        } else {
            0
        }
    }

    /// Whether a NOT NULL column of this type is sent with a fixed-length type (SQL Server
    /// does so for the int family, bit, money, float and datetime).
    fn has_fixed_form(&self) -> bool {
        matches!(
            self,
            SqlType::TinyInt
                | SqlType::SmallInt
                | SqlType::Int
                | SqlType::BigInt
                | SqlType::Bit
                | SqlType::Money
                | SqlType::SmallMoney
                | SqlType::Float
                | SqlType::Real
                | SqlType::DateTime
                | SqlType::SmallDateTime
        )
    }

    /// Appends the TYPE_INFO of a result column.
    pub fn encode_type_info(&self, nullable: bool, out: &mut Vec<u8>) {
        let fixed = !nullable && self.has_fixed_form();
        let u16_len = |out: &mut Vec<u8>, l: &Len, unit: u16| match l {
            Len::N(n) => out.extend_from_slice(&(n * unit).to_le_bytes()),
            Len::Max => out.extend_from_slice(&0xFFFFu16.to_le_bytes()),
        };
        match self {
            SqlType::TinyInt if fixed => out.push(0x30),
            SqlType::SmallInt if fixed => out.push(0x34),
            SqlType::Int if fixed => out.push(0x38),
            SqlType::BigInt if fixed => out.push(0x7F),
            SqlType::TinyInt => out.extend_from_slice(&[0x26, 1]),
            SqlType::SmallInt => out.extend_from_slice(&[0x26, 2]),
            SqlType::Int => out.extend_from_slice(&[0x26, 4]),
            SqlType::BigInt => out.extend_from_slice(&[0x26, 8]),
            SqlType::Bit if fixed => out.push(0x32),
            SqlType::Bit => out.extend_from_slice(&[0x68, 1]),
            SqlType::Decimal {
                precision,
                scale,
                numeric,
            } => out.extend_from_slice(&[
                if *numeric { 0x6C } else { 0x6A },
                decimal_len(*precision),
                *precision,
                *scale,
            ]),
            SqlType::Money if fixed => out.push(0x3C),
            SqlType::SmallMoney if fixed => out.push(0x7A),
            SqlType::Money => out.extend_from_slice(&[0x6E, 8]),
            SqlType::SmallMoney => out.extend_from_slice(&[0x6E, 4]),
            SqlType::Float if fixed => out.push(0x3E),
            SqlType::Real if fixed => out.push(0x3B),
            SqlType::Float => out.extend_from_slice(&[0x6D, 8]),
            SqlType::Real => out.extend_from_slice(&[0x6D, 4]),
            SqlType::Char(n) => {
                out.push(0xAF);
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&COLLATION);
            }
            SqlType::VarChar(l) => {
                out.push(0xA7);
                u16_len(out, l, 1);
                out.extend_from_slice(&COLLATION);
            }
            SqlType::NChar(n) => {
                out.push(0xEF);
                out.extend_from_slice(&(n * 2).to_le_bytes());
                out.extend_from_slice(&COLLATION);
            }
            SqlType::NVarChar(l) => {
                out.push(0xE7);
                u16_len(out, l, 2);
                out.extend_from_slice(&COLLATION);
            }
            SqlType::Text | SqlType::NText => {
                let (ty, len) = if *self == SqlType::Text {
                    (0x23, 2_147_483_647u32)
                } else {
                    (0x63, 2_147_483_646u32)
                };
                out.push(ty);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&COLLATION);
                out.push(0); // no table name parts
            }
            SqlType::Image => {
                out.push(0x22);
                out.extend_from_slice(&2_147_483_647u32.to_le_bytes());
                out.push(0);
            }
            SqlType::DateTime if fixed => out.push(0x3D),
            SqlType::SmallDateTime if fixed => out.push(0x3A),
            SqlType::DateTime => out.extend_from_slice(&[0x6F, 8]),
            SqlType::SmallDateTime => out.extend_from_slice(&[0x6F, 4]),
            SqlType::DateTime2(s) => out.extend_from_slice(&[0x2A, *s]),
            SqlType::Date => out.push(0x28),
            SqlType::Time(s) => out.extend_from_slice(&[0x29, *s]),
            SqlType::DateTimeOffset(s) => out.extend_from_slice(&[0x2B, *s]),
            SqlType::UniqueIdentifier => out.extend_from_slice(&[0x24, 16]),
            SqlType::Binary(n) => {
                out.push(0xAD);
                out.extend_from_slice(&n.to_le_bytes());
            }
            SqlType::VarBinary(l) => {
                out.push(0xA5);
                u16_len(out, l, 1);
            }
            SqlType::RowVersion => {
                out.push(0xAD);
                out.extend_from_slice(&8u16.to_le_bytes());
            }
        }
    }

    /// Appends the wire form of one value of a result column (as TYPE_INFO announced it).
    pub fn encode_value(
        &self,
        nullable: bool,
        v: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), SqlError> {
        let fixed = !nullable && self.has_fixed_form();
        if matches!(v, Value::Null) {
            if fixed {
                // Should not happen: columns holding NULL are announced as nullable.
                return Err(SqlError::new(515, "NULL in a column announced as NOT NULL"));
            }
            self.encode_null(out);
            return Ok(());
        }
        let len_prefix = |out: &mut Vec<u8>, n: u8| {
            if !fixed {
                out.push(n);
            }
        };
        match self {
            SqlType::TinyInt => {
                let i = self.int_in_range(v, 0, 255)?;
                len_prefix(out, 1);
                out.push(i as u8);
            }
            SqlType::SmallInt => {
                let i = self.int_in_range(v, i64::from(i16::MIN), i64::from(i16::MAX))?;
                len_prefix(out, 2);
                out.extend_from_slice(&(i as i16).to_le_bytes());
            }
            SqlType::Int => {
                let i = self.int_in_range(v, i64::from(i32::MIN), i64::from(i32::MAX))?;
                len_prefix(out, 4);
                out.extend_from_slice(&(i as i32).to_le_bytes());
            }
            SqlType::BigInt => {
                let i = self.int_in_range(v, i64::MIN, i64::MAX)?;
                len_prefix(out, 8);
                out.extend_from_slice(&i.to_le_bytes());
            }
            SqlType::Bit => {
                let b = match v {
                    Value::Integer(i) => *i != 0,
                    Value::Real(r) => *r != 0.0,
                    Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(conversion(v, self)),
                    },
                    _ => return Err(conversion(v, self)),
                };
                len_prefix(out, 1);
                out.push(u8::from(b));
            }
            SqlType::Decimal {
                precision, scale, ..
            } => {
                let d = to_decimal(v).ok_or_else(|| conversion(v, self))?;
                let mantissa = scaled_mantissa(d, *scale);
                if digits(mantissa.unsigned_abs()) > u32::from(*precision) {
                    return Err(overflow(self));
                }
                let len = decimal_len(*precision);
                out.push(len);
                out.push(u8::from(mantissa >= 0));
                let magnitude = mantissa.unsigned_abs().to_le_bytes();
                out.extend_from_slice(&magnitude[..usize::from(len - 1)]);
            }
            SqlType::Money | SqlType::SmallMoney => {
                let d = to_decimal(v).ok_or_else(|| conversion(v, self))?;
                let scaled = scaled_mantissa(d, 4);
                if *self == SqlType::SmallMoney {
                    let s = i32::try_from(scaled).map_err(|_| overflow(self))?;
                    len_prefix(out, 4);
                    out.extend_from_slice(&s.to_le_bytes());
                } else {
                    let s = i64::try_from(scaled).map_err(|_| overflow(self))?;
                    len_prefix(out, 8);
                    out.extend_from_slice(&((s >> 32) as i32).to_le_bytes());
                    out.extend_from_slice(&(s as u32).to_le_bytes());
                }
            }
            SqlType::Float | SqlType::Real => {
                let f = match v {
                    Value::Integer(i) => *i as f64,
                    Value::Real(r) => *r,
                    Value::Text(t) => t.trim().parse().map_err(|_| conversion(v, self))?,
                    _ => return Err(conversion(v, self)),
                };
                if *self == SqlType::Real {
                    len_prefix(out, 4);
                    out.extend_from_slice(&(f as f32).to_le_bytes());
                } else {
                    len_prefix(out, 8);
                    out.extend_from_slice(&f.to_le_bytes());
                }
            }
            SqlType::Char(_) | SqlType::VarChar(_) | SqlType::Text => {
                let mut s = to_text(v);
                if let SqlType::Char(n) = self {
                    pad(&mut s, usize::from(*n));
                }
                let bytes = encode_cp1252(&s);
                self.put_var_bytes(&bytes, out)?;
            }
            SqlType::NChar(_) | SqlType::NVarChar(_) | SqlType::NText => {
                let mut s = to_text(v);
                if let SqlType::NChar(n) = self {
                    pad(&mut s, usize::from(*n));
                }
                let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
                self.put_var_bytes(&bytes, out)?;
            }
            SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image | SqlType::RowVersion => {
                let mut bytes = match v {
                    Value::Blob(b) => b.clone(),
                    Value::Text(t) => t.as_bytes().to_vec(),
                    Value::Integer(i) => i.to_be_bytes().to_vec(),
                    _ => return Err(conversion(v, self)),
                };
                match self {
                    SqlType::Binary(n) => bytes.resize(usize::from(*n), 0),
                    SqlType::RowVersion => {
                        if bytes.len() < 8 {
                            let mut padded = vec![0; 8 - bytes.len()];
                            padded.extend_from_slice(&bytes);
                            bytes = padded;
                        }
                        bytes.truncate(8);
                    }
                    _ => {}
                }
                self.put_var_bytes(&bytes, out)?;
            }
            SqlType::UniqueIdentifier => {
                let bytes = match v {
                    Value::Text(t) => parse_guid(t).ok_or_else(|| conversion(v, self))?,
                    Value::Blob(b) if b.len() == 16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        a
                    }
                    _ => return Err(conversion(v, self)),
                };
                out.push(16);
                out.extend_from_slice(&guid_to_wire(bytes));
            }
            SqlType::DateTime
            | SqlType::SmallDateTime
            | SqlType::DateTime2(_)
            | SqlType::Date
            | SqlType::Time(_)
            | SqlType::DateTimeOffset(_) => {
                let Value::Text(t) = v else {
                    return Err(conversion(v, self));
                };
                let parsed = Moment::parse(t).ok_or_else(|| conversion(v, self))?;
                self.encode_moment(fixed, parsed, out)?;
            }
        }
        Ok(())
    }

    /// Converts a value written to a column of this type into its storage form, as SQL Server
    /// converts on INSERT and UPDATE: integers range-checked, decimals rounded to their scale,
    /// strings and binaries checked against their length (CHAR padding is added on read),
    /// GUIDs in canonical text, date/time values rounded to the type's precision.
    pub fn normalize(&self, v: Value) -> Result<Value, SqlError> {
        if matches!(v, Value::Null) {
            return Ok(v);
        }
        let truncated = |what: &str| {
            SqlError::new(
                2628,
                format!(
                    "String or binary data would be truncated ({what} longer than {}).",
                    self.data_type()
                ),
            )
        };
        Ok(match self {
            SqlType::TinyInt => Value::Integer(self.int_in_range(&v, 0, 255)?),
            SqlType::SmallInt => {
                Value::Integer(self.int_in_range(&v, i64::from(i16::MIN), i64::from(i16::MAX))?)
            }
            SqlType::Int => {
                Value::Integer(self.int_in_range(&v, i64::from(i32::MIN), i64::from(i32::MAX))?)
            }
            SqlType::BigInt => Value::Integer(self.int_in_range(&v, i64::MIN, i64::MAX)?),
            SqlType::Bit => {
                let mut out = Vec::new();
                self.encode_value(true, &v, &mut out)?;
                Value::Integer(i64::from(out.last().copied().unwrap_or(0)))
            }
            SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney => {
                let scale = match self {
                    SqlType::Decimal { scale, .. } => *scale,
                    _ => 4,
                };
                // range and precision checks are the encoder's
                self.encode_value(true, &v, &mut Vec::new())?;
                let d = to_decimal(&v).ok_or_else(|| conversion(&v, self))?;
                let m = scaled_mantissa(d, scale);
                super::rpc::decimal_value(m >= 0, m.unsigned_abs(), scale)
            }
            SqlType::Float | SqlType::Real => {
                let mut out = Vec::new();
                self.encode_value(false, &v, &mut out)?;
                Value::Real(if *self == SqlType::Real {
                    f64::from(f32::from_le_bytes([out[0], out[1], out[2], out[3]]))
                } else {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&out[..8]);
                    f64::from_le_bytes(a)
                })
            }
            SqlType::Char(n)
            | SqlType::NChar(n)
            | SqlType::VarChar(Len::N(n))
            | SqlType::NVarChar(Len::N(n)) => {
                let s = to_text(&v);
                let n = usize::from(*n);
                if s.chars().count() <= n {
                    Value::Text(s)
                } else if s.trim_end_matches(' ').chars().count() <= n {
                    Value::Text(s.chars().take(n).collect())
                } else {
                    return Err(truncated("a string"));
                }
            }
            SqlType::VarChar(Len::Max)
            | SqlType::NVarChar(Len::Max)
            | SqlType::Text
            | SqlType::NText => Value::Text(to_text(&v)),
            SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image => {
                let mut bytes = match v {
                    Value::Blob(b) => b,
                    Value::Text(t) => t.into_bytes(),
                    Value::Integer(i) => i.to_be_bytes().to_vec(),
                    other => return Err(conversion(&other, self)),
                };
                match self {
                    SqlType::Binary(n) | SqlType::VarBinary(Len::N(n))
                        if bytes.len() > usize::from(*n) =>
                    {
                        return Err(truncated("binary data"));
                    }
                    SqlType::Binary(n) => bytes.resize(usize::from(*n), 0),
                    _ => {}
                }
                Value::Blob(bytes)
            }
            SqlType::RowVersion => v,
            SqlType::UniqueIdentifier => {
                let bytes = match &v {
                    Value::Text(t) => parse_guid(t),
                    Value::Blob(b) if b.len() == 16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        Some(a)
                    }
                    _ => None,
                };
                let bytes = bytes.ok_or_else(|| {
                    SqlError::new(8169, "Conversion failed when converting from a character string to uniqueidentifier.")
                })?;
                Value::Text(guid_text(bytes))
            }
            SqlType::DateTime
            | SqlType::SmallDateTime
            | SqlType::DateTime2(_)
            | SqlType::Date
            | SqlType::Time(_)
            | SqlType::DateTimeOffset(_) => {
                let m = match &v {
                    Value::Text(t) => Moment::parse(t),
                    _ => None,
                }
                .ok_or_else(|| {
                    SqlError::new(
                        241,
                        "Conversion failed when converting date and/or time from character string.",
                    )
                })?;
                // range checks are the encoder's
                self.encode_moment(false, m, &mut Vec::new())?;
                Value::Text(m.rounded(self).format(self))
            }
        })
    }

    fn encode_null(&self, out: &mut Vec<u8>) {
        match self {
            SqlType::Char(_)
            | SqlType::NChar(_)
            | SqlType::Binary(_)
            | SqlType::RowVersion
            | SqlType::VarChar(Len::N(_))
            | SqlType::NVarChar(Len::N(_))
            | SqlType::VarBinary(Len::N(_)) => out.extend_from_slice(&0xFFFFu16.to_le_bytes()),
            SqlType::VarChar(Len::Max)
            | SqlType::NVarChar(Len::Max)
            | SqlType::VarBinary(Len::Max) => out.extend_from_slice(&u64::MAX.to_le_bytes()),
            _ => out.push(0),
        }
    }

    /// The bytes a NULL takes in a ROW token (saved when it is sent in an NBCROW instead).
    pub fn null_size(&self) -> usize {
        let mut v = Vec::new();
        self.encode_null(&mut v);
        v.len()
    }

    fn put_var_bytes(&self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), SqlError> {
        match self {
            SqlType::Text | SqlType::NText | SqlType::Image => {
                out.push(16);
                out.extend_from_slice(&[0xAA; 16]); // text pointer
                out.extend_from_slice(&[0; 8]); // timestamp
                let len = u32::try_from(bytes.len()).map_err(|_| overflow(self))?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            SqlType::VarChar(Len::Max)
            | SqlType::NVarChar(Len::Max)
            | SqlType::VarBinary(Len::Max) => {
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                for chunk in bytes.chunks(8000) {
                    out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                    out.extend_from_slice(chunk);
                }
                out.extend_from_slice(&0u32.to_le_bytes());
            }
            _ => {
                let len = u16::try_from(bytes.len())
                    .ok()
                    .filter(|l| *l < 0xFFFF)
                    .ok_or_else(|| {
                        SqlError::new(
                            2628,
                            format!(
                                "String or binary data would be truncated ({} bytes).",
                                bytes.len()
                            ),
                        )
                    })?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        Ok(())
    }

    fn int_in_range(&self, v: &Value, min: i64, max: i64) -> Result<i64, SqlError> {
        let i = match v {
            Value::Integer(i) => *i,
            Value::Real(r) if r.is_finite() && *r >= min as f64 && *r <= max as f64 => {
                r.trunc() as i64
            }
            Value::Real(_) => return Err(overflow(self)),
            Value::Text(t) => t.trim().parse().map_err(|_| conversion(v, self))?,
            Value::Blob(b) if b.len() <= 8 => {
                let mut a = [0u8; 8];
                a[8 - b.len()..].copy_from_slice(b);
                i64::from_be_bytes(a)
            }
            _ => return Err(conversion(v, self)),
        };
        if i < min || i > max {
            return Err(overflow(self));
        }
        Ok(i)
    }

    fn encode_moment(&self, fixed: bool, m: Moment, out: &mut Vec<u8>) -> Result<(), SqlError> {
        let range = || {
            SqlError::new(
                242,
                format!(
                    "The conversion of a nvarchar data type to a {} data type resulted in an out-of-range value.",
                    self.data_type()
                ),
            )
        };
        match self {
            SqlType::DateTime => {
                let (days, ticks) = m.datetime_ticks();
                let days = i32::try_from(days - DAYS_TO_1900).map_err(|_| range())?;
                if !fixed {
                    out.push(8);
                }
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&ticks.to_le_bytes());
            }
            SqlType::SmallDateTime => {
                let (days, minutes) = m.small_minutes();
                let days = u16::try_from(days - DAYS_TO_1900).map_err(|_| range())?;
                if !fixed {
                    out.push(4);
                }
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&minutes.to_le_bytes());
            }
            SqlType::Date => {
                out.push(3);
                put_days(m.days, out).map_err(|_| range())?;
            }
            SqlType::Time(s) => {
                let (_, inc) = m.increments(*s);
                let tl = time_len(*s);
                out.push(tl);
                out.extend_from_slice(&inc.to_le_bytes()[..usize::from(tl)]);
            }
            SqlType::DateTime2(s) => {
                let (days, inc) = m.increments(*s);
                let tl = time_len(*s);
                out.push(tl + 3);
                out.extend_from_slice(&inc.to_le_bytes()[..usize::from(tl)]);
                put_days(days, out).map_err(|_| range())?;
            }
            SqlType::DateTimeOffset(s) => {
                let offset = m.offset_minutes.unwrap_or(0);
                let utc = m.shifted(-i64::from(offset));
                let (days, inc) = utc.increments(*s);
                let tl = time_len(*s);
                out.push(tl + 5);
                out.extend_from_slice(&inc.to_le_bytes()[..usize::from(tl)]);
                put_days(days, out).map_err(|_| range())?;
                out.extend_from_slice(&offset.to_le_bytes());
            }
            _ => {
                return Err(SqlError::new(
                    245,
                    format!("{} is not a date/time type", self.data_type()),
                ));
            }
        }
        Ok(())
    }
}

/// Bytes of a decimal value for a precision (MS-TDS 2.2.5.5.1.6).
fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// Bytes of a time value for a fractional-second scale.
pub fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn put_days(days: i64, out: &mut Vec<u8>) -> Result<(), ()> {
    let d = u32::try_from(days).map_err(|_| ())?;
    if d >= 1 << 24 {
        return Err(());
    }
    out.extend_from_slice(&d.to_le_bytes()[..3]);
    Ok(())
}

fn digits(mut n: u128) -> u32 {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn conversion(v: &Value, ty: &SqlType) -> SqlError {
    let shown = match v {
        Value::Text(t) => t.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Blob(b) => format!("0x{}", hex::encode_upper(b)),
        Value::Null => "NULL".into(),
    };
    SqlError::new(
        245,
        format!(
            "Conversion failed when converting the value '{shown}' to data type {}.",
            ty.data_type()
        ),
    )
}

fn overflow(ty: &SqlType) -> SqlError {
    SqlError::new(
        8115,
        format!(
            "Arithmetic overflow error converting expression to data type {}.",
            ty.data_type()
        ),
    )
}

/// The text of any SQLite value (strings of non-text columns read back as text).
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn pad(s: &mut String, chars: usize) {
    let have = s.chars().count();
    if have < chars {
        s.extend(std::iter::repeat_n(' ', chars - have));
    }
}

/// Windows-1252 bytes of `s`; characters it cannot hold become `?` like SQL Server's.
pub fn encode_cp1252(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for ch in s.chars() {
        let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(ch.encode_utf8(&mut buf));
        if unmappable {
            out.push(b'?');
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    out
}

/// A decimal from a stored number or text.
pub fn to_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Real(r) if r.is_finite() => r.to_string().parse().ok(),
        Value::Text(t) => {
            let t = t.trim();
            t.parse().ok().or_else(|| Decimal::from_scientific(t).ok())
        }
        _ => None,
    }
}

/// The mantissa of `d` rounded (half away from zero) to `scale` digits.
fn scaled_mantissa(d: Decimal, scale: u8) -> i128 {
    let mut r = d.round_dp_with_strategy(u32::from(scale), RoundingStrategy::MidpointAwayFromZero);
    r.rescale(u32::from(scale));
    r.mantissa()
}

/// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (braces and case optional) into RFC bytes.
pub fn parse_guid(t: &str) -> Option<[u8; 16]> {
    let hex: String = t
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let bytes = hex::decode(hex).ok()?;
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes);
    Some(a)
}

/// RFC byte order <-> SQL Server's (first three groups little-endian); its own inverse.
pub fn guid_to_wire(mut b: [u8; 16]) -> [u8; 16] {
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// The storage text of a GUID given in RFC byte order.
pub fn guid_text(b: [u8; 16]) -> String {
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A point in time as the harness stores it: days since 0001-01-01, nanoseconds of the day,
/// and an optional UTC offset in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub days: i64,
    pub nanos: u64,
    pub offset_minutes: Option<i16>,
}

impl Moment {
    /// Parses `[YYYY-MM-DD][( |T)HH:MM[:SS[.f...]]][ ][Z|+HH:MM|-HH:MM]`; a time alone is on
    /// 1900-01-01 like SQL Server's conversions.
    pub fn parse(text: &str) -> Option<Moment> {
        let t = text.trim();
        let (date_part, rest) = match (t.get(..10), t.get(10..)) {
            (Some(date), Some(rest)) if date.as_bytes().get(4) == Some(&b'-') => {
                (date, rest.trim_start_matches(['T', ' ']))
            }
            _ => ("1900-01-01", t),
        };
        let date = NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()?;
        let days = i64::from(date.num_days_from_ce()) - 1;
        let (time_part, offset_part) = match rest.find(['+', 'Z']).or_else(|| {
            // a '-' after the time is an offset sign
            rest.char_indices()
                .skip(1)
                .find(|(_, c)| *c == '-')
                .map(|(i, _)| i)
        }) {
            Some(i) => (rest[..i].trim(), Some(rest[i..].trim())),
            None => (rest.trim(), None),
        };
        let nanos = if time_part.is_empty() {
            0
        } else {
            parse_time(time_part)?
        };
        let offset_minutes = match offset_part {
            None => None,
            Some("Z") => Some(0),
            Some(o) => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let (h, m) = o.get(1..)?.split_once(':')?;
                let minutes = h.parse::<i16>().ok()? * 60 + m.parse::<i16>().ok()?;
                if minutes > 14 * 60 {
                    return None;
                }
                Some(sign * minutes)
            }
        };
        Some(Moment {
            days,
            nanos,
            offset_minutes,
        })
    }

    fn shifted(self, minutes: i64) -> Moment {
        let total = self.days as i128 * NANOS_PER_DAY as i128
            + self.nanos as i128
            + minutes as i128 * 60_000_000_000;
        Moment {
            days: total.div_euclid(NANOS_PER_DAY as i128) as i64,
            nanos: total.rem_euclid(NANOS_PER_DAY as i128) as u64,
            offset_minutes: self.offset_minutes,
        }
    }

    /// Days and increments of 10^-scale seconds, rounded half up (carrying into the next day).
    fn increments(&self, scale: u8) -> (i64, u64) {
        let unit = 10u64.pow(9 - u32::from(scale));
        let inc = (self.nanos + unit / 2) / unit;
        let per_day = NANOS_PER_DAY / unit;
        if inc >= per_day {
            (self.days + 1, inc - per_day)
        } else {
            (self.days, inc)
        }
    }

    /// Days and 1/300-second ticks of `datetime`.
    fn datetime_ticks(&self) -> (i64, u32) {
        let ticks = (self.nanos * 3 + 5_000_000) / 10_000_000;
        if ticks >= 300 * 86_400 {
            (self.days + 1, (ticks - 300 * 86_400) as u32)
        } else {
            (self.days, ticks as u32)
        }
    }

    /// Days and minutes of `smalldatetime` (rounded to the nearest minute).
    fn small_minutes(&self) -> (i64, u16) {
        let minutes = (self.nanos + 30_000_000_000) / 60_000_000_000;
        if minutes >= 1440 {
            (self.days + 1, (minutes - 1440) as u16)
        } else {
            (self.days, minutes as u16)
        }
    }

    /// The moment rounded to the precision of `ty`.
    fn rounded(&self, ty: &SqlType) -> Moment {
        let (days, nanos) = match ty {
            SqlType::DateTime => {
                let (days, ticks) = self.datetime_ticks();
                (days, (u64::from(ticks) * 10 + 1) / 3 * 1_000_000)
            }
            SqlType::SmallDateTime => {
                let (days, minutes) = self.small_minutes();
                (days, u64::from(minutes) * 60_000_000_000)
            }
            SqlType::Date => (self.days, 0),
            SqlType::DateTime2(s) | SqlType::Time(s) | SqlType::DateTimeOffset(s) => {
                let (days, inc) = self.increments(*s);
                (days, inc * 10u64.pow(9 - u32::from(*s)))
            }
            _ => (self.days, self.nanos),
        };
        let days = if matches!(ty, SqlType::Time(_)) {
            self.days
        } else {
            days
        };
        Moment {
            days,
            nanos: nanos % NANOS_PER_DAY,
            offset_minutes: self.offset_minutes,
        }
    }

    /// The storage text for a value of type `ty` (fraction trimmed of trailing zeros).
    pub fn format(&self, ty: &SqlType) -> String {
        let date = || {
            NaiveDate::from_num_days_from_ce_opt((self.days + 1) as i32)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        };
        let time = |nanos: u64, max_digits: usize| {
            let secs = nanos / 1_000_000_000;
            let frac = nanos % 1_000_000_000;
            let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
            let digits = format!("{frac:09}");
            let digits = digits[..max_digits.min(9)].trim_end_matches('0');
            if !digits.is_empty() {
                s.push('.');
                s.push_str(digits);
            }
            s
        };
        match ty {
            SqlType::Date => date(),
            SqlType::Time(_) => time(self.nanos, 9),
            SqlType::DateTime => format!("{} {}", date(), time(self.nanos, 3)),
            SqlType::SmallDateTime => format!("{} {}", date(), time(self.nanos, 0)),
            SqlType::DateTimeOffset(_) => {
                let o = self.offset_minutes.unwrap_or(0);
                let sign = if o < 0 { '-' } else { '+' };
                format!(
                    "{} {} {sign}{:02}:{:02}",
                    date(),
                    time(self.nanos, 9),
                    o.unsigned_abs() / 60,
                    o.unsigned_abs() % 60
                )
            }
            _ => format!("{} {}", date(), time(self.nanos, 9)),
        }
    }

    /// A moment from `datetime` wire parts.
    pub fn from_datetime(days_since_1900: i64, ticks: u64) -> Moment {
        // ticks are 1/300 s; keep the millisecond SQL Server shows (…0, …3, …7)
        let millis = (ticks * 10 + 1) / 3;
        Moment {
            days: DAYS_TO_1900 + days_since_1900,
            nanos: millis * 1_000_000,
            offset_minutes: None,
        }
    }

    /// A moment from `smalldatetime` wire parts.
    pub fn from_small(days_since_1900: i64, minutes: u64) -> Moment {
        Moment {
            days: DAYS_TO_1900 + days_since_1900,
            nanos: minutes * 60_000_000_000,
            offset_minutes: None,
        }
    }

    /// A moment from a date (days since 0001-01-01) and time increments at `scale`.
    pub fn from_parts(days: i64, increments: u64, scale: u8) -> Moment {
        Moment {
            days,
            nanos: increments * 10u64.pow(9 - u32::from(scale.min(9))),
            offset_minutes: None,
        }
    }

    /// The local moment of a UTC one at `offset` minutes.
    pub fn with_offset(self, offset: i16) -> Moment {
        let mut local = self.shifted(i64::from(offset));
        local.offset_minutes = Some(offset);
        local
    }
}

fn parse_time(t: &str) -> Option<u64> {
    let mut parts = t.splitn(3, ':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let (s, frac) = match parts.next() {
        None => (0, 0),
        Some(sec) => {
            let (s, f) = sec.split_once('.').unwrap_or((sec, ""));
            let s: u64 = s.parse().ok()?;
            if f.len() > 9 || !f.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let frac = if f.is_empty() {
                0
            } else {
                format!("{f:0<9}").parse().ok()?
            };
            (s, frac)
        }
    };
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(((h * 60 + m) * 60 + s) * 1_000_000_000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_declared_types() {
        assert_eq!(SqlType::parse("NCHAR(10)"), Some(SqlType::NChar(10)));
        assert_eq!(
            SqlType::parse("decimal(12, 4)"),
            Some(SqlType::Decimal {
                precision: 12,
                scale: 4,
                numeric: false
            })
        );
        assert_eq!(
            SqlType::parse("nvarchar(max)"),
            Some(SqlType::NVarChar(Len::Max))
        );
        assert_eq!(
            SqlType::parse("VARBINARY(-1)"),
            Some(SqlType::VarBinary(Len::Max))
        );
        assert_eq!(SqlType::parse("DATETIME2(3)"), Some(SqlType::DateTime2(3)));
        assert_eq!(SqlType::parse("ROWVERSION"), Some(SqlType::RowVersion));
        assert_eq!(SqlType::parse("float(24)"), Some(SqlType::Real));
        assert_eq!(SqlType::parse("GEOGRAPHY"), None);
        assert_eq!(SqlType::parse("DECIMAL(40,2)"), None);
        assert_eq!(SqlType::parse("NVARCHAR(5000)"), None);
    }

    #[test]
    fn moments_round_trip_through_storage_text() {
        let m = Moment::parse("2024-02-29 23:59:59.1234567 -05:30").unwrap();
        assert_eq!(m.offset_minutes, Some(-330));
        assert_eq!(
            m.format(&SqlType::DateTimeOffset(7)),
            "2024-02-29 23:59:59.1234567 -05:30"
        );
        let d = Moment::parse("2024-01-02").unwrap();
        assert_eq!(d.format(&SqlType::DateTime2(7)), "2024-01-02 00:00:00");
        let t = Moment::parse("13:14:15.5").unwrap();
        assert_eq!(t.format(&SqlType::Time(7)), "13:14:15.5");
        // rounding carries into the next day
        let late = Moment::parse("2024-01-01 23:59:59.9999999").unwrap();
        assert_eq!(late.increments(0), (late.days + 1, 0));
        assert!(Moment::parse("2024-13-01").is_none());
        assert!(Moment::parse("25:00").is_none());
    }

    #[test]
    fn writes_are_converted_to_the_column_type() {
        let t = |s: &str| Value::Text(s.into());
        let dt2 = SqlType::DateTime2(3);
        assert_eq!(
            dt2.normalize(t("2024-01-02T03:04:05.1235")).unwrap(),
            t("2024-01-02 03:04:05.124")
        );
        assert_eq!(
            SqlType::DateTime
                .normalize(t("2024-01-02 03:04:05.123456"))
                .unwrap(),
            t("2024-01-02 03:04:05.123")
        );
        assert_eq!(
            SqlType::SmallDateTime
                .normalize(t("2024-01-02 03:04:31"))
                .unwrap(),
            t("2024-01-02 03:05:00")
        );
        assert_eq!(
            SqlType::Date.normalize(t("2024-01-02 03:04:05")).unwrap(),
            t("2024-01-02")
        );
        let dec = SqlType::parse("DECIMAL(5,2)").unwrap();
        assert_eq!(dec.normalize(t("1.005")).unwrap(), Value::Real(1.01));
        assert_eq!(
            dec.normalize(Value::Integer(1000)).unwrap_err().number,
            8115
        );
        assert_eq!(
            SqlType::TinyInt
                .normalize(Value::Integer(256))
                .unwrap_err()
                .number,
            8115
        );
        assert_eq!(SqlType::Int.normalize(t("x")).unwrap_err().number, 245);
        assert_eq!(
            SqlType::NVarChar(Len::N(3))
                .normalize(t("abcd"))
                .unwrap_err()
                .number,
            2628
        );
        assert_eq!(SqlType::NChar(3).normalize(t("ab    ")).unwrap(), t("ab "));
        assert_eq!(
            SqlType::Binary(3).normalize(Value::Blob(vec![1])).unwrap(),
            Value::Blob(vec![1, 0, 0])
        );
        assert_eq!(
            SqlType::UniqueIdentifier
                .normalize(t("{6f9619ff-8b86-d011-b42d-00c04fc964ff}"))
                .unwrap(),
            t("6F9619FF-8B86-D011-B42D-00C04FC964FF")
        );
        assert_eq!(
            SqlType::Date.normalize(t("yesterday")).unwrap_err().number,
            241
        );
        assert_eq!(
            SqlType::Bit.normalize(t("true")).unwrap(),
            Value::Integer(1)
        );
    }

    #[test]
    fn decimals_round_half_away_from_zero() {
        assert_eq!(scaled_mantissa("1.005".parse().unwrap(), 2), 101);
        assert_eq!(scaled_mantissa("-1.005".parse().unwrap(), 2), -101);
        assert_eq!(scaled_mantissa(Decimal::from(12), 4), 120_000);
    }
}
