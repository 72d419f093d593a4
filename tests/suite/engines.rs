//! Throw-away databases holding the demo POS schema, one per test, on each engine.

use std::path::PathBuf;

use odbc_api::{Connection, ConnectionOptions};

/// An engine the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Mariadb,
    Postgres,
}

impl Engine {
    fn server_env(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Mariadb => Some("LB_TEST_MARIADB_ODBC"),
            Engine::Postgres => Some("LB_TEST_POSTGRES_ODBC"),
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Mariadb => "mariadb",
            Engine::Postgres => "postgres",
        }
    }
}

/// A fresh database with the demo schema and seed; dropped with the value.
pub struct TestDb {
    pub engine: Engine,
    /// ODBC connection string of the database.
    pub connection_string: String,
    server: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn connect(conn_str: &str) -> Connection<'static> {
    odbc_api::environment()
        .expect("odbc environment")
        .connect_with_connection_string(conn_str, ConnectionOptions::default())
        .unwrap_or_else(|e| panic!("cannot connect for test setup: {e}"))
}

/// The statements of a script split on `;` at line ends (the demo SQL files follow that
/// rule), without comment lines.
pub fn script_statements(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("read sql");
    text.split(";\n")
        .map(|stmt| {
            stmt.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        })
        .filter(|body| !body.is_empty())
        .collect()
}

/// Runs a script (see [`script_statements`]).
pub fn run_script(conn_str: &str, path: &std::path::Path) {
    let conn = connect(conn_str);
    for body in script_statements(path) {
        conn.execute(&body, (), None)
            .unwrap_or_else(|e| panic!("{}: {e}\n{body}", path.display()));
    }
}

/// Runs one statement against a database.
pub fn exec(conn_str: &str, sql: &str) {
    let conn = connect(conn_str);
    conn.execute(sql, (), None)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A single integer from a query.
pub fn scalar(conn_str: &str, sql: &str) -> i64 {
    let conn = connect(conn_str);
    let mut cursor = conn.execute(sql, (), None).expect("query").expect("cursor");
    let mut row = odbc_api::Cursor::next_row(&mut cursor)
        .expect("fetch")
        .expect("one row");
    let mut buf = Vec::new();
    row.get_text(1, &mut buf).expect("text");
    String::from_utf8(buf)
        .expect("utf8")
        .trim()
        .parse()
        .expect("integer")
}

impl TestDb {
    /// Creates a database on `engine`, or `None` when the engine is not available and not
    /// required.
    pub fn create(engine: Engine) -> Option<TestDb> {
        let name = format!("lb_t_{}", rand_suffix());
        let (conn_str, server, dir) = match engine.server_env() {
            None => {
                let dir = tempfile::tempdir().expect("tempdir");
                let driver =
                    std::env::var("LB_TEST_SQLITE_DRIVER").unwrap_or_else(|_| "SQLite3".into());
                let path = dir.path().join("pos.db");
                (
                    format!("Driver={{{driver}}};Database={};", path.display()),
                    None,
                    Some(dir),
                )
            }
            Some(var) => {
                let Ok(server) = std::env::var(var) else {
                    assert!(
                        std::env::var("LB_REQUIRE_ENGINES").is_err(),
                        "{var} is not set but LB_REQUIRE_ENGINES is: scripts/test must start {engine:?}"
                    );
                    eprintln!("skipping {engine:?}: {var} not set (run scripts/test)");
                    return None;
                };
                let admin = match engine {
                    Engine::Postgres => format!("{server}Database=postgres;"),
                    _ => server.clone(),
                };
                exec(&admin, &format!("CREATE DATABASE {name}"));
                (
                    format!("{server}Database={name};"),
                    Some((admin, name)),
                    None,
                )
            }
        };
        let sql = repo().join("sql/demo");
        run_script(&conn_str, &sql.join(engine.dir()).join("schema.sql"));
        run_script(&conn_str, &sql.join("seed.sql"));
        Some(TestDb {
            engine,
            connection_string: conn_str,
            server,
            _dir: dir,
        })
    }

    /// Runs a statement in this database.
    pub fn exec(&self, sql: &str) {
        exec(&self.connection_string, sql);
    }

    /// A single integer from a query in this database.
    pub fn scalar(&self, sql: &str) -> i64 {
        scalar(&self.connection_string, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.server {
            let sql = match self.engine {
                Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS {name}"),
            };
            if let Ok(conn) = odbc_api::environment()
                .expect("env")
                .connect_with_connection_string(admin, ConnectionOptions::default())
            {
                let _ = conn.execute(&sql, (), None);
            }
        }
    }
}

fn rand_suffix() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}
