//! Search against brute force: random traces in files and in the buffer,
//! random filters, windows, sorts and page sizes; every page of the fast
//! search must be the same page of one SQL query that ranks every match.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use spanlake_storage::ExportBody;

use super::*;
use crate::engine::{QueryLimits, SPANS_TABLE, TRACE_FRAGMENTS_TABLE, trace_summary_sql};
use crate::params::Params;
use crate::params::TagFilter;
use crate::test_support::{self, attribute};
use crate::traceql::TraceQl;

const SERVICES: [&str; 4] = ["web", "cart", "pay", "db"];
const OPERATIONS: [&str; 3] = ["GET /", "charge", "query"];
const SECOND: i64 = 1_000_000_000;
/// The traces start within two hours after this.
const BASE: i64 = 1_750_000_000 * SECOND;

/// One export per trace: 1 to 6 spans over up to 3 services; some traces
/// last half an hour, so their start is far from their later spans.
fn random_trace(rng: &mut StdRng, trace: u32) -> Bytes {
    let start = BASE + rng.random_range(0..7200) * SECOND + rng.random_range(0..1000) * 1_000_000;
    let long = rng.random_bool(0.15);
    let mut resource_spans = Vec::new();
    let spans = rng.random_range(1..=6u8);
    for i in 0..spans {
        let offset = if long { rng.random_range(0..1800) * SECOND } else { i64::from(i) * 1_000_000 };
        let begin = (start + offset) as u64;
        let span = Span {
            trace_id: [trace.to_be_bytes().as_slice(), &[7; 12]].concat(),
            span_id: vec![i + 1; 8],
            parent_span_id: if i == 0 { vec![] } else { vec![rng.random_range(1..=i); 8] },
            name: OPERATIONS.choose(rng).expect("operations").to_string(),
            start_time_unix_nano: begin,
            end_time_unix_nano: begin + rng.random_range(1..200) as u64 * 1_000_000,
            attributes: vec![attribute("tier", ["gold", "free"].choose(rng).expect("tiers"))],
            status: Some(Status { code: if rng.random_bool(0.2) { 2 } else { 0 }, message: String::new() }),
            ..Default::default()
        };
        let service = if i == 0 { SERVICES[0] } else { SERVICES.choose(rng).expect("services") };
        resource_spans.push(ResourceSpans {
            resource: Some(Resource { attributes: vec![attribute("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        });
    }
    Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec())
}

fn random_filter(rng: &mut StdRng) -> SpanFilter {
    let mut filter = SpanFilter::default();
    if rng.random_bool(0.5) {
        filter.service = Some(SERVICES.choose(rng).expect("services").to_string());
    }
    if rng.random_bool(0.2) {
        filter.operation = Some(OPERATIONS.choose(rng).expect("operations").to_string());
    }
    if rng.random_bool(0.3) {
        let tier = ["gold", "free"].choose(rng).expect("tiers").to_string();
        filter.tags.push(if rng.random_bool(0.5) {
            TagFilter::Equals("tier".into(), tier)
        } else {
            TagFilter::NotEquals("tier".into(), tier)
        });
    }
    if rng.random_bool(0.2) {
        filter.min_duration_ns = Some(rng.random_range(0..150) * 1_000_000);
    }
    filter.errors_only = rng.random_bool(0.15);
    if rng.random_bool(0.4) {
        let query = [
            r#"{ span.tier = "gold" && duration > 50ms }"#,
            r#"{ status = error } || { name = "charge" }"#,
            r#"{ resource.service.name = "db" } && { span.tier = "free" && name = "GET /" }"#,
            r#"{ name =~ "q.*" } && { status = error }"#,
            // Roots start long traces, half an hour before their last spans.
            r#"{ resource.service.name = "web" } && { status = error }"#,
            // About whole traces: answered from the trace index alone.
            r#"{ rootServiceName = "web" }"#,
            r#"{ traceDuration > 100ms && !(rootName = "GET /") }"#,
            r#"{ rootName = "GET /" || traceDuration < 20ms } | select(span.tier)"#,
        ]
        .choose(rng)
        .expect("queries");
        filter.traceql = vec![TraceQl::parse(query).expect("a query")];
    }
    filter
}

/// A filter the trace index answers: a service, errors only, questions
/// about whole traces.
fn index_filter(rng: &mut StdRng) -> SpanFilter {
    let mut filter = SpanFilter::default();
    if rng.random_bool(0.6) {
        filter.service = Some(SERVICES.choose(rng).expect("services").to_string());
    }
    filter.errors_only = rng.random_bool(0.6);
    if rng.random_bool(0.3) {
        let query = [r#"{ rootServiceName = "web" }"#, r#"{ traceDuration > 100ms }"#].choose(rng).expect("queries");
        filter.traceql = vec![TraceQl::parse(query).expect("a query")];
    }
    filter
}

/// Every trace the search should find, in order, by one SQL query.
async fn brute_force(engine: &QueryEngine, request: &SearchRequest) -> Vec<Summary> {
    let mut params = Params::default();
    let matching = request.filter.where_sql(&request.window, &mut params);
    let (lo, hi) = (
        params.time(request.window.start_ns - SUMMARY_MARGIN_NS),
        params.time(request.window.end_ns + SUMMARY_MARGIN_NS),
    );
    let summaries = trace_summary_sql("fragments");
    let sql = format!(
        "WITH fragments AS (SELECT * FROM {TRACE_FRAGMENTS_TABLE}
                            WHERE start_time >= {lo} AND start_time < {hi}
                              AND trace_id IN (SELECT trace_id FROM {SPANS_TABLE} WHERE {matching})),
              summaries AS ({summaries})
         SELECT trace_id, CAST(start_time AS BIGINT) AS start_ns, CAST(duration_ns AS BIGINT) AS duration_ns,
                root_service_name, root_span_name, CAST(span_count AS BIGINT) AS span_count,
                CAST(error_count AS BIGINT) AS error_count, services, service_errors
         FROM summaries"
    );
    let tenant = TenantId::default();
    let mut all = Vec::new();
    for batch in engine.batches(&tenant, &sql, params).await.expect("brute force") {
        all.extend(summary::read(&batch).expect("summaries"));
    }
    all.sort_by(|a: &Summary, b: &Summary| match request.order {
        SearchOrder::StartDesc => (b.start_ns, b.trace_id).cmp(&(a.start_ns, a.trace_id)),
        SearchOrder::DurationDesc => (b.duration_ns, b.trace_id).cmp(&(a.duration_ns, a.trace_id)),
        SearchOrder::DurationAsc => (a.duration_ns, a.trace_id).cmp(&(b.duration_ns, b.trace_id)),
    });
    all
}

async fn engine(rng: &mut StdRng, dir: &std::path::Path) -> QueryEngine {
    let storage = test_support::storage(dir).await;
    let tenant = TenantId::default();
    for trace in 0..240 {
        let export = storage.decode(ExportBody::Protobuf(random_trace(rng, trace))).expect("decodes");
        storage.write(&tenant, export).await.expect("written");
        // Some files, some compacted, the newest spans left in the buffer.
        if trace % 40 == 39 {
            storage.flush().await.expect("flushed");
            if rng.random_bool(0.5) {
                storage.maintain().await.expect("compacted");
            }
        }
    }
    QueryEngine::new(storage, QueryLimits::default()).expect("engine")
}

const ORDERS: [SearchOrder; 3] = [SearchOrder::StartDesc, SearchOrder::DurationDesc, SearchOrder::DurationAsc];

/// Random searches (filters from `filter`, orders from `orders`, windows
/// of up to `longest_s`), each checked page by page against brute force.
async fn every_page_matches_brute_force(
    engine: &QueryEngine,
    rng: &mut StdRng,
    cases: usize,
    filter: fn(&mut StdRng) -> SpanFilter,
    orders: &[SearchOrder],
    longest_s: i64,
) {
    let tenant = TenantId::default();
    for case in 0..cases {
        let start = BASE + rng.random_range(-600..7200) * SECOND;
        let end = start + rng.random_range(1..longest_s) * SECOND;
        let order = *orders.choose(rng).expect("orders");
        let mut request = SearchRequest {
            filter: filter(rng),
            window: Window { start_ns: start, end_ns: end },
            order,
            limit: rng.random_range(2..12),
            cursor: None,
        };
        let expected = brute_force(engine, &request).await;
        let mut got: Vec<Summary> = Vec::new();
        for page in 0.. {
            let Page { traces, next_cursor } = engine.page(&tenant, &request).await.expect("a page");
            let from = page * request.limit;
            let want = &expected[from.min(expected.len())..(from + request.limit).min(expected.len())];
            assert_eq!(traces, want, "case {case}, page {page}: {request:?}");
            got.extend(traces);
            match next_cursor {
                Some(cursor) => request.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(got.len(), expected.len(), "case {case}: every match on some page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_is_the_page_of_a_brute_force_ranking() {
    let mut rng = StdRng::seed_from_u64(16);
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&mut rng, dir.path()).await;
    every_page_matches_brute_force(&engine, &mut rng, 30, random_filter, &ORDERS, 9000).await;
    // Errors only, from the fragments' error counts: windows that end in
    // the middle of fragments, short and long.
    every_page_matches_brute_force(&engine, &mut rng, 15, index_filter, &ORDERS, 300).await;
    every_page_matches_brute_force(&engine, &mut rng, 15, index_filter, &ORDERS, 9000).await;
}

/// Sorted by duration, hours that upkeep ranked are walked, not grouped:
/// the same pages, with rankings for some hours and not others.
#[tokio::test(flavor = "multi_thread")]
async fn pages_by_duration_are_the_same_from_ranked_hours() {
    let mut rng = StdRng::seed_from_u64(17);
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(&mut rng, dir.path()).await;
    let ranked = |engine: &QueryEngine| {
        let snapshot = engine.storage().snapshot(&TenantId::default());
        spanlake_storage::trace_durations::current(&snapshot).len()
    };
    // Upkeep merges the hours first, then ranks them, a few a round.
    for _ in 0..6 {
        engine.storage().maintain().await.expect("upkeep");
    }
    let all = ranked(&engine);
    assert!(all >= 2, "the finished hours are ranked");
    every_page_matches_brute_force(&engine, &mut rng, 30, random_filter, &ORDERS, 9000).await;
    // With no filter most traces are decided by their extent alone; the
    // long ones have minutes between spans, and a short window in such a
    // gap holds none of their spans.
    let durations = [SearchOrder::DurationDesc, SearchOrder::DurationAsc];
    every_page_matches_brute_force(&engine, &mut rng, 40, |_| SpanFilter::default(), &durations, 300).await;
    every_page_matches_brute_force(&engine, &mut rng, 20, index_filter, &durations, 300).await;

    // Late spans in one hour: its ranking and its neighbours' go stale,
    // and those hours are grouped again.
    let storage = engine.storage();
    let late = storage.decode(ExportBody::Protobuf(random_trace(&mut rng, 1000))).expect("decodes");
    storage.write(&TenantId::default(), late).await.expect("written");
    storage.flush().await.expect("flushed");
    assert!(ranked(&engine) < all, "rankings of the late spans' hours are stale");
    every_page_matches_brute_force(&engine, &mut rng, 15, random_filter, &ORDERS, 9000).await;
}

/// `{a} && {b}` holds for a trace whose `a` and `b` spans fall in different
/// slices of the newest-first walk.
#[tokio::test(flavor = "multi_thread")]
async fn spansets_of_one_trace_meet_across_slices() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = test_support::storage(dir.path()).await;
    let tenant = TenantId::default();
    let span = |trace: u32, id: u8, service: &str, name: &str, at_s: i64| {
        let begin = (BASE + at_s * SECOND) as u64;
        let span = Span {
            trace_id: [trace.to_be_bytes().as_slice(), &[7; 12]].concat(),
            span_id: vec![id; 8],
            parent_span_id: if id == 1 { vec![] } else { vec![1; 8] },
            name: name.into(),
            start_time_unix_nano: begin,
            end_time_unix_nano: begin + 1_000_000,
            ..Default::default()
        };
        ResourceSpans {
            resource: Some(Resource { attributes: vec![attribute("service.name", service)], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }
    };
    // The long trace's root first, its database call half an hour later,
    // and a hundred other spans between them.
    let mut exports = vec![vec![span(1, 1, "web", "root", 0)]];
    exports.extend((2..102).map(|t| vec![span(t, 1, "web", "other", i64::from(t) * 10)]));
    exports.push(vec![span(1, 2, "db", "query", 1800)]);
    for resource_spans in exports {
        let bytes = Bytes::from(ExportTraceServiceRequest { resource_spans }.encode_to_vec());
        storage.write(&tenant, storage.decode(ExportBody::Protobuf(bytes)).expect("decodes")).await.expect("written");
    }
    let engine = QueryEngine::new(storage, QueryLimits::default()).expect("engine");
    let query = r#"{ resource.service.name = "db" } && { name = "root" }"#;
    let request = SearchRequest {
        filter: SpanFilter { traceql: vec![TraceQl::parse(query).expect("a query")], ..SpanFilter::default() },
        window: Window { start_ns: BASE - SECOND, end_ns: BASE + 3600 * SECOND },
        order: SearchOrder::StartDesc,
        limit: 5,
        cursor: None,
    };
    let page = engine.page(&tenant, &request).await.expect("a page");
    let found: Vec<u32> =
        page.traces.iter().map(|t| u32::from_be_bytes(t.trace_id.0[..4].try_into().expect("4 bytes"))).collect();
    assert_eq!(found, [1]);
}

/// Errors only from the trace index: a fragment that starts in the window
/// but whose error span starts after it does not match.
#[tokio::test(flavor = "multi_thread")]
async fn errors_only_needs_the_error_span_itself_in_the_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = test_support::storage(dir.path()).await;
    let tenant = TenantId::default();
    // One trace of one service in one flush, so one fragment: a root that
    // is fine, and ten minutes later a child that failed.
    let span = |id: u8, at_s: i64, failed: bool| {
        let begin = (BASE + at_s * SECOND) as u64;
        Span {
            trace_id: [7; 16].to_vec(),
            span_id: vec![id; 8],
            parent_span_id: if id == 1 { vec![] } else { vec![1; 8] },
            name: "work".into(),
            start_time_unix_nano: begin,
            end_time_unix_nano: begin + 1_000_000,
            status: Some(Status { code: if failed { 2 } else { 0 }, message: String::new() }),
            ..Default::default()
        }
    };
    let export = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![attribute("service.name", "web")], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans: vec![span(1, 0, false), span(2, 600, true)], ..Default::default() }],
            ..Default::default()
        }],
    };
    let bytes = Bytes::from(export.encode_to_vec());
    storage.write(&tenant, storage.decode(ExportBody::Protobuf(bytes)).expect("decodes")).await.expect("written");
    storage.flush().await.expect("flushed");
    let engine = QueryEngine::new(storage, QueryLimits::default()).expect("engine");
    for order in ORDERS {
        for (end_s, found) in [(300, 0), (700, 1)] {
            for service in [None, Some("web".to_owned())] {
                let request = SearchRequest {
                    filter: SpanFilter { service: service.clone(), errors_only: true, ..SpanFilter::default() },
                    window: Window { start_ns: BASE - 10 * SECOND, end_ns: BASE + end_s * SECOND },
                    order,
                    limit: 5,
                    cursor: None,
                };
                let page = engine.page(&tenant, &request).await.expect("a page");
                assert_eq!(page.traces.len(), found, "{order:?}, window to {end_s} s, service {service:?}");
            }
        }
    }
}
