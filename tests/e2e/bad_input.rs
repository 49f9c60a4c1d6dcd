//! Bad input gets a clear error and leaves stored data alone; OTLP/JSON is
//! read the way the specification and real SDKs write it.

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Buf, BufMut};
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use serde_json::{Value, json};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::harness::{ServerOptions, TestServer};

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

fn json_span(trace_id: &str, span_id: &str, name: &str) -> Value {
    json!({
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000250000000"
    })
}

fn json_request(spans: Vec<Value>) -> Value {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bad-input"}}]},
            "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]
        }]
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn post(server: &TestServer, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().post(server.otlp_http_url()).header("content-type", content_type).body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.expect("OTLP/HTTP request")
}

/// The `google.rpc.Status` of an OTLP/HTTP error answered in protobuf.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Sends raw bytes as the Export message, as a broken client would.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
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
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        ExportTraceServiceResponse::decode(bytes).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

async fn grpc_raw(server: &TestServer, message: Vec<u8>) -> Result<ExportTraceServiceResponse, Status> {
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(message), path, RawCodec).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_requests_are_refused_and_stored_data_stays() {
    let server = TestServer::start_with(ServerOptions::default().arg("--max-request-bytes", "1048576")).await;
    let valid =
        json_request(vec![json_span(TRACE, "0000000000000001", "a"), json_span(TRACE, "0000000000000002", "b")]);
    assert_eq!(post(&server, "application/json", None, valid.to_string().into_bytes()).await.status(), 200);
    assert_eq!(server.span_count().await, 2);
    let protobuf: ExportTraceServiceRequest = serde_json::from_value(valid).unwrap();
    let protobuf = protobuf.encode_to_vec();

    // Truncated protobuf: 400 with a google.rpc.Status in protobuf.
    let response = post(&server, "application/x-protobuf", None, protobuf[..protobuf.len() - 7].to_vec()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(response.bytes().await.unwrap()).expect("a google.rpc.Status");
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert!(status.message.contains("protobuf"), "{}", status.message);

    // The same over gRPC: INVALID_ARGUMENT, which clients do not retry.
    let refused = grpc_raw(&server, protobuf[..protobuf.len() - 7].to_vec()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // Invalid JSON: 400 with a JSON status.
    let response = post(&server, "application/json", None, b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("JSON"), "{body}");

    // Wrong content type or encoding: 415.
    assert_eq!(post(&server, "text/plain", None, b"hello".to_vec()).await.status(), 415);
    assert_eq!(post(&server, "application/json", Some("br"), b"{}".to_vec()).await.status(), 415);

    // Over the limit as sent, and over it only after decompression: 413.
    let big = vec![b' '; 2 * 1024 * 1024];
    assert_eq!(post(&server, "application/json", None, big.clone()).await.status(), 413);
    let response = post(&server, "application/json", Some("gzip"), gzip(&big)).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("after decompression"), "{body}");

    // A gzip bomb (under 1 MiB, 512 MiB inflated) stops at the limit: memory does not grow with it.
    let bomb = gzip(&vec![0u8; 512 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let before = server.peak_rss_kib();
    let response = post(&server, "application/x-protobuf", Some("gzip"), bomb.clone()).await;
    assert_eq!(response.status(), 413);
    let grown_mib = (server.peak_rss_kib() - before) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB on a gzip bomb");

    // gRPC caps messages at the same limit, decompressed or not.
    let mut client = TraceServiceClient::connect(server.grpc_endpoint()).await.unwrap();
    let huge = json_request(vec![json_span(TRACE, "0000000000000003", &"x".repeat(2 * 1024 * 1024))]);
    let refused = client.export(serde_json::from_value::<ExportTraceServiceRequest>(huge).unwrap()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    assert_eq!(server.span_count().await, 2, "earlier data is intact:\n{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_with_bad_ids_are_rejected_through_partial_success_and_the_rest_kept() {
    let server = TestServer::start().await;
    let spans = || {
        vec![
            json_span(TRACE, "00000000000000a1", "valid"),
            json_span("0102030405060708", "00000000000000a2", "trace id of 8 bytes"),
            json_span(TRACE, "00a3", "span id of 2 bytes"),
        ]
    };

    let response = post(&server, "application/json", None, json_request(spans()).to_string().into_bytes()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], json!("2"), "{body}");
    assert!(body["partialSuccess"]["errorMessage"].as_str().unwrap().contains("trace_id must be 16 bytes"));

    let request: ExportTraceServiceRequest = serde_json::from_value(json_request(spans())).unwrap();
    let response = post(&server, "application/x-protobuf", None, request.encode_to_vec()).await;
    assert_eq!(response.headers()["content-type"], "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 2);

    let mut client = TraceServiceClient::connect(server.grpc_endpoint()).await.unwrap();
    let answer = client.export(request).await.unwrap().into_inner();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 2);

    let stored = server.sql("SELECT span_name, count(*) FROM spans GROUP BY span_name").await;
    assert_eq!(stored["rows"], json!([["valid", 3]]));
}

/// Node's exporter streams its body: chunked, without Content-Length.
#[tokio::test(flavor = "multi_thread")]
async fn chunked_bodies_without_content_length_are_read_whole() {
    let server = TestServer::start().await;
    let body = json_request(vec![json_span(TRACE, "00000000000000c1", "chunked")]).to_string();
    let (first, second) = body.split_at(body.len() / 2);
    let mut request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.otlp_http_addr
    );
    for chunk in [first, second] {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let addr = server.otlp_http_addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "{answer}");
    assert_eq!(server.span_count().await, 1);
}

/// OTLP/JSON as the specification allows it: ids in any case, enums as
/// integers, 64-bit integers as strings or numbers, unknown fields, and a
/// root span with an empty or missing parent.
#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_is_read_per_the_specification() {
    let server = TestServer::start().await;
    let request = json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-spec"}}], "futureField": 1},
            "scopeSpans": [{
                "scope": {"name": "s", "version": "1"},
                "spans": [
                    {
                        "traceId": TRACE.to_uppercase(),
                        "spanId": "00000000000000D1",
                        "parentSpanId": "",
                        "name": "root",
                        "kind": 2,
                        "startTimeUnixNano": 1700000000000000000u64,
                        "endTimeUnixNano": "1700000001000000000",
                        "attributes": [
                            {"key": "as.string", "value": {"intValue": "-12"}},
                            {"key": "as.number", "value": {"intValue": 34}},
                            {"key": "d", "value": {"doubleValue": 0.5}}
                        ],
                        "status": {"code": 2, "message": "bad"},
                        "somethingNew": {"nested": true}
                    },
                    {
                        "traceId": TRACE,
                        "spanId": "00000000000000d2",
                        "name": "orphan-looking root",
                        "kind": 3,
                        "startTimeUnixNano": "1700000000100000000",
                        "endTimeUnixNano": "1700000000200000000"
                    },
                    {
                        "traceId": TRACE,
                        "spanId": "00000000000000d3",
                        "parentSpanId": "00000000000000D1",
                        "name": "child",
                        "startTimeUnixNano": "1700000000300000000",
                        "endTimeUnixNano": "1700000000400000000"
                    }
                ]
            }]
        }]
    });
    assert_eq!(post(&server, "application/json", None, request.to_string().into_bytes()).await.status(), 200);

    let rows = server
        .sql(&format!(
            "SELECT span_name, span_kind, parent_span_id, duration_ns, status_code, span_attributes['as.string'], \
             span_attribute_types['as.number'] FROM spans WHERE trace_id = '{TRACE}' ORDER BY start_time"
        ))
        .await;
    assert_eq!(
        rows["rows"],
        json!([
            ["root", "SERVER", null, 1_000_000_000, "ERROR", "-12", "int"],
            ["orphan-looking root", "CLIENT", null, 100_000_000, "UNSET", null, null],
            ["child", "UNSPECIFIED", "00000000000000d1", 100_000_000, "UNSET", null, null]
        ])
    );
}
