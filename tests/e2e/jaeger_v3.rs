//! Jaeger's api_v3, over HTTP and over gRPC (`jaeger.api_v3.QueryService`
//! on `--jaeger-grpc-addr`, called through tonic with spanlake's own
//! message definitions): a trace sent by the Rust OpenTelemetry SDK comes
//! back as the same OTLP spans, searches, summaries, operations and
//! dependencies answer in api_v3's shapes, and errors carry the right codes.

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use serde_json::{Value, json};
use spanlake_query::api::jaeger::proto;
use spanlake_query::params::percent_encode;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Status};

use crate::fixture::{SERVER, Span, get, get_ok, now_ms, send};
use crate::harness::{ServerOptions, TestServer};
use crate::otlp_compare::{assert_same_spans, trace_ids};
use crate::otlp_rust::{Transport, emit_trace};
use crate::query_api::{link_counts, topology, topology_edges};

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339()
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

fn channel_url(server: &TestServer) -> String {
    format!("http://{}", server.jaeger_grpc_addr)
}

fn path(method: &str) -> PathAndQuery {
    PathAndQuery::try_from(format!("/jaeger.api_v3.QueryService/{method}")).unwrap()
}

async fn client(server: &TestServer) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(channel_url(server)).unwrap().connect().await.unwrap();
    tonic::client::Grpc::new(channel)
}

async fn unary<Req, Resp>(server: &TestServer, method: &str, request: tonic::Request<Req>) -> Result<Resp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = client(server).await;
    grpc.ready().await.unwrap();
    grpc.unary(request, path(method), tonic_prost::ProstCodec::default()).await.map(|r| r.into_inner())
}

async fn streaming<Req, Resp>(server: &TestServer, method: &str, request: Req) -> Result<Vec<Resp>, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = client(server).await;
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(tonic::Request::new(request), path(method), tonic_prost::ProstCodec::default())
        .await?
        .into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await? {
        messages.push(message);
    }
    Ok(messages)
}

fn query(service: &str, from_ms: i64, to_ms: i64) -> proto::TraceQueryParameters {
    proto::TraceQueryParameters {
        service_name: service.into(),
        start_time_min: Some(timestamp(from_ms)),
        start_time_max: Some(timestamp(to_ms)),
        search_depth: 20,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn api_v3_over_http_answers_otlp_and_jaegers_shapes() {
    let server = TestServer::start().await;
    let expected = tokio::task::block_in_place(|| emit_trace(Transport::Grpc, &server));
    let id = trace_ids(&expected).remove(0);
    let (from, to) = (now_ms() - 3_600_000, now_ms() + 60_000);

    let services = get_ok(&server, "/api/v3/services").await;
    assert!(services["services"].as_array().unwrap().contains(&json!("rust-sdk-Grpc")), "{services}");
    for query in ["service=rust-sdk-Grpc&spanKind=client", "service=rust-sdk-Grpc&span_kind=CLIENT"] {
        let operations = get_ok(&server, &format!("/api/v3/operations?{query}")).await;
        assert_eq!(operations, json!({"operations": [{"name": "INSERT orders", "spanKind": "client"}]}), "{query}");
    }

    let trace = get_ok(&server, &format!("/api/v3/traces/{id}")).await;
    let got: ExportTraceServiceRequest = serde_json::from_value(trace["result"].clone()).expect("OTLP/JSON");
    assert_same_spans(&expected, &got.resource_spans);
    let (start, end) = (percent_encode(&rfc3339(from)), percent_encode(&rfc3339(to)));
    let windowed = get_ok(&server, &format!("/api/v3/traces/{id}?startTime={start}&endTime={end}")).await;
    assert_eq!(windowed, trace);

    let window = format!("query.startTimeMin={start}&query.startTimeMax={end}");
    let snake_window = format!("query.start_time_min={start}&query.start_time_max={end}");
    let attributes = |object: Value| percent_encode(&object.to_string());
    for search in [
        format!(
            "query.serviceName=rust-sdk-Grpc&{window}&query.attributes={}",
            attributes(json!({"db.system": "postgresql"}))
        ),
        format!("query.service_name=rust-sdk-Grpc&{snake_window}&query.num_traces=5&query.duration_min=0s"),
        format!("query.serviceName=rust-sdk-Grpc&query.operationName=INSERT%20orders&{window}&query.searchDepth=1"),
    ] {
        let (status, found) = get(&server, &format!("/api/v3/traces?{search}")).await;
        assert_eq!(status, 200, "{search}: {found}");
        let got: ExportTraceServiceRequest = serde_json::from_value(found["result"].clone()).unwrap();
        assert_same_spans(&expected, &got.resource_spans);
    }
    let none = format!(
        "query.serviceName=rust-sdk-Grpc&{window}&query.attributes={}",
        attributes(json!({"db.system": "mysql"}))
    );
    let (status, body) = get(&server, &format!("/api/v3/traces?{none}")).await;
    assert_eq!(
        (status, body["error"]["httpCode"].clone(), body["error"]["message"].clone()),
        (404, json!(404), json!("No traces found"))
    );

    let summaries = get_ok(&server, &format!("/api/v3/trace-summaries?query.serviceName=rust-sdk-Grpc&{window}")).await;
    let summary = &summaries["summaries"][0];
    let root = expected
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .find(|s| s.parent_span_id.is_empty())
        .unwrap();
    assert_eq!(summary["traceId"], id);
    assert_eq!(summary["rootServiceName"], "rust-sdk-Grpc");
    assert_eq!(summary["rootOperationName"], "POST /checkout");
    assert_eq!(summary["minStartTimeUnixNano"], root.start_time_unix_nano.to_string());
    assert_eq!(summary["maxEndTimeUnixNano"], root.end_time_unix_nano.to_string());
    assert_eq!(
        (summary["spanCount"].clone(), summary["errorSpanCount"].clone(), summary["orphanSpanCount"].clone()),
        (json!(5), json!(1), json!(0))
    );
    assert_eq!(summary["services"], json!([{"name": "rust-sdk-Grpc", "spanCount": 5, "errorSpanCount": 1}]));

    for (query, name) in [
        ("/api/v3/traces?query.serviceName=a".to_owned(), "query.startTimeMin"),
        (format!("/api/v3/traces?{window}&query.durationMin=fast"), "query.durationMin"),
        (format!("/api/v3/traces?{window}&query.attributes=%7Bnope"), "query.attributes"),
        (format!("/api/v3/traces?{window}&query.filter=%7B%7D"), "query.filter"),
        ("/api/v3/traces/xyz".to_owned(), "trace_id"),
        ("/api/v3/operations".to_owned(), "service"),
        ("/api/v3/dependencies".to_owned(), "startTime"),
    ] {
        let (status, body) = get(&server, &query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["httpCode"], 400, "{query}");
        assert_eq!(body["error"]["grpcCode"], 3, "{query}: INVALID_ARGUMENT");
        assert!(body["error"]["message"].as_str().unwrap().starts_with(name), "{query}: {body}");
    }
    let (status, body) = get(&server, "/api/v3/traces/0af7651916cd43dd8448eb211c80319c").await;
    assert_eq!((status, body["error"]["message"].clone()), (404, json!("No traces found")));
}

#[tokio::test(flavor = "multi_thread")]
async fn summaries_count_orphans_and_dependencies_count_calls() {
    let server = TestServer::start().await;
    let base = now_ms() - 5 * 60 * 1000;
    // Trace 1's second span names a parent that never arrived.
    let spans = vec![
        Span::new(1, 1, "shop", "GET /a", SERVER).at(0, 50),
        Span::new(1, 2, "shop", "lost child", SERVER).child_of(99).at(5, 20).error(),
    ];
    send(&server, base, &spans).await;
    let mut graph = topology(10, true);
    graph.extend(topology(11, false));
    send(&server, base, &graph).await;
    let window = format!(
        "query.startTimeMin={}&query.startTimeMax={}",
        percent_encode(&rfc3339(base - 60_000)),
        percent_encode(&rfc3339(base + 60_000))
    );
    let summaries = get_ok(&server, &format!("/api/v3/trace-summaries?query.serviceName=shop&{window}")).await;
    let summary = &summaries["summaries"][0];
    assert_eq!(
        (summary["orphanSpanCount"].clone(), summary["errorSpanCount"].clone()),
        (json!(1), json!(1)),
        "{summary}"
    );

    let deps = get_ok(
        &server,
        &format!(
            "/api/v3/dependencies?startTime={}&endTime={}",
            percent_encode(&rfc3339(base - 60_000)),
            percent_encode(&rfc3339(base + 60_000))
        ),
    )
    .await;
    assert!(deps["dependencies"][0]["callCount"].is_string(), "a uint64 is a string in proto3 JSON: {deps}");
    let edges = link_counts(&deps["dependencies"]);
    let expected: Vec<(String, String, String)> =
        topology_edges(2, 1).into_iter().map(|(p, c, n, _)| (p, c, n.to_string())).collect();
    assert_eq!(edges, expected);

    // The same over gRPC.
    let response: proto::DependenciesResponse = unary(
        &server,
        "GetDependencies",
        tonic::Request::new(proto::GetDependenciesRequest {
            start_time: Some(timestamp(base - 60_000)),
            end_time: Some(timestamp(base + 60_000)),
        }),
    )
    .await
    .unwrap();
    assert_eq!(response.dependencies.len(), expected.len());
    let found: Vec<proto::FindTraceSummariesResponse> = streaming(
        &server,
        "FindTraceSummaries",
        proto::FindTraceSummariesRequest { query: Some(query("shop", base - 60_000, base + 60_000)) },
    )
    .await
    .unwrap();
    assert_eq!(found[0].summaries[0].orphan_span_count, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_query_service_answers_like_jaeger() {
    let server = TestServer::start().await;
    let expected = tokio::task::block_in_place(|| emit_trace(Transport::HttpProtobuf, &server));
    let id = trace_ids(&expected).remove(0);
    let service = "rust-sdk-HttpProtobuf";
    let (from, to) = (now_ms() - 3_600_000, now_ms() + 60_000);

    let services: proto::GetServicesResponse =
        unary(&server, "GetServices", tonic::Request::new(proto::GetServicesRequest {})).await.unwrap();
    assert!(services.services.contains(&service.to_owned()));
    let mut other_tenant = tonic::Request::new(proto::GetServicesRequest {});
    other_tenant.metadata_mut().insert("x-scope-orgid", "someone-else".parse().unwrap());
    let theirs: proto::GetServicesResponse = unary(&server, "GetServices", other_tenant).await.unwrap();
    assert!(theirs.services.is_empty(), "tenants are apart: {theirs:?}");

    let request = proto::GetOperationsRequest { service: service.into(), span_kind: "server".into() };
    let operations: proto::GetOperationsResponse =
        unary(&server, "GetOperations", tonic::Request::new(request)).await.unwrap();
    assert_eq!(operations.operations, [proto::Operation { name: "POST /checkout".into(), span_kind: "server".into() }]);

    let traces: Vec<TracesData> =
        streaming(&server, "GetTrace", proto::GetTraceRequest { trace_id: id.clone(), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(traces.len(), 1);
    assert_same_spans(&expected, &traces[0].resource_spans);

    let mut search = query(service, from, to);
    search.attributes.insert("link.reason".into(), "retry of".into());
    let found: Vec<TracesData> =
        streaming(&server, "FindTraces", proto::FindTracesRequest { query: Some(search.clone()) }).await.unwrap();
    assert_eq!(found.len(), 1, "one message per trace");
    assert_same_spans(&expected, &found[0].resource_spans);
    search.attributes.insert("link.reason".into(), "other".into());
    let none: Vec<TracesData> =
        streaming(&server, "FindTraces", proto::FindTracesRequest { query: Some(search) }).await.unwrap();
    assert!(none.is_empty());

    let summaries: Vec<proto::FindTraceSummariesResponse> = streaming(
        &server,
        "FindTraceSummaries",
        proto::FindTraceSummariesRequest { query: Some(query(service, from, to)) },
    )
    .await
    .unwrap();
    let summary = &summaries[0].summaries[0];
    assert_eq!((summary.trace_id.as_str(), summary.span_count, summary.error_span_count), (id.as_str(), 5, 1));

    let missing = streaming::<_, TracesData>(
        &server,
        "GetTrace",
        proto::GetTraceRequest { trace_id: "0af7651916cd43dd8448eb211c80319c".into(), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    for bad in [
        proto::FindTracesRequest { query: None },
        proto::FindTracesRequest {
            query: Some(proto::TraceQueryParameters { service_name: service.into(), ..Default::default() }),
        },
        proto::FindTracesRequest {
            query: Some(proto::TraceQueryParameters { filter: vec![10, 0], ..query(service, from, to) }),
        },
    ] {
        let error = streaming::<_, TracesData>(&server, "FindTraces", bad.clone()).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}: {error:?}");
    }
    let error = streaming::<_, TracesData>(
        &server,
        "GetTrace",
        proto::GetTraceRequest { trace_id: "xyz".into(), ..Default::default() },
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_jaegers_apis_need_it() {
    let server = TestServer::start_with(ServerOptions::default().arg("--auth-token", "s3cret")).await;
    for path in ["/api/services", "/api/v3/services"] {
        let (status, _) = get(&server, path).await;
        assert_eq!(status, 401, "{path}");
    }
    let refused = unary::<_, proto::GetServicesResponse>(
        &server,
        "GetServices",
        tonic::Request::new(proto::GetServicesRequest {}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(proto::GetServicesRequest {});
    request.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    let services: proto::GetServicesResponse = unary(&server, "GetServices", request).await.unwrap();
    assert!(services.services.is_empty());
}
