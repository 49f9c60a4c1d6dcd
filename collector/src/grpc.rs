//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! Hand-written rather than the generated server, for its codec: it hands
//! the raw message bytes to the ingest path, which decodes them on the
//! blocking pool (not on a runtime worker) and answers a malformed message
//! with INVALID_ARGUMENT. The generated prost codec answers INTERNAL, which
//! the OTLP specification tells clients to retry forever.

use std::convert::Infallible;

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use spanlake_storage::{ExportBody, TENANT_HEADER, TenantId};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

use crate::error::IngestError;
use crate::ingest::Ingest;
use crate::metrics::Protocol;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The gRPC trace service: gzip accepted, requests capped at the configured
/// size (tonic applies the cap after decompression too).
#[derive(Debug, Clone)]
pub struct OtlpGrpcService {
    ingest: Ingest,
}

pub fn grpc_service(ingest: Ingest) -> OtlpGrpcService {
    OtlpGrpcService { ingest }
}

impl NamedService for OtlpGrpcService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for OtlpGrpcService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            let status = Status::unimplemented(format!("{} is not served here", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let limit = self.ingest.config().max_request_bytes;
        let export = Export { ingest: self.ingest.clone() };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit);
            let mut response = grpc.unary(export, request).await;
            // tonic refuses an oversized message with OUT_OF_RANGE, which the
            // OTLP specification makes retryable: clients would resend it
            // forever. grpc-go and the OpenTelemetry Collector answer
            // RESOURCE_EXHAUSTED without a retry delay, which they drop.
            let status = response.headers().get(Status::GRPC_STATUS);
            if status.is_some_and(|s| s.as_bytes() == (Code::OutOfRange as i32).to_string().as_bytes()) {
                response.headers_mut().insert(Status::GRPC_STATUS, (Code::ResourceExhausted as i32).into());
            }
            Ok(response)
        })
    }
}

struct Export {
    ingest: Ingest,
}

impl UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let tenant = TenantId::from_header(request.metadata().get(TENANT_HEADER).map(|v| v.as_bytes()))
                .map_err(IngestError::from)?;
            let bytes = request.into_inner();
            let response = ingest.export(&tenant, Protocol::OtlpGrpc, move || Ok(ExportBody::Protobuf(bytes))).await?;
            Ok(tonic::Response::new(response))
        })
    }
}

/// Passes request messages on as bytes; encodes responses with prost.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("encoding the response failed: {e}")))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
