//! [`NatsSink`]: the [`Sink`] implementation, holding the connection between deliveries and
//! (re)starting it lazily when a delivery finds none.

use std::time::Duration;

use async_nats::connection::State;
use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::publish::publish_batch;
use super::stream::{Connection, start};
use crate::config::NatsSinkConfig;
use crate::delivery::{Failure, Outcome, Sink, SinkError};
use crate::model::StoredEvent;

/// How often a delivery checks whether a lost connection is back.
const RECONNECT_POLL: Duration = Duration::from_millis(25);

/// Publishes a subscription's events to a JetStream stream, de-duplicated by event id.
pub struct NatsSink {
    subscription: String,
    config: NatsSinkConfig,
    ack_timeout: Duration,
    /// `None` before start-up, and after a delivery found the stream gone.
    connection: Mutex<Option<Connection>>,
}

impl NatsSink {
    /// A sink for `subscription`; connects only in [`Sink::startup`] (or the first delivery).
    pub fn new(subscription: &str, config: &NatsSinkConfig) -> NatsSink {
        NatsSink {
            subscription: subscription.to_owned(),
            config: config.clone(),
            ack_timeout: Duration::from_millis(config.ack_timeout_ms),
            connection: Mutex::new(None),
        }
    }

    /// The connection to publish on: started when there is none, and given until the ack
    /// timeout to come back when the client is reconnecting.
    async fn connection(&self) -> Result<Connection, String> {
        let connection = {
            let mut slot = self.connection.lock().await;
            match slot.as_ref() {
                Some(connection) => connection.clone(),
                None => {
                    let connection = start(&self.subscription, &self.config)
                        .await
                        .map_err(|e| {
                            tracing::warn!(subscription = %self.subscription, error = %e, "nats sink cannot start");
                            e.to_string()
                        })?;
                    tracing::info!(subscription = %self.subscription, stream = %self.config.stream, "nats sink started");
                    slot.insert(connection).clone()
                }
            }
        };
        let deadline = Instant::now() + self.ack_timeout;
        while connection.client.connection_state() != State::Connected {
            if Instant::now() >= deadline {
                return Err(format!(
                    "not connected to the nats server for {} ms (the client keeps reconnecting)",
                    self.ack_timeout.as_millis()
                ));
            }
            tokio::time::sleep(RECONNECT_POLL).await;
        }
        Ok(connection)
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn startup(&self) -> Result<(), SinkError> {
        let connection = start(&self.subscription, &self.config).await?;
        tracing::info!(subscription = %self.subscription, stream = %self.config.stream, "nats sink started");
        *self.connection.lock().await = Some(connection);
        Ok(())
    }

    async fn deliver(&self, batch: &[StoredEvent]) -> Vec<Outcome> {
        if batch.is_empty() {
            return Vec::new();
        }
        let connection = match self.connection().await {
            Ok(connection) => connection,
            Err(reason) => {
                return batch
                    .iter()
                    .map(|_| Outcome::Retry(Failure::endpoint(reason.clone())))
                    .collect();
            }
        };
        let report = publish_batch(
            &connection.jetstream,
            &self.config.subject_prefix,
            self.ack_timeout,
            batch,
        )
        .await;
        if report.restart {
            tracing::warn!(subscription = %self.subscription, stream = %self.config.stream, "nats stream did not answer, start-up runs again on the next delivery");
            *self.connection.lock().await = None;
        }
        report.outcomes
    }

    async fn shutdown(&self) {
        let connection = self.connection.lock().await.take();
        if let Some(connection) = connection {
            // Every publish was awaited already; flushing is a courtesy, so bounded.
            let flushed = tokio::time::timeout(self.ack_timeout, connection.client.flush()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::debug!(subscription = %self.subscription, "nats flush at shutdown did not finish");
            }
        }
    }
}
