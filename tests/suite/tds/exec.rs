//! Runs translated statements on a session's own SQLite connection: transactions (BEGIN TRAN,
//! COMMIT, ROLLBACK, savepoints; each write outside a transaction is its own transaction),
//! result sets typed from declared types, hints or values, row counts, and SQLite errors
//! turned into SQL Server's numbers. Isolation is SQLite's WAL snapshot: a transaction reads
//! one snapshot from its first read on, whatever isolation level was set.

use std::path::Path;
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode};

use super::capture;
use super::catalog::{Catalog, split_name};
use super::rpc::Param;
use super::sql::{self, Ctx, DmlKind, SetOption, SqlError, Statement, Translated};
use super::tokens::{self, ColumnMeta};
use super::types::{SqlType, guid_text};

/// How `__lb_norm` passes a SQL Server error through SQLite: `SQLSERVER:<number>:<message>`.
const SQLSERVER_ERROR: &str = "SQLSERVER:";

/// Opens a harness connection to the database file: WAL, a busy timeout, and the collation and
/// functions translated SQL uses.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // SQL_Latin1_General_CP1_CI_AS: case-insensitive, trailing spaces ignored
    conn.create_collation("TSQL", |a, b| {
        let a = a.trim_end_matches(' ').to_lowercase();
        let b = b.trim_end_matches(' ').to_lowercase();
        a.cmp(&b)
    })?;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("__lb_int", 1, flags, |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(r) => Value::Integer(r.trunc() as i64),
            ValueRef::Text(t) => match std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
            {
                Some(f) => Value::Integer(f.trunc() as i64),
                None => Value::Null,
            },
            ValueRef::Blob(b) => {
                let tail = &b[b.len().saturating_sub(8)..];
                let mut a = [0u8; 8];
                a[8 - tail.len()..].copy_from_slice(tail);
                Value::Integer(i64::from_be_bytes(a))
            }
        })
    })?;
    conn.create_scalar_function("__lb_bin", 3, flags, |ctx| {
        let n = usize::try_from(ctx.get::<i64>(1)?).unwrap_or(0);
        let fixed = ctx.get::<i64>(2)? != 0;
        let mut bytes = match ctx.get_raw(0) {
            ValueRef::Null => return Ok(Value::Null),
            ValueRef::Integer(i) => {
                let be = i.to_be_bytes().to_vec();
                if n > 0 && n < 8 {
                    be[8 - n..].to_vec()
                } else {
                    be
                }
            }
            ValueRef::Real(r) => r.to_be_bytes().to_vec(),
            ValueRef::Text(t) => t.to_vec(),
            ValueRef::Blob(b) => b.to_vec(),
        };
        if n > 0 {
            if bytes.len() > n {
                bytes.truncate(n);
            } else if fixed && bytes.len() < n {
                bytes.resize(n, 0);
            }
        }
        Ok(Value::Blob(bytes))
    })?;
    // a value written to a column, converted to the column's type (SQL Server's errors kept)
    conn.create_scalar_function("__lb_norm", 2, flags, |ctx| {
        let decl: String = ctx.get(1)?;
        let ty = SqlType::parse(&decl).ok_or_else(|| {
            rusqlite::Error::UserFunctionError(format!("unknown type {decl}").into())
        })?;
        ty.normalize(ctx.get::<Value>(0)?).map_err(|e| {
            rusqlite::Error::UserFunctionError(
                format!("{SQLSERVER_ERROR}{}:{}", e.number, e.message).into(),
            )
        })
    })?;
    conn.create_scalar_function("__lb_newid", 0, FunctionFlags::SQLITE_UTF8, |_| {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0F) | 0x40;
        b[8] = (b[8] & 0x3F) | 0x80;
        Ok(guid_text(b))
    })?;
    Ok(conn)
}

/// What a statement produced.
#[derive(Debug)]
pub enum Outcome {
    Rows {
        columns: Vec<ColumnMeta>,
        rows: Vec<Vec<Value>>,
    },
    Affected {
        cmd: u16,
        rows: u64,
    },
    /// A transaction began (ENVCHANGE 8 with this descriptor).
    Began([u8; 8]),
    Committed([u8; 8]),
    RolledBack([u8; 8]),
    /// SET options, savepoints, nested BEGIN/COMMIT: no token of their own.
    Nothing,
    /// WAITFOR DELAY (slept by the session, which can be cancelled meanwhile).
    Wait(Duration),
}

/// A session's SQLite side.
pub struct Engine {
    conn: Connection,
    catalog: Catalog,
    schema_version: i64,
    tracked: Vec<String>,
    pub spid: u16,
    pub trancount: u32,
    pub nocount: bool,
    pub isolation: String,
    rowcount: i64,
    descriptor: u64,
    database: String,
}

impl Engine {
    pub fn open(path: &Path, spid: u16, database: &str) -> Result<Engine, SqlError> {
        let conn = open(path)
            .and_then(|c| {
                // "x" is an identifier, never a string (SQLite's fallback would hide error 207)
                c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
                Ok(c)
            })
            .map_err(|e| SqlError::new(4060, format!("Cannot open database: {e}")))?;
        let mut engine = Engine {
            conn,
            catalog: Catalog::default(),
            schema_version: -1,
            tracked: Vec::new(),
            spid,
            trancount: 0,
            nocount: false,
            isolation: "READ COMMITTED".into(),
            rowcount: 0,
            descriptor: u64::from(spid) << 32,
            database: database.to_owned(),
        };
        engine.refresh().map_err(|e| map_error(&e))?;
        Ok(engine)
    }

    /// Re-reads the schema when it changed; outside a transaction also installs triggers of
    /// new rowversion or tracked tables.
    pub fn refresh(&mut self) -> rusqlite::Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        if version != self.schema_version {
            self.catalog = Catalog::load(&self.conn)?;
            self.schema_version = version;
            if self.trancount == 0 {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let synced = capture::sync(&self.conn, &self.catalog);
                match synced {
                    Ok(()) => self.conn.execute_batch("COMMIT")?,
                    Err(e) => {
                        let _ = self.conn.execute_batch("ROLLBACK");
                        return Err(e);
                    }
                }
                self.catalog = Catalog::load(&self.conn)?;
                self.schema_version = self
                    .conn
                    .query_row("PRAGMA schema_version", [], |r| r.get(0))?;
            }
        }
        self.tracked = capture::tracked(&self.conn)?;
        Ok(())
    }

    fn ctx<'a>(&'a self, params: &'a [Param], min_reserved_rv: Option<i64>) -> Ctx<'a> {
        Ctx {
            catalog: &self.catalog,
            params,
            tracked: &self.tracked,
            trancount: self.trancount,
            spid: self.spid,
            rowcount: self.rowcount,
            min_reserved_rv,
        }
    }

    /// Parses a batch and checks every statement translates (nothing runs when one does not).
    pub fn prepare(&mut self, text: &str, params: &[Param]) -> Result<Vec<Statement>, SqlError> {
        self.refresh().map_err(|e| map_error(&e))?;
        let stmts = sql::parse_batch(text)?;
        let ctx = self.ctx(params, None);
        for s in &stmts {
            if matches!(s, Statement::Query(_) | Statement::Dml(..)) {
                sql::translate(s, &ctx)?;
            }
        }
        Ok(stmts)
    }

    /// Runs one statement.
    pub fn execute(
        &mut self,
        stmt: &Statement,
        params: &[Param],
        min_reserved_rv: Option<i64>,
    ) -> Result<Outcome, SqlError> {
        let out = match stmt {
            Statement::Set(SetOption::NoCount(on)) => {
                self.nocount = *on;
                Outcome::Nothing
            }
            Statement::Set(SetOption::Isolation(level)) => {
                self.isolation = level.clone();
                Outcome::Nothing
            }
            Statement::Set(SetOption::Other) => Outcome::Nothing,
            Statement::WaitFor(d) => Outcome::Wait(*d),
            Statement::Begin => self.begin()?,
            Statement::Commit => self.commit()?,
            Statement::Rollback(None) => self.rollback()?,
            Statement::Rollback(Some(savepoint)) => {
                if self.trancount == 0 {
                    return Err(no_tran(3903, "ROLLBACK"));
                }
                self.batch(&format!("ROLLBACK TO {}", super::catalog::quote(savepoint)))?;
                Outcome::Nothing
            }
            Statement::Save(name) => {
                if self.trancount == 0 {
                    return Err(SqlError::new(
                        628,
                        "Cannot issue SAVE TRANSACTION when there is no active transaction.",
                    ));
                }
                self.batch(&format!("SAVEPOINT {}", super::catalog::quote(name)))?;
                Outcome::Nothing
            }
            Statement::Query(_) => {
                let t = sql::translate(stmt, &self.ctx(params, min_reserved_rv))?;
                self.query(&t, params)?
            }
            Statement::Dml(kind, _) => {
                let t = sql::translate(stmt, &self.ctx(params, min_reserved_rv))?;
                self.dml(*kind, &t, params)?
            }
        };
        if let Outcome::Rows { rows, .. } = &out {
            self.rowcount = rows.len() as i64;
        }
        Ok(out)
    }

    fn batch(&self, sql: &str) -> Result<(), SqlError> {
        self.conn.execute_batch(sql).map_err(|e| map_error(&e))
    }

    fn next_descriptor(&mut self) -> [u8; 8] {
        self.descriptor += 1;
        self.descriptor.to_le_bytes()
    }

    fn current_descriptor(&self) -> [u8; 8] {
        self.descriptor.to_le_bytes()
    }

    pub fn begin(&mut self) -> Result<Outcome, SqlError> {
        self.trancount += 1;
        if self.trancount > 1 {
            return Ok(Outcome::Nothing);
        }
        if let Err(e) = self.batch("BEGIN") {
            self.trancount = 0;
            return Err(e);
        }
        Ok(Outcome::Began(self.next_descriptor()))
    }

    pub fn commit(&mut self) -> Result<Outcome, SqlError> {
        match self.trancount {
            0 => Err(no_tran(3902, "COMMIT")),
            1 => {
                let done = capture::before_commit(&self.conn)
                    .map_err(|e| map_error(&e))
                    .and_then(|()| self.batch("COMMIT"));
                self.trancount = 0;
                if let Err(e) = done {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
                Ok(Outcome::Committed(self.current_descriptor()))
            }
            _ => {
                self.trancount -= 1;
                Ok(Outcome::Nothing)
            }
        }
    }

    pub fn rollback(&mut self) -> Result<Outcome, SqlError> {
        if self.trancount == 0 {
            return Err(no_tran(3903, "ROLLBACK"));
        }
        self.trancount = 0;
        let _ = self.conn.execute_batch("ROLLBACK");
        Ok(Outcome::RolledBack(self.current_descriptor()))
    }

    /// Rolls back an open transaction (the deadlock fault does); returns its descriptor.
    pub fn abort_transaction(&mut self) -> Option<[u8; 8]> {
        if self.trancount == 0 {
            return None;
        }
        self.trancount = 0;
        let _ = self.conn.execute_batch("ROLLBACK");
        Some(self.current_descriptor())
    }

    fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<(), SqlError> {
        for i in 1..=stmt.parameter_count() {
            if let Some(p) = params.get(i - 1) {
                stmt.raw_bind_parameter(i, &p.value)
                    .map_err(|e| map_error(&e))?;
            }
        }
        Ok(())
    }

    fn query(&mut self, t: &Translated, params: &[Param]) -> Result<Outcome, SqlError> {
        for view in &t.views {
            view.materialize(&self.conn, &self.catalog, &self.database)
                .map_err(|e| map_error(&e))?;
        }
        let mut stmt = self
            .conn
            .prepare_cached(&t.sql)
            .map_err(|e| map_error(&e))?;
        Self::bind(&mut stmt, params)?;
        let n = stmt.column_count();
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let decls: Vec<Option<SqlType>> = stmt
            .columns()
            .map(|c| c.decl_type().and_then(SqlType::parse))
            .collect();
        let not_null: Vec<bool> = (0..n)
            .map(|i| matches!(stmt.column_metadata(i), Ok(Some(m)) if m.5))
            .collect();
        let mut rows = Vec::new();
        {
            let mut q = stmt.raw_query();
            while let Some(row) = q.next().map_err(|e| map_error(&e))? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(row.get::<_, Value>(i).map_err(|e| map_error(&e))?);
                }
                rows.push(values);
            }
        }
        let items = expand_items(&t.items, n);
        let mut columns = Vec::with_capacity(n);
        for i in 0..n {
            let item = items.get(i).and_then(|x| x.as_ref());
            let name = item
                .and_then(|x| x.name.clone())
                .unwrap_or_else(|| names[i].clone());
            let hint = item.and_then(|x| x.hint);
            let has_null = rows.iter().any(|r| matches!(r[i], Value::Null));
            let ty = hint
                .or(decls[i])
                .or_else(|| sql::type_by_name(&names[i]))
                .unwrap_or_else(|| SqlType::infer(rows.iter().map(|r| &r[i])));
            let declared_not_null = decls[i].is_some() && not_null[i];
            columns.push(ColumnMeta {
                name,
                ty,
                nullable: has_null || !declared_not_null,
            });
        }
        Ok(Outcome::Rows { columns, rows })
    }

    fn dml(
        &mut self,
        kind: DmlKind,
        t: &Translated,
        params: &[Param],
    ) -> Result<Outcome, SqlError> {
        let autocommit = self.trancount == 0;
        if autocommit {
            self.batch("BEGIN IMMEDIATE")?;
        }
        let run = |conn: &Connection| -> Result<usize, SqlError> {
            let mut stmt = conn.prepare_cached(&t.sql).map_err(|e| map_error(&e))?;
            Self::bind(&mut stmt, params)?;
            stmt.raw_execute()
                .map_err(|e| map_error_on(&e, t.target.as_deref(), kind))
        };
        let result = run(&self.conn);
        let result = match result {
            Ok(n) if autocommit => capture::before_commit(&self.conn)
                .map_err(|e| map_error(&e))
                .and_then(|()| self.batch("COMMIT"))
                .map(|()| n),
            other => other,
        };
        let rows = match result {
            Ok(n) => n,
            Err(e) => {
                if autocommit {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                return Err(e);
            }
        };
        self.rowcount = rows as i64;
        let cmd = match kind {
            DmlKind::Insert => tokens::CMD_INSERT,
            DmlKind::Update => tokens::CMD_UPDATE,
            DmlKind::Delete => tokens::CMD_DELETE,
        };
        Ok(Outcome::Affected {
            cmd,
            rows: rows as u64,
        })
    }
}

/// Lines the select-list items up with the result columns (a single `*` item takes the
/// columns the other items leave; with several, items after the first star get none).
fn expand_items(items: &[sql::Item], n: usize) -> Vec<Option<sql::Item>> {
    let stars = items.iter().filter(|i| i.star).count();
    let mut out: Vec<Option<sql::Item>> = vec![None; n];
    match stars {
        0 => {
            for (i, item) in items.iter().enumerate().take(n) {
                out[i] = Some(item.clone());
            }
        }
        1 => {
            let star = items.iter().position(|i| i.star).unwrap_or(0);
            for (i, item) in items[..star].iter().enumerate().take(n) {
                out[i] = Some(item.clone());
            }
            let after = &items[star + 1..];
            for (k, item) in after.iter().enumerate() {
                if let Some(slot) = (n + k)
                    .checked_sub(after.len())
                    .and_then(|i| out.get_mut(i))
                {
                    *slot = Some(item.clone());
                }
            }
        }
        _ => {
            let first = items.iter().position(|i| i.star).unwrap_or(0);
            for (i, item) in items[..first].iter().enumerate().take(n) {
                out[i] = Some(item.clone());
            }
        }
    }
    out
}

fn no_tran(number: u32, what: &str) -> SqlError {
    SqlError::new(
        number,
        format!("The {what} TRANSACTION request has no corresponding BEGIN TRANSACTION."),
    )
}

/// SQLite's error as SQL Server would report it.
pub fn map_error(e: &rusqlite::Error) -> SqlError {
    map_error_on(e, None, DmlKind::Insert)
}

fn map_error_on(e: &rusqlite::Error, table: Option<&str>, kind: DmlKind) -> SqlError {
    let (code, extended, msg) = match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            (f.code, f.extended_code, msg.clone().unwrap_or_default())
        }
        rusqlite::Error::SqlInputError { error, msg, .. } => {
            (error.code, error.extended_code, msg.clone())
        }
        other => return SqlError::new(50000, format!("TDS harness: {other}")),
    };
    if let Some((number, message)) = msg
        .strip_prefix(SQLSERVER_ERROR)
        .and_then(|m| m.split_once(':'))
        && let Ok(number) = number.parse()
    {
        return SqlError::new(number, message);
    }
    let object = table
        .map(|t| {
            let (schema, name) = split_name(t);
            format!("{schema}.{name}")
        })
        .unwrap_or_default();
    let verb = match kind {
        DmlKind::Insert => "INSERT",
        DmlKind::Update => "UPDATE",
        DmlKind::Delete => "DELETE",
    };
    if let Some(rest) = msg.strip_prefix("no such column: ") {
        return SqlError::new(
            207,
            format!(
                "Invalid column name '{}'.",
                rest.rsplit('.').next().unwrap_or(rest)
            ),
        );
    }
    if let Some(rest) = msg.strip_prefix("no such table: ") {
        return SqlError::new(208, format!("Invalid object name '{rest}'."));
    }
    if let Some(rest) = msg.strip_prefix("no such function: ") {
        return SqlError::new(
            195,
            format!("'{rest}' is not a recognized built-in function name."),
        );
    }
    if let Some(rest) = msg.strip_prefix("ambiguous column name: ") {
        return SqlError::new(209, format!("Ambiguous column name '{rest}'."));
    }
    if let Some(rest) = msg.strip_prefix("near \"")
        && let Some(near) = rest.split('"').next()
    {
        return SqlError::syntax(near);
    }
    match code {
        ErrorCode::ConstraintViolation if msg.starts_with("NOT NULL") => {
            let column = msg.rsplit('.').next().unwrap_or("");
            SqlError::new(
                515,
                format!(
                    "Cannot insert the value NULL into column '{column}', table '{object}'; column does not allow nulls. {verb} fails."
                ),
            )
        }
        ErrorCode::ConstraintViolation if msg.starts_with("UNIQUE") => SqlError::with_class(
            2627,
            14,
            format!(
                "Violation of PRIMARY KEY constraint. Cannot insert duplicate key in object '{object}'."
            ),
        ),
        ErrorCode::ConstraintViolation => SqlError::new(
            547,
            format!("The {verb} statement conflicted with a constraint: {msg}"),
        ),
        ErrorCode::DatabaseBusy if extended == 517 => SqlError::new(
            3960,
            "Snapshot isolation transaction aborted due to update conflict. Retry the transaction or change the isolation level.",
        ),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            SqlError::new(1222, "Lock request time out period exceeded.")
        }
        _ => SqlError::new(50000, format!("TDS harness (SQLite): {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_errors_map_to_sql_server_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite")).unwrap();
        conn.execute_batch("CREATE TABLE t (a INT NOT NULL PRIMARY KEY)")
            .unwrap();
        let err = |sql: &str| {
            map_error_on(
                &conn.execute_batch(sql).unwrap_err(),
                Some("dbo.t"),
                DmlKind::Insert,
            )
            .number
        };
        assert_eq!(err("SELECT nope FROM t"), 207);
        assert_eq!(err("SELECT nothing_at_all()"), 195);
        assert_eq!(err("INSERT INTO t VALUES (NULL)"), 515);
        conn.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        assert_eq!(err("INSERT INTO t VALUES (1)"), 2627);
        assert_eq!(err("SELECT FROM FROM"), 102);
    }

    #[test]
    fn text_keys_get_an_index_in_the_server_collation() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite")).unwrap();
        capture::ensure_state(&conn).unwrap();
        conn.execute_batch("CREATE TABLE [dbo.t] (k NCHAR(10) NOT NULL PRIMARY KEY, v INT)")
            .unwrap();
        capture::sync(&conn, &Catalog::load(&conn).unwrap()).unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT v FROM \"dbo.t\" WHERE k = ('x' COLLATE TSQL)",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("USING INDEX __lb_ci:"), "{plan}");
    }

    #[test]
    fn conversion_functions() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("db.sqlite")).unwrap();
        let v: Vec<u8> = conn
            .query_row("SELECT __lb_bin(2001, 8, 1)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, vec![0, 0, 0, 0, 0, 0, 0x07, 0xD1]);
        let i: i64 = conn
            .query_row("SELECT __lb_int(X'00000000000007D1')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(i, 2001);
        let eq: bool = conn
            .query_row("SELECT 'abc  ' = ('ABC' COLLATE TSQL)", [], |r| r.get(0))
            .unwrap();
        assert!(eq);
    }
}
