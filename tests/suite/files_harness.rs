//! File resources under test: a temp dir with an export folder, a deployment config whose
//! source `exports` is of kind `files`, the app built and capture started in process and
//! served on a loopback port. No database engine is involved. Exports are written
//! atomically (temp name, then rename) unless a test is about partial writes; text is
//! encoded to legacy code pages with small hand tables, and DBF files are assembled byte by
//! byte, so the readers are checked against an independent oracle.
//!
//! Waiting is always for a condition, with a generous deadline; nothing asserts on elapsed
//! time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use legacy_bridge::app::{self, App};
use legacy_bridge::model::StoredEvent;
use legacy_bridge::{api, auth, config};
use serde_json::Value as Json;

use super::capture_harness::{PATIENCE, read_all, show};

/// How often conditions are re-checked.
const POLL: Duration = Duration::from_millis(25);

/// The source settings most tests want: a fast poll, and files complete as soon as they are
/// renamed into place (the harness always renames).
pub const RENAME: &str = "completion = \"rename\"\npoll_interval_ms = 100\n";

/// API keys of a bridge started with [`Auth::Keys`].
#[derive(Debug, Clone)]
pub struct Keys {
    /// `*:read`.
    pub read_all: String,
    /// `admin:read` only.
    pub admin_read: String,
    /// `admin:read` and `admin:write`.
    pub admin_write: String,
}

/// How the bridge authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `auth.mode = "none"`.
    Off,
    /// Three generated keys, see [`Keys`].
    Keys,
}

/// A bridge serving file resources, with capture running.
pub struct FilesBridge {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: Option<Keys>,
    dir: tempfile::TempDir,
    app: Option<App>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FilesBridge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Writes `config.toml` and `adapter.toml` into `dir` (source `exports` on folder
/// `exports`, state store under `state/`) and creates the export folder. Returns the config
/// path and the keys.
pub fn write_config(
    dir: &Path,
    source_extra: &str,
    adapter: &str,
    auth: Auth,
) -> (PathBuf, Option<Keys>) {
    let (auth_text, keys) = match auth {
        Auth::Off => ("[auth]\nmode = \"none\"\n".to_owned(), None),
        Auth::Keys => {
            let (read_all, h1) = auth::generate_key();
            let (admin_read, h2) = auth::generate_key();
            let (admin_write, h3) = auth::generate_key();
            let text = format!(
                "[auth]\nmode = \"api-keys\"\n\n\
                 [[auth.keys]]\nname = \"reader\"\nsha256 = \"{h1}\"\nscopes = [\"*:read\"]\n\n\
                 [[auth.keys]]\nname = \"watcher\"\nsha256 = \"{h2}\"\nscopes = [\"admin:read\"]\n\n\
                 [[auth.keys]]\nname = \"operator\"\nsha256 = \"{h3}\"\n\
                 scopes = [\"admin:read\", \"admin:write\"]\n"
            );
            (
                text,
                Some(Keys {
                    read_all,
                    admin_read,
                    admin_write,
                }),
            )
        }
    };
    let text = format!(
        "adapters = [\"adapter.toml\"]\n\n{auth_text}\n[state]\npath = \"state/lb.db\"\n\n\
         [sources.exports]\nkind = \"files\"\ndir = \"exports\"\n{source_extra}\n"
    );
    std::fs::create_dir_all(dir.join("exports")).expect("export folder");
    let config = dir.join("config.toml");
    std::fs::write(&config, text).expect("write config");
    std::fs::write(
        dir.join("adapter.toml"),
        format!("description = \"files test\"\n{adapter}"),
    )
    .expect("write adapter");
    (config, keys)
}

impl FilesBridge {
    /// Writes the config, builds the app, starts capture and serves the API.
    pub async fn start(source_extra: &str, adapter: &str, auth: Auth) -> FilesBridge {
        if std::env::var_os("RUST_LOG").is_some() {
            legacy_bridge::telemetry::init(false);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, keys) = write_config(dir.path(), source_extra, adapter, auth);
        let (app, base, server) = serve(&config).await;
        FilesBridge {
            base,
            http: reqwest::Client::new(),
            keys,
            dir,
            app: Some(app),
            server,
        }
    }

    /// Stops capture the way the service does on SIGTERM and the server, then starts both
    /// again on the same config, exports and state (on a new port).
    pub async fn restart(&mut self) {
        if let Some(mut app) = self.app.take()
            && let Some(runtime) = app.capture.take()
        {
            runtime.shutdown().await;
        }
        self.server.abort();
        let (app, base, server) = serve(&self.dir.path().join("config.toml")).await;
        self.app = Some(app);
        self.base = base;
        self.server = server;
    }

    /// The export folder.
    pub fn exports(&self) -> PathBuf {
        self.dir.path().join("exports")
    }

    /// The temp dir holding config, exports and state.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Drops `bytes` into the export folder as `name`, atomically.
    pub fn drop_export(&self, name: &str, bytes: &[u8]) {
        write_atomically(&self.exports(), name, bytes);
    }

    /// Every event in the outbox, in sequence order.
    pub async fn events(&self) -> Vec<StoredEvent> {
        let app = self.app.as_ref().expect("app");
        let runtime = app.capture.as_ref().expect("capture runs");
        read_all(runtime.handle.store.as_ref()).await
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// The key for a request that needs `admin:write` (none without auth).
    fn operator(&self) -> Option<String> {
        self.keys.as_ref().map(|k| k.admin_write.clone())
    }

    /// The key that reads resources (none without auth).
    fn reader(&self) -> Option<String> {
        self.keys.as_ref().map(|k| k.read_all.clone())
    }

    /// GET with a given key (or none).
    pub async fn get_with(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, key)
            .send()
            .await
            .expect("request")
    }

    /// GET of a resource path with the reading key (if any).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, self.reader().as_deref()).await
    }

    /// Conditional GET.
    pub async fn get_if_none_match(&self, path: &str, etag: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, self.reader().as_deref())
            .header("if-none-match", etag)
            .send()
            .await
            .expect("request")
    }

    /// GET expecting 200 JSON.
    pub async fn json(&self, path: &str) -> Json {
        let resp = self.get(path).await;
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// `data` of a list request.
    pub async fn list(&self, path: &str) -> Vec<Json> {
        self.json(path)
            .await
            .get("data")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("GET {path}: no data array"))
    }

    /// Follows `next` links from `path`, returning every record.
    pub async fn all_pages(&self, path: &str) -> Vec<Json> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next {
            let page = self.json(&p).await;
            out.extend(page["data"].as_array().expect("data").iter().cloned());
            next = page["next"].as_str().map(str::to_owned);
            pages += 1;
            assert!(pages < 10_000, "pagination does not end");
        }
        out
    }

    /// `GET /admin/files` with the operator key.
    pub async fn files_status(&self) -> Json {
        let key = self.keys.as_ref().map(|k| k.admin_read.clone());
        let resp = self.get_with("/admin/files", key.as_deref()).await;
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 200, "GET /admin/files: {body}");
        serde_json::from_str(&body).expect("json")
    }

    /// The `export` object of one resource in `GET /admin/files` (`null` before its first
    /// cycle).
    pub async fn export_status(&self, resource: &str) -> Json {
        let all = self.files_status().await;
        all["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == resource)
            .unwrap_or_else(|| panic!("`{resource}` is not in /admin/files: {all}"))
            .clone()
    }

    /// Waits until `done` holds for the resource's entry in `/admin/files` and returns it.
    pub async fn wait_export(
        &self,
        resource: &str,
        what: &str,
        done: impl Fn(&Json) -> bool,
    ) -> Json {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.export_status(resource).await;
            if done(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {PATIENCE:?} for `{resource}` to be {what}; status: {status:#}\noutbox:\n{}",
                    show(&self.events().await)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `last_cycle_at` of a resource in `GET /admin/capture`.
    async fn last_cycle_at(&self, resource: &str) -> Json {
        let key = self.keys.as_ref().map(|k| k.admin_read.clone());
        let resp = self.get_with("/admin/capture", key.as_deref()).await;
        assert_eq!(resp.status(), 200, "GET /admin/capture");
        let all: Json = resp.json().await.expect("json");
        all["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == resource)
            .map(|r| r["last_cycle_at"].clone())
            .unwrap_or_else(|| panic!("`{resource}` is not captured: {all}"))
    }

    /// Waits until `n` more capture cycles of `resource` have completed (each a listing of
    /// the folder), so a test can tell that something did *not* happen.
    pub async fn wait_cycles(&self, resource: &str, n: usize) {
        let mut last = self.last_cycle_at(resource).await;
        let deadline = Instant::now() + PATIENCE;
        let mut seen = 0;
        while seen < n {
            let now = self.last_cycle_at(resource).await;
            if now != last {
                seen += 1;
                last = now;
            }
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {n} cycles of `{resource}`, saw {seen}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `file` is the last applied export of `resource`, and returns the status.
    pub async fn wait_applied(&self, resource: &str, file: &str) -> Json {
        self.wait_export(resource, &format!("applied from {file}"), |s| {
            s["export"]["last_applied"]["file"] == file && s["export"]["state"] == "applied"
        })
        .await
    }

    /// Waits until `done` holds for the whole outbox and returns it.
    pub async fn wait_events(
        &self,
        what: &str,
        done: impl Fn(&[StoredEvent]) -> bool,
    ) -> Vec<StoredEvent> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let events = self.events().await;
            if done(&events) {
                return events;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {PATIENCE:?} for {what}\nfiles: {:#}\noutbox:\n{}",
                    self.files_status().await,
                    show(&events)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `POST /admin/files/{resource}/approve` with `sha256`, with a given key.
    pub async fn approve_with(
        &self,
        resource: &str,
        sha256: &str,
        key: Option<&str>,
    ) -> reqwest::Response {
        self.request(
            reqwest::Method::POST,
            &format!("/admin/files/{resource}/approve"),
            key,
        )
        .json(&serde_json::json!({ "sha256": sha256 }))
        .send()
        .await
        .expect("request")
    }

    /// Approve with the operator key.
    pub async fn approve(&self, resource: &str, sha256: &str) -> reqwest::Response {
        self.approve_with(resource, sha256, self.operator().as_deref())
            .await
    }

    /// `GET /admin/files/{resource}/quarantine` rows, with the operator key.
    pub async fn quarantine(&self, resource: &str) -> Vec<Json> {
        let key = self.operator();
        let path = format!("/admin/files/{resource}/quarantine?limit=1000");
        let resp = self.get_with(&path, key.as_deref()).await;
        let status = resp.status();
        let body = resp.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {body}");
        let json: Json = serde_json::from_str(&body).expect("json");
        json["rows"].as_array().expect("rows").clone()
    }
}

/// Builds the app from `config`, starts capture (retrying while a stopped runtime still
/// holds the state store) and serves the API on a loopback port.
async fn serve(config: &Path) -> (App, String, tokio::task::JoinHandle<()>) {
    let deadline = Instant::now() + PATIENCE;
    let app = loop {
        let loaded = config::load(config).expect("valid test config");
        let mut app = app::build(loaded, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("bridge does not start: {e}"));
        match app::start_capture(&mut app).await {
            Ok(()) => break app,
            Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                drop(app);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("capture does not start: {e}"),
        }
    };
    assert!(app.capture.is_some(), "no captured resource");
    let router = api::router(std::sync::Arc::clone(&app.state), Duration::from_secs(30));
    let (addr, server) = super::harness::serve(router).await;
    (app, format!("http://{addr}"), server)
}

/// Writes `bytes` as `dir/name` through a hidden temp file and a rename, so a listing never
/// sees a half-written export.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, bytes).expect("write export");
    std::fs::rename(&tmp, dir.join(name)).expect("rename export into place");
}

/// Hex SHA-256 of `bytes`, as `/admin/files` shows an export's content hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Events of one type (e.g. `prices.updated`).
pub fn of_type<'a>(events: &'a [StoredEvent], event_type: &str) -> Vec<&'a StoredEvent> {
    events
        .iter()
        .filter(|e| e.event.event_type == event_type)
        .collect()
}

// --- legacy code pages --------------------------------------------------------------------

/// The few non-ASCII characters the tests use, in Windows-1252 and code page 437.
const CODE_PAGES: [(char, u8, u8); 10] = [
    ('ä', 0xE4, 0x84),
    ('ö', 0xF6, 0x94),
    ('ü', 0xFC, 0x81),
    ('Ä', 0xC4, 0x8E),
    ('Ö', 0xD6, 0x99),
    ('Ü', 0xDC, 0x9A),
    ('ß', 0xDF, 0xE1),
    ('é', 0xE9, 0x82),
    ('ñ', 0xF1, 0xA4),
    ('£', 0xA3, 0x9C),
];

fn encode_with(text: &str, pick: impl Fn(&(char, u8, u8)) -> u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c as u8);
        } else {
            let entry = CODE_PAGES
                .iter()
                .find(|e| e.0 == c)
                .unwrap_or_else(|| panic!("no code-page entry for {c:?} in the test table"));
            out.push(pick(entry));
        }
    }
    out
}

/// `text` in Windows-1252.
pub fn cp1252(text: &str) -> Vec<u8> {
    encode_with(text, |e| e.1)
}

/// `text` in code page 437.
pub fn cp437(text: &str) -> Vec<u8> {
    encode_with(text, |e| e.2)
}

// --- DBF ----------------------------------------------------------------------------------

/// A DBF field: name, type (`C`, `N`, `D`, `L`), width and decimals.
pub struct DbfField {
    pub name: &'static str,
    pub kind: u8,
    pub len: u8,
    pub decimals: u8,
}

/// A dBASE III table: 32-byte header (record count, header and record length, the
/// language-driver byte at offset 29), 32-byte field descriptors, 0x0D, then records (a
/// deletion flag, ` ` or `*`, and the fields' bytes, each padded to its width: character
/// fields left-aligned, the rest right-aligned) and 0x1A. `records` hold encoded field
/// values.
pub fn dbf(language_driver: u8, fields: &[DbfField], records: &[(bool, Vec<Vec<u8>>)]) -> Vec<u8> {
    let header_len = 32 + 32 * fields.len() + 1;
    let record_len = 1 + fields.iter().map(|f| usize::from(f.len)).sum::<usize>();
    let mut out = Vec::with_capacity(header_len + record_len * records.len() + 1);
    out.push(0x03); // dBASE III without memo
    out.extend_from_slice(&[126, 1, 5]); // last update 2026-01-05
    out.extend_from_slice(&u32::try_from(records.len()).expect("count").to_le_bytes());
    out.extend_from_slice(&u16::try_from(header_len).expect("header").to_le_bytes());
    out.extend_from_slice(&u16::try_from(record_len).expect("record").to_le_bytes());
    out.extend_from_slice(&[0; 17]); // reserved, transaction, encryption, multi-user, mdx
    out.push(language_driver);
    out.extend_from_slice(&[0; 2]);
    assert_eq!(out.len(), 32);
    for f in fields {
        let mut name = [0u8; 11];
        name[..f.name.len()].copy_from_slice(f.name.as_bytes());
        out.extend_from_slice(&name);
        out.push(f.kind);
        out.extend_from_slice(&[0; 4]);
        out.push(f.len);
        out.push(f.decimals);
        out.extend_from_slice(&[0; 14]);
    }
    out.push(0x0D);
    assert_eq!(out.len(), header_len);
    for (deleted, values) in records {
        assert_eq!(values.len(), fields.len(), "one value per field");
        out.push(if *deleted { b'*' } else { b' ' });
        for (f, v) in fields.iter().zip(values) {
            let width = usize::from(f.len);
            assert!(v.len() <= width, "value wider than field {}", f.name);
            let pad = vec![b' '; width - v.len()];
            if f.kind == b'C' {
                out.extend_from_slice(v);
                out.extend_from_slice(&pad);
            } else {
                out.extend_from_slice(&pad);
                out.extend_from_slice(v);
            }
        }
    }
    out.push(0x1A);
    out
}
