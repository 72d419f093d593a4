//! kill -9 during delivery loses nothing (DESIGN.md, Guarantees): the real `legacy-bridge
//! serve` captures `inventory` and delivers it to a webhook receiver (now and then answering
//! 500, always a little slow, so kills land mid-request) and to NATS JetStream (behind a
//! proxy delaying its answers, so kills land between storing and acknowledging), while the
//! till writes; the bridge is SIGKILLed at seeded moments and restarted, over and over.
//! Afterwards every outbox event has been accepted by the receiver at least once (every
//! request verified by `standardwebhooks`, a redelivery carrying the same `webhook-id`), the
//! first arrivals of each record are in seq order, and the stream holds every event exactly
//! once (`Nats-Msg-Id`), each record's events in order.
//!
//! Random choices (receiver answers, kill delays, the till's writes) come from a seed printed
//! at the start; `LB_KILL9_SEED` repeats a run (timing on a busy machine still varies).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use legacy_bridge::model::StoredEvent;
use legacy_bridge::store::SqliteStore;
use legacy_bridge::{app, config};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

use super::capture_harness::{berlin_now, read_all, sql};
use super::delivery_harness::{
    Order, PATIENCE, SECRET, TillThread, apply_changelog_ddl, caught_up, check_arrivals,
    check_stream, inventory_changelog, nats_subscription, retry, seed, show_received,
    stream_messages, subscription_of, webhook_subscription, write_config,
};
use super::engines::{Engine, TestDb};
use super::nats_server::NatsServer;
use super::proxy::Proxy;
use super::webhook_receiver::Receiver;

/// Kill/restart rounds.
const ROUNDS: usize = 10;
/// Rounds whose receiver refuses a few requests (500) at most; with 3 refusals a round at
/// most, no event can exhaust its 31 attempts.
const MAX_REFUSING_ROUNDS: usize = 8;
const STREAM: &str = "LB_CRASH";
/// The row written last; once its event is delivered, everything before it is.
const MARKER: &str = "ZZEND";

/// A running `legacy-bridge serve`; SIGKILLed and reaped when dropped.
struct Bridge(Child);

impl Bridge {
    fn spawn(config: &Path, port: u16, log: &File) -> Bridge {
        let child = Command::new(env!("CARGO_BIN_EXE_legacy-bridge"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--startup-wait",
                "30",
            ])
            .env("RUST_LOG", "warn,legacy_bridge=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log.try_clone().expect("log"))
            .spawn()
            .expect("start legacy-bridge");
        Bridge(child)
    }

    /// SIGKILL, then reap.
    fn kill_9(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }

    /// Fails the test if the process has exited on its own.
    fn assert_alive(&mut self, log: &Path) {
        if let Some(status) = self.0.try_wait().expect("child status") {
            panic!("the bridge exited by itself ({status}):\n{}", tail(log));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

async fn read_store(path: &Path) -> Option<Vec<StoredEvent>> {
    let store = SqliteStore::open_read_only(path).ok()?;
    Some(read_all(&store).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let db = TestDb::create(Engine::Sqlite).expect("SQLite always runs");
    let seed = seed("LB_KILL9_SEED", "delivery kill -9");
    let mut rng = StdRng::seed_from_u64(seed);

    // GIVEN a config for the real binary: a webhook and a NATS subscription, with retries
    // enough that nothing is dead-lettered, and change-log triggers on STOCK_LEVEL
    let dir = tempfile::tempdir().expect("tempdir");
    // NATS is reached through a proxy that delays its answers, so a kill often falls between
    // the stream storing an event and the bridge hearing of it (a redelivery follows).
    let nats_port: u16 = nats
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let proxy = Proxy::start(nats_port).await;
    proxy.slow(Duration::from_millis(40));
    let extra = format!("batch_size = 20\n{}", retry(&["100ms"; 30]));
    let subscriptions = format!(
        "{}{}",
        webhook_subscription("hook", &receiver.url(), &extra),
        nats_subscription(
            "bus",
            &format!("nats://127.0.0.1:{}", proxy.port),
            STREAM,
            &extra
        )
    );
    let (config_path, keys) = write_config(
        dir.path(),
        &db.connection_string,
        &inventory_changelog("snapshot"),
        &subscriptions,
    );
    {
        let loaded = config::load(&config_path).expect("valid config");
        let app = app::build(loaded, Duration::from_secs(10))
            .await
            .expect("bridge builds");
        apply_changelog_ddl(&app, "inventory").await;
    }
    let state = dir.path().join(config::DEFAULT_STATE_PATH);
    let log_path = dir.path().join("bridge.log");
    let log = File::create(&log_path).expect("log file");
    let port = free_port();

    // AND a till writing all along
    let till = TillThread::start(&db.connection_string, seed.wrapping_add(1), 8, (5, 40));

    // WHEN the bridge is killed with SIGKILL at seeded moments and restarted
    let mut refusing = 0;
    for _ in 0..ROUNDS {
        let mut mode = json!({"status": 200, "delay_ms": 20});
        if refusing < MAX_REFUSING_ROUNDS && rng.random_bool(0.4) {
            refusing += 1;
            mode = json!({"status": 500, "count": rng.random_range(1..=3), "delay_ms": 20});
        }
        receiver.control(mode);
        let mut bridge = Bridge::spawn(&config_path, port, &log);
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        bridge.assert_alive(&log_path);
        bridge.kill_9();
    }
    let writes = till.stop();
    let during = receiver.received().len();
    assert!(
        during > 0,
        "nothing was delivered during the kill rounds:\n{}",
        tail(&log_path)
    );

    // AND finally left running until both subscriptions delivered the last write
    db.exec(&sql::stock_insert(MARKER, "S01", 1, berlin_now()));
    receiver.set_status(200, None, None);
    let mut bridge = Bridge::spawn(&config_path, port, &log);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let events = read_store(&state).await.unwrap_or_default();
        let marked = events.iter().any(|e| e.event.subject.starts_with(MARKER));
        let answer = http
            .get(format!("http://127.0.0.1:{port}/admin/subscriptions"))
            .bearer_auth(&keys.watcher)
            .send()
            .await;
        let overview = match answer {
            Ok(r) if r.status() == 200 => r.json::<serde_json::Value>().await.ok(),
            _ => None,
        };
        let done = overview.as_ref().is_some_and(|o| {
            ["hook", "bus"]
                .iter()
                .all(|name| caught_up(&subscription_of(o, name)))
        });
        if marked && done {
            break;
        }
        bridge.assert_alive(&log_path);
        assert!(
            Instant::now() < deadline,
            "not caught up within {PATIENCE:?} (seed {seed}; marker captured: {marked}):\n\
             {overview:#?}\nlog:\n{}",
            tail(&log_path)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bridge.kill_9();

    // THEN every event reached the receiver at least once, redeliveries under the same id,
    // first arrivals in per-record order
    let outbox = read_store(&state).await.expect("state store readable");
    let received = receiver.received();
    let arrivals = check_arrivals(&outbox, &received, Order::FirstArrivals).unwrap_or_else(|why| {
        panic!(
            "webhook (seed {seed}): {why}\nlast requests:\n{}",
            show_received(&received, 40)
        )
    });
    // AND the stream holds every event exactly once, in per-record order
    let messages = stream_messages(&nats.url(), STREAM).await;
    if let Err(why) = check_stream(&outbox, &messages) {
        panic!(
            "nats (seed {seed}): {why}\n{} messages, {} outbox events",
            messages.len(),
            outbox.len()
        );
    }
    eprintln!(
        "delivery kill -9: {ROUNDS} kills ({refusing} with refusals), {writes} writes, {} events, \
         webhook {arrivals:?}, {} stored in the stream",
        outbox.len(),
        messages.len()
    );
}
