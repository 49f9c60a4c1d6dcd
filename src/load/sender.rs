//! One connection that exports already-encoded requests, over OTLP/gRPC or
//! OTLP/HTTP (protobuf or JSON), and sorts the answers into acknowledged,
//! refused (the retryable answers of the OTLP spec) and failed.

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::Protocol;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub(crate) enum Outcome {
    Acknowledged,
    Refused,
    Failed(String),
}

pub(crate) enum Sender {
    Grpc { client: tonic::client::Grpc<Channel>, tenant: MetadataValue<tonic::metadata::Ascii> },
    Http { client: reqwest::Client, url: String, tenant: String, json: bool },
}

impl Sender {
    pub(crate) async fn connect(protocol: Protocol, endpoint: &str, tenant: &str) -> anyhow::Result<Self> {
        Ok(match protocol {
            Protocol::Grpc => {
                let channel = Channel::from_shared(endpoint.to_owned())?.connect().await?;
                let tenant = tenant.parse()?;
                Self::Grpc { client: tonic::client::Grpc::new(channel), tenant }
            }
            Protocol::Http | Protocol::HttpJson => Self::Http {
                client: reqwest::Client::new(),
                url: format!("{}/v1/traces", endpoint.trim_end_matches('/')),
                tenant: tenant.to_owned(),
                json: protocol == Protocol::HttpJson,
            },
        })
    }

    /// The body this sender sends for a request encoded as protobuf.
    pub(crate) fn body(&self, protobuf: Vec<u8>) -> Bytes {
        match self {
            Self::Http { json: true, .. } => {
                let request =
                    ExportTraceServiceRequest::decode(protobuf.as_slice()).expect("the generator's requests decode");
                serde_json::to_vec(&request).expect("requests serialize").into()
            }
            _ => protobuf.into(),
        }
    }

    /// `body` is cloned per retry, which `Bytes` makes a reference count.
    pub(crate) async fn export(&self, body: Bytes) -> Outcome {
        match self {
            Self::Grpc { client, tenant } => {
                let mut client = client.clone();
                if let Err(e) = client.ready().await {
                    return Outcome::Failed(format!("connection: {e}"));
                }
                let mut request = tonic::Request::new(body);
                request.metadata_mut().insert(spanlake_storage::TENANT_HEADER, tenant.clone());
                match client.unary(request, PathAndQuery::from_static(EXPORT_PATH), PreEncoded).await {
                    Ok(_) => Outcome::Acknowledged,
                    Err(status)
                        if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::ResourceExhausted) =>
                    {
                        Outcome::Refused
                    }
                    Err(status) => Outcome::Failed(format!("{:?}: {}", status.code(), status.message())),
                }
            }
            Self::Http { client, url, tenant, json } => {
                let content_type = if *json { "application/json" } else { "application/x-protobuf" };
                let request = client
                    .post(url)
                    .header("content-type", content_type)
                    .header(spanlake_storage::TENANT_HEADER, tenant)
                    .body(body);
                match request.send().await {
                    Ok(r) if r.status().is_success() => Outcome::Acknowledged,
                    Ok(r) if matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => Outcome::Refused,
                    Ok(r) => Outcome::Failed(format!("HTTP {}", r.status())),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }
}

/// Sends request bytes as they are; decodes the (small) response.
#[derive(Debug, Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        let response = ExportTraceServiceResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| tonic::Status::internal(format!("response does not decode: {e}")))?;
        Ok(Some(response))
    }
}
