//! Resources: canonical v1 schemas, and adapter definitions bound to the columns a live
//! source actually has. A bound [`Resource`] is everything the API needs to answer a request.

mod bind;
pub mod canonical;
mod mapping;

pub use bind::{BindError, bind_resource};
pub use mapping::{BoundField, MappingError, Resource, Transform, decode_type_of};
