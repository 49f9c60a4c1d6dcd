//! The graph from edge files against one SQL query over every span (the
//! linking rules as a self-join, which the graph must never run itself):
//! random call trees exported service by service, flushed in random
//! chunks, upkeep between some of them, windows of whole slots.

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use spanlake_storage::schema::{
    DURATION_NS, PARENT_SPAN_ID, REMOTE_SERVICE_NAME, SERVICE_NAME, SPAN_ID, SPAN_KIND, START_TIME, STATUS_CODE,
    TRACE_ID,
};

use spanlake_storage::ExportBody;

use super::*;
use crate::engine::{QueryLimits, SPANS_TABLE};
use crate::params::{NANOS_PER_SECOND, Params};
use crate::test_support::{self, attribute};

/// How far outside a range the query looks for a call's other half.
const MARGIN_NS: i64 = 5 * 60 * NANOS_PER_SECOND;

/// Zipkin's linking rules as one query: the calls whose anchor starts in
/// `[start, end)`, per edge and duration bucket.
fn calls_sql(start: &str, end: &str, from: &str, until: &str) -> String {
    format!(
        "WITH s AS (
            SELECT {TRACE_ID} AS trace_id, {SPAN_ID} AS span_id, {PARENT_SPAN_ID} AS parent_span_id,
                   CAST({SERVICE_NAME} AS VARCHAR) AS service, CAST({SPAN_KIND} AS VARCHAR) AS kind,
                   CAST({REMOTE_SERVICE_NAME} AS VARCHAR) AS remote, {STATUS_CODE} = 'ERROR' AS error,
                   {DURATION_NS} AS duration_ns, {START_TIME} >= {start} AND {START_TIME} < {end} AS anchored
            FROM {SPANS_TABLE} WHERE {START_TIME} >= {from} AND {START_TIME} < {until}),
        servers AS (SELECT * FROM s WHERE kind IN ('SERVER', 'CONSUMER')),
        callers AS (SELECT * FROM s WHERE kind IN ('CLIENT', 'PRODUCER')),
        linked AS (
            SELECT c.trace_id, c.span_id, c.service AS child, c.error AS child_error, c.duration_ns AS child_ns,
                   p.service AS parent, p.kind AS parent_kind, p.error AS parent_error, p.duration_ns AS parent_ns,
                   0 AS preference
            FROM servers c JOIN callers p ON c.trace_id = p.trace_id AND c.span_id = p.span_id
            WHERE c.anchored
            UNION ALL
            SELECT c.trace_id, c.span_id, c.service, c.error, c.duration_ns, p.service, p.kind, p.error, p.duration_ns, 1
            FROM servers c JOIN s p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
            WHERE c.anchored AND (p.kind IN ('CLIENT', 'PRODUCER') OR p.service <> c.service)),
        picked AS (
            SELECT *, row_number() OVER (PARTITION BY trace_id, span_id, child ORDER BY preference) AS pick
            FROM linked),
        calls AS (
            SELECT parent, child, (child_error OR parent_error) AS error,
                   CASE WHEN parent_kind IN ('CLIENT', 'PRODUCER') THEN parent_ns ELSE child_ns END AS duration_ns
            FROM picked WHERE pick = 1
            UNION ALL
            SELECT remote, service, error, duration_ns FROM servers
            WHERE anchored AND parent_span_id IS NULL AND remote IS NOT NULL
            UNION ALL
            SELECT p.service, p.remote, p.error, p.duration_ns FROM callers p
            WHERE p.anchored AND p.remote IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM servers c WHERE c.trace_id = p.trace_id AND c.parent_span_id = p.span_id)
              AND NOT EXISTS (SELECT 1 FROM servers c WHERE c.trace_id = p.trace_id AND c.span_id = p.span_id)),
        bucketed AS (
            SELECT parent, child, error, duration_ns,
                   CAST(floor(log2(CAST(greatest(duration_ns, 1) AS DOUBLE)) * {BUCKETS_PER_OCTAVE}) AS INT) AS bucket
            FROM calls WHERE parent IS NOT NULL AND child IS NOT NULL)
        SELECT parent, child, bucket, count(*) AS calls, sum(CAST(error AS BIGINT)) AS errors,
               min(duration_ns) AS min_ns, max(duration_ns) AS max_ns
        FROM bucketed GROUP BY parent, child, bucket ORDER BY parent, child, bucket"
    )
}

#[derive(Debug, Deserialize)]
struct Row {
    parent: String,
    child: String,
    bucket: i32,
    calls: i64,
    errors: i64,
    min_ns: i64,
    max_ns: i64,
}

async fn brute_force(engine: &QueryEngine, start_ns: i64, end_ns: i64) -> DependencyGraph {
    let mut params = Params::default();
    let (start, end) = (params.time(start_ns), params.time(end_ns));
    let (from, until) = (params.time(start_ns - MARGIN_NS), params.time(end_ns + MARGIN_NS));
    let rows: Vec<Row> =
        engine.rows(&TenantId::default(), &calls_sql(&start, &end, &from, &until), params).await.expect("oracle");
    let mut edges = Edges::default();
    for row in rows {
        let stats = CallStats { calls: row.calls, errors: row.errors, min_ns: row.min_ns, max_ns: row.max_ns };
        edges.add(&row.parent, &row.child, row.bucket, &stats);
    }
    edges.graph()
}

const SERVICES: [&str; 5] = ["A", "B", "C", "D", "E"];
const SECOND: i64 = NANOS_PER_SECOND;
const BASE: i64 = 1_750_000_000 * SECOND;

/// Spans of one trace, each with its service.
struct Tree {
    trace: u32,
    next: u8,
    spans: Vec<(&'static str, Span)>,
}

impl Tree {
    fn span(
        &mut self,
        rng: &mut StdRng,
        service: &'static str,
        parent: Option<[u8; 8]>,
        kind: SpanKind,
        at: i64,
    ) -> [u8; 8] {
        self.next += 1;
        let id = [self.next, (self.trace >> 8) as u8, self.trace as u8, 1, 1, 1, 1, 1];
        let duration = rng.random_range(1..400) * 1_000_000;
        self.spans.push((
            service,
            Span {
                trace_id: [self.trace.to_be_bytes().as_slice(), &[9; 12]].concat(),
                span_id: id.to_vec(),
                parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: "op".into(),
                kind: kind as i32,
                start_time_unix_nano: at as u64,
                end_time_unix_nano: (at + duration) as u64,
                status: Some(Status { code: if rng.random_bool(0.15) { 2 } else { 0 }, message: String::new() }),
                ..Default::default()
            },
        ));
        id
    }

    /// What a server span of `service` does: calls other services, a
    /// database, a queue, or nothing.
    fn work(&mut self, rng: &mut StdRng, service: &'static str, parent: [u8; 8], at: i64, depth: u32) {
        for call in 0..rng.random_range(0..3) {
            let at = at + (call + 1) * 1_000_000;
            match rng.random_range(0..4) {
                0 if depth < 3 => {
                    let callee = *SERVICES.choose(rng).expect("services");
                    let client = self.span(rng, service, Some(parent), SpanKind::Client, at);
                    if rng.random_bool(0.5) {
                        // The client names its peer, as many instrumentations do.
                        self.spans.last_mut().expect("client").1.attributes.push(attribute("peer.service", callee));
                    }
                    let server = self.span(rng, callee, Some(client), SpanKind::Server, at + 100_000);
                    self.work(rng, callee, server, at + 200_000, depth + 1);
                }
                1 => {
                    self.span(rng, service, Some(parent), SpanKind::Client, at);
                    self.spans.last_mut().expect("client").1.attributes.push(attribute("db.system", "postgres"));
                }
                2 if depth < 3 => {
                    let producer = self.span(rng, service, Some(parent), SpanKind::Producer, at);
                    for consumer in 0..rng.random_range(1..3) {
                        let callee = *SERVICES.choose(rng).expect("services");
                        self.span(rng, callee, Some(producer), SpanKind::Consumer, at + (consumer + 1) * 3_000_000);
                    }
                }
                _ => {
                    self.span(rng, service, Some(parent), SpanKind::Internal, at);
                }
            }
        }
    }
}

/// One export per service of a trace, as separate processes send them.
fn exports(rng: &mut StdRng, trace: u32) -> Vec<Bytes> {
    let start = BASE + rng.random_range(0..7200) * SECOND;
    let mut tree = Tree { trace, next: 0, spans: Vec::new() };
    let root = *SERVICES.choose(rng).expect("services");
    let server = tree.span(rng, root, None, SpanKind::Server, start);
    if rng.random_bool(0.3) {
        tree.spans.last_mut().expect("root").1.attributes.push(attribute("peer.service", "gateway"));
    }
    tree.work(rng, root, server, start + 1_000_000, 0);
    SERVICES
        .iter()
        .filter_map(|service| {
            let spans: Vec<Span> = tree.spans.iter().filter(|(s, _)| s == service).map(|(_, s)| s.clone()).collect();
            (!spans.is_empty()).then(|| {
                let resource = Resource { attributes: vec![attribute("service.name", service)], ..Default::default() };
                let scope_spans = vec![ScopeSpans { spans, ..Default::default() }];
                let request = ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans { resource: Some(resource), scope_spans, ..Default::default() }],
                };
                Bytes::from(request.encode_to_vec())
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_of_any_window_is_the_one_a_self_join_of_every_span_gives() {
    let mut rng = StdRng::seed_from_u64(5);
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = test_support::storage(dir.path()).await;
    let engine = QueryEngine::new(Arc::clone(&storage), QueryLimits::default()).expect("engine");
    let tenant = TenantId::default();

    // Exports of nearby traces interleave, so a call's two halves often
    // land in different flushes.
    let mut pending: Vec<Bytes> = Vec::new();
    for trace in 0..300 {
        pending.extend(exports(&mut rng, trace));
        if pending.len() < 12 {
            continue;
        }
        pending.shuffle(&mut rng);
        for export in pending.drain(..6) {
            storage
                .write(&tenant, storage.decode(ExportBody::Protobuf(export)).expect("decodes"))
                .await
                .expect("written");
        }
        if rng.random_bool(0.5) {
            storage.flush().await.expect("flushed");
        }
        if rng.random_bool(0.2) {
            storage.maintain().await.expect("upkeep");
        }
    }
    for export in pending {
        storage.write(&tenant, storage.decode(ExportBody::Protobuf(export)).expect("decodes")).await.expect("written");
    }

    let slot = SLOT_NS;
    // The whole data, with whole hours (summed once and kept) in it.
    let mut windows = vec![(BASE - 3600 * SECOND, BASE + 4 * 3600 * SECOND)];
    for _ in 0..12 {
        let start = BASE + rng.random_range(-10..730) * slot;
        windows.push((start, start + rng.random_range(1..60) * slot));
    }
    for round in 0..3 {
        for &(start, end) in &windows {
            let window = Window { start_ns: start, end_ns: end };
            // Twice: the second time whole hours come from memory.
            let graph = engine.dependencies(&tenant, &window).await.expect("graph");
            assert_eq!(engine.dependencies(&tenant, &window).await.expect("graph"), graph);
            assert_eq!(graph, brute_force(&engine, start, end).await, "round {round}, window {start}..{end}");
        }
        // Again once the buffer is in files and the open ends met.
        storage.flush().await.expect("flushed");
        storage.maintain().await.expect("upkeep");
    }
    let whole = engine.dependencies(&tenant, &Window { start_ns: windows[0].0, end_ns: windows[0].1 }).await.unwrap();
    assert!(whole.edges.len() > 10, "a varied graph: {whole:?}");
}
