//! Zipkin's receiver: `POST /api/v2/spans` with a JSON v2 list of spans or
//! a proto3 `ListOfSpans`, gzip or not, answered 202 as Zipkin answers. The spans are mapped to
//! OTLP (`spanlake_storage::zipkin`) and take the same path as OTLP exports,
//! WAL included.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use spanlake_storage::zipkin::{self, ZipkinSpan};
use spanlake_storage::{ExportBody, TENANT_HEADER, TenantId};

use crate::body;
use crate::error::IngestError;
use crate::ingest::Ingest;
use crate::metrics::Protocol;

mod proto3;

pub fn router(ingest: Ingest) -> Router {
    Router::new().route("/api/v2/spans", post(receive)).with_state(ingest)
}

async fn receive(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    match store(&ingest, &headers, body).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => error.http_response(error.to_string()),
    }
}

async fn store(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<(), IngestError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    // Zipkin's own clients send JSON; some omit the type or send text/plain.
    let protocol = match media_type.as_str() {
        "application/json" | "text/plain" | "" => Protocol::ZipkinJson,
        "application/x-protobuf" | "application/protobuf" => Protocol::ZipkinProto3,
        _ => {
            return Err(IngestError::UnsupportedContentType(format!(
                "{content_type} (Zipkin spans: application/json or application/x-protobuf)"
            )));
        }
    };
    let tenant = TenantId::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))?;
    let body = body::read(ingest, headers, body).await?;
    ingest.export(&tenant, protocol, move || to_otlp(protocol, &body.inflate()?)).await?;
    Ok(())
}

/// Zipkin spans as an OTLP protobuf request, the form the WAL keeps.
fn to_otlp(protocol: Protocol, bytes: &[u8]) -> Result<ExportBody, IngestError> {
    let spans: Vec<ZipkinSpan> = if protocol == Protocol::ZipkinProto3 {
        let list = proto3::ListOfSpans::decode(bytes)
            .map_err(|e| IngestError::InvalidRequest(format!("expected a Zipkin proto3 ListOfSpans: {e}")))?;
        proto3::to_model(list)
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| IngestError::InvalidRequest(format!("expected a JSON list of Zipkin v2 spans: {e}")))?
    };
    let resource_spans = zipkin::to_otlp(spans).map_err(|e| IngestError::InvalidRequest(e.to_string()))?;
    Ok(ExportBody::Protobuf(Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec())))
}
