//! RPC requests: `sp_executesql` called by procedure id 10 or by name, its statement, its
//! `@params` declarations and typed parameter values (TYPE_INFO + value, MS-TDS 2.2.6.6),
//! converted to the SQLite storage form the statement is bound with.

use rusqlite::types::Value;

use super::request::{Reader, skip_all_headers, utf16};
use super::sql::SqlError;
use super::types::{Len, Moment, SqlType, guid_text, guid_to_wire};

/// The procedure an RPC names.
#[derive(Debug)]
pub enum Proc {
    Id(u16),
    Name(String),
}

/// One RPC parameter as sent.
#[derive(Debug)]
pub struct RpcParam {
    pub name: String,
    /// `None` for a NULL sent with NULLTYPE (its type is in the declarations).
    pub ty: Option<SqlType>,
    pub value: Value,
}

/// A parsed RPC request.
#[derive(Debug)]
pub struct RpcCall {
    pub proc: Proc,
    pub params: Vec<RpcParam>,
}

/// A statement parameter, in declaration order (`@P1` is index 1).
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: Option<SqlType>,
    pub value: Value,
}

/// The statement and parameters of an `sp_executesql` call.
#[derive(Debug)]
pub struct ExecuteSql {
    pub sql: String,
    pub params: Vec<Param>,
}

const SP_EXECUTESQL: u16 = 10;

/// Parses an RPC request message (one RPC; batched RPCs are not supported).
pub fn parse(payload: &[u8]) -> Result<RpcCall, String> {
    let mut r = Reader::new(payload);
    skip_all_headers(&mut r)?;
    let name_len = r.u16()?;
    let proc = if name_len == 0xFFFF {
        Proc::Id(r.u16()?)
    } else {
        Proc::Name(r.utf16(usize::from(name_len))?)
    };
    let _options = r.u16()?;
    let mut params = Vec::new();
    while !r.is_empty() {
        let name = r.b_varchar()?;
        let _status = r.u8()?;
        let (ty, value) = read_typed_value(&mut r)?;
        params.push(RpcParam { name, ty, value });
    }
    Ok(RpcCall { proc, params })
}

/// Resolves a call of `sp_executesql` into its statement and ordered parameters.
pub fn executesql(call: RpcCall) -> Result<ExecuteSql, SqlError> {
    match &call.proc {
        Proc::Id(SP_EXECUTESQL) => {}
        Proc::Name(n) if is_executesql(n) => {}
        Proc::Id(other) => return Err(no_such_proc(&format!("procedure id {other}"))),
        Proc::Name(n) => return Err(no_such_proc(n)),
    }
    let mut it = call.params.into_iter();
    let sql = match it.next() {
        Some(RpcParam {
            value: Value::Text(t),
            ..
        }) => t,
        _ => {
            return Err(SqlError::new(
                214,
                "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.",
            ));
        }
    };
    let decls = match it.next() {
        None => Vec::new(),
        Some(RpcParam {
            value: Value::Text(t),
            ..
        }) => parse_declarations(&t)?,
        Some(RpcParam {
            value: Value::Null, ..
        }) => Vec::new(),
        Some(_) => {
            return Err(SqlError::new(
                214,
                "Procedure expects parameter '@params' of type 'ntext/nchar/nvarchar'.",
            ));
        }
    };
    let mut values: Vec<Option<RpcParam>> = decls.iter().map(|_| None).collect();
    for (position, p) in it.enumerate() {
        let slot = if p.name.is_empty() {
            position
        } else {
            decls
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(&p.name))
                .ok_or_else(|| {
                    SqlError::new(
                        8145,
                        format!("{} is not a parameter for procedure sp_executesql.", p.name),
                    )
                })?
        };
        let Some(target) = values.get_mut(slot) else {
            return Err(SqlError::new(
                8144,
                "Procedure or function sp_executesql has too many arguments specified.",
            ));
        };
        *target = Some(p);
    }
    let mut params = Vec::with_capacity(decls.len());
    for ((name, declared), value) in decls.into_iter().zip(values) {
        let Some(sent) = value else {
            return Err(SqlError::new(
                8178,
                format!(
                    "The parameterized query expects the parameter '{name}', which was not supplied."
                ),
            ));
        };
        params.push(Param {
            name,
            ty: declared.or(sent.ty),
            value: sent.value,
        });
    }
    Ok(ExecuteSql { sql, params })
}

fn is_executesql(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.trim_matches(['[', ']'])
        .eq_ignore_ascii_case("sp_executesql")
}

fn no_such_proc(name: &str) -> SqlError {
    SqlError::new(2812, format!("Could not find stored procedure '{name}'."))
}

/// Parses `@P1 int,@P2 nvarchar(4000) OUTPUT` into names and (known) types.
pub fn parse_declarations(text: &str) -> Result<Vec<(String, Option<SqlType>)>, SqlError> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    let mut parts = Vec::new();
    for ch in text.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    for part in parts {
        let part = part.trim();
        let (name, ty) = part
            .split_once(char::is_whitespace)
            .ok_or_else(|| SqlError::syntax(part))?;
        if !name.starts_with('@') {
            return Err(SqlError::syntax(name));
        }
        let mut ty = ty.trim();
        for suffix in [" OUTPUT", " OUT", " output", " out"] {
            if let Some(stripped) = ty.strip_suffix(suffix) {
                ty = stripped.trim();
            }
        }
        out.push((name.to_owned(), SqlType::parse(ty)));
    }
    Ok(out)
}

/// Reads TYPE_INFO and the value that follows it.
fn read_typed_value(r: &mut Reader<'_>) -> Result<(Option<SqlType>, Value), String> {
    let ty = r.u8()?;
    let fixed =
        |r: &mut Reader<'_>, n: usize| -> Result<Vec<u8>, String> { Ok(r.bytes(n)?.to_vec()) };
    let out = match ty {
        0x1F => (None, Value::Null),
        0x30 => (Some(SqlType::TinyInt), int(&fixed(r, 1)?)),
        0x32 => (Some(SqlType::Bit), int(&fixed(r, 1)?)),
        0x34 => (Some(SqlType::SmallInt), int(&fixed(r, 2)?)),
        0x38 => (Some(SqlType::Int), int(&fixed(r, 4)?)),
        0x7F => (Some(SqlType::BigInt), int(&fixed(r, 8)?)),
        0x3B => (Some(SqlType::Real), float(&fixed(r, 4)?)),
        0x3E => (Some(SqlType::Float), float(&fixed(r, 8)?)),
        0x3C => (Some(SqlType::Money), money(&fixed(r, 8)?)),
        0x7A => (Some(SqlType::SmallMoney), money(&fixed(r, 4)?)),
        0x3D => (
            Some(SqlType::DateTime),
            datetimen(&fixed(r, 8)?, &SqlType::DateTime),
        ),
        0x3A => (
            Some(SqlType::SmallDateTime),
            datetimen(&fixed(r, 4)?, &SqlType::SmallDateTime),
        ),
        0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 => {
            let max = r.u8()?;
            let len = usize::from(r.u8()?);
            let data = r.bytes(len)?;
            let sql_ty = match (ty, max) {
                (0x26, 1) => SqlType::TinyInt,
                (0x26, 2) => SqlType::SmallInt,
                (0x26, 4) => SqlType::Int,
                (0x26, 8) => SqlType::BigInt,
                (0x68, _) => SqlType::Bit,
                (0x6D, 4) => SqlType::Real,
                (0x6D, 8) => SqlType::Float,
                (0x6E, 4) => SqlType::SmallMoney,
                (0x6E, 8) => SqlType::Money,
                (0x6F, 4) => SqlType::SmallDateTime,
                (0x6F, 8) => SqlType::DateTime,
                (0x24, 16) => SqlType::UniqueIdentifier,
                _ => return Err(format!("type 0x{ty:02X} with length {max}")),
            };
            if data.is_empty() {
                return Ok((Some(sql_ty), Value::Null));
            }
            let value = match ty {
                0x26 | 0x68 if matches!(len, 1 | 2 | 4 | 8) => int(data),
                0x6D if matches!(len, 4 | 8) => float(data),
                0x6E if matches!(len, 4 | 8) => money(data),
                0x6F if matches!(len, 4 | 8) => datetimen(data, &sql_ty),
                0x24 if len == 16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(data);
                    Value::Text(guid_text(guid_to_wire(b)))
                }
                _ => return Err(format!("type 0x{ty:02X} with value length {len}")),
            };
            (Some(sql_ty), value)
        }
        0x6A | 0x6C => {
            let _max = r.u8()?;
            let precision = r.u8()?;
            let scale = r.u8()?;
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(format!("decimal({precision},{scale})"));
            }
            let sql_ty = SqlType::Decimal {
                precision,
                scale,
                numeric: ty == 0x6C,
            };
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok((Some(sql_ty), Value::Null));
            }
            if !matches!(len, 5 | 9 | 13 | 17) {
                return Err(format!("decimal value length {len}"));
            }
            let data = r.bytes(len)?;
            let mut magnitude = [0u8; 16];
            magnitude[..len - 1].copy_from_slice(&data[1..]);
            let magnitude = u128::from_le_bytes(magnitude);
            (Some(sql_ty), decimal_value(data[0] == 1, magnitude, scale))
        }
        0x28 => {
            let len = r.u8()?;
            match len {
                0 => (Some(SqlType::Date), Value::Null),
                3 => {
                    let d = r.bytes(3)?;
                    let m = Moment::from_parts(
                        i64::from(u32::from_le_bytes([d[0], d[1], d[2], 0])),
                        0,
                        0,
                    );
                    (Some(SqlType::Date), Value::Text(m.format(&SqlType::Date)))
                }
                _ => return Err(format!("date value length {len}")),
            }
        }
        0x29..=0x2B => {
            let scale = r.u8()?;
            if scale > 7 {
                return Err(format!("time scale {scale}"));
            }
            let tl = usize::from(super::types::time_len(scale));
            let sql_ty = match ty {
                0x29 => SqlType::Time(scale),
                0x2A => SqlType::DateTime2(scale),
                _ => SqlType::DateTimeOffset(scale),
            };
            let len = usize::from(r.u8()?);
            if len == 0 {
                return Ok((Some(sql_ty), Value::Null));
            }
            let want = tl
                + match ty {
                    0x29 => 0,
                    0x2A => 3,
                    _ => 5,
                };
            if len != want {
                return Err(format!("time value length {len}, expected {want}"));
            }
            let d = r.bytes(len)?;
            let mut inc = [0u8; 8];
            inc[..tl].copy_from_slice(&d[..tl]);
            let increments = u64::from_le_bytes(inc);
            let days = if ty == 0x29 {
                0
            } else {
                i64::from(u32::from_le_bytes([d[tl], d[tl + 1], d[tl + 2], 0]))
            };
            let mut m = Moment::from_parts(days, increments, scale);
            if ty == 0x2B {
                let offset = i16::from_le_bytes([d[tl + 3], d[tl + 4]]);
                m = m.with_offset(offset);
            }
            (Some(sql_ty), Value::Text(m.format(&sql_ty)))
        }
        0xA7 | 0xAF | 0xE7 | 0xEF | 0xA5 | 0xAD => {
            let max = r.u16()?;
            if matches!(ty, 0xA7 | 0xAF | 0xE7 | 0xEF) {
                r.bytes(5)?; // collation
            }
            let len = if max == 0xFFFF {
                Len::Max
            } else {
                let unit = if matches!(ty, 0xE7 | 0xEF) { 2 } else { 1 };
                Len::N((max / unit).max(1))
            };
            let sql_ty = match (ty, len) {
                (0xA7, l) => SqlType::VarChar(l),
                (0xAF, Len::N(n)) => SqlType::Char(n),
                (0xE7, l) => SqlType::NVarChar(l),
                (0xEF, Len::N(n)) => SqlType::NChar(n),
                (0xA5, l) => SqlType::VarBinary(l),
                (0xAD, Len::N(n)) => SqlType::Binary(n),
                _ => return Err(format!("type 0x{ty:02X} cannot be MAX")),
            };
            let data = if max == 0xFFFF {
                read_plp(r)?
            } else {
                read_u16_len(r)?
            };
            let value = match data {
                None => Value::Null,
                Some(bytes) => match ty {
                    0xA7 | 0xAF => {
                        Value::Text(encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned())
                    }
                    0xE7 | 0xEF => Value::Text(utf16(&bytes)?),
                    _ => Value::Blob(bytes),
                },
            };
            (Some(sql_ty), value)
        }
        other => return Err(format!("unsupported parameter type 0x{other:02X}")),
    };
    Ok(out)
}

fn read_u16_len(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, String> {
    let len = r.u16()?;
    if len == 0xFFFF {
        return Ok(None);
    }
    Ok(Some(r.bytes(usize::from(len))?.to_vec()))
}

/// A PLP value: a u64 total (or NULL / unknown marker) then u32-length chunks up to a 0.
fn read_plp(r: &mut Reader<'_>) -> Result<Option<Vec<u8>>, String> {
    let total = r.u64()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = r.u32()? as usize;
        if chunk == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(r.bytes(chunk)?);
    }
}

fn int(b: &[u8]) -> Value {
    Value::Integer(match b.len() {
        1 => i64::from(b[0]),
        2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
        4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[..8]);
            i64::from_le_bytes(a)
        }
    })
}

fn float(b: &[u8]) -> Value {
    Value::Real(if b.len() == 4 {
        f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    } else {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        f64::from_le_bytes(a)
    })
}

fn money(b: &[u8]) -> Value {
    let scaled = if b.len() == 4 {
        i128::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    } else {
        let hi = i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let lo = i64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
        i128::from((hi << 32) | lo)
    };
    decimal_value(scaled >= 0, scaled.unsigned_abs(), 4)
}

fn datetimen(b: &[u8], ty: &SqlType) -> Value {
    let m = if b.len() == 4 {
        Moment::from_small(
            i64::from(u16::from_le_bytes([b[0], b[1]])),
            u64::from(u16::from_le_bytes([b[2], b[3]])),
        )
    } else {
        Moment::from_datetime(
            i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]])),
        )
    };
    Value::Text(m.format(ty))
}

/// The storage value of a decimal: an INTEGER when whole, a REAL when it has at most 15
/// significant digits (so SQLite compares it numerically), else its exact TEXT.
pub fn decimal_value(positive: bool, magnitude: u128, scale: u8) -> Value {
    let digits = magnitude.to_string();
    let scale = usize::from(scale);
    let (int_part, frac_part) = if digits.len() > scale {
        digits.split_at(digits.len() - scale)
    } else {
        ("", digits.as_str())
    };
    let frac = format!("{frac_part:0>scale$}");
    let frac = frac.trim_end_matches('0');
    let int_part = if int_part.is_empty() { "0" } else { int_part };
    let sign = if positive || magnitude == 0 { "" } else { "-" };
    if frac.is_empty()
        && let Ok(i) = format!("{sign}{int_part}").parse::<i64>()
    {
        return Value::Integer(i);
    }
    let text = if frac.is_empty() {
        format!("{sign}{int_part}")
    } else {
        format!("{sign}{int_part}.{frac}")
    };
    let significant = text
        .trim_start_matches(['-', '0', '.'])
        .replace('.', "")
        .len();
    if significant <= 15
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Real(f);
    }
    Value::Text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_storage_values() {
        assert_eq!(decimal_value(true, 120_000, 4), Value::Integer(12));
        assert_eq!(decimal_value(false, 1234, 2), Value::Real(-12.34));
        assert_eq!(decimal_value(true, 5, 3), Value::Real(0.005));
        assert_eq!(
            decimal_value(true, 12_345_678_901_234_567_890, 2),
            Value::Text("123456789012345678.9".into())
        );
    }

    #[test]
    fn declarations_parse() {
        let d = parse_declarations("@P1 int,@P2 numeric(5,2), @P3 nvarchar(max) OUTPUT").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].1, SqlType::parse("numeric(5,2)"));
        assert_eq!(d[2].0, "@P3");
        assert!(parse_declarations("P1 int").is_err());
    }

    #[test]
    fn truncated_parameters_are_errors() {
        let mut p = vec![22, 0, 0, 0, 18, 0, 0, 0, 2, 0];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0]);
        let mut with_param = p.clone();
        with_param.extend_from_slice(&[0, 0, 0xE7, 0x40, 0x1F]); // nvarchar cut inside TYPE_INFO
        assert!(parse(&with_param).is_err());
        let mut plp = p.clone();
        plp.extend_from_slice(&[
            0, 0, 0xA5, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 9, 0, 0, 0, 1,
        ]);
        assert!(parse(&plp).is_err());
        let call = parse(&p).unwrap();
        assert!(call.params.is_empty());
        assert_eq!(executesql(call).unwrap_err().number, 214);
    }
}
