//! The path every receiver shares: decode on the blocking pool, build one
//! Arrow batch per request, hand it to storage, report partial success.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use spanlake_storage::{AppendSummary, IngestLimits, SpanBatchBuilder, Storage, TenantId};
use tracing::debug;

use crate::error::IngestError;

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Largest request body, compressed and again after decompression.
    /// 16 MiB holds tens of thousands of spans; SDKs batch far smaller.
    pub max_request_bytes: usize,
    pub limits: IngestLimits,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self { max_request_bytes: 16 * 1024 * 1024, limits: IngestLimits::default() }
    }
}

/// Shared by the receivers: turns decoded exports into stored spans.
#[derive(Debug, Clone)]
pub struct Ingest {
    storage: Arc<Storage>,
    config: Arc<CollectorConfig>,
}

impl Ingest {
    pub fn new(storage: Arc<Storage>, config: CollectorConfig) -> Self {
        Self { storage, config: Arc::new(config) }
    }

    pub fn config(&self) -> &CollectorConfig {
        &self.config
    }

    /// Runs `decode` and the Arrow build on the blocking pool (both are CPU
    /// work), then stores the batch. Returns once the spans are buffered for
    /// the next flush, and so queryable.
    pub async fn export<F>(&self, tenant: &TenantId, decode: F) -> Result<ExportTraceServiceResponse, IngestError>
    where
        F: FnOnce() -> Result<ExportTraceServiceRequest, IngestError> + Send + 'static,
    {
        let limits = self.config.limits.clone();
        let (batch, summary) = tokio::task::spawn_blocking(move || {
            let request = decode()?;
            let mut builder = SpanBatchBuilder::new(limits);
            let summary = builder.append(&request.resource_spans);
            let batch = builder.finish().map_err(|e| IngestError::Internal(e.to_string()))?;
            Ok::<_, IngestError>((batch, summary))
        })
        .await
        .map_err(|e| IngestError::Internal(format!("decoding task failed: {e}")))??;
        self.storage.write(tenant, batch)?;
        debug!(%tenant, accepted = summary.accepted, rejected = summary.rejected, "export stored");
        Ok(response(&summary, self.config.limits.max_attribute_value_bytes))
    }
}

/// Decodes an OTLP protobuf request; a malformed one is the client's error.
pub(crate) fn decode_protobuf(bytes: &[u8]) -> Result<ExportTraceServiceRequest, IngestError> {
    ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| IngestError::InvalidRequest(format!("protobuf does not decode: {e}")))
}

/// OTLP partial success: rejected spans with the first reason, and a
/// warning when values were cut.
fn response(summary: &AppendSummary, max_value_bytes: usize) -> ExportTraceServiceResponse {
    let mut messages = Vec::new();
    if let Some(reason) = &summary.first_error {
        messages.push(format!("{} spans rejected, the first because {reason}", summary.rejected));
    }
    if summary.truncated_values > 0 {
        messages.push(format!("{} values cut to {max_value_bytes} bytes", summary.truncated_values));
    }
    let partial_success = (!messages.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: summary.rejected as i64,
        error_message: messages.join("; "),
    });
    ExportTraceServiceResponse { partial_success }
}
