//! The ODBC source: any legacy database with an ODBC driver (Access, FoxPro, DB2, Progress,
//! MariaDB, PostgreSQL, SQLite...). Every driver call runs on tokio's blocking pool behind a
//! bounded connection pool, so a slow legacy system never stalls the async runtime.

mod catalog;
mod decode;
mod pool;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use odbc_api::Connection;

use self::pool::Pool;
use super::{
    ColumnInfo, Dialect, Param, Relation, Row, RowStream, SCAN_BUFFERED_BATCHES, SelectColumn,
    SelectQuery, Source, SourceError, SourceErrorKind, TableInfo,
};
use crate::config::OdbcSourceConfig;
use crate::model::{FieldType, Value};

/// A source reached through the ODBC driver manager (unixODBC on Linux).
pub struct OdbcSource {
    pool: Arc<Pool>,
    dialect: Dialect,
    schema: Option<String>,
    /// Scans fetch in bulk until a driver under-reports a column's width (see `decode`).
    bulk_scans: Arc<AtomicBool>,
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
            bulk_scans: Arc::new(AtomicBool::new(true)),
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

    async fn scan(&self, query: SelectQuery, batch_size: usize) -> RowStream {
        let (tx, rx) = tokio::sync::mpsc::channel(SCAN_BUFFERED_BATCHES);
        let (sql, params) = self.dialect.render(&query);
        let columns = query.columns;
        let pool = Arc::clone(&self.pool);
        let bulk = Arc::clone(&self.bulk_scans);
        let batch_size = batch_size.max(1);
        tokio::spawn(async move {
            let sender = tx.clone();
            let outcome = pool
                .run(move |conn, timeout| {
                    let scan = Scan {
                        timeout,
                        batch_size,
                        bulk: &bulk,
                    };
                    scan_blocking(conn, &sql, &params, &columns, &scan, &sender)
                })
                .await;
            if let Err(e) = outcome {
                // The consumer may be gone already; then nobody needs the error.
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn utc_now(&self) -> Result<Option<DateTime<Utc>>, SourceError> {
        let Some(sql) = self.dialect.utc_now_sql() else {
            return Ok(None);
        };
        let columns = vec![SelectColumn {
            name: "now".into(),
            decode: FieldType::Timestamp,
        }];
        let rows = self
            .pool
            .run(move |conn, timeout| decode::fetch(conn, sql, &[], &columns, timeout))
            .await?;
        match rows.first().and_then(|r| r.first()) {
            Some(Value::NaiveTimestamp(ts)) => Ok(Some(ts.and_utc())),
            Some(Value::Timestamp(ts)) => Ok(Some(ts.with_timezone(&Utc))),
            _ => Err(SourceError::new(
                SourceErrorKind::Decode,
                "the database clock query returned no timestamp",
            )),
        }
    }

    async fn execute(&self, sql: String, params: Vec<Param>) -> Result<(), SourceError> {
        self.pool
            .run(move |conn, timeout| decode::execute_statement(conn, &sql, &params, timeout))
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

/// How a scan reads: per-query timeout, rows per sent batch, and whether to fetch in bulk.
struct Scan<'a> {
    timeout: usize,
    batch_size: usize,
    bulk: &'a AtomicBool,
}

/// The blocking half of a scan: sends batches until the rows end or the receiver is gone.
/// Once a batch has been sent, a failure is reported through the stream and not returned,
/// so the pool does not retry the scan from the start and repeat rows.
fn scan_blocking(
    conn: &Connection<'static>,
    sql: &str,
    params: &[Param],
    columns: &[SelectColumn],
    scan: &Scan<'_>,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<Row>, SourceError>>,
) -> Result<(), SourceError> {
    let batch_size = scan.batch_size;
    let mut batch = Vec::with_capacity(batch_size);
    let mut sent_any = false;
    let mut open = true;
    let result = decode::for_each_row(
        conn,
        sql,
        params,
        columns,
        scan.timeout,
        Some(scan.bulk),
        |row| {
            batch.push(row);
            if batch.len() == batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                open = tx.blocking_send(Ok(full)).is_ok();
                sent_any = true;
            }
            open
        },
    );
    match result {
        Ok(()) => {
            if open && !batch.is_empty() {
                open = tx.blocking_send(Ok(batch)).is_ok();
            }
            if open {
                // The end marker: the consumer knows the table was read to the end.
                let _ = tx.blocking_send(Ok(Vec::new()));
            }
            Ok(())
        }
        Err(e) if sent_any => {
            let _ = tx.blocking_send(Err(e));
            Ok(())
        }
        Err(e) => Err(e),
    }
}
