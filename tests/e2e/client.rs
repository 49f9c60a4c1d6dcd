//! The driver client (`spanlake-client`) against the real server: every
//! method, answers decoded and written back to the very JSON the server
//! sent, the search stream over many pages, retries on the answers that
//! say "later" and on a server that is down, none on a bad request, the
//! timeout, the tenant and the token.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use futures::TryStreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use spanlake_client::model::Verdict;
use spanlake_client::{Error, LatencyQuery, OtlpFormat, RetryPolicy, Route, SearchOrder, SearchQuery, TraceId, Window};

use crate::fixture::{SERVER, Span, get_ok, now_ms, request, send, trace_id};
use crate::harness::{ServerOptions, TestServer};
use crate::query_api::shop_server;

/// The typed answer, written back, is the JSON the server sent.
fn agrees<T: Serialize + std::fmt::Debug>(typed: &T, raw: Value, what: &str) {
    assert_eq!(serde_json::to_value(typed).unwrap(), raw, "{what}: the client's types lose or change fields");
}

fn id(n: u16) -> TraceId {
    trace_id(n).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_answers_what_the_server_sends() {
    let (server, base) = shop_server().await;
    let client = server.client().build().unwrap();
    let ms = |t: i64| UNIX_EPOCH + Duration::from_millis(t as u64);
    let window = Window::between(ms(base - 60_000), ms(base + 120_000));
    let raw_window = format!("start={}&end={}", base - 60_000, base + 120_000);

    let search = SearchQuery::default().window(window.clone()).limit(2).order(SearchOrder::DurationDesc);
    let page = client.search(&search).await.unwrap();
    agrees(&page, get_ok(&server, &format!("/api/v1/search?{raw_window}&limit=2&sort=duration_desc")).await, "search");
    assert_eq!(page.traces.iter().map(|t| t.trace_id).collect::<Vec<_>>(), [id(2), id(1)]);

    let services = client.services(&Window::default()).await.unwrap();
    assert_eq!(services, ["backend", "frontend", "worker"]);
    let operations = client.operations("frontend", &Window::default()).await.unwrap();
    agrees(&json!({ "operations": operations }), get_ok(&server, "/api/v1/services/frontend/operations").await, "ops");
    let hour = Window::last(Duration::from_secs(3600));
    let keys = client.tag_keys(None, &hour).await.unwrap();
    assert!(keys.contains(&"customer".to_owned()), "{keys:?}");
    let values = client.tag_values("customer", Some("backend"), None, &hour).await.unwrap();
    assert_eq!(values, ["acme", "globex"]);
    assert_eq!(client.tag_values("customer", None, Some("gl"), &hour).await.unwrap(), ["globex"]);

    let graph = client.dependencies(&window, false).await.unwrap();
    agrees(&graph, get_ok(&server, &format!("/api/v1/dependencies?{raw_window}")).await, "dependencies");
    assert_eq!(graph.edges.len(), 1, "{graph:?}");
    let by_version = client.dependencies(&window, true).await.unwrap();
    let raw = get_ok(&server, &format!("/api/v1/dependencies?{raw_window}&groupBy=service.version")).await;
    agrees(&by_version, raw, "dependencies by version");

    let versions = client.versions("backend", &window).await.unwrap();
    agrees(&versions, get_ok(&server, &format!("/api/v1/versions?service=backend&{raw_window}")).await, "versions");
    assert_eq!(versions.versions.len(), 2);
    let comparison = client.compare_versions("backend", "1.0", "2.0", Some(0.01), &window).await.unwrap();
    let raw = get_ok(
        &server,
        &format!("/api/v1/versions/compare?service=backend&baseline=1.0&candidate=2.0&alpha=0.01&{raw_window}"),
    )
    .await;
    agrees(&comparison, raw, "compare");
    assert_eq!(comparison.verdict, Verdict::NotEnoughData);
    let callers = client.version_callers("backend", "1.0", &window).await.unwrap();
    let raw = get_ok(&server, &format!("/api/v1/versions/callers?service=backend&version=1.0&{raw_window}")).await;
    agrees(&callers, raw, "callers");
    assert_eq!(callers.peers[0].service, "frontend");
    let callees = client.version_callees("frontend", "1.0", &window).await.unwrap();
    let raw = get_ok(&server, &format!("/api/v1/versions/callees?service=frontend&version=1.0&{raw_window}")).await;
    agrees(&callees, raw, "callees");
    let retries = client.retries(None, &window).await.unwrap();
    agrees(&retries, get_ok(&server, &format!("/api/v1/retries?{raw_window}")).await, "retries");

    let latency = LatencyQuery {
        filters: SearchQuery::default().service("backend").window(window.clone()),
        step: Some(Duration::from_secs(60)),
        group_by: Some("service.version".into()),
    };
    let series = client.latency(&latency).await.unwrap();
    let raw_latency = format!("service=backend&{raw_window}&step=60s&groupBy=service.version");
    agrees(&series, get_ok(&server, &format!("/api/v1/latency?{raw_latency}")).await, "latency");
    assert_eq!(series.series.len(), 2);
    let histogram = client.latency_histogram(&latency).await.unwrap();
    agrees(&histogram, get_ok(&server, &format!("/api/v1/latency/histogram?{raw_latency}")).await, "histogram");

    let absent: TraceId = "ff".repeat(16).parse().unwrap();
    let list = client.traces(&[id(1), absent]).await.unwrap();
    agrees(&list, get_ok(&server, &format!("/api/v1/traces?ids={},{absent}", trace_id(1))).await, "traces");
    assert_eq!((list.traces.len(), list.missing), (1, vec![absent]));
    let trace = client.trace(id(2)).await.unwrap().expect("trace 2");
    agrees(&trace, get_ok(&server, &format!("/api/v1/traces/{}", trace_id(2))).await, "trace");
    assert_eq!(trace.resource_spans.len(), 2);
    assert!(client.trace(absent).await.unwrap().is_none());
    let zipkin = client.trace_zipkin(id(1)).await.unwrap().expect("trace 1 in Zipkin's shape");
    assert_eq!(zipkin, get_ok(&server, &format!("/api/v2/trace/{}", trace_id(1))).await);
    assert_eq!(zipkin.as_array().map(Vec::len), Some(3));
    let jaeger = client.trace_jaeger(id(1)).await.unwrap().expect("trace 1 in Jaeger's shape");
    assert_eq!(jaeger["data"][0]["spans"].as_array().map(Vec::len), Some(3), "{jaeger}");
    assert!(client.trace_zipkin(absent).await.unwrap().is_none());

    let rows = client.sql("SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1").await.unwrap();
    assert_eq!(rows.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["service_name", "n"]);
    assert_eq!(rows.rows, [[json!("backend"), json!(2)], [json!("frontend"), json!(3)], [json!("worker"), json!(1)]]);

    let batches =
        client.sql_arrow("SELECT service_name, duration_ns FROM spans ORDER BY duration_ns DESC").await.unwrap();
    let longest = &batches[0];
    assert_eq!(longest.schema().field(1).data_type(), &arrow::datatypes::DataType::Int64, "types kept");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
    let durations = longest.column(1).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
    assert_eq!(durations.value(0), 300_000_000, "trace 2's root, 300 ms");
    let error = client.sql_arrow("DELETE FROM spans").await.unwrap_err();
    assert!(error.to_string().contains("read-only"), "{error}");

    // Every `/api/v1` operation the server documents has its client method.
    let document = client.openapi().await.unwrap();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/api/v1/"))
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (method.clone(), path.clone())))
        .collect();
    let routes: BTreeSet<(String, String)> =
        Route::ALL.iter().map(|r| (r.method().as_str().to_lowercase(), r.template().to_owned())).collect();
    assert_eq!(documented, routes, "the document's /api/v1 operations and the client's");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_streams_every_page_once_in_order() {
    let server = TestServer::start().await;
    let base = now_ms() - 60_000;
    let spans: Vec<Span> =
        (1..=25u16).map(|n| Span::new(n, n.into(), "svc", "op", SERVER).at(i64::from(n) * 100, 10)).collect();
    send(&server, base, &spans).await;
    let client = server.client().build().unwrap();
    let query = SearchQuery::default().service("svc").lookback(Duration::from_secs(3600)).limit(3);
    let traces: Vec<TraceId> = client.search_all(&query).map_ok(|t| t.trace_id).try_collect().await.unwrap();
    let newest_first: Vec<TraceId> = (1..=25).rev().map(id).collect();
    assert_eq!(traces, newest_first, "9 pages of 3, each trace once, newest first");
}

#[tokio::test(flavor = "multi_thread")]
async fn later_answers_and_a_down_server_are_retried_bad_requests_are_not() {
    // A buffer that one export fills: the next is refused with 503 and
    // Retry-After until a flush (every 300 ms) empties it.
    let mut server = TestServer::start_with(
        ServerOptions::default().arg("--max-buffer-bytes", "65536").arg("--flush-interval", "300ms"),
    )
    .await;
    let client = server.client().build().unwrap();
    let spans: Vec<Span> = (1..=200u16).map(|n| Span::new(n, n.into(), "svc", "op", SERVER).at(0, 1)).collect();
    let refused_before = server.metric("spanlake_export_requests_refused_total").await;
    for round in 0..5 {
        let body = request(now_ms() + round, &spans);
        client.export(OtlpFormat::Json, body.into()).await.expect("acknowledged, after retries if refused");
    }
    assert!(server.metric("spanlake_export_requests_refused_total").await > refused_before, "a 503 was met");
    server.wait_until_flushed().await;
    assert_eq!(server.span_count().await, 5 * 200, "every acknowledged span once");

    // A bad request is answered once, with the server's message.
    let refused = server.metric("spanlake_export_requests_refused_total").await;
    let error = client.export(OtlpFormat::Json, "{not json".into()).await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400), "{error}");
    assert!(error.to_string().contains("JSON does not decode"), "{error}");
    assert_eq!(server.metric("spanlake_export_requests_refused_total").await, refused + 1.0, "no retry");
    let error = client.search(&SearchQuery::default().limit(0)).await.unwrap_err();
    assert!(
        matches!(&error, Error::Api { status, message } if status.as_u16() == 400 && message.starts_with("limit")),
        "{error}"
    );

    // An answer slower than the client's timeout ends the call.
    let hasty = server.client().timeout(Duration::from_millis(50)).retry(RetryPolicy::none()).build().unwrap();
    let slow = "SELECT count(*) FROM generate_series(1, 10000000000) AS a(x) WHERE x % 7 = 3";
    let error = hasty.sql(slow).await.unwrap_err();
    assert!(matches!(&error, Error::Transport { source, .. } if source.is_timeout()), "{error}");

    // Down, then up again: the call waits for it.
    server.stop().await;
    let patient = server.client().retry(RetryPolicy { attempts: 40, ..RetryPolicy::default() }).build().unwrap();
    let call = tokio::spawn(async move { patient.services(&Window::default()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again().await;
    assert_eq!(call.await.unwrap().expect("answered once the server is back"), ["svc"]);
    let impatient = server.client().retry(RetryPolicy::none()).build().unwrap();
    server.stop().await;
    let error = impatient.services(&Window::default()).await.unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_and_the_token_go_with_every_call() {
    let server = TestServer::start_with(ServerOptions::default().arg("--auth-token", "s3cret")).await;
    let acme = server.client().tenant("acme").token("s3cret").build().unwrap();
    let body = request(now_ms(), &[Span::new(1, 1, "billing", "charge", SERVER).at(0, 5)]);
    acme.export(OtlpFormat::Json, body.into()).await.unwrap();
    assert_eq!(acme.services(&Window::default()).await.unwrap(), ["billing"]);
    let globex = server.client().tenant("globex").token("s3cret").build().unwrap();
    assert!(globex.services(&Window::default()).await.unwrap().is_empty(), "another tenant sees nothing");
    assert!(globex.trace(id(1)).await.unwrap().is_none());
    let anonymous = server.client().tenant("acme").build().unwrap();
    let error = anonymous.services(&Window::default()).await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(401), "{error}");
    let wrong = server.client().tenant("acme").token("guess").build().unwrap();
    assert_eq!(wrong.sql("SELECT 1").await.unwrap_err().status().map(|s| s.as_u16()), Some(401));
    assert!(matches!(server.client().tenant("bad\ntenant").build(), Err(Error::Invalid(_))));
}
