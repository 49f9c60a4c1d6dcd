//! Arrow Flight SQL on `--flight-sql-addr`, through the real ADBC driver
//! (`adbc_driver_flightsql`, into pandas) and pyarrow's Flight client: a
//! query, a prepared statement with parameters, the catalog, the attacks
//! HTTP refuses refused alike, the tenant, the token, a login as JDBC
//! drivers make it, and cancellation.

use std::process::Command;

use serde_json::{Value, json};
use spanlake_client::OtlpFormat;

use crate::fixture::{now_ms, request};
use crate::harness::{ServerOptions, TestServer, python};
use crate::query_api::shop;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_sql_client.py");

#[tokio::test(flavor = "multi_thread")]
async fn adbc_reads_spans_over_flight_sql_as_every_other_surface_does() {
    let Some(python) = python() else { return };
    let server = TestServer::start_with(ServerOptions::default().arg("--auth-token", "s3cret")).await;
    let client = server.client().tenant("acme").token("s3cret").build().unwrap();
    client.export(OtlpFormat::Json, request(now_ms() - 60_000, &shop()).into()).await.unwrap();

    let uri = format!("grpc://{}", server.flight_sql_addr);
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).args([SCRIPT, &uri, "acme", "s3cret"]).output())
            .await
            .unwrap()
            .expect("run the ADBC client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the ADBC client failed:\n{stderr}\n{}", server.log());
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));

    assert_eq!(seen["columns"], json!(["service_name", "n"]), "{seen}");
    assert_eq!(seen["rows"], json!([["backend", 2], ["frontend", 3], ["worker", 1]]), "{seen}");
    assert_eq!((&seen["prepared"], &seen["prepared_again"]), (&json!([[2]]), &json!([[3]])), "bound twice: {seen}");
    assert_eq!(seen["by_trace_id"], json!([[3]]), "a trace id bound as hex, as over pgwire: {seen}");
    // Refused with the message HTTP gives for the same statement.
    let attacks = ["DROP TABLE spans", "SELECT * FROM '/etc/passwd'", "COPY spans TO '/tmp/x.csv'"];
    for (sql, refused) in attacks.iter().zip(seen["attacks"].as_array().unwrap()) {
        let (status, body) = client
            .sql(sql)
            .await
            .map(|_| (200, Value::Null))
            .unwrap_or_else(|e| (e.status().map_or(0, |s| s.as_u16()), Value::String(e.to_string())));
        assert_eq!(status, 400, "{sql}: {body}");
        let message = body.as_str().unwrap().split_once(": ").unwrap().1;
        assert!(refused.as_str().unwrap().contains(message), "{sql}: Flight SQL said {refused}, HTTP {message}");
    }
    let tables =
        json!(["datafusion.public.spans", "datafusion.public.trace_fragments", "datafusion.public.trace_index"]);
    assert_eq!((&seen["tables"], &seen["schemas"]), (&tables, &json!(["public"])), "{seen}");
    assert_eq!(seen["spans_columns"], json!(["trace_id", "span_id", "parent_span_id", "trace_state"]), "{seen}");
    assert!(seen["info"].to_string().contains("spanlake"), "GetSqlInfo names the server: {seen}");
    assert_eq!(seen["other_tenant"], json!([[0]]), "another tenant sees none of acme's spans");
    assert!(seen["no_token"].as_str().unwrap().contains("authorization: Bearer"), "{seen}");
    assert_eq!(seen["logged_in"], json!([[6]]), "a login names the tenant: {seen}");
    assert!(seen["wrong_password"].as_str().unwrap().contains("log in with the tenant as user"), "{seen}");
    let cancel = &seen["cancel"];
    assert_eq!(cancel["status"], "0801", "CancelFlightInfo answers CANCELLED: {seen}");
    assert!(cancel["done"].as_bool().unwrap(), "the cancelled read ended: {seen}");
    let error = cancel["read_error"].as_str().unwrap();
    assert!(error.contains("FlightCancelledError") && error.contains("by CancelFlightInfo"), "{seen}");
}
