//! spanlake's receivers: OTLP over gRPC and HTTP (protobuf or JSON, gzip or
//! not) and Zipkin v2 JSON, decoded and validated into the storage engine's batch builder.

mod body;
mod error;
mod flight;
mod grpc;
mod http;
mod ingest;
mod metrics;
mod span_metrics;
mod zipkin;

pub use error::IngestError;
pub use flight::{FreshSpans, flight_service};
pub use grpc::{OtlpGrpcService, grpc_service};
pub use http::router as http_router;
pub use ingest::{CollectorConfig, Ingest};
pub use metrics::{CollectorMetrics, Protocol};
pub use span_metrics::{OVERFLOW, SpanMetrics, SpanMetricsConfig};
pub use zipkin::router as zipkin_router;
