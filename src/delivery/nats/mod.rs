//! NATS JetStream sink: each change event is published to `<prefix>.<resource>.<op>` as
//! CloudEvents JSON with `Nats-Msg-Id` set to the event id, so the stream stores a redelivered
//! event once; an event counts as delivered only after the stream's publish ack.

mod publish;
mod sink;
mod stream;
mod subject;

pub use sink::NatsSink;
