//! Tests of the TDS harness (`tests/suite/tds/`) with tiberius, the client the `mssql` source
//! uses, over tokio: login, every type through `sp_executesql`, paging, INFORMATION_SCHEMA,
//! rowversion and change-tracking capture, faults, malformed input, concurrency. They check
//! the harness behaves like SQL Server where tiberius and our queries can tell.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use futures::StreamExt;
use rust_decimal::Decimal;
use tiberius::{Client, Config, Uuid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::tds::{TdsOptions, TdsServer};

type Conn = Client<Compat<TcpStream>>;

async fn connect_with(server: &TdsServer, config: Config) -> tiberius::Result<Conn> {
    let tcp = TcpStream::connect(server.addr()).await?;
    tcp.set_nodelay(true)?;
    Box::pin(Client::connect(config, tcp.compat_write())).await
}

async fn connect(server: &TdsServer) -> Conn {
    let config =
        Config::from_ado_string(&server.connection_string()).expect("harness connection string");
    connect_with(server, config)
        .await
        .expect("connect to the TDS harness")
}

fn server_error_code(e: &tiberius::error::Error) -> Option<u32> {
    match e {
        tiberius::error::Error::Server(token) => Some(token.code()),
        _ => None,
    }
}

const STOCK: &str = "CREATE TABLE [dbo.stock] (sku NCHAR(10) NOT NULL PRIMARY KEY, qty INT, price MONEY, \
     cost DECIMAL(12,4), updated DATETIME2(3), flag BIT, note NVARCHAR(200), id UNIQUEIDENTIFIER, \
     blob VARBINARY(50), rv ROWVERSION)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_connects_and_reports_the_harness_version() {
    let server = TdsServer::start(None, TdsOptions::default());
    let mut client = connect(&server).await;
    let row = client
        .simple_query("SELECT @@VERSION")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    let version: &str = row.get(0).unwrap();
    assert!(
        version.contains("legacy-bridge TDS test harness"),
        "{version}"
    );
    let one: Option<i32> = client
        .query("SELECT 1 AS one", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap()
        .get("one");
    assert_eq!(one, Some(1));
    assert_eq!(server.login_count(), 1);
    assert_eq!(server.batch_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_login_failures_are_error_18456() {
    let server = TdsServer::start(None, TdsOptions::default());
    let mut config = Config::from_ado_string(&server.connection_string()).unwrap();
    config.authentication(tiberius::AuthMethod::sql_server("bridge_reader", "wrong"));
    let err = connect_with(&server, config)
        .await
        .expect_err("wrong password refused");
    assert_eq!(server_error_code(&err), Some(18456), "{err}");
    assert!(
        err.to_string()
            .contains("Login failed for user 'bridge_reader'"),
        "{err}"
    );

    server.fail_next_login();
    let config = Config::from_ado_string(&server.connection_string()).unwrap();
    let err = connect_with(&server, config)
        .await
        .expect_err("injected login failure");
    assert_eq!(server_error_code(&err), Some(18456));

    let mut config = Config::from_ado_string(&server.connection_string()).unwrap();
    config.database("other");
    let err = connect_with(&server, config)
        .await
        .expect_err("unknown database refused");
    assert_eq!(server_error_code(&err), Some(4060), "{err}");

    connect(&server).await; // the fault fired once
    let stats = server.stats();
    assert_eq!((stats.logins, stats.failed_logins), (1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_every_type_round_trips_through_sp_executesql() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(
        "CREATE TABLE [dbo.types] (k INT NOT NULL PRIMARY KEY, t TINYINT, s SMALLINT, i INT, b BIGINT, \
         bit BIT, dec DECIMAL(12,4), num NUMERIC(18,2), m MONEY, sm SMALLMONEY, f FLOAT, r REAL, \
         c CHAR(5), vc VARCHAR(20), nc NCHAR(10), nvc NVARCHAR(200), nmax NVARCHAR(MAX), tx TEXT, ntx NTEXT, \
         dt DATETIME, sdt SMALLDATETIME, dt2 DATETIME2(3), d DATE, tm TIME(7), dto DATETIMEOFFSET(7), \
         g UNIQUEIDENTIFIER, bin BINARY(4), vb VARBINARY(50), vbmax VARBINARY(MAX), rv ROWVERSION)",
    );
    let mut client = connect(&server).await;
    let insert = "INSERT INTO dbo.types (k, t, s, i, b, bit, dec, num, m, sm, f, r, c, vc, nc, nvc, nmax, tx, ntx, \
                  dt, sdt, dt2, d, tm, dto, g, bin, vb, vbmax) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, \
                  @P9, @P10, @P11, @P12, @P13, @P14, @P15, @P16, @P17, @P18, @P19, @P20, @P21, @P22, @P23, @P24, \
                  @P25, @P26, @P27, @P28, @P29)";
    let long_text: String = "Grüße, 東京! ".repeat(600); // > 4000 UTF-16 units: nvarchar(max) as PLP
    let long_bytes: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    let when = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_nano_opt(13, 14, 15, 123_456_700)
        .unwrap();
    let dto =
        DateTime::<FixedOffset>::parse_from_rfc3339("2024-03-01T08:30:00.1234567+05:30").unwrap();
    let guid = Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
    let dec = Decimal::from_str("12345678.1234").unwrap();
    let num = Decimal::from_str("-9876543210.55").unwrap();
    let time = NaiveTime::from_hms_nano_opt(23, 59, 58, 999_999_900).unwrap();
    let date = NaiveDate::from_ymd_opt(1999, 12, 31).unwrap();
    let result = client
        .execute(
            insert,
            &[
                &1i32,
                &200u8,
                &-32000i16,
                &-2_000_000_000i32,
                &9_000_000_000_000i64,
                &true,
                &dec,
                &num,
                &Decimal::from_str("922337203685.4775").unwrap(),
                &Decimal::from_str("-214748.3648").unwrap(),
                &1.5e300f64,
                &3.25f32,
                &"ab",
                &"varchar text",
                &"nchar",
                &"Grüße 東京",
                &long_text.as_str(),
                &"old text",
                &"old ntext",
                &when,
                &when,
                &when,
                &date,
                &time,
                &dto,
                &guid,
                &&[1u8, 2][..],
                &&[0u8, 255, 7][..],
                &long_bytes.as_slice(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(result.rows_affected(), &[1]);
    // a row of NULLs, each sent with its own type (tiberius sends them as NULLTYPE + declaration)
    let none_int: Option<i32> = None;
    let none_str: Option<&str> = None;
    let none_dec: Option<Decimal> = None;
    let none_dt: Option<NaiveDateTime> = None;
    let none_guid: Option<Uuid> = None;
    let none_bytes: Option<&[u8]> = None;
    let none_date: Option<NaiveDate> = None;
    let none_time: Option<NaiveTime> = None;
    let none_dto: Option<DateTime<FixedOffset>> = None;
    let none_f: Option<f64> = None;
    let none_bool: Option<bool> = None;
    // k t s i b bit dec num m sm f r c vc nc nvc nmax tx ntx dt sdt dt2 d tm dto g bin vb vbmax
    let params: [&dyn tiberius::ToSql; 29] = [
        &2i32,
        &none_int,
        &none_int,
        &none_int,
        &none_int,
        &none_bool,
        &none_dec,
        &none_dec,
        &none_dec,
        &none_dec,
        &none_f,
        &none_f,
        &none_str,
        &none_str,
        &none_str,
        &none_str,
        &none_str,
        &none_str,
        &none_str,
        &none_dt,
        &none_dt,
        &none_dt,
        &none_date,
        &none_time,
        &none_dto,
        &none_guid,
        &none_bytes,
        &none_bytes,
        &none_bytes,
    ];
    client.execute(insert, &params).await.unwrap();

    let rows = client
        .query(
            "SELECT * FROM dbo.types WHERE k IN (@P1, @P2) ORDER BY k",
            &[&1i32, &2i32],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.get::<u8, _>("t"), Some(200));
    assert_eq!(r.get::<i16, _>("s"), Some(-32000));
    assert_eq!(r.get::<i32, _>("i"), Some(-2_000_000_000));
    assert_eq!(r.get::<i64, _>("b"), Some(9_000_000_000_000));
    assert_eq!(r.get::<bool, _>("bit"), Some(true));
    let got_dec: Decimal = r.get("dec").unwrap();
    assert_eq!(got_dec.to_string(), "12345678.1234");
    assert_eq!(
        r.get::<Decimal, _>("num").unwrap().to_string(),
        "-9876543210.55"
    );
    assert_eq!(r.get::<f64, _>("m"), Some(922_337_203_685.477_5));
    assert_eq!(r.get::<f64, _>("sm"), Some(-214_748.364_8));
    assert_eq!(r.get::<f64, _>("f"), Some(1.5e300));
    assert_eq!(r.get::<f32, _>("r"), Some(3.25));
    assert_eq!(
        r.get::<&str, _>("c"),
        Some("ab   "),
        "CHAR is padded to its length"
    );
    assert_eq!(r.get::<&str, _>("vc"), Some("varchar text"));
    assert_eq!(
        r.get::<&str, _>("nc"),
        Some("nchar     "),
        "NCHAR is padded to its length"
    );
    assert_eq!(r.get::<&str, _>("nvc"), Some("Grüße 東京"));
    assert_eq!(r.get::<&str, _>("nmax"), Some(long_text.as_str()));
    assert_eq!(r.get::<&str, _>("tx"), Some("old text"));
    assert_eq!(r.get::<&str, _>("ntx"), Some("old ntext"));
    // datetime keeps 1/300 s, smalldatetime minutes, datetime2(3) milliseconds
    let dt: NaiveDateTime = r.get("dt").unwrap();
    assert_eq!(dt.format("%H:%M:%S%.3f").to_string(), "13:14:15.123");
    assert_eq!(
        r.get::<NaiveDateTime, _>("sdt").unwrap().to_string(),
        "2024-02-29 13:14:00"
    );
    assert_eq!(
        r.get::<NaiveDateTime, _>("dt2").unwrap().to_string(),
        "2024-02-29 13:14:15.123"
    );
    assert_eq!(r.get::<NaiveDate, _>("d"), Some(date));
    assert_eq!(r.get::<NaiveTime, _>("tm"), Some(time));
    let got_dto: DateTime<FixedOffset> = r.get("dto").unwrap();
    assert_eq!(got_dto, dto);
    assert_eq!(got_dto.offset().local_minus_utc(), 5 * 3600 + 30 * 60);
    assert_eq!(r.get::<Uuid, _>("g"), Some(guid));
    assert_eq!(
        r.get::<&[u8], _>("bin"),
        Some(&[1u8, 2, 0, 0][..]),
        "BINARY is padded with zeros"
    );
    assert_eq!(r.get::<&[u8], _>("vb"), Some(&[0u8, 255, 7][..]));
    assert_eq!(r.get::<&[u8], _>("vbmax"), Some(long_bytes.as_slice()));
    assert_eq!(r.get::<&[u8], _>("rv").map(<[u8]>::len), Some(8));

    let n = &rows[1];
    assert_eq!(n.get::<u8, _>("t"), None);
    assert_eq!(n.get::<Decimal, _>("dec"), None);
    assert_eq!(n.get::<&str, _>("nc"), None);
    assert_eq!(n.get::<&str, _>("nmax"), None);
    assert_eq!(n.get::<NaiveDateTime, _>("dt2"), None);
    assert_eq!(n.get::<DateTime<FixedOffset>, _>("dto"), None);
    assert_eq!(n.get::<Uuid, _>("g"), None);
    assert_eq!(n.get::<&[u8], _>("vbmax"), None);
    assert_eq!(n.get::<&[u8], _>("rv").map(<[u8]>::len), Some(8));

    // the storage form is documented: decimals as numbers, datetimes as ISO text, and values
    // are converted to the column's type when written (datetime2(3) keeps milliseconds)
    let stored = server.query("SELECT dec, dt2, dto, g FROM [dbo.types] WHERE k = 1");
    assert_eq!(
        stored[0][1],
        rusqlite::types::Value::Text("2024-02-29 13:14:15.123".into())
    );
    assert_eq!(
        stored[0][2],
        rusqlite::types::Value::Text("2024-03-01 08:30:00.1234567 +05:30".into())
    );
    assert_eq!(
        stored[0][3],
        rusqlite::types::Value::Text("6F9619FF-8B86-D011-B42D-00C04FC964FF".into())
    );

    // a timestamp cursor at the value read back does not see the row again
    let again = client
        .query(
            "SELECT k FROM dbo.types WHERE dt2 > @P1",
            &[&r.get::<NaiveDateTime, _>("dt2").unwrap()],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert!(again.is_empty());
    // values that do not fit the column are refused like SQL Server does
    for (sql, code) in [
        ("UPDATE dbo.types SET t = 256 WHERE k = 1", 8115),
        (
            "UPDATE dbo.types SET vc = N'this is longer than twenty' WHERE k = 1",
            2628,
        ),
        ("UPDATE dbo.types SET dt = N'not a date' WHERE k = 1", 241),
        ("UPDATE dbo.types SET g = N'nope' WHERE k = 1", 8169),
    ] {
        let err = client.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(server_error_code(&err), Some(code), "{sql}: {err}");
    }

    // parameters typed by the client come back with their type
    let row = client
        .query(
            "SELECT @P1 AS d, @P2 AS w, @P3 AS g, CAST(@P4 AS DECIMAL(10,2)) AS c",
            &[&dec, &when, &guid, &"1.005"],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<Decimal, _>("d"), Some(dec));
    assert_eq!(row.get::<NaiveDateTime, _>("w"), Some(when));
    assert_eq!(row.get::<Uuid, _>("g"), Some(guid));
    assert_eq!(row.get::<Decimal, _>("c").unwrap().to_string(), "1.01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_top_and_offset_fetch_page_like_sql_server() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    let mut client = connect(&server).await;
    for i in 0..25 {
        client
            .execute(
                "INSERT INTO [dbo].[stock] (sku, qty) VALUES (@P1, @P2)",
                &[&format!("S{i:03}"), &i],
            )
            .await
            .unwrap();
    }
    let skus = |rows: Vec<tiberius::Row>| -> Vec<String> {
        rows.iter()
            .map(|r| r.get::<&str, _>(0).unwrap().trim_end().to_owned())
            .collect()
    };
    let top = client
        .query(
            "SELECT TOP (@P1) sku FROM dbo.stock WHERE qty >= @P2 ORDER BY sku DESC",
            &[&3i32, &10i32],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(skus(top), ["S024", "S023", "S022"]);
    let mut seen = Vec::new();
    for page in 0..3i64 {
        let rows = client
            .query(
                "SELECT [sku], qty FROM [dbo].[stock] ORDER BY sku OFFSET @P1 ROWS FETCH NEXT @P2 ROWS ONLY",
                &[&(page * 10), &10i64],
            )
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        seen.extend(skus(rows));
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.first().map(String::as_str), Some("S000"));
    assert_eq!(seen.last().map(String::as_str), Some("S024"));
    // SQL Server wants ORDER BY with OFFSET
    let err = client
        .query("SELECT sku FROM dbo.stock OFFSET 0 ROWS", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(server_error_code(&err), Some(102));
    // text sorts and compares case-insensitively, like SQL_Latin1_General_CP1_CI_AS
    server.execute("INSERT INTO [dbo.stock] (sku, qty) VALUES ('b', 100), ('X', 101), ('z', 102)");
    let ci = client
        .query(
            "SELECT sku FROM dbo.stock WHERE sku > @P1 ORDER BY sku",
            &[&"S024"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(skus(ci), ["X", "z"]);
    // padded NCHAR keys still match (trailing spaces are ignored in comparisons)
    let hit = client
        .query(
            "SELECT qty FROM dbo.stock WHERE sku = @P1",
            &[&"S007      "],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap();
    assert_eq!(hit.and_then(|r| r.get::<i32, _>(0)), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_statements_results_and_errors() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    let mut client = connect(&server).await;
    let sets = client
        .simple_query(
            "SET NOCOUNT ON; SELECT 1 AS a; SELECT N'x' AS b, 2.5 AS c UNION ALL SELECT N'y', 3",
        )
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].len(), 2);
    assert_eq!(sets[1][1].get::<&str, _>("b"), Some("y"));
    assert_eq!(
        sets[1][0]
            .get::<Decimal, _>("c")
            .map(|d| d.to_string())
            .as_deref(),
        Some("2.5"),
        "a literal with a point is numeric, as in SQL Server"
    );
    let unnamed = client
        .query("SELECT COUNT(*) FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unnamed.columns()[0].name(), "");
    assert_eq!(unnamed.get::<i32, _>(0), Some(0));

    for (sql, code) in [
        ("SELECT * FROM dbo.nope", 208),
        ("SELECT nope FROM dbo.stock", 207),
        ("SELEC 1", 102),
        ("SELECT @P9", 137),
        ("UPDATE dbo.stock SET rv = 0x01", 272),
        ("MERGE dbo.stock USING x", 102),
    ] {
        let err = client
            .execute(sql, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} should fail"));
        assert_eq!(server_error_code(&err), Some(code), "{sql}: {err}");
    }
    client
        .execute("INSERT INTO dbo.stock (sku, qty) VALUES (N'A', 1)", &[])
        .await
        .unwrap();
    let err = client
        .execute("INSERT INTO dbo.stock (sku, qty) VALUES (N'A', 2)", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(server_error_code(&err), Some(2627));

    // savepoints, string functions, the change tracking catalog view
    let mixed = client
        .simple_query(
            "BEGIN TRAN; INSERT INTO dbo.stock (sku, qty) VALUES (N'S1', 1); SAVE TRAN p1; \
             INSERT INTO dbo.stock (sku, qty) VALUES (N'S2', 2); ROLLBACK TRAN p1; COMMIT; \
             SELECT LEFT(sku, 1) AS l, RIGHT(RTRIM(sku), 1) AS r, LEN(sku) AS n, ISNULL(note, N'-') AS note \
             FROM dbo.stock WHERE sku LIKE N's%' ORDER BY sku; \
             SELECT COUNT(*) FROM sys.change_tracking_tables",
        )
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        mixed[0].len(),
        1,
        "the insert after the savepoint was rolled back"
    );
    assert_eq!(mixed[0][0].get::<&str, _>("l"), Some("S"));
    assert_eq!(mixed[0][0].get::<&str, _>("r"), Some("1"));
    assert_eq!(mixed[0][0].get::<i32, _>("n"), Some(2));
    assert_eq!(mixed[0][0].get::<&str, _>("note"), Some("-"));
    assert_eq!(mixed[1][0].get::<i32, _>(0), Some(0));
    client
        .execute("DELETE FROM dbo.stock WHERE sku = N'S1'", &[])
        .await
        .unwrap();

    // sp_executesql called by name, with named parameters
    let mut by_name = tiberius::Command::new("sys.sp_executesql");
    by_name.bind_param(
        "@stmt",
        "SELECT sku, qty FROM dbo.stock WHERE qty = @wanted",
    );
    by_name.bind_param("@params", "@wanted int");
    by_name.bind_param("@wanted", 1i32);
    let result = by_name
        .exec(&mut client)
        .await
        .unwrap()
        .into_command_result()
        .await
        .unwrap();
    assert_eq!(result.return_code(), 0);
    assert_eq!(result.to_query_result(0).map(Vec::len), Some(1));
    let err = tiberius::Command::new("dbo.usp_nope")
        .exec(&mut client)
        .await
        .unwrap()
        .into_command_result()
        .await;
    assert_eq!(
        server_error_code(&err.expect_err("unknown procedure")),
        Some(2812)
    );

    // transactions: T-SQL statements and tiberius' Transaction Manager requests
    let counted = client
        .execute("UPDATE dbo.stock SET qty = 2", &[])
        .await
        .unwrap();
    assert_eq!(
        counted.rows_affected(),
        &[0],
        "SET NOCOUNT ON lasts for the session"
    );
    client
        .simple_query("SET NOCOUNT OFF BEGIN TRAN UPDATE dbo.stock SET qty = 5")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client
        .simple_query("ROLLBACK")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client.begin_transaction().await.unwrap();
    let updated = client
        .execute("UPDATE dbo.stock SET qty = qty + @P1", &[&10i32])
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), &[1]);
    let trancount = client
        .query("SELECT @@TRANCOUNT", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trancount.get::<i32, _>(0), Some(1));
    client.commit_transaction().await.unwrap();
    let qty = client
        .query("SELECT qty FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        qty.get::<i32, _>(0),
        Some(12),
        "the rolled back update is gone"
    );
    let err = match client.simple_query("COMMIT").await {
        Err(e) => e,
        Ok(stream) => stream
            .into_results()
            .await
            .expect_err("COMMIT without BEGIN fails"),
    };
    assert_eq!(server_error_code(&err), Some(3902));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_information_schema_shows_declared_types() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    let mut client = connect(&server).await;
    let tables = client
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES",
            &[],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let names: Vec<(&str, &str, &str)> = tables
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))
        .collect();
    assert_eq!(
        names,
        [("dbo", "stock", "BASE TABLE")],
        "harness tables stay hidden"
    );
    let cols = client
        .query(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, \
             NUMERIC_SCALE, IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 \
             ORDER BY ORDINAL_POSITION",
            &[&"dbo", &"stock"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let shown: Vec<String> = cols
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} {:?} {:?} {}",
                r.get::<&str, _>(0).unwrap(),
                r.get::<i32, _>(1).unwrap(),
                r.get::<&str, _>(2).unwrap(),
                r.get::<i32, _>(3),
                r.get::<u8, _>(4),
                r.get::<i32, _>(5),
                r.get::<&str, _>(6).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            "sku 1 nchar Some(10) None None NO",
            "qty 2 int None Some(10) Some(0) YES",
            "price 3 money None Some(19) Some(4) YES",
            "cost 4 decimal None Some(12) Some(4) YES",
            "updated 5 datetime2 None None None YES",
            "flag 6 bit None None None YES",
            "note 7 nvarchar Some(200) None None YES",
            "id 8 uniqueidentifier None None None YES",
            "blob 9 varbinary Some(50) None None YES",
            "rv 10 timestamp None None None NO",
        ]
    );
    let key = client
        .query(
            "SELECT k.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS t JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE k \
             ON k.CONSTRAINT_NAME = t.CONSTRAINT_NAME WHERE t.CONSTRAINT_TYPE = 'PRIMARY KEY' AND t.TABLE_NAME = N'stock'",
            &[],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.get::<&str, _>(0), Some("sku"));
}

fn rv_of(row: &tiberius::Row, col: &str) -> i64 {
    let b: &[u8] = row.get(col).unwrap();
    i64::from_be_bytes(b.try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_rowversion_stamps_and_min_active_rowversion() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    server.execute("INSERT INTO [dbo.stock] (sku, qty) VALUES ('SEED', 1)");
    let mut client = connect(&server).await;
    let seeded = server.dbts();
    assert_eq!(seeded, 2001, "setup rows are stamped too");
    client
        .execute(
            "INSERT INTO dbo.stock (sku, qty) VALUES (@P1, 1), (@P2, 2)",
            &[&"A", &"B"],
        )
        .await
        .unwrap();
    client
        .execute("UPDATE dbo.stock SET qty = 3 WHERE sku = @P1", &[&"A"])
        .await
        .unwrap();
    let rows = client
        .query("SELECT sku, rv, @@DBTS AS dbts, MIN_ACTIVE_ROWVERSION() AS mar FROM dbo.stock ORDER BY rv", &[])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let stamps: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("sku").unwrap().trim_end().to_owned(),
                rv_of(r, "rv"),
            )
        })
        .collect();
    assert_eq!(
        stamps,
        [
            ("SEED".into(), 2001),
            ("B".into(), 2003),
            ("A".into(), 2004)
        ]
    );
    assert_eq!(rv_of(&rows[0], "dbts"), 2004);
    assert_eq!(rv_of(&rows[0], "mar"), 2005);

    // a test holds a transaction in flight: its rowversion is reserved and not yet visible
    let inflight = server.hold_rowversion();
    assert_eq!(inflight.value(), 2005);
    client
        .execute("INSERT INTO dbo.stock (sku, qty) VALUES (@P1, 9)", &[&"C"])
        .await
        .unwrap();
    let bounded = client
        .query(
            "SELECT sku, rv FROM dbo.stock WHERE rv > @P1 AND rv < MIN_ACTIVE_ROWVERSION() ORDER BY rv",
            &[&2004i64.to_be_bytes().as_slice()],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert!(
        bounded.is_empty(),
        "C (2006) is above MIN_ACTIVE_ROWVERSION (2005) while 2005 is in flight"
    );
    let mar = client
        .query("SELECT MIN_ACTIVE_ROWVERSION()", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        i64::from_be_bytes(mar.get::<&[u8], _>(0).unwrap().try_into().unwrap()),
        2005
    );
    inflight.commit("INSERT INTO [dbo.stock] (sku, qty) VALUES ('LATE', 5)");
    let after = client
        .query(
            "SELECT sku, rv FROM dbo.stock WHERE rv > @P1 AND rv < MIN_ACTIVE_ROWVERSION() ORDER BY rv",
            &[&2004i64.to_be_bytes().as_slice()],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    let late: Vec<(String, i64)> = after
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("sku").unwrap().trim_end().to_owned(),
                rv_of(r, "rv"),
            )
        })
        .collect();
    assert_eq!(late, [("LATE".into(), 2005), ("C".into(), 2006)]);
    let casted = client
        .query(
            "SELECT CAST(MAX(rv) AS BIGINT) AS m FROM dbo.stock WHERE rv <= CAST(@P1 AS BINARY(8))",
            &[&2005i64],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(casted.get::<i64, _>("m"), Some(2005));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_change_tracking_nets_changes_per_key() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    let mut client = connect(&server).await;
    let current = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS v";
    let version = |row: Option<tiberius::Row>| row.and_then(|r| r.get::<i64, _>(0));
    let v = version(
        client
            .query(current, &[])
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap(),
    );
    assert_eq!(v, None, "NULL until change tracking is enabled");
    server.enable_change_tracking("dbo.stock");
    let v0 = version(
        client
            .query(current, &[])
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap(),
    )
    .unwrap();

    client
        .simple_query("BEGIN TRAN; INSERT INTO dbo.stock (sku, qty) VALUES (N'A', 1), (N'B', 2), (N'C', 3); COMMIT")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let v1 = version(
        client
            .query(current, &[])
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v1, v0 + 1, "one version per committed transaction");
    assert_eq!(server.change_tracking_version(), Some(v1));
    client
        .execute("UPDATE dbo.stock SET qty = 20 WHERE sku = @P1", &[&"B"])
        .await
        .unwrap();
    client
        .execute("DELETE FROM dbo.stock WHERE sku = @P1", &[&"C"])
        .await
        .unwrap();
    client
        .execute("INSERT INTO dbo.stock (sku, qty) VALUES (@P1, 4)", &[&"D"])
        .await
        .unwrap();
    client
        .execute("DELETE dbo.stock WHERE sku = @P1", &[&"D"])
        .await
        .unwrap();
    server.execute("UPDATE [dbo.stock] SET qty = 11 WHERE sku = 'A'"); // a legacy app writes too

    let changes = "SELECT CT.SYS_CHANGE_VERSION, CT.SYS_CHANGE_OPERATION, CT.sku, s.qty \
                   FROM CHANGETABLE(CHANGES [dbo].[stock], @P1) AS CT LEFT JOIN dbo.stock s ON s.sku = CT.sku \
                   ORDER BY CT.sku";
    let net = |rows: Vec<tiberius::Row>| -> Vec<String> {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {} {:?}",
                    r.get::<&str, _>(2).unwrap().trim_end(),
                    r.get::<&str, _>(1).unwrap(),
                    r.get::<i32, _>(3)
                )
            })
            .collect()
    };
    client
        .simple_query("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let since_v0 = client
        .query(changes, &[&v0])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(
        since_v0[0].get::<i64, _>(0),
        Some(v0 + 6),
        "A's last change"
    );
    assert_eq!(
        net(since_v0),
        ["A I Some(11)", "B I Some(20)", "C D None", "D D None"]
    );
    let since_v1 = client
        .query(changes, &[&v1])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(
        net(since_v1),
        ["A U Some(11)", "B U Some(20)", "C D None", "D D None"]
    );
    client
        .simple_query("COMMIT")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();

    let min_valid = "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.stock'))";
    let m = version(
        client
            .query(min_valid, &[])
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap(),
    );
    assert_eq!(m, Some(v0));
    let cleaned = server.cleanup_change_tracking("dbo.stock");
    assert_eq!(cleaned, v0 + 6);
    let m = version(
        client
            .query(min_valid, &[])
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap(),
    );
    assert_eq!(
        m,
        Some(v0 + 6),
        "a client that synced at v1 now holds an expired version"
    );
    let after = client
        .query(changes, &[&v1])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert!(
        after.is_empty(),
        "history before the min valid version is gone"
    );
    let untracked = client
        .query(
            "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.nope'))",
            &[],
        )
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap();
    assert_eq!(version(untracked), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_faults_drop_deadlock_delay_refuse_restart() {
    let mut server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    let values: Vec<String> = (0..200).map(|i| format!("('R{i:04}', {i})")).collect();
    server.execute(&format!(
        "INSERT INTO [dbo.stock] (sku, qty) VALUES {}",
        values.join(", ")
    ));
    let mut client = connect(&server).await;

    server.drop_connection_after_rows(50);
    let mut stream = client
        .query("SELECT sku, qty FROM dbo.stock ORDER BY sku", &[])
        .await
        .unwrap()
        .into_row_stream();
    let mut got = 0;
    let mut failed = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => got += 1,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "a connection dropped mid-result is an error, not a short result"
    );
    assert!(
        got <= 50,
        "no more than the rows sent before the drop: {got}"
    );
    drop(stream);
    drop(client);

    let mut client = connect(&server).await;
    server.deadlock_next(1);
    let err = client
        .query("SELECT COUNT(*) FROM dbo.stock", &[])
        .await
        .expect_err("deadlock victim");
    assert_eq!(server_error_code(&err), Some(1205), "{err}");
    assert!(err.to_string().contains("Rerun the transaction"));
    let count = client
        .query("SELECT COUNT(*) FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        count.get::<i32, _>(0),
        Some(200),
        "the retry on the same connection works"
    );

    // a deadlock victim's transaction is rolled back
    client.begin_transaction().await.unwrap();
    client
        .execute("DELETE FROM dbo.stock WHERE qty < @P1", &[&100i32])
        .await
        .unwrap();
    server.deadlock_next(1);
    let err = client
        .execute("DELETE FROM dbo.stock", &[])
        .await
        .expect_err("deadlock victim");
    assert_eq!(server_error_code(&err), Some(1205));
    let state = client
        .query("SELECT @@TRANCOUNT, COUNT(*) FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.get::<i32, _>(0), Some(0), "no transaction left");
    assert_eq!(
        state.get::<i32, _>(1),
        Some(200),
        "its delete was rolled back"
    );

    server.delay_responses(Duration::from_millis(300));
    let started = Instant::now();
    client
        .query("SELECT 1", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.delay_responses(Duration::ZERO);

    server.refuse_connections(true);
    let config = Config::from_ado_string(&server.connection_string()).unwrap();
    assert!(connect_with(&server, config).await.is_err(), "refused");
    server.refuse_connections(false);
    connect(&server).await;

    server.stop();
    assert!(
        TcpStream::connect(server.addr()).await.is_err(),
        "nothing listens after stop"
    );
    server.restart();
    let mut client = connect(&server).await;
    let count = client
        .query("SELECT COUNT(*) FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        count.get::<i32, _>(0),
        Some(200),
        "data survives a restart on the same port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_attention_and_dropped_streams_leave_the_connection_usable() {
    let server = TdsServer::start(None, TdsOptions::default());
    server.execute(STOCK);
    let values: Vec<String> = (0..3000).map(|i| format!("('R{i:05}', {i})")).collect();
    server.execute(&format!(
        "INSERT INTO [dbo.stock] (sku, qty) VALUES {}",
        values.join(", ")
    ));
    let mut client = connect(&server).await;

    // a stream dropped after one row: the next request drains the rest first
    {
        let mut rows = client
            .query("SELECT sku, note FROM dbo.stock", &[])
            .await
            .unwrap()
            .into_row_stream();
        rows.next().await.unwrap().unwrap();
    }
    let count = client
        .query("SELECT COUNT(*) FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count.get::<i32, _>(0), Some(3000));

    // a request cancelled while the server works: ATTENTION, DONE with the attention bit
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        client.query("WAITFOR DELAY '00:00:05'; SELECT 1", &[]),
    )
    .await
    .is_err();
    assert!(timed_out, "still waiting");
    let started = Instant::now();
    client.cancel_query().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the wait (5 s) was cut short"
    );
    let one = client
        .query("SELECT 2", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.get::<i32, _>(0), Some(2));

    // cancelled while rows stream (far more than socket buffers hold): rows stop at a packet
    // boundary and the response ends with DONE carrying the attention bit
    server.execute(
        "CREATE TABLE [dbo.wide] (k INT NOT NULL PRIMARY KEY, note NVARCHAR(400));
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
         INSERT INTO [dbo.wide] SELECT i, printf('%.300c', 'x') FROM n;",
    );
    {
        let mut rows = client
            .query("SELECT k, note FROM dbo.wide ORDER BY k", &[])
            .await
            .unwrap()
            .into_row_stream();
        rows.next().await.unwrap().unwrap();
    }
    client.cancel_query().await.unwrap();
    let five = client
        .query("SELECT 5", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(five.get::<i32, _>(0), Some(5));

    server.delay_responses(Duration::from_secs(5));
    let timed_out = tokio::time::timeout(Duration::from_millis(200), client.query("SELECT 3", &[]))
        .await
        .is_err();
    assert!(timed_out);
    client.cancel_query().await.unwrap();
    server.delay_responses(Duration::ZERO);
    let four = client
        .query("SELECT 4", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(four.get::<i32, _>(0), Some(4));
    assert_eq!(server.stats().attentions, 3);
}

/// A LOGIN7 built by hand for raw-socket tests.
fn login7(user: &str, password: &str) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let scrambled: Vec<u8> = utf16(password)
        .iter()
        .map(|b| b.rotate_right(4) ^ 0xA5)
        .collect();
    let fields: [Vec<u8>; 9] = [
        utf16("host"),
        utf16(user),
        scrambled,
        utf16("raw"),
        utf16(""),
        vec![],
        vec![],
        vec![],
        vec![],
    ];
    let mut fixed = Vec::new();
    fixed.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    fixed.extend_from_slice(&0x7400_0004u32.to_le_bytes());
    fixed.extend_from_slice(&4096u32.to_le_bytes());
    fixed.extend_from_slice(&[0; 12]);
    fixed.extend_from_slice(&[0xE0, 0x03, 0, 0]);
    fixed.extend_from_slice(&[0; 8]);
    let mut data = Vec::new();
    let mut offset = 94u16;
    for (i, f) in fields.iter().enumerate() {
        fixed.extend_from_slice(&offset.to_le_bytes());
        fixed.extend_from_slice(&((f.len() / 2) as u16).to_le_bytes());
        if i == 8 {
            fixed.extend_from_slice(&[0; 6]); // client id
        }
        data.extend_from_slice(f);
        offset += f.len() as u16;
    }
    fixed.extend_from_slice(&[0; 12]); // sspi, attach db file, change password
    fixed.extend_from_slice(&[0; 4]); // long sspi
    assert_eq!(fixed.len(), 94);
    fixed.extend_from_slice(&data);
    let len = fixed.len() as u32;
    fixed[..4].copy_from_slice(&len.to_le_bytes());
    fixed
}

fn packet(ty: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![ty, 0x01];
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    p.extend_from_slice(payload);
    p
}

/// Reads until the server closes the connection; the bytes it sent.
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the server closes the connection");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_malformed_packets_close_that_connection_only() {
    let server = TdsServer::start(None, TdsOptions::default());
    let mut client = connect(&server).await;
    let o = TdsOptions::default();

    // an unknown packet type
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(&[0x99, 0x01, 0x00, 0x08, 0, 0, 1, 0])
        .await
        .unwrap();
    assert!(read_to_close(&mut tcp).await.is_empty());
    // a length shorter than the header
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(&[0x12, 0x01, 0x00, 0x02, 0, 0, 1, 0])
        .await
        .unwrap();
    read_to_close(&mut tcp).await;
    // a PRELOGIN whose option table points outside the message
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(&packet(0x12, &[0x00, 0x7F, 0x00, 0x00, 0x06, 0xFF]))
        .await
        .unwrap();
    read_to_close(&mut tcp).await;
    // a LOGIN7 cut short
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(&packet(0x12, &[0xFF])).await.unwrap();
    tcp.write_all(&packet(0x10, &login7(&o.user, &o.password)[..60]))
        .await
        .unwrap();
    let answer = read_to_close(&mut tcp).await;
    assert_eq!(
        answer.first(),
        Some(&0x04),
        "the PRELOGIN was answered before the bad LOGIN7"
    );
    // logged in, then an RPC whose parameter is truncated: ERROR 4002, then closed
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    tcp.write_all(&packet(0x12, &[0xFF])).await.unwrap();
    tcp.write_all(&packet(0x10, &login7(&o.user, &o.password)))
        .await
        .unwrap();
    let mut rpc = vec![
        22, 0, 0, 0, 18, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    rpc.extend_from_slice(&[0xFF, 0xFF, 10, 0, 0, 0, 0, 0, 0xE7, 0x40, 0x1F, 9, 4]);
    tcp.write_all(&packet(0x03, &rpc)).await.unwrap();
    let answer = read_to_close(&mut tcp).await;
    let error_4002 = [0xAA_u8];
    assert!(
        answer.windows(1).any(|w| w == error_4002),
        "an ERROR token before closing"
    );
    // random garbage in well-framed packets after a login
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for ty in [0x01u8, 0x03, 0x0E, 0x07] {
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        tcp.write_all(&packet(0x12, &[0xFF])).await.unwrap();
        tcp.write_all(&packet(0x10, &login7(&o.user, &o.password)))
            .await
            .unwrap();
        let garbage: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        tcp.write_all(&packet(ty, &garbage)).await.unwrap();
        read_to_close(&mut tcp).await;
    }
    assert!(
        server.stats().protocol_errors >= 8,
        "{:?} {:?}",
        server.stats(),
        server.last_protocol_error()
    );

    // the server keeps serving everyone else
    let one = client
        .query("SELECT 1", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.get::<i32, _>(0), Some(1));
    connect(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tds_twenty_concurrent_connections() {
    let server = std::sync::Arc::new(TdsServer::start(None, TdsOptions::default()));
    server.execute(STOCK);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&server).await;
            client
                .execute(
                    "INSERT INTO dbo.stock (sku, qty) VALUES (@P1, @P2)",
                    &[&format!("C{i:02}"), &i],
                )
                .await
                .unwrap();
            let rows = client
                .query("SELECT sku FROM dbo.stock", &[])
                .await
                .unwrap()
                .into_first_result()
                .await
                .unwrap();
            assert!(!rows.is_empty());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut client = connect(&server).await;
    let n = client
        .query("SELECT COUNT(*) FROM dbo.stock", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.get::<i32, _>(0), Some(20));
    assert_eq!(server.login_count(), 21);
}
