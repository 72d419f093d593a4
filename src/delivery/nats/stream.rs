//! Start-up of the NATS sink: connecting (credentials, client name, one attempt so a down
//! server answers quickly) and making sure the JetStream stream exists and captures
//! `<prefix>.>`.

use std::time::Duration;

use async_nats::jetstream::context::{
    ContextBuilder, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind,
};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event, ServerAddr};

use super::publish::PIPELINE_WINDOW;
use super::subject::covers;
use crate::config::{NatsSinkConfig, redact_url};
use crate::delivery::SinkError;

/// The longest pause between reconnect attempts (the client's own default grows to 4 s): a
/// restarted server is found again within a second, inside a delivery's ack timeout.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A connected client and its JetStream context.
#[derive(Clone)]
pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) jetstream: jetstream::Context,
}

/// Connects and checks (or creates) the stream. Every wait is bounded by `ack_timeout_ms`.
pub(super) async fn start(
    subscription: &str,
    config: &NatsSinkConfig,
) -> Result<Connection, SinkError> {
    let timeout = Duration::from_millis(config.ack_timeout_ms);
    // async-nats builds its TLS config with the process default provider.
    crate::tls::install_crypto_provider();
    let client = connect(subscription, config, timeout).await?;
    let jetstream = ContextBuilder::new()
        .timeout(timeout)
        // Acks of publishes given up on (a cancelled delivery) free their slot this soon.
        .ack_timeout(timeout)
        // Twice the pipeline window, so a delivery never waits for a slot of its own.
        .max_ack_inflight(2 * PIPELINE_WINDOW)
        .backpressure_on_inflight(true)
        .build(client.clone());
    ensure_stream(&jetstream, config).await?;
    Ok(Connection { client, jetstream })
}

async fn connect(
    subscription: &str,
    config: &NatsSinkConfig,
    timeout: Duration,
) -> Result<Client, SinkError> {
    let servers = config
        .url
        .split(',')
        .map(|url| url.trim().parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            SinkError::Misconfigured(format!(
                "nats url {} is not valid: {e}",
                redact_url(&config.url)
            ))
        })?;
    let options = match &config.credentials_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
                SinkError::Misconfigured(format!(
                    "cannot read nats credentials file {}: {e}",
                    path.display()
                ))
            })?,
        None => ConnectOptions::new(),
    };
    let name = subscription.to_owned();
    // Initial connect is tried once (no `retry_on_initial_connect`): a down server makes
    // start-up fail fast and the dispatcher retries it. Once connected, the client
    // reconnects by itself.
    let client = options
        .name(format!("legacy-bridge/{subscription}"))
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(move |event| {
            let subscription = name.clone();
            async move {
                match event {
                    Event::Disconnected => {
                        tracing::warn!(subscription, "nats connection lost, reconnecting")
                    }
                    Event::Connected => tracing::info!(subscription, "nats connected"),
                    other => tracing::debug!(subscription, event = %other, "nats client event"),
                }
            }
        })
        .connect(servers.as_slice())
        .await
        .map_err(|e| {
            let reason = format!("cannot connect to nats at {}: {e}", redact_url(&config.url));
            match e.kind() {
                ConnectErrorKind::AuthorizationViolation
                | ConnectErrorKind::Authentication
                | ConnectErrorKind::ServerParse
                | ConnectErrorKind::Tls => SinkError::Misconfigured(reason),
                ConnectErrorKind::Dns
                | ConnectErrorKind::TimedOut
                | ConnectErrorKind::Io
                | ConnectErrorKind::MaxReconnects => SinkError::Unavailable(reason),
            }
        })?;
    Ok(client)
}

/// 0 ms, then 10 ms doubling up to [`MAX_RECONNECT_DELAY`].
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    (Duration::from_millis(10) * 2u32.pow(exponent)).min(MAX_RECONNECT_DELAY)
}

/// The stream exists (created when missing and allowed) and captures `<prefix>.>`.
async fn ensure_stream(js: &jetstream::Context, config: &NatsSinkConfig) -> Result<(), SinkError> {
    let wanted = format!("{}.>", config.subject_prefix);
    let name = &config.stream;
    match js.get_stream(name).await {
        Ok(stream) => return check_subjects(name, &stream.cached_info().config.subjects, &wanted),
        Err(e) if !is_not_found(&e) => return Err(get_stream_error(name, &e)),
        Err(_) if !config.create_stream => {
            return Err(SinkError::Misconfigured(format!(
                "stream {name} does not exist and create_stream is false"
            )));
        }
        Err(_) => {}
    }
    let created = js
        .create_stream(StreamConfig {
            name: name.clone(),
            subjects: vec![wanted.clone()],
            duplicate_window: Duration::from_millis(config.duplicate_window_ms),
            storage: StorageType::File,
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => {
            tracing::info!(stream = %name, subjects = %wanted, "nats stream created");
            Ok(())
        }
        Err(e) => match e.kind() {
            // Created by another instance meanwhile: check that one.
            CreateStreamErrorKind::JetStream(err)
                if err.error_code() == ErrorCode::STREAM_NAME_EXIST =>
            {
                let stream = js
                    .get_stream(name)
                    .await
                    .map_err(|e| get_stream_error(name, &e))?;
                check_subjects(name, &stream.cached_info().config.subjects, &wanted)
            }
            CreateStreamErrorKind::JetStream(err) => Err(SinkError::Misconfigured(format!(
                "cannot create stream {name} with subjects {wanted}: {err}"
            ))),
            CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => Err(
                SinkError::Unavailable(format!("cannot create stream {name}: {e}")),
            ),
            _ => Err(SinkError::Misconfigured(format!(
                "cannot create stream {name}: {e}"
            ))),
        },
    }
}

fn is_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(err) if err.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn get_stream_error(name: &str, e: &GetStreamError) -> SinkError {
    match e.kind() {
        GetStreamErrorKind::Request => SinkError::Unavailable(format!(
            "jetstream did not answer for stream {name} (is jetstream enabled on the server?): {e}"
        )),
        GetStreamErrorKind::JetStream(err)
            if err.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
                || err.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
        {
            SinkError::Misconfigured(format!("cannot use stream {name}: {err}"))
        }
        GetStreamErrorKind::JetStream(err) => {
            SinkError::Unavailable(format!("cannot look up stream {name}: {err}"))
        }
        _ => SinkError::Misconfigured(format!("cannot look up stream {name}: {e}")),
    }
}

/// An existing stream must capture every subject the sink publishes to.
fn check_subjects(name: &str, subjects: &[String], wanted: &str) -> Result<(), SinkError> {
    if subjects.iter().any(|s| covers(s, wanted)) {
        Ok(())
    } else {
        Err(SinkError::Misconfigured(format!(
            "stream {name} has subjects [{}], which do not capture {wanted}",
            subjects.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_to_a_second() {
        let delays: Vec<u128> = (0..12).map(|a| reconnect_delay(a).as_millis()).collect();
        assert_eq!(
            delays,
            [0, 0, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]
        );
        assert_eq!(reconnect_delay(usize::MAX), MAX_RECONNECT_DELAY);
    }

    fn config(url: &str) -> NatsSinkConfig {
        NatsSinkConfig {
            url: url.into(),
            subject_prefix: "legacy".into(),
            stream: "LEGACY_BRIDGE".into(),
            create_stream: true,
            duplicate_window_ms: 120_000,
            ack_timeout_ms: 1_000,
            credentials_file: None,
        }
    }

    #[tokio::test]
    async fn bad_url_or_credentials_file_is_misconfigured_before_connecting() {
        let mut cfg = config("nats://u:hunter2@127.0.0.1:1");
        cfg.credentials_file = Some("/nonexistent/bridge.creds".into());
        match start("s", &cfg).await {
            Err(SinkError::Misconfigured(reason)) => {
                assert!(reason.contains("/nonexistent/bridge.creds"), "{reason}")
            }
            Err(other) => panic!("expected Misconfigured, got {other:?}"),
            Ok(_) => panic!("expected Misconfigured, got a connection"),
        }
        match start("s", &config("nats://u:hunter2@[::1")).await {
            Err(SinkError::Misconfigured(reason)) => {
                assert!(!reason.contains("hunter2"), "{reason}");
                assert!(reason.contains("<redacted>"), "{reason}");
            }
            Err(other) => panic!("expected Misconfigured, got {other:?}"),
            Ok(_) => panic!("expected Misconfigured, got a connection"),
        }
    }

    #[test]
    fn existing_stream_must_capture_the_prefix() {
        assert!(check_subjects("S", &["legacy.>".into()], "legacy.>").is_ok());
        assert!(check_subjects("S", &["x".into(), ">".into()], "legacy.>").is_ok());
        let err = check_subjects("S", &["orders.>".into(), "legacy.*".into()], "legacy.>")
            .expect_err("misconfigured");
        assert!(matches!(err, SinkError::Misconfigured(_)));
        assert_eq!(
            err.to_string(),
            "stream S has subjects [orders.>, legacy.*], which do not capture legacy.>"
        );
    }
}
