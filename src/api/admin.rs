//! Operator endpoints under `/admin`, behind the `admin:read` scope (which `*:read` does not
//! grant): how capture is doing, per resource, and how far the outbox has grown.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::changes::capture_of;
use super::error::ApiError;
use crate::auth::{ADMIN_READ, ADMIN_WRITE};
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

/// A resync request, accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncAccepted {
    #[schema(example = "inventory")]
    pub resource: String,
    /// Follow the pass in `GET /admin/capture` (`scan.kind = "resync"`).
    #[schema(example = "/admin/capture")]
    pub status: String,
}

/// Re-snapshot one captured resource.
///
/// Queues a resync pass: the resource's capture task emits every current row as a
/// `snapshot` event (origin `resync`) and a `deleted` event for rows that are gone, then
/// resumes capture. Consumers that lost their copy rebuild it from these events. A pass cut
/// by a restart resumes where it stopped. Needs the `admin:write` scope.
#[utoipa::path(post, path = "/admin/capture/{resource}/resync", tag = "admin", operation_id = "capture_resync",
    params(("resource" = String, Path, description = "A captured resource")),
    responses(
        (status = 202, description = "Resync queued", body = ResyncAccepted),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such captured resource, or capture is not configured", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn resync(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(resource): Path<String>,
) -> Result<(StatusCode, Json<ResyncAccepted>), ApiError> {
    let capture = capture_of(&state)?;
    state.auth.authorize(&headers, ADMIN_WRITE)?;
    if !capture.status.request_resync(&resource) {
        return Err(ApiError::NotFound(format!(
            "resource `{resource}` is not captured"
        )));
    }
    tracing::info!(resource = %resource, "resync requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(ResyncAccepted {
            resource,
            status: "/admin/capture".into(),
        }),
    ))
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
    state.auth.authorize(&headers, ADMIN_READ)?;
    let resources = capture.status.snapshot();
    let last_seq = capture.store.last_seq().await?;
    Ok(Json(CaptureOverview {
        resources,
        outbox: OutboxStatus { last_seq },
    }))
}
