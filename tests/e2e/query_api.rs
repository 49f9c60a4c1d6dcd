//! The `/api/v1` query service on hand-made traces sent through the OTLP
//! receiver: search with every filter and exact pagination, services,
//! operations and tags, the dependency graph, latency series and
//! histograms, several traces at once, and 400s that name the parameter.
//! Expected answers are computed by hand from the spans below.

use std::collections::HashSet;

use serde_json::{Value, json};
use spanlake_query::params::percent_encode;

use crate::fixture::{CLIENT, CONSUMER, INTERNAL, PRODUCER, SERVER, Span, get, get_ok, now_ms, send, trace_id};
use crate::harness::{ServerOptions, TestServer, validate_json};

/// Three traces, ten minutes ago:
/// 1. frontend `GET /a` (100 ms) → frontend client → backend `GET /b` (customer=acme, v1.0)
/// 2. frontend `GET /a` (300 ms) → backend `GET /b` (250 ms, error, customer=globex, v2.0)
/// 3. worker `job` (5 ms)
pub fn shop() -> Vec<Span> {
    vec![
        Span::new(1, 1, "frontend", "GET /a", SERVER).at(0, 100).attr("http.route", "/a"),
        Span::new(1, 2, "frontend", "GET", CLIENT).child_of(1).at(10, 50).attr("peer.service", "backend"),
        Span::new(1, 3, "backend", "GET /b", SERVER)
            .child_of(2)
            .at(15, 40)
            .attr("customer", "acme")
            .resource("service.version", "1.0"),
        Span::new(2, 4, "frontend", "GET /a", SERVER).at(1000, 300).attr("http.route", "/a"),
        Span::new(2, 5, "backend", "GET /b", SERVER)
            .child_of(4)
            .at(1010, 250)
            .error()
            .attr("customer", "globex")
            .resource("service.version", "2.0"),
        Span::new(3, 6, "worker", "job", INTERNAL).at(2000, 5),
    ]
}

pub async fn shop_server() -> (TestServer, i64) {
    let server = TestServer::start().await;
    let base = now_ms() - 10 * 60 * 1000;
    send(&server, base, &shop()).await;
    (server, base)
}

/// The trace numbers a search answers, in order.
pub async fn found(server: &TestServer, query: &str) -> Vec<u16> {
    let body = get_ok(server, &format!("/api/v1/search?{query}")).await;
    body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| u16::from_str_radix(&t["traceID"].as_str().unwrap()[28..], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn search_applies_every_filter_to_single_spans() {
    let (server, base) = shop_server().await;
    assert_eq!(found(&server, "").await, [3, 2, 1], "newest first");
    assert_eq!(found(&server, "service=backend").await, [2, 1]);
    assert_eq!(found(&server, "service=worker&operation=job").await, [3]);
    assert_eq!(found(&server, "tags=customer%3Dacme").await, [1]);
    assert_eq!(found(&server, "tags=customer!%3Dacme").await, [2], "!= needs the tag set");
    assert_eq!(found(&server, "tags=customer%3D~%5Eglo").await, [2]);
    assert_eq!(found(&server, "tags=customer").await, [2, 1]);
    assert_eq!(
        found(&server, "tags=http.route%3D/a&tags=service.version%3D1.0").await,
        Vec::<u16>::new(),
        "one span must pass all"
    );
    assert_eq!(found(&server, "tags=service.version%3D2.0&tags=customer%3Dglobex").await, [2]);
    assert_eq!(found(&server, "minDuration=200ms").await, [2]);
    assert_eq!(found(&server, "minDuration=200000").await, [2], "a bare number is µs");
    assert_eq!(found(&server, "maxDuration=10ms").await, [3]);
    assert_eq!(found(&server, "status=error").await, [2]);
    assert_eq!(found(&server, "tags=error").await, [2]);
    assert_eq!(found(&server, "spanKind=client").await, [1]);
    assert_eq!(found(&server, "sort=duration_desc").await, [2, 1, 3]);
    assert_eq!(found(&server, "sort=duration_asc&limit=2").await, [3, 1]);
    let start = base + 500;
    assert_eq!(found(&server, &format!("start={start}&end={}", base + 1500)).await, [2]);
    assert_eq!(found(&server, "lookback=1m").await, Vec::<u16>::new(), "ten minutes ago is outside");
    // TraceQL, alone and beside the other filters.
    let q = |query: &str| format!("q={}", percent_encode(query));
    assert_eq!(found(&server, &q(r#"{ span.customer = "acme" }"#)).await, [1]);
    assert_eq!(found(&server, &q("{ status = error || duration < 10ms }")).await, [3, 2]);
    assert_eq!(found(&server, &q(r#"{ resource.service.version = "2.0" && kind = server }"#)).await, [2]);
    assert_eq!(found(&server, &q(r#"{ .http.route = "/a" } && { span.customer =~ "glo.*" }"#)).await, [2]);
    assert_eq!(found(&server, &format!("service=frontend&{}", q("{ duration > 200ms }"))).await, [2]);
    assert_eq!(found(&server, &format!("sort=duration_asc&{}", q("{}"))).await, [3, 1, 2]);
    let (status, body) = get(&server, &format!("/api/v1/search?{}", q("{ duration > }"))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "q: parse error at line 1, col 14: unexpected }, expecting a value or an attribute");
}

#[tokio::test(flavor = "multi_thread")]
async fn search_results_are_trace_summaries() {
    let (server, base) = shop_server().await;
    let body = get_ok(&server, "/api/v1/search?service=backend").await;
    let traces = body["traces"].as_array().unwrap();
    assert_eq!(
        traces[1],
        json!({
            "traceID": trace_id(1), "rootServiceName": "frontend", "rootSpanName": "GET /a",
            "startTimeUnixNano": base * 1_000_000, "durationNs": 100_000_000,
            "spanCount": 3, "errorCount": 0,
            "services": [{"name": "backend", "spanCount": 1, "errorCount": 0}, {"name": "frontend", "spanCount": 2, "errorCount": 0}],
        })
    );
    assert_eq!(traces[0]["errorCount"], 1);
    let failing: Vec<&Value> =
        traces[0]["services"].as_array().unwrap().iter().filter(|s| s["errorCount"] == 1).collect();
    assert_eq!(failing.len(), 1, "the error counts for its own service: {}", traces[0]);
    assert_eq!(traces[0]["durationNs"], 300_000_000);
    assert_eq!(body["nextCursor"], Value::Null, "one page");
}

/// Every page of `query`, following cursors; sends `arrivals` new spans
/// between pages, as live traffic would.
async fn all_pages(server: &TestServer, query: &str, mut arrivals: impl FnMut(usize) -> Vec<Span>) -> Vec<String> {
    let (mut ids, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut url = format!("/api/v1/search?{query}");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let body = get_ok(server, &url).await;
        let page: Vec<String> =
            body["traces"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect();
        assert!(page.len() <= 20);
        ids.extend(page);
        pages += 1;
        send(server, now_ms(), &arrivals(pages)).await;
        match body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_follow_each_other_exactly_while_spans_arrive() {
    let server = TestServer::start().await;
    let base = now_ms() - 20 * 60 * 1000;
    // 65 one-span traces, a second apart, with only five distinct durations:
    // ties are cut by trace id.
    let spans: Vec<Span> = (0..65u16)
        .map(|i| Span::new(i + 1, i as u64 + 1, "pager", "work", SERVER).at(i as i64 * 1000, 1 + (i % 5) as i64))
        .collect();
    send(&server, base, &spans).await;
    let mut expected: HashSet<String> = (1..=65).map(trace_id).collect();

    // Each search pages with a new trace arriving after every page; those
    // start after the window the first page fixed, so they never show up
    // in that search (the next search sees them).
    let mut arrived = Vec::new();
    for sort in ["start_desc", "duration_desc", "duration_asc"] {
        let ids = all_pages(&server, &format!("service=pager&limit=20&lookback=1h&sort={sort}"), |_| {
            let n = 1000 + arrived.len() as u16;
            arrived.push(trace_id(n));
            vec![Span::new(n, n as u64, "pager", "work", SERVER).at(0, 3)]
        })
        .await;
        assert_eq!(ids.len(), expected.len(), "{sort}: no trace twice, none left out: {ids:?}");
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), expected, "{sort}");
        expected.extend(arrived.iter().cloned());
    }
    // The pages are in order: start_desc is newest first.
    let query = format!("service=pager&limit=20&start={base}&end={}", base + 70_000);
    let ids = all_pages(&server, &query, |_| vec![]).await;
    assert_eq!(ids.len(), 65);
    assert_eq!(ids.first(), Some(&trace_id(65)));
    assert_eq!(ids.last(), Some(&trace_id(1)));

    // A cursor belongs to its search.
    let body = get_ok(&server, "/api/v1/search?service=pager&limit=5").await;
    let cursor = body["nextCursor"].as_str().unwrap();
    let (status, body) = get(&server, &format!("/api/v1/search?service=other&limit=5&cursor={cursor}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("cursor:"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_operations_and_tags_are_listed() {
    let (server, _) = shop_server().await;
    assert_eq!(get_ok(&server, "/api/v1/services").await, json!({"services": ["backend", "frontend", "worker"]}));
    assert_eq!(
        get_ok(&server, "/api/v1/services/frontend/operations").await,
        json!({"operations": [{"name": "GET", "spanKind": "CLIENT"}, {"name": "GET /a", "spanKind": "SERVER"}]})
    );
    // Tags come from the buffer, then from the footers of the flushed files.
    let tags_before = tags_listed(&server).await;
    assert_eq!(
        tags_before["backend keys"],
        json!({"tags": ["customer", "service.version", "span.kind", "status.code"]})
    );
    assert_eq!(tags_before["customer"], json!({"values": ["acme", "globex"]}));
    assert_eq!(tags_before["customer gl"], json!({"values": ["globex"]}));
    assert_eq!(tags_before["backend versions"], json!({"values": ["1.0", "2.0"]}));
    assert_eq!(tags_before["worker kinds"], json!({"values": ["internal"]}));
    let keys = tags_before["keys"]["tags"].as_array().unwrap();
    for key in ["customer", "http.route", "peer.service", "service.version"] {
        assert!(keys.contains(&json!(key)), "{key} in {keys:?}");
    }
    let mut server = server;
    server.restart().await;
    assert!(!server.parquet_files().is_empty());
    assert_eq!(tags_listed(&server).await, tags_before);

    // Files and buffer together.
    send(&server, now_ms(), &[Span::new(9, 90, "backend", "late", SERVER).attr("customer", "initech")]).await;
    let values = get_ok(&server, "/api/v1/tags/customer/values?lookback=1h").await;
    assert_eq!(values, json!({"values": ["acme", "globex", "initech"]}));
}

/// Every tag answer `services_operations_and_tags_are_listed` checks, by name.
async fn tags_listed(server: &TestServer) -> std::collections::BTreeMap<&'static str, Value> {
    let queries = [
        ("backend keys", "/api/v1/tags?service=backend&lookback=1h"),
        ("keys", "/api/v1/tags?lookback=1h"),
        ("customer", "/api/v1/tags/customer/values?lookback=1h"),
        ("customer gl", "/api/v1/tags/customer/values?prefix=gl&lookback=1h"),
        ("backend versions", "/api/v1/tags/service.version/values?service=backend&lookback=1h"),
        ("worker kinds", "/api/v1/tags/span.kind/values?service=worker&lookback=1h"),
    ];
    let mut answers = std::collections::BTreeMap::new();
    for (name, query) in queries {
        answers.insert(name, get_ok(server, query).await);
    }
    answers
}

/// Client and server spans for one call from `caller` to `callee`.
fn call(trace: u16, ids: u64, parent: u64, caller: &'static str, callee: &'static str, client_ms: i64) -> [Span; 2] {
    [
        Span::new(trace, ids, caller, "call", CLIENT).child_of(parent).at(1, client_ms),
        Span::new(trace, ids + 1, callee, "serve", SERVER).child_of(ids).at(2, client_ms - 2),
    ]
}

/// One trace of every linking case, `t` its number and the base of its span ids.
pub fn topology(t: u16, b_fails: bool) -> Vec<Span> {
    let id = |n: u64| t as u64 * 100 + n;
    let mut spans = vec![Span::new(t, id(1), "A", "root", SERVER).at(0, 100)];
    let [client, mut server] = call(t, id(2), id(1), "A", "B", 40);
    if b_fails {
        server = server.error();
    }
    spans.extend([client, server]);
    // B's database call: no server side, a leaf edge to `postgres`.
    spans.push(Span::new(t, id(4), "B", "SELECT", CLIENT).child_of(id(3)).at(5, 3).attr("db.system", "postgres"));
    // B publishes, C consumes: B → C, and no leaf to the broker.
    spans
        .push(Span::new(t, id(5), "B", "publish", PRODUCER).child_of(id(3)).at(6, 1).attr("messaging.system", "kafka"));
    spans.push(Span::new(t, id(6), "C", "consume", CONSUMER).child_of(id(5)).at(8, 2));
    // A calls itself.
    spans.extend(call(t, id(7), id(1), "A", "A", 10));
    // A calls D, which is not instrumented: the client names it.
    spans.push(Span::new(t, id(9), "A", "call D", CLIENT).child_of(id(1)).at(30, 7).attr("peer.service", "D"));
    // E is called from an A span that is no client span.
    spans.push(Span::new(t, id(10), "A", "work", INTERNAL).child_of(id(1)).at(40, 20));
    spans.push(Span::new(t, id(11), "E", "serve", SERVER).child_of(id(10)).at(41, 9));
    spans
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dependency_graph_links_calls_as_zipkin_does() {
    let server = TestServer::start().await;
    let base = now_ms() - 5 * 60 * 1000;
    let mut spans = topology(1, true);
    spans.extend(topology(2, false));
    send(&server, base, &spans).await;

    let graph = get_ok(&server, "/api/v1/dependencies?lookback=1h").await;
    assert_eq!(graph["nodes"], json!(["A", "B", "C", "D", "E", "postgres"]));
    assert_eq!(edge_counts(&graph), topology_edges(2, 1));
    // A → B takes the client's 40 ms; A → E, without a client span, E's 9 ms.
    let edge = |p: &str, c: &str| {
        graph["edges"].as_array().unwrap().iter().find(|e| e["parent"] == p && e["child"] == c).unwrap().clone()
    };
    assert_eq!(edge("A", "B")["p50Ms"], 40.0);
    assert_eq!(edge("A", "B")["p99Ms"], 40.0);
    assert_eq!(edge("A", "E")["p50Ms"], 9.0);

    let (status, empty) = get(&server, &format!("/api/v1/dependencies?start={}&end={}", base - 60_000, base - 1)).await;
    assert_eq!((status, empty), (200, json!({"nodes": [], "edges": []})));
}

/// (parent, child, calls, errors) of every edge of a graph.
fn edge_counts(graph: &Value) -> Vec<(String, String, i64, i64)> {
    let edges = graph["edges"].as_array().unwrap().iter();
    edges
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("parent"), s("child"), e["callCount"].as_i64().unwrap(), e["errorCount"].as_i64().unwrap())
        })
        .collect()
}

/// (parent, child, calls) of Jaeger's and Zipkin's dependency links, sorted;
/// calls as text, since api_v3 writes its uint64 as a JSON string.
pub fn link_counts(links: &Value) -> Vec<(String, String, String)> {
    let mut edges: Vec<(String, String, String)> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let calls = &l["callCount"];
            let calls = calls.as_str().map(str::to_owned).unwrap_or_else(|| calls.to_string());
            (l["parent"].as_str().unwrap().into(), l["child"].as_str().unwrap().into(), calls)
        })
        .collect();
    edges.sort();
    edges
}

/// The topology's edges, each with `calls` calls and `errors` errors on A → B.
pub fn topology_edges(calls: i64, errors: i64) -> Vec<(String, String, i64, i64)> {
    let edges = [("A", "A", 0), ("A", "B", errors), ("A", "D", 0), ("A", "E", 0), ("B", "C", 0), ("B", "postgres", 0)];
    edges.iter().map(|(p, c, e)| (p.to_string(), c.to_string(), calls, *e)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_graph_adds_up_edge_files_across_hours_and_follows_late_spans() {
    let options = ServerOptions::default().arg("--flush-interval", "1s").arg("--compaction-interval", "1s");
    let server = TestServer::start_with(options).await;
    const HOUR_MS: i64 = 3_600_000;
    let h = (now_ms() / HOUR_MS - 3) * HOUR_MS;
    // Trace 1 inside hour h; trace 2 two milliseconds before h + 1: its
    // root and client spans in h, everything after in h + 1, so A → B and
    // A → A cross the hour boundary.
    send(&server, h + 10 * 60 * 1000, &topology(1, true)).await;
    send(&server, h + HOUR_MS - 2, &topology(2, false)).await;
    server.wait_until_flushed().await;

    // Storage writes the calls as edge files beside the span files.
    let edge_files = || {
        let dir = server.data_dir().join("default/edges");
        server.parquet_files().into_iter().filter(|f| f.starts_with(&dir)).count()
    };
    assert!(edge_files() > 0, "no edge files:\n{}", server.log());

    let graph = |start: i64, end: i64| {
        let server = &server;
        async move { edge_counts(&get_ok(server, &format!("/api/v1/dependencies?start={start}&end={end}")).await) }
    };
    // Each call counts once, in the hour its server (or leaf client) span starts in.
    assert_eq!(graph(h, h + 2 * HOUR_MS).await, topology_edges(2, 1));
    assert_eq!(graph(h, h + HOUR_MS).await, topology_edges(1, 1));
    assert_eq!(graph(h + HOUR_MS, h + 2 * HOUR_MS).await, topology_edges(1, 0));
    // Ragged ends add up with the whole hour between them.
    assert_eq!(graph(h - 30 * 60 * 1000, h + HOUR_MS + 60_000).await, topology_edges(2, 1));

    // A late trace for hour h: from the buffer at once, then from its edge
    // file, and the same once upkeep merged the files.
    send(&server, h + 20 * 60 * 1000, &topology(3, true)).await;
    assert_eq!(graph(h, h + 2 * HOUR_MS).await, topology_edges(3, 2));
    server.wait_until_flushed().await;
    assert_eq!(graph(h, h + 2 * HOUR_MS).await, topology_edges(3, 2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.metric("spanlake_compaction_bytes_written_total").await == 0.0 {
        assert!(std::time::Instant::now() < deadline, "upkeep never merged edge files:\n{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(graph(h, h + 2 * HOUR_MS).await, topology_edges(3, 2));
    assert_eq!(graph(h, h + HOUR_MS).await, topology_edges(2, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn latency_series_and_histograms_per_version() {
    let server = TestServer::start().await;
    let base = (now_ms() / 60_000 - 10) * 60_000; // a whole minute, ten minutes ago
    // Minute 0: v1 serves 1..=4 ms, one failing; minute 1: v2 serves 10 ms twice.
    let mut spans: Vec<Span> = (1..=4)
        .map(|i| {
            Span::new(i, i as u64, "api", "GET", SERVER).resource("service.version", "v1").at(i as i64 * 1000, i as i64)
        })
        .collect();
    spans[0] = spans[0].clone().error();
    spans.extend(
        (5..=6).map(|i| Span::new(i, i as u64, "api", "GET", SERVER).resource("service.version", "v2").at(61_000, 10)),
    );
    // A client span of the same service: not an entry span, not counted.
    spans.push(Span::new(7, 7, "api", "GET", CLIENT).at(2000, 500));
    send(&server, base, &spans).await;

    let window = format!("service=api&start={base}&end={}&step=1m", base + 180_000);
    let series = get_ok(&server, &format!("/api/v1/latency?{window}")).await;
    assert_eq!(series["stepNs"], 60_000_000_000i64);
    let points = series["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!((points[0]["requests"].as_i64(), points[0]["errors"].as_i64()), (Some(4), Some(1)));
    assert_eq!(points[0]["errorRate"], 0.25);
    assert_eq!(points[0]["timeUnixNano"], base * 1_000_000);
    assert!((points[0]["requestsPerSecond"].as_f64().unwrap() - 4.0 / 60.0).abs() < 1e-9);
    let p50 = points[0]["p50Ms"].as_f64().unwrap();
    assert!((1.0..=4.0).contains(&p50), "{p50}");
    assert_eq!(points[0]["p99Ms"].as_f64().map(f64::round), Some(4.0));
    assert_eq!((points[1]["requests"].as_i64(), points[1]["p50Ms"].as_f64()), (Some(2), Some(10.0)));
    assert_eq!((points[2]["requests"].as_i64(), &points[2]["p50Ms"]), (Some(0), &Value::Null), "an empty step");

    let grouped = get_ok(&server, &format!("/api/v1/latency?{window}&groupBy=service.version")).await;
    let groups: Vec<(&str, i64)> = grouped["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["group"].as_str().unwrap(),
                s["points"].as_array().unwrap().iter().map(|p| p["requests"].as_i64().unwrap()).sum(),
            )
        })
        .collect();
    assert_eq!(groups, [("v1", 4), ("v2", 2)]);

    let histogram = get_ok(&server, &format!("/api/v1/latency/histogram?{window}&groupBy=service.version")).await;
    let v1 = &histogram["series"][0];
    assert_eq!(v1["group"], "v1");
    let buckets = v1["buckets"].as_array().unwrap();
    assert_eq!(buckets.iter().map(|b| b["count"].as_i64().unwrap()).sum::<i64>(), 4);
    for (b, ms) in buckets.iter().zip([1i64, 2, 3, 4]) {
        let ns = ms * 1_000_000;
        assert!(b["lowerNs"].as_i64().unwrap() <= ns && ns < b["upperNs"].as_i64().unwrap(), "{ms} ms in {b}");
    }
    let v2 = &histogram["series"][1]["buckets"];
    assert_eq!(v2.as_array().unwrap().len(), 1);
    assert_eq!(v2[0]["count"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn several_traces_come_at_once() {
    let (server, _) = shop_server().await;
    let missing = "ff".repeat(16);
    let body = get_ok(&server, &format!("/api/v1/traces?ids={},{},{missing}", trace_id(1), trace_id(3))).await;
    let traces = body["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[0]["traceID"], trace_id(1));
    let spans = |t: &Value| {
        t["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["scopeSpans"][0]["spans"].as_array().unwrap().len())
            .sum::<usize>()
    };
    assert_eq!((spans(&traces[0]), spans(&traces[1])), (3, 1));
    assert_eq!(body["missing"], json!([missing]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_400s_that_name_the_parameter() {
    let server = TestServer::start().await;
    for (path, parameter) in [
        ("/api/v1/search?minDuration=fast", "minDuration"),
        ("/api/v1/search?maxDuration=3weeks", "maxDuration"),
        ("/api/v1/search?limit=0", "limit"),
        ("/api/v1/search?limit=100000", "limit"),
        ("/api/v1/search?sort=random", "sort"),
        ("/api/v1/search?tags=%3Dv", "tags"),
        ("/api/v1/search?tags=k%3D~(", "tags"),
        ("/api/v1/search?status=ok", "status"),
        ("/api/v1/search?spanKind=sideways", "spanKind"),
        ("/api/v1/search?cursor=nonsense", "cursor"),
        ("/api/v1/search?start=yesterday", "start"),
        ("/api/v1/search?servce=typo", "servce"),
        ("/api/v1/latency?service=a&groupBy=color", "groupBy"),
        ("/api/v1/dependencies?lookback=soon", "lookback"),
        ("/api/v1/traces?ids=xyz", "ids"),
        ("/api/v1/traces", "ids"),
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("{parameter}:")), "{path}: {message}");
    }

    // What the OpenAPI document allows but cannot relate is answered: a
    // window ending before it starts is empty, `start` wins over
    // `lookback`, and a step too fine for the window is widened.
    send(&server, now_ms(), &shop()).await;
    let hour_ago = now_ms() - 3_600_000;
    let traces = |path: String| {
        let server = &server;
        async move { get_ok(server, &path).await["traces"].as_array().unwrap().len() }
    };
    assert_eq!(traces(format!("/api/v1/search?start={}&end={hour_ago}", now_ms() + 60_000)).await, 0);
    assert_eq!(traces("/api/v1/search?lookback=1ms&end=1".to_owned()).await, 0);
    assert!(traces(format!("/api/v1/search?lookback=1ms&start={hour_ago}")).await > 0, "start wins");
    let latency = get_ok(&server, "/api/v1/latency?service=frontend&step=1ms&lookback=1h").await;
    assert_eq!(latency["stepNs"], 3_600_000_000_000i64 / 2000 + 1, "{latency}");
    assert!(latency["series"][0]["points"].as_array().unwrap().len() <= 2000);
}

/// Objects in the document admit no fields it does not name, so a field
/// added to an answer without the document fails the check.
fn closed(mut schema: Value) -> Value {
    fn close(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(close);
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    close(&mut schema);
    schema
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_describes_the_real_answers() {
    let (server, base) = shop_server().await;
    let doc = get_ok(&server, "/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let search = &doc["paths"]["/api/v1/search"]["get"];
    assert!(search["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "minDuration"));
    let documented = serde_json::to_string(search).unwrap();
    assert!(documented.contains("one of its spans"), "search says how traces match");

    let window = format!("start={}&end={}", base - 1000, base + 60_000);
    let cases = [
        ("/api/v1/search", "200", format!("/api/v1/search?limit=1&{window}")),
        ("/api/v1/services", "200", "/api/v1/services".to_owned()),
        ("/api/v1/services/{service}/operations", "200", "/api/v1/services/frontend/operations".to_owned()),
        ("/api/v1/tags", "200", "/api/v1/tags?lookback=1h".to_owned()),
        ("/api/v1/tags/{key}/values", "200", "/api/v1/tags/customer/values?lookback=1h".to_owned()),
        ("/api/v1/dependencies", "200", format!("/api/v1/dependencies?{window}")),
        ("/api/v1/latency", "200", format!("/api/v1/latency?service=backend&{window}&groupBy=service.version")),
        ("/api/v1/latency/histogram", "200", format!("/api/v1/latency/histogram?service=backend&{window}")),
        ("/api/v1/dependencies", "200", format!("/api/v1/dependencies?groupBy=service.version&{window}")),
        ("/api/v1/versions", "200", format!("/api/v1/versions?service=backend&{window}")),
        (
            "/api/v1/versions/compare",
            "200",
            format!("/api/v1/versions/compare?service=backend&baseline=1.0&candidate=2.0&{window}"),
        ),
        ("/api/v1/versions/callers", "200", format!("/api/v1/versions/callers?service=backend&version=1.0&{window}")),
        ("/api/v1/versions/callees", "200", format!("/api/v1/versions/callees?service=backend&version=2.0&{window}")),
        ("/api/v1/retries", "200", format!("/api/v1/retries?{window}")),
        ("/api/v1/versions/compare", "400", "/api/v1/versions/compare?service=backend&baseline=1.0".to_owned()),
        ("/api/v1/traces", "200", format!("/api/v1/traces?ids={},{}", trace_id(1), "ff".repeat(16))),
        ("/api/v1/traces/{trace_id}", "200", format!("/api/v1/traces/{}", trace_id(2))),
        ("/api/v1/traces/{trace_id}", "404", format!("/api/v1/traces/{}", "ff".repeat(16))),
        ("/api/v1/search", "400", "/api/v1/search?limit=0".to_owned()),
    ];
    let components = doc["components"].clone();
    let mut checks = Vec::new();
    for (path, status, url) in &cases {
        let (got, body) = get(&server, url).await;
        assert_eq!(got.to_string(), *status, "{url}: {body}");
        let response = &doc["paths"][path]["get"]["responses"][status];
        let mut schema = response["content"]["application/json"]["schema"].clone();
        assert!(schema.is_object(), "{path} documents no {status} body: {response}");
        schema["components"] = components.clone();
        checks.push(json!({"name": url, "schema": closed(schema), "instance": body}));
    }
    for (sql, status) in [("SELECT 1 AS one", "200"), ("DELETE FROM spans", "400")] {
        let (got, body) = server.sql_response(sql).await;
        assert_eq!(got.to_string(), status, "{sql}: {body}");
        let mut schema =
            doc["paths"]["/api/v1/sql"]["post"]["responses"][status]["content"]["application/json"]["schema"].clone();
        schema["components"] = components.clone();
        checks.push(json!({"name": sql, "schema": closed(schema), "instance": body}));
    }
    if let Err(errors) = validate_json(checks) {
        panic!("answers that do not match the document:\n{errors}");
    }
    // Every documented `/api/v1` path is checked above (the other families
    // answer in their servers' formats, checked in their own tests).
    for path in doc["paths"].as_object().unwrap().keys().filter(|p| p.starts_with("/api/v1/")) {
        let checked = cases.iter().any(|(p, _, _)| p == path) || path == "/api/v1/sql";
        assert!(checked, "{path} is documented but not checked");
    }
}

/// Schemathesis, a schema-driven tester, sends the requests the document
/// allows (and edge cases of each parameter): none may be refused or fail.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_the_openapi_document_allows_is_answered() {
    let Some(python) = crate::harness::python() else { return };
    let (server, _) = shop_server().await;
    let schemathesis = python.with_file_name("schemathesis");
    let workdir = tempfile::tempdir().expect("a directory for hypothesis' example database");
    // A pattern cannot state a grammar (TraceQL, a JSON object of tags,
    // Tempo's logfmt), so those parameters take values of it while every
    // other parameter is generated from its schema.
    let config = r#"
[dictionaries.traceql]
values = ['{ }', '{ status = error }', '{ resource.service.name = "frontend" } >> { kind = client }', '{ duration > 10ms } | count() > 1']

[dictionaries.metrics]
values = ['{ } | rate()', '{ status = error } | count_over_time() by (name)', '{ kind = server } | quantile_over_time(duration, 0.9) by (resource.service.name)']

[dictionaries.json_tags]
values = ['{}', '{"http.route":"/a"}', '{"error":"true","customer":"acme"}']

[dictionaries.logfmt]
values = ['service.name=frontend', 'http.route="/a b" customer=acme']

[parameters]
"query.q" = { dictionary = "traceql" }
# A cursor comes only from the previous page of the same search; empty
# values count as absent.
"query.cursor" = ""

# The coverage phase makes its values from the schema alone.
[[operations]]
include-operation-id = ["tempo_metrics_range", "tempo_metrics_instant"]
parameters = { "query.q" = { dictionary = "metrics" } }
phases.coverage.enabled = false

[[operations]]
include-operation-id = "jaeger_search"
parameters = { "query.tags" = { dictionary = "json_tags" } }
phases.coverage.enabled = false

[[operations]]
include-operation-id = ["jaeger_v3_find_traces", "jaeger_v3_trace_summaries"]
parameters = { "query.query.attributes" = { dictionary = "json_tags" } }

# SQL text is a grammar no schema states; the SQL tests cover it.
[[operations]]
include-operation-id = "post_sql"
enabled = false

[[operations]]
include-operation-id = "tempo_search"
parameters = { "query.tags" = { dictionary = "logfmt" } }
"#;
    std::fs::write(workdir.path().join("schemathesis.toml"), config).unwrap();
    let output = tokio::task::spawn_blocking({
        let url = server.api_url("/api/v1/openapi.json");
        move || {
            std::process::Command::new(schemathesis)
                .args(["run", &url, "--checks", "not_a_server_error,positive_data_acceptance"])
                .args(["--max-examples", "20", "--seed", "17", "--no-color"])
                .current_dir(workdir.path())
                .output()
                .expect("run schemathesis")
        }
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("Tested: "), "schemathesis tested the operations: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_are_bounded_in_time_memory_and_rows() {
    let options = ServerOptions::default().arg("--query-timeout", "1ms");
    let server = TestServer::start_with(options).await;
    send(&server, now_ms(), &shop()).await;
    let (status, body) = get(&server, "/api/v1/latency?service=frontend").await;
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--query-timeout"), "{body}");

    let options = ServerOptions::default().arg("--query-memory-limit", "1024");
    let server = TestServer::start_with(options).await;
    send(&server, now_ms(), &shop()).await;
    let (status, body) = get(&server, "/api/v1/latency?service=frontend").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Resources exhausted"), "{body}");
    assert_eq!(server.span_count().await, 6, "a small query still runs");

    let options = ServerOptions::default().arg("--query-max-rows", "5");
    let server = TestServer::start_with(options).await;
    send(&server, now_ms(), &shop()).await;
    let (status, body) = server.sql_response("SELECT span_name FROM spans").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--query-max-rows"), "{body}");
    let (status, body) = server.sql_response("SELECT span_name FROM spans LIMIT 5").await;
    assert_eq!((status, body["rows"].as_array().map(Vec::len)), (200, Some(5)), "{body}");
}
