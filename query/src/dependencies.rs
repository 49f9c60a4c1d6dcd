//! The service dependency graph, with Zipkin's linking rules, summed from
//! the dependency edge files storage writes (`spanlake_storage::edges`,
//! where the rules are).
//!
//! A graph over a window adds up three parts, none of which reads spans
//! from disk:
//!
//! - the merged edge files (level 1 and up) that overlap the window: whole
//!   hours from sums kept in memory (`hourly.rs`), ragged ends from the
//!   files' slots;
//! - the edge files of the flushes since the last upkeep round and the open
//!   ends still waiting, with the buffered spans' own partial: their open
//!   ends are matched on the spot, as the next upkeep round will match them.
//!
//! Memory is bounded by the number of edges, duration buckets and slots,
//! and by the open ends of about a minute of spans, whatever the size of
//! the window. The window is whole slots of 10 s: ragged ends are rounded
//! inwards, but for an end in the slot still filling, which takes it in.

pub mod hops;
mod hourly;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spanlake_storage::edges::{self, BUCKETS_PER_OCTAVE, CallStats, Partial, SLOT_NS};
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::{DataFile, FileKind, Snapshot, Storage, TenantId};
use utoipa::ToSchema;

use crate::calls::{REQUEST_BYTES, RESPONSE_BYTES};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{HOUR_NS, NANOS_PER_MILLI, Window};
use hops::HopCost;
use hourly::HourCalls;
pub(crate) use hourly::HourlyEdges;

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
    /// With `groupBy=service.version`: the caller's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<String>,
    /// With `groupBy=service.version`: the called version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_version: Option<String>,
    /// What the hop costs beyond the server's own time (`/api/v1` and the
    /// UI; absent without linked client and server spans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hop: Option<HopCost>,
}

impl DependencyGraph {
    /// The graph of these edges, its nodes the services they name.
    pub fn of(edges: Vec<Edge>) -> Self {
        let mut nodes: Vec<String> = edges.iter().flat_map(|e| [e.parent.clone(), e.child.clone()]).collect();
        nodes.sort();
        nodes.dedup();
        DependencyGraph { nodes, edges }
    }
}

/// How `/api/v1/dependencies` splits its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum DependencyGroup {
    /// One node per service and version, from the spans' parent links.
    #[serde(rename = "service.version")]
    ServiceVersion,
}

/// One edge's calls per duration bucket.
#[derive(Debug, Default)]
struct EdgeSketch {
    buckets: BTreeMap<i32, CallStats>,
}

impl EdgeSketch {
    fn add(&mut self, bucket: i32, stats: &CallStats) {
        self.buckets.entry(bucket).or_default().add(stats);
    }

    fn calls(&self) -> i64 {
        self.buckets.values().map(|b| b.calls).sum()
    }

    fn errors(&self) -> i64 {
        self.buckets.values().map(|b| b.errors).sum()
    }

    /// The duration at quantile `q`: the middle of the bucket that holds
    /// it, kept within the bucket's shortest and longest call.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let rank = ((q * self.calls() as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for (bucket, stats) in self.buckets.iter().filter(|(_, s)| s.calls > 0) {
            seen += stats.calls;
            if seen >= rank {
                let middle = 2f64.powf((*bucket as f64 + 0.5) / BUCKETS_PER_OCTAVE);
                let middle = if stats.min_ns <= stats.max_ns {
                    middle.clamp(stats.min_ns as f64, stats.max_ns as f64)
                } else {
                    middle
                };
                return Some(middle / NANOS_PER_MILLI as f64);
            }
        }
        None
    }
}

/// Calls per edge, as they are added up.
#[derive(Debug, Default)]
struct Edges(BTreeMap<(String, String), EdgeSketch>);

impl Edges {
    fn add(&mut self, parent: &str, child: &str, bucket: i32, stats: &CallStats) {
        self.0.entry((parent.to_owned(), child.to_owned())).or_default().add(bucket, stats);
    }

    fn add_partial(&mut self, partial: &Partial, start_ns: i64, end_ns: i64) {
        for (key, stats) in partial.calls_in(start_ns, end_ns) {
            self.add(&key.parent, &key.child, key.bucket, stats);
        }
    }

    fn graph(self) -> DependencyGraph {
        let edges: Vec<Edge> = self
            .0
            .into_iter()
            .filter(|(_, sketch)| sketch.calls() > 0)
            .map(|((parent, child), sketch)| Edge {
                parent,
                child,
                call_count: sketch.calls(),
                error_count: sketch.errors(),
                p50_ms: sketch.quantile_ms(0.5),
                p99_ms: sketch.quantile_ms(0.99),
                parent_version: None,
                child_version: None,
                hop: None,
            })
            .collect();
        DependencyGraph::of(edges)
    }
}

impl QueryEngine {
    pub async fn dependencies(&self, tenant: &TenantId, window: &Window) -> Result<DependencyGraph, QueryError> {
        let (storage, hours) = (Arc::clone(self.storage()), Arc::clone(self.hourly_edges()));
        let snapshot = self.snapshot(tenant, &ScanFilter::default()).await?;
        self.bounded(graph(storage, snapshot, hours, tenant.clone(), *window)).await
    }

    /// `/api/v1`'s graph: the edge files' graph with each hop's cost, or
    /// the graph split by version.
    pub async fn dependency_graph(
        &self,
        tenant: &TenantId,
        window: &Window,
        group: Option<DependencyGroup>,
    ) -> Result<DependencyGraph, QueryError> {
        let window = *window;
        if group == Some(DependencyGroup::ServiceVersion) {
            return self.analyse(tenant, |ctx| async move { hops::by_version(&ctx, &window).await }).await;
        }
        let mut graph = self.dependencies(tenant, &window).await?;
        let keys: Vec<&'static str> = REQUEST_BYTES.into_iter().chain(RESPONSE_BYTES).collect();
        let size_keys = self.tags_maybe_set(tenant, &window, &keys).await?;
        let mut costs =
            self.analyse(tenant, |ctx| async move { hops::hop_costs(&ctx, &window, size_keys).await }).await?;
        for edge in &mut graph.edges {
            edge.hop = costs.remove(&(edge.parent.clone(), edge.child.clone()));
        }
        Ok(graph)
    }
}

/// The graph of `window` (see the module comment).
async fn graph(
    storage: Arc<Storage>,
    snapshot: Snapshot,
    hours: Arc<HourlyEdges>,
    tenant: TenantId,
    window: Window,
) -> Result<DependencyGraph, QueryError> {
    let now = storage.clock().now_ns();
    let slot_after = |t: i64| t.div_euclid(SLOT_NS) * SLOT_NS + if t.rem_euclid(SLOT_NS) == 0 { 0 } else { SLOT_NS };
    let start = slot_after(window.start_ns);
    // A window that ends in the slot still filling (up to now) takes it in.
    let end =
        if window.end_ns >= edges::slot_of(now) { slot_after(window.end_ns) } else { edges::slot_of(window.end_ns) };
    let mut edges = Edges::default();
    if start >= end {
        return Ok(edges.graph());
    }
    let store = storage.object_store();

    let mut live = Partial::default();
    for file in snapshot.files(FileKind::Edges).filter(|f| f.level == 0) {
        live.absorb(edges::read(Arc::clone(&store), file).await?);
    }
    live.absorb(edges::of_spans(&snapshot.batches, now).map_err(|e| QueryError::DataFusion(e.into()))?);
    live.resolve();
    edges.add_partial(&live, start, end);

    let merged: Vec<&DataFile> = snapshot.files(FileKind::Edges).filter(|f| f.level > 0).collect();
    let overlapping = |from: i64, until: i64| -> Vec<&DataFile> {
        merged.iter().copied().filter(|f| f.min_time < until && f.max_time >= from).collect()
    };
    // Only the hours that merged files cover are walked, so that a window
    // of centuries costs what its data costs.
    let (first, last) =
        merged.iter().fold((i64::MAX, i64::MIN), |(lo, hi), f| (lo.min(f.min_time), hi.max(f.max_time)));
    let (start, end) = (start.max(first.div_euclid(HOUR_NS) * HOUR_NS), end.min(last.saturating_add(HOUR_NS)));
    let (whole, ragged) = if start < end { hourly::split(start, end) } else { Default::default() };
    for hour in whole {
        let files = overlapping(hour, hour + HOUR_NS);
        let calls = match hours.get(&tenant, hour, &files) {
            Some(calls) => calls,
            None => {
                let mut calls = HourCalls::new();
                for file in &files {
                    let partial = edges::read(Arc::clone(&store), file).await?;
                    for (key, stats) in partial.calls_in(hour, hour + HOUR_NS) {
                        calls.entry((key.parent.clone(), key.child.clone(), key.bucket)).or_default().add(stats);
                    }
                }
                let calls = Arc::new(calls);
                hours.put(&tenant, hour, &files, Arc::clone(&calls));
                calls
            }
        };
        for ((parent, child, bucket), stats) in calls.iter() {
            edges.add(parent, child, *bucket, stats);
        }
    }
    let mut read: BTreeMap<&str, Partial> = BTreeMap::new();
    for (from, until) in ragged {
        for file in overlapping(from, until) {
            if !read.contains_key(file.path.as_str()) {
                read.insert(&file.path, edges::read(Arc::clone(&store), file).await?);
            }
            edges.add_partial(&read[file.path.as_str()], from, until);
        }
    }
    Ok(edges.graph())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod sketch_tests {
    use super::*;

    fn sketch_of(durations_ns: &[i64]) -> EdgeSketch {
        let mut sketch = EdgeSketch::default();
        for &ns in durations_ns {
            sketch.add(edges::bucket_of(ns), &CallStats { calls: 1, errors: 0, min_ns: ns, max_ns: ns });
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
