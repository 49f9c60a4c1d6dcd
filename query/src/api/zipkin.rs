//! Zipkin's v2 read API on spanlake's tables, with Zipkin's parameter names,
//! units (span times in µs, `endTs` and `lookback` in ms, `minDuration` in
//! µs), defaults (24 h lookback, 10 traces) and response shapes, so
//! Zipkin's UI, its clients and Grafana's Zipkin data source work unchanged.
//! Spans are converted by `spanlake_storage::zipkin`, parts merged.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;
use spanlake_storage::zipkin::{self, ZipkinSpan};
use utoipa::{IntoParams, OpenApi};

use super::{Request, Tenant};
use crate::api::openapi::BadParameter;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{
    DAY_NS, HOUR_NS, Lookback, NAMES_LOOKBACK_NS, SpanDuration, SpanFilter, TagFilter, Timestamp, Window, bad, limit,
    some_trace_ids,
};
use crate::search::{MAX_SEARCH_LIMIT, SearchOrder, SearchRequest};

/// The read API at `/api/v2`, and again under `/zipkin` with the UI's
/// configuration, as a Zipkin server serves them to its UI (Lens).
pub(super) fn router(engine: Arc<QueryEngine>) -> Router {
    let api = routes(engine);
    api.clone().nest("/zipkin", api).route("/zipkin/config.json", get(ui_config))
}

/// What Zipkin's UI reads at start: Zipkin's own defaults.
#[utoipa::path(get, path = "/zipkin/config.json", tag = "zipkin", operation_id = "zipkin_ui_config",
    responses((status = 200, description = "The configuration Zipkin's UI reads at start")))]
async fn ui_config() -> Json<Value> {
    Json(json!({
        "environment": "",
        "queryLimit": 10,
        "defaultLookback": 900_000,
        "searchEnabled": true,
        "logsUrl": null,
        "supportUrl": null,
        "archivePostUrl": null,
        "archiveUrl": null,
        "dependency": {"enabled": true, "lowErrorRate": 0.5, "highErrorRate": 0.75},
    }))
}

fn routes(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/v2/services", get(services))
        .route("/api/v2/spans", get(span_names))
        .route("/api/v2/remoteServices", get(remote_services))
        .route("/api/v2/traces", get(traces))
        .route("/api/v2/trace/{trace_id}", get(trace))
        .route("/api/v2/traceMany", get(trace_many))
        .route("/api/v2/dependencies", get(dependencies))
        .route("/api/v2/autocompleteKeys", get(autocomplete_keys))
        .route("/api/v2/autocompleteValues", get(autocomplete_values))
        .with_state(engine)
}

/// `endTs` (ms, default now) and `lookback` (ms, default 24 h).
fn window(end: Option<Timestamp>, lookback: Option<Lookback>) -> Window {
    Window::new(None, end.map(|t| t.0), lookback.map(Lookback::ns), DAY_NS)
}

/// `/spans` and `/remoteServices`: Zipkin gives them no window; a week back.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct ServiceParams {
    #[param(required = true, min_length = 1)]
    service_name: Option<String>,
}

impl ServiceParams {
    fn service(&self) -> Result<&str, QueryError> {
        self.service_name.as_deref().ok_or_else(|| bad("serviceName", "is required"))
    }
}

#[utoipa::path(get, path = "/api/v2/services", tag = "zipkin", operation_id = "zipkin_services",
    responses((status = 200, description = "Service names", body = Vec<String>)))]
async fn services(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<String>>, QueryError> {
    Ok(Json(engine.services(&tenant, None).await?))
}

/// `GET /api/v2/spans?serviceName=`: the service's span names.
#[utoipa::path(get, path = "/api/v2/spans", tag = "zipkin", operation_id = "zipkin_span_names", params(ServiceParams),
    responses((status = 200, description = "Span names", body = Vec<String>), (status = 400, response = inline(BadParameter))))]
async fn span_names(
    State(engine): State<Arc<QueryEngine>>,
    Request { tenant, params, .. }: Request<ServiceParams, QueryError>,
) -> Result<Json<Vec<String>>, QueryError> {
    let operations = engine.operations(&tenant, params.service()?, &Window::last(NAMES_LOOKBACK_NS)).await?;
    let mut names: Vec<String> = operations.into_iter().map(|o| o.name).collect();
    names.dedup();
    Ok(Json(names))
}

#[utoipa::path(get, path = "/api/v2/remoteServices", tag = "zipkin", operation_id = "zipkin_remote_services",
    params(ServiceParams), responses((status = 200, description = "Remote service names", body = Vec<String>), (status = 400, response = inline(BadParameter))))]
async fn remote_services(
    State(engine): State<Arc<QueryEngine>>,
    Request { tenant, params, .. }: Request<ServiceParams, QueryError>,
) -> Result<Json<Vec<String>>, QueryError> {
    Ok(Json(engine.remote_services(&tenant, params.service()?, &Window::last(NAMES_LOOKBACK_NS)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct TracesParams {
    service_name: Option<String>,
    span_name: Option<String>,
    remote_service_name: Option<String>,
    /// `error and http.method=GET`. A bare term matches a tag key or an
    /// annotation value, as in Zipkin.
    annotation_query: Option<String>,
    #[param(inline)]
    min_duration: Option<SpanDuration>,
    #[param(inline)]
    max_duration: Option<SpanDuration>,
    #[param(inline)]
    end_ts: Option<Timestamp>,
    #[param(inline)]
    lookback: Option<Lookback>,
    /// 10 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

fn annotation_query(text: Option<&str>) -> Vec<TagFilter> {
    let Some(text) = text else { return vec![] };
    text.split(" and ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| match term.split_once('=') {
            Some((k, v)) => TagFilter::Equals(k.trim().to_owned(), v.trim().to_owned()),
            None => TagFilter::ExistsOrEvent(term.to_owned()),
        })
        .collect()
}

/// `GET /api/v2/traces`: traces with a span that matches, newest first.
#[utoipa::path(get, path = "/api/v2/traces", tag = "zipkin", operation_id = "zipkin_traces", params(TracesParams),
    responses((status = 200, description = "Traces, each a list of Zipkin v2 spans"), (status = 400, response = inline(BadParameter))))]
async fn traces(
    State(engine): State<Arc<QueryEngine>>,
    Request { tenant, params: p, .. }: Request<TracesParams, QueryError>,
) -> Result<Json<Vec<Vec<ZipkinSpan>>>, QueryError> {
    let filter = SpanFilter {
        service: p.service_name,
        operation: p.span_name.filter(|n| n != "all"),
        remote_service: p.remote_service_name,
        tags: annotation_query(p.annotation_query.as_deref()),
        min_duration_ns: p.min_duration.map(SpanDuration::ns),
        max_duration_ns: p.max_duration.map(SpanDuration::ns),
        ..SpanFilter::default()
    };
    let request = SearchRequest {
        filter,
        window: window(p.end_ts, p.lookback),
        order: SearchOrder::StartDesc,
        limit: limit("limit", p.limit, 10, MAX_SEARCH_LIMIT)?,
        cursor: None,
    };
    let ids = engine.search_trace_ids(&tenant, &request).await?;
    let mut traces = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(spans) = zipkin_trace(&engine, &tenant, &id).await? {
            traces.push(spans);
        }
    }
    Ok(Json(traces))
}

async fn zipkin_trace(
    engine: &QueryEngine,
    tenant: &TenantId,
    id: &TraceId,
) -> Result<Option<Vec<ZipkinSpan>>, QueryError> {
    Ok(engine.trace(tenant, id).await?.map(|resource_spans| zipkin::from_otlp(&resource_spans)))
}

/// `GET /api/v2/trace/{traceId}`: 404 when no span of it is stored.
#[utoipa::path(get, path = "/api/v2/trace/{trace_id}", tag = "zipkin", operation_id = "zipkin_trace",
    params(("trace_id" = String, Path, pattern = r"^[0-9a-fA-F]{1,32}$", description = "Up to 32 hex digits, left-padded")),
    responses((status = 200, description = "Zipkin v2 spans"), (status = 404, description = "No span of it is stored"), (status = 400, response = inline(BadParameter))))]
async fn trace(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Vec<ZipkinSpan>>, QueryError> {
    let trace_id = zipkin::trace_id(&id).map_err(|e| bad("traceId", e))?;
    zipkin_trace(&engine, &tenant, &trace_id)
        .await?
        .map(Json)
        .ok_or_else(|| QueryError::NotFound(format!("{id} not found")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct TraceManyParams {
    /// Comma-separated, 1 to 100 (the parameter may also be repeated,
    /// 100 ids in all).
    #[serde(default)]
    #[param(value_type = String, required = true, pattern = r"^\s*[0-9a-fA-F]{1,32}\s*(,\s*[0-9a-fA-F]{1,32}\s*){0,99}$")]
    trace_ids: Vec<String>,
}

/// `GET /api/v2/traceMany?traceIds=a,b`: the traces found, in the order asked.
#[utoipa::path(get, path = "/api/v2/traceMany", tag = "zipkin", operation_id = "zipkin_trace_many", params(TraceManyParams),
    responses((status = 200, description = "The traces found, each a list of Zipkin v2 spans"), (status = 400, response = inline(BadParameter))))]
async fn trace_many(
    State(engine): State<Arc<QueryEngine>>,
    Request { tenant, params, .. }: Request<TraceManyParams, QueryError>,
) -> Result<Json<Vec<Vec<ZipkinSpan>>>, QueryError> {
    let ids: Vec<TraceId> = params
        .trace_ids
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| zipkin::trace_id(id).map_err(|e| bad("traceIds", e)))
        .collect::<Result<_, _>>()?;
    let ids = some_trace_ids("traceIds", ids)?;
    let mut traces = Vec::new();
    for trace_id in ids {
        traces.extend(zipkin_trace(&engine, &tenant, &trace_id).await?);
    }
    Ok(Json(traces))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct DependenciesParams {
    #[param(inline, required = true)]
    end_ts: Option<Timestamp>,
    #[param(inline)]
    lookback: Option<Lookback>,
}

/// `GET /api/v2/dependencies?endTs=&lookback=`: Zipkin's links, `errorCount`
/// left out when zero as Zipkin writes them.
#[utoipa::path(get, path = "/api/v2/dependencies", tag = "zipkin", operation_id = "zipkin_dependencies",
    params(DependenciesParams), responses((status = 200, description = "Dependency links"), (status = 400, response = inline(BadParameter))))]
async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    Request { tenant, params: p, .. }: Request<DependenciesParams, QueryError>,
) -> Result<Json<Vec<Value>>, QueryError> {
    let end = p.end_ts.ok_or_else(|| bad("endTs", "is required"))?;
    let graph = engine.dependencies(&tenant, &window(Some(end), p.lookback)).await?;
    let links = graph
        .edges
        .into_iter()
        .map(|e| {
            let mut link = json!({ "parent": e.parent, "child": e.child, "callCount": e.call_count });
            if e.error_count > 0 {
                link["errorCount"] = json!(e.error_count);
            }
            link
        })
        .collect();
    Ok(Json(links))
}

/// Autocomplete looks at the last hour.
#[utoipa::path(get, path = "/api/v2/autocompleteKeys", tag = "zipkin", operation_id = "zipkin_autocomplete_keys",
    responses((status = 200, description = "Tag keys", body = Vec<String>)))]
async fn autocomplete_keys(
    State(engine): State<Arc<QueryEngine>>,
    Tenant(tenant): Tenant,
) -> Result<Json<Vec<String>>, QueryError> {
    Ok(Json(engine.tag_keys(&tenant, None, &Window::last(HOUR_NS)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AutocompleteParams {
    #[param(required = true, min_length = 1)]
    key: Option<String>,
}

#[utoipa::path(get, path = "/api/v2/autocompleteValues", tag = "zipkin", operation_id = "zipkin_autocomplete_values",
    params(AutocompleteParams), responses((status = 200, description = "Values of the key", body = Vec<String>), (status = 400, response = inline(BadParameter))))]
async fn autocomplete_values(
    State(engine): State<Arc<QueryEngine>>,
    Request { tenant, params, .. }: Request<AutocompleteParams, QueryError>,
) -> Result<Json<Vec<String>>, QueryError> {
    let key = params.key.ok_or_else(|| bad("key", "is required"))?;
    Ok(Json(engine.tag_values(&tenant, &key, None, None, &Window::last(HOUR_NS)).await?))
}

/// This family's part of the OpenAPI document (`api/openapi.rs`).
#[derive(OpenApi)]
#[openapi(paths(
    ui_config,
    services,
    span_names,
    remote_services,
    traces,
    trace,
    trace_many,
    dependencies,
    autocomplete_keys,
    autocomplete_values
))]
struct Doc;

pub(super) fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}
