//! Export requests as storage takes them: the body as received (OTLP
//! protobuf or OTLP/JSON), which the WAL logs, and the span batch storage
//! decodes from exactly those bytes under its own ingest limits. Live
//! ingest and WAL replay both go through [`decode`], so a replayed record
//! becomes the batch it was when it was acknowledged.

use arrow::array::RecordBatch;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use thiserror::Error;

use crate::batch::{AppendSummary, IngestLimits, SpanBatchBuilder};

/// An OTLP `ExportTraceServiceRequest` as it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportBody {
    Protobuf(Bytes),
    Json(Bytes),
}

impl ExportBody {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::Protobuf(bytes) | Self::Json(bytes) => bytes,
        }
    }

    /// The format's marker in a WAL record.
    pub(crate) fn format_tag(&self) -> u8 {
        match self {
            Self::Protobuf(_) => 0,
            Self::Json(_) => 1,
        }
    }

    pub(crate) fn from_tag(tag: u8, bytes: Bytes) -> Option<Self> {
        match tag {
            0 => Some(Self::Protobuf(bytes)),
            1 => Some(Self::Json(bytes)),
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("protobuf does not decode: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("JSON does not decode: {0}")]
    Json(#[from] serde_json::Error),
    #[error("spans do not fit the span schema: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// An OTLP export request decoded by storage; only [`crate::Storage::decode`]
/// makes one, so the batch always matches the bytes the WAL keeps. Clones
/// share the bytes and the batch.
#[derive(Debug, Clone)]
pub struct DecodedExport {
    pub(crate) body: ExportBody,
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
        self.batch.get_array_memory_size() + self.body.bytes().len()
    }
}

/// CPU work: callers on an async runtime run it on the blocking pool. The
/// format's reader builds the batch straight from the bytes; what it leaves
/// to the reference decoder (prost, serde_json), malformed bytes among it so
/// that the sender sees the reference's error, the reference decodes.
pub(crate) fn decode(body: ExportBody, limits: &IngestLimits) -> Result<DecodedExport, DecodeError> {
    let mut builder = SpanBatchBuilder::new(limits.clone());
    let read = match &body {
        ExportBody::Protobuf(bytes) => builder.append_protobuf(bytes).ok(),
        ExportBody::Json(bytes) => builder.append_json(bytes).ok(),
    };
    let summary = match read {
        Some(summary) => summary,
        None => {
            let request: ExportTraceServiceRequest = match &body {
                ExportBody::Protobuf(bytes) => ExportTraceServiceRequest::decode(bytes.as_ref())?,
                ExportBody::Json(bytes) => serde_json::from_slice(bytes)?,
            };
            builder = SpanBatchBuilder::new(limits.clone());
            builder.append(&request.resource_spans)
        }
    };
    let batch = builder.finish()?;
    Ok(DecodedExport { body, batch, summary })
}
