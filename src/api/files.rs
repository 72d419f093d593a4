//! Operator endpoints for file resources under `/admin/files`: where each export folder
//! stands (newest file, waiting, applied, held, rejected), the bad records set aside, and
//! approving an export the delete guard held.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::changes::capture_of;
use super::error::ApiError;
use super::params::{ADMIN_MAX_LIMIT, admin_limit};
use crate::auth::{ADMIN_READ, ADMIN_WRITE};
use crate::capture::{Approval, CaptureState, ExportStatus};
use crate::source::files::mirror::QuarantinedRow;

/// One file resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileResourceStatus {
    #[schema(example = "price_export")]
    pub resource: String,
    /// The resource's capture state (`failing` when the folder cannot be read).
    pub capture_state: CaptureState,
    pub last_error: Option<String>,
    pub export: Option<ExportStatus>,
}

/// Every file resource, in configuration order.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilesOverview {
    pub resources: Vec<FileResourceStatus>,
}

/// Which held export to let through: its content hash, as `GET /admin/files` shows it, so
/// an approval never applies a file the operator has not seen.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ApproveRequest {
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub sha256: String,
}

/// An approval, accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproveAccepted {
    pub resource: String,
    pub sha256: String,
    /// Follow the apply in `GET /admin/files`.
    #[schema(example = "/admin/files")]
    pub status: String,
}

/// Bad records of recent exports.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineList {
    pub resource: String,
    /// Newest first.
    pub rows: Vec<QuarantinedRow>,
}

/// `?limit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuarantineParams {
    /// Rows to return (1-1000, default 100), newest first.
    pub limit: Option<usize>,
}

/// Export folders for operators.
///
/// Per file resource: the newest matching file, files still waiting for completion (and
/// why), the last applied export with its counts, an export held by the delete guard or
/// rejected whole, and the number of bad records set aside. Needs `admin:read`.
#[utoipa::path(get, path = "/admin/files", tag = "admin", operation_id = "files_status",
    responses(
        (status = 200, description = "Export folders", body = FilesOverview),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No file resource is configured", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<FilesOverview>, ApiError> {
    let capture = capture_of(&state)?;
    state.auth.authorize(&headers, ADMIN_READ)?;
    let resources = capture
        .status
        .snapshot()
        .into_iter()
        .filter(|s| s.strategy == "export")
        .map(|s| FileResourceStatus {
            resource: s.resource,
            capture_state: s.state,
            last_error: s.last_error,
            export: s.export,
        })
        .collect();
    Ok(Json(FilesOverview { resources }))
}

/// Apply an export the delete guard held.
///
/// An export that would delete more than `max_delete_share` of a resource's records is held
/// (typically a truncated file). After checking it, approve it by its content hash; it is
/// applied at the resource's next cycle. A newer export replaces a held one without
/// approval when it passes the guard. Needs `admin:write`.
#[utoipa::path(post, path = "/admin/files/{resource}/approve", tag = "admin", operation_id = "files_approve",
    params(("resource" = String, Path, description = "A file resource")),
    request_body = ApproveRequest,
    responses(
        (status = 202, description = "Approved; applied at the next cycle", body = ApproveAccepted),
        (status = 400, description = "The body is not `{\"sha256\": ...}`", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such file resource", content_type = "application/problem+json", body = super::Problem),
        (status = 409, description = "No export is held, or the held one has another hash", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn approve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(resource): Path<String>,
    request: Result<Json<ApproveRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ApproveAccepted>), ApiError> {
    let capture = capture_of(&state)?;
    state.auth.authorize(&headers, ADMIN_WRITE)?;
    let Json(request) = request.map_err(|e| {
        ApiError::param(
            "body",
            format!(
                "expected a JSON object {{\"sha256\": \"<hex>\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    match capture.status.approve_export(&resource, &request.sha256) {
        Approval::Approved => {
            tracing::info!(resource = %resource, sha256 = %request.sha256, "held export approved");
            Ok((
                StatusCode::ACCEPTED,
                Json(ApproveAccepted {
                    resource,
                    sha256: request.sha256.to_ascii_lowercase(),
                    status: "/admin/files".into(),
                }),
            ))
        }
        Approval::Unknown => Err(ApiError::NotFound(format!(
            "resource `{resource}` is not a file resource"
        ))),
        Approval::NothingHeld => Err(ApiError::Conflict(format!(
            "resource `{resource}` has no held export"
        ))),
        Approval::Mismatch { held } => Err(ApiError::Conflict(format!(
            "the held export of `{resource}` has sha256 {held}, not the one given"
        ))),
    }
}

/// Bad records of a file resource's recent exports.
///
/// Each with file name, line (or DBF record) number, reason and the record as read, newest
/// first. The record text may hold business data: this needs `admin:read`.
#[utoipa::path(get, path = "/admin/files/{resource}/quarantine", tag = "admin", operation_id = "files_quarantine",
    params(("resource" = String, Path, description = "A file resource"), QuarantineParams),
    responses(
        (status = 200, description = "Quarantined records", body = QuarantineList),
        (status = 400, description = "Invalid limit", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such file resource", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn quarantine(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(resource): Path<String>,
    params: Result<Query<QuarantineParams>, QueryRejection>,
) -> Result<Json<QuarantineList>, ApiError> {
    state.auth.authorize(&headers, ADMIN_READ)?;
    let Query(params) = params.map_err(|_| {
        ApiError::param(
            "limit",
            format!("must be a number between 1 and {ADMIN_MAX_LIMIT}"),
        )
    })?;
    let limit = admin_limit(params.limit)?;
    let not_found = || ApiError::NotFound(format!("resource `{resource}` is not a file resource"));
    let source_name = state
        .resources
        .get(&resource)
        .map(|r| r.source.clone())
        .ok_or_else(not_found)?;
    let mirror = state
        .sources
        .get(&source_name)
        .and_then(|s| s.files())
        .map(|f| Arc::clone(f.mirror()))
        .ok_or_else(not_found)?;
    let table = resource.clone();
    let rows = tokio::task::spawn_blocking(move || mirror.quarantined(&table, limit))
        .await
        .map_err(|e| ApiError::Source {
            source_name: source_name.clone(),
            error: crate::source::SourceError::new(
                crate::source::SourceErrorKind::Unavailable,
                e.to_string(),
            ),
        })?
        .map_err(|error| ApiError::Source { source_name, error })?;
    Ok(Json(QuarantineList { resource, rows }))
}
