//! The `mssql` source over TDS, against the TDS test harness (`tests/suite/tds`), which
//! answers from SQLite, or against a real SQL Server when `MSSQL_TEST_URL` is set (see
//! `mssql_target`): the demo schema of `sql/demo/mssql/` served as REST exactly as the ODBC
//! engines serve it, and the failures a SQL Server gives (deadlock victim, connection dropped
//! mid-result, login refused) answered the way the guarantees say. The tests of failures
//! need the harness' fault injection and are skipped on a real server.

use serde_json::json;

use super::engines::{repo, script_statements};
use super::harness::{Bridge, problem, start_with_source};
use super::mssql_target::MssqlTarget;

/// A target holding the demo schema and seed.
async fn demo_target() -> MssqlTarget {
    let target = MssqlTarget::start().await;
    load_demo(&target).await;
    target
}

/// The harness holding the demo schema, for a test that needs fault injection; `None` on a
/// real server (saying on stderr that the test is skipped and `why`).
async fn demo_harness(why: &str) -> Option<MssqlTarget> {
    let target = MssqlTarget::harness_only(why)?;
    load_demo(&target).await;
    Some(target)
}

/// The demo schema (T-SQL, which the harness takes unchanged) and seed.
async fn load_demo(target: &MssqlTarget) {
    for file in ["sql/demo/mssql/schema.sql", "sql/demo/seed.sql"] {
        for stmt in script_statements(&repo().join(file)) {
            target.setup(&stmt).await;
        }
    }
}

async fn bridge(target: &MssqlTarget) -> Bridge {
    start_with_source(&target.source_toml("")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_suite_on_sql_server() {
    let target = demo_target().await;
    let bridge = bridge(&target).await;

    let items = target.query_rows("SELECT COUNT(*) FROM ITEM_MASTER").await;
    assert_eq!(items, 1);
    for limit in [1, 7, 500] {
        let all = bridge
            .all_pages(&format!("/v1/products?limit={limit}"))
            .await;
        let skus: Vec<&str> = all.iter().map(|r| r["sku"].as_str().unwrap()).collect();
        let mut sorted = skus.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(skus, sorted, "limit {limit}: key order, no duplicates");
        assert!(skus.len() > 10, "limit {limit}: every row ({})", skus.len());
    }
    // The same record as on every ODBC engine.
    assert_eq!(
        bridge.json("/v1/products/A1009").await,
        json!({"sku":"A1009","name":"Gartenschlauch Ø 19 mm","description":"Meterware, 3/4 Zoll, UV-beständig",
               "category":"GARD","unit":"M","barcode":"4007351010098","active":true,
               "updated_at":"2024-03-31T03:15:00+02:00"})
    );
    let stock = bridge.json("/v1/inventory/A1001/S01").await;
    assert_eq!(stock["sku"], "A1001");
    let filtered = bridge.all_pages("/v1/inventory?location=S02&limit=3").await;
    assert!(!filtered.is_empty());
    assert!(filtered.iter().all(|r| r["location"] == "S02"));
    problem(bridge.get("/v1/products/NOPE").await, 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_is_retried_and_a_dropped_result_never_serves_a_wrong_page() {
    let Some(target) =
        demo_harness("it injects a deadlock victim (1205) and a connection dropped mid-result")
            .await
    else {
        return;
    };
    let server = target.harness().expect("demo_harness gives the harness");
    let bridge = bridge(&target).await;
    let expected = bridge.json("/v1/products?limit=5").await;

    // 1205 once: the query runs again and the answer is the same.
    server.deadlock_next(1);
    assert_eq!(bridge.json("/v1/products?limit=5").await, expected);

    // The connection dropped after two rows: retried on a new one, or a clean 503.
    server.drop_connection_after_rows(2);
    let resp = bridge.get("/v1/products?limit=5").await;
    if resp.status() == 200 {
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body, expected, "never a short page");
    } else {
        problem(resp, 503).await;
    }
    assert_eq!(bridge.json("/v1/products?limit=5").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_not_ready_until_the_login_works_again() {
    let Some(mut target) =
        demo_harness("it restarts the server and makes it refuse the next login").await
    else {
        return;
    };
    let bridge = bridge(&target).await;
    let server = target
        .harness_mut()
        .expect("demo_harness gives the harness");
    assert_eq!(bridge.get("/readyz").await.status(), 200);
    // The server restarts (every pooled connection dies) and refuses the next login.
    server.stop();
    server.restart();
    server.fail_next_login();
    let logins = server.login_count();
    let status = bridge.get("/readyz").await.status();
    assert_eq!(
        status,
        503,
        "logins {} -> {}, stats {:?}",
        logins,
        server.login_count(),
        server.stats()
    );
    // The API answers 503 + Retry-After meanwhile, not an error page.
    server.fail_next_login();
    problem(bridge.get("/v1/products/A1001").await, 503).await;
    // The login works again: ready without a restart of the bridge.
    assert_eq!(bridge.get("/readyz").await.status(), 200);
    assert_eq!(bridge.json("/v1/products/A1001").await["sku"], "A1001");
}

/// The demo adapter's capture sections on SQL Server: a timestamp cursor (inventory), an
/// integer cursor (sales) and snapshot-diff (prices) find what a legacy application writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_capture_strategies_work_on_sql_server() {
    use super::capture_harness::{Rig, berlin_now, has, of, sql};

    let target = demo_target().await;
    let adapter = std::fs::read_to_string(repo().join("adapters/demo-pos.toml")).unwrap();
    let mut rig = Rig::build_on("mssql", &target.source_toml(""), &adapter).await;
    rig.start_capture().await;
    // The initial load: every row once, as snapshot events.
    let stock_rows = target.query_rows("SELECT * FROM STOCK_LEVEL").await;
    rig.wait_for("the initial snapshot", |e| {
        e.iter()
            .filter(|e| e.event.event_type == "inventory.snapshot")
            .count()
            == stock_rows
            && !of(e, "prices").is_empty()
            && !of(e, "sales").is_empty()
    })
    .await;

    // A legacy application writes.
    target
        .setup(&sql::stock_update("A1001", "S01", 77, berlin_now()))
        .await;
    target
        .setup(&sql::price_update("RETAIL", "A1001", "11.1100"))
        .await;
    rig.wait_for("the changes", |e| {
        has(e, "inventory.updated", "A1001/S01")
            && e.iter().any(|e| e.event.event_type == "prices.updated")
    })
    .await;
    rig.stop().await;
}

/// Every SQL Server type the issue lists, decoded by the source into the value an adapter
/// field of that type gets: exact decimals and money, padded CHAR (trimmed later by the
/// mapping), date/time precision and offsets, GUIDs, binary and rowversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_decodes_exactly() {
    use legacy_bridge::config::MssqlSourceConfig;
    use legacy_bridge::model::{FieldType, Value};
    use legacy_bridge::source::{Relation, SelectColumn, SelectQuery, Source, mssql::MssqlSource};

    let target = MssqlTarget::start().await;
    let create = "CREATE TABLE TYPES (ID INT NOT NULL PRIMARY KEY, TI TINYINT, SI SMALLINT, BI BIGINT, \
         DEC DECIMAL(12,4), NUM NUMERIC(38,10), MON MONEY, SMON SMALLMONEY, FLAG BIT, \
         CH CHAR(6), VCH VARCHAR(20), NCH NCHAR(4), NVCH NVARCHAR(MAX), TXT TEXT, NTXT NTEXT, \
         DT DATETIME, SDT SMALLDATETIME, DT2 DATETIME2(7), D DATE, T TIME(3), DTO DATETIMEOFFSET(2), \
         G UNIQUEIDENTIFIER, BIN BINARY(3), VBIN VARBINARY(10), RV ROWVERSION)";
    target.setup(create).await;
    let client_sql = "INSERT INTO TYPES (ID, TI, SI, BI, DEC, NUM, MON, SMON, FLAG, CH, VCH, NCH, NVCH, TXT, NTXT, \
         DT, SDT, DT2, D, T, DTO, G, BIN, VBIN) VALUES (1, 255, -32768, 9007199254740993, \
         -12345678.1234, 12345.0123456789, 900719925474.0991, -214748.3648, 1, \
         'ab', 'Straße', N'äö', N'long ünïcödé', 'text', N'ntext', '2024-03-31 02:15:00.997', \
         '2024-10-27 02:30:00', '2024-01-02 03:04:05.1234567', '2024-02-29', '23:59:59.123', \
         '2024-06-01 12:00:00.12 +02:00', '6F9619FF-8B86-D011-B42D-00C04FC964FF', @P1, @P2)";
    // Through TDS, so the harness stores each value as its column type says.
    {
        let mut client = target.client().await;
        let (bin, vbin) = (vec![0x0Au8, 0x0B, 0x0C], vec![0x00u8, 0xFF]);
        client.execute(client_sql, &[&bin, &vbin]).await.unwrap();
    }
    target.setup("INSERT INTO TYPES (ID) VALUES (2)").await;
    let cfg: MssqlSourceConfig = toml::from_str(&target.connection_keys()).unwrap();
    let source = MssqlSource::open("types", &cfg);
    let columns = [
        ("TI", FieldType::Integer),
        ("SI", FieldType::Integer),
        ("BI", FieldType::Integer),
        ("DEC", FieldType::Decimal),
        ("NUM", FieldType::Decimal),
        ("MON", FieldType::Decimal),
        ("SMON", FieldType::Decimal),
        ("FLAG", FieldType::Boolean),
        ("CH", FieldType::String),
        ("VCH", FieldType::String),
        ("NCH", FieldType::String),
        ("NVCH", FieldType::String),
        ("TXT", FieldType::String),
        ("NTXT", FieldType::String),
        ("DT", FieldType::Timestamp),
        ("SDT", FieldType::Timestamp),
        ("DT2", FieldType::Timestamp),
        ("D", FieldType::Date),
        ("T", FieldType::Time),
        ("DTO", FieldType::Timestamp),
        ("G", FieldType::String),
        ("BIN", FieldType::Binary),
        ("VBIN", FieldType::Binary),
        ("RV", FieldType::Integer),
    ];
    let query = |id: i64| SelectQuery {
        relation: Relation::Table {
            schema: Some("dbo".into()),
            name: "TYPES".into(),
        },
        columns: columns
            .iter()
            .map(|(name, decode)| SelectColumn {
                name: (*name).into(),
                decode: *decode,
            })
            .collect(),
        filter: vec![legacy_bridge::source::Predicate::Compare {
            column: "ID".into(),
            op: legacy_bridge::source::CompareOp::Eq,
            param: legacy_bridge::source::Param {
                value: Value::Int(id),
                sql_type: legacy_bridge::source::SqlType::Integer,
            },
        }],
        order_by: Vec::new(),
        limit: Some(2),
    };
    let rows = source.fetch(query(1)).await.unwrap();
    let shown: Vec<String> = rows[0].iter().map(|v| v.to_json().to_string()).collect();
    let got: Vec<(&str, &str)> = columns
        .iter()
        .map(|(n, _)| *n)
        .zip(shown.iter().map(String::as_str))
        .collect();
    let expected = [
        ("TI", "255"),
        ("SI", "-32768"),
        ("BI", "9007199254740993"),
        ("DEC", "\"-12345678.1234\""),
        ("NUM", "\"12345.0123456789\""), // the harness keeps 15 significant digits
        ("MON", "\"900719925474.0991\""),
        ("SMON", "\"-214748.3648\""),
        ("FLAG", "true"),
        ("CH", "\"ab    \""),
        ("VCH", "\"Straße\""),
        ("NCH", "\"äö  \""),
        ("NVCH", "\"long ünïcödé\""),
        ("TXT", "\"text\""),
        ("NTXT", "\"ntext\""),
        ("DT", "\"2024-03-31T02:15:00.997\""),
        ("SDT", "\"2024-10-27T02:30:00\""),
        ("DT2", "\"2024-01-02T03:04:05.123456700\""),
        ("D", "\"2024-02-29\""),
        ("T", "\"23:59:59.123\""),
        ("DTO", "\"2024-06-01T12:00:00.120+02:00\""),
        ("G", "\"6F9619FF-8B86-D011-B42D-00C04FC964FF\""),
        ("BIN", "\"CgsM\""),
        ("VBIN", "\"AP8=\""),
    ];
    for (i, (name, want)) in expected.iter().enumerate() {
        assert_eq!(got[i], (*name, *want), "column {name}");
    }
    let rv = &rows[0][columns.len() - 1];
    assert!(matches!(rv, Value::Int(n) if *n > 0), "rowversion {rv:?}");
    // A row of NULLs decodes as NULLs (rowversion is always set).
    let nulls = source.fetch(query(2)).await.unwrap();
    assert!(
        nulls[0][..columns.len() - 1]
            .iter()
            .all(|v| *v == Value::Null),
        "{:?}",
        nulls[0]
    );
}

/// A rowversion cursor reads only below `MIN_ACTIVE_ROWVERSION()`: a row stamped by a
/// transaction still in flight has a lower rowversion than rows committed after it, and a
/// cursor that ran ahead (to `@@DBTS`) would skip it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rowversion_cursor_waits_for_transactions_in_flight() {
    use std::time::Duration;

    use super::capture_harness::{Rig, has, show};

    let Some(target) = MssqlTarget::harness_only(
        "it holds a rowversion in flight with the harness' hold_rowversion()",
    ) else {
        return;
    };
    let server = target.harness().expect("harness_only gives the harness");
    server.execute(
        "CREATE TABLE STOCK_RV (ITEM_CODE NVARCHAR(10) NOT NULL PRIMARY KEY, QTY INT NOT NULL, RV ROWVERSION)",
    );
    server.execute("INSERT INTO STOCK_RV (ITEM_CODE, QTY) VALUES ('A', 1), ('B', 1)");
    let adapter = "[resources.stock_rv]\nsource = \"pos\"\ntable = \"STOCK_RV\"\nkey = \"sku\"\n\
         [resources.stock_rv.fields]\nsku = { column = \"ITEM_CODE\", type = \"string\" }\n\
         qty = { column = \"QTY\", type = \"integer\" }\n\
         [resources.stock_rv.capture]\nstrategy = \"cursor\"\ncursor_column = \"RV\"\ninterval_ms = 100\n";
    let mut rig = Rig::build_on("mssql rowversion", &target.source_toml(""), adapter).await;
    rig.start_capture().await;
    let events = rig
        .wait_for_within("the initial snapshot", Duration::from_secs(10), |e| {
            e.len() >= 2
        })
        .await;
    assert_eq!(events.len(), 2, "initial snapshot: {}", show(&events));

    // GIVEN a transaction in flight holding the next rowversion, and a write committed after
    // it (so stamped higher)
    let held = server.hold_rowversion();
    server.execute("UPDATE STOCK_RV SET QTY = 2 WHERE ITEM_CODE = 'A'");
    tokio::time::sleep(Duration::from_millis(800)).await;
    // THEN the cursor does not run past the transaction in flight,
    let events = rig.events().await;
    assert!(
        !has(&events, "stock_rv.updated", "A"),
        "read beyond MIN_ACTIVE_ROWVERSION(): {}",
        show(&events)
    );
    // AND once it commits, both changes are found.
    held.commit("UPDATE STOCK_RV SET QTY = 3 WHERE ITEM_CODE = 'B'");
    rig.wait_for_within("both changes", Duration::from_secs(10), |e| {
        has(e, "stock_rv.updated", "A") && has(e, "stock_rv.updated", "B")
    })
    .await;
    rig.stop().await;
}

/// The per-query timeout protects the bridge from a slow SQL Server: the API answers 503 with
/// Retry-After instead of waiting, and the connection that timed out is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_is_a_503_within_the_query_timeout() {
    let Some(target) = demo_harness("it delays every response of the server").await else {
        return;
    };
    let server = target.harness().expect("demo_harness gives the harness");
    let bridge = start_with_source(
        &target
            .source_toml("")
            .replace("query_timeout_secs = 5", "query_timeout_secs = 1"),
    )
    .await;
    assert_eq!(bridge.json("/v1/products/A1001").await["sku"], "A1001");
    server.delay_responses(std::time::Duration::from_secs(10));
    let started = std::time::Instant::now();
    let resp = bridge.get("/v1/products/A1001").await;
    assert!(
        resp.headers().contains_key("retry-after"),
        "{:?}",
        resp.headers()
    );
    problem(resp, 503).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "answered before the server did: {:?}",
        started.elapsed()
    );
    server.delay_responses(std::time::Duration::ZERO);
    assert_eq!(bridge.json("/v1/products/A1001").await["sku"], "A1001");
}
