//! Resource schemas: the public shape of a resource, independent of where its data lives.
//! The API, the OpenAPI document and (later) change events are all derived from it.

use indexmap::IndexMap;

use super::FieldType;

/// One field of a resource as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    pub ty: FieldType,
    pub nullable: bool,
    pub description: Option<String>,
    /// Clients may filter on it with `field=` and `field[op]=`.
    pub filterable: bool,
    /// Clients may sort on it with `sort=field` / `sort=-field`.
    pub sortable: bool,
}

/// The public shape of a resource: its fields in order and which of them form the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchema {
    /// URL segment, e.g. `inventory`.
    pub name: String,
    /// Name of the OpenAPI schema component, e.g. `InventoryLevel`.
    pub component: String,
    pub description: Option<String>,
    /// Key field names, in key order; a composite key has several.
    pub key: Vec<String>,
    pub fields: IndexMap<String, FieldSchema>,
}

impl ResourceSchema {
    /// The schema of a key field; key fields always exist by construction.
    pub fn key_fields(&self) -> impl Iterator<Item = (&String, &FieldSchema)> {
        self.key
            .iter()
            .filter_map(|k| self.fields.get_key_value(k.as_str()))
    }
}
