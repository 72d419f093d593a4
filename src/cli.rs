//! The command line: `serve`, `check`, `introspect`, `openapi`, `resync`, `apply-export`,
//! `changelog ddl` and `keys generate`. Errors are printed once, plainly, with a non-zero exit code; this is the
//! only place `anyhow` is used.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app;
use crate::capture::{self, changelog_ddl};
use crate::config::{self, StrategyKind};
use crate::source::{self, Relation};
use crate::store::{SqliteStore, Store as _, StoreError};

/// Default seconds `serve` waits for an unreachable source before giving up.
const DEFAULT_STARTUP_WAIT_SECS: u64 = 60;

#[derive(Parser)]
#[command(
    name = "legacy-bridge",
    version,
    about = "A modern REST API in front of legacy databases"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Overrides `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Seconds to wait for an unreachable source at start-up.
        #[arg(long, default_value_t = DEFAULT_STARTUP_WAIT_SECS)]
        startup_wait: u64,
    },
    /// Validate the config, connect to every source and check every mapped column.
    Check {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// List a source's tables, or print a starter adapter for some of them.
    Introspect {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Source name from the config.
        #[arg(long)]
        source: String,
        /// Tables to draft an adapter for; without any, tables are listed.
        tables: Vec<String>,
    },
    /// Print the OpenAPI 3.1 document for the configured adapters.
    Openapi {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Re-snapshot one captured resource: emit every current row as a `snapshot` event (and
    /// deletions for rows gone), with a progress bar. Runs while the service is stopped;
    /// a running service takes `POST /admin/capture/{resource}/resync` instead.
    Resync {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        resource: String,
    },
    /// Apply one export file to a file resource now: read it, set bad records aside, check
    /// the guards, commit its changes as events and serve it. The running service applies
    /// the newest complete file of its folder by itself; this is for backfills and tests, and
    /// runs while the service is stopped.
    ApplyExport {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        resource: String,
        /// The export file (any path; it is not moved).
        file: PathBuf,
        /// Apply even if it deletes more than `max_delete_share` of the records.
        #[arg(long)]
        approve: bool,
    },
    /// Change-log capture helpers.
    Changelog {
        #[command(subcommand)]
        command: ChangelogCommand,
    },
    /// Delivery helpers.
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
    },
    /// API key helpers.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum ChangelogCommand {
    /// Print the log table and trigger DDL for a resource's table (for a DBA to review and
    /// run), or install it with --apply. Running it again is harmless.
    Ddl {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
        /// Resource whose table gets the triggers.
        #[arg(long)]
        resource: String,
        /// Run the statements on the resource's source instead of printing them.
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Subcommand)]
enum SubscriptionsCommand {
    /// Remove a subscription that is no longer in the config from the state store (its
    /// cursor, parked events and dead letters), so it stops holding back outbox retention.
    /// Runs while the service is stopped; audited as `cli`.
    Forget {
        #[arg(short, long, env = "LEGACY_BRIDGE_CONFIG")]
        config: PathBuf,
        /// The subscription's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints the key once and the config entry holding only its hash.
    Generate {
        #[arg(long)]
        name: String,
        /// Scopes such as `inventory:read` (repeatable); default `*:read`.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

/// Runs the CLI and maps failures to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init(cli.log_json);
    crate::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            config,
            listen,
            startup_wait,
        } => {
            let loaded = config::load(&config)?;
            let mut app = app::build(loaded, Duration::from_secs(startup_wait)).await?;
            app::start_capture(&mut app).await?;
            app::serve(app, listen).await?;
        }
        Command::Check { config } => {
            let loaded = config::load(&config)?;
            let app = app::build(loaded, Duration::ZERO).await?;
            for r in app.state.resources.values() {
                println!(
                    "ok  {:<16} {} ({} fields, key: {})",
                    r.schema.name,
                    r.relation.describe(),
                    r.fields.len(),
                    r.schema.key.join(", ")
                );
            }
            println!("config {} is valid", config.display());
        }
        Command::Introspect {
            config,
            source,
            tables,
        } => introspect(&config, &source, &tables).await?,
        Command::Openapi { config } => {
            let loaded = config::load(&config)?;
            let app = app::build(loaded, Duration::ZERO).await?;
            println!("{}", serde_json::to_string_pretty(&app.state.openapi)?);
        }
        Command::Resync { config, resource } => resync(&config, &resource).await?,
        Command::ApplyExport {
            config,
            resource,
            file,
            approve,
        } => apply_export(&config, &resource, &file, approve).await?,
        Command::Changelog {
            command:
                ChangelogCommand::Ddl {
                    config,
                    resource,
                    apply,
                },
        } => changelog_ddl(&config, &resource, apply).await?,
        Command::Subscriptions {
            command: SubscriptionsCommand::Forget { config, name },
        } => forget_subscription(&config, &name).await?,
        Command::Keys {
            command: KeysCommand::Generate { name, scopes },
        } => {
            let (key, hash) = crate::auth::generate_key();
            let scopes = if scopes.is_empty() {
                vec!["*:read".to_owned()]
            } else {
                scopes
            };
            println!("# give this key to the client (it is not stored anywhere):\n# {key}\n");
            println!("[[auth.keys]]\nname = {name:?}\nsha256 = \"{hash}\"\nscopes = {scopes:?}");
        }
    }
    Ok(())
}

/// The capture target of `resource` (a file resource when `file`) and the state store, for
/// commands that capture while the service is stopped; `locked` words the refusal when the
/// service holds the store.
async fn offline_target(
    config_path: &std::path::Path,
    resource: &str,
    file: bool,
    locked: impl FnOnce(&str) -> String,
) -> anyhow::Result<(capture::Target, SqliteStore)> {
    let loaded = config::load(config_path)?;
    let state_path = loaded.state_path();
    let app = app::build(loaded, Duration::ZERO).await?;
    let targets =
        capture::bind_targets(&app.config, &app.state.resources, &app.state.sources).await?;
    let target = targets
        .into_iter()
        .find(|t| t.name == resource && (!file || t.file.is_some()))
        .with_context(|| {
            if file {
                format!("resource `{resource}` is not a file resource")
            } else {
                format!("resource `{resource}` has no `capture` section")
            }
        })?;
    let store = match SqliteStore::open(&state_path) {
        Err(StoreError::Locked { path }) => anyhow::bail!(locked(&path)),
        other => other?,
    };
    Ok((target, store))
}

async fn forget_subscription(config_path: &std::path::Path, name: &str) -> anyhow::Result<()> {
    use crate::store::{Control, DeliveryStore as _};
    let loaded = config::load(config_path)?;
    if loaded.deployment.subscriptions.contains_key(name) {
        anyhow::bail!(
            "subscription `{name}` is still configured in {}; remove it from the config first",
            config_path.display()
        );
    }
    let store = match SqliteStore::open(&loaded.state_path()) {
        Err(StoreError::Locked { path }) => {
            anyhow::bail!("the running service holds {path}; stop it first")
        }
        other => other?,
    };
    let Some(row) = store.subscription(name).await? else {
        anyhow::bail!("the state store has no subscription `{name}`");
    };
    let now = chrono::Utc::now().timestamp_millis();
    let dropped = store.control(name, "cli", Control::Forget, now).await?;
    println!(
        "forgot subscription `{name}` (cursor {}, {dropped} parked or dead-lettered events dropped)",
        row.cursor
    );
    Ok(())
}

async fn resync(config_path: &std::path::Path, resource: &str) -> anyhow::Result<()> {
    let (target, store) = offline_target(config_path, resource, false, |path| {
        format!(
            "the running service holds {path}; ask it instead: \
             curl -X POST -H 'Authorization: Bearer <key with admin:write>' \
             http://<listen>/admin/capture/{resource}/resync"
        )
    })
    .await?;
    let target = &target;
    let expected = store.key_count(resource).await?;
    let bar = indicatif::ProgressBar::new(expected.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} rows ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("resync {resource}"));
    let stats = capture::resync_once(target, &store, |rows| {
        if rows > bar.length().unwrap_or(0) {
            bar.set_length(rows);
        }
        bar.set_position(rows);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "resync {resource}: {} rows scanned, {} events appended{}",
        stats.rows,
        stats.changes,
        stats
            .last_seq
            .map(|s| format!(" (outbox up to {s})"))
            .unwrap_or_default()
    );
    Ok(())
}

async fn apply_export(
    config_path: &std::path::Path,
    resource: &str,
    file: &std::path::Path,
    approve: bool,
) -> anyhow::Result<()> {
    let (target, store) = offline_target(config_path, resource, true, |path| {
        format!("the running service holds {path}; drop the file into the export folder instead")
    })
    .await?;
    let (status, outcome) = capture::apply_export_once(&target, &store, file, approve).await?;
    if let Some(held) = &status.held {
        anyhow::bail!(
            "held: {} would delete {} of {} records (max_delete_share {}); check it, then rerun with --approve",
            held.file,
            held.deletes,
            held.live_records,
            held.limit
        );
    }
    if let Some(rejected) = &status.rejected {
        anyhow::bail!("rejected: {}: {}", rejected.file, rejected.reason);
    }
    let applied = status
        .last_applied
        .context("the export was neither applied, held nor rejected")?;
    println!(
        "applied {}: {} records, {} created, {} updated, {} deleted, {} quarantined; {} events{}",
        applied.file,
        applied.records,
        applied.created,
        applied.updated,
        applied.deleted,
        applied.quarantined,
        outcome.changes,
        outcome
            .last_seq
            .map(|s| format!(" (outbox up to {s})"))
            .unwrap_or_default()
    );
    Ok(())
}

/// Prints (or with `apply`, installs) the change-log DDL for one resource's table. Any
/// resource with a table qualifies, whatever its capture strategy: a DBA may prepare ahead.
async fn changelog_ddl(
    config_path: &std::path::Path,
    resource: &str,
    apply: bool,
) -> anyhow::Result<()> {
    let loaded = config::load(config_path)?;
    let Some((file, _, def)) = loaded.resources().find(|(_, name, _)| *name == resource) else {
        let names: Vec<&str> = loaded.resources().map(|(_, name, _)| name).collect();
        anyhow::bail!(
            "no resource `{resource}` in the adapters of {}; resources: {}",
            config_path.display(),
            names.join(", ")
        );
    };
    let file = file.to_owned();
    let capture = def.capture.clone();
    let (log_table, log_origin) = match &capture {
        Some(c) if c.changelog_table.is_some() => (
            c.changelog_table().to_owned(),
            format!("capture.changelog_table of resource `{resource}`"),
        ),
        _ => (
            config::DEFAULT_CHANGELOG_TABLE.to_owned(),
            "the default; set capture.changelog_table to change it".to_owned(),
        ),
    };
    let app = app::build(loaded, Duration::ZERO).await?;
    let bound = app
        .state
        .resources
        .get(resource)
        .with_context(|| format!("resource `{resource}` was not bound"))?;
    let source = app
        .state
        .sources
        .get(&bound.source)
        .with_context(|| format!("source `{}` is not open", bound.source))?;
    let ddl = changelog_ddl::for_resource(source.dialect(), &log_table, bound)
        .with_context(|| format!("resource `{resource}` ({})", file.display()))?;
    let strategy_note = match capture.map(|c| c.strategy) {
        Some(StrategyKind::Changelog) => None,
        Some(other) => Some(format!(
            "resource `{resource}` captures with `{}`; the triggers only feed capture once its \
             strategy is `changelog`",
            other.as_str()
        )),
        None => Some(format!(
            "resource `{resource}` has no capture section; the triggers only feed capture once \
             it has one with strategy `changelog`"
        )),
    };
    if !apply {
        println!(
            "-- resource `{resource}` ({}), source `{}`",
            file.display(),
            bound.source
        );
        println!("-- log table: {log_table} ({log_origin})");
        print!("{}", ddl.script());
        if let Some(note) = strategy_note {
            eprintln!("note: {note}");
        }
        eprintln!(
            "nothing was changed on source `{}`: give the script above to a DBA, or re-run with \
             --apply to install it",
            bound.source
        );
        return Ok(());
    }
    println!(
        "installing the change log of resource `{resource}` on source `{}`: triggers on {}, \
         log table {log_table} ({log_origin})",
        bound.source,
        bound.relation.describe()
    );
    let total = ddl.statements().len();
    for (i, statement) in ddl.statements().iter().enumerate() {
        source
            .execute(statement.sql.clone(), Vec::new())
            .await
            .with_context(|| {
                format!(
                    "statement {}/{total} ({}) failed; the {i} before it were applied, and \
                     re-running the whole command is safe",
                    i + 1,
                    statement.what
                )
            })?;
        println!("  ok  {}", statement.what);
    }
    println!(
        "installed: every insert, update and delete on {} now adds a row to {log_table}",
        bound.relation.describe()
    );
    if let Some(note) = strategy_note {
        eprintln!("note: {note}");
    }
    Ok(())
}

async fn introspect(
    config_path: &std::path::Path,
    name: &str,
    tables: &[String],
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    // Only the deployment part is needed: adapters may not exist yet.
    let mut deployment: config::DeploymentConfig = config::parse_deployment(config_path, &text)?;
    deployment.sources.retain(|n, _| n == name);
    anyhow::ensure!(
        !deployment.sources.is_empty(),
        "no source `{name}` in {}",
        config_path.display()
    );
    config::expand_sources(config_path, &mut deployment)?;
    let loaded = config::LoadedConfig {
        path: config_path.to_owned(),
        deployment,
        adapters: Vec::new(),
    };
    let sources = source::open_all(&loaded).await?;
    let source = sources.get(name).context("source missing")?;
    let all = source.tables().await?;
    if tables.is_empty() {
        for t in &all {
            let qualified = t
                .schema
                .as_ref()
                .map(|s| format!("{s}."))
                .unwrap_or_default();
            println!("{:<6} {qualified}{}", t.kind.to_lowercase(), t.name);
        }
        return Ok(());
    }
    println!(
        "# starter adapter drafted by `legacy-bridge introspect`; review names, key and types"
    );
    println!("[resources]");
    for table in tables {
        let found = all
            .iter()
            .find(|t| t.name == *table)
            .or_else(|| all.iter().find(|t| t.name.eq_ignore_ascii_case(table)))
            .with_context(|| format!("table `{table}` not found in source `{name}`"))?;
        let relation = Relation::Table {
            schema: None,
            name: found.name.clone(),
        };
        let columns = source.columns(&relation).await?;
        let resource = snake(&found.name);
        println!(
            "\n[resources.{resource}]\nsource = {name:?}\ntable = {:?}",
            found.name
        );
        let key = columns.first().map(|c| snake(&c.name)).unwrap_or_default();
        println!("key = [{key:?}]  # check: the first column is only a guess");
        println!("[resources.{resource}.fields]");
        for c in &columns {
            let ty = c.sql_type.suggested_field_type();
            let trim = if matches!(c.sql_type, source::SqlType::Char { .. }) {
                ", trim = \"end\""
            } else {
                ""
            };
            println!(
                "{} = {{ column = {:?}, type = \"{ty}\"{trim} }}  # {}{}",
                snake(&c.name),
                c.name,
                c.type_name,
                if c.nullable { ", nullable" } else { "" }
            );
        }
    }
    Ok(())
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_owned();
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        format!("t_{out}")
    } else {
        out
    }
}
