//! `kind = "mssql"` sources: SQL Server reached natively over TDS (tiberius), no ODBC driver
//! on the bridge host. Defaults are documented constants; secrets come from `${ENV_VAR}` and
//! never reach `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::deployment::{
    DEFAULT_ACQUIRE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_QUERY_TIMEOUT_SECS,
};
use super::error::ConfigError;

/// SQL Server's default TCP port.
pub const DEFAULT_MSSQL_PORT: u16 = 1433;
/// The SQL Browser's port, asked for a named instance's port.
pub const SQL_BROWSER_PORT: u16 = 1434;
/// Retries of a query that failed transiently (deadlock victim 1205, connection reset).
pub const DEFAULT_MSSQL_RETRIES: u32 = 3;
/// Seconds to establish a connection (TCP, pre-login, TLS, login).
pub const DEFAULT_MSSQL_CONNECT_TIMEOUT_SECS: u64 = 10;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MssqlEncryption {
    /// TLS for the whole session; the server must support it.
    #[default]
    Required,
    /// TLS for the login packet only (the password), the rest in clear: what old servers
    /// without a certificate for the whole session often need.
    LoginOnly,
    /// No TLS at all: only for a trusted network or a test server, and only when configured.
    Off,
}

/// An SQL Server source.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MssqlSourceConfig {
    pub host: String,
    /// The server's port, or with `instance` the SQL Browser's; see [`Self::port`].
    #[serde(default)]
    pub port: Option<u16>,
    /// A named instance (`SQLEXPRESS`): the port is asked from the SQL Browser service.
    #[serde(default)]
    pub instance: Option<String>,
    pub database: String,
    /// SQL authentication; usually `${ENV_VAR}`s.
    pub user: String,
    pub password: String,
    #[serde(default)]
    pub encrypt: MssqlEncryption,
    /// Accept any server certificate (self-signed test servers); the login is then open to
    /// a man in the middle. Prefer `ca_file`.
    #[serde(default)]
    pub trust_server_certificate: bool,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_query_timeout_secs")]
    pub query_timeout_secs: u64,
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// See [`DEFAULT_MSSQL_CONNECT_TIMEOUT_SECS`].
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// See [`DEFAULT_MSSQL_RETRIES`].
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Schema of the tables when not `dbo`.
    #[serde(default)]
    pub schema: Option<String>,
}

impl MssqlSourceConfig {
    /// The port to connect to: the configured one; else, for a named instance, the SQL
    /// Browser's (which answers with the instance's port), else SQL Server's default.
    pub fn port(&self) -> u16 {
        match (self.port, &self.instance) {
            (Some(port), _) => port,
            (None, Some(_)) => SQL_BROWSER_PORT,
            (None, None) => DEFAULT_MSSQL_PORT,
        }
    }
}

impl fmt::Debug for MssqlSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MssqlSourceConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("instance", &self.instance)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .field("query_timeout_secs", &self.query_timeout_secs)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("retries", &self.retries)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Expands `${ENV_VAR}` in the fields that hold secrets or per-site values.
pub fn expand_mssql(
    path: &Path,
    name: &str,
    cfg: &mut MssqlSourceConfig,
) -> Result<(), ConfigError> {
    for (key, value) in [
        ("host", &mut cfg.host),
        ("database", &mut cfg.database),
        ("user", &mut cfg.user),
        ("password", &mut cfg.password),
    ] {
        *value = super::env::expand_env(value, |v| std::env::var(v).ok())
            .map_err(|reason| ConfigError::new(path, format!("sources.{name}.{key}"), reason))?;
    }
    Ok(())
}

/// Pure checks of an mssql source.
pub fn validate_mssql(path: &Path, name: &str, cfg: &MssqlSourceConfig) -> Result<(), ConfigError> {
    let err =
        |key: &str, reason: &str| ConfigError::new(path, format!("sources.{name}.{key}"), reason);
    if cfg.host.trim().is_empty() {
        return Err(err("host", "must not be empty"));
    }
    if cfg.database.trim().is_empty() {
        return Err(err("database", "must not be empty"));
    }
    if cfg.user.trim().is_empty() {
        return Err(err("user", "must not be empty (SQL authentication)"));
    }
    if cfg.max_connections == 0 {
        return Err(err("max_connections", "must be at least 1"));
    }
    if cfg.query_timeout_secs == 0 {
        return Err(err(
            "query_timeout_secs",
            "must be at least 1 (a query without timeout can hang the legacy system)",
        ));
    }
    if cfg.connect_timeout_secs == 0 {
        return Err(err("connect_timeout_secs", "must be at least 1"));
    }
    if cfg.retries > 10 {
        return Err(err("retries", "at most 10"));
    }
    if cfg.encrypt == MssqlEncryption::Off
        && (cfg.trust_server_certificate || cfg.ca_file.is_some())
    {
        return Err(err(
            "encrypt",
            "is \"off\", so trust_server_certificate and ca_file would be ignored; remove them or encrypt",
        ));
    }
    if cfg.trust_server_certificate && cfg.ca_file.is_some() {
        return Err(err(
            "trust_server_certificate",
            "and ca_file exclude each other: trust the CA, not any certificate",
        ));
    }
    Ok(())
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_query_timeout_secs() -> u64 {
    DEFAULT_QUERY_TIMEOUT_SECS
}
fn default_acquire_timeout_ms() -> u64 {
    DEFAULT_ACQUIRE_TIMEOUT_MS
}
fn default_connect_timeout_secs() -> u64 {
    DEFAULT_MSSQL_CONNECT_TIMEOUT_SECS
}
fn default_retries() -> u32 {
    DEFAULT_MSSQL_RETRIES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> MssqlSourceConfig {
        toml::from_str(text).unwrap()
    }

    const BASE: &str =
        "host = \"sql01\"\ndatabase = \"ERP\"\nuser = \"bridge\"\npassword = \"hunter2\"\n";

    #[test]
    fn defaults_are_safe() {
        let cfg = parse(BASE);
        assert_eq!(cfg.port(), 1433);
        let named = parse(&format!("{BASE}instance = \"SQLEXPRESS\"\n"));
        assert_eq!(
            named.port(),
            SQL_BROWSER_PORT,
            "a named instance asks the SQL Browser"
        );
        let both = parse(&format!("{BASE}instance = \"SQLEXPRESS\"\nport = 2000\n"));
        assert_eq!(both.port(), 2000);
        assert_eq!(cfg.encrypt, MssqlEncryption::Required);
        assert!(!cfg.trust_server_certificate);
        validate_mssql(Path::new("d.toml"), "erp", &cfg).unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn contradictions_name_the_key() {
        let key = |extra: &str| {
            validate_mssql(
                Path::new("d.toml"),
                "erp",
                &parse(&format!("{BASE}{extra}")),
            )
            .unwrap_err()
            .key
        };
        assert_eq!(
            key("encrypt = \"off\"\ntrust_server_certificate = true"),
            "sources.erp.encrypt"
        );
        assert_eq!(
            key("trust_server_certificate = true\nca_file = \"ca.pem\""),
            "sources.erp.trust_server_certificate"
        );
        assert_eq!(
            key("query_timeout_secs = 0"),
            "sources.erp.query_timeout_secs"
        );
        assert!(
            toml::from_str::<MssqlSourceConfig>(&format!("{BASE}encrypt = \"maybe\"")).is_err()
        );
    }
}
