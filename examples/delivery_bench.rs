//! Benchmark driver: the bridge's delivery path (state store outbox -> dispatcher -> sink)
//! on its own, without a legacy database.
//!
//! ```text
//! delivery_bench nats URL STREAM COUNT [BATCH]        drain COUNT events into JetStream
//!                                                     (subjects `<stream lowercased>.>`; the
//!                                                     stream is deleted afterwards)
//! delivery_bench webhook COUNT [IN_FLIGHT] [BATCH]    drain COUNT events to a local receiver
//! delivery_bench latency RATE SECONDS [IN_FLIGHT]     commit RATE events/s for SECONDS, each
//!                                                     timed from commit to receipt
//! ```
//!
//! The outbox lives in a temporary SQLite store and holds events shaped like real ones
//! (about 600 bytes of CloudEvent, 10,000 distinct records). Drain modes commit all COUNT
//! events first, then start the subscription and time until its cursor reaches the end:
//! that is delivery with acknowledgements and durable cursor moves, nothing else. The local
//! webhook receiver is a bare axum route answering 204, in this process. Prints one line of
//! `key=value` pairs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use legacy_bridge::config::{SubscriptionConfig, WebhookSinkConfig};
use legacy_bridge::delivery::nats::NatsSink;
use legacy_bridge::delivery::webhook::WebhookSink;
use legacy_bridge::delivery::{DeliveryRuntime, Planned, Sink};
use legacy_bridge::model::{ChangeOp, NewEvent, event_type};
use legacy_bridge::store::{Commit, DeliveryStore, SqliteStore, Store};
use serde_json::json;
use tokio::sync::watch;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Distinct records the events are spread over.
const RECORDS: u64 = 10_000;
/// Events per outbox commit when preloading.
const PRELOAD_COMMIT: usize = 5_000;
/// The test secret of the Standard Webhooks specification.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("nats") => {
            let (Some(url), Some(stream), Some(count)) = (arg(1), arg(2), arg(3)) else {
                return Err("usage: delivery_bench nats URL STREAM COUNT [BATCH]".into());
            };
            let count: u64 = count.parse()?;
            let batch: usize = arg(4).map_or(Ok(500), str::parse)?;
            let prefix = stream.to_ascii_lowercase();
            let sink_config = format!(
                "kind = \"nats\"\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\""
            );
            let config = subscription(&sink_config, batch)?;
            let legacy_bridge::config::SinkConfig::Nats(nats) = &config.sink else {
                return Err("not a nats sink".into());
            };
            let sink = Arc::new(NatsSink::new("bench", nats));
            drain(sink, config, count).await?;
            // Leave the server as we found it (a run stores COUNT events on disk).
            let client = async_nats::connect(url).await?;
            async_nats::jetstream::new(client)
                .delete_stream(stream)
                .await?;
            Ok(())
        }
        Some("webhook") => {
            let count: u64 = arg(1)
                .ok_or("usage: delivery_bench webhook COUNT")?
                .parse()?;
            let in_flight: usize = arg(2).map_or(Ok(32), str::parse)?;
            let batch: usize = arg(3).map_or(Ok(500), str::parse)?;
            let receiver = Receiver::start().await?;
            let (config, sink) = webhook(receiver.addr, in_flight, batch)?;
            drain(sink, config, count).await
        }
        Some("latency") => {
            let (Some(rate), Some(seconds)) = (arg(1), arg(2)) else {
                return Err("usage: delivery_bench latency RATE SECONDS [IN_FLIGHT]".into());
            };
            let rate: u64 = rate.parse()?;
            let seconds: u64 = seconds.parse()?;
            let in_flight: usize = arg(3).map_or(Ok(32), str::parse)?;
            latency(rate, seconds, in_flight).await
        }
        _ => Err("usage: delivery_bench nats|webhook|latency ...".into()),
    }
}

fn subscription(sink: &str, batch: usize) -> Result<SubscriptionConfig, Error> {
    let text = format!(
        "batch_size = {batch}\nretry = {{ schedule = [\"100ms\", \"1s\"] }}\n[sink]\n{sink}\n"
    );
    Ok(toml::from_str(&text)?)
}

fn webhook(
    addr: SocketAddr,
    in_flight: usize,
    batch: usize,
) -> Result<(SubscriptionConfig, Arc<dyn Sink>), Error> {
    let sink_config = format!(
        "kind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\nmax_in_flight = {in_flight}"
    );
    let config = subscription(&sink_config, batch)?;
    let legacy_bridge::config::SinkConfig::Webhook(hook) = &config.sink else {
        return Err("not a webhook sink".into());
    };
    let hook: &WebhookSinkConfig = hook;
    let sink = Arc::new(WebhookSink::new("bench", hook)?);
    Ok((config, sink))
}

/// A realistic event: an inventory update with before and after images.
fn event(n: u64) -> NewEvent {
    let record = n % RECORDS;
    let row = |qty: u64| {
        json!({"sku": format!("A{record:06}"), "location": "S01", "on_hand": qty,
               "reserved": 0, "updated_at": "2026-11-23T10:15:00.000000+01:00",
               "description": "Schraube M6x40 verzinkt, DIN 933"})
    };
    NewEvent {
        id: format!("{:032x}", u128::from(n) * 0x9E37_79B9_7F4A_7C15),
        resource: "inventory".into(),
        source: "/sources/pos/inventory".into(),
        event_type: event_type("inventory", ChangeOp::Updated),
        subject: format!("A{record:06}/S01"),
        time: Utc::now(),
        data: json!({"op": "updated", "origin": "capture", "key": {"sku": format!("A{record:06}"), "location": "S01"},
                     "before": row(n), "after": row(n + 1), "changed": ["on_hand"],
                     "position": {"cursor": n}}),
    }
}

struct Outbox {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    committed: watch::Sender<u64>,
}

fn open_store() -> Result<Outbox, Error> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db"))?);
    let (committed, _) = watch::channel(0);
    Ok(Outbox {
        _dir: dir,
        store,
        committed,
    })
}

async fn append(s: &Outbox, events: Vec<NewEvent>) -> Result<(), Error> {
    let appended = s
        .store
        .commit(Commit {
            resource: "inventory".into(),
            events,
            ..Commit::default()
        })
        .await?;
    if let Some(a) = appended {
        s.committed.send_replace(a.last_seq);
    }
    Ok(())
}

async fn start(
    s: &Outbox,
    sink: Arc<dyn Sink>,
    config: SubscriptionConfig,
) -> Result<DeliveryRuntime, Error> {
    Ok(DeliveryRuntime::start(
        vec![Planned {
            name: "bench".into(),
            config,
            sink,
        }],
        &["inventory".to_owned()],
        Arc::clone(&s.store) as Arc<dyn DeliveryStore>,
        s.committed.subscribe(),
    )
    .await?)
}

async fn drain(sink: Arc<dyn Sink>, config: SubscriptionConfig, count: u64) -> Result<(), Error> {
    let s = open_store()?;
    let mut n = 0;
    while n < count {
        let chunk = (count - n).min(PRELOAD_COMMIT as u64);
        append(&s, (n..n + chunk).map(event).collect()).await?;
        n += chunk;
    }
    // Start the sink outside the timed part (connecting, creating the stream).
    sink.startup().await?;
    let started = Instant::now();
    let runtime = start(&s, sink, config).await?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let row = s
            .store
            .subscription("bench")
            .await?
            .ok_or("no subscription")?;
        if row.cursor >= count {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {count} delivered in 600 s", row.cursor).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = s.store.delivery_counts("bench").await?;
    runtime.shutdown().await;
    if counts.pending + counts.dead > 0 {
        return Err(format!(
            "{} parked, {} dead: not a clean run",
            counts.pending, counts.dead
        )
        .into());
    }
    println!(
        "events={count} seconds={elapsed:.3} events_per_sec={:.0}",
        count as f64 / elapsed
    );
    Ok(())
}

async fn latency(rate: u64, seconds: u64, in_flight: usize) -> Result<(), Error> {
    let receiver = Receiver::start().await?;
    let (config, sink) = webhook(receiver.addr, in_flight, 500)?;
    let s = open_store()?;
    let runtime = start(&s, sink, config).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = rate * seconds;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(period);
    for n in 0..total {
        tick.tick().await;
        // `time` is the commit time; the receiver measures against it.
        let mut e = event(n);
        e.time = Utc::now();
        append(&s, vec![e]).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.count() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await;
    let mut lat = receiver.latencies();
    if (lat.len() as u64) < total {
        return Err(format!("only {} of {total} received", lat.len()).into());
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "events={total} rate={rate} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat[lat.len() - 1]
    );
    Ok(())
}

/// A bare receiver: answers 204 and notes commit-to-receipt latency from the event's time.
struct Receiver {
    addr: SocketAddr,
    latencies: Arc<Mutex<Vec<f64>>>,
}

impl Receiver {
    async fn start() -> Result<Receiver, Error> {
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
        let seen = Arc::clone(&latencies);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = Arc::clone(&seen);
                async move {
                    let ms = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["time"].as_str().map(str::to_owned))
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .and_then(|t| (Utc::now() - t.with_timezone(&Utc)).num_microseconds())
                        .map_or(f64::NAN, |us| us as f64 / 1000.0);
                    if let Ok(mut l) = seen.lock() {
                        l.push(ms);
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, latencies })
    }

    fn count(&self) -> u64 {
        self.latencies.lock().map_or(0, |l| l.len() as u64)
    }

    fn latencies(&self) -> Vec<f64> {
        self.latencies.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
