//! Configuration: the deployment config (server, sources, keys, which adapters) and adapter
//! definitions (how legacy tables map onto resources, and how their changes are captured).
//! Parsing and [`validate`] are pure; checks that need a live source happen when resources
//! are bound ([`crate::resource::bind_resource`]) and capture targets resolved.

mod adapter;
mod capture;
mod deployment;
mod env;
mod error;
mod files;
mod load;

pub use adapter::{AdapterFile, FieldDef, KeyDef, ResourceDef, Trim};
pub use capture::{
    CaptureDef, DEFAULT_BATCH_SIZE, DEFAULT_CHANGELOG_TABLE, DEFAULT_INTERVAL_MS,
    DEFAULT_LOOKBACK_MS, DEFAULT_SETTLE_MS, InitialLoad, StrategyKind,
};
pub use deployment::{
    ApiKeyConfig, AuthConfig, AuthMode, DEFAULT_ACQUIRE_TIMEOUT_MS, DEFAULT_LISTEN,
    DEFAULT_MAX_CHANGE_WAITERS, DEFAULT_MAX_CONNECTIONS, DEFAULT_QUERY_TIMEOUT_SECS,
    DEFAULT_STATE_PATH, DeploymentConfig, OdbcSourceConfig, ServerConfig, SourceConfig,
    StateConfig,
};
pub use env::expand_env;
pub use error::ConfigError;
pub use files::{
    Completion, DEFAULT_ARCHIVE_KEEP, DEFAULT_MAX_BAD_ROW_SHARE, DEFAULT_MAX_DELETE_SHARE,
    DEFAULT_POLL_INTERVAL_MS, DEFAULT_STABLE_MS, FileColumn, FileDef, FileFormat,
    FilesSourceConfig, SignConvention, TextEncoding,
};
pub use load::{LoadedAdapter, LoadedConfig, expand_sources, load, parse_deployment, validate};
