//! The path every receiver shares: admission, the request turned into an
//! OTLP body and decoded by storage on the blocking pool, the WAL, and OTLP
//! partial success.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use spanlake_storage::{AppendSummary, ExportBody, Storage, TenantId};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::body::BodyBuffers;
use crate::error::IngestError;
use crate::metrics::{CollectorMetrics, Protocol};
use crate::span_metrics::SpanMetrics;

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Largest request body, compressed and again after decompression.
    /// 16 MiB holds tens of thousands of spans; SDKs batch far smaller.
    pub max_request_bytes: usize,
    /// Requests decoded at once; more wait. Bounds the memory of bodies in
    /// flight to about this many times `max_request_bytes`.
    pub max_concurrent_requests: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self { max_request_bytes: 16 * 1024 * 1024, max_concurrent_requests: 16 }
    }
}

/// Shared by the receivers: turns exports into stored spans.
#[derive(Debug, Clone)]
pub struct Ingest {
    storage: Arc<Storage>,
    config: Arc<CollectorConfig>,
    metrics: Arc<CollectorMetrics>,
    span_metrics: Arc<SpanMetrics>,
    permits: Arc<Semaphore>,
    bodies: Arc<BodyBuffers>,
}

impl Ingest {
    pub fn new(
        storage: Arc<Storage>,
        config: CollectorConfig,
        metrics: Arc<CollectorMetrics>,
        span_metrics: Arc<SpanMetrics>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        let bodies = BodyBuffers::new(config.max_concurrent_requests);
        Self { storage, config: Arc::new(config), metrics, span_metrics, permits, bodies }
    }

    pub fn config(&self) -> &CollectorConfig {
        &self.config
    }

    /// Where the HTTP receivers read request bodies into.
    pub(crate) fn body_buffers(&self) -> &Arc<BodyBuffers> {
        &self.bodies
    }

    /// Runs `to_otlp` (decompression, other formats into OTLP) and storage's
    /// decoding on the blocking pool (both are CPU work), then stores the
    /// spans. Returns once they are durable and queryable.
    pub async fn export<F>(
        &self,
        tenant: &TenantId,
        protocol: Protocol,
        to_otlp: F,
    ) -> Result<ExportTraceServiceResponse, IngestError>
    where
        F: FnOnce() -> Result<ExportBody, IngestError> + Send + 'static,
    {
        let result = self.store(tenant, protocol, to_otlp).await;
        if let Err(error) = &result {
            self.metrics.refused(protocol, error);
        }
        result
    }

    async fn store<F>(
        &self,
        tenant: &TenantId,
        protocol: Protocol,
        to_otlp: F,
    ) -> Result<ExportTraceServiceResponse, IngestError>
    where
        F: FnOnce() -> Result<ExportBody, IngestError> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| IngestError::Internal("ingest is closed".into()))?;
        // Refuse before paying for the decode when the buffer is full.
        self.storage.check_room()?;
        let storage = Arc::clone(&self.storage);
        let export = tokio::task::spawn_blocking(move || Ok::<_, IngestError>(storage.decode(to_otlp()?)?))
            .await
            .map_err(|e| IngestError::Internal(format!("decoding task failed: {e}")))??;
        let summary = export.summary().clone();
        self.metrics.received(protocol, tenant, (summary.accepted + summary.rejected) as u64);
        let batch = export.batch().clone();
        self.storage.write(tenant, export).await?;
        self.metrics.stored(protocol, tenant, summary.accepted as u64, summary.rejected as u64);
        self.span_metrics.record(tenant, &batch);
        debug!(%tenant, accepted = summary.accepted, rejected = summary.rejected, "export stored");
        Ok(response(&summary, self.storage.limits().max_attribute_value_bytes))
    }
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
