//! The SQL Server source: native TDS through `tiberius` on tokio, no ODBC driver on the bridge
//! host. Every query is parameterized (`sp_executesql`), bounded by the per-query timeout,
//! and retried on the failures that pass by themselves (a deadlock victim, a lost
//! connection) with backoff; everything else is sorted like the ODBC source sorts it, so the
//! API answers the same 503s and capture reacts the same way.

mod catalog;
mod change_tracking;
mod decode;
mod params;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use futures::TryStreamExt as _;
use tiberius::{Query, QueryItem};

use self::pool::{Connection, Pool};
use super::{
    ColumnInfo, Dialect, DialectKind, Param, Relation, Row, RowStream, SCAN_BUFFERED_BATCHES,
    SelectColumn, SelectQuery, Source, SourceError, SourceErrorKind, TableInfo,
};
use crate::config::MssqlSourceConfig;

/// First wait before retrying a transient failure; doubled per retry.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A source on SQL Server.
pub struct MssqlSource {
    name: String,
    pool: Arc<Pool>,
    dialect: Dialect,
    schema: String,
    query_timeout: Duration,
    retries: u32,
}

/// Why one attempt failed: the server or the connection (sorted by `pool::classify`), or
/// our own decoding.
enum Failure {
    Db(tiberius::error::Error),
    Source(SourceError),
}

impl From<tiberius::error::Error> for Failure {
    fn from(e: tiberius::error::Error) -> Self {
        Failure::Db(e)
    }
}

impl MssqlSource {
    /// Prepares the pool; connects lazily, so a server that is down at start-up shows in
    /// `/readyz` and the start-up wait rather than here.
    pub fn open(name: &str, cfg: &MssqlSourceConfig) -> Self {
        tracing::info!(source = name, host = %cfg.host, database = %cfg.database, encrypt = ?cfg.encrypt, "mssql source ready");
        Self {
            name: name.to_owned(),
            pool: Arc::new(Pool::new(name, cfg)),
            dialect: Dialect::of(DialectKind::Mssql),
            schema: cfg.schema.clone().unwrap_or_else(|| "dbo".into()),
            query_timeout: Duration::from_secs(cfg.query_timeout_secs),
            retries: cfg.retries,
        }
    }

    /// After an attempt: the value, or the error and whether another attempt may pass. The
    /// connection is discarded after any failure: its stream may hold unread tokens.
    fn settle<T>(
        &self,
        lease: pool::Lease,
        result: Result<Result<T, Failure>, tokio::time::error::Elapsed>,
    ) -> Result<T, (SourceError, bool)> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Err(_) => {
                lease.discard();
                Err((
                    SourceError::new(
                        SourceErrorKind::Timeout,
                        format!(
                            "query on source `{}` exceeded {:?}",
                            self.name, self.query_timeout
                        ),
                    ),
                    false,
                ))
            }
            Ok(Err(Failure::Source(e))) => {
                lease.discard();
                Err((e, false))
            }
            Ok(Err(Failure::Db(e))) => {
                lease.discard();
                let c = pool::classify(&e);
                if c.broken {
                    self.pool.discard_idle();
                }
                Err((SourceError::new(c.kind, c.message), c.retry))
            }
        }
    }

    /// Whether to try again after `error` (transient, attempts left); waits the backoff.
    async fn again(&self, error: &SourceError, retry: bool, attempt: &mut u32) -> bool {
        wait_to_retry(&self.name, self.retries, error, retry, attempt).await
    }
}

/// Whether a failed attempt may be tried again (a transient failure, retries left); if so,
/// counts the attempt and waits the backoff first.
async fn wait_to_retry(
    source: &str,
    retries: u32,
    error: &SourceError,
    retry: bool,
    attempt: &mut u32,
) -> bool {
    let transient = retry && error.kind == SourceErrorKind::Unavailable;
    if !transient || *attempt >= retries {
        return false;
    }
    *attempt += 1;
    tracing::warn!(source = %source, attempt = *attempt, error = %error.message, "transient failure, retrying");
    tokio::time::sleep(RETRY_BACKOFF * 2u32.saturating_pow(*attempt - 1)).await;
    true
}

/// Runs `$body` (an expression using the connection `$conn`, giving `Result<T, Failure>`)
/// on a pooled connection within the query timeout, retrying what may pass by itself.
macro_rules! run {
    ($source:expr, |$conn:ident| $body:expr) => {{
        let source = $source;
        let mut attempt = 0u32;
        loop {
            let outcome = match source.pool.lease().await {
                Err(failed) => Err(failed),
                Ok(mut lease) => {
                    let $conn = lease.conn();
                    let result = tokio::time::timeout(source.query_timeout, $body).await;
                    source.settle(lease, result)
                }
            };
            match outcome {
                Ok(value) => break Ok(value),
                Err((error, retry)) => {
                    if !source.again(&error, retry, &mut attempt).await {
                        break Err(error);
                    }
                }
            }
        }
    }};
}

/// A query with `?` placeholders renumbered and its parameters bound.
fn prepare(sql: &str, params: &[Param]) -> Query<'static> {
    let (sql, _) = params::numbered(sql);
    let mut query = Query::new(sql);
    for p in params {
        query.bind(params::bind(p));
    }
    query
}

/// Decodes a row by position, as `columns` asks.
fn decode_row(row: &tiberius::Row, columns: &[SelectColumn]) -> Result<Row, SourceError> {
    let mut out = Vec::with_capacity(columns.len());
    for (col, (meta, data)) in columns.iter().zip(row.cells()) {
        out.push(decode::cell(col, meta.column_type(), data)?);
    }
    if out.len() != columns.len() {
        return Err(SourceError::new(
            SourceErrorKind::Query,
            format!(
                "query returned {} columns, {} expected",
                row.len(),
                columns.len()
            ),
        ));
    }
    Ok(out)
}

/// Every row of the first result set.
async fn fetch_rows(
    conn: &mut Connection,
    sql: &str,
    params: &[Param],
    columns: &[SelectColumn],
) -> Result<Vec<Row>, Failure> {
    let mut stream = prepare(sql, params).query(conn).await?;
    let mut rows = Vec::new();
    while let Some(item) = stream.try_next().await? {
        match item {
            QueryItem::Row(row) if row.result_index() == 0 => {
                rows.push(decode_row(&row, columns).map_err(Failure::Source)?);
            }
            _ => {}
        }
    }
    Ok(rows)
}

#[async_trait]
impl Source for MssqlSource {
    fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    async fn fetch(&self, query: SelectQuery) -> Result<Vec<Row>, SourceError> {
        let (sql, params) = self.dialect.render(&query);
        let columns = query.columns;
        run!(self, |conn| fetch_rows(conn, &sql, &params, &columns))
    }

    async fn scan(&self, query: SelectQuery, batch_size: usize) -> RowStream {
        let (tx, rx) = tokio::sync::mpsc::channel(SCAN_BUFFERED_BATCHES);
        let (sql, params) = self.dialect.render(&query);
        let columns = query.columns;
        let scanner = Scanner {
            name: self.name.clone(),
            pool: Arc::clone(&self.pool),
            batch_timeout: self.query_timeout,
            retries: self.retries,
            batch_size: batch_size.max(1),
        };
        tokio::spawn(async move { scanner.run(&sql, &params, &columns, tx).await });
        rx
    }

    async fn utc_now(&self) -> Result<Option<DateTime<Utc>>, SourceError> {
        let now: NaiveDateTime = run!(self, |conn| async {
            let row = Query::new("SELECT SYSUTCDATETIME()")
                .query(conn)
                .await?
                .into_row()
                .await?;
            row.and_then(|r| r.get::<NaiveDateTime, _>(0))
                .ok_or_else(|| {
                    Failure::Source(SourceError::new(
                        SourceErrorKind::Decode,
                        "SYSUTCDATETIME() returned no timestamp",
                    ))
                })
        })?;
        Ok(Some(now.and_utc()))
    }

    async fn execute(&self, sql: String, params: Vec<Param>) -> Result<(), SourceError> {
        run!(self, |conn| async {
            prepare(&sql, &params).execute(conn).await?;
            Ok(())
        })
    }

    async fn columns(&self, relation: &Relation) -> Result<Vec<ColumnInfo>, SourceError> {
        match relation {
            Relation::Table { schema, name } => {
                let schema = schema.clone().unwrap_or_else(|| self.schema.clone());
                let found = run!(self, |conn| async {
                    let mut query = Query::new(catalog::COLUMNS_SQL);
                    query.bind(schema.clone());
                    query.bind(name.clone());
                    let rows = query.query(conn).await?.into_first_result().await?;
                    Ok(rows
                        .iter()
                        .map(|r| catalog::CatalogColumn {
                            name: r.get::<&str, _>(0).unwrap_or_default().to_owned(),
                            data_type: r.get::<&str, _>(1).unwrap_or_default().to_owned(),
                            max_length: r.get::<i32, _>(2),
                            precision: r.get::<u8, _>(3),
                            scale: r.get::<i32, _>(4),
                            nullable: r.get::<&str, _>(5) == Some("YES"),
                        })
                        .map(catalog::CatalogColumn::into_info)
                        .collect::<Vec<_>>())
                })?;
                if found.is_empty() {
                    return Err(SourceError::new(
                        SourceErrorKind::Query,
                        format!("table {schema}.{name} not found (or not visible to the login)"),
                    ));
                }
                Ok(found)
            }
            Relation::Query(_) => {
                let sql = format!(
                    "SELECT TOP (0) * FROM {}",
                    self.dialect.from_clause(relation)
                );
                run!(self, |conn| async {
                    let mut stream = Query::new(sql.clone()).query(conn).await?;
                    let columns = stream
                        .columns()
                        .await?
                        .map(|cols| {
                            cols.iter()
                                .map(|c| ColumnInfo {
                                    name: c.name().to_owned(),
                                    sql_type: catalog::sql_type_of(c.column_type()),
                                    type_name: decode::type_name(c.column_type()).to_owned(),
                                    nullable: true,
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    // Read to the end so the connection is clean.
                    stream.into_results().await?;
                    Ok(columns)
                })
            }
        }
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        run!(self, |conn| async {
            let mut query = Query::new(catalog::TABLES_SQL);
            query.bind(Some(self.schema.clone()));
            let rows = query.query(conn).await?.into_first_result().await?;
            Ok(rows
                .iter()
                .map(|r| {
                    catalog::table_info(
                        r.get::<&str, _>(0).unwrap_or_default().to_owned(),
                        r.get::<&str, _>(1).unwrap_or_default().to_owned(),
                        r.get::<&str, _>(2).unwrap_or_default().to_owned(),
                    )
                })
                .collect())
        })
    }

    fn change_tracking(&self) -> Option<&dyn super::ChangeTracking> {
        Some(self)
    }

    async fn ping(&self) -> Result<(), SourceError> {
        run!(self, |conn| async {
            Query::new("SELECT 1")
                .query(conn)
                .await?
                .into_results()
                .await?;
            Ok(())
        })
    }
}

/// A streamed scan: one connection held for the whole result, rows sent in batches with
/// bounded buffering, then the end marker. Retried from the start only while nothing was
/// sent; after that a failure goes into the stream (the consumer restarts its pass).
struct Scanner {
    name: String,
    pool: Arc<Pool>,
    /// Longest wait for the next batch of rows.
    batch_timeout: Duration,
    retries: u32,
    batch_size: usize,
}

type Sender = tokio::sync::mpsc::Sender<Result<Vec<Row>, SourceError>>;

impl Scanner {
    async fn run(&self, sql: &str, params: &[Param], columns: &[SelectColumn], tx: Sender) {
        let mut attempt = 0;
        loop {
            match self.once(sql, params, columns, &tx).await {
                Ok(()) => return,
                Err((error, sent_any, retry)) => {
                    // Once rows were sent, starting over would repeat them.
                    let again = !sent_any
                        && wait_to_retry(&self.name, self.retries, &error, retry, &mut attempt)
                            .await;
                    if !again {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                }
            }
        }
    }

    /// One attempt; the error says whether rows were sent already and whether a retry may
    /// pass.
    async fn once(
        &self,
        sql: &str,
        params: &[Param],
        columns: &[SelectColumn],
        tx: &Sender,
    ) -> Result<(), (SourceError, bool, bool)> {
        let mut lease = self
            .pool
            .lease()
            .await
            .map_err(|(e, retry)| (e, false, retry))?;
        match self.stream(lease.conn(), sql, params, columns, tx).await {
            Ok(Streamed::Complete(rest)) => {
                drop(lease);
                finish(tx, rest).await;
                Ok(())
            }
            Ok(Streamed::Abandoned) => {
                lease.discard();
                Ok(())
            }
            Err(failed) => {
                lease.discard();
                Err(failed)
            }
        }
    }

    /// Sends the rows of the first result of `sql` to `tx` in full batches. The connection is
    /// clean only when the result was read to its end ([`Streamed::Complete`]); the error says
    /// whether rows were sent already and whether a retry may pass.
    async fn stream(
        &self,
        conn: &mut Connection,
        sql: &str,
        params: &[Param],
        columns: &[SelectColumn],
        tx: &Sender,
    ) -> Result<Streamed, (SourceError, bool, bool)> {
        let timeout = |sent: bool| {
            (
                SourceError::new(
                    SourceErrorKind::Timeout,
                    format!(
                        "scan on source `{}` waited over {:?} for rows",
                        self.name, self.batch_timeout
                    ),
                ),
                sent,
                false,
            )
        };
        let db = |e: tiberius::error::Error, sent: bool| {
            let c = pool::classify(&e);
            (SourceError::new(c.kind, c.message), sent, c.retry)
        };
        let mut stream = match tokio::time::timeout(
            self.batch_timeout,
            prepare(sql, params).query(conn),
        )
        .await
        {
            Err(_) => return Err(timeout(false)),
            Ok(Err(e)) => return Err(db(e, false)),
            Ok(Ok(stream)) => stream,
        };
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut sent_any = false;
        loop {
            let item = match tokio::time::timeout(self.batch_timeout, stream.try_next()).await {
                Err(_) => return Err(timeout(sent_any)),
                Ok(Err(e)) => return Err(db(e, sent_any)),
                Ok(Ok(None)) => return Ok(Streamed::Complete(batch)),
                Ok(Ok(Some(item))) => item,
            };
            let QueryItem::Row(row) = item else { continue };
            if row.result_index() != 0 {
                continue;
            }
            match decode_row(&row, columns) {
                Ok(decoded) => batch.push(decoded),
                Err(e) => return Err((e, sent_any, false)),
            }
            if batch.len() == self.batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                if tx.send(Ok(full)).await.is_err() {
                    // The consumer is gone; the rest of the result stays unread.
                    return Ok(Streamed::Abandoned);
                }
                sent_any = true;
            }
        }
    }
}

/// How a streamed result ended without error.
enum Streamed {
    /// Read to its end; the last, partial batch is still to be sent.
    Complete(Vec<Row>),
    /// The consumer dropped the stream; the rest of the result is unread.
    Abandoned,
}

/// Sends the last batch and then the end marker, which tells the consumer the result was
/// read to its end.
async fn finish(tx: &Sender, rest: Vec<Row>) {
    if !rest.is_empty() && tx.send(Ok(rest)).await.is_err() {
        return;
    }
    let _ = tx.send(Ok(Vec::new())).await;
}
