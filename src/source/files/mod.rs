//! The `files` source: export folders as resources. A folder is watched for complete exports
//! ([`watch`]); an export is read record by record in its format ([`mod@format`]); the applied
//! export of each resource is kept in a local SQLite [`mirror`], which the API reads like any
//! other source. Applying an export (diff, guards, events) is capture's `export` strategy.

pub mod format;
pub mod mirror;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use self::mirror::{Mirror, MirrorTable};
use self::watch::FolderWatch;
use super::{
    ColumnInfo, Dialect, DialectKind, Param, Relation, Row, RowStream, SCAN_BUFFERED_BATCHES,
    SelectColumn, SelectQuery, Source, SourceError, SourceErrorKind, SqlType, TableInfo,
};
use crate::config::{FilesSourceConfig, LoadedConfig};
use crate::model::FieldType;
use crate::resource::decode_type_of;

/// A folder of exports and the mirror of what was applied from it.
pub struct FilesSource {
    name: String,
    dir: PathBuf,
    config: FilesSourceConfig,
    tables: Vec<MirrorTable>,
    mirror: Arc<Mirror>,
    watch: Arc<FolderWatch>,
    dialect: Dialect,
}

impl FilesSource {
    /// Opens the mirror of source `name` for the file resources the adapters define on it.
    pub fn open(
        loaded: &LoadedConfig,
        name: &str,
        config: &FilesSourceConfig,
    ) -> Result<FilesSource, SourceError> {
        let base = loaded.path.parent().unwrap_or(Path::new("."));
        let dir = base.join(&config.dir);
        let mirror_path = match &config.mirror {
            Some(p) => base.join(p),
            None => loaded
                .state_path()
                .parent()
                .unwrap_or(Path::new("."))
                .join(format!("files-{name}.db")),
        };
        let tables = tables_of(loaded, name);
        // A missing folder is often a share not mounted yet: transient, like a database
        // that is still starting.
        let watch = FolderWatch::start(
            dir.clone(),
            config.archive_dir.as_ref().map(|a| base.join(a)),
            config,
        )
        .map_err(|e| {
            SourceError::new(
                SourceErrorKind::Unavailable,
                format!("source `{name}`: {e}"),
            )
        })?;
        let mirror = Mirror::open(&mirror_path, &tables)?;
        Ok(FilesSource {
            name: name.to_owned(),
            dir,
            config: config.clone(),
            tables,
            mirror: Arc::new(mirror),
            watch: Arc::new(watch),
            dialect: Dialect::of(DialectKind::Sqlite),
        })
    }

    /// The export folder, resolved against the config file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The source's settings.
    pub fn config(&self) -> &FilesSourceConfig {
        &self.config
    }

    /// The folder watch: listings, wake-ups and archiving.
    pub fn watch(&self) -> &Arc<FolderWatch> {
        &self.watch
    }

    /// The mirror holding applied exports.
    pub fn mirror(&self) -> &Arc<Mirror> {
        &self.mirror
    }

    /// The mirror table of resource `name`.
    pub fn table(&self, name: &str) -> Option<&MirrorTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    fn table_of(&self, relation: &Relation) -> Result<&MirrorTable, SourceError> {
        match relation {
            Relation::Table { name, .. } => self.table(name),
            Relation::Query(_) => None,
        }
        .ok_or_else(|| {
            SourceError::new(
                SourceErrorKind::Query,
                format!(
                    "files source `{}` has no export named {}",
                    self.name,
                    relation.describe()
                ),
            )
        })
    }

    /// Runs `query` on the mirror, handing batches to `sink` on the blocking pool; the
    /// returned future owns everything it needs, so a scan can run it as its own task.
    fn read(
        &self,
        query: SelectQuery,
        batch: usize,
        sink: impl FnMut(Vec<Row>) -> bool + Send + 'static,
    ) -> Result<impl Future<Output = Result<(), SourceError>> + Send + 'static, SourceError> {
        self.table_of(&query.relation)?;
        let (sql, params) = self.dialect.render(&query);
        let decode: Vec<FieldType> = query.columns.iter().map(|c| c.decode).collect();
        let mirror = Arc::clone(&self.mirror);
        Ok(async move {
            let _slot = mirror.read_slot().await?;
            let reader = Arc::clone(&mirror);
            tokio::task::spawn_blocking(move || reader.read(&sql, &params, &decode, batch, sink))
                .await
                .map_err(|e| {
                    SourceError::new(
                        SourceErrorKind::Unavailable,
                        format!("mirror read failed: {e}"),
                    )
                })?
        })
    }
}

/// The mirror tables of source `source`: one per resource, with the file columns its fields
/// read (first mapping wins when two fields read one column).
fn tables_of(loaded: &LoadedConfig, source: &str) -> Vec<MirrorTable> {
    loaded
        .resources()
        .filter(|(_, _, def)| def.source == source && def.file.is_some())
        .map(|(_, name, def)| {
            let mut columns: Vec<SelectColumn> = Vec::new();
            let mut trims = Vec::new();
            for f in def.fields.values() {
                if columns.iter().all(|c| c.name != f.column) {
                    trims.push(f.trim);
                    columns.push(SelectColumn {
                        name: f.column.clone(),
                        decode: decode_type_of(
                            f.ty,
                            f.true_values.is_some() || f.false_values.is_some(),
                        ),
                    });
                }
            }
            let key: Vec<String> = def
                .key
                .fields()
                .iter()
                .filter_map(|k| def.fields.get(k).map(|f| f.column.clone()))
                .collect();
            let required = |column: &str| {
                def.file
                    .as_ref()
                    .and_then(|f| f.column(column))
                    .is_some_and(|c| c.required)
            };
            let not_null = columns
                .iter()
                .map(|c| c.name.clone())
                .filter(|c| key.contains(c) || required(c))
                .collect();
            MirrorTable {
                name: name.to_owned(),
                columns,
                key,
                not_null,
                trims,
            }
        })
        .collect()
}

fn sql_type_of(ty: FieldType) -> SqlType {
    match ty {
        FieldType::String => SqlType::Varchar { len: None },
        FieldType::Integer => SqlType::Integer,
        FieldType::Decimal => SqlType::Decimal {
            precision: 38,
            scale: -1,
        },
        FieldType::Boolean => SqlType::Boolean,
        FieldType::Date => SqlType::Date,
        FieldType::Time => SqlType::Time,
        FieldType::Timestamp => SqlType::Timestamp,
        FieldType::Binary => SqlType::Binary,
    }
}

#[async_trait]
impl Source for FilesSource {
    fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    async fn fetch(&self, query: SelectQuery) -> Result<Vec<Row>, SourceError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.read(query, 1024, move |batch| tx.send(batch).is_ok())?
            .await?;
        Ok(rx.try_iter().flatten().collect())
    }

    async fn scan(&self, query: SelectQuery, batch_size: usize) -> RowStream {
        let (tx, rx) = tokio::sync::mpsc::channel(SCAN_BUFFERED_BATCHES);
        let feed = tx.clone();
        let read = self.read(query, batch_size.max(1), move |batch| {
            feed.blocking_send(Ok(batch)).is_ok()
        });
        tokio::spawn(async move {
            let result = match read {
                Ok(read) => read.await,
                Err(e) => Err(e),
            };
            // The end marker only after every batch: a cut read never looks complete.
            let _ = match result {
                Ok(()) => tx.send(Ok(Vec::new())).await,
                Err(e) => tx.send(Err(e)).await,
            };
        });
        rx
    }

    async fn utc_now(&self) -> Result<Option<DateTime<Utc>>, SourceError> {
        Ok(None)
    }

    async fn execute(&self, _sql: String, _params: Vec<Param>) -> Result<(), SourceError> {
        Err(SourceError::new(
            SourceErrorKind::Query,
            format!("files source `{}` is read-only", self.name),
        ))
    }

    async fn columns(&self, relation: &Relation) -> Result<Vec<ColumnInfo>, SourceError> {
        let table = self.table_of(relation)?;
        Ok(table
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                sql_type: sql_type_of(c.decode),
                type_name: c.decode.as_str().to_owned(),
                nullable: !table.not_null.contains(&c.name),
            })
            .collect())
    }

    async fn tables(&self) -> Result<Vec<TableInfo>, SourceError> {
        Ok(self
            .tables
            .iter()
            .map(|t| TableInfo {
                schema: None,
                name: t.name.clone(),
                kind: "EXPORT".to_owned(),
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), SourceError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::read_dir(&dir).map(|_| ()))
            .await
            .map_err(|e| SourceError::new(SourceErrorKind::Unavailable, e.to_string()))?
            .map_err(|e| {
                SourceError::new(
                    SourceErrorKind::Unavailable,
                    format!("export folder {} unreadable: {e}", self.dir.display()),
                )
            })
    }

    fn files(&self) -> Option<&FilesSource> {
        Some(self)
    }
}
