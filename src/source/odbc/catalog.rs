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
                out.push(ColumnInfo {
                    name: text(&row.column_name),
                    sql_type: sql_type(data_type),
                    type_name: text(&row.type_name),
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
