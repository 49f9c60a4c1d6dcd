//! Both generations of the HTTP and network semantic conventions: a span
//! sent with the older names (`http.method`, `http.status_code`,
//! `http.url`, `net.peer.name`, as the Python distribution's Flask
//! instrumentation sends by default) and one with the current names fill
//! the same columns, are found by either name on every query surface, name
//! their peer, and come back with the names they were sent with.

use serde_json::{Value, json};
use spanlake_query::params::percent_encode;

use crate::fixture::{CLIENT, SERVER, Span, get_ok, now_ms, send, trace_id};
use crate::harness::TestServer;
use crate::query_api::found;

#[tokio::test(flavor = "multi_thread")]
async fn either_generation_of_names_is_one_attribute() {
    let server = TestServer::start().await;
    let base = now_ms() - 60_000;
    send(
        &server,
        base,
        &[
            // Trace 1: the older names.
            Span::new(1, 1, "flask-app", "GET /items", SERVER)
                .at(0, 50)
                .attr("http.method", "GET")
                .attr_int("http.status_code", 503),
            Span::new(1, 2, "flask-app", "GET", CLIENT)
                .child_of(1)
                .at(5, 20)
                .attr("http.method", "GET")
                .attr("http.url", "http://inventory.internal:8080/stock?item=1")
                .attr("net.peer.name", "inventory"),
            // Trace 2: the current names.
            Span::new(2, 3, "modern-app", "POST /orders", SERVER)
                .at(100, 30)
                .attr("http.request.method", "POST")
                .attr_int("http.response.status_code", 201),
            Span::new(2, 4, "modern-app", "POST", CLIENT)
                .child_of(3)
                .at(105, 10)
                .attr("http.request.method", "POST")
                .attr("url.full", "https://payments.example:8443/charge"),
        ],
    )
    .await;

    // Search tags, by either name.
    assert_eq!(found(&server, "tags=http.request.method%3DGET").await, [1]);
    assert_eq!(found(&server, "tags=http.method%3DPOST").await, [2]);
    assert_eq!(found(&server, "tags=http.status_code%3D201").await, [2]);
    assert_eq!(found(&server, "tags=url.full%3D~.*inventory.*").await, [1]);
    // TraceQL, by either name.
    let q = |query: &str| format!("q={}", percent_encode(query));
    assert_eq!(found(&server, &q("{ span.http.status_code >= 500 }")).await, [1]);
    assert_eq!(found(&server, &q(r#"{ span.http.request.method = "GET" && kind = client }"#)).await, [1]);
    assert_eq!(found(&server, &q(r#"{ .http.method = "POST" }"#)).await, [2]);
    assert_eq!(found(&server, &q(r#"{ span.server.address = "inventory" }"#)).await, [1]);
    // Jaeger's tags.
    let jaeger = get_ok(
        &server,
        &format!(
            "/api/traces?service=flask-app&lookback=1h&tags={}",
            percent_encode(r#"{"http.request.method":"GET"}"#)
        ),
    )
    .await;
    assert_eq!(jaeger["data"].as_array().unwrap().len(), 1);
    // SQL's attr().
    let rows = server
        .sql("SELECT attr('http.method') AS m, attr('http.response.status_code') AS s FROM spans WHERE span_kind = 'SERVER' ORDER BY m")
        .await;
    assert_eq!(rows["rows"], json!([["GET", "503"], ["POST", "201"]]));

    // The peer: from net.peer.name, or the URL's host.
    let remote = get_ok(&server, "/api/v2/remoteServices?serviceName=flask-app").await;
    assert_eq!(remote, json!(["inventory"]));
    let remote = get_ok(&server, "/api/v2/remoteServices?serviceName=modern-app").await;
    assert_eq!(remote, json!(["payments.example"]));
    let graph = get_ok(&server, "/api/v1/dependencies?lookback=1h").await;
    let edges: Vec<(String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["parent"].as_str().unwrap().into(), e["child"].as_str().unwrap().into()))
        .collect();
    assert!(edges.contains(&("flask-app".into(), "inventory".into())), "{edges:?}");
    assert!(edges.contains(&("modern-app".into(), "payments.example".into())), "{edges:?}");

    // Each span comes back with the names it was sent with.
    let trace = get_ok(&server, &format!("/api/v1/traces/{}", trace_id(1))).await;
    let keys: Vec<Vec<String>> = trace["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"][0]["spans"].as_array().unwrap().clone())
        .map(|span| {
            let mut keys: Vec<String> =
                span["attributes"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap().to_owned()).collect();
            keys.sort();
            keys
        })
        .collect();
    assert!(keys.contains(&vec!["http.method".to_owned(), "http.status_code".to_owned()]), "{keys:?}");
    assert!(
        keys.contains(&vec!["http.method".to_owned(), "http.url".to_owned(), "net.peer.name".to_owned()]),
        "{keys:?}"
    );
    let code: &Value = &trace["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"][0]["spans"].as_array().unwrap().clone())
        .flat_map(|span| span["attributes"].as_array().unwrap().clone())
        .find(|a| a["key"] == "http.status_code")
        .unwrap()["value"]
        .clone();
    assert_eq!(*code, json!({"intValue": "503"}), "its type too");

    // Autocomplete offers both names.
    let tags = get_ok(&server, "/api/v1/tags?lookback=1h").await;
    for key in ["http.method", "http.request.method", "http.status_code", "http.response.status_code"] {
        assert!(tags["tags"].as_array().unwrap().contains(&json!(key)), "{key}: {tags}");
    }
}

/// A Flask app auto-instrumented by the Python distribution with its
/// defaults sends the older names; its columns fill, its client calls name
/// their peer, and a query in the current names finds it.
#[tokio::test(flavor = "multi_thread")]
async fn an_auto_instrumented_flask_app_is_read_in_the_current_names() {
    let Some(python) = crate::harness::python() else { return };
    let server = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flask_app.py");
    let output = tokio::task::spawn_blocking({
        let endpoint = server.otlp_http_url();
        move || {
            std::process::Command::new(python.with_file_name("opentelemetry-instrument"))
                .arg(&python)
                .arg(script)
                .env("OTEL_SERVICE_NAME", "flask-shop")
                .env("OTEL_TRACES_EXPORTER", "otlp")
                .env("OTEL_METRICS_EXPORTER", "none")
                .env("OTEL_LOGS_EXPORTER", "none")
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
                .output()
                .expect("run the Flask app")
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && !stderr.contains("Failed to export"), "the Flask app failed:\n{stderr}");

    let rows = server
        .sql(
            "SELECT CAST(span_kind AS VARCHAR) AS kind, CAST(http_method AS VARCHAR) AS method, http_status_code AS status,
                    CAST(remote_service_name AS VARCHAR) AS remote, span_attributes['http.method'] AS sent_as
             FROM spans WHERE service_name = 'flask-shop' ORDER BY kind, remote",
        )
        .await;
    assert_eq!(
        rows["rows"],
        json!([
            ["CLIENT", "GET", 200, "127.0.0.1", "GET"],
            ["CLIENT", "GET", 200, "localhost", "GET"],
            ["SERVER", "GET", 200, null, "GET"],
            ["SERVER", "GET", 200, null, "GET"],
        ]),
        "the older names fill the columns and stay as sent"
    );
    let q = percent_encode(
        r#"{ span.http.response.status_code = 200 && span.http.request.method = "GET" && kind = server }"#,
    );
    let page = get_ok(&server, &format!("/api/v1/search?q={q}&lookback=1h")).await;
    assert_eq!(page["traces"].as_array().unwrap().len(), 1, "{page}");
    let by_tag = get_ok(&server, "/api/v1/search?tags=url.full%3D~.*localhost.*&lookback=1h").await;
    assert_eq!(by_tag["traces"], page["traces"], "http.url is read as url.full");
}
