//! `initial = "none"` against a write that races its silent baseline pass. The pass reads the
//! row after the write, so when the strategy's change signal for it arrives (a cursor value, a
//! change-log row; change tracking is in `mssql_change_tracking`) the row hashes as the
//! baseline does; it is still emitted, once. A signal from before the pass, and a write after
//! it that changes nothing, emit nothing.
//!
//! The race is staged: capture's first scan is held just before it reads (after the initial
//! load took its start position) while the test writes.

use super::capture_harness::{
    ENGINES, Rig, StagedSource, berlin_now, dec, has, inventory, show, sql, the,
};
use super::engines::TestDb;

/// A timestamp cursor whose start lies two seconds below the database clock, so a write the
/// test stamps to the second right after it is inside the window whatever the rounding.
const CURSOR: &str = r#"
strategy = "cursor"
cursor_column = "LAST_UPD"
interval_ms = 100
settle_ms = 2000
initial = "none"
"#;

/// Starts capture on `rig` and makes `write` while the silent baseline pass is held before it
/// reads.
async fn start_racing(rig: &mut Rig, write: impl FnOnce()) {
    let staged = StagedSource::new(rig.source());
    let mut pause = staged.pause_first_scan();
    rig.start_capture_on(staged).await;
    pause.reached().await;
    write();
    pause.resume();
    rig.wait_running("inventory").await;
}

/// Waits for the one event the race owes: an update whose `before` is the row itself (the
/// baseline held it already), of origin `capture`.
async fn wait_raced(rig: &Rig) {
    let events = rig
        .wait_for("the racing write", |e| {
            has(e, "inventory.updated", "A1001/S01")
        })
        .await;
    let raced = the(&events, "inventory.updated", "A1001/S01");
    let data = &raced.event.data;
    let label = &rig.label;
    assert_eq!(data["origin"], "capture", "{label}");
    assert_eq!(dec(&data["after"]["on_hand"]), 77.into(), "{label}");
    assert_eq!(
        data["before"], data["after"],
        "{label}: the baseline read the write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_emits_the_write_its_silent_baseline_read() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        // GIVEN a row the till changed half a minute before capture first starts (inside the
        // cursor's lookback, so the first cycles read it again)
        let earlier = berlin_now() - chrono::Duration::seconds(30);
        db.exec(&sql::stock_update("A1002", "S02", 11, earlier));
        let mut rig = Rig::build(engine, &db.connection_string, "", &inventory(CURSOR)).await;

        // WHEN the till writes after the cursor's start is taken, before the baseline reads
        start_racing(&mut rig, || {
            db.exec(&sql::stock_update("A1001", "S01", 77, berlin_now()));
        })
        .await;

        // THEN that write is emitted, once, and the earlier change is not
        wait_raced(&rig).await;
        rig.wait_cycles("inventory", 3).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 1, "{engine:?}: {}", show(&events));

        // AND a later change is an ordinary update from the raced state
        db.exec(&sql::stock_update("A1001", "S01", 78, berlin_now()));
        let events = rig.wait_for("the next change", |e| e.len() == 2).await;
        let next = &events[1];
        assert_eq!(dec(&next.event.data["before"]["on_hand"]), 77.into());
        assert_eq!(dec(&next.event.data["after"]["on_hand"]), 78.into());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_log_emits_the_write_its_silent_baseline_read() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        // GIVEN the change-log triggers, and a change they logged before capture first starts
        let mut rig = Rig::build_logged_inventory(&db).await;
        db.exec(&sql::stock_update("A1002", "S02", 11, berlin_now()));

        // WHEN the till writes after the log's position is taken, before the baseline reads
        start_racing(&mut rig, || {
            db.exec(&sql::stock_update("A1001", "S01", 77, berlin_now()));
        })
        .await;

        // THEN that write is emitted, once, and the earlier change is not
        wait_raced(&rig).await;

        // AND a write after the baseline that changes nothing (logged by the triggers) emits
        // nothing either
        db.exec("UPDATE STOCK_LEVEL SET QTY_ON_HAND = QTY_ON_HAND WHERE ITEM_CODE = 'A1003     '");
        super::capture_harness::wait_log_pruned(&db).await;
        rig.wait_cycles("inventory", 3).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 1, "{engine:?}: {}", show(&events));
    }
}
