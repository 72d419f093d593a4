//! Scans (capture's full passes) read exactly what fetches read, whichever way the driver is
//! read: in bulk when every column has a bounded width, row by row otherwise. A driver that
//! under-reports a width fails one scan loudly, never truncates, and the source then reads
//! row by row.

use legacy_bridge::config::OdbcSourceConfig;
use legacy_bridge::model::FieldType;
use legacy_bridge::source::odbc::OdbcSource;
use legacy_bridge::source::{
    OrderBy, Relation, Row, SelectColumn, SelectQuery, Source, SourceError,
};

use super::engines::{Engine, TestDb};

pub(super) async fn open(db: &TestDb) -> OdbcSource {
    let cfg: OdbcSourceConfig =
        toml::from_str(&format!("connection_string = {:?}", db.connection_string))
            .expect("source config");
    OdbcSource::open("t", &cfg).await.expect("open source")
}

/// Every row of `query`, scanned in batches of 7.
pub(super) async fn scan_all(
    source: &OdbcSource,
    query: SelectQuery,
) -> Result<Vec<Row>, SourceError> {
    let mut stream = source.scan(query, 7).await;
    let mut rows = Vec::new();
    while let Some(batch) = stream.recv().await {
        rows.extend(batch?);
    }
    Ok(rows)
}

/// A query over `table` with its columns as the catalog spells them, decoded as `types`.
async fn query(source: &OdbcSource, table: &str, types: &[FieldType]) -> SelectQuery {
    let tables = source.tables().await.expect("tables");
    let name = tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(table))
        .unwrap_or_else(|| panic!("no table {table}"))
        .name
        .clone();
    let relation = Relation::Table { schema: None, name };
    let columns = source.columns(&relation).await.expect("columns");
    let first = columns[0].name.clone();
    SelectQuery {
        relation,
        columns: columns
            .into_iter()
            .zip(types)
            .map(|(c, t)| SelectColumn {
                name: c.name,
                decode: *t,
            })
            .collect(),
        filter: Vec::new(),
        order_by: vec![OrderBy {
            column: first,
            descending: false,
            binary: false,
        }],
        limit: None,
    }
}

#[tokio::test]
async fn scans_read_what_fetches_read_on_every_engine() {
    use FieldType::{Decimal, String, Timestamp};
    for engine in [Engine::Sqlite, Engine::Mariadb, Engine::Postgres] {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let source = open(&db).await;
        let types = [String, String, Decimal, Decimal, Timestamp];
        let q = query(&source, "STOCK_LEVEL", &types).await;
        let scanned = scan_all(&source, q.clone()).await.expect("scan");
        let fetched = source
            .fetch(SelectQuery {
                limit: Some(100_000),
                ..q
            })
            .await
            .expect("fetch");
        let expected = db.scalar("SELECT COUNT(*) FROM STOCK_LEVEL");
        assert_eq!(scanned.len() as i64, expected, "{engine:?}");
        assert_eq!(scanned, fetched, "{engine:?}: scan and fetch differ");
    }
}

#[tokio::test]
async fn a_width_the_driver_under_reports_fails_one_scan_then_reads_row_by_row() {
    // GIVEN SQLite, which keeps text longer than a column's declared VARCHAR(5)
    let db = TestDb::create(Engine::Sqlite).expect("sqlite");
    db.exec("CREATE TABLE NOTE (ID INTEGER PRIMARY KEY, BODY VARCHAR(5))");
    let long = "x".repeat(300);
    db.exec(&format!(
        "INSERT INTO NOTE VALUES (1, 'short'), (2, '{long}')"
    ));
    let source = open(&db).await;
    let q = query(&source, "NOTE", &[FieldType::Integer, FieldType::String]).await;
    // WHEN it is scanned, THEN the first scan fails instead of truncating
    let err = scan_all(&source, q.clone()).await.expect_err("truncation");
    assert!(err.message.contains("wider than"), "{err}");
    // AND the next scan reads the whole value
    let rows = scan_all(&source, q).await.expect("second scan");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1][1],
        legacy_bridge::model::Value::Text(long),
        "the full value"
    );
}
