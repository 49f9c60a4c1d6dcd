//! Hand-made traces for the query tests, sent through the real OTLP/HTTP
//! receiver: each span spelled out, times relative to a base instant.

use serde_json::{Value, json};
use spanlake_client::OtlpFormat;

use crate::harness::TestServer;

pub const SERVER: i32 = 2;
pub const CLIENT: i32 = 3;
pub const PRODUCER: i32 = 4;
pub const CONSUMER: i32 = 5;
pub const INTERNAL: i32 = 1;

/// A 128-bit trace id: zeros, then `n` in the last two bytes.
pub fn trace_id(n: u16) -> String {
    format!("{}{:02x}{:02x}", "00".repeat(14), n >> 8, n & 0xff)
}

pub fn span_id(n: u64) -> String {
    format!("{n:016x}")
}

#[derive(Debug, Clone)]
pub struct Span {
    pub trace: u16,
    pub id: u64,
    pub parent: Option<u64>,
    pub service: &'static str,
    pub name: &'static str,
    pub kind: i32,
    /// Milliseconds after the base instant.
    pub start_ms: i64,
    pub duration_ms: i64,
    pub error: bool,
    /// Keys and OTLP/JSON values.
    pub attributes: Vec<(&'static str, Value)>,
    pub resource: Vec<(&'static str, &'static str)>,
}

impl Span {
    pub fn new(trace: u16, id: u64, service: &'static str, name: &'static str, kind: i32) -> Self {
        Self {
            trace,
            id,
            parent: None,
            service,
            name,
            kind,
            start_ms: 0,
            duration_ms: 1,
            error: false,
            attributes: vec![],
            resource: vec![],
        }
    }

    pub fn child_of(mut self, parent: u64) -> Self {
        self.parent = Some(parent);
        self
    }

    pub fn at(mut self, start_ms: i64, duration_ms: i64) -> Self {
        (self.start_ms, self.duration_ms) = (start_ms, duration_ms);
        self
    }

    pub fn error(mut self) -> Self {
        self.error = true;
        self
    }

    pub fn attr(mut self, key: &'static str, value: &str) -> Self {
        self.attributes.push((key, json!({"stringValue": value})));
        self
    }

    pub fn attr_int(mut self, key: &'static str, value: i64) -> Self {
        self.attributes.push((key, json!({"intValue": value.to_string()})));
        self
    }

    pub fn resource(mut self, key: &'static str, value: &'static str) -> Self {
        self.resource.push((key, value));
        self
    }

    fn otlp(&self, base_ms: i64) -> Value {
        let start = (base_ms + self.start_ms) as i128 * 1_000_000;
        let end = start + self.duration_ms as i128 * 1_000_000;
        let attributes: Vec<Value> = self.attributes.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let mut span = json!({
            "traceId": trace_id(self.trace), "spanId": span_id(self.id), "name": self.name, "kind": self.kind,
            "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
            "attributes": attributes,
        });
        if let Some(parent) = self.parent {
            span["parentSpanId"] = json!(span_id(parent));
        }
        if self.error {
            span["status"] = json!({"code": 2, "message": "failed"});
        }
        span
    }
}

/// `spans` as one OTLP/JSON export request, a resource per span.
pub fn request(base_ms: i64, spans: &[Span]) -> Vec<u8> {
    let resource_spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut attributes = vec![json!({"key": "service.name", "value": {"stringValue": s.service}})];
            attributes.extend(s.resource.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})));
            json!({"resource": {"attributes": attributes}, "scopeSpans": [{"spans": [s.otlp(base_ms)]}]})
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceSpans": resource_spans })).unwrap()
}

/// Sends `spans` in one OTLP/HTTP JSON export, a resource per span.
pub async fn send(server: &TestServer, base_ms: i64, spans: &[Span]) {
    send_request(server, request(base_ms, spans)).await;
}

/// Sends OTLP/JSON `resourceSpans` in one export; it must be accepted.
pub async fn send_resource_spans(server: &TestServer, resource_spans: Vec<Value>) {
    send_request(server, serde_json::to_vec(&json!({ "resourceSpans": resource_spans })).unwrap()).await;
}

/// Sends an OTLP/JSON request through the driver client; every span must
/// be accepted.
async fn send_request(server: &TestServer, body: Vec<u8>) {
    let client = server.client().build().unwrap();
    let response = client.export(OtlpFormat::Json, body.into()).await.expect("the export is acknowledged");
    assert_eq!(response.partial_success, None, "every span is accepted");
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `GET` on the HTTP API: status and JSON body.
pub async fn get(server: &TestServer, path_and_query: &str) -> (u16, Value) {
    let response = reqwest::get(server.api_url(path_and_query)).await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// `GET` that must answer 200.
pub async fn get_ok(server: &TestServer, path_and_query: &str) -> Value {
    let (status, body) = get(server, path_and_query).await;
    assert_eq!(status, 200, "GET {path_and_query}: {body}\n{}", server.log());
    body
}
