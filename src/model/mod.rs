//! The data model shared by sources, mapping and the API: typed values, field types and
//! resource schemas. Nothing here does I/O.

mod schema;
mod value;

pub use schema::{FieldSchema, ResourceSchema};
pub use value::{FieldType, Record, Value, ValueParseError};
