//! The data model shared by sources, mapping, capture and the API: typed values, field
//! types, resource schemas and change events. Nothing here does I/O.

mod change;
mod schema;
mod value;

pub use change::{
    CLOUDEVENTS_BATCH_JSON, ChangeOp, ChangeOrigin, NewEvent, StoredEvent, event_type,
};
pub use schema::{FieldSchema, ResourceSchema};
pub use value::{FieldType, Record, Value, ValueParseError};
