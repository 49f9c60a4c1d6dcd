//! The answers of `/api/v1`, as the OpenAPI document describes them
//! (`GET /api/v1/openapi.json`). The test suite decodes every answer of a
//! real server into these types and writes it back, requiring the same
//! JSON: a field the server adds and these lack fails it.

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TraceId;

/// One page of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    pub traces: Vec<TraceSummary>,
    /// Absent on the last page.
    pub next_cursor: Option<String>,
    /// Set when collectors of a cluster could not be reached: the page
    /// lacks their spans that are not in files yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    pub unreachable_collectors: Vec<String>,
}

/// One trace of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    #[serde(rename = "traceID")]
    pub trace_id: TraceId,
    pub root_service_name: Option<String>,
    pub root_span_name: Option<String>,
    pub start_time_unix_nano: i64,
    pub duration_ns: i64,
    pub span_count: i64,
    pub error_count: i64,
    pub services: Vec<ServiceSpans>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpans {
    pub name: String,
    pub span_count: i64,
    pub error_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationList {
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    pub span_kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagKeys {
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagValues {
    pub values: Vec<String>,
}

/// The service graph of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyGraph {
    pub nodes: Vec<String>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub parent: String,
    pub child: String,
    pub call_count: i64,
    pub error_count: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<HopCost>,
}

/// What a hop costs beyond the server's own time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HopCost {
    pub linked_calls: i64,
    pub gap_p50_ms: Option<f64>,
    pub gap_p99_ms: Option<f64>,
    pub request_bytes: Option<f64>,
    pub response_bytes: Option<f64>,
}

/// A service's versions in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub service: String,
    pub versions: Vec<VersionStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionStats {
    pub version: Option<String>,
    pub first_seen_unix_nano: i64,
    pub last_seen_unix_nano: i64,
    pub requests: i64,
    pub errors: i64,
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub share: f64,
}

/// The canary verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "worse")]
    Worse,
    #[serde(rename = "better")]
    Better,
    #[serde(rename = "no difference")]
    NoDifference,
    #[serde(rename = "not enough data")]
    NotEnoughData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub service: String,
    pub baseline: String,
    pub candidate: String,
    pub alpha: f64,
    pub verdict: Verdict,
    pub overall: OperationComparison,
    pub operations: Vec<OperationComparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationComparison {
    pub operation: Option<String>,
    pub baseline: Side,
    pub candidate: Side,
    pub latency: Option<LatencyTest>,
    pub errors: Option<ErrorTest>,
    pub verdict: Verdict,
    pub needed_per_version: i64,
    pub histogram: Vec<PairedBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub requests: i64,
    pub errors: i64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyTest {
    pub u: f64,
    pub p_value: f64,
    pub adjusted_p_value: f64,
    pub probability_slower: f64,
    pub rank_biserial: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTest {
    pub p_value: f64,
    pub adjusted_p_value: f64,
    pub difference: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedBucket {
    pub lower_ns: i64,
    pub upper_ns: i64,
    pub baseline: i64,
    pub candidate: i64,
}

/// Who called one version of a service, or what it called.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCalls {
    pub service: String,
    pub version: String,
    pub calls: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattributed_calls: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_to_remove: Option<bool>,
    pub peers: Vec<VersionPeer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionPeer {
    pub service: String,
    pub version: Option<String>,
    pub calls: i64,
    pub errors: i64,
    pub last_call_unix_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retries {
    pub edges: Vec<RetryEdge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryEdge {
    pub client: String,
    pub server: Option<String>,
    pub operation: String,
    pub calls: i64,
    pub retries: i64,
    pub retry_rate: f64,
    pub logical_calls: i64,
    pub amplification: f64,
    pub errors: i64,
    pub timeouts: i64,
    pub abandoned: i64,
    pub abandoned_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySeries {
    pub step_ns: i64,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub group: Option<String>,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub time_unix_nano: i64,
    pub requests: i64,
    pub errors: i64,
    pub requests_per_second: f64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub series: Vec<HistogramSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSeries {
    pub group: Option<String>,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub lower_ns: i64,
    pub upper_ns: i64,
    pub count: i64,
}

/// Several traces by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceList {
    pub traces: Vec<TraceEntry>,
    /// Ids asked for that have no stored span.
    pub missing: Vec<TraceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    #[serde(rename = "traceID")]
    pub trace_id: TraceId,
    #[serde(rename = "resourceSpans")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// A SQL answer as JSON rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlRows {
    pub columns: Vec<SqlColumn>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}
