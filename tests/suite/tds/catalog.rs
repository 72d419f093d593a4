//! The database schema as SQL Server names it. A SQLite table named `schema.table` (one
//! identifier containing a dot, e.g. `CREATE TABLE [dbo.stock] (...)`) is `schema.table`; a
//! table without a dot is in `dbo`. `dbo.t`, `[dbo].[t]`, `db.dbo.t` and `t` all find SQLite's
//! `dbo.t` or else `t`. Harness tables (`__lb_*`) and SQLite's own are invisible. Also builds
//! the INFORMATION_SCHEMA views (and `sys.change_tracking_tables`) as TEMP tables with
//! SQL Server's declared types, so their result columns are typed like SQL Server's.

use rusqlite::{Connection, params};

use super::types::SqlType;

/// A column of a user table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub decl: String,
    pub ty: Option<SqlType>,
    pub not_null: bool,
    /// 1-based position in the primary key, 0 when not part of it.
    pub pk: u32,
    pub default: Option<String>,
}

/// A user table or view.
#[derive(Debug, Clone)]
pub struct Table {
    pub sqlite_name: String,
    pub schema: String,
    pub name: String,
    pub is_view: bool,
    pub without_rowid: bool,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The primary key columns in key order.
    pub fn key(&self) -> Vec<&Column> {
        let mut key: Vec<&Column> = self.columns.iter().filter(|c| c.pk > 0).collect();
        key.sort_by_key(|c| c.pk);
        key
    }

    /// The `rowversion`/`timestamp` column, if any.
    pub fn rowversion(&self) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.ty == Some(SqlType::RowVersion))
    }

    /// SQL Server's object id of the table (stable: derived from its name).
    pub fn object_id(&self) -> i64 {
        object_id(&self.sqlite_name)
    }
}

/// A stable positive object id for a SQLite table name (FNV-1a of the lowercase name).
pub fn object_id(sqlite_name: &str) -> i64 {
    let mut h: u32 = 0x811C_9DC5;
    for b in sqlite_name.to_lowercase().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i64::from(h & 0x3FFF_FFFF) + 1000
}

/// Splits a SQLite table name into SQL Server schema and table.
pub fn split_name(sqlite_name: &str) -> (String, String) {
    match sqlite_name.split_once('.') {
        Some((schema, table)) if !schema.is_empty() && !table.is_empty() => {
            (schema.to_owned(), table.to_owned())
        }
        _ => ("dbo".to_owned(), sqlite_name.to_owned()),
    }
}

/// The index letting comparisons and ORDER BY in the server collation (`COLLATE TSQL`, which
/// the translation puts on text parameters and literals) use the primary key of a table whose
/// key has text columns: (index name, CREATE INDEX statement).
pub fn collation_index(table: &Table) -> Option<(String, String)> {
    let key = table.key();
    if table.is_view || !key.iter().any(|c| c.ty.is_some_and(|t| t.is_text())) {
        return None;
    }
    let cols: Vec<String> = key
        .iter()
        .map(|c| {
            if c.ty.is_some_and(|t| t.is_text()) {
                format!("{} COLLATE TSQL", quote(&c.name))
            } else {
                quote(&c.name)
            }
        })
        .collect();
    let name = format!(
        "__lb_ci:{:08x}:{}",
        object_id(&cols.join(",")),
        table.sqlite_name
    );
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({})",
        quote(&name),
        quote(&table.sqlite_name),
        cols.join(", ")
    );
    Some((name, sql))
}

/// Double-quotes an identifier for SQLite.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The user tables and views of the database.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Table>,
}

impl Catalog {
    /// Reads the schema.
    pub fn load(conn: &Connection) -> rusqlite::Result<Catalog> {
        let mut stmt = conn.prepare(
            "SELECT name, type, COALESCE(sql, '') FROM sqlite_schema \
             WHERE type IN ('table', 'view') AND substr(name, 1, 5) <> '__lb_' \
             AND substr(name, 1, 7) <> 'sqlite_' ORDER BY name",
        )?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut tables = Vec::with_capacity(rows.len());
        for (sqlite_name, kind, sql) in rows {
            let mut cols = conn.prepare(
                "SELECT name, type, \"notnull\", pk, dflt_value FROM pragma_table_info(?1)",
            )?;
            let columns = cols
                .query_map(params![sqlite_name], |r| {
                    let decl: String = r.get(1)?;
                    Ok(Column {
                        name: r.get(0)?,
                        ty: SqlType::parse(&decl),
                        decl,
                        not_null: r.get::<_, i64>(2)? != 0,
                        pk: r.get::<_, i64>(3)?.try_into().unwrap_or(0),
                        default: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let (schema, name) = split_name(&sqlite_name);
            tables.push(Table {
                without_rowid: sql.to_ascii_uppercase().contains("WITHOUT ROWID"),
                is_view: kind == "view",
                sqlite_name,
                schema,
                name,
                columns,
            });
        }
        Ok(Catalog { tables })
    }

    /// Finds a table from the parts of a T-SQL name (`[server.][db.][schema.]table`).
    pub fn resolve(&self, parts: &[String]) -> Option<&Table> {
        let table = parts.last()?;
        let schema = if parts.len() >= 2 {
            parts[parts.len() - 2].as_str()
        } else {
            ""
        };
        let schema = if schema.is_empty() { "dbo" } else { schema };
        let qualified = format!("{schema}.{table}");
        let by_name = |n: &str| {
            self.tables
                .iter()
                .find(|t| t.sqlite_name.eq_ignore_ascii_case(n))
        };
        by_name(&qualified).or_else(|| {
            if schema.eq_ignore_ascii_case("dbo") {
                by_name(table)
            } else {
                None
            }
        })
    }
}

/// The catalog views the harness can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Tables,
    Columns,
    TableConstraints,
    KeyColumnUsage,
    ChangeTrackingTables,
}

impl View {
    /// The view a T-SQL name refers to (`INFORMATION_SCHEMA.COLUMNS`, `sys.change_tracking_tables`).
    pub fn from_parts(parts: &[String]) -> Option<Result<View, ()>> {
        if parts.len() < 2 {
            return None;
        }
        let schema = parts[parts.len() - 2].to_ascii_uppercase();
        let name = parts[parts.len() - 1].to_ascii_uppercase();
        match (schema.as_str(), name.as_str()) {
            ("INFORMATION_SCHEMA", "TABLES") => Some(Ok(View::Tables)),
            ("INFORMATION_SCHEMA", "COLUMNS") => Some(Ok(View::Columns)),
            ("INFORMATION_SCHEMA", "TABLE_CONSTRAINTS") => Some(Ok(View::TableConstraints)),
            ("INFORMATION_SCHEMA", "KEY_COLUMN_USAGE") => Some(Ok(View::KeyColumnUsage)),
            ("SYS", "CHANGE_TRACKING_TABLES") => Some(Ok(View::ChangeTrackingTables)),
            ("INFORMATION_SCHEMA", _) | ("SYS", _) => Some(Err(())),
            _ => None,
        }
    }

    /// The TEMP table holding the view.
    pub fn temp_table(self) -> &'static str {
        match self {
            View::Tables => "INFORMATION_SCHEMA.TABLES",
            View::Columns => "INFORMATION_SCHEMA.COLUMNS",
            View::TableConstraints => "INFORMATION_SCHEMA.TABLE_CONSTRAINTS",
            View::KeyColumnUsage => "INFORMATION_SCHEMA.KEY_COLUMN_USAGE",
            View::ChangeTrackingTables => "sys.change_tracking_tables",
        }
    }

    fn ddl(self) -> &'static str {
        match self {
            View::Tables => {
                "TABLE_CATALOG NVARCHAR(128), TABLE_SCHEMA NVARCHAR(128), TABLE_NAME NVARCHAR(128) NOT NULL, \
                 TABLE_TYPE VARCHAR(10)"
            }
            View::Columns => {
                "TABLE_CATALOG NVARCHAR(128), TABLE_SCHEMA NVARCHAR(128), TABLE_NAME NVARCHAR(128) NOT NULL, \
                 COLUMN_NAME NVARCHAR(128), ORDINAL_POSITION INT, COLUMN_DEFAULT NVARCHAR(4000), \
                 IS_NULLABLE VARCHAR(3), DATA_TYPE NVARCHAR(128), CHARACTER_MAXIMUM_LENGTH INT, \
                 CHARACTER_OCTET_LENGTH INT, NUMERIC_PRECISION TINYINT, NUMERIC_PRECISION_RADIX SMALLINT, \
                 NUMERIC_SCALE INT, DATETIME_PRECISION SMALLINT, CHARACTER_SET_NAME NVARCHAR(128), \
                 COLLATION_NAME NVARCHAR(128)"
            }
            View::TableConstraints => {
                "CONSTRAINT_CATALOG NVARCHAR(128), CONSTRAINT_SCHEMA NVARCHAR(128), \
                 CONSTRAINT_NAME NVARCHAR(128) NOT NULL, TABLE_CATALOG NVARCHAR(128), \
                 TABLE_SCHEMA NVARCHAR(128), TABLE_NAME NVARCHAR(128) NOT NULL, CONSTRAINT_TYPE VARCHAR(11), \
                 IS_DEFERRABLE VARCHAR(2) NOT NULL, INITIALLY_DEFERRED VARCHAR(2) NOT NULL"
            }
            View::KeyColumnUsage => {
                "CONSTRAINT_CATALOG NVARCHAR(128), CONSTRAINT_SCHEMA NVARCHAR(128), \
                 CONSTRAINT_NAME NVARCHAR(128) NOT NULL, TABLE_CATALOG NVARCHAR(128), \
                 TABLE_SCHEMA NVARCHAR(128), TABLE_NAME NVARCHAR(128) NOT NULL, COLUMN_NAME NVARCHAR(128), \
                 ORDINAL_POSITION INT NOT NULL"
            }
            View::ChangeTrackingTables => {
                "object_id INT NOT NULL, is_track_columns_updated_on BIT NOT NULL, \
                 min_valid_version BIGINT, begin_version BIGINT, cleanup_version BIGINT"
            }
        }
    }

    /// (Re)builds the TEMP table of the view on `conn`.
    pub fn materialize(
        self,
        conn: &Connection,
        catalog: &Catalog,
        database: &str,
    ) -> rusqlite::Result<()> {
        let temp = quote(self.temp_table());
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.{temp}; CREATE TEMP TABLE {temp} ({});",
            self.ddl()
        ))?;
        let pk_name = |t: &Table| format!("PK_{}", t.name);
        match self {
            View::Tables => {
                let mut ins =
                    conn.prepare(&format!("INSERT INTO temp.{temp} VALUES (?1, ?2, ?3, ?4)"))?;
                for t in &catalog.tables {
                    let ty = if t.is_view { "VIEW" } else { "BASE TABLE" };
                    ins.execute(params![database, t.schema, t.name, ty])?;
                }
            }
            View::Columns => {
                let mut ins = conn.prepare(&format!(
                    "INSERT INTO temp.{temp} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ))?;
                for t in &catalog.tables {
                    for (i, c) in t.columns.iter().enumerate() {
                        let (data_type, max_len, octets, (precision, scale), dt_precision, text) =
                            match &c.ty {
                                Some(ty) => (
                                    ty.data_type().to_owned(),
                                    ty.char_max_len(),
                                    ty.octet_len(),
                                    ty.numeric_precision_scale(),
                                    ty.datetime_precision(),
                                    ty.is_text(),
                                ),
                                None => {
                                    (c.decl.to_lowercase(), None, None, (None, None), None, false)
                                }
                            };
                        let radix = precision.map(|_| {
                            if matches!(c.ty, Some(SqlType::Float | SqlType::Real)) {
                                2
                            } else {
                                10
                            }
                        });
                        let is_rowversion = c.ty == Some(SqlType::RowVersion);
                        ins.execute(params![
                            database,
                            t.schema,
                            t.name,
                            c.name,
                            i as i64 + 1,
                            c.default.as_ref().map(|d| format!("({d})")),
                            if c.not_null || c.pk > 0 || is_rowversion {
                                "NO"
                            } else {
                                "YES"
                            },
                            data_type,
                            max_len,
                            octets,
                            precision,
                            radix,
                            scale,
                            dt_precision,
                            text.then_some(
                                if matches!(
                                    c.ty,
                                    Some(SqlType::NChar(_) | SqlType::NVarChar(_) | SqlType::NText)
                                ) {
                                    "UNICODE"
                                } else {
                                    "iso_1"
                                }
                            ),
                            text.then_some("SQL_Latin1_General_CP1_CI_AS"),
                        ])?;
                    }
                }
            }
            View::TableConstraints => {
                let mut ins = conn.prepare(&format!(
                    "INSERT INTO temp.{temp} VALUES (?1, ?2, ?3, ?1, ?2, ?4, 'PRIMARY KEY', 'NO', 'NO')"
                ))?;
                for t in catalog.tables.iter().filter(|t| !t.key().is_empty()) {
                    ins.execute(params![database, t.schema, pk_name(t), t.name])?;
                }
            }
            View::KeyColumnUsage => {
                let mut ins = conn.prepare(&format!(
                    "INSERT INTO temp.{temp} VALUES (?1, ?2, ?3, ?1, ?2, ?4, ?5, ?6)"
                ))?;
                for t in &catalog.tables {
                    for (i, c) in t.key().iter().enumerate() {
                        ins.execute(params![
                            database,
                            t.schema,
                            pk_name(t),
                            t.name,
                            c.name,
                            i as i64 + 1
                        ])?;
                    }
                }
            }
            View::ChangeTrackingTables => {
                conn.execute(
                    &format!(
                        "INSERT INTO temp.{temp} SELECT object_id, 0, min_valid, begin_version, min_valid \
                         FROM main.__lb_ct_tables"
                    ),
                    [],
                )?;
            }
        }
        Ok(())
    }
}
