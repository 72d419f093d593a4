//! SQL Server Change Tracking, as the `mssql-change-tracking` strategy reads it, following
//! Microsoft's documented pattern: in one SNAPSHOT transaction, check the version synced to
//! against `CHANGE_TRACKING_MIN_VALID_VERSION`, take `CHANGE_TRACKING_CURRENT_VERSION()` for
//! next time, and read `CHANGETABLE(CHANGES ...)` joined back to the table. The snapshot makes
//! the version and the rows agree: a change committed meanwhile is in neither.
//!
//! The isolation level and transaction are set by plain batches of their own: SET options made
//! inside `sp_executesql` revert when it returns, and a transaction begun there trips 266.
//! Parameters (the table's name) still go through `sp_executesql`.

use async_trait::async_trait;
use tiberius::Query;

use super::pool::{self, Connection, Lease};
use super::{Failure, MssqlSource, SCAN_BUFFERED_BATCHES, Scanner, Streamed, finish};
use crate::source::{
    ChangeTracking, Relation, SelectColumn, SourceError, SourceErrorKind, TrackedChanges,
    TrackedChangesQuery, TrackingVersions,
};

const BEGIN: &str = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION";
/// Ends the read-only snapshot transaction and gives the pooled connection back its default
/// isolation level.
const END: &str = "COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
const ROLLBACK: &str = "ROLLBACK TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
const VERSIONS: &str = "SELECT CHANGE_TRACKING_CURRENT_VERSION(), \
                        CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(?))";

impl MssqlSource {
    /// The table with the source's default schema filled in, so `OBJECT_ID` and `CHANGETABLE`
    /// name the same object whatever the login's default schema.
    fn tracked_table(&self, table: &Relation) -> Result<Relation, SourceError> {
        match table {
            Relation::Table { schema, name } => Ok(Relation::Table {
                schema: Some(schema.clone().unwrap_or_else(|| self.schema.clone())),
                name: name.clone(),
            }),
            Relation::Query(_) => Err(SourceError::new(
                SourceErrorKind::Config,
                "change tracking follows a table, not a query",
            )),
        }
    }

    /// `CHANGETABLE(CHANGES ...)` joined back to the table: `[version, key..., columns...]`.
    fn changes_sql(
        &self,
        table: &Relation,
        key: &[SelectColumn],
        columns: &[SelectColumn],
    ) -> String {
        let d = &self.dialect;
        let mut select = vec!["CT.[SYS_CHANGE_VERSION]".to_owned()];
        select.extend(key.iter().map(|k| format!("CT.{}", d.quote(&k.name))));
        select.extend(columns.iter().map(|c| format!("T.{}", d.quote(&c.name))));
        let on: Vec<String> = key
            .iter()
            .map(|k| format!("T.{0} = CT.{0}", d.quote(&k.name)))
            .collect();
        let from = d.from_clause(table);
        let mut order = vec!["CT.[SYS_CHANGE_VERSION]".to_owned()];
        order.extend(key.iter().map(|k| format!("CT.{}", d.quote(&k.name))));
        format!(
            "SELECT {} FROM CHANGETABLE(CHANGES {from}, ?) AS CT LEFT JOIN {from} AS T ON {} \
             ORDER BY {}",
            select.join(", "),
            on.join(" AND "),
            order.join(", ")
        )
    }

    /// Begins the snapshot transaction on a leased connection and reads the versions,
    /// retrying what may pass by itself; the lease comes back inside the transaction.
    async fn begin_snapshot(&self, object: &str) -> Result<(Lease, TrackingVersions), SourceError> {
        let mut attempt = 0u32;
        loop {
            let (error, retry) = match self.pool.lease().await {
                Err(failed) => failed,
                Ok(mut lease) => {
                    let begun =
                        tokio::time::timeout(self.query_timeout, begin(lease.conn(), object)).await;
                    match begun {
                        Ok(Ok(versions)) => return Ok((lease, versions)),
                        failed => match self.settle::<TrackingVersions>(lease, failed) {
                            Ok(_) => unreachable!("a success returned above"),
                            Err(e) => e,
                        },
                    }
                }
            };
            if !self.again(&error, retry, &mut attempt).await {
                return Err(error);
            }
        }
    }

    /// Ends a snapshot transaction that read only versions; a connection that cannot end it
    /// cleanly is closed rather than pooled.
    async fn roll_back(&self, mut lease: Lease) {
        let ended =
            tokio::time::timeout(self.query_timeout, run_batch(lease.conn(), ROLLBACK)).await;
        if !matches!(ended, Ok(Ok(()))) {
            lease.discard();
        }
    }
}

async fn run_batch(conn: &mut Connection, sql: &str) -> Result<(), Failure> {
    conn.simple_query(sql).await?.into_results().await?;
    Ok(())
}

async fn begin(conn: &mut Connection, object: &str) -> Result<TrackingVersions, Failure> {
    run_batch(conn, BEGIN).await?;
    let mut query = Query::new(super::params::numbered(VERSIONS).0);
    query.bind(object.to_owned());
    let row = query.query(conn).await?.into_row().await?;
    let (current, min_valid) = row
        .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
        .unwrap_or_default();
    Ok(TrackingVersions { current, min_valid })
}

/// A table's name as `OBJECT_ID` takes it: `[schema].[name]`.
fn object_name(source: &MssqlSource, table: &Relation) -> String {
    source.dialect.from_clause(table)
}

#[async_trait]
impl ChangeTracking for MssqlSource {
    async fn tracking_versions(&self, table: &Relation) -> Result<TrackingVersions, SourceError> {
        let table = self.tracked_table(table)?;
        let (lease, versions) = self.begin_snapshot(&object_name(self, &table)).await?;
        self.roll_back(lease).await;
        Ok(versions)
    }

    async fn tracked_changes(
        &self,
        query: TrackedChangesQuery,
        batch_size: usize,
    ) -> Result<TrackedChanges, SourceError> {
        let table = self.tracked_table(&query.table)?;
        let (mut lease, versions) = self.begin_snapshot(&object_name(self, &table)).await?;
        let valid = versions
            .min_valid
            .is_some_and(|min_valid| query.since >= min_valid);
        if !valid || versions.current.is_none() {
            self.roll_back(lease).await;
            return match (versions.min_valid, versions.current) {
                (Some(_), Some(_)) => Ok(TrackedChanges::Expired(versions)),
                _ => Err(SourceError::new(
                    SourceErrorKind::Config,
                    format!(
                        "change tracking is not enabled on {} or its database (or the login \
                         lacks VIEW CHANGE TRACKING); see sql/mssql/enable-change-tracking.sql",
                        object_name(self, &table)
                    ),
                )),
            };
        }
        let sql = self.changes_sql(&table, &query.key, &query.columns);
        let mut columns = vec![SelectColumn {
            name: "SYS_CHANGE_VERSION".to_owned(),
            decode: crate::model::FieldType::Integer,
        }];
        columns.extend(query.key.iter().cloned());
        columns.extend(query.columns.iter().cloned());
        let params = vec![crate::source::Param {
            value: crate::model::Value::Int(query.since),
            sql_type: crate::source::SqlType::Integer,
        }];
        let scanner = Scanner {
            name: self.name.clone(),
            pool: std::sync::Arc::clone(&self.pool),
            batch_timeout: self.query_timeout,
            retries: 0,
            batch_size: batch_size.max(1),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(SCAN_BUFFERED_BATCHES);
        tokio::spawn(async move {
            match scanner
                .stream(lease.conn(), &sql, &params, &columns, &tx)
                .await
            {
                Ok(Streamed::Complete(rest)) => {
                    let ended =
                        tokio::time::timeout(scanner.batch_timeout, run_batch(lease.conn(), END))
                            .await;
                    match ended {
                        Ok(Ok(())) => {
                            drop(lease);
                            finish(&tx, rest).await;
                        }
                        failed => {
                            lease.discard();
                            let message = match failed {
                                Ok(Err(Failure::Db(e))) => pool::classify(&e).message,
                                Ok(Err(Failure::Source(e))) => e.message,
                                _ => "timed out".to_owned(),
                            };
                            let _ = tx
                                .send(Err(SourceError::new(
                                    SourceErrorKind::Unavailable,
                                    format!("cannot end the change-tracking snapshot: {message}"),
                                )))
                                .await;
                        }
                    }
                }
                Ok(Streamed::Abandoned) => lease.discard(),
                Err((error, _, _)) => {
                    lease.discard();
                    let _ = tx.send(Err(error)).await;
                }
            }
        });
        Ok(TrackedChanges::Rows { versions, rows: rx })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MssqlSourceConfig;
    use crate::model::FieldType;

    fn source() -> MssqlSource {
        let cfg: MssqlSourceConfig =
            toml::from_str("host = \"db\"\ndatabase = \"erp\"\nuser = \"u\"\npassword = \"p\"")
                .unwrap();
        MssqlSource::open("pos", &cfg)
    }

    fn column(name: &str) -> SelectColumn {
        SelectColumn {
            name: name.to_owned(),
            decode: FieldType::String,
        }
    }

    #[test]
    fn changes_are_joined_back_by_key_in_version_order() {
        let s = source();
        let table = s
            .tracked_table(&Relation::Table {
                schema: None,
                name: "STOCK".into(),
            })
            .unwrap();
        let sql = s.changes_sql(
            &table,
            &[column("SKU"), column("LOC")],
            &[column("SKU"), column("LOC"), column("QTY")],
        );
        assert_eq!(
            sql,
            "SELECT CT.[SYS_CHANGE_VERSION], CT.[SKU], CT.[LOC], T.[SKU], T.[LOC], T.[QTY] \
             FROM CHANGETABLE(CHANGES [dbo].[STOCK], ?) AS CT LEFT JOIN [dbo].[STOCK] AS T \
             ON T.[SKU] = CT.[SKU] AND T.[LOC] = CT.[LOC] \
             ORDER BY CT.[SYS_CHANGE_VERSION], CT.[SKU], CT.[LOC]"
        );
        assert_eq!(object_name(&s, &table), "[dbo].[STOCK]");
    }
}
