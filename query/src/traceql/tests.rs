//! The parser over valid and invalid queries (errors with their place), and
//! every supported construct against the same question asked in SQL.

use std::collections::BTreeSet;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use spanlake_storage::{ExportBody, TenantId};

use super::*;
use crate::engine::{QueryEngine, QueryLimits, SPANS_TABLE};
use crate::params::SpanFilter;
use crate::search::Columns;
use crate::test_support;

#[test]
fn valid_queries_parse() {
    for query in [
        "{}",
        "{ }",
        r#"{ resource.service.name = "shop" }"#,
        r#"{ .http.route = "/a" && span.http.response.status_code >= 500 }"#,
        r#"{ name =~ "GET .*" || !(status = error) }"#,
        "{ duration > 1.5s && duration <= 1h30m }",
        "{ kind = server && status != ok }",
        "{ span.retries * 2 + 1 > 3 }",
        "{ span.ratio / 2 < 0.5 && span.n % 2 = 0 && 2 ^ 3 = 8 }",
        r#"{ span."name with spaces" = "x" }"#,
        "{ span.cache.hit = true } || { span.cache.hit = false }",
        "{ span.customer != nil }",
        r#"{ event.items = "3" } && { link.reason != nil }"#,
        r#"{ event:name = "exception" }"#,
        r#"{ trace:id = "0af7651916cd43dd8448eb211c80319c" && span:id != "00f067aa0ba902b7" }"#,
        r#"{ instrumentation:name = "lib" && instrumentation.flag = true }"#,
        r#"{ statusMessage =~ "dead.*" }"#,
        "({ kind = client }) || ({ kind = server })",
        r#"{ .a = "x" } | select(span.b, resource.c)"#,
        "{ -duration < -1ms }",
    ] {
        TraceQl::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}

#[test]
fn invalid_queries_say_where() {
    for (query, line, column, message) in [
        ("", 1, 1, "empty query"),
        ("{ name = }", 1, 10, "unexpected }"),
        ("{ name = \"x\" ", 1, 14, "unexpected end of query, expecting }"),
        ("{ foo = 1 }", 1, 3, "unknown name \"foo\""),
        ("{ span. = 1 }", 1, 3, "an attribute needs a name"),
        ("{ name = \"unterminated }", 1, 10, "unterminated string"),
        ("{ duration > 5xs }", 1, 14, "is not a number or a duration"),
        ("{ name = \"a\" } extra", 1, 16, "unexpected extra"),
        ("{ a ? b }", 1, 5, "unexpected character"),
        ("{ } | { kind = server } > { kind = client }", 1, 25, "structural operator after |"),
        ("{ } | count() > \"x\"", 1, 7, "compared with a number"),
        ("{ } | by(1) | count() > 1", 1, 10, "by() takes an attribute"),
        ("{ } | rate() by (resource.service.name)", 1, 7, "metrics function"),
        ("{ } | bogus()", 1, 7, "unknown function bogus"),
        ("{ nestedSetParent = 3 }", 1, 19, "tell roots (-1) from other spans"),
        ("{ nestedSetParent = name }", 1, 3, "compared with a whole number"),
        ("{ rootServiceName = name }", 1, 19, "rootServiceName is compared with a value"),
        ("{ traceDuration + 1 > 2 }", 1, 3, "TraceDuration is not supported yet"),
        ("{ status = server }", 1, 10, "cannot be compared"),
        ("{ 1 = 1 }", 1, 5, "needs an attribute"),
        ("{ event.x > 1 }", 1, 11, "event and link values"),
        (r#"{ link:spanID = "xyz" }"#, 1, 17, "is not an id of at most 8 bytes"),
        (r#"{ link:traceID > "ab" }"#, 1, 16, "link ids are compared with"),
        (r#"{ event:timeSinceStart > "a" }"#, 1, 24, "compared with a duration"),
        ("{ name }", 1, 3, "needs a condition"),
        ("{\n  name = \"a\" &&\n  = 1 }", 3, 3, "unexpected ="),
        ("{ name = \"\\q\" }", 1, 11, "unknown escape"),
    ] {
        let error = TraceQl::parse(query).expect_err(query);
        assert_eq!((error.line, error.column), (line, column), "{query}: {error}");
        assert!(error.message.contains(message), "{query}: {error}");
        assert!(error.to_string().starts_with(&format!("parse error at line {line}, col {column}: ")), "{error}");
    }
}

const BASE: i64 = 1_750_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn text(value: &str) -> Value {
    Value::StringValue(value.into())
}

/// Trace `t`: a server span and a client span, different in every way a
/// query can tell apart; for odd `t` an internal span below the client,
/// and for `t` divisible by 3 a producer span beside it.
fn trace(t: u8) -> Bytes {
    let n = i64::from(t);
    let id = |i: u8| vec![t, i, 0, 0, 0, 0, 0, 1];
    let start = BASE + n * 1000 * MS;
    let mut server = Span {
        trace_id: vec![t; 16],
        span_id: id(1),
        name: format!("GET /item/{}", t % 3),
        kind: 2,
        start_time_unix_nano: start as u64,
        end_time_unix_nano: (start + (n * 10 + 1) * MS) as u64,
        attributes: vec![
            kv("http.response.status_code", Value::IntValue(if t.is_multiple_of(4) { 500 } else { 200 })),
            kv("retries", Value::IntValue(n % 3)),
            kv("ratio", Value::DoubleValue(n as f64 / 10.0)),
            kv("cache.hit", Value::BoolValue(t.is_multiple_of(2))),
            kv("customer", text(["acme", "globex", "initech"][usize::from(t % 3)])),
        ],
        status: Some(Status {
            code: if t.is_multiple_of(4) { 2 } else { 1 },
            message: if t.is_multiple_of(4) { "deadline exceeded".into() } else { String::new() },
        }),
        events: if t % 2 == 1 {
            vec![Event {
                time_unix_nano: start as u64,
                name: "exception".into(),
                attributes: vec![kv("items", text("3"))],
                ..Default::default()
            }]
        } else {
            vec![]
        },
        ..Default::default()
    };
    if t.is_multiple_of(3) {
        server.attributes.push(kv("only.some", text("yes")));
    }
    let client = Span {
        trace_id: vec![t; 16],
        span_id: id(2),
        parent_span_id: id(1),
        name: "SELECT".into(),
        kind: 3,
        start_time_unix_nano: (start + MS) as u64,
        end_time_unix_nano: (start + MS + n * MS) as u64,
        attributes: vec![
            kv("db.system", text(if t.is_multiple_of(2) { "postgresql" } else { "mysql" })),
            kv("customer", text("db")),
        ],
        links: if t.is_multiple_of(5) {
            vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                attributes: vec![kv("reason", text("retry"))],
                ..Default::default()
            }]
        } else {
            vec![]
        },
        ..Default::default()
    };
    let below = (t % 2 == 1).then(|| Span {
        trace_id: vec![t; 16],
        span_id: id(3),
        parent_span_id: id(2),
        name: "pool.acquire".into(),
        kind: 1,
        start_time_unix_nano: (start + MS) as u64,
        end_time_unix_nano: (start + 2 * MS) as u64,
        ..Default::default()
    });
    let beside = t.is_multiple_of(3).then(|| Span {
        trace_id: vec![t; 16],
        span_id: id(4),
        parent_span_id: id(1),
        name: "publish".into(),
        kind: 4,
        start_time_unix_nano: (start + 2 * MS) as u64,
        end_time_unix_nano: (start + 3 * MS) as u64,
        ..Default::default()
    });
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text(if t.is_multiple_of(2) { "shop" } else { "cart" })),
                    kv("service.version", text(if t < 6 { "1.0" } else { "2.0" })),
                    kv("customer", text("resource-level")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1.2".into(),
                    attributes: vec![kv("flag", Value::BoolValue(t % 3 == 1))],
                    ..Default::default()
                }),
                spans: [server, client].into_iter().chain(below).chain(beside).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

async fn engine(dir: &std::path::Path) -> QueryEngine {
    let storage = test_support::storage(dir).await;
    let tenant = TenantId::default();
    for t in 1..=12u8 {
        storage
            .write(&tenant, storage.decode(ExportBody::Protobuf(trace(t))).expect("decodes"))
            .await
            .expect("written");
        if t == 6 {
            storage.flush().await.expect("flushed");
        }
    }
    QueryEngine::new(storage, QueryLimits::default()).expect("engine")
}

async fn traces(engine: &QueryEngine, condition: &str, params: Params) -> BTreeSet<u8> {
    let sql = format!("SELECT DISTINCT trace_id FROM {SPANS_TABLE} WHERE {condition}");
    let mut out = BTreeSet::new();
    for batch in engine.batches(&TenantId::default(), &sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}")) {
        for row in 0..batch.num_rows() {
            out.insert(Columns(&batch).trace_id("trace_id", row).expect("an id").0[0]);
        }
    }
    out
}

/// The traces with a `pool.acquire` span, and those with a `publish` span.
const ODD: &str = "trace_id IN (SELECT trace_id FROM spans WHERE span_name = 'pool.acquire')";
const THIRDS: &str = "trace_id IN (SELECT trace_id FROM spans WHERE span_name = 'publish')";

#[tokio::test(flavor = "multi_thread")]
async fn each_construct_finds_what_the_same_sql_finds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path()).await;
    let window = Window { start_ns: BASE, end_ns: BASE + 3_600_000 * MS };
    let everything = traces(&engine, "TRUE", Params::default()).await;
    assert_eq!(everything.len(), 12);
    for (query, sql) in [
        ("{}", "TRUE"),
        (r#"{ resource.service.name = "shop" }"#, "service_name = 'shop'"),
        (r#"{ .service.name = "cart" }"#, "service_name = 'cart'"),
        (r#"{ span.http.response.status_code >= 500 }"#, "http_status_code >= 500"),
        (r#"{ .http.response.status_code = 200 && kind = server }"#, "http_status_code = 200 AND span_kind = 'SERVER'"),
        ("{ status = error }", "status_code = 'ERROR'"),
        ("{ status != error && kind = server }", "status_code <> 'ERROR' AND span_kind = 'SERVER'"),
        ("{ kind = client && duration > 5ms }", "span_kind = 'CLIENT' AND duration_ns > 5000000"),
        ("{ duration >= 51ms && duration < 1s }", "duration_ns >= 51000000 AND duration_ns < 1000000000"),
        (r#"{ name = "GET /item/1" }"#, "span_name = 'GET /item/1'"),
        (r#"{ name =~ "GET /item/[02]" }"#, "span_name IN ('GET /item/0', 'GET /item/2')"),
        (r#"{ name !~ "GET.*" && kind = server }"#, "FALSE"),
        (r#"{ span.customer = "acme" }"#, "span_attributes['customer'] = 'acme'"),
        (r#"{ resource.customer = "acme" }"#, "FALSE"),
        (r#"{ .customer = "resource-level" }"#, "TRUE"),
        (
            r#"{ span.customer != "acme" && kind = server }"#,
            "span_kind = 'SERVER' AND span_attributes['customer'] <> 'acme'",
        ),
        ("{ span.retries > 1 }", "TRY_CAST(span_attributes['retries'] AS BIGINT) > 1"),
        ("{ span.retries * 2 + 1 >= 3 }", "TRY_CAST(span_attributes['retries'] AS BIGINT) >= 1"),
        ("{ span.ratio > 0.45 }", "TRY_CAST(span_attributes['ratio'] AS DOUBLE) > 0.45"),
        (
            "{ span.ratio * 10 % 4 = 1 }",
            "CAST(round(TRY_CAST(span_attributes['ratio'] AS DOUBLE) * 10) AS BIGINT) % 4 = 1",
        ),
        ("{ span.cache.hit = true }", "span_attributes['cache.hit'] = 'true'"),
        ("{ span.cache.hit }", "span_attributes['cache.hit'] = 'true'"),
        ("{ span.only.some != nil }", "span_attributes['only.some'] IS NOT NULL"),
        ("{ span.only.some = nil && kind = server }", "span_kind = 'SERVER' AND span_attributes['only.some'] IS NULL"),
        (r#"{ event:name = "exception" }"#, "cardinality(events) > 0"),
        (r#"{ event.items = "3" }"#, "cardinality(events) > 0"),
        ("{ link.reason != nil }", "cardinality(links) > 0"),
        (r#"{ link:spanID = "0909090909090909" }"#, "cardinality(links) > 0"),
        (r#"{ link:traceID = "09090909090909090909090909090909" }"#, "cardinality(links) > 0"),
        (r#"{ link:spanID = "0808080808080808" }"#, "FALSE"),
        ("{ link:traceID != nil }", "cardinality(links) > 0"),
        // The exception event is at the server span's start.
        ("{ event:timeSinceStart >= 0ms }", "cardinality(events) > 0"),
        ("{ event:timeSinceStart < 1ms }", "cardinality(events) > 0"),
        ("{ 1ms < event:timeSinceStart }", "FALSE"),
        ("{ event:timeSinceStart = 0 }", "cardinality(events) > 0"),
        (r#"{ statusMessage =~ "dead.*" }"#, "status_message = 'deadline exceeded'"),
        (r#"{ instrumentation:name = "lib" && instrumentation:version = "1.2" }"#, "TRUE"),
        ("{ instrumentation.flag = true }", "scope_attributes['flag'] = 'true'"),
        (
            r#"{ trace:id = "05050505050505050505050505050505" }"#,
            "id_to_hex(trace_id) = '05050505050505050505050505050505'",
        ),
        (r#"{ span:id = "0702000000000001" }"#, "id_to_hex(span_id) = '0702000000000001'"),
        (r#"{ !(resource.service.name = "shop") }"#, "service_name <> 'shop'"),
        (r#"{ span.db.system = "postgresql" || status = error }"#, "db_system = 'postgresql' OR status_code = 'ERROR'"),
        (
            r#"{ span.db.system = "mysql" } || { resource.service.version = "2.0" }"#,
            "db_system = 'mysql' OR service_version = '2.0'",
        ),
        (
            r#"{ span.db.system = "mysql" } && { span.customer = "acme" }"#,
            "trace_id IN (SELECT trace_id FROM spans WHERE db_system = 'mysql') AND trace_id IN (SELECT trace_id FROM spans WHERE span_attributes['customer'] = 'acme')",
        ),
        (
            r#"{ span.db.system = "postgresql" } && { span.http.response.status_code = 500 } | select(span.customer)"#,
            "trace_id IN (SELECT trace_id FROM spans WHERE db_system = 'postgresql') AND trace_id IN (SELECT trace_id FROM spans WHERE http_status_code = 500)",
        ),
        // Structure: the client is the server's child, `pool.acquire` the
        // client's (odd traces), `publish` the client's sibling (t % 3 = 0).
        ("{ kind = server } > { kind = client }", "TRUE"),
        (r#"{ kind = client } > { name = "pool.acquire" }"#, ODD),
        (r#"{ kind = server } > { name = "pool.acquire" }"#, "FALSE"),
        (r#"{ kind = server } >> { name = "pool.acquire" }"#, ODD),
        (r#"{ name = "pool.acquire" } << { kind = server }"#, ODD),
        (r#"{ name = "pool.acquire" } < { kind = client }"#, ODD),
        (r#"{ name = "pool.acquire" } < { kind = server }"#, "FALSE"),
        ("{ kind = producer } ~ { kind = client }", THIRDS),
        ("{ kind = client } ~ { kind = client }", "FALSE"),
        ("{ kind = server } !> { kind = client }", "FALSE"),
        ("{ kind = client } !> { kind = server }", "TRUE"),
        (r#"{ kind = server } !>> { name = "pool.acquire" }"#, "FALSE"),
        (
            "{ kind = producer } !~ { kind = client }",
            "trace_id NOT IN (SELECT trace_id FROM spans WHERE span_kind = 'PRODUCER')",
        ),
        (r#"{ kind = client } &> { name = "pool.acquire" }"#, ODD),
        (
            r#"{ kind = server } &>> { name = "pool.acquire" } && { span.customer = "acme" }"#,
            "span_attributes['customer'] = 'acme' AND trace_id IN (SELECT trace_id FROM spans WHERE span_name = 'pool.acquire')",
        ),
        // Pipelines.
        ("{ } | count() > 2", "trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id HAVING count(*) > 2)"),
        ("{ kind = client || kind = producer } | count() > 1", THIRDS),
        (
            "{ } | avg(duration) > 20ms",
            "trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id HAVING avg(duration_ns) > 20000000)",
        ),
        (
            "{ } | max(duration) >= 61ms | min(duration) < 2ms",
            "trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id HAVING max(duration_ns) >= 61000000 AND min(duration_ns) < 2000000)",
        ),
        ("{ kind = server } | sum(span.retries) = 0", THIRDS),
        (
            "{ } | by(span.customer) | count() > 1",
            "trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id, span_attributes['customer'] HAVING count(*) > 1)",
        ),
        (
            "{ } | by(span.customer) | coalesce() | count() > 2",
            "trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id HAVING count(*) > 2)",
        ),
        ("{ kind = server } | { status = error }", "status_code = 'ERROR'"),
        // Children: servers have 1 (2 with a producer), clients 1 in odd traces.
        ("{ span:childCount > 1 }", THIRDS),
        (
            "{ span:childCount = 0 && kind = client }",
            "trace_id NOT IN (SELECT trace_id FROM spans WHERE span_name = 'pool.acquire')",
        ),
        (
            "{ childCount < 2 && kind = server }",
            "trace_id NOT IN (SELECT trace_id FROM spans WHERE span_name = 'publish')",
        ),
        ("{ 1 <= span:childCount && kind = client }", ODD),
        // Trace-level intrinsics.
        (r#"{ rootServiceName = "shop" }"#, "service_name = 'shop'"),
        (r#"{ rootName =~ "GET /item/[01]" && kind = client }"#, "span_name IN ('GET /item/0', 'GET /item/1')"),
        (r#"{ "cart" != rootServiceName }"#, "service_name = 'shop'"),
        (
            "{ traceDuration > 60ms }",
            "trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id HAVING max(duration_ns) > 60000000)",
        ),
        (
            "{ traceDuration <= 31ms } | count() > 3",
            "span_name = 'GET /item/0' AND trace_id IN (SELECT trace_id FROM spans GROUP BY trace_id HAVING max(duration_ns) <= 31000000 AND count(*) > 3)",
        ),
        // Roots, as Grafana asks for them.
        ("{ nestedSetParent < 0 && kind = client }", "FALSE"),
        ("{ nestedSetParent = -1 && span.cache.hit = true }", "span_attributes['cache.hit'] = 'true'"),
        ("{ nestedSetParent >= 1 && status = error }", "FALSE"),
        ("{ 0 < nestedSetParent && kind = client }", "TRUE"),
    ] {
        let parsed = TraceQl::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        let filter = SpanFilter { traceql: vec![parsed], ..SpanFilter::default() };
        let mut params = Params::default();
        let condition = filter.where_sql(&window, &mut params);
        let found = traces(&engine, &condition, params).await;
        let expected = traces(&engine, sql, Params::default()).await;
        assert_eq!(found, expected, "{query} (as {condition})");
        assert!(!found.is_empty() || sql == "FALSE", "{query}: the data should hold a match");
    }
}

/// Structural operators yield the right side's spans, and union forms both
/// sides' related spans: counted span by span.
#[tokio::test(flavor = "multi_thread")]
async fn structural_operators_yield_the_spans_they_relate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path()).await;
    let window = Window { start_ns: BASE, end_ns: BASE + 3_600_000 * MS };
    for (query, names) in [
        ("{ kind = server } > { }", vec![("SELECT", 12), ("publish", 4)]),
        ("{ kind = server } >> { }", vec![("SELECT", 12), ("pool.acquire", 6), ("publish", 4)]),
        (r#"{ name = "pool.acquire" } << { }"#, vec![("GET", 6), ("SELECT", 6)]),
        (r#"{ kind = client } &> { name = "pool.acquire" }"#, vec![("SELECT", 6), ("pool.acquire", 6)]),
        ("{ kind = producer } &~ { }", vec![("SELECT", 4), ("publish", 4)]),
        ("{ } ~ { }", vec![("SELECT", 4), ("publish", 4)]),
        ("{ kind = server } !> { }", vec![("GET", 12), ("pool.acquire", 6)]),
    ] {
        let filter = SpanFilter { traceql: vec![TraceQl::parse(query).expect(query)], ..SpanFilter::default() };
        let mut params = Params::default();
        let condition = filter.where_sql(&window, &mut params);
        let sql = format!(
            "SELECT CASE WHEN span_name LIKE 'GET%' THEN 'GET' ELSE CAST(span_name AS VARCHAR) END AS name, count(*) AS n
             FROM {SPANS_TABLE} WHERE {condition} GROUP BY 1 ORDER BY 1"
        );
        let mut found = Vec::new();
        for batch in engine.batches(&TenantId::default(), &sql, params).await.unwrap_or_else(|e| panic!("{query}: {e}"))
        {
            let c = Columns(&batch);
            let (names, counts) = (c.texts("name").expect("names"), c.ints("n").expect("counts"));
            for row in 0..batch.num_rows() {
                found.push((names.value(row).to_owned(), counts[row]));
            }
        }
        let expected: Vec<(String, i64)> = names.into_iter().map(|(n, c)| (n.to_owned(), c)).collect();
        assert_eq!(found, expected, "{query}");
    }
}

fn metric_series(series: &[Series]) -> Vec<(Vec<String>, Vec<f64>)> {
    series
        .iter()
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| match v {
                    LabelValue::Text(t) => format!("{k}={t}"),
                    LabelValue::Number(n) => format!("{k}={n}"),
                    LabelValue::Nil => format!("{k}=nil"),
                })
                .collect();
            (labels, s.samples.iter().map(|(_, v)| (v * 1e6).round() / 1e6).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_queries_answer_series_per_step_and_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path()).await;
    // Trace t starts at t seconds; steps of 4 s hold t = 0..3, 4..7, ...
    let window = Window { start_ns: BASE, end_ns: BASE + 16_000 * MS };
    let s = |labels: &[&str], values: &[f64]| (labels.iter().map(|l| l.to_string()).collect(), values.to_vec());
    for (query, step_s, expected) in [
        (
            "{ kind = server } | count_over_time() by (resource.service.name)",
            4,
            vec![
                s(&["resource.service.name=cart"], &[2.0, 2.0, 2.0, 0.0]),
                s(&["resource.service.name=shop"], &[1.0, 2.0, 2.0, 1.0]),
            ],
        ),
        ("{ kind = server && status = error } | rate()", 8, vec![s(&[], &[0.125, 0.25])]),
        (
            "{ kind = server } | quantile_over_time(duration, 0.5, 1)",
            16,
            vec![s(&["p=0.5"], &[0.066]), s(&["p=1"], &[0.121])],
        ),
        (
            "{ kind = client } | histogram_over_time(duration)",
            16,
            vec![
                s(&["__bucket=0.001048576"], &[1.0]),
                s(&["__bucket=0.002097152"], &[1.0]),
                s(&["__bucket=0.004194304"], &[2.0]),
                s(&["__bucket=0.008388608"], &[4.0]),
                s(&["__bucket=0.016777216"], &[4.0]),
            ],
        ),
        (
            "{ } | max_over_time(span.retries) by (name)",
            16,
            vec![s(&["name=GET /item/0"], &[0.0]), s(&["name=GET /item/1"], &[1.0]), s(&["name=GET /item/2"], &[2.0])],
        ),
        (
            "{ kind = server } | avg_over_time(duration) by (span.customer) | topk(1)",
            16,
            vec![s(&["span.customer=acme"], &[0.076])],
        ),
        ("{ } | count() > 3 | count_over_time()", 16, vec![s(&[], &[8.0])]),
        ("{ } | count() > 2 | count_over_time()", 16, vec![s(&[], &[26.0])]),
    ] {
        let parsed = TraceQlMetrics::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        let series = engine
            .traceql_metrics(&TenantId::default(), &parsed, window, step_s * 1000 * MS)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(metric_series(&series), expected, "{query}");
    }
}

#[test]
fn metrics_queries_refuse_what_they_cannot_answer() {
    for (query, column, message) in [
        ("{ }", 4, "ends in a metrics function"),
        ("{ } | rate(duration)", 7, "takes no argument"),
        ("{ } | quantile_over_time(duration)", 7, "one or more quantiles"),
        ("{ } | quantile_over_time(duration, 2)", 36, "from 0 to 1"),
        ("{ } | rate() | compare({ status = error })", 16, "only topk() or bottomk() may follow"),
        ("{ } | compare({ status = error }) | topk(1)", 37, "nothing may follow compare()"),
        ("{ } | compare({ status = error }, 0)", 35, "at least one value"),
        ("{ } | compare({ status = error }, 5, 100)", 38, "a start and an end"),
        ("{ } | compare({ status = error }, 5, 100, 50)", 43, "end comes after its start"),
        ("{ } | compare({ status = error }, name)", 35, "whole numbers after the spanset"),
        ("{ } | rate() | topk(0)", 16, "positive whole number"),
        ("{ } | rate() by (1)", 18, "by() takes attributes"),
    ] {
        let error = TraceQlMetrics::parse(query).expect_err(query);
        assert_eq!(error.column, column, "{query}: {error}");
        assert!(error.message.contains(message), "{query}: {error}");
    }
}

/// `compare()` against the fixture's server spans: errors (traces 4, 8 and
/// 12) set against the rest, on one attribute.
#[tokio::test(flavor = "multi_thread")]
async fn compare_sets_a_selection_against_the_baseline_value_by_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path()).await;
    let window = Window { start_ns: BASE, end_ns: BASE + 16_000 * MS };
    // One side's `resource.service.version` series: its values, most spans
    // first, then its total.
    let side = |kind: &str, values: &[(&str, f64)], total: f64| -> Vec<(Vec<String>, Vec<f64>)> {
        let key = "resource.service.version";
        let label = |kind: String, value: &str| vec![format!("__meta_type={kind}"), format!("{key}={value}")];
        let values = values.iter().map(|(value, n)| (label(kind.to_owned(), value), vec![*n]));
        values.chain([(label(format!("{kind}_total"), "nil"), vec![total])]).collect()
    };
    let too_many =
        (vec!["__meta_error=__too_many_values__".to_owned(), "resource.service.version=nil".to_owned()], vec![]);
    let (from, to) = (BASE + 5_000 * MS, BASE + 10_000 * MS);
    for (query, expected) in [
        (
            "{ kind = server } | compare({ status = error })".to_owned(),
            [
                side("baseline", &[("2.0", 5.0), ("1.0", 4.0)], 9.0),
                side("selection", &[("2.0", 2.0), ("1.0", 1.0)], 3.0),
            ]
            .concat(),
        ),
        (
            // Only trace 8's error starts between 5 s and 10 s.
            format!("{{ kind = server }} | compare({{ status = error }}, 10, {from}, {to})"),
            [side("baseline", &[("2.0", 6.0), ("1.0", 5.0)], 11.0), side("selection", &[("2.0", 1.0)], 1.0)].concat(),
        ),
        (
            // A selection with a subquery: traces 10 to 12 last over 100 ms.
            "{ kind = server } | compare({ traceDuration > 100ms })".to_owned(),
            [side("baseline", &[("1.0", 5.0), ("2.0", 4.0)], 9.0), side("selection", &[("2.0", 3.0)], 3.0)].concat(),
        ),
        (
            "{ kind = server } | compare({ status = error }, 1)".to_owned(),
            [side("baseline", &[("2.0", 5.0)], 9.0), side("selection", &[("2.0", 2.0)], 3.0), vec![too_many]].concat(),
        ),
    ] {
        let parsed = TraceQlMetrics::parse(&query).unwrap_or_else(|e| panic!("{query}: {e}"));
        let series = engine
            .traceql_metrics(&TenantId::default(), &parsed, window, 16_000 * MS)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let all = metric_series(&series);
        let version: Vec<_> =
            all.iter().filter(|(labels, _)| labels[1].starts_with("resource.service.version=")).cloned().collect();
        assert_eq!(version, expected, "{query}");
        // Intrinsics and span attributes are compared too.
        for wanted in ["status=error", "kind=server", "span.customer=acme", "span.http.response.status_code=500"] {
            assert!(all.iter().any(|(labels, _)| labels[1] == wanted), "{query}: no {wanted} in {all:?}");
        }
    }
}

/// A key with more values than a tag summary keeps (a session id) counts
/// in its totals alone, reported as having too many values; the others
/// are still told apart.
#[tokio::test(flavor = "multi_thread")]
async fn compare_counts_a_many_valued_key_in_its_totals_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = test_support::storage(dir.path()).await;
    let spans: Vec<Span> = (0..100u8)
        .map(|i| {
            let start = BASE + i64::from(i) * MS;
            Span {
                trace_id: vec![i + 1; 16],
                span_id: vec![i + 1; 8],
                name: "GET /".into(),
                kind: 2,
                start_time_unix_nano: start as u64,
                end_time_unix_nano: (start + MS) as u64,
                attributes: vec![
                    kv("session", text(&format!("s{i}"))),
                    kv("tier", text(if i % 2 == 0 { "gold" } else { "free" })),
                ],
                status: Some(Status { code: if i % 10 == 0 { 2 } else { 1 }, message: String::new() }),
                ..Default::default()
            }
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", text("shop"))], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let tenant = TenantId::default();
    storage
        .write(&tenant, storage.decode(ExportBody::Protobuf(Bytes::from(request.encode_to_vec()))).expect("decodes"))
        .await
        .expect("written");
    storage.flush().await.expect("flushed");
    let engine = QueryEngine::new(storage, QueryLimits::default()).expect("engine");
    let query = TraceQlMetrics::parse("{ } | compare({ status = error })").expect("parses");
    let window = Window { start_ns: BASE, end_ns: BASE + 1000 * MS };
    let series = engine.traceql_metrics(&tenant, &query, window, 1000 * MS).await.expect("answers");
    let all = metric_series(&series);
    let about = |key: &str| -> Vec<(Vec<String>, Vec<f64>)> {
        all.iter().filter(|(labels, _)| labels[1].starts_with(&format!("{key}="))).cloned().collect()
    };
    let s =
        |labels: [&str; 2], values: &[f64]| (labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(), values.to_vec());
    assert_eq!(
        about("span.session"),
        vec![
            s(["__meta_type=baseline_total", "span.session=nil"], &[90.0]),
            s(["__meta_type=selection_total", "span.session=nil"], &[10.0]),
            s(["__meta_error=__too_many_values__", "span.session=nil"], &[]),
        ]
    );
    assert_eq!(
        about("span.tier"),
        vec![
            s(["__meta_type=baseline", "span.tier=free"], &[50.0]),
            s(["__meta_type=baseline", "span.tier=gold"], &[40.0]),
            s(["__meta_type=baseline_total", "span.tier=nil"], &[90.0]),
            s(["__meta_type=selection", "span.tier=gold"], &[10.0]),
            s(["__meta_type=selection_total", "span.tier=nil"], &[10.0]),
        ]
    );
}
