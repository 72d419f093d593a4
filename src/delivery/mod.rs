//! Delivery: moves outbox events to each subscription's sink (webhook, NATS JetStream,
//! PostgreSQL replica), at least once and in order per record, with retries, dead letters
//! and a durable cursor per subscription.

mod build;
mod dispatcher;
pub mod metrics;
pub mod nats;
pub mod postgres;
mod retry;
mod runtime;
mod sink;
mod stats;
mod status;
#[cfg(test)]
mod tests;
pub mod webhook;

pub use build::plan;
pub use dispatcher::SYSTEM_ACTOR;
pub use retry::RetryPolicy;
pub use runtime::{DeliveryHandle, DeliveryRuntime, Planned, SubscriptionHandle, filter_of};
pub use sink::{Failure, Outcome, Sink, SinkError};
pub use stats::{Counters, Live, SubscriptionStats};
pub use status::{SubscriptionStatus, statuses};
