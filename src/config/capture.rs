//! The `capture` section of a resource: which strategy finds its changes, how often, and the
//! windows that make polling safe (settle delay, lookback). Defaults are documented constants;
//! [`validate_capture`] checks what can be checked without a source.

use std::path::Path;

use serde::Deserialize;

use super::error::ConfigError;

/// Milliseconds between two capture cycles of one resource.
pub const DEFAULT_INTERVAL_MS: u64 = 1_000;
/// Rows read per page (cursor, changelog) or per streamed batch (snapshot scans).
pub const DEFAULT_BATCH_SIZE: usize = 1_000;
/// Timestamp cursors only read rows older than the database clock minus this, so rows of
/// transactions still committing "now" are not half-read.
pub const DEFAULT_SETTLE_MS: u64 = 1_000;
/// Timestamp cursors re-read this far below their checkpoint every cycle, catching rows that
/// long transactions commit with an older timestamp; unchanged rows are suppressed by hash.
pub const DEFAULT_LOOKBACK_MS: u64 = 60_000;
/// The change-log table the trigger DDL (`sql/changelog/`) creates.
pub const DEFAULT_CHANGELOG_TABLE: &str = "LB_CHANGELOG";

/// How changes of a resource are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Poll on a column that grows with every change: an incrementing id, a last-update
    /// timestamp, or a rowversion; ties are broken by the key.
    Cursor,
    /// Scan the whole table ordered by key and diff it against the stored key -> hash state.
    SnapshotDiff,
    /// Read a trigger-fed log table, then prune what was read.
    Changelog,
    /// Diff the newest complete export file against the previous one (file resources).
    Export,
    /// Read SQL Server Change Tracking (`CHANGETABLE(CHANGES ...)`) joined back to the table,
    /// in a snapshot transaction (sources of kind `mssql`).
    MssqlChangeTracking,
}

impl StrategyKind {
    /// The spelling used in adapter files and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Cursor => "cursor",
            StrategyKind::SnapshotDiff => "snapshot-diff",
            StrategyKind::Changelog => "changelog",
            StrategyKind::Export => "export",
            StrategyKind::MssqlChangeTracking => "mssql-change-tracking",
        }
    }
}

/// What capture does the first time it sees a resource (no checkpoint yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitialLoad {
    /// Emit every existing row once (op `snapshot`), then follow changes.
    #[default]
    Snapshot,
    /// Record the current state silently and only emit later changes.
    None,
}

/// What `mssql-change-tracking` does when the version it synced to has expired (SQL Server
/// cleaned up change history the bridge had not read yet, e.g. after an outage longer than
/// the retention): changes were lost, so it never silently carries on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnExpired {
    /// Stop the resource with the reason shown in `/admin/capture` and `/readyz` until an
    /// operator asks for a resync.
    #[default]
    Stop,
    /// Re-read the whole table at once and emit what differs from the last emitted state
    /// (origin `reconciliation`), then follow changes from the version taken before it.
    Reconcile,
    /// Re-read the whole table at once and emit every row as a `snapshot` event, and a
    /// `deleted` event for rows that are gone (origin `resync`), as an operator's resync
    /// does; for consumers that rebuild from snapshots.
    Resync,
}

/// `[resources.X.capture]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureDef {
    pub strategy: StrategyKind,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default)]
    pub initial: InitialLoad,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Seconds between reconciliation passes (a snapshot-diff that catches deletes and
    /// anything the strategy missed); none when absent.
    #[serde(default)]
    pub reconcile_interval_secs: Option<u64>,
    /// `cursor` only: the legacy column that grows with each change (need not be mapped).
    #[serde(default)]
    pub cursor_column: Option<String>,
    /// `cursor` on a timestamp only; see [`DEFAULT_SETTLE_MS`].
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// `cursor` on a timestamp only; see [`DEFAULT_LOOKBACK_MS`].
    #[serde(default = "default_lookback_ms")]
    pub lookback_ms: u64,
    /// `cursor` on an integer (id or rowversion) only: how many cursor units below the
    /// checkpoint are re-read every cycle, for ids that commit out of order.
    #[serde(default)]
    pub lookback_values: u64,
    /// `changelog` only: the log table the triggers write to.
    #[serde(default)]
    pub changelog_table: Option<String>,
    /// `mssql-change-tracking` only: see [`OnExpired`] (default `stop`).
    #[serde(default)]
    pub on_expired: Option<OnExpired>,
}

fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_settle_ms() -> u64 {
    DEFAULT_SETTLE_MS
}
fn default_lookback_ms() -> u64 {
    DEFAULT_LOOKBACK_MS
}

impl CaptureDef {
    /// The capture of a file resource that has no capture section: strategy `export` with
    /// the defaults.
    pub fn export() -> Self {
        Self {
            strategy: StrategyKind::Export,
            interval_ms: DEFAULT_INTERVAL_MS,
            initial: InitialLoad::default(),
            batch_size: DEFAULT_BATCH_SIZE,
            reconcile_interval_secs: None,
            cursor_column: None,
            settle_ms: DEFAULT_SETTLE_MS,
            lookback_ms: DEFAULT_LOOKBACK_MS,
            lookback_values: 0,
            changelog_table: None,
            on_expired: None,
        }
    }

    /// What to do when the change-tracking version expired, defaulted.
    pub fn on_expired(&self) -> OnExpired {
        self.on_expired.unwrap_or_default()
    }

    /// The change-log table name, defaulted.
    pub fn changelog_table(&self) -> &str {
        self.changelog_table
            .as_deref()
            .unwrap_or(DEFAULT_CHANGELOG_TABLE)
    }
}

/// Pure checks of a capture section at `at` (e.g. `resources.inventory.capture`).
pub(super) fn validate_capture(file: &Path, at: &str, def: &CaptureDef) -> Result<(), ConfigError> {
    let err = |key: &str, reason: &str| ConfigError::new(file, format!("{at}.{key}"), reason);
    if def.interval_ms < 50 {
        return Err(err(
            "interval_ms",
            "must be at least 50 (polling faster only loads the legacy system)",
        ));
    }
    if def.batch_size == 0 || def.batch_size > 100_000 {
        return Err(err("batch_size", "must be between 1 and 100000"));
    }
    if def.reconcile_interval_secs == Some(0) {
        return Err(err(
            "reconcile_interval_secs",
            "must be at least 1; leave it out to disable reconciliation",
        ));
    }
    if def.on_expired.is_some() && def.strategy != StrategyKind::MssqlChangeTracking {
        return Err(err(
            "on_expired",
            "only strategy `mssql-change-tracking` has a version that can expire",
        ));
    }
    if def.changelog_table.is_some() && def.strategy != StrategyKind::Changelog {
        return Err(err(
            "changelog_table",
            "only strategy `changelog` reads a change-log table",
        ));
    }
    match def.strategy {
        StrategyKind::Cursor if def.cursor_column.is_none() => Err(err(
            "cursor_column",
            "strategy `cursor` needs the column that grows with each change",
        )),
        StrategyKind::Cursor => Ok(()),
        _ if def.cursor_column.is_some() => Err(err(
            "cursor_column",
            "only strategy `cursor` reads a cursor column",
        )),
        StrategyKind::Export if def.reconcile_interval_secs.is_some() => Err(err(
            "reconcile_interval_secs",
            "strategy `export` reads whole files: there is nothing to reconcile",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> CaptureDef {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_documented_constants() {
        let def = parse(r#"strategy = "snapshot-diff""#);
        assert_eq!(def.interval_ms, DEFAULT_INTERVAL_MS);
        assert_eq!(def.initial, InitialLoad::Snapshot);
        assert_eq!(def.changelog_table(), DEFAULT_CHANGELOG_TABLE);
        assert!(validate_capture(Path::new("a.toml"), "c", &def).is_ok());
    }

    #[test]
    fn cursor_needs_its_column_and_others_refuse_it() {
        let def = parse(r#"strategy = "cursor""#);
        let e = validate_capture(Path::new("a.toml"), "resources.x.capture", &def).unwrap_err();
        assert_eq!(e.key, "resources.x.capture.cursor_column");
        let def = parse("strategy = \"changelog\"\ncursor_column = \"X\"");
        assert!(validate_capture(Path::new("a.toml"), "c", &def).is_err());
        let def = parse("strategy = \"cursor\"\ncursor_column = \"LAST_UPD\"\ninterval_ms = 10");
        let e = validate_capture(Path::new("a.toml"), "c", &def).unwrap_err();
        assert_eq!(e.key, "c.interval_ms");
    }

    #[test]
    fn on_expired_belongs_to_change_tracking_only() {
        let def = parse("strategy = \"mssql-change-tracking\"\non_expired = \"reconcile\"");
        assert!(validate_capture(Path::new("a.toml"), "c", &def).is_ok());
        assert_eq!(def.on_expired(), OnExpired::Reconcile);
        let def = parse("strategy = \"mssql-change-tracking\"\non_expired = \"resync\"");
        assert_eq!(def.on_expired(), OnExpired::Resync);
        assert_eq!(
            parse("strategy = \"mssql-change-tracking\"").on_expired(),
            OnExpired::Stop
        );
        let def = parse("strategy = \"snapshot-diff\"\non_expired = \"stop\"");
        let e = validate_capture(Path::new("a.toml"), "c", &def).unwrap_err();
        assert_eq!(e.key, "c.on_expired");
        let def = parse("strategy = \"cursor\"\ncursor_column = \"X\"\nchangelog_table = \"L\"");
        let e = validate_capture(Path::new("a.toml"), "c", &def).unwrap_err();
        assert_eq!(e.key, "c.changelog_table");
    }
}
