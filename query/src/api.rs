//! spanlake's HTTP JSON API under `/api/v1`, and the one place where query
//! errors become HTTP responses.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spanlake_storage::ids::parse_trace_id;
use spanlake_storage::schema::SPAN_KINDS;
use spanlake_storage::{TENANT_HEADER, TenantId};
use tracing::error;
use utoipa::{OpenApi, ToSchema};

use crate::dependencies::DependencyGraph;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::latency::{Histogram, LatencyRequest, LatencySeries};
use crate::openapi::{ApiDoc, ApiError, PageParams, SeriesParams, SpanFilterParams, WindowParams};
use crate::params::{
    HOUR_NS, NAMES_LOOKBACK_NS, Query, SpanFilter, TagFilter, Window, bad, duration_ns, group_column, limit, trace_ids,
};
use crate::search::{MAX_SEARCH_LIMIT, SearchOrder, SearchPage, SearchRequest};
use crate::services::Operation;

pub fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/v1/search", get(search))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{service}/operations", get(operations))
        .route("/api/v1/tags", get(tag_keys))
        .route("/api/v1/tags/{key}/values", get(tag_values))
        .route("/api/v1/dependencies", get(dependencies))
        .route("/api/v1/latency", get(latency))
        .route("/api/v1/latency/histogram", get(latency_histogram))
        .route("/api/v1/traces", get(get_traces))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/sql", post(post_sql))
        .route("/api/v1/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .with_state(engine)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperationList {
    pub operations: Vec<Operation>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagKeys {
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagValues {
    pub values: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TraceList {
    pub traces: Vec<TraceEntry>,
    /// Ids asked for that have no stored span.
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TraceEntry {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// OTLP/JSON resource spans, as `GET /api/v1/traces/{trace_id}` answers.
    #[serde(rename = "resourceSpans")]
    #[schema(value_type = Vec<Object>)]
    pub resource_spans: Value,
}

/// Lookback of searches, graphs and series when the request gives none.
const DEFAULT_LOOKBACK_NS: i64 = HOUR_NS;

/// The query string, every pair kept; malformed ones are a 400.
pub(crate) fn query(raw: Result<RawQuery, QueryRejection>) -> Result<Query, QueryError> {
    let axum::extract::Query(pairs) =
        raw.map_err(|e| QueryError::BadRequest(format!("malformed query string: {}", e.body_text())))?;
    Ok(Query::from_pairs(pairs))
}

pub(crate) type RawQuery = axum::extract::Query<Vec<(String, String)>>;

/// `start`/`end` or `lookback` (one hour by default).
pub fn window(q: &Query) -> Result<Window, QueryError> {
    window_or(q, DEFAULT_LOOKBACK_NS)
}

fn window_or(q: &Query, default_lookback_ns: i64) -> Result<Window, QueryError> {
    Window::parse(q.get("start"), q.get("end"), q.get("lookback"), default_lookback_ns)
}

/// The span-level filters shared by search and latency.
fn span_filter(q: &Query) -> Result<SpanFilter, QueryError> {
    let duration = |name| q.get(name).map(|v| duration_ns(name, v, 1_000)).transpose();
    let errors_only = match q.get("status") {
        None => false,
        Some("error") => true,
        Some(other) => return Err(bad("status", format!("{other:?}: the only status filter is error"))),
    };
    Ok(SpanFilter {
        service: q.get("service").map(str::to_owned),
        operation: q.get("operation").map(str::to_owned),
        span_kind: q.get("spanKind").map(span_kind).transpose()?,
        remote_service: None,
        tags: q.all("tags").map(|t| TagFilter::parse("tags", t)).collect::<Result<_, _>>()?,
        min_duration_ns: duration("minDuration")?,
        max_duration_ns: duration("maxDuration")?,
        errors_only,
    })
}

fn span_kind(text: &str) -> Result<String, QueryError> {
    let upper = text.to_uppercase();
    if SPAN_KINDS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(bad("spanKind", format!("{text:?}: one of server, client, producer, consumer, internal")))
    }
}

/// The parameters of a search: `/api/v1/search`'s, and the UI's URLs.
pub const SEARCH_PARAMETERS: [&str; 13] = [
    "service",
    "operation",
    "spanKind",
    "tags",
    "minDuration",
    "maxDuration",
    "status",
    "start",
    "end",
    "lookback",
    "sort",
    "limit",
    "cursor",
];

/// A search from its parameters.
pub fn search_request(q: &Query) -> Result<SearchRequest, QueryError> {
    q.only(&SEARCH_PARAMETERS)?;
    Ok(SearchRequest {
        filter: span_filter(q)?,
        window: window(q)?,
        order: SearchOrder::parse(q.get("sort"))?,
        limit: limit("limit", q.get("limit"), 20, MAX_SEARCH_LIMIT)?,
        cursor: q.get("cursor").map(str::to_owned),
    })
}

#[utoipa::path(get, path = "/api/v1/search", tag = "traces",
    params(SpanFilterParams, WindowParams, PageParams),
    responses((status = 200, body = SearchPage), (status = 400, body = ApiError)))]
/// `GET /api/v1/search`: trace summaries, newest first by default. A trace
/// matches when one of its spans passes every filter.
pub(crate) async fn search(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<SearchPage>, QueryError> {
    let request = search_request(&query(raw)?)?;
    Ok(Json(engine.search(&tenant(&headers)?, &request).await?))
}

#[utoipa::path(get, path = "/api/v1/services", tag = "services", params(WindowParams),
    responses((status = 200, body = ServiceList), (status = 400, body = ApiError)))]
/// `GET /api/v1/services`: every service, or those with spans in the window.
pub(crate) async fn services(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<ServiceList>, QueryError> {
    let q = query(raw)?;
    q.only(&["start", "end", "lookback"])?;
    let any = ["start", "end", "lookback"].iter().any(|k| q.get(k).is_some());
    let window = any.then(|| window_or(&q, NAMES_LOOKBACK_NS)).transpose()?;
    Ok(Json(ServiceList { services: engine.services(&tenant(&headers)?, window) }))
}

#[utoipa::path(get, path = "/api/v1/services/{service}/operations", tag = "services",
    params(("service" = String, Path), WindowParams),
    responses((status = 200, body = OperationList), (status = 400, body = ApiError)))]
/// `GET /api/v1/services/{service}/operations`: span names with their kinds.
pub(crate) async fn operations(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<OperationList>, QueryError> {
    let q = query(raw)?;
    q.only(&["start", "end", "lookback"])?;
    let operations = engine.operations(&tenant(&headers)?, &service, &window_or(&q, NAMES_LOOKBACK_NS)?).await?;
    Ok(Json(OperationList { operations }))
}

#[utoipa::path(get, path = "/api/v1/tags", tag = "services",
    params(("service" = Option<String>, Query), WindowParams),
    responses((status = 200, body = TagKeys), (status = 400, body = ApiError)))]
/// `GET /api/v1/tags`: tag keys seen in the window (default: the last hour),
/// to the hour: from the tag summaries of the files that overlap it.
pub(crate) async fn tag_keys(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<TagKeys>, QueryError> {
    let q = query(raw)?;
    q.only(&["service", "start", "end", "lookback"])?;
    let keys = engine.tag_keys(&tenant(&headers)?, q.get("service"), &window(&q)?).await?;
    Ok(Json(TagKeys { tags: keys }))
}

#[utoipa::path(get, path = "/api/v1/tags/{key}/values", tag = "services",
    params(("key" = String, Path), ("service" = Option<String>, Query), ("prefix" = Option<String>, Query), WindowParams),
    responses((status = 200, body = TagValues), (status = 400, body = ApiError)))]
/// `GET /api/v1/tags/{key}/values`: values of one tag, by prefix. A file
/// keeps 64 values of a key; a key with more (ids, URLs) answers a sample.
pub(crate) async fn tag_values(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<TagValues>, QueryError> {
    let q = query(raw)?;
    q.only(&["service", "prefix", "start", "end", "lookback"])?;
    let values = engine.tag_values(&tenant(&headers)?, &key, q.get("service"), q.get("prefix"), &window(&q)?).await?;
    Ok(Json(TagValues { values }))
}

#[utoipa::path(get, path = "/api/v1/dependencies", tag = "dependencies", params(WindowParams),
    responses((status = 200, body = DependencyGraph), (status = 400, body = ApiError)))]
/// `GET /api/v1/dependencies`: the service graph of a window. A call counts
/// in the window its server span (or, for a leaf, its client span) starts in.
pub(crate) async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<DependencyGraph>, QueryError> {
    let q = query(raw)?;
    q.only(&["start", "end", "lookback"])?;
    Ok(Json(engine.dependencies(&tenant(&headers)?, &window(&q)?).await?))
}

/// A latency request from its parameters: `/api/v1/latency`'s, and the UI's.
pub fn latency_request(q: &Query) -> Result<LatencyRequest, QueryError> {
    q.only(&[
        "service",
        "operation",
        "spanKind",
        "tags",
        "minDuration",
        "maxDuration",
        "status",
        "start",
        "end",
        "lookback",
        "step",
        "groupBy",
    ])?;
    Ok(LatencyRequest {
        filter: span_filter(q)?,
        window: window(q)?,
        step_ns: q.get("step").map(|s| duration_ns("step", s, 1_000_000_000)).transpose()?,
        group_by: q.get("groupBy").map(group_column).transpose()?,
    })
}

#[utoipa::path(get, path = "/api/v1/latency", tag = "latency",
    params(SpanFilterParams, WindowParams, SeriesParams),
    responses((status = 200, body = LatencySeries), (status = 400, body = ApiError)))]
/// `GET /api/v1/latency`: request rate, error rate and percentiles per step.
pub(crate) async fn latency(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<LatencySeries>, QueryError> {
    let request = latency_request(&query(raw)?)?;
    Ok(Json(engine.latency(&tenant(&headers)?, &request).await?))
}

#[utoipa::path(get, path = "/api/v1/latency/histogram", tag = "latency",
    params(SpanFilterParams, WindowParams, SeriesParams),
    responses((status = 200, body = Histogram), (status = 400, body = ApiError)))]
/// `GET /api/v1/latency/histogram`: span durations in log-sized buckets.
pub(crate) async fn latency_histogram(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Histogram>, QueryError> {
    let request = latency_request(&query(raw)?)?;
    Ok(Json(engine.latency_histogram(&tenant(&headers)?, &request).await?))
}

#[utoipa::path(get, path = "/api/v1/traces", tag = "traces",
    params(("ids" = String, Query, description = "Comma-separated trace ids, 1 to 100")),
    responses((status = 200, body = TraceList), (status = 400, body = ApiError)))]
/// `GET /api/v1/traces?ids=a,b,c`: several traces at once, each as OTLP/JSON;
/// ids not found are listed under `missing`.
pub(crate) async fn get_traces(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<TraceList>, QueryError> {
    let q = query(raw)?;
    q.only(&["ids"])?;
    let ids = trace_ids("ids", q.all("ids"))?;
    let tenant = tenant(&headers)?;
    let mut list = TraceList { traces: Vec::new(), missing: Vec::new() };
    for trace_id in ids {
        match engine.trace(&tenant, &trace_id).await? {
            Some(resource_spans) => list.traces.push(TraceEntry {
                trace_id: const_hex::encode(trace_id),
                resource_spans: serde_json::to_value(ExportTraceServiceRequest { resource_spans })
                    .map_err(|e| QueryError::Render(e.to_string()))?["resourceSpans"]
                    .take(),
            }),
            None => list.missing.push(const_hex::encode(trace_id)),
        }
    }
    Ok(Json(list))
}

#[utoipa::path(get, path = "/api/v1/traces/{trace_id}", tag = "traces",
    params(("trace_id" = String, Path, description = "32 hex digits, or 16 for a 64-bit id")),
    responses((status = 200, description = "The trace as OTLP/JSON (ExportTraceServiceRequest)", body = Object),
              (status = 400, body = ApiError), (status = 404, body = ApiError)))]
/// `GET /api/v1/traces/{trace_id}`: the whole trace as OTLP/JSON, in a form
/// that `POST /v1/traces` accepts unchanged.
pub(crate) async fn get_trace(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let trace_id = parse_trace_id(&id).map_err(|e| QueryError::BadRequest(e.to_string()))?;
    match engine.trace(&tenant, &trace_id).await? {
        Some(resource_spans) => Ok(Json(ExportTraceServiceRequest { resource_spans }).into_response()),
        None => Err(QueryError::NotFound(format!("trace {id} not found"))),
    }
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
}

/// `POST /api/v1/sql` with `{"sql": "..."}`: JSON rows, or CSV when the
/// client accepts `text/csv`.
async fn post_sql(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, QueryError> {
    let Json(request) = body
        .map_err(|e| QueryError::BadRequest(format!("expected a JSON body {{\"sql\": \"...\"}}: {}", e.body_text())))?;
    let result = engine.sql(&tenant(&headers)?, &request.sql).await?;
    let json = result.to_json()?;
    if accepts_csv(&headers) {
        let csv = json.to_csv().map_err(|e| QueryError::Render(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response());
    }
    Ok(Json(json).into_response())
}

/// The tenant named by `X-Scope-OrgID`, `default` without it.
pub fn tenant(headers: &HeaderMap) -> Result<TenantId, QueryError> {
    TenantId::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
        .map_err(|e| QueryError::BadRequest(format!("{e} (header X-Scope-OrgID)")))
}

fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && !matches!(self, QueryError::Timeout(_)) {
            error!(error = %self, "query failed");
        }
        (status, Json(ApiError { error: self.to_string() })).into_response()
    }
}
