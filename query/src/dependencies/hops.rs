//! What the edge files do not hold, read from the calls' parent links
//! (`crate::calls`): the cost of each hop (the client's time less the
//! server's: the network, queues and serialization the server never sees,
//! and the message sizes spans carry), and the graph split by version.
//! Quantiles come from buckets of 1/16 of a doubling, signed (a client
//! clock behind the server's makes gaps negative), so that any two nodes
//! that add the same calls answer the same numbers.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use spanlake_storage::edges::BUCKETS_PER_OCTAVE;
use utoipa::ToSchema;

use super::{DependencyGraph, Edge};
use crate::calls::CallFilter;
use crate::engine::session_rows;
use crate::error::QueryError;
use crate::params::{NANOS_PER_MILLI, Params, Window};

/// The cost of one hop, from the calls whose client and server spans both
/// reached spanlake (CLIENT → SERVER only: a queue's wait is no hop cost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HopCost {
    /// Calls with both halves.
    pub linked_calls: i64,
    /// Client duration less server duration, median, within 2.2%.
    pub gap_p50_ms: Option<f64>,
    pub gap_p99_ms: Option<f64>,
    /// Mean message sizes, over the calls whose spans carry them
    /// (`http.request.body.size`, `messaging.message.body.size`;
    /// `http.response.body.size`; else gRPC's `message` events'
    /// `rpc.message.uncompressed_size`, sent and received).
    pub request_bytes: Option<f64>,
    pub response_bytes: Option<f64>,
}

/// Signed log buckets of a quantity, exact to merge.
#[derive(Debug, Default)]
struct SignedBuckets(BTreeMap<(i8, i64), i64>);

impl SignedBuckets {
    fn add(&mut self, sign: i8, bucket: i64, count: i64) {
        *self.0.entry((sign, if sign < 0 { -bucket } else { bucket })).or_default() += count;
    }

    /// The value at quantile `q`: the middle of its bucket.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total: i64 = self.0.values().sum();
        let rank = ((q * total as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for (&(sign, key), &count) in &self.0 {
            seen += count;
            if seen >= rank {
                let bucket = if sign < 0 { -key } else { key };
                let middle = 2f64.powf((bucket as f64 + 0.5) / BUCKETS_PER_OCTAVE);
                return Some(f64::from(sign) * middle);
            }
        }
        None
    }
}

/// `sign` and `bucket` columns of a quantity in SQL.
fn signed_bucket_sql(value: &str) -> String {
    format!(
        "CAST(signum({value}) AS TINYINT) AS sign,
         CAST(floor(log2(CAST(greatest(abs({value}), 1) AS DOUBLE)) * {BUCKETS_PER_OCTAVE}) AS BIGINT) AS bucket"
    )
}

#[derive(Debug, Deserialize)]
struct HopRow {
    client: Option<String>,
    server: Option<String>,
    sign: i8,
    bucket: i64,
    calls: i64,
    request_sum: Option<i64>,
    request_count: i64,
    response_sum: Option<i64>,
    response_count: i64,
}

#[derive(Debug, Default)]
struct HopSums {
    gaps: SignedBuckets,
    calls: i64,
    request: (i64, i64),
    response: (i64, i64),
}

/// Every edge's hop cost in `window`, its sizes from `size_keys` (see
/// [`CallFilter::sizes`]).
pub(crate) async fn hop_costs(
    ctx: &SessionContext,
    window: &Window,
    size_keys: Vec<&'static str>,
) -> Result<BTreeMap<(String, String), HopCost>, QueryError> {
    let mut params = Params::default();
    let filter = CallFilter { client_kind: Some("CLIENT"), sizes: Some(size_keys), ..CallFilter::default() };
    let calls = filter.cte(window, &mut params);
    let sql = format!(
        "WITH {calls}, g AS (SELECT *, {} FROM calls)
         SELECT client_service AS client, server_service AS server, sign, bucket, count(*) AS calls,
                sum(request_bytes) AS request_sum, count(request_bytes) AS request_count,
                sum(response_bytes) AS response_sum, count(response_bytes) AS response_count
         FROM g GROUP BY 1, 2, 3, 4",
        signed_bucket_sql("client_ns - server_ns")
    );
    let rows: Vec<HopRow> = session_rows(ctx, &sql, params).await?;
    let mut sums: BTreeMap<(String, String), HopSums> = BTreeMap::new();
    for row in rows {
        let sum = sums.entry((row.client.unwrap_or_default(), row.server.unwrap_or_default())).or_default();
        sum.gaps.add(row.sign, row.bucket, row.calls);
        sum.calls += row.calls;
        sum.request.0 += row.request_sum.unwrap_or(0);
        sum.request.1 += row.request_count;
        sum.response.0 += row.response_sum.unwrap_or(0);
        sum.response.1 += row.response_count;
    }
    let ms = |ns: Option<f64>| ns.map(|ns| ns / NANOS_PER_MILLI as f64);
    let mean = |(sum, count): (i64, i64)| (count > 0).then(|| sum as f64 / count as f64);
    Ok(sums
        .into_iter()
        .map(|(edge, s)| {
            let cost = HopCost {
                linked_calls: s.calls,
                gap_p50_ms: ms(s.gaps.quantile(0.5)),
                gap_p99_ms: ms(s.gaps.quantile(0.99)),
                request_bytes: mean(s.request),
                response_bytes: mean(s.response),
            };
            (edge, cost)
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct VersionEdgeRow {
    client: Option<String>,
    client_version: Option<String>,
    server: Option<String>,
    server_version: Option<String>,
    sign: i8,
    bucket: i64,
    calls: i64,
    errors: i64,
}

/// The graph of `window` with one node per service and version, from the
/// calls' parent links; a call lasts as long as its client span.
pub(crate) async fn by_version(ctx: &SessionContext, window: &Window) -> Result<DependencyGraph, QueryError> {
    let mut params = Params::default();
    let calls = CallFilter::default().cte(window, &mut params);
    let sql = format!(
        "WITH {calls}, g AS (SELECT *, {} FROM calls)
         SELECT client_service AS client, client_version, server_service AS server, server_version, sign, bucket,
                count(*) AS calls, sum(CASE WHEN client_error OR server_error THEN 1 ELSE 0 END) AS errors
         FROM g GROUP BY 1, 2, 3, 4, 5, 6",
        signed_bucket_sql("client_ns")
    );
    let rows: Vec<VersionEdgeRow> = session_rows(ctx, &sql, params).await?;
    type Key = (String, Option<String>, String, Option<String>);
    let mut edges: BTreeMap<Key, (SignedBuckets, i64, i64)> = BTreeMap::new();
    for row in rows {
        let key =
            (row.client.unwrap_or_default(), row.client_version, row.server.unwrap_or_default(), row.server_version);
        let edge = edges.entry(key).or_default();
        edge.0.add(row.sign, row.bucket, row.calls);
        edge.1 += row.calls;
        edge.2 += row.errors;
    }
    let ms = |ns: Option<f64>| ns.map(|ns| ns / NANOS_PER_MILLI as f64);
    let edges: Vec<Edge> = edges
        .into_iter()
        .map(|((parent, parent_version, child, child_version), (durations, calls, errors))| Edge {
            parent,
            child,
            call_count: calls,
            error_count: errors,
            p50_ms: ms(durations.quantile(0.5)),
            p99_ms: ms(durations.quantile(0.99)),
            parent_version,
            child_version,
            hop: None,
        })
        .collect();
    Ok(DependencyGraph::of(edges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_quantiles_cross_zero_in_order() {
        let mut buckets = SignedBuckets::default();
        let bucket = |ns: f64| (ns.log2() * BUCKETS_PER_OCTAVE).floor() as i64;
        buckets.add(-1, bucket(4e6), 1); // −4 ms
        buckets.add(1, bucket(1e6), 1); // 1 ms
        buckets.add(1, bucket(5e6), 2); // 5 ms
        let (low, middle) = (buckets.quantile(0.01).unwrap(), buckets.quantile(0.5).unwrap());
        assert!((low / -4e6 - 1.0).abs() < 0.022, "{low}");
        assert!((middle / 1e6 - 1.0).abs() < 0.022, "{middle}");
        assert!((buckets.quantile(0.99).unwrap() / 5e6 - 1.0).abs() < 0.022);
        assert_eq!(SignedBuckets::default().quantile(0.5), None);
    }
}
