//! Folder watching against real files in a temporary folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, TimeZone as _, Utc};
use futures::FutureExt as _;
use globset::GlobMatcher;
use tokio::time::timeout;

use super::*;
use crate::config::Completion;

fn config(completion: Completion) -> FilesSourceConfig {
    FilesSourceConfig {
        dir: PathBuf::from("not-read-by-start"),
        watch: false,
        poll_interval_ms: 60_000,
        completion,
        stable_ms: 200,
        marker_suffixes: vec![".done".into(), ".ok".into()],
        archive_dir: None,
        archive_keep: 10,
        mirror: None,
    }
}

fn glob(pattern: &str) -> GlobMatcher {
    globset::Glob::new(pattern)
        .expect("test glob")
        .compile_matcher()
}

fn start(dir: &Path, config: &FilesSourceConfig) -> FolderWatch {
    FolderWatch::start(dir.to_owned(), None, config).expect("start")
}

fn names(files: &[Candidate]) -> Vec<&str> {
    files.iter().map(|c| c.name.as_str()).collect()
}

fn set_mtime(path: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
        .expect("set mtime");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_558_502 + secs, 0)
        .single()
        .expect("time")
}

#[test]
fn a_file_being_written_is_complete_only_after_it_stops_changing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Completion::Stable);
    cfg.stable_ms = 300; // six times the gap between writes: a busy test machine stays below
    let w = start(tmp.path(), &cfg);
    let pattern = glob("PRICES_*.csv");
    let path = tmp.path().join("PRICES_1.csv");
    fs::write(&path, b"sku;price\n").expect("write");
    let writer = std::thread::spawn(move || {
        let mut last = Instant::now();
        for i in 0..8 {
            std::thread::sleep(Duration::from_millis(50));
            let mut f = fs::File::options().append(true).open(&path).expect("open");
            std::io::Write::write_all(&mut f, format!("A{i};1.00\n").as_bytes()).expect("append");
            last = Instant::now();
        }
        last
    });
    while !writer.is_finished() {
        let l = w.list(&pattern).expect("list");
        assert!(l.complete.is_empty(), "complete while written: {l:?}");
        assert_eq!(
            names(&l.waiting.iter().map(|x| x.file.clone()).collect::<Vec<_>>()),
            ["PRICES_1.csv"]
        );
        assert!(matches!(l.waiting[0].reason, WaitReason::Unstable { .. }));
        std::thread::sleep(Duration::from_millis(20));
    }
    let last_write = writer.join().expect("writer");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let l = w.list(&pattern).expect("list");
        if !l.complete.is_empty() {
            assert!(
                last_write.elapsed() >= Duration::from_millis(300),
                "complete too early"
            );
            assert_eq!(names(&l.complete), ["PRICES_1.csv"]);
            assert_eq!(
                l.complete[0].size,
                fs::metadata(tmp.path().join("PRICES_1.csv"))
                    .expect("meta")
                    .len()
            );
            break;
        }
        assert!(Instant::now() < deadline, "never complete: {l:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_end_of_a_stable_wait_wakes_the_resources() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Completion::Stable);
    cfg.stable_ms = 150;
    let w = start(tmp.path(), &cfg); // no events, and no poll tick within the test
    let pattern = glob("*.csv");
    fs::write(tmp.path().join("A.csv"), b"x").expect("write");
    let mut changes = w.subscribe();
    changes.changed().await.expect("first call is immediate");
    assert_eq!(w.list(&pattern).expect("list").waiting.len(), 1);
    timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("woken when the wait ends")
        .expect("running");
    assert_eq!(names(&w.list(&pattern).expect("list").complete), ["A.csv"]);
}

#[test]
fn marker_rule_needs_a_marker_and_markers_are_no_candidates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = start(tmp.path(), &config(Completion::Marker));
    let (csv, any) = (glob("*.csv"), glob("X*"));
    fs::write(tmp.path().join("X.csv"), b"a").expect("write");
    let l = w.list(&csv).expect("list");
    assert!(l.complete.is_empty());
    assert_eq!(
        l.waiting[0].reason,
        WaitReason::NoMarker {
            expected: vec![
                "X.csv.done".into(),
                "X.csv.ok".into(),
                "X.done".into(),
                "X.ok".into()
            ]
        }
    );
    assert_eq!(
        l.waiting[0].reason.to_string(),
        "waiting for marker X.csv.done or X.csv.ok or X.done or X.ok"
    );

    fs::write(tmp.path().join("X.csv.done"), b"").expect("marker");
    assert_eq!(names(&w.list(&csv).expect("list").complete), ["X.csv"]);
    let l = w.list(&any).expect("list");
    assert_eq!((names(&l.complete), l.waiting.len()), (vec!["X.csv"], 0));

    fs::remove_file(tmp.path().join("X.csv.done")).expect("remove");
    assert!(w.list(&csv).expect("list").complete.is_empty());
    fs::write(tmp.path().join("X.done"), b"").expect("marker");
    assert_eq!(names(&w.list(&csv).expect("list").complete), ["X.csv"]);
    let l = w.list(&any).expect("list");
    assert_eq!((names(&l.complete), l.waiting.len()), (vec!["X.csv"], 0));
}

#[test]
fn rename_rule_is_complete_at_once_and_ignores_what_does_not_match() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = start(tmp.path(), &config(Completion::Rename));
    for name in ["X.csv", "X.csv.tmp", ".Y.csv", "Z.CSV.part"] {
        fs::write(tmp.path().join(name), b"a").expect("write");
    }
    fs::create_dir(tmp.path().join("D.csv")).expect("dir");
    let l = w.list(&glob("*.csv")).expect("list");
    assert_eq!(names(&l.complete), ["X.csv"]);
    assert!(l.waiting.is_empty());
    assert_eq!(
        l.newest().map(|c| c.path.clone()),
        Some(tmp.path().join("X.csv"))
    );
    // Under rename, `.done` files are ordinary files.
    fs::write(tmp.path().join("X.done"), b"").expect("write");
    assert_eq!(names(&w.list(&glob("X*")).expect("list").complete).len(), 3);
}

#[test]
fn complete_files_are_newest_first_then_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = start(tmp.path(), &config(Completion::Rename));
    for (name, secs) in [
        ("P_a.csv", 1_000),
        ("P_b.csv", 3_000),
        ("P_c.csv", 1_000),
        ("P_d.csv", 2_000),
        ("P_e.csv", 1_000),
    ] {
        let path = tmp.path().join(name);
        fs::write(&path, name).expect("write");
        set_mtime(&path, secs);
    }
    let l = w.list(&glob("P_*.csv")).expect("list");
    assert_eq!(
        names(&l.complete),
        ["P_b.csv", "P_d.csv", "P_e.csv", "P_c.csv", "P_a.csv"]
    );
    assert_eq!(
        l.complete[1].modified,
        SystemTime::UNIX_EPOCH + Duration::from_secs(2_000)
    );
}

#[tokio::test]
async fn changed_wakes_on_a_file_system_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Completion::Rename);
    cfg.watch = true; // the poll tick (60 s) cannot be what wakes
    let w = start(tmp.path(), &cfg);
    assert!(w.has_events());
    let mut changes = w.subscribe();
    changes
        .changed()
        .now_or_never()
        .expect("first call is immediate")
        .expect("running");
    assert!(
        timeout(Duration::from_millis(300), changes.changed())
            .await
            .is_err(),
        "woken by nothing"
    );
    fs::write(tmp.path().join("A.csv"), b"a").expect("write");
    timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("woken by the event")
        .expect("running");
}

#[tokio::test]
async fn changed_wakes_on_a_poll_tick_without_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Completion::Rename);
    cfg.poll_interval_ms = 100;
    let w = start(tmp.path(), &cfg);
    assert!(!w.has_events());
    let mut changes = w.subscribe();
    changes.changed().await.expect("first call is immediate");
    let t = Instant::now();
    for _ in 0..3 {
        timeout(Duration::from_secs(2), changes.changed())
            .await
            .expect("woken by the tick")
            .expect("running");
    }
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "ticks too fast: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_wake_up_before_the_call_is_not_lost_and_reaches_every_resource() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Completion::Rename);
    cfg.watch = true;
    let w = start(tmp.path(), &cfg);
    let (mut a, mut b) = (w.subscribe(), w.subscribe());
    for c in [&mut a, &mut b] {
        c.changed()
            .now_or_never()
            .expect("immediate")
            .expect("running");
        assert!(c.changed().now_or_never().is_none(), "nothing happened yet");
    }
    fs::write(tmp.path().join("A.csv"), b"a").expect("write");
    // Nobody waits while the event arrives and is delivered.
    tokio::time::sleep(EVENT_COALESCE + Duration::from_millis(400)).await;
    for c in [&mut a, &mut b] {
        c.changed()
            .now_or_never()
            .expect("remembered wake-up")
            .expect("running");
    }
}

#[tokio::test]
async fn stop_ends_every_wait() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(Completion::Rename);
    cfg.watch = true;
    let w = std::sync::Arc::new(start(tmp.path(), &cfg));
    let mut changes = w.subscribe();
    changes.changed().await.expect("first call is immediate");
    let waiter = tokio::spawn(async move { changes.changed().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    w.stop();
    let e = timeout(Duration::from_secs(2), waiter)
        .await
        .expect("woken by stop")
        .expect("task")
        .expect_err("stopped");
    assert!(matches!(e, WatchError::Stopped { .. }), "{e}");
    let mut late = w.subscribe();
    assert!(matches!(
        late.changed().await,
        Err(WatchError::Stopped { .. })
    ));
    w.stop();
}

#[test]
fn a_missing_folder_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("exports");
    let e =
        FolderWatch::start(dir.clone(), None, &config(Completion::Rename)).expect_err("missing");
    assert!(
        matches!(&e, WatchError::Missing { dir: d, .. } if *d == dir),
        "{e:?}"
    );
    assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    fs::write(&dir, b"").expect("a file");
    let e = FolderWatch::start(dir.clone(), None, &config(Completion::Rename)).expect_err("file");
    assert!(matches!(e, WatchError::NotAFolder { .. }), "{e:?}");
    // Gone after start (an unmounted share): listing says so.
    fs::remove_file(&dir).expect("remove");
    fs::create_dir(&dir).expect("dir");
    let w = start(&dir, &config(Completion::Rename));
    fs::remove_dir(&dir).expect("remove");
    let e = w.list(&glob("*")).expect_err("gone");
    assert!(
        matches!(&e, WatchError::Missing { dir: d, .. } if *d == dir),
        "{e:?}"
    );
}

/// A source with `exports/` and `archive/` in a temp folder.
fn archiving(
    completion: Completion,
    keep: usize,
) -> (tempfile::TempDir, PathBuf, PathBuf, FolderWatch) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (exports, archive) = (tmp.path().join("exports"), tmp.path().join("archive"));
    fs::create_dir(&exports).expect("exports");
    let mut cfg = config(completion);
    cfg.archive_keep = keep;
    let w = FolderWatch::start(exports.clone(), Some(archive.clone()), &cfg).expect("start");
    (tmp, exports, archive, w)
}

fn only_complete(w: &FolderWatch, pattern: &GlobMatcher) -> Candidate {
    let l = w.list(pattern).expect("list");
    assert_eq!(l.complete.len(), 1, "{l:?}");
    l.complete[0].clone()
}

#[test]
fn archive_moves_file_and_markers_under_names_that_do_not_collide() {
    let (_tmp, exports, archive, w) = archiving(Completion::Marker, 10);
    let pattern = glob("PRICES*.csv");
    fs::write(exports.join("PRICES.csv"), b"first").expect("write");
    fs::write(exports.join("PRICES.csv.done"), b"").expect("marker");
    let first = w
        .archive_at(&only_complete(&w, &pattern), &pattern, at(0))
        .expect("archive")
        .expect("archived");
    assert_eq!(first, archive.join("20240501T101502.000000Z_PRICES.csv"));
    assert_eq!(files_in(&exports), Vec::<String>::new());

    // The same name again, archived in the same instant.
    fs::write(exports.join("PRICES.csv"), b"second").expect("write");
    fs::write(exports.join("PRICES.done"), b"").expect("marker");
    let second = w
        .archive_at(&only_complete(&w, &pattern), &pattern, at(0))
        .expect("archive")
        .expect("archived");
    assert_ne!(first, second);
    assert_eq!(files_in(&exports), Vec::<String>::new());
    assert_eq!(
        files_in(&archive),
        [
            "20240501T101502.000000Z-1_PRICES.csv",
            "20240501T101502.000000Z-1_PRICES.done",
            "20240501T101502.000000Z_PRICES.csv",
            "20240501T101502.000000Z_PRICES.csv.done",
        ]
    );
    assert_eq!(fs::read(&first).expect("read"), b"first");
    assert_eq!(fs::read(&second).expect("read"), b"second");

    // Through the public call, with the real clock.
    fs::write(exports.join("PRICES.csv"), b"third").expect("write");
    fs::write(exports.join("PRICES.ok"), b"").expect("marker");
    let third = w
        .archive(&only_complete(&w, &pattern), &pattern)
        .expect("archive")
        .expect("archived");
    assert_eq!(fs::read(third).expect("read"), b"third");
    assert_eq!(files_in(&archive).len(), 6);
}

#[test]
fn archive_keeps_the_newest_of_its_pattern_and_nothing_else() {
    let (_tmp, exports, archive, w) = archiving(Completion::Marker, 2);
    fs::create_dir(&archive).expect("archive");
    let others = [
        "20200101T000000.000000Z_STOCK_1.csv",
        "20200101T000000.000000Z_STOCK_1.csv.done",
        "PRICES_0.csv",
        "notes.txt",
    ];
    for name in others {
        fs::write(archive.join(name), b"keep").expect("seed");
    }
    let pattern = glob("PRICES_*.csv");
    for i in 1..=4 {
        let name = format!("PRICES_{i}.csv");
        fs::write(exports.join(&name), name.as_bytes()).expect("write");
        fs::write(exports.join(format!("{name}.done")), b"").expect("marker");
        let file = only_complete(&w, &pattern);
        w.archive_at(&file, &pattern, at(i)).expect("archive");
    }
    let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
    for i in [3, 4] {
        expected.push(format!("20240501T1015{:02}.000000Z_PRICES_{i}.csv", 2 + i));
        expected.push(format!(
            "20240501T1015{:02}.000000Z_PRICES_{i}.csv.done",
            2 + i
        ));
    }
    expected.sort();
    assert_eq!(files_in(&archive), expected);
}

#[test]
fn archive_leaves_a_shared_stem_marker_until_its_last_file() {
    let (_tmp, exports, archive, w) = archiving(Completion::Marker, 10);
    let pattern = glob("PRICES.*");
    for name in ["PRICES.csv", "PRICES.dbf", "PRICES.done"] {
        fs::write(exports.join(name), b"x").expect("write");
    }
    let l = w.list(&pattern).expect("list");
    assert_eq!(l.complete.len(), 2);
    let csv = l
        .complete
        .iter()
        .find(|c| c.name == "PRICES.csv")
        .expect("csv");
    w.archive_at(csv, &pattern, at(0)).expect("archive");
    assert_eq!(files_in(&exports), ["PRICES.dbf", "PRICES.done"]);
    let dbf = only_complete(&w, &pattern);
    w.archive_at(&dbf, &pattern, at(1)).expect("archive");
    assert_eq!(files_in(&exports), Vec::<String>::new());
    assert_eq!(files_in(&archive).len(), 3);
}

#[test]
fn archive_leaves_a_rewritten_file_in_place_and_does_nothing_without_a_folder() {
    let (_tmp, exports, archive, w) = archiving(Completion::Rename, 10);
    let pattern = glob("*.csv");
    fs::write(exports.join("A.csv"), b"one").expect("write");
    let file = only_complete(&w, &pattern);
    fs::write(exports.join("A.csv"), b"one, two").expect("rewrite");
    let e = w.archive(&file, &pattern).expect_err("changed");
    assert!(matches!(e, WatchError::ChangedSinceListed { .. }), "{e:?}");
    assert_eq!(fs::read(exports.join("A.csv")).expect("read"), b"one, two");
    assert!(!archive.exists() || files_in(&archive).is_empty());

    let tmp = tempfile::tempdir().expect("tempdir");
    let w = start(tmp.path(), &config(Completion::Rename));
    fs::write(tmp.path().join("A.csv"), b"one").expect("write");
    let file = only_complete(&w, &pattern);
    assert_eq!(w.archive(&file, &pattern).expect("no-op"), None);
    assert_eq!(files_in(tmp.path()), ["A.csv"]);
}

#[test]
fn one_watch_is_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<FolderWatch>();
    shared::<FolderChanges>();
}
