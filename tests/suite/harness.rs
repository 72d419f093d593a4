//! Starting the real service in-process on a loopback port, with three API keys: one that
//! reads everything, one that may only read inventory, and one that may only read `/admin`.

use std::time::Duration;

use std::sync::Arc;

use legacy_bridge::capture::CaptureHandle;
use legacy_bridge::{api, app, auth, config};

use super::engines::repo;

/// A running bridge.
pub struct Bridge {
    pub base: String,
    /// Key with `*:read`.
    pub key: String,
    /// Key with only `inventory:read`.
    pub stock_key: String,
    /// Key with only `admin:read` and `admin:write`.
    pub admin_key: String,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Source settings appended to `[sources.pos]`.
pub const DEFAULT_SOURCE_EXTRA: &str = "";

/// The API keys of a written config.
pub struct Keys {
    /// `*:read`.
    pub all: String,
    /// `inventory:read`.
    pub stock: String,
    /// `admin:read` and `admin:write`.
    pub admin: String,
}

/// Serves `router` on a free loopback port; the task ends when aborted.
pub async fn serve(router: axum::Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, server)
}

/// Writes a deployment config for `connection_string` and returns its path's dir and keys.
pub fn write_config(
    connection_string: &str,
    source_extra: &str,
) -> (tempfile::TempDir, String, String) {
    let (dir, keys) = write_config_with_keys(connection_string, source_extra);
    (dir, keys.all, keys.stock)
}

/// Writes a deployment config for `connection_string`; returns its dir and all three keys.
pub fn write_config_with_keys(
    connection_string: &str,
    source_extra: &str,
) -> (tempfile::TempDir, Keys) {
    write_config_with_source(&format!(
        "[sources.pos]\nkind = \"odbc\"\nconnection_string = {connection_string:?}\n{source_extra}"
    ))
}

/// Writes a deployment config whose `[sources.pos]` section is `source` (any kind); returns
/// its dir and all three keys.
pub fn write_config_with_source(source: &str) -> (tempfile::TempDir, Keys) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, hash) = auth::generate_key();
    let (stock_key, stock_hash) = auth::generate_key();
    let (admin_key, admin_hash) = auth::generate_key();
    let adapter = repo().join("adapters/demo-pos.toml");
    let text = format!(
        r#"adapters = [{adapter:?}]

[auth]
mode = "api-keys"

[[auth.keys]]
name = "all"
sha256 = "{hash}"
scopes = ["*:read"]

[[auth.keys]]
name = "stock-only"
sha256 = "{stock_hash}"
scopes = ["inventory:read"]

[[auth.keys]]
name = "operator"
sha256 = "{admin_hash}"
scopes = ["admin:read", "admin:write"]

{source}
"#
    );
    std::fs::write(dir.path().join("config.toml"), text).expect("write config");
    let keys = Keys {
        all: key,
        stock: stock_key,
        admin: admin_key,
    };
    (dir, keys)
}

/// Starts the bridge on the demo adapter against `connection_string`.
pub async fn start(connection_string: &str, source_extra: &str) -> Bridge {
    start_inner(
        connection_string,
        source_extra,
        None,
        Duration::from_secs(30),
    )
    .await
}

/// Starts the bridge on the demo adapter with change capture served from `capture` (built by
/// the test from a real store, as the engine would) and the given request timeout.
pub async fn start_with_capture(
    connection_string: &str,
    capture: CaptureHandle,
    request_timeout: Duration,
) -> Bridge {
    start_inner(
        connection_string,
        DEFAULT_SOURCE_EXTRA,
        Some(capture),
        request_timeout,
    )
    .await
}

/// As [`start_with_capture`], with extra deployment config appended after the source (it
/// may open new tables such as `[server]`).
pub async fn start_with_capture_and(
    connection_string: &str,
    capture: CaptureHandle,
    request_timeout: Duration,
    extra: &str,
) -> Bridge {
    start_inner(connection_string, extra, Some(capture), request_timeout).await
}

async fn start_inner(
    connection_string: &str,
    source_extra: &str,
    capture: Option<CaptureHandle>,
    request_timeout: Duration,
) -> Bridge {
    let (dir, keys) = write_config_with_keys(connection_string, source_extra);
    serve_config(dir, keys, capture, request_timeout).await
}

/// Starts the bridge on the demo adapter over `source`, a whole `[sources.pos]` section.
pub async fn start_with_source(source: &str) -> Bridge {
    let (dir, keys) = write_config_with_source(source);
    serve_config(dir, keys, None, Duration::from_secs(30)).await
}

async fn serve_config(
    dir: tempfile::TempDir,
    keys: Keys,
    capture: Option<CaptureHandle>,
    request_timeout: Duration,
) -> Bridge {
    let loaded = config::load(&dir.path().join("config.toml")).expect("valid config");
    let built = app::build(loaded, Duration::ZERO)
        .await
        .expect("bridge starts");
    let mut state = built.state;
    if capture.is_some() {
        let Ok(mut owned) = Arc::try_unwrap(state) else {
            panic!("app state is shared before the router is built");
        };
        owned.capture = capture;
        state = Arc::new(owned);
    }
    let router = api::router(state, request_timeout);
    let (addr, server) = serve(router).await;
    Bridge {
        base: format!("http://{addr}"),
        key: keys.all,
        stock_key: keys.stock,
        admin_key: keys.admin,
        http: reqwest::Client::new(),
        server,
        _dir: dir,
    }
}

impl Bridge {
    /// GET with the all-access key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, Some(&self.key)).await
    }

    /// GET with a given key (or none).
    pub async fn get_with(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.expect("request")
    }

    /// Conditional GET with the all-access key.
    pub async fn get_if_none_match(&self, path: &str, etag: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("if-none-match", etag)
            .send()
            .await
            .expect("request")
    }

    /// GET expecting 200 JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let resp = self.get(path).await;
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// Follows `next` links from `path`, returning every record.
    pub async fn all_pages(&self, path: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next {
            let page = self.json(&p).await;
            out.extend(page["data"].as_array().expect("data").iter().cloned());
            next = page["next"].as_str().map(str::to_owned);
            pages += 1;
            assert!(pages < 1000, "pagination does not end");
        }
        out
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: serde_json::Value = resp.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    body
}
