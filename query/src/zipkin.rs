//! Zipkin's v2 read API on spanlake's tables, with Zipkin's parameter names,
//! units (span times in µs, `endTs` and `lookback` in ms, `minDuration` in
//! µs), defaults (24 h lookback, 10 traces) and response shapes, so
//! Zipkin's UI, its clients and Grafana's Zipkin data source work unchanged.
//! Spans are converted by `spanlake_storage::zipkin`, parts merged.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use spanlake_storage::TenantId;
use spanlake_storage::ids::parse_trace_id;
use spanlake_storage::zipkin::{self, ZipkinSpan};

use crate::api::{RawQuery, query, tenant};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{
    DAY_NS, HOUR_NS, NAMES_LOOKBACK_NS, Query, SpanFilter, TagFilter, Window, bad, duration_ns, limit, trace_ids,
};
use crate::search::{MAX_SEARCH_LIMIT, SearchOrder, SearchRequest};

pub fn router(engine: Arc<QueryEngine>) -> Router {
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

/// `endTs` (ms, default now) and `lookback` (ms, default 24 h). Zipkin's
/// `/spans` and `/remoteServices` have no window; they look a week back.
fn window(q: &Query) -> Result<Window, QueryError> {
    Window::parse(None, q.get("endTs"), q.get("lookback"), DAY_NS)
}

fn service_name(q: &Query) -> Result<&str, QueryError> {
    q.get("serviceName").ok_or_else(|| bad("serviceName", "is required"))
}

async fn services(State(engine): State<Arc<QueryEngine>>, headers: HeaderMap) -> Result<Json<Vec<String>>, QueryError> {
    Ok(Json(engine.services(&tenant(&headers)?, None)))
}

/// `GET /api/v2/spans?serviceName=`: the service's span names.
async fn span_names(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Vec<String>>, QueryError> {
    let q = query(raw)?;
    let window = Window::parse(None, None, None, NAMES_LOOKBACK_NS)?;
    let operations = engine.operations(&tenant(&headers)?, service_name(&q)?, &window).await?;
    let mut names: Vec<String> = operations.into_iter().map(|o| o.name).collect();
    names.dedup();
    Ok(Json(names))
}

async fn remote_services(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Vec<String>>, QueryError> {
    let q = query(raw)?;
    let window = Window::parse(None, None, None, NAMES_LOOKBACK_NS)?;
    Ok(Json(engine.remote_services(&tenant(&headers)?, service_name(&q)?, &window).await?))
}

/// `annotationQuery`: `error and http.method=GET`. A bare term matches a tag
/// key or an annotation value, as in Zipkin.
fn annotation_query(text: Option<&str>) -> Result<Vec<TagFilter>, QueryError> {
    let Some(text) = text else { return Ok(vec![]) };
    text.split(" and ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| match term.split_once('=') {
            Some((k, v)) => Ok(TagFilter::Equals(k.trim().to_owned(), v.trim().to_owned())),
            None => Ok(TagFilter::ExistsOrEvent(term.to_owned())),
        })
        .collect()
}

/// `GET /api/v2/traces`: traces with a span that matches, newest first.
async fn traces(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Vec<Vec<ZipkinSpan>>>, QueryError> {
    let q = query(raw)?;
    let micros = |name| q.get(name).map(|v| duration_ns(name, v, 1_000)).transpose();
    let filter = SpanFilter {
        service: q.get("serviceName").map(str::to_owned),
        operation: q.get("spanName").filter(|n| *n != "all").map(str::to_owned),
        remote_service: q.get("remoteServiceName").map(str::to_owned),
        tags: annotation_query(q.get("annotationQuery"))?,
        min_duration_ns: micros("minDuration")?,
        max_duration_ns: micros("maxDuration")?,
        ..SpanFilter::default()
    };
    let request = SearchRequest {
        filter,
        window: window(&q)?,
        order: SearchOrder::StartDesc,
        limit: limit("limit", q.get("limit"), 10, MAX_SEARCH_LIMIT)?,
        cursor: None,
    };
    let tenant = tenant(&headers)?;
    let ids = engine.search_trace_ids(&tenant, &request).await?;
    let mut traces = Vec::with_capacity(ids.len());
    for id in ids {
        let id = parse_trace_id(&id).map_err(|e| QueryError::Render(e.to_string()))?;
        if let Some(spans) = zipkin_trace(&engine, &tenant, &id).await? {
            traces.push(spans);
        }
    }
    Ok(Json(traces))
}

async fn zipkin_trace(
    engine: &QueryEngine,
    tenant: &TenantId,
    id: &[u8; 16],
) -> Result<Option<Vec<ZipkinSpan>>, QueryError> {
    Ok(engine.trace(tenant, id).await?.map(|resource_spans| zipkin::from_otlp(&resource_spans)))
}

/// `GET /api/v2/trace/{traceId}`: 404 when no span of it is stored.
async fn trace(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Vec<ZipkinSpan>>, QueryError> {
    let trace_id = parse_trace_id(&id).map_err(|e| bad("traceId", e))?;
    zipkin_trace(&engine, &tenant(&headers)?, &trace_id)
        .await?
        .map(Json)
        .ok_or_else(|| QueryError::NotFound(format!("{id} not found")))
}

/// `GET /api/v2/traceMany?traceIds=a,b`: the traces found, in the order asked.
async fn trace_many(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Vec<Vec<ZipkinSpan>>>, QueryError> {
    let q = query(raw)?;
    let ids = trace_ids("traceIds", q.all("traceIds"))?;
    let tenant = tenant(&headers)?;
    let mut traces = Vec::new();
    for trace_id in ids {
        traces.extend(zipkin_trace(&engine, &tenant, &trace_id).await?);
    }
    Ok(Json(traces))
}

/// `GET /api/v2/dependencies?endTs=&lookback=`: Zipkin's links, `errorCount`
/// left out when zero as Zipkin writes them.
async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Vec<Value>>, QueryError> {
    let q = query(raw)?;
    q.get("endTs").ok_or_else(|| bad("endTs", "is required"))?;
    let graph = engine.dependencies(&tenant(&headers)?, &window(&q)?).await?;
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
fn recent() -> Result<Window, QueryError> {
    Window::parse(None, None, None, HOUR_NS)
}

async fn autocomplete_keys(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
) -> Result<Json<Vec<String>>, QueryError> {
    Ok(Json(engine.tag_keys(&tenant(&headers)?, None, &recent()?).await?))
}

async fn autocomplete_values(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    raw: Result<RawQuery, QueryRejection>,
) -> Result<Json<Vec<String>>, QueryError> {
    let q = query(raw)?;
    let key = q.get("key").ok_or_else(|| bad("key", "is required"))?;
    Ok(Json(engine.tag_values(&tenant(&headers)?, key, None, None, &recent()?).await?))
}
