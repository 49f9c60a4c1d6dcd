//! The service dependency graph, with Zipkin's linker semantics.
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
//!
//! Calls are counted per edge and log-sized duration bucket (`calls.rs`),
//! which adds up across ranges: whole finished hours come from hourly edge
//! tables (`hourly.rs`), the rest from the spans.

mod calls;
mod hourly;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use utoipa::ToSchema;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{NANOS_PER_MILLI, Window};
use calls::{BUCKETS_PER_OCTAVE, EdgeCalls};
pub(crate) use hourly::HourlyEdges;
use hourly::Part;

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
    /// Median call duration, within 2.2% (exact when the calls that
    /// decide it took the same time).
    pub p50_ms: Option<f64>,
    /// 99th percentile call duration, within 2.2%.
    pub p99_ms: Option<f64>,
}

/// One edge's calls per duration bucket: calls, errors, shortest, longest.
#[derive(Debug, Default)]
struct EdgeSketch {
    calls: i64,
    errors: i64,
    buckets: BTreeMap<i32, (i64, i64, i64)>,
}

impl EdgeSketch {
    fn add(&mut self, c: &EdgeCalls) {
        self.calls += c.calls;
        self.errors += c.errors;
        let (calls, min, max) = self.buckets.entry(c.bucket).or_insert((0, i64::MAX, i64::MIN));
        *calls += c.calls;
        *min = (*min).min(c.min_ns);
        *max = (*max).max(c.max_ns);
    }

    /// The duration at quantile `q`: the middle of the bucket that holds
    /// it, kept within the bucket's shortest and longest call.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let rank = ((q * self.calls as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for (bucket, (calls, min, max)) in &self.buckets {
            seen += calls;
            if seen >= rank {
                let middle = 2f64.powf((*bucket as f64 + 0.5) / BUCKETS_PER_OCTAVE);
                return Some(middle.clamp(*min as f64, *max as f64) / NANOS_PER_MILLI as f64);
            }
        }
        None
    }
}

impl QueryEngine {
    pub async fn dependencies(&self, tenant: &TenantId, window: &Window) -> Result<DependencyGraph, QueryError> {
        let snapshot = self.storage().snapshot(tenant);
        let mut edges: BTreeMap<(String, String), EdgeSketch> = BTreeMap::new();
        let mut add = |calls: &[EdgeCalls]| {
            for c in calls {
                edges.entry((c.parent.clone(), c.child.clone())).or_default().add(c);
            }
        };
        for part in hourly::plan(&snapshot, window, self.storage().clock().now_ns()) {
            match part {
                Part::Hour { start_ns, files } => add(&self.hour_edges(tenant, start_ns, files).await?.calls),
                Part::Range { start_ns, end_ns } => add(&self.edge_calls(tenant, start_ns, end_ns).await?),
            }
        }
        let mut nodes: Vec<String> = edges.keys().flat_map(|(p, c)| [p.clone(), c.clone()]).collect();
        nodes.sort();
        nodes.dedup();
        let edges = edges
            .into_iter()
            .map(|((parent, child), sketch)| Edge {
                parent,
                child,
                call_count: sketch.calls,
                error_count: sketch.errors,
                p50_ms: sketch.quantile_ms(0.5),
                p99_ms: sketch.quantile_ms(0.99),
            })
            .collect();
        Ok(DependencyGraph { nodes, edges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(durations_ns: &[i64]) -> EdgeSketch {
        let mut sketch = EdgeSketch::default();
        for &ns in durations_ns {
            let bucket = ((ns as f64).log2() * BUCKETS_PER_OCTAVE).floor() as i32;
            let c = EdgeCalls {
                parent: "a".into(),
                child: "b".into(),
                bucket,
                calls: 1,
                errors: 0,
                min_ns: ns,
                max_ns: ns,
            };
            sketch.add(&c);
        }
        sketch
    }

    #[test]
    fn quantiles_from_buckets_are_within_their_width() {
        // 1..=1000 ms: the median is 500 ms, the 99th percentile 990 ms.
        let sketch = sketch_of(&(1..=1000).map(|ms| ms * NANOS_PER_MILLI).collect::<Vec<_>>());
        let (p50, p99) = (sketch.quantile_ms(0.5).unwrap(), sketch.quantile_ms(0.99).unwrap());
        assert!((p50 / 500.0 - 1.0).abs() < 0.022, "{p50}");
        assert!((p99 / 990.0 - 1.0).abs() < 0.022, "{p99}");
        // Equal calls give their exact duration; no calls, none.
        assert_eq!(sketch_of(&[7_300_000; 3]).quantile_ms(0.99), Some(7.3));
        assert_eq!(EdgeSketch::default().quantile_ms(0.5), None);
    }
}
