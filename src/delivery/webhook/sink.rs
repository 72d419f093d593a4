//! The webhook [`Sink`]: one signed POST per event, up to `max_in_flight` at once, outcomes
//! in batch order. The client trusts the web PKI roots plus `ca_file`, follows no redirects
//! and bounds both connecting and the whole request.

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use futures::StreamExt as _;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use super::classify::{Transport, cause, status_outcome, transport_failure};
use super::sign::signature;
use crate::config::{WebhookSinkConfig, webhook_key};
use crate::delivery::{Failure, Outcome, Sink, SinkError};
use crate::model::StoredEvent;

/// The media type of a CloudEvent in structured JSON mode, the body of every request.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

const USER_AGENT: &str = concat!("legacy-bridge/", env!("CARGO_PKG_VERSION"));

/// Bytes of an answer's body read, then dropped: enough for a small answer to be read to
/// its end so the connection can be reused, without letting an endpoint stream at us.
const MAX_ANSWER_BODY: usize = 4 * 1024;

/// Delivers a subscription's events to one webhook endpoint, signed per Standard Webhooks so
/// the receiver can check they come from us and de-duplicate redeliveries on `webhook-id`.
pub struct WebhookSink {
    /// For logs.
    subscription: String,
    client: reqwest::Client,
    url: reqwest::Url,
    key: Vec<u8>,
    connect_timeout_ms: u64,
    timeout_ms: u64,
    max_in_flight: usize,
}

impl WebhookSink {
    /// Builds the HTTP client for `config`; fails as [`SinkError::Misconfigured`] on a bad
    /// secret or URL and on a `ca_file` that cannot be read or holds no certificate.
    pub fn new(subscription: &str, config: &WebhookSinkConfig) -> Result<WebhookSink, SinkError> {
        let key = webhook_key(&config.secret)
            .map_err(|reason| SinkError::Misconfigured(format!("webhook sink.secret: {reason}")))?;
        // `url::ParseError` names what is wrong, not the URL (which may carry a password).
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| SinkError::Misconfigured(format!("webhook sink.url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Misconfigured(
                "webhook sink.url: must be an http:// or https:// URL".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms));
        if let Some(path) = &config.ca_file {
            let at = format!("webhook sink.ca_file {}", path.display());
            let pem = std::fs::read(path)
                .map_err(|e| SinkError::Misconfigured(format!("{at}: cannot read: {e}")))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SinkError::Misconfigured(format!("{at}: not PEM certificates: {}", cause(&e)))
            })?;
            if certificates.is_empty() {
                return Err(SinkError::Misconfigured(format!(
                    "{at}: holds no PEM certificate"
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|e| {
            SinkError::Misconfigured(format!("webhook sink: HTTP client: {}", cause(&e)))
        })?;
        Ok(WebhookSink {
            subscription: subscription.to_owned(),
            client,
            url,
            key,
            connect_timeout_ms: config.connect_timeout_ms,
            timeout_ms: config.timeout_ms,
            max_in_flight: config.max_in_flight.max(1),
        })
    }

    async fn deliver_one(&self, stored: &StoredEvent) -> Outcome {
        let started = Instant::now();
        let outcome = self.attempt(stored).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Outcome::Delivered => tracing::debug!(
                subscription = %self.subscription,
                seq = stored.seq,
                event = %stored.event.id,
                elapsed_ms,
                "webhook delivered"
            ),
            Outcome::Retry(failure) => tracing::debug!(
                subscription = %self.subscription,
                seq = stored.seq,
                event = %stored.event.id,
                elapsed_ms,
                reason = %failure.reason,
                throttle = failure.throttle,
                "webhook delivery failed"
            ),
            Outcome::Gone(reason) => tracing::debug!(
                subscription = %self.subscription,
                seq = stored.seq,
                event = %stored.event.id,
                reason = %reason,
                "webhook endpoint is gone"
            ),
        }
        outcome
    }

    async fn attempt(&self, stored: &StoredEvent) -> Outcome {
        let body = match serde_json::to_vec(&stored.to_cloudevent()) {
            Ok(body) => body,
            Err(e) => return Outcome::Retry(Failure::event(format!("cannot encode event: {e}"))),
        };
        let id = &stored.event.id;
        let timestamp = unix_now();
        // Signed over exactly the bytes handed to the request below.
        let signature = signature(&self.key, id, timestamp, &body);
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, CLOUDEVENTS_JSON)
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .build();
        let request = match request {
            Ok(request) => request,
            // Only this event's headers can be at fault (the URL was checked in `new`).
            Err(e) => {
                return Outcome::Retry(Failure::event(format!(
                    "cannot build the request: {}",
                    cause(&e)
                )));
            }
        };
        match self.client.execute(request).await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                drain(&mut response).await;
                status_outcome(status, retry_after.as_deref(), SystemTime::now())
            }
            Err(e) => Outcome::Retry(transport_failure(
                Transport::of(&e),
                self.connect_timeout_ms,
                self.timeout_ms,
            )),
        }
    }
}

/// Reads and drops at most [`MAX_ANSWER_BODY`] bytes of an answer; errors do not matter,
/// the status has been read.
async fn drain(response: &mut reqwest::Response) {
    let mut read = 0;
    while read < MAX_ANSWER_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
}

/// Unix seconds now (0 on a clock before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[async_trait]
impl Sink for WebhookSink {
    /// One POST per event, [`WebhookSinkConfig::max_in_flight`] at a time; safe because a
    /// batch never holds two events of one record.
    async fn deliver(&self, batch: &[StoredEvent]) -> Vec<Outcome> {
        // The futures are made up front: a closure in the stream would not be `Send` for
        // every lifetime, which `async_trait` needs.
        let attempts: Vec<_> = batch
            .iter()
            .map(|stored| self.deliver_one(stored))
            .collect();
        futures::stream::iter(attempts)
            .buffered(self.max_in_flight)
            .collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebhookSinkConfig {
        WebhookSinkConfig {
            url: "https://user:hunter2@hooks.example/in".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            connect_timeout_ms: 1_000,
            timeout_ms: 2_000,
            max_in_flight: 4,
            ca_file: None,
        }
    }

    fn misconfigured(config: &WebhookSinkConfig) -> String {
        match WebhookSink::new("crm", config) {
            Err(SinkError::Misconfigured(reason)) => reason,
            Err(other) => panic!("misconfigured, not {other:?}"),
            Ok(_) => panic!("misconfigured, not built"),
        }
    }

    #[test]
    fn builds_from_a_valid_config() {
        assert!(WebhookSink::new("crm", &config()).is_ok());
    }

    #[test]
    fn bad_settings_are_misconfigurations_that_show_no_secret() {
        let mut bad = config();
        bad.secret = "whsec_!!".into();
        let reason = misconfigured(&bad);
        assert!(reason.contains("sink.secret"), "{reason}");

        let mut bad = config();
        bad.url = "ftp://user:hunter2@hooks.example/in".into();
        let reason = misconfigured(&bad);
        assert!(reason.contains("sink.url"), "{reason}");
        assert!(!reason.contains("hunter2"), "{reason}");

        let dir = tempfile::tempdir().unwrap();
        let mut bad = config();
        bad.ca_file = Some(dir.path().join("missing.pem"));
        let reason = misconfigured(&bad);
        assert!(reason.contains("missing.pem: cannot read"), "{reason}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        bad.ca_file = Some(empty);
        let reason = misconfigured(&bad);
        assert!(reason.contains("empty.pem"), "{reason}");
    }

    #[test]
    fn user_agent_names_the_version() {
        assert_eq!(
            USER_AGENT,
            format!("legacy-bridge/{}", env!("CARGO_PKG_VERSION"))
        );
    }
}
