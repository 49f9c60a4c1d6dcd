//! The Zipkin v2 API on port 9411: spans posted by py_zipkin (Zipkin's
//! Python reporter, JSON and proto3), by the OpenTelemetry JS SDK's Zipkin
//! exporter (npm) and by hand come back as Zipkin returns them, parts
//! merged, and every read endpoint answers with Zipkin's shapes and units.

use std::io::Write;
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use crate::fixture::{get, get_ok, now_ms};
use crate::harness::{ServerOptions, TestServer, node, python};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/zipkin_report.py");
const NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/zipkin_export.mjs");

async fn post(server: &TestServer, body: Vec<u8>, gzip: bool) -> (u16, String) {
    let mut request =
        reqwest::Client::new().post(server.api_url("/api/v2/spans")).header("content-type", "application/json");
    let body = if gzip {
        request = request.header("content-encoding", "gzip");
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(&body).unwrap();
        encoder.finish().unwrap()
    } else {
        body
    };
    let response = request.body(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Spans sorted by id, names lower-cased as a Zipkin server stores them.
fn by_id(spans: &Value) -> Vec<Value> {
    let mut spans = spans.as_array().unwrap().clone();
    let lower = |value: Option<&mut Value>| {
        if let Some(value) = value
            && let Some(text) = value.as_str()
        {
            *value = json!(text.to_lowercase());
        }
    };
    for span in &mut spans {
        lower(span.get_mut("name"));
        for endpoint in ["localEndpoint", "remoteEndpoint"] {
            lower(span.get_mut(endpoint).and_then(|e| e.get_mut("serviceName")));
        }
    }
    spans.sort_by_key(|s| (s["id"].as_str().unwrap().to_owned(), s["shared"].as_bool().unwrap_or(false)));
    spans
}

#[tokio::test(flavor = "multi_thread")]
async fn py_zipkin_spans_come_back_as_sent() {
    let Some(python) = python() else { return };
    let server = TestServer::start().await;
    for encoding in ["json", "proto3"] {
        let (python, base) = (python.clone(), server.api_url(""));
        let output = tokio::task::spawn_blocking(move || Command::new(python).args([SCRIPT, &base, encoding]).output())
            .await
            .unwrap()
            .expect("run py_zipkin");
        assert!(output.status.success(), "py_zipkin ({encoding}) failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let sent: Value = serde_json::from_slice(&output.stdout).expect("the spans py_zipkin sent");
        assert_eq!(sent.as_array().unwrap().len(), 3, "{encoding}");
        let trace_id = sent[0]["traceId"].as_str().unwrap();
        assert_eq!(trace_id.len(), 16, "py_zipkin reports 64-bit trace ids");
        let stored = get_ok(&server, &format!("/api/v2/trace/{trace_id}")).await;
        assert_eq!(by_id(&stored), by_id(&sent), "{encoding}");
    }
    assert_eq!(server.metric(r#"spanlake_spans_accepted_total{protocol="ZipkinProto3",tenant="default"}"#).await, 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn opentelemetry_js_zipkin_exporter_spans_come_back_as_sent() {
    let Some(node) = node() else { return };
    let server = TestServer::start().await;
    let base = server.api_url("");
    let output = tokio::task::spawn_blocking(move || Command::new(node).args([NODE_SCRIPT, &base]).output())
        .await
        .unwrap()
        .expect("run node");
    assert!(output.status.success(), "the JS exporter failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let mut sent: Value = serde_json::from_slice(&output.stdout).expect("the spans the exporter sent");
    assert_eq!(sent.as_array().unwrap().len(), 2);
    let trace_id = sent[0]["traceId"].as_str().unwrap().to_owned();
    // The OTel mapping reads a `peer.service` tag as the remote endpoint's
    // service, as the OTel Collector's Zipkin receiver and exporter do.
    for span in sent.as_array_mut().unwrap() {
        if let Some(peer) = span["tags"].as_object_mut().unwrap().remove("peer.service") {
            span["remoteEndpoint"] = json!({"serviceName": peer});
        }
    }
    let stored = get_ok(&server, &format!("/api/v2/trace/{trace_id}")).await;
    assert_eq!(by_id(&stored), by_id(&sent));
}

/// One trace in Zipkin's shared-span style: frontend serves `get /` and
/// calls backend, whose server side shares the client's id and is
/// reported in two parts; backend queries mysql, which is not instrumented.
fn shop(t_us: i64) -> Value {
    let local = |service: &str| json!({"serviceName": service, "ipv4": "10.0.0.1"});
    json!([
        {"traceId": "a1b2c3d4e5f60718", "id": "0000000000000001", "name": "get /", "kind": "SERVER",
         "timestamp": t_us, "duration": 100_000, "localEndpoint": local("frontend"), "tags": {"http.path": "/"}},
        {"traceId": "a1b2c3d4e5f60718", "id": "0000000000000002", "parentId": "0000000000000001", "name": "get /api",
         "kind": "CLIENT", "timestamp": t_us + 10_000, "duration": 50_000, "localEndpoint": local("frontend"),
         "remoteEndpoint": {"serviceName": "backend"}},
        {"traceId": "a1b2c3d4e5f60718", "id": "0000000000000002", "parentId": "0000000000000001", "name": "get /api",
         "kind": "SERVER", "shared": true, "timestamp": t_us + 12_000, "duration": 45_000,
         "localEndpoint": local("backend"), "tags": {"error": "boom"}},
        {"traceId": "a1b2c3d4e5f60718", "id": "0000000000000002", "shared": true,
         "localEndpoint": {"serviceName": "backend"}, "annotations": [{"timestamp": t_us + 20_000, "value": "cache miss"}]},
        {"traceId": "a1b2c3d4e5f60718", "id": "0000000000000003", "parentId": "0000000000000002", "name": "query",
         "kind": "CLIENT", "timestamp": t_us + 15_000, "duration": 5_000, "localEndpoint": local("backend"),
         "remoteEndpoint": {"serviceName": "mysql", "ipv4": "10.0.0.9", "port": 3306}}
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_zipkin_api_answers_as_zipkin_does() {
    let server = TestServer::start().await;
    let t_ms = now_ms() - 5 * 60 * 1000;
    let spans = shop(t_ms * 1000);
    let spans = spans.as_array().unwrap();
    let (status, body) = post(&server, serde_json::to_vec(&spans[..3]).unwrap(), false).await;
    assert_eq!((status, body.as_str()), (202, ""));
    let (status, _) = post(&server, serde_json::to_vec(&spans[3..]).unwrap(), true).await;
    assert_eq!(status, 202, "gzip is accepted");

    // The trace: four spans, the two parts of backend's side merged.
    let trace = get_ok(&server, "/api/v2/trace/a1b2c3d4e5f60718").await;
    let mut merged = spans[2].clone();
    merged["annotations"] = spans[3]["annotations"].clone();
    let expected = json!([spans[0], spans[1], merged, spans[4]]);
    assert_eq!(by_id(&trace), by_id(&expected));
    assert_eq!(get_ok(&server, "/api/v2/trace/0000000000000000a1b2c3d4e5f60718").await, trace, "128-bit form");

    assert_eq!(get_ok(&server, "/api/v2/services").await, json!(["backend", "frontend"]));
    assert_eq!(get_ok(&server, "/api/v2/spans?serviceName=frontend").await, json!(["get /", "get /api"]));
    assert_eq!(get_ok(&server, "/api/v2/remoteServices?serviceName=backend").await, json!(["mysql"]));
    assert_eq!(get_ok(&server, "/api/v2/remoteServices?serviceName=frontend").await, json!(["backend"]));

    let traces = |query: &str| {
        let server = &server;
        let query = query.to_owned();
        async move { get_ok(server, &format!("/api/v2/traces?{query}")).await.as_array().unwrap().len() }
    };
    assert_eq!(traces("").await, 1, "default lookback 24 h");
    assert_eq!(traces("serviceName=backend&annotationQuery=error").await, 1);
    assert_eq!(traces("annotationQuery=http.path%3D/").await, 1);
    assert_eq!(traces("annotationQuery=http.path%3D/x").await, 0);
    assert_eq!(traces("annotationQuery=error%20and%20http.path%3D/").await, 0, "no one span has both");
    assert_eq!(traces("annotationQuery=cache%20miss").await, 1, "a bare term matches annotation values too");
    assert_eq!(traces("annotationQuery=cache%20hit").await, 0);
    assert_eq!(traces("serviceName=frontend&spanName=get%20/&minDuration=60000").await, 1, "µs");
    assert_eq!(traces("serviceName=frontend&minDuration=200000").await, 0);
    assert_eq!(traces("remoteServiceName=mysql").await, 1);
    assert_eq!(traces(&format!("endTs={}&lookback=60000", t_ms - 1000)).await, 0, "ms, and the window ends before");
    assert_eq!(traces(&format!("endTs={}&lookback=60000", t_ms + 1000)).await, 1);
    let full = get_ok(&server, "/api/v2/traces?serviceName=frontend").await;
    assert_eq!(by_id(&full[0]), by_id(&trace));

    let many = get_ok(&server, &format!("/api/v2/traceMany?traceIds=a1b2c3d4e5f60718,{}", "ee".repeat(8))).await;
    assert_eq!(many.as_array().unwrap().len(), 1);

    let end = now_ms();
    assert_eq!(
        get_ok(&server, &format!("/api/v2/dependencies?endTs={end}&lookback=3600000")).await,
        json!([
            {"parent": "backend", "child": "mysql", "callCount": 1},
            {"parent": "frontend", "child": "backend", "callCount": 1, "errorCount": 1}
        ])
    );
    assert_eq!(get_ok(&server, &format!("/api/v2/dependencies?endTs={}", t_ms - 1000)).await, json!([]));

    assert!(get_ok(&server, "/api/v2/autocompleteKeys").await.as_array().unwrap().contains(&json!("http.path")));
    assert_eq!(get_ok(&server, "/api/v2/autocompleteValues?key=http.path").await, json!(["/"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_zipkin_requests_are_refused_clearly() {
    let server = TestServer::start().await;
    let (status, body) = post(&server, b"{not json".to_vec(), false).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Zipkin v2 spans"), "{body}");
    let spans = json!([{"traceId": "a1", "id": "0000000000000001"}, {"traceId": "zz", "id": "1"}]);
    let (status, body) = post(&server, serde_json::to_vec(&spans).unwrap(), false).await;
    assert_eq!(status, 400);
    assert!(body.contains("span 1") && body.contains("trace id"), "{body}");
    assert_eq!(server.span_count().await, 0, "nothing of a refused list is stored");
    // Short ids are left-padded, as Zipkin does, not refused.
    let short = json!([{"traceId": "A1", "id": "b2", "name": "x", "timestamp": now_ms() * 1000, "duration": 5}]);
    let (status, body) = post(&server, serde_json::to_vec(&short).unwrap(), false).await;
    assert_eq!(status, 202, "{body}");
    let stored = get_ok(&server, "/api/v2/trace/a1").await;
    assert_eq!(
        (stored[0]["traceId"].clone(), stored[0]["id"].clone()),
        (json!("00000000000000a1"), json!("00000000000000b2"))
    );
    for (content_type, body, status, message) in [
        ("application/x-protobuf", &b"\x0a\xff\xff"[..], 400, "proto3 ListOfSpans"),
        ("application/x-thrift", &b"x"[..], 415, "application/x-protobuf"),
    ] {
        let response = reqwest::Client::new()
            .post(server.api_url("/api/v2/spans"))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{content_type}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{content_type}: {text}");
    }

    for (path, status, parameter) in [
        ("/api/v2/trace/0000000000000009", 404, ""),
        ("/api/v2/trace/xyz", 400, "traceId"),
        ("/api/v2/spans", 400, "serviceName"),
        ("/api/v2/remoteServices", 400, "serviceName"),
        ("/api/v2/dependencies", 400, "endTs"),
        ("/api/v2/dependencies?endTs=soon", 400, "end"),
        ("/api/v2/traces?limit=0", 400, "limit"),
        ("/api/v2/traces?minDuration=x", 400, "minDuration"),
        ("/api/v2/traceMany", 400, "traceIds"),
        ("/api/v2/autocompleteValues", 400, "key"),
    ] {
        let (got, body) = get(&server, path).await;
        assert_eq!(got, status, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(parameter), "{path}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zipkins_ui_finds_the_api_under_zipkin_and_on_other_origins() {
    let server = TestServer::start().await;
    let config = get_ok(&server, "/zipkin/config.json").await;
    assert_eq!((config["searchEnabled"].clone(), config["dependency"]["enabled"].clone()), (json!(true), json!(true)));
    let services = get_ok(&server, "/zipkin/api/v2/services").await;
    assert_eq!(services, get_ok(&server, "/api/v2/services").await);

    // CORS: every origin may read without a token.
    let client = reqwest::Client::new();
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.api_url("/api/v2/services"))
        .header("origin", "http://lens.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let read =
        client.get(server.api_url("/api/v2/services")).header("origin", "http://lens.example").send().await.unwrap();
    assert_eq!(read.headers()["access-control-allow-origin"], "*");

    // With a token, only the origins listed, with credentials.
    let options = ServerOptions::default()
        .arg("--auth-token", "s3cret")
        .arg("--cors-allowed-origins", "http://lens.example,http://other.example");
    let guarded = TestServer::start_with(options).await;
    let ask = |origin: &'static str| {
        let (client, url) = (client.clone(), guarded.api_url("/zipkin/api/v2/services"));
        async move {
            client
                .request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .send()
                .await
                .unwrap()
        }
    };
    let allowed = ask("http://lens.example").await;
    assert_eq!(allowed.headers()["access-control-allow-origin"], "http://lens.example");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let refused = ask("http://evil.example").await;
    assert!(refused.headers().get("access-control-allow-origin").is_none(), "{:?}", refused.headers());
    let (status, _) = get(&guarded, "/zipkin/api/v2/services").await;
    assert_eq!(status, 401, "the token still guards the reads");
}
