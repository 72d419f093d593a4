//! The API's error enum: what went wrong, mapped to a status and a problem document. Source
//! failures are logged with their internal message and shown to clients only by kind.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use crate::auth::AuthError;
use crate::resource::MappingError;
use crate::source::{SourceError, SourceErrorKind};
use crate::store::StoreError;

/// Everything a `/v1` handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid parameter `{parameter}`: {detail}")]
    InvalidParameter { parameter: String, detail: String },
    #[error("not found: {0}")]
    NotFound(String),
    /// The request does not fit the current state (e.g. approving an export not held).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("API key lacks scope `{0}`")]
    Forbidden(String),
    /// The change feed needs a key that reads at least one captured resource.
    #[error("API key reads no captured resource")]
    NoReadableResource,
    #[error("source `{source_name}`: {error}")]
    Source {
        source_name: String,
        error: SourceError,
    },
    #[error("resource `{resource}`: {error}")]
    Mapping {
        resource: String,
        error: MappingError,
    },
    /// Too many clients wait on the change feed (`server.max_change_waiters`).
    #[error("too many clients waiting for changes")]
    TooManyWaiters,
    /// The state store (outbox) failed: transient failures are 503 with Retry-After.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated => ApiError::Unauthorized,
            AuthError::MissingScope(scope) => ApiError::Forbidden(scope),
        }
    }
}

impl ApiError {
    /// A 400 about one query parameter.
    pub fn param(parameter: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidParameter {
            parameter: parameter.into(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ApiError::InvalidParameter { parameter, detail } => {
                let mut p = Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-parameter",
                    "Invalid query parameter",
                    detail.clone(),
                );
                p.parameter = Some(parameter.clone());
                p
            }
            ApiError::NotFound(detail) => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                detail.clone(),
            ),
            ApiError::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.clone())
            }
            ApiError::Unauthorized => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "send a valid API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            ),
            ApiError::Forbidden(scope) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                format!("this API key lacks the scope `{scope}`"),
            ),
            ApiError::NoReadableResource => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                "this API key may read no captured resource; it needs `<resource>:read` for one of them, or `*:read`",
            ),
            ApiError::TooManyWaiters => {
                tracing::warn!("change waiters at their limit (server.max_change_waiters)");
                let mut p = Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too-many-waiters",
                    "Too many clients waiting for changes",
                    "the server holds as many waiting change feeds and streams as it is \
                     configured for; retry shortly or poll without `wait`",
                );
                p.retry_after = Some(1);
                p
            }
            ApiError::Store(error) => store_problem(error),
            ApiError::Source { source_name, error } => {
                tracing::warn!(source = %source_name, kind = ?error.kind, error = %error.message, "legacy source error");
                source_problem(error.kind)
            }
            ApiError::Mapping { resource, error } => {
                tracing::error!(resource = %resource, error = %error, "legacy value does not fit its mapping");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "legacy-data",
                    "Legacy data could not be mapped",
                    format!(
                        "a value of field `{}` in the legacy system does not fit the adapter mapping; the operator has been told in the log",
                        error.field
                    ),
                )
            }
        };
        problem.into_response()
    }
}

/// The problem shown for a state store failure: the internal message goes to the log only.
fn store_problem(error: &StoreError) -> Problem {
    if let StoreError::Expired { oldest, .. } = error {
        return Problem::new(
            StatusCode::GONE,
            "position-expired",
            "Position no longer kept",
            format!(
                "the events after this position were removed by retention (the oldest kept is \
                 {oldest}); re-read the resources you follow, then continue from a position at \
                 or after {}",
                oldest - 1
            ),
        );
    }
    if error.is_transient() {
        tracing::warn!(error = %error, "state store busy");
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-busy",
            "Change store busy",
            "the change store is busy; retry shortly",
        );
        p.retry_after = Some(1);
        p
    } else {
        tracing::error!(error = %error, "state store failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store-error",
            "Change store error",
            "the change store failed; the operator has been told in the log",
        )
    }
}

/// The problem shown for a source failure: transient ones are 503 with Retry-After.
pub fn source_problem(kind: SourceErrorKind) -> Problem {
    let (slug, title, detail, retry) = match kind {
        SourceErrorKind::Saturated => (
            "legacy-busy",
            "Legacy system busy",
            "all connections to the legacy system are in use; retry shortly",
            Some(1),
        ),
        SourceErrorKind::Unavailable => (
            "legacy-unavailable",
            "Legacy system unavailable",
            "the legacy system cannot be reached; retry later",
            Some(5),
        ),
        SourceErrorKind::Timeout => (
            "legacy-timeout",
            "Legacy system too slow",
            "the legacy system did not answer in time; retry later",
            Some(5),
        ),
        SourceErrorKind::Query | SourceErrorKind::Config | SourceErrorKind::Decode => (
            "legacy-error",
            "Legacy system error",
            "the legacy system rejected the query; the operator has been told in the log",
            None,
        ),
    };
    let status = if retry.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    let mut p = Problem::new(status, slug, title, detail);
    p.retry_after = retry;
    p
}
