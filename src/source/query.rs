//! A dialect-neutral SELECT: which columns of which relation, AND-ed predicates, order and
//! limit. Identifiers in it come only from validated adapter definitions resolved against the
//! catalog; everything from a request is a [`Param`], bound and never spliced into SQL.

use super::SqlType;
use crate::model::{FieldType, Value};

/// What a query reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A table or view, with the exact spelling the catalog reported.
    Table {
        schema: Option<String>,
        name: String,
    },
    /// An adapter-provided SELECT used as a derived table.
    Query(String),
}

impl Relation {
    /// A short human name for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            Relation::Table {
                schema: Some(s),
                name,
            } => format!("{s}.{name}"),
            Relation::Table { schema: None, name } => name.clone(),
            Relation::Query(_) => "the adapter query".to_owned(),
        }
    }
}

/// A selected column and the type the source should decode it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectColumn {
    pub name: String,
    pub decode: FieldType,
}

/// A bound parameter: a value and the SQL type of the column it is compared with, so the
/// driver converts it as the column expects (e.g. CHAR(10) semantics for padded codes).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub value: Value,
    pub sql_type: SqlType,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    /// The SQL spelling.
    pub fn sql(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

/// A boolean condition over columns and parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Compare {
        column: String,
        op: CompareOp,
        param: Param,
    },
    In {
        column: String,
        params: Vec<Param>,
    },
    And(Vec<Predicate>),
    Or(Vec<Predicate>),
}

impl Predicate {
    /// Rows after `values` in the order of `columns` (`(column, sql type, descending)`):
    /// `(a, b, c) > (x, y, z)` spelled out as `a > x OR (a = x AND b > y) OR (a = x AND b = y
    /// AND c > z)`, with `<` for descending columns, so every engine understands it. Used by
    /// keyset pagination in the API and by cursor capture.
    pub fn keyset_after(columns: &[(String, SqlType, bool)], values: &[Value]) -> Predicate {
        let mut alternatives = Vec::with_capacity(columns.len());
        for n in 0..columns.len() {
            let terms = columns
                .iter()
                .zip(values)
                .take(n + 1)
                .enumerate()
                .map(
                    |(j, ((column, sql_type, descending), value))| Predicate::Compare {
                        column: column.clone(),
                        op: if j < n {
                            CompareOp::Eq
                        } else if *descending {
                            CompareOp::Lt
                        } else {
                            CompareOp::Gt
                        },
                        param: Param {
                            value: value.clone(),
                            sql_type: *sql_type,
                        },
                    },
                )
                .collect();
            alternatives.push(Predicate::And(terms));
        }
        Predicate::Or(alternatives)
    }
}

/// One ORDER BY term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub column: String,
    pub descending: bool,
    /// Order text by its bytes (code points) instead of the database's collation, so the
    /// order matches the one capture keeps its key state in.
    pub binary: bool,
}

/// A complete read-only query.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectQuery {
    pub relation: Relation,
    pub columns: Vec<SelectColumn>,
    /// AND-ed together.
    pub filter: Vec<Predicate>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<u64>,
}
