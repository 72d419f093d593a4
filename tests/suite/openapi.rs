//! `openapi/v1.json` is the document the code generates for the shipped adapters (the demo POS
//! database and the supplier price-list export); this test fails when it is stale. `UPDATE_OPENAPI=1 cargo test openapi` rewrites it.

use std::time::Duration;

use legacy_bridge::{app, config};

use super::engines::{Engine, TestDb, repo};
use super::harness::write_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_openapi_document_is_current() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let (dir, _, _) = write_config(&db.connection_string, "");
    // The shipped export adapter too, over an (empty) export folder, as scripts/demo runs it.
    let config_path = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let exports = repo().join("adapters/price-export-csv.toml");
    let text = text.replacen(".toml\"]", &format!(".toml\", {exports:?}]"), 1)
        + "\n[sources.exports]\nkind = \"files\"\ndir = \"exports\"\n"
        // A subscription, so the delivery endpoints are documented too (never started here).
        + "\n[subscriptions.crm]\nsink = { kind = \"webhook\", url = \"http://127.0.0.1:9/hook\", \
           secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }\n";
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    std::fs::write(&config_path, text).unwrap();
    let loaded = config::load(&config_path).unwrap();
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
        "/v1/supplier_prices/{supplier_sku}",
        "/admin/files",
        "/admin/files/{resource}/approve",
    ] {
        let item = &doc["paths"][path];
        assert!(
            item["get"].is_object() || item["post"].is_object(),
            "{path} documented"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["InventoryLevel"]["properties"]["on_hand"]["format"],
        "decimal"
    );
}
