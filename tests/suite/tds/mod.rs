//! A TDS 7.4 server for tests that answers from SQLite, so the `mssql` source can be tested
//! where no SQL Server can be installed. tiberius connects to it like to SQL Server (no TLS:
//! `encrypt=DANGER_PLAINTEXT`), logs in with SQL authentication, and runs SQL batches and
//! `sp_executesql` RPCs in the T-SQL subset of `README.md`; faults can be injected. It is not a
//! SQL Server: read `README.md` for what it emulates and what it does not.
//!
//! ```ignore
//! let server = TdsServer::start(None, TdsOptions::default());
//! server.execute("CREATE TABLE [dbo.stock] (sku NCHAR(10) NOT NULL PRIMARY KEY, qty INT, rv ROWVERSION)");
//! let config = tiberius::Config::from_ado_string(&server.connection_string())?;
//! ```

mod capture;
mod catalog;
mod exec;
mod faults;
mod lexer;
mod login;
mod packet;
mod prelogin;
mod request;
mod rpc;
mod session;
mod sql;
mod tokens;
mod types;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::types::Value;

pub use faults::TdsStats;

/// Login settings of a harness server.
#[derive(Debug, Clone)]
pub struct TdsOptions {
    pub user: String,
    pub password: String,
    /// The one database the server has (logins may name it or none).
    pub database: String,
}

impl Default for TdsOptions {
    fn default() -> Self {
        TdsOptions {
            user: "bridge_reader".into(),
            password: "Harness-Pa55word".into(),
            database: "legacy".into(),
        }
    }
}

/// State shared by the server's connections.
struct Shared {
    options: TdsOptions,
    db_path: PathBuf,
    faults: faults::Faults,
    counters: faults::Counters,
    next_spid: AtomicU16,
    /// Rowversions held by in-flight transactions a test opened (id -> value).
    reserved: Mutex<BTreeMap<u64, i64>>,
    next_reservation: AtomicU64,
    /// The harness' own connection (setup SQL, change-tracking and rowversion scenarios).
    admin: Mutex<Connection>,
    /// Why the last connection closed for a protocol error.
    last_protocol_error: Mutex<Option<String>>,
}

impl Shared {
    fn min_reserved_rowversion(&self) -> Option<i64> {
        lock(&self.reserved).values().min().copied()
    }

    fn admin(&self) -> MutexGuard<'_, Connection> {
        lock(&self.admin)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The listener thread of a running server.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// A TDS server on 127.0.0.1 answering from a SQLite database.
pub struct TdsServer {
    shared: Arc<Shared>,
    port: u16,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
}

impl TdsServer {
    /// Starts a server on a free loopback port over the SQLite database at `db`, or over a
    /// fresh private database when `None` (a temp file rather than `:memory:`, so that every
    /// connection can have its own SQLite connection and snapshot).
    pub fn start(db: Option<&Path>, options: TdsOptions) -> TdsServer {
        let (dir, db_path) = match db {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let dir = tempfile::tempdir().expect("temp dir for the TDS harness database");
                let path = dir.path().join("legacy.sqlite");
                (Some(dir), path)
            }
        };
        let admin = exec::open(&db_path).expect("open the TDS harness database");
        capture::ensure_state(&admin).expect("create the TDS harness state tables");
        let shared = Arc::new(Shared {
            options,
            db_path,
            faults: faults::Faults::default(),
            counters: faults::Counters::default(),
            next_spid: AtomicU16::new(51),
            reserved: Mutex::new(BTreeMap::new()),
            next_reservation: AtomicU64::new(1),
            admin: Mutex::new(admin),
            last_protocol_error: Mutex::new(None),
        });
        let mut server = TdsServer {
            shared,
            port: 0,
            running: None,
            _dir: dir,
        };
        server.listen(0);
        server
    }

    fn listen(&mut self, port: u16) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("tds-harness".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("tds-harness-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(accept_loop(port, shared, ready_tx, stop_rx));
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .expect("spawn the TDS harness thread");
        let port = ready_rx
            .recv()
            .expect("TDS harness thread ended before listening")
            .expect("bind the TDS harness port");
        self.port = port;
        self.running = Some(Running { stop, thread });
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// An ADO.NET connection string tiberius accepts (`Config::from_ado_string`):
    /// `encrypt=DANGER_PLAINTEXT` asks for no TLS both with and without tiberius' TLS features.
    pub fn connection_string(&self) -> String {
        let o = &self.shared.options;
        format!(
            "server=tcp:127.0.0.1,{};user={};password={};database={};encrypt=DANGER_PLAINTEXT",
            self.port,
            ado_value(&o.user),
            ado_value(&o.password),
            ado_value(&o.database)
        )
    }

    /// Stops listening and closes every connection (the database stays for [`Self::restart`]).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            let _ = running.thread.join();
        }
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.listen(self.port);
    }

    /// Runs SQL directly on SQLite (setup, or a "legacy application" writing), in one
    /// transaction; then installs the triggers of new rowversion tables and stamps their rows.
    /// `(MAX)` in declared types becomes `(-1)` (SQLite rejects `MAX` there; the harness reads
    /// `-1` as MAX). Panics on error (test setup).
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.try_execute(sql) {
            panic!("TDS harness setup SQL failed: {e}\n{sql}");
        }
    }

    /// [`Self::execute`] returning the error.
    pub fn try_execute(&self, sql: &str) -> Result<(), String> {
        let conn = self.shared.admin();
        run_in_transaction(&conn, |conn| {
            conn.execute_batch(&max_lengths(sql))?;
            capture::sync(conn, &catalog::Catalog::load(conn)?)
        })
        .map_err(|e| e.to_string())
    }

    /// Rows of a query run directly on SQLite (the storage form, see README.md).
    pub fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let conn = self.shared.admin();
        let mut stmt = conn.prepare(sql).expect("prepare harness query");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .expect("run harness query");
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .expect("read harness query")
    }

    // ---- faults --------------------------------------------------------------------

    /// The next login fails with 18456 whatever its credentials.
    pub fn fail_next_login(&self) {
        self.shared.faults.fail_next_login();
    }

    /// The next response that would send more than `rows` rows sends `rows` of them and then
    /// drops the connection (no DONE, no end of message).
    pub fn drop_connection_after_rows(&self, rows: u64) {
        self.shared.faults.drop_after_rows(rows);
    }

    /// Delays every response by `delay` (`Duration::ZERO` to stop). An ATTENTION during the
    /// delay cancels the request.
    pub fn delay_responses(&self, delay: Duration) {
        self.shared.faults.set_delay(delay);
    }

    /// The next `requests` SQL batches or RPCs fail with 1205 (deadlock victim), rolling back an
    /// open transaction; later ones run normally.
    pub fn deadlock_next(&self, requests: u32) {
        self.shared.faults.deadlock_next(requests);
    }

    /// While on, new connections are reset right after they are accepted.
    pub fn refuse_connections(&self, refuse: bool) {
        self.shared.faults.set_refuse(refuse);
    }

    // ---- counters ------------------------------------------------------------------

    pub fn stats(&self) -> TdsStats {
        self.shared.counters.snapshot()
    }

    /// Successful logins so far.
    pub fn login_count(&self) -> u64 {
        self.stats().logins
    }

    /// Why the last connection closed for malformed input.
    pub fn last_protocol_error(&self) -> Option<String> {
        lock(&self.shared.last_protocol_error).clone()
    }

    /// SQL batches and RPCs so far.
    pub fn batch_count(&self) -> u64 {
        let s = self.stats();
        s.batches + s.rpcs
    }

    // ---- capture scenarios -----------------------------------------------------------

    /// Enables change tracking on `table` (T-SQL name, e.g. `dbo.stock`).
    pub fn enable_change_tracking(&self, table: &str) {
        self.on_table(table, "enable change tracking on", |conn, catalog, t| {
            capture::enable_tracking(conn, catalog, t)
        });
    }

    /// Purges the change-tracking history of `table` up to the current version, so its min
    /// valid version rises to it (clients that synced before now see an expired version).
    /// Returns the new min valid version.
    pub fn cleanup_change_tracking(&self, table: &str) -> i64 {
        self.on_table(table, "clean up change tracking of", |conn, _, t| {
            capture::cleanup(conn, t, None)
        })
    }

    /// Runs `f` on the table `table` names (T-SQL spelling) in one transaction; panics with
    /// `what` and the reason when there is no such table or `f` fails.
    fn on_table<T: Default>(
        &self,
        table: &str,
        what: &str,
        f: impl FnOnce(&Connection, &catalog::Catalog, &catalog::Table) -> Result<T, String>,
    ) -> T {
        let conn = self.shared.admin();
        let mut out = T::default();
        let result = run_in_transaction(&conn, |conn| {
            let catalog = catalog::Catalog::load(conn)?;
            let parts: Vec<String> = table
                .split('.')
                .map(|p| p.trim_matches(['[', ']']).to_owned())
                .collect();
            let Some(t) = catalog.resolve(&parts) else {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "no table {table}"
                )));
            };
            out = f(conn, &catalog, t).map_err(rusqlite::Error::InvalidParameterName)?;
            Ok(())
        });
        if let Err(e) = result {
            panic!("{what} {table}: {e}");
        }
        out
    }

    /// `CHANGE_TRACKING_CURRENT_VERSION()`.
    pub fn change_tracking_version(&self) -> Option<i64> {
        capture::ct_version(&self.shared.admin()).expect("read the change tracking version")
    }

    /// `@@DBTS`.
    pub fn dbts(&self) -> i64 {
        capture::dbts(&self.shared.admin()).expect("read @@DBTS")
    }

    /// Opens an "in-flight transaction": reserves the next rowversion, which stays invisible
    /// (`MIN_ACTIVE_ROWVERSION()` returns it) until the transaction commits or is dropped.
    pub fn hold_rowversion(&self) -> InflightRowversion {
        let value =
            capture::reserve_rowversion(&self.shared.admin()).expect("reserve a rowversion");
        let id = self.shared.next_reservation.fetch_add(1, Ordering::SeqCst);
        lock(&self.shared.reserved).insert(id, value);
        InflightRowversion {
            shared: self.shared.clone(),
            id,
            value,
        }
    }
}

impl Drop for TdsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A rowversion held by a test's in-flight transaction.
pub struct InflightRowversion {
    shared: Arc<Shared>,
    id: u64,
    value: i64,
}

impl InflightRowversion {
    /// The reserved rowversion.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Commits the transaction: runs `sql` (writes directly on SQLite) with every row it writes
    /// stamped with the reserved rowversion, then releases the reservation.
    pub fn commit(self, sql: &str) {
        let conn = self.shared.admin();
        let result = run_in_transaction(&conn, |conn| {
            capture::set_override(conn, Some(self.value))?;
            conn.execute_batch(sql)?;
            capture::set_override(conn, None)
        });
        drop(conn);
        if let Err(e) = result {
            panic!("in-flight transaction commit failed: {e}\n{sql}");
        }
    }
}

impl Drop for InflightRowversion {
    fn drop(&mut self) {
        lock(&self.shared.reserved).remove(&self.id);
    }
}

/// Runs `f` in a write transaction that assigns change-tracking versions before COMMIT.
fn run_in_transaction(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = f(conn).and_then(|()| capture::before_commit(conn));
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Rewrites `(MAX)` outside string literals to `(-1)`.
fn max_lengths(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            in_string = !in_string;
        } else if !in_string && c == '(' {
            let inner: String = rest[1..].chars().take_while(|ch| *ch != ')').collect();
            if inner.trim().eq_ignore_ascii_case("max") && rest[1 + inner.len()..].starts_with(')')
            {
                out.push_str("(-1)");
                rest = &rest[inner.len() + 2..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Quotes an ADO.NET connection-string value when it needs it.
fn ado_value(v: &str) -> String {
    if v.contains([';', '\'', '"', '{', '}', '=']) || v.trim() != v {
        format!("'{}'", v.replace('\'', "''"))
    } else {
        v.to_owned()
    }
}

async fn accept_loop(
    port: u16,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<std::io::Result<u16>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let bound = (|| {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
        socket.listen(128)
    })();
    let listener = match bound.and_then(|l| l.local_addr().map(|a| (l, a.port()))) {
        Ok((listener, port)) => {
            let _ = ready.send(Ok(port));
            listener
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                faults::Counters::bump(&shared.counters.connections);
                if shared.faults.refusing() {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    continue;
                }
                tokio::spawn(session::serve(stream, shared.clone()));
            }
        }
    }
}
