//! Jaeger's HTTP JSON API (what Grafana's Jaeger data source and the Jaeger
//! UI call): a trace sent by the Rust OpenTelemetry SDK comes back in
//! Jaeger's model field by field, searches follow Jaeger's semantics, and
//! errors come in Jaeger's envelope.

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span as OtlpSpan};
use serde_json::{Value, json};
use spanlake_query::params::percent_encode;

use crate::fixture::{CLIENT, SERVER, Span, get, get_ok, now_ms, send};
use crate::harness::TestServer;
use crate::otlp_compare::trace_ids;
use crate::otlp_rust::{Transport, emit_trace};
use crate::query_api::{link_counts, topology, topology_edges};

fn spans_of(expected: &[ResourceSpans]) -> Vec<&OtlpSpan> {
    expected.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans).collect()
}

/// The value of a Jaeger tag list entry, as (type, value).
fn tag(tags: &Value, key: &str) -> Option<(String, Value)> {
    let tag = tags.as_array().unwrap().iter().find(|t| t["key"] == key)?;
    Some((tag["type"].as_str().unwrap().to_owned(), tag["value"].clone()))
}

fn typed(kind: &str, value: Value) -> Option<(String, Value)> {
    Some((kind.to_owned(), value))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_trace_comes_back_in_jaegers_model() {
    let server = TestServer::start().await;
    let expected = tokio::task::block_in_place(|| emit_trace(Transport::Grpc, &server));
    let id = trace_ids(&expected).remove(0);
    let body = get_ok(&server, &format!("/api/traces/{id}")).await;
    assert_eq!((body["total"].clone(), body["errors"].clone()), (json!(1), Value::Null));
    let trace = &body["data"][0];
    let jaeger_id = id.strip_prefix("0000000000000000").unwrap_or(&id);
    assert_eq!(trace["traceID"], jaeger_id);

    let process = &trace["processes"]["p1"];
    assert_eq!(trace["processes"].as_object().unwrap().len(), 1, "one resource, one process");
    assert_eq!(process["serviceName"], "rust-sdk-Grpc");
    assert_eq!(tag(&process["tags"], "service.version"), typed("string", json!("1.0.0")));
    assert_eq!(tag(&process["tags"], "resource.int"), typed("int64", json!(7)));
    assert_eq!(tag(&process["tags"], "service.name"), None, "the service name is the process's name");

    let otlp = spans_of(&expected);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), otlp.len());
    let jaeger = |name: &str| spans.iter().find(|s| s["operationName"] == name).unwrap_or_else(|| panic!("{name}"));
    for sent in &otlp {
        let span = jaeger(&sent.name);
        assert_eq!(span["traceID"], jaeger_id);
        assert_eq!(span["spanID"], const_hex::encode(&sent.span_id));
        assert_eq!(span["startTime"], sent.start_time_unix_nano / 1000);
        assert_eq!(span["duration"], (sent.end_time_unix_nano - sent.start_time_unix_nano) / 1000);
        assert_eq!(span["processID"], "p1");
        assert_eq!(span["warnings"], Value::Null);
        assert_eq!(tag(&span["tags"], "otel.scope.name"), typed("string", json!("spanlake-e2e")));
        assert_eq!(tag(&span["tags"], "otel.scope.version"), typed("string", json!("1.2.3")));
        let references = span["references"].as_array().unwrap();
        assert_eq!(references.len(), usize::from(!sent.parent_span_id.is_empty()) + sent.links.len(), "{}", sent.name);
        if !sent.parent_span_id.is_empty() {
            let parent =
                json!({"refType": "CHILD_OF", "traceID": jaeger_id, "spanID": const_hex::encode(&sent.parent_span_id)});
            assert_eq!(references[0], parent, "the parent comes first");
        }
    }

    let root = jaeger("POST /checkout");
    assert_eq!(tag(&root["tags"], "span.kind"), typed("string", json!("server")));
    assert_eq!(tag(&root["tags"], "attr.int"), typed("int64", json!(-42)));
    assert_eq!(tag(&root["tags"], "attr.double"), typed("float64", json!(3.25)));
    assert_eq!(tag(&root["tags"], "attr.bool"), typed("bool", json!(false)));
    assert_eq!(tag(&root["tags"], "attr.strings"), typed("string", json!(r#"["a","b"]"#)));
    assert_eq!(tag(&root["tags"], "otel.status_code"), None, "unset status");
    let log = &root["logs"][0];
    assert_eq!(log["fields"][0], json!({"key": "event", "type": "string", "value": "cart loaded"}));
    assert_eq!(tag(&log["fields"], "items"), typed("int64", json!(3)));
    let event = &otlp.iter().find(|s| s.name == "POST /checkout").unwrap().events[0];
    assert_eq!(log["timestamp"], event.time_unix_nano / 1000);

    let db = jaeger("INSERT orders");
    assert_eq!(tag(&db["tags"], "span.kind"), typed("string", json!("client")));
    assert_eq!(tag(&db["tags"], "otel.status_code"), typed("string", json!("ERROR")));
    assert_eq!(tag(&db["tags"], "error"), typed("bool", json!(true)));
    assert_eq!(tag(&db["tags"], "otel.status_description"), typed("string", json!("deadline exceeded")));
    assert_eq!(tag(&db["logs"][0]["fields"], "exception.type"), typed("string", json!("Timeout")));

    let retry = jaeger("retry order");
    assert_eq!(tag(&retry["tags"], "otel.status_code"), typed("string", json!("OK")));
    assert_eq!(tag(&retry["tags"], "span.kind"), typed("string", json!("internal")));
    let follows: Vec<(&str, &str)> = retry["references"].as_array().unwrap()[1..]
        .iter()
        .map(|r| {
            assert_eq!(r["refType"], "FOLLOWS_FROM");
            (r["traceID"].as_str().unwrap(), r["spanID"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        follows,
        [(jaeger_id, db["spanID"].as_str().unwrap()), ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")]
    );
    assert_eq!(tag(&jaeger("publish orders")["tags"], "span.kind"), typed("string", json!("producer")));
    assert_eq!(tag(&jaeger("process orders")["tags"], "span.kind"), typed("string", json!("consumer")));

    // Services and operations.
    let services = get_ok(&server, "/api/services").await;
    assert!(services["data"].as_array().unwrap().contains(&json!("rust-sdk-Grpc")), "{services}");
    assert_eq!(services["total"], services["data"].as_array().unwrap().len());
    let names = get_ok(&server, "/api/services/rust-sdk-Grpc/operations").await;
    let mut sent_names: Vec<&str> = otlp.iter().map(|s| s.name.as_str()).collect();
    sent_names.sort();
    assert_eq!(names["data"], json!(sent_names));
    let servers = get_ok(&server, "/api/operations?service=rust-sdk-Grpc&spanKind=server").await;
    assert_eq!(servers["data"], json!([{"name": "POST /checkout", "spanKind": "server"}]));
    let all = get_ok(&server, "/api/operations?service=rust-sdk-Grpc").await;
    assert_eq!(all["total"], 5);

    // Search: every tag on one span, operation and duration on that span too.
    let search = |query: String| {
        let server = &server;
        async move {
            let body = get_ok(server, &format!("/api/traces?service=rust-sdk-Grpc&lookback=1h&limit=20&{query}")).await;
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["traceID"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let tags = |object: Value| format!("tags={}", percent_encode(&object.to_string()));
    assert_eq!(search(tags(json!({"db.system": "postgresql"}))).await, [jaeger_id]);
    assert_eq!(search(tags(json!({"db.system": "postgresql", "error": "true"}))).await, [jaeger_id]);
    assert_eq!(search(tags(json!({"db.system": "postgresql", "span.kind": "server"}))).await, Vec::<String>::new());
    assert_eq!(
        search(format!("operation=INSERT%20orders&{}", tags(json!({"db.system": "postgresql"})))).await,
        [jaeger_id]
    );
    assert_eq!(
        search(format!("operation=POST%20/checkout&{}", tags(json!({"db.system": "postgresql"})))).await,
        Vec::<String>::new()
    );
    assert_eq!(search("tag=http.route:/checkout&minDuration=0ms".into()).await, [jaeger_id]);
    // Tags match log (event), link, scope and resource attributes too, and
    // the tags Jaeger's model adds; all of them on one span.
    for found in [
        json!({"currency": "EUR"}),
        json!({"currency": "EUR", "http.route": "/checkout"}),
        json!({"link.reason": "retry of"}),
        json!({"scope.flag": "true"}),
        json!({"service.version": "1.0.0", "db.system": "postgresql"}),
        json!({"otel.scope.name": "spanlake-e2e", "span.kind": "client", "otel.status_code": "ERROR"}),
        json!({"otel.status_description": "deadline exceeded"}),
    ] {
        assert_eq!(search(tags(found.clone())).await, [jaeger_id], "{found}");
    }
    for missing in [json!({"currency": "EUR", "db.system": "postgresql"}), json!({"link.reason": "other"})] {
        assert_eq!(search(tags(missing.clone())).await, Vec::<String>::new(), "{missing}");
    }
    assert_eq!(search("minDuration=1h".into()).await, Vec::<String>::new());
    // By id, as Grafana asks for several.
    let by_id = get_ok(&server, &format!("/api/traces?traceID={id}")).await;
    assert_eq!(by_id["data"][0]["spans"].as_array().unwrap().len(), otlp.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn jaeger_errors_come_in_jaegers_envelope() {
    let server = TestServer::start().await;
    let (status, body) = get(&server, "/api/traces/0af7651916cd43dd8448eb211c80319c").await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]})
    );
    for (query, name) in [
        ("/api/traces?service=a&minDuration=fast", "minDuration"),
        ("/api/traces?lookback=1h", "service"),
        ("/api/traces?service=a&tags=%7Bbroken", "tags"),
        ("/api/traces?service=a&tag=nocolon", "tag"),
        ("/api/traces?service=a&start=yesterday", "start"),
        ("/api/traces/xyz", "traceID"),
        ("/api/dependencies?endTs=soon", "endTs"),
        ("/api/operations", "service"),
    ] {
        let (status, body) = get(&server, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["data"], Value::Null, "{query}");
        assert_eq!(body["errors"][0]["code"], 400, "{query}");
        let message = body["errors"][0]["msg"].as_str().unwrap();
        assert!(message.contains(name), "{query}: {message}");
    }
    // What no document can state across parameters is answered: nothing
    // lasts at least 2 s and at most 1 s.
    let (status, body) = get(&server, "/api/traces?service=a&minDuration=2s&maxDuration=1s").await;
    assert_eq!((status, body["data"].clone()), (200, serde_json::json!([])), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn jaeger_search_matches_within_one_span_and_dependencies_count_calls() {
    let server = TestServer::start().await;
    let base = now_ms() - 5 * 60 * 1000;
    // Jaeger's storage integration cases, in spirit: tags on different
    // spans of a trace do not make a match; tags of the resource do.
    let spans = vec![
        Span::new(1, 1, "shop", "GET /a", SERVER).at(0, 50).attr("http.route", "/a").resource("region", "eu"),
        Span::new(1, 2, "shop", "SELECT", CLIENT)
            .child_of(1)
            .at(5, 20)
            .attr("db.system", "pg")
            .resource("region", "eu"),
        Span::new(2, 3, "shop", "GET /b", SERVER).at(100, 5).attr("http.route", "/b").attr("db.system", "pg"),
    ];
    send(&server, base, &spans).await;
    let end = (base + 60_000) * 1000;
    let start = (base - 60_000) * 1000;
    let found = |query: &str| {
        let (server, query) = (&server, query.to_owned());
        async move {
            let body = get_ok(server, &format!("/api/traces?service=shop&start={start}&end={end}&{query}")).await;
            let mut ids: Vec<String> =
                body["data"].as_array().unwrap().iter().map(|t| t["traceID"].as_str().unwrap().to_owned()).collect();
            ids.sort();
            ids
        }
    };
    let (t1, t2) = ("0000000000000001", "0000000000000002");
    assert_eq!(found("").await, [t1, t2]);
    assert_eq!(found("tag=db.system:pg").await, [t1, t2]);
    assert_eq!(found("tag=db.system:pg&tag=http.route:/a").await, Vec::<String>::new(), "two spans, not one");
    assert_eq!(found("tag=db.system:pg&tag=http.route:/b").await, [t2]);
    assert_eq!(found("tag=region:eu&tag=db.system:pg").await, [t1], "resource tags match");
    assert_eq!(found("operation=SELECT&minDuration=10ms").await, [t1]);
    assert_eq!(found("operation=GET%20/b&minDuration=10ms").await, Vec::<String>::new());
    assert_eq!(found("maxDuration=10ms").await, [t2]);
    assert_eq!(found("limit=1").await, [t2], "newest first");

    let mut graph = topology(10, true);
    graph.extend(topology(11, false));
    send(&server, base, &graph).await;
    let links = get_ok(&server, &format!("/api/dependencies?endTs={}&lookback=3600000", base + 60_000)).await;
    let edges = link_counts(&links["data"]);
    let mut expected: Vec<(String, String, String)> =
        topology_edges(2, 1).into_iter().map(|(p, c, n, _)| (p, c, n.to_string())).collect();
    // The first trace's database call is a leaf edge.
    expected.push(("shop".into(), "pg".into(), "1".into()));
    expected.sort();
    assert_eq!(edges, expected);
    assert_eq!(links["total"], expected.len());
}
