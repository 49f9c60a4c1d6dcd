//! OTLP/HTTP: `POST /v1/traces` with protobuf or JSON, gzip or identity.
//! Responses, errors included, use the request's content type, as the OTLP
//! specification asks (errors carry a `google.rpc.Status`).

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use spanlake_storage::{ExportBody, TENANT_HEADER, TenantId};

use crate::body;
use crate::error::IngestError;
use crate::ingest::Ingest;
use crate::metrics::Protocol;

pub fn router(ingest: Ingest) -> Router {
    Router::new().route("/v1/traces", post(export)).with_state(ingest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Result<Self, IngestError> {
        let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media_type = value.split(';').next().unwrap_or_default().trim();
        match media_type.to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Self::Protobuf),
            "application/json" => Ok(Self::Json),
            _ => Err(IngestError::UnsupportedContentType(value.to_owned())),
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        })
    }

    /// The body as received, which the WAL keeps.
    fn body(self, bytes: Bytes) -> ExportBody {
        match self {
            Self::Protobuf => ExportBody::Protobuf(bytes),
            Self::Json => ExportBody::Json(bytes),
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Self::Protobuf => Protocol::OtlpHttpProtobuf,
            Self::Json => Protocol::OtlpHttpJson,
        }
    }

    fn encode_response(self, response: &ExportTraceServiceResponse) -> Vec<u8> {
        match self {
            Self::Protobuf => response.encode_to_vec(),
            Self::Json => response_json(response),
        }
    }

    fn encode_status(self, status: &RpcStatus) -> Vec<u8> {
        match self {
            Self::Protobuf => status.encode_to_vec(),
            Self::Json => {
                serde_json::json!({ "code": status.code, "message": status.message }).to_string().into_bytes()
            }
        }
    }
}

async fn export(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    // Without a known content type, the error itself is sent as JSON.
    let format = match Format::from_headers(&headers) {
        Ok(format) => format,
        Err(e) => return error_response(&e, Format::Json),
    };
    match receive(&ingest, &headers, body, format).await {
        Ok(response) => {
            ([(header::CONTENT_TYPE, format.content_type())], format.encode_response(&response)).into_response()
        }
        Err(e) => error_response(&e, format),
    }
}

async fn receive(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
    format: Format,
) -> Result<ExportTraceServiceResponse, IngestError> {
    let tenant = TenantId::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))?;
    let body = body::read(ingest, headers, body).await?;
    ingest.export(&tenant, format.protocol(), move || Ok(format.body(body.inflate()?))).await
}

/// OTLP/JSON writes 64-bit integers as strings (`"rejectedSpans": "2"`);
/// the generated serializer would write a number.
fn response_json(response: &ExportTraceServiceResponse) -> Vec<u8> {
    let body = match &response.partial_success {
        Some(p) => serde_json::json!({
            "partialSuccess": { "rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message }
        }),
        None => serde_json::json!({}),
    };
    body.to_string().into_bytes()
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn error_response(error: &IngestError, format: Format) -> Response {
    let body = format.encode_status(&RpcStatus { code: error.grpc_code() as i32, message: error.to_string() });
    error.http_response(([(header::CONTENT_TYPE, format.content_type())], body))
}
