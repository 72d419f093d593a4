//! Introspection through the ODBC catalog functions: which tables exist and which columns
//! they (or an adapter query) have, with their SQL types and nullability.

use odbc_api::sys::SqlDataType;
use odbc_api::{Connection, DataType, Nullability, ResultSetMetadata};

use super::decode::classify;
use crate::source::{ColumnInfo, Dialect, Relation, SourceError, SqlType, TableInfo};

/// Columns of a table (exact name as the catalog spells it) or of an adapter query.
pub(super) fn columns(
    conn: &Connection<'static>,
    relation: &Relation,
    dialect: &Dialect,
) -> Result<Vec<ColumnInfo>, SourceError> {
    match relation {
        Relation::Table { schema, name } => {
            let rows = conn
                .columns("", schema.as_deref().unwrap_or(""), name, "")
                .map_err(|e| classify(&e, conn))?;
            let mut out = Vec::new();
            for row in rows {
                let row = row.map_err(|e| classify(&e, conn))?;
                // Catalog arguments are patterns (`_` matches any character): keep exact hits.
                if text(&row.table) != *name {
                    continue;
                }
                let size = row.column_size.into_opt().unwrap_or(0).max(0) as usize;
                let digits = row.decimal_digits.into_opt().unwrap_or(0);
                let data_type = DataType::new(SqlDataType(row.data_type), size, digits);
                let type_name = text(&row.type_name);
                out.push(ColumnInfo {
                    name: text(&row.column_name),
                    sql_type: refine_from_type_name(sql_type(data_type), &type_name),
                    type_name,
                    nullable: row.nullable != 0,
                });
            }
            Ok(out)
        }
        Relation::Query(_) => {
            let sql = format!("SELECT * FROM {}", dialect.from_clause(relation));
            let mut prepared = conn.prepare(&sql).map_err(|e| classify(&e, conn))?;
            let n = prepared.num_result_cols().map_err(|e| classify(&e, conn))?;
            let mut out = Vec::new();
            for i in 1..=u16::try_from(n).unwrap_or(0) {
                let name = prepared.col_name(i).map_err(|e| classify(&e, conn))?;
                let data_type = prepared.col_data_type(i).map_err(|e| classify(&e, conn))?;
                let nullable = prepared
                    .col_nullability(i)
                    .map_err(|e| classify(&e, conn))?;
                out.push(ColumnInfo {
                    name,
                    sql_type: sql_type(data_type),
                    type_name: format!("{data_type:?}"),
                    nullable: !matches!(nullable, Nullability::NoNulls),
                });
            }
            Ok(out)
        }
    }
}

/// Tables and views visible to the connection, optionally in one schema.
pub(super) fn tables(
    conn: &Connection<'static>,
    schema: Option<&str>,
) -> Result<Vec<TableInfo>, SourceError> {
    let rows = conn
        .tables("", schema.unwrap_or(""), "%", "TABLE,VIEW")
        .map_err(|e| classify(&e, conn))?;
    let mut out = Vec::new();
    for row in rows {
        let row = row.map_err(|e| classify(&e, conn))?;
        let schema = text(&row.schema);
        out.push(TableInfo {
            schema: (!schema.is_empty()).then_some(schema),
            name: text(&row.table),
            kind: text(&row.table_type),
        });
    }
    Ok(out)
}

fn text<const N: usize>(v: &odbc_api::parameter::VarCharArray<N>) -> String {
    v.as_str().ok().flatten().unwrap_or_default().to_owned()
}

/// Reduces an ODBC data type to what decoding and binding need.
pub(super) fn sql_type(dt: DataType) -> SqlType {
    let len = dt.column_size().map(|n| n.get());
    match dt {
        DataType::Char { .. } | DataType::WChar { .. } => SqlType::Char { len },
        DataType::Varchar { .. }
        | DataType::WVarchar { .. }
        | DataType::LongVarchar { .. }
        | DataType::WLongVarchar { .. } => SqlType::Varchar { len },
        DataType::Integer | DataType::SmallInt | DataType::BigInt | DataType::TinyInt => {
            SqlType::Integer
        }
        DataType::Decimal { precision, scale } | DataType::Numeric { precision, scale } => {
            SqlType::Decimal { precision, scale }
        }
        DataType::Float { .. } | DataType::Real | DataType::Double => SqlType::Float,
        DataType::Bit => SqlType::Boolean,
        DataType::Date => SqlType::Date,
        DataType::Time { .. } => SqlType::Time,
        DataType::Timestamp { .. } => SqlType::Timestamp,
        DataType::Binary { .. } | DataType::Varbinary { .. } | DataType::LongVarbinary { .. } => {
            SqlType::Binary
        }
        _ => SqlType::Other,
    }
}

/// Some drivers (SQLite's, several desktop-database ones) report every declared type as
/// VARCHAR but keep the declaration in `TYPE_NAME`, e.g. `CHAR(10)` or `DECIMAL(19,4)`. The
/// declaration decides padding and scale, so it wins when the reported type is that vague.
pub(super) fn refine_from_type_name(reported: SqlType, type_name: &str) -> SqlType {
    if !matches!(reported, SqlType::Varchar { .. } | SqlType::Other) {
        return reported;
    }
    let upper = type_name.trim().to_ascii_uppercase();
    let (base, args) = match upper.split_once('(') {
        Some((b, rest)) => (b.trim(), rest.trim_end_matches(')')),
        None => (upper.as_str(), ""),
    };
    let nums: Vec<usize> = args
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    match base {
        "CHAR" | "CHARACTER" | "NCHAR" | "BPCHAR" => SqlType::Char {
            len: nums.first().copied(),
        },
        "DECIMAL" | "NUMERIC" | "MONEY" => SqlType::Decimal {
            precision: nums.first().copied().unwrap_or(38),
            scale: nums
                .get(1)
                .and_then(|s| i16::try_from(*s).ok())
                .unwrap_or(if base == "MONEY" { 4 } else { 0 }),
        },
        "INTEGER" | "INT" | "SMALLINT" | "BIGINT" | "TINYINT" => SqlType::Integer,
        "BOOLEAN" | "BOOL" | "BIT" => SqlType::Boolean,
        "DATE" => SqlType::Date,
        "TIME" => SqlType::Time,
        "DATETIME" | "TIMESTAMP" => SqlType::Timestamp,
        "REAL" | "FLOAT" | "DOUBLE" => SqlType::Float,
        "BLOB" => SqlType::Binary,
        _ => reported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_type_names_refine_vague_driver_types() {
        let vague = SqlType::Varchar { len: Some(10) };
        assert_eq!(
            refine_from_type_name(vague, "CHAR(10)"),
            SqlType::Char { len: Some(10) }
        );
        assert_eq!(
            refine_from_type_name(vague, "decimal(19, 4)"),
            SqlType::Decimal {
                precision: 19,
                scale: 4
            }
        );
        assert_eq!(refine_from_type_name(vague, "VARCHAR(60)"), vague);
        assert_eq!(
            refine_from_type_name(vague, "CHARACTER VARYING(5)"),
            vague,
            "only fixed-width CHAR is padded"
        );
        // A precise driver type is never overridden.
        assert_eq!(
            refine_from_type_name(SqlType::Integer, "CHAR(3)"),
            SqlType::Integer
        );
    }
}
