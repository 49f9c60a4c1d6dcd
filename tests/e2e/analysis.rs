//! The version and retry analyses on known answers, with spans made by the
//! real Rust OpenTelemetry SDK and exported over OTLP/HTTP: the canary
//! verdict (a candidate slower on one operation only; no difference at all,
//! on several seeds; too few requests), its statistics against scipy on
//! the same samples, who calls an old version until it stops (`safeToRemove`
//! flips), retries with and without a timeout, abandoned server work, and a
//! hop whose client-minus-server time is known; each through the API, the
//! SQL table functions and the trace page.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::fixture::get_ok;
use crate::harness::{TestServer, python};
use crate::otlp_rust::{Transport, exporter};

/// One service version's SDK: its resource and a batch exporter to the server.
struct Sdk {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Sdk {
    fn new(server: &TestServer, service: &str, version: &str) -> Self {
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attributes([KeyValue::new("service.version", version.to_owned())])
            .build();
        let config =
            BatchConfigBuilder::default().with_max_queue_size(200_000).with_max_export_batch_size(4096).build();
        let processor =
            BatchSpanProcessor::builder(exporter(Transport::HttpProtobuf, server)).with_batch_config(config).build();
        let provider = SdkTracerProvider::builder().with_resource(resource).with_span_processor(processor).build();
        let tracer = provider.tracer("spanlake-e2e-analysis");
        Self { provider, tracer }
    }

    /// A span of `kind` from `start` for `duration`, under `parent` (a span
    /// of any service), failed with `error`, with events at its start
    /// (name, attributes); its context.
    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        name: &str,
        kind: SpanKind,
        parent: Option<&SpanContext>,
        (start, duration): (SystemTime, Duration),
        error: Option<&str>,
        attributes: Vec<KeyValue>,
        events: Vec<(&'static str, Vec<KeyValue>)>,
    ) -> SpanContext {
        let cx = match parent {
            Some(parent) => Context::new().with_remote_span_context(parent.clone()),
            None => Context::new(),
        };
        let mut span = self
            .tracer
            .span_builder(name.to_owned())
            .with_kind(kind)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &cx);
        for (event, attributes) in events {
            span.add_event_with_timestamp(event, start, attributes);
        }
        if let Some(message) = error {
            span.set_status(Status::error(message.to_owned()));
        }
        let context = span.span_context().clone();
        span.end_with_timestamp(start + duration);
        context
    }

    fn finish(self) {
        self.provider.force_flush().expect("flush the exporter");
        self.provider.shutdown().expect("shut the provider down");
    }
}

fn ms(n: f64) -> Duration {
    Duration::from_secs_f64(n / 1000.0)
}

/// The samples one version served, per operation: durations (ns) and errors.
#[derive(Debug, Default, Clone)]
struct Served(BTreeMap<String, (Vec<u64>, u64)>);

/// Root SERVER spans of `version` of `service`: per operation `n` requests
/// lasting `latency(rng, operation)` ms, failing with probability `error_rate(operation)`.
fn serve(
    server: &TestServer,
    (service, version): (&str, &str),
    start: SystemTime,
    n: usize,
    rng: &mut StdRng,
    shape: impl Fn(&mut StdRng, &str) -> (f64, bool),
) -> Served {
    let sdk = Sdk::new(server, service, version);
    let mut served = Served::default();
    for operation in ["GET /items", "POST /orders"] {
        for i in 0..n {
            let (latency_ms, failed) = shape(rng, operation);
            // Whole microseconds, as they go over the wire and come back.
            let duration = Duration::from_micros((latency_ms * 1000.0).round() as u64);
            let at = start + Duration::from_millis(i as u64);
            sdk.span(operation, SpanKind::Server, None, (at, duration), failed.then_some("failed"), vec![], vec![]);
            let entry = served.0.entry(operation.to_owned()).or_default();
            entry.0.push(duration.as_nanos() as u64);
            entry.1 += u64::from(failed);
        }
    }
    sdk.finish();
    served
}

/// A latency around `typical` ms: log-normal, as service latencies are.
fn lognormal(rng: &mut StdRng, typical: f64) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    typical * (0.4 * z).exp()
}

async fn compare(server: &TestServer, service: &str, baseline: &str, candidate: &str) -> Value {
    get_ok(
        server,
        &format!("/api/v1/versions/compare?service={service}&baseline={baseline}&candidate={candidate}&lookback=2h"),
    )
    .await
}

fn operation<'a>(comparison: &'a Value, name: &str) -> &'a Value {
    comparison["operations"].as_array().unwrap().iter().find(|o| o["operation"] == name).unwrap_or_else(|| {
        panic!("no operation {name} in {comparison}");
    })
}

/// scipy's Mann-Whitney U (asymptotic, tie and continuity corrected) and
/// chi-square without Yates' correction on the same samples.
fn scipy(baseline: &(Vec<u64>, u64), candidate: &(Vec<u64>, u64)) -> Option<Value> {
    let python = python()?;
    let script = r#"
import json, sys
from scipy.stats import mannwhitneyu, chi2_contingency
d = json.load(sys.stdin)
u = mannwhitneyu(d["candidate"], d["baseline"], alternative="two-sided", method="asymptotic", use_continuity=True)
table = [[d["baseline_errors"], len(d["baseline"]) - d["baseline_errors"]],
         [d["candidate_errors"], len(d["candidate"]) - d["candidate_errors"]]]
errors = None if 0 in (table[0][0] + table[1][0], table[0][1] + table[1][1]) else chi2_contingency(table, correction=False).pvalue
print(json.dumps({"u": float(u.statistic), "p": float(u.pvalue), "errors_p": errors}))
"#;
    let input = json!({
        "baseline": baseline.0, "baseline_errors": baseline.1,
        "candidate": candidate.0, "candidate_errors": candidate.1,
    });
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run scipy");
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "scipy failed");
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + 1e-6 * a.abs().max(b.abs())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_canary_verdict_finds_the_slower_operation_and_no_false_alarms() {
    let server = TestServer::start().await;
    let start = SystemTime::now() - Duration::from_secs(1800);
    // Enough requests to see a shift of the minimal size (docs/analysis.md):
    // errors of 1% doubled take 3,290 per version and operation.
    let n = 3400;

    // The candidate is slower (×1.25) and fails more (6% against 1%) on POST /orders only.
    let mut rng = StdRng::seed_from_u64(19);
    let shape = |slower: bool| {
        move |rng: &mut StdRng, operation: &str| {
            let worse = slower && operation == "POST /orders";
            let latency = lognormal(rng, if worse { 50.0 } else { 40.0 });
            (latency, rng.random_bool(if worse { 0.06 } else { 0.01 }))
        }
    };
    let stable = serve(&server, ("shop", "1.0.0"), start, n, &mut rng, shape(false));
    let canary = serve(&server, ("shop", "1.1.0"), start, n, &mut rng, shape(true));
    // Seeds of a candidate no different from its baseline.
    let seeds = [1u64, 2, 3];
    for seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let service = format!("steady-{seed}");
        serve(&server, (&service, "1.0.0"), start, n, &mut rng, shape(false));
        serve(&server, (&service, "2.0.0"), start, n, &mut rng, shape(false));
    }
    // Too few requests to tell.
    let mut rng = StdRng::seed_from_u64(4);
    serve(&server, ("fresh", "1.0.0"), start, 30, &mut rng, shape(false));
    serve(&server, ("fresh", "1.1.0"), start, 30, &mut rng, shape(true));

    let comparison = compare(&server, "shop", "1.0.0", "1.1.0").await;
    assert_eq!(comparison["verdict"], "worse", "{comparison}");
    let orders = operation(&comparison, "POST /orders");
    assert_eq!(orders["verdict"], "worse");
    assert!(orders["latency"]["probabilitySlower"].as_f64().unwrap() > 0.6, "{orders}");
    assert!(orders["errors"]["difference"].as_f64().unwrap() > 0.02);
    let items = operation(&comparison, "GET /items");
    assert_eq!(items["verdict"], "no difference", "{items}");
    assert_eq!(items["baseline"]["requests"], n);
    // Both versions' histograms share their buckets and count every request.
    let histogram = orders["histogram"].as_array().unwrap();
    let (b, c) = histogram
        .iter()
        .fold((0, 0), |(b, c), x| (b + x["baseline"].as_i64().unwrap(), c + x["candidate"].as_i64().unwrap()));
    assert_eq!((b, c), (n as i64, n as i64));
    assert!(histogram.windows(2).all(|w| w[0]["upperNs"] == w[1]["lowerNs"]), "contiguous buckets");

    // The same statistics as scipy on the same samples.
    for name in ["POST /orders", "GET /items"] {
        let ours = operation(&comparison, name);
        let Some(reference) = scipy(&stable.0[name], &canary.0[name]) else { break };
        assert!(close(ours["latency"]["u"].as_f64().unwrap(), reference["u"].as_f64().unwrap()), "{ours} {reference}");
        assert!(
            close(ours["latency"]["pValue"].as_f64().unwrap(), reference["p"].as_f64().unwrap()),
            "{ours} {reference}"
        );
        if let Some(p) = reference["errors_p"].as_f64() {
            assert!(close(ours["errors"]["pValue"].as_f64().unwrap(), p), "{ours} {reference}");
        }
    }

    for seed in seeds {
        let comparison = compare(&server, &format!("steady-{seed}"), "1.0.0", "2.0.0").await;
        assert_eq!(comparison["verdict"], "no difference", "seed {seed}: {comparison}");
        for o in comparison["operations"].as_array().unwrap() {
            assert_eq!(o["verdict"], "no difference", "seed {seed}: {o}");
        }
    }

    let comparison = compare(&server, "fresh", "1.0.0", "1.1.0").await;
    let needed = comparison["overall"]["neededPerVersion"].as_i64().unwrap();
    assert_eq!(comparison["overall"]["verdict"], "not enough data", "{comparison}");
    assert!(needed > 60, "the sample it would need: {needed}");

    // The table function answers the same verdicts.
    let rows = server
        .sql("SELECT operation, verdict, latency_p_value FROM version_compare('shop', '1.0.0', '1.1.0', INTERVAL '2 hours') ORDER BY operation NULLS FIRST")
        .await;
    let rows = rows["rows"].as_array().unwrap();
    assert_eq!(rows[0], json!([null, "worse", comparison_overall_p(&server).await]));
    assert_eq!((&rows[1][0], &rows[1][1]), (&json!("GET /items"), &json!("no difference")));
    assert_eq!((&rows[2][0], &rows[2][1]), (&json!("POST /orders"), &json!("worse")));

    // Bad requests are 400s that name the parameter.
    let (status, body) =
        crate::fixture::get(&server, "/api/v1/versions/compare?service=shop&baseline=a&candidate=b&alpha=2").await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("alpha"), "{body}");
    let (status, _) = crate::fixture::get(&server, "/api/v1/versions/compare?service=shop").await;
    assert_eq!(status, 400);
}

async fn comparison_overall_p(server: &TestServer) -> Value {
    compare(server, "shop", "1.0.0", "1.1.0").await["overall"]["latency"]["pValue"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_of_an_old_version_until_it_is_safe_to_remove() {
    let server = TestServer::start().await;
    let now = SystemTime::now();
    let (old_web, new_web) = (Sdk::new(&server, "web", "1.0"), Sdk::new(&server, "web", "2.0"));
    let (old_api, new_api) = (Sdk::new(&server, "api", "0.9"), Sdk::new(&server, "api", "1.0"));
    let call = |client: &Sdk, server_sdk: &Sdk, at: SystemTime, error: bool| {
        let root = client.span("GET /", SpanKind::Server, None, (at, ms(20.0)), None, vec![], vec![]);
        let call = client.span(
            "GET /api",
            SpanKind::Client,
            Some(&root),
            (at + ms(1.0), ms(15.0)),
            error.then_some("503"),
            vec![],
            vec![],
        );
        server_sdk.span(
            "GET /api",
            SpanKind::Server,
            Some(&call),
            (at + ms(2.0), ms(12.0)),
            error.then_some("503"),
            vec![],
            vec![],
        );
    };
    // The old web calls the old api from 50 to 40 minutes ago, then stops;
    // the new web calls the new api all along.
    for i in 0..100u64 {
        call(&old_web, &old_api, now - Duration::from_secs(3000) + Duration::from_secs(6 * i), i % 10 == 0);
    }
    for i in 0..300u64 {
        call(&new_web, &new_api, now - Duration::from_secs(3000) + Duration::from_secs(10 * i), false);
    }
    for sdk in [old_web, new_web, old_api, new_api] {
        sdk.finish();
    }

    let callers = get_ok(&server, "/api/v1/versions/callers?service=api&version=0.9&lookback=1h").await;
    assert_eq!(callers["safeToRemove"], false, "{callers}");
    assert_eq!(callers["calls"], 100);
    assert_eq!(
        callers["peers"],
        json!([{
            "service": "web", "version": "1.0", "calls": 100, "errors": 10,
            "lastCallUnixNano": callers["peers"][0]["lastCallUnixNano"],
        }])
    );
    let last = callers["peers"][0]["lastCallUnixNano"].as_i64().unwrap();
    let expected = (now - Duration::from_secs(3000 - 6 * 99) + ms(2.0)).duration_since(SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(last, expected.as_nanos() as i64, "the last call is the last server span's start");

    // In the last half hour nothing reached it: safe to remove. The new one is still called.
    let recent = get_ok(&server, "/api/v1/versions/callers?service=api&version=0.9&lookback=30m").await;
    assert_eq!((recent["safeToRemove"].clone(), recent["calls"].clone()), (json!(true), json!(0)), "{recent}");
    assert_eq!(recent["peers"], json!([]));
    let current = get_ok(&server, "/api/v1/versions/callers?service=api&version=1.0&lookback=30m").await;
    assert_eq!(current["safeToRemove"], false);
    assert_eq!(current["peers"][0]["version"], "2.0");

    // The inverse: what the old web reaches.
    let callees = get_ok(&server, "/api/v1/versions/callees?service=web&version=1.0&lookback=1h").await;
    let reached: Vec<(Value, Value, Value)> = callees["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["service"].clone(), p["version"].clone(), p["calls"].clone()))
        .collect();
    assert_eq!(reached, vec![(json!("api"), json!("0.9"), json!(100))]);

    // The versions list, the graph by version and the table functions agree.
    let versions = get_ok(&server, "/api/v1/versions?service=api&lookback=1h").await;
    let listed: BTreeMap<String, (i64, i64)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                (v["requests"].as_i64().unwrap(), v["errors"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(listed, BTreeMap::from([("0.9".to_owned(), (100, 10)), ("1.0".to_owned(), (300, 0))]));
    let share: f64 = versions["versions"].as_array().unwrap().iter().map(|v| v["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-9);
    let graph = get_ok(&server, "/api/v1/dependencies?groupBy=service.version&lookback=1h").await;
    let edges: Vec<(Value, Value, Value, Value, Value)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["parent"].clone(),
                e["parentVersion"].clone(),
                e["child"].clone(),
                e["childVersion"].clone(),
                e["callCount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        vec![
            (json!("web"), json!("1.0"), json!("api"), json!("0.9"), json!(100)),
            (json!("web"), json!("2.0"), json!("api"), json!("1.0"), json!(300)),
        ]
    );
    let rows = server
        .sql("SELECT service, version, calls, errors FROM version_callers('api', '0.9', INTERVAL '1 hour')")
        .await;
    assert_eq!(rows["rows"], json!([["web", "1.0", 100, 10]]));
    let rows = server.sql("SELECT count(*) FROM version_callers('api', '0.9', INTERVAL '30 minutes')").await;
    assert_eq!(rows["rows"], json!([[0]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_timeouts_abandoned_work_and_the_cost_of_a_hop() {
    let server = TestServer::start().await;
    let at = SystemTime::now() - Duration::from_secs(600);
    let (gateway, orders) = (Sdk::new(&server, "gateway", "1.0"), Sdk::new(&server, "orders", "1.0"));
    let size = |bytes: i64| vec![KeyValue::new("http.response.body.size", bytes)];
    // One call: the client starts 2 ms before the server and ends 3 ms after
    // it (a 5 ms hop), unless it gives up first.
    let attempt = |parent: &SpanContext,
                   start: SystemTime,
                   server_ms: f64,
                   client_error: Option<&str>,
                   client_ms: Option<f64>| {
        let client_ms = client_ms.unwrap_or(server_ms + 5.0);
        // gRPC's message events carry the request's size.
        let sent = vec![(
            "message",
            vec![KeyValue::new("rpc.message.type", "SENT"), KeyValue::new("rpc.message.uncompressed_size", 300)],
        )];
        let client = gateway.span(
            "GET /orders",
            SpanKind::Client,
            Some(parent),
            (start, ms(client_ms)),
            client_error,
            size(1000),
            sent,
        );
        let server_error = client_error.filter(|_| client_ms > server_ms);
        orders.span(
            "GET /orders",
            SpanKind::Server,
            Some(&client),
            (start + ms(2.0), ms(server_ms)),
            server_error,
            vec![],
            vec![],
        );
    };
    let root = |offset_ms: f64| {
        gateway.span("GET /checkout", SpanKind::Server, None, (at + ms(offset_ms), ms(900.0)), None, vec![], vec![])
    };
    // A: a timeout after 100 ms while the server works 250 ms (152 ms
    // abandoned), then a retry that succeeds.
    let a = root(0.0);
    attempt(&a, at + ms(1.0), 250.0, Some("deadline exceeded"), Some(100.0));
    attempt(&a, at + ms(110.0), 20.0, None, None);
    // B: a 503, then a retry (no timeout, nothing abandoned).
    let b = root(1000.0);
    attempt(&b, at + ms(1001.0), 10.0, Some("HTTP 503"), None);
    attempt(&b, at + ms(1020.0), 10.0, None, None);
    // C: three calls in a row that succeed: no retries.
    let c = root(2000.0);
    for i in 0..3 {
        attempt(&c, at + ms(2001.0 + 20.0 * f64::from(i)), 10.0, None, None);
    }
    // D: two overlapping calls, one failed: no retry either.
    let d = root(3000.0);
    attempt(&d, at + ms(3001.0), 30.0, Some("HTTP 500"), None);
    attempt(&d, at + ms(3010.0), 30.0, None, None);
    // E: one attempt that says it is the first resend (its first attempt left no span).
    let resent = root(4000.0);
    let resend = gateway.span(
        "GET /orders",
        SpanKind::Client,
        Some(&resent),
        (at + ms(4001.0), ms(15.0)),
        None,
        vec![KeyValue::new("http.request.resend_count", 1)],
        vec![],
    );
    orders.span("GET /orders", SpanKind::Server, Some(&resend), (at + ms(4003.0), ms(10.0)), None, vec![], vec![]);
    gateway.finish();
    orders.finish();

    let retries = get_ok(&server, "/api/v1/retries?service=orders&lookback=1h").await;
    let edges = retries["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{retries}");
    let e = &edges[0];
    assert_eq!(
        (e["client"].as_str(), e["server"].as_str(), e["operation"].as_str()),
        (Some("gateway"), Some("orders"), Some("GET /orders"))
    );
    assert_eq!(
        (e["calls"].as_i64(), e["retries"].as_i64(), e["logicalCalls"].as_i64()),
        (Some(10), Some(3), Some(7)),
        "{e}"
    );
    assert!((e["amplification"].as_f64().unwrap() - 10.0 / 7.0).abs() < 1e-9);
    assert_eq!(
        (e["errors"].as_i64(), e["timeouts"].as_i64(), e["abandoned"].as_i64()),
        (Some(3), Some(1), Some(1)),
        "{e}"
    );
    // The server ran from 3 ms to 253 ms; the client gave up at 101 ms.
    assert!((e["abandonedMs"].as_f64().unwrap() - 152.0).abs() < 0.01, "{e}");
    let rows = server.sql("SELECT retries, abandoned FROM retries('gateway', INTERVAL '1 hour')").await;
    assert_eq!(rows["rows"], json!([[3, 1]]));

    // The hop: 5 ms between client and server on every call but the abandoned one.
    let graph = get_ok(&server, "/api/v1/dependencies?lookback=1h").await;
    let edge = graph["edges"].as_array().unwrap().iter().find(|e| e["child"] == "orders").expect("gateway → orders");
    let hop = &edge["hop"];
    assert_eq!(hop["linkedCalls"], 10, "{edge}");
    assert!((hop["gapP50Ms"].as_f64().unwrap() / 5.0 - 1.0).abs() < 0.022, "{hop}");
    assert_eq!(hop["responseBytes"], 1000.0);
    assert_eq!(hop["requestBytes"], 300.0, "summed from the message events");
    let sizes = server
        .sql("SELECT sum(event_attribute_sum(events, 'rpc.message.uncompressed_size', 'rpc.message.type', 'SENT')), \
                     count(event_attribute_sum(events, 'rpc.message.uncompressed_size', 'rpc.message.type', 'RECEIVED')) \
              FROM spans WHERE span_kind = 'CLIENT'")
        .await;
    assert_eq!(sizes["rows"], json!([[2700, 0]]), "nine attempts sent 300 bytes; none received a message");

    // The trace page marks the retry and the abandoned work.
    let trace_id = a.trace_id().to_string();
    let page = reqwest::get(server.api_url(&format!("/traces/{trace_id}"))).await.unwrap().text().await.unwrap();
    assert_eq!(page.matches("class=\"mark retry\"").count(), 2, "the legend and the retried call");
    assert!(page.contains("abandoned +152"), "the abandoned server span is marked");
    let page = reqwest::get(server.api_url(&format!("/traces/{}", c.trace_id()))).await.unwrap().text().await.unwrap();
    assert_eq!(page.matches("class=\"mark retry\"").count(), 1, "calls in a row are no retries: only the legend");
    let page =
        reqwest::get(server.api_url(&format!("/traces/{}", resent.trace_id()))).await.unwrap().text().await.unwrap();
    assert!(page.contains(">retry #1<"), "a resend is a retry");
}
