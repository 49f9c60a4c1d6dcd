use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::schema;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn every_value_type() -> Vec<KeyValue> {
    vec![
        kv("str", s("v")),
        kv("int", Value::IntValue(-42)),
        kv("double", Value::DoubleValue(2.5)),
        kv("bool", Value::BoolValue(true)),
        kv("bytes", Value::BytesValue(vec![1, 2, 3])),
        kv("array", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s("a")) }] })),
        kv("kvlist", Value::KvlistValue(KeyValueList { values: vec![kv("inner", Value::IntValue(1))] })),
        KeyValue { key: "empty".into(), value: None, ..Default::default() },
    ]
}

fn span(id: u8, parent: Option<u8>) -> Span {
    let mut attributes = every_value_type();
    attributes.extend([
        kv("http.request.method", s("GET")),
        kv("http.response.status_code", Value::IntValue(200)),
        // Wrong type for its dedicated column: stays in the map.
        kv("http.route", Value::IntValue(7)),
        kv("peer.service", s("db")),
    ]);
    Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        trace_state: "k=v".into(),
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        flags: 0x301,
        name: format!("op-{id}"),
        kind: 3,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id),
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes,
        dropped_attributes_count: 1,
        events: vec![Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: every_value_type(),
            dropped_attributes_count: 2,
        }],
        dropped_events_count: 3,
        links: vec![Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "a=b".into(),
            attributes: vec![kv("link.kind", s("follows"))],
            dropped_attributes_count: 4,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Some(Status { message: "boom".into(), code: 2 }),
    }
}

pub(super) fn request() -> Vec<ResourceSpans> {
    let resource = |service: &str| Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.2.3")),
            kv("host.name", s("h1")),
            kv("custom", Value::IntValue(3)),
        ],
        dropped_attributes_count: 6,
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "lib".into(),
        version: "0.1".into(),
        attributes: vec![kv("scope.attr", Value::BoolValue(false))],
        dropped_attributes_count: 7,
    };
    vec![
        ResourceSpans {
            resource: Some(resource("frontend")),
            scope_spans: vec![
                ScopeSpans {
                    scope: Some(scope.clone()),
                    spans: vec![span(1, None), span(2, Some(1))],
                    schema_url: "s1".into(),
                },
                ScopeSpans { scope: None, spans: vec![span(3, Some(2))], schema_url: String::new() },
            ],
            schema_url: "r1".into(),
        },
        ResourceSpans {
            // No service.name at all: must not gain one.
            resource: Some(Resource { attributes: vec![kv("other", s("x"))], ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: vec![span(4, Some(1))],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        },
    ]
}

/// Attribute order is not kept (promoted ones come first), and an absent
/// scope or attribute value reads back as an empty one, which OTLP treats
/// the same.
fn normalize(mut rs: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
    let sort = |attrs: &mut Vec<KeyValue>| {
        attrs.sort_by(|a, b| a.key.cmp(&b.key));
        attrs.iter_mut().for_each(|kv| {
            kv.value.get_or_insert_with(AnyValue::default);
        });
    };
    for r in &mut rs {
        if let Some(res) = &mut r.resource {
            sort(&mut res.attributes);
        }
        for ss in &mut r.scope_spans {
            let scope = ss.scope.get_or_insert_with(Default::default);
            sort(&mut scope.attributes);
            for span in &mut ss.spans {
                sort(&mut span.attributes);
                span.events.iter_mut().for_each(|e| sort(&mut e.attributes));
                span.links.iter_mut().for_each(|l| sort(&mut l.attributes));
            }
        }
    }
    rs
}

#[test]
fn every_otlp_field_survives_a_round_trip() {
    let input = request();
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    let summary = builder.append(&input);
    assert_eq!(summary, AppendSummary { accepted: 4, ..Default::default() });
    let batch = builder.finish().unwrap();
    assert_eq!(batch.num_rows(), 4);

    let output = spans_to_otlp(&[batch]).unwrap();
    assert_eq!(normalize(output), normalize(input));
}

#[test]
fn hot_attributes_get_their_own_columns() {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    builder.append(&request());
    let batch = builder.finish().unwrap();
    let text = arrow::util::pretty::pretty_format_columns(
        "v",
        &[
            batch.column_by_name(schema::SERVICE_NAME).unwrap().clone(),
            batch.column_by_name("http_status_code").unwrap().clone(),
            batch.column_by_name(schema::REMOTE_SERVICE_NAME).unwrap().clone(),
        ],
    )
    .unwrap()
    .to_string();
    assert!(text.contains("frontend") && text.contains("200") && text.contains("db"), "{text}");
    let route = batch.column_by_name("http_route").unwrap();
    assert_eq!(route.null_count(), 4, "an int route stays in the map");
}

#[test]
fn invalid_spans_are_rejected_and_valid_ones_of_the_same_request_kept() {
    let mut bad_trace = span(5, None);
    bad_trace.trace_id = vec![1; 8];
    let mut bad_parent = span(6, None);
    bad_parent.parent_span_id = vec![1; 3];
    let mut zero_span = span(7, None);
    zero_span.span_id = vec![0; 8];
    let mut request = request();
    request[0].scope_spans[0].spans.extend([bad_trace, bad_parent, zero_span]);

    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    let summary = builder.append(&request);
    assert_eq!((summary.accepted, summary.rejected), (4, 3));
    assert!(summary.first_error.unwrap().contains("trace_id must be 16 bytes"));
    assert_eq!(builder.finish().unwrap().num_rows(), 4);
}

#[test]
fn oversized_values_are_cut_and_counted() {
    let mut long = span(1, None);
    long.attributes = vec![
        kv("big", s(&"x".repeat(100))),
        kv("big.array", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(s(&"y".repeat(100))) }] })),
    ];
    let rs = vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: vec![long], ..Default::default() }],
        ..Default::default()
    }];
    let mut builder = SpanBatchBuilder::new(IngestLimits { max_attribute_value_bytes: 10 });
    let summary = builder.append(&rs);
    assert_eq!(summary.accepted, 1);
    assert!(summary.truncated_values >= 2, "{summary:?}");
    let back = spans_to_otlp(&[builder.finish().unwrap()]).unwrap();
    let attrs = &back[0].scope_spans[0].spans[0].attributes;
    assert_eq!(attrs[0].value.as_ref().unwrap().value, Some(s("xxxxxxxxxx")));
    assert!(matches!(attrs[1].value.as_ref().unwrap().value, Some(Value::StringValue(ref t)) if t.len() == 10));
}

#[test]
fn repeated_keys_keep_the_first_value_and_count_the_rest_as_dropped() {
    let mut repeated = span(1, None);
    repeated.attributes = vec![
        kv("k", Value::DoubleValue(1.5)),
        kv("k", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::BoolValue(false)) }] })),
        kv("http.route", s("/a")),
        kv("http.route", s("/b")),
    ];
    repeated.dropped_attributes_count = 1;
    let rs = vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: vec![repeated], ..Default::default() }],
        ..Default::default()
    }];
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    assert_eq!(builder.append(&rs).accepted, 1);
    let back = spans_to_otlp(&[builder.finish().unwrap()]).unwrap();
    let span = &back[0].scope_spans[0].spans[0];
    let mut attributes: Vec<_> =
        span.attributes.iter().map(|kv| (kv.key.as_str(), kv.value.clone().unwrap().value)).collect();
    attributes.sort_by_key(|a| a.0);
    assert_eq!(attributes, [("http.route", Some(s("/a"))), ("k", Some(Value::DoubleValue(1.5)))]);
    assert_eq!(span.dropped_attributes_count, 3);
}

/// One client span per generation of the semantic conventions, and one
/// that sends both (as Java agents do while migrating).
pub(super) fn generations() -> Vec<ResourceSpans> {
    let client = |id: u8, attributes: Vec<KeyValue>| Span {
        trace_id: vec![5; 16],
        span_id: vec![id; 8],
        name: "GET".into(),
        kind: 3,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes,
        status: Some(Status::default()),
        ..Default::default()
    };
    let older = vec![
        kv("http.method", s("GET")),
        kv("http.status_code", Value::IntValue(503)),
        kv("http.url", s("http://user@inventory.internal:8080/items?x=1")),
        kv("net.peer.name", s("inventory")),
    ];
    let current = vec![
        kv("http.request.method", s("POST")),
        kv("http.response.status_code", Value::IntValue(201)),
        kv("url.full", s("https://[::1]:8443/orders")),
    ];
    let both = vec![
        kv("http.method", s("PUT")),
        kv("http.request.method", s("PUT")),
        kv("http.status_code", Value::IntValue(204)),
        kv("http.response.status_code", Value::IntValue(204)),
    ];
    vec![ResourceSpans {
        resource: Some(Resource { attributes: vec![kv("service.name", s("shop"))], ..Default::default() }),
        scope_spans: vec![ScopeSpans {
            spans: vec![client(1, older), client(2, current), client(3, both)],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

#[test]
fn either_generation_of_names_fills_the_columns_and_comes_back_as_sent() {
    let input = generations();
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    builder.append(&input);
    let batch = builder.finish().unwrap();
    let text = |name: &str| {
        let column =
            arrow::compute::cast(batch.column_by_name(name).unwrap(), &arrow::datatypes::DataType::Utf8).unwrap();
        let strings = arrow::array::AsArray::as_string::<i32>(&column);
        use arrow::array::Array;
        (0..3).map(|i| (!strings.is_null(i)).then(|| strings.value(i).to_owned())).collect::<Vec<_>>()
    };
    let some = |v: [&str; 3]| v.map(|s| Some(s.to_owned())).to_vec();
    assert_eq!(text("http_method"), some(["GET", "POST", "PUT"]));
    assert_eq!(text("http_status_code"), some(["503", "201", "204"]));
    assert_eq!(
        text("url_full")[..2],
        some(["http://user@inventory.internal:8080/items?x=1", "https://[::1]:8443/orders", ""])[..2]
    );
    assert_eq!(text("url_full")[2], None);
    // The remote service from the older peer name, else the URL's host.
    assert_eq!(text(schema::REMOTE_SERVICE_NAME), vec![Some("inventory".into()), Some("::1".into()), None]);
    assert_eq!(normalize(spans_to_otlp(&[batch]).unwrap()), normalize(input), "each span keeps its own names");
}
