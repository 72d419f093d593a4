//! Binding an adapter's resource definition to a live source: resolve the table and column
//! names against the catalog (exactly, else case-insensitively, so one adapter works whether
//! the engine folds identifiers to upper or lower case), check types and nullability, and
//! build the resource's public schema.

use std::path::Path;

use indexmap::IndexMap;

use super::canonical;
use super::mapping::{BoundField, Resource, Transform};
use crate::config::{ConfigError, ResourceDef};
use crate::model::{FieldSchema, FieldType, ResourceSchema};
use crate::source::{ColumnInfo, Relation, Source, SourceError, SqlType, TableInfo};

/// Why a resource could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The adapter does not fit the source: names file, key and reason.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The source could not be asked.
    #[error("source `{source_name}` unavailable while checking resource `{resource}`: {error}")]
    Source {
        source_name: String,
        resource: String,
        error: SourceError,
    },
}

/// Binds resource `name` from adapter `file` to `source`, whose tables (`source.tables()`,
/// listed once per source by the caller) are `tables`.
pub async fn bind_resource(
    file: &Path,
    name: &str,
    def: &ResourceDef,
    default_schema: Option<&str>,
    source: &dyn Source,
    tables: &[TableInfo],
) -> Result<Resource, BindError> {
    let at = format!("resources.{name}");
    let source_err = |error| BindError::Source {
        source_name: def.source.clone(),
        resource: name.to_owned(),
        error,
    };
    let relation = match (&def.table, &def.query) {
        // A file resource is served from its mirror table, named after the resource.
        _ if def.file.is_some() => resolve_table(file, &at, name, None, tables)?,
        (Some(table), _) => resolve_table(file, &at, table, default_schema, tables)?,
        (None, Some(q)) => Relation::Query(q.clone()),
        (None, None) => return Err(ConfigError::new(file, &at, "set `table` (or `query`)").into()),
    };
    let columns = source.columns(&relation).await.map_err(source_err)?;
    let mut fields = Vec::new();
    let mut schema_fields = IndexMap::new();
    let canonical = canonical::lookup(name);
    let key = def.key.fields();
    for (fname, fdef) in &def.fields {
        let fat = format!("{at}.fields.{fname}");
        let column = find_column(&columns, &fdef.column).ok_or_else(|| {
            let names: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
            ConfigError::new(
                file,
                format!("{fat}.column"),
                format!(
                    "column `{}` does not exist in {}; its columns are: {}",
                    fdef.column,
                    relation.describe(),
                    names.join(", ")
                ),
            )
        })?;
        check_type(file, &fat, fdef.ty, column)?;
        let is_key = key.contains(fname);
        if column.nullable && fdef.sort && !is_key {
            return Err(ConfigError::new(
                file,
                format!("{fat}.sort"),
                format!(
                    "column `{}` is nullable; keyset pagination can only sort on NOT NULL columns",
                    column.name
                ),
            )
            .into());
        }
        if column.nullable && is_key {
            tracing::warn!(resource = name, field = %fname, "key column is nullable; rows with a NULL key cannot be addressed");
        }
        let scale = fdef.scale.or(match column.sql_type {
            SqlType::Decimal { scale, .. } if scale >= 0 => Some(scale as u32),
            _ => None,
        });
        let timezone = match &fdef.timezone {
            Some(tz) => tz.parse().map_err(|_| {
                ConfigError::new(
                    file,
                    format!("{fat}.timezone"),
                    format!("unknown time zone `{tz}`"),
                )
            })?,
            None => chrono_tz::UTC,
        };
        fields.push(BoundField {
            name: fname.clone(),
            column: column.name.clone(),
            ty: fdef.ty,
            sql_type: column.sql_type,
            transform: Transform {
                trim: fdef.trim,
                scale,
                timezone,
                true_values: fdef.true_values.clone(),
                false_values: fdef.false_values.clone(),
            },
        });
        let description = fdef.description.clone().or_else(|| {
            canonical
                .and_then(|c| c.fields.iter().find(|f| f.name == fname))
                .map(|f| f.description.to_owned())
        });
        let required = canonical
            .and_then(|c| c.fields.iter().find(|f| f.name == fname))
            .is_some_and(|f| f.required);
        schema_fields.insert(
            fname.clone(),
            FieldSchema {
                ty: fdef.ty,
                nullable: column.nullable && !required && !is_key,
                description,
                filterable: fdef.filter,
                sortable: fdef.sort,
            },
        );
    }
    let schema = ResourceSchema {
        name: name.to_owned(),
        component: canonical
            .map(|c| c.component.to_owned())
            .unwrap_or_else(|| pascal_case(name)),
        description: def
            .description
            .clone()
            .or_else(|| canonical.map(|c| c.description.to_owned())),
        key,
        fields: schema_fields,
    };
    Ok(Resource {
        schema,
        source: def.source.clone(),
        relation,
        fields,
    })
}

/// Finds the table's exact spelling among the source's tables.
fn resolve_table(
    file: &Path,
    at: &str,
    table: &str,
    default_schema: Option<&str>,
    tables: &[TableInfo],
) -> Result<Relation, ConfigError> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
        None => (default_schema.map(str::to_owned), table.to_owned()),
    };
    let in_schema = |t: &&TableInfo| {
        schema.as_deref().is_none_or(|s| {
            t.schema
                .as_deref()
                .is_some_and(|ts| ts.eq_ignore_ascii_case(s))
        })
    };
    let exact = tables.iter().filter(in_schema).find(|t| t.name == name);
    let folded: Vec<_> = tables
        .iter()
        .filter(in_schema)
        .filter(|t| t.name.eq_ignore_ascii_case(&name))
        .collect();
    let found = match (exact, folded.as_slice()) {
        (Some(t), _) => t,
        (None, [t]) => *t,
        (None, []) => {
            let mut names: Vec<_> = tables.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            names.truncate(50);
            return Err(ConfigError::new(
                file,
                format!("{at}.table"),
                format!(
                    "table `{table}` does not exist; tables are: {}",
                    names.join(", ")
                ),
            ));
        }
        (None, _) => {
            return Err(ConfigError::new(
                file,
                format!("{at}.table"),
                format!(
                    "table `{table}` matches several tables when case is ignored; spell it exactly"
                ),
            ));
        }
    };
    Ok(Relation::Table {
        schema: schema.map(|_| found.schema.clone().unwrap_or_default()),
        name: found.name.clone(),
    })
}

fn find_column<'a>(columns: &'a [ColumnInfo], wanted: &str) -> Option<&'a ColumnInfo> {
    columns.iter().find(|c| c.name == wanted).or_else(|| {
        let mut folded = columns
            .iter()
            .filter(|c| c.name.eq_ignore_ascii_case(wanted));
        match (folded.next(), folded.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    })
}

/// Refuses mappings that cannot decode; lets plausible legacy habits (numbers in CHAR
/// columns, flags in CHAR(1)) through.
fn check_type(
    file: &Path,
    at: &str,
    ty: FieldType,
    column: &ColumnInfo,
) -> Result<(), ConfigError> {
    let binary_column = column.sql_type == SqlType::Binary;
    let incompatible = match ty {
        FieldType::Binary => !binary_column,
        _ => binary_column,
    } || matches!(
        (ty, column.sql_type),
        (
            FieldType::Integer,
            SqlType::Date | SqlType::Time | SqlType::Timestamp
        ) | (
            FieldType::Decimal,
            SqlType::Date | SqlType::Time | SqlType::Timestamp
        ) | (
            FieldType::Date | FieldType::Time,
            SqlType::Integer | SqlType::Decimal { .. }
        )
    );
    if incompatible {
        return Err(ConfigError::new(
            file,
            format!("{at}.type"),
            format!(
                "a {ty} field cannot be read from column `{}` of type {}",
                column.name, column.type_name
            ),
        ));
    }
    if ty == FieldType::Decimal && column.sql_type == SqlType::Float {
        tracing::warn!(column = %column.name, "decimal field mapped to a floating-point column; values are only as exact as the legacy system stored them");
    }
    Ok(())
}

fn pascal_case(name: &str) -> String {
    name.split(['_', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
