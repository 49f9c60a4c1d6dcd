//! The Rust OpenTelemetry SDK exports through its real OTLP exporters (gRPC,
//! HTTP protobuf, HTTP JSON). What the SDK handed its exporter is captured
//! beside it (a capturing exporter on the same provider, encoded with the
//! exporter's own OTLP transform) and must come back from the trace API
//! field for field.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Array, Context, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

use crate::harness::TestServer;
use crate::otlp_compare::{assert_same_spans, trace_ids};

#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

pub fn exporter(transport: Transport, server: &TestServer) -> opentelemetry_otlp::SpanExporter {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let result = match transport {
        Transport::Grpc => builder
            .with_tonic()
            .with_endpoint(server.grpc_endpoint())
            .with_compression(Compression::Gzip)
            .with_timeout(Duration::from_secs(10))
            .build(),
        Transport::HttpProtobuf => builder
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(server.otlp_http_url())
            .with_compression(Compression::Gzip)
            .build(),
        Transport::HttpJson => {
            builder.with_http().with_protocol(Protocol::HttpJson).with_endpoint(server.otlp_http_url()).build()
        }
    };
    result.expect("build the OTLP exporter")
}

/// Keeps what the SDK hands its exporters. (The SDK's own in-memory exporter
/// needs its `testing` feature, which would change the features of
/// opentelemetry-proto between the binary's build and the tests'.)
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Capture {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// Emits a small checkout trace with attributes of every value type the
/// Rust API has, events, links (one to another trace), errors and every
/// span kind; returns what the SDK exported, as OTLP.
pub fn emit_trace(transport: Transport, server: &TestServer) -> Vec<ResourceSpans> {
    let capture = Capture::default();
    let resource = Resource::builder()
        .with_service_name(format!("rust-sdk-{transport:?}"))
        .with_attributes([
            KeyValue::new("service.version", "1.0.0"),
            KeyValue::new("deployment.environment.name", "e2e"),
            KeyValue::new("resource.int", 7),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_simple_exporter(capture.clone())
        .with_batch_exporter(exporter(transport, server))
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("spanlake-e2e")
            .with_version("1.2.3")
            .with_attributes([KeyValue::new("scope.flag", true)])
            .build(),
    );

    let mut root = tracer
        .span_builder("POST /checkout")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/checkout"),
            KeyValue::new("http.response.status_code", 200),
            KeyValue::new("attr.string", "text with \"quotes\" and ünïcode"),
            KeyValue::new("attr.int", -42),
            KeyValue::new("attr.double", 3.25),
            KeyValue::new("attr.bool", false),
            KeyValue::new(
                "attr.strings",
                Value::Array(Array::String(vec![StringValue::from("a"), StringValue::from("b")])),
            ),
            KeyValue::new("attr.ints", Value::Array(Array::I64(vec![1, 2, 3]))),
            KeyValue::new("attr.doubles", Value::Array(Array::F64(vec![0.5, 1.0]))),
            KeyValue::new("attr.bools", Value::Array(Array::Bool(vec![true, false]))),
        ])
        .start(&tracer);
    root.add_event("cart loaded", vec![KeyValue::new("items", 3), KeyValue::new("currency", "EUR")]);
    let root_cx = Context::current().with_span(root);

    let mut db = tracer
        .span_builder("INSERT orders")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("db.system", "postgresql"),
            KeyValue::new("db.query.text", "INSERT INTO orders VALUES ($1)"),
            KeyValue::new("peer.service", "orders-db"),
        ])
        .start_with_context(&tracer, &root_cx);
    db.add_event(
        "exception",
        vec![KeyValue::new("exception.type", "Timeout"), KeyValue::new("exception.message", "deadline exceeded")],
    );
    db.set_status(Status::error("deadline exceeded"));
    let db_context = db.span_context().clone();
    db.end();

    let foreign = SpanContext::new(
        opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "value")]).unwrap(),
    );
    let mut retry = tracer
        .span_builder("retry order")
        .with_kind(SpanKind::Internal)
        .with_links(vec![
            Link::new(db_context, vec![KeyValue::new("link.reason", "retry of")], 0),
            Link::new(foreign, vec![KeyValue::new("link.int", 9)], 0),
        ])
        .start_with_context(&tracer, &root_cx);
    retry.set_status(Status::Ok);
    let retry_parent = Context::current().with_remote_span_context(retry.span_context().clone());
    retry.end();

    let mut publish = tracer
        .span_builder("publish orders")
        .with_kind(SpanKind::Producer)
        .with_attributes([
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", "orders"),
        ])
        .start_with_context(&tracer, &retry_parent);
    publish.end();
    let mut consume = tracer
        .span_builder("process orders")
        .with_kind(SpanKind::Consumer)
        .with_attributes([KeyValue::new("messaging.system", "kafka")])
        .start_with_context(&tracer, &Context::current().with_remote_span_context(publish.span_context().clone()));
    consume.end();

    root_cx.span().end();
    provider.force_flush().expect("flush the exporters");
    provider.shutdown().expect("shut the provider down");
    let spans = std::mem::take(&mut *capture.0.lock().unwrap());
    group_spans_by_resource_and_scope(spans, &ResourceAttributesWithSchema::from(&resource))
}

async fn round_trip(transport: Transport) {
    let server = TestServer::start().await;
    let expected = {
        let server_ref = &server;
        // The SDK's batch processor blocks while it flushes: keep it off the async workers.
        tokio::task::block_in_place(|| emit_trace(transport, server_ref))
    };
    let ids = trace_ids(&expected);
    assert_eq!(ids.len(), 1, "one trace");
    let id = &ids[0];
    let (status, trace) = server.trace(id).await;
    assert_eq!(status, 200, "trace {id} via {transport:?}:\n{}", server.log());
    assert_same_spans(&expected, &trace.expect("a trace").resource_spans);
    let per_kind = server
        .sql(&format!(
            "SELECT span_kind, count(*) AS n FROM spans WHERE service_name = 'rust-sdk-{transport:?}' GROUP BY span_kind ORDER BY span_kind"
        ))
        .await;
    let kinds: Vec<(String, i64)> = per_kind["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("CLIENT", 1), ("CONSUMER", 1), ("INTERNAL", 1), ("PRODUCER", 1), ("SERVER", 1)]
            .map(|(k, n)| (k.to_owned(), n))
    );
    assert_eq!(server.span_count().await, 5);
    let in_trace = server.sql_scalar(&format!("SELECT count(*) FROM spans WHERE trace_id = '{id}'")).await;
    assert_eq!(in_trace.as_i64(), Some(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_over_grpc_round_trips() {
    round_trip(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_over_http_protobuf_round_trips() {
    round_trip(Transport::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_sdk_over_http_json_round_trips() {
    round_trip(Transport::HttpJson).await;
}

/// The trace API's answer posts back to `/v1/traces` unchanged, and a
/// second server then answers with the same trace.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetched_trace_posts_back_unchanged() {
    let first = TestServer::start().await;
    let expected = tokio::task::block_in_place(|| emit_trace(Transport::Grpc, &first));
    let id = &trace_ids(&expected)[0];
    let fetched = reqwest::get(first.api_url(&format!("/api/v1/traces/{id}"))).await.unwrap().bytes().await.unwrap();

    let second = TestServer::start().await;
    let posted = reqwest::Client::new()
        .post(second.otlp_http_url())
        .header("content-type", "application/json")
        .body(fetched.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let again = reqwest::get(second.api_url(&format!("/api/v1/traces/{id}"))).await.unwrap().bytes().await.unwrap();
    let first_trace: ExportTraceServiceRequest = serde_json::from_slice(&fetched).unwrap();
    let second_trace: ExportTraceServiceRequest = serde_json::from_slice(&again).unwrap();
    assert_same_spans(&first_trace.resource_spans, &second_trace.resource_spans);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&fetched).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&again).unwrap()
    );
}
