//! spanlake's storage engine: the span schema, OTLP into Arrow batches and
//! back, the write-ahead log, the write buffer, Parquet data files in an
//! object store, the catalog of live files, compaction and retention.

pub mod attributes;
pub mod batch;
mod buffer;
pub mod catalog;
pub mod clock;
mod compaction;
pub mod data_file;
pub mod edges;
mod engine;
mod error;
mod export;
mod flush;
pub mod fresh;
pub mod ids;
pub mod lease;
mod maintenance;
pub mod metrics;
pub mod paths;
mod remote_service;
pub mod scan_filter;
pub mod schema;
pub mod tag_summary;
pub mod trace_durations;
pub mod trace_filter;
pub mod trace_index;
pub mod wal;
pub mod zipkin;

pub use batch::{AppendSummary, IngestLimits, SpanBatchBuilder, ToOtlpError, spans_to_otlp};
pub use catalog::{DataFile, Manifest};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::CompactionConfig;
pub use engine::{DEFAULT_MAX_BUFFER_BYTES, FlushConfig, Snapshot, Storage, StorageConfig};
pub use error::StorageError;
pub use export::{DecodeError, DecodedExport, ExportBody};
pub use metrics::StorageMetrics;
pub use paths::{FileKind, InvalidTenant, TENANT_HEADER, TenantId};
pub use wal::{WalConfig, WalSync};
