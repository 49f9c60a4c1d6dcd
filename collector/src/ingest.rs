//! The path every receiver shares: admission, decoding on the blocking
//! pool, one Arrow batch per request, the WAL, and OTLP partial success.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use spanlake_storage::{AppendSummary, IngestLimits, SpanBatchBuilder, Storage, TenantId};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::error::IngestError;
use crate::metrics::{CollectorMetrics, Protocol};

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Largest request body, compressed and again after decompression.
    /// 16 MiB holds tens of thousands of spans; SDKs batch far smaller.
    pub max_request_bytes: usize,
    /// Requests decoded at once; more wait. Bounds the memory of bodies in
    /// flight to about this many times `max_request_bytes`.
    pub max_concurrent_requests: usize,
    pub limits: IngestLimits,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self { max_request_bytes: 16 * 1024 * 1024, max_concurrent_requests: 16, limits: IngestLimits::default() }
    }
}

/// Shared by the receivers: turns exports into stored spans.
#[derive(Debug, Clone)]
pub struct Ingest {
    storage: Arc<Storage>,
    config: Arc<CollectorConfig>,
    metrics: Arc<CollectorMetrics>,
    permits: Arc<Semaphore>,
}

/// A decoded request and its protobuf form, for the WAL.
pub(crate) type Decoded = (ExportTraceServiceRequest, Bytes);

impl Ingest {
    pub fn new(storage: Arc<Storage>, config: CollectorConfig, metrics: Arc<CollectorMetrics>) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        Self { storage, config: Arc::new(config), metrics, permits }
    }

    pub fn config(&self) -> &CollectorConfig {
        &self.config
    }

    /// Runs `decode` and the Arrow build on the blocking pool (both are CPU
    /// work), then logs and buffers the batch. Returns once the spans are
    /// durable and queryable.
    pub async fn export<F>(
        &self,
        tenant: &TenantId,
        protocol: Protocol,
        decode: F,
    ) -> Result<ExportTraceServiceResponse, IngestError>
    where
        F: FnOnce() -> Result<Decoded, IngestError> + Send + 'static,
    {
        let result = self.store(tenant, protocol, decode).await;
        if let Err(error) = &result {
            self.metrics.refused(protocol, error);
        }
        result
    }

    async fn store<F>(
        &self,
        tenant: &TenantId,
        protocol: Protocol,
        decode: F,
    ) -> Result<ExportTraceServiceResponse, IngestError>
    where
        F: FnOnce() -> Result<Decoded, IngestError> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| IngestError::Internal("ingest is closed".into()))?;
        // Refuse before paying for the decode when the buffer is full.
        self.storage.check_room()?;
        let limits = self.config.limits.clone();
        let (batch, body, summary) = tokio::task::spawn_blocking(move || {
            let (request, body) = decode()?;
            let mut builder = SpanBatchBuilder::new(limits);
            let summary = builder.append(&request.resource_spans);
            let batch = builder.finish().map_err(|e| IngestError::Internal(e.to_string()))?;
            Ok::<_, IngestError>((batch, body, summary))
        })
        .await
        .map_err(|e| IngestError::Internal(format!("decoding task failed: {e}")))??;
        self.metrics.received(protocol, tenant, (summary.accepted + summary.rejected) as u64);
        self.storage.write(tenant, body, batch).await?;
        self.metrics.stored(protocol, tenant, summary.accepted as u64, summary.rejected as u64);
        debug!(%tenant, accepted = summary.accepted, rejected = summary.rejected, "export stored");
        Ok(response(&summary, self.config.limits.max_attribute_value_bytes))
    }
}

/// Decodes an OTLP protobuf request; a malformed one is the client's error.
pub(crate) fn decode_protobuf(bytes: Bytes) -> Result<Decoded, IngestError> {
    let request = ExportTraceServiceRequest::decode(bytes.as_ref())
        .map_err(|e| IngestError::InvalidRequest(format!("protobuf does not decode: {e}")))?;
    Ok((request, bytes))
}

/// Decodes an OTLP/JSON request; the WAL keeps it as protobuf.
pub(crate) fn decode_json(bytes: &[u8]) -> Result<Decoded, IngestError> {
    let request: ExportTraceServiceRequest =
        serde_json::from_slice(bytes).map_err(|e| IngestError::InvalidRequest(format!("JSON does not decode: {e}")))?;
    let protobuf = Bytes::from(request.encode_to_vec());
    Ok((request, protobuf))
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
