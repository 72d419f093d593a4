//! Benchmark driver: runs one capture step of one resource through the bridge's own code
//! path (`capture::step_once`: drift check, then the initial load if it is not done yet,
//! else one strategy cycle, e.g. a snapshot-diff pass) against the config's state store.
//!
//! ```text
//! capture_step CONFIG RESOURCE            run one step, print rows, changes and seconds
//! capture_step CONFIG RESOURCE --sql      print the SQL a full pass runs, and exit
//! ```
//!
//! The service must not be running on the same state store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use legacy_bridge::store::SqliteStore;
use legacy_bridge::{app, capture, config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: capture_step CONFIG RESOURCE [--sql]";
    let config_path = PathBuf::from(args.next().context(usage)?);
    let resource = args.next().context(usage)?;
    let print_sql = match args.next().as_deref() {
        None => false,
        Some("--sql") => true,
        Some(other) => anyhow::bail!("unknown argument `{other}`; {usage}"),
    };
    legacy_bridge::telemetry::init(false);

    let loaded = config::load(&config_path)?;
    let state_path = loaded.state_path();
    let app = app::build(loaded, Duration::ZERO).await?;
    let targets =
        capture::bind_targets(&app.config, &app.state.resources, &app.state.sources).await?;
    let target = targets
        .into_iter()
        .find(|t| t.name == resource)
        .with_context(|| format!("resource `{resource}` has no `capture` section"))?;
    if print_sql {
        let (sql, _) = target
            .source
            .dialect()
            .render(&capture::scan_query(&target.resource));
        println!("{sql}");
        return Ok(());
    }
    let store = SqliteStore::open(&state_path)?;
    let started = Instant::now();
    let step = capture::step_once(target, Arc::new(store)).await?;
    println!(
        "capture step {resource}: rows={} changes={} last_seq={} seconds={:.3}",
        step.rows,
        step.changes,
        step.last_seq
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
