//! The webhook sink against a real Standard Webhooks receiver: signatures are checked by the
//! Python `standardwebhooks` package, not by our code, and each kind of answer (success,
//! failure, throttling, gone, down, slow, refused signature) maps to its outcome.

use std::time::{Duration, Instant};

use chrono::DateTime;
use legacy_bridge::config::WebhookSinkConfig;
use legacy_bridge::delivery::webhook::WebhookSink;
use legacy_bridge::delivery::{Failure, Outcome, Sink};
use legacy_bridge::model::{ChangeOp, NewEvent, StoredEvent, event_type};

use super::webhook_receiver::Receiver;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A valid secret that is not the receiver's.
const WRONG_SECRET: &str = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yZWNlaXZlcnM=";

fn event(seq: u64, subject: &str) -> StoredEvent {
    StoredEvent {
        seq,
        event: NewEvent {
            id: format!("evt_{seq:04}_{subject}"),
            resource: "inventory".into(),
            source: "/sources/pos/inventory".into(),
            event_type: event_type("inventory", ChangeOp::Updated),
            subject: subject.into(),
            time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            // Non-ASCII on purpose: the signature covers the exact UTF-8 bytes sent.
            data: serde_json::json!({
                "op": "updated",
                "after": {"sku": subject, "name": "Crème brûlée – 6×", "qty": seq},
            }),
        },
    }
}

fn sink_with(
    receiver: &Receiver,
    secret: &str,
    timeout_ms: u64,
    max_in_flight: usize,
) -> WebhookSink {
    let config = WebhookSinkConfig {
        url: receiver.url(),
        secret: secret.into(),
        connect_timeout_ms: 2_000,
        timeout_ms,
        max_in_flight,
        ca_file: None,
    };
    WebhookSink::new("test", &config).unwrap()
}

fn sink(receiver: &Receiver) -> WebhookSink {
    sink_with(receiver, SECRET, 5_000, 4)
}

fn retry(outcome: &Outcome) -> &Failure {
    match outcome {
        Outcome::Retry(failure) => failure,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[tokio::test]
async fn every_request_is_verified_by_standardwebhooks() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    let batch: Vec<_> = (1..=6).map(|seq| event(seq, &format!("A{seq}"))).collect();

    let outcomes = sink(&receiver).deliver(&batch).await;

    assert_eq!(outcomes, vec![Outcome::Delivered; 6]);
    let mut received = receiver.received();
    received.sort_by(|a, b| a.sequence.cmp(&b.sequence));
    assert_eq!(received.len(), 6, "{received:?}");
    for (got, sent) in received.iter().zip(&batch) {
        assert!(got.verified, "{got:?}");
        assert_eq!(got.status, 200);
        assert_eq!(got.webhook_id.as_deref(), Some(sent.event.id.as_str()));
        assert_eq!(got.id.as_deref(), Some(sent.event.id.as_str()));
        assert_eq!(got.subject.as_deref(), Some(sent.event.subject.as_str()));
        assert_eq!(got.event_type.as_deref(), Some("inventory.updated"));
        assert_eq!(got.sequence, Some(sent.seq.to_string()));
    }
}

#[tokio::test]
async fn a_failed_event_is_retried_with_the_same_webhook_id() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    let sink = sink(&receiver);
    let e = event(1, "A1");
    receiver.set_status(500, Some(1), None);

    let first = sink.deliver(std::slice::from_ref(&e)).await;
    let second = sink.deliver(std::slice::from_ref(&e)).await;

    assert_eq!(
        first,
        vec![Outcome::Retry(Failure::event(
            "HTTP 500 Internal Server Error"
        ))]
    );
    assert_eq!(second, vec![Outcome::Delivered]);
    let received = receiver.received();
    let statuses: Vec<_> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 200]);
    for r in &received {
        assert!(r.verified, "{r:?}");
        assert_eq!(r.webhook_id.as_deref(), Some(e.event.id.as_str()));
    }
}

#[tokio::test]
async fn unavailable_with_retry_after_holds_back_the_endpoint() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    receiver.set_status(503, Some(1), Some("7"));

    let outcomes = sink(&receiver).deliver(&[event(1, "A1")]).await;

    assert_eq!(
        outcomes,
        vec![Outcome::Retry(Failure {
            reason: "HTTP 503 Service Unavailable".into(),
            retry_after: Some(Duration::from_secs(7)),
            throttle: true,
        })]
    );
}

#[tokio::test]
async fn gone_is_reported() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    receiver.set_status(410, None, None);

    let outcomes = sink(&receiver).deliver(&[event(1, "A1")]).await;

    assert_eq!(
        outcomes,
        vec![Outcome::Gone("endpoint answered 410 Gone".into())]
    );
}

#[tokio::test]
async fn a_stopped_receiver_is_a_connect_failure_until_it_is_back() {
    let Some(mut receiver) = Receiver::start(SECRET) else {
        return;
    };
    let sink = sink(&receiver);
    let e = event(1, "A1");
    receiver.stop();

    let down = sink.deliver(std::slice::from_ref(&e)).await;
    receiver.restart();
    let back = sink.deliver(std::slice::from_ref(&e)).await;

    assert_eq!(
        down,
        vec![Outcome::Retry(Failure::endpoint(
            "connect: connection refused"
        ))]
    );
    assert_eq!(back, vec![Outcome::Delivered]);
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].verified);
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    receiver.control(serde_json::json!({"status": 200, "count": 1, "delay_ms": 3_000}));

    let outcomes = sink_with(&receiver, SECRET, 300, 4)
        .deliver(&[event(1, "A1")])
        .await;

    assert_eq!(
        outcomes,
        vec![Outcome::Retry(Failure::endpoint("timed out after 300 ms"))]
    );
}

#[tokio::test]
async fn the_receiver_refuses_a_wrong_signature() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };

    let outcomes = sink_with(&receiver, WRONG_SECRET, 5_000, 4)
        .deliver(&[event(1, "A1")])
        .await;

    assert_eq!(
        outcomes,
        vec![Outcome::Retry(Failure::event("HTTP 401 Unauthorized"))]
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(!received[0].verified);
    assert_eq!(received[0].status, 401);
}

#[tokio::test]
async fn at_most_max_in_flight_requests_run_at_once() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    receiver.control(serde_json::json!({"status": 200, "count": null, "delay_ms": 500}));
    let batch: Vec<_> = (1..=8).map(|seq| event(seq, &format!("A{seq}"))).collect();

    let started = Instant::now();
    let outcomes = sink_with(&receiver, SECRET, 5_000, 4).deliver(&batch).await;
    let elapsed = started.elapsed();

    assert_eq!(outcomes, vec![Outcome::Delivered; 8]);
    // 8 requests of 500 ms, 4 at a time: two rounds, so never faster than 1 s.
    assert!(elapsed >= Duration::from_millis(1_000), "{elapsed:?}");
    // How many ran at once is read from the receiver's arrival times, not from a wall-clock
    // bound a loaded machine could break: a request is in flight for 500 ms after it arrives,
    // so those arriving within 500 ms of one were all in flight at once.
    let arrivals: Vec<f64> = receiver.received().iter().map(|r| r.received_at).collect();
    let most_at_once = arrivals
        .iter()
        .map(|start| {
            arrivals
                .iter()
                .filter(|other| (*start..start + 0.5).contains(*other))
                .count()
        })
        .max();
    assert_eq!(most_at_once, Some(4), "arrivals: {arrivals:?}");
}

#[tokio::test]
async fn outcomes_keep_the_batch_order() {
    let Some(receiver) = Receiver::start(SECRET) else {
        return;
    };
    // The first event's answer is slow; the second fails at once (its id cannot be a header).
    receiver.control(serde_json::json!({"status": 200, "count": 1, "delay_ms": 500}));
    let mut bad = event(2, "A2");
    bad.event.id = "evt\nbroken".into();

    let outcomes = sink(&receiver).deliver(&[event(1, "A1"), bad]).await;

    assert_eq!(outcomes[0], Outcome::Delivered);
    let failure = retry(&outcomes[1]);
    assert!(
        failure.reason.starts_with("cannot build the request"),
        "{failure:?}"
    );
    assert!(!failure.throttle);
}
