//! The Python OpenTelemetry SDK exports through its real gRPC and HTTP OTLP
//! exporters; spanlake must return what the exporter's own encoder made of
//! the spans, field for field.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::harness::{TestServer, python};
use crate::otlp_compare::{assert_same_spans, trace_ids};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/export_spans.py");

async fn round_trip(transport: &'static str) {
    let Some(python) = python() else { return };
    let server = TestServer::start().await;
    let endpoint = match transport {
        "grpc" => server.grpc_endpoint(),
        _ => server.otlp_http_url(),
    };
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).args([SCRIPT, transport, &endpoint]).output())
            .await
            .unwrap()
            .expect("run the Python exporter");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Python exporter failed:\n{stderr}");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from the script");
    let bytes = BASE64.decode(printed["request"].as_str().unwrap()).unwrap();
    let expected = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    assert!(!stderr.contains("Failed to export"), "the Python exporter could not export:\n{stderr}");

    let ids = trace_ids(&expected.resource_spans);
    assert_eq!(ids.len(), 1);
    let (status, trace) = server.trace(&ids[0]).await;
    assert_eq!(status, 200, "{}", server.log());
    assert_same_spans(&expected.resource_spans, &trace.unwrap().resource_spans);

    let errors = server
        .sql_scalar(&format!(
            "SELECT count(*) FROM spans WHERE service_name = 'python-{transport}' AND status_code = 'ERROR'"
        ))
        .await;
    assert_eq!(errors.as_i64(), Some(1));
    assert_eq!(server.span_count().await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_grpc_round_trips() {
    round_trip("grpc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_http_round_trips() {
    round_trip("http").await;
}
