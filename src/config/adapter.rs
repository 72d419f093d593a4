//! Adapter definitions: how one legacy schema maps onto resources. Portable across
//! installations of the same legacy product, so they name tables and columns, never hosts.

use indexmap::IndexMap;
use serde::Deserialize;

use super::capture::CaptureDef;
use super::files::FileDef;
use crate::model::FieldType;

/// One adapter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterFile {
    #[serde(default)]
    pub description: Option<String>,
    pub resources: IndexMap<String, ResourceDef>,
}

/// A key: one field name or several (composite key), in key order.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum KeyDef {
    One(String),
    Many(Vec<String>),
}

impl KeyDef {
    /// The key's field names in order.
    pub fn fields(&self) -> Vec<String> {
        match self {
            KeyDef::One(f) => vec![f.clone()],
            KeyDef::Many(v) => v.clone(),
        }
    }
}

/// One resource: where its rows come from and how columns become fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    /// Name of a source in the deployment config.
    pub source: String,
    /// Table or view to read; exclusive with `query`.
    #[serde(default)]
    pub table: Option<String>,
    /// A read-only SELECT used as a derived table; exclusive with `table`.
    #[serde(default)]
    pub query: Option<String>,
    pub key: KeyDef,
    #[serde(default)]
    pub description: Option<String>,
    pub fields: IndexMap<String, FieldDef>,
    /// How changes are found; a resource without it is served but not captured (file
    /// resources are always captured, by strategy `export`).
    #[serde(default)]
    pub capture: Option<CaptureDef>,
    /// Resources of a `files` source: which exports, in which format.
    #[serde(default)]
    pub file: Option<FileDef>,
}

impl ResourceDef {
    /// The capture section in effect: file resources are always captured (by diffing their
    /// exports), database resources only when they have one.
    pub fn capture_def(&self) -> Option<CaptureDef> {
        match (&self.capture, &self.file) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(_)) => Some(CaptureDef::export()),
            (None, None) => None,
        }
    }
}

/// Which padding to strip from text, for CHAR columns padded with spaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trim {
    #[default]
    None,
    End,
    Start,
    Both,
}

/// One field: the legacy column it comes from, its type, transforms and query permissions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub column: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub trim: Trim,
    /// Decimal places to round to (half away from zero); decimals only.
    #[serde(default)]
    pub scale: Option<u32>,
    /// IANA zone in which the legacy system wrote naive timestamps; timestamps only.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Legacy spellings of true (e.g. `["Y"]`); booleans only.
    #[serde(default)]
    pub true_values: Option<Vec<String>>,
    /// Legacy spellings of false (e.g. `["N", " "]`); booleans only.
    #[serde(default)]
    pub false_values: Option<Vec<String>>,
    #[serde(default)]
    pub filter: bool,
    #[serde(default)]
    pub sort: bool,
    #[serde(default)]
    pub description: Option<String>,
}
