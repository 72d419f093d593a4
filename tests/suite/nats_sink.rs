//! The NATS JetStream sink against a real nats-server of each test's own: the stream it
//! creates or refuses, what it stores (subject, `Nats-Msg-Id`, CloudEvent), de-duplication of
//! redelivered events, and outages (server frozen, killed and restarted, stream deleted)
//! answered with throttle failures within the ack timeout, never a hang.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use legacy_bridge::config::NatsSinkConfig;
use legacy_bridge::delivery::nats::NatsSink;
use legacy_bridge::delivery::{Outcome, Sink, SinkError};
use legacy_bridge::model::{ChangeOp, NewEvent, StoredEvent, event_type};

use super::nats_server::NatsServer;

fn config(url: &str, ack_timeout_ms: u64) -> NatsSinkConfig {
    NatsSinkConfig {
        url: url.to_owned(),
        subject_prefix: "legacy".into(),
        stream: "LEGACY_BRIDGE".into(),
        create_stream: true,
        duplicate_window_ms: 120_000,
        ack_timeout_ms,
        credentials_file: None,
    }
}

/// Events `seqs`, one per record, cycling through three resources and ops.
fn events(seqs: std::ops::Range<u64>) -> Vec<StoredEvent> {
    seqs.map(|seq| {
        let (resource, op) = match seq % 3 {
            0 => ("inventory", ChangeOp::Updated),
            1 => ("prices", ChangeOp::Created),
            _ => ("products", ChangeOp::Deleted),
        };
        let key = format!("A{seq:05}/MAIN");
        StoredEvent {
            seq,
            event: NewEvent {
                id: format!("{:032x}", u128::from(seq) * 0x9e37_79b9_7f4a_7c15),
                resource: resource.into(),
                source: format!("/sources/pos/{resource}"),
                event_type: event_type(resource, op),
                subject: key.clone(),
                time: DateTime::from_timestamp(1_700_000_000 + seq as i64, 0)
                    .unwrap_or_else(Utc::now),
                data: serde_json::json!({
                    "op": op.as_str(),
                    "origin": "capture",
                    "key": {"sku": key},
                    "before": {"sku": key, "qty": 3, "price": "19.90"},
                    "after": {"sku": key, "qty": 2, "price": "19.90"},
                    "changed": ["qty"],
                    "position": {"cursor": seq},
                }),
            },
        }
    })
    .collect()
}

async fn admin(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("admin connect"))
}

async fn stored_count(url: &str, name: &str) -> u64 {
    let mut stream = admin(url).await.get_stream(name).await.expect("stream");
    stream.info().await.expect("stream info").state.messages
}

fn assert_all_delivered(outcomes: &[Outcome], len: usize) {
    assert_eq!(outcomes.len(), len);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
}

fn assert_all_throttled(outcomes: &[Outcome], len: usize) {
    assert_eq!(outcomes.len(), len);
    for outcome in outcomes {
        match outcome {
            Outcome::Retry(f) => assert!(f.throttle, "{f:?}"),
            other => panic!("expected a throttle failure, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_the_stream_and_stores_cloudevents_by_id() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut cfg = config(&server.url(), 5_000);
    cfg.subject_prefix = "acme.pos".into();
    cfg.stream = "LB_TEST".into();
    cfg.duplicate_window_ms = 60_000;
    let sink = NatsSink::new("bus", &cfg);
    sink.startup().await.expect("startup");

    let js = admin(&server.url()).await;
    let mut stream = js.get_stream("LB_TEST").await.expect("stream created");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.subjects, vec!["acme.pos.>".to_owned()]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(60));
    assert_eq!(info.config.storage, stream::StorageType::File);

    let batch = events(1..4);
    assert_all_delivered(&sink.deliver(&batch).await, 3);
    let stored = stream.get_raw_message(1).await.expect("first message");
    assert_eq!(stored.subject.as_str(), "acme.pos.prices.created");
    assert_eq!(
        stored
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned()),
        Some(batch[0].event.id.clone())
    );
    // The payload is the CloudEvent, byte for byte as its `Value` form serializes.
    let expected = serde_json::to_vec(&batch[0].to_cloudevent()).expect("json");
    assert_eq!(stored.payload.as_ref(), expected.as_slice());
    let third = stream.get_raw_message(3).await.expect("third message");
    assert_eq!(third.subject.as_str(), "acme.pos.inventory.updated");

    // A second start finds the stream it made and accepts it.
    sink.startup()
        .await
        .expect("startup on the existing stream");
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_stream_with_other_subjects_is_misconfigured() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    admin(&server.url())
        .await
        .create_stream(stream::Config {
            name: "LEGACY_BRIDGE".into(),
            subjects: vec!["orders.>".into(), "legacy.inventory.*".into()],
            ..Default::default()
        })
        .await
        .expect("create other stream");
    let sink = NatsSink::new("bus", &config(&server.url(), 5_000));
    match sink.startup().await {
        Err(SinkError::Misconfigured(reason)) => {
            assert!(reason.contains("LEGACY_BRIDGE"), "{reason}");
            assert!(reason.contains("orders.>, legacy.inventory.*"), "{reason}");
            assert!(reason.contains("legacy.>"), "{reason}");
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stream_without_create_stream_is_misconfigured() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut cfg = config(&server.url(), 5_000);
    cfg.create_stream = false;
    let sink = NatsSink::new("bus", &cfg);
    match sink.startup().await {
        Err(SinkError::Misconfigured(reason)) => {
            assert!(reason.contains("LEGACY_BRIDGE"), "{reason}");
            assert!(reason.contains("create_stream"), "{reason}");
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    assert!(
        admin(&server.url())
            .await
            .get_stream("LEGACY_BRIDGE")
            .await
            .is_err(),
        "the stream must not have been created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_server_at_startup_is_unavailable_then_started_lazily() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    server.stop();
    let sink = NatsSink::new("bus", &config(&server.url(), 2_000));
    let started = Instant::now();
    match sink.startup().await {
        Err(SinkError::Unavailable(reason)) => assert!(reason.contains("127.0.0.1"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "startup waited");

    // A delivery with no connection tries to start, and fails the batch as a whole.
    let batch = events(1..11);
    assert_all_throttled(&sink.deliver(&batch).await, 10);

    server.restart();
    assert_all_delivered(&sink.deliver(&batch).await, 10);
    assert_eq!(stored_count(&server.url(), "LEGACY_BRIDGE").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_are_stored_once() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let sink = NatsSink::new("bus", &config(&server.url(), 5_000));
    sink.startup().await.expect("startup");
    let batch = events(1..201);
    assert_all_delivered(&sink.deliver(&batch).await, 200);
    // The same batch again (a crash before the cursor was stored): acked as duplicates.
    assert_all_delivered(&sink.deliver(&batch).await, 200);
    // Overlapping: half old, half new.
    assert_all_delivered(&sink.deliver(&events(101..301)).await, 200);
    assert_eq!(stored_count(&server.url(), "LEGACY_BRIDGE").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_gives_throttle_failures_within_the_timeout() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let sink = NatsSink::new("bus", &config(&server.url(), 1_000));
    sink.startup().await.expect("startup");
    assert_all_delivered(&sink.deliver(&events(1..51)).await, 50);

    // GIVEN a server that keeps the connection open but answers nothing
    server.freeze();
    // WHEN a batch is delivered
    let batch = events(51..151);
    let started = Instant::now();
    let outcomes = sink.deliver(&batch).await;
    let took = started.elapsed();
    server.thaw();
    // THEN every event fails as a throttle, about one ack timeout later (not one per event,
    // which would be 100 s; the bound leaves room for a loaded machine)
    assert_all_throttled(&outcomes, 100);
    assert!(took < Duration::from_millis(5_000), "took {took:?}");
    assert!(took >= Duration::from_millis(900), "took {took:?}");
    let Outcome::Retry(first) = &outcomes[0] else {
        unreachable!()
    };
    assert!(first.reason.contains("1000 ms"), "{}", first.reason);

    // The frozen publishes reach the stream once it runs again; the retry is de-duplicated.
    assert_all_delivered(&sink.deliver(&batch).await, 100);
    assert_eq!(stored_count(&server.url(), "LEGACY_BRIDGE").await, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_server_loses_and_doubles_nothing() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let sink = NatsSink::new("bus", &config(&server.url(), 2_000));
    sink.startup().await.expect("startup");
    let first = events(1..101);
    assert_all_delivered(&sink.deliver(&first).await, 100);

    // GIVEN the server is killed mid-stream
    server.stop();
    let second = events(101..201);
    let started = Instant::now();
    let outcomes = sink.deliver(&second).await;
    // THEN the delivery fails as a throttle within the ack timeout, not hanging
    assert_all_throttled(&outcomes, 100);
    assert!(
        started.elapsed() < Duration::from_millis(6_000),
        "took {:?}",
        started.elapsed()
    );

    // WHEN it comes back with its store
    server.restart();
    // THEN the next delivery succeeds, and redelivering the first batch stores nothing twice
    assert_all_delivered(&sink.deliver(&second).await, 100);
    assert_all_delivered(&sink.deliver(&first).await, 100);
    assert_eq!(stored_count(&server.url(), "LEGACY_BRIDGE").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_stream_is_created_again_on_the_next_delivery() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let sink = NatsSink::new("bus", &config(&server.url(), 2_000));
    sink.startup().await.expect("startup");
    assert_all_delivered(&sink.deliver(&events(1..11)).await, 10);

    admin(&server.url())
        .await
        .delete_stream("LEGACY_BRIDGE")
        .await
        .expect("delete stream");
    let batch = events(11..21);
    let outcomes = sink.deliver(&batch).await;
    assert_all_throttled(&outcomes, 10);
    let Outcome::Retry(first) = &outcomes[0] else {
        unreachable!()
    };
    assert!(first.reason.contains("no responders"), "{}", first.reason);

    assert_all_delivered(&sink.deliver(&batch).await, 10);
    assert_eq!(stored_count(&server.url(), "LEGACY_BRIDGE").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_fails_events_not_the_endpoint() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    admin(&server.url())
        .await
        .create_stream(stream::Config {
            name: "LEGACY_BRIDGE".into(),
            subjects: vec!["legacy.>".into()],
            max_messages: 5,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .expect("create small stream");
    let sink = NatsSink::new("bus", &config(&server.url(), 5_000));
    sink.startup().await.expect("startup");
    let outcomes = sink.deliver(&events(1..9)).await;
    assert_all_delivered(&outcomes[..5], 5);
    for outcome in &outcomes[5..] {
        match outcome {
            Outcome::Retry(f) => {
                assert!(!f.throttle, "{f:?}");
                assert!(f.reason.contains("jetstream refused"), "{}", f.reason);
            }
            other => panic!("expected an event failure, got {other:?}"),
        }
    }
}
