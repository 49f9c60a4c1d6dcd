//! Spans survive a restart: SIGTERM flushes the buffer, and a new server on
//! the same data directory finds every file.

use serde_json::json;

use crate::harness::{ServerOptions, TestServer};

async fn send(server: &TestServer, trace: &str, spans: u64) {
    let spans: Vec<_> = (1..=spans)
        .map(|i| {
            json!({
                "traceId": trace, "spanId": format!("{i:016x}"), "name": format!("op-{i}"),
                "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"
            })
        })
        .collect();
    let request = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "restart"}}]},
        "scopeSpans": [{"spans": spans}]
    }]});
    let response = reqwest::Client::new().post(server.otlp_http_url()).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_survive_a_restart_whether_flushed_early_or_at_shutdown() {
    let mut server = TestServer::start_with(ServerOptions::default().arg("--flush-interval", "200ms")).await;
    let early = "0000000000000000000000000000e001";
    let late = "0000000000000000000000000000e002";
    send(&server, early, 5).await;
    server.wait_until_flushed().await;
    // Queryable as soon as acknowledged, before any flush of its own.
    send(&server, late, 7).await;
    assert_eq!(server.span_count().await, 12);
    let (_, trace) = server.trace(late).await;
    let before = trace.expect("the late trace");

    server.restart().await;
    assert!(server.log().contains("flushed buffered spans at shutdown"), "{}", server.log());
    assert_eq!(server.span_count().await, 12, "{}", server.log());
    let (status, after) = server.trace(late).await;
    assert_eq!(status, 200);
    assert_eq!(after.unwrap(), before);
    let (status, _) = server.trace(early).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_lookup_answers_404_and_400_clearly() {
    let server = TestServer::start().await;
    send(&server, "0000000000000000000000000000e003", 1).await;
    let (status, _) = server.trace("0000000000000000000000000000e004").await;
    assert_eq!(status, 404);
    for bad in ["xyz", "0000000000000000000000000000e00", "zz00000000000000000000000000e003"] {
        let response = reqwest::get(server.api_url(&format!("/api/v1/traces/{bad}"))).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("32 hex"), "{body}");
    }
    // A 64-bit (16 hex) id is a Zipkin id, padded with zeros.
    let (status, trace) = server.trace("000000000000e003").await;
    assert_eq!(status, 200);
    assert_eq!(trace.unwrap().resource_spans[0].scope_spans[0].spans.len(), 1);
}
