//! Encoders of the response tokens the harness sends: COLMETADATA, ROW and NBCROW, DONE,
//! DONEINPROC and DONEPROC (with row counts), ERROR, INFO, ENVCHANGE, LOGINACK and
//! RETURNSTATUS (MS-TDS 2.2.7).

use rusqlite::types::Value;

use super::sql::SqlError;
use super::types::SqlType;

pub const DONE: u8 = 0xFD;
pub const DONE_PROC: u8 = 0xFE;
pub const DONE_IN_PROC: u8 = 0xFF;

pub const DONE_FINAL: u16 = 0x00;
pub const DONE_MORE: u16 = 0x01;
pub const DONE_ERROR: u16 = 0x02;
pub const DONE_COUNT: u16 = 0x10;
pub const DONE_ATTN: u16 = 0x20;

/// CurCmd values of DONE tokens.
pub const CMD_SELECT: u16 = 0xC1;
pub const CMD_INSERT: u16 = 0xC3;
pub const CMD_DELETE: u16 = 0xC4;
pub const CMD_UPDATE: u16 = 0xC5;
pub const CMD_BEGIN_TRAN: u16 = 0xD4;
pub const CMD_COMMIT: u16 = 0xD5;
pub const CMD_ROLLBACK: u16 = 0xD2;
pub const CMD_NONE: u16 = 0;

pub const ENV_DATABASE: u8 = 1;
pub const ENV_LANGUAGE: u8 = 2;
pub const ENV_PACKET_SIZE: u8 = 4;
pub const ENV_COLLATION: u8 = 7;
pub const ENV_BEGIN_TRAN: u8 = 8;
pub const ENV_COMMIT_TRAN: u8 = 9;
pub const ENV_ROLLBACK_TRAN: u8 = 10;

/// The TDS version the harness speaks (7.4), as LOGINACK sends it.
pub const TDS_74: u32 = 0x7400_0004;

/// The server name in ERROR and INFO tokens.
pub const SERVER_NAME: &str = "legacy-bridge-tds-harness";

/// A result column as COLMETADATA announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

fn b_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.push(units.len() as u8);
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

fn us_varchar(out: &mut Vec<u8>, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(65_535).collect();
    out.extend_from_slice(&(units.len() as u16).to_le_bytes());
    out.extend(units.iter().flat_map(|u| u.to_le_bytes()));
}

/// Appends a token whose body starts with a u16 length.
fn with_len(out: &mut Vec<u8>, token: u8, body: &[u8]) {
    out.push(token);
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
}

/// DONE, DONEINPROC or DONEPROC.
pub fn done(out: &mut Vec<u8>, token: u8, status: u16, cur_cmd: u16, rows: u64) {
    out.push(token);
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&cur_cmd.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
}

fn message(out: &mut Vec<u8>, token: u8, number: u32, state: u8, class: u8, text: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(state);
    body.push(class);
    us_varchar(&mut body, text);
    b_varchar(&mut body, SERVER_NAME);
    b_varchar(&mut body, "");
    body.extend_from_slice(&1u32.to_le_bytes());
    with_len(out, token, &body);
}

/// ERROR.
pub fn error(out: &mut Vec<u8>, e: &SqlError) {
    message(out, 0xAA, e.number, e.state, e.class, &e.message);
}

/// INFO (class 0-10).
pub fn info(out: &mut Vec<u8>, number: u32, text: &str) {
    message(out, 0xAB, number, 1, 0, text);
}

/// ENVCHANGE with B_VARCHAR values (database, language, packet size).
pub fn env_strings(out: &mut Vec<u8>, ty: u8, new: &str, old: &str) {
    let mut body = vec![ty];
    b_varchar(&mut body, new);
    b_varchar(&mut body, old);
    with_len(out, 0xE3, &body);
}

/// ENVCHANGE with B_VARBYTE values (collation, transactions).
pub fn env_bytes(out: &mut Vec<u8>, ty: u8, new: &[u8], old: &[u8]) {
    let mut body = vec![ty, new.len() as u8];
    body.extend_from_slice(new);
    body.push(old.len() as u8);
    body.extend_from_slice(old);
    with_len(out, 0xE3, &body);
}

/// LOGINACK for TDS 7.4.
pub fn login_ack(out: &mut Vec<u8>, prog_name: &str, version: [u8; 4]) {
    let mut body = vec![1u8]; // SQL_TSQL
    body.extend_from_slice(&TDS_74.to_be_bytes());
    b_varchar(&mut body, prog_name);
    body.extend_from_slice(&version);
    with_len(out, 0xAD, &body);
}

/// RETURNSTATUS.
pub fn return_status(out: &mut Vec<u8>, status: i32) {
    out.push(0x79);
    out.extend_from_slice(&status.to_le_bytes());
}

/// COLMETADATA.
pub fn col_metadata(out: &mut Vec<u8>, columns: &[ColumnMeta]) {
    out.push(0x81);
    out.extend_from_slice(&(columns.len() as u16).to_le_bytes());
    for c in columns {
        out.extend_from_slice(&c.ty.user_type().to_le_bytes());
        let updateable = 0x0008u16; // usUpdateable = unknown
        let flags = updateable | u16::from(c.nullable);
        out.extend_from_slice(&flags.to_le_bytes());
        c.ty.encode_type_info(c.nullable, out);
        b_varchar(out, &c.name);
    }
}

/// One row: an NBCROW when its NULL bitmap is smaller than the NULLs it saves, else a ROW.
/// On a conversion error nothing is appended.
pub fn row(out: &mut Vec<u8>, columns: &[ColumnMeta], values: &[Value]) -> Result<(), SqlError> {
    let saved: usize = columns
        .iter()
        .zip(values)
        .filter(|(_, v)| matches!(v, Value::Null))
        .map(|(c, _)| c.ty.null_size())
        .sum();
    let bitmap_len = columns.len().div_ceil(8);
    let mut body = Vec::new();
    if saved > bitmap_len {
        let mut bitmap = vec![0u8; bitmap_len];
        for (i, v) in values.iter().enumerate() {
            if matches!(v, Value::Null) {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        body.push(0xD2);
        body.extend_from_slice(&bitmap);
        for (c, v) in columns.iter().zip(values) {
            if !matches!(v, Value::Null) {
                c.ty.encode_value(c.nullable, v, &mut body)?;
            }
        }
    } else {
        body.push(0xD1);
        for (c, v) in columns.iter().zip(values) {
            c.ty.encode_value(c.nullable, v, &mut body)?;
        }
    }
    out.extend_from_slice(&body);
    Ok(())
}
