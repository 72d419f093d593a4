//! The REST suite, run unchanged against the demo schema on SQLite, MariaDB and PostgreSQL
//! through their ODBC drivers.

use serde_json::json;

use super::engines::{Engine, TestDb};
use super::harness::{DEFAULT_SOURCE_EXTRA, problem, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_suite_on_sqlite() {
    rest_suite(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_suite_on_mariadb() {
    rest_suite(Engine::Mariadb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_suite_on_postgres() {
    rest_suite(Engine::Postgres).await;
}

async fn rest_suite(engine: Engine) {
    let Some(db) = TestDb::create(engine) else {
        return;
    };
    let bridge = start(&db.connection_string, DEFAULT_SOURCE_EXTRA).await;

    // Pagination walks every row exactly once, in key order, whatever the page size.
    let items = db.scalar("SELECT COUNT(*) FROM ITEM_MASTER");
    for limit in [1, 7, 500] {
        let all = bridge
            .all_pages(&format!("/v1/products?limit={limit}"))
            .await;
        let skus: Vec<&str> = all.iter().map(|r| r["sku"].as_str().unwrap()).collect();
        let mut sorted = skus.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            skus, sorted,
            "{engine:?} limit {limit}: key order, no duplicates"
        );
        assert_eq!(
            skus.len() as i64,
            items,
            "{engine:?} limit {limit}: every row"
        );
    }

    // The same record reads the same on every engine: padding trimmed, Y/N flags as booleans,
    // naive Berlin timestamps with offsets (this one falls in the spring DST gap).
    assert_eq!(
        bridge.json("/v1/products/A1009").await,
        json!({"sku":"A1009","name":"Gartenschlauch Ø 19 mm","description":"Meterware, 3/4 Zoll, UV-beständig",
               "category":"GARD","unit":"M","barcode":"4007351010098","active":true,
               "updated_at":"2024-03-31T03:15:00+02:00"})
    );
    // Composite keys; decimals exact with the column's scale (DECIMAL(12,3)).
    assert_eq!(
        bridge.json("/v1/inventory/A1001/S01").await,
        json!({"sku":"A1001","location":"S01","on_hand":"51.000","reserved":"0.000",
               "updated_at":"2024-11-01T07:00:00+01:00"})
    );
    // The table without a primary key, money rounded to the adapter's scale 2.
    let price = bridge.json("/v1/prices/A1009/RETAIL").await;
    assert_eq!(price["amount"], "1.89");
    assert_eq!(price["currency"], "EUR");
    // A custom resource with an integer key.
    let sale = bridge.json("/v1/sales/100002").await;
    assert_eq!(sale["quantity"], "12.500");
    assert_eq!(sale["sold_at"], "2024-11-29T09:17:29+01:00");

    // Filters: equality (repeated = IN), ranges, booleans through legacy spellings.
    let s02 = bridge
        .all_pages("/v1/inventory?location=S02&limit=50")
        .await;
    assert_eq!(
        s02.len() as i64,
        db.scalar("SELECT COUNT(*) FROM STOCK_LEVEL WHERE STORE_NO = 'S02 '")
    );
    assert!(s02.iter().all(|r| r["location"] == "S02"));
    let two = bridge
        .all_pages("/v1/inventory?location=S01&location=S03")
        .await;
    assert_eq!(
        two.len() as i64,
        db.scalar("SELECT COUNT(*) FROM STOCK_LEVEL WHERE STORE_NO <> 'S02 '")
    );
    let plenty = bridge
        .all_pages("/v1/inventory?on_hand%5Bgte%5D=10&on_hand%5Blt%5D=100")
        .await;
    assert_eq!(
        plenty.len() as i64,
        db.scalar("SELECT COUNT(*) FROM STOCK_LEVEL WHERE QTY_ON_HAND >= 10 AND QTY_ON_HAND < 100")
    );
    for r in &plenty {
        let q: f64 = r["on_hand"].as_str().unwrap().parse().unwrap();
        assert!((10.0..100.0).contains(&q), "{r}");
    }
    let inactive = bridge.all_pages("/v1/products?active=false").await;
    assert_eq!(
        inactive.len() as i64,
        db.scalar("SELECT COUNT(*) FROM ITEM_MASTER WHERE ACTIVE_FLG = 'N'")
    );
    let recent = bridge
        .all_pages("/v1/products?updated_at%5Bgte%5D=2024-01-01T00:00:00%2B01:00")
        .await;
    assert_eq!(
        recent.len() as i64,
        db.scalar("SELECT COUNT(*) FROM ITEM_MASTER WHERE LAST_UPD >= '2024-01-01 00:00:00'")
    );

    // Sorting on a non-key field with small pages: a total order, nothing lost or repeated.
    let by_price = bridge
        .all_pages("/v1/prices?sort=-amount,sku&limit=6")
        .await;
    assert_eq!(
        by_price.len() as i64,
        db.scalar("SELECT COUNT(*) FROM PRICE_LIST_ITEM")
    );
    let amounts: Vec<rust_decimal::Decimal> = by_price
        .iter()
        .map(|r| r["amount"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        amounts.windows(2).all(|w| w[0] >= w[1]),
        "descending amounts"
    );
    let mut keys: Vec<String> = by_price
        .iter()
        .map(|r| format!("{}/{}", r["sku"], r["price_list"]))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), by_price.len(), "no record twice");

    // ETag: the same body gets the same tag, and If-None-Match answers 304.
    let first = bridge.get("/v1/inventory/A1001/S01").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = bridge
        .get_if_none_match("/v1/inventory/A1001/S01", &etag)
        .await;
    assert_eq!(again.status(), 304);
    db.exec("UPDATE STOCK_LEVEL SET QTY_ON_HAND = QTY_ON_HAND - 1 WHERE ITEM_CODE = 'A1001     ' AND STORE_NO = 'S01 '");
    let changed = bridge
        .get_if_none_match("/v1/inventory/A1001/S01", &etag)
        .await;
    assert_eq!(changed.status(), 200, "a change invalidates the ETag");
    assert_eq!(
        changed.json::<serde_json::Value>().await.unwrap()["on_hand"],
        "50.000"
    );

    // Bad requests: 400 problem+json naming the parameter.
    for (path, param) in [
        ("/v1/products?colour=red", "colour"),
        ("/v1/products?limit=501", "limit"),
        ("/v1/products?cursor=bm9wZQ", "cursor"),
        ("/v1/products?description=x", "description"),
        ("/v1/products?sort=name", "sort"),
        ("/v1/inventory?on_hand=lots", "on_hand"),
        ("/v1/sales/abc", "txn_no"),
    ] {
        let body = problem(bridge.get(path).await, 400).await;
        assert_eq!(body["parameter"], param, "{path}");
    }
    // A cursor only continues the query it came from.
    let page = bridge.json("/v1/products?limit=2&sort=-updated_at").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    problem(
        bridge
            .get(&format!("/v1/products?limit=2&cursor={cursor}"))
            .await,
        400,
    )
    .await;
    // Injection attempts are just values.
    let none = bridge
        .json("/v1/products?sku=A1001%27%20OR%20%271%27%3D%271")
        .await;
    assert_eq!(none["data"], json!([]));

    problem(bridge.get("/v1/products/NOPE").await, 404).await;
    problem(bridge.get("/v1/nothing-here").await, 404).await;

    // Keys and scopes.
    problem(bridge.get_with("/v1/products", None).await, 401).await;
    problem(bridge.get_with("/v1/products", Some("lb_wrong")).await, 401).await;
    let forbidden = problem(
        bridge.get_with("/v1/prices", Some(&bridge.stock_key)).await,
        403,
    )
    .await;
    assert!(
        forbidden["detail"]
            .as_str()
            .unwrap()
            .contains("prices:read")
    );
    assert_eq!(
        bridge
            .get_with("/v1/inventory/A1001/S01", Some(&bridge.stock_key))
            .await
            .status(),
        200
    );

    // Probes need no key.
    assert_eq!(bridge.get_with("/healthz", None).await.status(), 200);
    assert_eq!(bridge.get_with("/readyz", None).await.status(), 200);
    let docs = bridge.get_with("/docs/", None).await;
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "docs page is served offline"
    );
}
