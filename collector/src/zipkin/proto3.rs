//! Zipkin's proto3 encoding (`zipkin.proto`, `ListOfSpans`), as Brave and
//! py_zipkin send it with `Content-Type: application/x-protobuf`, read
//! into the same model as JSON v2. The messages are declared here with
//! prost's derive: the schema is small and stable, and no protoc runs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use spanlake_storage::zipkin::{Annotation, Endpoint, Kind, ZipkinSpan};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub(crate) spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    id: Vec<u8>,
    /// 0 unspecified, then CLIENT, SERVER, PRODUCER, CONSUMER.
    #[prost(int32, tag = "4")]
    kind: i32,
    #[prost(string, tag = "5")]
    name: String,
    /// µs since the epoch.
    #[prost(fixed64, tag = "6")]
    timestamp: u64,
    /// µs.
    #[prost(uint64, tag = "7")]
    duration: u64,
    #[prost(message, optional, tag = "8")]
    local_endpoint: Option<ProtoEndpoint>,
    #[prost(message, optional, tag = "9")]
    remote_endpoint: Option<ProtoEndpoint>,
    #[prost(message, repeated, tag = "10")]
    annotations: Vec<ProtoAnnotation>,
    #[prost(btree_map = "string, string", tag = "11")]
    tags: BTreeMap<String, String>,
    #[prost(bool, tag = "12")]
    debug: bool,
    #[prost(bool, tag = "13")]
    shared: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoEndpoint {
    #[prost(string, tag = "1")]
    service_name: String,
    #[prost(bytes = "vec", tag = "2")]
    ipv4: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    port: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoAnnotation {
    #[prost(fixed64, tag = "1")]
    timestamp: u64,
    #[prost(string, tag = "2")]
    value: String,
}

/// The spans as the JSON model has them: ids in hex, proto3's zero
/// values (absent fields) as `None`. Id lengths are checked by the
/// mapping to OTLP, as for JSON.
pub(crate) fn to_model(list: ListOfSpans) -> Vec<ZipkinSpan> {
    list.spans.into_iter().map(span).collect()
}

fn span(s: Span) -> ZipkinSpan {
    let some = |v: u64| (v != 0).then_some(v);
    ZipkinSpan {
        trace_id: const_hex::encode(&s.trace_id),
        id: const_hex::encode(&s.id),
        parent_id: (!s.parent_id.is_empty()).then(|| const_hex::encode(&s.parent_id)),
        name: (!s.name.is_empty()).then_some(s.name),
        kind: match s.kind {
            1 => Some(Kind::Client),
            2 => Some(Kind::Server),
            3 => Some(Kind::Producer),
            4 => Some(Kind::Consumer),
            _ => None,
        },
        timestamp: some(s.timestamp),
        duration: some(s.duration),
        local_endpoint: s.local_endpoint.map(endpoint),
        remote_endpoint: s.remote_endpoint.map(endpoint),
        annotations: s.annotations.into_iter().map(|a| Annotation { timestamp: a.timestamp, value: a.value }).collect(),
        tags: s.tags,
        debug: s.debug.then_some(true),
        shared: s.shared.then_some(true),
    }
}

fn endpoint(e: ProtoEndpoint) -> Endpoint {
    Endpoint {
        service_name: (!e.service_name.is_empty()).then_some(e.service_name),
        ipv4: <[u8; 4]>::try_from(e.ipv4.as_slice()).ok().map(|ip| Ipv4Addr::from(ip).to_string()),
        ipv6: <[u8; 16]>::try_from(e.ipv6.as_slice()).ok().map(|ip| Ipv6Addr::from(ip).to_string()),
        port: u16::try_from(e.port).ok().filter(|p| *p != 0),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn proto3_spans_read_as_their_json_twins() {
        let proto = ListOfSpans {
            spans: vec![Span {
                trace_id: vec![0xab; 8],
                id: vec![1, 2, 3, 4, 5, 6, 7, 8],
                kind: 2,
                name: "get /users".into(),
                timestamp: 1_700_000_000_000_000,
                duration: 1500,
                local_endpoint: Some(ProtoEndpoint {
                    service_name: "api".into(),
                    ipv4: vec![10, 0, 0, 1],
                    port: 8080,
                    ..Default::default()
                }),
                annotations: vec![ProtoAnnotation { timestamp: 1_700_000_000_000_100, value: "ws".into() }],
                tags: BTreeMap::from([("http.method".into(), "GET".into())]),
                shared: true,
                ..Default::default()
            }],
        };
        let decoded = ListOfSpans::decode(proto.encode_to_vec().as_slice()).unwrap();
        let json: Vec<ZipkinSpan> = serde_json::from_value(serde_json::json!([{
            "traceId": "abababababababab", "id": "0102030405060708", "kind": "SERVER", "name": "get /users",
            "timestamp": 1_700_000_000_000_000_u64, "duration": 1500,
            "localEndpoint": {"serviceName": "api", "ipv4": "10.0.0.1", "port": 8080},
            "annotations": [{"timestamp": 1_700_000_000_000_100_u64, "value": "ws"}],
            "tags": {"http.method": "GET"}, "shared": true
        }]))
        .unwrap();
        assert_eq!(to_model(decoded), json);
    }
}
