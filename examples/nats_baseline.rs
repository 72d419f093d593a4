//! Benchmark baseline: a bare async-nats JetStream publisher (no legacy-bridge code), the
//! ceiling `scripts/bench` compares the NATS sink's delivery rate with. It publishes COUNT
//! events of a realistic CloudEvent size (about 600 bytes, the shape of
//! `StoredEvent::to_cloudevent`) in windows of WINDOW: every publish of a window is sent, then
//! every ack awaited, as the sink does with one batch. Each carries a unique `Nats-Msg-Id`, so
//! the stream's de-duplication does its usual work.
//!
//! ```text
//! nats_baseline [--url nats://127.0.0.1:4222] [--stream LB_BASELINE] [--count 100000]
//!               [--window 500] [--fresh]
//! ```
//!
//! Creates the stream (file storage, subjects `bench.>`) when missing; `--fresh` deletes it
//! first, so repeated runs do not pile up messages on disk. Prints one line,
//! `nats-baseline: events=N window=W bytes=B seconds=S events/s=R` (B: one payload's size),
//! timed from the first publish to the last ack; exits non-zero when any publish is not acked.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, StorageType};

struct Args {
    url: String,
    stream: String,
    count: u64,
    window: usize,
    fresh: bool,
}

fn parse_args() -> Result<Args, String> {
    let usage =
        "usage: nats_baseline [--url URL] [--stream NAME] [--count N] [--window W] [--fresh]";
    let mut args = Args {
        url: "nats://127.0.0.1:4222".into(),
        stream: "LB_BASELINE".into(),
        count: 100_000,
        window: 500,
        fresh: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--fresh" {
            args.fresh = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value; {usage}"))?;
        let bad = |_| format!("{flag}: not a positive whole number: {value}");
        match flag.as_str() {
            "--url" => args.url = value,
            "--stream" => args.stream = value,
            "--count" => args.count = value.parse().map_err(bad)?,
            "--window" => args.window = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown argument {flag}; {usage}")),
        }
    }
    if args.count == 0 || args.window == 0 {
        return Err(format!("--count and --window must be at least 1; {usage}"));
    }
    Ok(args)
}

/// A CloudEvent like the bridge's for an inventory update, about 600 bytes.
fn payload(id: &str, seq: u64) -> Vec<u8> {
    let key = format!("A{:05}/S{:02}", seq % 100_000, seq % 7);
    format!(
        concat!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/sources/pos/inventory","#,
            r#""type":"inventory.updated","subject":"{key}","time":"2025-01-15T09:30:12.345678Z","#,
            r#""datacontenttype":"application/json","sequence":"{seq}","data":{{"op":"updated","#,
            r#""origin":"capture","key":{{"sku":"{key}","store":"S{store:02}"}},"#,
            r#""before":{{"sku":"{key}","store":"S{store:02}","qty_on_hand":"{before}","#,
            r#""bin":"A-07-3","updated_at":"2025-01-15T09:29:58.000000Z"}},"#,
            r#""after":{{"sku":"{key}","store":"S{store:02}","qty_on_hand":"{after}","#,
            r#""bin":"A-07-3","updated_at":"2025-01-15T09:30:12.000000Z"}},"#,
            r#""changed":["qty_on_hand","updated_at"],"#,
            r#""position":{{"cursor":"2025-01-15T09:30:12.000000Z|{seq}"}}}}}}"#
        ),
        id = id,
        key = key,
        seq = seq,
        store = seq % 7,
        before = seq % 50 + 1,
        after = seq % 50,
    )
    .into_bytes()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let client = async_nats::connect(args.url.as_str()).await?;
    let js = ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(2 * args.window)
        .backpressure_on_inflight(true)
        .build(client);
    if args.fresh && js.get_stream(&args.stream).await.is_ok() {
        js.delete_stream(&args.stream).await?;
    }
    js.get_or_create_stream(Config {
        name: args.stream.clone(),
        subjects: vec!["bench.>".into()],
        storage: StorageType::File,
        ..Default::default()
    })
    .await?;

    // Ids unique to this run, so a rerun against the same stream is not de-duplicated.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let mut acks = Vec::with_capacity(args.window);
    let mut failed = 0u64;
    let bytes = payload(&format!("{run:016x}-{:016x}", 0), 0).len();
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < args.count {
        let end = (seq + args.window as u64).min(args.count);
        for s in seq..end {
            let id = format!("{run:016x}-{s:016x}");
            let message = PublishMessage::build()
                .payload(payload(&id, s).into())
                .message_id(&id);
            acks.push(js.send_publish("bench.inventory.updated", message).await?);
        }
        for ack in acks.drain(..) {
            if ack.await.is_err() {
                failed += 1;
            }
        }
        seq = end;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "nats-baseline: events={} window={} bytes={bytes} seconds={seconds:.3} events/s={:.0}",
        args.count,
        args.window,
        args.count as f64 / seconds
    );
    if failed > 0 {
        return Err(format!("{failed} publishes were not acked").into());
    }
    Ok(())
}
