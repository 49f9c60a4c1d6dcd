//! Export requests as storage takes them: the OTLP protobuf bytes the WAL
//! logs, and the span batch storage decodes from exactly those bytes under
//! its own ingest limits. Live ingest and WAL replay both go through
//! [`decode`], so a replayed record becomes the batch it was when it was
//! acknowledged.

use arrow::array::RecordBatch;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use thiserror::Error;

use crate::batch::wire::LeftToProst;
use crate::batch::{AppendSummary, IngestLimits, SpanBatchBuilder};

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("protobuf does not decode: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("spans do not fit the span schema: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// An OTLP export request decoded by storage; only [`crate::Storage::decode`]
/// makes one, so the batch always matches the bytes the WAL keeps. Clones
/// share the bytes and the batch.
#[derive(Debug, Clone)]
pub struct DecodedExport {
    pub(crate) body: Bytes,
    pub(crate) batch: RecordBatch,
    summary: AppendSummary,
}

impl DecodedExport {
    /// The accepted spans, in the `spans` schema.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Spans accepted, rejected (OTLP partial success) and values cut.
    pub fn summary(&self) -> &AppendSummary {
        &self.summary
    }

    /// Buffer room the export takes while it is written: its batch and its
    /// bytes on their way to the WAL.
    pub(crate) fn room(&self) -> usize {
        self.batch.get_array_memory_size() + self.body.len()
    }
}

/// CPU work: callers on an async runtime run it on the blocking pool. The
/// wire reader builds the batch; what it leaves to prost (malformed bytes
/// among it, so the sender sees prost's error) prost decodes.
pub(crate) fn decode(body: Bytes, limits: &IngestLimits) -> Result<DecodedExport, DecodeError> {
    let mut builder = SpanBatchBuilder::new(limits.clone());
    let summary = match builder.append_protobuf(&body) {
        Ok(summary) => summary,
        Err(LeftToProst) => {
            let request = ExportTraceServiceRequest::decode(body.as_ref())?;
            builder = SpanBatchBuilder::new(limits.clone());
            builder.append(&request.resource_spans)
        }
    };
    let batch = builder.finish()?;
    Ok(DecodedExport { body, batch, summary })
}
