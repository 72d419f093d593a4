//! The PostgreSQL replica end to end: a seeded mix of inserts, updates and deletes on the
//! legacy STOCK_LEVEL (SQLite, change-log capture with its initial snapshot) must leave the
//! replica's `inventory` table equal to the legacy table row for row, compared through the
//! mapped values (`/v1/inventory` from the bridge against the replica's columns, decimals and
//! timestamps normalised). A `rewind` to 0 replays everything: it must never set a row back,
//! which is checked mid-replay, while a replica row the test holds locked keeps the replay
//! from finishing.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use tokio_postgres::{Client, NoTls};

use super::capture_harness::eventually_within;
use super::delivery_harness::{
    DeliveryRig, PATIENCE, Till, caught_up, inventory_changelog, retry, seed,
};
use super::engines::{Engine, TestDb};

/// The replica's schema.
const SCHEMA: &str = "replica";

/// A mapped inventory row: (sku, location) -> (on_hand, reserved, updated_at).
type Rows = BTreeMap<(String, String), (Decimal, Decimal, DateTime<Utc>)>;

/// A fresh PostgreSQL database for the replica (dropped with the value) and its URL, or
/// `None` when PostgreSQL is not available and not required.
fn replica_database() -> Option<(TestDb, String)> {
    let Ok(url) = std::env::var("LB_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("LB_REQUIRE_ENGINES").is_err(),
            "LB_TEST_POSTGRES_URL is not set but LB_REQUIRE_ENGINES is: scripts/test must \
             start PostgreSQL"
        );
        eprintln!("skipping: LB_TEST_POSTGRES_URL not set (run scripts/test)");
        return None;
    };
    // A throw-away database (the demo schema in `public` does not matter to the replica).
    let db = TestDb::create(Engine::Postgres)?;
    let name = db
        .connection_string
        .split(';')
        .find_map(|kv| kv.strip_prefix("Database="))
        .expect("Database= in the connection string")
        .to_owned();
    let base = url.rsplit_once('/').expect("url with a database").0;
    Some((db, format!("{base}/{name}")))
}

async fn pg(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the replica database: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text)
        .unwrap_or_else(|e| panic!("decimal {text}: {e}"))
        .normalize()
}

/// The legacy table as the bridge serves it.
async fn legacy_rows(rig: &DeliveryRig) -> Rows {
    rig.records("inventory")
        .await
        .iter()
        .map(|r| {
            let text = |f: &str| {
                r[f].as_str()
                    .unwrap_or_else(|| panic!("{f} as string: {r}"))
                    .to_owned()
            };
            let at = DateTime::parse_from_rfc3339(&text("updated_at"))
                .unwrap_or_else(|e| panic!("updated_at: {e}: {r}"))
                .with_timezone(&Utc);
            (
                (text("sku"), text("location")),
                (decimal(&text("on_hand")), decimal(&text("reserved")), at),
            )
        })
        .collect()
}

/// The replica table, and per row the seq and event id that wrote it.
async fn replica_rows(client: &Client) -> (Rows, HashMap<(String, String), (i64, String)>) {
    let rows = client
        .query(
            &format!(
                "SELECT sku, location, on_hand::text, reserved::text, updated_at, _lb_seq, \
                 _lb_event_id FROM \"{SCHEMA}\".\"inventory\""
            ),
            &[],
        )
        .await
        .expect("read the replica");
    let mut values = Rows::new();
    let mut written = HashMap::new();
    for row in rows {
        let key: (String, String) = (row.get(0), row.get(1));
        let on_hand: String = row.get(2);
        let reserved: String = row.get(3);
        values.insert(
            key.clone(),
            (decimal(&on_hand), decimal(&reserved), row.get(4)),
        );
        written.insert(key, (row.get(5), row.get(6)));
    }
    (values, written)
}

/// Differences between two row sets, for failure messages (empty when equal).
fn diff(expected: &Rows, got: &Rows) -> Vec<String> {
    let mut out = Vec::new();
    for (key, row) in expected {
        match got.get(key) {
            Some(other) if other == row => {}
            Some(other) => out.push(format!("{key:?}: legacy {row:?}, replica {other:?}")),
            None => out.push(format!("{key:?}: legacy {row:?}, missing in the replica")),
        }
    }
    for key in got.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!(
            "{key:?}: deleted in legacy, in the replica {:?}",
            got[key]
        ));
    }
    out
}

/// Whether some session of the replica database waits for a lock.
async fn someone_waits_for_a_lock(client: &Client) -> bool {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    row.get::<_, i64>(0) > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_equals_legacy_after_random_changes_and_a_full_replay() {
    let Some((_replica_db, url)) = replica_database() else {
        return;
    };
    // GIVEN a replica subscription with small batches (a replay is many transactions)
    let legacy = TestDb::create(Engine::Sqlite).expect("SQLite always runs");
    let subscription = format!(
        "\n[subscriptions.replica]\nbatch_size = 10\n{}\n\
         sink = {{ kind = \"postgres\", url = \"{url}\", schema = \"{SCHEMA}\", \
         timeout_ms = 60000 }}\n",
        retry(&["200ms"; 20])
    );
    let rig = DeliveryRig::start(legacy, &inventory_changelog("snapshot"), &subscription).await;
    let client = pg(&url).await;

    // WHEN the till makes a seeded mix of inserts, updates and deletes
    let seed = seed("LB_DELIVERY_SEED", "replica");
    let writes = {
        let conn = rig.db.connection_string.clone();
        tokio::task::spawn_blocking(move || {
            let mut till = Till::new(&conn, seed, 15);
            for i in 0..300 {
                till.step();
                if i % 10 == 9 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
            till.writes()
        })
        .await
        .expect("till")
    };
    rig.wait_captured("inventory").await;
    rig.wait_caught_up("replica").await;

    // THEN the replica equals the legacy table, each row written by its record's last event
    let outbox = rig.outbox().await;
    let expected = legacy_rows(&rig).await;
    let check_written = |written: &HashMap<(String, String), (i64, String)>| {
        let mut last: HashMap<String, (u64, &str)> = HashMap::new();
        for e in &outbox {
            last.insert(e.event.subject.clone(), (e.seq, e.event.id.as_str()));
        }
        for ((sku, location), (seq, id)) in written {
            let (want_seq, want_id) = last[&format!("{sku}/{location}")];
            assert_eq!(
                (*seq as u64, id.as_str()),
                (want_seq, want_id),
                "{sku}/{location} written by another event than its last"
            );
        }
    };
    let (got, written) = replica_rows(&client).await;
    let differences = diff(&expected, &got);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    check_written(&written);
    let deletes = outbox
        .iter()
        .filter(|e| e.event.data["op"] == "deleted")
        .count();
    assert!(deletes > 0, "the till deleted nothing");

    // WHEN a live row whose first event comes late in the outbox is locked in the replica,
    // and an operator rewinds the subscription to 0
    let mut first_seq: HashMap<&str, u64> = HashMap::new();
    for e in &outbox {
        first_seq.entry(e.event.subject.as_str()).or_insert(e.seq);
    }
    let ((sku, location), _) = expected
        .iter()
        .max_by_key(|((sku, location), _)| first_seq[format!("{sku}/{location}").as_str()])
        .expect("live rows");
    let mut locker = pg(&url).await;
    let lock = locker.transaction().await.expect("begin");
    lock.query(
        &format!(
            "SELECT 1 FROM \"{SCHEMA}\".\"inventory\" WHERE sku = $1 AND location = $2 FOR UPDATE"
        ),
        &[sku, location],
    )
    .await
    .expect("lock a replica row");
    let done = rig
        .act(
            "/admin/subscriptions/replica/rewind",
            Some(&json!({"seq": 0}).to_string()),
        )
        .await;
    assert_eq!(done["action"], "rewind", "{done:#}");

    // THEN mid-replay (blocked on that row) the replica still equals the legacy table:
    // replayed older events never set a row back nor bring a deleted one back
    eventually_within("the replay to reach the locked row", PATIENCE, || async {
        if someone_waits_for_a_lock(&client).await {
            Ok(())
        } else {
            Err("no session waits for a lock".into())
        }
    })
    .await;
    let status = rig.subscription("replica").await;
    assert!(
        status["cursor"].as_u64() < status["outbox_last_seq"].as_u64(),
        "not mid-replay: {status:#}"
    );
    let (got, _) = replica_rows(&client).await;
    let differences = diff(&expected, &got);
    assert!(
        differences.is_empty(),
        "mid-replay (cursor {}):\n{}",
        status["cursor"],
        differences.join("\n")
    );

    // AND once the row is released the replay completes, with the same result
    lock.rollback().await.expect("release the lock");
    let status = rig.wait_caught_up("replica").await;
    assert!(caught_up(&status));
    let (got, written) = replica_rows(&client).await;
    let differences = diff(&expected, &got);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
    check_written(&written);
    let audit = rig.audit().await;
    assert_eq!(audit[0]["action"], "rewind", "{audit:#?}");
    assert_eq!(audit[0]["actor"], "operator", "{audit:#?}");
    assert_eq!(audit[0]["detail"]["to"], 0, "{audit:#?}");
    assert_eq!(status["dead_letters"], 0, "{status:#}");
    eprintln!(
        "replica: {writes} writes, {} events ({deletes} deletes), {} live rows",
        outbox.len(),
        expected.len()
    );
}
