//! The command line: `spanlake sql` on a data directory or a server,
//! `spanlake demo`, `search`, `trace`, `export` and `import` against real
//! servers.

use serde_json::{Value, json};

use crate::fixture::trace_id;
use crate::harness::{TestServer, run_cli};
use crate::query_api::shop_server;

#[tokio::test(flavor = "multi_thread")]
async fn demo_traffic_and_the_sql_command() {
    let mut server = TestServer::start().await;
    let endpoint = server.grpc_endpoint();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&["demo", "--endpoint", &endpoint, "--traces", "60", "--rate", "200"])
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    assert!(stdout.contains("sent 60 traces"), "{stdout}");

    // The demo shows a shop: several services, a canary beside its stable
    // version, errors, and database and messaging calls.
    let services = server.sql_scalar("SELECT count(DISTINCT service_name) FROM spans").await;
    assert!(services.as_i64().unwrap() >= 5, "{services}");
    let kinds = server.sql_scalar("SELECT count(DISTINCT span_kind) FROM spans").await;
    assert!(kinds.as_i64().unwrap() >= 3, "{kinds}");
    let with_version = server.sql_scalar("SELECT count(*) FROM spans WHERE service_version IS NULL").await;
    assert_eq!(with_version.as_i64(), Some(0), "every resource has service.version");
    let db = server.sql_scalar("SELECT count(*) FROM spans WHERE db_system IS NOT NULL").await;
    assert!(db.as_i64().unwrap() > 0);

    let url = format!("http://{}", server.http_addr);
    let (ok, table, stderr) =
        run_cli(&["sql", "--server", &url, "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"]);
    assert!(ok, "{stderr}");
    assert!(table.starts_with("+-") && table.contains("| frontend ") && table.contains(" rows\n"), "{table}");

    let (ok, _, stderr) = run_cli(&["sql", "--server", &url, "DROP TABLE spans"]);
    assert!(!ok);
    assert!(stderr.contains("read-only"), "{stderr}");

    // On the files alone, once the server has flushed them at shutdown.
    let total = server.span_count().await;
    server.stop().await;
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    let (ok, csv, stderr) =
        run_cli(&["sql", "--data-dir", &data_dir, "--format", "csv", "SELECT count(*) AS n FROM spans"]);
    assert!(ok, "{stderr}");
    assert_eq!(csv, format!("n\n{total}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_home_page_is_served() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.api_url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("spanlake") && html.contains("4317"), "{html}");
}

/// `search`, `trace`, `export` and `import` against real servers: a window
/// exported from one server and imported into an empty one comes back as
/// the same traces.
#[tokio::test(flavor = "multi_thread")]
async fn search_trace_export_and_import_through_the_client() {
    let (source, _) = shop_server().await;
    let url = format!("http://{}", source.http_addr);
    let cli = |args: Vec<String>| async move {
        let shown = args.join(" ");
        let run = move || run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let (ok, stdout, stderr) = tokio::task::spawn_blocking(run).await.unwrap();
        assert!(ok, "spanlake {shown}: {stderr}");
        (stdout, stderr)
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let (json, _) = cli(args(&["search", "--server", &url, "--lookback", "1h", "--format", "json"])).await;
    let ids: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["traceID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [trace_id(3), trace_id(2), trace_id(1)], "newest first");
    let (table, _) = cli(args(&["search", "--server", &url, "--service", "backend", "--tags", "customer=acme"])).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TRACE ID") && lines.len() == 2, "{table}");
    assert!(lines[1].starts_with(&trace_id(1)) && lines[1].ends_with("frontend: GET /a"), "{table}");

    let (tree, _) = cli(args(&["trace", "--server", &url, &trace_id(1)])).await;
    let spans: Vec<&str> = tree.lines().skip(3).collect();
    assert_eq!(spans.len(), 3, "{tree}");
    assert!(spans[0].ends_with("* 50.0 ms  frontend: GET /a"), "the root adds 50 ms of its 100: {tree}");
    assert!(spans[1].ends_with("* 10.0 ms    frontend: GET"), "{tree}");
    assert!(spans[2].ends_with("* 40.0 ms      backend: GET /b"), "{tree}");
    let (zipkin, _) = cli(args(&["trace", "--server", &url, &trace_id(1), "--format", "zipkin"])).await;
    assert_eq!(serde_json::from_str::<Value>(&zipkin).unwrap().as_array().map(Vec::len), Some(3));
    let (jaeger, _) = cli(args(&["trace", "--server", &url, &trace_id(1), "--format", "jaeger"])).await;
    assert_eq!(serde_json::from_str::<Value>(&jaeger).unwrap()["data"][0]["spans"].as_array().map(Vec::len), Some(3));
    let (ok, _, stderr) = run_cli(&["trace", "--server", &url, &"ab".repeat(16)]);
    assert!(!ok && stderr.contains("not found"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let lines_file = dir.path().join("shop.jsonl").to_str().unwrap().to_owned();
    let (_, stderr) = cli(args(&["export", "--server", &url, "--lookback", "1h", "--out", &lines_file])).await;
    assert!(stderr.contains("exported 3 traces"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&lines_file).unwrap().lines().count(), 3, "a trace a line");
    let newest = dir.path().join("newest.jsonl").to_str().unwrap().to_owned();
    cli(args(&["export", "--server", &url, "--lookback", "1h", "--limit", "2", "--out", &newest])).await;
    let exported: Vec<Value> =
        std::fs::read_to_string(&newest).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let trace_of = |request: &Value| request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"].clone();
    assert_eq!(exported.iter().map(trace_of).collect::<Vec<_>>(), [json!(trace_id(3)), json!(trace_id(2))]);
    let parquet_file = dir.path().join("backend.parquet");
    let out = parquet_file.to_str().unwrap();
    cli(args(&["export", "--server", &url, "--lookback", "1h", "--service", "backend", "--out", out])).await;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&parquet_file).unwrap(),
    )
    .unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 5, "traces 1 and 2, every span of each");

    let target = TestServer::start().await;
    let endpoint = format!("http://{}", target.otlp_http_addr);
    let (_, stderr) = cli(args(&["import", "--endpoint", &endpoint, &lines_file])).await;
    assert!(stderr.contains("imported 6 spans"), "{stderr}");
    let (from, to) = (source.client().build().unwrap(), target.client().build().unwrap());
    for n in 1..=3 {
        let id = trace_id(n).parse().unwrap();
        assert_eq!(to.trace(id).await.unwrap(), from.trace(id).await.unwrap(), "trace {n} came back as it was");
    }

    // Zipkin's JSON, as its UI downloads a trace.
    let zipkin_file = dir.path().join("trace-1.json");
    std::fs::write(&zipkin_file, &zipkin).unwrap();
    let empty = TestServer::start().await;
    let endpoint = format!("http://{}", empty.otlp_http_addr);
    cli(args(&["import", "--endpoint", &endpoint, zipkin_file.to_str().unwrap()])).await;
    let names = empty.sql("SELECT service_name, span_name FROM spans ORDER BY start_time").await;
    let expected = json!([["frontend", "get /a"], ["frontend", "get"], ["backend", "get /b"]]);
    assert_eq!(names["rows"], expected, "as Zipkin's API wrote them, lower case: {names}");
    let (ok, _, stderr) = run_cli(&["import", "--endpoint", &endpoint, out]);
    assert!(!ok && stderr.contains("not an OTLP/JSON export request"), "a Parquet file is refused: {stderr}");
}
