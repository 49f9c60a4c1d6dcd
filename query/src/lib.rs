//! spanlake's query service: the `spans` table on DataFusion, read-only SQL,
//! trace assembly, and the HTTP JSON API.

pub mod api;
mod engine;
mod error;
mod id_literals;
mod pruning;
pub mod render;
mod sql;
mod table;
mod trace;

pub use engine::{QueryEngine, SPANS_TABLE, TRACE_FRAGMENTS_TABLE, TRACE_INDEX_VIEW};
pub use error::QueryError;
pub use render::JsonResult;
pub use sql::QueryResult;
