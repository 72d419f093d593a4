//! The legacy database going away while capture runs: every resource reports `failing`, keeps
//! retrying, and once the database is back reports `running` and captures every change made
//! during the outage exactly once. Only server engines: SQLite is a file opened in-process,
//! it has no connection to cut.

use legacy_bridge::capture::CaptureState;

use super::capture_harness::{
    Rig, assert_gap_free, berlin_now, has, inventory, prices, server_port, sql, the, via_port,
};
use super::engines::{Engine, TestDb};
use super::proxy::Proxy;

fn adapter() -> String {
    let inventory = inventory(
        "strategy = \"cursor\"\ncursor_column = \"LAST_UPD\"\ninterval_ms = 100\n\
         settle_ms = 200\ninitial = \"none\"",
    );
    let prices = prices("strategy = \"snapshot-diff\"\ninterval_ms = 100\ninitial = \"none\"");
    format!("{inventory}{prices}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_fails_while_the_database_is_away_and_catches_up_after() {
    for engine in [Engine::Postgres, Engine::Mariadb] {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let proxy = Proxy::start(server_port(&db)).await;
        let mut rig = Rig::build(
            engine,
            &via_port(&db, proxy.port),
            "query_timeout_secs = 2",
            &adapter(),
        )
        .await;
        rig.start_capture().await;
        rig.wait_running("inventory").await;
        rig.wait_running("prices").await;
        db.exec(&sql::stock_update("A1001", "S01", 52, berlin_now()));
        rig.wait_for("a change before the outage", |e| {
            has(e, "inventory.updated", "A1001/S01")
        })
        .await;

        // WHEN the database goes away while capture is polling
        proxy.down();

        // THEN both resources report failing, with an error
        for resource in ["inventory", "prices"] {
            let s = rig
                .wait_status(resource, "failing", |s| s.state == CaptureState::Failing)
                .await;
            assert!(s.last_error.is_some(), "{engine:?}: {s:#?}");
        }

        // WHEN the till keeps writing during the outage (straight to the database)
        let at = berlin_now();
        db.exec(&sql::stock_update("A1002", "S01", 77, at));
        db.exec(&sql::stock_insert("A1001", "S09", 5, at));
        db.exec(&sql::price_update("RETAIL", "A1001", "13.49"));
        db.exec(&sql::price_delete("RETAIL", "A1003"));
        db.exec(&sql::price_insert("RETAIL", "Z0001", "1.5", at));
        assert_eq!(
            rig.events().await.len(),
            1,
            "{engine:?}: nothing while away"
        );

        // AND it comes back
        proxy.up();

        // THEN capture is running again by itself and every change is captured, once
        for resource in ["inventory", "prices"] {
            rig.wait_status(resource, "running again", |s| {
                s.state == CaptureState::Running && s.last_error.is_none()
            })
            .await;
        }
        let expected = [
            ("inventory.updated", "A1002/S01"),
            ("inventory.created", "A1001/S09"),
            ("prices.updated", "A1001/RETAIL"),
            ("prices.deleted", "A1003/RETAIL"),
            ("prices.created", "Z0001/RETAIL"),
        ];
        let events = rig
            .wait_for("the changes made during the outage", |e| {
                expected.iter().all(|(t, s)| has(e, t, s))
            })
            .await;
        for (t, s) in expected {
            the(&events, t, s);
        }
        rig.wait_cycles("inventory", 3).await;
        rig.wait_cycles("prices", 3).await;
        let events = rig.events().await;
        assert_eq!(events.len(), 6, "{engine:?}: {events:#?}");
        assert_gap_free(&rig.label, &events);
    }
}
