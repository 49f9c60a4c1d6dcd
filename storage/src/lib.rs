//! spanlake's storage: the span schema, OTLP into Arrow batches and back,
//! the write buffer, and Parquet span files in an object store.

pub mod attributes;
pub mod batch;
mod engine;
mod error;
pub mod ids;
pub mod paths;
pub mod schema;
pub mod span_file;

pub use batch::{AppendSummary, IngestLimits, SpanBatchBuilder, ToOtlpError, spans_to_otlp};
pub use engine::{FlushConfig, Snapshot, SpanFile, Storage};
pub use error::StorageError;
pub use paths::TenantId;
