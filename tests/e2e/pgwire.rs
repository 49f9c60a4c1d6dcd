//! The PostgreSQL wire protocol with real clients: psql (queries, `\d`,
//! `\dt`, errors with their SQLSTATE), psycopg (prepared statements with
//! parameters, text and binary results, cancel), the token as password,
//! and attack queries refused or cut off while ingest goes on.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::{SERVER, Span, now_ms, send, span_id, trace_id};
use crate::harness::{ServerOptions, TestServer, psql, python};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/pg_client.py");

/// Runs psql against `server` as `user`; `-X` skips any ~/.psqlrc, and
/// `VERBOSITY=verbose` prints each error's SQLSTATE.
async fn run_psql(server: &TestServer, user: &str, password: Option<&str>, args: &[&str]) -> Output {
    let psql = psql().expect("checked by the caller");
    let mut command = Command::new(psql);
    command
        .args(["-X", "-h", "127.0.0.1", "-p", &server.pg_addr.port().to_string(), "-U", user, "-d", "spanlake"])
        .args(["-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-A", "-F", "|"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10");
    match password {
        Some(password) => command.env("PGPASSWORD", password),
        None => command.env_remove("PGPASSWORD").arg("-w"),
    };
    tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("run psql")
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// psql -c `sql`, which must succeed; its rows without header and footer.
async fn query(server: &TestServer, sql: &str) -> String {
    let output = run_psql(server, "default", None, &["-t", "-c", sql]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "psql -c {sql:?} failed: {stderr}\n{}", server.log());
    stdout
}

/// psql -c `sql`, which must fail; its error message.
async fn refused(server: &TestServer, sql: &str) -> String {
    let output = run_psql(server, "default", None, &["-t", "-c", sql]).await;
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "psql -c {sql:?} should fail, printed {stdout}");
    stderr
}

/// A trace of four spans (root, two children, a grandchild) and `filler`
/// one-span traces.
async fn load(server: &TestServer, filler: u16) -> i64 {
    let base = now_ms() - 60_000;
    let mut spans = vec![
        Span::new(1, 1, "api", "GET /orders", SERVER).at(0, 100).attr("http.route", "/orders"),
        Span::new(1, 2, "api", "load", 1).child_of(1).at(10, 30).attr("cache", "miss"),
        Span::new(1, 3, "db", "SELECT", 3).child_of(2).at(15, 15),
        Span::new(1, 4, "api", "render", 1).child_of(1).at(50, 40),
    ];
    spans.extend((0..filler).map(|n| Span::new(100 + n, 1000 + u64::from(n), "filler", "tick", SERVER).at(0, 1)));
    send(server, base, &spans).await;
    4 + i64::from(filler)
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_queries_describes_and_gets_clear_errors() {
    if psql().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let spans = load(&server, 10).await;
    let trace = trace_id(1);

    assert_eq!(query(&server, "SELECT count(*) FROM spans").await.trim(), spans.to_string());
    let rows = query(
        &server,
        &format!(
            "SELECT span_name, trace_id, span_id, duration_ns FROM spans WHERE trace_id = '{trace}' ORDER BY span_name"
        ),
    )
    .await;
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 4, "{rows}");
    assert_eq!(lines[0], format!("GET /orders|{trace}|{}|100000000", span_id(1)), "ids arrive as hex text");
    // Attributes arrive as JSON; the id pasted back finds the span.
    let attributes =
        query(&server, &format!("SELECT span_attributes FROM spans WHERE span_id = '{}'", span_id(2))).await;
    assert_eq!(serde_json::from_str::<Value>(attributes.trim()).unwrap(), json!({"cache": "miss"}));
    // A client's statement_timeout shortens spanlake's own.
    let slow = "SELECT max(a.duration_ns) FROM spans a, spans b, spans c, spans d, spans e, spans f, spans g, spans h";
    let error = refused(&server, &format!("SET statement_timeout = 300; {slow}")).await;
    assert!(error.contains("57014") && error.contains("statement_timeout"), "{error}");
    // Two statements in one simple query, each answered.
    assert_eq!(query(&server, "SELECT 1; SELECT 2").await.split_whitespace().collect::<Vec<_>>(), ["1", "2"]);

    // \d spans: the column types a SELECT returns.
    let described = query(&server, r"\d spans").await;
    for column in [
        "trace_id|text",
        "span_id|text",
        "start_time|timestamp with time zone",
        "duration_ns|bigint",
        "span_attributes|text",
        "events|text",
        "http_status_code|bigint",
    ] {
        assert!(described.lines().any(|l| l.starts_with(column)), "\\d spans lacks {column}:\n{described}");
    }
    let described = query(&server, r"\d trace_index").await;
    for column in ["trace_id|text", "duration_ns|bigint", "span_count|bigint", "error_count|bigint", "services|text"] {
        assert!(described.lines().any(|l| l.starts_with(column)), "\\d trace_index lacks {column}:\n{described}");
    }
    let tables = query(&server, r"\dt").await;
    for table in ["spans", "trace_fragments"] {
        assert!(tables.lines().any(|l| l.split('|').nth(1) == Some(table)), "\\dt lacks {table}:\n{tables}");
    }

    // Refused and invalid SQL: a clear message and the SQLSTATE.
    let error = refused(&server, "DROP TABLE spans").await;
    assert!(error.contains("25006") && error.contains("read-only"), "{error}");
    let error = refused(&server, "SELECT * FROM no_such_table").await;
    assert!(error.contains("no_such_table"), "{error}");
    let error = refused(&server, "SELEC 1").await;
    assert!(error.contains("ERROR"), "{error}");

    // The user name is the tenant: another tenant sees nothing; a user that
    // is no tenant name cannot connect.
    let other = run_psql(&server, "acme", None, &["-t", "-c", "SELECT count(*) FROM spans"]).await;
    assert_eq!(text(&other).0.trim(), "0", "{}", text(&other).1);
    let bad = run_psql(&server, "no/such tenant", None, &["-t", "-c", "SELECT 1"]).await;
    assert!(!bad.status.success());
    assert!(text(&bad).1.contains("selects the tenant"), "{}", text(&bad).1);
}

#[tokio::test(flavor = "multi_thread")]
async fn psycopg_prepared_statements_binary_results_and_cancel() {
    let Some(python) = python() else { return };
    let server = TestServer::start().await;
    load(&server, 200).await;
    let (port, trace) = (server.pg_addr.port().to_string(), trace_id(1));
    let output = tokio::task::spawn_blocking(move || Command::new(python).args([SCRIPT, &port, &trace]).output())
        .await
        .unwrap()
        .expect("run psycopg");
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "psycopg failed:\n{stderr}\n{}", server.log());
    let seen: Value = serde_json::from_str(&stdout).expect("one JSON object");

    let trace = trace_id(1);
    let all = ["GET /orders", "SELECT", "load", "render"];
    for format in ["text", "binary"] {
        let runs = seen[format].as_array().unwrap();
        let names = |run: &Value| -> Vec<String> {
            run.as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(names(&runs[0]), all, "{format}: every span");
        assert_eq!(names(&runs[1]), ["GET /orders", "load", "render"], "{format}: the parameter took effect");
        let first = &runs[0][0];
        assert_eq!((first[1].as_i64(), first[2].as_str()), (Some(100_000_000), Some(trace.as_str())), "{format}");
        assert!(first[3].as_str().unwrap().ends_with("+00:00"), "{format}: timestamptz: {first}");
        let attributes: Value = serde_json::from_str(first[4].as_str().unwrap()).unwrap();
        assert_eq!(attributes, json!({}), "{format}: http.route lives in its own column");
    }
    // Type OIDs: text 25, int8 20, timestamptz 1184.
    assert_eq!(
        seen["types"],
        json!({"span_name": 25, "duration_ns": 20, "trace_id": 25, "start_time": 1184, "span_attributes": 25})
    );
    let cancel = &seen["cancel"];
    assert_eq!(cancel["sqlstate"], "57014", "{cancel}");
    assert!(!cancel["message"].as_str().unwrap().contains("--query-timeout"), "a cancel, not the timeout: {cancel}");
    assert_eq!(seen["after_cancel"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_guards_the_api_the_ui_and_pgwire_but_not_the_receivers() {
    let token = "s3cret-token";
    let server = TestServer::start_with(ServerOptions::default().env("SPANLAKE_AUTH_TOKEN", token)).await;
    load(&server, 0).await; // the receivers take spans without the token

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let services = server.api_url("/api/v1/services");
    let response = http.get(&services).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = http.get(&services).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = http.get(&services).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["services"], json!(["api", "db"]));
    let zipkin = http.get(server.api_url("/api/v2/services")).send().await.unwrap();
    assert_eq!(zipkin.status(), 401, "the Zipkin read API too");

    // A browser is sent to the login page, and gets a cookie for the token.
    let page = http.get(server.api_url("/search?service=api")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login?next=%2Fsearch%3Fservice%3Dapi");
    let login = http.get(server.api_url("/login")).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let wrong = http.post(server.api_url("/login")).form(&[("token", "nope"), ("next", "/search")]).send().await;
    assert_eq!(wrong.unwrap().status(), 401);
    let right =
        http.post(server.api_url("/login")).form(&[("token", token), ("next", "/search")]).send().await.unwrap();
    assert_eq!(right.status(), 303);
    assert_eq!(right.headers()["location"], "/search");
    let cookie = right.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(server.api_url("/search?service=api")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("GET /orders"));

    // The CLI against the server sends it as a bearer token.
    let url = server.api_url("");
    let cli = |token: Option<&str>| {
        let mut args = vec!["sql", "--server", url.as_str(), "--format", "csv"];
        if let Some(token) = token {
            args.extend(["--auth-token", token]);
        }
        args.push("SELECT count(*) AS n FROM spans");
        crate::harness::run_cli(&args)
    };
    let (ok, stdout, _) = cli(Some(token));
    assert!(ok && stdout.contains('4'), "{stdout}");
    let (ok, _, stderr) = cli(None);
    assert!(!ok && stderr.contains("--auth-token"), "{stderr}");

    if psql().is_none() {
        return;
    }
    let without = run_psql(&server, "default", None, &["-t", "-c", "SELECT 1"]).await;
    assert!(!without.status.success(), "no password: {}", text(&without).0);
    let wrong = run_psql(&server, "default", Some("nope"), &["-t", "-c", "SELECT 1"]).await;
    assert!(!wrong.status.success());
    assert!(text(&wrong).1.to_lowercase().contains("password authentication failed"), "{}", text(&wrong).1);
    let right = run_psql(&server, "default", Some(token), &["-t", "-c", "SELECT count(*) FROM spans"]).await;
    assert_eq!(text(&right).0.trim(), "4", "{}", text(&right).1);
}

/// Each attack, and what its error must say over pgwire and over HTTP:
/// one of those given (a cross join may run out of memory, of time or of
/// rows first, as the machine's load goes). DataFusion's parser, on HTTP,
/// cannot read `COPY … TO STDOUT` at all.
const ATTACKS: &[(&str, &[&str], &[&str])] = &[
    ("CREATE EXTERNAL TABLE passwd (line TEXT) STORED AS CSV LOCATION '/etc/passwd'", &["read-only"], &["read-only"]),
    ("COPY (SELECT 1) TO '/tmp/spanlake-attack.csv'", &["read-only"], &["read-only"]),
    ("COPY spans TO STDOUT", &["read-only"], &["STDOUT"]),
    ("SELECT * FROM '/etc/passwd'", &["/etc/passwd"], &["/etc/passwd"]),
    ("SELECT * FROM read_csv('/etc/passwd')", &["read_csv"], &["read_csv"]),
    ("SELECT pg_read_file('/etc/passwd')", &["pg_read_file"], &["pg_read_file"]),
    ("SET datafusion.runtime.memory_limit = '100G'", &["cannot be changed"], &["read-only"]),
    ("SET datafusion.execution.target_partitions = 1000", &["cannot be changed"], &["read-only"]),
    ("INSERT INTO spans SELECT * FROM spans", &["read-only"], &["read-only"]),
    // count(*) alone would be answered from row counts
    (
        "SELECT max(a.duration_ns + e.duration_ns) FROM spans a, spans b, spans c, spans d, spans e",
        &["--query-timeout"],
        &["--query-timeout"],
    ),
    // Its build side grows with the ingest going on: past the 64 MB pool
    // it is refused for memory before it reaches the row limit.
    (
        "SELECT * FROM spans a, spans b",
        &["--query-max-rows", "Resources exhausted"],
        &["--query-max-rows", "Resources exhausted"],
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        &["--query-timeout"],
        &["--query-timeout"],
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT r.n FROM r, (VALUES (1), (2)) v(x)) SELECT count(*) FROM r",
        &[""],
        &[""],
    ),
    (
        "SELECT array_agg(repeat('x', 100000)) FROM spans a, spans b",
        &["Resources exhausted", "--query-timeout"],
        &["Resources exhausted", "--query-timeout"],
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn attack_queries_are_refused_or_cut_off_while_ingest_goes_on() {
    if psql().is_none() {
        return;
    }
    let options = ServerOptions::default()
        .arg("--query-timeout", "3s")
        .arg("--query-max-rows", "10000")
        .arg("--query-memory-limit", &(64 << 20).to_string())
        .arg("--query-concurrency", "2");
    let server = TestServer::start_with(options).await;
    let mut expected = load(&server, 300).await;

    // Ingest while every attack runs, over pgwire and over HTTP at once.
    let (stop, ingest) = {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let target = server.otlp_http_url();
        let ingest = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut sent = 0i64;
            let mut slowest = Duration::ZERO;
            while rx.try_recv().is_err() {
                let body = batch(sent);
                let started = Instant::now();
                let response = client.post(&target).json(&body).send().await.expect("ingest answered");
                assert_eq!(response.status(), 200, "ingest refused a batch during the attacks");
                slowest = slowest.max(started.elapsed());
                sent += BATCH;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, slowest)
        });
        (tx, ingest)
    };

    // One at a time: a query waiting for its turn counts against the timeout.
    for (sql, pg_why, http_why) in ATTACKS {
        let started = Instant::now();
        let over_pg = refused(&server, sql).await;
        let (status, over_http) = server.sql_response(sql).await;
        let took = started.elapsed();
        assert!(over_pg.contains("ERROR"), "{sql}: {over_pg}");
        assert!(pg_why.iter().any(|why| over_pg.contains(why)), "pgwire, {sql}: expected {pg_why:?} in {over_pg}");
        assert!((400..600).contains(&status), "HTTP, {sql}: {status} {over_http}");
        let message = over_http["error"].as_str().unwrap();
        assert!(http_why.iter().any(|why| message.contains(why)), "HTTP, {sql}: expected {http_why:?} in {over_http}");
        eprintln!("{took:>8.1?}  {sql}");
    }
    stop.send(()).unwrap();
    let (sent, slowest) = ingest.await.unwrap();
    eprintln!("ingest during the attacks: {sent} spans, slowest batch {slowest:?}");
    expected += sent;
    assert!(sent > 0);

    // Every acknowledged span is there, and the server answers as before.
    assert_eq!(query(&server, "SELECT count(*) FROM spans").await.trim(), expected.to_string());
    assert!(!std::path::Path::new("/tmp/spanlake-attack.csv").exists());
}

const BATCH: i64 = 100;

/// An OTLP/JSON export of `BATCH` one-span traces, numbered from `first`.
fn batch(first: i64) -> Value {
    let now = now_ms() as i128 * 1_000_000;
    let spans: Vec<Value> = (first..first + BATCH)
        .map(|n| {
            json!({"traceId": format!("{:032x}", 0xa77ac0000 + n), "spanId": format!("{:016x}", n + 1),
                   "name": "during", "kind": 2,
                   "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1_000_000).to_string()})
        })
        .collect();
    json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ingest"}}]},
                              "scopeSpans": [{"spans": spans}]}]})
}
