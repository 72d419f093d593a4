//! kill -9 while an export is applied loses and duplicates nothing: the real
//! `legacy-bridge serve` applies a large export (the initial snapshot) and then a second one
//! (updates, inserts and deletes) in small batches, and is SIGKILLed at seeded random
//! moments during both (while staging, or once the outbox has grown to a random point of
//! the apply), then restarted. Afterwards the outbox must be gap-free, each key's events
//! replayed must give exactly the second file's record, an id seen twice must be the same
//! change, and the events must be exactly those of a clean run (same ids, so the same count
//! per key) made in a second temp dir.
//!
//! The kills during the initial export are a test of their own (a first export cut short
//! must not re-snapshot the records it already committed).
//!
//! Random choices come from a seed printed at the start; set `LB_KILL9_SEED` to repeat a
//! run (timing on a busy machine still varies).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use legacy_bridge::model::StoredEvent;
use legacy_bridge::store::{SqliteStore, Store as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value as Json, json};

use super::capture_harness::{read_all, show};
use super::files_harness::{Auth, write_atomically, write_config};

/// Records of the first export: enough that applying it takes a few seconds of many
/// batches (a debug build applies some 8,000 records a second on the test machine), few
/// enough to keep the test under a minute on two cores.
const ROWS: usize = 40_000;
/// Records the second export adds.
const ADDED: usize = 2_000;
/// The second export updates every key divisible by this ...
const UPDATE_EVERY: usize = 7;
/// ... and drops every key divisible by this (well under the delete guard's 20%).
const DELETE_EVERY: usize = 23;
/// Kills while each export is applied.
const KILLS_PER_FILE: usize = 3;
/// The whole test must finish within this.
const BUDGET: Duration = Duration::from_secs(180);

const ADAPTER: &str = r#"
[resources.items]
source = "exports"
key = "sku"

[resources.items.capture]
strategy = "export"
interval_ms = 100
batch_size = 500

[resources.items.file]
pattern = "ITEMS_*.csv"
format = "csv"

[resources.items.fields]
sku  = { column = "SKU", type = "string" }
name = { column = "NAME", type = "string" }
qty  = { column = "QTY", type = "integer" }
"#;

const SOURCE: &str = "completion = \"rename\"\npoll_interval_ms = 100\n";

/// Key `i` of the exports.
fn sku(i: usize) -> String {
    format!("K{i:06}")
}

/// The rows of export 1 or 2: key number -> (name, qty).
fn export_rows(second: bool) -> BTreeMap<usize, (String, i64)> {
    let mut rows = BTreeMap::new();
    for i in 1..=ROWS {
        let qty = (i % 1000) as i64;
        if !second {
            rows.insert(i, (format!("item {i}"), qty));
        } else if i % DELETE_EVERY != 0 {
            let name = if i % UPDATE_EVERY == 0 {
                format!("item {i} v2")
            } else {
                format!("item {i}")
            };
            rows.insert(i, (name, qty));
        }
    }
    if second {
        for i in ROWS + 1..=ROWS + ADDED {
            rows.insert(i, (format!("new {i}"), 1));
        }
    }
    rows
}

fn csv(rows: &BTreeMap<usize, (String, i64)>) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * 28);
    out.push_str("SKU,NAME,QTY\n");
    for (i, (name, qty)) in rows {
        out.push_str(&format!("{},{name},{qty}\n", sku(*i)));
    }
    out.into_bytes()
}

/// A running `legacy-bridge serve`; SIGKILLed and reaped when dropped.
struct Bridge(Child);

impl Bridge {
    fn kill_9(mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }

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
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One bridge installation: config, export folder, state store, log.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    log: File,
    log_path: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, _) = write_config(dir.path(), SOURCE, ADAPTER, Auth::Off);
        let log_path = dir.path().join("bridge.log");
        let log = File::create(&log_path).expect("log");
        Site {
            dir,
            config,
            log,
            log_path,
        }
    }

    fn drop_export(&self, name: &str, bytes: &[u8]) {
        write_atomically(&self.dir.path().join("exports"), name, bytes);
    }

    fn spawn(&self) -> Bridge {
        let child = Command::new(env!("CARGO_BIN_EXE_legacy-bridge"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", "127.0.0.1:0", "--startup-wait", "30"])
            .env("RUST_LOG", "warn,legacy_bridge=info")
            .stdin(Stdio::null())
            .stdout(self.log.try_clone().expect("log"))
            .stderr(self.log.try_clone().expect("log"))
            .spawn()
            .expect("start legacy-bridge");
        Bridge(child)
    }

    fn store(&self) -> Option<SqliteStore> {
        SqliteStore::open_read_only(&self.dir.path().join("state/lb.db")).ok()
    }

    async fn last_seq(&self) -> u64 {
        match self.store() {
            Some(store) => store.last_seq().await.unwrap_or(0),
            None => 0,
        }
    }

    /// The file the checkpoint says is applied, once nothing is being applied.
    async fn applied(&self) -> Option<String> {
        let cp = self.store()?.checkpoint("items").await.ok()??;
        let export = &cp["export"];
        if export["applying_sha256"].is_string() {
            return None;
        }
        export["applied_file"].as_str().map(str::to_owned)
    }

    async fn events(&self) -> Vec<StoredEvent> {
        read_all(&self.store().expect("state store readable")).await
    }

    /// Runs the bridge until `file` is applied, then kills it.
    async fn run_until_applied(&self, file: &str, started: Instant) {
        let mut child = self.spawn();
        while self.applied().await.as_deref() != Some(file) {
            child.assert_alive(&self.log_path);
            assert!(
                started.elapsed() < BUDGET,
                "{file} not applied within {BUDGET:?}:\n{}",
                tail(&self.log_path)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill_9();
    }
}

/// Kills the bridge `KILLS_PER_FILE` times while `file` is applied: first at a random
/// moment soon after start (before or while staging), then each time once the outbox has
/// grown to a random point short of the `events` the apply emits after `base`. Returns
/// what each kill hit.
async fn kill_while_applying(
    site: &Site,
    file: &str,
    base: u64,
    events: u64,
    rng: &mut StdRng,
    started: Instant,
) -> Vec<String> {
    let mut hits = Vec::new();
    for kill in 0..KILLS_PER_FILE {
        let from = site.last_seq().await;
        let mut child = site.spawn();
        // The first kill comes early (start-up, listing, staging), the others once the
        // outbox has grown.
        let at_seq = kill > 0;
        let left = (base + events).saturating_sub(from).max(2);
        let target = from + rng.random_range(1..left);
        let delay = Duration::from_millis(rng.random_range(100..1000));
        let spawned = Instant::now();
        loop {
            child.assert_alive(&site.log_path);
            let seq = site.last_seq().await;
            if site.applied().await.as_deref() == Some(file) {
                hits.push(format!("too late (applied, seq {seq})"));
                break;
            }
            if (at_seq && seq >= target) || (!at_seq && spawned.elapsed() >= delay) {
                hits.push(format!("seq {seq}"));
                break;
            }
            assert!(
                started.elapsed() < BUDGET,
                "no progress on {file} within {BUDGET:?} (seq {seq}):\n{}",
                tail(&site.log_path)
            );
            // A fixed poll: random draws per kill stay the same whatever the timing.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill_9();
    }
    hits
}

/// Replays the outbox key by key, checking every event against the state before it and
/// that repeated ids are the same change; returns key -> record (`None` once deleted).
fn replay(events: &[StoredEvent]) -> Result<HashMap<String, Option<Json>>, String> {
    let mut state: HashMap<String, Option<Json>> = HashMap::new();
    let mut by_id: HashMap<&str, &StoredEvent> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let ev = &e.event;
        if e.seq != i as u64 + 1 {
            return Err(format!("sequence gap: position {i} holds seq {}", e.seq));
        }
        if let Some(first) = by_id.get(ev.id.as_str()) {
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
        let current = state.get(&ev.subject).cloned().flatten();
        let op = ev.data["op"].as_str().unwrap_or_default();
        let ok = match op {
            // A snapshot is the record as it is, whatever came before (the count per key
            // below tells a repeated one).
            "snapshot" => true,
            "created" => current.is_none(),
            "updated" | "deleted" => current.as_ref() == Some(&ev.data["before"]),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "seq {} ({} {}): does not follow the replayed state {current:?}",
                e.seq, ev.event_type, ev.subject
            ));
        }
        state.insert(
            ev.subject.clone(),
            (op != "deleted").then(|| ev.data["after"].clone()),
        );
    }
    Ok(state)
}

/// Events per key (subject).
fn per_key(events: &[StoredEvent]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for e in events {
        *out.entry(e.event.subject.clone()).or_default() += 1;
    }
    out
}

/// The scenario: export 1 applied, then export 2, by a bridge killed while it applies
/// export 1 when `kill_initial`, and while it applies export 2, compared with a clean run.
async fn kill_9_while_applying(kill_initial: bool) {
    let started = Instant::now();
    let seed = std::env::var("LB_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_105_u64);
    eprintln!("files kill -9 test: seed {seed} (LB_KILL9_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let first = export_rows(false);
    let second = export_rows(true);
    let (first_csv, second_csv) = (csv(&first), csv(&second));
    let changes = (1..=ROWS)
        .filter(|i| i % DELETE_EVERY == 0 || i % UPDATE_EVERY == 0)
        .count()
        + ADDED;

    // GIVEN a clean run: both exports applied one after the other, undisturbed (alongside
    // the run under test, to keep the test short)
    let clean = {
        let (first_csv, second_csv) = (first_csv.clone(), second_csv.clone());
        tokio::spawn(async move {
            let clean = Site::new();
            clean.drop_export("ITEMS_001.csv", &first_csv);
            clean.run_until_applied("ITEMS_001.csv", started).await;
            clean.drop_export("ITEMS_002.csv", &second_csv);
            clean.run_until_applied("ITEMS_002.csv", started).await;
            let events = clean.events().await;
            (events, started.elapsed())
        })
    };

    // WHEN the same exports are applied by a bridge killed with SIGKILL while it applies
    // each of them, and restarted
    let site = Site::new();
    site.drop_export("ITEMS_001.csv", &first_csv);
    let hits1 = if kill_initial {
        kill_while_applying(&site, "ITEMS_001.csv", 0, ROWS as u64, &mut rng, started).await
    } else {
        Vec::new()
    };
    site.run_until_applied("ITEMS_001.csv", started).await;
    let base = site.last_seq().await;
    site.drop_export("ITEMS_002.csv", &second_csv);
    let hits2 = kill_while_applying(
        &site,
        "ITEMS_002.csv",
        base,
        changes as u64,
        &mut rng,
        started,
    )
    .await;
    site.run_until_applied("ITEMS_002.csv", started).await;
    let (clean_events, clean_took) = clean.await.expect("clean run");
    assert_eq!(
        clean_events.len(),
        ROWS + changes,
        "clean run: one snapshot per record, then one event per change"
    );
    eprintln!(
        "files kill -9 test: kills during export 1 at {hits1:?}, during export 2 (from seq \
         {base}) at {hits2:?}; the clean run took {clean_took:?}"
    );

    // THEN the outbox is gap-free and, replayed key by key, is exactly the second export
    let events = site.events().await;
    let state = replay(&events).unwrap_or_else(|why| {
        panic!(
            "seed {seed}: {why}\noutbox tail:\n{}",
            show(&events[events.len().saturating_sub(20)..])
        )
    });
    let live: HashMap<&String, &Json> = state
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
    assert_eq!(
        live.len(),
        second.len(),
        "seed {seed}: live keys after replay"
    );
    for (i, (name, qty)) in &second {
        let key = sku(*i);
        let want = json!({"sku": key, "name": name, "qty": qty});
        assert_eq!(live.get(&key).copied(), Some(&want), "seed {seed}: {key}");
    }

    // AND every key has exactly the events of the clean run: nothing lost, nothing repeated
    let (got, want) = (per_key(&events), per_key(&clean_events));
    let mut wrong: Vec<(&String, usize, usize)> = want
        .iter()
        .map(|(k, n)| (k, got.get(k).copied().unwrap_or(0), *n))
        .filter(|(_, g, w)| g != w)
        .collect();
    wrong.sort();
    assert!(
        wrong.is_empty() && got.len() == want.len(),
        "seed {seed}: {} keys have another number of events than in a clean run (key, got, \
         clean), e.g. {:?}; {} events in all, clean run {}",
        wrong.len(),
        &wrong[..wrong.len().min(5)],
        events.len(),
        clean_events.len()
    );
    let ids = |events: &[StoredEvent]| -> Vec<String> {
        let mut ids: Vec<String> = events.iter().map(|e| e.event.id.clone()).collect();
        ids.sort();
        ids
    };
    assert!(
        ids(&events) == ids(&clean_events),
        "seed {seed}: the event ids differ from the clean run's"
    );
    eprintln!(
        "files kill -9 test: {} events, {:?}",
        events.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_applying_the_initial_and_a_diff_export_loses_and_duplicates_nothing() {
    kill_9_while_applying(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_applying_a_diff_export_loses_and_duplicates_nothing() {
    kill_9_while_applying(false).await;
}
