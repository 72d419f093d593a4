//! Delivery: moves outbox events to each subscription's sink (webhook, NATS JetStream,
//! PostgreSQL replica), at least once and in order per record, with retries, dead letters
//! and a durable cursor per subscription.

pub mod nats;
pub mod postgres;
mod sink;
pub mod webhook;

pub use sink::{Failure, Outcome, Sink, SinkError};
