//! The SQLite state store: one file holding checkpoints, key state and the outbox, written by
//! one process at a time.
//!
//! ## Invariants
//!
//! - **One writer process.** [`SqliteStore::open`] holds an exclusive `flock` on `<db>.lock`
//!   for the store's lifetime; a second `open` (another process or this one) fails with
//!   [`StoreError::Locked`]. [`SqliteStore::open_read_only`] takes no lock and cannot commit.
//! - **One transaction per commit** (`BEGIN IMMEDIATE` on the single writer connection):
//!   events, checkpoint and state changes become visible together. `journal_mode=WAL` with
//!   `synchronous=FULL` makes a commit durable (fsynced) before [`Store::commit`] returns.
//! - **Gap-free outbox.** Commits are serialised by the writer connection, and each takes the
//!   numbers after `outbox_head.last_seq` and advances it in the same transaction, so every
//!   snapshot holds exactly the seqs `1..=last_seq` (minus a prefix, once retention exists).
//!   `last_seq` is stored rather than derived from `max(seq)` so removing the whole outbox
//!   can never make a number be reused.
//! - **Consistent reads.** Each read runs in one read transaction on a reader connection; WAL
//!   lets it proceed while a commit is being written, and it sees only whole commits.
//!
//! ## On-disk layout
//!
//! `<db>` (SQLite, WAL: `<db>-wal`, `<db>-shm`) and `<db>.lock`. Schema version in
//! `PRAGMA user_version` (see `schema`); all tables `STRICT`:
//!
//! | table | columns | notes |
//! |---|---|---|
//! | `checkpoints` | `resource` PK, `value` JSON text, `updated_at` RFC 3339 | one row per resource |
//! | `key_state` | (`resource`, `key` BLOB) PK, `hash` 16-byte BLOB, `version` | `WITHOUT ROWID`: ~40-byte rows clustered by key, what snapshot merges walk |
//! | `key_record` | (`resource`, `key`) PK, `record` JSON text | last record emitted per key, read only for changed keys |
//! | `outbox` | `seq` INTEGER PK (the rowid), `id`, `resource`, `type`, `source`, `subject`, `time` (RFC 3339, ns, `Z`), `data` JSON text | index `outbox_by_resource (resource, seq)` for filtered reads |
//! | `outbox_head` | `last_seq`, `pruned_through` | a single row: the highest seq ever assigned, and the highest removed by retention |
//! | `outbox_commit` | `last_seq` PK, `committed_at_ms` | when each commit happened, for retention by age |
//! | `subscription`, `delivery_parked`, `dead_letter`, `audit_log` | see `delivery` | delivery state (schema v2) |
//!
//! ## Concurrency
//!
//! Async methods run their SQLite work on `spawn_blocking`: commits on the writer connection
//! behind a `std::sync::Mutex` (never held across an `.await`), reads on a small pool of
//! read-only connections whose permits are awaited asynchronously. A read never blocks a
//! commit, and a commit blocks reads only for WAL's brief bookkeeping.
//!
//! A commit whose future is dropped may still complete: the blocking work is not
//! cancellable. Callers that lose the answer read `last_seq` or the checkpoint to find out.

mod delivery;
mod keys;
mod lock;
mod outbox;
mod schema;

#[cfg(test)]
mod delivery_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use super::{Appended, Commit, EventFilter, EventPage, KeyRecord, KeyState, Store, StoreError};
use crate::store::delivery::{
    AuditEntry, Control, DeadLetter, DeliveryCounts, DeliveryStore, DueEvent, Parked, Settlement,
    SubscriptionRow,
};

/// Reader connections per store: enough that a long-poll read and a snapshot merge do not
/// queue behind each other, few because each holds its own page cache.
const READERS: usize = 2;

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection; the store uses about a dozen.
const STATEMENT_CACHE: usize = 32;

/// The SQLite [`Store`]: the default, single-instance backend.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// For messages.
    path: String,
    /// Declared first so they close first, before the writer checkpoints the WAL on close.
    readers: Readers,
    /// `None` for a read-only store.
    writer: Option<Mutex<Connection>>,
    /// Declared last: released only after every connection is closed.
    _lock: Option<lock::ProcessLock>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("read_only", &self.inner.writer.is_none())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating file and directory) the store for capture, taking the process lock
    /// and migrating the schema. Blocking: call it at start-up or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_err(&shown, e))?;
        }
        let lock = lock::acquire(path)?;
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(&shown, e))?;
        configure(&writer).map_err(|e| open_err(&shown, e))?;
        // Before changing anything in the file (even its journal mode), make sure it is ours
        // to change.
        schema::check_not_newer(schema::version(&writer)?, &shown)?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| open_err(&shown, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(
                &shown,
                format!("journal_mode is {mode}, WAL is required"),
            ));
        }
        writer
            .pragma_update(None, "synchronous", "FULL")
            .and_then(|()| writer.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| open_err(&shown, e))?;
        schema::migrate(&mut writer, &shown)?;
        outbox::check_head(&writer)?;
        let readers = Readers::open(path, &shown)?;
        tracing::info!(path = %shown, version = schema::VERSION, "state store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: shown,
                readers,
                writer: Some(Mutex::new(writer)),
                _lock: Some(lock),
            }),
        })
    }

    /// Opens an existing store for inspection only, alongside a running `serve`: no lock, no
    /// migration, and [`Store::commit`] fails with [`StoreError::ReadOnly`].
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let readers = Readers::open(path, &shown)?;
        let found = readers.with_idle(schema::version)?;
        schema::check_not_newer(found, &shown)?;
        if found < schema::VERSION {
            return Err(open_err(
                &shown,
                format!(
                    "schema version {found}, this build reads {}; open it once for writing \
                     (legacy-bridge serve) to migrate it",
                    schema::VERSION
                ),
            ));
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: shown,
                readers,
                writer: None,
                _lock: None,
            }),
        })
    }

    /// Runs `work` on a reader connection, off the async threads.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Io("state store is closed".into()))?;
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let _permit = permit;
            let mut conn = inner.readers.take(&inner.path)?;
            let result = work(&mut conn);
            inner.readers.put_back(conn);
            result
        })
        .await
    }

    /// Runs `work` on the writer connection, off the async threads.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let Some(writer) = inner.writer.as_ref() else {
                return Err(StoreError::ReadOnly {
                    path: inner.path.clone(),
                });
            };
            let mut conn = writer.lock().unwrap_or_else(PoisonError::into_inner);
            if !conn.is_autocommit() {
                // Only after a panic mid-commit: its transaction was never finished.
                conn.execute_batch("ROLLBACK").map_err(sql_err)?;
            }
            work(&mut conn)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn checkpoint(&self, resource: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let resource = resource.to_owned();
        self.read(move |conn| read_checkpoint(conn, &resource))
            .await
    }

    async fn key_records(
        &self,
        resource: &str,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let resource = resource.to_owned();
        self.read(move |conn| keys::records(conn, &resource, &keys))
            .await
    }

    async fn key_state_page(
        &self,
        resource: &str,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyState>, StoreError> {
        let resource = resource.to_owned();
        self.read(move |conn| keys::page(conn, &resource, after.as_deref(), limit))
            .await
    }

    async fn key_count(&self, resource: &str) -> Result<u64, StoreError> {
        let resource = resource.to_owned();
        self.read(move |conn| keys::count(conn, &resource)).await
    }

    async fn commit(&self, commit: Commit) -> Result<Option<Appended>, StoreError> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let appended = outbox::append(&tx, &commit.events)?;
            if let Some(checkpoint) = &commit.checkpoint {
                write_checkpoint(&tx, &commit.resource, checkpoint)?;
            }
            keys::apply(&tx, &commit.resource, &commit.state)?;
            tx.commit().map_err(sql_err)?;
            tracing::debug!(
                resource = %commit.resource,
                events = commit.events.len(),
                state_changes = commit.state.len(),
                last_seq = appended.map(|a| a.last_seq),
                "state store commit"
            );
            Ok(appended)
        })
        .await
    }

    async fn events(
        &self,
        after: u64,
        limit: usize,
        filter: &EventFilter,
    ) -> Result<EventPage, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| outbox::read_page(conn, after, limit, &filter))
            .await
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.read(|conn| outbox::head(conn)).await
    }

    async fn pruned_through(&self) -> Result<u64, StoreError> {
        self.read(|conn| outbox::pruned_through(conn)).await
    }

    async fn prune(&self, older_than_ms: i64, max_rows: usize) -> Result<u64, StoreError> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let removed = outbox::prune(&tx, older_than_ms, max_rows)?;
            tx.commit().map_err(sql_err)?;
            Ok(removed)
        })
        .await
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn open_subscription(
        &self,
        name: &str,
        start: u64,
    ) -> Result<SubscriptionRow, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let row = delivery::open(&tx, &name, start)?;
            tx.commit().map_err(sql_err)?;
            Ok(row)
        })
        .await
    }

    async fn subscription(&self, name: &str) -> Result<Option<SubscriptionRow>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| delivery::get(conn, &name)).await
    }

    async fn subscription_rows(&self) -> Result<Vec<SubscriptionRow>, StoreError> {
        self.read(|conn| delivery::all(conn)).await
    }

    async fn advance(
        &self,
        name: &str,
        from: u64,
        to: u64,
        parked: Vec<Parked>,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let moved = delivery::advance(&tx, &name, from, to, &parked)?;
            tx.commit().map_err(sql_err)?;
            Ok(moved)
        })
        .await
    }

    async fn due(
        &self,
        name: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueEvent>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| delivery::due(conn, &name, now_ms, limit))
            .await
    }

    async fn next_due(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| delivery::next_due(conn, &name)).await
    }

    async fn parked_records(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| delivery::parked_records(conn, &name))
            .await
    }

    async fn settle(
        &self,
        name: &str,
        now_ms: i64,
        settled: Vec<(u64, Settlement)>,
    ) -> Result<Vec<String>, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let cleared = delivery::settle(&tx, &name, now_ms, &settled)?;
            tx.commit().map_err(sql_err)?;
            Ok(cleared)
        })
        .await
    }

    async fn control(
        &self,
        name: &str,
        actor: &str,
        control: Control,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let (name, actor) = (name.to_owned(), actor.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let touched = delivery::control(&tx, &name, &actor, &control, now_ms)?;
            tx.commit().map_err(sql_err)?;
            Ok(touched)
        })
        .await
    }

    async fn dead_letters(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| delivery::dead_letters(conn, &name, after, limit))
            .await
    }

    async fn delivery_counts(&self, name: &str) -> Result<DeliveryCounts, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| delivery::counts(conn, &name)).await
    }

    async fn audit_log(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn| delivery::audit_log(conn, before, limit))
            .await
    }
}

/// Read-only connections, handed out one per permit.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    path: std::path::PathBuf,
}

impl Readers {
    fn open(path: &Path, shown: &str) -> Result<Readers, StoreError> {
        let readers = Readers {
            idle: Mutex::new(Vec::with_capacity(READERS)),
            permits: Arc::new(Semaphore::new(READERS)),
            path: path.to_owned(),
        };
        // Open them now so a missing or unreadable file fails `open`, not the first read.
        let conns = (0..READERS)
            .map(|_| readers.connect(shown))
            .collect::<Result<Vec<_>, _>>()?;
        *readers.idle.lock().unwrap_or_else(PoisonError::into_inner) = conns;
        Ok(readers)
    }

    fn connect(&self, shown: &str) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(shown, e))?;
        configure(&conn).map_err(|e| open_err(shown, e))?;
        Ok(conn)
    }

    /// An idle connection, or a new one if a panic lost one. The caller holds a permit.
    fn take(&self, shown: &str) -> Result<Connection, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(shown),
        }
    }

    fn put_back(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }

    /// Runs `work` on an idle connection synchronously (during `open`).
    fn with_idle<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = idle
            .first()
            .ok_or_else(|| StoreError::Io("no reader connection".into()))?;
        work(conn)
    }
}

/// Settings every connection gets.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT)
}

fn read_checkpoint(
    conn: &Connection,
    resource: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let value: Option<String> = conn
        .prepare_cached("SELECT value FROM checkpoints WHERE resource = ?1")
        .and_then(|mut stmt| stmt.query_row([resource], |row| row.get(0)).optional())
        .map_err(sql_err)?;
    value
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                StoreError::Corrupt(format!("checkpoint of {resource} is not JSON: {e}"))
            })
        })
        .transpose()
}

fn write_checkpoint(
    conn: &Connection,
    resource: &str,
    value: &serde_json::Value,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(value)
        .map_err(|e| StoreError::Rejected(format!("checkpoint does not serialise: {e}")))?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    conn.prepare_cached(
        "INSERT INTO checkpoints (resource, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (resource) DO UPDATE
         SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .and_then(|mut stmt| stmt.execute(params![resource, text, now]))
    .map_err(sql_err)?;
    Ok(())
}

/// Runs blocking SQLite work on tokio's blocking pool. A panic in it is a bug and is
/// re-raised in the caller rather than turned into an error.
async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Io(format!("state store task cancelled: {e}"))),
    }
}

/// Sorts SQLite failures by what the caller should do: a damaged file or undecodable value
/// needs an operator, a schema constraint means the commit itself was wrong, anything else
/// (busy, I/O, full disk) may pass on retry.
fn sql_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            ErrorCode::ConstraintViolation | ErrorCode::TooBig => {
                StoreError::Rejected(e.to_string())
            }
            _ => StoreError::Io(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Io(e.to_string()),
    }
}

fn open_err(path: &str, reason: impl fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// A number about to be written; SQLite integers are signed.
fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Rejected(format!("{what} {value} exceeds the store's range")))
}

/// A number read back; negative means the file was written by something else.
fn from_i64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}: {value}")))
}
