//! SQL over HTTP: results as JSON and CSV, ids as hex, trace-id predicates
//! answered through the bloom filter, and nothing but reading allowed.

use serde_json::{Value, json};

use crate::fixture::send_resource_spans;
use crate::harness::{ServerOptions, TestServer};

fn span(trace_id: &str, span_id: &str, service: &str, name: &str) -> Value {
    json!({
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": span_id, "name": name, "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000"
        }]}]
    })
}

fn trace_id(first_byte: &str) -> String {
    format!("{first_byte}{}", "ab".repeat(15))
}

/// Reads `name=N total → M matched` from EXPLAIN ANALYZE output.
fn metric(plan: &str, name: &str) -> (u64, u64) {
    let start = plan.find(&format!("{name}=")).unwrap_or_else(|| panic!("no {name} in:\n{plan}"));
    let text = &plan[start + name.len() + 1..];
    let numbers: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_id_lookups_are_answered_through_the_bloom_filter() {
    let server = TestServer::start_with(ServerOptions::default().arg("--flush-interval", "100ms")).await;
    // Two files whose trace-id ranges overlap, so min/max statistics cannot
    // tell them apart: file A holds 10… and f0…, file B 20… and e0….
    send_resource_spans(
        &server,
        vec![span(&trace_id("10"), "00000000000000a1", "a", "x"), span(&trace_id("f0"), "00000000000000a2", "a", "y")],
    )
    .await;
    server.wait_until_flushed().await;
    send_resource_spans(
        &server,
        vec![span(&trace_id("20"), "00000000000000b1", "b", "x"), span(&trace_id("e0"), "00000000000000b2", "b", "y")],
    )
    .await;
    server.wait_until_flushed().await;

    let wanted = trace_id("20");
    let rows = server.sql(&format!("SELECT service_name, span_id FROM spans WHERE trace_id = '{wanted}'")).await;
    assert_eq!(rows["rows"], json!([["b", "00000000000000b1"]]));
    let upper = server.sql(&format!("SELECT count(*) FROM spans WHERE trace_id = '{}'", wanted.to_uppercase())).await;
    assert_eq!(upper["rows"], json!([[1]]));
    let listed =
        server.sql(&format!("SELECT count(*) FROM spans WHERE trace_id IN ('{wanted}', '{}')", trace_id("10"))).await;
    assert_eq!(listed["rows"], json!([[2]]));

    let explain = server.sql(&format!("EXPLAIN ANALYZE SELECT * FROM spans WHERE trace_id = '{wanted}'")).await;
    let plan =
        explain["rows"].as_array().unwrap().iter().map(|r| r[1].as_str().unwrap_or_default()).collect::<String>();
    let bytes_literal = format!("required_guarantees=[trace_id in ({}", &wanted[..20].to_uppercase());
    assert!(plan.contains(&bytes_literal), "the predicate reaches the reader as bytes:\n{plan}");
    assert_eq!(metric(&plan, "row_groups_pruned_statistics"), (2, 2), "statistics keep both files:\n{plan}");
    assert_eq!(metric(&plan, "row_groups_pruned_bloom_filter"), (2, 1), "the bloom filter drops file A:\n{plan}");

    let (status, body) = server.sql_response("SELECT * FROM spans WHERE trace_id = 'not-hex'").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("trace_id"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn results_come_as_json_or_csv_with_hex_ids() {
    let server = TestServer::start().await;
    send_resource_spans(&server, vec![span(&trace_id("01"), "00000000000000c1", "svc, with comma", "op")]).await;
    let body = server.sql("SELECT trace_id, service_name, duration_ns, start_time FROM spans").await;
    assert_eq!(body["columns"][0], json!({"name": "trace_id", "type": "FixedSizeBinary(16)"}));
    assert_eq!(body["columns"][1]["type"], "Utf8");
    assert_eq!(body["rows"][0][0], json!(trace_id("01")));
    assert_eq!(body["rows"][0][2], json!(500_000_000));
    assert!(body["rows"][0][3].as_str().unwrap().starts_with("2023-11-14T22:13:20"), "{body}");

    let csv = reqwest::Client::new()
        .post(server.api_url("/api/v1/sql"))
        .header("accept", "text/csv")
        .json(&json!({"sql": "SELECT trace_id, service_name FROM spans"}))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv.text().await.unwrap(), format!("trace_id,service_name\n{},\"svc, with comma\"\n", trace_id("01")));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_reading_is_allowed() {
    let server = TestServer::start().await;
    send_resource_spans(&server, vec![span(&trace_id("02"), "00000000000000d1", "s", "op")]).await;
    for (sql, expected) in [
        ("CREATE EXTERNAL TABLE p (line TEXT) STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
        ("COPY (SELECT * FROM spans) TO '/tmp/spanlake-copy.csv'", "COPY"),
        ("INSERT INTO spans SELECT * FROM spans", "INSERT"),
        ("DROP TABLE spans", "DROP"),
        ("CREATE VIEW v AS SELECT 1", "CREATE"),
        ("SET datafusion.execution.target_partitions = 1", "SET"),
        ("SELECT * FROM '/etc/passwd'", "passwd"),
        ("SELECT 1; SELECT 2", "one SQL statement"),
        ("SELEC 1", "SELEC"),
    ] {
        let (status, body) = server.sql_response(sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(expected), "{sql}: {message}");
    }
    assert!(!std::path::Path::new("/tmp/spanlake-copy.csv").exists());
    assert_eq!(server.span_count().await, 1);
    let tables = server.sql("SHOW TABLES").await;
    assert!(tables["rows"].as_array().unwrap().iter().any(|r| r[2] == "spans"), "{tables}");
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_functions_answer_trace_questions() {
    use crate::fixture::{SERVER, Span, now_ms, send, span_id, trace_id as tid};

    let server = TestServer::start_with(ServerOptions::default().arg("--flush-interval", "100ms")).await;
    // a [0,100]: b [10,40] with d [15,30], c [50,90]; e [60,120] outlives a.
    let spans = [
        Span::new(7, 1, "api", "a", SERVER).at(0, 100).attr("http.route", "/orders").resource("k8s.cluster.name", "eu"),
        Span::new(7, 2, "api", "b", 1).child_of(1).at(10, 30).attr("cache", "miss"),
        Span::new(7, 4, "db", "d", 3).child_of(2).at(15, 15),
        Span::new(7, 3, "api", "c", 1).child_of(1).at(50, 40),
        Span::new(7, 5, "worker", "e", 5).child_of(1).at(60, 60),
    ];
    send(&server, now_ms() - 60_000, &spans).await;
    server.wait_until_flushed().await;
    let trace = tid(7);

    let tree = server
        .sql(&format!("SELECT span_name, depth, descendants, critical_ns / 1000000 FROM trace_tree('{trace}')"))
        .await;
    assert_eq!(
        tree["rows"],
        json!([["a", 0, 4, 30], ["b", 1, 1, 15], ["d", 2, 0, 15], ["c", 1, 0, 40], ["e", 1, 0, null]])
    );
    let below_b = server.sql(&format!("SELECT span_name, depth FROM descendants('{trace}', '{}')", span_id(2))).await;
    assert_eq!(below_b["rows"], json!([["b", 0], ["d", 1]]));
    let path = server
        .sql(&format!(
            "SELECT count(*), sum(critical_ns) / 1000000, max(duration_ms(duration_ns)) FROM critical_path('{trace}')"
        ))
        .await;
    assert_eq!(path["rows"], json!([[4, 100, 100.0]]), "the path adds up to the root's duration");
    let missing = server.sql(&format!("SELECT count(*) FROM descendants('{trace}', 'ffffffffffffffff')")).await;
    assert_eq!(missing["rows"], json!([[0]]));
    let (status, body) = server.sql_response("SELECT * FROM trace_tree('xyz')").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("trace_tree"), "{body}");

    // Ids as hex and back; attributes wherever they are stored.
    let row = server
        .sql(&format!(
            "SELECT id_to_hex(span_id), attr('http.route'), span_attr('http.route'), resource_attr('http.route'),
                    attr('k8s.cluster.name'), attr('service.name'), attr('cache'), to_json(span_attributes)
             FROM spans WHERE span_id = id_from_hex('{}') OR parent_span_id = id_from_hex('{}') ORDER BY start_time",
            span_id(1),
            span_id(1)
        ))
        .await;
    assert_eq!(row["rows"][0], json!([span_id(1), "/orders", "/orders", null, "eu", "api", null, "{}"]));
    assert_eq!(row["rows"][1][6], "miss");
    assert_eq!(row["rows"][1][7], r#"{"cache":"miss"}"#);
    let (status, body) = server.sql_response("SELECT attr(span_name) FROM spans").await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("literal key"), "{status} {body}");

    // Per-trace summaries: the trace_index view.
    let summary = server
        .sql(&format!("SELECT span_count, duration_ns / 1000000 FROM trace_index WHERE trace_id = '{trace}'"))
        .await;
    assert_eq!(summary["rows"], json!([[5, 120]]));
}
