//! The outbox table: appending a commit's events with consecutive sequence numbers, and
//! reading pages of it from one consistent snapshot.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Params, Statement, Transaction, params};

use super::{from_i64, sql_err, to_i64};
use crate::model::{NewEvent, StoredEvent};
use crate::store::{Appended, EventFilter, EventPage, StoreError};

/// The highest sequence number ever assigned. Kept in its own row rather than derived from
/// `max(seq)`, so that retention removing the whole outbox cannot make numbers be reused.
pub(super) fn head(conn: &Connection) -> Result<u64, StoreError> {
    let last: i64 = conn
        .prepare_cached("SELECT last_seq FROM outbox_head WHERE id = 0")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql_err)?;
    from_i64(last, "outbox head")
}

/// Every seq up to this was removed by retention (0 when nothing was).
pub(super) fn pruned_through(conn: &Connection) -> Result<u64, StoreError> {
    let pruned: i64 = conn
        .prepare_cached("SELECT pruned_through FROM outbox_head WHERE id = 0")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql_err)?;
    from_i64(pruned, "pruned_through")
}

/// Removes up to `max_rows` of the oldest events committed before `older_than_ms`, never one a
/// subscription still needs (at or after its cursor + 1, parked, or dead-lettered). Returns
/// how many were removed; the caller repeats while it gets `max_rows`.
pub(super) fn prune(
    tx: &Transaction<'_>,
    older_than_ms: i64,
    max_rows: usize,
) -> Result<u64, StoreError> {
    let aged: Option<i64> = tx
        .prepare_cached("SELECT max(last_seq) FROM outbox_commit WHERE committed_at_ms < ?1")
        .and_then(|mut stmt| stmt.query_row([older_than_ms], |row| row.get(0)))
        .map_err(sql_err)?;
    let Some(aged) = aged else { return Ok(0) };
    // What subscriptions still need: everything after the lowest cursor, and every parked
    // or dead-lettered event.
    let needed: Option<i64> = tx
        .prepare_cached(
            "SELECT min(s) FROM (
                 SELECT min(cursor) + 1 AS s FROM subscription
                 UNION ALL SELECT min(seq) FROM delivery_parked
                 UNION ALL SELECT min(seq) FROM dead_letter)",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql_err)?;
    let mut upto = needed.map_or(aged, |n| aged.min(n - 1));
    let from = to_i64(pruned_through(tx)?, "pruned_through")?;
    let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
    upto = upto.min(from.saturating_add(max_rows));
    if upto <= from {
        return Ok(0);
    }
    let removed = tx
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")
        .and_then(|mut stmt| stmt.execute([upto]))
        .map_err(sql_err)?;
    tx.prepare_cached("DELETE FROM outbox_commit WHERE last_seq <= ?1")
        .and_then(|mut stmt| stmt.execute([upto]))
        .map_err(sql_err)?;
    tx.prepare_cached("UPDATE outbox_head SET pruned_through = ?1 WHERE id = 0")
        .and_then(|mut stmt| stmt.execute([upto]))
        .map_err(sql_err)?;
    Ok(removed as u64)
}

/// Checks the head is not behind the outbox (which would make the next commit reuse seqs).
pub(super) fn check_head(conn: &Connection) -> Result<(), StoreError> {
    let head = head(conn)?;
    let max: i64 = conn
        .query_row("SELECT coalesce(max(seq), 0) FROM outbox", [], |row| {
            row.get(0)
        })
        .map_err(sql_err)?;
    if from_i64(max, "outbox seq")? > head {
        return Err(StoreError::Corrupt(format!(
            "outbox holds seq {max} beyond its recorded head {head}"
        )));
    }
    Ok(())
}

/// Appends `events` after the head, inside the caller's write transaction.
pub(super) fn append(
    tx: &Transaction<'_>,
    events: &[NewEvent],
) -> Result<Option<Appended>, StoreError> {
    if events.is_empty() {
        return Ok(None);
    }
    let first_seq = head(tx)? + 1;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO outbox (seq, id, resource, type, source, subject, time, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(sql_err)?;
    let mut seq = first_seq;
    for event in events {
        let data = serde_json::to_string(&event.data)
            .map_err(|e| StoreError::Corrupt(format!("event data does not serialise: {e}")))?;
        insert
            .execute(params![
                to_i64(seq, "seq")?,
                event.id,
                event.resource,
                event.event_type,
                event.source,
                event.subject,
                format_time(&event.time),
                data,
            ])
            .map_err(sql_err)?;
        seq += 1;
    }
    let last_seq = seq - 1;
    let last = to_i64(last_seq, "seq")?;
    tx.prepare_cached("UPDATE outbox_head SET last_seq = ?1 WHERE id = 0")
        .and_then(|mut stmt| stmt.execute([last]))
        .map_err(sql_err)?;
    tx.prepare_cached("INSERT INTO outbox_commit (last_seq, committed_at_ms) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute([last, chrono::Utc::now().timestamp_millis()]))
        .map_err(sql_err)?;
    Ok(Some(Appended {
        first_seq,
        last_seq,
    }))
}

/// Fixed width (nanoseconds, `Z`), so the text sorts like the time and round-trips exactly.
fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

const COLUMNS: &str = "seq, id, resource, type, source, subject, time, data";
const TYPE_FILTER: &str = "(?4 IS NULL OR type IN (SELECT value FROM json_each(?4)))";

/// One page of the outbox. Everything is read in one read transaction: the head read first
/// fixes the snapshot, so an event committed while we read is either entirely in it (and
/// `<= head`) or entirely after `next_after`; it can never be skipped.
pub(super) fn read_page(
    conn: &mut Connection,
    after: u64,
    limit: usize,
    filter: &EventFilter,
) -> Result<EventPage, StoreError> {
    let empty = EventPage {
        events: Vec::new(),
        next_after: after,
    };
    if limit == 0 {
        return Ok(empty);
    }
    let tx = conn.transaction().map_err(sql_err)?;
    let head = head(&tx)?;
    let pruned = pruned_through(&tx)?;
    if after < pruned {
        // Events after `after` were removed: reading on would silently skip them.
        return Err(StoreError::Expired {
            after,
            oldest: pruned + 1,
        });
    }
    if head <= after {
        return Ok(empty);
    }
    let (after_i, head_i) = (to_i64(after, "after")?, to_i64(head, "head")?);
    let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
    // `?4` is the type filter as a JSON array, or NULL for "any type".
    let types = if filter.types.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&filter.types).map_err(|e| StoreError::Io(e.to_string()))?)
    };

    let mut events = Vec::new();
    if filter.resources.is_empty() {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox
                 WHERE seq > ?1 AND seq <= ?2 AND {TYPE_FILTER} ORDER BY seq LIMIT ?3"
            ))
            .map_err(sql_err)?;
        collect(
            &mut stmt,
            params![after_i, head_i, limit_i, types],
            &mut events,
        )?;
    } else {
        // One index range scan per resource, each stopping at `limit`, merged by seq: an
        // `IN` list would make SQLite gather every match past `after` and sort them.
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox INDEXED BY outbox_by_resource
                 WHERE resource = ?5 AND seq > ?1 AND seq <= ?2 AND {TYPE_FILTER}
                 ORDER BY seq LIMIT ?3"
            ))
            .map_err(sql_err)?;
        let mut resources: Vec<&String> = filter.resources.iter().collect();
        resources.sort();
        resources.dedup();
        for resource in resources {
            collect(
                &mut stmt,
                params![after_i, head_i, limit_i, types, resource],
                &mut events,
            )?;
        }
        events.sort_by_key(|e| e.seq);
        events.truncate(limit);
    }
    tx.commit().map_err(sql_err)?;

    let next_after = match events.last() {
        Some(last) if events.len() == limit => last.seq,
        _ => head,
    };
    Ok(EventPage { events, next_after })
}

/// The event at `seq`, if the outbox holds it.
pub(super) fn read_one(conn: &Connection, seq: u64) -> Result<Option<StoredEvent>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM outbox WHERE seq = ?1"))
        .map_err(sql_err)?;
    let mut rows = stmt.query([to_i64(seq, "seq")?]).map_err(sql_err)?;
    match rows.next().map_err(sql_err)? {
        Some(row) => decode(row).map(Some),
        None => Ok(None),
    }
}

fn collect(
    stmt: &mut Statement<'_>,
    params: impl Params,
    out: &mut Vec<StoredEvent>,
) -> Result<(), StoreError> {
    let mut rows = stmt.query(params).map_err(sql_err)?;
    while let Some(row) = rows.next().map_err(sql_err)? {
        out.push(decode(row)?);
    }
    Ok(())
}

fn decode(row: &rusqlite::Row<'_>) -> Result<StoredEvent, StoreError> {
    let seq: i64 = row.get(0).map_err(sql_err)?;
    let time: String = row.get(6).map_err(sql_err)?;
    let data: String = row.get(7).map_err(sql_err)?;
    let time = DateTime::parse_from_rfc3339(&time)
        .map_err(|e| StoreError::Corrupt(format!("event {seq}: time {time:?}: {e}")))?
        .with_timezone(&Utc);
    let data = serde_json::from_str(&data)
        .map_err(|e| StoreError::Corrupt(format!("event {seq}: data is not JSON: {e}")))?;
    Ok(StoredEvent {
        seq: from_i64(seq, "seq")?,
        event: NewEvent {
            id: row.get(1).map_err(sql_err)?,
            resource: row.get(2).map_err(sql_err)?,
            event_type: row.get(3).map_err(sql_err)?,
            source: row.get(4).map_err(sql_err)?,
            subject: row.get(5).map_err(sql_err)?,
            time,
            data,
        },
    })
}
