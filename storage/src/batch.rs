//! Span batches: OTLP into Arrow record batches of the span schema, and back.

mod builder;
mod columns;
mod to_otlp;

pub use builder::{AppendSummary, IngestLimits, SpanBatchBuilder};
pub(crate) use columns::TimestampColumn;
pub use to_otlp::{ToOtlpError, spans_to_otlp};

#[cfg(test)]
mod tests;
