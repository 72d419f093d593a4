//! Reading config files from disk and the pure validation of everything that can be checked
//! without connecting to a source.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::adapter::{AdapterFile, ResourceDef};
use super::capture::StrategyKind;
use super::deployment::{AuthMode, DeploymentConfig, SourceConfig};
use super::env::expand_env;
use super::error::ConfigError;
use crate::model::FieldType;
use crate::resource::canonical;

/// An adapter file with the path it was read from, for error messages.
#[derive(Debug, Clone)]
pub struct LoadedAdapter {
    pub path: PathBuf,
    pub file: AdapterFile,
}

/// A deployment config with its adapters, parsed and validated (no source contacted yet).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub deployment: DeploymentConfig,
    pub adapters: Vec<LoadedAdapter>,
}

impl LoadedConfig {
    /// The state store file, resolved against the config file's directory.
    pub fn state_path(&self) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new("."));
        base.join(&self.deployment.state.path)
    }

    /// Every resource with the adapter file that defines it.
    pub fn resources(&self) -> impl Iterator<Item = (&Path, &str, &ResourceDef)> {
        self.adapters.iter().flat_map(|a| {
            a.file
                .resources
                .iter()
                .map(move |(name, def)| (a.path.as_path(), name.as_str(), def))
        })
    }
}

/// Reads and validates the deployment config at `path` and the adapters it names.
/// `${ENV_VAR}`s in connection strings are expanded from the process environment.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let mut deployment: DeploymentConfig = parse_file(path)?;
    expand_sources(path, &mut deployment)?;
    super::delivery::expand_subscriptions(path, &mut deployment.subscriptions)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut adapters = Vec::new();
    for (i, rel) in deployment.adapters.iter().enumerate() {
        let adapter_path = base.join(rel);
        if !adapter_path.is_file() {
            return Err(ConfigError::new(
                path,
                format!("adapters[{i}]"),
                format!("adapter file {} does not exist", adapter_path.display()),
            ));
        }
        let file: AdapterFile = parse_file(&adapter_path)?;
        adapters.push(LoadedAdapter {
            path: adapter_path,
            file,
        });
    }
    let config = LoadedConfig {
        path: path.to_owned(),
        deployment,
        adapters,
    };
    validate(&config)?;
    Ok(config)
}

/// Parses deployment config text without loading adapters (for `introspect`).
pub fn parse_deployment(path: &Path, text: &str) -> Result<DeploymentConfig, ConfigError> {
    parse_str(path, text)
}

/// Expands `${ENV_VAR}` in every source's connection string.
pub fn expand_sources(path: &Path, deployment: &mut DeploymentConfig) -> Result<(), ConfigError> {
    for (name, source) in deployment.sources.iter_mut() {
        match source {
            SourceConfig::Files(_) => {}
            SourceConfig::Mssql(mssql) => super::mssql::expand_mssql(path, name, mssql)?,
            SourceConfig::Odbc(odbc) => {
                odbc.connection_string =
                    expand_env(&odbc.connection_string, |v| std::env::var(v).ok()).map_err(
                        |reason| {
                            ConfigError::new(
                                path,
                                format!("sources.{name}.connection_string"),
                                reason,
                            )
                        },
                    )?;
            }
        }
    }
    Ok(())
}

fn parse_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "", format!("cannot read file: {e}")))?;
    parse_str(path, &text)
}

/// Parses TOML text, reporting the key path and line of the first problem.
pub(crate) fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| syntax_error(path, text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| format!(" (line {})", line_of(text, s.start)))
            .unwrap_or_default();
        let key = if key == "." { String::new() } else { key };
        ConfigError::new(path, key, format!("{}{line}", inner.message().trim()))
    })
}

fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|s| format!(" (line {})", line_of(text, s.start)))
        .unwrap_or_default();
    ConfigError::new(
        path,
        "",
        format!("invalid TOML: {}{line}", e.message().trim()),
    )
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Everything that can be checked without a source: names, keys, transforms, canonical
/// schemas, key hashes and scopes.
pub fn validate(config: &LoadedConfig) -> Result<(), ConfigError> {
    let dep = &config.deployment;
    let path = config.path.as_path();
    for (name, source) in &dep.sources {
        check_name(path, &format!("sources.{name}"), name)?;
        match source {
            SourceConfig::Files(files) => {
                super::files::validate_files_source(path, name, files)?;
            }
            SourceConfig::Mssql(mssql) => super::mssql::validate_mssql(path, name, mssql)?,
            SourceConfig::Odbc(odbc) => {
                if odbc.max_connections == 0 {
                    return Err(ConfigError::new(
                        path,
                        format!("sources.{name}.max_connections"),
                        "must be at least 1",
                    ));
                }
                if odbc.query_timeout_secs == 0 {
                    return Err(ConfigError::new(
                        path,
                        format!("sources.{name}.query_timeout_secs"),
                        "must be at least 1 (a query without timeout can hang the legacy system)",
                    ));
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for (file, name, def) in config.resources() {
        validate_resource(file, name, def, dep)?;
        if !seen.insert(name.to_owned()) {
            return Err(ConfigError::new(
                file,
                format!("resources.{name}"),
                "a resource of this name is already defined by another adapter",
            ));
        }
    }
    validate_auth(path, dep, &seen)?;
    let captured: Vec<&str> = config
        .resources()
        .filter(|(_, _, def)| def.capture_def().is_some())
        .map(|(_, name, _)| name)
        .collect();
    super::delivery::validate_subscriptions(path, &dep.subscriptions, &captured)
}

fn validate_auth(
    path: &Path,
    dep: &DeploymentConfig,
    resources: &HashSet<String>,
) -> Result<(), ConfigError> {
    match dep.auth.mode {
        AuthMode::None if !dep.auth.keys.is_empty() => {
            return Err(ConfigError::new(
                path,
                "auth.keys",
                "keys are configured but auth.mode is \"none\"; use mode = \"api-keys\"",
            ));
        }
        AuthMode::ApiKeys if dep.auth.keys.is_empty() => {
            return Err(ConfigError::new(
                path,
                "auth.keys",
                "auth.mode is \"api-keys\" but no key is configured",
            ));
        }
        _ => {}
    }
    let mut names = HashSet::new();
    for (i, key) in dep.auth.keys.iter().enumerate() {
        let at = format!("auth.keys[{i}]");
        if !names.insert(key.name.as_str()) {
            return Err(ConfigError::new(
                path,
                format!("{at}.name"),
                "duplicate key name",
            ));
        }
        let valid_hash = key.sha256.len() == 64
            && key
                .sha256
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !valid_hash {
            return Err(ConfigError::new(
                path,
                format!("{at}.sha256"),
                "must be the 64-character lowercase hex SHA-256 of the key (never the key itself)",
            ));
        }
        for (j, scope) in key.scopes.iter().enumerate() {
            let Some((resource, access)) = scope.split_once(':') else {
                return Err(ConfigError::new(
                    path,
                    format!("{at}.scopes[{j}]"),
                    format!("`{scope}` is not of the form `resource:read`"),
                ));
            };
            if access != "read" && scope != crate::auth::ADMIN_WRITE {
                return Err(ConfigError::new(
                    path,
                    format!("{at}.scopes[{j}]"),
                    format!(
                        "unknown access `{access}`; only `read` exists (and `admin:write` for operator actions)"
                    ),
                ));
            }
            // `admin:read` names no resource: it opens `/admin` (see `auth::ADMIN_READ`).
            let is_admin = scope == crate::auth::ADMIN_READ || scope == crate::auth::ADMIN_WRITE;
            if resource != "*" && !is_admin && !resources.contains(resource) {
                let mut known: Vec<_> = resources.iter().map(String::as_str).collect();
                known.sort_unstable();
                return Err(ConfigError::new(
                    path,
                    format!("{at}.scopes[{j}]"),
                    format!(
                        "no resource `{resource}` is loaded; resources are: {} (`admin:read` opens /admin)",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A resource of a `files` source: its `file` section stands in for `table`, and its changes
/// come from diffing exports.
fn validate_file_resource(file: &Path, at: &str, def: &ResourceDef) -> Result<(), ConfigError> {
    let Some(file_def) = &def.file else {
        return Err(ConfigError::new(
            file,
            format!("{at}.file"),
            "a resource of a `files` source needs a `file` section (pattern, format)",
        ));
    };
    if def.table.is_some() || def.query.is_some() {
        return Err(ConfigError::new(
            file,
            at,
            "a resource of a `files` source reads its `file` section, not `table` or `query`",
        ));
    }
    if let Some(capture) = &def.capture
        && capture.strategy != StrategyKind::Export
    {
        return Err(ConfigError::new(
            file,
            format!("{at}.capture.strategy"),
            "a file resource's changes come from diffing its exports: use strategy `export` (or leave the capture section out)",
        ));
    }
    let mapped: Vec<&str> = def.fields.values().map(|f| f.column.as_str()).collect();
    super::files::validate_file_def(file, &format!("{at}.file"), file_def, &mapped)
}

fn check_name(file: &Path, at: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(ConfigError::new(
            file,
            at,
            format!("`{name}` must start with a lowercase letter and use only a-z, 0-9, `_`, `-`"),
        ))
    }
}

fn validate_resource(
    file: &Path,
    name: &str,
    def: &ResourceDef,
    dep: &DeploymentConfig,
) -> Result<(), ConfigError> {
    let at = format!("resources.{name}");
    check_name(file, &at, name)?;
    // `admin` is reserved too: its `admin:read` scope would also open `/admin`.
    if matches!(name, "changes" | "openapi.json" | "docs" | "admin") {
        return Err(ConfigError::new(
            file,
            &at,
            format!("`{name}` is a reserved path"),
        ));
    }
    if !dep.sources.contains_key(&def.source) {
        let known: Vec<_> = dep.sources.keys().map(String::as_str).collect();
        return Err(ConfigError::new(
            file,
            format!("{at}.source"),
            format!(
                "no source `{}` in the deployment config; sources are: {}",
                def.source,
                known.join(", ")
            ),
        ));
    }
    let files_source = matches!(dep.sources.get(&def.source), Some(SourceConfig::Files(_)));
    if files_source {
        validate_file_resource(file, &at, def)?;
    } else if def.file.is_some() {
        return Err(ConfigError::new(
            file,
            format!("{at}.file"),
            format!(
                "source `{}` is not of kind \"files\"; only file resources have a `file` section",
                def.source
            ),
        ));
    } else if def
        .capture
        .as_ref()
        .is_some_and(|c| c.strategy == StrategyKind::Export)
    {
        return Err(ConfigError::new(
            file,
            format!("{at}.capture.strategy"),
            "strategy `export` is for resources of a `files` source",
        ));
    }
    if def
        .capture
        .as_ref()
        .is_some_and(|c| c.strategy == StrategyKind::MssqlChangeTracking)
    {
        if !matches!(dep.sources.get(&def.source), Some(SourceConfig::Mssql(_))) {
            return Err(ConfigError::new(
                file,
                format!("{at}.capture.strategy"),
                format!(
                    "strategy `mssql-change-tracking` reads SQL Server's change tracking: source \
                     `{}` must be of kind \"mssql\" (over ODBC use `cursor`, `changelog` or \
                     `snapshot-diff`)",
                    def.source
                ),
            ));
        }
        if def.table.is_none() {
            return Err(ConfigError::new(
                file,
                format!("{at}.capture.strategy"),
                "strategy `mssql-change-tracking` follows a tracked `table`, not a `query`",
            ));
        }
    }
    match (&def.table, &def.query) {
        _ if files_source => {}
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                file,
                &at,
                "set either `table` or `query`, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(file, &at, "set `table` (or `query`)"));
        }
        (None, Some(q)) if !q.trim_start().to_ascii_lowercase().starts_with("select") => {
            return Err(ConfigError::new(
                file,
                format!("{at}.query"),
                "must be a single SELECT statement",
            ));
        }
        _ => {}
    }
    if let Some(capture) = &def.capture {
        super::capture::validate_capture(file, &format!("{at}.capture"), capture)?;
    }
    if def.fields.is_empty() {
        return Err(ConfigError::new(
            file,
            format!("{at}.fields"),
            "no fields mapped",
        ));
    }
    let key = def.key.fields();
    if key.is_empty() {
        return Err(ConfigError::new(
            file,
            format!("{at}.key"),
            "the key needs at least one field",
        ));
    }
    for (i, k) in key.iter().enumerate() {
        match def.fields.get(k) {
            None => {
                return Err(ConfigError::new(
                    file,
                    format!("{at}.key[{i}]"),
                    format!("key field `{k}` is not among the mapped fields"),
                ));
            }
            Some(f) if f.ty == FieldType::Binary => {
                return Err(ConfigError::new(
                    file,
                    format!("{at}.key[{i}]"),
                    "a binary field cannot be part of the key",
                ));
            }
            _ => {}
        }
        if key[..i].contains(k) {
            return Err(ConfigError::new(
                file,
                format!("{at}.key[{i}]"),
                format!("`{k}` appears twice in the key"),
            ));
        }
    }
    let mut columns = HashSet::new();
    for (fname, f) in &def.fields {
        let fat = format!("{at}.fields.{fname}");
        check_field_name(file, &fat, fname)?;
        if !columns.insert(f.column.to_ascii_lowercase()) {
            return Err(ConfigError::new(
                file,
                format!("{fat}.column"),
                format!("column `{}` is already mapped by another field", f.column),
            ));
        }
        if f.scale.is_some() && f.ty != FieldType::Decimal {
            return Err(ConfigError::new(
                file,
                format!("{fat}.scale"),
                "only decimal fields have a scale",
            ));
        }
        if let Some(scale) = f.scale
            && scale > 28
        {
            return Err(ConfigError::new(
                file,
                format!("{fat}.scale"),
                "must be at most 28",
            ));
        }
        if let Some(tz) = &f.timezone {
            if f.ty != FieldType::Timestamp {
                return Err(ConfigError::new(
                    file,
                    format!("{fat}.timezone"),
                    "only timestamp fields have a time zone",
                ));
            }
            if tz.parse::<chrono_tz::Tz>().is_err() {
                return Err(ConfigError::new(
                    file,
                    format!("{fat}.timezone"),
                    format!("`{tz}` is not an IANA time zone (e.g. `Europe/Berlin`, `UTC`)"),
                ));
            }
        }
        if (f.true_values.is_some() || f.false_values.is_some()) && f.ty != FieldType::Boolean {
            return Err(ConfigError::new(
                file,
                format!("{fat}.true_values"),
                "only boolean fields have true/false spellings",
            ));
        }
        if f.trim != super::Trim::None && f.ty != FieldType::String {
            return Err(ConfigError::new(
                file,
                format!("{fat}.trim"),
                "only string fields are trimmed (other types are trimmed before parsing anyway)",
            ));
        }
        if f.sort && f.ty == FieldType::Binary {
            return Err(ConfigError::new(
                file,
                format!("{fat}.sort"),
                "binary fields cannot be sorted",
            ));
        }
        if f.filter && f.ty == FieldType::Binary {
            return Err(ConfigError::new(
                file,
                format!("{fat}.filter"),
                "binary fields cannot be filtered",
            ));
        }
    }
    canonical::check(name, def).map_err(|(key, reason)| {
        let key = if key.is_empty() {
            at.clone()
        } else {
            format!("{at}.{key}")
        };
        ConfigError::new(file, key, reason)
    })
}

fn check_field_name(file: &Path, at: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok && name != "cursor" && name != "limit" && name != "sort" {
        Ok(())
    } else {
        Err(ConfigError::new(
            file,
            at,
            format!(
                "field name `{name}` must be snake_case (a-z, 0-9, `_`) and not `cursor`, `limit` or `sort`"
            ),
        ))
    }
}
