//! SQL dialects: identifier quoting and row limiting, read from the driver so one adapter
//! works on SQLite, MariaDB, PostgreSQL, SQL Server, DB2 and friends.

use super::query::{Param, Predicate, SelectQuery};

/// Which family of SQL a source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectKind {
    Sqlite,
    Mysql,
    Postgres,
    Mssql,
    Db2,
    Oracle,
    Access,
    Informix,
    Ansi,
}

/// How a query limits its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `... LIMIT n`
    Limit,
    /// `SELECT TOP n ...`
    Top,
    /// `... FETCH FIRST n ROWS ONLY`
    FetchFirst,
    /// `SELECT FIRST n ...` (Informix)
    First,
}

/// A dialect: how to quote identifiers and limit rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialect {
    pub kind: DialectKind,
    pub quote_open: char,
    pub quote_close: char,
    pub paging: Paging,
}

impl Dialect {
    /// The dialect for a kind, with its usual quoting.
    pub fn of(kind: DialectKind) -> Self {
        let (quote_open, quote_close) = match kind {
            DialectKind::Mysql => ('`', '`'),
            DialectKind::Mssql | DialectKind::Access => ('[', ']'),
            _ => ('"', '"'),
        };
        let paging = match kind {
            DialectKind::Sqlite | DialectKind::Mysql | DialectKind::Postgres => Paging::Limit,
            DialectKind::Mssql | DialectKind::Access => Paging::Top,
            DialectKind::Informix => Paging::First,
            DialectKind::Db2 | DialectKind::Oracle | DialectKind::Ansi => Paging::FetchFirst,
        };
        Self {
            kind,
            quote_open,
            quote_close,
            paging,
        }
    }

    /// Recognises a dialect from the DBMS name the driver reports (`SQL_DBMS_NAME`).
    pub fn detect(dbms_name: &str) -> Self {
        let n = dbms_name.to_ascii_lowercase();
        let kind = if n.contains("sqlite") {
            DialectKind::Sqlite
        } else if n.contains("mysql") || n.contains("mariadb") {
            DialectKind::Mysql
        } else if n.contains("postgres") {
            DialectKind::Postgres
        } else if n.contains("sql server") || n.contains("sybase") || n.contains("adaptive server")
        {
            DialectKind::Mssql
        } else if n.starts_with("db2") || n.contains("db2/") {
            DialectKind::Db2
        } else if n.contains("oracle") {
            DialectKind::Oracle
        } else if n.contains("access") || n.contains("jet") {
            DialectKind::Access
        } else if n.contains("informix") {
            DialectKind::Informix
        } else {
            DialectKind::Ansi
        };
        Self::of(kind)
    }

    /// Parses the `dialect` override of a source config.
    pub fn from_name(name: &str) -> Option<Self> {
        let kind = match name {
            "sqlite" => DialectKind::Sqlite,
            "mysql" | "mariadb" => DialectKind::Mysql,
            "postgres" | "postgresql" => DialectKind::Postgres,
            "mssql" | "sqlserver" => DialectKind::Mssql,
            "db2" => DialectKind::Db2,
            "oracle" => DialectKind::Oracle,
            "access" => DialectKind::Access,
            "informix" => DialectKind::Informix,
            "ansi" => DialectKind::Ansi,
            _ => return None,
        };
        Some(Self::of(kind))
    }

    /// Quotes an identifier, doubling any closing quote inside it.
    pub fn quote(&self, ident: &str) -> String {
        let mut out = String::with_capacity(ident.len() + 2);
        out.push(self.quote_open);
        for c in ident.chars() {
            if c == self.quote_close {
                out.push(c);
            }
            out.push(c);
        }
        out.push(self.quote_close);
        out
    }

    /// Renders a query to SQL with `?` placeholders, and the parameters in placeholder order.
    pub fn render(&self, q: &SelectQuery) -> (String, Vec<Param>) {
        let mut sql = String::from("SELECT ");
        let mut params = Vec::new();
        if let Some(n) = q.limit {
            match self.paging {
                Paging::Top => sql.push_str(&format!("TOP {n} ")),
                Paging::First => sql.push_str(&format!("FIRST {n} ")),
                _ => {}
            }
        }
        let cols: Vec<String> = q.columns.iter().map(|c| self.quote(&c.name)).collect();
        sql.push_str(&cols.join(", "));
        sql.push_str(" FROM ");
        sql.push_str(&self.from_clause(&q.relation));
        if !q.filter.is_empty() {
            sql.push_str(" WHERE ");
            let parts: Vec<String> = q
                .filter
                .iter()
                .map(|p| self.render_predicate(p, &mut params))
                .collect();
            sql.push_str(&parts.join(" AND "));
        }
        if !q.order_by.is_empty() {
            sql.push_str(" ORDER BY ");
            let parts: Vec<String> = q
                .order_by
                .iter()
                .map(|o| {
                    let dir = if o.descending { " DESC" } else { " ASC" };
                    let column = if o.binary {
                        self.binary_order(&o.column)
                    } else {
                        self.quote(&o.column)
                    };
                    format!("{column}{dir}")
                })
                .collect();
            sql.push_str(&parts.join(", "));
        }
        if let Some(n) = q.limit {
            match self.paging {
                Paging::Limit => sql.push_str(&format!(" LIMIT {n}")),
                Paging::FetchFirst => sql.push_str(&format!(" FETCH FIRST {n} ROWS ONLY")),
                _ => {}
            }
        }
        (sql, params)
    }

    /// A text column ordered by bytes (code points) rather than by the database collation;
    /// dialects without a portable spelling keep their collation (capture checks the order
    /// it receives and stops rather than trust a wrong one).
    pub fn binary_order(&self, column: &str) -> String {
        let q = self.quote(column);
        match self.kind {
            DialectKind::Sqlite => format!("{q} COLLATE BINARY"),
            DialectKind::Postgres => format!("{q} COLLATE \"C\""),
            DialectKind::Mysql => format!("CAST({q} AS BINARY)"),
            DialectKind::Mssql => format!("{q} COLLATE Latin1_General_BIN2"),
            _ => q,
        }
    }

    /// A query answering the database's current time in UTC as text, where the dialect has
    /// one; capture's settle window is measured on the legacy system's clock, not ours.
    pub fn utc_now_sql(&self) -> Option<&'static str> {
        match self.kind {
            DialectKind::Sqlite => Some("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"),
            DialectKind::Postgres => Some(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
            ),
            DialectKind::Mysql => Some("SELECT UTC_TIMESTAMP(6)"),
            DialectKind::Mssql => Some("SELECT SYSUTCDATETIME()"),
            DialectKind::Db2 => {
                Some("SELECT CURRENT TIMESTAMP - CURRENT TIMEZONE FROM SYSIBM.SYSDUMMY1")
            }
            DialectKind::Oracle => Some("SELECT SYS_EXTRACT_UTC(SYSTIMESTAMP) FROM DUAL"),
            DialectKind::Access | DialectKind::Informix | DialectKind::Ansi => None,
        }
    }

    /// The FROM target of a relation: a quoted (schema-qualified) table or a derived table.
    pub fn from_clause(&self, relation: &super::Relation) -> String {
        match relation {
            super::Relation::Table { schema, name } => match schema {
                Some(s) => format!("{}.{}", self.quote(s), self.quote(name)),
                None => self.quote(name),
            },
            super::Relation::Query(text) => {
                let alias = if self.kind == DialectKind::Oracle {
                    " q"
                } else {
                    " AS q"
                };
                format!("({}){alias}", text.trim().trim_end_matches(';'))
            }
        }
    }

    fn render_predicate(&self, p: &Predicate, params: &mut Vec<Param>) -> String {
        match p {
            Predicate::Compare { column, op, param } => {
                params.push(param.clone());
                format!("{} {} ?", self.quote(column), op.sql())
            }
            Predicate::In { column, params: ps } => {
                params.extend(ps.iter().cloned());
                let marks = vec!["?"; ps.len()].join(", ");
                format!("{} IN ({marks})", self.quote(column))
            }
            Predicate::And(ps) => self.render_group(ps, " AND ", "1=1", params),
            Predicate::Or(ps) => self.render_group(ps, " OR ", "1=0", params),
        }
    }

    fn render_group(
        &self,
        ps: &[Predicate],
        joiner: &str,
        empty: &str,
        params: &mut Vec<Param>,
    ) -> String {
        if ps.is_empty() {
            return empty.to_owned();
        }
        let parts: Vec<String> = ps
            .iter()
            .map(|p| self.render_predicate(p, params))
            .collect();
        format!("({})", parts.join(joiner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldType, Value};
    use crate::source::{CompareOp, OrderBy, Relation, SelectColumn, SqlType};

    fn query(limit: Option<u64>) -> SelectQuery {
        SelectQuery {
            relation: Relation::Table {
                schema: None,
                name: "STOCK_LEVEL".into(),
            },
            columns: vec![
                SelectColumn {
                    name: "ITEM_CODE".into(),
                    decode: FieldType::String,
                },
                SelectColumn {
                    name: "QTY".into(),
                    decode: FieldType::Decimal,
                },
            ],
            filter: vec![Predicate::Compare {
                column: "ITEM_CODE".into(),
                op: CompareOp::Eq,
                param: Param {
                    value: Value::Text("x' OR 1=1 --".into()),
                    sql_type: SqlType::Char { len: Some(10) },
                },
            }],
            order_by: vec![OrderBy {
                column: "ITEM_CODE".into(),
                descending: false,
                binary: false,
            }],
            limit,
        }
    }

    #[test]
    fn values_only_ever_become_placeholders() {
        let (sql, params) = Dialect::of(DialectKind::Postgres).render(&query(Some(51)));
        assert_eq!(
            sql,
            r#"SELECT "ITEM_CODE", "QTY" FROM "STOCK_LEVEL" WHERE "ITEM_CODE" = ? ORDER BY "ITEM_CODE" ASC LIMIT 51"#
        );
        assert_eq!(params.len(), 1);
        assert!(!sql.contains("OR 1=1"));
    }

    #[test]
    fn paging_follows_the_dialect() {
        let (sql, _) = Dialect::of(DialectKind::Mssql).render(&query(Some(5)));
        assert!(sql.starts_with("SELECT TOP 5 [ITEM_CODE]"), "{sql}");
        let (sql, _) = Dialect::of(DialectKind::Db2).render(&query(Some(5)));
        assert!(sql.ends_with("FETCH FIRST 5 ROWS ONLY"), "{sql}");
        let (sql, _) = Dialect::of(DialectKind::Mysql).render(&query(None));
        assert!(
            sql.contains("`STOCK_LEVEL`") && !sql.contains("LIMIT"),
            "{sql}"
        );
    }

    #[test]
    fn quoting_cannot_be_escaped() {
        let d = Dialect::of(DialectKind::Postgres);
        assert_eq!(d.quote(r#"a"b"#), r#""a""b""#);
        let d = Dialect::of(DialectKind::Mssql);
        assert_eq!(d.quote("a]b"), "[a]]b]");
    }

    #[test]
    fn detects_common_drivers() {
        assert_eq!(Dialect::detect("SQLite").kind, DialectKind::Sqlite);
        assert_eq!(Dialect::detect("MariaDB").kind, DialectKind::Mysql);
        assert_eq!(Dialect::detect("PostgreSQL").kind, DialectKind::Postgres);
        assert_eq!(
            Dialect::detect("Microsoft SQL Server").kind,
            DialectKind::Mssql
        );
        assert_eq!(Dialect::detect("DB2/LINUXX8664").kind, DialectKind::Db2);
        assert_eq!(Dialect::detect("Something Else").kind, DialectKind::Ansi);
    }
}
