//! A small bounded ODBC connection pool. A semaphore caps concurrent legacy queries; waiting
//! for a permit is bounded (then the caller gets `Saturated`, which the API turns into 503 +
//! Retry-After); the driver work itself runs on tokio's blocking threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use odbc_api::{Connection, ConnectionOptions};
use tokio::sync::Semaphore;

use crate::source::{SourceError, SourceErrorKind};

/// Seconds a login may take before the driver gives up.
const LOGIN_TIMEOUT_SECS: u32 = 5;

pub(super) struct Pool {
    name: String,
    connection_string: String,
    idle: Mutex<Vec<Connection<'static>>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
    query_timeout_secs: usize,
}

impl Pool {
    pub(super) fn new(
        name: &str,
        connection_string: String,
        max_connections: usize,
        acquire_timeout: Duration,
        query_timeout_secs: u64,
    ) -> Self {
        Self {
            name: name.to_owned(),
            connection_string,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max_connections)),
            acquire_timeout,
            query_timeout_secs: usize::try_from(query_timeout_secs).unwrap_or(usize::MAX),
        }
    }

    /// Runs `work` on a pooled connection in a blocking thread. `work` gets the per-query
    /// timeout in seconds. A connection that turns out dead is discarded with every other idle
    /// one (a restarted server kills them all) and the work is retried once on a fresh one,
    /// which is safe because queries only read and the two writes (pruning
    /// exact change-log ids, trigger DDL that drops and re-creates) can be repeated.
    pub(super) async fn run<T, F>(self: &Arc<Self>, work: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: Fn(&Connection<'static>, usize) -> Result<T, SourceError> + Send + 'static,
    {
        let permit =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| {
                    SourceError::new(
                        SourceErrorKind::Saturated,
                        format!(
                            "all connections of source `{}` busy for {:?}",
                            self.name, self.acquire_timeout
                        ),
                    )
                })?
                .map_err(|_| SourceError::new(SourceErrorKind::Unavailable, "pool closed"))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pool.run_blocking(&work)
        })
        .await
        .map_err(|e| {
            SourceError::new(SourceErrorKind::Unavailable, format!("worker failed: {e}"))
        })?
    }

    fn run_blocking<T>(
        &self,
        work: &dyn Fn(&Connection<'static>, usize) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let pooled = self.take_idle();
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        match work(&conn, self.query_timeout_secs) {
            Ok(v) => {
                self.put_back(conn);
                Ok(v)
            }
            Err(e) if e.kind == SourceErrorKind::Unavailable => {
                drop(conn);
                self.discard_idle();
                if reused {
                    tracing::warn!(source = %self.name, "pooled connection lost, retrying on a new one");
                    let fresh = self.connect()?;
                    let result = work(&fresh, self.query_timeout_secs);
                    if result.is_ok() {
                        self.put_back(fresh);
                    }
                    result
                } else {
                    Err(e)
                }
            }
            Err(e) => {
                // A failed statement leaves the connection usable unless the driver says
                // otherwise.
                if !conn.is_dead().unwrap_or(true) {
                    self.put_back(conn);
                }
                Err(e)
            }
        }
    }

    fn connect(&self) -> Result<Connection<'static>, SourceError> {
        let env = odbc_api::environment().map_err(|e| {
            SourceError::new(SourceErrorKind::Config, format!("no ODBC environment: {e}"))
        })?;
        let options = ConnectionOptions {
            login_timeout_sec: Some(LOGIN_TIMEOUT_SECS),
            ..ConnectionOptions::default()
        };
        env.connect_with_connection_string(&self.connection_string, options)
            .map_err(|e| {
                let (kind, detail) = super::decode::classify_connect(&e);
                SourceError::new(
                    kind,
                    format!("cannot connect to source `{}`: {detail}", self.name),
                )
            })
    }

    fn take_idle(&self) -> Option<Connection<'static>> {
        self.idle.lock().ok()?.pop()
    }

    fn put_back(&self, conn: Connection<'static>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    fn discard_idle(&self) {
        let stale = self.idle.lock().map(|mut idle| std::mem::take(&mut *idle));
        drop(stale);
    }
}
