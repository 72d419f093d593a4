//! Publishing one batch, pipelined: publishes go out without waiting, up to
//! [`PIPELINE_WINDOW`] in flight, and acks are awaited in batch order, each within the ack
//! timeout of its publish. The first endpoint-wide failure (timeout, no responders, lost
//! connection) stops sending; the rest of the batch fails with it, so a down server costs one
//! timeout per batch, not one per event.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::HeaderValue;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, publish::PublishAck};
use tokio::time::{Instant, timeout_at};

use super::subject::SubjectCache;
use crate::delivery::{Failure, Outcome};
use crate::model::StoredEvent;

/// Publishes in flight at once; past it, the oldest ack is awaited before the next publish.
pub(super) const PIPELINE_WINDOW: usize = 1024;

/// What became of a batch.
pub(super) struct BatchReport {
    /// One per event, in batch order.
    pub(super) outcomes: Vec<Outcome>,
    /// No stream answered (deleted, or JetStream restarted without it): start-up should run
    /// again to create or check the stream.
    pub(super) restart: bool,
}

/// An event of the batch: published and awaiting its ack, or already answered.
enum Slot {
    Sent {
        deadline: Instant,
        ack: PublishAckFuture,
    },
    Done(Outcome),
}

/// Publishes `batch` to `js`; see the module doc.
pub(super) async fn publish_batch(
    js: &jetstream::Context,
    prefix: &str,
    ack_timeout: Duration,
    batch: &[StoredEvent],
) -> BatchReport {
    let mut run = Run {
        outcomes: Vec::with_capacity(batch.len()),
        tripped: None,
        restart: false,
        ack_timeout,
    };
    let mut pending: VecDeque<Slot> = VecDeque::with_capacity(batch.len().min(PIPELINE_WINDOW));
    let mut subjects = SubjectCache::new(prefix);
    for stored in batch {
        if pending.len() >= PIPELINE_WINDOW
            && let Some(slot) = pending.pop_front()
        {
            run.settle(slot).await;
        }
        let slot = match &run.tripped {
            Some(reason) => Slot::Done(Outcome::Retry(Failure::endpoint(format!(
                "not sent: {reason}"
            )))),
            None => match send(js, &mut subjects, stored, ack_timeout).await {
                Ok(slot) => slot,
                Err(failure) => {
                    if failure.throttle {
                        run.tripped = Some(failure.reason.clone());
                    }
                    Slot::Done(Outcome::Retry(failure))
                }
            },
        };
        pending.push_back(slot);
    }
    while let Some(slot) = pending.pop_front() {
        run.settle(slot).await;
    }
    BatchReport {
        outcomes: run.outcomes,
        restart: run.restart,
    }
}

/// The state of one batch's publishing.
struct Run {
    outcomes: Vec<Outcome>,
    /// The first endpoint-wide failure; nothing more is sent once it is set.
    tripped: Option<String>,
    restart: bool,
    ack_timeout: Duration,
}

impl Run {
    /// Awaits a slot's ack (within its deadline) and records its outcome.
    async fn settle(&mut self, slot: Slot) {
        let outcome = match slot {
            Slot::Done(outcome) => outcome,
            Slot::Sent { deadline, ack } => {
                let answer = timeout_at(deadline, ack.into_future()).await;
                let (outcome, restart) = ack_outcome(answer.ok(), self.ack_timeout);
                self.restart |= restart;
                outcome
            }
        };
        if let Outcome::Retry(failure) = &outcome
            && failure.throttle
            && self.tripped.is_none()
        {
            self.tripped = Some(failure.reason.clone());
        }
        self.outcomes.push(outcome);
    }
}

/// Publishes one event without waiting for its ack.
async fn send<'a>(
    js: &jetstream::Context,
    subjects: &mut SubjectCache<'a>,
    stored: &'a StoredEvent,
    ack_timeout: Duration,
) -> Result<Slot, Failure> {
    let subject = subjects.get(&stored.event).map_err(Failure::event)?;
    let id: HeaderValue = stored
        .event
        .id
        .parse()
        .map_err(|_| Failure::event("the event id is not a valid nats header value"))?;
    let payload = stored
        .cloudevent_json()
        .map_err(|e| Failure::event(format!("cannot encode the event as json: {e}")))?;
    let message = PublishMessage::build()
        .payload(payload.into())
        .header(NATS_MESSAGE_ID, id);
    // Only blocks when the client's outgoing queue is full (a lost connection).
    let sent = timeout_at(
        Instant::now() + ack_timeout,
        js.send_publish(subject, message),
    )
    .await;
    match sent {
        Ok(Ok(ack)) => Ok(Slot::Sent {
            deadline: Instant::now() + ack_timeout,
            ack,
        }),
        Ok(Err(e)) => Err(send_failure(&e, ack_timeout)),
        Err(_) => Err(Failure::endpoint(format!(
            "the nats client did not take the publish within {} ms (connection lost?)",
            ack_timeout.as_millis()
        ))),
    }
}

/// A publish refused before it was sent.
fn send_failure(e: &PublishError, ack_timeout: Duration) -> Failure {
    match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => {
            Failure::event(format!("the event is too large for the nats server: {e}"))
        }
        PublishErrorKind::TimedOut => Failure::endpoint(format!(
            "the nats client did not take the publish within {} ms (connection lost?)",
            ack_timeout.as_millis()
        )),
        _ => Failure::endpoint(format!("nats publish failed: {e}")),
    }
}

/// The outcome of an ack (`None`: none within the timeout), and whether the sink should run
/// start-up again.
fn ack_outcome(
    answer: Option<Result<PublishAck, PublishError>>,
    ack_timeout: Duration,
) -> (Outcome, bool) {
    let timed_out = || {
        Failure::endpoint(format!(
            "no jetstream ack within {} ms",
            ack_timeout.as_millis()
        ))
    };
    let failure = match answer {
        // A duplicate ack means the stream already holds this id: delivered all the same.
        Some(Ok(_ack)) => return (Outcome::Delivered, false),
        None => timed_out(),
        Some(Err(e)) => match e.kind() {
            PublishErrorKind::TimedOut => timed_out(),
            PublishErrorKind::StreamNotFound => {
                return (
                    Outcome::Retry(Failure::endpoint(
                        "no jetstream stream answered (no responders): the stream is gone or \
                         jetstream is down",
                    )),
                    true,
                );
            }
            PublishErrorKind::BrokenPipe => {
                Failure::endpoint("the nats connection was lost before the ack")
            }
            PublishErrorKind::MaxAckPending => {
                Failure::endpoint(format!("too many publishes awaiting acks: {e}"))
            }
            PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence
            | PublishErrorKind::Other => {
                Failure::event(format!("jetstream refused the event: {e}"))
            }
        },
    };
    (Outcome::Retry(failure), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(250);

    fn ack(duplicate: bool) -> PublishAck {
        let json = format!(r#"{{"stream":"S","seq":7,"duplicate":{duplicate}}}"#);
        serde_json::from_str(&json).expect("ack json")
    }

    fn err(kind: PublishErrorKind) -> Option<Result<PublishAck, PublishError>> {
        Some(Err(PublishError::new(kind)))
    }

    fn failure(outcome: Outcome) -> Failure {
        match outcome {
            Outcome::Retry(f) => f,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn acks_are_delivered_duplicates_too() {
        assert_eq!(
            ack_outcome(Some(Ok(ack(false))), T),
            (Outcome::Delivered, false)
        );
        assert_eq!(
            ack_outcome(Some(Ok(ack(true))), T),
            (Outcome::Delivered, false)
        );
    }

    #[test]
    fn endpoint_failures_throttle() {
        let (outcome, restart) = ack_outcome(None, T);
        let f = failure(outcome);
        assert!(f.throttle && !restart);
        assert_eq!(f.reason, "no jetstream ack within 250 ms");
        assert_eq!(f.retry_after, None);

        let f = failure(ack_outcome(err(PublishErrorKind::TimedOut), T).0);
        assert_eq!(f.reason, "no jetstream ack within 250 ms");

        let (outcome, restart) = ack_outcome(err(PublishErrorKind::StreamNotFound), T);
        let f = failure(outcome);
        assert!(f.throttle && restart, "{f:?}");
        assert!(f.reason.contains("no responders"), "{}", f.reason);

        for kind in [
            PublishErrorKind::BrokenPipe,
            PublishErrorKind::MaxAckPending,
        ] {
            let (outcome, restart) = ack_outcome(err(kind), T);
            assert!(failure(outcome).throttle && !restart);
        }
    }

    #[test]
    fn jetstream_errors_fail_the_event_only() {
        for kind in [
            PublishErrorKind::Other,
            PublishErrorKind::WrongLastMessageId,
            PublishErrorKind::WrongLastSequence,
            PublishErrorKind::MaxPayloadExceeded,
        ] {
            let (outcome, restart) = ack_outcome(err(kind), T);
            let f = failure(outcome);
            assert!(!f.throttle && !restart, "{f:?}");
            assert!(f.reason.starts_with("jetstream refused the event"));
        }
    }

    #[test]
    fn send_failures() {
        let f = send_failure(&PublishError::new(PublishErrorKind::MaxPayloadExceeded), T);
        assert!(!f.throttle);
        let f = send_failure(&PublishError::new(PublishErrorKind::TimedOut), T);
        assert!(f.throttle && f.reason.contains("250 ms"));
        let f = send_failure(&PublishError::new(PublishErrorKind::Other), T);
        assert!(f.throttle);
    }
}
