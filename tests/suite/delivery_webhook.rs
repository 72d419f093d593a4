//! Webhook delivery end to end: the till writes legacy rows, capture fills the outbox, the
//! dispatcher posts each event to the Python receiver (signatures checked by
//! `standardwebhooks`). Failing answers, an outage, 410 Gone and a poisoned record must lose
//! nothing, keep per-record order and the event id across retries, and show in
//! `/admin/subscriptions`, `/admin/audit` and `/metrics`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::capture_harness::{berlin_now, eventually_within, sql};
use super::delivery_harness::{
    DeliveryRig, Order, PATIENCE, SECRET, Till, TillThread, caught_up, check_arrivals,
    inventory_changelog, retry, seed, seq_of, show_received, webhook_subscription,
};
use super::engines::{Engine, TestDb};
use super::webhook_receiver::{Received, Receiver};

/// A rig delivering to `receiver` as subscription `hook`, with `extra` subscription keys.
async fn rig(receiver: &Receiver, extra: &str) -> DeliveryRig {
    let db = TestDb::create(Engine::Sqlite).expect("SQLite always runs");
    DeliveryRig::start(
        db,
        &inventory_changelog("none"),
        &webhook_subscription("hook", &receiver.url(), extra),
    )
    .await
}

/// Waits until the receiver has accepted (200) at least `n` requests.
async fn wait_accepted(receiver: &Receiver, n: usize) {
    eventually_within(&format!("{n} accepted requests"), PATIENCE, || async {
        let got = accepted(&receiver.received());
        if got >= n {
            Ok(())
        } else {
            Err(format!("{got} so far"))
        }
    })
    .await;
}

fn accepted(received: &[Received]) -> usize {
    received.iter().filter(|r| r.status == 200).count()
}

/// Stops the till, waits until capture has everything and `hook` delivered it, and checks
/// what arrived against the outbox.
async fn finish(rig: &DeliveryRig, receiver: &Receiver, till: TillThread, label: &str) {
    let writes = till.stop();
    rig.wait_captured("inventory").await;
    let status = rig.wait_caught_up("hook").await;
    let outbox = rig.outbox().await;
    let received = receiver.received();
    let arrivals = check_arrivals(&outbox, &received, Order::Strict).unwrap_or_else(|why| {
        panic!(
            "{label}: {why}\nstatus: {status:#}\nlast requests:\n{}",
            show_received(&received, 60)
        )
    });
    eprintln!(
        "{label}: {writes} writes, {} events, {arrivals:?}",
        outbox.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_events_keep_their_id_and_record_order() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    // GIVEN a receiver answering 500 to the first 30 requests, and enough retries that no
    // event can run out of them (31 attempts each)
    receiver.set_status(500, Some(30), None);
    let rig = rig(
        &receiver,
        &format!("batch_size = 20\n{}", retry(&["100ms"; 30])),
    )
    .await;

    // WHEN the till writes a dozen records over and over
    let seed = seed("LB_DELIVERY_SEED", "webhook retries");
    let till = TillThread::start(&rig.db.connection_string, seed, 6, (5, 30));
    wait_accepted(&receiver, 150).await;

    // THEN every event arrives, verified by standardwebhooks, in order per record, each
    // retry carrying the event's id as webhook-id
    finish(&rig, &receiver, till, "webhook retries").await;
    let received = receiver.received();
    assert_eq!(received.iter().filter(|r| r.status == 500).count(), 30);
    // The refused events were sent again, with the same id, and then accepted.
    for refused in received.iter().filter(|r| r.status == 500) {
        assert!(
            received
                .iter()
                .any(|r| r.status == 200 && r.webhook_id == refused.webhook_id),
            "{refused:?} never accepted under its id"
        );
    }
    let status = rig.subscription("hook").await;
    assert_eq!(status["retried"], 30, "{status:#}");
    assert_eq!(status["dead_letters"], 0, "{status:#}");
}

/// Seconds the receiver stays down in [`receiver_down_for_two_minutes_loses_nothing`]
/// (`LB_E2E_OUTAGE_SECS` shortens it for local runs).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("LB_E2E_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_for_two_minutes_loses_nothing() {
    let Some(mut receiver) = Receiver::start(SECRET) else {
        return;
    };
    let outage = outage();
    // GIVEN a retry schedule longer than the outage (about outage + 60 s in all)
    let mut delays = vec!["1s", "2s", "4s", "8s"];
    delays.extend(std::iter::repeat_n(
        "10s",
        outage.as_secs() as usize / 10 + 5,
    ));
    let rig = rig(&receiver, &format!("batch_size = 50\n{}", retry(&delays))).await;
    let seed = seed("LB_DELIVERY_SEED", "webhook outage");
    let till = TillThread::start(&rig.db.connection_string, seed, 4, (20, 120));
    wait_accepted(&receiver, 20).await;
    // AND a backlog of several events per record when the outage begins (the subscription
    // paused a moment), so the first window the dispatcher tries is many waves deep
    rig.act(
        "/admin/subscriptions/hook/pause",
        Some(r#"{"reason": "build a backlog"}"#),
    )
    .await;
    rig.wait_subscription("hook", "40 behind", PATIENCE, |s| {
        s["behind"].as_u64().unwrap_or(0) >= 40
    })
    .await;

    // WHEN the endpoint's gateway answers 503 once (the rest of that wave is accepted), then
    // the receiver is down for the whole outage while the till keeps writing
    receiver.set_status(503, Some(1), None);
    rig.act("/admin/subscriptions/hook/resume", None).await;
    eventually_within("the 503", PATIENCE, || async {
        if receiver.received().iter().any(|r| r.status == 503) {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    receiver.stop();
    let down = Instant::now();
    let (mut max_behind, mut held, mut aged) = (0, false, false);
    let mut last = serde_json::Value::Null;
    while down.elapsed() < outage {
        let status = rig.subscription("hook").await;
        max_behind = max_behind.max(status["behind"].as_u64().unwrap_or(0));
        held |= status["held_until"].is_string();
        aged |= status["oldest_undelivered_age_seconds"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0;
        last = status;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // THEN meanwhile the subscription showed its lag and that it holds deliveries back
    assert!(max_behind > 0, "no lag shown during the outage: {last:#}");
    assert!(held, "held_until never shown during the outage: {last:#}");
    assert!(aged, "the oldest undelivered event never aged: {last:#}");
    assert!(
        last["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("connect")),
        "{last:#}"
    );
    assert_eq!(last["dead_letters"], 0, "{last:#}");

    // AND once the receiver is back, everything arrives in order and the lag is gone
    receiver.restart();
    let before = receiver.received().len();
    eventually_within("deliveries after the outage", PATIENCE, || async {
        let now = receiver.received().len();
        if now > before + 20 {
            Ok(())
        } else {
            Err(format!("{} new requests", now - before))
        }
    })
    .await;
    finish(&rig, &receiver, till, "webhook outage").await;
    let status = rig.subscription("hook").await;
    assert!(caught_up(&status), "{status:#}");
    assert!(status["held_until"].is_null(), "{status:#}");
    assert_eq!(status["oldest_undelivered_age_seconds"], 0.0, "{status:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_until_resumed_and_loses_nothing() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    let rig = rig(
        &receiver,
        &format!("batch_size = 20\n{}", retry(&["100ms"; 5])),
    )
    .await;
    let seed = seed("LB_DELIVERY_SEED", "webhook gone");
    let till = TillThread::start(&rig.db.connection_string, seed, 4, (10, 60));
    wait_accepted(&receiver, 20).await;
    // AND a backlog of several events per record (the subscription paused a moment), so
    // events wait behind the one that meets the 410
    rig.act(
        "/admin/subscriptions/hook/pause",
        Some(r#"{"reason": "build a backlog"}"#),
    )
    .await;
    rig.wait_subscription("hook", "40 behind", PATIENCE, |s| {
        s["behind"].as_u64().unwrap_or(0) >= 40
    })
    .await;

    // WHEN the endpoint answers 410 Gone once
    receiver.set_status(410, Some(1), None);
    rig.act("/admin/subscriptions/hook/resume", None).await;

    // THEN the subscription is disabled, says why, and the system's action is audited
    let status = rig
        .wait_subscription("hook", "disabled", PATIENCE, |s| s["state"] == "disabled")
        .await;
    assert!(
        status["reason"].as_str().is_some_and(|r| r.contains("410")),
        "{status:#}"
    );
    assert_eq!(status["disabled"], 1, "{status:#}");
    let audit = rig.audit().await;
    let entry = audit
        .iter()
        .find(|e| e["action"] == "disable")
        .unwrap_or_else(|| panic!("no disable in the audit log: {audit:#?}"));
    assert_eq!(entry["actor"], "system", "{entry:#}");
    assert_eq!(entry["subscription"], "hook", "{entry:#}");
    assert!(entry["detail"].to_string().contains("410"), "{entry:#}");
    let metrics = rig.metrics().await;
    for line in [
        r#"legacy_bridge_delivery_active{subscription="hook",sink="webhook"} 0"#,
        r#"legacy_bridge_delivery_disabled_total{subscription="hook",sink="webhook"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // AND while disabled nothing is sent, though events keep coming
    let sent = receiver.received().len();
    rig.wait_captured("inventory").await;
    rig.wait_subscription("hook", "behind", PATIENCE, |s| {
        s["behind"].as_u64().unwrap_or(0) > 0
    })
    .await;
    rig.wait_captured("inventory").await;
    assert_eq!(receiver.received().len(), sent, "requests while disabled");
    assert_eq!(rig.subscription("hook").await["state"], "disabled");

    // WHEN an operator resumes it
    let done = rig.act("/admin/subscriptions/hook/resume", None).await;
    assert_eq!(done["action"], "resume", "{done:#}");

    // THEN delivery continues and nothing is lost (the refused event included)
    finish(&rig, &receiver, till, "webhook gone").await;
    let audit = rig.audit().await;
    assert_eq!(audit[0]["action"], "resume", "{audit:#?}");
    assert_eq!(audit[0]["actor"], "operator", "{audit:#?}");
    let metrics = rig.metrics().await;
    let line = r#"legacy_bridge_delivery_active{subscription="hook",sink="webhook"} 1"#;
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_kept_aside_and_replayed_by_an_operator() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    // GIVEN a receiver refusing every event of one record with 400, and a 2-step schedule
    const BAD: &str = "BAD01/S01";
    receiver.control(json!({"status": 200, "subjects": {BAD: 400}}));
    let rig = rig(
        &receiver,
        &format!("batch_size = 20\n{}", retry(&["100ms", "200ms"])),
    )
    .await;
    let seed = seed("LB_DELIVERY_SEED", "webhook dead letters");
    let till = TillThread::start(&rig.db.connection_string, seed, 6, (10, 50));

    // WHEN the bad record changes three times amid the till's writes
    wait_accepted(&receiver, 10).await;
    rig.db
        .exec(&sql::stock_insert("BAD01", "S01", 1, berlin_now()));
    for qty in [2, 3] {
        rig.wait_captured("inventory").await;
        rig.db
            .exec(&sql::stock_update("BAD01", "S01", qty, berlin_now()));
    }
    rig.wait_captured("inventory").await;
    wait_accepted(&receiver, accepted(&receiver.received()) + 30).await;
    let writes = till.stop();
    rig.wait_captured("inventory").await;

    // THEN its events land in the dead letters after three attempts each, in order, while
    // every other record's events arrive
    let outbox = rig.outbox().await;
    let (bad, good): (Vec<_>, Vec<_>) =
        outbox.iter().cloned().partition(|e| e.event.subject == BAD);
    assert_eq!(bad.len(), 3, "the bad record's events");
    let status = rig
        .wait_subscription("hook", "caught up with 3 dead letters", PATIENCE, |s| {
            caught_up(s) && s["dead_letters"] == 3
        })
        .await;
    assert_eq!(status["dead_lettered"], 3, "{status:#}");
    let received = receiver.received();
    let (bad_requests, good_requests): (Vec<Received>, Vec<Received>) = received
        .iter()
        .cloned()
        .partition(|r| r.subject.as_deref() == Some(BAD));
    check_arrivals(&good, &good_requests, Order::Strict)
        .unwrap_or_else(|why| panic!("{why}\n{}", show_received(&good_requests, 60)));
    let bad_seqs: Vec<u64> = bad.iter().map(|e| e.seq).collect();
    let tried: Vec<u64> = bad_requests.iter().map(seq_of).collect();
    let expected: Vec<u64> = bad_seqs.iter().flat_map(|s| [*s; 3]).collect();
    assert_eq!(
        tried, expected,
        "three attempts per bad event, in seq order"
    );
    assert!(bad_requests.iter().all(|r| r.status == 400 && r.verified));

    let page = rig
        .admin_json("/admin/subscriptions/hook/dead-letters")
        .await;
    let letters = page["dead_letters"].as_array().expect("dead letters");
    let listed: Vec<u64> = letters.iter().filter_map(|d| d["seq"].as_u64()).collect();
    assert_eq!(listed, bad_seqs, "{page:#}");
    for (letter, event) in letters.iter().zip(&bad) {
        assert_eq!(letter["attempts"], 3, "{letter:#}");
        assert_eq!(letter["reason"], "HTTP 400 Bad Request", "{letter:#}");
        assert_eq!(letter["event_id"], event.event.id.as_str(), "{letter:#}");
        assert_eq!(letter["subject"], BAD, "{letter:#}");
    }
    assert!(page["next_after"].is_null(), "{page:#}");

    // WHEN the receiver is fixed and an operator replays one dead letter, then the rest
    receiver.set_status(200, None, None);
    let one = rig
        .act(
            &format!(
                "/admin/subscriptions/hook/dead-letters/{}/replay",
                bad_seqs[0]
            ),
            None,
        )
        .await;
    assert_eq!(one["affected"], 1, "{one:#}");
    let rest = rig
        .act("/admin/subscriptions/hook/dead-letters/replay", None)
        .await;
    assert_eq!(rest["affected"], 2, "{rest:#}");

    // THEN they are delivered with their ids, in order, and the dead letters are empty
    let status = rig
        .wait_subscription("hook", "replayed", PATIENCE, |s| {
            caught_up(s) && s["dead_letters"] == 0
        })
        .await;
    let received = receiver.received();
    let replayed: Vec<&Received> = received
        .iter()
        .filter(|r| r.subject.as_deref() == Some(BAD) && r.status == 200)
        .collect();
    assert_eq!(
        replayed.iter().map(|r| seq_of(r)).collect::<Vec<_>>(),
        bad_seqs,
        "{status:#}"
    );
    for (r, event) in replayed.iter().zip(&bad) {
        assert_eq!(r.webhook_id.as_deref(), Some(event.event.id.as_str()));
        assert!(r.verified);
    }
    let page = rig
        .admin_json("/admin/subscriptions/hook/dead-letters")
        .await;
    assert_eq!(page["dead_letters"], json!([]), "{page:#}");

    // AND the audit log says who replayed what
    let audit = rig.audit().await;
    let replays: Vec<&serde_json::Value> =
        audit.iter().filter(|e| e["action"] == "replay").collect();
    assert_eq!(replays.len(), 2, "{audit:#?}");
    assert!(
        replays
            .iter()
            .all(|e| e["actor"] == "operator" && e["subscription"] == "hook"),
        "{audit:#?}"
    );
    // Newest first.
    assert_eq!(
        replays[1]["detail"]["seqs"],
        json!([bad_seqs[0]]),
        "{audit:#?}"
    );
    assert_eq!(
        replays[0]["detail"]["seqs"],
        json!(bad_seqs[1..]),
        "{audit:#?}"
    );
    eprintln!(
        "webhook dead letters: {writes} writes, {} events, {} requests",
        outbox.len(),
        received.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_delivers_everything_again_dead_letters_included() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    // GIVEN two dead letters of a record the receiver refused (one retry each)
    const BAD: &str = "BAD02/S01";
    receiver.control(json!({"status": 200, "subjects": {BAD: 400}}));
    let rig = rig(
        &receiver,
        &format!("batch_size = 20\n{}", retry(&["100ms"])),
    )
    .await;
    let seed = seed("LB_DELIVERY_SEED", "webhook rewind");
    let mut till = Till::new(&rig.db.connection_string, seed, 6);
    for _ in 0..40 {
        till.step();
    }
    rig.db
        .exec(&sql::stock_insert("BAD02", "S01", 1, berlin_now()));
    rig.wait_captured("inventory").await;
    rig.db
        .exec(&sql::stock_update("BAD02", "S01", 2, berlin_now()));
    for _ in 0..20 {
        till.step();
    }
    rig.wait_captured("inventory").await;
    rig.wait_subscription("hook", "caught up with 2 dead letters", PATIENCE, |s| {
        caught_up(s) && s["dead_letters"] == 2
    })
    .await;

    // WHEN the receiver is fixed and an operator rewinds to 0
    receiver.set_status(200, None, None);
    let before = receiver.received().len();
    rig.act(
        "/admin/subscriptions/hook/rewind",
        Some(&json!({"seq": 0}).to_string()),
    )
    .await;

    // THEN every event arrives again, in order per record, the dead ones included, and
    // they are no longer dead letters (a later replay would send them after newer events)
    let status = rig.wait_caught_up("hook").await;
    let outbox = rig.outbox().await;
    let again: Vec<Received> = receiver.received()[before..].to_vec();
    check_arrivals(&outbox, &again, Order::Strict)
        .unwrap_or_else(|why| panic!("{why}\n{}", show_received(&again, 60)));
    assert_eq!(status["dead_letters"], 0, "{status:#}");
    let page = rig
        .admin_json("/admin/subscriptions/hook/dead-letters")
        .await;
    assert_eq!(page["dead_letters"], json!([]), "{page:#}");
}
