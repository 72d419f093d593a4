//! Schema drift pauses a resource loudly instead of emitting wrong data: a dropped mapped
//! column pauses it with a reason naming the column, nothing is emitted while paused, and
//! capture resumes by itself, losing nothing, once the column is back.

use std::time::Duration;

use legacy_bridge::capture::CaptureState;

use super::capture_harness::{
    ENGINES, INVENTORY_CURSOR, Rig, assert_gap_free, berlin_now, dec, has, inventory, sql, the,
};
use super::engines::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_column_pauses_capture_until_it_is_back() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let rig = Rig::start(&db, &inventory(INVENTORY_CURSOR)).await;
        rig.wait_running("inventory").await;
        db.exec(&sql::stock_update("A1001", "S01", 52, berlin_now()));
        rig.wait_for("a change before the drift", |e| {
            has(e, "inventory.updated", "A1001/S01")
        })
        .await;

        // WHEN a mapped column is dropped from the legacy table
        db.exec("ALTER TABLE STOCK_LEVEL DROP COLUMN QTY_RESERVED");

        // THEN the resource pauses, saying which column and field
        let status = rig
            .wait_status("inventory", "paused", |s| s.state == CaptureState::Paused)
            .await;
        let reason = status.paused_reason.expect("a paused resource says why");
        assert!(
            reason.to_ascii_uppercase().contains("QTY_RESERVED") && reason.contains("reserved"),
            "{engine:?}: {reason}"
        );

        // AND rows changing while it is paused are not emitted (from rows missing a column)
        db.exec(&sql::stock_update("A1002", "S01", 77, berlin_now()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let status = rig.status("inventory");
        assert_eq!(
            status.state,
            CaptureState::Paused,
            "{engine:?}: {status:#?}"
        );
        assert_eq!(
            rig.events().await.len(),
            1,
            "{engine:?}: nothing after the drop"
        );

        // WHEN the column comes back with its type
        db.exec("ALTER TABLE STOCK_LEVEL ADD COLUMN QTY_RESERVED DECIMAL(12,3) NOT NULL DEFAULT 0");

        // THEN capture resumes without a restart, and the change made during the pause and a
        // later one are captured
        rig.wait_status("inventory", "running again", |s| {
            s.state == CaptureState::Running && s.paused_reason.is_none()
        })
        .await;
        db.exec(&sql::stock_update("A1003", "S01", 88, berlin_now()));
        let events = rig
            .wait_for("the changes after the pause", |e| {
                has(e, "inventory.updated", "A1002/S01") && has(e, "inventory.updated", "A1003/S01")
            })
            .await;
        let during = the(&events, "inventory.updated", "A1002/S01");
        assert_eq!(dec(&during.event.data["after"]["on_hand"]), 77.into());
        assert_eq!(dec(&during.event.data["after"]["reserved"]), 0.into());
        assert_eq!(events.len(), 3, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}
