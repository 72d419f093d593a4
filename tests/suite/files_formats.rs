//! Every export format, end to end: a file the test writes byte by byte (in its legacy code
//! page) is dropped into the export folder of a running bridge, applied, and read back over
//! `/v1/...`, where it must equal the expected JSON exactly. The CSV resource also goes
//! through filters, sorting, keyset pagination and ETags.

use serde_json::{Value as Json, json};

use super::files_harness::{Auth, DbfField, FilesBridge, RENAME, cp437, cp1252, dbf};

/// Records of a list, by key field, for readable failures.
fn keys(records: &[Json], key: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            r[key]
                .as_str()
                .map_or_else(|| r[key].to_string(), str::to_owned)
        })
        .collect()
}

const PRICES_CSV: &str = r#"
[resources.pricelist]
source = "exports"
key = "sku"

[resources.pricelist.file]
pattern = "PREISE_*.csv"
format = "csv"
encoding = "windows-1252"
delimiter = ";"
decimal_separator = ","
columns = [
    { name = "PREIS", required = true },
    { name = "AB", format = "%d.%m.%Y" },
]

[resources.pricelist.fields]
sku        = { column = "ARTNR", type = "string", filter = true, sort = true }
name       = { column = "BEZEICHNUNG", type = "string", filter = true }
price      = { column = "PREIS", type = "decimal", scale = 2, filter = true, sort = true }
pack       = { column = "VE", type = "integer", filter = true }
valid_from = { column = "AB", type = "date" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_in_windows_1252_with_semicolons_decimal_commas_and_quoted_fields() {
    let bridge = FilesBridge::start(RENAME, PRICES_CSV, Auth::Off).await;

    // GIVEN a German price list as the legacy system writes it: CRLF, `;`, decimal comma,
    // quotes around a field with `;`, with doubled quotes, and with a line break inside
    let text = "ARTNR;BEZEICHNUNG;PREIS;VE;AB\r\n\
                A1001;\"Kaffeemühle \"\"Classic\"\"\";12,50;6;01.11.2026\r\n\
                A1002;\"Grüße; aus Köln\";0,99;12;15.03.2025\r\n\
                A1003;\"Zweizeilig\r\nzweite Zeile\";1234,5;1;\r\n\
                A1004;Teekanne;-3,10;2;31.12.2024\r\n\
                A1005;Straße £;1000000,01;24;29.02.2024\r\n";
    bridge.drop_export("PREISE_001.csv", &cp1252(text));

    // WHEN it is applied
    let status = bridge.wait_applied("pricelist", "PREISE_001.csv").await;
    assert_eq!(status["export"]["last_applied"]["records"], 5, "{status:#}");
    assert_eq!(
        status["export"]["last_applied"]["quarantined"], 0,
        "{status:#}"
    );

    // THEN the API serves exactly its records, decoded from Windows-1252
    let expected = json!([
        {"sku": "A1001", "name": "Kaffeemühle \"Classic\"", "price": "12.50", "pack": 6, "valid_from": "2026-11-01"},
        {"sku": "A1002", "name": "Grüße; aus Köln", "price": "0.99", "pack": 12, "valid_from": "2025-03-15"},
        {"sku": "A1003", "name": "Zweizeilig\r\nzweite Zeile", "price": "1234.50", "pack": 1, "valid_from": null},
        {"sku": "A1004", "name": "Teekanne", "price": "-3.10", "pack": 2, "valid_from": "2024-12-31"},
        {"sku": "A1005", "name": "Straße £", "price": "1000000.01", "pack": 24, "valid_from": "2024-02-29"},
    ]);
    assert_eq!(Json::Array(bridge.list("/v1/pricelist").await), expected);
    assert_eq!(bridge.json("/v1/pricelist/A1002").await, expected[1]);

    // AND filters compare typed values (a decimal range, an integer, a string)
    let cheap_or_dear = bridge.list("/v1/pricelist?price[gte]=12.5").await;
    assert_eq!(keys(&cheap_or_dear, "sku"), ["A1001", "A1003", "A1005"]);
    let mid = bridge.list("/v1/pricelist?price[gt]=0&price[lt]=100").await;
    assert_eq!(keys(&mid, "sku"), ["A1001", "A1002"]);
    assert_eq!(
        keys(&bridge.list("/v1/pricelist?pack=12").await, "sku"),
        ["A1002"]
    );
    let named = bridge
        .list("/v1/pricelist?name=Gr%C3%BC%C3%9Fe%3B%20aus%20K%C3%B6ln")
        .await;
    assert_eq!(keys(&named, "sku"), ["A1002"]);
    assert_eq!(
        keys(
            &bridge.list("/v1/pricelist?sku=A1004&sku=A1001").await,
            "sku"
        ),
        ["A1001", "A1004"]
    );

    // AND sorting with keyset pagination walks every record once, in order
    let by_price = bridge.all_pages("/v1/pricelist?sort=-price&limit=2").await;
    assert_eq!(
        keys(&by_price, "sku"),
        ["A1005", "A1003", "A1001", "A1002", "A1004"]
    );
    let first_page = bridge.json("/v1/pricelist?sort=price&limit=2").await;
    assert_eq!(
        keys(first_page["data"].as_array().unwrap(), "sku"),
        ["A1004", "A1002"]
    );
    assert!(first_page["next_cursor"].is_string(), "{first_page}");

    // AND a record's ETag answers 304 while it is unchanged
    let resp = bridge.get("/v1/pricelist/A1002").await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let again = bridge.get_if_none_match("/v1/pricelist/A1002", &etag).await;
    assert_eq!(again.status(), 304);
    let unchanged = bridge.get("/v1/pricelist/A1001").await;
    let unchanged_etag = unchanged.headers()["etag"].to_str().unwrap().to_owned();
    let list = bridge.get("/v1/pricelist?sort=price").await;
    let list_etag = list.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        bridge
            .get_if_none_match("/v1/pricelist?sort=price", &list_etag)
            .await
            .status(),
        304
    );

    // WHEN the next export changes that record
    let text2 = text.replace("0,99;12;15.03.2025", "1,09;12;15.03.2025");
    bridge.drop_export("PREISE_002.csv", &cp1252(&text2));
    bridge.wait_applied("pricelist", "PREISE_002.csv").await;

    // THEN the old ETags no longer match and the new value is served
    let changed = bridge.get_if_none_match("/v1/pricelist/A1002", &etag).await;
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let body: Json = changed.json().await.unwrap();
    assert_eq!(body["price"], "1.09");
    assert_eq!(
        bridge
            .get_if_none_match("/v1/pricelist?sort=price", &list_etag)
            .await
            .status(),
        200
    );
    // A record the export did not change keeps its ETag.
    let kept = bridge
        .get_if_none_match("/v1/pricelist/A1001", &unchanged_etag)
        .await;
    assert_eq!(kept.status(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsv_in_code_page_437() {
    let adapter = r#"
[resources.staff]
source = "exports"
key = "id"

[resources.staff.file]
pattern = "STAFF*.TXT"
format = "tsv"
encoding = "cp437"
skip_lines = 2

[resources.staff.fields]
id    = { column = "NR", type = "integer", sort = true }
name  = { column = "NAME", type = "string" }
city  = { column = "ORT", type = "string", filter = true }
"#;
    let bridge = FilesBridge::start(RENAME, adapter, Auth::Off).await;

    // GIVEN a DOS report with a two-line banner, tab-separated, in code page 437
    let text = "PERSONALLISTE\r\n==============\r\n\
                NR\tNAME\tORT\r\n\
                1\tJürgen Müller\tMünchen\r\n\
                2\tÄnne Öztürk\tKöln\r\n\
                3\tRené Dubé\tGießen\r\n\
                4\tSeñor £-Mann\tÜberlingen\r\n";
    bridge.drop_export("STAFF.TXT", &cp437(text));

    bridge.wait_applied("staff", "STAFF.TXT").await;
    assert_eq!(
        Json::Array(bridge.list("/v1/staff").await),
        json!([
            {"id": 1, "name": "Jürgen Müller", "city": "München"},
            {"id": 2, "name": "Änne Öztürk", "city": "Köln"},
            {"id": 3, "name": "René Dubé", "city": "Gießen"},
            {"id": 4, "name": "Señor £-Mann", "city": "Überlingen"},
        ])
    );
    assert_eq!(
        keys(&bridge.list("/v1/staff?city=K%C3%B6ln").await, "name"),
        ["Änne Öztürk"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_width_with_implied_decimals_trailing_minus_and_overpunch() {
    let adapter = r#"
[resources.stock]
source = "exports"
key = "sku"

[resources.stock.file]
pattern = "STOCK_*.DAT"
format = "fixed-width"
encoding = "cp437"
skip_lines = 1
columns = [
    { name = "SKU", start = 1, length = 6 },
    { name = "NAME", start = 7, length = 12 },
    { name = "PRICE", start = 19, length = 8, implied_decimals = 2 },
    { name = "DELTA", start = 27, length = 7, sign = "trailing" },
    { name = "STOCK", start = 34, length = 5, sign = "overpunch" },
    { name = "COST", start = 39, length = 6, implied_decimals = 2, sign = "overpunch" },
]

[resources.stock.fields]
sku   = { column = "SKU", type = "string", trim = "end" }
name  = { column = "NAME", type = "string", trim = "end" }
price = { column = "PRICE", type = "decimal", scale = 2 }
delta = { column = "DELTA", type = "decimal", scale = 2 }
stock = { column = "STOCK", type = "integer" }
cost  = { column = "COST", type = "decimal", scale = 2 }
"#;
    let bridge = FilesBridge::start(RENAME, adapter, Auth::Off).await;

    // GIVEN a mainframe-style extract: a banner, fixed columns, umlauts as one byte each in
    // code page 437 (so a UTF-8 reading would shift every later column)
    let row = |sku: &str, name: &str, price: &str, delta: &str, stock: &str, cost: &str| {
        format!("{sku:<6}{name:<12}{price:>8}{delta:>7}{stock:>5}{cost:>6}\r\n")
    };
    let mut text = String::from("BESTAND 2026-01-05\r\n");
    text += &row("F00001", "Hammer", "00001250", "12.50", "0012{", "00125{");
    text += &row(
        "F00002",
        "Säge groß",
        "00000099",
        "0.99-",
        "0003J",
        "00009R",
    );
    text += &row(
        "F00003",
        "Müller-Zange",
        "00123456",
        "1.00-",
        "12}",
        "1234A",
    );
    text += "\r\n"; // a blank line is no record
    text += &row("F00004", "Öl", "00000000", "0.00", "0000{", "00000}");
    bridge.drop_export("STOCK_0105.DAT", &cp437(&text));

    let status = bridge.wait_applied("stock", "STOCK_0105.DAT").await;
    assert_eq!(status["export"]["last_applied"]["records"], 4, "{status:#}");
    assert_eq!(
        Json::Array(bridge.list("/v1/stock").await),
        json!([
            {"sku": "F00001", "name": "Hammer", "price": "12.50", "delta": "12.50", "stock": 120, "cost": "12.50"},
            {"sku": "F00002", "name": "Säge groß", "price": "0.99", "delta": "-0.99", "stock": -31, "cost": "-0.99"},
            {"sku": "F00003", "name": "Müller-Zange", "price": "1234.56", "delta": "-1.00", "stock": -120, "cost": "123.41"},
            {"sku": "F00004", "name": "Öl", "price": "0.00", "delta": "0.00", "stock": 0, "cost": "0.00"},
        ])
    );
}

/// The fields of the DBF tests.
const DBF_FIELDS: [DbfField; 6] = [
    DbfField {
        name: "ARTNR",
        kind: b'C',
        len: 8,
        decimals: 0,
    },
    DbfField {
        name: "BEZ",
        kind: b'C',
        len: 20,
        decimals: 0,
    },
    DbfField {
        name: "PREIS",
        kind: b'N',
        len: 10,
        decimals: 2,
    },
    DbfField {
        name: "MENGE",
        kind: b'N',
        len: 6,
        decimals: 0,
    },
    DbfField {
        name: "DATUM",
        kind: b'D',
        len: 8,
        decimals: 0,
    },
    DbfField {
        name: "AKTIV",
        kind: b'L',
        len: 1,
        decimals: 0,
    },
];

/// A resource on a DBF; `encoding` is only the fallback for a header without a code page.
fn dbf_resource(name: &str, pattern: &str, encoding: &str) -> String {
    format!(
        r#"
[resources.{name}]
source = "exports"
key = "sku"

[resources.{name}.file]
pattern = "{pattern}"
format = "dbf"
encoding = "{encoding}"

[resources.{name}.fields]
sku    = {{ column = "ARTNR", type = "string", trim = "end" }}
name   = {{ column = "BEZ", type = "string", trim = "end" }}
price  = {{ column = "PREIS", type = "decimal", scale = 2 }}
qty    = {{ column = "MENGE", type = "integer" }}
since  = {{ column = "DATUM", type = "date" }}
active = {{ column = "AKTIV", type = "boolean" }}
"#
    )
}

/// Records with deleted rows among them: an old version of A3 (deleted, before the live
/// one, so a reader that kept deleted rows would serve its price) and a deleted A2.
fn dbf_records(encode: fn(&str) -> Vec<u8>) -> Vec<(bool, Vec<Vec<u8>>)> {
    let rec =
        |deleted: bool, sku: &str, name: &str, price: &str, qty: &str, date: &str, flag: &str| {
            (
                deleted,
                vec![
                    encode(sku),
                    encode(name),
                    price.as_bytes().to_vec(),
                    qty.as_bytes().to_vec(),
                    date.as_bytes().to_vec(),
                    flag.as_bytes().to_vec(),
                ],
            )
        };
    vec![
        rec(false, "A1", "Grüße", "12.50", "6", "20241101", "T"),
        rec(true, "A3", "Kaffeemühle alt", "99.99", "1", "20200101", "F"),
        rec(true, "A2", "Gelöscht", "1.00", "1", "20240101", "T"),
        rec(false, "A3", "Kaffeemühle", "-0.99", "12", "20250315", "F"),
        rec(false, "A5", "Straße", "1000000.01", "0", "        ", "?"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbf_skips_deleted_records_and_reads_the_header_code_page() {
    // Two tables: one marked Windows-1252 (0x03), one marked code page 437 (0x01) whose
    // adapter names a different fallback; the header's mark must win.
    let adapter = format!(
        "{}{}",
        dbf_resource("items", "ITEMS*.DBF", "utf-8"),
        dbf_resource("dositems", "DOSITEMS*.DBF", "iso-8859-1")
    );
    let bridge = FilesBridge::start(RENAME, &adapter, Auth::Off).await;
    bridge.drop_export("ITEMS.DBF", &dbf(0x03, &DBF_FIELDS, &dbf_records(cp1252)));
    bridge.drop_export("DOSITEMS.DBF", &dbf(0x01, &DBF_FIELDS, &dbf_records(cp437)));

    let expected = json!([
        {"sku": "A1", "name": "Grüße", "price": "12.50", "qty": 6, "since": "2024-11-01", "active": true},
        {"sku": "A3", "name": "Kaffeemühle", "price": "-0.99", "qty": 12, "since": "2025-03-15", "active": false},
        {"sku": "A5", "name": "Straße", "price": "1000000.01", "qty": 0, "since": null, "active": null},
    ]);
    for (resource, file) in [("items", "ITEMS.DBF"), ("dositems", "DOSITEMS.DBF")] {
        let status = bridge.wait_applied(resource, file).await;
        let applied = &status["export"]["last_applied"];
        assert_eq!(
            applied["records"], 3,
            "{resource}: deleted records are not records: {status:#}"
        );
        assert_eq!(applied["quarantined"], 0, "{resource}: {status:#}");
        assert_eq!(
            Json::Array(bridge.list(&format!("/v1/{resource}")).await),
            expected,
            "{resource}"
        );
        let gone = bridge.get(&format!("/v1/{resource}/A2")).await;
        assert_eq!(gone.status(), 404, "{resource}: a deleted record is served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_keep_decimals_exact() {
    let adapter = r#"
[resources.orders]
source = "exports"
key = "id"

[resources.orders.file]
pattern = "orders-*.jsonl"
format = "jsonl"

[resources.orders.fields]
id     = { column = "id", type = "integer", filter = true, sort = true }
name   = { column = "name", type = "string" }
amount = { column = "amount", type = "decimal", filter = true }
qty    = { column = "qty", type = "integer" }
paid   = { column = "paid", type = "boolean" }
at     = { column = "at", type = "timestamp", timezone = "Europe/Berlin" }
"#;
    let bridge = FilesBridge::start(RENAME, adapter, Auth::Off).await;

    // GIVEN naive timestamps written in Berlin, and numbers a float cannot hold: 0.1, 2^53 + 1, 23 significant digits, an exponent,
    // a decimal written as a string; members in any order, extra members, a missing one
    let text = concat!(
        "{\"id\": 1, \"name\": \"Gr\\u00fc\\u00dfe\", \"amount\": 0.1, \"qty\": 3, \"paid\": true, \"at\": \"2024-03-01T10:15:00\"}\n",
        "{\"amount\": 9007199254740993, \"id\": 2, \"name\": \"Kaffeemühle\", \"qty\": 1, \"paid\": false, \"at\": \"2024-03-01 10:15:30.25\", \"extra\": {\"x\": [1, 2]}}\n",
        "\n",
        "{\"id\": 3, \"name\": \"big\", \"amount\": 12345678901234567890.123, \"qty\": -7, \"paid\": null}\n",
        "{\"id\": 4, \"name\": \"tiny\", \"amount\": 1e-3, \"qty\": 0, \"paid\": 0, \"at\": null}\n",
        "{\"id\": 5, \"name\": \"string\", \"amount\": \"19.99\", \"qty\": 2, \"paid\": 1, \"at\": \"2024-12-31T23:59:59\"}\n",
        "{\"id\": 6, \"name\": \"neg\", \"amount\": -0.30000000000000004, \"qty\": 2}\n",
    );
    bridge.drop_export("orders-1.jsonl", text.as_bytes());

    let status = bridge.wait_applied("orders", "orders-1.jsonl").await;
    assert_eq!(status["export"]["last_applied"]["records"], 6, "{status:#}");
    let expected = json!([
        {"id": 1, "name": "Grüße", "amount": "0.1", "qty": 3, "paid": true, "at": "2024-03-01T10:15:00+01:00"},
        {"id": 2, "name": "Kaffeemühle", "amount": "9007199254740993", "qty": 1, "paid": false, "at": "2024-03-01T10:15:30.250+01:00"},
        {"id": 3, "name": "big", "amount": "12345678901234567890.123", "qty": -7, "paid": null, "at": null},
        {"id": 4, "name": "tiny", "amount": "0.001", "qty": 0, "paid": false, "at": null},
        {"id": 5, "name": "string", "amount": "19.99", "qty": 2, "paid": true, "at": "2024-12-31T23:59:59+01:00"},
        {"id": 6, "name": "neg", "amount": "-0.30000000000000004", "qty": 2, "paid": null, "at": null},
    ]);
    assert_eq!(Json::Array(bridge.list("/v1/orders").await), expected);
    // The change events carry the same exact values.
    let events = bridge.wait_events("six snapshots", |e| e.len() == 6).await;
    for (e, want) in events.iter().zip(expected.as_array().unwrap()) {
        assert_eq!(e.event.event_type, "orders.snapshot");
        assert_eq!(&e.event.data["after"], want);
    }
    // A numeric filter compares numbers, also with the values kept as text.
    let over = bridge.list("/v1/orders?amount[gt]=1").await;
    assert_eq!(keys(&over, "id"), ["2", "3", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbf_cut_short_is_rejected_not_applied() {
    let adapter = dbf_resource("items", "ITEMS*.DBF", "utf-8");
    let bridge = FilesBridge::start(RENAME, &adapter, Auth::Off).await;
    let full = dbf(0x03, &DBF_FIELDS, &dbf_records(cp1252));
    bridge.drop_export("ITEMS1.DBF", &full);
    bridge.wait_applied("items", "ITEMS1.DBF").await;
    let before = bridge.list("/v1/items").await;

    // GIVEN a copy that stopped in the middle of the last record (the header still counts
    // every record)
    let cut = &full[..full.len() - 20];
    bridge.drop_export("ITEMS2.DBF", cut);

    // THEN it is rejected whole: a table read short would delete records
    let status = bridge
        .wait_export("items", "rejected", |s| s["export"]["state"] == "rejected")
        .await;
    assert_eq!(
        status["export"]["rejected"]["file"], "ITEMS2.DBF",
        "{status:#}"
    );
    assert_eq!(status["export"]["last_applied"]["file"], "ITEMS1.DBF");
    assert_eq!(bridge.list("/v1/items").await, before);
    assert_eq!(bridge.events().await.len(), 3);
}
