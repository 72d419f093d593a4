//! Each capture strategy, on each engine, turns legacy inserts, updates and deletes into
//! exactly one event each, with the right type, subject, op and before/after images, in
//! gap-free outbox order; re-reading unchanged rows emits nothing.

use legacy_bridge::model::StoredEvent;
use serde_json::json;

use super::capture_harness::{
    ENGINES, INVENTORY_CURSOR, Rig, assert_gap_free, berlin, berlin_now, changed, changelog_table,
    dec, has, instant, inventory, names, prices, products, sales, sql, the,
};
use super::engines::{Engine, TestDb};

/// Checks the envelope every event shares.
fn envelope(e: &StoredEvent, resource: &str, op: &str, origin: &str) {
    let ev = &e.event;
    assert_eq!(ev.event_type, format!("{resource}.{op}"));
    assert_eq!(ev.resource, resource);
    assert_eq!(ev.source, format!("/sources/pos/{resource}"));
    assert_eq!(ev.data["op"], op, "{}", ev.data);
    assert_eq!(ev.data["origin"], origin, "{}", ev.data);
    assert_eq!(ev.id.len(), 32, "id is 128 bits of hex: {}", ev.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_cursor_captures_inserts_and_updates_once() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let rig = Rig::start(&db, &inventory(INVENTORY_CURSOR)).await;
        rig.wait_running("inventory").await;

        // WHEN the till books a new stock row, then changes its quantity a second later
        let t1 = berlin_now();
        db.exec(&sql::stock_insert("A1001", "S09", 5, t1));
        let events = rig
            .wait_for("the insert", |e| has(e, "inventory.created", "A1001/S09"))
            .await;
        let created = the(&events, "inventory.created", "A1001/S09");
        envelope(created, "inventory", "created", "capture");
        let data = &created.event.data;
        assert_eq!(data["key"], json!({"sku": "A1001", "location": "S09"}));
        assert_eq!(data["before"], json!(null));
        assert_eq!(data["after"]["sku"], "A1001");
        assert_eq!(data["after"]["location"], "S09");
        assert_eq!(dec(&data["after"]["on_hand"]), 5.into());
        assert_eq!(instant(&data["after"]["updated_at"]), berlin(t1));
        assert_eq!(
            changed(created),
            names(&["location", "on_hand", "reserved", "sku", "updated_at"])
        );
        assert_eq!(data["position"]["strategy"], "cursor");
        assert!(
            data["position"]["column"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case("LAST_UPD")),
            "{data}"
        );
        assert_eq!(
            created.event.time,
            berlin(t1),
            "time is when the till booked it"
        );

        let t2 = t1 + chrono::Duration::seconds(1);
        db.exec(&sql::stock_update("A1001", "S09", 7, t2));
        let events = rig
            .wait_for("the update", |e| has(e, "inventory.updated", "A1001/S09"))
            .await;

        // THEN the update carries both images and names exactly what changed
        let updated = the(&events, "inventory.updated", "A1001/S09");
        envelope(updated, "inventory", "updated", "capture");
        let data = &updated.event.data;
        assert_eq!(dec(&data["before"]["on_hand"]), 5.into());
        assert_eq!(dec(&data["after"]["on_hand"]), 7.into());
        assert_eq!(instant(&data["after"]["updated_at"]), berlin(t2));
        assert_eq!(changed(updated), names(&["on_hand", "updated_at"]));
        assert_ne!(created.event.id, updated.event.id);

        // AND re-reading the unchanged rows (every cycle re-reads the lookback window) emits
        // nothing more
        rig.wait_cycles("inventory", 4).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 2, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}

const SALES_CURSOR: &str = r#"
strategy = "cursor"
cursor_column = "TXN_NO"
interval_ms = 100
lookback_values = 50
initial = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_cursor_captures_journal_inserts_in_id_order() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let rig = Rig::start(&db, &sales(SALES_CURSOR)).await;
        rig.wait_running("sales").await;
        let max = db.scalar("SELECT MAX(TXN_NO) FROM SALES_JOURNAL");

        // WHEN the till books three transactions
        let at = berlin_now();
        for n in 10..13 {
            db.exec(&sql::sale_insert(max + n, "S01", "A1001", n, at));
        }
        let events = rig
            .wait_for("three sales", |e| {
                (10..13).all(|n| has(e, "sales.created", &(max + n).to_string()))
            })
            .await;

        // THEN each is one `created` event, in transaction-number order
        let seqs: Vec<u64> = (10..13)
            .map(|n| {
                let e = the(&events, "sales.created", &(max + n).to_string());
                envelope(e, "sales", "created", "capture");
                let data = &e.event.data;
                assert_eq!(data["key"], json!({"txn_no": max + n}));
                assert_eq!(data["after"]["txn_no"], json!(max + n));
                assert_eq!(dec(&data["after"]["quantity"]), n.into());
                assert_eq!(data["after"]["amount"], format!("{}.50", n * 10));
                assert_eq!(instant(&data["after"]["sold_at"]), berlin(at));
                assert_eq!(data["before"], json!(null));
                assert_eq!(
                    data["position"],
                    json!({"strategy": "cursor", "column": data["position"]["column"], "value": max + n})
                );
                e.seq
            })
            .collect();
        assert!(seqs.is_sorted(), "{engine:?}: {seqs:?}");

        // WHEN a transaction with a lower number commits late (inside `lookback_values`)
        db.exec(&sql::sale_insert(max + 5, "S02", "A1002", 1, at));
        let events = rig
            .wait_for("the late sale", |e| {
                has(e, "sales.created", &(max + 5).to_string())
            })
            .await;
        assert!(the(&events, "sales.created", &(max + 5).to_string()).seq > seqs[2]);

        // THEN nothing is emitted twice while the window is re-read
        rig.wait_cycles("sales", 4).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 4, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}

const PRICES_DIFF: &str = r#"
strategy = "snapshot-diff"
interval_ms = 100
initial = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_diff_captures_insert_update_delete() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let rig = Rig::start(&db, &prices(PRICES_DIFF)).await;
        rig.wait_running("prices").await;
        let subject = "Z0001/RETAIL";
        let key = json!({"sku": "Z0001", "price_list": "RETAIL"});

        // WHEN a price is added
        let at = berlin_now();
        db.exec(&sql::price_insert("RETAIL", "Z0001", "12.5", at));
        let events = rig
            .wait_for("the insert", |e| has(e, "prices.created", subject))
            .await;
        let created = the(&events, "prices.created", subject);
        envelope(created, "prices", "created", "capture");
        let data = &created.event.data;
        assert_eq!(data["key"], key);
        assert_eq!(data["before"], json!(null));
        assert_eq!(data["after"]["amount"], "12.50");
        assert_eq!(data["after"]["currency"], "EUR");
        assert_eq!(data["after"]["valid_from"], json!(null));
        assert_eq!(data["position"]["strategy"], "snapshot-diff");
        assert_eq!(changed(created).len(), 6);

        // AND changed (its LAST_UPD left alone: the diff does not need it)
        db.exec(&sql::price_update("RETAIL", "Z0001", "13.75"));
        let events = rig
            .wait_for("the update", |e| has(e, "prices.updated", subject))
            .await;
        let updated = the(&events, "prices.updated", subject);
        envelope(updated, "prices", "updated", "capture");
        let data = &updated.event.data;
        assert_eq!(data["key"], key);
        assert_eq!(data["before"]["amount"], "12.50");
        assert_eq!(data["after"]["amount"], "13.75");
        assert_eq!(changed(updated), names(&["amount"]));

        // AND deleted
        db.exec(&sql::price_delete("RETAIL", "Z0001"));
        let events = rig
            .wait_for("the delete", |e| has(e, "prices.deleted", subject))
            .await;
        let deleted = the(&events, "prices.deleted", subject);
        envelope(deleted, "prices", "deleted", "capture");
        let data = &deleted.event.data;
        assert_eq!(data["key"], key, "a delete still names its key");
        assert_eq!(data["before"]["amount"], "13.75");
        assert_eq!(data["after"], json!(null));
        assert!(changed(deleted).is_empty());

        // THEN those three, in order, and full re-scans of the unchanged table add nothing
        rig.wait_cycles("prices", 4).await;
        let events = rig.events().await;
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![created.seq, updated.seq, deleted.seq],
            "{engine:?}: {events:#?}"
        );
        assert_gap_free(&rig.label, &events);
    }
}

/// A log row written by hand, as if capture had committed its events and died before pruning.
fn relog(engine: Engine, item: &str, store: &str) -> String {
    let q = |ident: &str| match engine {
        Engine::Mariadb => format!("`{ident}`"),
        _ => format!("\"{ident}\""),
    };
    let (table, item, store) = match engine {
        // Keys are logged as the engine reads CHAR values: padded, except on MariaDB.
        Engine::Mariadb => ("STOCK_LEVEL".to_owned(), item.to_owned(), store.to_owned()),
        Engine::Postgres => (
            "stock_level".to_owned(),
            format!("{item:<10}"),
            format!("{store:<4}"),
        ),
        Engine::Sqlite => (
            "STOCK_LEVEL".to_owned(),
            format!("{item:<10}"),
            format!("{store:<4}"),
        ),
    };
    format!(
        "INSERT INTO {} ({}, {}, {}, {}) VALUES ('{table}', 'U', '{item}', '{store}')",
        changelog_table(engine),
        q("TABLE_NAME"),
        q("OP"),
        q("KEY_1"),
        q("KEY_2")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changelog_captures_insert_update_delete_and_ignores_rereads() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        // GIVEN the change-log triggers on STOCK_LEVEL, installed before capture starts
        let mut rig = Rig::build_logged_inventory(&db).await;
        rig.start_capture().await;
        rig.wait_running("inventory").await;

        // WHEN the till inserts a row, updates a seeded one and deletes another
        let at = berlin_now();
        db.exec(&sql::stock_insert("A1001", "S09", 5, at));
        db.exec(&sql::stock_update("A1001", "S01", 60, at));
        db.exec(&sql::stock_delete("A1003", "S03"));
        let events = rig
            .wait_for("three changes", |e| {
                has(e, "inventory.created", "A1001/S09")
                    && has(e, "inventory.updated", "A1001/S01")
                    && has(e, "inventory.deleted", "A1003/S03")
            })
            .await;

        // THEN one event each, in the order they happened, with both images
        let created = the(&events, "inventory.created", "A1001/S09");
        envelope(created, "inventory", "created", "capture");
        assert_eq!(created.event.data["before"], json!(null));
        assert_eq!(dec(&created.event.data["after"]["on_hand"]), 5.into());
        assert_eq!(created.event.data["position"]["strategy"], "changelog");

        let updated = the(&events, "inventory.updated", "A1001/S01");
        envelope(updated, "inventory", "updated", "capture");
        let data = &updated.event.data;
        assert_eq!(dec(&data["before"]["on_hand"]), 51.into(), "the seeded row");
        assert_eq!(dec(&data["after"]["on_hand"]), 60.into());
        assert_eq!(changed(updated), names(&["on_hand", "updated_at"]));

        let deleted = the(&events, "inventory.deleted", "A1003/S03");
        envelope(deleted, "inventory", "deleted", "capture");
        let data = &deleted.event.data;
        assert_eq!(data["key"], json!({"sku": "A1003", "location": "S03"}));
        assert_eq!(dec(&data["before"]["on_hand"]), 56.into());
        assert_eq!(data["after"], json!(null));
        assert!(created.seq < updated.seq && updated.seq < deleted.seq);

        // WHEN an update changes a row's key (the triggers log the old and the new key)
        db.exec(
            "UPDATE STOCK_LEVEL SET STORE_NO = 'S08 ' \
             WHERE ITEM_CODE = 'A1002     ' AND STORE_NO = 'S02 '",
        );
        let events = rig
            .wait_for("the re-keyed row", |e| {
                has(e, "inventory.deleted", "A1002/S02") && has(e, "inventory.created", "A1002/S08")
            })
            .await;

        // THEN the old key is deleted and the new one created, with the same content
        let gone = the(&events, "inventory.deleted", "A1002/S02");
        let born = the(&events, "inventory.created", "A1002/S08");
        assert_eq!(
            gone.event.data["before"]["on_hand"],
            born.event.data["after"]["on_hand"]
        );
        assert_eq!(born.event.data["before"], json!(null));

        // WHEN rows are logged again without a real change: an UPDATE that sets the same
        // values, and a log row of an already captured key (as after a crash before pruning)
        db.exec("UPDATE STOCK_LEVEL SET QTY_ON_HAND = QTY_ON_HAND WHERE ITEM_CODE = 'A1002     '");
        db.exec(&relog(engine, "A1001", "S09"));
        db.exec(&relog(engine, "A1003", "S03"));

        // THEN the log is drained and pruned, and nothing is emitted
        super::capture_harness::wait_log_pruned(&db).await;
        rig.wait_cycles("inventory", 3).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 5, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}

const PRODUCTS_RECONCILED: &str = r#"
strategy = "cursor"
cursor_column = "LAST_UPD"
interval_ms = 100
settle_ms = 200
initial = "none"
reconcile_interval_secs = 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_finds_what_the_cursor_cannot_see() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let rig = Rig::start(&db, &products(PRODUCTS_RECONCILED)).await;
        rig.wait_running("products").await;

        // WHEN an item is deleted from the master file (invisible to a LAST_UPD cursor) and
        // another is renamed without touching LAST_UPD
        db.exec(&sql::item_delete("A1004"));
        db.exec("UPDATE ITEM_MASTER SET DESCR = 'Schraubendreher 7-tlg.' WHERE ITEM_CODE = 'A1002     '");
        let events = rig
            .wait_for("reconciliation", |e| {
                has(e, "products.deleted", "A1004") && has(e, "products.updated", "A1002")
            })
            .await;

        // THEN a reconciliation pass reports both
        let deleted = the(&events, "products.deleted", "A1004");
        envelope(deleted, "products", "deleted", "reconciliation");
        let data = &deleted.event.data;
        assert_eq!(data["key"], json!({"sku": "A1004"}));
        assert_eq!(data["before"]["name"], "Cuttermesser 18 mm");
        assert_eq!(data["after"], json!(null));
        let updated = the(&events, "products.updated", "A1002");
        envelope(updated, "products", "updated", "reconciliation");
        assert_eq!(
            updated.event.data["before"]["name"],
            "Schraubendreher-Satz 6-tlg."
        );
        assert_eq!(
            updated.event.data["after"]["name"],
            "Schraubendreher 7-tlg."
        );
        assert_eq!(changed(updated), names(&["name"]));

        // AND later passes over the unchanged table report nothing again
        for _ in 0..2 {
            let before = rig.status("products").last_reconciliation_at;
            rig.wait_status("products", "reconciled once more", |s| {
                s.last_reconciliation_at > before
            })
            .await;
        }
        let events = rig.events().await;
        assert_eq!(events.len(), 2, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}
