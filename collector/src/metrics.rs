//! The receivers' Prometheus metrics, per protocol and tenant.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use spanlake_storage::TenantId;

use crate::error::IngestError;

/// How spans arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Protocol {
    OtlpGrpc,
    OtlpHttpProtobuf,
    OtlpHttpJson,
    ZipkinJson,
    ZipkinProto3,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SpanLabels {
    protocol: Protocol,
    tenant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    protocol: Protocol,
    reason: &'static str,
}

#[derive(Debug, Default)]
pub struct CollectorMetrics {
    received: Family<SpanLabels, Counter>,
    accepted: Family<SpanLabels, Counter>,
    rejected: Family<SpanLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
}

impl CollectorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("spanlake");
        r.register("spans_received", "Spans in decoded export requests", self.received.clone());
        r.register("spans_accepted", "Spans stored (durable in the WAL)", self.accepted.clone());
        r.register("spans_rejected", "Invalid spans refused through OTLP partial success", self.rejected.clone());
        r.register("export_requests_refused", "Export requests refused as a whole, by reason", self.refused.clone());
    }

    fn labels(protocol: Protocol, tenant: &TenantId) -> SpanLabels {
        SpanLabels { protocol, tenant: tenant.as_str().to_owned() }
    }

    pub(crate) fn received(&self, protocol: Protocol, tenant: &TenantId, spans: u64) {
        self.received.get_or_create(&Self::labels(protocol, tenant)).inc_by(spans);
    }

    pub(crate) fn stored(&self, protocol: Protocol, tenant: &TenantId, accepted: u64, rejected: u64) {
        self.accepted.get_or_create(&Self::labels(protocol, tenant)).inc_by(accepted);
        self.rejected.get_or_create(&Self::labels(protocol, tenant)).inc_by(rejected);
    }

    pub(crate) fn refused(&self, protocol: Protocol, error: &IngestError) {
        self.refused.get_or_create(&RefusalLabels { protocol, reason: error.reason() }).inc();
    }
}
