//! Jaeger's HTTP JSON API (the "legacy" one under `/api`, which Grafana's
//! Jaeger data source, Perses and the Jaeger UI call): services, operations,
//! trace search, traces by id and the dependency graph, with Jaeger's
//! parameters (span durations as Go durations, `start`/`end` in µs,
//! `endTs`/`lookback` of the graph in ms), defaults, envelope
//! `{"data", "total", "limit", "offset", "errors"}` and model (`model.rs`).

pub mod grpc;
mod model;
pub mod proto;
mod v3;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;
use utoipa::{IntoParams, OpenApi};

use super::{Request, Tenant, log_failure};
use crate::api::openapi::BadParameter;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{
    DAY_NS, Lookback, NAMES_LOOKBACK_NS, SpanDuration, SpanFilter, SpanKind, TagFilter, TagSources, TraceIdParam,
    UnixMicros, UnixMillis, Window, bad,
};
use crate::search::{MAX_SEARCH_LIMIT, SearchOrder, SearchRequest};

pub(super) fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(service_operations))
        .route("/api/operations", get(operations))
        .route("/api/traces", get(search))
        .route("/api/dependencies", get(dependencies))
        .with_state(Arc::clone(&engine))
        .merge(v3::router(engine))
}

/// Jaeger's search looks two days back when the request gives no start.
const SEARCH_LOOKBACK_NS: i64 = 2 * DAY_NS;
/// Traces a search answers when the request gives no limit.
const DEFAULT_LIMIT: usize = 100;

/// Jaeger's answer: data, or errors with the HTTP status.
#[derive(Debug, Serialize)]
struct Envelope<T> {
    data: Option<T>,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<Vec<ErrorEntry>>,
}

#[derive(Debug, Serialize)]
struct ErrorEntry {
    code: u16,
    msg: String,
}

fn ok<T: Serialize>(data: T, total: usize) -> Json<Envelope<T>> {
    Json(Envelope { data: Some(data), total, limit: 0, offset: 0, errors: None })
}

/// A query error in Jaeger's shape.
#[derive(Debug)]
struct JaegerError(QueryError);

impl From<QueryError> for JaegerError {
    fn from(error: QueryError) -> Self {
        Self(error)
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        log_failure(&self.0);
        let status = self.0.status();
        let body = Envelope::<Value> {
            data: None,
            total: 0,
            limit: 0,
            offset: 0,
            errors: Some(vec![ErrorEntry { code: status.as_u16(), msg: self.0.to_string() }]),
        };
        (status, Json(body)).into_response()
    }
}

/// The span filter of a Jaeger search: every tag on one span, found in
/// any of its attributes; `error=true` means failed spans.
fn span_filter(
    service: Option<String>,
    operation: Option<String>,
    mut tags: BTreeMap<String, String>,
    min_duration_ns: Option<i64>,
    max_duration_ns: Option<i64>,
) -> Result<SpanFilter, QueryError> {
    let errors_only = tags.remove("error").is_some_and(|v| v == "true");
    Ok(SpanFilter {
        service,
        operation,
        tags: tags.into_iter().map(|(k, v)| TagFilter::Equals(k, v)).collect(),
        tag_sources: TagSources::Anywhere,
        min_duration_ns,
        max_duration_ns,
        errors_only,
        ..SpanFilter::default()
    })
}

/// Tags given as a JSON object of strings (other JSON values as their text).
fn json_tags(name: &str, object: &str, into: &mut BTreeMap<String, String>) -> Result<(), QueryError> {
    let parsed: BTreeMap<String, Value> = serde_json::from_str(object)
        .map_err(|e| bad(name, format!("malformed '{name}' parameter, cannot unmarshal JSON: {e}")))?;
    for (key, value) in parsed {
        let value = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        into.insert(key, value);
    }
    Ok(())
}

/// A service's operations with their kinds (Jaeger's lowercase names,
/// empty when unspecified), of one kind when asked.
async fn operations_of(
    engine: &QueryEngine,
    tenant: &TenantId,
    service: &str,
    kind: Option<SpanKind>,
) -> Result<Vec<(String, &'static str)>, QueryError> {
    Ok(engine
        .operations(tenant, service, &Window::last(NAMES_LOOKBACK_NS))
        .await?
        .into_iter()
        .filter(|o| kind.is_none_or(|k| o.span_kind == k.column_value()))
        .map(|o| {
            let kind = o.span_kind.parse::<SpanKind>().ok().filter(|k| *k != SpanKind::Unspecified);
            (o.name, kind.map(SpanKind::lowercase).unwrap_or_default())
        })
        .collect())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NoParams {}

#[utoipa::path(get, path = "/api/services", tag = "jaeger", operation_id = "jaeger_services",
    responses((status = 200, description = "Service names in Jaeger's envelope")))]
async fn services(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<NoParams, JaegerError>,
) -> Result<Json<Envelope<Vec<String>>>, JaegerError> {
    let services = engine.services(&request.tenant, None).await?;
    let total = services.len();
    Ok(ok(services, total))
}

/// `GET /api/services/{service}/operations`: the span names, a week back.
#[utoipa::path(get, path = "/api/services/{service}/operations", tag = "jaeger", operation_id = "jaeger_service_operations",
    params(("service" = String, Path)), responses((status = 200, description = "Span names in Jaeger's envelope")))]
async fn service_operations(
    State(engine): State<Arc<QueryEngine>>,
    Path(service): Path<String>,
    request: Request<NoParams, JaegerError>,
) -> Result<Json<Envelope<Vec<String>>>, JaegerError> {
    let operations = engine.operations(&request.tenant, &service, &Window::last(NAMES_LOOKBACK_NS)).await?;
    let mut names: Vec<String> = operations.into_iter().map(|o| o.name).collect();
    names.dedup();
    let total = names.len();
    Ok(ok(names, total))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct OperationsParams {
    #[param(required = true, min_length = 1)]
    service: Option<String>,
    #[param(inline)]
    span_kind: Option<SpanKind>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    span_kind: String,
}

/// `GET /api/operations?service=&spanKind=`: names with their kinds.
#[utoipa::path(get, path = "/api/operations", tag = "jaeger", operation_id = "jaeger_operations", params(OperationsParams),
    responses((status = 200, description = "Span names and kinds in Jaeger's envelope"), (status = 400, response = inline(BadParameter))))]
async fn operations(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<OperationsParams, JaegerError>,
) -> Result<Json<Envelope<Vec<Operation>>>, JaegerError> {
    let service = request.params.service.ok_or_else(|| bad("service", "is required"))?;
    let operations: Vec<Operation> = operations_of(&engine, &request.tenant, &service, request.params.span_kind)
        .await?
        .into_iter()
        .map(|(name, kind)| Operation { name, span_kind: kind.to_owned() })
        .collect();
    let total = operations.len();
    Ok(ok(operations, total))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct SearchParams {
    /// Required unless `traceID` is given.
    #[param(required = true, min_length = 1)]
    service: Option<String>,
    operation: Option<String>,
    /// A JSON object of tags that must all hold on one span (the parameter
    /// may be repeated).
    #[serde(default)]
    #[param(value_type = String)]
    tags: Vec<String>,
    /// `key:value`, repeatable.
    #[serde(default)]
    #[param(pattern = ":")]
    tag: Vec<String>,
    #[param(inline)]
    min_duration: Option<SpanDuration>,
    #[param(inline)]
    max_duration: Option<SpanDuration>,
    #[param(inline)]
    start: Option<UnixMicros>,
    #[param(inline)]
    end: Option<UnixMicros>,
    /// What the UI chose (`1h`, `custom`): back from `end` when `start` is
    /// not given and it is a duration.
    lookback: Option<String>,
    /// 100 by default; at most 1000 are answered.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// Traces by id instead of a search; repeatable.
    #[serde(default, rename = "traceID")]
    #[param(inline)]
    trace_id: Vec<TraceIdParam>,
}

impl SearchParams {
    fn tags(&self) -> Result<BTreeMap<String, String>, QueryError> {
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        for pair in &self.tag {
            let (key, value) = pair.split_once(':').ok_or_else(|| {
                bad("tag", format!("malformed 'tag' parameter, expecting key:value, received: {pair}"))
            })?;
            tags.insert(key.to_owned(), value.to_owned());
        }
        for object in &self.tags {
            json_tags("tags", object, &mut tags)?;
        }
        Ok(tags)
    }

    /// `lookback` counts only without `start` and when it is a duration
    /// (the UI also sends `custom`).
    fn window(&self) -> Window {
        let lookback = self.lookback.as_deref().and_then(|text| text.parse::<Lookback>().ok());
        Window::new(self.start.map(|t| t.0), self.end.map(|t| t.0), lookback.map(Lookback::ns), SEARCH_LOOKBACK_NS)
    }
}

/// `GET /api/traces`: whole traces with a span that matches every filter,
/// newest first; or the traces named by `traceID`.
#[utoipa::path(get, path = "/api/traces", tag = "jaeger", operation_id = "jaeger_search", params(SearchParams),
    responses((status = 200, description = "Whole traces in Jaeger's JSON model"), (status = 400, response = inline(BadParameter))))]
async fn search(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<SearchParams, JaegerError>,
) -> Result<Json<Envelope<Vec<model::Trace>>>, JaegerError> {
    let p = &request.params;
    let ids: Vec<TraceId> = if !p.trace_id.is_empty() {
        p.trace_id.iter().map(|id| id.0).collect()
    } else {
        let service = p.service.clone().ok_or_else(|| bad("service", "parameter 'service' is required"))?;
        let filter = span_filter(
            Some(service),
            p.operation.clone(),
            p.tags()?,
            p.min_duration.map(SpanDuration::ns),
            p.max_duration.map(SpanDuration::ns),
        )?;
        let limit = match p.limit {
            Some(0) => return Err(bad("limit", "invalid parameter: limit must be greater than 0").into()),
            Some(n) => n.min(MAX_SEARCH_LIMIT),
            None => DEFAULT_LIMIT,
        };
        let search = SearchRequest { filter, window: p.window(), order: SearchOrder::StartDesc, limit, cursor: None };
        engine.search_trace_ids(&request.tenant, &search).await?
    };
    let mut traces = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(spans) = engine.trace(&request.tenant, &id).await? {
            traces.push(model::trace(id.as_bytes(), &spans));
        }
    }
    // Jaeger's search answers leave the counts at zero.
    Ok(ok(traces, 0))
}

/// `GET /api/traces/{traceID}` (unless Tempo's protobuf is asked for):
/// 404 in Jaeger's shape when no span of it is stored.
pub(super) async fn trace(engine: &QueryEngine, headers: &HeaderMap, id: &str) -> Response {
    let answer = async {
        let tenant = Tenant::of(headers)?;
        let trace_id = id.parse::<TraceIdParam>().map_err(|e| bad("traceID", e))?.0;
        match engine.trace(&tenant, &trace_id).await? {
            Some(spans) => Ok(ok(vec![model::trace(trace_id.as_bytes(), &spans)], 1)),
            None => Err(QueryError::NotFound("trace not found".into())),
        }
    };
    match answer.await {
        Ok(found) => found.into_response(),
        Err(error) => JaegerError(error).into_response(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct DependenciesParams {
    #[param(inline)]
    end_ts: Option<UnixMillis>,
    /// Milliseconds (or a duration with units); a day by default.
    #[param(inline)]
    lookback: Option<Lookback>,
}

/// `GET /api/dependencies?endTs=&lookback=`: calls between services.
#[utoipa::path(get, path = "/api/dependencies", tag = "jaeger", operation_id = "jaeger_dependencies",
    params(DependenciesParams), responses((status = 200, description = "Dependency links in Jaeger's envelope"), (status = 400, response = inline(BadParameter))))]
async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<DependenciesParams, JaegerError>,
) -> Result<Json<Envelope<Vec<Value>>>, JaegerError> {
    let p = &request.params;
    let window = Window::new(None, p.end_ts.map(|t| t.0), p.lookback.map(Lookback::ns), DAY_NS);
    let graph = engine.dependencies(&request.tenant, &window).await?;
    let links: Vec<Value> = graph
        .edges
        .into_iter()
        .map(|e| json!({ "parent": e.parent, "child": e.child, "callCount": e.call_count }))
        .collect();
    let total = links.len();
    Ok(ok(links, total))
}

/// This family's part of the OpenAPI document (`api/openapi.rs`).
#[derive(OpenApi)]
#[openapi(paths(services, service_operations, operations, search, dependencies))]
struct Doc;

pub(super) fn document() -> utoipa::openapi::OpenApi {
    let mut document = Doc::openapi();
    document.merge(v3::document());
    document
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{self, Unknown};

    #[test]
    fn jaeger_tags_become_span_filters() {
        let params: SearchParams = params::parse(
            r#"service=a&tags=%7B%22http.status_code%22%3A%22500%22%2C%22error%22%3A%22true%22%7D&tag=k:v:w"#,
            Unknown::Ignore,
        )
        .unwrap();
        let filter = span_filter(None, None, params.tags().unwrap(), None, None).unwrap();
        assert!(filter.errors_only);
        assert_eq!(
            filter.tags,
            vec![
                TagFilter::Equals("http.status_code".into(), "500".into()),
                TagFilter::Equals("k".into(), "v:w".into())
            ]
        );
        let broken: SearchParams = params::parse("tags=%7Bnope", Unknown::Ignore).unwrap();
        assert!(broken.tags().unwrap_err().to_string().starts_with("tags: malformed"));
    }

    #[test]
    fn the_window_is_start_and_end_in_micros_or_a_lookback() {
        let p: SearchParams =
            params::parse("start=1700000000000000&end=1700000060000000&lookback=1h", Unknown::Ignore).unwrap();
        let w = p.window();
        assert_eq!((w.start_ns, w.end_ns), (1_700_000_000_000_000_000, 1_700_000_060_000_000_000));
        let p: SearchParams = params::parse("end=1700000060000000&lookback=1m", Unknown::Ignore).unwrap();
        assert_eq!(p.window().duration_ns(), 60_000_000_000);
    }

    #[test]
    fn short_trace_ids_print_as_jaeger_prints_them() {
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(model::trace_id_text(&id), "0000000000000001");
        id[0] = 1;
        assert_eq!(model::trace_id_text(&id).len(), 32);
    }
}
