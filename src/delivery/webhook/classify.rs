//! From what a webhook endpoint answered, or why it could not answer, to an [`Outcome`]: the
//! one table deciding delivered, retry this event, hold back the whole endpoint, or gone.
//! Reasons name a status or an error kind, never the answer's body or the URL.

use std::error::Error as _;
use std::io;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::StatusCode;

use crate::delivery::{Failure, Outcome};

/// The outcome of an HTTP answer with this status and `Retry-After` header, at `now`.
pub(super) fn status_outcome(status: u16, retry_after: Option<&str>, now: SystemTime) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Delivered;
    }
    if status == 410 {
        return Outcome::Gone("endpoint answered 410 Gone".into());
    }
    let mut reason = match StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(text) => format!("HTTP {status} {text}"),
        None => format!("HTTP {status}"),
    };
    if (300..400).contains(&status) {
        reason.push_str(" (redirects are not followed)");
    }
    Outcome::Retry(Failure {
        reason,
        retry_after: retry_after.and_then(|value| parse_retry_after(value, now)),
        // The endpoint as a whole is overloaded or its upstream is down.
        throttle: matches!(status, 429 | 502 | 503 | 504),
    })
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Transport {
    /// The connection could not be opened: refused, DNS, TLS handshake.
    Connect(String),
    /// Opening the connection took longer than `connect_timeout_ms`.
    ConnectTimeout,
    /// The request took longer than `timeout_ms`, answer included.
    Timeout,
    /// The connection broke while the request was sent or the answer read.
    Broken(String),
}

impl Transport {
    /// Sorts a `reqwest` error of sending a request.
    pub(super) fn of(err: &reqwest::Error) -> Self {
        match (err.is_connect(), err.is_timeout()) {
            (true, true) => Transport::ConnectTimeout,
            (false, true) => Transport::Timeout,
            (true, false) => Transport::Connect(cause(err)),
            (false, false) => Transport::Broken(cause(err)),
        }
    }
}

/// The failure of a request that got no answer: always the whole endpoint's.
pub(super) fn transport_failure(
    transport: Transport,
    connect_timeout_ms: u64,
    timeout_ms: u64,
) -> Failure {
    Failure::endpoint(match transport {
        Transport::Connect(detail) => format!("connect: {detail}"),
        Transport::ConnectTimeout => format!("connect: timed out after {connect_timeout_ms} ms"),
        Transport::Timeout => format!("timed out after {timeout_ms} ms"),
        Transport::Broken(detail) => format!("request: {detail}"),
    })
}

/// What went wrong below `reqwest`'s own error (whose text carries the URL): a plain phrase
/// for the usual socket errors, else the chain of causes.
pub(super) fn cause(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            let phrase = match io.kind() {
                io::ErrorKind::ConnectionRefused => Some("connection refused"),
                io::ErrorKind::ConnectionReset => Some("connection reset"),
                io::ErrorKind::ConnectionAborted => Some("connection aborted"),
                io::ErrorKind::BrokenPipe => Some("connection closed"),
                io::ErrorKind::UnexpectedEof => Some("connection closed"),
                _ => None,
            };
            if let Some(phrase) = phrase {
                return phrase.into();
            }
        }
        let text = e.to_string();
        // hyper-util's "client error (Connect)" says nothing our prefix does not; some errors
        // repeat their cause in their own text.
        if !text.starts_with("client error (")
            && !parts.last().is_some_and(|last| last.contains(&text))
        {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        "unknown error".into()
    } else {
        parts.join(": ")
    }
}

/// A `Retry-After` value, delta-seconds or HTTP-date, as a delay from `now` (zero for a
/// date in the past); `None` when it is neither.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "a long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = http_date(value)?;
    let now: DateTime<Utc> = now.into();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The three HTTP-date forms of RFC 9110: IMF-fixdate, then the obsolete RFC 850 and asctime.
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 1994-11-06T08:49:37Z, the date of RFC 9110's examples.
    const RFC_DATE: u64 = 784_111_777;

    #[test]
    fn statuses_map_to_outcomes() {
        let retry = |reason: &str, throttle: bool| {
            Outcome::Retry(Failure {
                reason: reason.into(),
                retry_after: None,
                throttle,
            })
        };
        let table = [
            (200, Outcome::Delivered),
            (201, Outcome::Delivered),
            (202, Outcome::Delivered),
            (204, Outcome::Delivered),
            (299, Outcome::Delivered),
            (410, Outcome::Gone("endpoint answered 410 Gone".into())),
            (429, retry("HTTP 429 Too Many Requests", true)),
            (502, retry("HTTP 502 Bad Gateway", true)),
            (503, retry("HTTP 503 Service Unavailable", true)),
            (504, retry("HTTP 504 Gateway Timeout", true)),
            (500, retry("HTTP 500 Internal Server Error", false)),
            (501, retry("HTTP 501 Not Implemented", false)),
            (400, retry("HTTP 400 Bad Request", false)),
            (401, retry("HTTP 401 Unauthorized", false)),
            (404, retry("HTTP 404 Not Found", false)),
            (413, retry("HTTP 413 Payload Too Large", false)),
            (
                301,
                retry(
                    "HTTP 301 Moved Permanently (redirects are not followed)",
                    false,
                ),
            ),
            (
                307,
                retry(
                    "HTTP 307 Temporary Redirect (redirects are not followed)",
                    false,
                ),
            ),
            (599, retry("HTTP 599", false)),
            (100, retry("HTTP 100 Continue", false)),
        ];
        for (status, expected) in table {
            assert_eq!(status_outcome(status, None, at(0)), expected, "{status}");
        }
    }

    #[test]
    fn retry_after_is_kept_for_every_retry() {
        for status in [429, 500, 503, 404, 301] {
            let Outcome::Retry(failure) = status_outcome(status, Some("7"), at(0)) else {
                panic!("{status} is a retry");
            };
            assert_eq!(
                failure.retry_after,
                Some(Duration::from_secs(7)),
                "{status}"
            );
        }
        // Nothing to wait for after a success or a 410.
        assert_eq!(status_outcome(200, Some("7"), at(0)), Outcome::Delivered);
        assert!(matches!(
            status_outcome(410, Some("7"), at(0)),
            Outcome::Gone(_)
        ));
    }

    #[test]
    fn retry_after_forms() {
        let now = at(RFC_DATE);
        let table: [(&str, Option<u64>); 14] = [
            ("0", Some(0)),
            ("7", Some(7)),
            (" 120 ", Some(120)),
            ("99999999999999999999999", Some(u64::MAX)),
            // IMF-fixdate, RFC 850 and asctime, 30 s after `now`.
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(30)),
            ("Sunday, 06-Nov-94 08:50:07 GMT", Some(30)),
            ("Sun Nov  6 08:50:07 1994", Some(30)),
            // A date in the past: no wait.
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(0)),
            ("", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("Sun, 06 Nov 1994 25:00:00 GMT", None),
            ("7 seconds", None),
        ];
        for (value, expected) in table {
            assert_eq!(
                parse_retry_after(value, now),
                expected.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn transport_failures_hold_back_the_endpoint() {
        let table = [
            (
                Transport::Connect("connection refused".into()),
                "connect: connection refused",
            ),
            (
                Transport::ConnectTimeout,
                "connect: timed out after 5000 ms",
            ),
            (Transport::Timeout, "timed out after 15000 ms"),
            (
                Transport::Broken("connection reset".into()),
                "request: connection reset",
            ),
        ];
        for (transport, reason) in table {
            let failure = transport_failure(transport, 5_000, 15_000);
            assert_eq!(failure, Failure::endpoint(reason));
            assert!(failure.throttle);
        }
    }

    fn client(timeout_ms: u64) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(timeout_ms))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = client(5_000)
            .post(format!("http://user:hunter2@127.0.0.1:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            Transport::of(&err),
            Transport::Connect("connection refused".into())
        );
    }

    #[tokio::test]
    async fn silent_endpoint_is_a_timeout() {
        // Accepts the connection, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let err = client(200)
            .post(format!("http://127.0.0.1:{port}/hook"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(Transport::of(&err), Transport::Timeout);
        hold.abort();
    }
}
