//! PostgreSQL replica sink: keeps one table per resource in step with the legacy system, so a
//! new system can read (and migrate from) a copy that is never older than the outbox allows.
//!
//! - `startup` creates the schema, a table per resource and the tombstone table, or checks
//!   that existing ones have exactly the expected shape (see `ddl.rs` for the layout; a table
//!   of another shape is reported, never altered).
//! - `deliver` applies a batch in one transaction with at most two set-based statements per
//!   resource (see `apply.rs`); every write is guarded by the outbox seq, so redeliveries and
//!   replays of older events never regress a row or bring a deleted one back.
//! - One connection, opened lazily and again after a failure; every call bounded by the
//!   configured timeout (see `connect.rs`).
//!
//! Outcomes: a committed batch is all `Delivered`. An unreachable, silent or failing server
//! fails the whole batch as an endpoint failure (throttle). When the server refuses a value
//! (SQLSTATE class 22/23), the events at fault are found by bisection and fail alone with the
//! SQLSTATE (never the value), and the rest of the batch is committed: per-record order only
//! holds back the refused records. Events of an unknown resource, or without the data the
//! sink needs, fail alone before anything is sent. See `error.rs` for the full table.

mod apply;
mod connect;
mod ddl;
mod error;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_postgres::types::Type;
use tokio_postgres::{Statement, Transaction};

use self::apply::{Change, Planned, TableWriter};
use self::connect::{Conn, bounded};
use self::ddl::TableShape;
use self::error::ReplicaError;
use super::{Failure, Outcome, Sink, SinkError};
use crate::config::PostgresSinkConfig;
use crate::model::StoredEvent;
use crate::resource::Resource;

/// A subscription's PostgreSQL replica: one table per resource in the configured schema.
pub struct PostgresSink {
    subscription: String,
    url: String,
    schema: String,
    timeout: Duration,
    ca_file: Option<PathBuf>,
    resources: Vec<Arc<Resource>>,
    writers: Vec<TableWriter>,
    by_name: HashMap<String, usize>,
    conn: Mutex<Option<Conn>>,
}

impl PostgresSink {
    /// A sink for `resources` (the subscription's); connects only on `startup` or `deliver`.
    pub fn new(
        subscription: &str,
        config: &PostgresSinkConfig,
        resources: Vec<Arc<Resource>>,
    ) -> PostgresSink {
        let writers: Vec<TableWriter> = resources
            .iter()
            .map(|r| TableWriter::new(&config.schema, &r.schema))
            .collect();
        let by_name = writers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.resource.clone(), i))
            .collect();
        PostgresSink {
            subscription: subscription.to_owned(),
            url: config.url.clone(),
            schema: config.schema.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            ca_file: config.ca_file.clone(),
            resources,
            writers,
            by_name,
            conn: Mutex::new(None),
        }
    }

    /// The open connection with its tables checked, connecting first when needed.
    async fn ready<'a>(&self, slot: &'a mut Option<Conn>) -> Result<&'a mut Conn, ReplicaError> {
        if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
            *slot = None;
        }
        let conn = match slot {
            Some(conn) => conn,
            None => slot
                .insert(connect::connect(&self.url, self.ca_file.as_deref(), self.timeout).await?),
        };
        if !conn.ready {
            self.ensure_tables(conn).await?;
            conn.ready = true;
        }
        Ok(conn)
    }

    /// Creates what is missing and checks what exists: schema, tombstones, one table per
    /// resource.
    async fn ensure_tables(&self, conn: &mut Conn) -> Result<(), ReplicaError> {
        for resource in &self.resources {
            ddl::check_names(&self.schema, &resource.schema)
                .map_err(ReplicaError::Misconfigured)?;
        }
        let client = &conn.client;
        let limit = self.timeout;
        let exists = bounded(
            limit,
            client.query_opt(ddl::SCHEMA_EXISTS_SQL, &[&self.schema]),
        )
        .await?;
        if exists.is_none() {
            bounded(
                limit,
                client.batch_execute(&ddl::create_schema_sql(&self.schema)),
            )
            .await?;
        }
        let shapes = std::iter::once(TableShape::tombstones()).chain(
            self.resources
                .iter()
                .map(|r| TableShape::of_resource(&r.schema)),
        );
        for want in shapes {
            let found = match self.introspect(conn, &want.name).await? {
                Some(found) => found,
                None => {
                    bounded(limit, client.batch_execute(&want.create_sql(&self.schema))).await?;
                    tracing::info!(
                        subscription = %self.subscription,
                        table = %want.name,
                        "postgres replica table created"
                    );
                    self.introspect(conn, &want.name).await?.ok_or_else(|| {
                        ReplicaError::Misconfigured(format!(
                            "`{}.{}` exists but is not a table",
                            self.schema, want.name
                        ))
                    })?
                }
            };
            want.compare(&self.schema, &found)
                .map_err(ReplicaError::Misconfigured)?;
        }
        conn.statements.clear();
        Ok(())
    }

    /// The shape of an existing table, `None` when there is no such table.
    async fn introspect(
        &self,
        conn: &Conn,
        table: &str,
    ) -> Result<Option<TableShape>, ReplicaError> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.schema, &table];
        let columns = bounded(self.timeout, conn.client.query(ddl::COLUMNS_SQL, &params)).await?;
        if columns.is_empty() {
            return Ok(None);
        }
        let key = bounded(
            self.timeout,
            conn.client.query(ddl::PRIMARY_KEY_SQL, &params),
        )
        .await?;
        let text = |row: &tokio_postgres::Row, i: usize| row.try_get::<_, String>(i);
        Ok(Some(TableShape {
            name: table.to_owned(),
            columns: columns
                .iter()
                .map(|row| {
                    Ok(ddl::Column {
                        name: text(row, 0)?,
                        ty: text(row, 1)?,
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()?,
            key: key
                .iter()
                .map(|row| text(row, 0))
                .collect::<Result<_, tokio_postgres::Error>>()?,
        }))
    }

    /// Applies planned events, one outcome each: all in one transaction; when the server
    /// refuses a value, the culprits are searched (see [`PostgresSink::isolate`]).
    async fn apply_all(&self, planned: &[Planned]) -> Vec<Outcome> {
        let mut slot = self.conn.lock().await;
        let result = async {
            let conn = self.ready(&mut slot).await?;
            match self.apply_in_transaction(conn, planned).await {
                Ok(()) => Ok(vec![None; planned.len()]),
                Err(ReplicaError::Data(reason)) => {
                    tracing::warn!(
                        subscription = %self.subscription,
                        events = planned.len(),
                        reason = %reason,
                        "postgres replica refused a batch, looking for the events at fault"
                    );
                    self.isolate(conn, planned, reason).await
                }
                Err(other) => Err(other),
            }
        }
        .await;
        match result {
            Ok(refused) => planned
                .iter()
                .zip(refused)
                .map(|(p, refused)| match refused {
                    None => Outcome::Delivered,
                    Some(reason) => {
                        tracing::warn!(
                            subscription = %self.subscription,
                            resource = %self.writers[p.table].resource,
                            seq = p.seq,
                            reason = %reason,
                            "postgres replica refused an event"
                        );
                        Outcome::Retry(Failure::event(reason))
                    }
                })
                .collect(),
            Err(error) => {
                tracing::warn!(
                    subscription = %self.subscription,
                    events = planned.len(),
                    error = %error,
                    "postgres replica batch failed"
                );
                match &error {
                    e if e.drops_connection() => *slot = None,
                    ReplicaError::Schema(_) => {
                        if let Some(conn) = slot.as_mut() {
                            conn.ready = false;
                            conn.statements.clear();
                        }
                    }
                    _ => {}
                }
                let failure = match error {
                    ReplicaError::Other(_) => Failure::event(error.to_string()),
                    _ => Failure::endpoint(error.to_string()),
                };
                vec![Outcome::Retry(failure); planned.len()]
            }
        }
    }

    /// Writes every planned event in one transaction.
    async fn apply_in_transaction(
        &self,
        conn: &mut Conn,
        planned: &[Planned],
    ) -> Result<(), ReplicaError> {
        let Conn {
            client, statements, ..
        } = conn;
        let tx = bounded(self.timeout, client.transaction()).await?;
        self.write(&tx, statements, planned.iter()).await?;
        bounded(self.timeout, tx.commit()).await
    }

    /// Finds the events the server refuses by bisection, each attempt under a savepoint of
    /// one transaction, and commits the rest: one bad event in a batch of n costs about
    /// 2·log2(n) statements, not n. Returns, per event, why it was refused (`None`: applied).
    ///
    /// Committing the others is right because a batch never holds two events of one record:
    /// refusing an event holds back only its own record, whose later events wait for it.
    async fn isolate(
        &self,
        conn: &mut Conn,
        planned: &[Planned],
        reason: String,
    ) -> Result<Vec<Option<String>>, ReplicaError> {
        let refusal = |reason: String| Some(format!("postgresql refused a value: {reason}"));
        if planned.len() == 1 {
            return Ok(vec![refusal(reason)]);
        }
        let Conn {
            client, statements, ..
        } = conn;
        let limit = self.timeout;
        let mut refused: Vec<Option<String>> = vec![None; planned.len()];
        let mut tx = bounded(limit, client.transaction()).await?;
        let mid = planned.len() / 2;
        // The whole batch failed already; start with its halves, left first.
        let mut ranges = vec![(mid, planned.len()), (0, mid)];
        while let Some((lo, hi)) = ranges.pop() {
            if lo == hi {
                continue;
            }
            let part = bounded(limit, tx.savepoint("lb_isolate")).await?;
            match self.write(&part, statements, planned[lo..hi].iter()).await {
                Ok(()) => bounded(limit, part.commit()).await?,
                Err(ReplicaError::Data(reason)) => {
                    bounded(limit, part.rollback()).await?;
                    if hi - lo == 1 {
                        refused[lo] = refusal(reason);
                    } else {
                        let mid = lo + (hi - lo) / 2;
                        ranges.push((mid, hi));
                        ranges.push((lo, mid));
                    }
                }
                Err(other) => return Err(other),
            }
        }
        bounded(limit, tx.commit()).await?;
        Ok(refused)
    }

    /// Sends the upserts and deletes of `planned`, per table, in one statement each.
    async fn write(
        &self,
        tx: &Transaction<'_>,
        statements: &mut HashMap<(usize, Change), Statement>,
        planned: impl Iterator<Item = &Planned>,
    ) -> Result<(), ReplicaError> {
        let mut groups: Vec<((usize, Change), Vec<serde_json::Value>)> = Vec::new();
        for p in planned {
            let group = (p.table, p.change);
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, rows)) => rows.push(p.row.clone()),
                None => groups.push((group, vec![p.row.clone()])),
            }
        }
        for ((table, change), rows) in groups {
            let writer = &self.writers[table];
            let statement = match statements.get(&(table, change)) {
                Some(statement) => statement.clone(),
                None => {
                    let sql = match change {
                        Change::Upsert => &writer.upsert_sql,
                        Change::Delete => &writer.delete_sql,
                    };
                    let statement = bounded(
                        self.timeout,
                        tx.prepare_typed(sql, &[Type::JSONB, Type::TEXT]),
                    )
                    .await?;
                    statements.insert((table, change), statement.clone());
                    statement
                }
            };
            let rows = serde_json::Value::Array(rows);
            bounded(
                self.timeout,
                tx.execute(&statement, &[&rows, &writer.resource]),
            )
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PostgresSink {
    /// Connects afresh and creates or checks the schema and tables.
    async fn startup(&self) -> Result<(), SinkError> {
        let mut slot = self.conn.lock().await;
        if let Some(old) = slot.take() {
            old.close().await;
        }
        match self.ready(&mut slot).await {
            Ok(_) => {
                tracing::info!(
                    subscription = %self.subscription,
                    schema = %self.schema,
                    tables = self.resources.len(),
                    "postgres replica ready"
                );
                Ok(())
            }
            Err(error) => {
                *slot = None;
                Err(match error {
                    ReplicaError::Misconfigured(_) | ReplicaError::Schema(_) => {
                        SinkError::Misconfigured(error.to_string())
                    }
                    _ => SinkError::Unavailable(error.to_string()),
                })
            }
        }
    }

    /// Applies the batch in one transaction; see the module doc for the guarantees.
    async fn deliver(&self, batch: &[StoredEvent]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut planned = Vec::with_capacity(batch.len());
        let mut records = HashSet::with_capacity(batch.len());
        for (index, stored) in batch.iter().enumerate() {
            let event = &stored.event;
            let refused = match self.by_name.get(&event.resource) {
                None => Some("unknown resource".to_owned()),
                // The contract keeps one event per record in a batch; should that ever be
                // broken, the later event waits for the next batch, so order still holds.
                Some(_) if !records.insert((event.resource.as_str(), event.subject.as_str())) => {
                    Some("an earlier event of the same record is in this batch".to_owned())
                }
                Some(&table) => match self.writers[table].plan(index, table, stored) {
                    Ok(p) => {
                        planned.push(p);
                        None
                    }
                    Err(reason) => Some(reason),
                },
            };
            if let Some(reason) = refused {
                tracing::warn!(
                    subscription = %self.subscription,
                    resource = %event.resource,
                    seq = stored.seq,
                    reason = %reason,
                    "postgres replica cannot apply an event"
                );
                outcomes[index] = Some(Outcome::Retry(Failure::event(reason)));
            }
        }
        if !planned.is_empty() {
            let applied = self.apply_all(&planned).await;
            for (p, outcome) in planned.iter().zip(applied) {
                outcomes[p.index] = Some(outcome);
            }
            tracing::debug!(
                subscription = %self.subscription,
                events = planned.len(),
                "postgres replica batch done"
            );
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Retry(Failure::event("not attempted"))))
            .collect()
    }

    /// Closes the connection.
    async fn shutdown(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            conn.close().await;
        }
    }
}
