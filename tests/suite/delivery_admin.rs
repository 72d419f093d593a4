//! The delivery operator endpoints refuse what they should, as problem+json, and change
//! nothing when they do: a missing key is what is wrong before anything else (an unknown
//! subscription or a malformed body included), then a missing scope (`*:read` never reaches
//! `/admin`, `admin:read` does not act), then the request itself (bodies, limits, seqs),
//! then an unknown subscription or dead letter.

use serde_json::json;

use super::delivery_harness::{DeliveryRig, inventory_changelog, webhook_subscription};
use super::engines::{Engine, TestDb};
use super::harness::problem;

/// A rig whose one subscription posts to a closed port (nothing here needs deliveries).
async fn rig() -> DeliveryRig {
    let db = TestDb::create(Engine::Sqlite).expect("SQLite always runs");
    DeliveryRig::start(
        db,
        &inventory_changelog("snapshot"),
        &webhook_subscription("hook", "http://127.0.0.1:9/hook", ""),
    )
    .await
}

/// Every operator action: path and a valid body.
const ACTIONS: [(&str, Option<&str>); 5] = [
    (
        "/admin/subscriptions/hook/pause",
        Some(r#"{"reason": "x"}"#),
    ),
    ("/admin/subscriptions/hook/resume", None),
    ("/admin/subscriptions/hook/rewind", Some(r#"{"seq": 0}"#)),
    ("/admin/subscriptions/hook/dead-letters/replay", None),
    ("/admin/subscriptions/hook/dead-letters/1/replay", None),
];

/// Every read: path.
const READS: [&str; 4] = [
    "/admin/subscriptions",
    "/admin/subscriptions/hook/dead-letters",
    "/admin/audit",
    "/metrics",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_endpoints_need_their_admin_scopes() {
    let rig = rig().await;
    let keys = rig.keys.clone();

    for path in READS {
        // No key, a key reading every resource, then admin:read.
        problem(rig.get(path, None).await, 401).await;
        let p = problem(rig.get(path, Some(&keys.reader)).await, 403).await;
        assert!(p.to_string().contains("admin:read"), "{path}: {p}");
        assert_eq!(
            rig.get(path, Some(&keys.watcher)).await.status(),
            200,
            "{path}"
        );
    }
    for (path, body) in ACTIONS {
        problem(rig.post(path, None, body).await, 401).await;
        problem(rig.post(path, Some(&keys.reader), body).await, 403).await;
        let p = problem(rig.post(path, Some(&keys.watcher), body).await, 403).await;
        assert!(p.to_string().contains("admin:write"), "{path}: {p}");
    }
    // Refused requests change nothing and are not audited.
    assert_eq!(rig.audit().await, Vec::<serde_json::Value>::new());
    assert_eq!(rig.subscription("hook").await["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_subscriptions_and_dead_letters_are_404() {
    let rig = rig().await;
    let keys = rig.keys.clone();

    let p = problem(
        rig.get(
            "/admin/subscriptions/nope/dead-letters",
            Some(&keys.watcher),
        )
        .await,
        404,
    )
    .await;
    assert!(p.to_string().contains("nope"), "{p}");
    for (path, body) in ACTIONS {
        let path = path.replace("/hook/", "/nope/");
        let p = problem(rig.post(&path, Some(&keys.operator), body).await, 404).await;
        assert!(p.to_string().contains("nope"), "{path}: {p}");
        // Without a key, the key is what is wrong: no hint whether it exists.
        problem(rig.post(&path, None, body).await, 401).await;
        problem(rig.post(&path, Some(&keys.watcher), body).await, 403).await;
    }
    problem(
        rig.get("/admin/subscriptions/nope/dead-letters", None)
            .await,
        401,
    )
    .await;
    // A dead letter that does not exist, on a known subscription.
    let p = problem(
        rig.post(
            "/admin/subscriptions/hook/dead-letters/12345/replay",
            Some(&keys.operator),
            None,
        )
        .await,
        404,
    )
    .await;
    assert!(p.to_string().contains("12345"), "{p}");
    // Refused, so not audited either.
    assert_eq!(rig.audit().await, Vec::<serde_json::Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_and_limits_are_400_problems() {
    let rig = rig().await;
    let keys = rig.keys.clone();
    rig.wait_subscription(
        "hook",
        "registered",
        super::delivery_harness::PATIENCE,
        |s| s["outbox_last_seq"].as_u64().unwrap_or(0) > 0,
    )
    .await;
    let head = rig.overview().await["outbox_last_seq"]
        .as_u64()
        .expect("head");

    // Bodies: not JSON, wrong types, unknown fields, a seq beyond the outbox.
    let bad_bodies: Vec<(&str, Option<String>, &str)> = vec![
        (
            "/admin/subscriptions/hook/pause",
            Some("not json".into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/pause",
            Some(r#"{"reason": 5}"#.into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/pause",
            Some(r#"{"why": "x"}"#.into()),
            "body",
        ),
        ("/admin/subscriptions/hook/rewind", None, "body"),
        (
            "/admin/subscriptions/hook/rewind",
            Some("{}".into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/rewind",
            Some(r#"{"seq": -1}"#.into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/rewind",
            Some(r#"{"seq": "1"}"#.into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/rewind",
            Some(format!(r#"{{"seq": {}}}"#, head + 1000)),
            "seq",
        ),
        (
            "/admin/subscriptions/hook/dead-letters/replay",
            Some(r#"{"seqs": "all"}"#.into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/dead-letters/replay",
            Some(r#"{"seqs": [1], "also": 2}"#.into()),
            "body",
        ),
        (
            "/admin/subscriptions/hook/dead-letters/x1/replay",
            None,
            "seq",
        ),
        (
            "/admin/subscriptions/hook/dead-letters/-1/replay",
            None,
            "seq",
        ),
    ];
    for (path, body, names) in &bad_bodies {
        let body = body.as_deref();
        let p = problem(rig.post(path, Some(&keys.operator), body).await, 400).await;
        assert!(p.to_string().contains(names), "{path} {body:?}: {p}");
        // The key is checked first.
        problem(rig.post(path, None, body).await, 401).await;
        problem(rig.post(path, Some(&keys.watcher), body).await, 403).await;
    }

    // Limits and paging parameters.
    for path in [
        "/admin/subscriptions/hook/dead-letters?limit=0",
        "/admin/subscriptions/hook/dead-letters?limit=1001",
        "/admin/subscriptions/hook/dead-letters?limit=ten",
        "/admin/subscriptions/hook/dead-letters?after=-1",
        "/admin/audit?limit=0",
        "/admin/audit?limit=1001",
        "/admin/audit?before=yesterday",
    ] {
        let p = problem(rig.get(path, Some(&keys.watcher)).await, 400).await;
        let wanted = ["limit", "after", "before", "query"];
        assert!(
            wanted.iter().any(|w| p.to_string().contains(w)),
            "{path}: {p}"
        );
        problem(rig.get(path, None).await, 401).await;
        problem(rig.get(path, Some(&keys.reader)).await, 403).await;
    }
    for path in [
        "/admin/subscriptions/hook/dead-letters?limit=1",
        "/admin/subscriptions/hook/dead-letters?limit=1000&after=0",
        "/admin/audit?limit=1000",
        "/admin/audit?before=1&limit=1",
    ] {
        assert_eq!(
            rig.get(path, Some(&keys.watcher)).await.status(),
            200,
            "{path}"
        );
    }

    // None of it changed anything.
    assert_eq!(rig.audit().await, Vec::<serde_json::Value>::new());
    let status = rig.subscription("hook").await;
    assert_eq!(status["state"], "active", "{status:#}");

    // Valid requests still work: a rewind to the head is audited with the key's name.
    let done = rig
        .act(
            "/admin/subscriptions/hook/rewind",
            Some(&json!({"seq": head}).to_string()),
        )
        .await;
    assert_eq!(done["action"], "rewind", "{done:#}");
    let audit = rig.audit().await;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(audit[0]["actor"], "operator", "{audit:#?}");
    assert_eq!(audit[0]["detail"]["to"], head, "{audit:#?}");
}
