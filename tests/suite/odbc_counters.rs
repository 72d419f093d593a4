//! A binary counter column (a SQL Server `rowversion` reached through ODBC) reads and compares
//! as its number: its bytes are read, not the driver's hex text (which can
//! parse as the wrong decimal number), and a counter parameter is bound as the 8 big-endian
//! bytes the column holds, not as digits (which would compare by their ASCII codes).

use legacy_bridge::model::{FieldType, Value};
use legacy_bridge::source::{
    CompareOp, OrderBy, Param, Predicate, Relation, SelectColumn, SelectQuery, Source, SqlType,
};

use super::engines::{Engine, TestDb};
use super::scan::{open, scan_all};

/// Counters chosen so that text would mislead: 0x0123 reads as "0000000000000123" (a valid
/// decimal 123), and 255 < 256 only as bytes in big-endian order.
const COUNTERS: [(i64, &str); 4] = [
    (1, "0000000000000123"),
    (2, "00000000000000FF"),
    (3, "0000000000000100"),
    (4, "00000000000007D1"),
];

fn create(db: &TestDb) {
    let (column, literal): (&str, fn(&str) -> String) = match db.engine {
        Engine::Mariadb => ("BINARY(8)", |hex| format!("x'{hex}'")),
        Engine::Postgres => ("BYTEA", |hex| format!("decode('{hex}', 'hex')")),
        Engine::Sqlite => unreachable!("see the test"),
    };
    db.exec(&format!(
        "CREATE TABLE counters (id INTEGER PRIMARY KEY, rv {column})"
    ));
    for (id, hex) in COUNTERS {
        db.exec(&format!(
            "INSERT INTO counters VALUES ({id}, {})",
            literal(hex)
        ));
    }
}

/// `SELECT id, rv FROM counters [WHERE rv >= from] ORDER BY rv`, both read as integers.
fn counters_from(from: Option<i64>) -> SelectQuery {
    SelectQuery {
        relation: Relation::Table {
            schema: None,
            name: "counters".into(),
        },
        columns: ["id", "rv"]
            .map(|name| SelectColumn {
                name: name.into(),
                decode: FieldType::Integer,
            })
            .to_vec(),
        filter: from
            .map(|from| Predicate::Compare {
                column: "rv".into(),
                op: CompareOp::Ge,
                param: Param {
                    value: Value::Int(from),
                    sql_type: SqlType::Binary,
                },
            })
            .into_iter()
            .collect(),
        order_by: vec![OrderBy {
            column: "rv".into(),
            descending: false,
            binary: false,
        }],
        limit: Some(100),
    }
}

fn ids_and_counters(rows: &[Vec<Value>]) -> Vec<(i64, i64)> {
    rows.iter()
        .map(|row| match row.as_slice() {
            [Value::Int(id), Value::Int(rv)] => (*id, *rv),
            other => panic!("not two integers: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn binary_counters_read_and_compare_as_numbers_on_binary_columns() {
    // Not SQLite: its ODBC driver describes a BLOB result column as CHAR(255), so nothing in
    // the result says the bytes are binary (SQL Server's drivers say BINARY(8) for a
    // rowversion, as MariaDB's and PostgreSQL's do here).
    for engine in [Engine::Mariadb, Engine::Postgres] {
        let Some(db) = TestDb::create(engine) else {
            continue;
        };
        create(&db);
        let source = open(&db).await;

        let all = source
            .fetch(counters_from(None))
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(
            ids_and_counters(&all),
            [(2, 255), (3, 256), (1, 0x123), (4, 2001)],
            "{engine:?}: bytes read as big-endian counters"
        );
        let scanned = scan_all(&source, counters_from(None))
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(scanned, all, "{engine:?}: a scan reads what a fetch reads");

        let from_256 = source
            .fetch(counters_from(Some(256)))
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(
            ids_and_counters(&from_256),
            [(3, 256), (1, 0x123), (4, 2001)],
            "{engine:?}: compared as bytes, not as the digits' text"
        );
        // A lookback below the first counter reads from the start, not from 0xFFFF...
        let from_below = source
            .fetch(counters_from(Some(-5)))
            .await
            .unwrap_or_else(|e| panic!("{engine:?}: {e}"));
        assert_eq!(
            from_below, all,
            "{engine:?}: a negative counter is the lowest"
        );
    }
}
