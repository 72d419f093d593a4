//! The `files` source: export folders as resources. A folder is watched for complete exports
//! ([`watch`]); an export is read record by record in its format ([`format`]); the applied
//! export of each resource is kept in a local SQLite mirror, which the API reads like any
//! other source.

pub mod format;
pub mod watch;
