//! Zipkin v2 spans, and their mapping to and from the OTLP model the way
//! OpenTelemetry's Zipkin receiver and exporter map them:
//!
//! | Zipkin | OTLP |
//! |---|---|
//! | `localEndpoint.serviceName` | resource `service.name` |
//! | `kind` (absent) | span kind (INTERNAL) |
//! | `remoteEndpoint` | `peer.service`, `network.peer.address`, `network.peer.port` |
//! | `localEndpoint` address and port | `network.local.address`, `network.local.port` |
//! | tag `error` | status ERROR, its value the status message |
//! | other tags | string attributes |
//! | annotations | events |
//! | `shared`, `debug` | `zipkin.shared`, `zipkin.debug` (only when true) |
//! | 64-bit trace id | 128-bit, high half zero (and back to 16 hex digits) |
//!
//! Times are microseconds in Zipkin, nanoseconds in OTLP. A span reported in
//! parts (same trace, id, side, service and host) is stored as sent and
//! merged when read, as Zipkin does; parts from different hosts (a shared
//! SERVER span answered by two instances) stay apart.
//!
//! On the way in, what Zipkin normalizes is normalized as Zipkin does: ids
//! of any case, short ones left-padded with zeros (to 16 hex digits, or 32
//! for a trace id longer than 16); span and service names lower-cased; an
//! IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) as IPv4. Annotations in the
//! OpenTelemetry Collector's event form, `name|{json attributes}|dropped`,
//! become events with their attributes, and events with attributes go out
//! in that form. On the way out the remote endpoint follows the rule of
//! the `remote_service_name` column (`remote_service.rs`): `peer.service`,
//! else for outgoing calls the database, messaging or RPC system, the
//! server address or the URL's host; its address and port come from
//! `network.peer.*`, else `server.address`/`server.port`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::{Deserialize, Serialize};

use crate::attributes::ValueRef;
use crate::ids::{SpanId, TraceId};
use crate::remote_service::RemoteService;
use crate::schema::attr;

const PEER_ADDRESS: &str = "network.peer.address";
const PEER_PORT: &str = "network.peer.port";
const LOCAL_ADDRESS: &str = "network.local.address";
const LOCAL_PORT: &str = "network.local.port";
const SHARED: &str = "zipkin.shared";
const DEBUG: &str = "zipkin.debug";
const ERROR_TAG: &str = "error";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    pub trace_id: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Start, µs since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_micros")]
    pub timestamp: Option<u64>,
    /// µs.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_micros")]
    pub duration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "tags")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Endpoint {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Annotation {
    #[serde(deserialize_with = "micros")]
    pub timestamp: u64,
    pub value: String,
}

/// Microseconds, whole as Zipkin has them; the OpenTelemetry JS exporter
/// sends fractions (its nanosecond clock divided by 1000), rounded here.
fn micros<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    whole_micros(Deserialize::deserialize(deserializer)?)
}

fn some_micros<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(deserializer)?.map(whole_micros).transpose()
}

fn whole_micros<E: serde::de::Error>(value: serde_json::Number) -> Result<u64, E> {
    match (value.as_u64(), value.as_f64()) {
        (Some(whole), _) => Ok(whole),
        (None, Some(fraction)) if fraction >= 0.0 && fraction < u64::MAX as f64 => Ok(fraction.round() as u64),
        _ => Err(E::custom(format!("{value} is not a time in microseconds"))),
    }
}

/// Tag values are strings in Zipkin; reporters that send numbers or
/// booleans get them kept as text rather than the whole list refused.
fn tags<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: BTreeMap<String, serde_json::Value> = Deserialize::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

#[derive(Debug, thiserror::Error)]
#[error("span {index}: {message}")]
pub struct ZipkinError {
    pub index: usize,
    pub message: String,
}

fn key_value(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    key_value(key, Value::StringValue(value.into()))
}

fn int(key: &str, value: i64) -> KeyValue {
    key_value(key, Value::IntValue(value))
}

fn flag(key: &str) -> KeyValue {
    key_value(key, Value::BoolValue(true))
}

/// An address as Zipkin keeps it: IPv4-mapped IPv6 as IPv4.
fn normal_ip(ip: &str) -> String {
    match ip.parse::<Ipv6Addr>().ok().and_then(|v6| v6.to_ipv4_mapped()) {
        Some(v4) => v4.to_string(),
        None => ip.to_owned(),
    }
}

/// An id of up to `long` hex digits, lower-cased and left-padded with zeros
/// to `short` digits, or to `long` when it has more than `short`.
fn padded(text: &str, short: usize, long: usize) -> Option<String> {
    let len = text.len();
    if len == 0 || len > long || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let width = if len <= short { short } else { long };
    Some(format!("{:0>width$}", text.to_ascii_lowercase()))
}

/// A trace id as Zipkin reads it: up to 32 hex digits of any case, short
/// ones left-padded.
pub fn trace_id(text: &str) -> Result<TraceId, String> {
    padded(text, 16, 32)
        .and_then(|id| id.parse::<TraceId>().ok())
        .ok_or_else(|| format!("trace id must be up to 32 hex characters, got {text:?}"))
}

/// An annotation in the OpenTelemetry Collector's form of an event with
/// attributes, `name|{json}|dropped`: its name, attributes and dropped count.
fn event_form(value: &str) -> Option<(String, Vec<KeyValue>, u32)> {
    let (rest, dropped) = value.rsplit_once('|')?;
    let dropped = dropped.parse().ok()?;
    let split = rest.find("|{")?;
    let (name, json) = (&rest[..split], &rest[split + 1..]);
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    let attributes = map
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(s) => string(&key, s),
            serde_json::Value::Bool(b) => key_value(&key, Value::BoolValue(b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => int(&key, i),
                None => key_value(&key, Value::DoubleValue(n.as_f64().unwrap_or_default())),
            },
            other => string(&key, other.to_string()),
        })
        .collect();
    Some((name.to_owned(), attributes, dropped))
}

/// An event as a Zipkin annotation value: its name, or with attributes the
/// OpenTelemetry Collector's `name|{json}|dropped`.
fn annotation_value(event: &Event) -> String {
    if event.attributes.is_empty() {
        return event.name.clone();
    }
    let json: serde_json::Map<String, serde_json::Value> = event
        .attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => serde_json::Value::from(s.as_str()),
                Some(Value::BoolValue(b)) => serde_json::Value::from(*b),
                Some(Value::IntValue(i)) => serde_json::Value::from(*i),
                Some(Value::DoubleValue(d)) => serde_json::Value::from(*d),
                _ => serde_json::Value::from(kv.value.as_ref().map(text).unwrap_or_default()),
            };
            (kv.key.clone(), value)
        })
        .collect();
    format!("{}|{}|{}", event.name, serde_json::Value::Object(json), event.dropped_attributes_count)
}

fn endpoint_attributes(endpoint: &Endpoint, address: &str, port: &str, out: &mut Vec<KeyValue>) {
    if let Some(ip) = endpoint.ipv4.as_ref().or(endpoint.ipv6.as_ref()) {
        out.push(string(address, normal_ip(ip)));
    }
    if let Some(p) = endpoint.port {
        out.push(int(port, p.into()));
    }
}

fn to_otlp_span(index: usize, span: ZipkinSpan) -> Result<Span, ZipkinError> {
    let error = |message: String| ZipkinError { index, message };
    let span_id_of = |text: &str| {
        padded(text, 16, 16)
            .and_then(|id| id.parse::<SpanId>().ok())
            .ok_or_else(|| error(format!("span id must be up to 16 hex characters, got {text:?}")))
    };
    let trace_id = trace_id(&span.trace_id).map_err(error)?;
    let span_id = span_id_of(&span.id)?;
    let parent_span_id = match span.parent_id.as_deref() {
        None | Some("") => Vec::new(),
        Some(parent) => span_id_of(parent).map_err(|e| error(format!("parentId: {}", e.message)))?.0.to_vec(),
    };
    let micros = |us: u64| us.checked_mul(1000).ok_or_else(|| error(format!("time {us} µs is out of range")));
    // A part without a timestamp (annotations only) takes its first annotation's.
    let start = span.timestamp.or_else(|| span.annotations.iter().map(|a| a.timestamp).min()).unwrap_or(0);
    let start_time_unix_nano = micros(start)?;
    let end_time_unix_nano = start_time_unix_nano
        .checked_add(micros(span.duration.unwrap_or(0))?)
        .ok_or_else(|| error("duration is out of range".into()))?;

    let mut attributes = Vec::new();
    if let Some(remote) = &span.remote_endpoint {
        if let Some(service) = &remote.service_name {
            attributes.push(string(attr::PEER_SERVICE, service.to_lowercase()));
        }
        endpoint_attributes(remote, PEER_ADDRESS, PEER_PORT, &mut attributes);
    }
    if let Some(local) = &span.local_endpoint {
        endpoint_attributes(local, LOCAL_ADDRESS, LOCAL_PORT, &mut attributes);
    }
    let mut status = None;
    for (key, value) in span.tags {
        if key == ERROR_TAG {
            status = Some(Status { code: StatusCode::Error as i32, message: value });
        } else {
            attributes.push(string(&key, value));
        }
    }
    if span.shared == Some(true) {
        attributes.push(flag(SHARED));
    }
    if span.debug == Some(true) {
        attributes.push(flag(DEBUG));
    }
    let kind = match span.kind {
        None => SpanKind::Internal,
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
    };
    let events = span
        .annotations
        .into_iter()
        .map(|a| {
            let time_unix_nano = micros(a.timestamp)?;
            Ok(match event_form(&a.value) {
                Some((name, attributes, dropped_attributes_count)) => {
                    Event { time_unix_nano, name, attributes, dropped_attributes_count }
                }
                None => Event { time_unix_nano, name: a.value, ..Default::default() },
            })
        })
        .collect::<Result<_, ZipkinError>>()?;
    Ok(Span {
        trace_id: trace_id.0.to_vec(),
        span_id: span_id.0.to_vec(),
        parent_span_id,
        name: span.name.unwrap_or_default().to_lowercase(),
        kind: kind as i32,
        start_time_unix_nano,
        end_time_unix_nano,
        attributes,
        events,
        status,
        ..Default::default()
    })
}

/// Zipkin spans as OTLP, one resource per local service.
pub fn to_otlp(spans: Vec<ZipkinSpan>) -> Result<Vec<ResourceSpans>, ZipkinError> {
    let mut by_service: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for (index, span) in spans.into_iter().enumerate() {
        let service = span.local_endpoint.as_ref().and_then(|e| e.service_name.as_deref()).unwrap_or_default();
        let service = service.to_lowercase();
        by_service.entry(service).or_default().push(to_otlp_span(index, span)?);
    }
    Ok(by_service
        .into_iter()
        .map(|(service, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: if service.is_empty() { vec![] } else { vec![string(attr::SERVICE_NAME, service)] },
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        })
        .collect())
}

/// An attribute value as Zipkin tag text.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => const_hex::encode(b),
        Some(other) => serde_json::to_string(&AnyValue { value: Some(other.clone()) }).unwrap_or_default(),
        None => String::new(),
    }
}

fn hex_trace_id(id: &[u8]) -> String {
    // A 64-bit id comes back as Zipkin reporters sent it: 16 hex digits.
    if id.len() == 16 && id[..8].iter().all(|b| *b == 0) { const_hex::encode(&id[8..]) } else { const_hex::encode(id) }
}

fn address(endpoint: &mut Endpoint, ip: String) {
    let ip = normal_ip(&ip);
    if ip.contains(':') {
        endpoint.ipv6 = Some(ip);
    } else {
        endpoint.ipv4 = Some(ip);
    }
}

fn from_otlp_span(service: Option<&str>, resource_tags: &[KeyValue], scope: (&str, &str), span: &Span) -> ZipkinSpan {
    let mut local = Endpoint { service_name: service.map(str::to_owned), ..Default::default() };
    let mut remote = Endpoint::default();
    let mut tags = BTreeMap::new();
    let (mut shared, mut debug) = (None, None);
    let mut peer = RemoteService::default();
    let (mut server_address, mut server_port) = (None, None);
    for kv in resource_tags.iter().chain(&span.attributes) {
        let value = kv.value.as_ref().map(text).unwrap_or_default();
        peer.observe(&kv.key, ValueRef::from(kv.value.as_ref().and_then(|v| v.value.as_ref())).as_str());
        match kv.key.as_str() {
            "server.address" => server_address = Some(value.clone()),
            "server.port" => server_port = value.parse().ok(),
            _ => {}
        }
        match kv.key.as_str() {
            attr::PEER_SERVICE => remote.service_name = Some(value),
            PEER_ADDRESS => address(&mut remote, value),
            PEER_PORT => remote.port = value.parse().ok(),
            LOCAL_ADDRESS => address(&mut local, value),
            LOCAL_PORT => local.port = value.parse().ok(),
            SHARED => shared = Some(true),
            DEBUG => debug = Some(true),
            _ => {
                tags.insert(kv.key.clone(), value);
            }
        }
    }
    // The peer by the rule every other surface uses.
    if remote.service_name.is_none() {
        remote.service_name = peer.name(span.kind).map(str::to_owned);
    }
    let outgoing = matches!(SpanKind::try_from(span.kind), Ok(SpanKind::Client | SpanKind::Producer));
    if outgoing
        && remote.ipv4.is_none()
        && remote.ipv6.is_none()
        && let Some(ip) = server_address.filter(|a| a.parse::<IpAddr>().is_ok())
    {
        address(&mut remote, ip);
    }
    if outgoing && remote.port.is_none() {
        remote.port = server_port;
    }
    let (scope_name, scope_version) = scope;
    if !scope_name.is_empty() {
        tags.insert("otel.scope.name".into(), scope_name.to_owned());
    }
    if !scope_version.is_empty() {
        tags.insert("otel.scope.version".into(), scope_version.to_owned());
    }
    if let Some(status) = &span.status {
        if status.code == StatusCode::Error as i32 {
            tags.insert(ERROR_TAG.into(), status.message.clone());
        } else if status.code == StatusCode::Ok as i32 {
            tags.insert("otel.status_code".into(), "OK".into());
        }
    }
    let kind = match SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified) {
        SpanKind::Client => Some(Kind::Client),
        SpanKind::Server => Some(Kind::Server),
        SpanKind::Producer => Some(Kind::Producer),
        SpanKind::Consumer => Some(Kind::Consumer),
        SpanKind::Internal | SpanKind::Unspecified => None,
    };
    let timestamp = span.start_time_unix_nano / 1000;
    let duration = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) / 1000;
    ZipkinSpan {
        trace_id: hex_trace_id(&span.trace_id),
        id: const_hex::encode(&span.span_id),
        parent_id: (!span.parent_span_id.is_empty()).then(|| const_hex::encode(&span.parent_span_id)),
        name: (!span.name.is_empty()).then(|| span.name.clone()),
        kind,
        timestamp: (timestamp > 0).then_some(timestamp),
        duration: (duration > 0).then_some(duration),
        local_endpoint: (!local.is_empty()).then_some(local),
        remote_endpoint: (!remote.is_empty()).then_some(remote),
        annotations: span
            .events
            .iter()
            .map(|e| Annotation { timestamp: e.time_unix_nano / 1000, value: annotation_value(e) })
            .collect(),
        tags,
        debug,
        shared,
    }
}

/// OTLP spans as Zipkin spans, parts of one span merged, ordered by start.
pub fn from_otlp(resource_spans: &[ResourceSpans]) -> Vec<ZipkinSpan> {
    let mut spans = Vec::new();
    for rs in resource_spans {
        let resource = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        let service = resource.iter().find(|kv| kv.key == attr::SERVICE_NAME).and_then(|kv| kv.value.as_ref());
        let service = service.map(text);
        let others: Vec<KeyValue> = resource.iter().filter(|kv| kv.key != attr::SERVICE_NAME).cloned().collect();
        for ss in &rs.scope_spans {
            let scope = ss.scope.as_ref().map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            spans.extend(ss.spans.iter().map(|span| from_otlp_span(service.as_deref(), &others, scope, span)));
        }
    }
    merge(spans)
}

/// The host of a part: its local address, when it has one.
fn host(span: &ZipkinSpan) -> Option<(Option<String>, Option<String>)> {
    let local = span.local_endpoint.as_ref()?;
    (local.ipv4.is_some() || local.ipv6.is_some()).then(|| (local.ipv4.clone(), local.ipv6.clone()))
}

/// Zipkin's merge: parts with the same id, side (`shared`), local service
/// and host are one span. A part that names no host joins the first part
/// with the same id, side and service.
pub fn merge(spans: Vec<ZipkinSpan>) -> Vec<ZipkinSpan> {
    type Key = (String, String, bool, Option<String>);
    let mut groups: BTreeMap<Key, Vec<ZipkinSpan>> = BTreeMap::new();
    let mut hostless: Vec<(Key, ZipkinSpan)> = Vec::new();
    for span in spans {
        let service = span.local_endpoint.as_ref().and_then(|e| e.service_name.clone());
        let key = (span.trace_id.clone(), span.id.clone(), span.shared == Some(true), service);
        let Some(span_host) = host(&span) else {
            hostless.push((key, span));
            continue;
        };
        let group = groups.entry(key).or_default();
        match group.iter_mut().find(|s| host(s).as_ref() == Some(&span_host)) {
            Some(into) => merge_into(into, span),
            None => group.push(span),
        }
    }
    for (key, span) in hostless {
        let group = groups.entry(key).or_default();
        match group.first_mut() {
            Some(into) => merge_into(into, span),
            None => group.push(span),
        }
    }
    let mut spans: Vec<ZipkinSpan> = groups.into_values().flatten().collect();
    spans.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
    spans
}

fn merge_into(into: &mut ZipkinSpan, part: ZipkinSpan) {
    into.parent_id = into.parent_id.take().or(part.parent_id);
    into.name = into.name.take().or(part.name);
    into.kind = into.kind.or(part.kind);
    into.timestamp = match (into.timestamp, part.timestamp) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.duration = into.duration.max(part.duration);
    into.local_endpoint = into.local_endpoint.take().or(part.local_endpoint);
    into.remote_endpoint = into.remote_endpoint.take().or(part.remote_endpoint);
    into.annotations.extend(part.annotations);
    into.annotations.sort();
    into.annotations.dedup();
    for (k, v) in part.tags {
        into.tags.entry(k).or_insert(v);
    }
    into.debug = into.debug.or(part.debug);
    into.shared = into.shared.or(part.shared);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(json: &str) -> ZipkinSpan {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_zipkin_span_comes_back_unchanged() {
        let original = span(
            r#"{"traceId":"463ac35c9f6413ad","id":"72485a3953bb6124","parentId":"a2fb4a1d1a96d312",
                "name":"get /users","kind":"CLIENT","timestamp":1700000000123456,"duration":2500,
                "localEndpoint":{"serviceName":"frontend","ipv4":"10.0.0.1","port":8080},
                "remoteEndpoint":{"serviceName":"users","ipv6":"::1","port":9000},
                "annotations":[{"timestamp":1700000000123500,"value":"ws"}],
                "tags":{"http.path":"/users","error":"timeout"},"shared":true,"debug":true}"#,
        );
        let otlp = to_otlp(vec![original.clone()]).unwrap();
        let span = &otlp[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[..8], [0; 8], "64-bit ids are left-padded");
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(from_otlp(&otlp), vec![original]);
    }

    #[test]
    fn fractional_microseconds_are_rounded_and_negative_ones_refused() {
        let s = span(
            r#"{"traceId":"1","id":"2","timestamp":1700000000000000.6,"duration":1.4,
            "annotations":[{"timestamp":1700000000000001.5,"value":"x"}]}"#,
        );
        assert_eq!(
            (s.timestamp, s.duration, s.annotations[0].timestamp),
            (Some(1700000000000001), Some(1), 1700000000000002)
        );
        assert!(serde_json::from_str::<ZipkinSpan>(r#"{"traceId":"1","id":"2","duration":-3}"#).is_err());
        assert_eq!(span(r#"{"traceId":"1","id":"2","timestamp":null}"#).timestamp, None);
    }

    #[test]
    fn parts_of_a_span_merge_and_sides_stay_apart() {
        let main = span(
            r#"{"traceId":"0000000000000001","id":"0000000000000001","name":"a","kind":"SERVER",
                "timestamp":10,"duration":5,"localEndpoint":{"serviceName":"s"}}"#,
        );
        let part = ZipkinSpan {
            name: None,
            kind: None,
            timestamp: None,
            duration: None,
            annotations: vec![Annotation { timestamp: 12, value: "flush".into() }],
            ..main.clone()
        };
        let client = ZipkinSpan { kind: Some(Kind::Client), shared: None, local_endpoint: None, ..main.clone() };
        let server = ZipkinSpan { shared: Some(true), ..main.clone() };
        let merged = merge(vec![main.clone(), part, client.clone(), server.clone()]);
        assert_eq!(merged.len(), 3, "{merged:#?}");
        let whole = merged.iter().find(|s| s.shared.is_none() && s.local_endpoint.is_some()).unwrap();
        assert_eq!(whole.annotations.len(), 1);
        assert_eq!((whole.timestamp, whole.duration, whole.name.as_deref()), (Some(10), Some(5), Some("a")));
    }

    #[test]
    fn bad_ids_name_the_span() {
        let error =
            to_otlp(vec![span(r#"{"traceId":"1","id":"1"}"#), span(r#"{"traceId":"xyz","id":"1"}"#)]).unwrap_err();
        assert_eq!(error.index, 1);
        assert!(error.to_string().contains("trace id"), "{error}");
        let long = "1".repeat(33);
        assert!(to_otlp(vec![span(&format!(r#"{{"traceId":"{long}","id":"1"}}"#))]).is_err());
        assert!(to_otlp(vec![ZipkinSpan::default()]).is_err(), "an empty id");
    }

    #[test]
    fn what_zipkin_normalizes_is_normalized() {
        let sent = span(
            r#"{"traceId":"ABC","id":"1F","parentId":"2","name":"GET /Users","kind":"CLIENT","timestamp":10,
                "localEndpoint":{"serviceName":"FrontEnd","ipv6":"::ffff:10.0.0.7"},
                "remoteEndpoint":{"serviceName":"Users"}}"#,
        );
        let back = from_otlp(&to_otlp(vec![sent]).unwrap());
        let span = &back[0];
        assert_eq!((span.trace_id.as_str(), span.id.as_str()), ("0000000000000abc", "000000000000001f"));
        assert_eq!(span.parent_id.as_deref(), Some("0000000000000002"));
        assert_eq!(span.name.as_deref(), Some("get /users"));
        let local = span.local_endpoint.as_ref().unwrap();
        assert_eq!(
            (local.service_name.as_deref(), local.ipv4.as_deref(), local.ipv6.as_deref()),
            (Some("frontend"), Some("10.0.0.7"), None)
        );
        assert_eq!(span.remote_endpoint.as_ref().unwrap().service_name.as_deref(), Some("users"));
        let long = from_otlp(&to_otlp(vec![self::span(r#"{"traceId":"1234567890abcdef1","id":"1"}"#)]).unwrap());
        assert_eq!(long[0].trace_id, "00000000000000001234567890abcdef1"[1..]);
    }

    #[test]
    fn events_with_attributes_travel_as_the_collector_writes_them() {
        let value = r#"exception|{"exception.type":"IOError","exception.message":"disk full","retries":2}|1"#;
        let sent = span(&format!(
            r#"{{"traceId":"1","id":"1","timestamp":10,"annotations":[{{"timestamp":11,"value":"plain"}},{{"timestamp":12,"value":{}}}]}}"#,
            serde_json::to_string(value).unwrap()
        ));
        let otlp = to_otlp(vec![sent.clone()]).unwrap();
        let events = &otlp[0].scope_spans[0].spans[0].events;
        assert_eq!(
            (events[1].name.as_str(), events[1].attributes.len(), events[1].dropped_attributes_count),
            ("exception", 3, 1)
        );
        assert_eq!(events[1].attributes[2], int("retries", 2));
        assert_eq!(from_otlp(&otlp)[0].annotations, sent.annotations);
    }

    #[test]
    fn parts_from_two_hosts_are_two_spans() {
        let at = |ip: Option<&str>, timestamp: u64| {
            let local = match ip {
                Some(ip) => format!(r#"{{"serviceName":"s","ipv4":"{ip}"}}"#),
                None => r#"{"serviceName":"s"}"#.to_owned(),
            };
            span(&format!(
                r#"{{"traceId":"1","id":"1","kind":"SERVER","shared":true,"timestamp":{timestamp},"localEndpoint":{local}}}"#
            ))
        };
        let merged =
            merge(vec![at(Some("10.0.0.1"), 10), at(Some("10.0.0.2"), 20), at(None, 5), at(Some("10.0.0.1"), 8)]);
        assert_eq!(merged.len(), 2, "{merged:#?}");
        let hosts: Vec<Option<&str>> =
            merged.iter().map(|s| s.local_endpoint.as_ref().unwrap().ipv4.as_deref()).collect();
        assert_eq!(hosts, [Some("10.0.0.1"), Some("10.0.0.2")]);
        assert_eq!(merged[0].timestamp, Some(5), "the part without a host joined the first");
    }

    #[test]
    fn the_remote_endpoint_follows_the_remote_service_rule() {
        let client = Span {
            trace_id: vec![1; 16],
            span_id: vec![1; 8],
            kind: SpanKind::Client as i32,
            attributes: vec![
                string("db.system", "postgresql"),
                string("server.address", "10.1.2.3"),
                int("server.port", 5432),
            ],
            ..Default::default()
        };
        let rs = ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![client], ..Default::default() }],
            ..Default::default()
        };
        let remote = from_otlp(&[rs])[0].remote_endpoint.clone().unwrap();
        let expected = Endpoint {
            service_name: Some("postgresql".into()),
            ipv4: Some("10.1.2.3".into()),
            ipv6: None,
            port: Some(5432),
        };
        assert_eq!(remote, expected);
    }
}
