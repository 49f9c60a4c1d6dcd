//! `spanlake load --verify`: after the run, a sample of the acknowledged
//! requests is read back through the driver client, trace by trace, and
//! every span of them compared with what was sent.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;
use serde_json::Value;
use spanlake_client::{Client, TraceId};

use super::requests::Templates;

/// Requests read back: enough to cover every template shape of a default
/// run's first rounds, few enough to take a second.
pub(crate) const SAMPLED_SENDS: usize = 10;
/// Problems named in the report; the counts cover all.
const NAMED_PROBLEMS: usize = 5;
/// Ids per `/api/v1/traces` call.
const TRACES_PER_CALL: usize = 100;

/// What the read-back found.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Verification {
    pub(crate) spans_checked: u64,
    pub(crate) spans_missing: u64,
    pub(crate) spans_different: u64,
    /// The first few, as `trace/span: what`.
    pub(crate) problems: Vec<String>,
}

impl Verification {
    pub(crate) fn ok(&self) -> bool {
        self.spans_missing == 0 && self.spans_different == 0
    }

    fn problem(&mut self, key: &SpanKey, what: String) {
        if self.problems.len() < NAMED_PROBLEMS {
            self.problems.push(format!("{}/{}: {what}", key.0, const_hex::encode(key.1)));
        }
    }
}

/// Evenly spread over the acknowledged sends, first and last included.
pub(crate) fn sample(mut acknowledged: Vec<u64>) -> Vec<u64> {
    acknowledged.sort_unstable();
    if acknowledged.len() <= SAMPLED_SENDS {
        return acknowledged;
    }
    let step = (acknowledged.len() - 1) as f64 / (SAMPLED_SENDS - 1) as f64;
    (0..SAMPLED_SENDS).map(|i| acknowledged[(i as f64 * step).round() as usize]).collect()
}

type SpanKey = (TraceId, [u8; 8]);

/// Compares the spans of sends `sends` (as [`Templates::request`] made
/// them) with what the server answers for their traces.
pub(crate) async fn verify(client: &Client, templates: &Templates, sends: &[u64]) -> anyhow::Result<Verification> {
    let mut sent = BTreeMap::new();
    for &send in sends {
        let request = ExportTraceServiceRequest::decode(templates.request(send).1.as_slice())?;
        collect(&request.resource_spans, &mut sent)?;
    }
    let traces: BTreeSet<TraceId> = sent.keys().map(|(trace, _)| *trace).collect();
    let mut stored = BTreeMap::new();
    for ids in traces.into_iter().collect::<Vec<_>>().chunks(TRACES_PER_CALL) {
        for trace in client.traces(ids).await?.traces {
            collect(&trace.resource_spans, &mut stored)?;
        }
    }
    let mut verification = Verification::default();
    for (key, span) in &sent {
        verification.spans_checked += 1;
        match stored.get(key) {
            None => {
                verification.spans_missing += 1;
                verification.problem(key, "missing".into());
            }
            Some(found) if found != span => {
                verification.spans_different += 1;
                verification.problem(key, format!("sent {span}, stored {found}"));
            }
            Some(_) => {}
        }
    }
    Ok(verification)
}

/// Each span with its resource and scope, in OTLP/JSON with attributes in
/// key order: what the server must keep of it, whatever order it answers in.
fn collect(resource_spans: &[ResourceSpans], into: &mut BTreeMap<SpanKey, Value>) -> anyhow::Result<()> {
    for rs in resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let key = key(span)?;
                let mut value = serde_json::json!({
                    "resource": rs.resource,
                    "scope": ss.scope,
                    "span": span,
                });
                sort_attributes(&mut value);
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn key(span: &Span) -> anyhow::Result<SpanKey> {
    let trace = TraceId(span.trace_id.as_slice().try_into()?);
    Ok((trace, span.span_id.as_slice().try_into()?))
}

/// Orders every `attributes` list by key, at every depth.
fn sort_attributes(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(attributes)) = map.get_mut("attributes") {
                attributes.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
            }
            map.values_mut().for_each(sort_attributes);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_attributes),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::ScopeSpans;

    use super::*;

    fn attribute(key: &str, value: &str) -> KeyValue {
        let value = any_value::Value::StringValue(value.into());
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    fn one_span(span: Span) -> Vec<ResourceSpans> {
        vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }]
    }

    #[test]
    fn attribute_order_does_not_matter_and_values_do() {
        let span = |attributes| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "op".into(),
            attributes,
            ..Default::default()
        };
        let (mut a, mut b, mut c) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        collect(&one_span(span(vec![attribute("x", "1"), attribute("y", "2")])), &mut a).unwrap();
        collect(&one_span(span(vec![attribute("y", "2"), attribute("x", "1")])), &mut b).unwrap();
        collect(&one_span(span(vec![attribute("y", "3"), attribute("x", "1")])), &mut c).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn samples_spread_over_the_run() {
        assert_eq!(sample(vec![3, 1, 2]), [1, 2, 3]);
        let spread = sample((0..100).collect());
        assert_eq!(spread.len(), SAMPLED_SENDS);
        assert_eq!((spread[0], spread[SAMPLED_SENDS - 1]), (0, 99));
    }
}
