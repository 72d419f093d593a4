//! The PostgreSQL replica sink against the real PostgreSQL `scripts/test` starts
//! (`LB_TEST_POSTGRES_URL`; without it these tests skip, unless `LB_REQUIRE_ENGINES` is set).
//! Each test gets its own database, so they run in parallel. Events are built by hand for a
//! hand-built resource that uses every field type.
//!
//! Timing: only "not a hang" is asserted, against a bound far above the sink's timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use legacy_bridge::config::{PostgresSinkConfig, Trim};
use legacy_bridge::delivery::postgres::PostgresSink;
use legacy_bridge::delivery::{Failure, Outcome, Sink, SinkError};
use legacy_bridge::model::{
    ChangeOp, FieldSchema, FieldType, NewEvent, ResourceSchema, StoredEvent, event_type,
};
use legacy_bridge::resource::{BoundField, Resource, Transform};
use legacy_bridge::source::{Relation, SqlType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};
use tokio_postgres::{Client, NoTls};

/// A throw-away database on the test server, dropped with the value.
struct ReplicaDb {
    admin_url: String,
    name: String,
    url: String,
}

impl ReplicaDb {
    /// A fresh database, or `None` when no server is available and none is required.
    async fn create() -> Option<ReplicaDb> {
        let Ok(admin_url) = std::env::var("LB_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("LB_REQUIRE_ENGINES").is_err(),
                "LB_TEST_POSTGRES_URL is not set but LB_REQUIRE_ENGINES is: scripts/test must \
                 start PostgreSQL"
            );
            eprintln!("skipping: LB_TEST_POSTGRES_URL not set (run scripts/test)");
            return None;
        };
        let name = format!("lb_sink_{:016x}", rand::random::<u64>());
        connect(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_database(&admin_url, &name);
        Some(ReplicaDb {
            admin_url,
            name,
            url,
        })
    }

    async fn client(&self) -> Client {
        connect(&self.url).await
    }

    fn config(&self, schema: &str) -> PostgresSinkConfig {
        PostgresSinkConfig {
            url: self.url.clone(),
            schema: schema.to_owned(),
            timeout_ms: 10_000,
            ca_file: None,
        }
    }

    /// A sink for `stock` and `prices` in `schema`.
    fn sink(&self, schema: &str) -> PostgresSink {
        PostgresSink::new("replica", &self.config(schema), resources())
    }
}

impl Drop for ReplicaDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // The test's runtime may be gone or busy: drop the database from a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = connect(&admin_url).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        });
        let _ = dropped.join();
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` pointing at database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

fn resource(name: &str, key: &[&str], fields: &[(&str, FieldType)]) -> Arc<Resource> {
    let bound: Vec<BoundField> = fields
        .iter()
        .map(|(n, ty)| BoundField {
            name: (*n).to_owned(),
            column: n.to_uppercase(),
            ty: *ty,
            sql_type: SqlType::Other,
            transform: Transform {
                trim: Trim::None,
                scale: None,
                timezone: chrono_tz::UTC,
                true_values: None,
                false_values: None,
            },
        })
        .collect();
    let schema_fields: IndexMap<String, FieldSchema> = fields
        .iter()
        .map(|(n, ty)| {
            (
                (*n).to_owned(),
                FieldSchema {
                    ty: *ty,
                    nullable: !key.contains(n),
                    description: None,
                    filterable: false,
                    sortable: false,
                },
            )
        })
        .collect();
    Arc::new(Resource {
        schema: ResourceSchema {
            name: name.to_owned(),
            component: "X".into(),
            description: None,
            key: key.iter().map(|k| (*k).to_owned()).collect(),
            fields: schema_fields,
        },
        source: "pos".into(),
        relation: Relation::Table {
            schema: None,
            name: name.to_uppercase(),
        },
        fields: bound,
    })
}

/// `stock` (composite key, every field type) and `prices`.
fn resources() -> Vec<Arc<Resource>> {
    vec![
        resource(
            "stock",
            &["sku", "store"],
            &[
                ("sku", FieldType::String),
                ("store", FieldType::Integer),
                ("qty", FieldType::Decimal),
                ("active", FieldType::Boolean),
                ("day", FieldType::Date),
                ("opens", FieldType::Time),
                ("updated_at", FieldType::Timestamp),
                ("photo", FieldType::Binary),
                ("note", FieldType::String),
            ],
        ),
        resource(
            "prices",
            &["sku"],
            &[("sku", FieldType::String), ("amount", FieldType::Decimal)],
        ),
    ]
}

fn stored(seq: u64, resource: &str, subject: String, op: ChangeOp, data: Json) -> StoredEvent {
    StoredEvent {
        seq,
        event: NewEvent {
            id: format!("ev-{seq}"),
            resource: resource.to_owned(),
            source: format!("/sources/pos/{resource}"),
            event_type: event_type(resource, op),
            subject,
            time: Utc::now(),
            data,
        },
    }
}

/// A `stock` record as `materialize` puts it in `after` (decimals as strings, timestamps
/// RFC 3339 with offset, binary base64).
fn stock_record(sku: &str, store: i64, qty: &str) -> Json {
    json!({
        "sku": sku,
        "store": store,
        "qty": qty,
        "active": true,
        "day": "2024-03-01",
        "opens": "08:30:00",
        "updated_at": "2024-07-01T12:00:00+02:00",
        "photo": "AQL/",
        "note": "it's \"quoted\" – ünïcode",
    })
}

/// A created/updated/snapshot event of `stock`.
fn upsert(seq: u64, op: ChangeOp, sku: &str, store: i64, qty: &str) -> StoredEvent {
    let after = stock_record(sku, store, qty);
    let data = json!({
        "op": op,
        "origin": "capture",
        "key": {"sku": sku, "store": store},
        "before": null,
        "after": after,
        "changed": [],
        "position": null,
    });
    stored(seq, "stock", format!("{sku}/{store}"), op, data)
}

/// A delete event of `stock`.
fn delete(seq: u64, sku: &str, store: i64) -> StoredEvent {
    let data = json!({
        "op": "deleted",
        "origin": "capture",
        "key": {"sku": sku, "store": store},
        "before": stock_record(sku, store, "0"),
        "after": null,
        "changed": [],
        "position": null,
    });
    stored(
        seq,
        "stock",
        format!("{sku}/{store}"),
        ChangeOp::Deleted,
        data,
    )
}

fn price(seq: u64, sku: &str, amount: &str) -> StoredEvent {
    let data = json!({
        "op": "snapshot",
        "origin": "initial",
        "key": {"sku": sku},
        "before": null,
        "after": {"sku": sku, "amount": amount},
        "changed": [],
        "position": null,
    });
    stored(seq, "prices", sku.to_owned(), ChangeOp::Snapshot, data)
}

fn all_delivered(outcomes: &[Outcome]) {
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Delivered),
        "{outcomes:?}"
    );
}

/// `(sku, store, qty, _lb_seq)` of every `stock` row, in key order.
async fn stock_rows(db: &Client, schema: &str) -> Vec<(String, i64, String, i64)> {
    db.query(
        &format!(
            "SELECT sku, store, qty::text, _lb_seq FROM \"{schema}\".stock ORDER BY sku, store"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// Every column of every replica row and tombstone, as text: to see that nothing changed.
async fn everything(db: &Client, schema: &str) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["stock", "prices", "_lb_tombstones"] {
        let rows = db
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{table}\" t ORDER BY t::text"),
                &[],
            )
            .await
            .unwrap();
        out.extend(
            rows.iter()
                .map(|r| format!("{table}: {}", r.get::<_, String>(0))),
        );
    }
    out
}

async fn tombstones(db: &Client, schema: &str) -> i64 {
    db.query_one(
        &format!("SELECT count(*) FROM \"{schema}\"._lb_tombstones"),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Primary key columns of `table` (`schema.name`), in key order.
async fn primary_key(db: &Client, table: &str) -> Vec<String> {
    db.query(
        "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
         ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn row(sku: &str, store: i64, qty: &str, seq: i64) -> (String, i64, String, i64) {
    (sku.to_owned(), store, qty.to_owned(), seq)
}

#[tokio::test]
async fn creates_tables_with_the_right_types_and_key() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("replica_x");
    sink.startup().await.unwrap();
    let db = replica.client().await;
    let columns: Vec<(String, String, bool)> = db
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a WHERE a.attrelid = 'replica_x.stock'::regclass \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("sku", "text", true),
        ("store", "bigint", true),
        ("qty", "numeric", false),
        ("active", "boolean", false),
        ("day", "date", false),
        ("opens", "time without time zone", false),
        ("updated_at", "timestamp with time zone", false),
        ("photo", "bytea", false),
        ("note", "text", false),
        ("_lb_seq", "bigint", true),
        ("_lb_event_id", "text", true),
        ("_lb_applied_at", "timestamp with time zone", true),
    ];
    let expected: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(n, t, nn)| ((*n).to_owned(), (*t).to_owned(), *nn))
        .collect();
    assert_eq!(columns, expected);
    assert_eq!(primary_key(&db, "replica_x.stock").await, ["sku", "store"]);
    assert_eq!(primary_key(&db, "replica_x.prices").await, ["sku"]);
    assert_eq!(
        primary_key(&db, "replica_x._lb_tombstones").await,
        ["resource", "subject"]
    );
    // A second start finds the tables as it wants them.
    sink.startup().await.unwrap();
    PostgresSink::new("other", &replica.config("replica_x"), resources())
        .startup()
        .await
        .unwrap();
    sink.shutdown().await;
}

#[tokio::test]
async fn applies_snapshot_then_updates_then_delete() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("legacy_bridge");
    sink.startup().await.unwrap();
    let db = replica.client().await;

    // GIVEN an initial snapshot of three stock records and a price
    all_delivered(
        &sink
            .deliver(&[
                upsert(1, ChangeOp::Snapshot, "A", 1, "12.50"),
                upsert(2, ChangeOp::Snapshot, "B", 1, "3"),
                upsert(3, ChangeOp::Snapshot, "C", 2, "0.001"),
                price(4, "A", "9.99"),
            ])
            .await,
    );
    // WHEN A is updated and D created, then B deleted and C updated
    all_delivered(
        &sink
            .deliver(&[
                upsert(5, ChangeOp::Updated, "A", 1, "11.00"),
                upsert(6, ChangeOp::Created, "D", 1, "1"),
            ])
            .await,
    );
    all_delivered(
        &sink
            .deliver(&[delete(7, "B", 1), upsert(8, ChangeOp::Updated, "C", 2, "5")])
            .await,
    );
    // THEN the replica holds the latest state of each record
    assert_eq!(
        stock_rows(&db, "legacy_bridge").await,
        [
            row("A", 1, "11.00", 5),
            row("C", 2, "5", 8),
            row("D", 1, "1", 6)
        ]
    );
    let tomb: Vec<(String, String, i64)> = db
        .query(
            "SELECT resource, subject, seq FROM legacy_bridge._lb_tombstones",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(tomb, [("stock".to_owned(), "B/1".to_owned(), 7)]);
    let amount: String = db
        .query_one(
            "SELECT amount::text FROM legacy_bridge.prices WHERE sku = 'A'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(amount, "9.99");

    // AND every type arrived as its value, not as its JSON text
    let r = db
        .query_one(
            "SELECT active, day::text, opens::text, updated_at, photo, note, _lb_event_id \
             FROM legacy_bridge.stock WHERE sku = 'A' AND store = 1",
            &[],
        )
        .await
        .unwrap();
    assert!(r.get::<_, bool>(0));
    assert_eq!(r.get::<_, String>(1), "2024-03-01");
    assert_eq!(r.get::<_, String>(2), "08:30:00");
    let at: DateTime<Utc> = r.get(3);
    assert_eq!(at.to_rfc3339(), "2024-07-01T10:00:00+00:00");
    assert_eq!(r.get::<_, Vec<u8>>(4), vec![0x01, 0x02, 0xff]);
    assert_eq!(r.get::<_, String>(5), "it's \"quoted\" – ünïcode");
    assert_eq!(r.get::<_, String>(6), "ev-5");
    sink.shutdown().await;
}

#[tokio::test]
async fn the_same_batch_applied_twice_changes_nothing() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("legacy_bridge");
    sink.startup().await.unwrap();
    let db = replica.client().await;
    all_delivered(
        &sink
            .deliver(&[
                upsert(1, ChangeOp::Created, "A", 1, "1"),
                upsert(2, ChangeOp::Created, "B", 1, "2"),
            ])
            .await,
    );
    let batch = [
        upsert(3, ChangeOp::Updated, "A", 1, "10"),
        delete(4, "B", 1),
        upsert(5, ChangeOp::Created, "C", 1, "3"),
        price(6, "A", "1.50"),
    ];
    all_delivered(&sink.deliver(&batch).await);
    let before = everything(&db, "legacy_bridge").await;
    // A later transaction has a later now(): a rewritten row would show a new _lb_applied_at.
    tokio::time::sleep(Duration::from_millis(20)).await;
    all_delivered(&sink.deliver(&batch).await);
    assert_eq!(everything(&db, "legacy_bridge").await, before);
    assert_eq!(
        stock_rows(&db, "legacy_bridge").await,
        [row("A", 1, "10", 3), row("C", 1, "3", 5)]
    );
}

#[tokio::test]
async fn an_older_update_replayed_after_a_newer_one_does_not_regress() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("legacy_bridge");
    sink.startup().await.unwrap();
    let db = replica.client().await;
    all_delivered(
        &sink
            .deliver(&[upsert(1, ChangeOp::Created, "A", 1, "1")])
            .await,
    );
    all_delivered(
        &sink
            .deliver(&[upsert(5, ChangeOp::Updated, "A", 1, "5")])
            .await,
    );
    // Replays of older events of A, alone and next to a new record.
    all_delivered(
        &sink
            .deliver(&[upsert(3, ChangeOp::Updated, "A", 1, "3")])
            .await,
    );
    all_delivered(
        &sink
            .deliver(&[
                upsert(1, ChangeOp::Snapshot, "A", 1, "1"),
                upsert(6, ChangeOp::Created, "B", 1, "6"),
            ])
            .await,
    );
    assert_eq!(
        stock_rows(&db, "legacy_bridge").await,
        [row("A", 1, "5", 5), row("B", 1, "6", 6)]
    );
}

#[tokio::test]
async fn an_old_create_replayed_after_a_delete_does_not_resurrect() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("legacy_bridge");
    sink.startup().await.unwrap();
    let db = replica.client().await;
    let create = upsert(1, ChangeOp::Created, "A", 1, "1");
    all_delivered(&sink.deliver(std::slice::from_ref(&create)).await);
    all_delivered(&sink.deliver(&[delete(2, "A", 1)]).await);
    // GIVEN the delete applied, WHEN the create is replayed THEN the row stays gone
    all_delivered(&sink.deliver(std::slice::from_ref(&create)).await);
    assert_eq!(stock_rows(&db, "legacy_bridge").await, []);
    // A newer create brings it back and clears the tombstone...
    all_delivered(
        &sink
            .deliver(&[upsert(3, ChangeOp::Created, "A", 1, "3")])
            .await,
    );
    assert_eq!(
        stock_rows(&db, "legacy_bridge").await,
        [row("A", 1, "3", 3)]
    );
    assert_eq!(tombstones(&db, "legacy_bridge").await, 0);
    // ...and a replay of the old delete neither removes it nor leaves a stale tombstone.
    all_delivered(&sink.deliver(&[delete(2, "A", 1)]).await);
    assert_eq!(
        stock_rows(&db, "legacy_bridge").await,
        [row("A", 1, "3", 3)]
    );
    assert_eq!(tombstones(&db, "legacy_bridge").await, 0);
    // A delete replayed after a newer delete keeps the newer tombstone.
    all_delivered(&sink.deliver(&[delete(9, "A", 1)]).await);
    all_delivered(&sink.deliver(&[delete(2, "A", 1)]).await);
    let seq: i64 = db
        .query_one("SELECT seq FROM legacy_bridge._lb_tombstones", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seq, 9);
    all_delivered(
        &sink
            .deliver(&[upsert(8, ChangeOp::Updated, "A", 1, "8")])
            .await,
    );
    assert_eq!(stock_rows(&db, "legacy_bridge").await, []);
}

#[tokio::test]
async fn a_table_of_another_shape_is_misconfigured() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let db = replica.client().await;
    db.batch_execute(
        "CREATE SCHEMA legacy_bridge; \
         CREATE TABLE legacy_bridge.prices (sku text PRIMARY KEY, amount text, \
         _lb_seq bigint NOT NULL, _lb_event_id text NOT NULL, \
         _lb_applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    let sink = replica.sink("legacy_bridge");
    let err = sink.startup().await.unwrap_err();
    let SinkError::Misconfigured(reason) = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("legacy_bridge.prices"), "{reason}");
    assert!(
        reason.contains("column `amount` is text where the sink writes numeric"),
        "{reason}"
    );
    // The table was left as it was.
    let ty: String = db
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'legacy_bridge.prices'::regclass AND attname = 'amount'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "text");
    // A batch meanwhile fails as a whole, with the same reason.
    let outcomes = sink.deliver(&[price(1, "A", "1")]).await;
    let [Outcome::Retry(failure)] = &outcomes[..] else {
        panic!("{outcomes:?}");
    };
    assert!(failure.throttle, "{failure:?}");
    assert!(failure.reason.contains("amount"), "{failure:?}");
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn throttled(outcomes: &[Outcome], n: usize) {
    assert_eq!(outcomes.len(), n);
    for o in outcomes {
        assert!(
            matches!(o, Outcome::Retry(Failure { throttle: true, .. })),
            "{outcomes:?}"
        );
    }
}

/// No server needed: a closed port, and a port that accepts connections but never answers.
#[tokio::test]
async fn an_unreachable_server_gives_throttle_failures_not_a_hang() {
    let config = |port: u16| PostgresSinkConfig {
        url: format!("postgres://lb:secret-pw@127.0.0.1:{port}/db?sslmode=disable"),
        schema: "legacy_bridge".into(),
        timeout_ms: 500,
        ca_file: None,
    };
    let batch = [
        upsert(1, ChangeOp::Created, "A", 1, "1"),
        upsert(2, ChangeOp::Created, "B", 1, "2"),
    ];

    let refused = PostgresSink::new("replica", &config(closed_port()), resources());
    let started = Instant::now();
    let err = refused.startup().await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("secret-pw"), "{err}");
    throttled(&refused.deliver(&batch).await, 2);
    assert!(started.elapsed() < Duration::from_secs(10));

    // The kernel completes the TCP handshake for a listener that never accepts: only the
    // sink's timeout ends the wait for the server's answer.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hanging = PostgresSink::new("replica", &config(port), resources());
    let started = Instant::now();
    let err = hanging.startup().await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    let outcomes = hanging.deliver(&batch).await;
    throttled(&outcomes, 2);
    let Outcome::Retry(failure) = &outcomes[0] else {
        unreachable!()
    };
    assert!(!failure.reason.contains("secret-pw"), "{failure:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(silent);
}

/// The test server has no TLS: `prefer` (the default) falls back to plain text through the
/// rustls connector, `require` refuses to, and `disable` never asks.
#[tokio::test]
async fn sslmode_in_the_url_decides_tls() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink_with = |mode: &str| {
        let mut config = replica.config("legacy_bridge");
        config.url = format!("{}?sslmode={mode}", replica.url);
        PostgresSink::new("replica", &config, resources())
    };
    sink_with("prefer").startup().await.unwrap();
    sink_with("disable").startup().await.unwrap();
    let err = sink_with("require").startup().await.unwrap_err();
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
    let err = sink_with("verify-full").startup().await.unwrap_err();
    assert!(matches!(err, SinkError::Misconfigured(_)), "{err:?}");
}

#[tokio::test]
async fn a_refused_value_fails_only_its_event() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("legacy_bridge");
    sink.startup().await.unwrap();
    let db = replica.client().await;
    let mut batch: Vec<StoredEvent> = (0..7)
        .map(|i| upsert(i + 1, ChangeOp::Created, &format!("K{i}"), 1, "1"))
        .collect();
    // Two values numeric refuses, and an event of a resource the sink does not replicate.
    batch[2] = upsert(3, ChangeOp::Created, "K2", 1, "twelve-secret");
    batch[5] = upsert(6, ChangeOp::Created, "K5", 1, "1e999999");
    batch.push(stored(
        8,
        "customers",
        "C1".into(),
        ChangeOp::Created,
        json!({"op": "created", "after": {"id": "C1"}}),
    ));
    let outcomes = sink.deliver(&batch).await;
    for (i, o) in outcomes.iter().enumerate() {
        match (i, o) {
            (2 | 5, Outcome::Retry(f)) => {
                assert!(!f.throttle, "{f:?}");
                assert!(f.reason.contains("sqlstate 22"), "{f:?}");
                assert!(!f.reason.contains("twelve-secret"), "{f:?}");
            }
            (7, Outcome::Retry(f)) => assert_eq!(*f, Failure::event("unknown resource")),
            (_, Outcome::Delivered) => {}
            _ => panic!("event {i}: {o:?}"),
        }
    }
    let skus: Vec<String> = stock_rows(&db, "legacy_bridge")
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(skus, ["K0", "K1", "K3", "K4", "K6"]);
}

#[tokio::test]
async fn a_dropped_table_is_created_again_on_the_next_batch() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let sink = replica.sink("legacy_bridge");
    sink.startup().await.unwrap();
    let db = replica.client().await;
    all_delivered(
        &sink
            .deliver(&[upsert(1, ChangeOp::Created, "A", 1, "1")])
            .await,
    );
    db.batch_execute("DROP TABLE legacy_bridge.stock")
        .await
        .unwrap();
    let batch = [upsert(2, ChangeOp::Updated, "A", 1, "2")];
    throttled(&sink.deliver(&batch).await, 1);
    all_delivered(&sink.deliver(&batch).await);
    assert_eq!(
        stock_rows(&db, "legacy_bridge").await,
        [row("A", 1, "2", 2)]
    );
}

/// GIVEN a random history of creates, updates, snapshots and deletes over a few keys
/// WHEN it is delivered in random batch splits, with random older events replayed in between
/// THEN after every batch the replica equals the last event of each key delivered so far.
#[tokio::test]
async fn random_histories_with_replays_end_as_the_model() {
    let Some(replica) = ReplicaDb::create().await else {
        return;
    };
    let db = replica.client().await;
    let started = Instant::now();
    for seed in 0..4u64 {
        let schema = format!("model_{seed}");
        let sink = replica.sink(&schema);
        sink.startup().await.unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let history: Vec<StoredEvent> = (1..=160u64)
            .map(|seq| {
                let sku = format!("K{}", rng.random_range(0..6));
                match rng.random_range(0..4) {
                    0 => delete(seq, &sku, 1),
                    1 => upsert(seq, ChangeOp::Created, &sku, 1, &seq.to_string()),
                    2 => upsert(seq, ChangeOp::Updated, &sku, 1, &seq.to_string()),
                    _ => upsert(seq, ChangeOp::Snapshot, &sku, 1, &seq.to_string()),
                }
            })
            .collect();
        let mut model: BTreeMap<String, Option<i64>> = BTreeMap::new();
        let mut next = 0;
        while next < history.len() {
            let size = rng.random_range(1..=8);
            let mut batch: Vec<StoredEvent> = Vec::new();
            let mut subjects: Vec<String> = Vec::new();
            while next < history.len() && batch.len() < size {
                let e = &history[next];
                if subjects.contains(&e.event.subject) {
                    break;
                }
                subjects.push(e.event.subject.clone());
                batch.push(e.clone());
                next += 1;
            }
            // Replays of older events, of records not in the batch already.
            let delivered = next - batch.len();
            for _ in 0..rng.random_range(0..4) {
                if delivered == 0 {
                    break;
                }
                let old = &history[rng.random_range(0..delivered)];
                if !subjects.contains(&old.event.subject) {
                    subjects.push(old.event.subject.clone());
                    let at = rng.random_range(0..=batch.len());
                    batch.insert(at, old.clone());
                }
            }
            all_delivered(&sink.deliver(&batch).await);
            for e in &history[delivered..next] {
                let sku = e.event.subject.trim_end_matches("/1").to_owned();
                let live = e.event.data["op"] != "deleted";
                model.insert(sku, live.then_some(e.seq as i64));
            }
            let expected: Vec<(String, i64, String, i64)> = model
                .iter()
                .filter_map(|(sku, seq)| seq.map(|s| row(sku, 1, &s.to_string(), s)))
                .collect();
            assert_eq!(
                stock_rows(&db, &schema).await,
                expected,
                "seed {seed}, after event {next}"
            );
        }
        sink.shutdown().await;
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
