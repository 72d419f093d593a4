//! The deployment config: one TOML file per installation, naming the server address, the
//! sources (with secrets pulled from the environment), the adapters to load and the API keys.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::Deserialize;

use super::delivery::SubscriptionConfig;
use super::files::FilesSourceConfig;

/// Where the server listens unless configured otherwise: loopback only, so a fresh install
/// exposes nothing to the network by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Connections per source: small, because the legacy database is the scarce resource.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Seconds a single legacy query may run before the driver cancels it.
pub const DEFAULT_QUERY_TIMEOUT_SECS: u64 = 10;
/// How long a request waits for a free connection before it gets 503 + Retry-After.
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 2_000;
/// Whole-request deadline on the HTTP side.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Clients that may wait on the change feed at once (waiting long-polls plus open SSE
/// streams); beyond it they get 503 + Retry-After rather than unbounded server state.
pub const DEFAULT_MAX_CHANGE_WAITERS: usize = 256;

/// The top of a deployment config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Adapter files to load, relative to the config file.
    pub adapters: Vec<PathBuf>,
    #[serde(default)]
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub sources: IndexMap<String, SourceConfig>,
    #[serde(default)]
    pub state: StateConfig,
    /// Where change events are delivered (`[subscriptions.NAME]`).
    #[serde(default)]
    pub subscriptions: IndexMap<String, SubscriptionConfig>,
}

/// Where capture keeps its checkpoints, snapshot state and outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// SQLite file, relative to the config file; created (with its directory) when missing.
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// Hours an event stays in the outbox after its commit; see
    /// [`DEFAULT_OUTBOX_RETENTION_HOURS`]. 0 keeps every event forever.
    #[serde(default = "default_outbox_retention_hours")]
    pub outbox_retention_hours: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: default_state_path(),
            outbox_retention_hours: DEFAULT_OUTBOX_RETENTION_HOURS,
        }
    }
}

/// A week: change-feed clients and subscriptions that are down longer than this must resync;
/// events a subscription has not settled are kept however old they are.
pub const DEFAULT_OUTBOX_RETENTION_HOURS: u64 = 168;

fn default_outbox_retention_hours() -> u64 {
    DEFAULT_OUTBOX_RETENTION_HOURS
}

/// The state store next to the config file unless configured otherwise.
pub const DEFAULT_STATE_PATH: &str = "state/legacy-bridge.db";

fn default_state_path() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_PATH)
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// See [`DEFAULT_MAX_CHANGE_WAITERS`].
    #[serde(default = "default_max_change_waiters")]
    pub max_change_waiters: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_change_waiters: DEFAULT_MAX_CHANGE_WAITERS,
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .expect("DEFAULT_LISTEN is a valid socket address")
}

fn default_request_timeout_ms() -> u64 {
    DEFAULT_REQUEST_TIMEOUT_MS
}

fn default_max_change_waiters() -> usize {
    DEFAULT_MAX_CHANGE_WAITERS
}

/// Whether requests need an API key. There is no default: running open must be a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    ApiKeys,
    None,
}

/// API key settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    #[serde(default)]
    pub keys: Vec<ApiKeyConfig>,
}

/// One API key, stored only as the SHA-256 of the key so the config file is no secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds it; appears in logs instead of the key.
    pub name: String,
    /// Lowercase hex SHA-256 of the key (`legacy-bridge keys generate` prints it).
    pub sha256: String,
    /// `resource:read` entries; `*:read` grants every resource.
    pub scopes: Vec<String>,
}

/// One legacy system connection.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    Odbc(OdbcSourceConfig),
    /// A folder of export files; see [`FilesSourceConfig`].
    Files(FilesSourceConfig),
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceConfig::Odbc(c) => c.fmt(f),
            SourceConfig::Files(c) => c.fmt(f),
        }
    }
}

/// An ODBC source.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdbcSourceConfig {
    /// ODBC connection string; `${ENV_VAR}` is replaced from the environment at start-up.
    pub connection_string: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_query_timeout_secs")]
    pub query_timeout_secs: u64,
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Overrides the dialect detected from the driver (`sqlite`, `mysql`, `postgres`,
    /// `mssql`, `db2`, `oracle`, `access`, `ansi`).
    #[serde(default)]
    pub dialect: Option<String>,
    /// Schema (owner) of the tables when not the connection's default.
    #[serde(default)]
    pub schema: Option<String>,
}

impl fmt::Debug for OdbcSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password: never print it.
        f.debug_struct("OdbcSourceConfig")
            .field("connection_string", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("query_timeout_secs", &self.query_timeout_secs)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("dialect", &self.dialect)
            .field("schema", &self.schema)
            .finish()
    }
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
