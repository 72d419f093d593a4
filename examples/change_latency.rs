//! Benchmark driver: change latency from a commit in the legacy database to its receipt by a
//! client waiting on the bridge's `GET /v1/changes` long-poll.
//!
//! ```text
//! LATENCY_ODBC='Driver=...;' change_latency BASE_URL RESOURCE SKU LOCATION COUNT [DEADLINE_SECS]
//! ```
//!
//! Starts from the current end of the outbox, then COUNT times (or until DEADLINE_SECS,
//! default 180, have passed): waits a random 0-300 ms (so commits do not fall in step with
//! the capture cycle), commits `UPDATE stock_level SET qty_reserved = <marker>, last_upd =
//! <now, Europe/Berlin wall time>` for one row through its own ODBC connection (autocommit),
//! notes the time the commit returned, and waits for the long-poll to deliver the event whose
//! `after.reserved` is the marker. Also measures, on a second connection, when the committed
//! value is visible to a plain SELECT (the database's own floor). Prints one `latency` line
//! with percentiles in milliseconds, and exits non-zero if an event is not received within
//! 10 s.

use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use odbc_api::{ConnectionOptions, Cursor, Environment, IntoParameter};

/// Longest wait for one change to arrive.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds a long-poll waits server-side before answering empty.
const WAIT_SECS: u64 = 20;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: change_latency BASE_URL RESOURCE SKU LOCATION COUNT [DEADLINE_SECS]";
    if args.len() < 5 {
        return Err(usage.into());
    }
    let (base, resource, sku, location) = (&args[0], &args[1], &args[2], &args[3]);
    let count: usize = args[4].parse()?;
    let deadline_secs: u64 = args.get(5).map_or(Ok(180), |s| s.parse())?;
    let conn_str = std::env::var("LATENCY_ODBC")
        .map_err(|_| "set LATENCY_ODBC to the ODBC connection string of the database")?;

    // Markers fit DECIMAL(12,3) and differ from run to run.
    let base_marker = (SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 900_000) * 1000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(WAIT_SECS + 10))
        .build()?;
    let feed = format!("{base}/v1/changes");
    let after = runtime.block_on(outbox_end(&client, &feed))?;
    let (tx, rx) = mpsc::channel::<(u64, Instant)>();
    let poller = runtime.spawn(long_poll(client, feed, resource.clone(), after, tx));

    let env = Environment::new()?;
    let writer = env.connect_with_connection_string(&conn_str, ConnectionOptions::default())?;
    let reader = env.connect_with_connection_string(&conn_str, ConnectionOptions::default())?;
    let update = "UPDATE stock_level SET qty_reserved = ?, \
                  last_upd = clock_timestamp() AT TIME ZONE 'Europe/Berlin' \
                  WHERE item_code = ? AND store_no = ?";
    let probe = "SELECT qty_reserved FROM stock_level WHERE item_code = ? AND store_no = ?";
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(count);
    let mut visible = Vec::with_capacity(count);
    let mut rng_state = base_marker | 1;
    for i in 0..count {
        if started.elapsed() > Duration::from_secs(deadline_secs) {
            eprintln!("change_latency: deadline reached after {i} changes");
            break;
        }
        std::thread::sleep(Duration::from_millis(xorshift(&mut rng_state) % 300));
        let marker = base_marker + i as u64;
        let text = format!("{marker}.000");
        let n = writer.execute(
            update,
            (
                &text.as_str().into_parameter(),
                &format!("{sku:<10}").as_str().into_parameter(),
                &format!("{location:<4}").as_str().into_parameter(),
            ),
            None,
        )?;
        drop(n);
        let committed = Instant::now();
        // The database's floor: poll the row on another connection until it shows the value.
        loop {
            let mut cursor = reader
                .execute(
                    probe,
                    (
                        &format!("{sku:<10}").as_str().into_parameter(),
                        &format!("{location:<4}").as_str().into_parameter(),
                    ),
                    None,
                )?
                .ok_or("probe returned no result set")?;
            let mut buf = Vec::new();
            let seen = match cursor.next_row()? {
                Some(mut row) => {
                    row.get_text(1, &mut buf)?;
                    parse_marker(std::str::from_utf8(&buf)?) == Some(marker)
                }
                None => return Err("the benchmark row does not exist".into()),
            };
            if seen {
                visible.push(committed.elapsed());
                break;
            }
            if committed.elapsed() > RECEIPT_TIMEOUT {
                return Err(format!("change {i} never became visible to a SELECT").into());
            }
        }
        loop {
            let left = RECEIPT_TIMEOUT
                .checked_sub(committed.elapsed())
                .ok_or_else(|| format!("change {i} (marker {marker}) not received within 10 s"))?;
            let (got, at) = rx
                .recv_timeout(left)
                .map_err(|_| format!("change {i} (marker {marker}) not received within 10 s"))?;
            if got == marker {
                latencies.push(at.saturating_duration_since(committed));
                break;
            }
        }
    }
    poller.abort();
    if latencies.is_empty() {
        return Err("no change measured".into());
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let mut lat: Vec<f64> = latencies.iter().map(ms).collect();
    let mut vis: Vec<f64> = visible.iter().map(ms).collect();
    lat.sort_by(f64::total_cmp);
    vis.sort_by(f64::total_cmp);
    println!(
        "latency n={} p50={:.1} p90={:.1} p99={:.1} max={:.1} mean={:.1} visible_p50={:.2} visible_p99={:.2} visible_max={:.2}",
        lat.len(),
        pct(&lat, 50.0),
        pct(&lat, 90.0),
        pct(&lat, 99.0),
        lat[lat.len() - 1],
        lat.iter().sum::<f64>() / lat.len() as f64,
        pct(&vis, 50.0),
        pct(&vis, 99.0),
        vis[vis.len() - 1],
    );
    Ok(())
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn parse_marker(text: &str) -> Option<u64> {
    let int = text.trim().split('.').next()?;
    int.parse().ok()
}

/// The current end of the outbox: pages through it without waiting.
async fn outbox_end(client: &reqwest::Client, feed: &str) -> Result<u64, Error> {
    let mut after = 0u64;
    loop {
        let resp = client
            .get(feed)
            .query(&[("after", after), ("limit", 1000)])
            .send()
            .await?
            .error_for_status()?;
        let next: u64 = resp
            .headers()
            .get("next-after")
            .ok_or("no Next-After header")?
            .to_str()?
            .parse()?;
        let events: Vec<serde_json::Value> = resp.json().await?;
        if events.is_empty() || next == after {
            return Ok(next);
        }
        after = next;
    }
}

/// Keeps one long-poll waiting at all times; reports the marker of every event of `resource`
/// with the instant its response arrived.
async fn long_poll(
    client: reqwest::Client,
    feed: String,
    resource: String,
    mut after: u64,
    tx: mpsc::Sender<(u64, Instant)>,
) -> Result<(), Error> {
    loop {
        let resp = client
            .get(&feed)
            .query(&[("after", after), ("limit", 1000), ("wait", WAIT_SECS)])
            .send()
            .await?
            .error_for_status()?;
        let next: u64 = resp
            .headers()
            .get("next-after")
            .ok_or("no Next-After header")?
            .to_str()?
            .parse()?;
        let events: Vec<serde_json::Value> = resp.json().await?;
        let at = Instant::now();
        for e in &events {
            let ours = e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{resource}.")));
            let marker = e["data"]["after"]["reserved"]
                .as_str()
                .and_then(parse_marker);
            if let (true, Some(m)) = (ours, marker) {
                let _ = tx.send((m, at));
            }
        }
        after = next;
    }
}
