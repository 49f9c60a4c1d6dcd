//! A real cluster on one machine: two collectors, two query nodes and two
//! compactors over one S3 bucket (moto), each its own `spanlake serve
//! --roles …` process, fed by the OpenTelemetry SDK's exporters and plain
//! OTLP/HTTP, and checked against a single `--roles all` node over the
//! same bucket.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

use crate::harness::{S3Server, TestServer, free_port};
use crate::otlp_rust::{Transport, exporter};

const BUCKET: &str = "cluster";

struct Cluster {
    s3: S3Server,
    flight: [SocketAddr; 2],
    collectors: Vec<TestServer>,
    queries: Vec<TestServer>,
    compactors: Vec<TestServer>,
}

fn urls(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",")
}

impl Cluster {
    async fn start() -> Option<Self> {
        let s3 = S3Server::start().await?;
        s3.create_bucket(BUCKET).await;
        let (flight, workers) = ([free_port(), free_port()], [free_port(), free_port()]);
        let base = || s3.options(BUCKET, "").arg("--query-timeout", "30s").arg("--delete-grace", "1h");
        let mut collectors = Vec::new();
        for addr in flight {
            // Flushes only once 1000 spans are buffered: the first spans stay
            // in the collectors' buffers until the test sends more.
            let options = base()
                .arg("--roles", "collector")
                .arg("--flight-addr", &addr.to_string())
                .arg("--flush-interval", "1h")
                .arg("--flush-rows", "1000");
            collectors.push(TestServer::start_with(options).await);
        }
        let mut queries = Vec::new();
        for addr in workers {
            // One byte per partition: every scan is spread over both workers.
            let options = base()
                .arg("--roles", "query")
                .arg("--worker-addr", &addr.to_string())
                .arg("--collectors", &urls(&flight))
                .arg("--query-workers", &urls(&workers))
                .arg("--query-worker-bytes", "1")
                .arg("--catalog-refresh", "200ms");
            queries.push(TestServer::start_with(options).await);
        }
        let mut compactors = Vec::new();
        for _ in 0..2 {
            let options = base()
                .arg("--roles", "compactor")
                .arg("--compactor-lease", "2s")
                .arg("--compaction-interval", "300ms")
                .arg("--compaction-min-files", "2");
            compactors.push(TestServer::start_with(options).await);
        }
        Some(Self { s3, flight, collectors, queries, compactors })
    }

    fn logs(&self) -> String {
        let all = self.collectors.iter().chain(&self.queries).chain(&self.compactors);
        all.enumerate().map(|(i, s)| format!("=== process {i}\n{}", s.log())).collect()
    }

    async fn span_files(&self) -> usize {
        self.s3.keys(BUCKET, "default/spans/").await.len()
    }
}

/// `traces` traces of two spans from the OpenTelemetry SDK's exporter to
/// `server`; returns their ids once the exporter has flushed (acknowledged).
fn sdk_traces(server: &TestServer, transport: Transport, service: &str, traces: usize) -> Vec<String> {
    let resource = Resource::builder_empty().with_service_name(service.to_owned()).build();
    let provider =
        SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter(transport, server)).build();
    let tracer = provider.tracer("cluster-e2e");
    let mut ids = Vec::new();
    for i in 0..traces {
        let root = tracer.span_builder("GET /cart").with_kind(SpanKind::Server).start(&tracer);
        ids.push(root.span_context().trace_id().to_string());
        let cx = Context::current().with_span(root);
        let mut child = tracer
            .span_builder("SELECT cart")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("db.system", "postgresql"), KeyValue::new("i", i as i64)])
            .start_with_context(&tracer, &cx);
        child.end();
        cx.span().end();
    }
    provider.force_flush().expect("the collector acknowledged the export");
    provider.shutdown().expect("shut the provider down");
    ids
}

/// One OTLP/JSON export of `spans` spans of one trace.
fn export(trace: u64, service: &str, spans: u64) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans: Vec<_> = (1..=spans)
        .map(|i| {
            json!({"traceId": format!("{trace:032x}"), "spanId": format!("{:016x}", trace * 1000 + i),
                   "name": format!("op-{}", i % 3), "kind": 2,
                   "startTimeUnixNano": (now + i).to_string(), "endTimeUnixNano": (now + i + 1000 * i).to_string()})
        })
        .collect();
    let service = json!({"key": "service.name", "value": {"stringValue": service}});
    json!({"resourceSpans": [{"resource": {"attributes": [service]}, "scopeSpans": [{"spans": spans}]}]})
}

/// Posts an export; whether the collector acknowledged it.
async fn send(server: &TestServer, body: &Value) -> bool {
    let response =
        reqwest::Client::new().post(server.otlp_http_url()).timeout(Duration::from_secs(10)).json(body).send().await;
    response.is_ok_and(|r| r.status() == 200)
}

async fn wait_for(what: &str, cluster: &Cluster, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "{what} did not happen:\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `(trace id, spans)` of every trace, as one node sees them.
async fn traces_seen(server: &TestServer) -> Vec<(String, i64)> {
    let body = server.sql("SELECT id_to_hex(trace_id), count(*) FROM spans GROUP BY 1 ORDER BY 1").await;
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect()
}

async fn get(server: &TestServer, path: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::get(server.api_url(path)).await.expect("request");
    let status = response.status().as_u16();
    let partial = response.headers().get("spanlake-partial").map(|v| v.to_str().unwrap().to_owned());
    (status, partial, response.json().await.unwrap_or(Value::Null))
}

/// The answers a user compares between a cluster and a single node, over
/// the window `[start_ms, end_ms]`.
async fn answers(server: &TestServer, (start_ms, end_ms): (u128, u128)) -> Vec<Value> {
    let mut answers = Vec::new();
    for sql in [
        "SELECT service_name, span_name, count(*), sum(duration_ns), max(duration_ns) FROM spans GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT count(DISTINCT trace_id), count(DISTINCT span_id) FROM spans",
    ] {
        answers.push(server.sql(sql).await["rows"].clone());
    }
    let window = format!("start={start_ms}&end={end_ms}");
    for path in [
        format!("/api/v1/search?{window}&limit=20"),
        format!("/api/v1/search?service=loadgen&{window}&limit=20&sort=duration_desc"),
        format!("/api/v1/dependencies?{window}"),
        format!("/api/v1/latency?service=loadgen&{window}"),
        "/api/v1/services".to_owned(),
    ] {
        let (status, _, body) = get(server, &path).await;
        assert_eq!(status, 200, "{path}: {body}\n{}", server.log());
        answers.push(body);
    }
    answers
}

/// Equal JSON, but for latency quantiles (`p50Ms`...): approximate
/// (t-digest), they depend on the order digests merge in, which the
/// cluster's tasks change; they must agree within 1 %.
fn same(actual: &[Value], expected: &[Value], path: &str) -> Result<(), String> {
    fn walk(a: &Value, e: &Value, path: &str) -> Result<(), String> {
        match (a, e) {
            (Value::Array(a), Value::Array(e)) if a.len() == e.len() => {
                a.iter().zip(e).enumerate().try_for_each(|(i, (a, e))| walk(a, e, &format!("{path}[{i}]")))
            }
            (Value::Object(a), Value::Object(e)) if a.keys().eq(e.keys()) => {
                a.iter().zip(e).try_for_each(|((k, a), (_, e))| walk(a, e, &format!("{path}.{k}")))
            }
            (Value::Number(a), Value::Number(e))
                if path.ends_with("Ms") && (path.contains(".p5") || path.contains(".p9")) =>
            {
                let (a, e) = (a.as_f64().unwrap(), e.as_f64().unwrap());
                if (a - e).abs() <= e.abs() * 0.01 { Ok(()) } else { Err(format!("{path}: {a} against {e}")) }
            }
            _ if a == e => Ok(()),
            _ => Err(format!("{path}: {a} against one node's {e}")),
        }
    }
    walk(&Value::Array(actual.to_vec()), &Value::Array(expected.to_vec()), path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_of_collectors_query_nodes_and_compactors_loses_nothing_and_answers_like_one_node() {
    let Some(mut cluster) = Cluster::start().await else { return };

    // 1. The SDK's exporters send to both collectors; both query nodes see
    //    every acknowledged span before any flush.
    let (c0, c1) = (&cluster.collectors[0], &cluster.collectors[1]);
    let mut acknowledged: BTreeSet<String> = tokio::task::block_in_place(|| {
        let mut ids = sdk_traces(c0, Transport::Grpc, "cart", 40);
        ids.extend(sdk_traces(c1, Transport::HttpProtobuf, "shop", 40));
        ids.into_iter().collect()
    });
    assert_eq!(cluster.span_files().await, 0, "nothing flushed yet");
    for query in &cluster.queries {
        let seen = traces_seen(query).await;
        let ids: BTreeSet<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(ids, acknowledged, "every acknowledged trace through {}:\n{}", query.api_url(""), cluster.logs());
        assert!(seen.iter().all(|(_, n)| *n == 2), "each span once: {seen:?}");
    }

    // 2. Load on both collectors; one is killed (SIGKILL) in the middle and
    //    started again. While it is down, answers say they are partial.
    let mut sent_spans = 80 * 2;
    for round in 0..30u64 {
        if round == 12 {
            cluster.collectors[1].crash();
            let (status, partial, body) = get(&cluster.queries[0], "/api/v1/search?lookback=1h").await;
            assert_eq!(status, 200, "answers go on without the dead collector: {body}");
            let partial = partial.expect("a partial answer says so");
            assert!(partial.contains(&cluster.flight[1].to_string()), "names the dead collector: {partial}");
            let (status, partial, _) = get(&cluster.queries[1], "/api/v1/services").await;
            assert_eq!((status, partial.is_some()), (200, true));
        }
        if round == 18 {
            cluster.collectors[1].start_again().await;
        }
        for (i, collector) in cluster.collectors.iter().enumerate() {
            let trace = 1_000 + round * 10 + i as u64;
            if collector.is_running() && send(collector, &export(trace, "loadgen", 100)).await {
                acknowledged.insert(format!("{trace:032x}"));
                sent_spans += 100;
            }
        }
    }
    assert!(sent_spans > 4000, "the load flushed files: {sent_spans} spans");
    wait_for("flushed files", &cluster, async || cluster.span_files().await >= 4).await;
    let (status, partial, _) = get(&cluster.queries[0], "/api/v1/services").await;
    assert_eq!((status, partial), (200, None), "both collectors answer again");
    for query in &cluster.queries {
        let seen = traces_seen(query).await;
        let ids: BTreeSet<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        let missing: Vec<&String> = acknowledged.difference(&ids).collect();
        assert!(missing.is_empty(), "acknowledged traces lost: {missing:?}\n{}", cluster.logs());
        let (traces, spans) = (seen.len() as i64, seen.iter().map(|(_, n)| n).sum::<i64>());
        let distinct = query.sql_scalar("SELECT count(DISTINCT span_id) FROM spans").await.as_i64().unwrap();
        assert_eq!(distinct, spans, "no span twice ({traces} traces)");
    }

    // 3. The compactor holding the lease is killed; the other takes over
    //    and compacts. Files are never double-compacted: every span once.
    let holder = cluster.compactors.iter().position(|c| c.log().contains("took the lease")).expect("a lease holder");
    let standby = 1 - holder;
    cluster.compactors[holder].crash();
    let killed = Instant::now();
    wait_for("the standby taking the lease", &cluster, async || {
        cluster.compactors[standby].log().contains("took the lease")
    })
    .await;
    eprintln!("standby took the lease {:?} after the holder was killed", killed.elapsed());
    for round in 0..12u64 {
        for (i, collector) in cluster.collectors.iter().enumerate() {
            let trace = 5_000 + round * 10 + i as u64;
            assert!(send(collector, &export(trace, "loadgen", 100)).await, "{}", cluster.logs());
            acknowledged.insert(format!("{trace:032x}"));
        }
    }
    let standby_server = &cluster.compactors[standby];
    wait_for("a compaction by the standby", &cluster, async || {
        standby_server.metric("spanlake_compactions_total").await >= 1.0
    })
    .await;
    let seen = traces_seen(&cluster.queries[1]).await;
    let spans: i64 = seen.iter().map(|(_, n)| n).sum();
    let distinct = cluster.queries[1].sql_scalar("SELECT count(DISTINCT span_id) FROM spans").await.as_i64().unwrap();
    assert_eq!(distinct, spans, "compaction by the standby left no span twice");
    assert!(acknowledged.iter().all(|id| seen.iter().any(|(s, _)| s == id)), "nothing lost to compaction");

    // 4. Same answers as one node: flush everything (collectors stop
    //    cleanly), then ask a single `--roles all` node over the bucket.
    for collector in &mut cluster.collectors {
        collector.stop().await;
    }
    let single = TestServer::start_with(cluster.s3.options(BUCKET, "").arg("--compaction-interval", "1h")).await;
    wait_for("the query nodes reading the last flushes", &cluster, async || {
        traces_seen(&cluster.queries[0]).await == traces_seen(&single).await
    })
    .await;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let window = (now_ms - 3_600_000, now_ms + 60_000);
    let expected = answers(&single, window).await;
    for query in &cluster.queries {
        let mut answers = answers(query, window).await;
        // The stopped collectors cannot say they hold nothing unflushed:
        // the search pages say which were not reached.
        for page in &mut answers[2..4] {
            let partial = page.as_object_mut().and_then(|p| p.remove("partial"));
            assert_eq!(partial.map(|p| p["unreachableCollectors"].as_array().unwrap().len()), Some(2), "{page}");
        }
        if let Err(difference) = same(&answers, &expected, "") {
            panic!("{difference}\n{}", cluster.logs());
        }
    }

    // 5. Distributed plans: EXPLAIN shows the files spread over both
    //    workers. (With fresh spans in the plan, the library gives the
    //    files one task and the fresh spans the other: a union's children
    //    are split between the tasks first.)
    let plan = cluster.queries[0].sql("EXPLAIN SELECT service_name, count(*) FROM spans GROUP BY 1").await;
    let plan = plan["rows"].to_string();
    assert!(plan.contains("DistributedExec") && plan.contains("Stage 1 ── tasks=2"), "a distributed plan: {plan}");
    assert!(plan.contains("t0: DataSourceExec") && plan.contains("t1: DataSourceExec"), "files split in two: {plan}");

    // 6. A query worker killed: queries through the other fail with a
    //    clear error or succeed; none hangs past the query timeout.
    //    (A hang would end in the query timeout's 504.)
    cluster.queries[1].crash();
    let (status, body) = cluster.queries[0].sql_response("SELECT service_name, count(*) FROM spans GROUP BY 1").await;
    eprintln!("with a query worker down: {status} {body}");
    let clear_error =
        (500..600).contains(&status) && status != 504 && body["error"].as_str().is_some_and(|e| !e.is_empty());
    assert!(status == 200 || clear_error, "{status} {body}");
}

/// With `--auth-token`, the collectors' Flight port and the query workers'
/// port ask for it like the read APIs; the query nodes send it, so fresh
/// spans and distributed plans work.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_an_auth_token_asks_for_it_on_its_internal_ports() {
    let Some(s3) = S3Server::start().await else { return };
    s3.create_bucket("secured").await;
    let token = "cluster-secret";
    let (flight, workers) = (free_port(), [free_port(), free_port()]);
    let base = || s3.options("secured", "").arg("--auth-token", token);
    let collector = TestServer::start_with(
        base().arg("--roles", "collector").arg("--flight-addr", &flight.to_string()).arg("--flush-rows", "100"),
    )
    .await;
    let mut queries = Vec::new();
    for addr in workers {
        let options = base()
            .arg("--roles", "query")
            .arg("--worker-addr", &addr.to_string())
            .arg("--collectors", &urls(&[flight]))
            .arg("--query-workers", &urls(&workers))
            .arg("--query-worker-bytes", "1");
        queries.push(TestServer::start_with(options).await);
    }
    // 250 spans: files of the first 200, the rest fresh in the collector.
    for trace in 1..=5 {
        assert!(send(&collector, &export(trace, "secured", 50)).await, "{}", collector.log());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while s3.keys("secured", "default/spans/").await.is_empty() {
        assert!(Instant::now() < deadline, "no flush:\n{}", collector.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sql = async |sql: &str| {
        let response = reqwest::Client::new()
            .post(queries[0].api_url("/api/v1/sql"))
            .bearer_auth(token)
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{body}\n{}", queries[0].log());
        body["rows"].clone()
    };
    assert_eq!(sql("SELECT count(*) FROM spans").await[0][0], 250, "files and fresh spans, with the token");
    // Distributed once the query node's catalog refresh has seen the flushed files.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let plan = sql("EXPLAIN SELECT service_name, count(*) FROM spans GROUP BY 1").await.to_string();
        if plan.contains("DistributedExec") {
            break;
        }
        assert!(Instant::now() < deadline, "{plan}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Without the token, both internal ports refuse.
    let ticket = || {
        let request = json!({"tenant": "default", "wal_through": {}});
        arrow_flight::Ticket::new(serde_json::to_vec(&request).unwrap())
    };
    for (port, what) in [(flight, "collector's Flight"), (workers[1], "query worker")] {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{port}")).unwrap().connect().await.unwrap();
        let mut client = arrow_flight::FlightClient::new(channel);
        let refused = client.do_get(ticket()).await.err().expect("refused");
        let arrow_flight::error::FlightError::Tonic(status) = refused else { panic!("{what}: {refused}") };
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{what}: {status}");
        client.add_header("authorization", &format!("Bearer {token}")).unwrap();
        let answered = client.do_get(ticket()).await;
        let code = answered.as_ref().err().map(|e| match e {
            arrow_flight::error::FlightError::Tonic(status) => status.code(),
            _ => tonic::Code::Unknown,
        });
        assert_ne!(code, Some(tonic::Code::Unauthenticated), "{what} lets the token in");
    }
}
