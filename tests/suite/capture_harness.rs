//! Capture under test: a deployment config with a test adapter (the demo tables, capture
//! sections tuned per test) written into a temp dir, the app built and capture started in
//! process, the outbox read straight from the state store, and a till that writes legacy rows
//! the way the POS does (CHAR values space-padded, naive Europe/Berlin timestamps).
//!
//! Waiting is always for a condition, with a generous deadline; nothing asserts on elapsed
//! time, so the tests hold on a loaded two-core machine.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Timelike as _, Utc};
use chrono_tz::Europe::Berlin;
use legacy_bridge::app::{self, App};
use legacy_bridge::capture::{CaptureHandle, CaptureRuntime, CaptureState, ResourceCaptureStatus};
use legacy_bridge::config::{self, DEFAULT_CHANGELOG_TABLE};
use legacy_bridge::model::StoredEvent;
use legacy_bridge::resource::Resource;
use legacy_bridge::source::Source;
use legacy_bridge::store::{EventFilter, Store};
use rust_decimal::Decimal;
use tokio::sync::oneshot;

use super::engines::{Engine, TestDb};

/// Every engine a capture test runs on unless its point is engine-specific.
pub const ENGINES: [Engine; 3] = [Engine::Sqlite, Engine::Mariadb, Engine::Postgres];

/// How long a test waits for capture to reach a condition. Far above what an idle machine
/// needs (well under a second), so a loaded one does not turn it into a flake.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often conditions are re-checked.
const POLL: Duration = Duration::from_millis(25);

// --- adapters ---------------------------------------------------------------------------

/// The demo mapping of STOCK_LEVEL (canonical `inventory`).
pub const INVENTORY_FIELDS: &str = r#"
sku        = { column = "ITEM_CODE", type = "string", trim = "end" }
location   = { column = "STORE_NO", type = "string", trim = "end" }
on_hand    = { column = "QTY_ON_HAND", type = "decimal" }
reserved   = { column = "QTY_RESERVED", type = "decimal" }
updated_at = { column = "LAST_UPD", type = "timestamp", timezone = "Europe/Berlin" }
"#;

/// The demo mapping of ITEM_MASTER (canonical `products`).
pub const PRODUCTS_FIELDS: &str = r#"
sku         = { column = "ITEM_CODE", type = "string", trim = "end" }
name        = { column = "DESCR", type = "string", trim = "end" }
description = { column = "LONG_DESCR", type = "string", trim = "end" }
category    = { column = "DEPT_CODE", type = "string", trim = "end" }
unit        = { column = "UOM", type = "string", trim = "end" }
barcode     = { column = "EAN", type = "string", trim = "end" }
active      = { column = "ACTIVE_FLG", type = "boolean", true_values = ["Y"], false_values = ["N"] }
updated_at  = { column = "LAST_UPD", type = "timestamp", timezone = "Europe/Berlin" }
"#;

/// The demo mapping of PRICE_LIST_ITEM (canonical `prices`; no primary key in the table).
pub const PRICES_FIELDS: &str = r#"
sku        = { column = "ITEM_CODE", type = "string", trim = "end" }
price_list = { column = "PL_CODE", type = "string", trim = "end" }
currency   = { column = "CURR", type = "string", trim = "end" }
amount     = { column = "PRICE", type = "decimal", scale = 2 }
valid_from = { column = "VALID_FROM", type = "timestamp", timezone = "Europe/Berlin" }
updated_at = { column = "LAST_UPD", type = "timestamp", timezone = "Europe/Berlin" }
"#;

/// The demo mapping of SALES_JOURNAL (custom `sales`).
pub const SALES_FIELDS: &str = r#"
txn_no   = { column = "TXN_NO", type = "integer" }
location = { column = "STORE_NO", type = "string", trim = "end" }
sku      = { column = "ITEM_CODE", type = "string", trim = "end" }
quantity = { column = "QTY", type = "decimal" }
amount   = { column = "AMOUNT", type = "decimal", scale = 2 }
sold_at  = { column = "TXN_TS", type = "timestamp", timezone = "Europe/Berlin" }
"#;

/// One resource of a test adapter, with `capture` as the body of its capture section.
fn resource(name: &str, table: &str, key: &str, fields: &str, capture: &str) -> String {
    format!(
        "\n[resources.{name}]\nsource = \"pos\"\ntable = \"{table}\"\nkey = {key}\n\n\
         [resources.{name}.fields]\n{fields}\n[resources.{name}.capture]\n{capture}\n"
    )
}

/// `inventory` on STOCK_LEVEL, captured as `capture` says.
pub fn inventory(capture: &str) -> String {
    resource(
        "inventory",
        "STOCK_LEVEL",
        r#"["sku", "location"]"#,
        INVENTORY_FIELDS,
        capture,
    )
}

/// `products` on ITEM_MASTER.
pub fn products(capture: &str) -> String {
    resource(
        "products",
        "ITEM_MASTER",
        r#""sku""#,
        PRODUCTS_FIELDS,
        capture,
    )
}

/// `prices` on PRICE_LIST_ITEM.
pub fn prices(capture: &str) -> String {
    resource(
        "prices",
        "PRICE_LIST_ITEM",
        r#"["sku", "price_list"]"#,
        PRICES_FIELDS,
        capture,
    )
}

/// `sales` on SALES_JOURNAL.
pub fn sales(capture: &str) -> String {
    resource(
        "sales",
        "SALES_JOURNAL",
        r#""txn_no""#,
        SALES_FIELDS,
        capture,
    )
}

/// Writes `config.toml` (auth off, `source_section` being the whole `[sources.pos]` section,
/// of any kind) and `adapter.toml` into `dir`.
pub fn write_config(dir: &std::path::Path, source_section: &str, adapter: &str) -> PathBuf {
    let text =
        format!("adapters = [\"adapter.toml\"]\n\n[auth]\nmode = \"none\"\n\n{source_section}\n");
    let config = dir.join("config.toml");
    std::fs::write(&config, text).expect("write config");
    std::fs::write(dir.join("adapter.toml"), adapter).expect("write adapter");
    config
}

// --- the running bridge -----------------------------------------------------------------

/// The bridge with capture running in this process, on its own temp dir (config, adapter,
/// state store). Stopping and starting again keeps the state store, like a restart.
pub struct Rig {
    /// For messages.
    pub label: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    app: Option<App>,
    runtime: Option<CaptureRuntime>,
}

impl Rig {
    /// Writes the config and builds the app (sources opened, resources bound); capture is not
    /// started yet.
    pub async fn build(
        engine: Engine,
        connection_string: &str,
        source_extra: &str,
        adapter: &str,
    ) -> Rig {
        Self::build_on(
            &format!("{engine:?}"),
            &format!(
                "[sources.pos]\nkind = \"odbc\"\nconnection_string = {connection_string:?}\n{source_extra}\n"
            ),
            adapter,
        )
        .await
    }

    /// Like [`Rig::build`], with the `[sources.pos]` section given whole (another source
    /// kind, e.g. `mssql`); `label` names it in messages.
    pub async fn build_on(label: &str, source_section: &str, adapter: &str) -> Rig {
        if std::env::var_os("RUST_LOG").is_some() {
            legacy_bridge::telemetry::init(false);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), source_section, adapter);
        let mut rig = Rig {
            label: label.to_owned(),
            dir,
            config,
            app: None,
            runtime: None,
        };
        rig.app = Some(rig.build_app().await);
        rig
    }

    /// Builds the app for inventory under the change-log strategy
    /// ([`INVENTORY_CHANGELOG`]) on `db`, with the log table and triggers installed; capture
    /// is not started yet.
    pub async fn build_logged_inventory(db: &TestDb) -> Rig {
        let rig = Rig::build(
            db.engine,
            &db.connection_string,
            "",
            &inventory(INVENTORY_CHANGELOG),
        )
        .await;
        rig.apply_changelog_ddl("inventory").await;
        rig
    }

    /// Builds the app and starts capture against `db`.
    pub async fn start(db: &TestDb, adapter: &str) -> Rig {
        let mut rig = Rig::build(db.engine, &db.connection_string, "", adapter).await;
        rig.start_capture().await;
        rig
    }

    async fn build_app(&self) -> App {
        let loaded = config::load(&self.config).expect("valid test config");
        app::build(loaded, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{}: bridge does not start: {e}", self.label))
    }

    /// Starts capture on the built app (building it first after a [`Rig::stop`]). The state
    /// store of a stopped runtime may take a moment to be released, so a locked store is
    /// retried.
    pub async fn start_capture(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.app.is_none() {
                self.app = Some(self.build_app().await);
            }
            let app = self.app.as_mut().expect("app");
            match app::start_capture(app).await {
                Ok(()) => break,
                Err(e) if e.to_string().contains("in use") && Instant::now() < deadline => {
                    self.app = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{}: capture does not start: {e}", self.label),
            }
        }
        self.runtime = self.app.as_mut().and_then(|a| a.capture.take());
        assert!(
            self.runtime.is_some(),
            "{}: no captured resource",
            self.label
        );
    }

    /// Starts capture like [`Rig::start_capture`], but reading through `source` instead of
    /// the configured `pos` source (a wrapper that fakes what the source reports, e.g. its
    /// clock). The app must be built.
    pub async fn start_capture_on(&mut self, source: Arc<dyn Source>) {
        let app = self.app.as_ref().expect("app is built");
        let mut sources = legacy_bridge::source::Sources::new();
        sources.insert("pos".to_owned(), source);
        let targets =
            legacy_bridge::capture::bind_targets(&app.config, &app.state.resources, &sources)
                .await
                .expect("capture targets bind");
        let path = self.state_path();
        let store =
            tokio::task::spawn_blocking(move || legacy_bridge::store::SqliteStore::open(&path))
                .await
                .expect("join")
                .expect("state store opens");
        self.runtime = Some(
            CaptureRuntime::start(targets, Arc::new(store))
                .await
                .expect("capture starts"),
        );
    }

    /// Stops capture the way the service does on SIGTERM (`CaptureRuntime::shutdown`: the
    /// current step finishes, nothing new starts) and closes the app and the state store.
    pub async fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown().await;
        }
        self.app = None;
    }

    /// The running capture.
    pub fn handle(&self) -> &CaptureHandle {
        &self.runtime.as_ref().expect("capture is running").handle
    }

    fn built(&self) -> &App {
        self.app.as_ref().expect("app is built")
    }

    /// The source `pos`.
    pub fn source(&self) -> Arc<dyn Source> {
        Arc::clone(&self.built().state.sources["pos"])
    }

    /// A bound resource.
    pub fn resource(&self, name: &str) -> Arc<Resource> {
        Arc::clone(&self.built().state.resources[name])
    }

    /// The deployment config file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// The state store file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join(config::DEFAULT_STATE_PATH)
    }

    /// Installs the change-log table and triggers for `resource`, as `changelog ddl --apply`
    /// does (through `Source::execute`).
    pub async fn apply_changelog_ddl(&self, resource: &str) {
        let source = self.source();
        let resource = self.resource(resource);
        let ddl = legacy_bridge::capture::changelog_ddl::for_resource(
            source.dialect(),
            DEFAULT_CHANGELOG_TABLE,
            &resource,
        )
        .expect("change-log DDL renders");
        for statement in ddl.statements() {
            source
                .execute(statement.sql.clone(), Vec::new())
                .await
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", statement.what, statement.sql));
        }
    }

    /// Every event in the outbox, in sequence order.
    pub async fn events(&self) -> Vec<StoredEvent> {
        read_all(self.handle().store.as_ref()).await
    }

    /// A resource's capture status.
    pub fn status(&self, resource: &str) -> ResourceCaptureStatus {
        self.handle()
            .status
            .get(resource)
            .unwrap_or_else(|| panic!("{}: `{resource}` is not captured", self.label))
    }

    /// Waits (up to [`PATIENCE`]) until `done` holds for the whole outbox and returns it.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&[StoredEvent]) -> bool,
    ) -> Vec<StoredEvent> {
        self.wait_for_within(what, PATIENCE, done).await
    }

    /// Waits until `done` holds for the whole outbox, at most `timeout`, and returns it.
    pub async fn wait_for_within(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[StoredEvent]) -> bool,
    ) -> Vec<StoredEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events().await;
            if done(&events) {
                return events;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: waited {timeout:?} for {what}\nstatus: {:#?}\noutbox:\n{}",
                    self.label,
                    self.handle().status.snapshot(),
                    show(&events)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `done` holds for a resource's status and returns it.
    pub async fn wait_status(
        &self,
        resource: &str,
        what: &str,
        done: impl Fn(&ResourceCaptureStatus) -> bool,
    ) -> ResourceCaptureStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.status(resource);
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: waited {PATIENCE:?} for `{resource}` to be {what}; status: {status:#?}",
                self.label
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `resource` has finished its first step (initial load or baseline) and is
    /// following changes.
    pub async fn wait_running(&self, resource: &str) {
        // Past the initial load too: with `initial = "none"` a write made while that load
        // runs is emitted as an `updated` event whose `before` is the row itself
        // (capture_baseline.rs), which a test of ordinary changes does not expect.
        self.wait_status(resource, "running past its initial load", |s| {
            s.state == CaptureState::Running
                && s.last_cycle_at.is_some()
                && s.checkpoint
                    .as_ref()
                    .is_some_and(|cp| cp["initial_done"] == true)
        })
        .await;
    }

    /// Waits for `n` (at least 2) successful cycles of `resource` that complete after this
    /// call; all but the first also *started* after it, so they saw everything committed
    /// before the call.
    pub async fn wait_cycles(&self, resource: &str, n: usize) {
        assert!(n >= 2, "the first cycle seen may have started earlier");
        let since = Utc::now();
        let mut seen: Vec<DateTime<Utc>> = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while seen.len() < n {
            let status = self.status(resource);
            if let Some(at) = status.last_cycle_at
                && at > since
                && !seen.contains(&at)
            {
                seen.push(at);
            }
            assert!(
                Instant::now() < deadline,
                "{}: waited {PATIENCE:?} for {n} cycles of `{resource}`, saw {}; status: {status:#?}",
                self.label,
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every event of a store, in sequence order.
pub async fn read_all(store: &dyn Store) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .events(after, 500, &EventFilter::default())
            .await
            .expect("outbox readable");
        if page.events.is_empty() {
            return out;
        }
        after = page.next_after;
        out.extend(page.events);
    }
}

/// Polls an async condition until it holds, panicking with `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    eventually_within(what, PATIENCE, check).await;
}

/// Polls an async condition until it holds, panicking with `what` and the last reason after
/// `timeout`.
pub async fn eventually_within<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// --- reading events ---------------------------------------------------------------------

/// One line per event, for failure messages.
pub fn show(events: &[StoredEvent]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "  {:>4} {:<20} {:<14} {}\n",
                e.seq,
                e.event.event_type,
                e.event.subject,
                e.event.data["origin"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Events of `event_type` (e.g. `inventory.created`) for `subject`.
pub fn matching<'a>(
    events: &'a [StoredEvent],
    event_type: &str,
    subject: &str,
) -> Vec<&'a StoredEvent> {
    events
        .iter()
        .filter(|e| e.event.event_type == event_type && e.event.subject == subject)
        .collect()
}

/// Whether an event of `event_type` for `subject` is in the outbox.
pub fn has(events: &[StoredEvent], event_type: &str, subject: &str) -> bool {
    !matching(events, event_type, subject).is_empty()
}

/// The one event of `event_type` for `subject`; fails if there is none or several.
pub fn the<'a>(events: &'a [StoredEvent], event_type: &str, subject: &str) -> &'a StoredEvent {
    let found = matching(events, event_type, subject);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {event_type} for {subject}; outbox:\n{}",
        show(events)
    );
    found[0]
}

/// Events of one resource.
pub fn of<'a>(events: &'a [StoredEvent], resource: &str) -> Vec<&'a StoredEvent> {
    events
        .iter()
        .filter(|e| e.event.resource == resource)
        .collect()
}

/// Sequence numbers are exactly 1..=n.
pub fn assert_gap_free(label: &str, events: &[StoredEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "{label}: sequence numbers are not 1..=n");
}

/// A decimal field of a record (decimals travel as strings).
pub fn dec(value: &serde_json::Value) -> Decimal {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("decimal as string, got {value}"));
    Decimal::from_str(text).unwrap_or_else(|e| panic!("decimal {text}: {e}"))
}

/// A timestamp field of a record, as an instant.
pub fn instant(value: &serde_json::Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp as string, got {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("timestamp {text}: {e}"))
        .with_timezone(&Utc)
}

/// The instant a naive Berlin wall-clock time stands for.
pub fn berlin(local: NaiveDateTime) -> DateTime<Utc> {
    Berlin
        .from_local_datetime(&local)
        .earliest()
        .expect("a Berlin time that exists")
        .with_timezone(&Utc)
}

/// `changed` of an event, sorted.
pub fn changed(e: &StoredEvent) -> Vec<String> {
    let mut out: Vec<String> = e.event.data["changed"]
        .as_array()
        .unwrap_or_else(|| panic!("changed is a list: {}", e.event.data))
        .iter()
        .map(|v| v.as_str().expect("field name").to_owned())
        .collect();
    out.sort();
    out
}

/// Sorted field names.
pub fn names(list: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    out.sort();
    out
}

// --- the legacy side --------------------------------------------------------------------

/// The current Berlin wall-clock time to the second: what the till writes into LAST_UPD.
pub fn berlin_now() -> NaiveDateTime {
    Utc::now()
        .with_timezone(&Berlin)
        .naive_local()
        .with_nanosecond(0)
        .expect("valid time")
}

/// A SQL literal of a naive timestamp, as the legacy system stores it.
pub fn ts(local: NaiveDateTime) -> String {
    format!("'{}'", local.format("%Y-%m-%d %H:%M:%S"))
}

/// A CHAR(n) literal, space-padded as the till writes it.
pub fn ch(value: &str, width: usize) -> String {
    format!("'{value:<width$}'")
}

/// SQL statements of the till: plain INSERT/UPDATE/DELETE against the demo schema, unquoted
/// names (they fold as each engine's catalog expects).
pub mod sql {
    use chrono::NaiveDateTime;

    use super::{ch, ts};

    pub fn stock_insert(item: &str, store: &str, qty: i64, at: NaiveDateTime) -> String {
        format!(
            "INSERT INTO STOCK_LEVEL (ITEM_CODE, STORE_NO, QTY_ON_HAND, QTY_RESERVED, LAST_UPD) \
             VALUES ({}, {}, {qty}, 0, {})",
            ch(item, 10),
            ch(store, 4),
            ts(at)
        )
    }

    /// Several rows in one statement (one transaction).
    pub fn stock_insert_many(rows: &[(String, String, i64)], at: NaiveDateTime) -> String {
        let values: Vec<String> = rows
            .iter()
            .map(|(item, store, qty)| {
                format!("({}, {}, {qty}, 0, {})", ch(item, 10), ch(store, 4), ts(at))
            })
            .collect();
        format!(
            "INSERT INTO STOCK_LEVEL (ITEM_CODE, STORE_NO, QTY_ON_HAND, QTY_RESERVED, LAST_UPD) \
             VALUES {}",
            values.join(", ")
        )
    }

    pub fn stock_update(item: &str, store: &str, qty: i64, at: NaiveDateTime) -> String {
        format!(
            "UPDATE STOCK_LEVEL SET QTY_ON_HAND = {qty}, LAST_UPD = {} \
             WHERE ITEM_CODE = {} AND STORE_NO = {}",
            ts(at),
            ch(item, 10),
            ch(store, 4)
        )
    }

    pub fn stock_delete(item: &str, store: &str) -> String {
        format!(
            "DELETE FROM STOCK_LEVEL WHERE ITEM_CODE = {} AND STORE_NO = {}",
            ch(item, 10),
            ch(store, 4)
        )
    }

    pub fn item_insert(item: &str, name: &str, at: NaiveDateTime) -> String {
        format!(
            "INSERT INTO ITEM_MASTER (ITEM_CODE, DESCR, DEPT_CODE, UOM, ACTIVE_FLG, LAST_UPD) \
             VALUES ({}, '{name}', 'TOOL', 'EA ', 'Y', {})",
            ch(item, 10),
            ts(at)
        )
    }

    pub fn item_update(item: &str, name: &str, at: NaiveDateTime) -> String {
        format!(
            "UPDATE ITEM_MASTER SET DESCR = '{name}', LAST_UPD = {} WHERE ITEM_CODE = {}",
            ts(at),
            ch(item, 10)
        )
    }

    pub fn item_delete(item: &str) -> String {
        format!("DELETE FROM ITEM_MASTER WHERE ITEM_CODE = {}", ch(item, 10))
    }

    pub fn price_insert(list: &str, item: &str, price: &str, at: NaiveDateTime) -> String {
        format!(
            "INSERT INTO PRICE_LIST_ITEM (PL_CODE, ITEM_CODE, CURR, PRICE, VALID_FROM, LAST_UPD) \
             VALUES ({}, {}, 'EUR', {price}, NULL, {})",
            ch(list, 6),
            ch(item, 10),
            ts(at)
        )
    }

    /// Changes the price only (LAST_UPD untouched: nobody trusts it on this table).
    pub fn price_update(list: &str, item: &str, price: &str) -> String {
        format!(
            "UPDATE PRICE_LIST_ITEM SET PRICE = {price} WHERE PL_CODE = {} AND ITEM_CODE = {}",
            ch(list, 6),
            ch(item, 10)
        )
    }

    pub fn price_delete(list: &str, item: &str) -> String {
        format!(
            "DELETE FROM PRICE_LIST_ITEM WHERE PL_CODE = {} AND ITEM_CODE = {}",
            ch(list, 6),
            ch(item, 10)
        )
    }

    pub fn sale_insert(txn: i64, store: &str, item: &str, qty: i64, at: NaiveDateTime) -> String {
        format!(
            "INSERT INTO SALES_JOURNAL (TXN_NO, STORE_NO, ITEM_CODE, QTY, AMOUNT, TXN_TS) \
             VALUES ({txn}, {}, {}, {qty}, {}.5, {})",
            ch(store, 4),
            ch(item, 10),
            qty * 10,
            ts(at)
        )
    }
}

/// Waits until capture has read and pruned every row of the change log of `db`.
pub async fn wait_log_pruned(db: &TestDb) {
    let log_rows = format!("SELECT COUNT(*) FROM {}", changelog_table(db.engine));
    eventually("the log to be pruned", || {
        let n = db.scalar(&log_rows);
        async move {
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} log rows left"))
            }
        }
    })
    .await;
}

/// The change log's name as a SQL identifier on `engine` (the DDL creates it quoted, in
/// upper case).
pub fn changelog_table(engine: Engine) -> &'static str {
    match engine {
        Engine::Mariadb => "`LB_CHANGELOG`",
        _ => "\"LB_CHANGELOG\"",
    }
}

// --- a database behind a cuttable proxy -------------------------------------------------

/// The TCP port of a server engine's connection string.
pub fn server_port(db: &TestDb) -> u16 {
    db.connection_string
        .split(';')
        .find_map(|kv| kv.strip_prefix("Port="))
        .expect("connection string has Port=")
        .parse()
        .expect("port")
}

/// `db`'s connection string, pointed at `port` instead.
pub fn via_port(db: &TestDb, port: u16) -> String {
    db.connection_string.replace(
        &format!("Port={};", server_port(db)),
        &format!("Port={port};"),
    )
}

/// A connection of its own to a test database (for transactions the test controls).
pub fn connect(connection_string: &str) -> odbc_api::Connection<'static> {
    odbc_api::environment()
        .expect("odbc environment")
        .connect_with_connection_string(connection_string, odbc_api::ConnectionOptions::default())
        .unwrap_or_else(|e| panic!("cannot connect: {e}"))
}

/// The real source with two things a test stages: its clock (capture measures its settle
/// window, and so the timestamp cursor's upper bound, on it), and a pause of capture's first
/// full scan just before it reads, after the initial load took its start positions; a test
/// writes meanwhile, so a write racing the load is made deterministic.
pub struct StagedSource {
    inner: Arc<dyn Source>,
    now: std::sync::Mutex<Option<DateTime<Utc>>>,
    first_scan: std::sync::Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

/// The test's side of a paused first scan.
pub struct ScanPause {
    reached: oneshot::Receiver<()>,
    resume: oneshot::Sender<()>,
}

impl ScanPause {
    /// Waits until the first scan is about to read.
    pub async fn reached(&mut self) {
        tokio::time::timeout(PATIENCE, &mut self.reached)
            .await
            .expect("capture's first scan starts in time")
            .expect("the staged source is alive");
    }

    /// Lets the scan read.
    pub fn resume(self) {
        let _ = self.resume.send(());
    }
}

impl StagedSource {
    pub fn new(inner: Arc<dyn Source>) -> Arc<StagedSource> {
        Arc::new(StagedSource {
            inner,
            now: std::sync::Mutex::new(None),
            first_scan: std::sync::Mutex::new(None),
        })
    }

    /// Sets the database clock.
    pub fn set_clock(&self, now: DateTime<Utc>) {
        *self.now.lock().expect("clock") = Some(now);
    }

    /// Holds the first scan before it reads, until the pause is resumed.
    pub fn pause_first_scan(&self) -> ScanPause {
        let (reached_tx, reached) = oneshot::channel();
        let (resume, resume_rx) = oneshot::channel();
        *self.first_scan.lock().expect("scan pause") = Some((reached_tx, resume_rx));
        ScanPause { reached, resume }
    }
}

#[async_trait::async_trait]
impl Source for StagedSource {
    fn dialect(&self) -> &legacy_bridge::source::Dialect {
        self.inner.dialect()
    }

    async fn fetch(
        &self,
        query: legacy_bridge::source::SelectQuery,
    ) -> Result<Vec<legacy_bridge::source::Row>, legacy_bridge::source::SourceError> {
        self.inner.fetch(query).await
    }

    async fn scan(
        &self,
        query: legacy_bridge::source::SelectQuery,
        batch_size: usize,
    ) -> legacy_bridge::source::RowStream {
        let pause = self.first_scan.lock().expect("scan pause").take();
        if let Some((reached, resume)) = pause {
            let _ = reached.send(());
            let _ = resume.await;
        }
        self.inner.scan(query, batch_size).await
    }

    async fn utc_now(&self) -> Result<Option<DateTime<Utc>>, legacy_bridge::source::SourceError> {
        let staged = *self.now.lock().expect("clock");
        match staged {
            Some(now) => Ok(Some(now)),
            None => self.inner.utc_now().await,
        }
    }

    async fn execute(
        &self,
        sql: String,
        params: Vec<legacy_bridge::source::Param>,
    ) -> Result<(), legacy_bridge::source::SourceError> {
        self.inner.execute(sql, params).await
    }

    async fn columns(
        &self,
        relation: &legacy_bridge::source::Relation,
    ) -> Result<Vec<legacy_bridge::source::ColumnInfo>, legacy_bridge::source::SourceError> {
        self.inner.columns(relation).await
    }

    async fn tables(
        &self,
    ) -> Result<Vec<legacy_bridge::source::TableInfo>, legacy_bridge::source::SourceError> {
        self.inner.tables().await
    }

    async fn ping(&self) -> Result<(), legacy_bridge::source::SourceError> {
        self.inner.ping().await
    }

    fn files(&self) -> Option<&legacy_bridge::source::files::FilesSource> {
        self.inner.files()
    }

    fn change_tracking(&self) -> Option<&dyn legacy_bridge::source::ChangeTracking> {
        self.inner.change_tracking()
    }
}

/// The change-log strategy on inventory with a silent initial load (the triggers are
/// installed by [`Rig::apply_changelog_ddl`]).
pub const INVENTORY_CHANGELOG: &str = r#"
strategy = "changelog"
interval_ms = 100
initial = "none"
"#;

/// A fast timestamp cursor on inventory with a silent initial load, shared by tests that only
/// need "inventory is being captured".
pub const INVENTORY_CURSOR: &str = r#"
strategy = "cursor"
cursor_column = "LAST_UPD"
interval_ms = 100
settle_ms = 200
initial = "none"
"#;
