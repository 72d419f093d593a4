//! Webhook sink: POSTs each event as a CloudEvents structured JSON body, signed per the
//! Standard Webhooks spec (`webhook-id`, `webhook-timestamp`, `webhook-signature`), and turns
//! the endpoint's answer into an [`Outcome`](crate::delivery::Outcome).
//!
//! `sign` is the signature scheme, `classify` the pure table from HTTP answers and transport
//! errors to outcomes, `sink` the HTTP client that ties them together.

mod classify;
mod sign;
mod sink;

pub use sink::{CLOUDEVENTS_JSON, WebhookSink};
