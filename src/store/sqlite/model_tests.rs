//! Model-based test of the outbox and key state: random sequences of commits (some of them
//! refused midway), reads and reopenings run against [`SqliteStore`] and against a plain
//! in-memory model (a `Vec` of events, a `BTreeMap` of key state); every answer must match,
//! and the outbox must stay gap-free from 1.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::SqliteStore;
use crate::model::{ChangeOp, NewEvent, StoredEvent, event_type};
use crate::store::{
    Appended, Commit, EventFilter, EventPage, KeyRecord, KeyState, StateChange, Store, StoreError,
};

const RESOURCES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Change {
    Put {
        key: Vec<u8>,
        hash: u8,
        version: u64,
        record: u8,
    },
    Remove {
        key: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Commit {
        resource: usize,
        /// (op, nanoseconds of the event time)
        events: Vec<(usize, u32)>,
        state: Vec<Change>,
        checkpoint: Option<u16>,
        /// Where to insert a Put the schema refuses, making the whole commit fail.
        refused_at: Option<usize>,
    },
    Events {
        /// Taken modulo (head + 3), so reads land around the actual outbox.
        after: u64,
        limit: usize,
        resources: Vec<usize>,
        types: Vec<(usize, usize)>,
    },
    KeyPage {
        resource: usize,
        after: Option<Vec<u8>>,
        limit: usize,
    },
    KeyRecords {
        resource: usize,
        keys: Vec<Vec<u8>>,
    },
    KeyCount {
        resource: usize,
    },
    Checkpoint {
        resource: usize,
    },
    LastSeq,
    Reopen,
}

/// Few, short keys with the interesting bytes, so puts collide and order matters.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0xff)],
        0..3,
    )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (key(), any::<u8>(), 0..5u64, any::<u8>()).prop_map(|(key, hash, version, record)| {
            Change::Put { key, hash, version, record }
        }),
        1 => key().prop_map(|key| Change::Remove { key }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let resource = 0..RESOURCES.len();
    prop_oneof![
        6 => (
            resource.clone(),
            prop::collection::vec((0..ChangeOp::ALL.len(), 0..1_000_000_000u32), 0..5),
            prop::collection::vec(change(), 0..6),
            prop::option::of(any::<u16>()),
            prop::option::weighted(0.15, 0..6usize),
        )
            .prop_map(|(resource, events, state, checkpoint, refused_at)| Op::Commit {
                resource,
                events,
                state,
                checkpoint,
                refused_at,
            }),
        4 => (
            any::<u64>(),
            prop_oneof![0..8usize, Just(usize::MAX)],
            prop::collection::vec(resource.clone(), 0..3),
            prop::collection::vec((0..RESOURCES.len(), 0..ChangeOp::ALL.len()), 0..3),
        )
            .prop_map(|(after, limit, resources, types)| Op::Events {
                after,
                limit,
                resources,
                types,
            }),
        2 => (resource.clone(), prop::option::of(key()), 0..5usize)
            .prop_map(|(resource, after, limit)| Op::KeyPage { resource, after, limit }),
        2 => (resource.clone(), prop::collection::vec(key(), 0..5))
            .prop_map(|(resource, keys)| Op::KeyRecords { resource, keys }),
        1 => resource.clone().prop_map(|resource| Op::KeyCount { resource }),
        1 => resource.prop_map(|resource| Op::Checkpoint { resource }),
        1 => Just(Op::LastSeq),
        1 => Just(Op::Reopen),
    ]
}

/// What the store should hold.
#[derive(Default)]
struct Model {
    outbox: Vec<StoredEvent>,
    keys: BTreeMap<(String, Vec<u8>), KeyRecord>,
    checkpoints: HashMap<String, Value>,
}

impl Model {
    fn head(&self) -> u64 {
        self.outbox.len() as u64
    }

    fn commit(&mut self, commit: &Commit) -> Option<Appended> {
        let first_seq = self.head() + 1;
        for event in &commit.events {
            let seq = self.head() + 1;
            self.outbox.push(StoredEvent {
                seq,
                event: event.clone(),
            });
        }
        if let Some(checkpoint) = &commit.checkpoint {
            self.checkpoints
                .insert(commit.resource.clone(), checkpoint.clone());
        }
        for change in &commit.state {
            match change {
                StateChange::Put { state, record } => {
                    self.keys.insert(
                        (commit.resource.clone(), state.key.clone()),
                        KeyRecord {
                            state: state.clone(),
                            record: record.clone(),
                        },
                    );
                }
                StateChange::Remove { key } => {
                    self.keys.remove(&(commit.resource.clone(), key.clone()));
                }
            }
        }
        (!commit.events.is_empty()).then(|| Appended {
            first_seq,
            last_seq: self.head(),
        })
    }

    fn events(&self, after: u64, limit: usize, filter: &EventFilter) -> EventPage {
        let head = self.head();
        if limit == 0 || head <= after {
            return EventPage {
                events: vec![],
                next_after: after,
            };
        }
        let matches = |e: &&StoredEvent| {
            (filter.resources.is_empty() || filter.resources.contains(&e.event.resource))
                && (filter.types.is_empty() || filter.types.contains(&e.event.event_type))
        };
        let events: Vec<StoredEvent> = self
            .outbox
            .iter()
            .filter(|e| e.seq > after)
            .filter(matches)
            .take(limit)
            .cloned()
            .collect();
        let next_after = match events.last() {
            Some(last) if events.len() == limit => last.seq,
            _ => head,
        };
        EventPage { events, next_after }
    }

    fn key_page(&self, resource: &str, after: Option<&[u8]>, limit: usize) -> Vec<KeyState> {
        self.keys
            .iter()
            .filter(|((r, k), _)| r == resource && after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .map(|(_, v)| v.state.clone())
            .collect()
    }
}

fn build_commit(
    n: &mut u64,
    resource: &str,
    events: &[(usize, u32)],
    state: &[Change],
    checkpoint: Option<u16>,
) -> Commit {
    Commit {
        resource: resource.into(),
        events: events
            .iter()
            .map(|&(op, nanos)| {
                *n += 1;
                NewEvent {
                    id: format!("e{n}"),
                    resource: resource.into(),
                    source: format!("/sources/test/{resource}"),
                    event_type: event_type(resource, ChangeOp::ALL[op]),
                    subject: format!("S{n}"),
                    time: DateTime::from_timestamp(1_700_000_000 + *n as i64, nanos).unwrap(),
                    data: json!({"n": *n, "op": ChangeOp::ALL[op].as_str(), "s": "ä\"\\"}),
                }
            })
            .collect(),
        state: state
            .iter()
            .map(|c| match c {
                Change::Put {
                    key,
                    hash,
                    version,
                    record,
                } => StateChange::Put {
                    state: KeyState {
                        key: key.clone(),
                        hash: [*hash; 16],
                        version: *version,
                    },
                    record: json!({"r": record}).to_string(),
                },
                Change::Remove { key } => StateChange::Remove { key: key.clone() },
            })
            .collect(),
        checkpoint: checkpoint.map(|c| json!({"cursor": c})),
    }
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let mut model = Model::default();
    let mut n = 0;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Commit {
                resource,
                events,
                state,
                checkpoint,
                refused_at,
            } => {
                let mut commit =
                    build_commit(&mut n, RESOURCES[resource], &events, &state, checkpoint);
                if let Some(at) = refused_at {
                    let at = at.min(commit.state.len());
                    commit.state.insert(
                        at,
                        StateChange::Put {
                            state: KeyState {
                                key: vec![9],
                                hash: [9; 16],
                                version: 1,
                            },
                            record: "not json".into(),
                        },
                    );
                    let err = store.commit(commit).await.unwrap_err();
                    assert!(
                        matches!(err, StoreError::Rejected(_)),
                        "step {step}: {err:?}"
                    );
                } else {
                    let expected = model.commit(&commit);
                    let got = store.commit(commit).await.unwrap();
                    assert_eq!(got, expected, "step {step}: commit");
                }
            }
            Op::Events {
                after,
                limit,
                resources,
                types,
            } => {
                let after = after % (model.head() + 3);
                let filter = EventFilter {
                    resources: resources.iter().map(|&r| RESOURCES[r].into()).collect(),
                    types: types
                        .iter()
                        .map(|&(r, op)| event_type(RESOURCES[r], ChangeOp::ALL[op]))
                        .collect(),
                };
                let got = store.events(after, limit, &filter).await.unwrap();
                let expected = model.events(after, limit, &filter);
                assert_eq!(
                    got, expected,
                    "step {step}: events({after}, {limit}, {filter:?})"
                );
            }
            Op::KeyPage {
                resource,
                after,
                limit,
            } => {
                let r = RESOURCES[resource];
                let got = store.key_state_page(r, after.clone(), limit).await.unwrap();
                assert_eq!(
                    got,
                    model.key_page(r, after.as_deref(), limit),
                    "step {step}"
                );
            }
            Op::KeyRecords { resource, keys } => {
                let r = RESOURCES[resource];
                let expected: Vec<KeyRecord> = keys
                    .iter()
                    .filter_map(|k| model.keys.get(&(r.to_owned(), k.clone())).cloned())
                    .collect();
                let got = store.key_records(r, keys).await.unwrap();
                assert_eq!(got, expected, "step {step}");
            }
            Op::KeyCount { resource } => {
                let r = RESOURCES[resource];
                let expected = model.keys.keys().filter(|(res, _)| res == r).count() as u64;
                assert_eq!(store.key_count(r).await.unwrap(), expected, "step {step}");
            }
            Op::Checkpoint { resource } => {
                let r = RESOURCES[resource];
                let got = store.checkpoint(r).await.unwrap();
                assert_eq!(got.as_ref(), model.checkpoints.get(r), "step {step}");
            }
            Op::LastSeq => {
                assert_eq!(store.last_seq().await.unwrap(), model.head(), "step {step}");
            }
            Op::Reopen => {
                drop(store);
                store = SqliteStore::open(&path).unwrap();
            }
        }
    }
    // The whole outbox, gap-free from 1, equal to the model's.
    let all = store
        .events(0, usize::MAX, &EventFilter::default())
        .await
        .unwrap();
    let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=model.head()).collect::<Vec<_>>());
    assert_eq!(all.events, model.outbox);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn store_answers_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(ops));
    }
}
