//! Tempo's HTTP API, what Grafana's Tempo data source calls: traces by id
//! (protobuf `tempopb.Trace` / `TraceByIDResponse` when asked for
//! `application/protobuf`, JSON otherwise), TraceQL search with the spans
//! each trace matched, TraceQL metrics (`/api/metrics/query_range` and
//! `/api/metrics/query`), tag names and values by scope, and the probes Grafana
//! reads (`/api/echo`, `/api/status/buildinfo`). Errors are plain text, as
//! Tempo writes them. `/api/traces/{id}` is shared with Jaeger's API: the
//! `Accept` header chooses (`api.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;
use serde::Deserialize;
use serde_json::{Value, json};
use spanlake_storage::TenantId;
use spanlake_storage::ids::{SpanId, TraceId};
use spanlake_storage::schema::{self, Level};
use spanlake_storage::tag_summary::TagScope;
use utoipa::{IntoParams, OpenApi};

use super::{Request, log_failure};
use crate::api::openapi::BadParameter;
use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{
    HOUR_NS, NANOS_PER_SECOND, Params, SpanDuration, SpanFilter, Step, TagFilter, TraceIdParam, UnixSecondsOrNanos,
    Window, bad, limit,
};
use crate::search::{Columns, MAX_SEARCH_LIMIT, SearchOrder, SearchRequest, TraceSummary};
use crate::services::MAX_SUGGESTIONS;
use crate::traceql::sql::attribute_sql;
use crate::traceql::{LabelValue, MAX_POINTS, Named, TraceQl, TraceQlMetrics};
use crate::tree::{self, NestedSet, NestedSetField, Node};

/// The Tempo version whose API this one follows, for clients that pick
/// features by it (Grafana reads `/api/status/buildinfo`).
const TEMPO_API_VERSION: &str = "2.8.0";
/// Intrinsics the TraceQL here can filter on, as Tempo lists them.
const INTRINSICS: [&str; 15] = [
    "duration",
    "event:name",
    "instrumentation:name",
    "instrumentation:version",
    "kind",
    "name",
    "nestedSetParent",
    "rootName",
    "rootServiceName",
    "span:id",
    "span:parentID",
    "status",
    "statusMessage",
    "trace:id",
    "traceDuration",
];

pub(super) fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tag_names))
        .route("/api/v2/search/tags", get(tag_names_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
        .route("/api/metrics/query_range", get(metrics_range))
        .route("/api/metrics/query", get(metrics_instant))
        .with_state(engine)
}

/// An error as Tempo answers it: the status and a line of text.
#[derive(Debug)]
pub(super) struct TempoError(QueryError);

impl From<QueryError> for TempoError {
    fn from(error: QueryError) -> Self {
        Self(error)
    }
}

impl IntoResponse for TempoError {
    fn into_response(self) -> Response {
        log_failure(&self.0);
        (self.0.status(), self.0.to_string()).into_response()
    }
}

pub(super) fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("application/protobuf")))
}

#[utoipa::path(get, path = "/api/status/buildinfo", tag = "tempo", operation_id = "tempo_buildinfo",
    responses((status = 200, description = "The Tempo API version spanlake answers as")))]
async fn buildinfo() -> Json<Value> {
    Json(json!({
        "version": TEMPO_API_VERSION,
        "revision": format!("spanlake {}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MetricsParams {
    /// A TraceQL metrics query: `{ } | rate() by (resource.service.name)`.
    #[param(min_length = 1)]
    q: String,
    #[param(inline)]
    start: Option<UnixSecondsOrNanos>,
    #[param(inline)]
    end: Option<UnixSecondsOrNanos>,
    /// How far back from `end` when `start` is not given (1 hour by default).
    #[param(inline)]
    since: Option<Step>,
    /// Between two samples; about 100 samples over the range by default.
    #[param(inline)]
    step: Option<Step>,
}

impl MetricsParams {
    fn query(&self) -> Result<TraceQlMetrics, QueryError> {
        TraceQlMetrics::parse(&self.q).map_err(|e| QueryError::BadRequest(format!("invalid TraceQL query: {e}")))
    }

    fn window(&self) -> Window {
        Window::new(self.start.map(|t| t.0), self.end.map(|t| t.0), self.since.map(Step::ns), HOUR_NS)
    }
}

/// `GET /api/metrics/query_range`: Tempo's `QueryRangeResponse`, samples at
/// each step from the start aligned down to a whole step.
#[utoipa::path(get, path = "/api/metrics/query_range", tag = "tempo", operation_id = "tempo_metrics_range",
    params(MetricsParams), responses((status = 200, description = "`QueryRangeResponse`"), (status = 400, response = inline(BadParameter))))]
async fn metrics_range(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<MetricsParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let p = &request.params;
    let (query, window) = (p.query()?, p.window());
    // A zero step is no step: the default; one too fine for the range is
    // widened to the most points a series holds.
    let step_ns = match p.step {
        Some(step) if step.ns() > 0 => step.ns().max(window.duration_ns() / (MAX_POINTS - 1) + 1),
        _ => (window.duration_ns() / 100).div_euclid(NANOS_PER_SECOND).max(1) * NANOS_PER_SECOND,
    };
    let aligned = Window { start_ns: window.start_ns.div_euclid(step_ns) * step_ns, end_ns: window.end_ns };
    let series = engine.traceql_metrics(&request.tenant, &query, aligned, step_ns).await?;
    let series: Vec<Value> = series
        .into_iter()
        .map(|s| {
            let samples: Vec<Value> =
                s.samples.iter().map(|(ms, v)| json!({"timestampMs": ms.to_string(), "value": v})).collect();
            labelled(&s.labels, json!({ "samples": samples, "exemplars": [] }))
        })
        .collect();
    Ok(Json(json!({ "series": series, "metrics": { "completedJobs": 1, "totalJobs": 1 } })))
}

/// `GET /api/metrics/query`: one value per series over the whole range
/// (Tempo's `QueryInstantResponse`).
#[utoipa::path(get, path = "/api/metrics/query", tag = "tempo", operation_id = "tempo_metrics_instant",
    params(MetricsParams), responses((status = 200, description = "`QueryInstantResponse`"), (status = 400, response = inline(BadParameter))))]
async fn metrics_instant(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<MetricsParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let p = &request.params;
    let (query, window) = (p.query()?, p.window());
    let series = engine.traceql_metrics(&request.tenant, &query, window, window.duration_ns()).await?;
    let series: Vec<Value> = series
        .into_iter()
        .filter_map(|s| {
            let (_, value) = s.samples.first()?;
            Some(labelled(&s.labels, json!({ "value": value })))
        })
        .collect();
    Ok(Json(json!({ "series": series, "metrics": { "completedJobs": 1, "totalJobs": 1 } })))
}

/// A series' fields with its labels, in both of Tempo's forms.
fn labelled(labels: &[(String, LabelValue)], mut fields: Value) -> Value {
    fields["labels"] = Value::Array(labels_json(labels));
    fields["promLabels"] = Value::String(prom_labels(labels));
    fields
}

/// Labels as `tempopb` writes them in JSON: a key and a typed value.
fn labels_json(labels: &[(String, LabelValue)]) -> Vec<Value> {
    labels
        .iter()
        .map(|(key, value)| match value {
            LabelValue::Text(text) => json!({"key": key, "value": {"stringValue": text}}),
            LabelValue::Number(n) => json!({"key": key, "value": {"doubleValue": n}}),
            LabelValue::Nil => json!({"key": key, "value": {}}),
        })
        .collect()
}

/// Labels as Prometheus writes them: `{key="value", ...}`.
fn prom_labels(labels: &[(String, LabelValue)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| {
            let value = match value {
                LabelValue::Text(text) => text.clone(),
                LabelValue::Number(n) => n.to_string(),
                LabelValue::Nil => return format!("{key}=nil"),
            };
            format!("{key}={}", serde_json::Value::String(value))
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read for their types only: the trace is found by id alone.
struct TraceParams {
    /// Unix seconds.
    start: Option<i64>,
    end: Option<i64>,
}

async fn spans_of(engine: &QueryEngine, tenant: &TenantId, id: &str) -> Result<Vec<ResourceSpans>, QueryError> {
    let trace_id = id.parse::<TraceIdParam>().map_err(|e| bad("traceID", e))?.0;
    engine.trace(tenant, &trace_id).await?.ok_or_else(|| QueryError::NotFound(format!("trace {trace_id} not found")))
}

/// `GET /api/traces/{id}` with `Accept: application/protobuf`: `tempopb.Trace`,
/// whose wire form is OTLP's `TracesData`.
pub(super) async fn trace_v1(engine: &QueryEngine, headers: &HeaderMap, id: &str) -> Response {
    let answer = async {
        let tenant = super::Tenant::of(headers)?;
        spans_of(engine, &tenant, id).await
    };
    match answer.await {
        Ok(resource_spans) => protobuf(TracesData { resource_spans }.encode_to_vec()),
        Err(error) => TempoError(error).into_response(),
    }
}

fn protobuf(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/protobuf")], bytes).into_response()
}

/// `tempopb.TraceByIDResponse`: the trace, and metrics spanlake leaves empty.
#[derive(Clone, PartialEq, Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

/// `GET /api/v2/traces/{id}`: `TraceByIDResponse` as protobuf, or
/// `{"trace": <OTLP/JSON>}`.
#[utoipa::path(get, path = "/api/v2/traces/{trace_id}", tag = "tempo", operation_id = "tempo_trace_v2",
    params(("trace_id" = String, Path, pattern = r"^([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$"), TraceParams),
    responses((status = 200, description = "`TraceByIDResponse`: protobuf, or OTLP/JSON under `trace`"),
        (status = 404, description = "No span of it is stored"), (status = 400, response = inline(BadParameter))))]
async fn trace_v2(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request<TraceParams, TempoError>,
) -> Result<Response, TempoError> {
    let trace = TracesData { resource_spans: spans_of(&engine, &request.tenant, &id).await? };
    if wants_protobuf(&headers) {
        return Ok(protobuf(TraceByIdResponse { trace: Some(trace) }.encode_to_vec()));
    }
    let trace = serde_json::to_value(trace).map_err(|e| QueryError::Render(e.to_string()))?;
    Ok(Json(json!({ "trace": trace })).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// TraceQL.
    q: Option<String>,
    /// logfmt: `service.name=shop http.route="/a b"`; each on the span or its resource.
    tags: Option<String>,
    /// Shortest trace: a duration such as `100ms`, `1.5s`.
    #[serde(rename = "minDuration")]
    #[param(inline)]
    min_duration: Option<SpanDuration>,
    /// Longest trace.
    #[serde(rename = "maxDuration")]
    #[param(inline)]
    max_duration: Option<SpanDuration>,
    /// 20 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Spans per span set, 3 by default.
    #[param(minimum = 1, maximum = 1000)]
    spss: Option<usize>,
    /// Unix seconds.
    start: Option<i64>,
    end: Option<i64>,
}

/// A window in unix seconds, the last hour by default.
fn seconds_window(start: Option<i64>, end: Option<i64>) -> Window {
    let ns = |s: i64| s.saturating_mul(NANOS_PER_SECOND);
    // Tempo's `end` second is included.
    Window::new(start.map(ns), end.map(|e| ns(e).saturating_add(NANOS_PER_SECOND)), None, HOUR_NS)
}

/// `key=value` pairs separated by spaces, values quoted when they hold one.
fn logfmt(text: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) =
            rest.split_once('=').ok_or_else(|| bad("tags", format!("expected key=value in {text:?}")))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').ok_or_else(|| bad("tags", format!("unterminated quote in {text:?}")))?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        pairs.push((key.trim().to_owned(), value.to_owned()));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// `GET /api/search`: the newest traces with a span that meets the query,
/// each with up to `spss` of the spans it matched.
#[utoipa::path(get, path = "/api/search", tag = "tempo", operation_id = "tempo_search", params(SearchParams),
    responses((status = 200, description = "`SearchResponse`"), (status = 400, response = inline(BadParameter))))]
async fn search(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<SearchParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let p = &request.params;
    let traceql = p.q.as_deref().filter(|q| !q.trim().is_empty()).map(TraceQl::parse).transpose();
    let traceql = traceql.map_err(|e| QueryError::BadRequest(format!("invalid TraceQL query: {e}")))?;
    // Trace durations, as TraceQL says them.
    let lengths: Vec<String> = [(">=", p.min_duration), ("<=", p.max_duration)]
        .into_iter()
        .filter_map(|(op, d)| Some(format!("traceDuration {op} {}ns", d?.ns())))
        .collect();
    let lengths = (!lengths.is_empty())
        .then(|| TraceQl::parse(&format!("{{ {} }}", lengths.join(" && "))).expect("a trace duration filter parses"));
    let tags = logfmt(p.tags.as_deref().unwrap_or_default())?;
    let filter = SpanFilter {
        tags: tags.into_iter().map(|(k, v)| TagFilter::Equals(k, v)).collect(),
        traceql: traceql.iter().chain(&lengths).cloned().collect(),
        ..SpanFilter::default()
    };
    let search = SearchRequest {
        filter,
        window: seconds_window(p.start, p.end),
        order: SearchOrder::StartDesc,
        limit: limit("limit", p.limit, 20, MAX_SEARCH_LIMIT)?,
        cursor: None,
    };
    let page = engine.search(&request.tenant, &search).await?;
    let spss = p.spss.unwrap_or(3).clamp(1, 1000);
    let named = traceql.as_ref().map(TraceQl::named).unwrap_or_default();
    let ids: Vec<TraceId> = page.traces.iter().map(|t| t.trace_id).collect();
    let mut matched = matched_spans(&engine, &request.tenant, &search, &ids, &named, spss).await?;
    let traces: Vec<Value> = page
        .traces
        .into_iter()
        .map(|t| {
            let set = matched.remove(&t.trace_id).unwrap_or_else(|| json!({"spans": [], "matched": 0}));
            summary_json(t, set)
        })
        .collect();
    Ok(Json(json!({ "traces": traces, "metrics": { "completedJobs": 1, "totalJobs": 1 } })))
}

fn summary_json(t: TraceSummary, span_set: Value) -> Value {
    json!({
        "traceID": t.trace_id.to_string(),
        "rootServiceName": t.root_service_name.unwrap_or_else(|| "<root span not yet received>".to_owned()),
        "rootTraceName": t.root_span_name.unwrap_or_default(),
        "startTimeUnixNano": t.start_time_unix_nano.to_string(),
        "durationMs": t.duration_ns / 1_000_000,
        "spanSet": span_set.clone(),
        "spanSets": [span_set],
    })
}

/// Per trace of `ids`, its span set: the first `spss` spans that meet the
/// search's filter, their count, and the values the query named.
async fn matched_spans(
    engine: &QueryEngine,
    tenant: &TenantId,
    search: &SearchRequest,
    ids: &[TraceId],
    named: &[Named],
    spss: usize,
) -> Result<HashMap<TraceId, Value>, QueryError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut params = Params::default();
    let condition = search.filter.where_sql(&search.window, &mut params);
    let id_list: Vec<String> = ids.iter().map(|id| params.trace_id(id)).collect();
    let mut values = vec![format!("CAST({} AS VARCHAR) AS v_service", schema::SERVICE_NAME)];
    let mut keys = vec![("service.name".to_owned(), "v_service".to_owned())];
    for (i, n) in named.iter().enumerate() {
        let (key, sql) = match n {
            Named::Attribute { resource, unscoped, key } => {
                let level = if *resource { Level::Resource } else { Level::Span };
                let (text, _) = attribute_sql(key, level, &mut params);
                let text = if *unscoped {
                    format!("COALESCE({text}, {})", attribute_sql(key, Level::Resource, &mut params).0)
                } else {
                    text
                };
                (key.clone(), text)
            }
            Named::Status => ("status".to_owned(), format!("lower(CAST({} AS VARCHAR))", schema::STATUS_CODE)),
            Named::Kind => ("kind".to_owned(), format!("lower(CAST({} AS VARCHAR))", schema::SPAN_KIND)),
            Named::StatusMessage => ("statusMessage".to_owned(), schema::STATUS_MESSAGE.to_owned()),
            Named::NestedSet(_) => continue,
        };
        if keys.iter().any(|(k, _)| *k == key) {
            continue;
        }
        values.push(format!("{sql} AS v{i}"));
        keys.push((key, format!("v{i}")));
    }
    let sql = format!(
        "WITH m AS (
            SELECT trace_id, span_id, CAST(span_name AS VARCHAR) AS name, CAST(start_time AS BIGINT) AS start_ns,
                   CAST(duration_ns AS BIGINT) AS duration_ns, {values},
                   CAST(count(*) OVER (PARTITION BY trace_id) AS BIGINT) AS matched,
                   row_number() OVER (PARTITION BY trace_id ORDER BY start_time, span_id) AS n
            FROM {SPANS_TABLE} WHERE {condition} AND trace_id IN ({ids}))
         SELECT * FROM m WHERE n <= {spss}
         ORDER BY trace_id, n",
        values = values.join(", "),
        ids = id_list.join(", "),
    );
    let nested: Vec<NestedSetField> = named
        .iter()
        .filter_map(|n| match n {
            Named::NestedSet(field) => Some(*field),
            _ => None,
        })
        .collect();
    let trees =
        if nested.is_empty() { HashMap::new() } else { nested_sets(engine, tenant, ids, &search.window).await? };
    let mut sets: HashMap<TraceId, (Vec<Value>, i64)> = HashMap::new();
    for batch in engine.batches(tenant, &sql, params).await? {
        let c = Columns(&batch);
        let (starts, durations, counts) = (c.ints("start_ns")?, c.ints("duration_ns")?, c.ints("matched")?);
        let names = c.texts("name")?;
        let span_ids = c.ids("span_id")?;
        let columns: Vec<(String, arrow::array::StringArray)> =
            keys.iter().map(|(k, col)| Ok((k.clone(), c.texts(col)?))).collect::<Result<_, QueryError>>()?;
        for row in 0..batch.num_rows() {
            let attributes: Vec<Value> = columns
                .iter()
                .filter(|(_, values)| !arrow::array::Array::is_null(values, row))
                .map(|(key, values)| json!({"key": key, "value": {"stringValue": values.value(row)}}))
                .collect();
            let trace_id = c.trace_id("trace_id", row)?;
            let mut attributes = attributes;
            if let Some(set) = SpanId::from_slice(span_ids.value(row)).and_then(|id| trees.get(&(trace_id, id))) {
                attributes.extend(
                    nested.iter().map(|f| json!({"key": f.name(), "value": {"intValue": f.of(set).to_string()}})),
                );
            }
            let span = json!({
                "spanID": const_hex::encode(span_ids.value(row)),
                "name": names.value(row),
                "startTimeUnixNano": starts[row].to_string(),
                "durationNanos": durations[row].to_string(),
                "attributes": attributes,
            });
            let entry = sets.entry(trace_id).or_default();
            entry.0.push(span);
            entry.1 = counts[row];
        }
    }
    Ok(sets.into_iter().map(|(id, (spans, matched))| (id, json!({ "spans": spans, "matched": matched }))).collect())
}

/// The nested-set numbers of every span of the traces `ids`, from their
/// trees (spans up to an hour either side of the window).
async fn nested_sets(
    engine: &QueryEngine,
    tenant: &TenantId,
    ids: &[TraceId],
    window: &Window,
) -> Result<HashMap<(TraceId, SpanId), NestedSet>, QueryError> {
    let mut params = Params::default();
    let id_list: Vec<String> = ids.iter().map(|id| params.trace_id(id)).collect();
    let (lo, hi) =
        (params.time(window.start_ns.saturating_sub(HOUR_NS)), params.time(window.end_ns.saturating_add(HOUR_NS)));
    let sql = format!(
        "SELECT trace_id, span_id, parent_span_id, CAST(start_time AS BIGINT) AS start_ns, CAST(duration_ns AS BIGINT) AS duration_ns
         FROM {SPANS_TABLE} WHERE trace_id IN ({}) AND start_time >= {lo} AND start_time < {hi}",
        id_list.join(", ")
    );
    let mut spans: HashMap<TraceId, Vec<(SpanId, Option<SpanId>, i64, i64)>> = HashMap::new();
    for batch in engine.batches(tenant, &sql, params).await? {
        let c = Columns(&batch);
        let (span_ids, parents) = (c.ids("span_id")?, c.ids("parent_span_id")?);
        let (starts, durations) = (c.ints("start_ns")?, c.ints("duration_ns")?);
        for row in 0..batch.num_rows() {
            let Some(id) = SpanId::from_slice(span_ids.value(row)) else { continue };
            let parent =
                (!arrow::array::Array::is_null(parents, row)).then(|| SpanId::from_slice(parents.value(row))).flatten();
            spans.entry(c.trace_id("trace_id", row)?).or_default().push((
                id,
                parent,
                starts[row],
                starts[row] + durations[row],
            ));
        }
    }
    let mut out = HashMap::new();
    for (trace_id, spans) in spans {
        let nodes: Vec<Node<'_>> = spans
            .iter()
            .map(|(id, parent, start_ns, end_ns)| Node {
                id: id.as_bytes().as_slice(),
                parent: parent.as_ref().map_or(&[][..], |p| p.as_bytes().as_slice()),
                start_ns: *start_ns,
                end_ns: *end_ns,
            })
            .collect();
        for ((id, ..), set) in spans.iter().zip(tree::nested_sets(&nodes)) {
            out.insert((trace_id, *id), set);
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TagsParams {
    /// One scope, or all (`none`, `all` or absent).
    #[param(inline)]
    scope: Option<ScopeParam>,
    /// Unix seconds.
    start: Option<i64>,
    end: Option<i64>,
    /// TraceQL narrowing the values (tag values only).
    q: Option<String>,
}

/// Tempo's `scope` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum ScopeParam {
    Span,
    Resource,
    Intrinsic,
    None,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scopes {
    All,
    One(TagScope),
}

fn scopes(param: Option<ScopeParam>) -> Scopes {
    match param {
        None | Some(ScopeParam::None | ScopeParam::All) => Scopes::All,
        Some(ScopeParam::Span) => Scopes::One(TagScope::Span),
        Some(ScopeParam::Resource) => Scopes::One(TagScope::Resource),
        Some(ScopeParam::Intrinsic) => Scopes::One(TagScope::Intrinsic),
    }
}

async fn scoped_keys(
    engine: &QueryEngine,
    tenant: &TenantId,
    p: &TagsParams,
) -> Result<Vec<(&'static str, Vec<String>)>, QueryError> {
    let wanted = scopes(p.scope);
    let summary = engine.tag_summary(tenant, &seconds_window(p.start, p.end)).await?;
    let mut out = Vec::new();
    for (name, scope) in
        [("span", TagScope::Span), ("resource", TagScope::Resource), ("intrinsic", TagScope::Intrinsic)]
    {
        if wanted != Scopes::All && wanted != Scopes::One(scope) {
            continue;
        }
        let keys: Vec<String> = if scope == TagScope::Intrinsic {
            INTRINSICS.iter().map(|k| (*k).to_owned()).collect()
        } else {
            let mut keys: Vec<String> = summary.keys_in(None, scope).into_iter().map(str::to_owned).collect();
            if scope == TagScope::Resource && !summary.services.is_empty() {
                keys.push("service.name".to_owned());
                keys.sort();
            }
            keys.truncate(MAX_SUGGESTIONS);
            keys
        };
        out.push((name, keys));
    }
    Ok(out)
}

/// `GET /api/search/tags`: tag names without their scope.
#[utoipa::path(get, path = "/api/search/tags", tag = "tempo", operation_id = "tempo_tag_names", params(TagsParams),
    responses((status = 200, description = "`SearchTagsResponse`"), (status = 400, response = inline(BadParameter))))]
async fn tag_names(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<TagsParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let mut names: Vec<String> = scoped_keys(&engine, &request.tenant, &request.params)
        .await?
        .into_iter()
        .filter(|(scope, _)| *scope != "intrinsic")
        .flat_map(|(_, keys)| keys)
        .collect();
    names.sort();
    names.dedup();
    Ok(Json(json!({ "tagNames": names })))
}

/// `GET /api/v2/search/tags`: tag names per scope.
#[utoipa::path(get, path = "/api/v2/search/tags", tag = "tempo", operation_id = "tempo_tag_names_v2", params(TagsParams),
    responses((status = 200, description = "`SearchTagsV2Response`"), (status = 400, response = inline(BadParameter))))]
async fn tag_names_v2(
    State(engine): State<Arc<QueryEngine>>,
    request: Request<TagsParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let scopes: Vec<Value> = scoped_keys(&engine, &request.tenant, &request.params)
        .await?
        .into_iter()
        .map(|(name, tags)| json!({"name": name, "tags": tags}))
        .collect();
    Ok(Json(json!({ "scopes": scopes })))
}

/// The values of `tag` (`resource.service.name`, `span.http.route`,
/// `.customer`, `name`, `status`, `kind`, or a bare key), each with its
/// TraceQL type.
async fn typed_values(
    engine: &QueryEngine,
    tenant: &TenantId,
    tag: &str,
    p: &TagsParams,
) -> Result<Vec<(&'static str, String)>, QueryError> {
    let window = seconds_window(p.start, p.end);
    let keyword = |values: &[&str]| values.iter().map(|v| ("keyword", (*v).to_owned())).collect();
    match tag {
        "status" => return Ok(keyword(&["error", "ok", "unset"])),
        "kind" => return Ok(keyword(&["client", "consumer", "internal", "producer", "server", "unspecified"])),
        _ => {}
    }
    let (level, key) = if let Some(key) = tag.strip_prefix("resource.") {
        (Some(Level::Resource), key)
    } else if let Some(key) = tag.strip_prefix("span.") {
        (Some(Level::Span), key)
    } else {
        (None, tag.strip_prefix('.').unwrap_or(tag))
    };
    let query = p.q.as_deref().filter(|q| !q.trim().is_empty() && q.trim() != "{}");
    let int_column = schema::DEDICATED.iter().any(|d| d.key == key && d.kind == schema::ColumnKind::Int);
    let kind = if int_column { "int" } else { "string" };
    let values: Vec<String> = match (tag, query) {
        ("name", _) | (_, Some(_)) => {
            // A scan, bounded by the window and the answer's length.
            let traceql = query.map(TraceQl::parse).transpose();
            let traceql = traceql.map_err(|e| QueryError::BadRequest(format!("invalid TraceQL query: {e}")))?;
            let filter = SpanFilter { traceql: traceql.into_iter().collect(), ..SpanFilter::default() };
            let mut params = Params::default();
            let condition = filter.where_sql(&window, &mut params);
            let value = if tag == "name" {
                format!("CAST({} AS VARCHAR)", schema::SPAN_NAME)
            } else {
                let span = attribute_sql(key, Level::Span, &mut params).0;
                let resource = attribute_sql(key, Level::Resource, &mut params).0;
                match level {
                    Some(Level::Span) => span,
                    Some(Level::Resource) => resource,
                    None => format!("COALESCE({span}, {resource})"),
                }
            };
            let sql = format!(
                "SELECT DISTINCT {value} AS v FROM {SPANS_TABLE} WHERE {condition} AND {value} IS NOT NULL
                 ORDER BY v LIMIT {MAX_SUGGESTIONS}"
            );
            let mut out = Vec::new();
            for batch in engine.batches(tenant, &sql, params).await? {
                let texts = Columns(&batch).texts("v")?;
                out.extend(texts.iter().flatten().map(str::to_owned));
            }
            out
        }
        // Summaries are per service: the service names are the services.
        _ if key == schema::attr::SERVICE_NAME && level != Some(Level::Span) => {
            engine.services(tenant, Some(window)).await?
        }
        _ => engine.tag_values(tenant, key, None, None, &window).await?,
    };
    let kind = if tag == "name" { "string" } else { kind };
    Ok(values.into_iter().map(|v| (kind, v)).collect())
}

/// `GET /api/search/tag/{tag}/values`.
#[utoipa::path(get, path = "/api/search/tag/{tag}/values", tag = "tempo", operation_id = "tempo_tag_values",
    params(("tag" = String, Path), TagsParams), responses((status = 200, description = "`SearchTagValuesResponse`"), (status = 400, response = inline(BadParameter))))]
async fn tag_values(
    State(engine): State<Arc<QueryEngine>>,
    Path(tag): Path<String>,
    request: Request<TagsParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let values = typed_values(&engine, &request.tenant, &tag, &request.params).await?;
    Ok(Json(json!({ "tagValues": values.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })))
}

/// `GET /api/v2/search/tag/{scope.tag}/values`: typed values.
#[utoipa::path(get, path = "/api/v2/search/tag/{tag}/values", tag = "tempo", operation_id = "tempo_tag_values_v2",
    params(("tag" = String, Path), TagsParams), responses((status = 200, description = "`SearchTagValuesV2Response`"), (status = 400, response = inline(BadParameter))))]
async fn tag_values_v2(
    State(engine): State<Arc<QueryEngine>>,
    Path(tag): Path<String>,
    request: Request<TagsParams, TempoError>,
) -> Result<Json<Value>, TempoError> {
    let values = typed_values(&engine, &request.tenant, &tag, &request.params).await?;
    let values: Vec<Value> = values.into_iter().map(|(kind, v)| json!({"type": kind, "value": v})).collect();
    Ok(Json(json!({ "tagValues": values })))
}

/// This family's part of the OpenAPI document (`api/openapi.rs`).
#[derive(OpenApi)]
#[openapi(paths(
    buildinfo,
    trace_v2,
    search,
    tag_names,
    tag_names_v2,
    tag_values,
    tag_values_v2,
    metrics_range,
    metrics_instant
))]
struct Doc;

pub(super) fn document() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_pairs_take_quotes() {
        let pairs = logfmt(r#"service.name=shop http.route="/a b"  k=v"#).unwrap();
        let expected = [("service.name", "shop"), ("http.route", "/a b"), ("k", "v")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(logfmt("novalue").is_err());
        assert!(logfmt(r#"k="open"#).is_err());
    }

    #[test]
    fn an_end_second_is_included() {
        let w = seconds_window(Some(100), Some(200));
        assert_eq!((w.start_ns, w.end_ns), (100 * NANOS_PER_SECOND, 201 * NANOS_PER_SECOND));
    }

    #[test]
    fn trace_by_id_wire_form_is_otlp() {
        // tempopb.Trace's one field is OTLP's resource spans, number 1.
        let data = TracesData { resource_spans: vec![ResourceSpans::default()] };
        let decoded =
            TraceByIdResponse::decode(TraceByIdResponse { trace: Some(data.clone()) }.encode_to_vec().as_slice());
        assert_eq!(decoded.unwrap().trace, Some(data));
    }
}
