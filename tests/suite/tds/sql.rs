//! The T-SQL subset, translated to SQLite. A batch is split into statements (at `;` or where
//! the next statement starts); each SELECT/INSERT/UPDATE/DELETE is rewritten token by token:
//! bracket identifiers quoted, schema-qualified names resolved through the [`Catalog`],
//! `TOP`/`OFFSET ... FETCH` turned into `LIMIT`/`OFFSET`, `@P1` into `?1`, T-SQL functions and
//! `@@` globals into SQLite expressions, `CHANGETABLE(CHANGES ...)` into a net-changes subquery
//! and INFORMATION_SCHEMA views into TEMP tables. Anything outside the subset is an error
//! numbered like SQL Server's (102 "Incorrect syntax near ...", 208 "Invalid object name ...").
//! See README.md for the list.

use std::time::Duration;

use super::capture;
use super::catalog::{Catalog, Table, View, quote};
use super::lexer::{Tok, lex};
use super::rpc::Param;
use super::types::{Len, SqlType};

/// An error as SQL Server reports it (ERROR token fields).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub number: u32,
    pub class: u8,
    pub state: u8,
    pub message: String,
}

impl SqlError {
    pub fn new(number: u32, message: impl Into<String>) -> SqlError {
        SqlError::with_class(number, 16, message)
    }

    pub fn with_class(number: u32, class: u8, message: impl Into<String>) -> SqlError {
        SqlError {
            number,
            class,
            state: 1,
            message: message.into(),
        }
    }

    /// 102 "Incorrect syntax near 'x'."
    pub fn syntax(near: &str) -> SqlError {
        SqlError::with_class(102, 15, format!("Incorrect syntax near '{near}'."))
    }

    fn near(tok: Option<&Tok>) -> SqlError {
        SqlError::syntax(&tok.map(Tok::shown).unwrap_or_default())
    }
}

/// The version string of `SELECT @@VERSION`.
pub const VERSION: &str = "legacy-bridge TDS test harness (speaks TDS 7.4 like Microsoft SQL Server 2022 \
                           16.0; answers a T-SQL subset from SQLite; not a SQL Server)";

/// One statement of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Query(Vec<Tok>),
    Dml(DmlKind, Vec<Tok>),
    Set(SetOption),
    Begin,
    Commit,
    /// ROLLBACK, to a savepoint when named.
    Rollback(Option<String>),
    Save(String),
    WaitFor(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmlKind {
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetOption {
    NoCount(bool),
    Isolation(String),
    /// Accepted and ignored (ANSI_NULLS, XACT_ABORT, LOCK_TIMEOUT, TEXTSIZE, ...).
    Other,
}

/// What a translation needs to know about the session and server.
pub struct Ctx<'a> {
    pub catalog: &'a Catalog,
    pub params: &'a [Param],
    pub tracked: &'a [String],
    pub trancount: u32,
    pub spid: u16,
    pub rowcount: i64,
    /// The smallest rowversion a test holds "in flight".
    pub min_reserved_rv: Option<i64>,
}

/// A select-list item: how to name and type its result column(s).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `*` or `t.*` (expands to several columns).
    pub star: bool,
    /// The column name SQL Server would give (`""` for an unnamed expression).
    pub name: Option<String>,
    /// The type when SQLite cannot tell (CAST, functions, parameters, aggregates of a column).
    pub hint: Option<SqlType>,
}

/// A statement translated for SQLite.
#[derive(Debug, Clone)]
pub struct Translated {
    pub sql: String,
    pub items: Vec<Item>,
    pub views: Vec<View>,
    /// The table a DML statement writes (SQLite name).
    pub target: Option<String>,
}

const STARTERS: [&str; 18] = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "SET", "BEGIN", "COMMIT", "ROLLBACK", "SAVE",
    "WAITFOR", "DECLARE", "EXEC", "EXECUTE", "IF", "WHILE", "PRINT", "CREATE", "DROP",
];

/// T-SQL reserved words (and the few contextual words the subset uses) that are never
/// identifiers when bare.
const KEYWORDS: &[&str] = &[
    "ADD",
    "ALL",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CHECK",
    "COLLATE",
    "COMMIT",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "CURRENT_TIMESTAMP",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DROP",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXEC",
    "EXECUTE",
    "EXISTS",
    "FETCH",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "IN",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "NOT",
    "NULL",
    "OF",
    "OFF",
    "ON",
    "OPTION",
    "OR",
    "ORDER",
    "OUTER",
    "OUTPUT",
    "PERCENT",
    "PRIMARY",
    "RIGHT",
    "ROLLBACK",
    "SELECT",
    "SET",
    "SOME",
    "TABLE",
    "THEN",
    "TO",
    "TOP",
    "TRAN",
    "TRANSACTION",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "VALUES",
    "WAITFOR",
    "WHEN",
    "WHERE",
    "WHILE",
    "WITH",
    "OFFSET",
    "OVER",
    "PARTITION",
];

pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Splits a batch into statements and checks their outline.
pub fn parse_batch(text: &str) -> Result<Vec<Statement>, SqlError> {
    let toks = lex(text)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i].is_op(";") {
            i += 1;
            continue;
        }
        let end = statement_end(&toks, i);
        out.push(classify(toks[i..end].to_vec())?);
        i = end;
    }
    Ok(out)
}

fn statement_end(toks: &[Tok], start: usize) -> usize {
    let first = &toks[start];
    let mut depth = 0i32;
    let mut seen_set = false;
    let mut seen_values_or_select = false;
    for j in start + 1..toks.len() {
        let t = &toks[j];
        if t.is_op("(") {
            depth += 1;
        } else if t.is_op(")") {
            depth -= 1;
        }
        if depth > 0 {
            continue;
        }
        if t.is_op(";") && depth == 0 {
            return j;
        }
        let Tok::Word(w) = t else { continue };
        if !STARTERS.iter().any(|s| s.eq_ignore_ascii_case(w)) {
            if w.eq_ignore_ascii_case("VALUES") {
                seen_values_or_select = true;
            }
            continue;
        }
        let prev = &toks[j - 1];
        let continues = if t.is_kw("SELECT") {
            prev.is_kw("UNION")
                || prev.is_kw("ALL")
                || prev.is_kw("EXCEPT")
                || prev.is_kw("INTERSECT")
                || prev.is_op("(")
                || (first.is_kw("INSERT") && !seen_values_or_select)
        } else if t.is_kw("SET") {
            first.is_kw("UPDATE") && !seen_set
        } else {
            false
        };
        if t.is_kw("SELECT") && first.is_kw("INSERT") {
            seen_values_or_select = true;
        }
        if t.is_kw("SET") && first.is_kw("UPDATE") {
            seen_set = true;
        }
        if !continues {
            return j;
        }
    }
    toks.len()
}

fn classify(toks: Vec<Tok>) -> Result<Statement, SqlError> {
    let word = |i: usize| match toks.get(i) {
        Some(Tok::Word(w)) => Some(w.to_ascii_uppercase()),
        _ => None,
    };
    let first = word(0).ok_or_else(|| SqlError::near(toks.first()))?;
    let is_tran = |w: Option<String>| matches!(w.as_deref(), Some("TRAN" | "TRANSACTION" | "WORK"));
    let stmt = match first.as_str() {
        "SELECT" => Statement::Query(toks),
        "INSERT" => Statement::Dml(DmlKind::Insert, toks),
        "UPDATE" => Statement::Dml(DmlKind::Update, toks),
        "DELETE" => Statement::Dml(DmlKind::Delete, toks),
        "BEGIN" => {
            let at = if word(1).as_deref() == Some("DISTRIBUTED") {
                2
            } else {
                1
            };
            if !matches!(word(at).as_deref(), Some("TRAN" | "TRANSACTION")) {
                return Err(SqlError::near(toks.get(at).or(toks.first())));
            }
            Statement::Begin
        }
        "COMMIT" => Statement::Commit,
        "ROLLBACK" => {
            let at = if is_tran(word(1)) { 2 } else { 1 };
            match toks.get(at) {
                None => Statement::Rollback(None),
                Some(Tok::Word(n) | Tok::Quoted(n)) => Statement::Rollback(Some(n.clone())),
                other => return Err(SqlError::near(other)),
            }
        }
        "SAVE" => match (is_tran(word(1)), toks.get(2)) {
            (true, Some(Tok::Word(n) | Tok::Quoted(n))) => Statement::Save(n.clone()),
            _ => return Err(SqlError::near(toks.get(1).or(toks.first()))),
        },
        "WAITFOR" => match (word(1).as_deref(), toks.get(2)) {
            (Some("DELAY"), Some(Tok::Str { text, .. })) => {
                let m = super::types::Moment::parse(text)
                    .filter(|m| m.days == 693_595)
                    .ok_or_else(|| {
                        SqlError::new(
                            148,
                            "Incorrect time syntax in time string used with WAITFOR.",
                        )
                    })?;
                Statement::WaitFor(Duration::from_nanos(m.nanos))
            }
            _ => return Err(SqlError::near(toks.get(1).or(toks.first()))),
        },
        "SET" => match toks.get(1) {
            Some(Tok::Var(v)) => {
                return Err(SqlError::new(
                    137,
                    format!("Must declare the scalar variable \"@{v}\"."),
                ));
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NOCOUNT") => match word(2).as_deref() {
                Some("ON") => Statement::Set(SetOption::NoCount(true)),
                Some("OFF") => Statement::Set(SetOption::NoCount(false)),
                _ => return Err(SqlError::near(toks.get(2).or(toks.get(1)))),
            },
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("TRANSACTION") => {
                if word(2).as_deref() != Some("ISOLATION") || word(3).as_deref() != Some("LEVEL") {
                    return Err(SqlError::near(toks.get(2).or(toks.get(1))));
                }
                let level: Vec<String> = (4..toks.len()).filter_map(word).collect();
                let level = level.join(" ");
                if !matches!(
                    level.as_str(),
                    "READ UNCOMMITTED"
                        | "READ COMMITTED"
                        | "REPEATABLE READ"
                        | "SNAPSHOT"
                        | "SERIALIZABLE"
                ) {
                    return Err(SqlError::near(toks.get(4).or(toks.last())));
                }
                Statement::Set(SetOption::Isolation(level))
            }
            Some(Tok::Word(_)) => Statement::Set(SetOption::Other),
            other => return Err(SqlError::near(other.or(toks.first()))),
        },
        "EXEC" | "EXECUTE" => {
            let name = toks.get(1).map(Tok::shown).unwrap_or_default();
            return Err(SqlError::new(
                2812,
                format!("Could not find stored procedure '{name}'."),
            ));
        }
        _ => return Err(SqlError::near(toks.first())),
    };
    Ok(stmt)
}

/// Translates a query or DML statement for SQLite.
pub fn translate(stmt: &Statement, ctx: &Ctx<'_>) -> Result<Translated, SqlError> {
    let mut tr = Tr {
        ctx,
        views: Vec::new(),
    };
    let (sql, items, target) = match stmt {
        Statement::Query(toks) => {
            let (sql, items) = tr.query(toks)?;
            (sql, items, None)
        }
        Statement::Dml(DmlKind::Insert, toks) => {
            let (sql, t) = tr.insert(toks)?;
            (sql, Vec::new(), Some(t))
        }
        Statement::Dml(DmlKind::Update, toks) => {
            let (sql, t) = tr.update(toks)?;
            (sql, Vec::new(), Some(t))
        }
        Statement::Dml(DmlKind::Delete, toks) => {
            let (sql, t) = tr.delete(toks)?;
            (sql, Vec::new(), Some(t))
        }
        _ => return Err(SqlError::syntax("")),
    };
    let mut views = tr.views;
    views.dedup();
    Ok(Translated {
        sql,
        items,
        views,
        target,
    })
}

/// A translated `SELECT` core.
struct Core {
    sql: String,
    items: Vec<Item>,
    /// The TOP limit.
    top: Option<String>,
    /// (alias, SQLite table) of its FROM clause.
    scope: Vec<(String, Option<String>)>,
}

/// One FROM-clause entry, for resolving column references.
struct Scoped<'a> {
    alias: String,
    table: Option<&'a Table>,
}

struct Tr<'c> {
    ctx: &'c Ctx<'c>,
    views: Vec<View>,
}

/// Index of the `)` matching the `(` at `open`.
fn matching(t: &[Tok], open: usize) -> Result<usize, SqlError> {
    let mut depth = 0i32;
    for (i, tok) in t.iter().enumerate().skip(open) {
        if tok.is_op("(") {
            depth += 1;
        } else if tok.is_op(")") {
            depth -= 1;
            if depth == 0 {
                return Ok(i);
            }
        }
    }
    Err(SqlError::near(t.get(open)))
}

/// First index at parenthesis depth 0 (from `from`) where `pred` holds.
fn find_top(t: &[Tok], from: usize, pred: impl Fn(&Tok) -> bool) -> Option<usize> {
    let mut depth = 0i32;
    for (i, tok) in t.iter().enumerate().skip(from) {
        if tok.is_op("(") {
            depth += 1;
        } else if tok.is_op(")") {
            depth -= 1;
        } else if depth == 0 && pred(tok) {
            return Some(i);
        }
    }
    None
}

/// Last index at parenthesis depth 0 where `pred` holds.
fn last_top(t: &[Tok], pred: impl Fn(&Tok) -> bool) -> Option<usize> {
    let mut found = None;
    let mut at = 0;
    while let Some(i) = find_top(t, at, &pred) {
        found = Some(i);
        at = i + 1;
    }
    found
}

/// Splits at depth-0 commas.
fn split_commas(t: &[Tok]) -> Vec<&[Tok]> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = find_top(t, start, |tok| tok.is_op(",")) {
        out.push(&t[start..i]);
        start = i + 1;
    }
    out.push(&t[start..]);
    out
}

fn ident(tok: &Tok) -> Option<&str> {
    match tok {
        Tok::Word(w) if !is_keyword(w) => Some(w),
        Tok::Quoted(q) => Some(q),
        _ => None,
    }
}

/// Reads a dotted name at `*i` (`a`, `a.b`, `[a].[b].c`, `db..t`); advances `*i`.
fn name_parts(t: &[Tok], i: &mut usize) -> Option<Vec<String>> {
    let mut parts = vec![ident(t.get(*i)?)?.to_owned()];
    *i += 1;
    while t.get(*i).is_some_and(|d| d.is_op(".")) {
        if t.get(*i + 1).is_some_and(|d| d.is_op(".")) {
            parts.push(String::new());
            *i += 1;
            continue;
        }
        match t.get(*i + 1).and_then(ident) {
            Some(p) => {
                parts.push(p.to_owned());
                *i += 2;
            }
            None => break,
        }
    }
    Some(parts)
}

/// True when `t` is exactly a dotted identifier chain (a column reference).
fn as_column_ref(t: &[Tok]) -> Option<Vec<String>> {
    let mut i = 0;
    let parts = name_parts(t, &mut i)?;
    (i == t.len()).then_some(parts)
}

fn written(parts: &[String]) -> String {
    parts.join(".")
}

/// The type named by tokens like `DECIMAL ( 10 , 2 )` or `nvarchar(max)`.
fn parse_type(t: &[Tok]) -> Result<SqlType, SqlError> {
    let text: Vec<String> = t
        .iter()
        .map(|tok| match tok {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Num(w) => w.clone(),
            other => other.shown(),
        })
        .collect();
    let text = text
        .join(" ")
        .replace(" ( ", "(")
        .replace(" , ", ",")
        .replace(" )", ")");
    SqlType::parse(&text).ok_or_else(|| {
        SqlError::new(
            243,
            format!(
                "Type {} is not a defined system type.",
                text.split('(').next().unwrap_or("")
            ),
        )
    })
}

/// The type SQL Server gives a numeric literal: int, numeric(p,s) with a point or when too big
/// for int, float with an exponent.
fn literal_type(n: &str) -> Option<SqlType> {
    if n.contains(['e', 'E']) {
        return Some(SqlType::Float);
    }
    let (int_part, frac) = n.split_once('.').unwrap_or((n, ""));
    let int_digits = int_part.trim_start_matches('0').len();
    if frac.is_empty() && int_part.parse::<i32>().is_ok() {
        return Some(SqlType::Int);
    }
    let scale = u8::try_from(frac.len()).ok()?;
    let precision = u8::try_from(int_digits).ok()?.checked_add(scale)?.max(1);
    (precision <= 38).then_some(SqlType::Decimal {
        precision,
        scale,
        numeric: true,
    })
}

/// Types of well-known result column names (CHANGETABLE's) when SQLite gives none.
pub fn type_by_name(name: &str) -> Option<SqlType> {
    match name.to_ascii_uppercase().as_str() {
        "SYS_CHANGE_VERSION" | "SYS_CHANGE_CREATION_VERSION" => Some(SqlType::BigInt),
        "SYS_CHANGE_OPERATION" => Some(SqlType::NChar(1)),
        "SYS_CHANGE_COLUMNS" => Some(SqlType::VarBinary(Len::N(4100))),
        "SYS_CHANGE_CONTEXT" => Some(SqlType::VarBinary(Len::N(128))),
        _ => None,
    }
}

impl<'c> Tr<'c> {
    // ---- queries ---------------------------------------------------------------------

    fn query(&mut self, t: &[Tok]) -> Result<(String, Vec<Item>), SqlError> {
        let order = find_top(t, 0, |k| k.is_kw("ORDER"));
        let offset_at = find_top(t, 0, |k| k.is_kw("OFFSET"));
        let body_end = order.or(offset_at).unwrap_or(t.len());
        let body = &t[..body_end];
        // split into SELECT cores at UNION / EXCEPT / INTERSECT
        let mut cores = Vec::new();
        let mut start = 0;
        while let Some(i) = find_top(body, start, |k| {
            k.is_kw("UNION") || k.is_kw("EXCEPT") || k.is_kw("INTERSECT")
        }) {
            let mut op = body[i].shown().to_ascii_uppercase();
            let mut next = i + 1;
            if body.get(next).is_some_and(|k| k.is_kw("ALL")) {
                op.push_str(" ALL");
                next += 1;
            }
            cores.push((&body[start..i], Some(op)));
            start = next;
        }
        cores.push((&body[start..], None));
        let mut sql = String::new();
        let mut items = None;
        let mut limit = None;
        let mut first_scope = None;
        for (core, op) in cores {
            if !core.first().is_some_and(|k| k.is_kw("SELECT")) {
                return Err(SqlError::near(core.first().or(body.last())));
            }
            let c = self.core(core)?;
            sql.push_str(&c.sql);
            if let Some(op) = op {
                sql.push(' ');
                sql.push_str(&op);
                sql.push(' ');
            }
            items.get_or_insert(c.items);
            first_scope.get_or_insert(c.scope);
            if c.top.is_some() {
                limit = c.top;
            }
        }
        let items = items.unwrap_or_default();
        // ORDER BY ... [OFFSET n ROWS [FETCH NEXT m ROWS ONLY]]
        let mut i = body_end;
        if let Some(o) = order {
            if !t.get(o + 1).is_some_and(|k| k.is_kw("BY")) {
                return Err(SqlError::near(t.get(o + 1).or(t.get(o))));
            }
            let end = find_top(t, o + 2, |k| {
                k.is_kw("OFFSET") || k.is_kw("FOR") || k.is_kw("OPTION")
            })
            .unwrap_or(t.len());
            let catalog = self.ctx.catalog;
            let scope: Vec<Scoped<'_>> = first_scope
                .unwrap_or_default()
                .into_iter()
                .map(|(alias, table)| Scoped {
                    alias,
                    table: table.and_then(|n| catalog.tables.iter().find(|t| t.sqlite_name == n)),
                })
                .collect();
            let mut terms = Vec::new();
            for term in split_commas(&t[o + 2..end]) {
                terms.push(self.order_term(term, &scope, &items)?);
            }
            sql.push_str(" ORDER BY ");
            sql.push_str(&terms.join(", "));
            i = end;
        }
        if t.get(i).is_some_and(|k| k.is_kw("OFFSET")) {
            if order.is_none() {
                return Err(SqlError::near(t.get(i)));
            }
            if limit.is_some() {
                return Err(SqlError::new(
                    10741,
                    "A TOP can not be used in the same query or sub-query as a OFFSET.",
                ));
            }
            let rows = find_top(t, i + 1, |k| k.is_kw("ROWS") || k.is_kw("ROW"))
                .ok_or_else(|| SqlError::near(t.last()))?;
            let offset = self.expr(&t[i + 1..rows], &Vec::new())?;
            i = rows + 1;
            let mut fetch = None;
            if t.get(i).is_some_and(|k| k.is_kw("FETCH")) {
                if !t
                    .get(i + 1)
                    .is_some_and(|k| k.is_kw("NEXT") || k.is_kw("FIRST"))
                {
                    return Err(SqlError::near(t.get(i + 1).or(t.get(i))));
                }
                let rows = find_top(t, i + 2, |k| k.is_kw("ROWS") || k.is_kw("ROW"))
                    .ok_or_else(|| SqlError::near(t.last()))?;
                fetch = Some(self.expr(&t[i + 2..rows], &Vec::new())?);
                if !t.get(rows + 1).is_some_and(|k| k.is_kw("ONLY")) {
                    return Err(SqlError::near(t.get(rows + 1).or(t.get(rows))));
                }
                i = rows + 2;
            }
            sql.push_str(&format!(
                " LIMIT {} OFFSET {offset}",
                fetch.as_deref().unwrap_or("-1")
            ));
        } else if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        if t.get(i).is_some_and(|k| k.is_kw("OPTION")) && t.get(i + 1).is_some_and(|k| k.is_op("("))
        {
            i = matching(t, i + 1)? + 1; // query hints are accepted and ignored
        }
        if i < t.len() {
            return Err(SqlError::near(t.get(i)));
        }
        Ok((sql, items))
    }

    /// An ORDER BY term; text columns sort with the server collation (case-insensitive), as
    /// comparisons with text parameters do, so keyset paging stays consistent.
    fn order_term(
        &mut self,
        term: &[Tok],
        scope: &[Scoped<'_>],
        items: &[Item],
    ) -> Result<String, SqlError> {
        let (e, dir) = match term.last() {
            Some(k) if k.is_kw("ASC") || k.is_kw("DESC") => (
                &term[..term.len() - 1],
                Some(k.shown().to_ascii_uppercase()),
            ),
            _ => (term, None),
        };
        if e.is_empty() {
            return Err(SqlError::near(term.first()));
        }
        let mut sql = self.expr(e, scope)?;
        let text = match as_column_ref(e) {
            Some(parts) => match self.resolve_column(&parts, scope) {
                Some((_, c)) => c.ty.is_some_and(|ty| ty.is_text()),
                None => {
                    parts.len() == 1
                        && items.iter().any(|it| {
                            it.name
                                .as_deref()
                                .is_some_and(|n| n.eq_ignore_ascii_case(&parts[0]))
                                && it.hint.is_some_and(|ty| ty.is_text())
                        })
                }
            },
            None => false,
        };
        if text {
            sql.push_str(" COLLATE TSQL");
        }
        if let Some(dir) = dir {
            sql.push(' ');
            sql.push_str(&dir);
        }
        Ok(sql)
    }

    /// One `SELECT ... [FROM ...] [WHERE ...] [GROUP BY ...] [HAVING ...]`; returns its SQL,
    /// items and TOP limit.
    fn core(&mut self, t: &[Tok]) -> Result<Core, SqlError> {
        let mut i = 1;
        let mut head = String::from("SELECT ");
        if t.get(i)
            .is_some_and(|k| k.is_kw("DISTINCT") || k.is_kw("ALL"))
        {
            head.push_str(&t[i].shown().to_ascii_uppercase());
            head.push(' ');
            i += 1;
        }
        let mut top = None;
        if t.get(i).is_some_and(|k| k.is_kw("TOP")) {
            i += 1;
            if t.get(i).is_some_and(|k| k.is_op("(")) {
                let close = matching(t, i)?;
                top = Some(self.expr(&t[i + 1..close], &Vec::new())?);
                i = close + 1;
            } else if matches!(t.get(i), Some(Tok::Num(_) | Tok::Var(_))) {
                top = Some(self.expr(&t[i..i + 1], &Vec::new())?);
                i += 1;
            } else {
                return Err(SqlError::near(t.get(i)));
            }
            if t.get(i)
                .is_some_and(|k| k.is_kw("PERCENT") || k.is_kw("WITH"))
            {
                return Err(SqlError::near(t.get(i)));
            }
        }
        let clause = |k: &Tok| {
            k.is_kw("FROM")
                || k.is_kw("WHERE")
                || k.is_kw("GROUP")
                || k.is_kw("HAVING")
                || k.is_kw("INTO")
        };
        let list_end = find_top(t, i, clause).unwrap_or(t.len());
        let mut from = None;
        let mut where_ = None;
        let mut group = None;
        let mut having = None;
        let mut at = list_end;
        while at < t.len() {
            let next = find_top(t, at + 1, clause).unwrap_or(t.len());
            let k = &t[at];
            if k.is_kw("FROM") && from.is_none() && where_.is_none() && group.is_none() {
                from = Some(&t[at + 1..next]);
            } else if k.is_kw("WHERE") && where_.is_none() && group.is_none() {
                where_ = Some(&t[at + 1..next]);
            } else if k.is_kw("GROUP")
                && group.is_none()
                && t.get(at + 1).is_some_and(|b| b.is_kw("BY"))
            {
                group = Some(&t[at + 2..next]);
            } else if k.is_kw("HAVING") && having.is_none() {
                having = Some(&t[at + 1..next]);
            } else {
                return Err(SqlError::near(Some(k)));
            }
            at = next;
        }
        let mut scope = Vec::new();
        let from_sql = match from {
            Some(f) => Some(self.from(f, &mut scope)?),
            None => None,
        };
        let list = &t[i..list_end];
        if list.is_empty() {
            return Err(SqlError::near(t.get(i).or(t.last())));
        }
        let mut items = Vec::new();
        let mut parts = Vec::new();
        for item in split_commas(list) {
            let (sql, it) = self.item(item, &scope)?;
            parts.push(sql);
            items.push(it);
        }
        let mut sql = head + &parts.join(", ");
        if let Some(f) = from_sql {
            sql.push_str(" FROM ");
            sql.push_str(&f);
        }
        if let Some(w) = where_ {
            sql.push_str(" WHERE ");
            sql.push_str(&self.expr(w, &scope)?);
        }
        if let Some(g) = group {
            sql.push_str(" GROUP BY ");
            sql.push_str(&self.expr(g, &scope)?);
        }
        if let Some(h) = having {
            sql.push_str(" HAVING ");
            sql.push_str(&self.expr(h, &scope)?);
        }
        let scope = scope
            .iter()
            .map(|s| (s.alias.clone(), s.table.map(|t| t.sqlite_name.clone())))
            .collect();
        Ok(Core {
            sql,
            items,
            top,
            scope,
        })
    }

    fn item(&mut self, t: &[Tok], scope: &[Scoped<'_>]) -> Result<(String, Item), SqlError> {
        let n = t.len();
        if n == 1 && t[0].is_op("*") {
            return Ok((
                "*".into(),
                Item {
                    star: true,
                    name: None,
                    hint: None,
                },
            ));
        }
        if n >= 3 && t[n - 1].is_op("*") && t[n - 2].is_op(".") {
            let mut i = 0;
            let parts = name_parts(&t[..n - 2], &mut i)
                .filter(|_| i == n - 2)
                .ok_or_else(|| SqlError::near(t.first()))?;
            let q = parts.last().cloned().unwrap_or_default();
            return Ok((
                format!("{}.*", quote(&q)),
                Item {
                    star: true,
                    name: None,
                    hint: None,
                },
            ));
        }
        let value_end = |tok: &Tok| match tok {
            Tok::Word(w) => {
                !is_keyword(w) || w.eq_ignore_ascii_case("END") || w.eq_ignore_ascii_case("NULL")
            }
            Tok::Op(o) => *o == ")",
            Tok::Quoted(_)
            | Tok::Num(_)
            | Tok::Str { .. }
            | Tok::Var(_)
            | Tok::Global(_)
            | Tok::Bin(_) => true,
        };
        let alias_tok = |tok: &Tok| match tok {
            Tok::Word(w) if !is_keyword(w) => Some(w.clone()),
            Tok::Quoted(q) => Some(q.clone()),
            Tok::Str { text, .. } => Some(text.clone()),
            _ => None,
        };
        let (alias, expr) = if n >= 3 && t[n - 2].is_kw("AS") {
            (
                Some(alias_tok(&t[n - 1]).ok_or_else(|| SqlError::near(t.last()))?),
                &t[..n - 2],
            )
        } else if n >= 3 && ident(&t[0]).is_some() && t[1].is_op("=") {
            (alias_tok(&t[0]), &t[2..])
        } else if n >= 2 && ident(&t[n - 1]).is_some() && value_end(&t[n - 2]) {
            (alias_tok(&t[n - 1]), &t[..n - 1])
        } else {
            (None, t)
        };
        if expr.is_empty() {
            return Err(SqlError::near(t.first()));
        }
        let sql = self.expr(expr, scope)?;
        let column = as_column_ref(expr);
        let hint = self.hint(expr, scope);
        let name = alias.clone().or_else(|| {
            column.as_ref().map(|parts| {
                let last = parts.last().cloned().unwrap_or_default();
                self.resolve_column(parts, scope)
                    .map(|(_, c)| c.name.clone())
                    .unwrap_or(last)
            })
        });
        let sql = match &alias {
            Some(a) => format!("{sql} AS {}", quote(a)),
            None => sql,
        };
        Ok((
            sql,
            Item {
                star: false,
                name: Some(name.unwrap_or_default()),
                hint,
            },
        ))
    }

    fn resolve_column<'s>(
        &self,
        parts: &[String],
        scope: &'s [Scoped<'s>],
    ) -> Option<(&'s Table, &'s super::catalog::Column)> {
        let col = parts.last()?;
        if parts.len() >= 2 {
            let q = &parts[parts.len() - 2];
            let entry = scope.iter().find(|s| s.alias.eq_ignore_ascii_case(q))?;
            let table = entry.table?;
            return table.column(col).map(|c| (table, c));
        }
        scope
            .iter()
            .filter_map(|s| s.table)
            .find_map(|t| t.column(col).map(|c| (t, c)))
    }

    /// The type of a select-list expression when SQLite will not declare one.
    fn hint(&self, e: &[Tok], scope: &[Scoped<'_>]) -> Option<SqlType> {
        if let Some(parts) = as_column_ref(e) {
            return self
                .resolve_column(&parts, scope)
                .and_then(|(_, c)| c.ty)
                .or_else(|| type_by_name(parts.last()?));
        }
        match e {
            [Tok::Num(n)] | [Tok::Op("-" | "+"), Tok::Num(n)] => return literal_type(n),
            [Tok::Var(v)] => return self.param(v).and_then(|(_, p)| p.ty),
            [Tok::Global(g)] => {
                return match g.to_ascii_uppercase().as_str() {
                    "VERSION" => Some(SqlType::NVarChar(Len::N(300))),
                    "DBTS" => Some(SqlType::VarBinary(Len::N(8))),
                    "TRANCOUNT" | "SPID" | "ROWCOUNT" => Some(SqlType::Int),
                    "IDENTITY" => Some(SqlType::Decimal {
                        precision: 38,
                        scale: 0,
                        numeric: true,
                    }),
                    "SERVERNAME" | "SERVICENAME" | "LANGUAGE" => {
                        Some(SqlType::NVarChar(Len::N(128)))
                    }
                    _ => None,
                };
            }
            [Tok::Word(w)] if w.eq_ignore_ascii_case("CURRENT_TIMESTAMP") => {
                return Some(SqlType::DateTime);
            }
            [Tok::Op("("), inner @ .., Tok::Op(")")]
                if matching(e, 0).ok() == Some(e.len() - 1) =>
            {
                return self.hint(inner, scope);
            }
            _ => {}
        }
        let (Some(Tok::Word(f)), Some(open)) = (e.first(), e.get(1)) else {
            return None;
        };
        if !open.is_op("(") || matching(e, 1).ok() != Some(e.len() - 1) {
            return None;
        }
        let args = &e[2..e.len() - 1];
        let arg_type = |a: &[Tok]| {
            as_column_ref(a)
                .and_then(|p| self.resolve_column(&p, scope).and_then(|(_, c)| c.ty))
                .or_else(|| self.hint(a, scope))
        };
        match f.to_ascii_uppercase().as_str() {
            "CAST" | "TRY_CAST" => {
                let as_at = last_top(args, |k| k.is_kw("AS"))?;
                parse_type(&args[as_at + 1..]).ok()
            }
            "CONVERT" | "TRY_CONVERT" => parse_type(split_commas(args).first()?).ok(),
            "COUNT" => Some(SqlType::Int),
            "COUNT_BIG" => Some(SqlType::BigInt),
            "GETDATE" | "GETUTCDATE" => Some(SqlType::DateTime),
            "SYSDATETIME" | "SYSUTCDATETIME" => Some(SqlType::DateTime2(7)),
            "SYSDATETIMEOFFSET" => Some(SqlType::DateTimeOffset(7)),
            "NEWID" => Some(SqlType::UniqueIdentifier),
            "OBJECT_ID" | "LEN" => Some(SqlType::Int),
            "CHANGE_TRACKING_CURRENT_VERSION" | "CHANGE_TRACKING_MIN_VALID_VERSION" => {
                Some(SqlType::BigInt)
            }
            "MIN_ACTIVE_ROWVERSION" => Some(SqlType::Binary(8)),
            "SCOPE_IDENTITY" => Some(SqlType::Decimal {
                precision: 38,
                scale: 0,
                numeric: true,
            }),
            "MIN" | "MAX" | "ISNULL" | "COALESCE" => arg_type(split_commas(args).first()?),
            "SUM" | "AVG" => match arg_type(args)? {
                SqlType::TinyInt | SqlType::SmallInt | SqlType::Int => Some(SqlType::Int),
                SqlType::Decimal { scale, numeric, .. } => Some(SqlType::Decimal {
                    precision: 38,
                    scale,
                    numeric,
                }),
                SqlType::Real => Some(SqlType::Float),
                other => Some(other),
            },
            _ => None,
        }
    }

    // ---- FROM ------------------------------------------------------------------------

    fn from<'s>(&mut self, t: &[Tok], scope: &mut Vec<Scoped<'s>>) -> Result<String, SqlError>
    where
        'c: 's,
    {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let (sql, entry, next) = self.table_source(t, i)?;
            out.push(sql);
            scope.push(entry);
            i = next;
            if i >= t.len() {
                break;
            }
            if t[i].is_op(",") {
                out.push(",".into());
                i += 1;
                continue;
            }
            let mut join = Vec::new();
            while t.get(i).is_some_and(|k| {
                k.is_kw("INNER")
                    || k.is_kw("LEFT")
                    || k.is_kw("RIGHT")
                    || k.is_kw("FULL")
                    || k.is_kw("OUTER")
                    || k.is_kw("CROSS")
            }) {
                join.push(t[i].shown().to_ascii_uppercase());
                i += 1;
            }
            if !t.get(i).is_some_and(|k| k.is_kw("JOIN")) {
                return Err(SqlError::near(t.get(i)));
            }
            join.push("JOIN".into());
            out.push(join.join(" "));
            let (sql, entry, next) = self.table_source(t, i + 1)?;
            out.push(sql);
            scope.push(entry);
            i = next;
            if t.get(i).is_some_and(|k| k.is_kw("ON")) {
                let end = find_top(t, i + 1, |k| {
                    k.is_op(",")
                        || k.is_kw("JOIN")
                        || k.is_kw("INNER")
                        || k.is_kw("LEFT")
                        || k.is_kw("RIGHT")
                        || k.is_kw("FULL")
                        || k.is_kw("CROSS")
                })
                .unwrap_or(t.len());
                out.push(format!("ON {}", self.expr(&t[i + 1..end], scope)?));
                i = end;
            }
            if i >= t.len() {
                break;
            }
        }
        Ok(out.join(" "))
    }

    /// An optional `[AS] alias` at `*i`.
    fn alias(t: &[Tok], i: &mut usize) -> Result<Option<String>, SqlError> {
        if t.get(*i).is_some_and(|k| k.is_kw("AS")) {
            let a = t
                .get(*i + 1)
                .and_then(ident)
                .ok_or_else(|| SqlError::near(t.get(*i + 1).or(t.get(*i))))?;
            *i += 2;
            return Ok(Some(a.to_owned()));
        }
        match t.get(*i).and_then(ident) {
            Some(a) => {
                *i += 1;
                Ok(Some(a.to_owned()))
            }
            None => Ok(None),
        }
    }

    fn table_source<'s>(
        &mut self,
        t: &[Tok],
        mut i: usize,
    ) -> Result<(String, Scoped<'s>, usize), SqlError>
    where
        'c: 's,
    {
        let first = t.get(i).ok_or_else(|| SqlError::near(t.last()))?;
        if first.is_op("(") {
            let close = matching(t, i)?;
            let inner = &t[i + 1..close];
            if !inner.first().is_some_and(|k| k.is_kw("SELECT")) {
                return Err(SqlError::near(inner.first()));
            }
            let (q, _) = self.query(inner)?;
            i = close + 1;
            let alias =
                Self::alias(t, &mut i)?.ok_or_else(|| SqlError::near(t.get(i).or(t.get(close))))?;
            return Ok((
                format!("({q}) AS {}", quote(&alias)),
                Scoped { alias, table: None },
                i,
            ));
        }
        if first.is_kw("CHANGETABLE") {
            if !t.get(i + 1).is_some_and(|k| k.is_op("(")) {
                return Err(SqlError::near(t.get(i + 1)));
            }
            let close = matching(t, i + 1)?;
            let args = split_commas(&t[i + 2..close]);
            let (kind, version) = match args.as_slice() {
                [kind, version] => (*kind, *version),
                _ => return Err(SqlError::near(t.get(i + 2))),
            };
            if !kind.first().is_some_and(|k| k.is_kw("CHANGES")) {
                return Err(SqlError::near(kind.first()));
            }
            let mut j = 1;
            let parts = name_parts(kind, &mut j)
                .filter(|_| j == kind.len())
                .ok_or_else(|| SqlError::near(kind.get(1)))?;
            let table = self.ctx.catalog.resolve(&parts).ok_or_else(|| {
                SqlError::new(208, format!("Invalid object name '{}'.", written(&parts)))
            })?;
            if !self.ctx.tracked.contains(&table.sqlite_name) {
                return Err(SqlError::new(
                    22105,
                    format!(
                        "Change tracking is not enabled on table '{}'.",
                        written(&parts)
                    ),
                ));
            }
            let version_sql = self.expr(version, &Vec::new())?;
            i = close + 1;
            let alias =
                Self::alias(t, &mut i)?.ok_or_else(|| SqlError::near(t.get(i).or(t.get(close))))?;
            let sql = format!(
                "{} AS {}",
                capture::changes_sql(table, &version_sql),
                quote(&alias)
            );
            return Ok((sql, Scoped { alias, table: None }, i));
        }
        let parts = name_parts(t, &mut i).ok_or_else(|| SqlError::near(Some(first)))?;
        let default_alias = parts.last().cloned().unwrap_or_default();
        let (sql_name, table) = match View::from_parts(&parts) {
            Some(Ok(view)) => {
                self.views.push(view);
                (format!("temp.{}", quote(view.temp_table())), None)
            }
            Some(Err(())) => {
                return Err(SqlError::new(
                    208,
                    format!("Invalid object name '{}'.", written(&parts)),
                ));
            }
            None => {
                let table = self.ctx.catalog.resolve(&parts).ok_or_else(|| {
                    SqlError::new(208, format!("Invalid object name '{}'.", written(&parts)))
                })?;
                (quote(&table.sqlite_name), Some(table))
            }
        };
        let alias = Self::alias(t, &mut i)?.unwrap_or(default_alias);
        // table hints: WITH (NOLOCK, ...) are accepted and ignored
        if t.get(i).is_some_and(|k| k.is_kw("WITH")) && t.get(i + 1).is_some_and(|k| k.is_op("(")) {
            i = matching(t, i + 1)? + 1;
        }
        Ok((
            format!("{sql_name} AS {}", quote(&alias)),
            Scoped { alias, table },
            i,
        ))
    }

    // ---- expressions -----------------------------------------------------------------

    fn param(&self, name: &str) -> Option<(usize, &Param)> {
        self.ctx
            .params
            .iter()
            .enumerate()
            .find(|(_, p)| p.name.trim_start_matches('@').eq_ignore_ascii_case(name))
            .map(|(i, p)| (i + 1, p))
    }

    fn expr(&mut self, t: &[Tok], scope: &[Scoped<'_>]) -> Result<String, SqlError> {
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < t.len() {
            let tok = &t[i];
            match tok {
                Tok::Op("(") => {
                    let close = matching(t, i)?;
                    let inner = &t[i + 1..close];
                    let sql = if inner.first().is_some_and(|k| k.is_kw("SELECT")) {
                        self.query(inner)?.0
                    } else {
                        self.expr(inner, scope)?
                    };
                    out.push(format!("({sql})"));
                    i = close + 1;
                }
                Tok::Op(")") => return Err(SqlError::near(Some(tok))),
                Tok::Word(w)
                    if t.get(i + 1).is_some_and(|k| k.is_op("(")) && !is_keyword(w)
                        || is_function_keyword(tok, t.get(i + 1)) =>
                {
                    let close = matching(t, i + 1)?;
                    out.push(self.function(w_of(tok), &t[i + 2..close], scope)?);
                    i = close + 1;
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("CURRENT_TIMESTAMP") => {
                    out.push("strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime')".into());
                    i += 1;
                }
                Tok::Word(w) if w.eq_ignore_ascii_case("COLLATE") => {
                    let name = match t.get(i + 1) {
                        Some(Tok::Word(c)) => c.to_ascii_uppercase(),
                        other => return Err(SqlError::near(other)),
                    };
                    out.push(
                        if name.contains("_CS_")
                            || name.ends_with("_BIN")
                            || name.ends_with("_BIN2")
                        {
                            "COLLATE BINARY".into()
                        } else {
                            "COLLATE TSQL".into()
                        },
                    );
                    i += 2;
                }
                Tok::Word(w) if is_keyword(w) => {
                    if w.eq_ignore_ascii_case("SELECT") {
                        return Err(SqlError::near(Some(tok)));
                    }
                    out.push(w.to_ascii_uppercase());
                    i += 1;
                }
                Tok::Word(_) | Tok::Quoted(_) => {
                    let mut j = i;
                    let parts = name_parts(t, &mut j).ok_or_else(|| SqlError::near(Some(tok)))?;
                    let n = parts.len();
                    let shown: Vec<String> = parts[n.saturating_sub(2)..]
                        .iter()
                        .map(|p| quote(p))
                        .collect();
                    out.push(shown.join("."));
                    i = j;
                }
                Tok::Str { text, .. } => {
                    out.push(format!("('{}' COLLATE TSQL)", text.replace('\'', "''")));
                    i += 1;
                }
                Tok::Num(n) => {
                    out.push(n.clone());
                    i += 1;
                }
                Tok::Bin(b) => {
                    out.push(format!("X'{}'", hex::encode_upper(b)));
                    i += 1;
                }
                Tok::Var(v) => {
                    let (index, p) = self.param(v).ok_or_else(|| {
                        SqlError::new(137, format!("Must declare the scalar variable \"@{v}\"."))
                    })?;
                    out.push(if p.ty.is_some_and(|ty| ty.is_text()) {
                        format!("(?{index} COLLATE TSQL)")
                    } else {
                        format!("?{index}")
                    });
                    i += 1;
                }
                Tok::Global(g) => {
                    out.push(self.global(g)?);
                    i += 1;
                }
                Tok::Op(o) => {
                    out.push(
                        match *o {
                            "!=" => "<>",
                            "!<" => ">=",
                            "!>" => "<=",
                            "^" => return Err(SqlError::near(Some(tok))),
                            other => other,
                        }
                        .to_owned(),
                    );
                    i += 1;
                }
            }
        }
        Ok(out.join(" "))
    }

    fn global(&self, g: &str) -> Result<String, SqlError> {
        Ok(match g.to_ascii_uppercase().as_str() {
            "VERSION" => format!("'{VERSION}'"),
            "DBTS" => {
                "(SELECT unhex(printf('%016X', value)) FROM __lb_state WHERE name = 'dbts')".into()
            }
            "TRANCOUNT" => self.ctx.trancount.to_string(),
            "SPID" => self.ctx.spid.to_string(),
            "ROWCOUNT" => self.ctx.rowcount.to_string(),
            "IDENTITY" => "last_insert_rowid()".into(),
            "SERVERNAME" | "SERVICENAME" => "'LEGACY-BRIDGE-TDS'".into(),
            "LANGUAGE" => "'us_english'".into(),
            "MAX_PRECISION" => "38".into(),
            "LOCK_TIMEOUT" => "-1".into(),
            _ => {
                return Err(SqlError::new(
                    137,
                    format!("Must declare the scalar variable \"@@{g}\"."),
                ));
            }
        })
    }

    fn function(
        &mut self,
        name: &str,
        args: &[Tok],
        scope: &[Scoped<'_>],
    ) -> Result<String, SqlError> {
        let upper = name.to_ascii_uppercase();
        let no_args = |sql: &str| -> Result<String, SqlError> {
            if args.is_empty() {
                Ok(sql.to_owned())
            } else {
                Err(SqlError::near(args.first()))
            }
        };
        Ok(match upper.as_str() {
            "CAST" | "TRY_CAST" => {
                let as_at =
                    last_top(args, |k| k.is_kw("AS")).ok_or_else(|| SqlError::near(args.last()))?;
                let ty = parse_type(&args[as_at + 1..])?;
                let e = self.expr(&args[..as_at], scope)?;
                cast_sql(&e, ty)
            }
            "CONVERT" | "TRY_CONVERT" => {
                let parts = split_commas(args);
                if parts.len() < 2 {
                    return Err(SqlError::near(args.last()));
                }
                let ty = parse_type(parts[0])?;
                let e = self.expr(parts[1], scope)?;
                cast_sql(&e, ty)
            }
            "ISNULL" => format!("IFNULL({})", self.expr(args, scope)?),
            "LEN" => format!("length(rtrim({}))", self.expr(args, scope)?),
            "SUBSTRING" => format!("substr({})", self.expr(args, scope)?),
            "LEFT" | "RIGHT" => {
                let parts = split_commas(args);
                if parts.len() != 2 {
                    return Err(SqlError::near(args.last()));
                }
                let (s, n) = (self.expr(parts[0], scope)?, self.expr(parts[1], scope)?);
                if upper == "LEFT" {
                    format!("substr({s}, 1, {n})")
                } else {
                    format!("substr({s}, -({n}))")
                }
            }
            "CHARINDEX" => {
                let parts = split_commas(args);
                if parts.len() < 2 {
                    return Err(SqlError::near(args.last()));
                }
                format!(
                    "instr({}, {})",
                    self.expr(parts[1], scope)?,
                    self.expr(parts[0], scope)?
                )
            }
            "COUNT_BIG" => format!("COUNT({})", self.expr(args, scope)?),
            "GETDATE" | "SYSDATETIME" => {
                no_args("strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime')")?
            }
            "GETUTCDATE" | "SYSUTCDATETIME" => no_args("strftime('%Y-%m-%d %H:%M:%f', 'now')")?,
            "SYSDATETIMEOFFSET" => no_args("(strftime('%Y-%m-%d %H:%M:%f', 'now') || ' +00:00')")?,
            "NEWID" => no_args("__lb_newid()")?,
            "SCOPE_IDENTITY" => no_args("last_insert_rowid()")?,
            "OBJECT_ID" => {
                let parts = split_commas(args);
                let name = match parts.first() {
                    Some([Tok::Str { text, .. }]) => text.clone(),
                    Some([Tok::Var(v)]) => match self.param(v) {
                        Some((
                            _,
                            Param {
                                value: rusqlite::types::Value::Text(t),
                                ..
                            },
                        )) => t.clone(),
                        Some(_) => return Ok("NULL".into()),
                        None => {
                            return Err(SqlError::new(
                                137,
                                format!("Must declare the scalar variable \"@{v}\"."),
                            ));
                        }
                    },
                    _ => return Err(SqlError::near(args.first())),
                };
                let toks = lex(&name).unwrap_or_default();
                let mut j = 0;
                match name_parts(&toks, &mut j)
                    .filter(|_| j == toks.len())
                    .and_then(|p| self.ctx.catalog.resolve(&p))
                {
                    Some(table) => table.object_id().to_string(),
                    None => "NULL".into(),
                }
            }
            "CHANGE_TRACKING_CURRENT_VERSION" => {
                no_args("(SELECT value FROM __lb_state WHERE name = 'ct_version')")?
            }
            "CHANGE_TRACKING_MIN_VALID_VERSION" => format!(
                "(SELECT min_valid FROM __lb_ct_tables WHERE object_id = ({}))",
                self.expr(args, scope)?
            ),
            "MIN_ACTIVE_ROWVERSION" => {
                let value = match self.ctx.min_reserved_rv {
                    Some(v) => v.to_string(),
                    None => "(SELECT value + 1 FROM __lb_state WHERE name = 'dbts')".into(),
                };
                no_args(&format!("unhex(printf('%016X', {value}))"))?
            }
            "CHANGETABLE" => return Err(SqlError::syntax("CHANGETABLE")),
            _ => format!("{upper}({})", self.expr(args, scope)?),
        })
    }

    // ---- DML -------------------------------------------------------------------------

    fn target(&self, t: &[Tok], i: &mut usize) -> Result<(&'c Table, Vec<String>), SqlError> {
        let parts = name_parts(t, i).ok_or_else(|| SqlError::near(t.get(*i)))?;
        let table = self
            .ctx
            .catalog
            .resolve(&parts)
            .filter(|t| !t.is_view)
            .ok_or_else(|| {
                SqlError::new(208, format!("Invalid object name '{}'.", written(&parts)))
            })?;
        if t.get(*i).is_some_and(|k| k.is_kw("WITH")) && t.get(*i + 1).is_some_and(|k| k.is_op("("))
        {
            *i = matching(t, *i + 1)? + 1;
        }
        Ok((table, parts))
    }

    fn insert(&mut self, t: &[Tok]) -> Result<(String, String), SqlError> {
        let mut i = 1;
        if t.get(i).is_some_and(|k| k.is_kw("INTO")) {
            i += 1;
        }
        let (table, _) = self.target(t, &mut i)?;
        let mut cols = String::new();
        let mut targets: Vec<&super::catalog::Column> = table.columns.iter().collect();
        if t.get(i).is_some_and(|k| k.is_op("("))
            && !t.get(i + 1).is_some_and(|k| k.is_kw("SELECT"))
        {
            let close = matching(t, i)?;
            let mut names = Vec::new();
            for c in split_commas(&t[i + 1..close]) {
                let parts = as_column_ref(c).ok_or_else(|| SqlError::near(c.first()))?;
                let col = parts.last().cloned().unwrap_or_default();
                if table
                    .rowversion()
                    .is_some_and(|rv| rv.name.eq_ignore_ascii_case(&col))
                {
                    return Err(SqlError::new(
                        273,
                        "Cannot insert an explicit value into a timestamp column. Use INSERT with a column list to \
                         exclude the timestamp column, or insert a DEFAULT into the timestamp column.",
                    ));
                }
                names.push(quote(&col));
            }
            targets = Vec::new();
            for c in split_commas(&t[i + 1..close]) {
                let name = as_column_ref(c)
                    .and_then(|p| p.last().cloned())
                    .unwrap_or_default();
                let column = table
                    .column(&name)
                    .ok_or_else(|| SqlError::new(207, format!("Invalid column name '{name}'.")))?;
                targets.push(column);
            }
            cols = format!(" ({})", names.join(", "));
            i = close + 1;
        }
        let rest = &t[i..];
        let source = match rest.first() {
            Some(k)
                if k.is_kw("DEFAULT")
                    && rest.get(1).is_some_and(|v| v.is_kw("VALUES"))
                    && rest.len() == 2 =>
            {
                "DEFAULT VALUES".to_owned()
            }
            Some(k) if k.is_kw("VALUES") => {
                let mut rows = Vec::new();
                for tuple in split_commas(&rest[1..]) {
                    if !tuple.first().is_some_and(|k| k.is_op("("))
                        || matching(tuple, 0).ok() != Some(tuple.len() - 1)
                    {
                        return Err(SqlError::near(tuple.first().or(rest.first())));
                    }
                    let mut values = Vec::new();
                    for (k, value) in split_commas(&tuple[1..tuple.len() - 1])
                        .into_iter()
                        .enumerate()
                    {
                        let sql = self.expr(value, &Vec::new())?;
                        values.push(converted(sql, targets.get(k).copied()));
                    }
                    rows.push(format!("({})", values.join(", ")));
                }
                format!("VALUES {}", rows.join(", "))
            }
            Some(k) if k.is_kw("SELECT") => self.query(rest)?.0,
            other => return Err(SqlError::near(other.or(t.last()))),
        };
        Ok((
            format!("INSERT INTO {}{cols} {source}", quote(&table.sqlite_name)),
            table.sqlite_name.clone(),
        ))
    }

    fn update(&mut self, t: &[Tok]) -> Result<(String, String), SqlError> {
        let mut i = 1;
        let (table, parts) = self.target(t, &mut i)?;
        if !t.get(i).is_some_and(|k| k.is_kw("SET")) {
            return Err(SqlError::near(t.get(i).or(t.last())));
        }
        let where_at = find_top(t, i + 1, |k| {
            k.is_kw("WHERE") || k.is_kw("FROM") || k.is_kw("OUTPUT") || k.is_kw("OPTION")
        });
        if let Some(w) = where_at
            && !t[w].is_kw("WHERE")
        {
            return Err(SqlError::near(t.get(w)));
        }
        let alias = parts.last().cloned().unwrap_or_default();
        let scope = vec![Scoped {
            alias: alias.clone(),
            table: Some(table),
        }];
        let mut sets = Vec::new();
        for a in split_commas(&t[i + 1..where_at.unwrap_or(t.len())]) {
            let eq = find_top(a, 0, |k| k.is_op("=")).ok_or_else(|| SqlError::near(a.first()))?;
            let col = as_column_ref(&a[..eq]).ok_or_else(|| SqlError::near(a.first()))?;
            let col = col.last().cloned().unwrap_or_default();
            if table
                .rowversion()
                .is_some_and(|rv| rv.name.eq_ignore_ascii_case(&col))
            {
                return Err(SqlError::new(272, "Cannot update a timestamp column."));
            }
            if a.len() == eq + 1 {
                return Err(SqlError::near(a.last()));
            }
            let value = self.expr(&a[eq + 1..], &scope)?;
            sets.push(format!(
                "{} = {}",
                quote(&col),
                converted(value, table.column(&col))
            ));
        }
        let mut sql = format!(
            "UPDATE {} AS {} SET {}",
            quote(&table.sqlite_name),
            quote(&alias),
            sets.join(", ")
        );
        if let Some(w) = where_at {
            sql.push_str(" WHERE ");
            sql.push_str(&self.expr(&t[w + 1..], &scope)?);
        }
        Ok((sql, table.sqlite_name.clone()))
    }

    fn delete(&mut self, t: &[Tok]) -> Result<(String, String), SqlError> {
        let mut i = 1;
        if t.get(i).is_some_and(|k| k.is_kw("FROM")) {
            i += 1;
        }
        let (table, parts) = self.target(t, &mut i)?;
        let alias = parts.last().cloned().unwrap_or_default();
        let scope = vec![Scoped {
            alias: alias.clone(),
            table: Some(table),
        }];
        let mut sql = format!(
            "DELETE FROM {} AS {}",
            quote(&table.sqlite_name),
            quote(&alias)
        );
        match t.get(i) {
            None => {}
            Some(k) if k.is_kw("WHERE") => {
                sql.push_str(" WHERE ");
                sql.push_str(&self.expr(&t[i + 1..], &scope)?);
            }
            other => return Err(SqlError::near(other)),
        }
        Ok((sql, table.sqlite_name.clone()))
    }
}

/// A value written to `column`, converted to its type on the way in (like SQL Server).
fn converted(sql: String, column: Option<&super::catalog::Column>) -> String {
    match column {
        Some(c) if c.ty.is_some_and(|t| t != SqlType::RowVersion) => {
            format!("__lb_norm({sql}, '{}')", c.decl.replace('\'', "''"))
        }
        _ => sql,
    }
}

/// `CONVERT`, `NULLIF` and other reserved words used as functions.
fn is_function_keyword(tok: &Tok, next: Option<&Tok>) -> bool {
    matches!(tok, Tok::Word(w) if ["CONVERT", "NULLIF", "COALESCE", "LEFT", "RIGHT"].iter().any(|f| f.eq_ignore_ascii_case(w)))
        && next.is_some_and(|n| n.is_op("("))
}

fn w_of(tok: &Tok) -> &str {
    match tok {
        Tok::Word(w) => w,
        _ => "",
    }
}

/// The SQLite expression of `CAST(e AS ty)`.
fn cast_sql(e: &str, ty: SqlType) -> String {
    match ty {
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            format!("__lb_int({e})")
        }
        SqlType::Bit => format!("(__lb_int({e}) <> 0)"),
        SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney => {
            format!("CAST(({e}) AS NUMERIC)")
        }
        SqlType::Float | SqlType::Real => format!("CAST(({e}) AS REAL)"),
        SqlType::Char(n)
        | SqlType::NChar(n)
        | SqlType::VarChar(Len::N(n))
        | SqlType::NVarChar(Len::N(n)) => {
            format!("substr(CAST(({e}) AS TEXT), 1, {n})")
        }
        SqlType::VarChar(Len::Max)
        | SqlType::NVarChar(Len::Max)
        | SqlType::Text
        | SqlType::NText => {
            format!("CAST(({e}) AS TEXT)")
        }
        SqlType::Date => format!("substr(CAST(({e}) AS TEXT), 1, 10)"),
        SqlType::DateTime
        | SqlType::SmallDateTime
        | SqlType::DateTime2(_)
        | SqlType::Time(_)
        | SqlType::DateTimeOffset(_) => {
            format!("CAST(({e}) AS TEXT)")
        }
        SqlType::UniqueIdentifier => format!("upper(CAST(({e}) AS TEXT))"),
        SqlType::Binary(n) => format!("__lb_bin({e}, {n}, 1)"),
        SqlType::RowVersion => format!("__lb_bin({e}, 8, 1)"),
        SqlType::VarBinary(Len::N(n)) => format!("__lb_bin({e}, {n}, 0)"),
        SqlType::VarBinary(Len::Max) | SqlType::Image => format!("__lb_bin({e}, 0, 0)"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::Column;
    use super::*;

    fn catalog() -> Catalog {
        let col = |name: &str, decl: &str, pk: u32| Column {
            name: name.into(),
            decl: decl.into(),
            ty: SqlType::parse(decl),
            not_null: pk > 0,
            pk,
            default: None,
        };
        Catalog {
            tables: vec![Table {
                sqlite_name: "dbo.stock".into(),
                schema: "dbo".into(),
                name: "stock".into(),
                is_view: false,
                without_rowid: false,
                columns: vec![
                    col("sku", "NCHAR(10)", 1),
                    col("qty", "INT", 0),
                    col("rv", "ROWVERSION", 0),
                ],
            }],
        }
    }

    fn tr(sql: &str) -> Result<Translated, SqlError> {
        let catalog = catalog();
        let params = vec![Param {
            name: "@P1".into(),
            ty: Some(SqlType::Int),
            value: rusqlite::types::Value::Integer(5),
        }];
        let tracked = vec!["dbo.stock".to_string()];
        let ctx = Ctx {
            catalog: &catalog,
            params: &params,
            tracked: &tracked,
            trancount: 0,
            spid: 51,
            rowcount: 0,
            min_reserved_rv: None,
        };
        let stmts = parse_batch(sql)?;
        translate(&stmts[0], &ctx)
    }

    #[test]
    fn splits_batches_like_sql_server() {
        let b = parse_batch("SET NOCOUNT ON SELECT 1 UNION ALL SELECT 2; INSERT INTO t SELECT 1 UPDATE t SET a = 1 BEGIN TRAN COMMIT").unwrap();
        assert_eq!(b.len(), 6);
        assert_eq!(b[0], Statement::Set(SetOption::NoCount(true)));
        assert!(matches!(b[3], Statement::Dml(DmlKind::Update, _)));
        assert_eq!(b[4], Statement::Begin);
        assert_eq!(
            parse_batch("SET TRANSACTION ISOLATION LEVEL SNAPSHOT").unwrap(),
            vec![Statement::Set(SetOption::Isolation("SNAPSHOT".into()))]
        );
        assert_eq!(parse_batch("MERGE t").unwrap_err().number, 102);
        assert_eq!(parse_batch("EXEC sp_who").unwrap_err().number, 2812);
    }

    #[test]
    fn translates_the_subset() {
        let t = tr("SELECT TOP (@P1) [sku], s.qty AS n FROM [dbo].[stock] s WITH (NOLOCK) WHERE qty >= @P1 ORDER BY sku").unwrap();
        assert_eq!(
            t.sql,
            "SELECT \"sku\", \"s\".\"qty\" AS \"n\" FROM \"dbo.stock\" AS \"s\" WHERE \"qty\" >= ?1 ORDER BY \"sku\" COLLATE TSQL LIMIT ?1"
        );
        assert_eq!(t.items[1].name.as_deref(), Some("n"));
        let t =
            tr("SELECT sku FROM dbo.stock ORDER BY sku OFFSET @P1 ROWS FETCH NEXT 10 ROWS ONLY")
                .unwrap();
        assert!(t.sql.ends_with("LIMIT 10 OFFSET ?1"), "{}", t.sql);
        assert_eq!(
            tr("SELECT sku FROM dbo.stock OFFSET 1 ROWS")
                .unwrap_err()
                .number,
            102
        );
        assert_eq!(
            tr("SELECT TOP 1 sku FROM stock ORDER BY sku OFFSET 1 ROWS")
                .unwrap_err()
                .number,
            10741
        );
        assert_eq!(tr("SELECT * FROM dbo.nope").unwrap_err().number, 208);
        assert_eq!(tr("SELECT @P2").unwrap_err().number, 137);
        let t = tr("SELECT CAST(qty AS DECIMAL(10,2)), MAX(rv), COUNT(*) FROM stock").unwrap();
        assert_eq!(t.items[0].hint, SqlType::parse("DECIMAL(10,2)"));
        assert_eq!(t.items[0].name.as_deref(), Some(""));
        assert_eq!(t.items[1].hint, Some(SqlType::RowVersion));
        assert_eq!(t.items[2].hint, Some(SqlType::Int));
        let t = tr("SELECT CT.SYS_CHANGE_OPERATION, s.* FROM CHANGETABLE(CHANGES dbo.stock, @P1) AS CT LEFT JOIN dbo.stock s ON s.sku = CT.sku").unwrap();
        assert!(t.sql.contains("__lb_ct:dbo.stock"), "{}", t.sql);
        assert_eq!(tr("UPDATE dbo.stock SET rv = 1").unwrap_err().number, 272);
        assert_eq!(
            tr("INSERT INTO dbo.stock (sku, rv) VALUES (N'a', 1)")
                .unwrap_err()
                .number,
            273
        );
        let t = tr("DELETE dbo.stock WHERE sku = N'x'").unwrap();
        assert_eq!(
            t.sql,
            "DELETE FROM \"dbo.stock\" AS \"stock\" WHERE \"sku\" = ('x' COLLATE TSQL)"
        );
    }
}
