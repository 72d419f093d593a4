//! Schema drift: the legacy table no longer looks like it did when the resource was bound (a
//! mapped column dropped, renamed or retyped). Capture pauses the resource rather than emit
//! records built from the wrong columns, and resumes once the table matches again.

use super::target::Target;
use crate::source::{ColumnInfo, SqlType};

/// Compares the source's current columns with the bound ones; `Some(reason)` on drift. The
/// reason names table, column and field, never data.
pub fn check(target: &Target, columns: &[ColumnInfo]) -> Option<String> {
    let table = target.resource.relation.describe();
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    for field in &target.resource.fields {
        match find(&field.column) {
            None => {
                return Some(format!(
                    "column `{}` of {table} (field `{}`) no longer exists",
                    field.column, field.name
                ));
            }
            Some(c) if !same_kind(c.sql_type, field.sql_type) => {
                return Some(format!(
                    "column `{}` of {table} (field `{}`) changed type to {}",
                    field.column, field.name, c.type_name
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(cursor) = &target.cursor {
        match find(&cursor.column) {
            None => {
                return Some(format!(
                    "cursor column `{}` of {table} no longer exists",
                    cursor.column
                ));
            }
            Some(c) if !same_kind(c.sql_type, cursor.sql_type) => {
                return Some(format!(
                    "cursor column `{}` of {table} changed type to {}",
                    cursor.column, c.type_name
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// Type families that decode the same way; a widened VARCHAR or a changed precision is not
/// drift, a number turned into text is.
fn same_kind(now: SqlType, bound: SqlType) -> bool {
    use SqlType::*;
    matches!(
        (now, bound),
        (Char { .. } | Varchar { .. }, Char { .. } | Varchar { .. })
            | (Decimal { .. } | Integer, Decimal { .. } | Integer)
    ) || std::mem::discriminant(&now) == std::mem::discriminant(&bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_is_not_drift_but_retyping_is() {
        assert!(same_kind(
            SqlType::Varchar { len: Some(40) },
            SqlType::Char { len: Some(10) }
        ));
        assert!(same_kind(
            SqlType::Decimal {
                precision: 12,
                scale: 3
            },
            SqlType::Decimal {
                precision: 10,
                scale: 2
            }
        ));
        assert!(!same_kind(
            SqlType::Varchar { len: None },
            SqlType::Decimal {
                precision: 10,
                scale: 2
            }
        ));
        assert!(!same_kind(SqlType::Date, SqlType::Timestamp));
    }
}
