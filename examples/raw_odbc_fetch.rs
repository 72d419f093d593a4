//! Benchmark baseline: fetch every row of one query with plain `odbc-api`, nothing else, so
//! `scripts/bench capture` can report a snapshot-diff pass as a ratio of a raw fetch of the
//! same SQL over the same driver and connection string.
//!
//! ```text
//! RAW_ODBC_CONNECTION='Driver=...;' raw_odbc_fetch columnar|rowwise SQL|@FILE [ROWS_PER_BATCH]
//! ```
//!
//! `@FILE` reads the SQL from a file (what `capture_step CONFIG RESOURCE --sql` printed).
//!
//! - `columnar`: the fastest idiomatic path, a bound `TextRowSet` (every column as text,
//!   `ROWS_PER_BATCH` rows per fetch, default 5000);
//! - `rowwise`: `next_row` and `get_text` per cell, as the bridge's scan decodes.
//!
//! Every value is touched (its length summed) so no fetch is optimised away. Prints rows,
//! bytes and the seconds spent executing and fetching.

use std::time::Instant;

use odbc_api::buffers::TextRowSet;
use odbc_api::{ConnectionOptions, Cursor, Environment, ResultSetMetadata};

/// Cap for columns whose size the driver cannot tell (none in the benchmark table).
const MAX_STR_LEN: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: raw_odbc_fetch columnar|rowwise SQL|@FILE [ROWS_PER_BATCH]";
    let mode = args.next().ok_or(usage)?;
    let sql = args.next().ok_or(usage)?;
    let sql = match sql.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)?.trim().to_owned(),
        None => sql,
    };
    let batch: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 5000,
    };
    let conn_str = std::env::var("RAW_ODBC_CONNECTION")
        .map_err(|_| "set RAW_ODBC_CONNECTION to the ODBC connection string")?;
    let env = Environment::new()?;
    let conn = env.connect_with_connection_string(&conn_str, ConnectionOptions::default())?;
    let started = Instant::now();
    let mut cursor = conn
        .execute(&sql, (), None)?
        .ok_or("the statement returned no result set")?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    match mode.as_str() {
        "columnar" => {
            let buffer = TextRowSet::for_cursor(batch, &mut cursor, Some(MAX_STR_LEN))?;
            let mut block = cursor.bind_buffer(buffer)?;
            while let Some(set) = block.fetch_with_truncation_check(true)? {
                for row in 0..set.num_rows() {
                    for col in 0..set.num_cols() {
                        bytes += set.at(col, row).map_or(0, |v| v.len() as u64);
                    }
                }
                rows += set.num_rows() as u64;
            }
        }
        "rowwise" => {
            let cols = cursor.num_result_cols()?;
            let cols = u16::try_from(cols)?;
            let mut buf = Vec::new();
            while let Some(mut row) = cursor.next_row()? {
                for col in 1..=cols {
                    buf.clear();
                    if row.get_text(col, &mut buf)? {
                        bytes += buf.len() as u64;
                    }
                }
                rows += 1;
            }
        }
        other => return Err(format!("unknown mode `{other}`; {usage}").into()),
    }
    println!(
        "raw {mode}: rows={rows} bytes={bytes} seconds={:.3}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
