//! Operator endpoints under `/admin`, behind the `admin:read` scope (which `*:read` does not
//! grant): how capture is doing, per resource, and how far the outbox has grown.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::changes::capture_of;
use super::error::ApiError;
use crate::auth::{ADMIN_READ, AuthError};
use crate::capture::ResourceCaptureStatus;

/// The outbox as a whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxStatus {
    /// The highest sequence number committed (0 when the outbox is empty).
    #[schema(example = 1234)]
    pub last_seq: u64,
}

/// Capture status: one entry per captured resource, in configuration order, and the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureOverview {
    pub resources: Vec<ResourceCaptureStatus>,
    pub outbox: OutboxStatus,
}

/// Capture status for operators.
///
/// Every captured resource's strategy, state (a paused resource says why), checkpoint, lag,
/// counters and last error, and the outbox's last sequence number. Needs the `admin:read`
/// scope, which `*:read` does not grant.
#[utoipa::path(get, path = "/admin/capture", tag = "admin", operation_id = "capture_status",
    responses(
        (status = 200, description = "Capture status", body = CaptureOverview),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "Change capture is not configured", content_type = "application/problem+json", body = super::Problem),
        (status = 500, description = "The change store failed", content_type = "application/problem+json", body = super::Problem),
        (status = 503, description = "The change store is busy; honour Retry-After", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn capture(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<CaptureOverview>, ApiError> {
    let capture = capture_of(&state)?;
    match state.auth.authorize(&headers, ADMIN_READ) {
        Ok(_) => {}
        Err(AuthError::Unauthenticated) => return Err(ApiError::Unauthorized),
        Err(AuthError::MissingScope(s)) => return Err(ApiError::Forbidden(s)),
    }
    let resources = capture.status.snapshot();
    let last_seq = capture.store.last_seq().await?;
    Ok(Json(CaptureOverview {
        resources,
        outbox: OutboxStatus { last_seq },
    }))
}
