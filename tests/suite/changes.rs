//! The change feed, the SSE stream, `/admin/capture` and the capture part of `/readyz`,
//! against a real SQLite state store in a temp dir. Events are committed through the store and
//! announced on the `committed` watch exactly as the capture engine does; the demo POS
//! database only provides the loaded resources (and so the valid scopes).
//!
//! Timing: nothing asserts that something took *less* than a tight bound. "Returned before
//! the wait expired" is checked against a wait far longer than the test needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use legacy_bridge::capture::{CaptureHandle, CaptureState, StatusBoard};
use legacy_bridge::model::{ChangeOp, NewEvent, event_type};
use legacy_bridge::store::{Commit, SqliteStore, Store};
use serde_json::json;
use tokio::sync::watch;

use super::engines::{Engine, TestDb};
use super::harness::{Bridge, problem, start, start_with_capture, start_with_capture_and};

/// Request timeout of the bridges here: shorter than the waits the tests use, to show the
/// change routes are exempt from it.
const SHORT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a test waits for something that should happen at once, before failing.
const PATIENCE: Duration = Duration::from_secs(30);

/// A real outbox plus the status board and the `committed` signal, as the engine holds them.
struct Outbox {
    store: Arc<SqliteStore>,
    status: Arc<StatusBoard>,
    committed: watch::Sender<u64>,
    _dir: tempfile::TempDir,
}

impl Outbox {
    /// A fresh store with `inventory` and `prices` registered as captured.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let status = Arc::new(StatusBoard::default());
        status.register("inventory", "cursor");
        status.register("prices", "snapshot-diff");
        let (committed, _) = watch::channel(0);
        Self {
            store: Arc::new(store),
            status,
            committed,
            _dir: dir,
        }
    }

    fn handle(&self) -> CaptureHandle {
        CaptureHandle {
            store: Arc::clone(&self.store) as Arc<dyn Store>,
            status: Arc::clone(&self.status),
            committed: self.committed.subscribe(),
        }
    }

    /// Commits one event per `(op, subject)` for `resource`, then announces the new last seq,
    /// as the engine does. Returns the seqs given.
    async fn commit(&self, resource: &str, changes: &[(ChangeOp, &str)]) -> Vec<u64> {
        let events = changes
            .iter()
            .map(|(op, subject)| NewEvent {
                id: format!("{resource}-{subject}-{}", op.as_str()),
                resource: resource.into(),
                source: format!("/sources/pos/{resource}"),
                event_type: event_type(resource, *op),
                subject: (*subject).into(),
                time: Utc::now(),
                data: json!({
                    "op": op, "origin": "capture", "key": {"sku": subject},
                    "before": null, "after": {"sku": subject, "note": "line one\nline two"},
                    "changed": ["sku"], "position": {"cursor": 1}
                }),
            })
            .collect();
        let appended = self
            .store
            .commit(Commit {
                resource: resource.into(),
                events,
                ..Commit::default()
            })
            .await
            .unwrap()
            .expect("events appended");
        self.committed.send_replace(appended.last_seq);
        (appended.first_seq..=appended.last_seq).collect()
    }
}

async fn bridge(outbox: &Outbox, db: &TestDb) -> Bridge {
    start_with_capture(&db.connection_string, outbox.handle(), SHORT_TIMEOUT).await
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("header {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// GET a feed page with `key`: (events, Next-After, Link target).
async fn page(bridge: &Bridge, path: &str, key: &str) -> (Vec<serde_json::Value>, u64, String) {
    let resp = bridge.get_with(path, Some(key)).await;
    assert_eq!(resp.status(), 200, "GET {path}");
    assert_eq!(
        header(&resp, "content-type"),
        "application/cloudevents-batch+json"
    );
    let next_after: u64 = header(&resp, "next-after").parse().unwrap();
    let link = header(&resp, "link");
    let target = link
        .strip_prefix('<')
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("Link {link}"))
        .to_owned();
    let body: Vec<serde_json::Value> = resp.json().await.unwrap();
    (body, next_after, target)
}

fn seqs(events: &[serde_json::Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["sequence"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn types(events: &[serde_json::Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Commits a mix: seqs 1-3 inventory, 4-5 prices, 6 inventory deleted, 7 prices updated.
async fn seed(outbox: &Outbox) {
    use ChangeOp::*;
    outbox
        .commit(
            "inventory",
            &[(Created, "A1"), (Updated, "A1"), (Snapshot, "A2")],
        )
        .await;
    outbox
        .commit("prices", &[(Created, "A1"), (Snapshot, "A2")])
        .await;
    outbox.commit("inventory", &[(Deleted, "A2")]).await;
    outbox.commit("prices", &[(Updated, "A1")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_pages_with_after_limit_next_after_and_link() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    let bridge = bridge(&outbox, &db).await;

    // First page: the first two events, pointers to the next.
    let (events, next_after, link) = page(&bridge, "/v1/changes?limit=2", &bridge.key).await;
    assert_eq!(seqs(&events), [1, 2]);
    assert_eq!(next_after, 2);
    assert_eq!(link, "/v1/changes?after=2&limit=2");
    let e = &events[0];
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["type"], "inventory.created");
    assert_eq!(e["subject"], "A1");
    assert_eq!(e["id"], "inventory-A1-created");
    assert_eq!(e["data"]["op"], "created");

    // Following Link visits every event once, in order, and ends on an empty page that
    // still says where to continue.
    let mut all = Vec::new();
    let mut path = "/v1/changes?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (events, next_after, link) = page(&bridge, &path, &bridge.key).await;
        pages += 1;
        assert!(pages < 20, "paging does not end");
        if events.is_empty() {
            assert_eq!(next_after, 7);
            assert_eq!(link, "/v1/changes?after=7&limit=2");
            break;
        }
        all.extend(seqs(&events));
        path = link;
    }
    assert_eq!(all, (1..=7).collect::<Vec<_>>());

    // `after` and the default limit.
    let (events, next_after, link) = page(&bridge, "/v1/changes?after=5", &bridge.key).await;
    assert_eq!(seqs(&events), [6, 7]);
    assert_eq!(next_after, 7);
    assert_eq!(link, "/v1/changes?after=7&limit=100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_select_exact_types_and_resource_wildcards() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    let bridge = bridge(&outbox, &db).await;

    let (events, next_after, link) = page(&bridge, "/v1/changes?types=prices.*", &bridge.key).await;
    assert_eq!(seqs(&events), [4, 5, 7]);
    assert_eq!(next_after, 7);
    assert_eq!(link, "/v1/changes?after=7&limit=100&types=prices.*");

    let (events, _, _) = page(
        &bridge,
        "/v1/changes?types=inventory.deleted,prices.created",
        &bridge.key,
    )
    .await;
    assert_eq!(types(&events), ["prices.created", "inventory.deleted"]);

    // A filtered page that is full points just past its last event; one that is not points
    // past everything it examined, so the reader does not re-scan skipped events.
    let (events, next_after, link) = page(
        &bridge,
        "/v1/changes?types=inventory.snapshot,inventory.updated&limit=1",
        &bridge.key,
    )
    .await;
    assert_eq!(seqs(&events), [2]);
    assert_eq!(next_after, 2);
    assert_eq!(
        link,
        "/v1/changes?after=2&limit=1&types=inventory.snapshot,inventory.updated"
    );
    let (events, next_after, _) = page(&bridge, &link, &bridge.key).await;
    assert_eq!(seqs(&events), [3]);
    assert_eq!(next_after, 3);
    let (events, next_after, _) = page(
        &bridge,
        "/v1/changes?after=3&limit=1&types=inventory.snapshot,inventory.updated",
        &bridge.key,
    )
    .await;
    assert!(events.is_empty());
    assert_eq!(next_after, 7, "skipped events are not re-scanned");

    // A type no event has yet is valid and matches nothing.
    let (events, _, _) = page(&bridge, "/v1/changes?types=prices.deleted", &bridge.key).await;
    assert!(events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_restricted_to_resources_the_key_may_read() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    let bridge = bridge(&outbox, &db).await;

    // `inventory:read` only: never a prices event, whatever the paging.
    let (events, next_after, _) = page(&bridge, "/v1/changes", &bridge.stock_key).await;
    assert_eq!(seqs(&events), [1, 2, 3, 6]);
    assert_eq!(next_after, 7);
    let (events, _, _) = page(&bridge, "/v1/changes?limit=1&after=3", &bridge.stock_key).await;
    assert_eq!(seqs(&events), [6]);
    let (events, _, _) = page(&bridge, "/v1/changes?types=inventory.*", &bridge.stock_key).await;
    assert_eq!(seqs(&events), [1, 2, 3, 6]);

    // Asking for prices is forbidden, alone or next to a readable type.
    for path in [
        "/v1/changes?types=prices.*",
        "/v1/changes?types=inventory.*,prices.updated",
        "/v1/changes/stream?types=prices.*",
    ] {
        let body = problem(bridge.get_with(path, Some(&bridge.stock_key)).await, 403).await;
        assert!(
            body["detail"].as_str().unwrap().contains("prices:read"),
            "{path}: {body}"
        );
    }

    // `*:read` sees both; no key is 401; a key that reads no captured resource is 403.
    let (events, _, _) = page(&bridge, "/v1/changes", &bridge.key).await;
    assert_eq!(events.len(), 7);
    problem(bridge.get_with("/v1/changes", None).await, 401).await;
    problem(bridge.get_with("/v1/changes/stream", None).await, 401).await;
    let body = problem(
        bridge
            .get_with("/v1/changes", Some(&bridge.admin_key))
            .await,
        403,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no captured resource"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_when_an_event_is_committed_or_the_wait_is_over() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    let bridge = Arc::new(bridge(&outbox, &db).await);

    // GIVEN a long-poll for prices events with a 50 s wait
    let poll = {
        let bridge = Arc::clone(&bridge);
        tokio::spawn(async move {
            let started = Instant::now();
            let out = page(&bridge, "/v1/changes?types=prices.*&wait=50", &bridge.key).await;
            (out, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // WHEN an event it does not want is committed, then one it wants
    outbox
        .commit("inventory", &[(ChangeOp::Updated, "A1")])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "a non-matching event ends the wait");
    outbox.commit("prices", &[(ChangeOp::Updated, "A1")]).await;
    // THEN it answers with that event, long before the wait is over
    let ((events, next_after, link), elapsed) = tokio::time::timeout(PATIENCE, poll)
        .await
        .expect("the long-poll answered")
        .unwrap();
    assert_eq!(seqs(&events), [2]);
    assert_eq!(types(&events), ["prices.updated"]);
    assert_eq!(next_after, 2);
    assert_eq!(link, "/v1/changes?after=2&limit=100&types=prices.*&wait=50");
    assert!(elapsed < Duration::from_secs(45), "{elapsed:?}");

    // With events already there, a long-poll answers at once.
    let started = Instant::now();
    let (events, _, _) = page(&bridge, "/v1/changes?wait=50", &bridge.key).await;
    assert_eq!(seqs(&events), [1, 2]);
    assert!(started.elapsed() < Duration::from_secs(45));

    // Nothing new: an empty page once the wait is over, not a 503 from the 1 s request
    // timeout, with the headers still there.
    let started = Instant::now();
    let (events, next_after, link) = page(&bridge, "/v1/changes?after=2&wait=2", &bridge.key).await;
    assert!(events.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(next_after, 2);
    assert_eq!(link, "/v1/changes?after=2&limit=100&wait=2");

    // Other routes are still cut by the request timeout layer (the resource routes answer
    // fast, so only check they are served).
    assert_eq!(bridge.get("/v1/products?limit=1").await.status(), 200);
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: u64,
    event: String,
    data: serde_json::Value,
}

/// Reads SSE frames off a streaming response.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
    comments: usize,
}

impl SseReader {
    async fn open(bridge: &Bridge, path: &str, last_event_id: Option<u64>) -> Self {
        let mut req = bridge
            .http
            .get(format!("{}{path}", bridge.base))
            .bearer_auth(&bridge.key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-type"), "text/event-stream");
        Self {
            resp,
            buf: String::new(),
            comments: 0,
        }
    }

    /// The next event, failing the test after [`PATIENCE`].
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, Vec::new());
                for line in frame.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => self.comments += 1,
                        "id" => id = Some(value.parse().unwrap()),
                        "event" => event = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        other => panic!("unexpected field {other}"),
                    }
                }
                if let Some(id) = id {
                    assert_eq!(data.len(), 1, "data on one line: {frame}");
                    return Sse {
                        id,
                        event: event.expect("event name"),
                        data: serde_json::from_str(&data[0]).unwrap(),
                    };
                }
                continue;
            }
            let chunk = tokio::time::timeout(PATIENCE, self.resp.chunk())
                .await
                .expect("an event arrived")
                .unwrap()
                .expect("stream still open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_delivers_in_order_and_resumes_with_last_event_id() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    let bridge = bridge(&outbox, &db).await;

    // GIVEN a stream of everything: first the 7 committed events, in order.
    let mut sse = SseReader::open(&bridge, "/v1/changes/stream", None).await;
    let mut got = Vec::new();
    for _ in 0..7 {
        got.push(sse.next().await);
    }
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert_eq!(got[0].event, "inventory.created");
    assert_eq!(got[0].data["sequence"], "1");
    assert_eq!(got[0].data["data"]["after"]["note"], "line one\nline two");

    // WHEN more events are committed later than the 1 s request timeout, THEN they arrive.
    tokio::time::sleep(SHORT_TIMEOUT + Duration::from_millis(500)).await;
    outbox
        .commit(
            "inventory",
            &[(ChangeOp::Updated, "A3"), (ChangeOp::Updated, "A4")],
        )
        .await;
    let e8 = sse.next().await;
    assert_eq!(e8.id, 8);
    assert_eq!(e8.data["subject"], "A3");

    // WHEN the client drops after event 8 and events are committed while it is away
    drop(sse);
    outbox.commit("prices", &[(ChangeOp::Deleted, "A1")]).await;
    // THEN reconnecting with Last-Event-ID (which beats `after`) resumes at 9: no loss, no
    // duplicate.
    let mut sse = SseReader::open(&bridge, "/v1/changes/stream?after=2", Some(8)).await;
    let resumed = [sse.next().await, sse.next().await];
    assert_eq!(
        resumed.map(|e| (e.id, e.event)),
        [
            (9, "inventory.updated".to_owned()),
            (10, "prices.deleted".to_owned())
        ]
    );
    outbox.commit("prices", &[(ChangeOp::Created, "A9")]).await;
    assert_eq!(sse.next().await.id, 11);

    // Filters and `after` apply to streams too.
    let mut prices =
        SseReader::open(&bridge, "/v1/changes/stream?types=prices.*&after=5", None).await;
    assert_eq!(prices.next().await.id, 7);
    assert_eq!(prices.next().await.id, 10);
    assert_eq!(prices.next().await.id, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_capture_needs_admin_read() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    outbox.status.update("prices", |s| {
        s.state = CaptureState::Running;
        s.changes_emitted = 3;
    });
    let bridge = bridge(&outbox, &db).await;

    // `*:read` is not enough, and neither is a resource scope.
    let body = problem(bridge.get("/admin/capture").await, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("admin:read"));
    problem(
        bridge
            .get_with("/admin/capture", Some(&bridge.stock_key))
            .await,
        403,
    )
    .await;
    problem(bridge.get_with("/admin/capture", None).await, 401).await;

    let resp = bridge
        .get_with("/admin/capture", Some(&bridge.admin_key))
        .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["outbox"]["last_seq"], 7);
    let resources = body["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2);
    assert_eq!(resources[0]["resource"], "inventory");
    assert_eq!(resources[0]["state"], "starting");
    assert_eq!(resources[1]["resource"], "prices");
    assert_eq!(resources[1]["strategy"], "snapshot-diff");
    assert_eq!(resources[1]["state"], "running");
    assert_eq!(resources[1]["changes_emitted"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_requests_need_admin_write_and_reach_the_capture_task() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    let bridge = bridge(&outbox, &db).await;
    let post = |path: &str, key: Option<&str>| {
        let mut req = bridge.http.post(format!("{}{path}", bridge.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };

    // `*:read` reads everything but may not act.
    let resp = post("/admin/capture/prices/resync", Some(&bridge.key))
        .await
        .unwrap();
    let body = problem(resp, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("admin:write"));
    assert!(!outbox.status.take_resync("prices"));

    let resp = post("/admin/capture/nosuch/resync", Some(&bridge.admin_key))
        .await
        .unwrap();
    problem(resp, 404).await;

    let resp = post("/admin/capture/prices/resync", Some(&bridge.admin_key))
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["resource"], "prices");
    // The request waits for the resource's task, exactly once.
    assert!(outbox.status.take_resync("prices"));
    assert!(!outbox.status.take_resync("prices"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_beyond_the_limit_get_503_with_retry_after() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    let bridge = start_with_capture_and(
        &db.connection_string,
        outbox.handle(),
        SHORT_TIMEOUT,
        "\n[server]\nmax_change_waiters = 1\n",
    )
    .await;

    // GIVEN one open stream, which holds the only place
    let stream = bridge.get("/v1/changes/stream?after=7").await;
    assert_eq!(stream.status(), 200);
    // WHEN another client waits, THEN it is told to come back
    let resp = bridge.get("/v1/changes?after=7&wait=5").await;
    assert_eq!(header(&resp, "retry-after"), "1");
    let body = problem(resp, 503).await;
    assert!(body["type"].as_str().unwrap().ends_with("too-many-waiters"));
    // ... while a read that does not wait is served
    assert_eq!(bridge.get("/v1/changes?after=0").await.status(), 200);
    // AND once the stream is closed, the place is free again
    drop(stream);
    let mut freed = false;
    for _ in 0..100 {
        if bridge.get("/v1/changes?after=7&wait=1").await.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed, "closing the stream never freed its place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_problems() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    let bridge = bridge(&outbox, &db).await;

    for (path, parameter, needle) in [
        ("/v1/changes?limit=0", "limit", "from 1 to 1000"),
        ("/v1/changes?limit=1001", "limit", "from 1 to 1000"),
        ("/v1/changes?wait=61", "wait", "from 0 to 60"),
        ("/v1/changes?after=-3", "after", "non-negative"),
        (
            "/v1/changes?colour=red",
            "colour",
            "unknown query parameter",
        ),
        ("/v1/changes?limit=5&limit=6", "limit", "more than once"),
        (
            "/v1/changes?types=sales.*",
            "types",
            "no captured resource `sales`",
        ),
        (
            "/v1/changes?types=inventory.changed",
            "types",
            "unknown op `changed`",
        ),
        (
            "/v1/changes?types=inventory",
            "types",
            "neither an event type",
        ),
        (
            "/v1/changes/stream?limit=5",
            "limit",
            "unknown query parameter",
        ),
        (
            "/v1/changes/stream?wait=5",
            "wait",
            "unknown query parameter",
        ),
    ] {
        let body = problem(bridge.get(path).await, 400).await;
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{path}: {body}"
        );
        assert_eq!(body["type"], "urn:legacy-bridge:problem:invalid-parameter");
    }
    let resp = bridge
        .http
        .get(format!("{}/v1/changes/stream", bridge.base))
        .bearer_auth(&bridge.key)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    let body = problem(resp, 400).await;
    assert_eq!(body["parameter"], "Last-Event-ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_lists_capture_and_a_paused_resource_only_degrades_it() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    let bridge = bridge(&outbox, &db).await;
    outbox
        .status
        .update("inventory", |s| s.state = CaptureState::Running);
    outbox
        .status
        .update("prices", |s| s.state = CaptureState::Running);

    let resp = bridge.get_with("/readyz", None).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["capture"],
        json!([{"resource": "inventory", "state": "running"},
               {"resource": "prices", "state": "running"}])
    );

    outbox.status.update("prices", |s| {
        s.state = CaptureState::Paused;
        s.paused_reason = Some("column PRICE_AMT changed type".into());
    });
    outbox.status.update("inventory", |s| {
        s.state = CaptureState::Failing;
        s.last_error = Some("odbc: host db7.internal refused".into());
    });
    let resp = bridge.get_with("/readyz", None).await;
    assert_eq!(resp.status(), 200, "one drifted table keeps the bridge in");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["capture"][1]["state"], "paused");
    assert_eq!(
        body["capture"][1]["reason"],
        "column PRICE_AMT changed type"
    );
    assert_eq!(body["capture"][0]["state"], "failing");
    let text = body.to_string();
    assert!(
        !text.contains("db7.internal"),
        "internal errors stay out: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_capture_the_change_routes_are_404() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let bridge = start(&db.connection_string, "").await;
    for path in ["/v1/changes", "/v1/changes/stream", "/admin/capture"] {
        let body = problem(bridge.get(path).await, 404).await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("capture is not configured"),
            "{path}: {body}"
        );
    }
    let body: serde_json::Value = bridge.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert!(body.get("capture").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_before_the_retained_outbox_are_410_not_skipped() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let outbox = Outbox::new();
    seed(&outbox).await;
    // GIVEN retention removed seqs 1-4 (everything committed before "a minute from now", in
    // chunks of 4).
    let later = Utc::now().timestamp_millis() + 60_000;
    assert_eq!(outbox.store.prune(later, 4).await.unwrap(), 4);
    let bridge = bridge(&outbox, &db).await;

    // THEN a reader at 0 or 3 is told it missed events, on the feed and the stream,
    for path in [
        "/v1/changes",
        "/v1/changes?after=3",
        "/v1/changes/stream?after=3",
    ] {
        let body = problem(bridge.get_with(path, Some(&bridge.key)).await, 410).await;
        assert_eq!(
            body["type"], "urn:legacy-bridge:problem:position-expired",
            "{path}"
        );
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("the oldest kept is 5"),
            "{body}"
        );
    }
    // AND a reader at 4 continues with 5.
    let (events, _, _) = page(&bridge, "/v1/changes?after=4", &bridge.key).await;
    assert_eq!(seqs(&events), [5, 6, 7]);
}
