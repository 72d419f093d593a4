//! The change signals SQL Server offers, kept by SQLite triggers the harness installs:
//!
//! - **rowversion**: a database-wide counter (`__lb_state.dbts`, `@@DBTS`, starting at 2000);
//!   every INSERT or UPDATE of a table with a `ROWVERSION`/`TIMESTAMP` column stamps the row
//!   with the next value (8-byte big-endian BLOB). A test can reserve a value for a held
//!   "in-flight transaction" (`MIN_ACTIVE_ROWVERSION()` then returns it until released) and
//!   later commit a write stamped with exactly that value (`__lb_state.rv_override`).
//! - **change tracking**: per tracked table, a log `__lb_ct:<table>` of (`__seq`, `__version`,
//!   `__op` I/U/D, key columns) appended by triggers. A transaction's log rows get their
//!   version when it commits through the harness ([`before_commit`]): one version per
//!   committing transaction, like SQL Server. `CHANGETABLE(CHANGES ...)` nets the log per key.
//!   Cleanup deletes history and raises the table's min valid version.
//!
//! Triggers are named `__lb_<kind>:<signature>:<table>` and re-created when a table's columns
//! change. Writes made outside the harness by another SQLite connection are stamped and logged
//! too (their change-tracking version is assigned at the next commit through the harness).

use rusqlite::{Connection, OptionalExtension, params};

use super::catalog::{Catalog, Table, quote};

/// The first `@@DBTS` of a new database (SQL Server's is 2000 too).
const FIRST_DBTS: i64 = 2000;

/// Creates the harness state tables if they are missing.
pub fn ensure_state(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS __lb_state (name TEXT PRIMARY KEY, value BIGINT);
         INSERT OR IGNORE INTO __lb_state VALUES ('dbts', {FIRST_DBTS}), ('rv_override', NULL),
             ('ct_version', NULL), ('ct_pending', 0);
         CREATE TABLE IF NOT EXISTS __lb_ct_tables (tbl TEXT PRIMARY KEY, object_id INT NOT NULL,
             min_valid BIGINT NOT NULL, begin_version BIGINT NOT NULL);"
    ))
}

/// The change-tracking log table of a tracked table.
pub fn log_table(sqlite_name: &str) -> String {
    format!("__lb_ct:{sqlite_name}")
}

/// The tracked tables (SQLite names).
pub fn tracked(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT tbl FROM __lb_ct_tables ORDER BY tbl")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// The current `@@DBTS`.
pub fn dbts(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT value FROM __lb_state WHERE name = 'dbts'",
        [],
        |r| r.get(0),
    )
}

/// `CHANGE_TRACKING_CURRENT_VERSION()`: `None` until change tracking is enabled.
pub fn ct_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM __lb_state WHERE name = 'ct_version'",
        [],
        |r| r.get(0),
    )
}

/// Reserves the next rowversion (committed at once, so later stamps are higher).
pub fn reserve_rowversion(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "UPDATE __lb_state SET value = value + 1 WHERE name = 'dbts' RETURNING value",
        [],
        |r| r.get(0),
    )
}

/// Sets (or clears) the value the rowversion triggers stamp instead of a fresh one.
pub fn set_override(conn: &Connection, value: Option<i64>) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE __lb_state SET value = ?1 WHERE name = 'rv_override'",
        params![value],
    )?;
    Ok(())
}

/// Gives the change-tracking rows written by the committing transaction their version. Call
/// inside the transaction, just before COMMIT.
pub fn before_commit(conn: &Connection) -> rusqlite::Result<()> {
    let bumped = conn.execute(
        "UPDATE __lb_state SET value = COALESCE(value, 0) + 1 WHERE name = 'ct_version' \
         AND (SELECT value FROM __lb_state WHERE name = 'ct_pending') = 1",
        [],
    )?;
    if bumped == 0 {
        return Ok(());
    }
    for tbl in tracked(conn)? {
        conn.execute(
            &format!(
                "UPDATE {} SET __version = (SELECT value FROM __lb_state WHERE name = 'ct_version') \
                 WHERE __version IS NULL",
                quote(&log_table(&tbl))
            ),
            [],
        )?;
    }
    conn.execute(
        "UPDATE __lb_state SET value = 0 WHERE name = 'ct_pending'",
        [],
    )?;
    Ok(())
}

/// Enables change tracking on a table (it needs a primary key, like SQL Server's).
pub fn enable_tracking(conn: &Connection, catalog: &Catalog, table: &Table) -> Result<(), String> {
    if table.is_view || table.key().is_empty() {
        return Err(format!(
            "Cannot enable change tracking on table '{}'. Change tracking requires a primary key on the table.",
            table.name
        ));
    }
    let run = || -> rusqlite::Result<()> {
        conn.execute(
            "UPDATE __lb_state SET value = COALESCE(value, 0) WHERE name = 'ct_version'",
            [],
        )?;
        let version = ct_version(conn)?.unwrap_or(0);
        conn.execute(
            "INSERT OR IGNORE INTO __lb_ct_tables VALUES (?1, ?2, ?3, ?3)",
            params![table.sqlite_name, table.object_id(), version],
        )?;
        sync(conn, catalog)
    };
    run().map_err(|e| e.to_string())
}

/// Deletes history up to `up_to` (default: the current version) and raises the table's min
/// valid version to it. Returns the new min valid version.
pub fn cleanup(conn: &Connection, table: &Table, up_to: Option<i64>) -> Result<i64, String> {
    let run = || -> rusqlite::Result<Option<i64>> {
        let current = ct_version(conn)?.unwrap_or(0);
        let up_to = up_to.unwrap_or(current).min(current);
        let found = conn
            .query_row(
                "UPDATE __lb_ct_tables SET min_valid = MAX(min_valid, ?2) WHERE tbl = ?1 RETURNING min_valid",
                params![table.sqlite_name, up_to],
                |r| r.get::<_, i64>(0),
            )
            .optional()?;
        if found.is_some() {
            conn.execute(
                &format!(
                    "DELETE FROM {} WHERE __version <= ?1",
                    quote(&log_table(&table.sqlite_name))
                ),
                params![up_to],
            )?;
        }
        Ok(found)
    };
    run()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("Change tracking is not enabled on table '{}'.", table.name))
}

/// Installs or refreshes the harness objects of every table: its triggers (and log table),
/// the collation index of its text key ([`super::catalog::collation_index`]), and stamps rows
/// of rowversion tables that have none yet. Run inside a write transaction.
pub fn sync(conn: &Connection, catalog: &Catalog) -> rusqlite::Result<()> {
    let tracked = tracked(conn)?;
    for table in catalog.tables.iter().filter(|t| !t.is_view) {
        sync_collation_index(conn, table)?;
        let is_tracked = tracked.contains(&table.sqlite_name);
        let wanted = triggers(table, is_tracked);
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 AND substr(name, 1, 5) = '__lb_'",
        )?;
        let mut existing: Vec<String> = stmt
            .query_map(params![table.sqlite_name], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        existing.sort();
        let mut wanted_names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
        wanted_names.sort();
        if existing == wanted_names {
            continue;
        }
        for name in &existing {
            conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote(name)))?;
        }
        if is_tracked {
            conn.execute_batch(&log_ddl(table))?;
        }
        for (_, sql) in &wanted {
            conn.execute_batch(sql)?;
        }
        if let Some(rv) = table.rowversion() {
            backfill(conn, table, &rv.name)?;
        }
    }
    Ok(())
}

fn sync_collation_index(conn: &Connection, table: &Table) -> rusqlite::Result<()> {
    let wanted = super::catalog::collation_index(table);
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1 AND substr(name, 1, 8) = '__lb_ci:'",
    )?;
    let existing: Vec<String> = stmt
        .query_map(params![table.sqlite_name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in existing
        .iter()
        .filter(|n| wanted.as_ref().is_none_or(|(w, _)| w != *n))
    {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", quote(name)))?;
    }
    if let Some((name, sql)) = wanted
        && !existing.contains(&name)
    {
        conn.execute_batch(&sql)?;
    }
    Ok(())
}

/// Stamps rows of a rowversion table whose version is still NULL (written before its triggers).
fn backfill(conn: &Connection, table: &Table, rv: &str) -> rusqlite::Result<()> {
    if table.without_rowid {
        return Ok(());
    }
    let t = quote(&table.sqlite_name);
    let rowids: Vec<i64> = conn
        .prepare(&format!(
            "SELECT rowid FROM {t} WHERE {} IS NULL ORDER BY rowid",
            quote(rv)
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for rowid in rowids {
        let value = reserve_rowversion(conn)?;
        conn.execute(
            &format!(
                "UPDATE {t} SET {} = unhex(printf('%016X', ?1)) WHERE rowid = ?2",
                quote(rv)
            ),
            params![value, rowid],
        )?;
    }
    Ok(())
}

fn log_ddl(table: &Table) -> String {
    let log = quote(&log_table(&table.sqlite_name));
    let keys: Vec<String> = table
        .key()
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.decl))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {log} (__seq INTEGER PRIMARY KEY, __version INTEGER, __op TEXT NOT NULL, {});
         CREATE INDEX IF NOT EXISTS {} ON {log} (__version);",
        keys.join(", "),
        quote(&format!("{}:version", log_table(&table.sqlite_name)))
    )
}

/// The harness triggers a table needs: (name, CREATE TRIGGER statement).
fn triggers(table: &Table, tracked: bool) -> Vec<(String, String)> {
    let t = quote(&table.sqlite_name);
    let rv = table.rowversion().map(|c| c.name.clone());
    let others: Vec<String> = table
        .columns
        .iter()
        .filter(|c| Some(&c.name) != rv.as_ref())
        .map(|c| quote(&c.name))
        .collect();
    let key: Vec<String> = table.key().iter().map(|c| quote(&c.name)).collect();
    let signature = {
        let text = format!(
            "{}|{}|{}|{}",
            others.join(","),
            rv.clone().unwrap_or_default(),
            key.join(","),
            tracked
        );
        format!("{:08x}", super::catalog::object_id(&text))
    };
    let name = |kind: &str| format!("__lb_{kind}:{signature}:{}", table.sqlite_name);
    let mut out = Vec::new();
    let update_of = if others.is_empty() {
        String::new()
    } else {
        format!("OF {} ", others.join(", "))
    };
    if let Some(rv) = &rv {
        let row = if table.without_rowid {
            key.iter()
                .map(|k| format!("{k} IS NEW.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        } else {
            "rowid = NEW.rowid".to_owned()
        };
        let body = format!(
            "UPDATE __lb_state SET value = value + 1 WHERE name = 'dbts' \
               AND (SELECT value FROM __lb_state WHERE name = 'rv_override') IS NULL;
             UPDATE {t} SET {} = unhex(printf('%016X', COALESCE(
               (SELECT value FROM __lb_state WHERE name = 'rv_override'),
               (SELECT value FROM __lb_state WHERE name = 'dbts')))) WHERE {row};",
            quote(rv)
        );
        let ins = name("rv_i");
        out.push((
            ins.clone(),
            format!(
                "CREATE TRIGGER {} AFTER INSERT ON {t} BEGIN {body} END",
                quote(&ins)
            ),
        ));
        let upd = name("rv_u");
        out.push((
            upd.clone(),
            format!(
                "CREATE TRIGGER {} AFTER UPDATE {update_of}ON {t} BEGIN {body} END",
                quote(&upd)
            ),
        ));
    }
    if tracked && !key.is_empty() {
        let log = quote(&log_table(&table.sqlite_name));
        let cols = key.join(", ");
        let new: Vec<String> = key.iter().map(|k| format!("NEW.{k}")).collect();
        let old: Vec<String> = key.iter().map(|k| format!("OLD.{k}")).collect();
        let same = key
            .iter()
            .map(|k| format!("NEW.{k} IS OLD.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let pending = "UPDATE __lb_state SET value = 1 WHERE name = 'ct_pending';";
        let ins = name("ct_i");
        out.push((
            ins.clone(),
            format!(
                "CREATE TRIGGER {} AFTER INSERT ON {t} BEGIN \
                 INSERT INTO {log} (__op, {cols}) VALUES ('I', {}); {pending} END",
                quote(&ins),
                new.join(", ")
            ),
        ));
        let upd = name("ct_u");
        out.push((
            upd.clone(),
            format!(
                "CREATE TRIGGER {} AFTER UPDATE {update_of}ON {t} BEGIN \
                 INSERT INTO {log} (__op, {cols}) SELECT 'U', {n} WHERE {same}; \
                 INSERT INTO {log} (__op, {cols}) SELECT 'D', {o} WHERE NOT ({same}); \
                 INSERT INTO {log} (__op, {cols}) SELECT 'I', {n} WHERE NOT ({same}); {pending} END",
                quote(&upd),
                n = new.join(", "),
                o = old.join(", "),
            ),
        ));
        let del = name("ct_d");
        out.push((
            del.clone(),
            format!(
                "CREATE TRIGGER {} AFTER DELETE ON {t} BEGIN \
                 INSERT INTO {log} (__op, {cols}) VALUES ('D', {}); {pending} END",
                quote(&del),
                old.join(", ")
            ),
        ));
    }
    out
}

/// The net changes of a tracked table since `version_sql` (an SQL expression; NULL = all),
/// as `CHANGETABLE(CHANGES ...)` returns them: one row per key, SYS_CHANGE_VERSION the last
/// change, SYS_CHANGE_OPERATION `D` if the row is gone, `I` if it did not exist at the version,
/// else `U`; SYS_CHANGE_CREATION_VERSION the version of its last insert after the version.
pub fn changes_sql(table: &Table, version_sql: &str) -> String {
    let log = quote(&log_table(&table.sqlite_name));
    let keys: Vec<String> = table.key().iter().map(|c| quote(&c.name)).collect();
    let k = keys.join(", ");
    format!(
        "(SELECT MAX(__version) AS SYS_CHANGE_VERSION, \
           MAX(CASE WHEN __op = 'I' THEN __version END) AS SYS_CHANGE_CREATION_VERSION, \
           CASE WHEN MAX(CASE WHEN __rd = 1 THEN __op END) = 'D' THEN 'D' \
                WHEN MAX(CASE WHEN __ra = 1 THEN __op END) = 'I' THEN 'I' ELSE 'U' END AS SYS_CHANGE_OPERATION, \
           CAST(NULL AS BLOB) AS SYS_CHANGE_COLUMNS, CAST(NULL AS BLOB) AS SYS_CHANGE_CONTEXT, {k} \
         FROM (SELECT __seq, __version, __op, {k}, \
                 ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY __seq) AS __ra, \
                 ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY __seq DESC) AS __rd \
               FROM {log} WHERE __version > COALESCE(({version_sql}), -1)) \
         GROUP BY {k})"
    )
}
