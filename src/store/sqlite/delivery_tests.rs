//! The delivery tables' rules: the cursor fence, parking and releasing in record order, dead
//! letters and their replay, rewind, and the audit log.

use chrono::DateTime;
use serde_json::json;

use super::SqliteStore;
use crate::model::{ChangeOp, NewEvent, event_type};
use crate::store::{Commit, Control, DeliveryStore, Parked, Settlement, Store, SubscriptionState};

fn parked(seq: u64, record: &str, next_at_ms: Option<i64>) -> Parked {
    Parked {
        seq,
        record: record.into(),
        attempts: 1,
        next_at_ms,
        last_error: Some("HTTP 500".into()),
        dead: None,
    }
}

/// The seqs `due` hands out at `now`, in its order.
async fn due_seqs(store: &SqliteStore, now: i64) -> Vec<u64> {
    store
        .due("s", now, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event.seq)
        .collect()
}

async fn store_with_events(n: u64) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    let events = (1..=n)
        .map(|i| NewEvent {
            id: format!("e{i}"),
            resource: "items".into(),
            source: "/s".into(),
            event_type: event_type("items", ChangeOp::Updated),
            subject: format!("K{i}"),
            time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            data: json!({}),
        })
        .collect();
    store
        .commit(Commit {
            resource: "items".into(),
            events,
            ..Commit::default()
        })
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_subscription_keeps_its_cursor_across_opens() {
    let (_dir, store) = store_with_events(3).await;
    assert_eq!(store.open_subscription("s", 2).await.unwrap().cursor, 2);
    assert!(store.advance("s", 2, 3, vec![]).await.unwrap());
    let again = store.open_subscription("s", 0).await.unwrap();
    assert_eq!((again.cursor, again.state), (3, SubscriptionState::Active));
}

#[tokio::test]
async fn advance_is_fenced_by_the_expected_cursor() {
    let (_dir, store) = store_with_events(3).await;
    store.open_subscription("s", 0).await.unwrap();
    assert!(
        !store
            .advance("s", 1, 3, vec![parked(2, "r", Some(0))])
            .await
            .unwrap()
    );
    assert_eq!(
        store.delivery_counts("s").await.unwrap().pending,
        0,
        "nothing parked"
    );
    assert_eq!(store.subscription("s").await.unwrap().unwrap().cursor, 0);
}

#[tokio::test]
async fn settling_releases_the_next_waiting_event_of_the_record() {
    let (_dir, store) = store_with_events(4).await;
    store.open_subscription("s", 0).await.unwrap();
    let park = vec![
        parked(1, "r", Some(10)),
        parked(2, "r", None),
        parked(3, "other", Some(10)),
        parked(4, "r", None),
    ];
    assert!(store.advance("s", 0, 4, park).await.unwrap());
    let due = due_seqs(&store, 10).await;
    assert_eq!(due, vec![1, 3], "waiting events are not due");
    assert_eq!(store.next_due("s").await.unwrap(), Some(10));
    let cleared = store
        .settle("s", 20, vec![(1, Settlement::Delivered)])
        .await
        .unwrap();
    assert!(cleared.is_empty(), "r still has waiting events");
    let due = due_seqs(&store, 20).await;
    assert_eq!(due, vec![3, 2], "2 released (due at 20), not 4");
    let cleared = store
        .settle(
            "s",
            30,
            vec![
                (
                    2,
                    Settlement::Dead {
                        attempts: 3,
                        reason: "HTTP 400".into(),
                    },
                ),
                (
                    3,
                    Settlement::Retry {
                        attempts: 2,
                        next_at_ms: 99,
                        error: "HTTP 500".into(),
                    },
                ),
            ],
        )
        .await
        .unwrap();
    assert!(cleared.is_empty());
    let cleared = store
        .settle("s", 40, vec![(4, Settlement::Delivered)])
        .await
        .unwrap();
    assert_eq!(cleared, vec!["r".to_owned()]);
    let mut records = store.parked_records("s").await.unwrap();
    records.sort();
    assert_eq!(records, vec!["other".to_owned()]);
    let dead = store.dead_letters("s", 0, 10).await.unwrap();
    assert_eq!(
        (dead[0].seq, dead[0].attempts, dead[0].event_id.as_str()),
        (2, 3, "e2")
    );
}

#[tokio::test]
async fn an_event_parked_behind_one_settled_meanwhile_is_released() {
    let (_dir, store) = store_with_events(4).await;
    store.open_subscription("s", 0).await.unwrap();
    assert!(
        store
            .advance("s", 0, 2, vec![parked(1, "r", Some(10))])
            .await
            .unwrap()
    );
    // GIVEN r's parked event is settled (a stopped dispatcher's write landing late) ...
    let cleared = store
        .settle("s", 20, vec![(1, Settlement::Delivered)])
        .await
        .unwrap();
    assert_eq!(cleared, vec!["r".to_owned()]);
    // ... after the next dispatcher read r as blocked and parks its new events behind it
    let park = vec![parked(3, "r", None), parked(4, "r", None)];
    assert!(store.advance("s", 2, 4, park).await.unwrap());
    // THEN the first of them is due at once, the second still waits behind it
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    let due = due_seqs(&store, later).await;
    assert_eq!(
        due,
        vec![3],
        "nothing would ever release a waiter with no head"
    );
    store
        .settle("s", later, vec![(3, Settlement::Delivered)])
        .await
        .unwrap();
    let due = due_seqs(&store, later).await;
    assert_eq!(due, vec![4]);
}

#[tokio::test]
async fn replay_and_rewind_are_audited() {
    let (_dir, store) = store_with_events(5).await;
    store.open_subscription("s", 0).await.unwrap();
    let mut dead = parked(2, "r", None);
    dead.dead = Some("HTTP 400".into());
    let park = vec![dead, parked(4, "q", Some(0)), parked(5, "q", None)];
    assert!(store.advance("s", 0, 5, park).await.unwrap());

    assert_eq!(
        store
            .control(
                "s",
                "ops",
                Control::Replay {
                    seqs: Some(vec![9])
                },
                7
            )
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .control("s", "ops", Control::Replay { seqs: None }, 7)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.delivery_counts("s").await.unwrap().dead, 0);
    let due: Vec<(u64, u32)> = store
        .due("s", 7, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| (d.event.seq, d.attempts))
        .collect();
    assert_eq!(due, vec![(4, 1), (2, 0)], "replayed with a fresh schedule");

    assert_eq!(
        store
            .control("s", "ops", Control::Rewind { seq: 3 }, 8)
            .await
            .unwrap(),
        2,
        "4 and 5 dropped"
    );
    assert_eq!(store.subscription("s").await.unwrap().unwrap().cursor, 3);
    assert_eq!(
        store.delivery_counts("s").await.unwrap().pending,
        1,
        "2 stays parked"
    );

    let paused = Control::SetState {
        state: SubscriptionState::Paused,
        reason: Some("window".into()),
    };
    store.control("s", "alice", paused, 9).await.unwrap();
    let row = store.subscription("s").await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.reason.as_deref()),
        (SubscriptionState::Paused, Some("window"))
    );

    let log = store.audit_log(None, 10).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("alice", "pause"),
            ("ops", "rewind"),
            ("ops", "replay"),
            ("ops", "replay")
        ]
    );
    assert_eq!(
        log[1].detail,
        json!({"from": 5, "to": 3, "parked_dropped": 2, "dead_letters_dropped": 0})
    );
    assert_eq!(log[2].detail, json!({"seqs": [2]}));
    let older = store.audit_log(Some(log[1].id), 10).await.unwrap();
    assert_eq!(older.len(), 2);
    assert!(
        store
            .control("nope", "ops", Control::Rewind { seq: 0 }, 1)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn retention_removes_an_aged_prefix_but_nothing_a_subscription_needs() {
    let (_dir, store) = store_with_events(10).await;
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    assert_eq!(
        store.prune(0, 100).await.unwrap(),
        0,
        "nothing is old enough"
    );

    store.open_subscription("s", 0).await.unwrap();
    assert!(
        store
            .advance("s", 0, 6, vec![parked(3, "r", Some(0))])
            .await
            .unwrap()
    );
    assert_eq!(
        store.prune(later, 100).await.unwrap(),
        2,
        "only before the parked seq 3"
    );
    assert_eq!(store.pruned_through().await.unwrap(), 2);
    store
        .settle("s", 0, vec![(3, Settlement::Delivered)])
        .await
        .unwrap();
    assert_eq!(store.prune(later, 2).await.unwrap(), 2, "in chunks");
    assert_eq!(
        store.prune(later, 100).await.unwrap(),
        2,
        "up to the cursor"
    );
    assert_eq!(store.pruned_through().await.unwrap(), 6);

    // A reader behind the pruned prefix is told, not silently skipped ahead.
    let all = crate::store::EventFilter::default();
    assert!(matches!(
        store.events(5, 10, &all).await,
        Err(crate::store::StoreError::Expired {
            after: 5,
            oldest: 7
        })
    ));
    let page = store.events(6, 10, &all).await.unwrap();
    assert_eq!(page.events.first().map(|e| e.seq), Some(7));
    assert!(
        store
            .control("s", "ops", Control::Rewind { seq: 2 }, 0)
            .await
            .is_err()
    );
    // A new subscription's "beginning" is the oldest kept event.
    assert_eq!(store.open_subscription("t", 0).await.unwrap().cursor, 6);
    assert_eq!(store.prune(later, 100).await.unwrap(), 0, "t needs 7 on");
    // Forgetting the subscriptions (no longer configured) releases the rest.
    let names: Vec<String> = store
        .subscription_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["s", "t"]);
    assert_eq!(
        store.control("s", "cli", Control::Forget, 0).await.unwrap(),
        0
    );
    store.control("t", "cli", Control::Forget, 0).await.unwrap();
    assert!(store.subscription_rows().await.unwrap().is_empty());
    assert_eq!(store.prune(later, 100).await.unwrap(), 4);
    assert_eq!(store.audit_log(None, 1).await.unwrap()[0].action, "forget");

    // Numbers are never reused after pruning.
    let (_dir2, store2) = store_with_events(3).await;
    assert_eq!(store2.prune(later, 100).await.unwrap(), 3);
    assert_eq!(store2.last_seq().await.unwrap(), 3);
}
