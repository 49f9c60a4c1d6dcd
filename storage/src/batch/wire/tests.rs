//! The wire reader against prost + [`SpanBatchBuilder::append`], the
//! reference: same batch and summary for every request the reader reads,
//! and every request prost refuses left to prost.

use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::LeftToProst;
use crate::batch::{IngestLimits, SpanBatchBuilder};

/// How the wire reader did on one input, checked against the reference.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Read,
    /// Left to prost, which decodes it.
    LeftDecodable,
    /// Left to prost, which refuses it too.
    Refused,
}

fn differential(bytes: &[u8], limits: &IngestLimits) -> Outcome {
    let reference = ExportTraceServiceRequest::decode(bytes).map(|request| {
        let mut builder = SpanBatchBuilder::new(limits.clone());
        let summary = builder.append(&request.resource_spans);
        (builder.finish().expect("a valid batch"), summary)
    });
    let mut builder = SpanBatchBuilder::new(limits.clone());
    match (builder.append_protobuf(bytes), reference) {
        (Ok(summary), Ok(reference)) => {
            let batch = builder.finish().expect("a valid batch");
            assert_eq!(summary, reference.1, "summaries differ");
            assert_eq!(batch, reference.0, "batches differ");
            Outcome::Read
        }
        (Ok(_), Err(e)) => panic!("the wire reader read what prost refuses ({e}): {bytes:?}"),
        (Err(LeftToProst), Ok(_)) => Outcome::LeftDecodable,
        (Err(LeftToProst), Err(_)) => Outcome::Refused,
    }
}

fn limits() -> [IngestLimits; 2] {
    [IngestLimits::default(), IngestLimits { max_attribute_value_bytes: 12 }]
}

fn encode(resource_spans: Vec<ResourceSpans>) -> Vec<u8> {
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

#[test]
fn the_suites_requests_read_as_prost_reads_them() {
    for request in [crate::batch::tests::request(), crate::batch::tests::generations()] {
        for limits in limits() {
            assert_eq!(differential(&encode(request.clone()), &limits), Outcome::Read);
        }
    }
}

/// Every request kept under `fuzz/seeds` (where crash inputs are kept too)
/// and the WAL seed's records.
#[test]
fn the_fuzz_inputs_read_as_prost_reads_them() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut requests = 0;
    for entry in std::fs::read_dir(fuzz.join("seeds/otlp_protobuf")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for limits in limits() {
            differential(&bytes, &limits);
        }
        requests += 1;
    }
    // The WAL target's inputs are a segment after its header.
    let mut segment = b"SPLKWAL\0\x01\0\0\0\0\0\0\0".to_vec();
    segment.extend(std::fs::read(fuzz.join("seeds/wal_replay/two-records.bin")).unwrap());
    for record in crate::wal::read_segment(&segment).unwrap().records {
        assert_eq!(differential(&record.body, &IngestLimits::default()), Outcome::Read);
        requests += 1;
    }
    assert!(requests >= 4, "the fuzz inputs are where this test looks: {requests}");
}

/// What exporters do not send is left to prost; what they may send (fields
/// in any order, repeated scalars, unknown fields) is read.
#[test]
fn unusual_encodings_are_read_or_left_to_prost() {
    let span = &crate::batch::tests::request()[0].scope_spans[0].spans[0];
    let span_bytes = span.encode_to_vec();
    let wrap = |span: Vec<u8>| {
        let mut scope = Vec::new();
        prost::encoding::bytes::encode(2, &span, &mut scope);
        let mut resource = Vec::new();
        prost::encoding::bytes::encode(2, &scope, &mut resource);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &resource, &mut request);
        request
    };
    let with = |extra: &[u8]| {
        let mut bytes = span_bytes.clone();
        bytes.extend_from_slice(extra);
        wrap(bytes)
    };
    let status = Status { message: "later".into(), code: 1 }.encode_to_vec();
    let mut second_status = vec![15 << 3 | 2, status.len() as u8];
    second_status.extend(&status);
    let cases: [(&str, Vec<u8>, Outcome); 10] = [
        ("as encoded", wrap(span_bytes.clone()), Outcome::Read),
        ("a later name wins", with(&[5 << 3 | 2, 3, b'n', b'e', b'w']), Outcome::Read),
        // Fields 20 (varint), 21 (fixed32) and 22 (bytes), two-byte keys.
        ("unknown fields", with(&[0xa0, 0x01, 1, 0xad, 0x01, 0, 0, 0, 0, 0xb2, 0x01, 0]), Outcome::Read),
        ("a second status is merged by prost", with(&second_status), Outcome::LeftDecodable),
        ("an unknown group", with(&[0xbb, 0x01, 0xbc, 0x01]), Outcome::LeftDecodable),
        ("a name that is not UTF-8", with(&[5 << 3 | 2, 1, 0xff]), Outcome::Refused),
        ("field number 0", with(&[0, 1]), Outcome::Refused),
        ("a truncated field", with(&[5 << 3 | 2, 9, b'x']), Outcome::Refused),
        (
            "an eleven-byte varint",
            with(&[6 << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]),
            Outcome::Refused,
        ),
        ("kind as a fixed64", with(&[6 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0]), Outcome::Refused),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(differential(&bytes, &IngestLimits::default()), expected, "{what}");
    }
}

#[test]
fn deeply_nested_values_are_left_to_prost() {
    let mut value = Value::StringValue("leaf".into());
    for _ in 0..super::MAX_NESTING {
        value = Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(value) }] });
    }
    let mut span = crate::batch::tests::request()[0].scope_spans[0].spans[0].clone();
    span.attributes.push(KeyValue {
        key: "deep".into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    });
    let request = encode(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
        ..Default::default()
    }]);
    assert_eq!(differential(&request, &IngestLimits::default()), Outcome::LeftDecodable);
}

/// Random requests (valid, invalid spans among them), then the same bytes
/// cut, flipped and spliced.
#[test]
fn random_requests_and_their_corruptions_read_as_prost_reads_them() {
    let mut rng = StdRng::seed_from_u64(20);
    let mut outcomes = [0usize; 3];
    for _ in 0..400 {
        let bytes = encode(random_request(&mut rng));
        let limits = &limits()[rng.random_range(0..2)];
        assert_eq!(differential(&bytes, limits), Outcome::Read);
        for _ in 0..8 {
            let corrupted = corrupt(&mut rng, &bytes);
            let outcome = differential(&corrupted, limits);
            outcomes[outcome as usize] += 1;
        }
    }
    // Many corruptions still decode (and were compared), many do not.
    let [read, _, refused] = outcomes;
    assert!(read > 200 && refused > 200, "{outcomes:?}");
}

fn corrupt(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return vec![rng.random()];
    }
    let at = rng.random_range(0..out.len());
    match rng.random_range(0..4) {
        0 => out.truncate(at),
        1 => out[at] ^= 1 << rng.random_range(0..8),
        2 => out[at] = rng.random(),
        _ => {
            let from = rng.random_range(0..bytes.len());
            let len = rng.random_range(0..16.min(bytes.len() - from) + 1);
            out.splice(at..at, bytes[from..from + len].iter().copied());
        }
    }
    out
}

fn random_request(rng: &mut StdRng) -> Vec<ResourceSpans> {
    (0..rng.random_range(0..3))
        .map(|_| ResourceSpans {
            resource: rng.random_bool(0.8).then(|| Resource {
                attributes: random_attributes(rng, 6),
                dropped_attributes_count: rng.random_range(0..3),
                ..Default::default()
            }),
            scope_spans: (0..rng.random_range(0..3))
                .map(|_| ScopeSpans {
                    scope: rng.random_bool(0.7).then(|| InstrumentationScope {
                        name: random_text(rng),
                        version: random_text(rng),
                        attributes: random_attributes(rng, 2),
                        dropped_attributes_count: rng.random_range(0..2),
                    }),
                    spans: (0..rng.random_range(0..6)).map(|_| random_span(rng)).collect(),
                    schema_url: random_text(rng),
                })
                .collect(),
            schema_url: random_text(rng),
        })
        .collect()
}

fn random_span(rng: &mut StdRng) -> Span {
    // Mostly valid ids; sometimes the wrong length or all zeros.
    let (trace_id, span_id) = (random_id(rng, 16), random_id(rng, 8));
    let parent_span_id = if rng.random_bool(0.3) { Vec::new() } else { random_id(rng, 8) };
    let start = rng.random_range(1_600_000_000_000_000_000..1_800_000_000_000_000_000u64);
    let events = (0..rng.random_range(0..3))
        .map(|_| Event {
            time_unix_nano: start + rng.random_range(0..1_000_000),
            name: random_text(rng),
            attributes: random_attributes(rng, 3),
            dropped_attributes_count: rng.random_range(0..2),
        })
        .collect();
    let links = (0..rng.random_range(0..2))
        .map(|_| Link {
            trace_id: (0..16).map(|_| rng.random()).collect(),
            span_id: (0..if rng.random_bool(0.9) { 8 } else { 4 }).map(|_| rng.random()).collect(),
            trace_state: random_text(rng),
            attributes: random_attributes(rng, 2),
            dropped_attributes_count: rng.random_range(0..2),
            flags: rng.random(),
        })
        .collect();
    Span {
        trace_id,
        span_id,
        trace_state: random_text(rng),
        parent_span_id,
        flags: rng.random(),
        name: random_text(rng),
        kind: rng.random_range(-1..8),
        start_time_unix_nano: if rng.random_bool(0.02) { u64::MAX } else { start },
        end_time_unix_nano: start + rng.random_range(0..10_000_000_000),
        attributes: random_attributes(rng, 12),
        dropped_attributes_count: rng.random_range(0..3),
        events,
        dropped_events_count: rng.random_range(0..2),
        links,
        dropped_links_count: rng.random_range(0..2),
        status: rng.random_bool(0.6).then(|| Status { message: random_text(rng), code: rng.random_range(-1..4) }),
    }
}

fn random_id(rng: &mut StdRng, len: usize) -> Vec<u8> {
    match rng.random_range(0..20) {
        0 => vec![0; len],
        1 => vec![1; len - 1],
        _ => (0..len).map(|_| rng.random()).collect(),
    }
}

/// Keys from a small set (so that repeats, dedicated columns and older
/// names come up), values of every type.
fn random_attributes(rng: &mut StdRng, max: usize) -> Vec<KeyValue> {
    random_attributes_nested(rng, max, 2)
}

fn random_attributes_nested(rng: &mut StdRng, max: usize, depth: u32) -> Vec<KeyValue> {
    const KEYS: [&str; 12] = [
        "service.name",
        "service.version",
        "http.route",
        "http.method",
        "http.request.method",
        "http.response.status_code",
        "peer.service",
        "url.full",
        "db.system",
        "k",
        "ключ",
        "a.much.longer.attribute.key.than.the.limit",
    ];
    (0..rng.random_range(0..=max))
        .map(|_| KeyValue {
            key: KEYS[rng.random_range(0..KEYS.len())].to_owned(),
            value: rng.random_bool(0.95).then(|| AnyValue { value: random_value(rng, depth) }),
            key_strindex: 0,
        })
        .collect()
}

fn random_value(rng: &mut StdRng, depth: u32) -> Option<Value> {
    Some(match rng.random_range(0..if depth == 0 { 7 } else { 9 }) {
        0 => return None,
        1 | 2 => Value::StringValue(random_text(rng)),
        3 => Value::IntValue(rng.random_range(-1000..1000)),
        4 => Value::DoubleValue(rng.random_range(-1e6..1e6)),
        5 => Value::BoolValue(rng.random()),
        6 => Value::BytesValue((0..rng.random_range(0..20)).map(|_| rng.random()).collect()),
        7 => Value::ArrayValue(ArrayValue {
            values: (0..rng.random_range(0..3)).map(|_| AnyValue { value: random_value(rng, depth - 1) }).collect(),
        }),
        _ => Value::KvlistValue(KeyValueList { values: random_attributes_nested(rng, 2, depth - 1) }),
    })
}

fn random_text(rng: &mut StdRng) -> String {
    const PARTS: [&str; 6] = ["", "GET /items", "checkout", "é", "🙂", "a longer piece of text"];
    (0..rng.random_range(0..3)).map(|_| PARTS[rng.random_range(0..PARTS.len())]).collect()
}
