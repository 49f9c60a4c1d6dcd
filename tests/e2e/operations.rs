//! What an operator watches: /healthz, /readyz and /metrics.

use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_tell_what_happens() {
    let server =
        TestServer::start_with(crate::harness::ServerOptions::default().arg("--flush-interval", "100ms")).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(reqwest::get(server.api_url(path)).await.unwrap().status(), 200, "{path}");
    }
    let body = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000001", "name": "a",
         "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
        {"traceId": "5b8efff7", "spanId": "0000000000000002", "name": "bad id",
         "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]});
    let posted = reqwest::Client::new()
        .post(server.otlp_http_url())
        .header("X-Scope-OrgID", "ops")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    server.wait_until_flushed().await;

    let text = server.metrics().await;
    for line in [
        r#"spanlake_spans_received_total{protocol="OtlpHttpJson",tenant="ops"} 2"#,
        r#"spanlake_spans_accepted_total{protocol="OtlpHttpJson",tenant="ops"} 1"#,
        r#"spanlake_spans_rejected_total{protocol="OtlpHttpJson",tenant="ops"} 1"#,
        r#"spanlake_flushes_total{tenant="ops"} 1"#,
        r#"spanlake_files{tenant="ops"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    for name in
        ["spanlake_wal_bytes_total", "spanlake_wal_fsync_seconds_count", "spanlake_buffer_bytes", "spanlake_file_bytes"]
    {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(server.metric("spanlake_wal_fsync_seconds_count").await >= 1.0);
    assert!(server.metric("spanlake_wal_bytes_total").await > 0.0);
}
