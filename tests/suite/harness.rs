//! Starting the real service in-process on a loopback port, with two API keys: one that
//! reads everything and one that may only read inventory.

use std::time::Duration;

use legacy_bridge::{api, app, auth, config};

use super::engines::repo;

/// A running bridge.
pub struct Bridge {
    pub base: String,
    /// Key with `*:read`.
    pub key: String,
    /// Key with only `inventory:read`.
    pub stock_key: String,
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

/// Writes a deployment config for `connection_string` and returns its path's dir and keys.
pub fn write_config(
    connection_string: &str,
    source_extra: &str,
) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, hash) = auth::generate_key();
    let (stock_key, stock_hash) = auth::generate_key();
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

[sources.pos]
kind = "odbc"
connection_string = {connection_string:?}
{source_extra}
"#
    );
    std::fs::write(dir.path().join("config.toml"), text).expect("write config");
    (dir, key, stock_key)
}

/// Starts the bridge on the demo adapter against `connection_string`.
pub async fn start(connection_string: &str, source_extra: &str) -> Bridge {
    let (dir, key, stock_key) = write_config(connection_string, source_extra);
    let loaded = config::load(&dir.path().join("config.toml")).expect("valid config");
    let built = app::build(loaded, Duration::ZERO)
        .await
        .expect("bridge starts");
    let router = api::router(built.state, Duration::from_secs(30));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Bridge {
        base: format!("http://{addr}"),
        key,
        stock_key,
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
