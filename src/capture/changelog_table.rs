//! The shape of the change-log table that trigger DDL creates (`sql/changelog/`) and the
//! `changelog` strategy reads: one table per legacy database, shared by every captured table.
//!
//! | column       | meaning                                                        |
//! |--------------|----------------------------------------------------------------|
//! | `CHANGE_ID`  | ascending id given by the database (identity/autoincrement)    |
//! | `TABLE_NAME` | the captured table, spelled as the catalog spells it           |
//! | `OP`         | `I`, `U` or `D` (informational: capture re-reads the row)      |
//! | `KEY_1..4`   | the row's key columns as text, in key order; unused ones NULL  |
//! | `CHANGED_AT` | the database's timestamp of the change                         |
//!
//! An update that changes the key logs the old and the new key, so the old one is seen as
//! deleted.

/// Ascending id of a log row.
pub const ID_COLUMN: &str = "CHANGE_ID";
/// The captured table's name.
pub const TABLE_COLUMN: &str = "TABLE_NAME";
/// `I`, `U` or `D`.
pub const OP_COLUMN: &str = "OP";
/// When the trigger ran.
pub const CHANGED_AT_COLUMN: &str = "CHANGED_AT";
/// Most key columns a captured table may have.
pub const MAX_KEY_COLUMNS: usize = 4;

/// The name of the `n`th key column (1-based), `KEY_1`..`KEY_4`.
pub fn key_column(n: usize) -> String {
    format!("KEY_{n}")
}
