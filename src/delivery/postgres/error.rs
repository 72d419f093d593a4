//! What went wrong talking to the replica, classified once, and what each kind means for the
//! batch and the connection. Messages are built here so that no value of a row ever reaches
//! an outcome or a log: for data errors only the SQLSTATE and the names the server reports
//! (table, column, constraint) are kept, never its message text.

use std::time::Duration;

use tokio_postgres::error::DbError;

/// A failure of a replica operation.
///
/// | kind | cause | batch | connection |
/// |---|---|---|---|
/// | `Unavailable` | connect, TLS, I/O, timeout, server shutting down or out of resources, serialization failure | every event: endpoint failure (throttle) | dropped |
/// | `Data` | SQLSTATE class 22 (data exception) or 23 (integrity) | the culprits are found; others delivered | kept |
/// | `Schema` | SQLSTATE class 42 (table dropped or altered, privilege) | endpoint failure | kept; tables re-checked before the next batch |
/// | `Misconfigured` | bad URL or CA file, refused credentials, table of another shape | endpoint failure | kept |
/// | `Other` | any other server error | every event: event failure | kept |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ReplicaError {
    #[error("postgresql unavailable: {0}")]
    Unavailable(String),
    #[error("postgresql refused a value: {0}")]
    Data(String),
    #[error("replica tables unusable: {0}")]
    Schema(String),
    #[error("postgresql replica misconfigured: {0}")]
    Misconfigured(String),
    #[error("postgresql error: {0}")]
    Other(String),
}

impl ReplicaError {
    /// The operation did not answer within `limit`.
    pub fn timeout(limit: Duration) -> Self {
        ReplicaError::Unavailable(format!("no answer within {} ms", limit.as_millis()))
    }

    /// The connection can no longer be trusted (broken, or a statement left running).
    pub fn drops_connection(&self) -> bool {
        matches!(self, ReplicaError::Unavailable(_))
    }
}

impl From<tokio_postgres::Error> for ReplicaError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            // Client-side errors (I/O, TLS, closed connection, connect timeout, URL parsing)
            // carry no row values; their cause chain says what happened.
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            let config = [
                "invalid connection string",
                "invalid configuration",
                "authentication",
            ];
            return if config.iter().any(|prefix| text.starts_with(prefix)) {
                ReplicaError::Misconfigured(text)
            } else {
                ReplicaError::Unavailable(text)
            };
        };
        let code = db.code().code();
        match code.get(..2).unwrap_or_default() {
            "22" | "23" => ReplicaError::Data(describe_data(db)),
            "42" => ReplicaError::Schema(describe(db)),
            "28" => ReplicaError::Misconfigured(describe(db)),
            "08" | "40" | "53" | "55" | "57" | "58" => ReplicaError::Unavailable(describe(db)),
            _ => ReplicaError::Other(format!("sqlstate {code}")),
        }
    }
}

/// SQLSTATE and server message, for classes whose messages name objects, not values.
fn describe(db: &DbError) -> String {
    format!("sqlstate {}: {}", db.code().code(), db.message())
}

/// SQLSTATE, its name and the objects involved; the message is left out because it quotes
/// the refused value (`invalid input syntax for type bigint: "..."`, `Key (sku)=(...)`).
fn describe_data(db: &DbError) -> String {
    let code = db.code().code();
    let mut text = format!("sqlstate {code}");
    if let Some(name) = data_error_name(code) {
        text.push_str(&format!(" ({name})"));
    }
    for (what, name) in [
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
    ] {
        if let Some(name) = name {
            text.push_str(&format!(", {what} `{name}`"));
        }
    }
    text
}

/// Names of the data errors a replica meets, for operators without a SQLSTATE table at hand.
fn data_error_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "22001" => "string data right truncation",
        "22003" => "numeric value out of range",
        "22007" => "invalid datetime format",
        "22008" => "datetime field overflow",
        "22021" => "character not in repertoire",
        "22P02" => "invalid text representation",
        "22P05" => "untranslatable character",
        "23502" => "not null violation",
        "23503" => "foreign key violation",
        "23505" => "unique violation",
        "23514" => "check violation",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_data_errors_by_code() {
        assert_eq!(
            data_error_name("22P02"),
            Some("invalid text representation")
        );
        assert_eq!(data_error_name("99999"), None);
    }

    #[test]
    fn only_unavailable_drops_the_connection() {
        assert!(ReplicaError::timeout(Duration::from_millis(5)).drops_connection());
        assert!(!ReplicaError::Data("x".into()).drops_connection());
        assert_eq!(
            ReplicaError::timeout(Duration::from_millis(250)).to_string(),
            "postgresql unavailable: no answer within 250 ms"
        );
    }

    #[test]
    fn a_bad_url_is_misconfigured() {
        let err = "postgres://h/d?sslmode=sometimes"
            .parse::<tokio_postgres::Config>()
            .unwrap_err();
        let err = ReplicaError::from(err);
        assert!(
            matches!(&err, ReplicaError::Misconfigured(m) if m.contains("sslmode")),
            "{err:?}"
        );
    }
}
