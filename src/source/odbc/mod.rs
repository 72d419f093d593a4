//! The ODBC source: any legacy database with an ODBC driver (Access, FoxPro, DB2, Progress,
//! MariaDB, PostgreSQL, SQLite...). Every driver call runs on tokio's blocking pool behind a
//! bounded connection pool, so a slow legacy system never stalls the async runtime.

mod catalog;
mod decode;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use odbc_api::Connection;

use self::pool::Pool;
use super::{ColumnInfo, Dialect, Relation, Row, SelectQuery, Source, SourceError, TableInfo};
use crate::config::OdbcSourceConfig;

/// A source reached through the ODBC driver manager (unixODBC on Linux).
pub struct OdbcSource {
    pool: Arc<Pool>,
    dialect: Dialect,
    schema: Option<String>,
}

impl OdbcSource {
    /// Connects once to learn the dialect from the driver; the connection stays pooled.
    pub async fn open(name: &str, cfg: &OdbcSourceConfig) -> Result<Self, SourceError> {
        let pool = Arc::new(Pool::new(
            name,
            cfg.connection_string.clone(),
            cfg.max_connections,
            Duration::from_millis(cfg.acquire_timeout_ms),
            cfg.query_timeout_secs,
        ));
        let dialect = match &cfg.dialect {
            Some(d) => Dialect::from_name(d).ok_or_else(|| {
                SourceError::new(
                    super::SourceErrorKind::Config,
                    format!("source `{name}`: unknown dialect `{d}`"),
                )
            })?,
            None => {
                let dbms = pool
                    .run(|conn: &Connection<'static>, _| {
                        conn.database_management_system_name()
                            .map_err(|e| decode::classify(&e, conn))
                    })
                    .await?;
                Dialect::detect(&dbms)
            }
        };
        tracing::info!(source = name, dialect = ?dialect.kind, "odbc source ready");
        Ok(Self {
            pool,
            dialect,
            schema: cfg.schema.clone(),
        })
    }
}

#[async_trait]
impl Source for OdbcSource {
    fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    async fn fetch(&self, query: SelectQuery) -> Result<Vec<Row>, SourceError> {
        let (sql, params) = self.dialect.render(&query);
        let columns = query.columns;
        self.pool
            .run(move |conn, timeout| decode::fetch(conn, &sql, &params, &columns, timeout))
            .await
    }

    async fn columns(&self, relation: &Relation) -> Result<Vec<ColumnInfo>, SourceError> {
        let relation = relation.clone();
        let dialect = self.dialect.clone();
        self.pool
            .run(move |conn, _| catalog::columns(conn, &relation, &dialect))
            .await
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        let schema = self.schema.clone();
        self.pool
            .run(move |conn, _| catalog::tables(conn, schema.as_deref()))
            .await
    }

    async fn ping(&self) -> Result<(), SourceError> {
        let sql = match self.dialect.kind {
            super::DialectKind::Oracle => "SELECT 1 FROM DUAL",
            super::DialectKind::Db2 => "SELECT 1 FROM SYSIBM.SYSDUMMY1",
            _ => "SELECT 1",
        };
        self.pool
            .run(move |conn, timeout| decode::execute_discard(conn, sql, timeout))
            .await
    }
}
