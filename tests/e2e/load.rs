//! `spanlake load` against a real server: what it reports acknowledged is
//! what the server holds, over every protocol, and refused exports are
//! counted, and retried unless asked not to.

use serde_json::Value;

use crate::harness::{ServerOptions, TestServer, run_cli};

async fn load(args: Vec<String>) -> Value {
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args)
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn args(protocol: &str, endpoint: String, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["load", "--json", "--protocol", protocol, "--endpoint", &endpoint];
    args.extend_from_slice(extra);
    args.into_iter().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn what_load_reports_acknowledged_is_stored() {
    let server = TestServer::start().await;
    let grpc = load(args(
        "grpc",
        server.grpc_endpoint(),
        &["--spans", "3000", "--batch", "250", "--concurrency", "3", "--spans-per-trace", "50", "--tenant", "bench"],
    ))
    .await;
    assert_eq!((grpc["spans_acknowledged"].as_u64(), grpc["spans_refused"].as_u64()), (Some(3000), Some(0)), "{grpc}");
    let bytes_per_span = grpc["bytes_per_span"].as_f64().unwrap();
    assert!((400.0..700.0).contains(&bytes_per_span), "about 500 bytes per span: {grpc}");
    assert!(grpc["export_latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{grpc}");

    let http = load(args(
        "http",
        format!("http://{}", server.otlp_http_addr),
        &["--spans", "1000", "--batch", "100", "--tenant", "bench", "--rate", "20000"],
    ))
    .await;
    assert_eq!(http["spans_acknowledged"].as_u64(), Some(1000), "{http}");

    let json = load(args(
        "http-json",
        format!("http://{}", server.otlp_http_addr),
        &["--spans", "1000", "--batch", "100", "--tenant", "bench"],
    ))
    .await;
    assert_eq!((json["spans_acknowledged"].as_u64(), json["protocol"].as_str()), (Some(1000), Some("http-json")));

    let (status, body) = server
        .sql_as(
            Some("bench"),
            "SELECT count(*), count(DISTINCT trace_id), count(DISTINCT (trace_id, span_id)) FROM spans",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let row = &body["rows"][0];
    assert_eq!((row[0].as_i64(), row[2].as_i64()), (Some(5000), Some(5000)), "every span new: {body}");
    // 3000 spans in traces of 50, then 2000 spans in demo-sized traces.
    assert!(row[1].as_i64().unwrap() > 60, "{body}");
    assert_eq!(server.span_count().await, 0, "the default tenant saw nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_exports_are_counted_and_retried() {
    // A 1 MiB buffer, flushed only when half full: flat out, many exports
    // meet a full buffer.
    let server = TestServer::start_with(
        ServerOptions::default().arg("--max-buffer-bytes", "1048576").arg("--flush-interval", "1h"),
    )
    .await;
    // A bound, so that a server that never frees its buffer fails the test instead of hanging it.
    let retried =
        load(args("grpc", server.grpc_endpoint(), &["--spans", "10000", "--concurrency", "4", "--duration", "60s"]))
            .await;
    assert!(retried["spans_refused"].as_u64().unwrap() > 0, "{retried}");
    assert_eq!((retried["spans_acknowledged"].as_u64(), retried["spans_given_up"].as_u64()), (Some(10_000), Some(0)));
    assert_eq!(server.span_count().await, 10_000);

    let once =
        load(args("grpc", server.grpc_endpoint(), &["--spans", "10000", "--concurrency", "4", "--no-retry"])).await;
    let acknowledged = once["spans_acknowledged"].as_u64().unwrap();
    assert_eq!(once["spans_given_up"], once["spans_refused"], "{once}");
    assert_eq!(acknowledged + once["spans_given_up"].as_u64().unwrap(), 10_000, "{once}");
    assert_eq!(once["spans_failed"].as_u64(), Some(0), "{once}");
    assert_eq!(server.span_count().await, 10_000 + acknowledged as i64);
}

/// `--verify` reads a sample back through the driver client: everything
/// sent is there as sent; asked of a server that never got the spans, every
/// span is reported missing and the run fails.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reads_a_sample_back_as_sent() {
    let server = TestServer::start().await;
    let api = format!("http://{}", server.http_addr);
    let extra = ["--spans", "4000", "--batch", "200", "--tenant", "bench", "--verify", "--server", &api];
    let report = load(args("http", format!("http://{}", server.otlp_http_addr), &extra)).await;
    let verified = &report["verified"];
    assert_eq!(verified["spans_checked"].as_u64(), Some(2000), "10 requests of 200 spans: {report}");
    assert_eq!((verified["spans_missing"].as_u64(), verified["spans_different"].as_u64()), (Some(0), Some(0)));

    let elsewhere = TestServer::start().await;
    let api = format!("http://{}", elsewhere.http_addr);
    let extra = ["--spans", "400", "--batch", "200", "--verify", "--server", &api];
    let args = args("grpc", server.grpc_endpoint(), &extra);
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args)
    })
    .await
    .unwrap();
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("400 spans missing, 0 different of 400 read back"), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["verified"]["problems"][0].as_str().unwrap().ends_with(": missing"), "{report}");
}
