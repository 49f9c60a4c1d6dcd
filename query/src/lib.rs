//! spanlake's query service: the `spans` table on DataFusion, read-only SQL,
//! trace assembly, and the HTTP JSON API.

pub mod api;
pub mod auth;
mod calls;
pub mod collectors;
pub mod dependencies;
pub mod distributed;
mod engine;
mod error;
pub mod flight_sql;
mod functions;
mod id_literals;
pub mod latency;
pub mod params;
pub mod peers;
pub mod pg;
mod pruning;
pub mod render;
pub mod retries;
mod runtime;
pub mod search;
pub mod services;
mod sql;
pub mod stats;
mod table;
mod tag_summaries;
#[cfg(test)]
mod test_support;
mod trace;
mod trace_files;
pub mod traceql;
pub mod tree;
pub mod versions;

pub use engine::{QueryEngine, QueryLimits, SPANS_TABLE, TRACE_FRAGMENTS_TABLE, TRACE_INDEX_VIEW};
pub use error::QueryError;
pub use render::JsonResult;
pub use sql::{Described, QueryResult};
