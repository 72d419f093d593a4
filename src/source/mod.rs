//! Sources: connections to legacy systems. A source only yields rows: it runs a
//! [`SelectQuery`] built from validated adapter identifiers and request values bound as
//! parameters, and describes the tables it can see.

mod dialect;
mod error;
pub mod files;
pub mod mssql;
#[cfg(feature = "odbc")]
pub mod odbc;
mod query;
pub mod rowversion;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use dialect::{Dialect, DialectKind, Paging};
pub use error::{SourceError, SourceErrorKind};
pub use query::{CompareOp, OrderBy, Param, Predicate, Relation, SelectColumn, SelectQuery};

use crate::config::{LoadedConfig, SourceConfig};
use crate::model::{FieldType, Value};

/// A column's SQL type as the source reports it, reduced to what decoding and parameter
/// binding need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// Fixed-width text, padded with spaces to `len`.
    Char {
        len: Option<usize>,
    },
    Varchar {
        len: Option<usize>,
    },
    Integer,
    Decimal {
        precision: usize,
        scale: i16,
    },
    Float,
    Boolean,
    Date,
    Time,
    Timestamp,
    Binary,
    Other,
}

impl SqlType {
    /// The field type an adapter would most likely map this column to (used by `introspect`).
    pub fn suggested_field_type(self) -> FieldType {
        match self {
            SqlType::Char { .. } | SqlType::Varchar { .. } | SqlType::Other => FieldType::String,
            SqlType::Integer => FieldType::Integer,
            SqlType::Decimal { .. } | SqlType::Float => FieldType::Decimal,
            SqlType::Boolean => FieldType::Boolean,
            SqlType::Date => FieldType::Date,
            SqlType::Time => FieldType::Time,
            SqlType::Timestamp => FieldType::Timestamp,
            SqlType::Binary => FieldType::Binary,
        }
    }
}

/// A column of a table or query, as introspected.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub sql_type: SqlType,
    /// The source's own type name, e.g. `CHAR` or `numeric`; for messages.
    pub type_name: String,
    pub nullable: bool,
}

/// A table or view a source can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub schema: Option<String>,
    pub name: String,
    pub kind: String,
}

/// A row as the source decoded it, one value per requested column.
pub type Row = Vec<Value>;

/// Rows of a streamed scan, in non-empty batches, then one **empty batch marking the end**;
/// or an error. A stream that closes without the end marker was cut (task aborted) and must
/// be treated as a failure, never as the end of the table. Dropping it stops the scan and
/// frees the connection.
pub type RowStream = tokio::sync::mpsc::Receiver<Result<Vec<Row>, SourceError>>;

/// Batches a scan may run ahead of its consumer: bounds memory whatever the table size.
pub const SCAN_BUFFERED_BATCHES: usize = 4;

/// A legacy system connection.
///
/// Contract: every method is safe to call concurrently; a source bounds its own use of the
/// legacy system (pool size, per-query timeout) and answers [`SourceErrorKind::Saturated`]
/// instead of queueing without limit. Queries are read-only.
#[async_trait]
pub trait Source: Send + Sync {
    /// The SQL dialect used to render queries for this source.
    fn dialect(&self) -> &Dialect;

    /// Runs a query and decodes every row (queries always carry a limit).
    async fn fetch(&self, query: SelectQuery) -> Result<Vec<Row>, SourceError>;

    /// Streams every row of a query (which may have no limit) in batches of `batch_size`,
    /// holding one connection until the stream ends or is dropped; memory stays bounded by
    /// [`SCAN_BUFFERED_BATCHES`] batches.
    async fn scan(&self, query: SelectQuery, batch_size: usize) -> RowStream;

    /// The legacy system's clock in UTC, or `None` when the dialect cannot tell it (capture
    /// then falls back to the bridge's clock).
    async fn utc_now(&self) -> Result<Option<DateTime<Utc>>, SourceError>;

    /// Runs one statement that changes the legacy system. The only callers are the
    /// change-log strategy (pruning the log table its triggers fill) and an operator's
    /// explicit `changelog ddl --apply`; everything else only reads.
    async fn execute(&self, sql: String, params: Vec<Param>) -> Result<(), SourceError>;

    /// Columns of a table, or of the result of a query.
    async fn columns(&self, relation: &Relation) -> Result<Vec<ColumnInfo>, SourceError>;

    /// Tables and views visible to the connection.
    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError>;

    /// Cheap round trip proving the legacy system answers.
    async fn ping(&self) -> Result<(), SourceError>;

    /// The export folder behind a `files` source, which capture's `export` strategy feeds;
    /// `None` for database sources.
    fn files(&self) -> Option<&files::FilesSource> {
        None
    }

    /// SQL Server Change Tracking, which capture's `mssql-change-tracking` strategy reads;
    /// `None` for sources that do not have it.
    fn change_tracking(&self) -> Option<&dyn ChangeTracking> {
        None
    }
}

/// Change-tracking versions as one snapshot saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackingVersions {
    /// `CHANGE_TRACKING_CURRENT_VERSION()`: the last committed version; the next read starts
    /// after it. `None` when change tracking is off for the database.
    pub current: Option<i64>,
    /// `CHANGE_TRACKING_MIN_VALID_VERSION`: the oldest version whose changes are all still
    /// kept for the table; `None` when change tracking is off for the table.
    pub min_valid: Option<i64>,
}

/// What to read from a tracked table: the changes after `since`, each joined back to the
/// table's current row.
#[derive(Debug, Clone)]
pub struct TrackedChangesQuery {
    /// The tracked table (never a query).
    pub table: Relation,
    /// Its primary key columns, decoded as the key fields are.
    pub key: Vec<SelectColumn>,
    /// The columns of the current row to read.
    pub columns: Vec<SelectColumn>,
    /// The version everything up to which is already read.
    pub since: i64,
}

/// The outcome of a change-tracking read.
pub enum TrackedChanges {
    /// `since` is older than the table's min valid version: changes were cleaned up unread.
    /// Nothing was read.
    Expired(TrackingVersions),
    /// One row per key changed after `since`: `[SYS_CHANGE_VERSION, key..., columns...]`,
    /// the columns all NULL when the row is gone; ordered by change version. Streamed like
    /// [`Source::scan`] (end marker included) from one snapshot, so every change up to
    /// `versions.current` is in it and nothing of a transaction is half there.
    Rows {
        versions: TrackingVersions,
        rows: RowStream,
    },
}

/// SQL Server Change Tracking, read in snapshot-isolation transactions.
#[async_trait]
pub trait ChangeTracking: Send + Sync {
    /// The current version and the table's min valid version.
    async fn tracking_versions(&self, table: &Relation) -> Result<TrackingVersions, SourceError>;

    /// Checks `query.since` against the min valid version and, while it is valid, streams the
    /// changes after it in batches of `batch_size`, all in one snapshot transaction.
    async fn tracked_changes(
        &self,
        query: TrackedChangesQuery,
        batch_size: usize,
    ) -> Result<TrackedChanges, SourceError>;
}

/// The connected sources of a deployment, by name.
pub type Sources = HashMap<String, Arc<dyn Source>>;

/// Opens every configured source (lazily where the driver allows: a source that is down at
/// start-up is reported by `ping`, not here).
pub async fn open_all(loaded: &LoadedConfig) -> Result<Sources, SourceError> {
    let mut sources: Sources = HashMap::new();
    for (name, source) in &loaded.deployment.sources {
        let opened: Arc<dyn Source> = match source {
            #[cfg(feature = "odbc")]
            SourceConfig::Odbc(cfg) => Arc::new(odbc::OdbcSource::open(name, cfg).await?),
            SourceConfig::Files(cfg) => Arc::new(files::FilesSource::open(loaded, name, cfg)?),
            SourceConfig::Mssql(cfg) => Arc::new(mssql::MssqlSource::open(name, cfg)),
            #[cfg(not(feature = "odbc"))]
            SourceConfig::Odbc(_) => {
                return Err(SourceError::new(
                    SourceErrorKind::Config,
                    format!("source `{name}` needs the `odbc` feature, which this build lacks"),
                ));
            }
        };
        sources.insert(name.clone(), opened);
    }
    Ok(sources)
}
