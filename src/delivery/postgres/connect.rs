//! The sink's one connection: opened from the URL (TLS through rustls unless
//! `sslmode=disable`), bounded by the sink's timeout, with the same limit set as the server's
//! `statement_timeout` so that a statement the sink gave up on does not keep running.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::apply::Change;
use super::error::ReplicaError;

/// Time the connection task gets to say goodbye to the server at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// An open connection and what the sink learnt on it.
pub(super) struct Conn {
    pub client: Client,
    /// The schema and tables were created or checked on this connection.
    pub ready: bool,
    /// Prepared upserts and deletes, per table position.
    pub statements: HashMap<(usize, Change), Statement>,
    task: ConnTask,
}

impl Conn {
    /// Closes the connection politely (the server sees a terminate message, not a reset).
    pub async fn close(self) {
        let Conn { client, task, .. } = self;
        drop(client);
        task.finish(CLOSE_GRACE).await;
    }
}

/// The task driving the connection; aborted when dropped, so a connection given up on (a
/// statement timed out on a dead network) does not linger.
struct ConnTask(Option<JoinHandle<()>>);

impl ConnTask {
    async fn finish(mut self, grace: Duration) {
        if let Some(mut handle) = self.0.take()
            && tokio::time::timeout(grace, &mut handle).await.is_err()
        {
            handle.abort();
        }
    }
}

impl Drop for ConnTask {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// Runs one client call, bounded by `limit`.
pub(super) async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ReplicaError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(ReplicaError::from),
        Err(_) => Err(ReplicaError::timeout(limit)),
    }
}

/// Opens a connection to `url`: TLS unless `sslmode=disable` (with `prefer`, the default, a
/// server without TLS is talked to in plain text), the certificate checked against `ca_file`
/// or else the web PKI roots. Unlike libpq, `sslmode=require` verifies the certificate too.
pub(super) async fn connect(
    url: &str,
    ca_file: Option<&Path>,
    limit: Duration,
) -> Result<Conn, ReplicaError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(limit);
    if config.get_application_name().is_none() {
        config.application_name("legacy-bridge");
    }
    let opened = match config.get_ssl_mode() {
        SslMode::Disable => bounded(limit, open(&config, NoTls)).await,
        _ => {
            let tls = MakeRustlsConnect::new(tls_config(ca_file)?);
            bounded(limit, open(&config, tls)).await
        }
    };
    let (client, task) = opened?;
    let conn = Conn {
        client,
        ready: false,
        statements: HashMap::new(),
        task: ConnTask(Some(task)),
    };
    let millis = limit.as_millis().to_string();
    bounded(
        limit,
        conn.client.execute(
            "SELECT pg_catalog.set_config('statement_timeout', $1, false)",
            &[&millis],
        ),
    )
    .await?;
    Ok(conn)
}

/// Connects and spawns the task that drives the connection.
async fn open<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "postgres replica connection ended");
        }
    });
    Ok((client, task))
}

/// Roots from `ca_file` (PEM) or the web PKI, with the ring provider.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ReplicaError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let misconfigured = |reason: String| {
                ReplicaError::Misconfigured(format!("ca_file `{}`: {reason}", path.display()))
            };
            let certs =
                CertificateDer::pem_file_iter(path).map_err(|e| misconfigured(e.to_string()))?;
            for cert in certs {
                let cert = cert.map_err(|e| misconfigured(e.to_string()))?;
                roots.add(cert).map_err(|e| misconfigured(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(misconfigured("holds no certificate".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ReplicaError::Misconfigured(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_problems_are_misconfigured() {
        let missing = tls_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(matches!(missing, ReplicaError::Misconfigured(m) if m.contains("ca.pem")));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty)).unwrap_err();
        assert!(matches!(err, ReplicaError::Misconfigured(m) if m.contains("no certificate")));
        assert!(tls_config(None).is_ok());
    }
}
