//! Latency views: per-step request rate, error rate and duration
//! percentiles, and a log-bucketed duration histogram, for a service or an
//! operation, optionally one series per value of a resource column (so a
//! canary's `service.version` can be held against the one it replaces).

use std::collections::BTreeMap;

use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::schema::{DURATION_NS, SPAN_KIND, SPAN_NAME, START_TIME, STATUS_CODE};
use utoipa::ToSchema;

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{NANOS_PER_MILLI, Params, SpanFilter, Window};
use crate::versions::ENTRY_KINDS;

/// Most steps a series may have.
pub const MAX_STEPS: i64 = 2000;
/// Steps in a series when the request names no step.
const DEFAULT_STEPS: i64 = 60;
/// Histogram buckets per doubling of the duration.
const BUCKETS_PER_OCTAVE: f64 = 4.0;

#[derive(Debug, Clone)]
pub struct LatencyRequest {
    /// Which spans; without a span kind, entry spans (SERVER and CONSUMER)
    /// unless an operation is named.
    pub filter: SpanFilter,
    pub window: Window,
    pub step_ns: Option<i64>,
    /// A dedicated resource column: one series per value.
    pub group_by: Option<&'static str>,
}

impl LatencyRequest {
    /// The step asked for, widened when the window would hold more than
    /// [`MAX_STEPS`] of it and narrowed to the window when longer; the
    /// answer states the step it used.
    fn step_ns(&self) -> i64 {
        let window = self.window.duration_ns();
        match self.step_ns {
            Some(step) if step > 0 => step.min(window).max(window / MAX_STEPS + 1),
            _ => (window / DEFAULT_STEPS).max(1_000_000_000),
        }
    }

    /// The condition, and the group expression.
    fn sql(&self, params: &mut Params) -> (String, String) {
        let mut condition = self.filter.where_sql(&self.window, params);
        if self.filter.span_kind.is_none() && self.filter.operation.is_none() {
            condition.push_str(&format!(" AND {SPAN_KIND} IN {ENTRY_KINDS}"));
        }
        let group = match self.group_by {
            Some(column) => format!("CAST({column} AS VARCHAR)"),
            None => "CAST(NULL AS VARCHAR)".to_owned(),
        };
        (condition, group)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencySeries {
    pub step_ns: i64,
    pub series: Vec<Series>,
}

/// One series: all spans, or those of one `groupBy` value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    /// The `groupBy` value (absent without `groupBy`, or for spans without one).
    pub group: Option<String>,
    pub points: Vec<Point>,
}

/// One step; steps without spans have zero requests and no percentiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Deserialize)]
struct StepRow {
    t: i64,
    g: Option<String>,
    requests: i64,
    errors: i64,
    p50: Option<f64>,
    p90: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    pub series: Vec<HistogramSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistogramSeries {
    pub group: Option<String>,
    /// Non-empty buckets, shortest first; each `[lowerNs, upperNs)`.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub lower_ns: i64,
    pub upper_ns: i64,
    pub count: i64,
}

/// One operation's calls in a window, for a service's operations table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStats {
    pub name: String,
    pub span_kind: String,
    pub calls: i64,
    pub errors: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct BucketRow {
    g: Option<String>,
    b: i64,
    count: i64,
}

/// The lower bound of bucket `b`, ns.
pub(crate) fn bucket_bound(b: i64) -> i64 {
    2f64.powf(b as f64 / BUCKETS_PER_OCTAVE).round() as i64
}

/// The `p` quantile of the nanoseconds in `column`, in milliseconds (t-digest).
pub(crate) fn percentile_ms_sql(p: f64, column: &str) -> String {
    format!("approx_percentile_cont({p}) WITHIN GROUP (ORDER BY {column}) / {NANOS_PER_MILLI}.0")
}

/// The histogram bucket of a span's duration: a quarter of a doubling wide.
pub(crate) fn bucket_sql() -> String {
    format!("CAST(floor(log2(CAST(greatest({DURATION_NS}, 1) AS DOUBLE)) * {BUCKETS_PER_OCTAVE}) AS BIGINT)")
}

impl QueryEngine {
    pub async fn latency(&self, tenant: &TenantId, request: &LatencyRequest) -> Result<LatencySeries, QueryError> {
        let step_ns = request.step_ns();
        let mut params = Params::default();
        let (condition, group) = request.sql(&mut params);
        let step = params.add(ScalarValue::new_interval_mdn(0, 0, step_ns));
        let origin = params.time(request.window.start_ns);
        let percentile =
            |p: f64| format!("approx_percentile_cont({p}) WITHIN GROUP (ORDER BY {DURATION_NS}) AS p{}", p * 100.0);
        let sql = format!(
            "SELECT CAST(date_bin({step}, {START_TIME}, {origin}) AS BIGINT) AS t, {group} AS g,
                    count(*) AS requests, sum(CASE WHEN {STATUS_CODE} = 'ERROR' THEN 1 ELSE 0 END) AS errors,
                    {}, {}, {}, {}
             FROM {SPANS_TABLE} WHERE {condition}
             GROUP BY 1, 2 ORDER BY 2, 1",
            percentile(0.5),
            percentile(0.9),
            percentile(0.95),
            percentile(0.99)
        );
        let rows: Vec<StepRow> = self.rows(tenant, &sql, params).await?;
        let mut groups: BTreeMap<Option<String>, BTreeMap<i64, StepRow>> = BTreeMap::new();
        for row in rows {
            groups.entry(row.g.clone()).or_default().insert(row.t, row);
        }
        let window = request.window.duration_ns();
        let steps = window / step_ns + i64::from(window % step_ns != 0);
        let ms = |ns: Option<f64>| ns.map(|ns| ns / NANOS_PER_MILLI as f64);
        let series = groups
            .into_iter()
            .map(|(group, mut rows)| Series {
                group,
                points: (0..steps)
                    .map(|i| {
                        let t = request.window.start_ns + i * step_ns;
                        let row = rows.remove(&t);
                        let row = row.as_ref();
                        let requests = row.map_or(0, |r| r.requests);
                        let errors = row.map_or(0, |r| r.errors);
                        Point {
                            time_unix_nano: t,
                            requests,
                            errors,
                            requests_per_second: requests as f64 * 1e9 / step_ns as f64,
                            error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
                            p50_ms: ms(row.and_then(|r| r.p50)),
                            p90_ms: ms(row.and_then(|r| r.p90)),
                            p95_ms: ms(row.and_then(|r| r.p95)),
                            p99_ms: ms(row.and_then(|r| r.p99)),
                        }
                    })
                    .collect(),
            })
            .collect();
        Ok(LatencySeries { step_ns, series })
    }

    /// Calls, errors and p50/p99 per operation of `service` in `window`, busiest first.
    pub async fn operation_stats(
        &self,
        tenant: &TenantId,
        service: &str,
        window: &Window,
    ) -> Result<Vec<OperationStats>, QueryError> {
        let mut params = Params::default();
        let filter = SpanFilter { service: Some(service.to_owned()), ..SpanFilter::default() };
        let condition = filter.where_sql(window, &mut params);
        let ms = |p: f64| percentile_ms_sql(p, DURATION_NS);
        let sql = format!(
            "SELECT CAST({SPAN_NAME} AS VARCHAR) AS name, CAST({SPAN_KIND} AS VARCHAR) AS span_kind, count(*) AS calls,
                    sum(CASE WHEN {STATUS_CODE} = 'ERROR' THEN 1 ELSE 0 END) AS errors,
                    {} AS p50_ms, {} AS p99_ms
             FROM {SPANS_TABLE} WHERE {condition}
             GROUP BY 1, 2 ORDER BY calls DESC, name LIMIT 1000",
            ms(0.5),
            ms(0.99)
        );
        self.rows(tenant, &sql, params).await
    }

    /// Durations counted in buckets a quarter of a doubling wide.
    pub async fn latency_histogram(
        &self,
        tenant: &TenantId,
        request: &LatencyRequest,
    ) -> Result<Histogram, QueryError> {
        let mut params = Params::default();
        let (condition, group) = request.sql(&mut params);
        let sql = format!(
            "SELECT {group} AS g, {} AS b, count(*) AS count
             FROM {SPANS_TABLE} WHERE {condition}
             GROUP BY 1, 2 ORDER BY 1, 2",
            bucket_sql()
        );
        let rows: Vec<BucketRow> = self.rows(tenant, &sql, params).await?;
        let mut series: Vec<HistogramSeries> = Vec::new();
        for row in rows {
            if series.last().is_none_or(|s| s.group != row.g) {
                series.push(HistogramSeries { group: row.g.clone(), buckets: Vec::new() });
            }
            let bucket = Bucket { lower_ns: bucket_bound(row.b), upper_ns: bucket_bound(row.b + 1), count: row.count };
            series.last_mut().expect("pushed above").buckets.push(bucket);
        }
        Ok(Histogram { series })
    }
}
