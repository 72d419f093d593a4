//! The HTTP API: `/v1/{resource}` list and get, the change feed and stream (`/v1/changes`),
//! `/admin/capture`, `/admin/files`, `/admin/subscriptions`, `/admin/audit`, `/metrics`,
//! `/healthz`, `/readyz`, the OpenAPI document and the offline docs page.
//! Handlers only parse, authorize, ask the source or the store, and encode.

mod admin;
mod changes;
mod cursor;
mod error;
mod files;
mod health;
pub mod openapi;
pub mod params;
mod plan;
mod problem;
mod resources;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use indexmap::IndexMap;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use problem::{PROBLEM_JSON, Problem};

use crate::auth::Auth;
use crate::capture::CaptureHandle;
use crate::delivery::DeliveryHandle;
use crate::resource::Resource;
use crate::source::Sources;

/// What every handler shares.
pub struct AppState {
    pub resources: IndexMap<String, Arc<Resource>>,
    pub sources: Sources,
    pub auth: Auth,
    /// The OpenAPI document, built once at start-up from the loaded adapters.
    pub openapi: utoipa::openapi::OpenApi,
    /// Change capture, when any resource has a `capture` section.
    pub capture: Option<CaptureHandle>,
    /// Delivery to subscriptions, when any is configured.
    pub delivery: Option<DeliveryHandle>,
    /// Permits for clients waiting on changes (long-polls with `wait`, SSE streams).
    pub change_waiters: Arc<tokio::sync::Semaphore>,
}

/// Builds the service's router. Every route answers within `request_timeout` (503 after it)
/// except the change feed and stream: a long-poll waits up to 60 s and a stream is endless by
/// design, so they are mounted after the timeout layer and bound their own waits.
pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let mut app = Router::new()
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .route("/admin/capture", axum::routing::get(admin::capture))
        .route(
            "/admin/capture/{resource}/resync",
            axum::routing::post(admin::resync),
        )
        .route("/admin/files", axum::routing::get(files::status))
        .route(
            "/admin/files/{resource}/approve",
            axum::routing::post(files::approve),
        )
        .route(
            "/admin/files/{resource}/quarantine",
            axum::routing::get(files::quarantine),
        )
        .route(
            "/admin/subscriptions",
            axum::routing::get(subscriptions::overview),
        )
        .route(
            "/admin/subscriptions/{name}/dead-letters",
            axum::routing::get(subscriptions::dead_letters),
        )
        .route(
            "/admin/subscriptions/{name}/dead-letters/replay",
            axum::routing::post(subscriptions::replay),
        )
        .route(
            "/admin/subscriptions/{name}/dead-letters/{seq}/replay",
            axum::routing::post(subscriptions::replay_one),
        )
        .route(
            "/admin/subscriptions/{name}/pause",
            axum::routing::post(subscriptions::pause),
        )
        .route(
            "/admin/subscriptions/{name}/resume",
            axum::routing::post(subscriptions::resume),
        )
        .route(
            "/admin/subscriptions/{name}/rewind",
            axum::routing::post(subscriptions::rewind),
        )
        .route("/admin/audit", axum::routing::get(subscriptions::audit))
        .route("/metrics", axum::routing::get(subscriptions::prometheus));
    for resource in state.resources.values() {
        app = resources::routes(app, Arc::clone(resource));
    }
    let docs =
        utoipa_swagger_ui::SwaggerUi::new("/docs").url("/v1/openapi.json", state.openapi.clone());
    let long_lived = changes::routes().with_state(Arc::clone(&state));
    app.with_state(state)
        .merge(docs)
        .fallback(|| async { ApiError::NotFound("no such endpoint; see /docs".into()) })
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        // Added after the timeout layer, so it does not apply to them.
        .merge(long_lived)
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                // The route template, not the URI: keys in paths may be business data.
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".into());
                tracing::info_span!("request", method = %req.method(), route = %route)
            }),
        )
}
