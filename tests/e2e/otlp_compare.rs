//! Compares OTLP content the way OTLP defines it: span by span, ignoring
//! the order of spans and attributes and the difference between an absent
//! and an empty value, status or scope.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};

/// One span with everything it inherits from its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSpan {
    pub resource: Resource,
    pub resource_schema_url: String,
    pub scope: InstrumentationScope,
    pub scope_schema_url: String,
    pub span: Span,
}

fn normalize_attributes(attributes: &mut [KeyValue]) {
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    for kv in attributes.iter_mut() {
        kv.value.get_or_insert_with(AnyValue::default);
    }
}

/// Flattens and normalizes; sorted by span id.
pub fn flatten(resource_spans: &[ResourceSpans]) -> Vec<FlatSpan> {
    let mut out = Vec::new();
    for rs in resource_spans {
        let mut resource = rs.resource.clone().unwrap_or_default();
        normalize_attributes(&mut resource.attributes);
        for ss in &rs.scope_spans {
            let mut scope = ss.scope.clone().unwrap_or_default();
            normalize_attributes(&mut scope.attributes);
            for span in &ss.spans {
                let mut span = span.clone();
                normalize_attributes(&mut span.attributes);
                span.events.iter_mut().for_each(|e| normalize_attributes(&mut e.attributes));
                span.links.iter_mut().for_each(|l| normalize_attributes(&mut l.attributes));
                span.status.get_or_insert_with(Default::default);
                out.push(FlatSpan {
                    resource: resource.clone(),
                    resource_schema_url: rs.schema_url.clone(),
                    scope: scope.clone(),
                    scope_schema_url: ss.schema_url.clone(),
                    span,
                });
            }
        }
    }
    out.sort_by(|a, b| a.span.span_id.cmp(&b.span.span_id));
    out
}

/// Asserts that `actual` holds exactly the spans of `expected`, field for field.
pub fn assert_same_spans(expected: &[ResourceSpans], actual: &[ResourceSpans]) {
    let expected = flatten(expected);
    let actual = flatten(actual);
    assert_eq!(expected.len(), actual.len(), "span count differs");
    for (e, a) in expected.iter().zip(&actual) {
        assert_eq!(e, a, "span {} differs", const_hex::encode(&e.span.span_id));
    }
}

/// Trace ids (hex) of the spans, without repeats.
pub fn trace_ids(resource_spans: &[ResourceSpans]) -> Vec<String> {
    let mut ids: Vec<String> = flatten(resource_spans).iter().map(|s| const_hex::encode(&s.span.trace_id)).collect();
    ids.sort();
    ids.dedup();
    ids
}
