//! The delivery tables (`subscription`, `delivery_parked`, `dead_letter`, `audit_log`): the
//! statements behind [`crate::store::DeliveryStore`], each run inside the caller's
//! transaction or on a reader connection.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{from_i64, outbox, sql_err, to_i64};
use crate::store::StoreError;
use crate::store::delivery::{
    AuditEntry, Control, DeadLetter, DeliveryCounts, DueEvent, Parked, Settlement, SubscriptionRow,
    SubscriptionState,
};

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    let row = conn
        .prepare_cached("SELECT cursor, state, reason FROM subscription WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([name], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql_err)?;
    row.map(|(cursor, state, reason)| {
        Ok(SubscriptionRow {
            name: name.to_owned(),
            cursor: from_i64(cursor, "cursor")?,
            state: SubscriptionState::parse(&state).ok_or_else(|| {
                StoreError::Corrupt(format!("subscription {name} has state {state:?}"))
            })?,
            reason,
        })
    })
    .transpose()
}

pub(super) fn all(conn: &Connection) -> Result<Vec<SubscriptionRow>, StoreError> {
    let names: Vec<String> = conn
        .prepare_cached("SELECT name FROM subscription ORDER BY name")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .map_err(sql_err)?;
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        rows.extend(get(conn, &name)?);
    }
    Ok(rows)
}

pub(super) fn open(
    tx: &Transaction<'_>,
    name: &str,
    start: u64,
) -> Result<SubscriptionRow, StoreError> {
    if let Some(row) = get(tx, name)? {
        return Ok(row);
    }
    // "The beginning" is the oldest event retention kept.
    let start = start.max(super::outbox::pruned_through(tx)?);
    let start_i = to_i64(start, "cursor")?;
    tx.prepare_cached(
        "INSERT INTO subscription (name, cursor, state, reason, updated_at)
         VALUES (?1, ?2, 'active', NULL, ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![name, start_i, now_text()]))
    .map_err(sql_err)?;
    Ok(SubscriptionRow {
        name: name.to_owned(),
        cursor: start,
        state: SubscriptionState::Active,
        reason: None,
    })
}

pub(super) fn advance(
    tx: &Transaction<'_>,
    name: &str,
    from: u64,
    to: u64,
    parked: &[Parked],
) -> Result<bool, StoreError> {
    let (from_i, to_i) = (to_i64(from, "cursor")?, to_i64(to, "cursor")?);
    let moved = tx
        .prepare_cached(
            "UPDATE subscription SET cursor = ?3, updated_at = ?4 WHERE name = ?1 AND cursor = ?2",
        )
        .and_then(|mut stmt| stmt.execute(params![name, from_i, to_i, now_text()]))
        .map_err(sql_err)?;
    if moved == 0 {
        return Ok(false);
    }
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO delivery_parked (subscription, seq, record, attempts, next_at_ms, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (subscription, seq) DO NOTHING",
        )
        .map_err(sql_err)?;
    let mut dead = tx
        .prepare_cached(
            "INSERT INTO dead_letter (subscription, seq, record, attempts, reason, failed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (subscription, seq) DO NOTHING",
        )
        .map_err(sql_err)?;
    for p in parked {
        if let Some(reason) = &p.dead {
            dead.execute(params![
                name,
                to_i64(p.seq, "seq")?,
                p.record,
                p.attempts,
                reason,
                now_text()
            ])
            .map_err(sql_err)?;
            continue;
        }
        insert
            .execute(params![
                name,
                to_i64(p.seq, "seq")?,
                p.record,
                p.attempts,
                p.next_at_ms,
                p.last_error
            ])
            .map_err(sql_err)?;
    }
    // An event parked to wait behind its record's earlier one must find it still parked. The
    // dispatcher decided from what it last read; if that event was settled since (a write of
    // a dispatcher that was stopped, landing late), nothing would ever release the waiter.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let waiting: std::collections::BTreeSet<&str> = parked
        .iter()
        .filter(|p| p.dead.is_none() && p.next_at_ms.is_none())
        .map(|p| p.record.as_str())
        .collect();
    for record in waiting {
        release_waiting_head(tx, name, record, now_ms)?;
    }
    Ok(true)
}

/// Makes a record's first parked event due when it is waiting: nothing ahead of it is parked
/// any more. Returns whether one was released. Keeps the invariant every release relies on:
/// a record's first parked event is never one that waits.
fn release_waiting_head(
    tx: &Transaction<'_>,
    name: &str,
    record: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let released = tx
        .prepare_cached(
            "UPDATE delivery_parked SET next_at_ms = ?3
             WHERE subscription = ?1 AND next_at_ms IS NULL AND seq = (
                 SELECT min(seq) FROM delivery_parked WHERE subscription = ?1 AND record = ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![name, record, now_ms]))
        .map_err(sql_err)?;
    Ok(released > 0)
}

pub(super) fn due(
    conn: &mut Connection,
    name: &str,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<DueEvent>, StoreError> {
    let tx = conn.transaction().map_err(sql_err)?;
    let rows: Vec<(i64, u32)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, attempts FROM delivery_parked
                 WHERE subscription = ?1 AND next_at_ms IS NOT NULL AND next_at_ms <= ?2
                 ORDER BY next_at_ms, seq LIMIT ?3",
            )
            .map_err(sql_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        stmt.query_map(params![name, now_ms, limit], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(sql_err)?
    };
    let mut due = Vec::with_capacity(rows.len());
    for (seq, attempts) in rows {
        let seq = from_i64(seq, "seq")?;
        let event = outbox::read_one(&tx, seq)?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "subscription {name} has parked event {seq}, which the outbox no longer holds"
            ))
        })?;
        due.push(DueEvent { event, attempts });
    }
    tx.commit().map_err(sql_err)?;
    Ok(due)
}

pub(super) fn next_due(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached(
        "SELECT min(next_at_ms) FROM delivery_parked WHERE subscription = ?1 AND next_at_ms IS NOT NULL",
    )
    .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
    .map_err(sql_err)
}

pub(super) fn parked_records(conn: &Connection, name: &str) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached("SELECT DISTINCT record FROM delivery_parked WHERE subscription = ?1")
        .and_then(|mut stmt| {
            stmt.query_map([name], |row| row.get(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(sql_err)
}

pub(super) fn settle(
    tx: &Transaction<'_>,
    name: &str,
    now_ms: i64,
    settled: &[(u64, Settlement)],
) -> Result<Vec<String>, StoreError> {
    let mut cleared = Vec::new();
    for (seq, settlement) in settled {
        let seq_i = to_i64(*seq, "seq")?;
        let row: Option<(String, Option<String>)> = tx
            .prepare_cached(
                "SELECT record, last_error FROM delivery_parked WHERE subscription = ?1 AND seq = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![name, seq_i], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(sql_err)?;
        // Gone meanwhile (an operator rewound past it): nothing to settle.
        let Some((record, _)) = row else { continue };
        match settlement {
            Settlement::Retry {
                attempts,
                next_at_ms,
                error,
            } => {
                tx.prepare_cached(
                    "UPDATE delivery_parked SET attempts = ?3, next_at_ms = ?4, last_error = ?5
                     WHERE subscription = ?1 AND seq = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![name, seq_i, attempts, next_at_ms, error])
                })
                .map_err(sql_err)?;
                continue;
            }
            Settlement::Dead { attempts, reason } => {
                tx.prepare_cached(
                    "INSERT INTO dead_letter (subscription, seq, record, attempts, reason, failed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (subscription, seq) DO UPDATE SET attempts = excluded.attempts,
                         reason = excluded.reason, failed_at = excluded.failed_at",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![name, seq_i, record, attempts, reason, now_text()])
                })
                .map_err(sql_err)?;
            }
            Settlement::Delivered => {}
        }
        tx.prepare_cached("DELETE FROM delivery_parked WHERE subscription = ?1 AND seq = ?2")
            .and_then(|mut stmt| stmt.execute(params![name, seq_i]))
            .map_err(sql_err)?;
        // Release the record's next waiting event, if any; else the record may be clear.
        if !release_waiting_head(tx, name, &record, now_ms)? {
            let left: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM delivery_parked WHERE subscription = ?1 AND record = ?2",
                )
                .and_then(|mut stmt| stmt.query_row(params![name, record], |row| row.get(0)))
                .map_err(sql_err)?;
            if left == 0 {
                cleared.push(record);
            }
        }
    }
    Ok(cleared)
}

pub(super) fn control(
    tx: &Transaction<'_>,
    name: &str,
    actor: &str,
    control: &Control,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let Some(row) = get(tx, name)? else {
        return Err(StoreError::Rejected(format!(
            "no subscription named {name}"
        )));
    };
    let (action, touched, detail) = match control {
        Control::SetState { state, reason } => {
            tx.prepare_cached(
                "UPDATE subscription SET state = ?2, reason = ?3, updated_at = ?4 WHERE name = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![name, state.as_str(), reason, now_text()]))
            .map_err(sql_err)?;
            let action = match state {
                SubscriptionState::Active => "resume",
                SubscriptionState::Paused => "pause",
                SubscriptionState::Disabled => "disable",
            };
            (
                action,
                0,
                serde_json::json!({"from": row.state.as_str(), "reason": reason}),
            )
        }
        Control::Rewind { seq } => {
            let pruned = super::outbox::pruned_through(tx)?;
            if *seq < pruned {
                return Err(StoreError::Expired {
                    after: *seq,
                    oldest: pruned + 1,
                });
            }
            let seq_i = to_i64(*seq, "seq")?;
            let dropped = tx
                .prepare_cached("DELETE FROM delivery_parked WHERE subscription = ?1 AND seq > ?2")
                .and_then(|mut stmt| stmt.execute(params![name, seq_i]))
                .map_err(sql_err)?;
            // Dead letters after `seq` are read again too (and dead-lettered again if they
            // still fail); kept, they would outlive their redelivery and a later replay would
            // send them after newer events of their record.
            let dead_dropped = tx
                .prepare_cached("DELETE FROM dead_letter WHERE subscription = ?1 AND seq > ?2")
                .and_then(|mut stmt| stmt.execute(params![name, seq_i]))
                .map_err(sql_err)?;
            tx.prepare_cached(
                "UPDATE subscription SET cursor = ?2, updated_at = ?3 WHERE name = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![name, seq_i, now_text()]))
            .map_err(sql_err)?;
            (
                "rewind",
                dropped as u64,
                serde_json::json!({
                    "from": row.cursor,
                    "to": seq,
                    "parked_dropped": dropped,
                    "dead_letters_dropped": dead_dropped,
                }),
            )
        }
        Control::Forget => {
            let mut held = 0;
            for table in ["delivery_parked", "dead_letter"] {
                held += tx
                    .execute(
                        &format!("DELETE FROM {table} WHERE subscription = ?1"),
                        [name],
                    )
                    .map_err(sql_err)?;
            }
            tx.prepare_cached("DELETE FROM subscription WHERE name = ?1")
                .and_then(|mut stmt| stmt.execute([name]))
                .map_err(sql_err)?;
            (
                "forget",
                held as u64,
                serde_json::json!({"cursor": row.cursor, "parked_and_dead_dropped": held}),
            )
        }
        Control::Replay { seqs } => {
            let chosen: Vec<(i64, String)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT seq, record FROM dead_letter WHERE subscription = ?1
                         AND (?2 IS NULL OR seq IN (SELECT value FROM json_each(?2)))
                         ORDER BY seq",
                    )
                    .map_err(sql_err)?;
                let list = seqs
                    .as_ref()
                    .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()));
                stmt.query_map(params![name, list], |row| Ok((row.get(0)?, row.get(1)?)))
                    .and_then(|rows| rows.collect::<Result<_, _>>())
                    .map_err(sql_err)?
            };
            for (seq, record) in &chosen {
                tx.prepare_cached(
                    "INSERT INTO delivery_parked (subscription, seq, record, attempts, next_at_ms, last_error)
                     VALUES (?1, ?2, ?3, 0, ?4, NULL)
                     ON CONFLICT (subscription, seq) DO UPDATE SET attempts = 0, next_at_ms = ?4",
                )
                .and_then(|mut stmt| stmt.execute(params![name, seq, record, now_ms]))
                .map_err(sql_err)?;
                tx.prepare_cached("DELETE FROM dead_letter WHERE subscription = ?1 AND seq = ?2")
                    .and_then(|mut stmt| stmt.execute(params![name, seq]))
                    .map_err(sql_err)?;
            }
            let replayed: Vec<i64> = chosen.iter().map(|(seq, _)| *seq).collect();
            (
                "replay",
                replayed.len() as u64,
                serde_json::json!({"seqs": replayed}),
            )
        }
    };
    tx.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, subscription, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            now_text(),
            actor,
            action,
            name,
            detail.to_string()
        ])
    })
    .map_err(sql_err)?;
    Ok(touched)
}

pub(super) fn dead_letters(
    conn: &mut Connection,
    name: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, StoreError> {
    let tx = conn.transaction().map_err(sql_err)?;
    let rows: Vec<(i64, u32, String, String)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, attempts, reason, failed_at FROM dead_letter
                 WHERE subscription = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(sql_err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = to_i64(after, "after")?;
        stmt.query_map(params![name, after, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .and_then(|rows| rows.collect::<Result<_, _>>())
        .map_err(sql_err)?
    };
    let mut out = Vec::with_capacity(rows.len());
    for (seq, attempts, reason, failed_at) in rows {
        let seq = from_i64(seq, "seq")?;
        let (event_type, subject, event_id) = match outbox::read_one(&tx, seq)? {
            Some(e) => (e.event.event_type, e.event.subject, e.event.id),
            None => Default::default(),
        };
        out.push(DeadLetter {
            seq,
            event_type,
            subject,
            event_id,
            attempts,
            reason,
            failed_at,
        });
    }
    tx.commit().map_err(sql_err)?;
    Ok(out)
}

pub(super) fn counts(conn: &Connection, name: &str) -> Result<DeliveryCounts, StoreError> {
    let (pending, oldest): (i64, Option<i64>) = conn
        .prepare_cached("SELECT count(*), min(seq) FROM delivery_parked WHERE subscription = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(sql_err)?;
    let dead: i64 = conn
        .prepare_cached("SELECT count(*) FROM dead_letter WHERE subscription = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)))
        .map_err(sql_err)?;
    Ok(DeliveryCounts {
        pending: from_i64(pending, "count")?,
        dead: from_i64(dead, "count")?,
        oldest_pending_seq: oldest.map(|s| from_i64(s, "seq")).transpose()?,
    })
}

pub(super) fn audit_log(
    conn: &Connection,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    let before = before.map(|b| to_i64(b, "before")).transpose()?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(i64, String, String, String, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT id, at, actor, action, subscription, detail FROM audit_log
             WHERE ?1 IS NULL OR id < ?1 ORDER BY id DESC LIMIT ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![before, limit], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()
        })
        .map_err(sql_err)?;
    rows.into_iter()
        .map(|(id, at, actor, action, subscription, detail)| {
            Ok(AuditEntry {
                id: from_i64(id, "audit id")?,
                at,
                actor,
                action,
                subscription,
                detail: serde_json::from_str(&detail)
                    .map_err(|e| StoreError::Corrupt(format!("audit entry {id}: {e}")))?,
            })
        })
        .collect()
}
