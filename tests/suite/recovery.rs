//! The legacy system protected and the bridge resilient: database down -> 503 with
//! Retry-After and `/readyz` 503, back -> served again without a restart; every connection
//! busy -> 503 with Retry-After instead of an unbounded queue.

use std::time::{Duration, Instant};

use super::engines::{Engine, TestDb};
use super::harness::{problem, start};
use super::proxy::Proxy;

fn server_port(db: &TestDb) -> u16 {
    let conn = &db.connection_string;
    let port = conn
        .split(';')
        .find_map(|kv| kv.strip_prefix("Port="))
        .expect("connection string has Port=");
    port.parse().expect("port")
}

fn via_proxy(db: &TestDb, proxy: &Proxy) -> String {
    db.connection_string.replace(
        &format!("Port={};", server_port(db)),
        &format!("Port={};", proxy.port),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_gives_503_and_recovers_by_itself() {
    for engine in [Engine::Postgres, Engine::Mariadb] {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let proxy = Proxy::start(server_port(&db)).await;
        let bridge = start(&via_proxy(&db, &proxy), "query_timeout_secs = 2").await;
        assert_eq!(bridge.get("/v1/inventory/A1001/S01").await.status(), 200);

        // GIVEN the database goes away
        proxy.down();
        // THEN resources answer 503 problem+json with Retry-After, readiness fails, the
        // process stays up.
        let resp = bridge.get("/v1/inventory/A1001/S01").await;
        assert!(resp.headers().contains_key("retry-after"), "{engine:?}");
        let body = problem(resp, 503).await;
        assert!(
            !body.to_string().contains("Pwd"),
            "no connection details leak"
        );
        assert_eq!(bridge.get("/readyz").await.status(), 503);
        assert_eq!(bridge.get("/healthz").await.status(), 200);

        // WHEN it comes back, the next requests succeed without restarting the bridge.
        proxy.up();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = bridge.get("/v1/inventory/A1001/S01").await.status();
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{engine:?}: not recovered, last status {status}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(bridge.get("/readyz").await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_pool_answers_503_with_retry_after() {
    let Some(db) = TestDb::create(Engine::Postgres) else {
        return;
    };
    let proxy = Proxy::start(server_port(&db)).await;
    let bridge = start(
        &via_proxy(&db, &proxy),
        "max_connections = 1\nacquire_timeout_ms = 100\nquery_timeout_secs = 5",
    )
    .await;
    assert_eq!(bridge.get("/v1/inventory/A1001/S01").await.status(), 200);
    // GIVEN a slow database and a pool of one
    proxy.slow(Duration::from_millis(1500));
    let slow = {
        let http = bridge.http.clone();
        let url = format!("{}/v1/inventory/A1001/S01", bridge.base);
        let key = bridge.key.clone();
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // WHEN a second request arrives while the only connection is busy
    let resp = bridge.get("/v1/inventory/A1002/S01").await;
    // THEN it is turned away at once with a hint to retry shortly
    assert_eq!(resp.headers()["retry-after"], "1");
    let body = problem(resp, 503).await;
    assert_eq!(body["type"], "urn:legacy-bridge:problem:legacy-busy");
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the first request still completes"
    );
}
