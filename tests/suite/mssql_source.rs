//! The `mssql` source over TDS, against the TDS test harness (`tests/suite/tds`), which
//! answers from SQLite: the demo schema of `sql/demo/mssql/` served as REST exactly as the
//! ODBC engines serve it, and the failures a SQL Server gives (deadlock victim, connection
//! dropped mid-result, login refused) answered the way the guarantees say.

use serde_json::json;

use super::engines::repo;
use super::harness::{Bridge, problem, start_with_source};
use super::tds::{TdsOptions, TdsServer};

/// A harness holding the demo schema and seed.
fn demo_server() -> TdsServer {
    let server = TdsServer::start(None, TdsOptions::default());
    for file in ["sql/demo/mssql/schema.sql", "sql/demo/seed.sql"] {
        let text = std::fs::read_to_string(repo().join(file)).expect("read sql");
        for stmt in text.split(";\n") {
            let body: String = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            if !body.trim().is_empty() {
                server.execute(&body);
            }
        }
    }
    server
}

fn source(server: &TdsServer, extra: &str) -> String {
    let o = TdsOptions::default();
    format!(
        "[sources.pos]\nkind = \"mssql\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = {:?}\n\
         user = {:?}\npassword = {:?}\nencrypt = \"off\"\nquery_timeout_secs = 5\n\
         connect_timeout_secs = 5\n{extra}",
        server.addr().port(),
        o.database,
        o.user,
        o.password
    )
}

async fn bridge(server: &TdsServer) -> Bridge {
    start_with_source(&source(server, "")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_suite_on_the_tds_harness() {
    let server = demo_server();
    let bridge = bridge(&server).await;

    let items = server.query("SELECT COUNT(*) FROM ITEM_MASTER").len();
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
    let server = demo_server();
    let bridge = bridge(&server).await;
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
    let mut server = demo_server();
    let bridge = bridge(&server).await;
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
    use legacy_bridge::store::EventFilter;

    use super::capture_harness::{berlin_now, sql};

    let server = demo_server();
    let (dir, _keys) = super::harness::write_config_with_source(&source(&server, ""));
    let loaded = legacy_bridge::config::load(&dir.path().join("config.toml")).unwrap();
    let mut app = legacy_bridge::app::build(loaded, std::time::Duration::ZERO)
        .await
        .unwrap();
    legacy_bridge::app::start_capture(&mut app).await.unwrap();
    let store = std::sync::Arc::clone(&app.capture.as_ref().unwrap().handle.store);
    let types = async || -> Vec<(String, String)> {
        store
            .events(0, 10_000, &EventFilter::default())
            .await
            .unwrap()
            .events
            .into_iter()
            .map(|e| (e.event.event_type, e.event.subject))
            .collect()
    };
    let eventually = async |what: &str, want: &dyn Fn(&[(String, String)]) -> bool| {
        for _ in 0..300 {
            if want(&types().await) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}: {:?}", types().await);
    };
    // The initial load: every row once, as snapshot events.
    let stock_rows = server.query("SELECT * FROM STOCK_LEVEL").len();
    eventually("the initial snapshot", &|t| {
        t.iter()
            .filter(|(ty, _)| ty == "inventory.snapshot")
            .count()
            == stock_rows
            && t.iter().any(|(ty, _)| ty == "prices.snapshot")
            && t.iter().any(|(ty, _)| ty == "sales.snapshot")
    })
    .await;

    // A legacy application writes.
    server.execute(&sql::stock_update("A1001", "S01", 77, berlin_now()));
    server.execute(&sql::price_update("RETAIL", "A1001", "11.1100"));
    eventually("the changes", &|t| {
        t.iter()
            .any(|(ty, s)| ty == "inventory.updated" && s == "A1001/S01")
            && t.iter().any(|(ty, _)| ty == "prices.updated")
    })
    .await;
    if let Some(capture) = app.capture.take() {
        capture.shutdown().await;
    }
}
