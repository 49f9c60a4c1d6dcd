//! spanlake's own HTTP JSON API under `/api/v1`: one parameter struct per
//! endpoint, which is both what the handler extracts and what the OpenAPI
//! document (`openapi.rs`) states.

use std::sync::Arc;

use arrow::ipc::writer::StreamWriter;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spanlake_storage::ids::TraceId;
use utoipa::{IntoParams, ToSchema};

use super::openapi::{self, ApiError};
use super::{Query, Tenant};
use crate::dependencies::{DependencyGraph, DependencyGroup};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::latency::{Histogram, LatencyRequest, LatencySeries};
use crate::params::{
    GroupBy, HOUR_NS, Lookback, NAMES_LOOKBACK_NS, SpanDuration, SpanFilter, SpanKind, Step, TagFilter, TagSources,
    Timestamp, TraceIdList, TraceIdParam, Window, bad, limit, some_trace_ids,
};
use crate::retries::Retries;
use crate::search::{MAX_SEARCH_LIMIT, SearchOrder, SearchPage, SearchRequest};
use crate::services::Operation;
use crate::traceql::TraceQl;
use crate::versions::compare::{CompareRequest, Comparison, DEFAULT_ALPHA};
use crate::versions::{Direction, VersionCalls, VersionList};

pub(super) fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/v1/search", get(search))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{service}/operations", get(operations))
        .route("/api/v1/tags", get(tag_keys))
        .route("/api/v1/tags/{key}/values", get(tag_values))
        .route("/api/v1/dependencies", get(dependencies))
        .route("/api/v1/versions", get(versions))
        .route("/api/v1/versions/compare", get(compare_versions))
        .route("/api/v1/versions/callers", get(version_callers))
        .route("/api/v1/versions/callees", get(version_callees))
        .route("/api/v1/retries", get(retries))
        .route("/api/v1/latency", get(latency))
        .route("/api/v1/latency/histogram", get(latency_histogram))
        .route("/api/v1/traces", get(get_traces))
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/sql", post(post_sql))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .with_state(engine)
}

/// Lookback of searches, graphs and series when the request gives none.
const DEFAULT_LOOKBACK_NS: i64 = HOUR_NS;

/// `error`: only failed spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Error,
}

/// The parameter structs of endpoints that take span filters and a window,
/// with what is theirs alone after the common fields.
macro_rules! filtered {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize, IntoParams)]
        #[serde(rename_all = "camelCase")]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            /// Service name.
            pub service: Option<String>,
            /// Span name.
            pub operation: Option<String>,
            #[param(inline)]
            pub span_kind: Option<SpanKind>,
            /// Repeatable, all must hold: `key=value`, `key!=value` (set, to
            /// another value), `key=~regex`, or `key` (set). Keys are attribute
            /// keys of the span or its resource (`http.route`, `service.version`),
            /// or `span.kind`, `status.code`, `status.message`, `error`.
            #[serde(default)]
            #[param(inline)]
            pub tags: Vec<TagFilter>,
            /// Shortest span duration.
            #[param(inline)]
            pub min_duration: Option<SpanDuration>,
            /// Longest span duration.
            #[param(inline)]
            pub max_duration: Option<SpanDuration>,
            #[param(inline)]
            pub status: Option<StatusFilter>,
            /// A TraceQL spanset filter (`docs/traceql.md`), with the others.
            #[param(inline)]
            pub q: Option<TraceQl>,
            /// Window start.
            #[param(inline)]
            pub start: Option<Timestamp>,
            /// Window end, now by default.
            #[param(inline)]
            pub end: Option<Timestamp>,
            /// Back from `end` when `start` is not given; one hour by default.
            #[param(inline)]
            pub lookback: Option<Lookback>,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// The span-level filters: a trace matches when one of its spans
            /// passes every filter given, as in Jaeger and Tempo.
            pub fn filter(&self) -> SpanFilter {
                SpanFilter {
                    service: self.service.clone(),
                    operation: self.operation.clone(),
                    span_kind: self.span_kind,
                    remote_service: None,
                    tags: self.tags.clone(),
                    tag_sources: TagSources::SpanOrResource,
                    min_duration_ns: self.min_duration.map(SpanDuration::ns),
                    max_duration_ns: self.max_duration.map(SpanDuration::ns),
                    errors_only: self.status == Some(StatusFilter::Error),
                    traceql: self.q.clone().into_iter().collect(),
                }
            }

            pub fn window(&self) -> Window {
                window(self.start, self.end, self.lookback, DEFAULT_LOOKBACK_NS)
            }
        }
    };
}

fn window(
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    lookback: Option<Lookback>,
    default_lookback_ns: i64,
) -> Window {
    Window::new(start.map(|t| t.0), end.map(|t| t.0), lookback.map(Lookback::ns), default_lookback_ns)
}

filtered! {
    /// A search: span-level filters, a window and a page.
    SearchParams {
        #[param(inline)]
        sort: Option<SearchOrder>,
        /// Traces per page; 20 by default.
        #[param(minimum = 1, maximum = 1000)]
        limit: Option<usize>,
        /// `nextCursor` of the previous page. The window is fixed by the first
        /// page, so spans arriving meanwhile never move a trace across pages.
        cursor: Option<String>,
    }
}

impl SearchParams {
    pub fn request(&self) -> Result<SearchRequest, QueryError> {
        Ok(SearchRequest {
            filter: self.filter(),
            window: self.window(),
            order: self.sort.unwrap_or(SearchOrder::StartDesc),
            limit: limit("limit", self.limit, 20, MAX_SEARCH_LIMIT)?,
            cursor: self.cursor.clone(),
        })
    }
}

filtered! {
    /// A latency series or histogram: span-level filters, a window, a step
    /// and a grouping.
    LatencyParams {
        /// Step of the series (`1m`, `30s`, or seconds); about 60 steps by default.
        #[param(inline)]
        step: Option<Step>,
        #[param(inline)]
        group_by: Option<GroupBy>,
    }
}

impl LatencyParams {
    pub fn request(&self) -> Result<LatencyRequest, QueryError> {
        Ok(LatencyRequest {
            filter: self.filter(),
            window: self.window(),
            step_ns: self.step.map(Step::ns),
            group_by: self.group_by.map(|g| g.0),
        })
    }
}

/// A time window: `start`/`end` (RFC 3339 or unix ms), or `lookback`
/// (`1h`, `30m`) back from `end` (default now); `start` wins when both are
/// given, and a window that ends before it starts is empty.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowParams {
    #[param(inline)]
    pub start: Option<Timestamp>,
    #[param(inline)]
    pub end: Option<Timestamp>,
    #[param(inline)]
    pub lookback: Option<Lookback>,
}

/// Parameter structs of one service's analyses: what is theirs, then a window.
macro_rules! windowed {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, IntoParams)]
        #[serde(rename_all = "camelCase")]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            /// Window start.
            #[param(inline)]
            pub start: Option<Timestamp>,
            /// Window end, now by default.
            #[param(inline)]
            pub end: Option<Timestamp>,
            /// Back from `end` when `start` is not given; one hour by default.
            #[param(inline)]
            pub lookback: Option<Lookback>,
        }

        impl $name {
            pub fn window(&self) -> Window {
                window(self.start, self.end, self.lookback, DEFAULT_LOOKBACK_NS)
            }
        }
    };
}

windowed! {
    /// A service's versions in a window.
    VersionsParams {
        /// Service name.
        #[param(min_length = 1)]
        service: String,
    }
}

windowed! {
    /// A candidate version of a service held against its baseline.
    CompareParams {
        /// Service name.
        #[param(min_length = 1)]
        service: String,
        /// The version in service now (`service.version`).
        #[param(min_length = 1)]
        baseline: String,
        /// The version to judge, e.g. a canary.
        #[param(min_length = 1)]
        candidate: String,
        /// Family-wise significance level; 0.05 by default.
        #[param(exclusive_minimum = 0.0, maximum = 0.5)]
        alpha: Option<f64>,
    }
}

impl CompareParams {
    pub fn request(&self) -> Result<CompareRequest, QueryError> {
        let alpha = self.alpha.unwrap_or(DEFAULT_ALPHA);
        if !(alpha > 0.0 && alpha <= 0.5) {
            return Err(bad("alpha", format!("expected a significance level above 0 and at most 0.5, got {alpha}")));
        }
        Ok(CompareRequest {
            service: self.service.clone(),
            baseline: self.baseline.clone(),
            candidate: self.candidate.clone(),
            window: self.window(),
            alpha,
        })
    }
}

windowed! {
    /// One version of a service.
    VersionParams {
        /// Service name.
        #[param(min_length = 1)]
        service: String,
        /// Its `service.version`.
        #[param(min_length = 1)]
        version: String,
    }
}

windowed! {
    /// Retry edges of a window, of one service (either side) or all.
    RetriesParams {
        /// Service name, as client or server.
        service: Option<String>,
    }
}

windowed! {
    /// The service graph of a window.
    DependenciesParams {
        /// Nodes per service and version instead of per service.
        #[param(inline)]
        group_by: Option<DependencyGroup>,
    }
}

impl WindowParams {
    fn given(&self) -> bool {
        self.start.is_some() || self.end.is_some() || self.lookback.is_some()
    }

    /// The window, one hour by default.
    pub fn window(&self) -> Window {
        self.window_or(DEFAULT_LOOKBACK_NS)
    }

    fn window_or(&self, default_lookback_ns: i64) -> Window {
        window(self.start, self.end, self.lookback, default_lookback_ns)
    }
}

/// Tag keys of a service, or of all, in a window (the last hour by default).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagKeysParams {
    service: Option<String>,
    #[param(inline)]
    start: Option<Timestamp>,
    #[param(inline)]
    end: Option<Timestamp>,
    #[param(inline)]
    lookback: Option<Lookback>,
}

/// Values of a tag by prefix, of a service or of all, in a window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagValuesParams {
    service: Option<String>,
    prefix: Option<String>,
    #[param(inline)]
    start: Option<Timestamp>,
    #[param(inline)]
    end: Option<Timestamp>,
    #[param(inline)]
    lookback: Option<Lookback>,
}

/// Several traces by id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraceIdsParams {
    /// Comma-separated trace ids, 1 to 100 (the parameter may also be
    /// repeated, 100 ids in all).
    #[param(value_type = TraceIdList, inline)]
    ids: Vec<TraceIdList>,
}

/// A trace id from a URL path, the error naming the parameter.
pub(crate) fn path_trace_id(name: &str, text: &str) -> Result<TraceId, QueryError> {
    text.parse::<TraceIdParam>().map(|id| id.0).map_err(|e| bad(name, e))
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
    #[schema(value_type = Vec<String>)]
    pub missing: Vec<TraceId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TraceEntry {
    #[serde(rename = "traceID")]
    #[schema(value_type = String)]
    pub trace_id: TraceId,
    /// OTLP/JSON resource spans, as `GET /api/v1/traces/{trace_id}` answers.
    #[serde(rename = "resourceSpans")]
    #[schema(value_type = Vec<Object>)]
    pub resource_spans: Value,
}

#[utoipa::path(get, path = "/api/v1/search", tag = "traces", params(SearchParams),
    responses((status = 200, body = SearchPage), (status = 400, body = ApiError)))]
/// `GET /api/v1/search`: trace summaries, newest first by default. A trace
/// matches when one of its spans passes every filter.
pub(crate) async fn search(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchPage>, QueryError> {
    Ok(Json(engine.search(&tenant, &params.request()?).await?))
}

#[utoipa::path(get, path = "/api/v1/services", tag = "services", params(WindowParams),
    responses((status = 200, body = ServiceList), (status = 400, body = ApiError)))]
/// `GET /api/v1/services`: every service, or those with spans in the window.
pub(crate) async fn services(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<WindowParams>,
) -> Result<Json<ServiceList>, QueryError> {
    let window = params.given().then(|| params.window_or(NAMES_LOOKBACK_NS));
    Ok(Json(ServiceList { services: engine.services(&tenant, window).await? }))
}

#[utoipa::path(get, path = "/api/v1/services/{service}/operations", tag = "services",
    params(("service" = String, Path), WindowParams),
    responses((status = 200, body = OperationList), (status = 400, body = ApiError)))]
/// `GET /api/v1/services/{service}/operations`: span names with their kinds
/// (a week back by default).
pub(crate) async fn operations(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Path(service): Path<String>,
    Query(params): Query<WindowParams>,
) -> Result<Json<OperationList>, QueryError> {
    let operations = engine.operations(&tenant, &service, &params.window_or(NAMES_LOOKBACK_NS)).await?;
    Ok(Json(OperationList { operations }))
}

#[utoipa::path(get, path = "/api/v1/tags", tag = "services", params(TagKeysParams),
    responses((status = 200, body = TagKeys), (status = 400, body = ApiError)))]
/// `GET /api/v1/tags`: tag keys seen in the window (default: the last hour),
/// to the hour: from the tag summaries of the files that overlap it.
pub(crate) async fn tag_keys(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(p): Query<TagKeysParams>,
) -> Result<Json<TagKeys>, QueryError> {
    let window = window(p.start, p.end, p.lookback, DEFAULT_LOOKBACK_NS);
    Ok(Json(TagKeys { tags: engine.tag_keys(&tenant, p.service.as_deref(), &window).await? }))
}

#[utoipa::path(get, path = "/api/v1/tags/{key}/values", tag = "services",
    params(("key" = String, Path), TagValuesParams),
    responses((status = 200, body = TagValues), (status = 400, body = ApiError)))]
/// `GET /api/v1/tags/{key}/values`: values of one tag, by prefix. A file
/// keeps 64 values of a key; a key with more (ids, URLs) answers a sample.
pub(crate) async fn tag_values(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Path(key): Path<String>,
    Query(p): Query<TagValuesParams>,
) -> Result<Json<TagValues>, QueryError> {
    let window = window(p.start, p.end, p.lookback, DEFAULT_LOOKBACK_NS);
    let values = engine.tag_values(&tenant, &key, p.service.as_deref(), p.prefix.as_deref(), &window).await?;
    Ok(Json(TagValues { values }))
}

#[utoipa::path(get, path = "/api/v1/dependencies", tag = "dependencies", params(DependenciesParams),
    responses((status = 200, body = DependencyGraph), (status = 400, body = ApiError)))]
/// `GET /api/v1/dependencies`: the service graph of a window, each edge with
/// its hop cost. A call counts in the window its server span (or, for a
/// leaf, its client span) starts in. `groupBy=service.version` splits the
/// nodes by version.
pub(crate) async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<DependenciesParams>,
) -> Result<Json<DependencyGraph>, QueryError> {
    Ok(Json(engine.dependency_graph(&tenant, &params.window(), params.group_by).await?))
}

#[utoipa::path(get, path = "/api/v1/versions", tag = "versions", params(VersionsParams),
    responses((status = 200, body = VersionList), (status = 400, body = ApiError)))]
/// `GET /api/v1/versions`: each version of a service in the window, with its
/// requests, errors, percentiles and share of the traffic.
pub(crate) async fn versions(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<VersionsParams>,
) -> Result<Json<VersionList>, QueryError> {
    Ok(Json(engine.versions(&tenant, &params.service, &params.window()).await?))
}

#[utoipa::path(get, path = "/api/v1/versions/compare", tag = "versions", params(CompareParams),
    responses((status = 200, body = Comparison), (status = 400, body = ApiError)))]
/// `GET /api/v1/versions/compare`: the canary verdict, per operation and
/// overall (`docs/analysis.md`).
pub(crate) async fn compare_versions(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<CompareParams>,
) -> Result<Json<Comparison>, QueryError> {
    Ok(Json(engine.compare_versions(&tenant, &params.request()?).await?))
}

#[utoipa::path(get, path = "/api/v1/versions/callers", tag = "versions", params(VersionParams),
    responses((status = 200, body = VersionCalls), (status = 400, body = ApiError)))]
/// `GET /api/v1/versions/callers`: every service version that called this
/// version in the window; `safeToRemove` when nothing reached it.
pub(crate) async fn version_callers(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(p): Query<VersionParams>,
) -> Result<Json<VersionCalls>, QueryError> {
    Ok(Json(engine.version_calls(&tenant, &p.service, &p.version, Direction::Callers, &p.window()).await?))
}

#[utoipa::path(get, path = "/api/v1/versions/callees", tag = "versions", params(VersionParams),
    responses((status = 200, body = VersionCalls), (status = 400, body = ApiError)))]
/// `GET /api/v1/versions/callees`: every service version this version called.
pub(crate) async fn version_callees(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(p): Query<VersionParams>,
) -> Result<Json<VersionCalls>, QueryError> {
    Ok(Json(engine.version_calls(&tenant, &p.service, &p.version, Direction::Callees, &p.window()).await?))
}

#[utoipa::path(get, path = "/api/v1/retries", tag = "retries", params(RetriesParams),
    responses((status = 200, body = Retries), (status = 400, body = ApiError)))]
/// `GET /api/v1/retries`: per edge, retries, amplification, timeouts and
/// abandoned server work.
pub(crate) async fn retries(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(p): Query<RetriesParams>,
) -> Result<Json<Retries>, QueryError> {
    Ok(Json(engine.retries(&tenant, p.service.as_deref(), &p.window()).await?))
}

#[utoipa::path(get, path = "/api/v1/latency", tag = "latency", params(LatencyParams),
    responses((status = 200, body = LatencySeries), (status = 400, body = ApiError)))]
/// `GET /api/v1/latency`: request rate, error rate and percentiles per step.
pub(crate) async fn latency(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<LatencyParams>,
) -> Result<Json<LatencySeries>, QueryError> {
    Ok(Json(engine.latency(&tenant, &params.request()?).await?))
}

#[utoipa::path(get, path = "/api/v1/latency/histogram", tag = "latency", params(LatencyParams),
    responses((status = 200, body = Histogram), (status = 400, body = ApiError)))]
/// `GET /api/v1/latency/histogram`: span durations in log-sized buckets.
pub(crate) async fn latency_histogram(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<LatencyParams>,
) -> Result<Json<Histogram>, QueryError> {
    Ok(Json(engine.latency_histogram(&tenant, &params.request()?).await?))
}

#[utoipa::path(get, path = "/api/v1/traces", tag = "traces", params(TraceIdsParams),
    responses((status = 200, body = TraceList), (status = 400, body = ApiError)))]
/// `GET /api/v1/traces?ids=a,b,c`: several traces at once, each as OTLP/JSON;
/// ids not found are listed under `missing`.
pub(crate) async fn get_traces(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Query(params): Query<TraceIdsParams>,
) -> Result<Json<TraceList>, QueryError> {
    let ids = some_trace_ids("ids", params.ids.into_iter().flat_map(|list| list.0).collect())?;
    let mut list = TraceList { traces: Vec::new(), missing: Vec::new() };
    for trace_id in ids {
        match engine.trace(&tenant, &trace_id).await? {
            Some(resource_spans) => list.traces.push(TraceEntry {
                trace_id,
                resource_spans: serde_json::to_value(ExportTraceServiceRequest { resource_spans })
                    .map_err(|e| QueryError::Render(e.to_string()))?["resourceSpans"]
                    .take(),
            }),
            None => list.missing.push(trace_id),
        }
    }
    Ok(Json(list))
}

#[utoipa::path(get, path = "/api/v1/traces/{trace_id}", tag = "traces",
    params(("trace_id" = String, Path, pattern = "^([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$",
        description = "32 hex digits, or 16 for a 64-bit id")),
    responses((status = 200, description = "The trace as OTLP/JSON (ExportTraceServiceRequest)", body = Object),
              (status = 400, body = ApiError), (status = 404, body = ApiError)))]
/// `GET /api/v1/traces/{trace_id}`: the whole trace as OTLP/JSON, in a form
/// that `POST /v1/traces` accepts unchanged.
pub(crate) async fn get_trace(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Response, QueryError> {
    let trace_id = path_trace_id("trace_id", &id)?;
    match engine.trace(&tenant, &trace_id).await? {
        Some(resource_spans) => Ok(Json(ExportTraceServiceRequest { resource_spans }).into_response()),
        None => Err(QueryError::NotFound(format!("trace {trace_id} not found"))),
    }
}

/// A read-only query: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SqlRequest {
    sql: String,
}

#[utoipa::path(post, path = "/api/v1/sql", tag = "sql", request_body = SqlRequest,
    responses((status = 200, description = "`{\"columns\": [{\"name\", \"type\"}], \"rows\": [[...]]}`; CSV with `Accept: text/csv`; an Arrow IPC stream with `Accept: application/vnd.apache.arrow.stream`", body = Object),
              (status = 400, body = ApiError)))]
/// `POST /api/v1/sql` with `{"sql": "..."}`: JSON rows, CSV, or Arrow
/// record batches, as the client accepts.
pub(crate) async fn post_sql(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, QueryError> {
    let Json(request) = body
        .map_err(|e| QueryError::BadRequest(format!("expected a JSON body {{\"sql\": \"...\"}}: {}", e.body_text())))?;
    let result = engine.sql(&tenant, &request.sql).await?;
    if accepts(&headers, ARROW_STREAM) {
        let render = |e: arrow::error::ArrowError| QueryError::Render(e.to_string());
        let mut writer = StreamWriter::try_new(Vec::new(), &result.schema).map_err(render)?;
        for batch in &result.batches {
            writer.write(batch).map_err(render)?;
        }
        let bytes = writer.into_inner().map_err(render)?;
        return Ok(([(header::CONTENT_TYPE, ARROW_STREAM)], bytes).into_response());
    }
    let json = result.to_json()?;
    if accepts(&headers, "text/csv") {
        let csv = json.to_csv().map_err(|e| QueryError::Render(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response());
    }
    Ok(Json(json).into_response())
}

/// Arrow's IPC stream format, as its media type names it.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(media_type)))
}
