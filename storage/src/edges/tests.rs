use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::{IngestLimits, SpanBatchBuilder};

const T0: i64 = 1_750_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn span(id: u8, parent: Option<u8>, kind: SpanKind, at_ms: i64, ms: i64) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("op-{id}"),
        kind: kind as i32,
        start_time_unix_nano: (T0 + at_ms * MS) as u64,
        end_time_unix_nano: (T0 + (at_ms + ms) * MS) as u64,
        ..Default::default()
    }
}

fn peer(mut span: Span, service: &str) -> Span {
    span.attributes.push(KeyValue {
        key: "peer.service".into(),
        value: Some(AnyValue { value: Some(Value::StringValue(service.into())) }),
        ..Default::default()
    });
    span
}

fn failed(mut span: Span) -> Span {
    span.status = Some(Status { code: 2, message: String::new() });
    span
}

fn batch(spans: &[(&str, Span)]) -> RecordBatch {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    for (service, span) in spans {
        builder.append(&[ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(Value::StringValue(service.to_string())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans: vec![span.clone()], ..Default::default() }],
            ..Default::default()
        }]);
    }
    builder.finish().unwrap()
}

/// (parent, child, calls, errors) per edge over all slots.
fn edges_of(partial: &Partial) -> Vec<(String, String, i64, i64)> {
    let mut edges: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for (key, stats) in partial.calls_in(i64::MIN, i64::MAX) {
        let edge = edges.entry((key.parent.clone(), key.child.clone())).or_default();
        edge.0 += stats.calls;
        edge.1 += stats.errors;
    }
    edges.into_iter().filter(|(_, (c, _))| *c != 0).map(|((p, c), (n, e))| (p, c, n, e)).collect()
}

fn normalized(mut partial: Partial) -> Partial {
    partial.servers.sort_by_key(|s| (s.start_ns, s.span_id));
    partial.clients.sort_by_key(|c| (c.start_ns, c.span_id));
    partial
}

fn edge(parent: &str, child: &str, calls: i64, errors: i64) -> (String, String, i64, i64) {
    (parent.into(), child.into(), calls, errors)
}

/// A calls B (which fails), B queries a database and publishes to C, A
/// calls D (not instrumented) and, from an internal span, E.
fn topology() -> Vec<(&'static str, Span)> {
    vec![
        ("A", span(1, None, SpanKind::Server, 0, 100)),
        ("A", span(2, Some(1), SpanKind::Client, 1, 40)),
        ("B", failed(span(3, Some(2), SpanKind::Server, 2, 30))),
        ("B", peer(span(4, Some(3), SpanKind::Client, 5, 3), "postgres")),
        ("B", span(5, Some(3), SpanKind::Producer, 6, 1)),
        ("C", span(6, Some(5), SpanKind::Consumer, 8, 2)),
        ("A", peer(span(9, Some(1), SpanKind::Client, 30, 7), "D")),
        ("A", span(10, Some(1), SpanKind::Internal, 40, 20)),
        ("E", span(11, Some(10), SpanKind::Server, 41, 9)),
    ]
}

fn topology_edges() -> Vec<(String, String, i64, i64)> {
    vec![
        edge("A", "B", 1, 1),
        edge("A", "D", 1, 0),
        edge("A", "E", 1, 0),
        edge("B", "C", 1, 0),
        edge("B", "postgres", 1, 0),
    ]
}

#[test]
fn one_flush_links_every_call_it_holds() {
    let partial = of_spans(&[batch(&topology())], 0).unwrap();
    assert_eq!(edges_of(&partial), topology_edges());
    // A → B lasts as long as its client span; A → E, without one, as E's server span.
    let duration = |parent: &str, child: &str| {
        let (_, stats) = partial.calls.iter().find(|(k, _)| k.parent == parent && k.child == child).unwrap();
        (stats.min_ns, stats.max_ns)
    };
    assert_eq!(duration("A", "B"), (40 * MS, 40 * MS));
    assert_eq!(duration("A", "E"), (9 * MS, 9 * MS));
    // Waiting: the clients no server claimed (leaf calls until one does)
    // and the producer (more consumers may come). No server waits: the
    // parent of each is in the flush.
    let clients: Vec<_> = partial.clients.iter().map(|c| (c.span_id[0], c.leaf)).collect();
    assert!(partial.servers.is_empty());
    assert_eq!(clients, [(4, true), (5, false), (9, true)]);
}

#[test]
fn calls_split_across_flushes_add_up_once_their_ends_meet() {
    let spans = topology();
    for cut in 1..spans.len() {
        let (first, second) = spans.split_at(cut);
        let mut partial = of_spans(&[batch(first)], 0).unwrap();
        partial.absorb(of_spans(&[batch(second)], 0).unwrap());
        partial.resolve();
        let mut expected = topology_edges();
        // A parent that is no client span is linked only within a flush.
        if cut == 8 {
            expected.retain(|e| e.1 != "E");
        }
        assert_eq!(edges_of(&partial), expected, "cut after {cut} spans");
        // Written and read back, nothing changes (but the order of open ends).
        let again = from_batches(&[to_batch(&partial).unwrap()]).unwrap();
        assert_eq!(normalized(again), normalized(partial), "cut after {cut}");
    }
}

#[test]
fn a_database_call_is_a_leaf_call_at_once() {
    let mut query = peer(span(4, Some(3), SpanKind::Client, 5, 3), "postgres");
    query.attributes[0].key = "db.system".into();
    let partial = of_spans(&[batch(&[("B", query)])], 0).unwrap();
    assert_eq!(edges_of(&partial), [edge("B", "postgres", 1, 0)]);
    assert!(partial.clients.is_empty(), "no server answers a database call: nothing waits");
}

#[test]
fn a_producer_stays_open_for_every_consumer() {
    let producer = vec![("B", span(5, None, SpanKind::Producer, 0, 1))];
    let consumer = |id, at| vec![("C", span(id, Some(5), SpanKind::Consumer, at, 2))];
    let mut partial = of_spans(&[batch(&producer)], 0).unwrap();
    partial.absorb(of_spans(&[batch(&consumer(6, 10))], 0).unwrap());
    partial.resolve();
    partial.absorb(of_spans(&[batch(&consumer(7, 20))], 0).unwrap());
    partial.resolve();
    assert_eq!(edges_of(&partial), [edge("B", "C", 2, 0)]);
    assert_eq!(partial.clients.len(), 1, "the producer waits on");
}

#[test]
fn open_ends_close_once_they_waited_long_enough() {
    let client = vec![("A", peer(span(2, None, SpanKind::Client, 0, 40), "B"))];
    let server = vec![("B", span(3, Some(2), SpanKind::Server, 1, 30))];
    let mut partial = of_spans(&[batch(&client)], 100).unwrap();
    assert_eq!(edges_of(&partial), [edge("A", "B", 1, 0)], "a leaf call until claimed");
    partial.close(101);
    assert!(partial.clients.is_empty());
    partial.absorb(of_spans(&[batch(&server)], 200).unwrap());
    partial.resolve();
    // The server came too late: the leaf call stays, the server is unlinked.
    assert_eq!(edges_of(&partial), [edge("A", "B", 1, 0)]);
    assert_eq!(partial.servers.len(), 1);
}
