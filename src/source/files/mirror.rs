//! The mirror: a local SQLite database holding, per file resource, the rows of the export
//! last applied, so the API can filter, sort and page them like a database table.
//!
//! Layout: one table per resource, named after it, with the mapped file columns; an index on
//! the key columns. A new export is loaded into `<resource>__next` and swapped in by one
//! transaction once its changes are committed to the state store, so readers see either the
//! old export or the new one, never a half-loaded file. `_lb_applied` records which export
//! (content hash) each live table holds; `_lb_quarantine` keeps the bad rows of recent files.
//!
//! Values are stored so they read back exactly: decimals as REAL when the float spells the
//! same number (numeric comparison in filters), as TEXT otherwise; timestamps as fixed-width
//! ISO text, which orders like time. (A decimal beyond a float's 15-17 digits is kept as TEXT
//! and, as SQLite orders TEXT after every number, sorts above all numbers in filters.) The mirror can be rebuilt from the exports at any time,
//! so it runs with `synchronous = NORMAL`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params_from_iter};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::config::Trim;
use crate::model::{FieldType, Value};
use crate::source::{Dialect, DialectKind, Param, Row, SelectColumn, SourceError, SourceErrorKind};

/// The column holding each row's encoded key (capture's key encoding), by which changes are
/// applied; the API never selects it.
const KEY_COLUMN: &str = "\"_lb_key\"";
/// Read connections kept open; more concurrent reads wait for one.
const READERS: usize = 4;
/// Quarantined rows kept per resource (the most recent files').
const QUARANTINE_KEEP: usize = 10_000;
/// Text of a naive timestamp in the mirror: fixed width, so text order is time order.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";
const TIME_FORMAT: &str = "%H:%M:%S%.6f";
const DATE_FORMAT: &str = "%Y-%m-%d";

/// The shape of one resource's table: the file columns it reads (in the resource's select
/// order, with the type each is decoded as) and which of them form the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorTable {
    pub name: String,
    pub columns: Vec<SelectColumn>,
    pub key: Vec<String>,
    /// Columns that are never NULL: the key and columns marked `required`.
    pub not_null: Vec<String>,
    /// Padding stripped from each column's text before it is stored, as the field mapping
    /// it says: filters then compare with the value the API shows, not with the padded one.
    pub trims: Vec<Trim>,
}

impl MirrorTable {
    /// A fingerprint of the layout: a table built for another layout is rebuilt.
    fn layout(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.decode.as_str()))
            .collect();
        format!(
            "v2|{}|{}|{:?}",
            cols.join(","),
            self.key.join(","),
            self.trims
        )
    }

    fn column_defs(&self, dialect: &Dialect) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", dialect.quote(&c.name), column_type(c.decode)))
            .collect();
        cols.push(format!("{KEY_COLUMN} BLOB NOT NULL"));
        cols.join(", ")
    }

    /// The two indexes of a live table: the key columns (lookups and key order for the API)
    /// and the encoded key (applying changes).
    fn index_sql(&self, dialect: &Dialect, on: &str, tag: &str) -> String {
        let key: Vec<String> = self.key.iter().map(|k| dialect.quote(k)).collect();
        format!(
            "CREATE INDEX {} ON {on} ({});
             CREATE UNIQUE INDEX {} ON {on} ({KEY_COLUMN});",
            dialect.quote(&format!("{}__key_{tag}", self.name)),
            key.join(", "),
            dialect.quote(&format!("{}__lbkey_{tag}", self.name)),
        )
    }

    fn staging(&self) -> String {
        format!("{}__next", self.name)
    }
}

/// A bad record of an applied or rejected export, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct QuarantinedRow {
    pub file: String,
    /// Line number (text formats) or record number (DBF) where the record starts.
    pub position: u64,
    pub reason: String,
    /// The record's text as read.
    pub raw: String,
    /// When the file was processed (RFC 3339).
    pub at: String,
}

/// The mirror database.
pub struct Mirror {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    read_slots: tokio::sync::Semaphore,
    dialect: Dialect,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("path", &self.path).finish()
    }
}

fn sql_err(context: &str, e: rusqlite::Error) -> SourceError {
    SourceError::new(
        SourceErrorKind::Unavailable,
        format!("mirror: {context}: {e}"),
    )
}

impl Mirror {
    /// Opens (creating) the mirror at `path` for `tables`; a table whose layout changed since
    /// it was built is dropped, so the next export rebuilds it.
    pub fn open(path: &Path, tables: &[MirrorTable]) -> Result<Mirror, SourceError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                SourceError::new(
                    SourceErrorKind::Config,
                    format!("cannot create the mirror folder {}: {e}", dir.display()),
                )
            })?;
        }
        let writer = Connection::open(path).map_err(|e| sql_err("open", e))?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA cache_size = -32768;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS _lb_applied (
                     resource TEXT PRIMARY KEY,
                     sha256 TEXT,
                     layout TEXT NOT NULL,
                     file TEXT,
                     rows INTEGER,
                     applied_at TEXT
                 );
                 CREATE TABLE IF NOT EXISTS _lb_quarantine (
                     id INTEGER PRIMARY KEY,
                     resource TEXT NOT NULL,
                     file TEXT NOT NULL,
                     position INTEGER NOT NULL,
                     reason TEXT NOT NULL,
                     raw TEXT NOT NULL,
                     at TEXT NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS _lb_quarantine_resource ON _lb_quarantine (resource, id);",
            )
            .map_err(|e| sql_err("initialise", e))?;
        let dialect = Dialect::of(DialectKind::Sqlite);
        for table in tables {
            prepare_table(&writer, &dialect, table)?;
        }
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sql_err("open reader", e))?;
            c.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(|e| sql_err("open reader", e))?;
            readers.push(c);
        }
        Ok(Mirror {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(readers),
            read_slots: tokio::sync::Semaphore::new(READERS),
            dialect,
        })
    }

    /// The content hash of the export the live table of `table` holds.
    pub fn applied(&self, table: &str) -> Result<Option<String>, SourceError> {
        self.with_reader(|w| {
            w.query_row(
                "SELECT sha256 FROM _lb_applied WHERE resource = ?1",
                [table],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
        })
        .map_err(|e| sql_err("read applied export", e))
    }

    /// Starts writing an export of `table`, in one transaction that readers do not see
    /// until [`MirrorWrite::finish`]: as changes to the live table (`Delta`, when it holds
    /// the previous export) or as a new table swapped in whole (`Rebuild`). Blocking; holds
    /// the writer until finished or dropped (dropping rolls back).
    pub fn begin<'a>(
        &'a self,
        table: &'a MirrorTable,
        mode: WriteMode,
    ) -> Result<MirrorWrite<'a>, SourceError> {
        let conn = self.lock_writer()?;
        let q = |n: &str| self.dialect.quote(n);
        let cols: Vec<String> = table.columns.iter().map(|c| q(&c.name)).collect();
        let marks = vec!["?"; table.columns.len() + 1].join(", ");
        let (target, upsert) = match mode {
            WriteMode::Rebuild => {
                let staging = q(&table.staging());
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; DROP TABLE IF EXISTS {staging}; CREATE TABLE {staging} ({});",
                    table.column_defs(&self.dialect)
                ))
                .map_err(|e| sql_err("create staging table", e))?;
                let insert = format!(
                    "INSERT INTO {staging} ({}, {KEY_COLUMN}) VALUES ({marks})",
                    cols.join(", ")
                );
                (staging, insert)
            }
            WriteMode::Delta => {
                conn.execute_batch("BEGIN IMMEDIATE")
                    .map_err(|e| sql_err("begin", e))?;
                let live = q(&table.name);
                let set: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                let upsert = format!(
                    "INSERT INTO {live} ({}, {KEY_COLUMN}) VALUES ({marks})
                     ON CONFLICT ({KEY_COLUMN}) DO UPDATE SET {}",
                    cols.join(", "),
                    set.join(", ")
                );
                (live, upsert)
            }
        };
        let delete = format!("DELETE FROM {target} WHERE {KEY_COLUMN} = ?1");
        Ok(MirrorWrite {
            conn,
            table,
            mode,
            upsert,
            delete,
            dialect: &self.dialect,
        })
    }

    /// Records the bad rows of one processed file, keeping the most recent
    /// [`QUARANTINE_KEEP`] per resource.
    pub fn quarantine_rows(
        &self,
        table: &str,
        file: &str,
        rows: &[(u64, String, String)],
    ) -> Result<(), SourceError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.lock_writer()?;
        let tx = conn.transaction().map_err(|e| sql_err("quarantine", e))?;
        let at = chrono::Utc::now().to_rfc3339();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO _lb_quarantine (resource, file, position, reason, raw, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| sql_err("quarantine", e))?;
            for (position, reason, raw) in rows {
                stmt.execute(rusqlite::params![
                    table,
                    file,
                    *position as i64,
                    reason,
                    raw,
                    at
                ])
                .map_err(|e| sql_err("quarantine", e))?;
            }
        }
        tx.execute(
            "DELETE FROM _lb_quarantine WHERE resource = ?1 AND id <= (
                 SELECT id FROM _lb_quarantine WHERE resource = ?1
                 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            rusqlite::params![table, QUARANTINE_KEEP as i64],
        )
        .map_err(|e| sql_err("quarantine", e))?;
        tx.commit().map_err(|e| sql_err("quarantine", e))
    }

    /// The most recent quarantined rows of `table`, newest first.
    pub fn quarantined(
        &self,
        table: &str,
        limit: usize,
    ) -> Result<Vec<QuarantinedRow>, SourceError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT file, position, reason, raw, at FROM _lb_quarantine
                 WHERE resource = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![table, limit as i64], |r| {
                Ok(QuarantinedRow {
                    file: r.get(0)?,
                    position: r.get::<_, i64>(1)? as u64,
                    reason: r.get(2)?,
                    raw: r.get(3)?,
                    at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .map_err(|e| sql_err("read quarantine", e))
    }

    /// Runs a small read on a read connection, so it never waits for an export being staged
    /// (which holds the writer); opens a short-lived one when all are in use. Blocking.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut r| r.pop());
        match pooled {
            Some(conn) => {
                let result = f(&conn);
                if let Ok(mut readers) = self.readers.lock() {
                    readers.push(conn);
                }
                result
            }
            None => f(&Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?),
        }
    }

    /// Runs a rendered SELECT on a read connection, decoding columns as `decode` says, and
    /// hands the rows to `sink` in batches of `batch`; `sink` returning false stops the read.
    /// Blocking.
    pub fn read(
        &self,
        sql: &str,
        params: &[Param],
        decode: &[FieldType],
        batch: usize,
        mut sink: impl FnMut(Vec<Row>) -> bool,
    ) -> Result<(), SourceError> {
        self.with_reader(|conn| Ok(read_with(conn, sql, params, decode, batch, &mut sink)))
            .map_err(|e| sql_err("open reader", e))?
    }

    /// Waits for a read slot, bounding concurrent reads to the open connections.
    pub async fn read_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, SourceError> {
        self.read_slots
            .acquire()
            .await
            .map_err(|_| SourceError::new(SourceErrorKind::Unavailable, "mirror closed"))
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, Connection>, SourceError> {
        self.writer.lock().map_err(|_| {
            SourceError::new(SourceErrorKind::Unavailable, "mirror writer lock poisoned")
        })
    }
}

/// How an export is written to the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Changes to the live table, which holds the previous export.
    Delta,
    /// Every record into a new table that replaces the live one.
    Rebuild,
}

/// An export being written; see [`Mirror::begin`].
pub struct MirrorWrite<'a> {
    conn: std::sync::MutexGuard<'a, Connection>,
    table: &'a MirrorTable,
    mode: WriteMode,
    upsert: String,
    delete: String,
    dialect: &'a Dialect,
}

impl MirrorWrite<'_> {
    /// Writes the record with encoded key `key` (values in the table's column order).
    pub fn put(&mut self, key: &[u8], row: &[Value]) -> Result<(), SourceError> {
        let mut stmt = self
            .conn
            .prepare_cached(&self.upsert)
            .map_err(|e| sql_err("write row", e))?;
        let values = row
            .iter()
            .zip(&self.table.trims)
            .map(|(v, trim)| Bind::trimmed(v, *trim));
        let key = Bind::bytes(key);
        stmt.execute(params_from_iter(values.chain(std::iter::once(key))))
            .map_err(|e| sql_err("write row", e))?;
        Ok(())
    }

    /// Removes the record with encoded key `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), SourceError> {
        let mut stmt = self
            .conn
            .prepare_cached(&self.delete)
            .map_err(|e| sql_err("delete row", e))?;
        stmt.execute([key]).map_err(|e| sql_err("delete row", e))?;
        Ok(())
    }

    /// Makes the export the served one and records it as applied, atomically.
    pub fn finish(self, sha256: &str, file: &str, rows: u64) -> Result<(), SourceError> {
        let table = self.table;
        let q = |n: &str| self.dialect.quote(n);
        if self.mode == WriteMode::Rebuild {
            let live = q(&table.name);
            let staging = q(&table.staging());
            let tag = &sha256[..sha256.len().min(12)];
            self.conn
                .execute_batch(&format!(
                    "{}
                     DROP TABLE IF EXISTS {live};
                     ALTER TABLE {staging} RENAME TO {live};",
                    table.index_sql(self.dialect, &staging, tag)
                ))
                .map_err(|e| sql_err("swap in the new export", e))?;
        }
        self.conn
            .execute(
                "INSERT INTO _lb_applied (resource, sha256, layout, file, rows, applied_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (resource) DO UPDATE SET sha256 = excluded.sha256,
                   layout = excluded.layout, file = excluded.file, rows = excluded.rows,
                   applied_at = excluded.applied_at",
                rusqlite::params![
                    table.name,
                    sha256,
                    table.layout(),
                    file,
                    rows as i64,
                    chrono::Utc::now().to_rfc3339()
                ],
            )
            .map_err(|e| sql_err("record the applied export", e))?;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| sql_err("commit the export", e))
    }
}

impl Drop for MirrorWrite<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn prepare_table(
    conn: &Connection,
    dialect: &Dialect,
    table: &MirrorTable,
) -> Result<(), SourceError> {
    let layout: Option<String> = conn
        .query_row(
            "SELECT layout FROM _lb_applied WHERE resource = ?1",
            [&table.name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| sql_err("read layout", e))?;
    let live = dialect.quote(&table.name);
    if layout.as_deref() != Some(table.layout().as_str()) {
        if layout.is_some() {
            tracing::info!(resource = %table.name, "adapter layout changed; the mirror table is rebuilt from the next export");
        }
        conn.execute_batch(&format!(
            "BEGIN;
             DROP TABLE IF EXISTS {live};
             CREATE TABLE {live} ({});
             {}
             COMMIT;",
            table.column_defs(dialect),
            table.index_sql(dialect, &live, "0")
        ))
        .map_err(|e| sql_err("create table", e))?;
        conn.execute(
            "INSERT INTO _lb_applied (resource, sha256, layout) VALUES (?1, NULL, ?2)
             ON CONFLICT (resource) DO UPDATE SET sha256 = NULL, layout = excluded.layout,
               file = NULL, rows = NULL, applied_at = NULL",
            rusqlite::params![table.name, table.layout()],
        )
        .map_err(|e| sql_err("record layout", e))?;
    }
    Ok(())
}

/// Declared column types: none for decimals (so SQLite keeps exactly what is stored, REAL or
/// TEXT), plain affinities otherwise.
fn column_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String | FieldType::Date | FieldType::Time | FieldType::Timestamp => "TEXT",
        FieldType::Integer | FieldType::Boolean => "INTEGER",
        FieldType::Decimal => "",
        FieldType::Binary => "BLOB",
    }
}

/// A value as stored (and as bound when compared with a stored value).
pub fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Decimal(d) => decimal_to_sql(d),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Date(d) => SqlValue::Text(d.format(DATE_FORMAT).to_string()),
        Value::Time(t) => SqlValue::Text(t.format(TIME_FORMAT).to_string()),
        Value::NaiveTimestamp(ts) => SqlValue::Text(ts.format(TIMESTAMP_FORMAT).to_string()),
        Value::Timestamp(ts) => SqlValue::Text(ts.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string()),
        Value::Binary(b) => SqlValue::Blob(b.clone()),
    }
}

/// A value bound without copying its text or bytes (a rebuild writes every cell of an
/// export), text trimmed as its column says.
enum Bind<'a> {
    Value(&'a Value, Trim),
    Bytes(&'a [u8]),
}

impl<'a> Bind<'a> {
    fn value(v: &'a Value) -> Self {
        Bind::Value(v, Trim::None)
    }

    fn trimmed(v: &'a Value, trim: Trim) -> Self {
        Bind::Value(v, trim)
    }

    fn bytes(b: &'a [u8]) -> Self {
        Bind::Bytes(b)
    }
}

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self {
            Bind::Value(Value::Text(s), trim) => {
                let s = match trim {
                    Trim::None => s.as_str(),
                    Trim::End => s.trim_end(),
                    Trim::Start => s.trim_start(),
                    Trim::Both => s.trim(),
                };
                ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
            }
            Bind::Value(Value::Binary(b), _) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Bind::Value(other, _) => ToSqlOutput::Owned(to_sql(other)),
            Bind::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Decimals with at most this many significant digits are exactly recovered from the
/// correctly rounded float (shortest round-trip printing).
const FLOAT_SAFE_MANTISSA: u64 = 1_000_000_000_000_000;

/// REAL when the float reads back as the same decimal, TEXT otherwise (exact either way).
fn decimal_to_sql(d: &Decimal) -> SqlValue {
    let mantissa = d.mantissa().unsigned_abs();
    if mantissa < u128::from(FLOAT_SAFE_MANTISSA) && d.scale() <= 22 {
        // Both operands are exact floats and IEEE division rounds correctly.
        let f = d.mantissa() as f64 / 10f64.powi(d.scale() as i32);
        return SqlValue::Real(f);
    }
    if let Some(f) = d.to_f64()
        && f.is_finite()
        && Decimal::from_str(&f.to_string()).is_ok_and(|back| back == *d)
    {
        return SqlValue::Real(f);
    }
    SqlValue::Text(d.to_string())
}

fn read_with(
    conn: &Connection,
    sql: &str,
    params: &[Param],
    decode: &[FieldType],
    batch: usize,
    sink: &mut impl FnMut(Vec<Row>) -> bool,
) -> Result<(), SourceError> {
    let query_err = |e: rusqlite::Error| {
        SourceError::new(SourceErrorKind::Query, format!("mirror query failed: {e}"))
    };
    let mut stmt = conn.prepare_cached(sql).map_err(query_err)?;
    let mut rows = stmt
        .query(params_from_iter(
            params.iter().map(|p| Bind::value(&p.value)),
        ))
        .map_err(query_err)?;
    let mut out = Vec::with_capacity(batch.min(1024));
    while let Some(r) = rows.next().map_err(query_err)? {
        out.push(decode_row(r, decode).map_err(query_err)?);
        if out.len() >= batch && !sink(std::mem::take(&mut out)) {
            return Ok(());
        }
    }
    if !out.is_empty() {
        sink(out);
    }
    Ok(())
}

fn decode_row(r: &rusqlite::Row<'_>, decode: &[FieldType]) -> rusqlite::Result<Row> {
    let mut row = Vec::with_capacity(decode.len());
    for (i, ty) in decode.iter().enumerate() {
        let v = r.get_ref(i)?;
        row.push(decode_value(v, *ty).map_err(|reason| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                v.data_type(),
                format!("column {i}: {reason}").into(),
            )
        })?);
    }
    Ok(row)
}

/// A stored value as the requested type.
fn decode_value(v: ValueRef<'_>, ty: FieldType) -> Result<Value, String> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "text is not UTF-8".to_owned());
    Ok(match (v, ty) {
        (ValueRef::Null, _) => Value::Null,
        (ValueRef::Integer(i), FieldType::Integer) => Value::Int(i),
        (ValueRef::Integer(i), FieldType::Boolean) => Value::Bool(i != 0),
        (ValueRef::Integer(i), FieldType::Decimal) => Value::Decimal(Decimal::from(i)),
        (ValueRef::Integer(i), FieldType::String) => Value::Text(i.to_string()),
        (ValueRef::Real(f), FieldType::Decimal) => Value::Decimal(
            Decimal::from_str(&f.to_string())
                .map_err(|_| "number out of decimal range".to_owned())?,
        ),
        (ValueRef::Real(f), FieldType::Integer) if f.fract() == 0.0 => Value::Int(f as i64),
        (ValueRef::Real(f), FieldType::String) => Value::Text(f.to_string()),
        (ValueRef::Text(b), FieldType::String) => Value::Text(text(b)?),
        (ValueRef::Text(b), FieldType::Timestamp) => {
            let s = text(b)?;
            match NaiveDateTime::parse_from_str(&s, TIMESTAMP_FORMAT) {
                Ok(ts) => Value::NaiveTimestamp(ts),
                Err(_) => Value::Timestamp(
                    DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.6f%:z")
                        .map_err(|_| "unreadable timestamp".to_owned())?,
                ),
            }
        }
        (ValueRef::Text(b), FieldType::Date) => Value::Date(
            NaiveDate::parse_from_str(&text(b)?, DATE_FORMAT)
                .map_err(|_| "unreadable date".to_owned())?,
        ),
        (ValueRef::Text(b), FieldType::Time) => Value::Time(
            NaiveTime::parse_from_str(&text(b)?, TIME_FORMAT)
                .map_err(|_| "unreadable time".to_owned())?,
        ),
        (ValueRef::Text(b), ty) => Value::parse(ty, &text(b)?).map_err(|e| e.to_string())?,
        (ValueRef::Blob(b), FieldType::Binary) => Value::Binary(b.to_vec()),
        (other, ty) => {
            return Err(format!(
                "a stored {:?} cannot be read as {ty}",
                other.data_type()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{OrderBy, Relation, SelectQuery};

    fn table() -> MirrorTable {
        MirrorTable {
            name: "prices".into(),
            columns: vec![
                SelectColumn {
                    name: "SKU".into(),
                    decode: FieldType::String,
                },
                SelectColumn {
                    name: "PRICE".into(),
                    decode: FieldType::Decimal,
                },
                SelectColumn {
                    name: "AT".into(),
                    decode: FieldType::Timestamp,
                },
            ],
            key: vec!["SKU".into()],
            not_null: vec!["SKU".into()],
            trims: vec![Trim::End, Trim::None, Trim::None],
        }
    }

    fn all(m: &Mirror, q: &SelectQuery) -> Vec<Row> {
        let (sql, params) = m.dialect.render(q);
        let decode: Vec<_> = q.columns.iter().map(|c| c.decode).collect();
        let mut out = Vec::new();
        m.read(&sql, &params, &decode, 2, |b| {
            out.extend(b);
            true
        })
        .unwrap();
        out
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn dec(s: &str) -> Value {
        Value::Decimal(Decimal::from_str(s).unwrap())
    }

    fn query(t: &MirrorTable) -> SelectQuery {
        SelectQuery {
            relation: Relation::Table {
                schema: None,
                name: "prices".into(),
            },
            columns: t.columns.clone(),
            filter: vec![],
            order_by: vec![OrderBy {
                column: "SKU".into(),
                descending: false,
                binary: true,
            }],
            limit: Some(10),
        }
    }

    #[test]
    fn exports_are_served_only_once_finished_and_values_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let t = table();
        let m = Mirror::open(&dir.path().join("m.db"), std::slice::from_ref(&t)).unwrap();
        assert_eq!(m.applied("prices").unwrap(), None);
        let ts =
            NaiveDateTime::parse_from_str("2026-03-29 02:30:00.5", "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let rows = [
            vec![text("B  "), dec("12.50"), Value::NaiveTimestamp(ts)],
            vec![text("A"), dec("12345678901234567890.123"), Value::Null],
            vec![text("C"), dec("-0.1"), Value::Null],
        ];
        let q = query(&t);
        let mut w = m.begin(&t, WriteMode::Rebuild).unwrap();
        for (i, r) in rows.iter().enumerate() {
            w.put(&[i as u8], r).unwrap();
        }
        assert!(all(&m, &q).is_empty(), "nothing is served before finish");
        w.finish("abc123", "P.csv", 3).unwrap();
        let got = all(&m, &q);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0][1], dec("12345678901234567890.123"));
        // Text is stored trimmed as the field says, so filters compare what the API shows.
        assert_eq!(
            got[1],
            vec![text("B"), dec("12.5"), Value::NaiveTimestamp(ts)]
        );
        assert_eq!(m.applied("prices").unwrap().as_deref(), Some("abc123"));
        // Decimal filters compare numbers, not text.
        let mut q2 = q.clone();
        q2.filter = vec![crate::source::Predicate::Compare {
            column: "PRICE".into(),
            op: crate::source::CompareOp::Gt,
            param: Param {
                value: Value::Decimal(Decimal::from(9)),
                sql_type: crate::source::SqlType::Decimal {
                    precision: 38,
                    scale: 2,
                },
            },
        }];
        let skus: Vec<_> = all(&m, &q2).iter().map(|r| r[0].clone()).collect();
        assert_eq!(skus, vec![text("A"), text("B")]);
        // A delta changes, adds and removes rows by encoded key, also atomically.
        let mut w = m.begin(&t, WriteMode::Delta).unwrap();
        w.delete(&[1]).unwrap();
        w.put(&[2], &[text("C"), dec("7"), Value::Null]).unwrap();
        w.put(&[3], &[text("D"), dec("1"), Value::Null]).unwrap();
        drop(w);
        assert_eq!(all(&m, &q).len(), 3, "a dropped write changes nothing");
        let mut w = m.begin(&t, WriteMode::Delta).unwrap();
        w.delete(&[1]).unwrap();
        w.put(&[2], &[text("C"), dec("7"), Value::Null]).unwrap();
        w.put(&[3], &[text("D"), dec("1"), Value::Null]).unwrap();
        w.finish("def456", "P2.csv", 3).unwrap();
        let got = all(&m, &q);
        let skus: Vec<_> = got.iter().map(|r| r[0].clone()).collect();
        assert_eq!(skus, vec![text("B"), text("C"), text("D")]);
        assert_eq!(got[1][1], dec("7"));
        assert_eq!(m.applied("prices").unwrap().as_deref(), Some("def456"));
    }

    #[test]
    fn a_changed_layout_rebuilds_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let t = table();
        {
            let m = Mirror::open(&path, std::slice::from_ref(&t)).unwrap();
            let mut w = m.begin(&t, WriteMode::Rebuild).unwrap();
            w.put(&[0], &[text("A"), Value::Null, Value::Null]).unwrap();
            w.finish("abc", "P.csv", 1).unwrap();
        }
        let m = Mirror::open(&path, std::slice::from_ref(&t)).unwrap();
        assert_eq!(m.applied("prices").unwrap().as_deref(), Some("abc"));
        let mut t2 = t.clone();
        t2.columns.pop();
        t2.trims.pop();
        drop(m);
        let m = Mirror::open(&path, std::slice::from_ref(&t2)).unwrap();
        assert_eq!(m.applied("prices").unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn decimals_read_back_exactly(mantissa in proptest::prelude::any::<i64>(), scale in 0u32..=28) {
            let d = Decimal::from_i128_with_scale(i128::from(mantissa), scale);
            let stored = to_sql(&Value::Decimal(d));
            let back = decode_value(ValueRef::from(&stored), FieldType::Decimal).unwrap();
            proptest::prop_assert_eq!(back, Value::Decimal(d.normalize()));
        }
    }

    #[test]
    fn quarantine_keeps_recent_rows() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirror::open(&dir.path().join("m.db"), &[table()]).unwrap();
        m.quarantine_rows(
            "prices",
            "P.csv",
            &[(
                7,
                "column PRICE: expected a decimal number".into(),
                "A;x".into(),
            )],
        )
        .unwrap();
        let q = m.quarantined("prices", 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].position, 7);
        assert_eq!(q[0].file, "P.csv");
    }
}
