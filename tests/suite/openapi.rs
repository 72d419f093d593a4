//! `openapi/v1.json` is the document the code generates for the demo adapter; this test fails
//! when it is stale. `UPDATE_OPENAPI=1 cargo test openapi` rewrites it.

use std::time::Duration;

use legacy_bridge::{app, config};

use super::engines::{Engine, TestDb, repo};
use super::harness::write_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_openapi_document_is_current() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let (dir, _, _) = write_config(&db.connection_string, "");
    let loaded = config::load(&dir.path().join("config.toml")).unwrap();
    let built = app::build(loaded, Duration::ZERO).await.unwrap();
    let generated = serde_json::to_string_pretty(&built.state.openapi).unwrap() + "\n";
    let path = repo().join("openapi/v1.json");
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/v1.json is stale: run `UPDATE_OPENAPI=1 cargo test committed_openapi` and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/products",
        "/v1/inventory/{sku}/{location}",
        "/v1/prices/{sku}/{price_list}",
        "/v1/sales",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["InventoryLevel"]["properties"]["on_hand"]["format"],
        "decimal"
    );
}
