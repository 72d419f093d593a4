//! Assembling the service: load config, open sources (waiting a bounded time for a legacy
//! system that is still starting), bind every resource against its source, build the OpenAPI
//! document, and serve until ctrl-c or SIGTERM.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::Auth;
use crate::capture::{self, CaptureError, CaptureRuntime};
use crate::config::{AuthMode, ConfigError, LoadedConfig, SourceConfig};
use crate::delivery::{self, DeliveryRuntime};
use crate::resource::{BindError, Resource, bind_resource};
use crate::source::{self, SourceError, Sources, TableInfo};
use crate::store::{DeliveryStore, SqliteStore, Store, StoreError};

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot open source: {0}")]
    Source(#[from] SourceError),
    #[error("capture: {0}")]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A subscription's sink cannot be built from its config.
    #[error("subscriptions.{subscription}.sink: {error}")]
    Sink {
        subscription: String,
        error: crate::delivery::SinkError,
    },
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
}

/// A started application: bound resources and their sources, and capture once started.
pub struct App {
    pub config: LoadedConfig,
    pub state: Arc<AppState>,
    pub capture: Option<CaptureRuntime>,
    pub delivery: Option<DeliveryRuntime>,
}

/// Opens sources and binds resources. Transient source failures are retried until `wait` has
/// passed, so the bridge can start alongside its legacy database.
pub async fn build(config: LoadedConfig, wait: Duration) -> Result<App, StartError> {
    let deadline = Instant::now() + wait;
    let sources = retry_transient(deadline, || source::open_all(&config)).await?;
    let mut resources = IndexMap::new();
    // Each source's table list is read once, however many resources it serves.
    let mut catalogs: HashMap<String, Vec<TableInfo>> = HashMap::new();
    for (file, name, def) in config.resources() {
        let source = sources.get(&def.source).ok_or_else(|| {
            ConfigError::new(file, format!("resources.{name}.source"), "unknown source")
        })?;
        let schema = match config.deployment.sources.get(&def.source) {
            Some(SourceConfig::Odbc(o)) => o.schema.clone(),
            Some(SourceConfig::Files(_)) | None => None,
        };
        if !catalogs.contains_key(&def.source) {
            let tables = loop {
                match source.tables().await {
                    Err(e) if e.kind.is_transient() && Instant::now() < deadline => {
                        tracing::warn!(source = %def.source, error = %e.message, "source not ready, retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    other => break other?,
                }
            };
            catalogs.insert(def.source.clone(), tables);
        }
        let tables = catalogs
            .get(&def.source)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let bound = loop {
            match bind_resource(file, name, def, schema.as_deref(), source.as_ref(), tables).await {
                Err(BindError::Source { error, .. })
                    if error.kind.is_transient() && Instant::now() < deadline =>
                {
                    tracing::warn!(resource = name, error = %error.message, "source not ready, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => break other?,
            }
        };
        resources.insert(name.to_owned(), Arc::new(bound));
    }
    let state = state(&config, sources, resources);
    Ok(App {
        config,
        state,
        capture: None,
        delivery: None,
    })
}

/// Opens the state store, starts a capture task for every resource with a `capture` section
/// and a dispatcher for every subscription; the API then serves the changes feed and the
/// delivery endpoints. Nothing happens without a captured resource.
pub async fn start_capture(app: &mut App) -> Result<(), StartError> {
    let targets =
        capture::bind_targets(&app.config, &app.state.resources, &app.state.sources).await?;
    if targets.is_empty() {
        return Ok(());
    }
    let path = app.config.state_path();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
        .await
        .map_err(|e| StoreError::Io(format!("opening the state store failed: {e}")))??;
    let captured: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let planned =
        delivery::plan(&app.config, &app.state.resources).map_err(|(subscription, error)| {
            StartError::Sink {
                subscription,
                error,
            }
        })?;
    let store = Arc::new(store);
    warn_unconfigured_subscriptions(&app.config, store.as_ref()).await?;
    let mut runtime = CaptureRuntime::start(targets, Arc::clone(&store) as Arc<dyn Store>).await?;
    let retention_hours = app.config.deployment.state.outbox_retention_hours;
    if retention_hours > 0 {
        runtime.start_retention(Duration::from_secs(retention_hours * 3600));
    }
    let delivery = if planned.is_empty() {
        None
    } else {
        let committed = runtime.handle.committed.clone();
        match DeliveryRuntime::start(planned, &captured, store, committed).await {
            Ok(delivery) => Some(delivery),
            Err(e) => {
                runtime.shutdown().await;
                return Err(e.into());
            }
        }
    };
    let Some(state) = Arc::get_mut(&mut app.state) else {
        runtime.shutdown().await;
        if let Some(delivery) = delivery {
            delivery.shutdown().await;
        }
        return Err(StoreError::Io("capture must start before the API is shared".into()).into());
    };
    state.capture = Some(runtime.handle.clone());
    state.delivery = delivery.as_ref().map(|d| d.handle.clone());
    tracing::info!(resources = captured.len(), subscriptions = app.config.deployment.subscriptions.len(), state = %app.config.state_path().display(), "capture started");
    app.capture = Some(runtime);
    app.delivery = delivery;
    Ok(())
}

/// A subscription removed from the config keeps its cursor in the store, which holds back
/// outbox retention; say so at every start until an operator forgets it.
async fn warn_unconfigured_subscriptions(
    config: &LoadedConfig,
    store: &dyn DeliveryStore,
) -> Result<(), StoreError> {
    for row in store.subscription_rows().await? {
        if !config.deployment.subscriptions.contains_key(&row.name) {
            tracing::warn!(
                subscription = %row.name,
                cursor = row.cursor,
                hint = "run `legacy-bridge subscriptions forget` while the service is stopped",
                "subscription is no longer configured but its undelivered events hold back outbox retention"
            );
        }
    }
    Ok(())
}

async fn retry_transient<F, Fut>(deadline: Instant, mut f: F) -> Result<Sources, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Sources, SourceError>>,
{
    loop {
        match f().await {
            Err(e) if e.kind.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %e.message, "waiting for source");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// Builds the shared state from bound resources.
pub fn state(
    config: &LoadedConfig,
    sources: Sources,
    resources: IndexMap<String, Arc<Resource>>,
) -> Arc<AppState> {
    let auth = Auth::new(&config.deployment.auth);
    let captured: Vec<String> = config
        .resources()
        .filter(|(_, _, def)| def.capture_def().is_some())
        .map(|(_, name, _)| name.to_owned())
        .collect();
    let extras = api::openapi::Extras {
        captured,
        files: config.resources().any(|(_, _, def)| def.file.is_some()),
        delivery: !config.deployment.subscriptions.is_empty(),
    };
    let openapi = api::openapi::build(
        resources.values().map(|r| r.as_ref()),
        &extras,
        auth.enabled(),
    );
    Arc::new(AppState {
        resources,
        sources,
        auth,
        openapi,
        capture: None,
        delivery: None,
        change_waiters: Arc::new(tokio::sync::Semaphore::new(
            config.deployment.server.max_change_waiters,
        )),
    })
}

/// Serves the API until ctrl-c or SIGTERM, then drains in-flight requests and stops capture.
pub async fn serve(mut app: App, listen: Option<std::net::SocketAddr>) -> Result<(), StartError> {
    let capture = app.capture.take();
    let delivery = app.delivery.take();
    let server = &app.config.deployment.server;
    let addr = listen.unwrap_or(server.listen);
    if app.config.deployment.auth.mode == AuthMode::None {
        tracing::warn!("auth.mode is \"none\": every resource is readable without an API key");
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Listen { addr, error })?;
    let router = api::router(
        Arc::clone(&app.state),
        Duration::from_millis(server.request_timeout_ms),
    );
    tracing::info!(%addr, resources = app.state.resources.len(), "listening");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = tx.send(());
    });
    let drained = async {
        let _ = rx.await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r.map_err(|error| StartError::Listen { addr, error })?,
        () = drained => tracing::warn!("shutdown grace period over, exiting with requests in flight"),
    }
    // Delivery first: its dispatchers wait on capture's commit signal.
    if let Some(delivery) = delivery {
        delivery.shutdown().await;
    }
    if let Some(capture) = capture {
        capture.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
