//! `legacy-bridge apply-export`: applies one file with the service's staging, guards and
//! commits, and fails (non-zero exit) when the export is held or rejected, so a backfill
//! script stops there.

use std::path::Path;
use std::process::{Command, Output};

use legacy_bridge::store::SqliteStore;

use super::capture_harness::{read_all, show};
use super::files_harness::{Auth, write_config};

const ADAPTER: &str = r#"
[resources.items]
source = "exports"
key = "sku"

[resources.items.file]
pattern = "ITEMS_*.csv"
format = "csv"

[resources.items.fields]
sku = { column = "SKU", type = "string" }
qty = { column = "QTY", type = "integer" }
"#;

fn apply_export(config: &Path, file: &Path, approve: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_legacy-bridge"));
    cmd.arg("apply-export")
        .arg("--config")
        .arg(config)
        .args(["--resource", "items"])
        .arg(file)
        .env("RUST_LOG", "warn");
    if approve {
        cmd.arg("--approve");
    }
    cmd.output().expect("run apply-export")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `SKU,QTY` rows `S001`.. with qty `i`.
fn export(dir: &Path, name: &str, rows: usize, bad: usize) -> std::path::PathBuf {
    let mut text = String::from("SKU,QTY\n");
    for i in 1..=rows {
        text += &format!("S{i:03},{i}\n");
    }
    for i in 1..=bad {
        text += &format!("X{i:03},not a number\n");
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write export");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_export_fails_when_the_export_is_held_or_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = write_config(dir.path(), "", ADAPTER, Auth::Off);
    let state = dir.path().join("state/lb.db");
    // Files outside the export folder: the command takes any path.
    let elsewhere = dir.path().join("backfill");
    std::fs::create_dir_all(&elsewhere).expect("folder");

    // GIVEN 10 records applied by the command
    let out = apply_export(&config, &export(&elsewhere, "full.csv", 10, 0), false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10 records"),
        "{}",
        text(&out)
    );
    let events = read_all(&SqliteStore::open_read_only(&state).expect("store")).await;
    assert_eq!(events.len(), 10, "{}", show(&events));

    // WHEN a truncated export is applied without --approve
    let truncated = export(&elsewhere, "short.csv", 3, 0);
    let out = apply_export(&config, &truncated, false);
    // THEN the command fails, saying it is held, and nothing is applied
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("held"),
        "{}",
        text(&out)
    );
    let events = read_all(&SqliteStore::open_read_only(&state).expect("store")).await;
    assert_eq!(events.len(), 10, "{}", show(&events));

    // WHEN it is applied with --approve
    let out = apply_export(&config, &truncated, true);
    // THEN the deletes go through
    assert!(out.status.success(), "{}", text(&out));
    let events = read_all(&SqliteStore::open_read_only(&state).expect("store")).await;
    assert_eq!(events.len(), 17, "{}", show(&events));
    assert!(
        events[10..]
            .iter()
            .all(|e| e.event.event_type == "items.deleted"),
        "{}",
        show(&events)
    );

    // WHEN an export with too many bad records is applied, even with --approve
    let out = apply_export(&config, &export(&elsewhere, "bad.csv", 3, 2), true);
    // THEN the command fails, saying it is rejected, and nothing is applied
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rejected"),
        "{}",
        text(&out)
    );
    let events = read_all(&SqliteStore::open_read_only(&state).expect("store")).await;
    assert_eq!(events.len(), 17, "{}", show(&events));
    // The file is left where it was.
    assert!(elsewhere.join("bad.csv").exists() && truncated.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_export_refuses_while_the_service_runs() {
    let bridge =
        super::files_harness::FilesBridge::start(super::files_harness::RENAME, ADAPTER, Auth::Off)
            .await;
    let file = export(bridge.root(), "full.csv", 3, 0);
    let out = apply_export(&bridge.root().join("config.toml"), &file, false);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running service"),
        "{}",
        text(&out)
    );
    assert!(bridge.events().await.is_empty());
}
