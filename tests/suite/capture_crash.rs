//! kill -9 at any moment loses nothing (DESIGN.md, Guarantees): the real `legacy-bridge
//! serve` captures three resources (changelog, timestamp cursor with reconciliation,
//! snapshot-diff) while a writer inserts, updates and deletes rows, each write bumping a
//! per-row version visible in the record; the bridge is SIGKILLed at random moments and
//! restarted, over and over. Afterwards the outbox must be gap-free, replaying each key's
//! events must give exactly the final database row, each event's `before` must be the
//! previous event's `after` (nothing lost in between), per-key versions must only grow, and
//! events sharing an id must be the same change.
//!
//! Random choices (writes and kill delays) come from a seed printed at the start; set
//! `LB_KILL9_SEED` to repeat a run (timing on a busy machine still varies).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use legacy_bridge::model::StoredEvent;
use legacy_bridge::source::SelectQuery;
use legacy_bridge::store::SqliteStore;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value as Json;

use super::capture_harness::{
    Rig, berlin_now, connect, inventory, prices, products, read_all, show, sql,
};
use super::engines::{Engine, TestDb};

/// Kill/restart rounds.
const ROUNDS: usize = 30;
/// The whole test (rounds and catching up) must finish within this.
const BUDGET: Duration = Duration::from_secs(90);
const RESOURCES: [&str; 3] = ["inventory", "products", "prices"];

/// Small batches, so a cycle or a load is many commits and a kill often lands between them.
fn adapter() -> String {
    let inventory = inventory("strategy = \"changelog\"\ninterval_ms = 50\nbatch_size = 5");
    let products = products(
        "strategy = \"cursor\"\ncursor_column = \"LAST_UPD\"\ninterval_ms = 50\n\
         settle_ms = 200\nreconcile_interval_secs = 1\nbatch_size = 5",
    );
    let prices = prices("strategy = \"snapshot-diff\"\ninterval_ms = 50\nbatch_size = 5");
    format!("{inventory}{products}{prices}")
}

/// One of the writer's rows: `(table, key number)`.
type Row = (usize, usize);

/// The statement writing version `v` of a row, or deleting it.
fn write_sql(row: Row, version: Option<u64>, exists: bool) -> String {
    let (table, k) = row;
    let item = format!("K{k:05}");
    let at = berlin_now();
    let v = version.map(|v| v as i64);
    match (table, v, exists) {
        (0, Some(v), false) => sql::stock_insert(&item, "S01", v, at),
        (0, Some(v), true) => sql::stock_update(&item, "S01", v, at),
        (0, None, _) => sql::stock_delete(&item, "S01"),
        (1, Some(v), false) => sql::item_insert(&item, &format!("v{v}"), at),
        (1, Some(v), true) => sql::item_update(&item, &format!("v{v}"), at),
        (1, None, _) => sql::item_delete(&item),
        (2, Some(v), false) => sql::price_insert("RETAIL", &item, &v.to_string(), at),
        (2, Some(v), true) => sql::price_update("RETAIL", &item, &v.to_string()),
        (_, None, _) => sql::price_delete("RETAIL", &item),
        _ => unreachable!("three tables"),
    }
}

/// Writes until `stop`: half the writes insert a fresh key (so a change lost in a crash is
/// not hidden by a later change of the same row), the rest update or delete a live key or
/// bring a deleted one back. Every insert or update writes a version higher than any the row
/// had. Returns the number of writes.
fn writer(connection_string: String, seed: u64, stop: Arc<AtomicBool>) -> usize {
    let conn = connect(&connection_string);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut version: HashMap<Row, u64> = HashMap::new();
    let mut live: [Vec<usize>; 3] = Default::default();
    let mut gone: [Vec<usize>; 3] = Default::default();
    let mut fresh = 0;
    let mut writes = 0;
    while !stop.load(Ordering::SeqCst) {
        let table = rng.random_range(0..3);
        let roll: f64 = rng.random();
        let (k, exists, delete) = if live[table].len() < 3 || roll < 0.5 {
            fresh += 1;
            (fresh, false, false)
        } else if roll < 0.55 && !gone[table].is_empty() {
            let i = rng.random_range(0..gone[table].len());
            (gone[table].swap_remove(i), false, false)
        } else {
            let i = rng.random_range(0..live[table].len());
            (live[table][i], true, roll >= 0.85)
        };
        let row = (table, k);
        let next = (!delete).then(|| version.get(&row).copied().unwrap_or(0) + 1);
        let statement = write_sql(row, next, exists);
        conn.execute(&statement, (), None)
            .unwrap_or_else(|e| panic!("writer: {e}\n{statement}"));
        match next {
            Some(v) => {
                version.insert(row, v);
                if !exists {
                    live[table].push(k);
                }
            }
            None => {
                live[table].retain(|&x| x != k);
                gone[table].push(k);
            }
        }
        writes += 1;
        std::thread::sleep(Duration::from_millis(rng.random_range(2..25)));
    }
    writes
}

/// A running `legacy-bridge serve`; SIGKILLed and reaped when dropped, so a failing test
/// leaves no process behind.
struct Bridge(Child);

impl Bridge {
    /// SIGKILL, then reap.
    fn kill_9(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }

    /// Fails the test if the process has exited on its own.
    fn assert_alive(&mut self, engine: Engine, log: &Path) {
        if let Some(status) = self.0.try_wait().expect("child status") {
            panic!(
                "{engine:?}: the bridge exited by itself ({status}):\n{}",
                tail(log)
            );
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

/// Tells the writer to stop when dropped (also when the test fails).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn spawn(config: &Path, log: &File) -> Bridge {
    let child = Command::new(env!("CARGO_BIN_EXE_legacy-bridge"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--startup-wait", "30"])
        .env("RUST_LOG", "warn,legacy_bridge=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log.try_clone().expect("log"))
        .spawn()
        .expect("start legacy-bridge");
    Bridge(child)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Every current row of the captured tables, mapped as capture maps it: resource -> key JSON
/// -> record JSON.
async fn database_rows(rig: &Rig) -> HashMap<(String, String), Json> {
    let source = rig.source();
    let mut out = HashMap::new();
    for name in RESOURCES {
        let resource = rig.resource(name);
        let rows = source
            .fetch(SelectQuery {
                relation: resource.relation.clone(),
                columns: resource.select_columns(),
                filter: Vec::new(),
                order_by: Vec::new(),
                limit: Some(100_000),
            })
            .await
            .expect("read the legacy tables");
        for row in rows {
            // Mapped by the resource itself, independently of capture's own row handling.
            let record = resource.record(row).expect("row maps");
            let key: serde_json::Map<String, Json> = resource
                .schema
                .key
                .iter()
                .map(|k| (k.clone(), record[k.as_str()].to_json()))
                .collect();
            let json: serde_json::Map<String, Json> = record
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            out.insert(
                (name.to_owned(), Json::Object(key).to_string()),
                Json::Object(json),
            );
        }
    }
    out
}

/// The version a writer's record carries, `None` for seed rows.
fn version_of(resource: &str, after: &Json) -> Option<u64> {
    if !after["sku"].as_str().is_some_and(|s| s.starts_with('K')) {
        return None;
    }
    let text = match resource {
        "inventory" => after["on_hand"].as_str()?,
        "products" => after["name"].as_str()?.strip_prefix('v')?,
        _ => after["amount"].as_str()?,
    };
    // Versions are whole numbers; decimals come back as `5`, `5.000` or `5.00`.
    text.split('.').next()?.parse().ok()
}

/// Replays the outbox per key, checking each event against the state before it; returns
/// the replayed state (key -> record, `None` once deleted) or the first inconsistency.
fn replay(events: &[StoredEvent]) -> Result<HashMap<(String, String), Option<Json>>, String> {
    let mut state: HashMap<(String, String), Option<Json>> = HashMap::new();
    let mut versions: HashMap<(String, String), u64> = HashMap::new();
    let mut by_id: HashMap<&str, &StoredEvent> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let ev = &e.event;
        if e.seq != i as u64 + 1 {
            return Err(format!("sequence gap: position {i} holds seq {}", e.seq));
        }
        if let Some(first) = by_id.get(ev.id.as_str()) {
            // A redelivered change: same id, so it must be the very same change.
            let same = |f: &str| first.event.data[f] == ev.data[f];
            if first.event.event_type != ev.event_type
                || first.event.subject != ev.subject
                || !["op", "key", "before", "after"].into_iter().all(same)
            {
                return Err(format!(
                    "events {} and {} share id {} but differ",
                    first.seq, e.seq, ev.id
                ));
            }
            continue;
        }
        by_id.insert(&ev.id, e);
        let key = (ev.resource.clone(), ev.data["key"].to_string());
        let current = state.get(&key).cloned().flatten();
        let op = ev.data["op"].as_str().unwrap_or_default();
        let ok = match op {
            "snapshot" => true,
            "created" => current.is_none(),
            "updated" | "deleted" => current.as_ref() == Some(&ev.data["before"]),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "seq {} ({} {}): before {} does not follow the replayed state {current:?}",
                e.seq, ev.event_type, ev.subject, ev.data["before"]
            ));
        }
        let after = (op != "deleted").then(|| ev.data["after"].clone());
        if let Some(v) = after.as_ref().and_then(|a| version_of(&ev.resource, a)) {
            let last = versions.insert(key.clone(), v).unwrap_or(0);
            if v <= last {
                return Err(format!(
                    "seq {} ({} {}): version {v} after version {last}",
                    e.seq, ev.event_type, ev.subject
                ));
            }
        }
        state.insert(key, after);
    }
    Ok(state)
}

/// Whether the outbox, replayed, equals the database now.
fn compare(events: &[StoredEvent], rows: &HashMap<(String, String), Json>) -> Result<(), String> {
    let state = replay(events)?;
    for (key, row) in rows {
        match state.get(key) {
            Some(Some(record)) if record == row => {}
            other => {
                return Err(format!(
                    "{key:?}: database has {row}, events give {other:?}"
                ));
            }
        }
    }
    for (key, record) in &state {
        if record.is_some() && !rows.contains_key(key) {
            return Err(format!(
                "{key:?}: deleted in the database, events say {record:?}"
            ));
        }
    }
    Ok(())
}

async fn read_store(path: &Path) -> Option<Vec<StoredEvent>> {
    let store = SqliteStore::open_read_only(path).ok()?;
    Some(read_all(&store).await)
}

async fn kill_9_at_random_moments_loses_nothing(engine: Engine) {
    let Some(db) = TestDb::create(engine) else {
        return;
    };
    let started = Instant::now();
    let seed = std::env::var("LB_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("kill -9 test on {engine:?}: seed {seed} (LB_KILL9_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);

    // GIVEN a config for the real binary, and change-log triggers on STOCK_LEVEL
    let rig = Rig::build(engine, &db.connection_string, "", &adapter()).await;
    rig.apply_changelog_ddl("inventory").await;
    let config = rig.config_path().to_owned();
    let state = rig.state_path();
    let log_path = config.with_file_name("bridge.log");
    let log = File::create(&log_path).expect("log file");

    // AND a writer changing rows all along
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = StopOnDrop(Arc::clone(&stop));
    let writing = {
        let (conn, stop) = (db.connection_string.clone(), Arc::clone(&stop));
        std::thread::spawn(move || writer(conn, seed.wrapping_add(1), stop))
    };

    // WHEN the bridge is killed with SIGKILL at random moments and restarted, many times
    for round in 0..ROUNDS {
        let mut child = spawn(&config, &log);
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..1500))).await;
        child.assert_alive(engine, &log_path);
        child.kill_9();
        assert!(
            started.elapsed() < BUDGET,
            "{engine:?}: {round} rounds took {:?}",
            started.elapsed()
        );
    }
    drop(stop_writer);
    let writes = writing.join().expect("writer");
    // The kills must have hit a working bridge, not only its start-up.
    let during = read_store(&state).await.map_or(0, |e| e.len());
    assert!(
        during > 0,
        "{engine:?}: nothing was captured during the kill rounds:\n{}",
        tail(&log_path)
    );

    // AND finally left running until it has caught up with the last write
    let mut child = spawn(&config, &log);
    loop {
        let rows = database_rows(&rig).await;
        let last = match read_store(&state).await {
            Some(events) => match compare(&events, &rows) {
                Ok(()) => break,
                Err(why) => why,
            },
            None => "no state store yet".into(),
        };
        child.assert_alive(engine, &log_path);
        if started.elapsed() > BUDGET {
            panic!(
                "{engine:?}: not caught up within {BUDGET:?} (seed {seed}): {last}\nlog:\n{}",
                tail(&log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.kill_9();

    // THEN the outbox of the dead process is gap-free from 1, and replayed key by key it is
    // exactly the database: nothing missed, deletes included, versions only growing, and a
    // repeated id only ever for the same change
    let events = read_store(&state).await.expect("state store readable");
    let rows = database_rows(&rig).await;
    if let Err(why) = compare(&events, &rows) {
        panic!(
            "{engine:?} (seed {seed}): {why}\noutbox tail:\n{}",
            show(&events[events.len().saturating_sub(40)..])
        );
    }
    let deletes = events
        .iter()
        .filter(|e| e.event.data["op"] == "deleted")
        .count();
    assert!(deletes > 0, "{engine:?}: the run saw no deletes");
    eprintln!(
        "kill -9 test on {engine:?}: {ROUNDS} kills, {writes} writes, {} events ({during} \
         committed under kills, {deletes} deletes), {:?}",
        events.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_sqlite() {
    kill_9_at_random_moments_loses_nothing(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_postgres() {
    kill_9_at_random_moments_loses_nothing(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_mariadb() {
    kill_9_at_random_moments_loses_nothing(Engine::Mariadb).await;
}
