//! Benchmark baseline: diff two CSV exports by their key column with the `csv-diff` crate
//! (`CsvByteDiffLocal`, its default rayon pool), so `scripts/bench files` can report applying
//! an export as a ratio of a plain in-memory diff of the same two files.
//!
//! ```text
//! csv_diff_baseline OLD.csv NEW.csv [KEY_COLUMN]     (KEY_COLUMN counts from 0, default 0)
//! ```
//!
//! Both files must have the same header. Prints the differences found, counted as
//! `csv-diff: added=N modified=N deleted=N seconds=S` (seconds from opening the files to the
//! counts).

use std::fs::File;
use std::time::Instant;

use csv_diff::csv::Csv;
use csv_diff::csv_diff::CsvByteDiffLocalBuilder;
use csv_diff::diff_row::DiffByteRecord;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: csv_diff_baseline OLD.csv NEW.csv [KEY_COLUMN]";
    let old = args.next().ok_or(usage)?;
    let new = args.next().ok_or(usage)?;
    let key: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 0,
    };
    let started = Instant::now();
    let differ = CsvByteDiffLocalBuilder::new()
        .primary_key_columns([key])
        .build()?;
    let diff = differ.diff(
        Csv::with_reader_seek(File::open(&old)?),
        Csv::with_reader_seek(File::open(&new)?),
    )?;
    let (mut added, mut modified, mut deleted) = (0u64, 0u64, 0u64);
    for record in diff.iter() {
        match record {
            DiffByteRecord::Add(_) => added += 1,
            DiffByteRecord::Modify { .. } => modified += 1,
            DiffByteRecord::Delete(_) => deleted += 1,
        }
    }
    println!(
        "csv-diff: added={added} modified={modified} deleted={deleted} seconds={:.3}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
