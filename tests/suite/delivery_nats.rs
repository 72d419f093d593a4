//! NATS JetStream delivery end to end: the till writes legacy rows while the nats-server (a
//! test's own, with its store on disk) hangs, is killed and restarted on the same port; the stream
//! must end up holding every outbox event exactly once (`Nats-Msg-Id` de-duplicates what was
//! stored but not acknowledged), each record's events in seq order; a rewind to 0 publishes
//! everything again and still stores nothing twice.

use serde_json::json;

use super::capture_harness::eventually_within;
use super::delivery_harness::{
    DeliveryRig, PATIENCE, TillThread, check_stream, inventory_changelog, nats_subscription, retry,
    seed, stream_len, stream_messages,
};
use super::engines::{Engine, TestDb};
use super::nats_server::NatsServer;

const STREAM: &str = "LB_E2E";

/// Waits until the stream holds at least `n` messages.
async fn wait_stored(server: &NatsServer, n: u64) {
    eventually_within(&format!("{n} messages in {STREAM}"), PATIENCE, || async {
        let stored = stream_len(&server.url(), STREAM).await;
        if stored >= n {
            Ok(())
        } else {
            Err(format!("{stored} so far"))
        }
    })
    .await;
}

/// Checks the stream against the outbox, failing with the first difference.
async fn assert_stream_is_the_outbox(rig: &DeliveryRig, server: &NatsServer, label: &str) {
    let outbox = rig.outbox().await;
    let messages = stream_messages(&server.url(), STREAM).await;
    if let Err(why) = check_stream(&outbox, &messages) {
        panic!(
            "{label}: {why}\n{} messages, {} outbox events",
            messages.len(),
            outbox.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_stream_loses_nothing_and_stores_each_event_once() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    // GIVEN a NATS subscription whose retries outlast a server restart
    let db = TestDb::create(Engine::Sqlite).expect("SQLite always runs");
    let mut delays = vec!["200ms", "500ms", "1s"];
    delays.extend(["2s"; 30]);
    let extra = format!("batch_size = 50\n{}", retry(&delays));
    let rig = DeliveryRig::start(
        db,
        &inventory_changelog("none"),
        &nats_subscription("bus", &server.url(), STREAM, &extra),
    )
    .await;
    let seed = seed("LB_DELIVERY_SEED", "nats restart");
    let till = TillThread::start(&rig.db.connection_string, seed, 8, (5, 40));
    wait_stored(&server, 30).await;

    // WHEN the server hangs (SIGSTOP) while events keep coming, and is killed and restarted;
    // then is killed and restarted again, while the till keeps writing
    for hang in [true, false] {
        let before = stream_len(&server.url(), STREAM).await;
        if hang {
            // What is published into the hung server is never acknowledged: it must be
            // published again after the restart.
            server.freeze();
            let head = rig.overview().await["outbox_last_seq"]
                .as_u64()
                .expect("head");
            rig.wait_subscription("bus", "10 more events in the outbox", PATIENCE, |s| {
                s["outbox_last_seq"].as_u64().unwrap_or(0) >= head + 10
            })
            .await;
        }
        server.stop();
        // The dispatcher notices and holds back until the server is back.
        rig.wait_subscription("bus", "held back", PATIENCE, |s| {
            s["held_until"].is_string()
        })
        .await;
        server.restart();
        wait_stored(&server, before + 30).await;
    }
    let writes = till.stop();
    rig.wait_captured("inventory").await;
    let status = rig.wait_caught_up("bus").await;

    // THEN the stream holds every outbox event once, in per-record order
    assert_stream_is_the_outbox(&rig, &server, "after the restarts").await;
    assert_eq!(status["dead_letters"], 0, "{status:#}");

    // AND a rewind to 0 publishes everything again, which the stream de-duplicates
    let stored = stream_len(&server.url(), STREAM).await;
    rig.act(
        "/admin/subscriptions/bus/rewind",
        Some(&json!({"seq": 0}).to_string()),
    )
    .await;
    let status = rig.wait_caught_up("bus").await;
    assert!(
        status["delivered"].as_u64().unwrap_or(0) >= 2 * stored,
        "the replay was not delivered: {status:#}"
    );
    assert_stream_is_the_outbox(&rig, &server, "after the rewind").await;
    eprintln!("nats restart: {writes} writes, {stored} events stored once");
}
