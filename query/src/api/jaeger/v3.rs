//! Jaeger's api_v3 over HTTP (what the current Jaeger UI calls): services,
//! operations, traces by id, trace search, trace summaries and
//! dependencies, with the gateway's parameter names (camelCase, and the
//! snake_case ones older clients send), traces as OTLP/JSON in
//! `{"result": ...}` and errors as `{"error": {"httpCode", "message"}}`.
//! `rawTraces` changes nothing: spans are always answered as stored. The
//! gRPC binding (`grpc.rs`) answers the same questions through the
//! functions here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Deserialize;
use serde_json::{Value, json};
use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;
use utoipa::{IntoParams, OpenApi};

use super::{json_tags, operations_of, proto, span_filter};
use crate::api::openapi::BadParameter;
use crate::api::{Request, log_failure};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{SpanDuration, SpanKind, Timestamp, TraceIdParam, Window, bad};
use crate::search::{MAX_SEARCH_LIMIT, SearchOrder, SearchRequest};

pub(super) fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/v3/services", get(services))
        .route("/api/v3/operations", get(operations))
        .route("/api/v3/traces", get(find_traces))
        .route("/api/v3/traces/{trace_id}", get(get_trace))
        .route("/api/v3/trace-summaries", get(find_trace_summaries))
        .route("/api/v3/dependencies", get(dependencies))
        .with_state(engine)
}

/// Traces a search answers when the request names no depth.
const DEFAULT_DEPTH: usize = 100;

/// An error in the gateway's shape.
#[derive(Debug)]
pub(super) struct V3Error(QueryError);

impl From<QueryError> for V3Error {
    fn from(error: QueryError) -> Self {
        Self(error)
    }
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        log_failure(&self.0);
        let status = self.0.status();
        let body = json!({"error": {
            "grpcCode": self.0.grpc_code() as i32,
            "httpCode": status.as_u16(),
            "message": self.0.to_string(),
            "httpStatus": status.canonical_reason().unwrap_or_default(),
        }});
        (status, Json(body)).into_response()
    }
}

/// The gRPC status code of a query error.
fn no_traces() -> QueryError {
    QueryError::NotFound("No traces found".into())
}

/// A search as `TraceQueryParameters` states it, from either binding.
#[derive(Debug, Clone, Default)]
pub(super) struct TraceQuery {
    pub(super) service: Option<String>,
    pub(super) operation: Option<String>,
    pub(super) attributes: BTreeMap<String, String>,
    pub(super) start_min_ns: Option<i64>,
    pub(super) start_max_ns: Option<i64>,
    pub(super) duration_min_ns: Option<i64>,
    pub(super) duration_max_ns: Option<i64>,
    pub(super) depth: Option<i64>,
}

impl TraceQuery {
    pub(super) fn from_proto(query: Option<proto::TraceQueryParameters>) -> Result<Self, QueryError> {
        let q = query.ok_or_else(|| bad("query", "is required"))?;
        if !q.filter.is_empty() {
            return Err(bad("query.filter", "structured filters are not supported; use the other fields"));
        }
        let time = |t: Option<prost_types::Timestamp>| {
            t.map(|t| t.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nanos)))
        };
        let duration = |d: Option<prost_types::Duration>| {
            d.map(|d| d.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(d.nanos)))
        };
        let text = |s: String| (!s.is_empty()).then_some(s);
        Ok(Self {
            service: text(q.service_name),
            operation: text(q.operation_name),
            attributes: q.attributes.into_iter().collect(),
            start_min_ns: time(q.start_time_min),
            start_max_ns: time(q.start_time_max),
            duration_min_ns: duration(q.duration_min),
            duration_max_ns: duration(q.duration_max),
            depth: (q.search_depth != 0).then_some(i64::from(q.search_depth)),
        })
    }

    fn request(&self) -> Result<SearchRequest, QueryError> {
        let (Some(start), Some(end)) = (self.start_min_ns, self.start_max_ns) else {
            return Err(bad("query.startTimeMin", "query.startTimeMin and query.startTimeMax are required"));
        };
        let limit = match self.depth {
            None => DEFAULT_DEPTH,
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(MAX_SEARCH_LIMIT).min(MAX_SEARCH_LIMIT),
            Some(_) => return Err(bad("query.searchDepth", "must be greater than 0")),
        };
        let filter = span_filter(
            self.service.clone(),
            self.operation.clone(),
            self.attributes.clone(),
            self.duration_min_ns,
            self.duration_max_ns,
        )?;
        Ok(SearchRequest {
            filter,
            window: Window::new(Some(start), Some(end), None, 0),
            order: SearchOrder::StartDesc,
            limit,
            cursor: None,
        })
    }
}

/// The traces a query finds, newest first, each with its id.
pub(super) async fn find(
    engine: &QueryEngine,
    tenant: &TenantId,
    query: &TraceQuery,
) -> Result<Vec<(TraceId, Vec<ResourceSpans>)>, QueryError> {
    let mut traces = Vec::new();
    for id in engine.search_trace_ids(tenant, &query.request()?).await? {
        if let Some(spans) = engine.trace(tenant, &id).await? {
            traces.push((id, spans));
        }
    }
    Ok(traces)
}

/// The summaries of the traces a query finds, newest first.
pub(super) async fn summaries(
    engine: &QueryEngine,
    tenant: &TenantId,
    query: &TraceQuery,
) -> Result<Vec<proto::TraceSummary>, QueryError> {
    let page = engine.search(tenant, &query.request()?).await?;
    let ids: Vec<TraceId> = page.traces.iter().map(|t| t.trace_id).collect();
    let orphans: HashMap<TraceId, i64> = engine.orphan_counts(tenant, &ids).await?;
    let count = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(page
        .traces
        .into_iter()
        .map(|t| proto::TraceSummary {
            trace_id: t.trace_id.to_string(),
            root_service_name: t.root_service_name.unwrap_or_default(),
            root_operation_name: t.root_span_name.unwrap_or_default(),
            min_start_time_unix_nano: u64::try_from(t.start_time_unix_nano).unwrap_or(0),
            max_end_time_unix_nano: u64::try_from(t.start_time_unix_nano.saturating_add(t.duration_ns)).unwrap_or(0),
            span_count: count(t.span_count),
            error_span_count: count(t.error_count),
            orphan_span_count: count(orphans.get(&t.trace_id).copied().unwrap_or(0)),
            services: t
                .services
                .into_iter()
                .map(|s| proto::ServiceSummary {
                    name: s.name,
                    span_count: count(s.span_count),
                    error_span_count: count(s.error_count),
                })
                .collect(),
        })
        .collect())
}

pub(super) async fn operations_proto(
    engine: &QueryEngine,
    tenant: &TenantId,
    service: &str,
    kind: Option<SpanKind>,
) -> Result<Vec<proto::Operation>, QueryError> {
    Ok(operations_of(engine, tenant, service, kind)
        .await?
        .into_iter()
        .map(|(name, kind)| proto::Operation { name, span_kind: kind.to_owned() })
        .collect())
}

pub(super) async fn dependencies_proto(
    engine: &QueryEngine,
    tenant: &TenantId,
    window: &Window,
) -> Result<Vec<proto::Dependency>, QueryError> {
    let graph = engine.dependencies(tenant, window).await?;
    Ok(graph
        .edges
        .into_iter()
        .map(|e| proto::Dependency {
            parent: e.parent,
            child: e.child,
            call_count: u64::try_from(e.call_count).unwrap_or(0),
        })
        .collect())
}

/// Traces as OTLP/JSON `TracesData` in the gateway's `result` envelope.
fn result(resource_spans: Vec<ResourceSpans>) -> Result<Json<Value>, QueryError> {
    let data = opentelemetry_proto::tonic::trace::v1::TracesData { resource_spans };
    let data = serde_json::to_value(data).map_err(|e| QueryError::Render(e.to_string()))?;
    Ok(Json(json!({ "result": data })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NoParams {}

#[utoipa::path(get, path = "/api/v3/services", tag = "jaeger api_v3", operation_id = "jaeger_v3_services",
    responses((status = 200, description = "`GetServicesResponse`")))]
async fn services(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<NoParams, V3Error>,
) -> Result<Json<Value>, V3Error> {
    Ok(Json(json!({ "services": engine.services(&request.tenant, None).await? })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OperationsParams {
    #[param(required = true, min_length = 1)]
    service: Option<String>,
    #[serde(rename = "spanKind", alias = "span_kind")]
    #[param(inline)]
    span_kind: Option<SpanKind>,
}

#[utoipa::path(get, path = "/api/v3/operations", tag = "jaeger api_v3", operation_id = "jaeger_v3_operations",
    params(OperationsParams), responses((status = 200, description = "`GetOperationsResponse`"), (status = 400, response = inline(BadParameter))))]
async fn operations(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<OperationsParams, V3Error>,
) -> Result<Json<Value>, V3Error> {
    let service = request.params.service.as_deref().ok_or_else(|| bad("service", "is required"))?;
    let operations = operations_proto(&engine, &request.tenant, service, request.params.span_kind).await?;
    let operations: Vec<Value> =
        operations.into_iter().map(|o| json!({ "name": o.name, "spanKind": o.span_kind })).collect();
    Ok(Json(json!({ "operations": operations })))
}

/// `startTime` and `endTime` (RFC 3339) of a dependency graph.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TimeRangeParams {
    #[serde(rename = "startTime", alias = "start_time")]
    #[param(inline, required = true)]
    start_time: Option<Timestamp>,
    #[serde(rename = "endTime", alias = "end_time")]
    #[param(inline, required = true)]
    end_time: Option<Timestamp>,
}

/// `GET /api/v3/traces/{trace_id}`: the trace is found by id alone.
#[utoipa::path(get, path = "/api/v3/traces/{trace_id}", tag = "jaeger api_v3", operation_id = "jaeger_v3_get_trace",
    params(("trace_id" = String, Path, pattern = r"^([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$")),
    responses((status = 200, description = "OTLP/JSON `TracesData` under `result`"), (status = 404, description = "No span of it is stored"), (status = 400, response = inline(BadParameter))))]
async fn get_trace(
    State(engine): State<Arc<QueryEngine>>,
    Path(id): Path<String>,
    // `startTime`/`endTime` are ignored: the trace is found by id alone.
    request: Request<NoParams, V3Error>,
) -> Result<Json<Value>, V3Error> {
    let trace_id = id.parse::<TraceIdParam>().map_err(|e| bad("trace_id", format!("malformed parameter: {e}")))?.0;
    let spans = engine.trace(&request.tenant, &trace_id).await?.ok_or_else(no_traces)?;
    Ok(result(spans)?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FindParams {
    #[serde(rename = "query.serviceName", alias = "query.service_name")]
    service_name: Option<String>,
    #[serde(rename = "query.operationName", alias = "query.operation_name")]
    operation_name: Option<String>,
    /// A JSON object of attributes that must all hold on one span.
    #[serde(rename = "query.attributes")]
    attributes: Option<String>,
    #[serde(rename = "query.startTimeMin", alias = "query.start_time_min")]
    #[param(inline, required = true)]
    start_time_min: Option<Timestamp>,
    #[serde(rename = "query.startTimeMax", alias = "query.start_time_max")]
    #[param(inline, required = true)]
    start_time_max: Option<Timestamp>,
    #[serde(rename = "query.durationMin", alias = "query.duration_min")]
    #[param(inline)]
    duration_min: Option<SpanDuration>,
    #[serde(rename = "query.durationMax", alias = "query.duration_max")]
    #[param(inline)]
    duration_max: Option<SpanDuration>,
    /// Traces answered; at most 1000.
    #[serde(rename = "query.searchDepth", alias = "query.search_depth", alias = "query.num_traces")]
    #[param(minimum = 1)]
    search_depth: Option<i64>,
    /// Jaeger's structured filters, refused: left out of the document.
    #[serde(rename = "query.filter")]
    #[param(ignore)]
    filter: Option<String>,
}

impl FindParams {
    fn query(&self) -> Result<TraceQuery, QueryError> {
        if self.filter.is_some() {
            return Err(bad("query.filter", "structured filters are not supported; use the other parameters"));
        }
        let mut attributes = BTreeMap::new();
        if let Some(object) = &self.attributes {
            json_tags("query.attributes", object, &mut attributes)?;
        }
        Ok(TraceQuery {
            service: self.service_name.clone(),
            operation: self.operation_name.clone(),
            attributes,
            start_min_ns: self.start_time_min.map(|t| t.0),
            start_max_ns: self.start_time_max.map(|t| t.0),
            duration_min_ns: self.duration_min.map(SpanDuration::ns),
            duration_max_ns: self.duration_max.map(SpanDuration::ns),
            depth: self.search_depth,
        })
    }
}

/// `GET /api/v3/traces`: every span of the traces found, as one
/// `TracesData`; 404 "No traces found" when there are none, as Jaeger answers.
#[utoipa::path(get, path = "/api/v3/traces", tag = "jaeger api_v3", operation_id = "jaeger_v3_find_traces", params(FindParams),
    responses((status = 200, description = "OTLP/JSON `TracesData` under `result`"), (status = 404, description = "No trace matches"), (status = 400, response = inline(BadParameter))))]
async fn find_traces(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<FindParams, V3Error>,
) -> Result<Json<Value>, V3Error> {
    let traces = find(&engine, &request.tenant, &request.params.query()?).await?;
    if traces.is_empty() {
        return Err(no_traces().into());
    }
    Ok(result(traces.into_iter().flat_map(|(_, spans)| spans).collect())?)
}

/// `GET /api/v3/trace-summaries`: `FindTraceSummariesResponse` as JSON
/// (64-bit times as strings, as proto3 JSON writes them).
#[utoipa::path(get, path = "/api/v3/trace-summaries", tag = "jaeger api_v3", operation_id = "jaeger_v3_trace_summaries",
    params(FindParams), responses((status = 200, description = "Trace summaries"), (status = 400, response = inline(BadParameter))))]
async fn find_trace_summaries(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<FindParams, V3Error>,
) -> Result<Json<Value>, V3Error> {
    let found = summaries(&engine, &request.tenant, &request.params.query()?).await?;
    let summaries: Vec<Value> = found
        .into_iter()
        .map(|s| {
            let services: Vec<Value> = s
                .services
                .iter()
                .map(|v| json!({"name": v.name, "spanCount": v.span_count, "errorSpanCount": v.error_span_count}))
                .collect();
            json!({
                "traceId": s.trace_id,
                "rootServiceName": s.root_service_name,
                "rootOperationName": s.root_operation_name,
                "minStartTimeUnixNano": s.min_start_time_unix_nano.to_string(),
                "maxEndTimeUnixNano": s.max_end_time_unix_nano.to_string(),
                "spanCount": s.span_count,
                "errorSpanCount": s.error_span_count,
                "orphanSpanCount": s.orphan_span_count,
                "services": services,
            })
        })
        .collect();
    Ok(Json(json!({ "summaries": summaries })))
}

#[utoipa::path(get, path = "/api/v3/dependencies", tag = "jaeger api_v3", operation_id = "jaeger_v3_dependencies",
    params(TimeRangeParams), responses((status = 200, description = "`GetDependenciesResponse`"), (status = 400, response = inline(BadParameter))))]
async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<TimeRangeParams, V3Error>,
) -> Result<Json<Value>, V3Error> {
    let p = &request.params;
    let (Some(start), Some(end)) = (p.start_time, p.end_time) else {
        return Err(bad("startTime", "startTime and endTime are required").into());
    };
    let window = Window::new(Some(start.0), Some(end.0), None, 0);
    let links: Vec<Value> = dependencies_proto(&engine, &request.tenant, &window)
        .await?
        .into_iter()
        .map(|d| json!({"parent": d.parent, "child": d.child, "callCount": d.call_count.to_string()}))
        .collect();
    Ok(Json(json!({ "dependencies": links })))
}

/// This family's part of the OpenAPI document (`api/openapi.rs`).
#[derive(OpenApi)]
#[openapi(paths(services, operations, get_trace, find_traces, find_trace_summaries, dependencies))]
struct Doc;

pub(super) fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
