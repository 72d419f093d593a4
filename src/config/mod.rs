//! Configuration: the deployment config (server, sources, keys, which adapters) and adapter
//! definitions (how legacy tables map onto resources). Parsing and [`validate`] are pure;
//! checks that need a live source happen in [`crate::catalog`].

mod adapter;
mod deployment;
mod env;
mod error;
mod load;

pub use adapter::{AdapterFile, FieldDef, KeyDef, ResourceDef, Trim};
pub use deployment::{
    ApiKeyConfig, AuthConfig, AuthMode, DEFAULT_ACQUIRE_TIMEOUT_MS, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_QUERY_TIMEOUT_SECS, DeploymentConfig, OdbcSourceConfig,
    ServerConfig, SourceConfig,
};
pub use env::expand_env;
pub use error::ConfigError;
pub use load::{LoadedAdapter, LoadedConfig, expand_sources, load, parse_deployment, validate};
