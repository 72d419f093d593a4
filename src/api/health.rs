//! Liveness and readiness. `/healthz` says the process runs; `/readyz` pings every source
//! (concurrently, bounded in time) and is 503 while any is unreachable; it lists capture
//! states too, but a paused or failing capture only makes it `degraded` (still 200).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::capture::CaptureState;

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

/// Capture state of one resource, as far as readiness goes.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaptureReadiness {
    pub resource: String,
    pub state: CaptureState,
    /// Why a resource is paused, stopped or failing, without secrets or row data (details are in
    /// `/admin/capture`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`; `degraded` when a resource's capture is paused or failing (still 200);
    /// `unavailable` when a source is unreachable (503).
    #[schema(example = "ready")]
    pub status: String,
    pub sources: Vec<SourceReadiness>,
    /// Per captured resource; absent when capture is not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<Vec<CaptureReadiness>>,
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
///
/// 503 (`unavailable`) while a source is unreachable: the bridge can serve nothing from it.
/// A resource whose capture is paused (schema drift) or failing makes the status `degraded`
/// but stays 200: the API still serves every resource, and one drifted table must not pull
/// the whole bridge out of a load balancer. The `capture` list says which resource and why.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every source is reachable (`ready`), though capture of a resource may be paused or failing (`degraded`)", body = Readiness),
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
    let capture = state.capture.as_ref().map(|c| {
        c.status
            .snapshot()
            .into_iter()
            .map(capture_readiness)
            .collect::<Vec<_>>()
    });
    let degraded = capture.iter().flatten().any(|c| {
        matches!(
            c.state,
            CaptureState::Paused | CaptureState::Stopped | CaptureState::Failing
        )
    });
    let (code, status) = match (ready, degraded) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, true) => (StatusCode::OK, "degraded"),
        (true, false) => (StatusCode::OK, "ready"),
    };
    (
        code,
        Json(Readiness {
            status: status.into(),
            sources,
            capture,
        }),
    )
}

/// `/readyz` needs no key, so a failing resource shows only that it fails: its last error may
/// name hosts or tables and is served by `/admin/capture` alone. A paused reason is written
/// for operators without secrets or row data (see `ResourceCaptureStatus`).
fn capture_readiness(status: crate::capture::ResourceCaptureStatus) -> CaptureReadiness {
    let reason = match status.state {
        CaptureState::Paused | CaptureState::Stopped => Some(
            status
                .paused_reason
                .unwrap_or_else(|| "stopped; see /admin/capture".to_owned()),
        ),
        CaptureState::Failing => {
            Some("the last capture cycle failed; see /admin/capture".to_owned())
        }
        CaptureState::Starting | CaptureState::Loading | CaptureState::Running => None,
    };
    CaptureReadiness {
        resource: status.resource,
        state: status.state,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::StatusBoard;

    #[test]
    fn a_stopped_resource_shows_its_reason_without_a_key() {
        let board = StatusBoard::default();
        board.register("stock", "mssql-change-tracking");
        board.update("stock", |s| {
            s.state = CaptureState::Stopped;
            s.paused_reason = Some("change tracking version 1 of dbo.STOCK has expired".into());
            s.last_error = Some("host db01 refused".into());
        });
        let shown = capture_readiness(board.snapshot().remove(0));
        assert_eq!(shown.state, CaptureState::Stopped);
        assert_eq!(
            shown.reason.as_deref(),
            Some("change tracking version 1 of dbo.STOCK has expired")
        );
    }
}
