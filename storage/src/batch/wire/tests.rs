//! The wire reader against prost + [`SpanBatchBuilder::append`], the
//! reference: same batch and summary for every request the reader reads,
//! and every request prost refuses left to prost.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::batch::differential::{Outcome, compare, corrupt, fuzz_seeds, limits, random_request, wal_seed_bodies};
use crate::batch::{IngestLimits, SpanBatchBuilder};
use crate::export::ExportBody;

fn differential(bytes: &[u8], limits: &IngestLimits) -> Outcome {
    let mut builder = SpanBatchBuilder::new(limits.clone());
    let read = builder.append_protobuf(bytes).ok();
    compare(bytes, builder, read, ExportTraceServiceRequest::decode(bytes), limits)
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

/// Every request kept under `fuzz/seeds/otlp_protobuf` (where crash inputs
/// are kept too) and the WAL seeds' protobuf records, of both segment
/// versions.
#[test]
fn the_fuzz_inputs_read_as_prost_reads_them() {
    for bytes in fuzz_seeds("otlp_protobuf") {
        for limits in limits() {
            differential(&bytes, &limits);
        }
    }
    let bodies = [wal_seed_bodies("two-records.bin", 1), wal_seed_bodies("json-and-protobuf.bin", 2)].concat();
    let protobuf: Vec<_> = bodies.iter().filter(|body| matches!(body, ExportBody::Protobuf(_))).collect();
    assert!(protobuf.len() >= 3, "both WAL seeds hold protobuf records: {}", protobuf.len());
    for body in protobuf {
        assert_eq!(differential(body.bytes(), &IngestLimits::default()), Outcome::Read);
    }
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
