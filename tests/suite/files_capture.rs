//! Capturing file resources: successive exports diffed into events, files that are not
//! complete yet (still being written, no marker), the delete guard holding a truncated
//! export until it is approved or superseded, bad records quarantined with their line
//! numbers (and a file with too many rejected whole), and processed files archived.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use legacy_bridge::model::StoredEvent;
use serde_json::{Value as Json, json};

use super::capture_harness::{assert_gap_free, show};
use super::files_harness::{Auth, FilesBridge, RENAME, of_type, sha256_hex};

/// `items` on `ITEMS_*.csv`, with extra lines for its `file` section.
fn items(file_extra: &str) -> String {
    format!(
        r#"
[resources.items]
source = "exports"
key = "sku"

[resources.items.file]
pattern = "ITEMS_*.csv"
format = "csv"
{file_extra}

[resources.items.fields]
sku   = {{ column = "SKU", type = "string", filter = true, sort = true }}
name  = {{ column = "NAME", type = "string" }}
price = {{ column = "PRICE", type = "decimal", scale = 2 }}
qty   = {{ column = "QTY", type = "integer" }}
"#
    )
}

/// One item row: sku, name, price, qty.
type Row = (String, String, String, i64);

fn row(sku: &str, name: &str, price: &str, qty: i64) -> Row {
    (sku.to_owned(), name.to_owned(), price.to_owned(), qty)
}

/// `n` rows `S001`..: name `item i`, price `i.50`, qty `i`.
fn numbered(n: usize) -> Vec<Row> {
    (1..=n)
        .map(|i| {
            row(
                &format!("S{i:03}"),
                &format!("item {i}"),
                &format!("{i}.50"),
                i as i64,
            )
        })
        .collect()
}

/// The export of `rows`.
fn csv(rows: &[Row]) -> Vec<u8> {
    let mut text = String::from("SKU,NAME,PRICE,QTY\r\n");
    for (sku, name, price, qty) in rows {
        text += &format!("{sku},{name},{price},{qty}\r\n");
    }
    text.into_bytes()
}

/// The record the API serves (and events carry) for a row.
fn record(r: &Row) -> Json {
    json!({"sku": r.0, "name": r.1, "price": r.2, "qty": r.3})
}

/// The records of `rows`, in key order.
fn records(rows: &[Row]) -> Vec<Json> {
    let mut sorted = rows.to_vec();
    sorted.sort();
    sorted.iter().map(record).collect()
}

/// Events after the first `n`.
fn after(events: &[StoredEvent], n: usize) -> &[StoredEvent] {
    &events[n.min(events.len())..]
}

/// The one event for `subject` among `events`.
fn for_subject<'a>(events: &'a [StoredEvent], subject: &str) -> &'a StoredEvent {
    let found: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.event.subject == subject)
        .collect();
    assert_eq!(found.len(), 1, "one event for {subject}:\n{}", show(events));
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_export_is_diffed_against_the_last_one() {
    let bridge = FilesBridge::start(RENAME, &items("max_delete_share = 0.5"), Auth::Off).await;

    // GIVEN a first export, applied as the initial snapshot
    let first = vec![
        row("A", "Anvil", "10.00", 1),
        row("B", "Bolt", "0.20", 100),
        row("C", "Clamp", "4.50", 7),
        row("D", "Drill", "89.90", 2),
    ];
    bridge.drop_export("ITEMS_001.csv", &csv(&first));
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    let events = bridge.wait_events("four snapshots", |e| e.len() >= 4).await;
    assert_eq!(events.len(), 4, "{}", show(&events));
    for (e, want) in events.iter().zip(records(&first)) {
        assert_eq!(e.event.event_type, "items.snapshot", "{}", show(&events));
        assert_eq!(e.event.subject, want["sku"]);
        assert_eq!(e.event.data["origin"], "initial");
        assert_eq!(e.event.data["after"], want);
    }

    // WHEN the next export updates B, adds a key that needs escaping in a subject, and
    // drops C
    let second = vec![
        row("A", "Anvil", "10.00", 1),
        row("B", "Bolt", "0.25", 100),
        row("D", "Drill", "89.90", 2),
        row("E/1 ü", "Eraser", "1.00", 5),
    ];
    bridge.drop_export("ITEMS_002.csv", &csv(&second));
    let status = bridge.wait_applied("items", "ITEMS_002.csv").await;

    // THEN exactly those three changes are emitted, with their before and after images
    let applied = &status["export"]["last_applied"];
    assert_eq!(
        (
            &applied["records"],
            &applied["created"],
            &applied["updated"],
            &applied["deleted"]
        ),
        (&json!(4), &json!(1), &json!(1), &json!(1)),
        "{status:#}"
    );
    let events = bridge.wait_events("three changes", |e| e.len() >= 7).await;
    assert_gap_free("items", &events);
    let changes = after(&events, 4);
    assert_eq!(changes.len(), 3, "{}", show(&events));
    let updated = for_subject(changes, "B");
    assert_eq!(updated.event.event_type, "items.updated");
    assert_eq!(updated.event.data["origin"], "capture");
    assert_eq!(updated.event.data["key"], json!({"sku": "B"}));
    assert_eq!(updated.event.data["before"], record(&first[1]));
    assert_eq!(updated.event.data["after"], record(&second[1]));
    assert_eq!(updated.event.data["changed"], json!(["price"]));
    let created = for_subject(changes, "E%2F1%20%C3%BC");
    assert_eq!(created.event.event_type, "items.created");
    assert_eq!(created.event.data["key"], json!({"sku": "E/1 ü"}));
    assert_eq!(created.event.data["before"], Json::Null);
    assert_eq!(created.event.data["after"], record(&second[3]));
    let deleted = for_subject(changes, "C");
    assert_eq!(deleted.event.event_type, "items.deleted");
    assert_eq!(deleted.event.data["key"], json!({"sku": "C"}));
    assert_eq!(deleted.event.data["before"], record(&first[2]));
    assert_eq!(deleted.event.data["after"], Json::Null);
    // AND the API serves the new export
    assert_eq!(bridge.list("/v1/items").await, records(&second));
    assert_eq!(bridge.get("/v1/items/C").await.status(), 404);

    // WHEN the same content is dropped again under a new name
    bridge.drop_export("ITEMS_003.csv", &csv(&second));
    let status = bridge
        .wait_export("items", "seen ITEMS_003.csv", |s| {
            s["export"]["last_seen"]["name"] == "ITEMS_003.csv"
                && matches!(s["export"]["state"].as_str(), Some("unchanged" | "applied"))
        })
        .await;

    // THEN nothing is emitted: the content was applied already
    assert_eq!(
        status["export"]["last_applied"]["file"], "ITEMS_002.csv",
        "{status:#}"
    );
    let events = bridge.events().await;
    assert_eq!(events.len(), 7, "{}", show(&events));
    assert_eq!(bridge.list("/v1/items").await, records(&second));

    // WHEN a later export brings the deleted key back
    let mut third = second.clone();
    third.push(row("C", "Clamp", "4.75", 7));
    bridge.drop_export("ITEMS_004.csv", &csv(&third));
    bridge.wait_applied("items", "ITEMS_004.csv").await;

    // THEN it is created afresh, under a new event id
    let events = bridge.wait_events("a re-creation", |e| e.len() >= 8).await;
    assert_eq!(events.len(), 8, "{}", show(&events));
    let back = &events[7];
    assert_eq!(back.event.event_type, "items.created");
    assert_eq!(back.event.subject, "C");
    assert_eq!(back.event.data["before"], Json::Null);
    assert_eq!(back.event.data["after"], record(&third[4]));
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids.len(), 8, "event ids repeat:\n{}", show(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_being_written_is_not_read_early() {
    let source = "completion = \"stable\"\nstable_ms = 500\npoll_interval_ms = 100\n";
    // A read of the half-written file would be applied with deletes, not held: the guard
    // must not be what saves this test.
    let bridge = FilesBridge::start(source, &items("max_delete_share = 1.0"), Auth::Off).await;

    // GIVEN 50 items applied
    let first = numbered(50);
    bridge.drop_export("ITEMS_001.csv", &csv(&first));
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    bridge.wait_events("50 snapshots", |e| e.len() >= 50).await;

    // WHEN the next export (the same 50 and 30 more) is written in place, in pieces cut
    // mid-line, over about 1.5 s
    let second = numbered(80);
    let bytes = csv(&second);
    let path = bridge.exports().join("ITEMS_002.csv");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&path).expect("create export");
            for piece in bytes.chunks(bytes.len().div_ceil(15)) {
                file.write_all(piece).expect("write export");
                file.flush().expect("flush export");
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(file);
            done.store(true, Ordering::SeqCst);
        })
    };

    // THEN while it is written it is only ever waiting
    let mut seen_waiting = false;
    let mut states = BTreeSet::new();
    while !done.load(Ordering::SeqCst) {
        let status = bridge.export_status("items").await;
        // Read after the status: if the writer was not done then, it was not done when
        // the status was taken.
        let writing = !done.load(Ordering::SeqCst);
        let export = &status["export"];
        if writing {
            assert_ne!(
                export["last_applied"]["file"], "ITEMS_002.csv",
                "applied while being written: {status:#}"
            );
            assert!(
                export["rejected"].is_null() && export["held"].is_null(),
                "{status:#}"
            );
        }
        seen_waiting |= export["waiting"].as_array().is_some_and(|w| {
            w.iter()
                .any(|r| r.as_str().is_some_and(|r| r.starts_with("ITEMS_002.csv")))
        });
        if let Some(s) = export["state"].as_str() {
            states.insert(s.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.join().expect("writer");
    assert!(
        seen_waiting,
        "the export was never listed as waiting; states seen: {states:?}"
    );

    // AND once it is complete, its final content is what is applied
    let status = bridge.wait_applied("items", "ITEMS_002.csv").await;
    let applied = &status["export"]["last_applied"];
    assert_eq!(applied["records"], 80, "{status:#}");
    assert_eq!(applied["created"], 30, "{status:#}");
    assert_eq!(applied["deleted"], 0, "{status:#}");
    assert_eq!(applied["quarantined"], 0, "{status:#}");
    assert_eq!(status["export"]["quarantined_total"], 0, "{status:#}");
    assert!(
        !states.contains("rejected") && !states.contains("held"),
        "{states:?}"
    );
    let events = bridge.wait_events("30 creations", |e| e.len() >= 80).await;
    assert_eq!(events.len(), 80, "{}", show(&events));
    assert!(
        of_type(&events, "items.deleted").is_empty(),
        "{}",
        show(&events)
    );
    assert!(
        of_type(&events, "items.updated").is_empty(),
        "{}",
        show(&events)
    );
    assert_eq!(of_type(&events, "items.created").len(), 30);
    assert!(bridge.quarantine("items").await.is_empty());
    assert_eq!(
        bridge.all_pages("/v1/items?limit=30").await,
        records(&second)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_completion_waits_for_the_marker() {
    let source = "completion = \"marker\"\npoll_interval_ms = 100\n";
    let bridge = FilesBridge::start(source, &items(""), Auth::Off).await;

    // GIVEN an export without its marker
    let rows = numbered(3);
    bridge.drop_export("ITEMS_001.csv", &csv(&rows));

    // THEN it is listed as waiting for the marker, and nothing is applied
    let status = bridge
        .wait_export("items", "waiting for a marker", |s| {
            s["export"]["state"] == "waiting"
                && s["export"]["waiting"][0]
                    .as_str()
                    .is_some_and(|w| w.contains("ITEMS_001.csv.done"))
        })
        .await;
    assert!(status["export"]["last_applied"].is_null(), "{status:#}");
    // Several more listings come and go; still nothing.
    bridge.wait_cycles("items", 3).await;
    assert!(bridge.events().await.is_empty());
    assert!(bridge.list("/v1/items").await.is_empty());
    assert_eq!(
        bridge.export_status("items").await["export"]["state"],
        "waiting"
    );

    // WHEN the marker (by stem) appears
    bridge.drop_export("ITEMS_001.done", b"");

    // THEN the export is applied
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    let events = bridge
        .wait_events("three snapshots", |e| e.len() >= 3)
        .await;
    assert_eq!(events.len(), 3, "{}", show(&events));
    assert_eq!(bridge.list("/v1/items").await, records(&rows));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_export_is_held_until_approved() {
    let bridge = FilesBridge::start(RENAME, &items(""), Auth::Off).await;

    // GIVEN 20 items applied
    let full = numbered(20);
    bridge.drop_export("ITEMS_001.csv", &csv(&full));
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    bridge.wait_events("20 snapshots", |e| e.len() >= 20).await;
    // Nothing is held yet: an approval has nothing to approve.
    let resp = bridge.approve("items", &sha256_hex(&csv(&full))).await;
    assert_eq!(resp.status(), 409);

    // WHEN an export cut short after 5 items arrives (75% deletes, above 20%)
    let truncated = csv(&full[..5]);
    let sha = sha256_hex(&truncated);
    bridge.drop_export("ITEMS_002.csv", &truncated);

    // THEN it is held with the numbers an operator needs, and nothing is applied
    let status = bridge
        .wait_export("items", "held", |s| s["export"]["state"] == "held")
        .await;
    let held = &status["export"]["held"];
    assert_eq!(held["file"], "ITEMS_002.csv", "{status:#}");
    assert_eq!(held["sha256"], sha.as_str(), "{status:#}");
    assert_eq!(held["deletes"], 15, "{status:#}");
    assert_eq!(held["live_records"], 20, "{status:#}");
    assert_eq!(held["limit"], 0.2, "{status:#}");
    assert_eq!(status["export"]["last_applied"]["file"], "ITEMS_001.csv");
    assert_eq!(bridge.all_pages("/v1/items?limit=7").await, records(&full));
    let events = bridge.events().await;
    assert_eq!(events.len(), 20, "{}", show(&events));

    // WHEN an operator approves another file's hash
    let resp = bridge.approve("items", &sha256_hex(&csv(&full))).await;
    // THEN that is a conflict, and the export stays held
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let resp = bridge.approve("items", &"0".repeat(64)).await;
    assert_eq!(resp.status(), 409);
    let status = bridge.export_status("items").await;
    assert_eq!(status["export"]["state"], "held", "{status:#}");
    assert_eq!(bridge.events().await.len(), 20);

    // WHEN the held hash is approved
    let resp = bridge.approve("items", &sha).await;
    assert_eq!(resp.status(), 202);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body["sha256"], sha.as_str());

    // THEN it is applied, deletes included
    let status = bridge.wait_applied("items", "ITEMS_002.csv").await;
    assert_eq!(
        status["export"]["last_applied"]["deleted"], 15,
        "{status:#}"
    );
    assert!(status["export"]["held"].is_null(), "{status:#}");
    let events = bridge.wait_events("15 deletes", |e| e.len() >= 35).await;
    assert_eq!(events.len(), 35, "{}", show(&events));
    let deleted: BTreeSet<&str> = of_type(&events, "items.deleted")
        .iter()
        .map(|e| e.event.subject.as_str())
        .collect();
    let expected: BTreeSet<&str> = full[5..].iter().map(|r| r.0.as_str()).collect();
    assert_eq!(deleted, expected);
    assert_eq!(bridge.list("/v1/items").await, records(&full[..5]));
    // Nothing is held any more.
    assert_eq!(bridge.approve("items", &sha).await.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_export_is_superseded_by_a_sane_newer_one() {
    let bridge = FilesBridge::start(RENAME, &items(""), Auth::Off).await;

    // GIVEN 20 items applied and a truncated export held
    let full = numbered(20);
    bridge.drop_export("ITEMS_001.csv", &csv(&full));
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    bridge.wait_events("20 snapshots", |e| e.len() >= 20).await;
    let truncated = csv(&full[..5]);
    bridge.drop_export("ITEMS_002.csv", &truncated);
    bridge
        .wait_export("items", "held", |s| s["export"]["state"] == "held")
        .await;

    // WHEN a complete export with one change follows
    let mut next = full.clone();
    next[2].2 = "99.99".to_owned();
    bridge.drop_export("ITEMS_003.csv", &csv(&next));

    // THEN it is applied: one update, no deletes from the held file
    let status = bridge.wait_applied("items", "ITEMS_003.csv").await;
    assert!(status["export"]["held"].is_null(), "{status:#}");
    let applied = &status["export"]["last_applied"];
    assert_eq!(
        (&applied["updated"], &applied["deleted"]),
        (&json!(1), &json!(0))
    );
    let events = bridge.wait_events("one update", |e| e.len() >= 21).await;
    assert_eq!(events.len(), 21, "{}", show(&events));
    assert_eq!(events[20].event.event_type, "items.updated");
    assert_eq!(events[20].event.subject, "S003");
    assert_eq!(bridge.all_pages("/v1/items?limit=7").await, records(&next));
    // AND the superseded export can no longer be approved
    let resp = bridge.approve("items", &sha256_hex(&truncated)).await;
    assert_eq!(resp.status(), 409);
    // AND it stays superseded: later cycles emit nothing more
    bridge.wait_cycles("items", 3).await;
    assert_eq!(bridge.events().await.len(), 21);
    assert_eq!(
        bridge.export_status("items").await["export"]["state"],
        "applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_quarantined_with_their_line_numbers() {
    let bridge = FilesBridge::start(RENAME, &items("max_bad_row_share = 0.3"), Auth::Off).await;

    // GIVEN a UTF-8 export with a byte-order mark and a quoted line break early on (so lines
    // and records differ), a bad decimal on line 7, a short record on line 9 and a repeated key on line 11
    let text = "\u{FEFF}SKU,NAME,PRICE,QTY\r\n\
                A1,\"two\r\nlines\",1.00,1\r\n\
                A2,plain,2.00,2\r\n\
                A3,plain,3.00,3\r\n\
                A4,\"x, y\",4.00,4\r\n\
                A5,plain,12x50,5\r\n\
                A6,plain,6.00,6\r\n\
                A7,plain,7.00\r\n\
                A8,plain,8.00,8\r\n\
                A2,again,9.00,9\r\n\
                A9,plain,9.00,9\r\n\
                B1,plain,10.00,10\r\n\
                B2,plain,11.00,11\r\n";
    bridge.drop_export("ITEMS_001.csv", text.as_bytes());

    // WHEN it is applied
    let status = bridge.wait_applied("items", "ITEMS_001.csv").await;

    // THEN the good records are served and the bad ones set aside, by line
    let applied = &status["export"]["last_applied"];
    assert_eq!(applied["records"], 12, "{status:#}");
    assert_eq!(applied["quarantined"], 3, "{status:#}");
    assert_eq!(status["export"]["quarantined_total"], 3, "{status:#}");
    let served = bridge.list("/v1/items").await;
    let skus: Vec<&str> = served.iter().map(|r| r["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, ["A1", "A2", "A3", "A4", "A6", "A8", "A9", "B1", "B2"]);
    assert_eq!(served[0]["name"], "two\r\nlines");
    assert_eq!(served[1]["name"], "plain", "the first record of a key wins");
    assert_eq!(bridge.events().await.len(), 9);
    let mut rows = bridge.quarantine("items").await;
    rows.sort_by_key(|r| r["position"].as_u64());
    let positions: Vec<u64> = rows
        .iter()
        .map(|r| r["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [7, 9, 11], "{rows:#?}");
    for r in &rows {
        assert_eq!(r["file"], "ITEMS_001.csv", "{r}");
        assert!(r["at"].is_string(), "{r}");
    }
    let reason = |i: usize| rows[i]["reason"].as_str().unwrap().to_owned();
    assert!(reason(0).contains("PRICE"), "{}", reason(0));
    assert!(
        !reason(0).contains("12x50"),
        "a reason repeats the bad value: {}",
        reason(0)
    );
    assert!(
        rows[0]["raw"].as_str().unwrap().contains("12x50"),
        "{}",
        rows[0]
    );
    assert!(reason(1).contains("fields"), "{}", reason(1));
    assert!(!reason(1).contains("7.00"), "{}", reason(1));
    assert!(reason(2).contains("duplicate"), "{}", reason(2));
    assert!(!reason(2).contains("again"), "{}", reason(2));

    // WHEN the next export has too many bad records (2 of 4), though its good ones change
    // data
    let text2 = "SKU,NAME,PRICE,QTY\r\n\
                 A1,changed,1.50,1\r\n\
                 A2,plain,abc,2\r\n\
                 A3,plain,3.00,x\r\n\
                 A4,plain,4.00,4\r\n";
    bridge.drop_export("ITEMS_002.csv", text2.as_bytes());

    // THEN it is rejected whole: nothing applied, nothing emitted
    let status = bridge
        .wait_export("items", "rejected", |s| s["export"]["state"] == "rejected")
        .await;
    let rejected = &status["export"]["rejected"];
    assert_eq!(rejected["file"], "ITEMS_002.csv", "{status:#}");
    assert_eq!(rejected["sha256"], sha256_hex(text2.as_bytes()).as_str());
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("max_bad_row_share"),
        "{status:#}"
    );
    assert_eq!(status["export"]["last_applied"]["file"], "ITEMS_001.csv");
    assert_eq!(bridge.list("/v1/items").await, served);
    assert_eq!(bridge.events().await.len(), 9);

    // WHEN an export that does not fit the adapter follows (no PRICE column)
    bridge.drop_export("ITEMS_003.csv", b"SKU,NAME,QTY\r\nA1,x,1\r\n");
    // THEN it is rejected too, naming the column
    let status = bridge
        .wait_export("items", "rejected for layout", |s| {
            s["export"]["state"] == "rejected" && s["export"]["rejected"]["file"] == "ITEMS_003.csv"
        })
        .await;
    assert!(
        status["export"]["rejected"]["reason"]
            .as_str()
            .unwrap()
            .contains("PRICE"),
        "{status:#}"
    );
    assert_eq!(bridge.list("/v1/items").await, served);
    assert_eq!(bridge.events().await.len(), 9);
}

/// Names in `dir` (not hidden).
fn names_in(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The archive as original name -> archived name (`<stamp>_<original>`).
fn archived(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = names_in(dir)
        .into_iter()
        .map(|n| {
            let (_, original) = n
                .split_once('_')
                .unwrap_or_else(|| panic!("archived name {n}"));
            (original.to_owned(), n.clone())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_exports_are_archived_and_pruned() {
    let source = "completion = \"marker\"\npoll_interval_ms = 100\n\
                  archive_dir = \"archive\"\narchive_keep = 2\n";
    let bridge = FilesBridge::start(source, &items("max_delete_share = 1.0"), Auth::Off).await;
    let archive = bridge.root().join("archive");

    let mut written = Vec::new();
    for n in 1..=5usize {
        // GIVEN export n and its marker (the fifth repeats the fourth's content)
        let name = format!("ITEMS_00{n}.csv");
        let content = csv(&numbered(n.min(4) * 3));
        bridge.drop_export(&name, &content);
        bridge.drop_export(&format!("{name}.done"), b"");
        written.push((name.clone(), content));

        // WHEN it has been processed
        bridge
            .wait_export("items", &format!("done with {name}"), |s| {
                s["export"]["last_seen"]["name"] == name.as_str()
                    && matches!(s["export"]["state"].as_str(), Some("applied" | "unchanged"))
            })
            .await;

        // THEN it and its marker leave the export folder for the archive, which keeps the
        // newest two exports with their markers
        let exports = bridge.exports();
        super::capture_harness::eventually("the export folder to be emptied", || {
            let left = names_in(&exports);
            async move {
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("left: {left:?}"))
                }
            }
        })
        .await;
        let kept = archived(&archive);
        let originals: Vec<&str> = kept.iter().map(|(o, _)| o.as_str()).collect();
        let mut expected: Vec<String> = written[written.len().saturating_sub(2)..]
            .iter()
            .flat_map(|(name, _)| [name.clone(), format!("{name}.done")])
            .collect();
        expected.sort();
        assert_eq!(originals, expected, "after {name}: {kept:?}");
        for (original, archived_name) in &kept {
            if let Some((_, content)) = written.iter().find(|(w, _)| w == original) {
                let got = std::fs::read(archive.join(archived_name)).expect("archived file");
                assert_eq!(
                    &got, content,
                    "{archived_name} is not {original} as written"
                );
            }
        }
    }

    // AND the applied state is the last export's, however it was archived
    assert_eq!(
        bridge.export_status("items").await["export"]["last_applied"]["file"],
        "ITEMS_004.csv"
    );
    assert_eq!(
        bridge.all_pages("/v1/items?limit=5").await,
        records(&numbered(12))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_repeats_an_applied_export_nor_applies_a_held_one() {
    let mut bridge = FilesBridge::start(RENAME, &items(""), Auth::Off).await;

    // GIVEN an applied export, still in the folder (no archive)
    let full = numbered(10);
    bridge.drop_export("ITEMS_001.csv", &csv(&full));
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    bridge.wait_events("10 snapshots", |e| e.len() >= 10).await;

    // WHEN the bridge restarts
    bridge.restart().await;

    // THEN the export is recognised as applied: no second snapshot
    bridge.wait_cycles("items", 3).await;
    let status = bridge.export_status("items").await;
    assert!(
        matches!(
            status["export"]["state"].as_str(),
            Some("applied" | "unchanged")
        ),
        "{status:#}"
    );
    assert_eq!(bridge.events().await.len(), 10);
    assert_eq!(bridge.list("/v1/items").await, records(&full));

    // WHEN a truncated export is held, and the bridge restarts
    let truncated = csv(&full[..2]);
    bridge.drop_export("ITEMS_002.csv", &truncated);
    bridge
        .wait_export("items", "held", |s| s["export"]["state"] == "held")
        .await;
    bridge.restart().await;

    // THEN it is held again, not applied
    let status = bridge
        .wait_export("items", "held after the restart", |s| {
            s["export"]["state"] == "held"
        })
        .await;
    assert_eq!(
        status["export"]["held"]["sha256"],
        sha256_hex(&truncated).as_str()
    );
    bridge.wait_cycles("items", 3).await;
    assert_eq!(bridge.events().await.len(), 10);
    assert_eq!(bridge.list("/v1/items").await, records(&full));

    // AND approving it after the restart applies it
    assert_eq!(
        bridge
            .approve("items", &sha256_hex(&truncated))
            .await
            .status(),
        202
    );
    bridge.wait_applied("items", "ITEMS_002.csv").await;
    let events = bridge.wait_events("8 deletes", |e| e.len() >= 18).await;
    assert_eq!(
        of_type(&events, "items.deleted").len(),
        8,
        "{}",
        show(&events)
    );
    assert_gap_free("items", &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_export_removed_from_the_folder_is_no_longer_held() {
    let source = format!("{RENAME}archive_dir = \"archive\"\n");
    let bridge = FilesBridge::start(&source, &items(""), Auth::Off).await;

    // GIVEN an applied export (archived since) and a truncated one held
    let full = numbered(10);
    bridge.drop_export("ITEMS_001.csv", &csv(&full));
    bridge.wait_applied("items", "ITEMS_001.csv").await;
    let truncated = csv(&full[..2]);
    bridge.drop_export("ITEMS_002.csv", &truncated);
    bridge
        .wait_export("items", "held", |s| s["export"]["state"] == "held")
        .await;

    // WHEN the operator removes the truncated file instead of approving it
    std::fs::remove_file(bridge.exports().join("ITEMS_002.csv")).expect("remove");

    // THEN nothing is held any more, and there is nothing to approve
    let status = bridge
        .wait_export("items", "no longer held", |s| {
            s["export"]["state"] != "held"
        })
        .await;
    bridge.wait_cycles("items", 2).await;
    let status_now = bridge.export_status("items").await;
    assert!(
        status_now["export"]["held"].is_null(),
        "the status still shows a held export that is gone: {status_now:#}\n(first seen: {status:#})"
    );
    let resp = bridge.approve("items", &sha256_hex(&truncated)).await;
    assert_eq!(resp.status(), 409, "a removed export can be approved");
    assert_eq!(bridge.events().await.len(), 10);
}
