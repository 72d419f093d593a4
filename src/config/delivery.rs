//! `[subscriptions.NAME]` of the deployment config: which events go to which sink, and how
//! delivery retries. Defaults are documented constants; [`validate_subscriptions`] checks
//! what can be checked without connecting (names, URLs, secrets' shape, schedules). Secrets
//! (`url`s with passwords, webhook secrets) are `${ENV_VAR}`-expanded at load and never
//! printed by `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::error::ConfigError;
use crate::model::ChangeOp;

/// Events read from the outbox per delivery round of one subscription.
pub const DEFAULT_DELIVERY_BATCH_SIZE: usize = 500;
/// The Standard Webhooks retry schedule: the delays before attempts 2 to 10 (the first
/// attempt is immediate), about 80 hours in all.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];
/// Each retry delay is moved by up to this share either way, so receivers coming back from an
/// outage are not hit by every subscription at the same instant.
pub const DEFAULT_RETRY_JITTER: f64 = 0.2;
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Webhook: time to open a connection (TCP + TLS).
pub const DEFAULT_WEBHOOK_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Webhook: time for the whole request, answer included (Standard Webhooks receivers are
/// expected to answer within 15 s).
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 15_000;
/// Webhook: concurrent requests per subscription (each to a different key).
pub const DEFAULT_WEBHOOK_MAX_IN_FLIGHT: usize = 8;
/// NATS: subjects are `<prefix>.<resource>.<op>`.
pub const DEFAULT_NATS_SUBJECT_PREFIX: &str = "legacy";
/// NATS: the JetStream stream events are stored in.
pub const DEFAULT_NATS_STREAM: &str = "LEGACY_BRIDGE";
/// NATS: JetStream de-duplicates a `Nats-Msg-Id` seen within this window (the server's own
/// default); a redelivery after a crash normally falls well inside it.
pub const DEFAULT_NATS_DUPLICATE_WINDOW_MS: u64 = 120_000;
/// NATS: how long a publish waits for the stream's acknowledgement.
pub const DEFAULT_NATS_ACK_TIMEOUT_MS: u64 = 5_000;
/// PostgreSQL replica: the schema replica tables are created in.
pub const DEFAULT_POSTGRES_SCHEMA: &str = "legacy_bridge";
/// PostgreSQL replica: time to connect, and for each statement.
pub const DEFAULT_POSTGRES_TIMEOUT_MS: u64 = 10_000;

/// `[subscriptions.NAME]`: a sink and the events it receives, with its own delivery cursor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionConfig {
    pub sink: SinkConfig,
    /// Only events of these resources (captured ones); all captured resources when empty.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Only these operations; all when empty.
    #[serde(default)]
    pub ops: Vec<ChangeOp>,
    /// Where a new subscription starts in the outbox.
    #[serde(default)]
    pub start: StartAt,
    /// See [`DEFAULT_DELIVERY_BATCH_SIZE`].
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// Where a subscription seen for the first time starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartAt {
    /// Every event still in the outbox (a replica wants the initial snapshot).
    #[default]
    Beginning,
    /// Only events committed after the subscription was first started.
    End,
}

/// `[subscriptions.NAME.retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delays before the 2nd, 3rd, ... attempt (`"5s"`, `"30m"`, `"2h"`); after the last one
    /// fails the event is dead-lettered. See [`DEFAULT_RETRY_SCHEDULE`].
    #[serde(default = "default_schedule", deserialize_with = "durations")]
    pub schedule: Vec<Duration>,
    /// See [`DEFAULT_RETRY_JITTER`]; 0 to 1.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// See [`DEFAULT_MAX_RETRY_AFTER`].
    #[serde(default = "default_max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            schedule: default_schedule(),
            jitter: DEFAULT_RETRY_JITTER,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

/// Where a subscription's events go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkConfig {
    Webhook(WebhookSinkConfig),
    Nats(NatsSinkConfig),
    Postgres(PostgresSinkConfig),
}

impl SinkConfig {
    /// The spelling used in config, status and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Nats(_) => "nats",
            SinkConfig::Postgres(_) => "postgres",
        }
    }
}

/// A webhook endpoint, signed per Standard Webhooks.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// `http://` or `https://` URL events are POSTed to.
    pub url: String,
    /// `whsec_` + base64 of the signing key (Standard Webhooks); usually `${ENV_VAR}`.
    pub secret: String,
    #[serde(default = "default_webhook_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// See [`DEFAULT_WEBHOOK_MAX_IN_FLIGHT`].
    #[serde(default = "default_webhook_max_in_flight")]
    pub max_in_flight: usize,
    /// PEM file of extra CA certificates trusted for `https` (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for WebhookSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &"<redacted>")
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_in_flight", &self.max_in_flight)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A NATS server with JetStream.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// `nats://host:port` (comma-separated for a cluster); may carry `user:password@`.
    pub url: String,
    /// See [`DEFAULT_NATS_SUBJECT_PREFIX`].
    #[serde(default = "default_nats_subject_prefix")]
    pub subject_prefix: String,
    /// See [`DEFAULT_NATS_STREAM`].
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// Create the stream when missing (else it must exist); an existing stream is checked to
    /// capture `<prefix>.>` either way.
    #[serde(default = "default_true")]
    pub create_stream: bool,
    /// See [`DEFAULT_NATS_DUPLICATE_WINDOW_MS`]; used when the stream is created.
    #[serde(default = "default_nats_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
    /// See [`DEFAULT_NATS_ACK_TIMEOUT_MS`].
    #[serde(default = "default_nats_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// A `.creds` file (JWT + NKey) when the server wants one.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

impl fmt::Debug for NatsSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .field("create_stream", &self.create_stream)
            .field("duplicate_window_ms", &self.duplicate_window_ms)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// A PostgreSQL database kept as a replica: one table per resource.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user:password@host:port/db?sslmode=require`; usually `${ENV_VAR}`.
    pub url: String,
    /// See [`DEFAULT_POSTGRES_SCHEMA`]; created when missing.
    #[serde(default = "default_postgres_schema")]
    pub schema: String,
    /// See [`DEFAULT_POSTGRES_TIMEOUT_MS`].
    #[serde(default = "default_postgres_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM file of CA certificates trusted for TLS (else the system's web PKI roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for PostgresSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A URL without its `user:password@` part, for `Debug` and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}<redacted>@{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The signing key inside a `whsec_` secret.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("must start with `whsec_` (Standard Webhooks secret format)")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the part after `whsec_` is not base64")?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes; Standard Webhooks wants 24 to 64",
            key.len()
        ));
    }
    Ok(key)
}

/// Expands `${ENV_VAR}` in every sink's secrets and URLs.
pub fn expand_subscriptions(
    path: &Path,
    subscriptions: &mut indexmap::IndexMap<String, SubscriptionConfig>,
) -> Result<(), ConfigError> {
    let expand = |value: &mut String, at: String| -> Result<(), ConfigError> {
        *value = super::env::expand_env(value, |v| std::env::var(v).ok())
            .map_err(|reason| ConfigError::new(path, at, reason))?;
        Ok(())
    };
    for (name, sub) in subscriptions.iter_mut() {
        let at = format!("subscriptions.{name}.sink");
        match &mut sub.sink {
            SinkConfig::Webhook(w) => {
                expand(&mut w.url, format!("{at}.url"))?;
                expand(&mut w.secret, format!("{at}.secret"))?;
            }
            SinkConfig::Nats(n) => expand(&mut n.url, format!("{at}.url"))?,
            SinkConfig::Postgres(p) => expand(&mut p.url, format!("{at}.url"))?,
        }
    }
    Ok(())
}

/// Pure checks of every subscription; `captured` are the resources with change capture.
pub fn validate_subscriptions(
    path: &Path,
    subscriptions: &indexmap::IndexMap<String, SubscriptionConfig>,
    captured: &[&str],
) -> Result<(), ConfigError> {
    for (name, sub) in subscriptions {
        let at = format!("subscriptions.{name}");
        let err = |key: &str, reason: String| ConfigError::new(path, format!("{at}.{key}"), reason);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::new(
                path,
                at.clone(),
                "a subscription name uses only letters, digits, `_` and `-`",
            ));
        }
        if captured.is_empty() {
            return Err(ConfigError::new(
                path,
                at.clone(),
                "no resource has change capture, so there is nothing to deliver",
            ));
        }
        for resource in &sub.resources {
            if !captured.contains(&resource.as_str()) {
                return Err(err(
                    "resources",
                    format!(
                        "`{resource}` is not a captured resource (captured: {})",
                        captured.join(", ")
                    ),
                ));
            }
        }
        if sub.batch_size == 0 || sub.batch_size > 10_000 {
            return Err(err("batch_size", "must be between 1 and 10000".into()));
        }
        if !(0.0..=1.0).contains(&sub.retry.jitter) {
            return Err(err("retry.jitter", "must be between 0 and 1".into()));
        }
        if sub.retry.schedule.len() > 50 {
            return Err(err(
                "retry.schedule",
                "at most 50 retries; dead letters can be replayed later".into(),
            ));
        }
        validate_sink(&sub.sink).map_err(|(key, reason)| err(&key, reason))?;
    }
    Ok(())
}

fn validate_sink(sink: &SinkConfig) -> Result<(), (String, String)> {
    let positive = |key: &str, value: u64| {
        if value == 0 {
            Err((format!("sink.{key}"), "must be at least 1".to_owned()))
        } else {
            Ok(())
        }
    };
    match sink {
        SinkConfig::Webhook(w) => {
            let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
            if !scheme_ok || w.url.parse::<axum::http::Uri>().is_err() {
                return Err((
                    "sink.url".into(),
                    "must be an http:// or https:// URL".into(),
                ));
            }
            webhook_key(&w.secret).map_err(|reason| ("sink.secret".to_owned(), reason))?;
            positive("connect_timeout_ms", w.connect_timeout_ms)?;
            positive("timeout_ms", w.timeout_ms)?;
            if w.max_in_flight == 0 || w.max_in_flight > 256 {
                return Err((
                    "sink.max_in_flight".into(),
                    "must be between 1 and 256".into(),
                ));
            }
        }
        SinkConfig::Nats(n) => {
            if n.url.trim().is_empty() {
                return Err(("sink.url".into(), "must not be empty".into()));
            }
            let token_ok = |s: &str| {
                !s.is_empty()
                    && s.split('.').all(|part| {
                        !part.is_empty()
                            && part
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    })
            };
            if !token_ok(&n.subject_prefix) {
                return Err((
                    "sink.subject_prefix".into(),
                    "must be dot-separated tokens of letters, digits, `_` and `-`".into(),
                ));
            }
            if n.stream.is_empty()
                || !n
                    .stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err((
                    "sink.stream".into(),
                    "a stream name uses only letters, digits, `_` and `-`".into(),
                ));
            }
            positive("duplicate_window_ms", n.duplicate_window_ms)?;
            positive("ack_timeout_ms", n.ack_timeout_ms)?;
        }
        SinkConfig::Postgres(p) => {
            if !(p.url.starts_with("postgres://") || p.url.starts_with("postgresql://")) {
                return Err((
                    "sink.url".into(),
                    "must be a postgres:// or postgresql:// URL".into(),
                ));
            }
            if p.schema.is_empty()
                || !p
                    .schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err((
                    "sink.schema".into(),
                    "a schema name uses only letters, digits and `_`".into(),
                ));
            }
            positive("timeout_ms", p.timeout_ms)?;
        }
    }
    Ok(())
}

/// A list of human durations (`"5s"`, `"2h"`).
fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list: Vec<humantime_serde::Serde<Duration>> = Vec::deserialize(d)?;
    Ok(list
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

fn default_batch_size() -> usize {
    DEFAULT_DELIVERY_BATCH_SIZE
}
fn default_schedule() -> Vec<Duration> {
    DEFAULT_RETRY_SCHEDULE.to_vec()
}
fn default_jitter() -> f64 {
    DEFAULT_RETRY_JITTER
}
fn default_max_retry_after() -> Duration {
    DEFAULT_MAX_RETRY_AFTER
}
fn default_webhook_connect_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_CONNECT_TIMEOUT_MS
}
fn default_webhook_timeout_ms() -> u64 {
    DEFAULT_WEBHOOK_TIMEOUT_MS
}
fn default_webhook_max_in_flight() -> usize {
    DEFAULT_WEBHOOK_MAX_IN_FLIGHT
}
fn default_nats_subject_prefix() -> String {
    DEFAULT_NATS_SUBJECT_PREFIX.into()
}
fn default_nats_stream() -> String {
    DEFAULT_NATS_STREAM.into()
}
fn default_true() -> bool {
    true
}
fn default_nats_duplicate_window_ms() -> u64 {
    DEFAULT_NATS_DUPLICATE_WINDOW_MS
}
fn default_nats_ack_timeout_ms() -> u64 {
    DEFAULT_NATS_ACK_TIMEOUT_MS
}
fn default_postgres_schema() -> String {
    DEFAULT_POSTGRES_SCHEMA.into()
}
fn default_postgres_timeout_ms() -> u64 {
    DEFAULT_POSTGRES_TIMEOUT_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<indexmap::IndexMap<String, SubscriptionConfig>, String> {
        #[derive(Deserialize)]
        struct Doc {
            subscriptions: indexmap::IndexMap<String, SubscriptionConfig>,
        }
        toml::from_str::<Doc>(text)
            .map(|d| d.subscriptions)
            .map_err(|e| e.to_string())
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn parses_each_sink_with_defaults() {
        let subs = parse(&format!(
            r#"
            [subscriptions.crm]
            resources = ["inventory"]
            ops = ["updated", "deleted"]
            sink = {{ kind = "webhook", url = "https://crm.example/hooks", secret = "{SECRET}" }}
            retry = {{ schedule = ["1s", "2m", "1h"] }}

            [subscriptions.bus]
            sink = {{ kind = "nats", url = "nats://127.0.0.1:4222" }}

            [subscriptions.replica]
            start = "end"
            sink = {{ kind = "postgres", url = "postgres://u:p@localhost/db" }}
            "#
        ))
        .unwrap();
        let crm = &subs["crm"];
        assert_eq!(crm.ops, vec![ChangeOp::Updated, ChangeOp::Deleted]);
        assert_eq!(
            crm.retry.schedule,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(subs["bus"].retry.schedule, DEFAULT_RETRY_SCHEDULE.to_vec());
        assert_eq!(subs["bus"].batch_size, DEFAULT_DELIVERY_BATCH_SIZE);
        assert_eq!(subs["replica"].start, StartAt::End);
        let SinkConfig::Nats(nats) = &subs["bus"].sink else {
            panic!("nats sink");
        };
        assert_eq!(nats.stream, DEFAULT_NATS_STREAM);
        validate_subscriptions(Path::new("d.toml"), &subs, &["inventory"]).unwrap();
    }

    #[test]
    fn debug_hides_secrets() {
        let subs = parse(&format!(
            r#"
            [subscriptions.a]
            sink = {{ kind = "webhook", url = "https://u:pw@h/x", secret = "{SECRET}" }}
            [subscriptions.b]
            sink = {{ kind = "postgres", url = "postgres://bridge:hunter2@db/x" }}
            "#
        ))
        .unwrap();
        let shown = format!("{subs:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("pw@"), "{shown}");
        assert!(!shown.contains("MfKQ9r8"), "{shown}");
    }

    #[test]
    fn validation_names_the_key() {
        let check = |sink: &str, extra: &str| {
            let subs = parse(&format!("[subscriptions.s]\nsink = {sink}\n{extra}")).unwrap();
            validate_subscriptions(Path::new("d.toml"), &subs, &["inventory"])
                .unwrap_err()
                .key
        };
        let hook = |secret: &str| {
            format!(r#"{{ kind = "webhook", url = "https://h/x", secret = "{secret}" }}"#)
        };
        assert_eq!(check(&hook("abc"), ""), "subscriptions.s.sink.secret");
        assert_eq!(check(&hook("whsec_!!"), ""), "subscriptions.s.sink.secret");
        assert_eq!(
            check(
                r#"{ kind = "webhook", url = "ftp://h/x", secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }"#,
                ""
            ),
            "subscriptions.s.sink.url"
        );
        assert_eq!(
            check(&hook(SECRET), r#"resources = ["nope"]"#),
            "subscriptions.s.resources"
        );
        assert_eq!(
            check(&hook(SECRET), "batch_size = 0"),
            "subscriptions.s.batch_size"
        );
        assert_eq!(
            check(
                r#"{ kind = "nats", url = "nats://h", subject_prefix = "a..b" }"#,
                ""
            ),
            "subscriptions.s.sink.subject_prefix"
        );
        assert_eq!(
            check(
                r#"{ kind = "postgres", url = "postgres://h/d", schema = "x; drop" }"#,
                ""
            ),
            "subscriptions.s.sink.schema"
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(parse("[subscriptions.s]\nsink = { kind = \"kafka\", url = \"x\" }").is_err());
        assert!(
            parse("[subscriptions.s]\nsnk = 1\nsink = { kind = \"nats\", url = \"x\" }").is_err()
        );
    }

    #[test]
    fn redacts_credentials_only() {
        assert_eq!(
            redact_url("postgres://u:p@h:5432/d"),
            "postgres://<redacted>@h:5432/d"
        );
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }
}
