//! Tempo's HTTP API as Grafana's Tempo data source calls it: a trace sent by
//! the Rust OpenTelemetry SDK comes back as `tempopb` protobuf (decoded by
//! prost here) and as JSON, TraceQL searches answer with the spans each
//! trace matched, and tag names and values come by scope.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::{Value, json};
use spanlake_query::params::percent_encode;

use crate::fixture::{get_ok, now_ms};
use crate::harness::TestServer;
use crate::otlp_compare::{assert_same_spans, trace_ids};
use crate::otlp_rust::{Transport, emit_trace};

/// `tempopb.TraceByIDResponse`, the part a client reads.
#[derive(Clone, PartialEq, Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

async fn fetch(server: &TestServer, path: &str, accept: &str, tenant: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new().get(server.api_url(path)).header("accept", accept);
    if let Some(tenant) = tenant {
        request = request.header("x-scope-orgid", tenant);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn grafanas_tempo_calls_are_answered() {
    let server = TestServer::start().await;
    let expected = tokio::task::block_in_place(|| emit_trace(Transport::HttpJson, &server));
    let id = trace_ids(&expected).remove(0);
    let spans: Vec<_> = expected.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans).collect();
    let root = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    let db = spans.iter().find(|s| s.name == "INSERT orders").unwrap();

    assert_eq!(fetch(&server, "/api/echo", "*/*", None).await, (200, b"echo".to_vec()));
    assert_eq!(get_ok(&server, "/api/status/buildinfo").await["version"], "2.8.0");
    assert_eq!(fetch(&server, "/ready", "*/*", None).await.0, 200);

    // Trace by id, as protobuf (v1 and v2) and as JSON.
    let (status, body) = fetch(&server, &format!("/api/traces/{id}"), "application/protobuf", None).await;
    assert_eq!(status, 200);
    assert_same_spans(&expected, &TracesData::decode(body.as_slice()).expect("tempopb.Trace").resource_spans);
    let (status, body) = fetch(&server, &format!("/api/v2/traces/{id}"), "application/protobuf", None).await;
    assert_eq!(status, 200);
    let v2 = TraceByIdResponse::decode(body.as_slice()).expect("TraceByIDResponse");
    assert_same_spans(&expected, &v2.trace.expect("a trace").resource_spans);
    let json = get_ok(&server, &format!("/api/v2/traces/{id}?start=1&end={}", now_ms() / 1000 + 60)).await;
    let got: ExportTraceServiceRequest = serde_json::from_value(json["trace"].clone()).expect("OTLP/JSON");
    assert_same_spans(&expected, &got.resource_spans);
    let jaeger = get_ok(&server, &format!("/api/traces/{id}")).await;
    assert_eq!(jaeger["data"][0]["spans"].as_array().unwrap().len(), spans.len(), "JSON is Jaeger's");
    let missing = "0af7651916cd43dd8448eb211c80319c";
    let (status, body) = fetch(&server, &format!("/api/v2/traces/{missing}"), "application/protobuf", None).await;
    assert_eq!((status, String::from_utf8(body).unwrap()), (404, format!("trace {missing} not found")));

    // TraceQL search with span sets.
    let (window_start, window_end) = (now_ms() / 1000 - 3600, now_ms() / 1000 + 60);
    let window = format!("start={window_start}&end={window_end}");
    let search = |q: &str, extra: &str| {
        let path = format!("/api/search?q={}&{window}&{extra}", percent_encode(q));
        let server = &server;
        async move { get_ok(server, &path).await }
    };
    let found = search(r#"{ span.db.system = "postgresql" }"#, "").await;
    let trace = &found["traces"][0];
    assert_eq!(found["traces"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(trace["traceID"], id);
    assert_eq!(trace["rootServiceName"], "rust-sdk-HttpJson");
    assert_eq!(trace["rootTraceName"], "POST /checkout");
    assert_eq!(trace["startTimeUnixNano"], root.start_time_unix_nano.to_string());
    assert_eq!(trace["durationMs"], (root.end_time_unix_nano - root.start_time_unix_nano) / 1_000_000);
    let set = &trace["spanSets"][0];
    assert_eq!(set["matched"], 1);
    assert_eq!(set["spans"][0]["spanID"], const_hex::encode(&db.span_id));
    assert_eq!(set["spans"][0]["name"], "INSERT orders");
    assert_eq!(set["spans"][0]["startTimeUnixNano"], db.start_time_unix_nano.to_string());
    assert_eq!(set["spans"][0]["durationNanos"], (db.end_time_unix_nano - db.start_time_unix_nano).to_string());
    let attributes = set["spans"][0]["attributes"].as_array().unwrap();
    assert!(
        attributes.contains(&json!({"key": "db.system", "value": {"stringValue": "postgresql"}})),
        "{attributes:?}"
    );
    assert!(attributes.contains(&json!({"key": "service.name", "value": {"stringValue": "rust-sdk-HttpJson"}})));
    assert_eq!(trace["spanSet"], *set, "the deprecated single span set too");

    let both = search("{ kind = server } || { kind = client }", "spss=1").await;
    let set = &both["traces"][0]["spanSets"][0];
    assert_eq!((set["matched"].clone(), set["spans"].as_array().unwrap().len()), (json!(2), 1));
    assert_eq!(search(r#"{ status = error && span.db.system = "mysql" }"#, "").await["traces"], json!([]));
    assert_eq!(search("{}", "tags=db.system%3Dpostgresql").await["traces"][0]["traceID"], id);
    let length_ns = root.end_time_unix_nano - root.start_time_unix_nano;
    let at_least = |ns: u64| format!("minDuration={ns}ns");
    assert_eq!(search("{}", &at_least(length_ns)).await["traces"][0]["traceID"], id);
    assert_eq!(search("{}", &at_least(length_ns + 1)).await["traces"], json!([]));
    assert_eq!(search("{}", &format!("maxDuration={}ns", length_ns - 1)).await["traces"], json!([]));
    let root_of = search(r#"{ rootServiceName = "rust-sdk-HttpJson" && kind = client }"#, "").await;
    assert_eq!(root_of["traces"][0]["spanSets"][0]["spans"][0]["name"], "INSERT orders", "{root_of}");
    let (status, body) =
        fetch(&server, &format!("/api/search?q={}", percent_encode("{ duration > }")), "*/*", None).await;
    let message = String::from_utf8(body).unwrap();
    assert_eq!(status, 400);
    assert!(message.starts_with("invalid TraceQL query: parse error at line 1, col 14:"), "{message}");
    let (status, body) = fetch(&server, "/api/search?q=%7B%7D", "*/*", Some("someone-else")).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["traces"], json!([]), "tenants are apart");

    // Tags by scope, and their values.
    let tags = get_ok(&server, &format!("/api/v2/search/tags?{window}")).await;
    let scope =
        |name: &str| tags["scopes"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["tags"].clone();
    let (span_tags, resource_tags) = (scope("span"), scope("resource"));
    for key in ["db.system", "attr.int", "http.route"] {
        assert!(span_tags.as_array().unwrap().contains(&json!(key)), "{key}: {span_tags}");
    }
    for key in ["service.name", "service.version", "resource.int"] {
        assert!(resource_tags.as_array().unwrap().contains(&json!(key)), "{key}: {resource_tags}");
    }
    assert!(!span_tags.as_array().unwrap().contains(&json!("resource.int")));
    assert!(scope("intrinsic").as_array().unwrap().contains(&json!("duration")));
    let only_resource = get_ok(&server, &format!("/api/v2/search/tags?scope=resource&{window}")).await;
    assert_eq!(only_resource["scopes"].as_array().unwrap().len(), 1);
    let v1_names = get_ok(&server, &format!("/api/search/tags?{window}")).await;
    assert!(v1_names["tagNames"].as_array().unwrap().contains(&json!("db.system")));

    let values = get_ok(&server, &format!("/api/v2/search/tag/resource.service.name/values?{window}")).await;
    assert!(values["tagValues"].as_array().unwrap().contains(&json!({"type": "string", "value": "rust-sdk-HttpJson"})));
    let q = percent_encode(r#"{ resource.service.name = "rust-sdk-HttpJson" && kind = client }"#);
    let names = get_ok(&server, &format!("/api/v2/search/tag/name/values?q={q}&{window}")).await;
    assert_eq!(names["tagValues"], json!([{"type": "string", "value": "INSERT orders"}]));
    let statuses = get_ok(&server, "/api/v2/search/tag/status/values").await;
    assert!(statuses["tagValues"].as_array().unwrap().contains(&json!({"type": "keyword", "value": "error"})));
    let routes = get_ok(&server, &format!("/api/search/tag/http.route/values?{window}")).await;
    assert_eq!(routes["tagValues"], json!(["/checkout"]));

    // TraceQL metrics: per-step series and one value per series.
    let metrics = |path: &str, q: &str| {
        let path = format!("/api/metrics/{path}?q={}&{window}&step=60s", percent_encode(q));
        let server = &server;
        async move { get_ok(server, &path).await }
    };
    let range = metrics("query_range", "{ } | count_over_time() by (name)").await;
    let series = range["series"].as_array().unwrap();
    assert_eq!(series.len(), spans.iter().map(|s| &s.name).collect::<std::collections::BTreeSet<_>>().len(), "{range}");
    let insert = series
        .iter()
        .find(|s| s["labels"] == json!([{"key": "name", "value": {"stringValue": "INSERT orders"}}]))
        .unwrap_or_else(|| panic!("a series per name: {range}"));
    assert_eq!(insert["promLabels"], r#"{name="INSERT orders"}"#);
    let samples = insert["samples"].as_array().unwrap();
    // Steps start at the window's start aligned down to a whole minute.
    let steps = (window_end - window_start / 60 * 60 + 59) / 60;
    assert_eq!(samples.len() as i64, steps, "one a minute over the window, zeros included");
    let counted: f64 = samples.iter().map(|s| s["value"].as_f64().unwrap()).sum();
    assert_eq!(counted, 1.0);
    let at =
        samples.iter().find(|s| s["value"] == 1.0).unwrap()["timestampMs"].as_str().unwrap().parse::<u64>().unwrap();
    let start_ms = db.start_time_unix_nano / 1_000_000;
    assert!(at <= start_ms && start_ms < at + 60_000, "{at} is the step holding {start_ms}");
    let clients = spans.iter().filter(|s| s.kind == 3).count() as f64;
    let instant = metrics("query", "{ kind = client } | count_over_time()").await;
    assert_eq!(instant["series"][0]["value"], clients, "{instant}");
    let quantile = metrics("query", r#"{ name = "INSERT orders" } | quantile_over_time(duration, 0.9)"#).await;
    let seconds = (db.end_time_unix_nano - db.start_time_unix_nano) as f64 / 1e9;
    assert!((quantile["series"][0]["value"].as_f64().unwrap() - seconds).abs() < 1e-9, "{quantile}");
    assert_eq!(quantile["series"][0]["labels"], json!([{"key": "p", "value": {"doubleValue": 0.9}}]));
    // compare(), as Grafana's Traces Drilldown asks it: the database span
    // set against the trace's other spans, attribute by attribute.
    let compared = metrics("query_range", r#"{ } | compare({ span.db.system = "postgresql" })"#).await;
    let compared = compared["series"].as_array().unwrap();
    let total = |labels: Value| -> f64 {
        let series =
            compared.iter().find(|s| s["labels"] == labels).unwrap_or_else(|| panic!("{labels} in {compared:?}"));
        series["samples"].as_array().unwrap().iter().map(|s| s["value"].as_f64().unwrap()).sum()
    };
    let meta = |kind: &str| json!({"key": "__meta_type", "value": {"stringValue": kind}});
    let name = |value: Value| json!({"key": "name", "value": value});
    assert_eq!(total(json!([meta("selection_total"), name(json!({}))])), 1.0);
    assert_eq!(total(json!([meta("baseline_total"), name(json!({}))])), spans.len() as f64 - 1.0);
    assert_eq!(total(json!([meta("selection"), name(json!({"stringValue": "INSERT orders"}))])), 1.0);
    assert_eq!(total(json!([meta("baseline"), name(json!({"stringValue": "POST /checkout"}))])), 1.0);
    let (status, body) = fetch(
        &server,
        &format!("/api/metrics/query_range?q={}", percent_encode("{ } | compare({ status = error }, 0)")),
        "*/*",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8(body).unwrap().contains("col 35: compare() keeps at least one value"));

    // Span and service graph metrics, as Prometheus scrapes them for
    // Grafana's service graph and RED panels.
    let (status, body) = fetch(&server, "/metrics/spans", "*/*", None).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let value = |series: String| -> Option<f64> {
        text.lines().find(|l| l.starts_with(&format!("{series} ")))?.rsplit(' ').next()?.parse().ok()
    };
    let service = "rust-sdk-HttpJson";
    let root_calls = format!(
        r#"traces_spanmetrics_calls_total{{tenant="default",service="{service}",service_name="{service}",span_name="POST /checkout",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_UNSET"}}"#
    );
    assert_eq!(value(root_calls), Some(1.0), "{text}");
    let edge = |client: &str, connection: &str| {
        format!(
            r#"traces_service_graph_request_total{{tenant="default",client="{client}",server="{service}",connection_type="{connection}"}}"#
        )
    };
    assert_eq!(value(edge("user", "virtual_node")), Some(1.0), "{text}");
    assert_eq!(value(edge(service, "messaging_system")), Some(1.0), "the producer and its consumer: {text}");

    // Nested-set numbers, as Grafana's trace structure view selects them.
    let numbered = search("{ } | select(nestedSetLeft, nestedSetRight, nestedSetParent)", "spss=100").await;
    let number = |span: &Value, key: &str| -> i64 {
        let attributes = span["attributes"].as_array().unwrap();
        let found = attributes.iter().find(|a| a["key"] == key).unwrap_or_else(|| panic!("{key} in {span}"));
        found["value"]["intValue"].as_str().unwrap().parse().unwrap()
    };
    let numbered: std::collections::HashMap<String, (i64, i64, i64)> = numbered["traces"][0]["spanSets"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| {
            let n = (number(span, "nestedSetLeft"), number(span, "nestedSetRight"), number(span, "nestedSetParent"));
            (span["spanID"].as_str().unwrap().to_owned(), n)
        })
        .collect();
    assert_eq!(numbered.len(), spans.len());
    assert_eq!(numbered[&const_hex::encode(&root.span_id)], (1, 2 * spans.len() as i64, -1));
    for span in &spans {
        let (left, right, parent) = numbered[&const_hex::encode(&span.span_id)];
        assert!(left < right);
        if !span.parent_span_id.is_empty() {
            let (parent_left, parent_right, _) = numbered[&const_hex::encode(&span.parent_span_id)];
            assert_eq!(parent, parent_left, "{}", span.name);
            assert!(parent_left < left && right < parent_right, "{} nests inside its parent", span.name);
        }
    }
    let roots = search("{ nestedSetParent < 0 }", "spss=10").await;
    assert_eq!(roots["traces"][0]["spanSets"][0]["spans"][0]["spanID"], const_hex::encode(&root.span_id));
    assert_eq!(roots["traces"][0]["spanSets"][0]["matched"], 1);

    // Structure and pipelines in a search.
    let below = search(r#"{ name = "POST /checkout" } >> { span.db.system = "postgresql" }"#, "").await;
    assert_eq!(below["traces"][0]["spanSets"][0]["spans"][0]["name"], "INSERT orders", "{below}");
    let counted = search(&format!("{{ }} | count() = {}", spans.len()), "").await;
    assert_eq!(counted["traces"][0]["traceID"], id);
    assert_eq!(search(&format!("{{ }} | count() > {}", spans.len()), "").await["traces"], json!([]));
}
