//! Change-log triggers on real engines: the generated DDL, applied through the ODBC source
//! (repeatedly), logs exactly the keys of inserted, updated (also re-keyed) and deleted rows,
//! in the shape the changelog strategy reads and prunes; the script printed for a DBA works in
//! each engine's own client, and printing it changes nothing.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use legacy_bridge::app;
use legacy_bridge::capture::changelog_ddl;
use legacy_bridge::capture::changelog_table::{
    ID_COLUMN, MAX_KEY_COLUMNS, TABLE_COLUMN, key_column,
};
use legacy_bridge::config::{self, DEFAULT_CHANGELOG_TABLE};
use legacy_bridge::model::{FieldType, Value};
use legacy_bridge::resource::Resource;
use legacy_bridge::source::{
    CompareOp, OrderBy, Param, Predicate, Relation, SelectColumn, SelectQuery, Source, SqlType,
};

use super::engines::{Engine, TestDb};
use super::harness::write_config;

const ENGINES: [Engine; 3] = [Engine::Sqlite, Engine::Mariadb, Engine::Postgres];

/// One log row as capture sees it: TABLE_NAME, OP and the used KEY_n values.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Logged {
    table: String,
    op: &'static str,
    key: Vec<String>,
}

/// The bridge's view of a test database: its source and bound resources.
struct Bound {
    source: Arc<dyn Source>,
    inventory: Arc<Resource>,
    products: Arc<Resource>,
    _dir: tempfile::TempDir,
}

async fn bind(db: &TestDb) -> Bound {
    let (dir, _, _) = write_config(&db.connection_string, "");
    let loaded = config::load(&dir.path().join("config.toml")).expect("valid config");
    let built = app::build(loaded, Duration::ZERO)
        .await
        .expect("bridge binds");
    let state = built.state;
    Bound {
        source: Arc::clone(&state.sources["pos"]),
        inventory: Arc::clone(&state.resources["inventory"]),
        products: Arc::clone(&state.resources["products"]),
        _dir: dir,
    }
}

/// Runs every generated statement through `Source::execute`, as `changelog ddl --apply` does.
async fn apply(source: &dyn Source, resource: &Resource) {
    let ddl = changelog_ddl::for_resource(source.dialect(), DEFAULT_CHANGELOG_TABLE, resource)
        .expect("ddl renders");
    for statement in ddl.statements() {
        source
            .execute(statement.sql.clone(), Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", statement.what, statement.sql));
    }
}

fn text_column(name: &str) -> SelectColumn {
    SelectColumn {
        name: name.into(),
        decode: FieldType::String,
    }
}

/// Reads the log the way the changelog strategy does: optionally only one table's rows
/// (`TABLE_NAME = ?`), in CHANGE_ID order. Returns the ids alongside.
async fn read_log(source: &dyn Source, table: Option<&str>) -> Vec<(i64, Logged)> {
    let mut columns = vec![
        SelectColumn {
            name: ID_COLUMN.into(),
            decode: FieldType::Integer,
        },
        text_column(TABLE_COLUMN),
        text_column("OP"),
    ];
    columns.extend((1..=MAX_KEY_COLUMNS).map(|n| text_column(&key_column(n))));
    let filter = table
        .map(|t| {
            vec![Predicate::Compare {
                column: TABLE_COLUMN.into(),
                op: CompareOp::Eq,
                param: Param {
                    value: Value::Text(t.into()),
                    sql_type: SqlType::Varchar { len: Some(128) },
                },
            }]
        })
        .unwrap_or_default();
    let rows = source
        .fetch(SelectQuery {
            relation: Relation::Table {
                schema: None,
                name: DEFAULT_CHANGELOG_TABLE.into(),
            },
            columns,
            filter,
            order_by: vec![OrderBy {
                column: ID_COLUMN.into(),
                descending: false,
                binary: false,
            }],
            limit: Some(1000),
        })
        .await
        .expect("log readable");
    rows.into_iter()
        .map(|row| {
            let Value::Int(id) = row[0] else {
                panic!("CHANGE_ID {:?}", row[0])
            };
            let text = |v: &Value| match v {
                Value::Text(t) => Some(t.clone()),
                Value::Null => None,
                other => panic!("not text: {other:?}"),
            };
            let op = match text(&row[2]).as_deref() {
                Some("I") => "I",
                Some("U") => "U",
                Some("D") => "D",
                other => panic!("OP {other:?}"),
            };
            let keys: Vec<Option<String>> = row[3..].iter().map(text).collect();
            let used = keys.iter().take_while(|k| k.is_some()).count();
            assert!(
                keys[used..].iter().all(Option::is_none),
                "unused KEY_n must be NULL: {keys:?}"
            );
            let logged = Logged {
                table: text(&row[1]).expect("TABLE_NAME"),
                op,
                key: keys.into_iter().flatten().collect(),
            };
            (id, logged)
        })
        .collect()
}

async fn log(source: &dyn Source) -> Vec<Logged> {
    read_log(source, None)
        .await
        .into_iter()
        .map(|(_, l)| l)
        .collect()
}

/// What one engine logs for the demo tables: the table names as its catalog spells them, and
/// CHAR keys as its reads return them (padded, except on MariaDB, which strips trailing
/// spaces).
struct Expect {
    engine: Engine,
}

impl Expect {
    fn table(&self, upper: &str) -> String {
        match self.engine {
            Engine::Postgres => upper.to_lowercase(),
            _ => upper.to_owned(),
        }
    }

    fn char(&self, value: &str, width: usize) -> String {
        match self.engine {
            Engine::Mariadb => value.to_owned(),
            _ => format!("{value:<width$}"),
        }
    }

    fn stock(&self, op: &'static str, item: &str, store: &str) -> Logged {
        Logged {
            table: self.table("STOCK_LEVEL"),
            op,
            key: vec![self.char(item, 10), self.char(store, 4)],
        }
    }

    fn item(&self, op: &'static str, item: &str) -> Logged {
        Logged {
            table: self.table("ITEM_MASTER"),
            op,
            key: vec![self.char(item, 10)],
        }
    }
}

/// Plain SQL changes, as the legacy application would make them (CHAR values written padded,
/// as the demo system does).
mod dml {
    pub const STOCK_INSERT: &str = "INSERT INTO STOCK_LEVEL (ITEM_CODE, STORE_NO, QTY_ON_HAND, \
        QTY_RESERVED, LAST_UPD) VALUES ('A1001     ', 'S09 ', 1, 0, '2024-05-01 10:00:00')";
    pub const STOCK_UPDATE: &str = "UPDATE STOCK_LEVEL SET QTY_ON_HAND = 7 \
        WHERE ITEM_CODE = 'A1001     ' AND STORE_NO = 'S01 '";
    pub const STOCK_REKEY: &str = "UPDATE STOCK_LEVEL SET STORE_NO = 'S08 ' \
        WHERE ITEM_CODE = 'A1002     ' AND STORE_NO = 'S02 '";
    pub const STOCK_DELETE: &str =
        "DELETE FROM STOCK_LEVEL WHERE ITEM_CODE = 'A1003     ' AND STORE_NO = 'S03 '";
    pub const ITEM_INSERT: &str = "INSERT INTO ITEM_MASTER (ITEM_CODE, DESCR, DEPT_CODE, UOM, \
        ACTIVE_FLG, LAST_UPD) VALUES ('A9001     ', 'Test item', 'TOOL', 'PCS', 'Y', \
        '2024-05-01 10:00:00')";
    pub const ITEM_REKEY: &str =
        "UPDATE ITEM_MASTER SET ITEM_CODE = 'A9002     ' WHERE ITEM_CODE = 'A1005     '";
    pub const ITEM_UPDATE: &str =
        "UPDATE ITEM_MASTER SET DESCR = 'Renamed' WHERE ITEM_CODE = 'A1006     '";
    pub const ITEM_DELETE: &str = "DELETE FROM ITEM_MASTER WHERE ITEM_CODE = 'A1007     '";
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_ddl_logs_every_change_once_on_every_engine() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let bound = bind(&db).await;
        let source = bound.source.as_ref();
        let x = Expect { engine };

        // GIVEN the DDL for a two-column and a one-column CHAR key, applied twice
        for _ in 0..2 {
            apply(source, &bound.inventory).await;
            apply(source, &bound.products).await;
        }
        assert!(
            log(source).await.is_empty(),
            "{engine:?}: installing logs nothing"
        );

        // WHEN the legacy application changes rows, and the DDL is applied once more midway
        db.exec(dml::STOCK_INSERT);
        db.exec(dml::STOCK_UPDATE);
        db.exec(dml::ITEM_INSERT);
        apply(source, &bound.inventory).await;
        apply(source, &bound.products).await;
        db.exec(dml::STOCK_REKEY);
        db.exec(dml::STOCK_DELETE);
        db.exec(dml::ITEM_REKEY);
        db.exec(dml::ITEM_UPDATE);
        db.exec(dml::ITEM_DELETE);

        // THEN each change is logged exactly once, in order, with its key as text; a key
        // change logs the old key, then the new one; rows logged before re-applying survive.
        let expected = vec![
            x.stock("I", "A1001", "S09"),
            x.stock("U", "A1001", "S01"),
            x.item("I", "A9001"),
            x.stock("U", "A1002", "S02"),
            x.stock("U", "A1002", "S08"),
            x.stock("D", "A1003", "S03"),
            x.item("U", "A1005"),
            x.item("U", "A9002"),
            x.item("U", "A1006"),
            x.item("D", "A1007"),
        ];
        assert_eq!(log(source).await, expected, "{engine:?}");

        // The strategy's read (one table's rows, TABLE_NAME bound as a parameter) ...
        let stock_table = x.table("STOCK_LEVEL");
        let stock = read_log(source, Some(&stock_table)).await;
        let only_stock: Vec<Logged> = expected
            .iter()
            .filter(|l| l.table == stock_table)
            .cloned()
            .collect();
        assert_eq!(
            stock.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
            only_stock,
            "{engine:?}"
        );
        // ... and its prune (that table's rows in an id range) leave exactly the rest.
        let (first, last) = (stock[0].0, stock[stock.len() - 1].0);
        let log_table = source.dialect().quote(DEFAULT_CHANGELOG_TABLE);
        let (table_col, id_col) = (
            source.dialect().quote(TABLE_COLUMN),
            source.dialect().quote(ID_COLUMN),
        );
        let id = |v| Param {
            value: Value::Int(v),
            sql_type: SqlType::Integer,
        };
        source
            .execute(
                format!(
                    "DELETE FROM {log_table} WHERE {table_col} = ? AND {id_col} BETWEEN ? AND ?"
                ),
                vec![
                    Param {
                        value: Value::Text(stock_table.clone()),
                        sql_type: SqlType::Varchar { len: Some(128) },
                    },
                    id(first),
                    id(last),
                ],
            )
            .await
            .expect("prune");
        let rest: Vec<Logged> = expected
            .into_iter()
            .filter(|l| l.table != stock_table)
            .collect();
        assert_eq!(log(source).await, rest, "{engine:?}");

        // Ids keep growing after a prune (never reused).
        db.exec(dml::STOCK_INSERT.replace("S09", "S07").as_str());
        let after = read_log(source, Some(&stock_table)).await;
        assert_eq!(after.len(), 1, "{engine:?}");
        assert!(
            after[0].0 > last,
            "{engine:?}: id {} after {last}",
            after[0].0
        );
    }
}

/// The engine's own command-line client with the test database, or `None` when the client is
/// not installed and engines are not required.
fn client(db: &TestDb) -> Option<Command> {
    let field = |name: &str| {
        db.connection_string
            .split(';')
            .find_map(|kv| kv.strip_prefix(name))
            .map(str::to_owned)
            .expect("connection string field")
    };
    let database = field("Database=");
    let (program, args): (&str, Vec<String>) = match db.engine {
        Engine::Sqlite => ("sqlite3", vec!["-bail".into(), database]),
        Engine::Mariadb => (
            "mariadb",
            vec![
                "--no-defaults".into(),
                "-h127.0.0.1".into(),
                format!("-P{}", std::env::var("LB_TEST_MARIADB_PORT").expect("port")),
                "-ulb".into(),
                "-plb".into(),
                database,
            ],
        ),
        Engine::Postgres => {
            let url = std::env::var("LB_TEST_POSTGRES_URL").expect("LB_TEST_POSTGRES_URL");
            let base = url.rsplit_once('/').expect("url").0;
            (
                "psql",
                vec![
                    "-X".into(),
                    "-q".into(),
                    "-v".into(),
                    "ON_ERROR_STOP=1".into(),
                    format!("{base}/{database}"),
                ],
            )
        }
    };
    let installed = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var("LB_REQUIRE_ENGINES").is_err(),
            "{program} is not installed but LB_REQUIRE_ENGINES is set"
        );
        eprintln!("skipping the {program} script check: {program} not installed");
        return None;
    }
    let mut cmd = Command::new(program);
    cmd.args(args);
    Some(cmd)
}

fn bridge(config: &Path, resource: &str, apply: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_legacy-bridge"));
    cmd.args(["changelog", "ddl", "--config"])
        .arg(config)
        .args(["--resource", resource]);
    if apply {
        cmd.arg("--apply");
    }
    cmd.env("RUST_LOG", "warn")
        .output()
        .expect("run legacy-bridge")
}

fn log_table_count(db: &TestDb) -> i64 {
    db.scalar(match db.engine {
        Engine::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'LB_CHANGELOG'",
        Engine::Mariadb => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 'LB_CHANGELOG'"
        }
        Engine::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'LB_CHANGELOG'"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_script_runs_in_the_engine_client_and_cli_apply_is_harmless_after_it() {
    for engine in ENGINES {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        let x = Expect { engine };
        let (dir, _, _) = write_config(&db.connection_string, "");
        let config = dir.path().join("config.toml");

        // GIVEN the script printed for a DBA: printing changes nothing
        let printed = bridge(&config, "inventory", false);
        let stderr = String::from_utf8_lossy(&printed.stderr);
        assert!(printed.status.success(), "{engine:?}: {stderr}");
        assert!(
            stderr.contains("nothing was changed"),
            "{engine:?}: {stderr}"
        );
        let script = String::from_utf8(printed.stdout).expect("utf-8 script");
        assert!(
            script.contains("-- log table: LB_CHANGELOG (the default"),
            "{script}"
        );
        assert_eq!(
            log_table_count(&db),
            0,
            "{engine:?}: printing installed something"
        );

        // WHEN the DBA runs it in the engine's own client, then the bridge applies it twice
        let Some(mut client) = client(&db) else {
            continue;
        };
        let mut child = client
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start client");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("send script");
        let ran = child.wait_with_output().expect("client finishes");
        assert!(
            ran.status.success(),
            "{engine:?}: the client rejected the script: {}\n{script}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_eq!(log_table_count(&db), 1, "{engine:?}");
        db.exec(dml::STOCK_REKEY);
        for _ in 0..2 {
            let applied = bridge(&config, "inventory", true);
            let stdout = String::from_utf8_lossy(&applied.stdout);
            assert!(
                applied.status.success(),
                "{engine:?}: {stdout}{}",
                String::from_utf8_lossy(&applied.stderr)
            );
            assert!(
                stdout.contains("installed: every insert, update and delete"),
                "{stdout}"
            );
        }
        db.exec(dml::STOCK_DELETE);

        // THEN both changes are logged once each: the triggers were replaced, not doubled
        let bound = bind(&db).await;
        assert_eq!(
            log(bound.source.as_ref()).await,
            vec![
                x.stock("U", "A1002", "S02"),
                x.stock("U", "A1002", "S08"),
                x.stock("D", "A1003", "S03"),
            ],
            "{engine:?}"
        );
    }
}

#[test]
fn cli_refuses_unknown_resources_and_names_the_known_ones() {
    let (dir, _, _) = write_config("Driver={SQLite3};Database=/nonexistent/x.db;", "");
    let out = bridge(&dir.path().join("config.toml"), "nope", false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no resource `nope`"), "{stderr}");
    assert!(stderr.contains("inventory"), "{stderr}");
    assert!(out.stdout.is_empty());
}
