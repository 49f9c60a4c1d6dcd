//! The calls between services whose anchor span starts in a time range, as
//! one DataFusion query, counted per edge and duration bucket.
//!
//! A call's anchor is the span that makes it an edge: the SERVER or
//! CONSUMER span for a linked call, the CLIENT or PRODUCER span for a leaf
//! call. Its partner (parent, sharer, or a server that rules out a leaf)
//! may start up to [`MARGIN_NS`] outside the range, so a call is counted
//! once, in the range of its anchor, even across a range's edge: counts of
//! adjacent ranges add up to the count of their union.

use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::schema::{
    DURATION_NS, PARENT_SPAN_ID, REMOTE_SERVICE_NAME, SERVICE_NAME, SPAN_ID, SPAN_KIND, START_TIME, STATUS_CODE,
    TRACE_ID,
};

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{NANOS_PER_SECOND, Params};

/// How far outside a range a call's partner span is looked for.
pub(crate) const MARGIN_NS: i64 = 5 * 60 * NANOS_PER_SECOND;
/// Duration buckets per doubling: a bucket is 4.4% wide.
pub(crate) const BUCKETS_PER_OCTAVE: f64 = 16.0;

/// Calls of one edge in one duration bucket, with their exact extremes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EdgeCalls {
    pub(crate) parent: String,
    pub(crate) child: String,
    /// `floor(log2(duration_ns) * BUCKETS_PER_OCTAVE)`.
    pub(crate) bucket: i32,
    pub(crate) calls: i64,
    pub(crate) errors: i64,
    pub(crate) min_ns: i64,
    pub(crate) max_ns: i64,
}

fn calls_sql(start: &str, end: &str, from: &str, until: &str) -> String {
    format!(
        "WITH s AS (
            SELECT {TRACE_ID} AS trace_id, {SPAN_ID} AS span_id, {PARENT_SPAN_ID} AS parent_span_id,
                   CAST({SERVICE_NAME} AS VARCHAR) AS service, CAST({SPAN_KIND} AS VARCHAR) AS kind,
                   CAST({REMOTE_SERVICE_NAME} AS VARCHAR) AS remote, {STATUS_CODE} = 'ERROR' AS error,
                   {DURATION_NS} AS duration_ns, {START_TIME} >= {start} AND {START_TIME} < {end} AS anchored
            FROM {SPANS_TABLE} WHERE {START_TIME} >= {from} AND {START_TIME} < {until}),
        servers AS (SELECT * FROM s WHERE kind IN ('SERVER', 'CONSUMER')),
        callers AS (SELECT * FROM s WHERE kind IN ('CLIENT', 'PRODUCER')),
        -- Each anchored server span's caller: the client span sharing its id
        -- (Zipkin's shared spans) if there is one, else its parent.
        linked AS (
            SELECT c.trace_id, c.span_id, c.service AS child, c.error AS child_error, c.duration_ns AS child_ns,
                   p.service AS parent, p.kind AS parent_kind, p.error AS parent_error, p.duration_ns AS parent_ns,
                   0 AS preference
            FROM servers c JOIN callers p ON c.trace_id = p.trace_id AND c.span_id = p.span_id
            WHERE c.anchored
            UNION ALL
            SELECT c.trace_id, c.span_id, c.service, c.error, c.duration_ns, p.service, p.kind, p.error, p.duration_ns, 1
            FROM servers c JOIN s p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
            WHERE c.anchored AND (p.kind IN ('CLIENT', 'PRODUCER') OR p.service <> c.service)),
        picked AS (
            SELECT *, row_number() OVER (PARTITION BY trace_id, span_id, child ORDER BY preference) AS pick
            FROM linked),
        calls AS (
            SELECT parent, child, (child_error OR parent_error) AS error,
                   CASE WHEN parent_kind IN ('CLIENT', 'PRODUCER') THEN parent_ns ELSE child_ns END AS duration_ns
            FROM picked WHERE pick = 1
            UNION ALL
            SELECT remote, service, error, duration_ns FROM servers
            WHERE anchored AND parent_span_id IS NULL AND remote IS NOT NULL
            UNION ALL
            SELECT p.service, p.remote, p.error, p.duration_ns FROM callers p
            WHERE p.anchored AND p.remote IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM servers c WHERE c.trace_id = p.trace_id AND c.parent_span_id = p.span_id)
              AND NOT EXISTS (SELECT 1 FROM servers c WHERE c.trace_id = p.trace_id AND c.span_id = p.span_id)),
        bucketed AS (
            SELECT parent, child, error, duration_ns,
                   CAST(floor(log2(CAST(greatest(duration_ns, 1) AS DOUBLE)) * {BUCKETS_PER_OCTAVE}) AS INT) AS bucket
            FROM calls WHERE parent IS NOT NULL AND child IS NOT NULL)
        SELECT parent, child, bucket, count(*) AS calls, sum(CAST(error AS BIGINT)) AS errors,
               min(duration_ns) AS min_ns, max(duration_ns) AS max_ns
        FROM bucketed GROUP BY parent, child, bucket ORDER BY parent, child, bucket"
    )
}

impl QueryEngine {
    /// The calls whose anchor starts in `[start_ns, end_ns)`.
    pub(crate) async fn edge_calls(
        &self,
        tenant: &TenantId,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<EdgeCalls>, QueryError> {
        let mut params = Params::default();
        let (start, end) = (params.time(start_ns), params.time(end_ns));
        let (from, until) = (params.time(start_ns - MARGIN_NS), params.time(end_ns + MARGIN_NS));
        self.rows(tenant, &calls_sql(&start, &end, &from, &until), params).await
    }
}
