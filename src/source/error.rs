//! Source errors, classified by what the caller should do about them: retry later (the
//! legacy system is down, slow or busy), or fix something (bad SQL, bad data, bad config).

use std::fmt;

/// What kind of failure a source reports; decides HTTP status and retry behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// No connection could be made or it broke: retry later.
    Unavailable,
    /// Every connection is busy and none freed up in time: retry soon.
    Saturated,
    /// The query hit its timeout: retry later, maybe with a narrower request.
    Timeout,
    /// The source rejected the query (missing column, permission): needs an operator.
    Query,
    /// A value could not be decoded as its mapped type: needs an operator.
    Decode,
    /// The source is misconfigured (no driver, bad connection string): needs an operator.
    Config,
}

impl SourceErrorKind {
    /// Whether retrying later can succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable | Self::Saturated | Self::Timeout)
    }
}

/// A failed source operation. `message` may contain driver diagnostics (never the connection
/// string); it is logged, not sent to API clients.
#[derive(Debug, Clone)]
pub struct SourceError {
    pub kind: SourceErrorKind,
    pub message: String,
}

impl SourceError {
    /// Builds an error of `kind`.
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for SourceError {}
