//! Shared by the readers' differential tests (the protobuf wire reader,
//! the JSON reader): the comparison with the reference, random requests of
//! every shape, and their corruptions.

use std::fmt::Display;
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::Rng;
use rand::rngs::StdRng;

use crate::batch::{AppendSummary, IngestLimits, SpanBatchBuilder};
use crate::export::ExportBody;

/// How a reader did on one input, checked against the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Read,
    /// Left to the reference, which decodes it.
    LeftDecodable,
    /// Left to the reference, which refuses it too.
    Refused,
}

/// A reader's result (`read`, `None` when it left the bytes to the
/// reference, `builder` holding what it built) against the reference's
/// decoding of the same bytes, built by [`SpanBatchBuilder::append`].
pub(super) fn compare<E: Display>(
    bytes: &[u8],
    mut builder: SpanBatchBuilder,
    read: Option<AppendSummary>,
    reference: Result<ExportTraceServiceRequest, E>,
    limits: &IngestLimits,
) -> Outcome {
    let reference = reference.map(|request| {
        let mut builder = SpanBatchBuilder::new(limits.clone());
        let summary = builder.append(&request.resource_spans);
        (builder.finish().expect("a valid batch"), summary)
    });
    match (read, reference) {
        (Some(summary), Ok(reference)) => {
            let batch = builder.finish().expect("a valid batch");
            assert_eq!(summary, reference.1, "summaries differ: {}", String::from_utf8_lossy(bytes));
            assert_eq!(batch, reference.0, "batches differ: {}", String::from_utf8_lossy(bytes));
            Outcome::Read
        }
        (Some(_), Err(e)) => panic!("the reader read what the reference refuses ({e}): {bytes:?}"),
        (None, Ok(_)) => Outcome::LeftDecodable,
        (None, Err(_)) => Outcome::Refused,
    }
}

/// The inputs kept under `fuzz/seeds/<target>`, where crash inputs are kept
/// too.
pub(super) fn fuzz_seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let seeds: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|entry| std::fs::read(entry.unwrap().path()).unwrap()).collect();
    assert!(!seeds.is_empty(), "the fuzz inputs are where this test looks: {dir:?}");
    seeds
}

/// The bodies of the records of a `wal_replay` seed (records after a
/// segment header), read as a segment of format `version`.
pub(super) fn wal_seed_bodies(seed: &str, version: u8) -> Vec<ExportBody> {
    let mut segment = b"SPLKWAL\0\0\0\0\0\0\0\0\0".to_vec();
    segment[8] = version;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/wal_replay");
    segment.extend(std::fs::read(dir.join(seed)).unwrap());
    crate::wal::read_segment(&segment).unwrap().records.into_iter().map(|record| record.body).collect()
}

pub(super) fn limits() -> [IngestLimits; 2] {
    [IngestLimits::default(), IngestLimits { max_attribute_value_bytes: 12 }]
}

pub(super) fn corrupt(rng: &mut StdRng, bytes: &[u8]) -> Vec<u8> {
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

pub(super) fn random_request(rng: &mut StdRng) -> Vec<ResourceSpans> {
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
