//! The `mssql-change-tracking` strategy against the TDS harness, which emulates SQL Server
//! Change Tracking (`CHANGETABLE(CHANGES ...)`, current and min valid versions, cleanup):
//! inserts, updates and deletes of a tracked table with a composite key are found once each;
//! an expired version stops the resource with a clear reason (or, when configured, is
//! reconciled by diff) and never silently skips what was cleaned up. On a real SQL Server
//! (`MSSQL_TEST_URL`) the tests that need a forced cleanup or a cut connection are skipped.

use std::time::Duration;

use legacy_bridge::capture::CaptureState;
use legacy_bridge::model::StoredEvent;

use super::capture_harness::{Rig, StagedSource, has, matching, show};
use super::mssql_target::MssqlTarget;
use super::tds::TdsServer;

const RESOURCE: &str = "stock";

const CREATE_TABLE: &str = "CREATE TABLE STOCK_CT (ITEM_CODE NVARCHAR(10) NOT NULL, \
     LOC NCHAR(3) NOT NULL, QTY INT NOT NULL, PRICE DECIMAL(12,4), PRIMARY KEY (ITEM_CODE, LOC))";

/// Enables change tracking on `STOCK_CT` (and, on a real server, what it needs first:
/// snapshot isolation and change tracking on the database, as
/// `sql/mssql/enable-change-tracking.sql` does).
async fn enable_change_tracking(target: &MssqlTarget) {
    match target.harness() {
        Some(server) => server.enable_change_tracking("dbo.STOCK_CT"),
        None => {
            target
                .setup(
                    "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON; \
                     ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON \
                     (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON); \
                     ALTER TABLE dbo.STOCK_CT ENABLE CHANGE_TRACKING",
                )
                .await;
        }
    }
}

/// A tracked `STOCK_CT` table (composite key) holding two rows, on `target`.
async fn tracked(target: MssqlTarget) -> MssqlTarget {
    target.setup(CREATE_TABLE).await;
    enable_change_tracking(&target).await;
    target
        .setup(
            "INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY, PRICE) VALUES \
             ('A', 'S01', 1, 1.5), ('B', 'S01', 2, 2.25)",
        )
        .await;
    target
}

/// For a test that needs the harness (`why`): a tracked table, and the bridge following it
/// once its initial snapshot is emitted.
async fn following_on_harness(why: &str, capture_extra: &str) -> Option<(MssqlTarget, Rig)> {
    let target = tracked(MssqlTarget::harness_only(why)?).await;
    let rig = rig(&target, capture_extra).await;
    rig.wait_for("the initial snapshot", |e| e.len() == 2).await;
    rig.wait_running(RESOURCE).await;
    Some((target, rig))
}

/// An outage that outlives the retention: while the bridge is stopped, `A/S01` is updated,
/// `B/S01` deleted and `D/S01` inserted, then SQL Server cleans that history up.
async fn outage_past_retention(rig: &mut Rig, server: &TdsServer) {
    rig.stop().await;
    server.execute("UPDATE STOCK_CT SET QTY = 5 WHERE ITEM_CODE = 'A'");
    server.execute("DELETE FROM STOCK_CT WHERE ITEM_CODE = 'B'");
    server.execute("INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY) VALUES ('D', 'S01', 1)");
    server.cleanup_change_tracking("dbo.STOCK_CT");
}

/// After a recovery, the next change is found: the outbox then holds `events` events.
async fn follows_again(rig: &Rig, server: &TdsServer, events: usize) {
    rig.wait_running(RESOURCE).await;
    server.execute("UPDATE STOCK_CT SET QTY = 8 WHERE ITEM_CODE = 'D'");
    let seen = rig
        .wait_for("a change after the recovery", |e| {
            has(e, "stock.updated", "D/S01")
        })
        .await;
    assert_eq!(seen.len(), events, "{}", show(&seen));
    assert_eq!(rig.status(RESOURCE).state, CaptureState::Running);
}

/// `CHANGE_TRACKING_CURRENT_VERSION()`, asked over TDS.
async fn current_version(target: &MssqlTarget) -> Option<i64> {
    let mut client = target.client().await;
    let row = client
        .simple_query("SELECT CHANGE_TRACKING_CURRENT_VERSION()")
        .await
        .expect("query the version")
        .into_row()
        .await
        .expect("read the version");
    row.and_then(|r| r.get::<i64, _>(0))
}

fn adapter(capture_extra: &str) -> String {
    format!(
        "[resources.{RESOURCE}]\nsource = \"pos\"\ntable = \"STOCK_CT\"\nkey = [\"sku\", \"location\"]\n\
         [resources.{RESOURCE}.fields]\nsku = {{ column = \"ITEM_CODE\", type = \"string\" }}\n\
         location = {{ column = \"LOC\", type = \"string\" }}\n\
         qty = {{ column = \"QTY\", type = \"integer\" }}\n\
         price = {{ column = \"PRICE\", type = \"decimal\" }}\n\
         [resources.{RESOURCE}.capture]\nstrategy = \"mssql-change-tracking\"\ninterval_ms = 100\n\
         batch_size = 2\n{capture_extra}"
    )
}

async fn rig(target: &MssqlTarget, capture_extra: &str) -> Rig {
    let mut rig = Rig::build_on(
        "mssql-change-tracking",
        &target.source_toml(""),
        &adapter(capture_extra),
    )
    .await;
    rig.start_capture().await;
    rig
}

fn count(events: &[StoredEvent], event_type: &str, subject: &str) -> usize {
    matching(events, event_type, subject).len()
}

/// The synced version in the resource's checkpoint.
fn synced_version(rig: &Rig) -> Option<i64> {
    rig.status(RESOURCE)
        .checkpoint
        .and_then(|c| c.get("ct_version").and_then(serde_json::Value::as_i64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_tracking_finds_inserts_updates_and_deletes_once() {
    let target = tracked(MssqlTarget::start().await).await;
    let rig = rig(&target, "").await;
    rig.wait_for("the initial snapshot", |e| {
        has(e, "stock.snapshot", "A/S01") && has(e, "stock.snapshot", "B/S01")
    })
    .await;
    rig.wait_running(RESOURCE).await;

    // A legacy application writes: five changes in three transactions, more than a batch.
    target
        .setup(
            "INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY, PRICE) VALUES ('C', 'S01', 3, 3), \
         ('C', 'S02', 4, 4)",
        )
        .await;
    target
        .setup("UPDATE STOCK_CT SET QTY = 10, PRICE = 9.99 WHERE ITEM_CODE = 'A'")
        .await;
    target
        .setup("DELETE FROM STOCK_CT WHERE ITEM_CODE = 'B'")
        .await;
    // A row changed and changed back within one cycle's reach is no change at all.
    target
        .setup("UPDATE STOCK_CT SET QTY = QTY + 1 WHERE ITEM_CODE = 'C' AND LOC = 'S02'")
        .await;
    target
        .setup("UPDATE STOCK_CT SET QTY = QTY - 1 WHERE ITEM_CODE = 'C' AND LOC = 'S02'")
        .await;
    let events = rig
        .wait_for("the changes", |e| {
            has(e, "stock.created", "C/S01")
                && has(e, "stock.created", "C/S02")
                && has(e, "stock.updated", "A/S01")
                && has(e, "stock.deleted", "B/S01")
        })
        .await;
    let updated = &matching(&events, "stock.updated", "A/S01")[0].event.data;
    assert_eq!(updated["after"]["qty"], 10, "{updated}");
    assert_eq!(updated["before"]["qty"], 1, "{updated}");
    assert_eq!(updated["changed"], serde_json::json!(["qty", "price"]));
    assert_eq!(updated["position"]["strategy"], "mssql-change-tracking");

    // More cycles read nothing again: every change once, the checkpoint at the database's
    // current version.
    rig.wait_cycles(RESOURCE, 3).await;
    let events = rig.events().await;
    for (ty, subject) in [
        ("stock.created", "C/S01"),
        ("stock.created", "C/S02"),
        ("stock.updated", "A/S01"),
        ("stock.deleted", "B/S01"),
    ] {
        assert_eq!(
            count(&events, ty, subject),
            1,
            "{ty} {subject}\n{}",
            show(&events)
        );
    }
    assert_eq!(events.len(), 6, "{}", show(&events));
    assert_eq!(synced_version(&rig), current_version(&target).await);
}

/// The outage outlives the retention: SQL Server cleans up changes the bridge never read.
/// The resource must stop and say why, not carry on from what is left; a resync brings it
/// back and it follows changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_version_stops_the_resource_with_a_clear_reason() {
    let Some((target, mut rig)) =
        following_on_harness("a forced change-tracking cleanup", "").await
    else {
        return;
    };
    let server = target.harness().expect("the harness");
    let synced = synced_version(&rig).expect("a synced version");

    rig.stop().await;
    server.execute("UPDATE STOCK_CT SET QTY = 5 WHERE ITEM_CODE = 'A'");
    server.execute("INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY) VALUES ('D', 'S01', 1)");
    let min_valid = server.cleanup_change_tracking("dbo.STOCK_CT");
    assert!(min_valid > synced, "the cleanup expires the synced version");
    // What is left in the change table after cleanup is not all that changed.
    server.execute("UPDATE STOCK_CT SET QTY = 6 WHERE ITEM_CODE = 'B'");

    rig.start_capture().await;
    let status = rig
        .wait_status(RESOURCE, "stopped", |s| s.state == CaptureState::Stopped)
        .await;
    let reason = status.paused_reason.clone().unwrap_or_default();
    for needle in [
        "change tracking version",
        "has expired",
        &synced.to_string(),
        &min_valid.to_string(),
        "/admin/capture/stock/resync",
        "on_expired",
    ] {
        assert!(reason.contains(needle), "`{needle}` in: {reason}");
    }
    // Stopped, it reads nothing: not even the change still in the change table.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let events = rig.events().await;
    assert_eq!(events.len(), 2, "{}", show(&events));
    assert_eq!(rig.status(RESOURCE).state, CaptureState::Stopped);

    // An operator resyncs: every row again, then changes are followed from the new version.
    assert!(rig.handle().status.request_resync(RESOURCE));
    let events = rig
        .wait_for("the resync", |e| {
            has(e, "stock.snapshot", "D/S01") && matching(e, "stock.snapshot", "A/S01").len() == 2
        })
        .await;
    let a = matching(&events, "stock.snapshot", "A/S01");
    assert_eq!(a[1].event.data["after"]["qty"], 5);
    rig.wait_running(RESOURCE).await;
    server.execute("UPDATE STOCK_CT SET QTY = 7 WHERE ITEM_CODE = 'D'");
    rig.wait_for("a change after the resync", |e| {
        has(e, "stock.updated", "D/S01")
    })
    .await;
    rig.stop().await;
}

/// With `on_expired = "reconcile"` an expired version is caught up by a diff of the whole
/// table: exactly the changes that were lost, then changes are followed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_version_is_reconciled_when_configured() {
    let Some((target, mut rig)) = following_on_harness(
        "a forced change-tracking cleanup",
        "on_expired = \"reconcile\"\n",
    )
    .await
    else {
        return;
    };
    let server = target.harness().expect("the harness");

    outage_past_retention(&mut rig, server).await;

    rig.start_capture().await;
    let events = rig
        .wait_for("the reconciliation", |e| {
            has(e, "stock.updated", "A/S01")
                && has(e, "stock.deleted", "B/S01")
                && has(e, "stock.created", "D/S01")
        })
        .await;
    assert_eq!(events.len(), 5, "{}", show(&events));
    for e in &events[2..] {
        assert_eq!(
            e.event.data["origin"],
            "reconciliation",
            "{}",
            show(&events)
        );
    }
    follows_again(&rig, server, 6).await;
    rig.stop().await;
}

/// Change tracking not enabled on the table: the resource fails with a message that says so
/// and names the script, and starts once a DBA enabled it, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_change_tracking_is_a_clear_error_until_enabled() {
    let target = MssqlTarget::start().await;
    target.setup(CREATE_TABLE).await;
    target
        .setup("INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY) VALUES ('A', 'S01', 1)")
        .await;
    let mut rig = rig(&target, "").await;
    let status = rig
        .wait_status(RESOURCE, "failing", |s| s.state == CaptureState::Failing)
        .await;
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("change tracking is not enabled on dbo.STOCK_CT")
            && error.contains("sql/mssql/enable-change-tracking.sql"),
        "{error}"
    );
    enable_change_tracking(&target).await;
    rig.wait_for("the initial snapshot", |e| {
        has(e, "stock.snapshot", "A/S01")
    })
    .await;
    rig.stop().await;
}

/// A read cut mid-result (the connection drops after some rows, some batches already
/// committed) loses nothing: the version moves only with the last batch, so the next cycle
/// reads the changes again and those already emitted are suppressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cut_mid_result_loses_and_repeats_nothing() {
    let Some((target, rig)) = following_on_harness("a connection dropped mid-result", "").await
    else {
        return;
    };
    let server = target.harness().expect("the harness");

    let logins = server.login_count();
    server.drop_connection_after_rows(5);
    server.execute(
        "INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY) VALUES ('E1', 'S01', 1), ('E2', 'S01', 1), \
         ('E3', 'S01', 1), ('E4', 'S01', 1), ('E5', 'S01', 1), ('E6', 'S01', 1), ('E7', 'S01', 1)",
    );
    let events = rig
        .wait_for("every insert", |e| {
            (1..=7).all(|n| has(e, "stock.created", &format!("E{n}/S01")))
        })
        .await;
    rig.wait_cycles(RESOURCE, 3).await;
    let events_after = rig.events().await;
    assert_eq!(events_after.len(), events.len(), "{}", show(&events_after));
    for n in 1..=7 {
        assert_eq!(
            count(&events_after, "stock.created", &format!("E{n}/S01")),
            1,
            "{}",
            show(&events_after)
        );
    }
    assert!(
        server.login_count() > logins,
        "the read was cut, so the bridge had to log in again"
    );
}

/// The offline `resync` command is a way out of an expired version too: it re-emits every
/// row and moves the synced version to one taken before its pass, so the service follows
/// changes again when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_command_recovers_an_expired_version() {
    let Some((target, mut rig)) =
        following_on_harness("a forced change-tracking cleanup", "").await
    else {
        return;
    };
    let server = target.harness().expect("the harness");
    rig.stop().await;
    server.execute("UPDATE STOCK_CT SET QTY = 5 WHERE ITEM_CODE = 'A'");
    server.cleanup_change_tracking("dbo.STOCK_CT");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_legacy-bridge"))
        .args(["resync", "-c"])
        .arg(rig.config_path())
        .args(["--resource", RESOURCE])
        .output()
        .expect("run legacy-bridge resync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    rig.start_capture().await;
    rig.wait_running(RESOURCE).await;
    server.execute("UPDATE STOCK_CT SET QTY = 9 WHERE ITEM_CODE = 'B'");
    let events = rig
        .wait_for("a change after the resync", |e| {
            has(e, "stock.updated", "B/S01")
        })
        .await;
    let a = matching(&events, "stock.snapshot", "A/S01");
    assert_eq!(a.len(), 2, "{}", show(&events));
    assert_eq!(a[1].event.data["origin"], "resync");
    assert_eq!(a[1].event.data["after"]["qty"], 5);
    assert_eq!(rig.status(RESOURCE).state, CaptureState::Running);
    rig.stop().await;
}

/// With `on_expired = "resync"` an expired version re-emits every row as a snapshot (and the
/// rows that are gone as deleted), then changes are followed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_version_is_resynced_when_configured() {
    let Some((target, mut rig)) = following_on_harness(
        "a forced change-tracking cleanup",
        "on_expired = \"resync\"\n",
    )
    .await
    else {
        return;
    };
    let server = target.harness().expect("the harness");

    outage_past_retention(&mut rig, server).await;

    rig.start_capture().await;
    let events = rig
        .wait_for("the resync", |e| {
            matching(e, "stock.snapshot", "A/S01").len() == 2
                && has(e, "stock.deleted", "B/S01")
                && has(e, "stock.snapshot", "D/S01")
        })
        .await;
    assert_eq!(events.len(), 5, "{}", show(&events));
    for e in &events[2..] {
        assert_eq!(e.event.data["origin"], "resync", "{}", show(&events));
    }
    follows_again(&rig, server, 6).await;
    rig.stop().await;
}

/// A recovery pass cut short (the connection drops mid-scan) runs again whole: the version
/// moves past the lost history only once the pass is complete, so nothing it had not reached
/// yet is lost, and nothing it had reached is emitted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconciliation_cut_short_runs_again() {
    let Some((target, mut rig)) = following_on_harness(
        "a forced change-tracking cleanup and a connection dropped mid-result",
        "on_expired = \"reconcile\"\n",
    )
    .await
    else {
        return;
    };
    let server = target.harness().expect("the harness");
    rig.stop().await;
    let rows: Vec<String> = (1..=20)
        .map(|n| format!("('E{n:02}', 'S01', {n})"))
        .collect();
    server.execute(&format!(
        "INSERT INTO STOCK_CT (ITEM_CODE, LOC, QTY) VALUES {}",
        rows.join(", ")
    ));
    outage_past_retention(&mut rig, server).await;

    let logins = server.login_count();
    server.drop_connection_after_rows(5);
    rig.start_capture().await;
    rig.wait_for("the reconciliation", |e| {
        has(e, "stock.updated", "A/S01")
            && has(e, "stock.deleted", "B/S01")
            && has(e, "stock.created", "D/S01")
            && (1..=20).all(|n| has(e, "stock.created", &format!("E{n:02}/S01")))
    })
    .await;
    assert!(
        server.login_count() > logins,
        "the pass was cut, so the bridge had to log in again"
    );
    follows_again(&rig, server, 2 + 23 + 1).await;
    rig.stop().await;
}

/// `initial = "none"`: a write that lands after the start version is taken but before the
/// silent baseline pass reads the table is in that baseline, yet owed as an event; change
/// tracking reports it after the pass, and it is emitted once. A write after the pass that
/// changes nothing is not (capture_baseline.rs has the same for a cursor and a change log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_racing_the_silent_baseline_is_emitted_once() {
    let target = tracked(MssqlTarget::start().await).await;
    let mut rig = Rig::build_on(
        "mssql-change-tracking",
        &target.source_toml(""),
        &adapter("initial = \"none\""),
    )
    .await;
    let staged = StagedSource::new(rig.source());
    let mut pause = staged.pause_first_scan();
    rig.start_capture_on(staged).await;
    pause.reached().await;
    target
        .setup("UPDATE STOCK_CT SET QTY = 7 WHERE ITEM_CODE = 'A'")
        .await;
    pause.resume();
    rig.wait_running(RESOURCE).await;

    let events = rig
        .wait_for("the racing write", |e| has(e, "stock.updated", "A/S01"))
        .await;
    let raced = &matching(&events, "stock.updated", "A/S01")[0].event.data;
    assert_eq!(raced["after"]["qty"], 7, "{raced}");
    assert_eq!(
        raced["before"], raced["after"],
        "the baseline read the write"
    );

    target
        .setup("UPDATE STOCK_CT SET QTY = QTY WHERE ITEM_CODE = 'B'")
        .await;
    rig.wait_cycles(RESOURCE, 3).await;
    let events = rig.events().await;
    assert_eq!(events.len(), 1, "{}", show(&events));
}
