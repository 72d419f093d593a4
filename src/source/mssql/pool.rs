//! Connections to SQL Server: connecting (TCP or SQL Browser for a named instance, TLS as
//! configured, SQL login, read-only intent), a bounded pool of them, and how failures are
//! sorted. Waiting for a connection is bounded (then `Saturated`, which the API turns into
//! 503 + Retry-After); a connection whose state is unknown (timeout, broken stream, a result
//! left unread) is dropped, never reused.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::{MssqlEncryption, MssqlSourceConfig};
use crate::source::{SourceError, SourceErrorKind};

/// A connected client.
pub(super) type Connection = Client<Compat<TcpStream>>;

/// SQL Server's error number for a deadlock victim: the statement may simply be run again.
pub(super) const DEADLOCK_VICTIM: u32 = 1205;
/// Login failed (wrong user or password, or no access to the database).
const LOGIN_FAILED: u32 = 18456;
/// Cannot open the database requested by the login.
const CANNOT_OPEN_DATABASE: u32 = 4060;
/// Snapshot isolation is not allowed in the database (only change tracking reads use it).
const SNAPSHOT_NOT_ALLOWED: u32 = 3952;

pub(super) struct Pool {
    name: String,
    config: Config,
    instance: bool,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
    connect_timeout: Duration,
}

/// A connection taken from the pool; it goes back when dropped unless `discard`ed.
pub(super) struct Lease {
    pool: Arc<Pool>,
    conn: Option<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// The connection (always present until the lease ends).
    pub(super) fn conn(&mut self) -> &mut Connection {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Closes the connection instead of returning it: its state is unknown.
    pub(super) fn discard(mut self) {
        self.conn = None;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

impl Pool {
    pub(super) fn new(name: &str, cfg: &MssqlSourceConfig) -> Self {
        let mut config = Config::new();
        config.host(&cfg.host);
        config.port(cfg.port());
        if let Some(instance) = &cfg.instance {
            config.instance_name(instance);
        }
        config.database(&cfg.database);
        config.application_name("legacy-bridge");
        // Routes to a readable secondary where an availability group has one.
        config.readonly(true);
        config.authentication(AuthMethod::sql_server(&cfg.user, &cfg.password));
        config.encryption(match cfg.encrypt {
            MssqlEncryption::Required => EncryptionLevel::Required,
            MssqlEncryption::LoginOnly => EncryptionLevel::Off,
            MssqlEncryption::Off => EncryptionLevel::NotSupported,
        });
        if cfg.trust_server_certificate {
            config.trust_cert();
        }
        if let Some(ca) = &cfg.ca_file {
            config.trust_cert_ca(ca.display().to_string());
        }
        Self {
            name: name.to_owned(),
            config,
            instance: cfg.instance.is_some(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(cfg.max_connections)),
            acquire_timeout: Duration::from_millis(cfg.acquire_timeout_ms),
            connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
        }
    }

    /// A pooled connection, or a new one; waits at most `acquire_timeout` for a free slot.
    /// The flag says whether trying again may help (a lost network yes, a refused login or
    /// a full pool no: the caller answers at once).
    pub(super) async fn lease(self: &Arc<Self>) -> Result<Lease, (SourceError, bool)> {
        let permit =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| {
                    let busy = SourceError::new(
                        SourceErrorKind::Saturated,
                        format!(
                            "all connections of source `{}` busy for {:?}",
                            self.name, self.acquire_timeout
                        ),
                    );
                    (busy, false)
                })?
                .map_err(|_| {
                    let closed = SourceError::new(SourceErrorKind::Unavailable, "pool closed");
                    (closed, false)
                })?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => Box::pin(self.connect()).await?,
        };
        Ok(Lease {
            pool: Arc::clone(self),
            conn: Some(conn),
            _permit: permit,
        })
    }

    /// Drops every idle connection (after a server restart they are all dead).
    pub(super) fn discard_idle(&self) {
        let stale = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(stale);
    }

    async fn connect(&self) -> Result<Connection, (SourceError, bool)> {
        let attempt = async {
            let conn = Box::pin(self.connect_to(self.config.clone())).await;
            match conn {
                // Azure SQL and some gateways redirect the login to another node.
                Err(tiberius::error::Error::Routing { host, port }) => {
                    let mut routed = self.config.clone();
                    routed.host(&host);
                    routed.port(port);
                    Box::pin(self.connect_to(routed)).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Err(_) => Err((
                SourceError::new(
                    SourceErrorKind::Unavailable,
                    format!(
                        "cannot connect to source `{}`: no answer within {:?}",
                        self.name, self.connect_timeout
                    ),
                ),
                // The whole connect timeout is spent already.
                false,
            )),
            Ok(Err(e)) => {
                let c = classify(&e);
                Err((
                    SourceError::new(
                        c.kind,
                        format!("cannot connect to source `{}`: {}", self.name, c.message),
                    ),
                    c.retry,
                ))
            }
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    async fn connect_to(&self, config: Config) -> Result<Connection, tiberius::error::Error> {
        let tcp = if self.instance {
            use tiberius::SqlBrowser as _;
            TcpStream::connect_named(&config).await?
        } else {
            TcpStream::connect(config.get_addr()).await?
        };
        tcp.set_nodelay(true)?;
        Box::pin(Client::connect(config, tcp.compat_write())).await
    }
}

/// What a tiberius failure means for the caller (kind) and for the connection (`broken`):
/// the message names the server error number, never parameter values.
pub(super) struct Classified {
    pub(super) kind: SourceErrorKind,
    pub(super) message: String,
    /// The connection cannot be trusted any more.
    pub(super) broken: bool,
    /// Running the same statement again may succeed (deadlock victim, lost connection).
    pub(super) retry: bool,
}

pub(super) fn classify(e: &tiberius::error::Error) -> Classified {
    use tiberius::error::Error as E;
    let (kind, broken, retry) = match e {
        E::Io { .. } | E::Tls(_) | E::Routing { .. } => (SourceErrorKind::Unavailable, true, true),
        E::Protocol(_) | E::Encoding(_) | E::Utf8 | E::Utf16 | E::ParseInt(_) => {
            (SourceErrorKind::Unavailable, true, false)
        }
        E::Conversion(_) => (SourceErrorKind::Decode, false, false),
        E::Server(token) => server_error(token.code()),
        #[allow(unreachable_patterns)]
        _ => (SourceErrorKind::Unavailable, true, false),
    };
    let message = match e {
        E::Server(token) => format!(
            "SQL Server error {} (state {}): {}{}",
            token.code(),
            token.state(),
            mask_quoted(token.message()),
            fix_for(token.code())
        ),
        other => other.to_string(),
    };
    Classified {
        kind,
        message,
        broken,
        retry,
    }
}

/// What a server error number means: (kind, connection broken, may pass on retry).
fn server_error(code: u32) -> (SourceErrorKind, bool, bool) {
    match code {
        DEADLOCK_VICTIM => (SourceErrorKind::Unavailable, false, true),
        // A DBA can fix the login without restarting the bridge: it keeps trying, and
        // /readyz says why meanwhile.
        LOGIN_FAILED | CANNOT_OPEN_DATABASE => (SourceErrorKind::Unavailable, true, false),
        SNAPSHOT_NOT_ALLOWED => (SourceErrorKind::Config, false, false),
        _ => (SourceErrorKind::Query, false, false),
    }
}

/// What an operator has to do about a server error the bridge's own reads cause, appended
/// to its message.
fn fix_for(code: u32) -> &'static str {
    match code {
        SNAPSHOT_NOT_ALLOWED => {
            "; the mssql-change-tracking strategy reads in a snapshot transaction: allow \
             snapshot isolation (sql/mssql/enable-change-tracking.sql)"
        }
        _ => "",
    }
}

/// A server message with the contents of '...' replaced: SQL Server quotes the offending value
/// in some messages (conversion errors), and values stay out of logs. Object and login names
/// are quoted the same way and go too; the error number says enough.
fn mask_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '\'' {
            if !inside {
                out.push_str("'…");
            }
            inside = !inside;
            if !inside {
                out.push('\'');
            }
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_snapshot_isolation_names_the_fix() {
        assert_eq!(
            server_error(SNAPSHOT_NOT_ALLOWED).0,
            SourceErrorKind::Config
        );
        assert!(fix_for(SNAPSHOT_NOT_ALLOWED).contains("enable-change-tracking.sql"));
        assert_eq!(server_error(208).0, SourceErrorKind::Query);
        assert_eq!(fix_for(208), "");
    }

    #[test]
    fn quoted_values_stay_out_of_messages() {
        assert_eq!(
            mask_quoted(
                "Conversion failed when converting the nvarchar value 'A1001' to data type int."
            ),
            "Conversion failed when converting the nvarchar value '…' to data type int."
        );
        assert_eq!(mask_quoted("no quotes"), "no quotes");
    }
}
