//! Span batches: OTLP into Arrow record batches of the span schema, and back.

mod builder;
mod columns;
pub mod json;
mod to_otlp;
mod view;
pub mod wire;

pub use builder::{AppendSummary, IngestLimits, SpanBatchBuilder};
pub(crate) use columns::TimestampColumn;
pub use to_otlp::{ToOtlpError, spans_to_otlp};

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;

/// The earliest and latest span start in a batch of the span schema, ns.
pub fn start_time_range(batch: &arrow::array::RecordBatch) -> Option<(i64, i64)> {
    use arrow::array::AsArray;
    let start = batch
        .column_by_name(crate::schema::START_TIME)?
        .as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>()?;
    Some((arrow::compute::min(start)?, arrow::compute::max(start)?))
}
