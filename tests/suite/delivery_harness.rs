//! Delivery end to end: a deployment config with API keys, a captured `inventory` resource
//! on a legacy test database and `[subscriptions]` appended; the app built, capture and
//! delivery started in process (`app::start_capture`) and the API served on a loopback port.
//! A seeded till writes legacy rows meanwhile; what a webhook receiver got is checked against
//! the outbox.
//!
//! Waiting is always for a condition with a deadline, generous for a loaded two-core machine;
//! nothing asserts on elapsed time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use legacy_bridge::app::{self, App};
use legacy_bridge::model::StoredEvent;
use legacy_bridge::{api, auth, config};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value as Json;

use super::capture_harness::{berlin_now, connect, eventually_within, read_all, sql};
use super::engines::TestDb;
use super::webhook_receiver::Received;

/// The webhook signing secret of every test subscription.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long a test waits for delivery to reach a condition: far above what an idle machine
/// needs, so a loaded one does not turn it into a flake.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// How often conditions are re-checked.
const POLL: Duration = Duration::from_millis(50);

/// `inventory` by change log (so deletes are captured), polled fast, small batches.
pub fn inventory_changelog(initial: &str) -> String {
    super::capture_harness::inventory(&format!(
        "strategy = \"changelog\"\ninterval_ms = 100\nbatch_size = 50\ninitial = \"{initial}\""
    ))
}

/// A `[subscriptions.NAME]` section with a webhook sink to `url` (signed with [`SECRET`]);
/// `extra` adds keys such as `batch_size` or `retry`.
pub fn webhook_subscription(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[subscriptions.{name}]\nsink = {{ kind = \"webhook\", url = \"{url}\", \
         secret = \"{SECRET}\", connect_timeout_ms = 1000, timeout_ms = 5000 }}\n{extra}\n"
    )
}

/// A `retry = {...}` line: `delays` as the schedule, no jitter (the test's waits are sized
/// to it), Retry-After capped at 5 s.
pub fn retry(delays: &[&str]) -> String {
    let list: Vec<String> = delays.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "retry = {{ schedule = [{}], jitter = 0.0, max_retry_after = \"5s\" }}",
        list.join(", ")
    )
}

/// API keys of a rig: the key names are what the audit log shows.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `reader`: `*:read`.
    pub reader: String,
    /// `watcher`: `admin:read`.
    pub watcher: String,
    /// `operator`: `admin:read` and `admin:write`.
    pub operator: String,
}

/// Writes `config.toml` (three API keys, source `pos`, then `subscriptions`) and
/// `adapter.toml` into `dir`.
pub fn write_config(
    dir: &Path,
    connection_string: &str,
    adapter: &str,
    subscriptions: &str,
) -> (PathBuf, Keys) {
    let (reader, h1) = auth::generate_key();
    let (watcher, h2) = auth::generate_key();
    let (operator, h3) = auth::generate_key();
    let text = format!(
        "adapters = [\"adapter.toml\"]\n\n[auth]\nmode = \"api-keys\"\n\n\
         [[auth.keys]]\nname = \"reader\"\nsha256 = \"{h1}\"\nscopes = [\"*:read\"]\n\n\
         [[auth.keys]]\nname = \"watcher\"\nsha256 = \"{h2}\"\nscopes = [\"admin:read\"]\n\n\
         [[auth.keys]]\nname = \"operator\"\nsha256 = \"{h3}\"\n\
         scopes = [\"admin:read\", \"admin:write\"]\n\n\
         [sources.pos]\nkind = \"odbc\"\nconnection_string = {connection_string:?}\n\
         {subscriptions}\n"
    );
    let config = dir.join("config.toml");
    std::fs::write(&config, text).expect("write config");
    std::fs::write(
        dir.join("adapter.toml"),
        format!("description = \"delivery test\"\n{adapter}"),
    )
    .expect("write adapter");
    (
        config,
        Keys {
            reader,
            watcher,
            operator,
        },
    )
}

/// Installs the change-log table and triggers of `resource` (as `changelog ddl --apply`).
pub async fn apply_changelog_ddl(app: &App, resource: &str) {
    let source = Arc::clone(&app.state.sources["pos"]);
    let resource = Arc::clone(&app.state.resources[resource]);
    let ddl = legacy_bridge::capture::changelog_ddl::for_resource(
        source.dialect(),
        config::DEFAULT_CHANGELOG_TABLE,
        &resource,
    )
    .expect("change-log DDL renders");
    for statement in ddl.statements() {
        source
            .execute(statement.sql.clone(), Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", statement.what, statement.sql));
    }
}

/// The bridge with capture and delivery running in this process, its API on a loopback
/// port.
pub struct DeliveryRig {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: Keys,
    pub db: TestDb,
    _dir: tempfile::TempDir,
    app: App,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DeliveryRig {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl DeliveryRig {
    /// Writes the config, installs change-log triggers for `inventory` when the adapter
    /// captures it by change log, starts capture and delivery, and serves the API.
    pub async fn start(db: TestDb, adapter: &str, subscriptions: &str) -> DeliveryRig {
        if std::env::var_os("RUST_LOG").is_some() {
            legacy_bridge::telemetry::init(false);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (config_path, keys) =
            write_config(dir.path(), &db.connection_string, adapter, subscriptions);
        let loaded = config::load(&config_path).expect("valid test config");
        let mut app = app::build(loaded, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("bridge does not start: {e}"));
        if adapter.contains("\"changelog\"") {
            apply_changelog_ddl(&app, "inventory").await;
        }
        app::start_capture(&mut app)
            .await
            .unwrap_or_else(|e| panic!("capture does not start: {e}"));
        assert!(app.delivery.is_some(), "no subscription is running");
        let router = api::router(Arc::clone(&app.state), Duration::from_secs(30));
        let (addr, server) = super::harness::serve(router).await;
        let rig = DeliveryRig {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            keys,
            db,
            _dir: dir,
            app,
            server,
        };
        rig.wait_initial_load("inventory").await;
        rig
    }

    /// Waits until capture of `resource` has finished its initial load. With `initial =
    /// "none"` that load records the baseline silently; a write the test made while it runs
    /// would be emitted as an `updated` event whose `before` is the row itself, not the
    /// change the test expects.
    async fn wait_initial_load(&self, resource: &str) {
        let capture = self.app.capture.as_ref().expect("capture is running");
        eventually_within(
            &format!("the initial load of `{resource}`"),
            PATIENCE,
            || async {
                let status = capture.handle.status.get(resource);
                let done = status
                    .as_ref()
                    .and_then(|s| s.checkpoint.as_ref())
                    .is_some_and(|cp| cp["initial_done"] == true);
                if done {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        )
        .await;
    }

    /// Every event in the outbox, in sequence order.
    pub async fn outbox(&self) -> Vec<StoredEvent> {
        let capture = self.app.capture.as_ref().expect("capture is running");
        read_all(capture.handle.store.as_ref()).await
    }

    /// What capture says of `inventory` and what its change log still holds, for failure
    /// messages: a delivery that never catches up may be a capture that stopped reading.
    pub fn capture_report(&self) -> String {
        let capture = self.app.capture.as_ref().expect("capture is running");
        let status = capture.handle.status.get("inventory");
        let logged = self.db.scalar("SELECT COUNT(*) FROM LB_CHANGELOG");
        let rows = self.db.scalar("SELECT COUNT(*) FROM STOCK_LEVEL");
        format!(
            "capture of inventory: {status:#?}\nLB_CHANGELOG rows left: {logged}; \
             STOCK_LEVEL rows: {rows}"
        )
    }

    /// Waits until capture of `resource` has completed two cycles that started after this
    /// call: everything committed to the legacy tables before it is in the outbox.
    pub async fn wait_captured(&self, resource: &str) {
        let capture = self.app.capture.as_ref().expect("capture is running");
        let since = chrono::Utc::now();
        let mut seen = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while seen.len() < 2 {
            let status = capture
                .handle
                .status
                .get(resource)
                .expect("resource is captured");
            if let Some(at) = status.last_cycle_at
                && at > since
                && !seen.contains(&at)
            {
                seen.push(at);
            }
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for two capture cycles of `{resource}`: {status:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// GET with `key` (or none): status and body text.
    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("request")
    }

    /// POST `body` (raw text; none when `None`) with `key`.
    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.expect("request")
    }

    /// GET expecting 200 JSON, with the watcher's key (`admin:read`).
    pub async fn admin_json(&self, path: &str) -> Json {
        json_of(self.get(path, Some(&self.keys.watcher)).await, path).await
    }

    /// POST as the operator, expecting 200 JSON.
    pub async fn act(&self, path: &str, body: Option<&str>) -> Json {
        json_of(self.post(path, Some(&self.keys.operator), body).await, path).await
    }

    /// `/admin/subscriptions`.
    pub async fn overview(&self) -> Json {
        self.admin_json("/admin/subscriptions").await
    }

    /// One subscription's status from `/admin/subscriptions`, with `outbox_last_seq` added.
    pub async fn subscription(&self, name: &str) -> Json {
        subscription_of(&self.overview().await, name)
    }

    /// Waits (at most `timeout`) until `done` holds for a subscription's status.
    pub async fn wait_subscription(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.subscription(name).await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for `{name}` to be {what}; status: {status:#}\n{}",
                self.capture_report()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until a subscription has delivered the whole outbox: cursor at its head,
    /// nothing parked.
    pub async fn wait_caught_up(&self, name: &str) -> Json {
        self.wait_subscription(name, "caught up", PATIENCE, caught_up)
            .await
    }

    /// The audit log, newest first.
    pub async fn audit(&self) -> Vec<Json> {
        let page = self.admin_json("/admin/audit").await;
        page["entries"].as_array().expect("entries").clone()
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics", Some(&self.keys.watcher)).await;
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// Every record of `/v1/<resource>`, following `next` links, with the reader's key.
    pub async fn records(&self, resource: &str) -> Vec<Json> {
        let mut out = Vec::new();
        let mut next = Some(format!("/v1/{resource}?limit=100"));
        let mut pages = 0;
        while let Some(path) = next {
            let page = json_of(self.get(&path, Some(&self.keys.reader)).await, &path).await;
            out.extend(page["data"].as_array().expect("data").iter().cloned());
            next = page["next"].as_str().map(str::to_owned);
            pages += 1;
            assert!(pages < 1000, "pagination does not end");
        }
        out
    }
}

/// A 200 JSON body, or a failure naming `what` and the answer.
pub async fn json_of(response: reqwest::Response, what: &str) -> Json {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

/// A subscription's entry of an `/admin/subscriptions` answer, with `outbox_last_seq`.
pub fn subscription_of(overview: &Json, name: &str) -> Json {
    let mut status = overview["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no subscription `{name}` in {overview:#}"))
        .clone();
    status["outbox_last_seq"] = overview["outbox_last_seq"].clone();
    status
}

/// The whole outbox is delivered: cursor at the head, nothing behind or parked.
pub fn caught_up(status: &Json) -> bool {
    status["state"] == "active"
        && status["cursor"] == status["outbox_last_seq"]
        && status["behind"] == 0
        && status["parked"] == 0
}

/// The seed of a randomised test: `var` when set, else random; printed so a run can be
/// repeated.
pub fn seed(var: &str, test: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} ({var}={seed} repeats it)");
    seed
}

// --- the till ---------------------------------------------------------------------------

/// Writes STOCK_LEVEL rows like the POS does: a seeded mix of inserts, updates (each to a
/// new quantity) and deletes over a bounded set of keys `T001`.. at stores `S01`/`S02`, so
/// every record gets many events.
pub struct Till {
    conn: odbc_api::Connection<'static>,
    rng: StdRng,
    keys: usize,
    /// Live rows and their quantity.
    live: BTreeMap<(String, String), i64>,
    writes: usize,
}

impl Till {
    /// A till on its own connection, using up to `keys` distinct rows.
    pub fn new(connection_string: &str, seed: u64, keys: usize) -> Till {
        Till {
            conn: connect(connection_string),
            rng: StdRng::seed_from_u64(seed),
            keys,
            live: BTreeMap::new(),
            writes: 0,
        }
    }

    /// One write: an insert while few rows live (or now and then), else mostly updates and
    /// some deletes.
    pub fn step(&mut self) {
        let at = berlin_now();
        let roll: f64 = self.rng.random();
        let key = (
            format!("T{:03}", self.rng.random_range(0..self.keys)),
            ["S01", "S02"][self.rng.random_range(0..2)].to_owned(),
        );
        let statement = match self.live.get(&key).copied() {
            None => {
                let qty = self.rng.random_range(1..1000);
                self.live.insert(key.clone(), qty);
                sql::stock_insert(&key.0, &key.1, qty, at)
            }
            Some(_) if roll < 0.15 => {
                self.live.remove(&key);
                sql::stock_delete(&key.0, &key.1)
            }
            Some(qty) => {
                let qty = qty + self.rng.random_range(1..50);
                self.live.insert(key.clone(), qty);
                sql::stock_update(&key.0, &key.1, qty, at)
            }
        };
        self.conn
            .execute(&statement, (), None)
            .unwrap_or_else(|e| panic!("till: {e}\n{statement}"));
        self.writes += 1;
    }

    /// Writes so far.
    pub fn writes(&self) -> usize {
        self.writes
    }
}

/// A till writing on its own thread until stopped (or dropped), pausing `pause_ms` between
/// writes.
pub struct TillThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<usize>>,
}

impl TillThread {
    pub fn start(connection_string: &str, seed: u64, keys: usize, pause_ms: (u64, u64)) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (conn, stop) = (connection_string.to_owned(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut till = Till::new(&conn, seed, keys);
                let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
                while !stop.load(Ordering::SeqCst) {
                    till.step();
                    let pause = rng.random_range(pause_ms.0..=pause_ms.1);
                    std::thread::sleep(Duration::from_millis(pause));
                }
                till.writes()
            })
        };
        TillThread {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the till and returns how many writes it made.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("till thread")
    }
}

impl Drop for TillThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// --- what a webhook receiver got --------------------------------------------------------

/// The ordering key of a received event: resource (the type before its last `.`) and
/// subject, as the dispatcher groups them.
pub fn record_of(r: &Received) -> String {
    let event_type = r.event_type.as_deref().unwrap_or_default();
    let resource = event_type.rsplit_once('.').map_or(event_type, |(r, _)| r);
    format!("{resource}/{}", r.subject.as_deref().unwrap_or_default())
}

/// The outbox seq a request carried.
pub fn seq_of(r: &Received) -> u64 {
    r.sequence
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("request without a numeric sequence: {r:?}"))
}

/// How much the receiver saw.
#[derive(Debug, Default)]
pub struct Arrivals {
    pub requests: usize,
    /// Requests answered other than 200.
    pub refused: usize,
    /// Events sent more than once.
    pub resent: usize,
}

/// How strictly per-record order is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// No crash: a record's requests never go back in seq, and it moves on to its next event
    /// only after the previous one was accepted.
    Strict,
    /// At least once across crashes: the first accepted arrival of each event, per record,
    /// is in seq order (redeliveries may repeat older ones).
    FirstArrivals,
}

/// Checks what the receiver got against the outbox: every request verified by
/// `standardwebhooks`, its `webhook-id` the event id (so every retry of an event carries the
/// same one), each event the outbox's at that seq, every outbox event accepted (200) at least
/// once, and per-record order as `order` says.
pub fn check_arrivals(
    outbox: &[StoredEvent],
    received: &[Received],
    order: Order,
) -> Result<Arrivals, String> {
    let by_seq: HashMap<u64, &StoredEvent> = outbox.iter().map(|e| (e.seq, e)).collect();
    let mut accepted: HashMap<u64, usize> = HashMap::new();
    let mut sent: HashMap<u64, usize> = HashMap::new();
    let mut arrivals = Arrivals::default();
    for (i, r) in received.iter().enumerate() {
        if !r.verified {
            return Err(format!("request {i} failed verification: {r:?}"));
        }
        let seq = seq_of(r);
        let Some(event) = by_seq.get(&seq) else {
            return Err(format!(
                "request {i} carries seq {seq}, not in the outbox: {r:?}"
            ));
        };
        if r.id.as_deref() != Some(event.event.id.as_str())
            || r.webhook_id.as_deref() != Some(event.event.id.as_str())
        {
            return Err(format!(
                "request {i} (seq {seq}): webhook-id {:?} and body id {:?}, but the event id is {}",
                r.webhook_id, r.id, event.event.id
            ));
        }
        if r.subject.as_deref() != Some(event.event.subject.as_str())
            || r.event_type.as_deref() != Some(event.event.event_type.as_str())
        {
            return Err(format!(
                "request {i} (seq {seq}) is not the outbox's event: {r:?}"
            ));
        }
        arrivals.requests += 1;
        *sent.entry(seq).or_default() += 1;
        if r.status == 200 {
            accepted.entry(seq).or_insert(i);
        } else {
            arrivals.refused += 1;
        }
    }
    arrivals.resent = sent.values().filter(|n| **n > 1).count();
    let missing: Vec<u64> = outbox
        .iter()
        .map(|e| e.seq)
        .filter(|seq| !accepted.contains_key(seq))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} events never accepted, seqs {missing:?}",
            missing.len(),
            outbox.len()
        ));
    }
    // First accepted arrivals, per record, must come in seq order.
    let mut firsts: Vec<(usize, u64)> = accepted.iter().map(|(seq, i)| (*i, *seq)).collect();
    firsts.sort_unstable();
    let mut last: HashMap<String, u64> = HashMap::new();
    for (i, seq) in firsts {
        let record = record_of(&received[i]);
        if let Some(prev) = last.insert(record.clone(), seq)
            && prev > seq
        {
            return Err(format!(
                "{record}: seq {seq} first accepted (request {i}) after seq {prev}"
            ));
        }
    }
    if order == Order::Strict {
        let mut current: HashMap<String, (u64, u16)> = HashMap::new();
        for (i, r) in received.iter().enumerate() {
            let (record, seq) = (record_of(r), seq_of(r));
            if let Some((prev, status)) = current.insert(record.clone(), (seq, r.status)) {
                if seq < prev {
                    return Err(format!(
                        "{record}: request {i} sends seq {seq} after seq {prev} was sent"
                    ));
                }
                if seq > prev && status != 200 {
                    return Err(format!(
                        "{record}: request {i} sends seq {seq} while seq {prev} was last \
                         answered {status}"
                    ));
                }
            }
        }
    }
    Ok(arrivals)
}

/// The last `n` requests, one per line, for failure messages.
pub fn show_received(received: &[Received], n: usize) -> String {
    received[received.len().saturating_sub(n)..]
        .iter()
        .map(|r| {
            format!(
                "  {:>5} {:<18} {:<12} {}\n",
                r.sequence.as_deref().unwrap_or("?"),
                r.event_type.as_deref().unwrap_or("?"),
                r.subject.as_deref().unwrap_or("?"),
                r.status
            )
        })
        .collect()
}

// --- what a JetStream stream holds --------------------------------------------------------

/// A `[subscriptions.NAME]` section with a NATS sink to `url`, storing in `stream` under
/// the default subject prefix `legacy`.
pub fn nats_subscription(name: &str, url: &str, stream: &str, extra: &str) -> String {
    format!(
        "\n[subscriptions.{name}]\nsink = {{ kind = \"nats\", url = \"{url}\", \
         stream = \"{stream}\", ack_timeout_ms = 2000 }}\n{extra}\n"
    )
}

/// One message of a stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// Its position in the stream.
    pub position: u64,
    /// The NATS subject it was published to.
    pub subject: String,
    /// The `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// The CloudEvent it carries.
    pub event: Json,
}

async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to nats at {url}: {e}"));
    async_nats::jetstream::new(client)
}

/// How many messages `stream` holds (0 when it does not exist yet).
pub async fn stream_len(url: &str, stream: &str) -> u64 {
    match jetstream(url).await.get_stream(stream).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Every message of `stream`, in stream order.
pub async fn stream_messages(url: &str, name: &str) -> Vec<StreamMessage> {
    let mut stream = jetstream(url)
        .await
        .get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("stream {name}: {e}"));
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    for position in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let message = stream
            .get_raw_message(position)
            .await
            .unwrap_or_else(|e| panic!("stream {name} message {position}: {e}"));
        out.push(StreamMessage {
            position,
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned()),
            event: serde_json::from_slice(&message.payload)
                .unwrap_or_else(|e| panic!("message {position} is not JSON: {e}")),
        });
    }
    out
}

/// Checks a stream against the outbox: every outbox event stored exactly once, under its id
/// as `Nats-Msg-Id`, on `legacy.<resource>.<op>`, and each record's events in seq order.
pub fn check_stream(outbox: &[StoredEvent], messages: &[StreamMessage]) -> Result<(), String> {
    let by_id: HashMap<&str, &StoredEvent> =
        outbox.iter().map(|e| (e.event.id.as_str(), e)).collect();
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in messages {
        let id = m.event["id"].as_str().unwrap_or_default();
        let Some(event) = by_id.get(id) else {
            return Err(format!(
                "message {}: event {id} is not in the outbox",
                m.position
            ));
        };
        if let Some(first) = seen.insert(id, m.position) {
            return Err(format!(
                "event {id} (seq {}) stored twice: messages {first} and {}",
                event.seq, m.position
            ));
        }
        if m.msg_id.as_deref() != Some(id) {
            return Err(format!(
                "message {}: Nats-Msg-Id {:?}, event id {id}",
                m.position, m.msg_id
            ));
        }
        // The type is `<resource>.<op>`.
        let wanted = format!("legacy.{}", event.event.event_type);
        // The CloudEvents sequence extension is a string.
        let sequence = event.seq.to_string();
        if m.subject != wanted || m.event["sequence"].as_str() != Some(sequence.as_str()) {
            return Err(format!(
                "message {} ({} seq {}) is not the outbox's event {} on {wanted}",
                m.position, m.subject, m.event["sequence"], event.seq
            ));
        }
        let record = format!("{}/{}", event.event.resource, event.event.subject);
        if let Some(prev) = last.insert(record.clone(), event.seq)
            && prev > event.seq
        {
            return Err(format!(
                "{record}: seq {} stored (message {}) after seq {prev}",
                event.seq, m.position
            ));
        }
    }
    let missing: Vec<u64> = outbox
        .iter()
        .filter(|e| !seen.contains_key(e.event.id.as_str()))
        .map(|e| e.seq)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} outbox events not in the stream: seqs {missing:?}",
            missing.len(),
            outbox.len()
        ))
    }
}
