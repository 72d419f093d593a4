//! Dispatcher behaviour over a real SQLite store and a scripted sink: per-record order under
//! failures, dead letters that do not block other records, throttling, 410, operator
//! actions, and redelivery after a dispatcher is killed mid-window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use serde_json::json;
use tokio::sync::watch;

use super::*;
use crate::config::{RetryConfig, SinkConfig, StartAt, SubscriptionConfig};
use crate::model::{ChangeOp, NewEvent, StoredEvent, event_type};
use crate::store::{
    Commit, Control, DeliveryStore, SqliteStore, Store, SubscriptionState, record_key,
};

type Script = dyn Fn(&StoredEvent, u32) -> Outcome + Send + Sync;

/// A sink that answers by script and records every call.
struct ScriptedSink {
    script: Mutex<Arc<Script>>,
    /// (seq, id, record, outcome was Delivered) in call order.
    calls: Mutex<Vec<(u64, String, String, bool)>>,
    attempts: Mutex<HashMap<u64, u32>>,
    /// Blocks `deliver` forever once this many calls were made.
    hang_after: Mutex<Option<usize>>,
}

impl ScriptedSink {
    fn new(script: impl Fn(&StoredEvent, u32) -> Outcome + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(Arc::new(script)),
            calls: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            hang_after: Mutex::new(None),
        })
    }

    fn set(&self, script: impl Fn(&StoredEvent, u32) -> Outcome + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    fn delivered(&self) -> Vec<(u64, String, String)> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.3)
            .map(|c| (c.0, c.1.clone(), c.2.clone()))
            .collect()
    }

    fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[async_trait]
impl Sink for ScriptedSink {
    async fn deliver(&self, batch: &[StoredEvent]) -> Vec<Outcome> {
        let hang = self
            .hang_after
            .lock()
            .unwrap()
            .is_some_and(|n| self.call_count() >= n);
        if hang {
            std::future::pending::<()>().await;
        }
        let mut records: Vec<String> = batch.iter().map(record_key).collect();
        records.sort();
        records.dedup();
        assert_eq!(
            records.len(),
            batch.len(),
            "two events of one record in a batch"
        );
        let script = Arc::clone(&self.script.lock().unwrap());
        batch
            .iter()
            .map(|e| {
                let attempt = {
                    let mut a = self.attempts.lock().unwrap();
                    let n = a.entry(e.seq).or_default();
                    *n += 1;
                    *n
                };
                let outcome = script(e, attempt);
                self.calls.lock().unwrap().push((
                    e.seq,
                    e.event.id.clone(),
                    record_key(e),
                    outcome == Outcome::Delivered,
                ));
                outcome
            })
            .collect()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    committed_tx: watch::Sender<u64>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let (committed_tx, _) = watch::channel(0);
        Self {
            _dir: dir,
            store,
            committed_tx,
        }
    }

    /// Appends one event per `(record subject, n)`; all of resource `items`.
    async fn append(&self, subjects: &[&str]) {
        let events = subjects
            .iter()
            .enumerate()
            .map(|(i, s)| NewEvent {
                id: format!("id-{s}-{i}-{}", rand::random::<u32>()),
                resource: "items".into(),
                source: "/sources/t/items".into(),
                event_type: event_type("items", ChangeOp::Updated),
                subject: (*s).into(),
                time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                data: json!({"op": "updated"}),
            })
            .collect();
        let appended = self
            .store
            .commit(Commit {
                resource: "items".into(),
                events,
                ..Commit::default()
            })
            .await
            .unwrap();
        if let Some(a) = appended {
            self.committed_tx.send_replace(a.last_seq);
        }
    }

    async fn start(&self, sink: Arc<ScriptedSink>, schedule_ms: &[u64]) -> DeliveryRuntime {
        let config = SubscriptionConfig {
            sink: SinkConfig::Nats(toml::from_str("url = \"nats://unused\"").unwrap()),
            resources: Vec::new(),
            ops: Vec::new(),
            start: StartAt::Beginning,
            batch_size: 7,
            retry: RetryConfig {
                schedule: schedule_ms
                    .iter()
                    .map(|ms| Duration::from_millis(*ms))
                    .collect(),
                jitter: 0.0,
                max_retry_after: Duration::from_secs(5),
            },
        };
        DeliveryRuntime::start(
            vec![Planned {
                name: "sub".into(),
                config,
                sink,
            }],
            &["items".to_owned()],
            Arc::clone(&self.store) as Arc<dyn DeliveryStore>,
            self.committed_tx.subscribe(),
        )
        .await
        .unwrap()
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Per record, successful deliveries come in seq order (ignoring repeats of the same seq).
fn assert_record_order(delivered: &[(u64, String, String)]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (seq, _, record) in delivered {
        if let Some(prev) = last.get(record.as_str()) {
            assert!(
                seq >= prev,
                "record {record}: seq {seq} delivered after {prev}: {delivered:?}"
            );
        }
        last.insert(record, *seq);
    }
}

fn ok() -> Outcome {
    Outcome::Delivered
}

#[tokio::test]
async fn failures_keep_per_record_order_and_lose_nothing() {
    let fx = Fixture::new();
    // Deterministic "random" failures: a third of first and second attempts fail.
    let sink = ScriptedSink::new(|e, attempt| {
        if attempt <= 2 && (e.seq * 7 + u64::from(attempt)) % 3 == 0 {
            Outcome::Retry(Failure::event("HTTP 500"))
        } else {
            ok()
        }
    });
    let subjects: Vec<String> = (0..40).map(|i| format!("K{}", i % 4)).collect();
    let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
    fx.append(&refs[..20]).await;
    let runtime = fx.start(Arc::clone(&sink), &[0, 0, 0]).await;
    fx.append(&refs[20..]).await;
    eventually("all 40 delivered", async || {
        let mut seqs: Vec<u64> = sink.delivered().iter().map(|d| d.0).collect();
        seqs.sort();
        seqs.dedup();
        seqs.len() == 40
    })
    .await;
    assert_record_order(&sink.delivered());
    // The sink hears of a delivery before the store settles it: wait for the store too.
    eventually("the cursor past every event", async || {
        let store = &runtime.handle.store;
        let sub = store.subscription("sub").await.unwrap().unwrap();
        sub.cursor == 40 && store.delivery_counts("sub").await.unwrap().pending == 0
    })
    .await;
    let counts = runtime.handle.store.delivery_counts("sub").await.unwrap();
    assert_eq!((counts.pending, counts.dead), (0, 0));
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_dead_letter_does_not_block_other_records_and_can_be_replayed() {
    let fx = Fixture::new();
    let sink = ScriptedSink::new(|e, _| {
        if e.event.subject == "BAD" {
            Outcome::Retry(Failure::event("HTTP 400 Bad Request"))
        } else {
            ok()
        }
    });
    fx.append(&["BAD", "A", "BAD", "B", "A"]).await;
    let runtime = fx.start(Arc::clone(&sink), &[0, 10]).await;
    eventually("two dead letters", async || {
        runtime
            .handle
            .store
            .delivery_counts("sub")
            .await
            .unwrap()
            .dead
            == 2
    })
    .await;
    let delivered: Vec<u64> = sink.delivered().iter().map(|d| d.0).collect();
    assert_eq!(delivered, vec![2, 4, 5], "A and B go through");
    let dead = runtime
        .handle
        .store
        .dead_letters("sub", 0, 10)
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].reason, "HTTP 400 Bad Request");

    sink.set(|_, _| ok());
    let replayed = runtime
        .handle
        .control(
            "sub",
            "ops",
            Control::Replay {
                seqs: Some(vec![3]),
            },
        )
        .await
        .unwrap();
    assert_eq!(replayed, Some(1));
    eventually("seq 3 delivered", async || {
        sink.delivered().iter().any(|d| d.0 == 3)
    })
    .await;
    assert!(
        !sink.delivered().iter().any(|d| d.0 == 1),
        "only the chosen one"
    );
    let audit = runtime.handle.store.audit_log(None, 10).await.unwrap();
    assert_eq!(audit[0].action, "replay");
    assert_eq!(audit[0].actor, "ops");
    assert_eq!(audit[0].detail["seqs"], json!([3]));
    runtime.shutdown().await;
}

#[tokio::test]
async fn later_events_of_a_failing_record_wait_behind_it() {
    let fx = Fixture::new();
    // K's first event fails twice; its later events must not overtake it.
    let sink = ScriptedSink::new(|e, attempt| {
        if e.seq == 1 && attempt <= 2 {
            Outcome::Retry(Failure::event("HTTP 500"))
        } else {
            ok()
        }
    });
    fx.append(&["K", "K", "X", "K"]).await;
    let runtime = fx.start(Arc::clone(&sink), &[100, 100]).await;
    fx.append(&["K", "X"]).await;
    eventually("all delivered", async || sink.delivered().len() == 6).await;
    let order: Vec<u64> = sink
        .delivered()
        .iter()
        .filter(|d| d.2 == "items/K")
        .map(|d| d.0)
        .collect();
    assert_eq!(order, vec![1, 2, 4, 5]);
    // X was not held up by K's retries.
    let first_x = sink.delivered().iter().position(|d| d.0 == 3).unwrap();
    let first_k = sink.delivered().iter().position(|d| d.0 == 1).unwrap();
    assert!(first_x < first_k, "{:?}", sink.delivered());
    runtime.shutdown().await;
}

#[tokio::test]
async fn throttling_holds_every_record_for_retry_after() {
    let fx = Fixture::new();
    let sink = ScriptedSink::new(|_, attempt| {
        if attempt == 1 {
            Outcome::Retry(Failure {
                reason: "HTTP 503".into(),
                retry_after: Some(Duration::from_millis(600)),
                throttle: true,
            })
        } else {
            ok()
        }
    });
    fx.append(&["A", "B", "C", "D"]).await;
    let started = std::time::Instant::now();
    let runtime = fx.start(Arc::clone(&sink), &[0, 0]).await;
    eventually("all delivered", async || sink.delivered().len() == 4).await;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the hold was honoured"
    );
    // One failed wave (4 calls), then the held events: no hammering during the hold.
    assert_eq!(sink.call_count(), 8, "{:?}", sink.calls.lock().unwrap());
    runtime.shutdown().await;
}

#[tokio::test]
async fn gone_disables_until_resumed() {
    let fx = Fixture::new();
    let sink = ScriptedSink::new(|_, _| Outcome::Gone("endpoint answered 410 Gone".into()));
    fx.append(&["A", "B"]).await;
    let runtime = fx.start(Arc::clone(&sink), &[0]).await;
    eventually("disabled", async || {
        runtime
            .handle
            .store
            .subscription("sub")
            .await
            .unwrap()
            .unwrap()
            .state
            == SubscriptionState::Disabled
    })
    .await;
    let audit = runtime.handle.store.audit_log(None, 5).await.unwrap();
    assert_eq!(
        (audit[0].actor.as_str(), audit[0].action.as_str()),
        ("system", "disable")
    );
    sink.set(|_, _| ok());
    fx.append(&["C"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink.delivered().is_empty(), "nothing while disabled");
    runtime
        .handle
        .control(
            "sub",
            "ops",
            Control::SetState {
                state: SubscriptionState::Active,
                reason: None,
            },
        )
        .await
        .unwrap();
    eventually("all delivered after resume", async || {
        let mut seqs: Vec<u64> = sink.delivered().iter().map(|d| d.0).collect();
        seqs.sort();
        seqs.dedup();
        seqs == [1, 2, 3]
    })
    .await;
    runtime.shutdown().await;
}

#[tokio::test]
async fn a_killed_dispatcher_redelivers_with_the_same_ids() {
    let fx = Fixture::new();
    let sink = ScriptedSink::new(|_, _| ok());
    // Hang on the second wave of the first window: the first wave was delivered but the
    // cursor was not stored.
    *sink.hang_after.lock().unwrap() = Some(3);
    fx.append(&["A", "B", "C", "A", "B"]).await;
    let runtime = fx.start(Arc::clone(&sink), &[0]).await;
    eventually("first wave out", async || sink.call_count() >= 3).await;
    // Abort without draining: like kill -9 between delivery and cursor.
    runtime.tasks_abort_for_test();
    let first: Vec<(u64, String, String)> = sink.delivered();
    let again = ScriptedSink::new(|_, _| ok());
    let runtime = fx.start(Arc::clone(&again), &[0]).await;
    eventually("all redelivered", async || again.delivered().len() == 5).await;
    for (seq, id, _) in &first {
        let redelivered = again.delivered().into_iter().find(|d| d.0 == *seq).unwrap();
        assert_eq!(&redelivered.1, id, "same id for seq {seq}");
    }
    runtime.shutdown().await;
}

#[tokio::test]
async fn rewind_redelivers_and_pause_stops() {
    let fx = Fixture::new();
    let sink = ScriptedSink::new(|_, _| ok());
    fx.append(&["A", "B", "C"]).await;
    let runtime = fx.start(Arc::clone(&sink), &[0]).await;
    eventually("delivered", async || sink.delivered().len() == 3).await;
    let paused = Control::SetState {
        state: SubscriptionState::Paused,
        reason: Some("maintenance".into()),
    };
    runtime.handle.control("sub", "ops", paused).await.unwrap();
    fx.append(&["D"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.delivered().len(), 3, "paused");
    runtime
        .handle
        .control("sub", "ops", Control::Rewind { seq: 1 })
        .await
        .unwrap();
    runtime
        .handle
        .control(
            "sub",
            "ops",
            Control::SetState {
                state: SubscriptionState::Active,
                reason: None,
            },
        )
        .await
        .unwrap();
    eventually("rewound and resumed", async || sink.delivered().len() == 6).await;
    let tail: Vec<u64> = sink.delivered()[3..].iter().map(|d| d.0).collect();
    assert_eq!(tail, vec![2, 3, 4]);
    let actions: Vec<String> = runtime
        .handle
        .store
        .audit_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, vec!["resume", "rewind", "pause"]);
    runtime.shutdown().await;
}

/// A deterministic pseudo-random number from a seed and two values.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x
}

/// Model check over seeds: random failures (per event and endpoint-wide), events arriving
/// while delivery runs, and the dispatcher killed at random moments and restarted. At the
/// end every event was delivered at least once or dead-lettered after failing every
/// attempt, nothing is left parked, the cursor is at the end, and per record the first
/// deliveries came in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_failures_and_kills_lose_nothing_and_keep_record_order() {
    for seed in 1..=6u64 {
        let fx = Fixture::new();
        let script =
            move |e: &StoredEvent, attempt: u32| match mix(seed, e.seq, u64::from(attempt)) % 10 {
                0 | 1 => Outcome::Retry(Failure::event("HTTP 500")),
                2 => Outcome::Retry(Failure {
                    reason: "HTTP 503".into(),
                    retry_after: Some(Duration::from_millis(20)),
                    throttle: true,
                }),
                _ => Outcome::Delivered,
            };
        // Every sink used, read only at the end: a killed dispatcher's last call may finish
        // after the kill (its store write too, as with a real process's last fsync).
        let mut sinks: Vec<Arc<ScriptedSink>> = Vec::new();
        let mut appended = 0u64;
        let mut round = 0u64;
        while appended < 90 || round < 8 {
            round += 1;
            let sink = ScriptedSink::new(script);
            let runtime = fx.start(Arc::clone(&sink), &[0, 5, 0]).await;
            // Events arrive while delivery runs.
            let subjects: Vec<String> = (0..10)
                .map(|i| format!("R{}", mix(seed, round, i) % 6))
                .collect();
            if appended < 90 {
                let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
                fx.append(&refs).await;
                appended += 10;
            }
            tokio::time::sleep(Duration::from_millis(mix(seed, round, 99) % 60)).await;
            // Kill, like kill -9: no drain.
            runtime.tasks_abort_for_test();
            sinks.push(sink);
        }
        // A last, undisturbed run to the end.
        let sink = ScriptedSink::new(script);
        let runtime = fx.start(Arc::clone(&sink), &[0, 5, 0]).await;
        // Generous: a killed dispatcher's last store write can land after the new one went
        // idle, which then notices it at its next poll.
        for _ in 0..800 {
            let sub = runtime
                .handle
                .store
                .subscription("sub")
                .await
                .unwrap()
                .unwrap();
            let counts = runtime.handle.store.delivery_counts("sub").await.unwrap();
            if sub.cursor == appended && counts.pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        {
            let sub = runtime
                .handle
                .store
                .subscription("sub")
                .await
                .unwrap()
                .unwrap();
            let conn = rusqlite::Connection::open(fx._dir.path().join("s.db")).unwrap();
            let mut stmt = conn
                .prepare("SELECT seq, record, attempts, next_at_ms FROM delivery_parked")
                .unwrap();
            let rows: Vec<(i64, String, i64, Option<i64>)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            assert!(
                sub.cursor == appended && rows.is_empty(),
                "seed {seed}: cursor {} of {appended}, parked {rows:?}",
                sub.cursor
            );
        }
        let dead: Vec<u64> = runtime
            .handle
            .store
            .dead_letters("sub", 0, 1000)
            .await
            .unwrap()
            .iter()
            .map(|d| d.seq)
            .collect();
        runtime.shutdown().await;
        sinks.push(sink);
        let calls: Vec<(u64, String, bool)> = sinks
            .iter()
            .flat_map(|s| s.calls.lock().unwrap().clone())
            .map(|(seq, _, record, ok)| (seq, record, ok))
            .collect();
        let mut first: Vec<(u64, String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (seq, record, ok) in &calls {
            if *ok && seen.insert(*seq) {
                first.push((*seq, String::new(), record.clone()));
            }
        }
        for seq in 1..=appended {
            let delivered = seen.contains(&seq);
            let is_dead = dead.contains(&seq);
            assert!(
                delivered || is_dead,
                "seed {seed}: event {seq} neither delivered nor dead"
            );
            if is_dead {
                let attempts = calls.iter().filter(|c| c.0 == seq).count();
                assert!(
                    attempts >= 4,
                    "seed {seed}: {seq} dead after {attempts} attempts"
                );
            }
        }
        assert_record_order(&first);
    }
}
