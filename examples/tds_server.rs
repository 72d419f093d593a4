//! Benchmark server: the TDS test harness (`tests/suite/tds`, SQLite behind a TDS 7.4 front
//! end) as a long-running process, so `scripts/bench mssql` can point the bridge's `mssql`
//! source at it. It is not a SQL Server: figures measured against it track the bridge's own
//! mssql path (TDS encoding and decoding, pool, paging), not a server's speed.
//!
//! ```text
//! tds_server serve DB ROWS    create and seed table ITEM_STOCK in the SQLite file DB with ROWS
//!                             rows if it has no such table, listen on a free loopback port,
//!                             print `tds_server: port=N rows=N seed_seconds=S database=D
//!                             user=U`, and serve until killed
//! tds_server touch DB         a legacy application writing: QTY + 1 in every 100th row (by
//!                             rowid) of ITEM_STOCK, one transaction; prints `touched=N`
//! ```
//!
//! The login's password is `TDS_PASSWORD` when set, else the harness default. Seeding runs as
//! one SQLite transaction on the harness' own connection, not through TDS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

// The harness is test code; only part of its API is used here.
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../tests/suite/tds/mod.rs"]
mod tds;

use tds::{TdsOptions, TdsServer};

/// The benchmark table, in SQL Server spelling (the harness types result columns by the
/// declared types): a stock list keyed by item code, one row per item.
const CREATE_TABLE: &str = "CREATE TABLE ITEM_STOCK (
    ITEM_CODE NVARCHAR(20)  NOT NULL PRIMARY KEY,
    LOCATION  NVARCHAR(10)  NOT NULL,
    QTY       INT           NOT NULL,
    PRICE     DECIMAL(12,4) NOT NULL,
    UPDATED   DATETIME2(3)  NOT NULL,
    NOTE      NVARCHAR(100) NULL
)";

/// Item `i` of `1..=ROWS`, deterministic: item codes `I0000001`..., 40 locations, prices with
/// four decimals, timestamps over a year with milliseconds (stored without trailing zeros in
/// the fraction, as the harness stores DATETIME2), a NOTE with non-ASCII text in 9 rows of 10.
const SEED_ROWS: &str = "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows)
INSERT INTO ITEM_STOCK (ITEM_CODE, LOCATION, QTY, PRICE, UPDATED, NOTE)
SELECT printf('I%07d', i),
       printf('S%02d', i % 40),
       (i * 7919) % 1000,
       ((i * 104729) % 10000000) / 10000.0,
       rtrim(rtrim(printf('%s.%03d', datetime('2024-01-01', '+' || ((i * 37) % 31536000) || ' seconds'), i % 1000), '0'), '.'),
       CASE WHEN i % 10 = 0 THEN NULL ELSE printf('Regal %d, Fach %d – geprüft', i % 50, i % 12) END
FROM seq";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tds_server serve DB ROWS | tds_server touch DB";
    let mode = args.next().context(usage)?;
    let db = PathBuf::from(args.next().context(usage)?);
    let mut options = TdsOptions::default();
    if let Ok(password) = std::env::var("TDS_PASSWORD") {
        options.password = password;
    }
    match mode.as_str() {
        "serve" => {
            let rows: u64 = args
                .next()
                .context(usage)?
                .parse()
                .context("ROWS must be a whole number")?;
            anyhow::ensure!(args.next().is_none(), "{usage}");
            let server = TdsServer::start(Some(&db), options.clone());
            let exists = server
                .query("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'ITEM_STOCK'");
            let started = Instant::now();
            if exists.is_empty() {
                server
                    .try_execute(CREATE_TABLE)
                    .map_err(anyhow::Error::msg)?;
                server
                    .try_execute(&SEED_ROWS.replace(":rows", &rows.to_string()))
                    .map_err(anyhow::Error::msg)?;
            }
            let seed_seconds = started.elapsed().as_secs_f64();
            let count = match server.query("SELECT COUNT(*) FROM ITEM_STOCK").first() {
                Some(row) => match row.first() {
                    Some(rusqlite::types::Value::Integer(n)) => *n,
                    other => anyhow::bail!("unexpected row count {other:?}"),
                },
                None => anyhow::bail!("no row count"),
            };
            anyhow::ensure!(
                u64::try_from(count) == Ok(rows),
                "ITEM_STOCK in {} has {count} rows, expected {rows}",
                db.display()
            );
            println!(
                "tds_server: port={} rows={count} seed_seconds={seed_seconds:.3} database={} user={}",
                server.addr().port(),
                options.database,
                options.user
            );
            // Served by the harness' own threads; this one only keeps the process alive.
            loop {
                std::thread::park();
            }
        }
        "touch" => {
            anyhow::ensure!(args.next().is_none(), "{usage}");
            let server = TdsServer::start(Some(&db), options);
            let touched = server
                .query("SELECT COUNT(*) FROM ITEM_STOCK WHERE rowid % 100 = 0")
                .first()
                .and_then(|row| row.first().cloned());
            server
                .try_execute("UPDATE ITEM_STOCK SET QTY = QTY + 1 WHERE rowid % 100 = 0")
                .map_err(anyhow::Error::msg)?;
            match touched {
                Some(rusqlite::types::Value::Integer(n)) => println!("touched={n}"),
                other => anyhow::bail!("unexpected count {other:?}"),
            }
            Ok(())
        }
        other => anyhow::bail!("unknown mode `{other}`; {usage}"),
    }
}
