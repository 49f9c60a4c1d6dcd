//! Tenants: X-Scope-OrgID (HTTP) or the x-scope-orgid metadata key (gRPC)
//! picks one; each tenant's data lives under its own prefix and every
//! query path sees only its own.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::{Value, json};
use tonic::Code;

use crate::harness::{TestServer, run_cli};

fn request(trace: &str, service: &str, spans: usize) -> Value {
    let spans: Vec<_> = (1..=spans)
        .map(|i| {
            json!({"traceId": trace, "spanId": format!("{i:016x}"), "name": "op",
                   "startTimeUnixNano": "1764000000000000000", "endTimeUnixNano": "1764000000000001000"})
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
}

const ACME: &str = "acacacacacacacacacacacacacacacac";
const BETA: &str = "bebebebebebebebebebebebebebebebe";
const PLAIN: &str = "dededededededededededededededede";

async fn trace_status(server: &TestServer, tenant: Option<&str>, trace: &str) -> u16 {
    let mut request = reqwest::Client::new().get(server.api_url(&format!("/api/v1/traces/{trace}")));
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_query_path_sees_only_its_own_tenant() {
    let mut server = TestServer::start().await;
    let http = reqwest::Client::new();
    let posted = http
        .post(server.otlp_http_url())
        .header("X-Scope-OrgID", "acme")
        .json(&request(ACME, "a", 3))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let mut grpc = TraceServiceClient::connect(server.grpc_endpoint()).await.unwrap();
    let mut beta =
        tonic::Request::new(serde_json::from_value::<ExportTraceServiceRequest>(request(BETA, "b", 2)).unwrap());
    beta.metadata_mut().insert("x-scope-orgid", "beta".parse().unwrap());
    grpc.export(beta).await.unwrap();
    let plain = http.post(server.otlp_http_url()).json(&request(PLAIN, "d", 1)).send().await.unwrap();
    assert_eq!(plain.status(), 200);

    for (tenant, service, spans) in [(Some("acme"), "a", 3), (Some("beta"), "b", 2), (None, "d", 1)] {
        let (status, body) = server.sql_as(tenant, "SELECT service_name, count(*) FROM spans GROUP BY 1").await;
        assert_eq!(status, 200);
        assert_eq!(body["rows"], json!([[service, spans]]), "{tenant:?}");
        let (_, traces) = server.sql_as(tenant, "SELECT root_service_name, span_count FROM trace_index").await;
        assert_eq!(traces["rows"], json!([[service, spans]]), "{tenant:?}");
    }
    assert_eq!(trace_status(&server, Some("acme"), ACME).await, 200);
    assert_eq!(trace_status(&server, Some("beta"), ACME).await, 404);
    assert_eq!(trace_status(&server, None, ACME).await, 404);
    assert_eq!(trace_status(&server, Some("beta"), BETA).await, 200);

    // The command line, against the server and on the files.
    let url = format!("http://{}", server.http_addr);
    let (ok, csv, stderr) =
        run_cli(&["sql", "--server", &url, "--tenant", "beta", "--format", "csv", "SELECT count(*) AS n FROM spans"]);
    assert!(ok, "{stderr}");
    assert_eq!(csv, "n\n2\n");
    server.stop().await;
    assert!(server.data_dir().join("acme/spans").is_dir() && server.data_dir().join("beta/spans").is_dir());
    let dir = server.data_dir().to_str().unwrap().to_owned();
    let (ok, csv, stderr) =
        run_cli(&["sql", "--data-dir", &dir, "--tenant", "acme", "--format", "csv", "SELECT count(*) AS n FROM spans"]);
    assert!(ok, "{stderr}");
    assert_eq!(csv, "n\n3\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tenant_names_are_refused() {
    let server = TestServer::start().await;
    for bad in ["../etc", "a b", "x".repeat(65).as_str()] {
        let posted = reqwest::Client::new()
            .post(server.otlp_http_url())
            .header("X-Scope-OrgID", bad)
            .json(&request(ACME, "a", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 400, "{bad}");
        let (status, body) = server.sql_as(Some(bad), "SELECT 1").await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().unwrap().contains("X-Scope-OrgID"), "{body}");
    }
    let mut grpc = TraceServiceClient::connect(server.grpc_endpoint()).await.unwrap();
    let mut bad =
        tonic::Request::new(serde_json::from_value::<ExportTraceServiceRequest>(request(BETA, "b", 1)).unwrap());
    bad.metadata_mut().insert("x-scope-orgid", "no/slashes".parse().unwrap());
    assert_eq!(grpc.export(bad).await.unwrap_err().code(), Code::InvalidArgument);
}
