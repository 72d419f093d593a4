//! Bad configuration refuses to start with a message naming the file, the key path and the
//! reason (and, for a missing column, the columns that do exist). Never a panic.

use std::time::Duration;

use legacy_bridge::{app, config};

use super::engines::{Engine, TestDb, repo};

/// Writes a deployment config and an edited copy of the demo adapter; returns the start-up
/// error text.
async fn start_error(
    db: &TestDb,
    edit_adapter: impl Fn(String) -> String,
    deployment_extra: &str,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let adapter = std::fs::read_to_string(repo().join("adapters/demo-pos.toml")).unwrap();
    std::fs::write(dir.path().join("pos.toml"), edit_adapter(adapter)).unwrap();
    let config = format!(
        "adapters = [\"pos.toml\"]\n[auth]\nmode = \"none\"\n[sources.pos]\nkind = \"odbc\"\nconnection_string = {:?}\n{deployment_extra}",
        db.connection_string
    );
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, config).unwrap();
    match config::load(&path) {
        Err(e) => e.to_string(),
        Ok(loaded) => match app::build(loaded, Duration::ZERO).await {
            Err(e) => e.to_string(),
            Ok(mut app) => match app::start_capture(&mut app).await {
                Err(e) => e.to_string(),
                Ok(()) => panic!("config was accepted"),
            },
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_names_file_key_and_reason() {
    let db = TestDb::create(Engine::Sqlite).expect("sqlite is always available");

    let msg = start_error(&db, |a| a.replace("\"QTY_ON_HAND\"", "\"QTY_ONHAND\""), "").await;
    assert!(
        msg.contains("pos.toml: resources.inventory.fields.on_hand.column:"),
        "{msg}"
    );
    assert!(
        msg.contains("column `QTY_ONHAND` does not exist in STOCK_LEVEL"),
        "{msg}"
    );
    assert!(
        msg.contains("its columns are: ITEM_CODE, STORE_NO, QTY_ON_HAND"),
        "{msg}"
    );

    let msg = start_error(
        &db,
        |a| a.replace("table = \"STOCK_LEVEL\"", "table = \"STOCK\""),
        "",
    )
    .await;
    assert!(
        msg.contains("resources.inventory.table: table `STOCK` does not exist"),
        "{msg}"
    );

    let msg = start_error(
        &db,
        |a| a.replace("key = \"sku\"", "key = \"sku\"\ncolour = \"red\""),
        "",
    )
    .await;
    assert!(
        msg.contains("pos.toml: resources.products.colour: unknown field `colour`"),
        "{msg}"
    );
    assert!(msg.contains("(line 11)"), "{msg}");

    let msg = start_error(
        &db,
        |a| {
            a.replace(
                "type = \"decimal\", scale = 2, filter",
                "type = \"string\", scale = 2, filter",
            )
        },
        "",
    )
    .await;
    assert!(
        msg.contains("resources.prices.fields.amount.scale: only decimal fields have a scale"),
        "{msg}"
    );

    // Capture sections: a cursor strategy without its column, and a column that is not there.
    let msg = start_error(
        &db,
        |a| {
            a.replacen(
                "cursor_column = \"LAST_UPD\"\ninterval_ms = 250",
                "interval_ms = 250",
                1,
            )
        },
        "",
    )
    .await;
    assert!(
        msg.contains("resources.inventory.capture.cursor_column: strategy `cursor` needs"),
        "{msg}"
    );
    // SQL Server change tracking needs a SQL Server source.
    let msg = start_error(
        &db,
        |a| {
            a.replacen(
                "strategy = \"snapshot-diff\"\ninterval_ms = 5000",
                "strategy = \"mssql-change-tracking\"\ninterval_ms = 5000",
                1,
            )
        },
        "",
    )
    .await;
    assert!(
        msg.contains("resources.prices.capture.strategy: strategy `mssql-change-tracking` reads SQL Server's change tracking: source `pos` must be of kind \"mssql\""),
        "{msg}"
    );
    let msg = start_error(
        &db,
        |a| {
            a.replacen(
                "cursor_column = \"LAST_UPD\"\ninterval_ms = 250",
                "cursor_column = \"LAST_CHANGE\"\ninterval_ms = 250",
                1,
            )
        },
        "",
    )
    .await;
    assert!(
        msg.contains("resources.inventory.capture.cursor_column: cursor column `LAST_CHANGE` does not exist in"),
        "{msg}"
    );

    let msg = start_error(&db, |a| a.replacen("updated_at  = { column = \"LAST_UPD\", type = \"timestamp\", timezone = \"Europe/Berlin\"", "updated_at  = { column = \"LAST_UPD\", type = \"timestamp\", timezone = \"Mars/Olympus\"", 1), "").await;
    assert!(
        msg.contains("resources.products.fields.updated_at.timezone")
            && msg.contains("Mars/Olympus"),
        "{msg}"
    );

    let msg = start_error(
        &db,
        |a| {
            a.replace(
                "key = [\"sku\", \"location\"]",
                "key = [\"sku\", \"store\"]",
            )
        },
        "",
    )
    .await;
    assert!(
        msg.contains(
            "resources.inventory.key[1]: key field `store` is not among the mapped fields"
        ),
        "{msg}"
    );

    // Canonical schemas are fixed.
    let msg = start_error(&db, |a| a.replace("on_hand    = {", "stock      = {"), "").await;
    assert!(
        msg.contains("resources.inventory.fields.stock") && msg.contains("canonical"),
        "{msg}"
    );

    // Sorting needs NOT NULL columns (keyset pagination).
    let msg = start_error(&db, |a| a.replace("description = { column = \"LONG_DESCR\", type = \"string\", trim = \"end\" }", "description = { column = \"LONG_DESCR\", type = \"string\", trim = \"end\", sort = true }"), "").await;
    assert!(
        msg.contains("resources.products.fields.description.sort") && msg.contains("nullable"),
        "{msg}"
    );
}

#[tokio::test]
async fn deployment_errors_are_caught_before_connecting() {
    let db = TestDb::create(Engine::Sqlite).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let p = dir.path().join("deploy.toml");
        std::fs::write(&p, text).unwrap();
        config::load(&p).unwrap_err().to_string()
    };
    let adapter = repo().join("adapters/demo-pos.toml");
    let msg = write(&format!(
        "adapters = [{adapter:?}]\n[auth]\nmode = \"none\"\n[sources.pos]\nkind = \"odbc\"\nconnection_string = \"Driver=x;Pwd=${{LB_SURELY_UNSET_VAR}}\"\n"
    ));
    assert!(
        msg.contains(
            "sources.pos.connection_string: environment variable `LB_SURELY_UNSET_VAR` is not set"
        ),
        "{msg}"
    );
    let msg = write(&format!(
        "adapters = [{adapter:?}]\n[auth]\nmode = \"api-keys\"\n[[auth.keys]]\nname = \"k\"\nsha256 = \"secret-key-in-clear\"\nscopes = [\"inventory:read\"]\n[sources.pos]\nkind = \"odbc\"\nconnection_string = {:?}\n",
        db.connection_string
    ));
    assert!(
        msg.contains("auth.keys[0].sha256: must be the 64-character"),
        "{msg}"
    );
    let msg = write(&format!(
        "adapters = [{adapter:?}]\n[auth]\nmode = \"api-keys\"\n[[auth.keys]]\nname = \"k\"\nsha256 = \"{}\"\nscopes = [\"stock:read\"]\n[sources.pos]\nkind = \"odbc\"\nconnection_string = {:?}\n",
        "a".repeat(64),
        db.connection_string
    ));
    assert!(
        msg.contains("auth.keys[0].scopes[0]: no resource `stock` is loaded"),
        "{msg}"
    );
    // Running open must be said explicitly.
    let msg = write(&format!(
        "adapters = [{adapter:?}]\n[sources.pos]\nkind = \"odbc\"\nconnection_string = \"x\"\n"
    ));
    assert!(msg.contains("missing field `auth`"), "{msg}");
    let msg = write("adapters = [\n");
    assert!(msg.contains("deploy.toml: invalid TOML"), "{msg}");
}

#[tokio::test]
async fn file_resource_errors_name_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("exports")).unwrap();
    let adapter = std::fs::read_to_string(repo().join("adapters/price-export-csv.toml")).unwrap();
    let load = |edit: &dyn Fn(String) -> String, sources: &str| {
        std::fs::write(dir.path().join("prices.toml"), edit(adapter.clone())).unwrap();
        let p = dir.path().join("deploy.toml");
        std::fs::write(
            &p,
            format!("adapters = [\"prices.toml\"]\n[auth]\nmode = \"none\"\n{sources}"),
        )
        .unwrap();
        config::load(&p)
    };
    let files = "[sources.exports]\nkind = \"files\"\ndir = \"exports\"\n";
    let err = |edit: &dyn Fn(String) -> String, sources: &str| {
        load(edit, sources).unwrap_err().to_string()
    };

    // A file resource reads its file section, never a table.
    let msg = err(
        &|a| {
            a.replace(
                "key = \"supplier_sku\"",
                "key = \"supplier_sku\"\ntable = \"PRICES\"",
            )
        },
        files,
    );
    assert!(
        msg.contains("prices.toml: resources.supplier_prices: a resource of a `files` source reads its `file` section"),
        "{msg}"
    );
    // Its changes come from diffing exports.
    let msg = err(
        &|a| a + "\n[resources.supplier_prices.capture]\nstrategy = \"snapshot-diff\"\n",
        files,
    );
    assert!(
        msg.contains("resources.supplier_prices.capture.strategy: a file resource's changes come from diffing its exports"),
        "{msg}"
    );
    // A file section on a database source is a mistake, named.
    let msg = err(
        &|a| a,
        "[sources.exports]\nkind = \"odbc\"\nconnection_string = \"x\"\n",
    );
    assert!(
        msg.contains("resources.supplier_prices.file: source `exports` is not of kind \"files\""),
        "{msg}"
    );
    // A layout the format cannot have.
    let msg = err(
        &|a| a.replace("format = \"csv\"", "format = \"dbf\""),
        files,
    );
    assert!(
        msg.contains("resources.supplier_prices.file.delimiter: only csv and tsv files have a delimiter setting"),
        "{msg}"
    );
    // A missing export folder stops start-up (after the start-up wait) and names it.
    let loaded = load(
        &|a| a,
        "[sources.exports]\nkind = \"files\"\ndir = \"no-such-folder\"\n",
    )
    .unwrap();
    let msg = match app::build(loaded, Duration::ZERO).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a missing export folder was accepted"),
    };
    assert!(msg.contains("no-such-folder"), "{msg}");
}
