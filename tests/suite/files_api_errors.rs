//! The operator endpoints of file resources refuse what they should, as problem+json: scopes
//! (`*:read` never reaches `/admin`, reading is not approving), bad limits and unknown
//! resources.

use super::files_harness::{Auth, FilesBridge, RENAME};
use super::harness::problem;

const ADAPTER: &str = r#"
[resources.items]
source = "exports"
key = "sku"

[resources.items.file]
pattern = "ITEMS_*.csv"
format = "csv"

[resources.items.fields]
sku  = { column = "SKU", type = "string" }
name = { column = "NAME", type = "string" }
"#;

/// A bridge with keys and one applied export.
async fn bridge() -> FilesBridge {
    let bridge = FilesBridge::start(RENAME, ADAPTER, Auth::Keys).await;
    bridge.drop_export("ITEMS_001.csv", b"SKU,NAME\nA,x\nB,y\n");
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    bridge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_files_endpoints_need_their_admin_scopes() {
    let bridge = bridge().await;
    let keys = bridge.keys.clone().expect("keys");
    let approve = |key: Option<&str>, resource: &str| {
        let (bridge, key, resource) = (&bridge, key.map(str::to_owned), resource.to_owned());
        async move {
            bridge
                .approve_with(&resource, &"a".repeat(64), key.as_deref())
                .await
        }
    };

    // The status needs admin:read: a key that reads every resource is not enough.
    problem(bridge.get_with("/admin/files", None).await, 401).await;
    let p = problem(
        bridge.get_with("/admin/files", Some(&keys.read_all)).await,
        403,
    )
    .await;
    assert!(p.to_string().contains("admin:read"), "{p}");
    let ok = bridge
        .get_with("/admin/files", Some(&keys.admin_read))
        .await;
    assert_eq!(ok.status(), 200);
    // The admin key, for its part, reads no resource.
    problem(
        bridge.get_with("/v1/items", Some(&keys.admin_read)).await,
        403,
    )
    .await;
    assert_eq!(
        bridge
            .get_with("/v1/items", Some(&keys.read_all))
            .await
            .status(),
        200
    );

    // Approving needs admin:write: neither *:read nor admin:read will do.
    problem(approve(None, "items").await, 401).await;
    problem(approve(Some(&keys.read_all), "items").await, 403).await;
    let p = problem(approve(Some(&keys.admin_read), "items").await, 403).await;
    assert!(p.to_string().contains("admin:write"), "{p}");
    // With it: nothing is held (409), and an unknown resource is 404.
    problem(approve(Some(&keys.admin_write), "items").await, 409).await;
    problem(approve(Some(&keys.admin_write), "nope").await, 404).await;

    // The quarantine shows record text: admin:read, not *:read.
    let path = "/admin/files/items/quarantine";
    problem(bridge.get_with(path, None).await, 401).await;
    problem(bridge.get_with(path, Some(&keys.read_all)).await, 403).await;
    let ok = bridge.get_with(path, Some(&keys.admin_read)).await;
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.expect("json");
    assert_eq!(body["resource"], "items");
    assert_eq!(body["rows"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_limits_and_unknown_resources_are_refused() {
    let bridge = bridge().await;
    let keys = bridge.keys.clone().expect("keys");
    let key = Some(keys.admin_read.as_str());

    for limit in ["0", "1001"] {
        let p = problem(
            bridge
                .get_with(&format!("/admin/files/items/quarantine?limit={limit}"), key)
                .await,
            400,
        )
        .await;
        assert!(p.to_string().contains("limit"), "limit={limit}: {p}");
    }
    for limit in ["1", "1000"] {
        let resp = bridge
            .get_with(&format!("/admin/files/items/quarantine?limit={limit}"), key)
            .await;
        assert_eq!(resp.status(), 200, "limit={limit}");
    }
    for path in [
        "/admin/files/nope/quarantine",
        "/admin/files/nope/quarantine?limit=10",
    ] {
        problem(bridge.get_with(path, key).await, 404).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_operator_requests_are_problems_too() {
    let bridge = bridge().await;
    let keys = bridge.keys.clone().expect("keys");

    // A limit that is not a number is a 400 problem naming it, like limit=0.
    let p = problem(
        bridge
            .get_with(
                "/admin/files/items/quarantine?limit=ten",
                Some(&keys.admin_read),
            )
            .await,
        400,
    )
    .await;
    assert!(p.to_string().contains("limit"), "{p}");
    // Without a key, the key is what is wrong.
    problem(
        bridge
            .get_with("/admin/files/items/quarantine?limit=ten", None)
            .await,
        401,
    )
    .await;

    // An approval without a hash is a client error as problem+json.
    let resp = bridge
        .http
        .post(format!("{}/admin/files/items/approve", bridge.base))
        .bearer_auth(&keys.admin_write)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    assert!(matches!(status, 400 | 422), "status {status}");
    problem(resp, status).await;
    // Without a key and without a body, the key is what is wrong.
    let resp = bridge
        .http
        .post(format!("{}/admin/files/items/approve", bridge.base))
        .send()
        .await
        .expect("request");
    problem(resp, 401).await;
}
