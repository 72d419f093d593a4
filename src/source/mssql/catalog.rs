//! What the SQL Server catalog says about tables and columns, through the
//! `INFORMATION_SCHEMA` views (readable by a least-privilege login for the objects it may
//! see), mapped onto the source-neutral [`SqlType`].

use tiberius::ColumnType;

use crate::source::{ColumnInfo, SqlType, TableInfo};

/// Columns of a table, in ordinal order.
pub(super) const COLUMNS_SQL: &str = "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, \
     NUMERIC_PRECISION, NUMERIC_SCALE, IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS \
     WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 ORDER BY ORDINAL_POSITION";

/// Tables and views, optionally of one schema.
pub(super) const TABLES_SQL: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE \
     FROM INFORMATION_SCHEMA.TABLES WHERE @P1 IS NULL OR TABLE_SCHEMA = @P1 \
     ORDER BY TABLE_SCHEMA, TABLE_NAME";

/// A catalog row of [`COLUMNS_SQL`].
pub(super) struct CatalogColumn {
    pub(super) name: String,
    pub(super) data_type: String,
    pub(super) max_length: Option<i32>,
    pub(super) precision: Option<u8>,
    pub(super) scale: Option<i32>,
    pub(super) nullable: bool,
}

impl CatalogColumn {
    pub(super) fn into_info(self) -> ColumnInfo {
        let len = self
            .max_length
            .and_then(|l| usize::try_from(l).ok())
            .filter(|l| *l > 0);
        let sql_type = match self.data_type.to_ascii_lowercase().as_str() {
            "char" | "nchar" => SqlType::Char { len },
            // -1 is (MAX).
            "varchar" | "nvarchar" | "text" | "ntext" | "xml" | "sysname" => {
                SqlType::Varchar { len }
            }
            "uniqueidentifier" => SqlType::Varchar { len: Some(36) },
            "tinyint" | "smallint" | "int" | "bigint" => SqlType::Integer,
            "decimal" | "numeric" => SqlType::Decimal {
                precision: usize::from(self.precision.unwrap_or(18)),
                scale: self.scale.and_then(|s| i16::try_from(s).ok()).unwrap_or(0),
            },
            "money" => SqlType::Decimal {
                precision: 19,
                scale: 4,
            },
            "smallmoney" => SqlType::Decimal {
                precision: 10,
                scale: 4,
            },
            "float" | "real" => SqlType::Float,
            "bit" => SqlType::Boolean,
            "date" => SqlType::Date,
            "time" => SqlType::Time,
            "datetime" | "datetime2" | "smalldatetime" | "datetimeoffset" => SqlType::Timestamp,
            // `timestamp` is the old name of rowversion.
            "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => SqlType::Binary,
            _ => SqlType::Other,
        };
        ColumnInfo {
            name: self.name,
            sql_type,
            type_name: self.data_type,
            nullable: self.nullable,
        }
    }
}

/// A result column's type as a [`SqlType`] (for columns of a query, which the catalog does
/// not describe).
pub(super) fn sql_type_of(ty: ColumnType) -> SqlType {
    match ty {
        ColumnType::Bit | ColumnType::Bitn => SqlType::Boolean,
        ColumnType::Int1
        | ColumnType::Int2
        | ColumnType::Int4
        | ColumnType::Int8
        | ColumnType::Intn => SqlType::Integer,
        ColumnType::Money => SqlType::Decimal {
            precision: 19,
            scale: 4,
        },
        ColumnType::Money4 => SqlType::Decimal {
            precision: 10,
            scale: 4,
        },
        ColumnType::Decimaln | ColumnType::Numericn => SqlType::Decimal {
            precision: 38,
            scale: 0,
        },
        ColumnType::Float4 | ColumnType::Float8 | ColumnType::Floatn => SqlType::Float,
        ColumnType::Daten => SqlType::Date,
        ColumnType::Timen => SqlType::Time,
        ColumnType::Datetime
        | ColumnType::Datetime4
        | ColumnType::Datetimen
        | ColumnType::Datetime2
        | ColumnType::DatetimeOffsetn => SqlType::Timestamp,
        ColumnType::BigChar | ColumnType::NChar => SqlType::Char { len: None },
        ColumnType::BigVarChar
        | ColumnType::NVarchar
        | ColumnType::Text
        | ColumnType::NText
        | ColumnType::Xml => SqlType::Varchar { len: None },
        ColumnType::Guid => SqlType::Varchar { len: Some(36) },
        ColumnType::BigVarBin | ColumnType::BigBinary | ColumnType::Image => SqlType::Binary,
        ColumnType::Null | ColumnType::Udt | ColumnType::SSVariant => SqlType::Other,
    }
}

/// A catalog row of [`TABLES_SQL`].
pub(super) fn table_info(schema: String, name: String, kind: String) -> TableInfo {
    TableInfo {
        schema: Some(schema),
        name,
        kind: if kind.eq_ignore_ascii_case("VIEW") {
            "VIEW".into()
        } else {
            "TABLE".into()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(data_type: &str, len: Option<i32>, p: Option<u8>, s: Option<i32>) -> SqlType {
        CatalogColumn {
            name: "c".into(),
            data_type: data_type.into(),
            max_length: len,
            precision: p,
            scale: s,
            nullable: true,
        }
        .into_info()
        .sql_type
    }

    #[test]
    fn legacy_types_map() {
        assert_eq!(
            info("nchar", Some(10), None, None),
            SqlType::Char { len: Some(10) }
        );
        assert_eq!(
            info("nvarchar", Some(-1), None, None),
            SqlType::Varchar { len: None }
        );
        assert_eq!(
            info("decimal", None, Some(12), Some(4)),
            SqlType::Decimal {
                precision: 12,
                scale: 4
            }
        );
        assert_eq!(
            info("money", None, Some(19), Some(4)),
            SqlType::Decimal {
                precision: 19,
                scale: 4
            }
        );
        assert_eq!(info("timestamp", Some(8), None, None), SqlType::Binary);
        assert_eq!(info("datetime2", None, None, None), SqlType::Timestamp);
        assert_eq!(info("hierarchyid", None, None, None), SqlType::Other);
    }
}
