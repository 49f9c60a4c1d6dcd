//! Jaeger's JSON model (its `uimodel`, what the Jaeger UI and Grafana's
//! Jaeger data source read), made from OTLP spans the way Jaeger's own
//! OTLP → Jaeger translator does it:
//!
//! - a resource becomes a process: `service.name` is its `serviceName`,
//!   the other resource attributes its tags; equal processes share an id
//!   (`p1`, `p2`, … in order of first use);
//! - the parent becomes a `CHILD_OF` reference, links `FOLLOWS_FROM` ones
//!   (`CHILD_OF` when the link says `opentracing.ref_type=child_of`);
//! - span tags are the attributes, then `otel.scope.name`/`version`,
//!   `span.kind` (lowercase, none when unspecified), `otel.status_code`
//!   (`OK`/`ERROR`, none when unset), `error=true` for errors,
//!   `otel.status_description`, `w3c.tracestate`;
//! - events become logs: an `event` field with the name, then the
//!   attributes;
//! - times and durations are microseconds; trace ids whose upper half is
//!   zero are 16 hex digits, as Jaeger prints them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span as OtlpSpan};
use serde::Serialize;
use serde_json::{Value, json};
use spanlake_storage::attributes;

/// Service name of a resource without `service.name`, as Jaeger's translator names it.
const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";
/// JavaScript's largest exact integer: bigger ints are sent as strings.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Trace {
    #[serde(rename = "traceID")]
    pub(super) trace_id: String,
    pub(super) spans: Vec<Span>,
    pub(super) processes: serde_json::Map<String, Value>,
    pub(super) warnings: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Span {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(skip_serializing_if = "is_zero")]
    flags: u32,
    operation_name: String,
    references: Vec<Reference>,
    start_time: u64,
    duration: u64,
    tags: Vec<Tag>,
    logs: Vec<Log>,
    #[serde(rename = "processID")]
    process_id: String,
    warnings: Option<Vec<String>>,
}

fn is_zero(flags: &u32) -> bool {
    *flags == 0
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: &'static str,
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Debug, Serialize, PartialEq)]
struct Tag {
    key: String,
    #[serde(rename = "type")]
    kind: &'static str,
    value: Value,
}

#[derive(Debug, Serialize)]
struct Log {
    timestamp: u64,
    fields: Vec<Tag>,
}

/// Jaeger's print of a trace id.
pub(super) fn trace_id_text(id: &[u8]) -> String {
    if id.len() == 16 && id[..8].iter().all(|b| *b == 0) { const_hex::encode(&id[8..]) } else { const_hex::encode(id) }
}

fn tag(key: &str, value: Option<&Any>) -> Tag {
    let (kind, value) = match value {
        Some(Any::StringValue(s)) => ("string", json!(s)),
        Some(Any::BoolValue(b)) => ("bool", json!(b)),
        Some(Any::IntValue(i)) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(i) => ("int64", json!(i)),
        Some(Any::IntValue(i)) => ("int64", json!(i.to_string())),
        Some(Any::DoubleValue(d)) => ("float64", json!(d)),
        Some(Any::BytesValue(b)) => ("binary", json!(BASE64.encode(b))),
        other => ("string", json!(attributes::encode(other).text)),
    };
    Tag { key: key.to_owned(), kind, value }
}

fn string_tag(key: &str, value: &str) -> Tag {
    Tag { key: key.to_owned(), kind: "string", value: json!(value) }
}

fn tags(attributes: &[KeyValue]) -> Vec<Tag> {
    attributes.iter().map(|kv| tag(&kv.key, kv.value.as_ref().and_then(|v| v.value.as_ref()))).collect()
}

fn micros(nanos: u64) -> u64 {
    nanos / 1000
}

/// One trace's spans in Jaeger's model.
pub(super) fn trace(trace_id: &[u8], resource_spans: &[ResourceSpans]) -> Trace {
    let mut processes: Vec<Value> = Vec::new();
    let mut spans = Vec::new();
    for rs in resource_spans {
        let resource = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let service = resource
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref().and_then(|v| v.value.as_ref()))
            .map(|v| attributes::encode(Some(v)).text.into_owned())
            .unwrap_or_else(|| NO_SERVICE_NAME.to_owned());
        let others: Vec<KeyValue> = resource.iter().filter(|kv| kv.key != "service.name").cloned().collect();
        let process = json!({ "serviceName": service, "tags": tags(&others) });
        let index = processes.iter().position(|p| *p == process).unwrap_or_else(|| {
            processes.push(process);
            processes.len() - 1
        });
        let process_id = format!("p{}", index + 1);
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map(|s| (s.name.as_str(), s.version.as_str())).unwrap_or_default();
            for span in &ss.spans {
                spans.push(span_of(span, scope, &process_id));
            }
        }
    }
    Trace {
        trace_id: trace_id_text(trace_id),
        spans,
        processes: processes.into_iter().enumerate().map(|(i, p)| (format!("p{}", i + 1), p)).collect(),
        warnings: None,
    }
}

fn span_of(span: &OtlpSpan, (scope_name, scope_version): (&str, &str), process_id: &str) -> Span {
    let mut references = Vec::new();
    if !span.parent_span_id.is_empty() {
        references.push(Reference {
            ref_type: "CHILD_OF",
            trace_id: trace_id_text(&span.trace_id),
            span_id: const_hex::encode(&span.parent_span_id),
        });
    }
    for link in &span.links {
        let child_of = link.attributes.iter().any(|kv| {
            kv.key == "opentracing.ref_type"
                && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(Any::StringValue(s)) if s == "child_of")
        });
        references.push(Reference {
            ref_type: if child_of { "CHILD_OF" } else { "FOLLOWS_FROM" },
            trace_id: trace_id_text(&link.trace_id),
            span_id: const_hex::encode(&link.span_id),
        });
    }
    let mut span_tags = tags(&span.attributes);
    if !scope_name.is_empty() {
        span_tags.push(string_tag("otel.scope.name", scope_name));
    }
    if !scope_version.is_empty() {
        span_tags.push(string_tag("otel.scope.version", scope_version));
    }
    let kind = match SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Unspecified => None,
        SpanKind::Internal => Some("internal"),
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
    };
    if let Some(kind) = kind {
        span_tags.push(string_tag("span.kind", kind));
    }
    if let Some(status) = &span.status {
        match StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset) {
            StatusCode::Ok => span_tags.push(string_tag("otel.status_code", "OK")),
            StatusCode::Error => {
                span_tags.push(string_tag("otel.status_code", "ERROR"));
                span_tags.push(Tag { key: "error".into(), kind: "bool", value: json!(true) });
            }
            StatusCode::Unset => {}
        }
        if !status.message.is_empty() {
            span_tags.push(string_tag("otel.status_description", &status.message));
        }
    }
    if !span.trace_state.is_empty() {
        span_tags.push(string_tag("w3c.tracestate", &span.trace_state));
    }
    let logs = span
        .events
        .iter()
        .map(|event| {
            let mut fields = Vec::with_capacity(event.attributes.len() + 1);
            if !event.name.is_empty() {
                fields.push(string_tag("event", &event.name));
            }
            fields.extend(tags(&event.attributes));
            Log { timestamp: micros(event.time_unix_nano), fields }
        })
        .collect();
    Span {
        trace_id: trace_id_text(&span.trace_id),
        span_id: const_hex::encode(&span.span_id),
        flags: span.flags & 0xff,
        operation_name: span.name.clone(),
        references,
        start_time: micros(span.start_time_unix_nano),
        duration: micros(span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano)),
        tags: span_tags,
        logs,
        process_id: process_id.to_owned(),
        warnings: None,
    }
}
