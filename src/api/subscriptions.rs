//! Operator endpoints for delivery under `/admin/subscriptions` and `/admin/audit`: lag and
//! counters per subscription, dead letters and their replay, pause, resume and rewind; and
//! Prometheus `/metrics`. Every action is recorded in the audit log with the API key's name.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::params::admin_limit;
use crate::auth::{ADMIN_READ, ADMIN_WRITE};
use crate::delivery::{DeliveryHandle, SubscriptionStatus, metrics, statuses};
use crate::store::{AuditEntry, Control, DeadLetter, SubscriptionState};

/// Every subscription, in configuration order.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionsOverview {
    pub subscriptions: Vec<SubscriptionStatus>,
    /// The outbox's last committed sequence number.
    #[schema(example = 1234)]
    pub outbox_last_seq: u64,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub subscription: String,
    /// Ascending by seq.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `after` for the next page; null when this page is the last.
    pub next_after: Option<u64>,
}

/// `?after=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only dead letters with a higher seq (default 0).
    pub after: Option<u64>,
    /// Entries to return (1-1000, default 100).
    pub limit: Option<usize>,
}

/// `?before=&limit=`
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries with a lower id (for paging back).
    pub before: Option<u64>,
    /// Entries to return (1-1000, default 100), newest first.
    pub limit: Option<usize>,
}

/// The audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
}

/// Which dead letters to replay; all of the subscription's when `seqs` is absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[schema(example = json!([1201, 1202]))]
    pub seqs: Option<Vec<u64>>,
}

/// Why a subscription is paused (shown in its status and the audit log).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    #[schema(example = "CRM maintenance window")]
    pub reason: Option<String>,
}

/// Where to move a subscription's cursor: events after `seq` are delivered again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindRequest {
    #[schema(example = 1000)]
    pub seq: u64,
}

/// An operator action, done.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionDone {
    pub subscription: String,
    #[schema(example = "replay")]
    pub action: String,
    /// Events replayed (replay) or parked events dropped to be read again (rewind).
    pub affected: u64,
    /// The audit log records it.
    #[schema(example = "/admin/audit")]
    pub audit: String,
}

pub(super) fn delivery_of(state: &AppState) -> Result<&DeliveryHandle, ApiError> {
    state
        .delivery
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no subscription is configured".into()))
}

fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::param("query", e.body_text())
}

fn body_error(e: &JsonRejection, expected: &str) -> ApiError {
    ApiError::param("body", format!("expected {expected}: {}", e.body_text()))
}

/// Delivery status for operators.
///
/// Per subscription: sink, state (a paused or disabled one says why), cursor, lag (outbox
/// positions behind, parked events, age of the oldest undelivered event), dead letters,
/// counters since start, and the last error. Needs `admin:read`.
#[utoipa::path(get, path = "/admin/subscriptions", tag = "admin", operation_id = "subscriptions_status",
    responses(
        (status = 200, description = "Subscriptions", body = SubscriptionsOverview),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No subscription is configured", content_type = "application/problem+json", body = super::Problem),
        (status = 503, description = "The state store is busy; honour Retry-After", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn overview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<SubscriptionsOverview>, ApiError> {
    let delivery = delivery_of(&state)?;
    state.auth.authorize(&headers, ADMIN_READ)?;
    let last_seq = delivery.store.last_seq().await?;
    let subscriptions = statuses(delivery, last_seq).await?;
    Ok(Json(SubscriptionsOverview {
        subscriptions,
        outbox_last_seq: last_seq,
    }))
}

/// A subscription's dead letters.
///
/// Events that failed every attempt of the retry schedule, with the last reason (a status
/// code or error kind, never the payload). Needs `admin:read`.
#[utoipa::path(get, path = "/admin/subscriptions/{name}/dead-letters", tag = "admin", operation_id = "subscriptions_dead_letters",
    params(("name" = String, Path, description = "A subscription"), DeadLetterParams),
    responses(
        (status = 200, description = "Dead letters", body = DeadLetterPage),
        (status = 400, description = "Invalid `after` or `limit`", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such subscription", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn dead_letters(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    params: Result<Query<DeadLetterParams>, QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let delivery = delivery_of(&state)?;
    state.auth.authorize(&headers, ADMIN_READ)?;
    let Query(params) = params.map_err(|e| query_error(&e))?;
    let limit = admin_limit(params.limit)?;
    known(delivery, &name)?;
    let dead_letters = delivery
        .store
        .dead_letters(&name, params.after.unwrap_or(0), limit)
        .await?;
    let next_after = (dead_letters.len() == limit)
        .then(|| dead_letters.last().map(|d| d.seq))
        .flatten();
    Ok(Json(DeadLetterPage {
        subscription: name,
        dead_letters,
        next_after,
    }))
}

/// Replay dead letters.
///
/// Makes the chosen dead letters (all of the subscription's without `seqs`) due again with
/// a fresh retry schedule; they are delivered ahead of new events, with their original id
/// and sequence. Recorded in the audit log. Needs `admin:write`.
#[utoipa::path(post, path = "/admin/subscriptions/{name}/dead-letters/replay", tag = "admin", operation_id = "subscriptions_replay",
    params(("name" = String, Path, description = "A subscription")),
    request_body(content = ReplayRequest, description = "Optional; an empty body replays all"),
    responses(
        (status = 200, description = "Replayed", body = ActionDone),
        (status = 400, description = "The body is not `{\"seqs\": [...]}`", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such subscription", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    let delivery = delivery_of(&state)?;
    let who = state.auth.authorize(&headers, ADMIN_WRITE)?;
    let request: ReplayRequest = optional_json(&body, "a JSON object {\"seqs\": [<seq>, ...]}")?;
    act(
        delivery,
        &name,
        &who.name,
        Control::Replay { seqs: request.seqs },
        "replay",
    )
    .await
}

/// Replay one dead letter.
///
/// Like `dead-letters/replay` with one seq. Needs `admin:write`.
#[utoipa::path(post, path = "/admin/subscriptions/{name}/dead-letters/{seq}/replay", tag = "admin", operation_id = "subscriptions_replay_one",
    params(("name" = String, Path, description = "A subscription"), ("seq" = u64, Path, description = "The dead letter's seq")),
    responses(
        (status = 200, description = "Replayed", body = ActionDone),
        (status = 400, description = "`seq` is not a number", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such subscription, or no dead letter with this seq", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn replay_one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((name, seq)): Path<(String, String)>,
) -> Result<Json<ActionDone>, ApiError> {
    let delivery = delivery_of(&state)?;
    let who = state.auth.authorize(&headers, ADMIN_WRITE)?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError::param("seq", "must be a non-negative integer"))?;
    known(delivery, &name)?;
    // Checked first so that a refused request leaves no audit entry.
    let listed = delivery
        .store
        .dead_letters(&name, seq.saturating_sub(1), 1)
        .await?;
    if listed.first().is_none_or(|d| d.seq != seq) {
        return Err(no_dead_letter(&name, seq));
    }
    let done = act(
        delivery,
        &name,
        &who.name,
        Control::Replay {
            seqs: Some(vec![seq]),
        },
        "replay",
    )
    .await?;
    if done.affected == 0 {
        // Replayed by someone else meanwhile.
        return Err(no_dead_letter(&name, seq));
    }
    Ok(done)
}

fn no_dead_letter(name: &str, seq: u64) -> ApiError {
    ApiError::NotFound(format!(
        "subscription `{name}` has no dead letter with seq {seq}"
    ))
}

/// Pause a subscription.
///
/// Stops delivering (events keep accumulating in the outbox) until resumed; survives
/// restarts. Recorded in the audit log. Needs `admin:write`.
#[utoipa::path(post, path = "/admin/subscriptions/{name}/pause", tag = "admin", operation_id = "subscriptions_pause",
    params(("name" = String, Path, description = "A subscription")),
    request_body(content = PauseRequest, description = "Optional"),
    responses(
        (status = 200, description = "Paused", body = ActionDone),
        (status = 400, description = "The body is not `{\"reason\": ...}`", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such subscription", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ActionDone>, ApiError> {
    let delivery = delivery_of(&state)?;
    let who = state.auth.authorize(&headers, ADMIN_WRITE)?;
    let request: PauseRequest = optional_json(&body, "a JSON object {\"reason\": \"...\"}")?;
    let control = Control::SetState {
        state: SubscriptionState::Paused,
        reason: request.reason,
    };
    act(delivery, &name, &who.name, control, "pause").await
}

/// Resume a subscription.
///
/// Resumes a paused subscription, or one its endpoint disabled with 410 Gone (the event that
/// got the 410 goes first). Recorded in the audit log. Needs `admin:write`.
#[utoipa::path(post, path = "/admin/subscriptions/{name}/resume", tag = "admin", operation_id = "subscriptions_resume",
    params(("name" = String, Path, description = "A subscription")),
    responses(
        (status = 200, description = "Resumed", body = ActionDone),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such subscription", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<ActionDone>, ApiError> {
    let delivery = delivery_of(&state)?;
    let who = state.auth.authorize(&headers, ADMIN_WRITE)?;
    let control = Control::SetState {
        state: SubscriptionState::Active,
        reason: None,
    };
    act(delivery, &name, &who.name, control, "resume").await
}

/// Rewind a subscription.
///
/// Moves its cursor to `seq`: every matching event after it is delivered again (with its
/// original id, so consumers can de-duplicate). Parked events after `seq` are dropped and
/// read again in order. Recorded in the audit log. Needs `admin:write`.
#[utoipa::path(post, path = "/admin/subscriptions/{name}/rewind", tag = "admin", operation_id = "subscriptions_rewind",
    params(("name" = String, Path, description = "A subscription")),
    request_body = RewindRequest,
    responses(
        (status = 200, description = "Rewound", body = ActionDone),
        (status = 400, description = "The body is not `{\"seq\": N}`, or `seq` is beyond the outbox or before what retention kept", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:write`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No such subscription", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn rewind(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    request: Result<Json<RewindRequest>, JsonRejection>,
) -> Result<Json<ActionDone>, ApiError> {
    let delivery = delivery_of(&state)?;
    let who = state.auth.authorize(&headers, ADMIN_WRITE)?;
    let Json(request) = request.map_err(|e| body_error(&e, "a JSON object {\"seq\": <n>}"))?;
    let last_seq = delivery.store.last_seq().await?;
    if request.seq > last_seq {
        return Err(ApiError::param(
            "seq",
            format!("must be at most the outbox's last seq ({last_seq})"),
        ));
    }
    let pruned = delivery.store.pruned_through().await?;
    if request.seq < pruned {
        return Err(ApiError::param(
            "seq",
            format!("must be at least {pruned}: retention removed the events before it"),
        ));
    }
    act(
        delivery,
        &name,
        &who.name,
        Control::Rewind { seq: request.seq },
        "rewind",
    )
    .await
}

/// The audit log.
///
/// Every operator action on subscriptions (replay, pause, resume, rewind) with who (the API
/// key's name) and when, and the dispatcher's own (disabling on 410, actor `system`).
/// Newest first. Needs `admin:read`.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", operation_id = "audit_log",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit entries", body = AuditPage),
        (status = 400, description = "Invalid `before` or `limit`", content_type = "application/problem+json", body = super::Problem),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No subscription is configured", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let delivery = delivery_of(&state)?;
    state.auth.authorize(&headers, ADMIN_READ)?;
    let Query(params) = params.map_err(|e| query_error(&e))?;
    let limit = admin_limit(params.limit)?;
    let entries = delivery.store.audit_log(params.before, limit).await?;
    Ok(Json(AuditPage { entries }))
}

/// Prometheus metrics.
///
/// Per subscription (labels `subscription`, `sink`): delivered, retried, dead-lettered and
/// disabled counters, events behind, parked, dead letters, age of the oldest undelivered
/// event, and whether it is active; plus the outbox's last seq. OpenMetrics text. Needs
/// `admin:read` (Prometheus sends it as a bearer token).
#[utoipa::path(get, path = "/metrics", tag = "admin", operation_id = "metrics",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "Missing or unknown API key", content_type = "application/problem+json", body = super::Problem),
        (status = 403, description = "The API key lacks `admin:read`", content_type = "application/problem+json", body = super::Problem),
        (status = 404, description = "No subscription is configured", content_type = "application/problem+json", body = super::Problem)
    ))]
pub async fn prometheus(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let delivery = delivery_of(&state)?;
    state.auth.authorize(&headers, ADMIN_READ)?;
    let last_seq = delivery.store.last_seq().await?;
    let text = metrics::render(&statuses(delivery, last_seq).await?, last_seq);
    let mut response = (StatusCode::OK, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    Ok(response)
}

fn known(delivery: &DeliveryHandle, name: &str) -> Result<(), ApiError> {
    if delivery.subscriptions.contains_key(name) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no subscription named `{name}`"
        )))
    }
}

/// A JSON body that may be empty (then the default).
fn optional_json<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::param("body", format!("expected {expected}: {e}")))
}

async fn act(
    delivery: &DeliveryHandle,
    name: &str,
    actor: &str,
    control: Control,
    action: &str,
) -> Result<Json<ActionDone>, ApiError> {
    let affected = delivery
        .control(name, actor, control)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no subscription named `{name}`")))?;
    tracing::info!(subscription = %name, actor = %actor, action, affected, "subscription action");
    Ok(Json(ActionDone {
        subscription: name.to_owned(),
        action: action.to_owned(),
        affected,
        audit: "/admin/audit".into(),
    }))
}
