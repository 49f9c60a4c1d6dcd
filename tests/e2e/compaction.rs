//! Compaction under load: counts never change while files are merged, a
//! retried export's repeat is a row or a dropped repeat, never lost or
//! counted twice, and the trace index agrees.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{ServerOptions, TestServer};

/// An export of `spans` spans of trace `trace`, five hours old (a finished hour).
fn export(trace: u64, spans: u64) -> Value {
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        - 5 * 3_600_000_000_000;
    let spans: Vec<_> = (1..=spans)
        .map(|i| {
            json!({"traceId": format!("{trace:032x}"), "spanId": format!("{:016x}", trace * 1000 + i), "name": "op",
                   "parentSpanId": if i == 1 { String::new() } else { format!("{:016x}", trace * 1000 + 1) },
                   "startTimeUnixNano": (start + i * 1000).to_string(), "endTimeUnixNano": (start + i * 1000 + 500).to_string()})
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "compacted"}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
}

async fn counts(server: &TestServer) -> (i64, i64, i64) {
    let body = server
        .sql("SELECT (SELECT count(*) FROM spans), (SELECT count(DISTINCT span_id) FROM spans), (SELECT sum(span_count) FROM trace_index)")
        .await;
    let row = &body["rows"][0];
    (row[0].as_i64().unwrap(), row[1].as_i64().unwrap(), row[2].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_hold_while_hours_are_compacted() {
    let server = TestServer::start_with(
        ServerOptions::default()
            .arg("--flush-interval", "100ms")
            .arg("--compaction-interval", "300ms")
            .arg("--compaction-min-files", "2")
            .arg("--delete-grace", "1s"),
    )
    .await;
    let http = reqwest::Client::new();
    for trace in 1..=6u64 {
        let body = export(trace, 10);
        let posted = http.post(server.otlp_http_url()).json(&body).send().await.unwrap();
        assert_eq!(posted.status(), 200);
        if trace == 6 {
            // A client retry: the same export once more.
            http.post(server.otlp_http_url()).json(&body).send().await.unwrap();
        }
        server.wait_until_flushed().await;
    }

    // Query while compaction runs: the distinct spans never change, and
    // the repeat is there once or gone (dropped by the flush or a merge
    // that met both copies), never anything else.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut compacted = false;
    while Instant::now() < deadline {
        let removed = server.metric("spanlake_duplicate_spans_removed_total").await;
        let (rows, distinct, indexed) = counts(&server).await;
        assert_eq!(distinct, 60, "{}", server.log());
        assert!(rows == 70 || rows == 60, "rows {rows}");
        assert_eq!(indexed, rows, "the trace index counts what the spans hold");
        if server.metric("spanlake_duplicate_spans_removed_total").await == removed {
            assert_eq!(rows as f64 + removed, 70.0, "every span is a row or a dropped repeat");
        }
        let (status, trace) = server.trace(&format!("{:032x}", 3)).await;
        assert_eq!((status, trace.map(|t| t.resource_spans[0].scope_spans[0].spans.len())), (200, Some(10)));
        if server.metric("spanlake_compactions_total").await >= 2.0 {
            compacted = true;
            break;
        }
    }
    assert!(compacted, "no compaction happened:\n{}", server.log());
    let flushed = server.metric("spanlake_flush_bytes_written_total").await;
    let compacted = server.metric("spanlake_compaction_bytes_written_total").await;
    assert!(flushed > 0.0 && compacted > 0.0, "flushed {flushed} B, compacted {compacted} B");
    // The replaced files are deleted after the grace period.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.parquet_files().len() as f64 > server.metric("spanlake_files").await {
        assert!(Instant::now() < deadline, "replaced files stay: {:?}", server.parquet_files());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let removed = server.metric("spanlake_duplicate_spans_removed_total").await as i64;
    assert_eq!(counts(&server).await, (70 - removed, 60, 70 - removed));
}
