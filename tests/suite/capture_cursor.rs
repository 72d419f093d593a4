//! The cursor strategy's two promises about timestamps: a group of equal cursor values cut by a
//! page end, a poll boundary or a restart is read again whole, without duplicates; and a row
//! committed late with an older timestamp (a long transaction) is caught by the lookback.

use std::collections::HashMap;

use chrono::Duration;
use serde_json::json;

use super::capture_harness::{
    ENGINES, Rig, StagedSource, assert_gap_free, berlin, berlin_now, connect, dec, has, instant,
    inventory, sql, the,
};
use super::engines::TestDb;

/// Seven rows per page, and no lookback: only the inclusive `>=` on the checkpoint can bring
/// back the rest of a group of equal timestamps.
const EQUAL_STAMPS: &str = r#"
strategy = "cursor"
cursor_column = "LAST_UPD"
interval_ms = 100
settle_ms = 200
lookback_ms = 0
batch_size = 7
initial = "none"
"#;

fn rows(items: std::ops::RangeInclusive<i64>) -> Vec<(String, String, i64)> {
    items
        .map(|n| (format!("B{n:04}"), "S01".to_owned(), n))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_timestamps_across_pages_polls_and_a_restart_are_each_emitted_once() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let mut rig = Rig::start(&db, &inventory(EQUAL_STAMPS)).await;
        rig.wait_running("inventory").await;
        // One LAST_UPD for all 57 rows: the next whole second, so it lies after the position
        // the cursor started from (capture start minus the settle delay).
        let t = berlin_now() + Duration::seconds(1);
        let count = |n: usize| move |e: &[_]| e.len() >= n;

        // GIVEN 20 rows stamped T, read in pages of 7 (the group is cut by page ends)
        db.exec(&sql::stock_insert_many(&rows(1..=20), t));
        rig.wait_for("the first 20 rows", count(20)).await;
        let checkpoint = rig.status("inventory").checkpoint.expect("checkpoint");
        assert_eq!(
            checkpoint["cursor"],
            json!(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
            "{engine:?}: the cursor stands on T"
        );

        // WHEN 17 more rows stamped T commit after the cursor reached T (a poll boundary)
        db.exec(&sql::stock_insert_many(&rows(21..=37), t));
        rig.wait_for("rows 21..=37", count(37)).await;

        // AND capture is stopped, 20 more rows stamped T are written, and it starts again on
        // the same state store (a restart with the cursor standing on T)
        rig.stop().await;
        db.exec(&sql::stock_insert_many(&rows(38..=57), t));
        rig.start_capture().await;
        rig.wait_for("rows 38..=57 after the restart", count(57))
            .await;

        // THEN every row is emitted exactly once, as a creation, even after more cycles have
        // re-read the whole group
        rig.wait_cycles("inventory", 4).await;
        let events = rig.events().await;
        let mut per_subject: HashMap<&str, usize> = HashMap::new();
        for e in &events {
            assert_eq!(e.event.event_type, "inventory.created", "{engine:?}");
            *per_subject.entry(e.event.subject.as_str()).or_default() += 1;
        }
        for n in 1..=57 {
            let subject = format!("B{n:04}/S01");
            assert_eq!(
                per_subject.get(subject.as_str()).copied(),
                Some(1),
                "{engine:?}: {subject} emitted {:?} times",
                per_subject.get(subject.as_str())
            );
        }
        assert_eq!(events.len(), 57, "{engine:?}");
        assert_gap_free(&rig.label, &events);
    }
}

const LATE_COMMITS: &str = r#"
strategy = "cursor"
cursor_column = "LAST_UPD"
interval_ms = 100
settle_ms = 200
lookback_ms = 60000
initial = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transaction_committing_an_older_timestamp_is_captured() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let rig = Rig::start(&db, &inventory(LATE_COMMITS)).await;
        rig.wait_running("inventory").await;

        // GIVEN two rows stamped T1, captured: the cursor stands on T1
        let t1 = berlin_now();
        db.exec(&sql::stock_insert("A1001", "S20", 1, t1));
        db.exec(&sql::stock_insert("A1001", "S21", 1, t1));
        rig.wait_for("the rows at T1", |e| {
            has(e, "inventory.created", "A1001/S20") && has(e, "inventory.created", "A1001/S21")
        })
        .await;

        // WHEN a transaction on another connection inserts a row and updates a captured one,
        // both stamped 5 s before T1 (inside the lookback), and stays open while capture runs.
        // (On SQLite this writer holds the database's write lock; capture only reads, and
        // readers proceed beside an uncommitted writer, so the scenario is the same.)
        let early = t1 - Duration::seconds(5);
        let long = connect(&db.connection_string);
        long.set_autocommit(false).expect("begin");
        long.execute(&sql::stock_insert("A1001", "S22", 2, early), (), None)
            .expect("insert in the long transaction");
        long.execute(&sql::stock_update("A1001", "S21", 2, early), (), None)
            .expect("update in the long transaction");
        rig.wait_cycles("inventory", 3).await;
        let events = rig.events().await;
        assert_eq!(
            events.len(),
            2,
            "{engine:?}: uncommitted rows are invisible"
        );

        // AND then commits
        long.commit().expect("commit");
        drop(long);

        // THEN both changes are captured, once, with the older timestamp
        let events = rig
            .wait_for("the late commit", |e| {
                has(e, "inventory.created", "A1001/S22") && has(e, "inventory.updated", "A1001/S21")
            })
            .await;
        let created = the(&events, "inventory.created", "A1001/S22");
        assert_eq!(
            instant(&created.event.data["after"]["updated_at"]),
            berlin(early)
        );
        let updated = the(&events, "inventory.updated", "A1001/S21");
        let data = &updated.event.data;
        assert_eq!(dec(&data["before"]["on_hand"]), 1.into());
        assert_eq!(dec(&data["after"]["on_hand"]), 2.into());
        assert_eq!(instant(&data["after"]["updated_at"]), berlin(early));
        rig.wait_cycles("inventory", 3).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 4, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("RFC 3339")
}

fn local(text: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("naive time")
}

/// The checkpoint of a naive-timestamp cursor is a local wall-clock value. When the zone falls
/// back (Europe/Berlin, last Sunday of October: 03:00 CEST -> 02:00 CET), local time repeats
/// an hour: rows the till stamps 02:00..02:59 during the second pass lie up to an hour *below*
/// a checkpoint reached in the first pass. The window must follow the upper bound down (see
/// `src/capture/cursor.rs`), or those rows are only found by reconciliation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stamped_in_the_repeated_hour_after_a_dst_fall_back_are_captured() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        // GIVEN capture on a database whose clock reads 02:40 CEST on the night clocks go back
        let mut rig = Rig::build(engine, &db.connection_string, "", &inventory(LATE_COMMITS)).await;
        let clock = StagedSource::new(rig.source());
        clock.set_clock(utc("2026-10-25T00:40:00Z"));
        rig.start_capture_on(clock.clone()).await;
        rig.wait_running("inventory").await;

        // AND a row the till booked at 02:45 CEST (00:45 UTC), captured
        clock.set_clock(utc("2026-10-25T00:45:05Z"));
        db.exec(&sql::stock_insert(
            "A1001",
            "S30",
            1,
            local("2026-10-25 02:45:00"),
        ));
        rig.wait_for("the row booked before the switch", |e| {
            has(e, "inventory.created", "A1001/S30")
        })
        .await;

        // WHEN clocks have gone back (03:00 CEST -> 02:00 CET) and the till books a row at
        // 02:20 CET (01:20 UTC), 35 minutes after the first one
        clock.set_clock(utc("2026-10-25T01:20:05Z"));
        db.exec(&sql::stock_insert(
            "A1001",
            "S31",
            1,
            local("2026-10-25 02:20:00"),
        ));

        // THEN it is captured (the wait is short: the fake clock stands still, and a cycle
        // every 100 ms sees the row at once if it sees it at all)
        rig.wait_for_within(
            "the row booked in the repeated hour",
            std::time::Duration::from_secs(10),
            |e| has(e, "inventory.created", "A1001/S31"),
        )
        .await;

        // AND after the repeated hour, capture goes on
        clock.set_clock(utc("2026-10-25T02:10:05Z"));
        db.exec(&sql::stock_insert(
            "A1001",
            "S32",
            1,
            local("2026-10-25 03:10:00"),
        ));
        let events = rig
            .wait_for("the row booked after the repeated hour", |e| {
                has(e, "inventory.created", "A1001/S32")
            })
            .await;
        assert_eq!(events.len(), 3, "{engine:?}: {events:#?}");
    }
}
