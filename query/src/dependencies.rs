//! The service dependency graph, with Zipkin's linker semantics, as one
//! DataFusion query over the spans of a window.
//!
//! An edge is a call from one service to another:
//! - a SERVER span that shares its id with a CLIENT span (Zipkin's shared
//!   spans): client service → server service;
//! - else a SERVER or CONSUMER span whose parent is a CLIENT or PRODUCER span
//!   (any service, so a service calling itself is an edge too), or a span of
//!   another service (a caller that made no client span): parent service →
//!   span service. Messaging gives producer → consumer edges this way;
//! - a root SERVER or CONSUMER span that names its caller
//!   (`remote_service_name`, e.g. from a Zipkin remote endpoint);
//! - a CLIENT or PRODUCER span with a `remote_service_name` and no SERVER or
//!   CONSUMER child or sharer: a leaf edge to a database, a queue or an uninstrumented
//!   peer. A client span whose server side is missing counts here too.
//!
//! A call is an error when either side's status is ERROR. Its latency is
//! the client's duration when there is a client span, else the server's.

use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::schema::{
    DURATION_NS, PARENT_SPAN_ID, REMOTE_SERVICE_NAME, SERVICE_NAME, SPAN_ID, SPAN_KIND, START_TIME, STATUS_CODE,
    TRACE_ID,
};
use utoipa::ToSchema;

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{NANOS_PER_MILLI, Params, Window};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyGraph {
    /// Every service that is a parent or child of an edge, sorted.
    pub nodes: Vec<String>,
    pub edges: Vec<Edge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub parent: String,
    pub child: String,
    pub call_count: i64,
    pub error_count: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Row {
    parent: String,
    child: String,
    calls: i64,
    errors: i64,
    p50_ns: Option<f64>,
    p99_ns: Option<f64>,
}

fn graph_sql(start: &str, end: &str) -> String {
    format!(
        "WITH s AS (
            SELECT {TRACE_ID} AS trace_id, {SPAN_ID} AS span_id, {PARENT_SPAN_ID} AS parent_span_id,
                   CAST({SERVICE_NAME} AS VARCHAR) AS service, CAST({SPAN_KIND} AS VARCHAR) AS kind,
                   CAST({REMOTE_SERVICE_NAME} AS VARCHAR) AS remote, {STATUS_CODE} = 'ERROR' AS error,
                   {DURATION_NS} AS duration_ns
            FROM {SPANS_TABLE} WHERE {START_TIME} >= {start} AND {START_TIME} < {end}),
        servers AS (SELECT * FROM s WHERE kind IN ('SERVER', 'CONSUMER')),
        callers AS (SELECT * FROM s WHERE kind IN ('CLIENT', 'PRODUCER')),
        -- Each server span's caller: the client span sharing its id (Zipkin's
        -- shared spans) if there is one, else its parent.
        linked AS (
            SELECT c.trace_id, c.span_id, c.service AS child, c.error AS child_error, c.duration_ns AS child_ns,
                   p.service AS parent, p.kind AS parent_kind, p.error AS parent_error, p.duration_ns AS parent_ns,
                   0 AS preference
            FROM servers c JOIN callers p ON c.trace_id = p.trace_id AND c.span_id = p.span_id
            UNION ALL
            SELECT c.trace_id, c.span_id, c.service, c.error, c.duration_ns, p.service, p.kind, p.error, p.duration_ns, 1
            FROM servers c JOIN s p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
            WHERE p.kind IN ('CLIENT', 'PRODUCER') OR p.service <> c.service),
        picked AS (
            SELECT *, row_number() OVER (PARTITION BY trace_id, span_id, child ORDER BY preference) AS pick
            FROM linked),
        calls AS (
            SELECT parent, child, (child_error OR parent_error) AS error,
                   CASE WHEN parent_kind IN ('CLIENT', 'PRODUCER') THEN parent_ns ELSE child_ns END AS duration_ns
            FROM picked WHERE pick = 1
            UNION ALL
            SELECT remote, service, error, duration_ns FROM servers
            WHERE parent_span_id IS NULL AND remote IS NOT NULL
            UNION ALL
            SELECT p.service, p.remote, p.error, p.duration_ns FROM callers p
            WHERE p.remote IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM servers c WHERE c.trace_id = p.trace_id AND c.parent_span_id = p.span_id)
              AND NOT EXISTS (SELECT 1 FROM servers c WHERE c.trace_id = p.trace_id AND c.span_id = p.span_id))
        SELECT parent, child, count(*) AS calls, sum(CAST(error AS BIGINT)) AS errors,
               approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ns) AS p50_ns,
               approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99_ns
        FROM calls WHERE parent IS NOT NULL AND child IS NOT NULL
        GROUP BY parent, child ORDER BY parent, child"
    )
}

impl QueryEngine {
    pub async fn dependencies(&self, tenant: &TenantId, window: &Window) -> Result<DependencyGraph, QueryError> {
        let mut params = Params::default();
        let (start, end) = (params.time(window.start_ns), params.time(window.end_ns));
        let rows: Vec<Row> = self.rows(tenant, &graph_sql(&start, &end), params).await?;
        let mut nodes: Vec<String> = rows.iter().flat_map(|r| [r.parent.clone(), r.child.clone()]).collect();
        nodes.sort();
        nodes.dedup();
        let ms = |ns: Option<f64>| ns.map(|ns| ns / NANOS_PER_MILLI as f64);
        let edges = rows
            .into_iter()
            .map(|r| Edge {
                parent: r.parent,
                child: r.child,
                call_count: r.calls,
                error_count: r.errors,
                p50_ms: ms(r.p50_ns),
                p99_ms: ms(r.p99_ns),
            })
            .collect();
        Ok(DependencyGraph { nodes, edges })
    }
}
