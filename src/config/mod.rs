//! Configuration: the deployment config (server, sources, keys, which adapters) and adapter
//! definitions (how legacy tables map onto resources, and how their changes are captured).
//! Parsing and [`validate`] are pure; checks that need a live source happen when resources
//! are bound ([`crate::resource::bind_resource`]) and capture targets resolved.

mod adapter;
mod capture;
mod delivery;
mod deployment;
mod env;
mod error;
mod files;
mod load;
mod mssql;

pub use adapter::{AdapterFile, FieldDef, KeyDef, ResourceDef, Trim};
pub use capture::{
    CaptureDef, DEFAULT_BATCH_SIZE, DEFAULT_CHANGELOG_TABLE, DEFAULT_INTERVAL_MS,
    DEFAULT_LOOKBACK_MS, DEFAULT_SETTLE_MS, InitialLoad, OnExpired, StrategyKind,
};
pub use delivery::{
    DEFAULT_DELIVERY_BATCH_SIZE, DEFAULT_MAX_RETRY_AFTER, DEFAULT_NATS_ACK_TIMEOUT_MS,
    DEFAULT_NATS_DUPLICATE_WINDOW_MS, DEFAULT_NATS_STREAM, DEFAULT_NATS_SUBJECT_PREFIX,
    DEFAULT_POSTGRES_SCHEMA, DEFAULT_POSTGRES_TIMEOUT_MS, DEFAULT_RETRY_JITTER,
    DEFAULT_RETRY_SCHEDULE, DEFAULT_WEBHOOK_CONNECT_TIMEOUT_MS, DEFAULT_WEBHOOK_MAX_IN_FLIGHT,
    DEFAULT_WEBHOOK_TIMEOUT_MS, NatsSinkConfig, PostgresSinkConfig, RetryConfig, SinkConfig,
    StartAt, SubscriptionConfig, WebhookSinkConfig, redact_url, webhook_key,
};
pub use deployment::{
    ApiKeyConfig, AuthConfig, AuthMode, DEFAULT_ACQUIRE_TIMEOUT_MS, DEFAULT_LISTEN,
    DEFAULT_MAX_CHANGE_WAITERS, DEFAULT_MAX_CONNECTIONS, DEFAULT_OUTBOX_RETENTION_HOURS,
    DEFAULT_QUERY_TIMEOUT_SECS, DEFAULT_STATE_PATH, DeploymentConfig, OdbcSourceConfig,
    ServerConfig, SourceConfig, StateConfig,
};
pub use env::expand_env;
pub use error::ConfigError;
pub use files::{
    Completion, DEFAULT_ARCHIVE_KEEP, DEFAULT_MAX_BAD_ROW_SHARE, DEFAULT_MAX_DELETE_SHARE,
    DEFAULT_POLL_INTERVAL_MS, DEFAULT_STABLE_MS, FileColumn, FileDef, FileFormat,
    FilesSourceConfig, SignConvention, TextEncoding,
};
pub use load::{LoadedAdapter, LoadedConfig, expand_sources, load, parse_deployment, validate};
pub use mssql::{
    DEFAULT_MSSQL_CONNECT_TIMEOUT_SECS, DEFAULT_MSSQL_PORT, DEFAULT_MSSQL_RETRIES, MssqlEncryption,
    MssqlSourceConfig,
};
