//! Liveness and readiness. `/healthz` says the process runs; `/readyz` pings every source
//! (concurrently, bounded in time) and is 503 while any is unreachable.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Longest a readiness probe waits for one source.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness of one source.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceReadiness {
    pub name: String,
    pub ready: bool,
    /// Why not, without secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: String,
    pub sources: Vec<SourceReadiness>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is running", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Every source answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every source is reachable", body = Readiness),
        (status = 503, description = "At least one source is unreachable", body = Readiness)
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let checks = state.sources.iter().map(|(name, source)| async move {
        let result = tokio::time::timeout(PING_TIMEOUT, source.ping()).await;
        let reason = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!(source = %name, error = %e.message, "source not ready");
                Some(format!("{:?}", e.kind).to_lowercase())
            }
            Err(_) => Some("timeout".to_owned()),
        };
        SourceReadiness {
            name: name.clone(),
            ready: reason.is_none(),
            reason,
        }
    });
    let mut sources = futures::future::join_all(checks).await;
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let ready = sources.iter().all(|s| s.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "unavailable" }.into(),
            sources,
        }),
    )
}
