//! Benchmark input: two CSV exports of a price/stock list, the second one a day later, for
//! `scripts/bench files`.
//!
//! ```text
//! export_pair DIR [ROWS] [SEED]      (ROWS default 1000000, SEED default 1)
//! ```
//!
//! Writes `DIR/a.csv` (a header and ROWS rows) and `DIR/b.csv`: `a.csv` with about 0.5% of
//! its rows updated (one or two fields changed: the price, the stock, or the price and the
//! date), about 0.25% deleted and about 0.25% new ones (new keys) inserted between the others;
//! every other row is the same line in the same order. The same ROWS and SEED always give the
//! same bytes. Nine columns, UTF-8, `,`-separated, RFC 4180 quoting:
//!
//! ```text
//! sku,name,brand,ean,category,price,stock,pack_size,updated_on
//! SKU00000013,"Bolt, hex M8 ""DIN 933"" 40",Brixol,4006381000013,Fasteners,0.35,1200,100,2026-10-30
//! ```
//!
//! `sku` is unique and the rows are not sorted by it. Prints the exact counts as
//! `export_pair: a_rows=N b_rows=N updated=N created=N deleted=N`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Share of `a.csv`'s rows updated, deleted, and (relative to ROWS) inserted.
const UPDATE_SHARE: f64 = 0.005;
const DELETE_SHARE: f64 = 0.0025;
const INSERT_SHARE: f64 = 0.0025;

/// splitmix64: small, fast and the same on every platform and version (unlike `rand`'s
/// `StdRng`, whose algorithm may change between releases).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

const ITEMS: &[&str] = &[
    "Bolt",
    "Nut",
    "Washer",
    "Screw",
    "Hinge",
    "Bracket",
    "Cable",
    "Hose",
    "Valve",
    "Filter",
    "Lamp",
    "Switch",
    "Socket",
    "Glove",
    "Brush",
    "Tape",
    "Drill bit",
    "Saw blade",
    "Clamp",
    "Pipe",
];
const DETAILS: &[&str] = &[
    "hex M8",
    "stainless",
    "galvanised",
    "black",
    "white",
    "heavy duty",
    "1/2 in",
    "20 mm",
    "pack",
    "coarse",
    "fine",
    "brass",
    "PVC",
    "LED 9W",
    "cordless",
];
const BRANDS: &[&str] = &[
    "Brixol",
    "Hamtec",
    "Nordwerk",
    "Fixa",
    "Kronmeister",
    "Lumo",
    "Protec",
    "Stahlbau",
];
const CATEGORIES: &[&str] = &[
    "Fasteners",
    "Plumbing",
    "Electrical",
    "Tools",
    "Garden",
    "Paint",
    "Safety",
    "Lighting",
];

/// The `i`-th key: `i * 61803399 mod 10^8` is a bijection on 0..10^8 (the factor is coprime
/// to 10), so keys are unique and come in a scattered order; inserted rows take the indices
/// after ROWS, so their keys are new.
fn sku(i: u64) -> String {
    format!("SKU{:08}", (i * 61_803_399 + 13) % 100_000_000)
}

/// One row, as the values of the nine columns (prices in cents, the date as a day number).
struct Row {
    sku: String,
    name: String,
    brand: &'static str,
    ean: String,
    category: &'static str,
    price_cents: u64,
    stock: u64,
    pack_size: u64,
    day: u32,
}

impl Row {
    fn new(rng: &mut Rng, i: u64) -> Row {
        let item = rng.pick(ITEMS);
        let detail = rng.pick(DETAILS);
        let size = 10 + rng.below(990);
        // About 5% of the names need quoting: a comma, and sometimes quotes.
        let name = match rng.below(40) {
            0 => format!("{item}, {detail} \"DIN {}\" {size}", 900 + rng.below(100)),
            1 => format!("{item}, {detail} {size}"),
            _ => format!("{item} {detail} {size}"),
        };
        Row {
            sku: sku(i),
            name,
            brand: rng.pick(BRANDS),
            ean: format!("400{:010}", rng.below(10_000_000_000)),
            category: rng.pick(CATEGORIES),
            price_cents: 5 + rng.below(50_000),
            stock: rng.below(5_000),
            pack_size: [1, 1, 1, 6, 10, 12, 50, 100][rng.below(8) as usize],
            day: rng.below(700) as u32,
        }
    }

    /// Changes one or two fields, always to a different value.
    fn update(&mut self, rng: &mut Rng) {
        match rng.below(3) {
            0 => self.price_cents += 1 + rng.below(500),
            1 => self.stock += 1 + rng.below(50),
            _ => {
                self.price_cents += 1 + rng.below(500);
                self.day += 1 + rng.below(30) as u32;
            }
        }
    }

    fn write(&self, out: &mut csv::Writer<BufWriter<File>>) -> csv::Result<()> {
        let price = format!("{}.{:02}", self.price_cents / 100, self.price_cents % 100);
        let date = date(self.day);
        out.write_record([
            self.sku.as_str(),
            &self.name,
            self.brand,
            &self.ean,
            self.category,
            &price,
            &self.stock.to_string(),
            &self.pack_size.to_string(),
            &date,
        ])
    }
}

/// `YYYY-MM-DD` of day `n` counted from 2025-01-01.
fn date(n: u32) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("a valid date");
    (start + chrono::Days::new(u64::from(n)))
        .format("%Y-%m-%d")
        .to_string()
}

fn writer(path: &PathBuf) -> std::io::Result<csv::Writer<BufWriter<File>>> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    Ok(csv::WriterBuilder::new().from_writer(file))
}

const HEADER: [&str; 9] = [
    "sku",
    "name",
    "brand",
    "ean",
    "category",
    "price",
    "stock",
    "pack_size",
    "updated_on",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: export_pair DIR [ROWS] [SEED]";
    let dir = PathBuf::from(args.next().ok_or(usage)?);
    let rows: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let seed: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 1,
    };
    if args.next().is_some() {
        return Err(usage.into());
    }
    std::fs::create_dir_all(&dir)?;
    let mut a = writer(&dir.join("a.csv"))?;
    let mut b = writer(&dir.join("b.csv"))?;
    a.write_record(HEADER)?;
    b.write_record(HEADER)?;
    // Two streams: one for the rows' values, one for the changes, so the rows of a.csv do not
    // depend on which of them change.
    let mut values = Rng(seed);
    let mut changes = Rng(seed ^ 0xC0FF_EE00_5EED_0001);
    let (mut b_rows, mut updated, mut created, mut deleted) = (0u64, 0u64, 0u64, 0u64);
    let mut next_new = rows;
    for i in 0..rows {
        let mut row = Row::new(&mut values, i);
        row.write(&mut a)?;
        let roll = changes.unit();
        if roll < DELETE_SHARE {
            deleted += 1;
        } else {
            if roll < DELETE_SHARE + UPDATE_SHARE {
                row.update(&mut changes);
                updated += 1;
            }
            row.write(&mut b)?;
            b_rows += 1;
        }
        if changes.unit() < INSERT_SHARE {
            Row::new(&mut changes, next_new).write(&mut b)?;
            next_new += 1;
            created += 1;
            b_rows += 1;
        }
    }
    a.into_inner().map_err(|e| e.into_error())?.flush()?;
    b.into_inner().map_err(|e| e.into_error())?.flush()?;
    println!(
        "export_pair: a_rows={rows} b_rows={b_rows} updated={updated} created={created} deleted={deleted}"
    );
    Ok(())
}
