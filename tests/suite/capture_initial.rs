//! The first run of a captured resource: `initial = "snapshot"` emits every existing row once
//! as a `snapshot` event; `initial = "none"` emits nothing but records a silent baseline, so a
//! later change is an `updated` event with its `before` image, never a `created` one.

use std::collections::HashSet;

use serde_json::json;

use super::capture_harness::{
    ENGINES, Rig, assert_gap_free, berlin_now, dec, has, inventory, of, prices, sql, the,
};
use super::engines::TestDb;

fn adapter(initial: &str) -> String {
    let inventory = inventory(&format!(
        "strategy = \"cursor\"\ncursor_column = \"LAST_UPD\"\ninterval_ms = 100\n\
         settle_ms = 200\ninitial = \"{initial}\"\nbatch_size = 50"
    ));
    let prices = prices(&format!(
        "strategy = \"snapshot-diff\"\ninterval_ms = 100\ninitial = \"{initial}\"\nbatch_size = 50"
    ));
    format!("{inventory}{prices}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_snapshot_emits_every_existing_row_once() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let stock = db.scalar("SELECT COUNT(*) FROM STOCK_LEVEL") as usize;
        let price_rows = db.scalar("SELECT COUNT(*) FROM PRICE_LIST_ITEM") as usize;
        assert!(
            stock > 50 && price_rows > 50,
            "the seed spans several batches"
        );

        // GIVEN the seeded tables, WHEN capture runs for the first time with a snapshot load
        let rig = Rig::start(&db, &adapter("snapshot")).await;
        rig.wait_running("inventory").await;
        rig.wait_running("prices").await;
        rig.wait_cycles("inventory", 3).await;
        rig.wait_cycles("prices", 3).await;

        // THEN each row is one `snapshot` event of origin `initial`, and nothing else
        let events = rig.events().await;
        for (resource, rows) in [("inventory", stock), ("prices", price_rows)] {
            let mine = of(&events, resource);
            let subjects: HashSet<&str> = mine.iter().map(|e| e.event.subject.as_str()).collect();
            assert_eq!(mine.len(), rows, "{engine:?}: {resource}");
            assert_eq!(subjects.len(), rows, "{engine:?}: {resource}: one per row");
            for e in mine {
                let data = &e.event.data;
                assert_eq!(e.event.event_type, format!("{resource}.snapshot"));
                assert_eq!(data["op"], "snapshot");
                assert_eq!(data["origin"], "initial");
                assert_eq!(data["before"], json!(null));
                assert!(data["after"].is_object(), "{data}");
                assert_eq!(data["changed"], json!([]));
            }
        }
        assert_eq!(events.len(), stock + price_rows, "{engine:?}");
        let first = the(&events, "inventory.snapshot", "A1001/S01");
        assert_eq!(dec(&first.event.data["after"]["on_hand"]), 51.into());
        assert_eq!(
            the(&events, "prices.snapshot", "A1001/RETAIL").event.data["after"]["amount"],
            "12.99"
        );
        assert_gap_free(&rig.label, &events);

        // AND a change after the load is an ordinary update against the snapshot
        db.exec(&sql::stock_update("A1001", "S01", 52, berlin_now()));
        let events = rig
            .wait_for("the update", |e| has(e, "inventory.updated", "A1001/S01"))
            .await;
        let updated = the(&events, "inventory.updated", "A1001/S01");
        assert_eq!(updated.event.data["origin"], "capture");
        assert_eq!(dec(&updated.event.data["before"]["on_hand"]), 51.into());
        assert_eq!(events.len(), stock + price_rows + 1, "{engine:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_none_is_silent_but_later_changes_carry_their_before_image() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        // GIVEN capture starting with `initial = "none"` on the seeded tables
        let rig = Rig::start(&db, &adapter("none")).await;
        rig.wait_running("inventory").await;
        rig.wait_running("prices").await;
        rig.wait_cycles("inventory", 3).await;
        rig.wait_cycles("prices", 3).await;
        assert!(
            rig.events().await.is_empty(),
            "{engine:?}: nothing at first"
        );

        // WHEN seeded rows change
        db.exec(&sql::stock_update("A1001", "S01", 52, berlin_now()));
        db.exec(&sql::price_update("RETAIL", "A1001", "13.49"));
        let events = rig
            .wait_for("both updates", |e| {
                has(e, "inventory.updated", "A1001/S01") && has(e, "prices.updated", "A1001/RETAIL")
            })
            .await;

        // THEN they are updates (not creations) with the rows' earlier state as `before`
        let stock = the(&events, "inventory.updated", "A1001/S01");
        assert_eq!(stock.event.data["op"], "updated");
        assert_eq!(dec(&stock.event.data["before"]["on_hand"]), 51.into());
        assert_eq!(dec(&stock.event.data["after"]["on_hand"]), 52.into());
        let price = the(&events, "prices.updated", "A1001/RETAIL");
        assert_eq!(price.event.data["before"]["amount"], "12.99");
        assert_eq!(price.event.data["after"]["amount"], "13.49");
        rig.wait_cycles("inventory", 3).await;
        rig.wait_cycles("prices", 3).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 2, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}
