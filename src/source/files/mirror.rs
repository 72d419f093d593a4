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

use crate::model::{FieldType, Value};
use crate::source::{Dialect, DialectKind, Param, Row, SelectColumn, SourceError, SourceErrorKind};

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
}

impl MirrorTable {
    /// A fingerprint of the layout: a table built for another layout is rebuilt.
    fn layout(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.decode.as_str()))
            .collect();
        format!("{}|{}", cols.join(","), self.key.join(","))
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

    /// Starts loading a new export of `table` into its staging table (replacing any earlier
    /// staging). Blocking; holds the writer until the [`Stager`] is dropped.
    pub fn stage<'a>(&'a self, table: &'a MirrorTable) -> Result<Stager<'a>, SourceError> {
        let conn = self.lock_writer()?;
        let staging = self.dialect.quote(&table.staging());
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("{} {}", self.dialect.quote(&c.name), column_type(c.decode)))
            .collect();
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {staging}; CREATE TABLE {staging} ({}); BEGIN;",
            cols.join(", ")
        ))
        .map_err(|e| sql_err("create staging table", e))?;
        let marks = vec!["?"; table.columns.len()].join(", ");
        let insert = format!("INSERT INTO {staging} VALUES ({marks})");
        Ok(Stager {
            conn,
            table,
            insert,
            staging,
            rows: 0,
        })
    }

    /// Swaps the staged export of `table` in (with its key index) and records it as applied.
    pub fn swap(
        &self,
        table: &MirrorTable,
        sha256: &str,
        file: &str,
        rows: u64,
    ) -> Result<(), SourceError> {
        let conn = self.lock_writer()?;
        let live = self.dialect.quote(&table.name);
        let staging = self.dialect.quote(&table.staging());
        let index = self.dialect.quote(&format!(
            "{}__key_{}",
            table.name,
            &sha256[..sha256.len().min(12)]
        ));
        let key: Vec<String> = table.key.iter().map(|k| self.dialect.quote(k)).collect();
        let swap = || -> rusqlite::Result<()> {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 DROP INDEX IF EXISTS {index};
                 CREATE INDEX {index} ON {staging} ({});
                 DROP TABLE IF EXISTS {live};
                 ALTER TABLE {staging} RENAME TO {live};",
                key.join(", ")
            ))?;
            conn.execute(
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
            )?;
            conn.execute_batch("COMMIT")
        };
        swap().map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            sql_err("swap in the new export", e)
        })
    }

    /// Drops a staged export that will not be applied (rejected or held).
    pub fn discard(&self, table: &MirrorTable) -> Result<(), SourceError> {
        let conn = self.lock_writer()?;
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}",
            self.dialect.quote(&table.staging())
        ))
        .map_err(|e| sql_err("drop staging table", e))
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
        let conn = self
            .readers
            .lock()
            .map_err(|_| {
                SourceError::new(SourceErrorKind::Unavailable, "mirror reader lock poisoned")
            })?
            .pop();
        let Some(conn) = conn else {
            return Err(SourceError::new(
                SourceErrorKind::Saturated,
                "no mirror connection free",
            ));
        };
        let result = read_with(&conn, sql, params, decode, batch, &mut sink);
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(conn);
        }
        result
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

/// Loads one export into the staging table; committed by [`Stager::finish`].
pub struct Stager<'a> {
    conn: std::sync::MutexGuard<'a, Connection>,
    table: &'a MirrorTable,
    insert: String,
    staging: String,
    rows: u64,
}

impl Stager<'_> {
    /// Appends a row (values in the table's column order); returns its row id.
    pub fn insert(&mut self, row: &[Value]) -> Result<i64, SourceError> {
        let mut stmt = self
            .conn
            .prepare_cached(&self.insert)
            .map_err(|e| sql_err("stage row", e))?;
        stmt.execute(params_from_iter(row.iter().map(Bind)))
            .map_err(|e| sql_err("stage row", e))?;
        self.rows += 1;
        Ok(self.conn.last_insert_rowid())
    }

    /// Removes staged rows (duplicates of a key found after loading).
    pub fn remove(&mut self, ids: &[i64]) -> Result<(), SourceError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("DELETE FROM {} WHERE rowid = ?1", self.staging))
            .map_err(|e| sql_err("remove staged row", e))?;
        for id in ids {
            stmt.execute([id])
                .map_err(|e| sql_err("remove staged row", e))?;
        }
        self.rows -= ids.len() as u64;
        Ok(())
    }

    /// Rows staged so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Commits the staged rows.
    pub fn finish(self) -> Result<u64, SourceError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| sql_err("commit staged export", e))?;
        Ok(self.rows)
    }

    /// The staging table's name, for [`rows_by_id`].
    pub fn table(&self) -> &MirrorTable {
        self.table
    }
}

impl Drop for Stager<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Mirror {
    /// Staged rows by row id, in the order of `ids`. Blocking.
    pub fn staged_rows(&self, table: &MirrorTable, ids: &[i64]) -> Result<Vec<Row>, SourceError> {
        let conn = self.lock_writer()?;
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| self.dialect.quote(&c.name))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE rowid = ?1",
            cols.join(", "),
            self.dialect.quote(&table.staging())
        );
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(|e| sql_err("read staged row", e))?;
        let decode: Vec<FieldType> = table.columns.iter().map(|c| c.decode).collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = stmt
                .query_row([id], |r| decode_row(r, &decode))
                .map_err(|e| sql_err("read staged row", e))?;
            out.push(row);
        }
        Ok(out)
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
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("{} {}", dialect.quote(&c.name), column_type(c.decode)))
            .collect();
        let key: Vec<String> = table.key.iter().map(|k| dialect.quote(k)).collect();
        let index = dialect.quote(&format!("{}__key", table.name));
        conn.execute_batch(&format!(
            "BEGIN;
             DROP TABLE IF EXISTS {live};
             CREATE TABLE {live} ({});
             CREATE INDEX {index} ON {live} ({});
             COMMIT;",
            cols.join(", "),
            key.join(", ")
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

/// A value bound without copying its text or bytes (staging writes every cell of an export).
struct Bind<'a>(&'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput;
        Ok(match self.0 {
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Binary(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            other => ToSqlOutput::Owned(to_sql(other)),
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
        .query(params_from_iter(params.iter().map(|p| Bind(&p.value))))
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

    #[test]
    fn staged_exports_swap_in_whole_and_values_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let t = table();
        let m = Mirror::open(&dir.path().join("m.db"), std::slice::from_ref(&t)).unwrap();
        assert_eq!(m.applied("prices").unwrap(), None);
        let ts =
            NaiveDateTime::parse_from_str("2026-03-29 02:30:00.5", "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let rows = vec![
            vec![
                Value::Text("B".into()),
                Value::Decimal(Decimal::from_str("12.50").unwrap()),
                Value::NaiveTimestamp(ts),
            ],
            vec![
                Value::Text("A".into()),
                Value::Decimal(Decimal::from_str("12345678901234567890.123").unwrap()),
                Value::Null,
            ],
            vec![
                Value::Text("C".into()),
                Value::Decimal(Decimal::from_str("-0.1").unwrap()),
                Value::Null,
            ],
        ];
        let mut s = m.stage(&t).unwrap();
        for r in &rows {
            s.insert(r).unwrap();
        }
        assert_eq!(s.finish().unwrap(), 3);
        let q = SelectQuery {
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
        };
        assert!(all(&m, &q).is_empty(), "nothing is served before the swap");
        m.swap(&t, "abc123", "P.csv", 3).unwrap();
        let got = all(&m, &q);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0][1],
            Value::Decimal(Decimal::from_str("12345678901234567890.123").unwrap())
        );
        assert_eq!(
            got[1],
            rows[0]
                .iter()
                .map(|v| match v {
                    Value::Decimal(d) => Value::Decimal(d.normalize()),
                    v => v.clone(),
                })
                .collect::<Vec<_>>()
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
        let got = all(&m, &q2);
        let skus: Vec<_> = got.iter().map(|r| r[0].clone()).collect();
        assert_eq!(skus, vec![Value::Text("A".into()), Value::Text("B".into())]);
        // A second export replaces the first whole.
        let mut s = m.stage(&t).unwrap();
        s.insert(&rows[2]).unwrap();
        s.finish().unwrap();
        m.swap(&t, "def456", "P2.csv", 1).unwrap();
        assert_eq!(all(&m, &q).len(), 1);
    }

    #[test]
    fn a_changed_layout_rebuilds_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let t = table();
        {
            let m = Mirror::open(&path, std::slice::from_ref(&t)).unwrap();
            let mut s = m.stage(&t).unwrap();
            s.insert(&[Value::Text("A".into()), Value::Null, Value::Null])
                .unwrap();
            s.finish().unwrap();
            m.swap(&t, "abc", "P.csv", 1).unwrap();
        }
        let m = Mirror::open(&path, std::slice::from_ref(&t)).unwrap();
        assert_eq!(m.applied("prices").unwrap().as_deref(), Some("abc"));
        let mut t2 = t.clone();
        t2.columns.pop();
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
