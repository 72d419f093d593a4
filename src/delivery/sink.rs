//! The contract between the dispatcher and a sink: what a sink is handed, what it answers,
//! and which answers let a subscription's cursor move.

use std::time::Duration;

use async_trait::async_trait;

use crate::model::StoredEvent;

/// What became of one event handed to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sink acknowledged it durably (2xx, JetStream publish ack, replica commit): the
    /// event counts as delivered and is never handed again unless an operator rewinds.
    Delivered,
    /// Not delivered this time; retried on the subscription's schedule, then dead-lettered.
    Retry(Failure),
    /// The endpoint says it will never take events again (HTTP 410 Gone): the subscription
    /// is disabled until an operator resumes it. Carries the reason shown to operators.
    Gone(String),
}

/// Why a delivery failed, and what the sink learnt about when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Shown to operators and logged: a status code, an error kind, a server message. Never
    /// the event's payload or a secret.
    pub reason: String,
    /// The endpoint asked for this delay (`Retry-After`); the dispatcher waits at least this
    /// long (capped by `retry.max_retry_after`).
    pub retry_after: Option<Duration>,
    /// The endpoint as a whole is overloaded or unreachable (HTTP 429/502/503/504, connection
    /// refused, timeout, server down), so the dispatcher holds back every key of the
    /// subscription until the delay is over, instead of failing them one by one.
    pub throttle: bool,
}

impl Failure {
    /// A failure of this event only (say HTTP 500 or 400).
    pub fn event(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
            throttle: false,
        }
    }

    /// A failure of the whole endpoint.
    pub fn endpoint(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry_after: None,
            throttle: true,
        }
    }
}

/// A sink failed to start (connect, create its stream or tables).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// May pass later (server down, network); the dispatcher retries start-up with backoff.
    #[error("{0}")]
    Unavailable(String),
    /// Needs an operator (a stream that exists with other subjects, a table of another
    /// shape, refused credentials); the subscription reports it and retries slowly.
    #[error("{0}")]
    Misconfigured(String),
}

/// A destination for change events.
///
/// Contract:
/// - **At least once.** The same event may be handed again (after a crash before the cursor
///   was stored, a retry, an operator's replay or rewind), always with the same `id` and
///   `seq`; a sink makes that harmless where it can (JetStream `Nats-Msg-Id`, the replica's
///   sequence guard, the `webhook-id` header receivers de-duplicate on).
/// - **A batch has at most one event per record** (`resource` + `subject`), in `seq` order;
///   the dispatcher hands a record's next event only after this one's outcome, which is how
///   per-record order holds. Events of a batch may be delivered concurrently or in one
///   transaction.
/// - **One outcome per event**, in the batch's order. Only [`Outcome::Delivered`] lets the
///   subscription's cursor pass an event; a sink must not answer it before the destination
///   acknowledged durably.
/// - `deliver` is called by one task per subscription, never concurrently with itself;
///   `startup` is called (and retried) before the first `deliver` and again after a
///   [`SinkError`], `shutdown` once at the end. Both default to doing nothing.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Connects, creates or checks what the sink needs (stream, schema, tables).
    async fn startup(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Delivers a batch; returns exactly one outcome per event, in order.
    async fn deliver(&self, batch: &[StoredEvent]) -> Vec<Outcome>;

    /// Flushes and closes connections.
    async fn shutdown(&self) {}
}
