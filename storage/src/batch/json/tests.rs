//! The JSON reader against serde_json + [`SpanBatchBuilder::append`], the
//! reference: same batch and summary for every request the reader reads,
//! and every request serde_json refuses left to serde_json.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value as Json, json};

use crate::batch::differential::{Outcome, compare, corrupt, fuzz_seeds, limits, random_request, wal_seed_bodies};
use crate::batch::{IngestLimits, SpanBatchBuilder};
use crate::export::ExportBody;

fn differential(bytes: &[u8], limits: &IngestLimits) -> Outcome {
    let mut builder = SpanBatchBuilder::new(limits.clone());
    let read = builder.append_json(bytes).ok();
    compare(bytes, builder, read, serde_json::from_slice::<ExportTraceServiceRequest>(bytes), limits)
}

/// The request as opentelemetry-proto's serializer writes it.
fn encode(resource_spans: Vec<ResourceSpans>) -> Json {
    serde_json::to_value(ExportTraceServiceRequest { resource_spans }).expect("serializes")
}

/// The same request as other exporters may write it: keys in another order
/// (schema URLs and scopes after their spans), 64-bit integers as numbers,
/// ids in upper case, unknown keys, whitespace, non-ASCII text escaped.
fn rewrite(rng: &mut StdRng, json: &Json) -> Vec<u8> {
    let mut json = json.clone();
    rewrite_value(rng, &mut json);
    let text = if rng.random_bool(0.5) { serde_json::to_string_pretty(&json) } else { serde_json::to_string(&json) };
    let text = text.expect("serializes");
    if rng.random_bool(0.5) { escape_non_ascii(&text) } else { text }.into_bytes()
}

fn rewrite_value(rng: &mut StdRng, json: &mut Json) {
    match json {
        Json::Object(map) => {
            if rng.random_bool(0.5) {
                let entries: Vec<_> = std::mem::take(map).into_iter().rev().collect();
                map.extend(entries);
            }
            for (key, value) in map.iter_mut() {
                match (key.as_str(), &*value) {
                    ("startTimeUnixNano" | "endTimeUnixNano" | "timeUnixNano", Json::String(s)) if rng.random() => {
                        *value = json!(s.parse::<u64>().expect("a u64"));
                    }
                    ("intValue", Json::String(s)) if rng.random() => *value = json!(s.parse::<i64>().expect("an i64")),
                    ("traceId" | "spanId" | "parentSpanId", Json::String(s)) if rng.random_bool(0.3) => {
                        *value = json!(s.to_uppercase());
                    }
                    _ => rewrite_value(rng, value),
                }
            }
            if rng.random_bool(0.1) {
                map.insert("unknownField".into(), json!({"a": [1, -2.5e3, "x\"y", null, true, {}], "b": {}}));
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|item| rewrite_value(rng, item)),
        _ => {}
    }
}

/// Writes every non-ASCII character as `\uXXXX` (surrogate pairs past the
/// basic plane), as ASCII-only JSON writers do.
fn escape_non_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[test]
fn the_suites_requests_read_as_serde_reads_them() {
    let mut rng = StdRng::seed_from_u64(21);
    for request in [crate::batch::tests::request(), crate::batch::tests::generations()] {
        let json = encode(request);
        for limits in limits() {
            assert_eq!(differential(&serde_json::to_vec(&json).unwrap(), &limits), Outcome::Read);
            for _ in 0..8 {
                assert_eq!(differential(&rewrite(&mut rng, &json), &limits), Outcome::Read);
            }
        }
    }
}

/// Every request kept under `fuzz/seeds/otlp_json` (where crash inputs are
/// kept too) and the JSON records of the WAL seed.
#[test]
fn the_fuzz_inputs_read_as_serde_reads_them() {
    for bytes in fuzz_seeds("otlp_json") {
        for limits in limits() {
            differential(&bytes, &limits);
        }
    }
    let bodies = wal_seed_bodies("json-and-protobuf.bin", 2);
    let json: Vec<_> = bodies.iter().filter(|body| matches!(body, ExportBody::Json(_))).collect();
    assert!(!json.is_empty(), "the WAL seed holds a JSON record");
    for body in json {
        assert_eq!(differential(body.bytes(), &IngestLimits::default()), Outcome::Read);
    }
}

/// What exporters may write is read; what the reference refuses or reads in
/// its own way is left to it.
#[test]
fn unusual_json_is_read_or_left_to_serde() {
    let span = r#""traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"op","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000""#;
    let request = |span_fields: &str| {
        format!(r#"{{"resourceSpans":[{{"resource":{{}},"scopeSpans":[{{"spans":[{{{span}{span_fields}}}]}}]}}]}}"#)
    };
    let attribute = |value: &str| request(&format!(r#","attributes":[{{"key":"k","value":{value}}}]"#));
    let cases: Vec<(&str, String, Outcome)> = vec![
        ("as written", request(""), Outcome::Read),
        ("escapes", request(r#","traceState":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude42""#), Outcome::Read),
        ("ids with a 0x prefix", request(r#","parentSpanId":"0xeee19b7ec3c1b174""#), Outcome::Read),
        ("an id of odd length", request(r#","parentSpanId":"abc""#), Outcome::Refused),
        ("unknown keys", request(r#","x":{"y":[1,2,{"z":null}]},"w":-0.5e-3"#), Outcome::Read),
        ("status and flags", request(r#","status":{"code":2,"message":"m"},"flags":257"#), Outcome::Read),
        ("the last AnyValue field wins", attribute(r#"{"stringValue":"s","intValue":5}"#), Outcome::Read),
        ("an empty AnyValue", attribute("{}"), Outcome::Read),
        ("a double from an integer", attribute(r#"{"doubleValue":3}"#), Outcome::Read),
        ("a double of many digits", attribute(r#"{"doubleValue":0.30000000000000004441}"#), Outcome::Read),
        ("bytes", attribute(r#"{"bytesValue":"AQID"}"#), Outcome::Read),
        ("bytes not base64", attribute(r#"{"bytesValue":"***"}"#), Outcome::Refused),
        ("a key given twice", request(r#","name":"again""#), Outcome::Refused),
        ("an AnyValue field given twice", attribute(r#"{"intValue":1,"intValue":2}"#), Outcome::LeftDecodable),
        ("null for an absent message", request(r#","status":null"#), Outcome::Read),
        ("null for an absent value", attribute("null"), Outcome::Read),
        ("null for an absent AnyValue field", attribute(r#"{"intValue":5,"stringValue":null}"#), Outcome::Read),
        ("null for a string", request(r#","traceState":null"#), Outcome::Refused),
        ("-0 as a count", request(r#","droppedAttributesCount":-0"#), Outcome::Refused),
        ("-0 as a double", attribute(r#"{"doubleValue":-0}"#), Outcome::Read),
        ("a count past u32", request(r#","droppedAttributesCount":4294967296"#), Outcome::Refused),
        ("an int past i64", attribute(r#"{"intValue":9223372036854775808}"#), Outcome::Refused),
        ("a float as an int", attribute(r#"{"intValue":1.0}"#), Outcome::Refused),
        ("a time as a float", request(r#","droppedLinksCount":1e3"#), Outcome::Refused),
        ("a lone surrogate", request(r#","traceState":"\ud83d""#), Outcome::Refused),
        ("a raw control character", request(",\"traceState\":\"a\tb\""), Outcome::Refused),
        ("a trailing comma", request(","), Outcome::Refused),
        ("a kind as a string", request(r#","kind":"SPAN_KIND_SERVER""#), Outcome::Refused),
        (
            "a key-value without its key",
            attribute(r#"{"stringValue":"s"}"#).replace(r#""key":"k","#, ""),
            Outcome::Refused,
        ),
        (
            "no entity references",
            request("").replace(r#""resource":{}"#, r#""resource":{"entityRefs":[]}"#),
            Outcome::Read,
        ),
        (
            "entity references",
            request("").replace(
                r#""resource":{}"#,
                r#""resource":{"entityRefs":[{"schemaUrl":"","type":"t","idKeys":[],"descriptionKeys":[]}]}"#,
            ),
            Outcome::LeftDecodable,
        ),
        ("text after the request", request("") + " x", Outcome::Refused),
        ("a request as an array", r#"[[]]"#.to_owned(), Outcome::LeftDecodable),
    ];
    for (what, json, expected) in cases {
        assert_eq!(differential(json.as_bytes(), &IngestLimits::default()), expected, "{what}: {json}");
    }
}

#[test]
fn deeply_nested_values_are_left_to_serde() {
    let mut value = r#"{"stringValue":"leaf"}"#.to_owned();
    for _ in 0..30 {
        value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
    }
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","attributes":[{{"key":"deep","value":{value}}}]}}]}}]}}]}}"#
    );
    assert_eq!(differential(json.as_bytes(), &IngestLimits::default()), Outcome::LeftDecodable);
}

/// Random requests (valid, invalid spans among them) as written and
/// rewritten, then cut, flipped and spliced.
#[test]
fn random_requests_and_their_corruptions_read_as_serde_reads_them() {
    let mut rng = StdRng::seed_from_u64(22);
    let mut outcomes = [0usize; 3];
    for _ in 0..400 {
        let json = encode(random_request(&mut rng));
        let limits = &limits()[rng.random_range(0..2)];
        assert_eq!(differential(&serde_json::to_vec(&json).unwrap(), limits), Outcome::Read);
        let bytes = rewrite(&mut rng, &json);
        assert_eq!(differential(&bytes, limits), Outcome::Read);
        for _ in 0..8 {
            let outcome = differential(&corrupt(&mut rng, &bytes), limits);
            outcomes[outcome as usize] += 1;
        }
    }
    // Many corruptions still decode (and were compared), many do not.
    let [read, _, refused] = outcomes;
    assert!(read > 200 && refused > 200, "{outcomes:?}");
}
