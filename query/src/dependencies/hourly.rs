//! Hourly edge tables: the engine keeps, per tenant and finished hour, the
//! calls of that hour (see `calls.rs`), so a graph over days reads a few
//! small objects instead of every span.
//!
//! A table remembers the span files it was computed from (the hour's and
//! its neighbours' within the partner margin). It is used only while the
//! catalog still lists exactly those files and the buffer holds no span of
//! that stretch; otherwise it is computed again, so late spans, compaction
//! and retention can never make it stale. Tables live in memory and in the
//! object store (`{tenant}/edges/...`), written by whichever process
//! computed them first; the upkeep loop computes them for finished hours
//! ahead of queries and removes those of hours retention dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::TimestampNanosecondType;
use chrono::DateTime;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use spanlake_storage::schema::START_TIME;
use spanlake_storage::{FileKind, Snapshot, TenantId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::calls::{EdgeCalls, MARGIN_NS};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{HOUR_NS, Window};

/// One hour's calls and the files they were counted from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct HourEdges {
    pub(crate) files: Vec<String>,
    pub(crate) calls: Vec<EdgeCalls>,
}

/// The tables this process has read or computed, by tenant and hour.
#[derive(Debug, Default)]
pub(crate) struct HourlyEdges {
    hours: Mutex<HashMap<(TenantId, i64), Arc<HourEdges>>>,
    /// Per tenant, the hours with span files at the last upkeep round.
    known_hours: Mutex<HashMap<TenantId, BTreeSet<i64>>>,
}

/// A stretch of a window: a whole hour read from its table, or a range
/// computed from the spans.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Hour { start_ns: i64, files: Vec<String> },
    Range { start_ns: i64, end_ns: i64 },
}

/// What decides whether an hour's table can be used: the snapshot's span
/// files, the start times of its buffered spans, and the time.
struct Inputs<'a> {
    snapshot: &'a Snapshot,
    /// Earliest and latest start of the buffered spans.
    buffered: Option<(i64, i64)>,
    now_ns: i64,
}

impl<'a> Inputs<'a> {
    fn new(snapshot: &'a Snapshot, now_ns: i64) -> Self {
        let buffered = snapshot
            .batches
            .iter()
            .filter_map(|batch| {
                let start = batch.column_by_name(START_TIME)?.as_primitive::<TimestampNanosecondType>();
                Some((arrow::compute::min(start)?, arrow::compute::max(start)?))
            })
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        Self { snapshot, buffered, now_ns }
    }

    /// The span files the table of the hour at `hour_ns` is computed from,
    /// sorted; `None` while the hour or its margins are not finished or
    /// buffered spans fall in them.
    fn of_hour(&self, hour_ns: i64) -> Option<Vec<String>> {
        let (from, until) = (hour_ns - MARGIN_NS, hour_ns + HOUR_NS + MARGIN_NS);
        if until > self.now_ns || self.buffered.is_some_and(|(min, max)| min < until && max >= from) {
            return None;
        }
        let files: BTreeSet<String> = self
            .snapshot
            .files(FileKind::Spans)
            .filter(|f| f.min_time < until && f.max_time >= from)
            .map(|f| f.path.clone())
            .collect();
        Some(files.into_iter().collect())
    }
}

/// How to cover `window`: the whole, finished hours from tables, the rest
/// (ragged ends, the current hour) from the spans.
pub(crate) fn plan(snapshot: &Snapshot, window: &Window, now_ns: i64) -> Vec<Part> {
    let inputs = Inputs::new(snapshot, now_ns);
    let mut parts = Vec::new();
    let mut range_start = window.start_ns;
    let mut hour = window.start_ns.div_euclid(HOUR_NS) * HOUR_NS;
    if hour < window.start_ns {
        hour += HOUR_NS;
    }
    while hour + HOUR_NS <= window.end_ns {
        if let Some(files) = inputs.of_hour(hour) {
            if range_start < hour {
                parts.push(Part::Range { start_ns: range_start, end_ns: hour });
            }
            parts.push(Part::Hour { start_ns: hour, files });
            range_start = hour + HOUR_NS;
        }
        hour += HOUR_NS;
    }
    if range_start < window.end_ns {
        parts.push(Part::Range { start_ns: range_start, end_ns: window.end_ns });
    }
    parts
}

impl QueryEngine {
    /// The table of the hour at `hour_ns`, computed from `files`: from
    /// memory, else from the store, else computed and saved.
    pub(crate) async fn hour_edges(
        &self,
        tenant: &TenantId,
        hour_ns: i64,
        files: Vec<String>,
    ) -> Result<Arc<HourEdges>, QueryError> {
        let key = (tenant.clone(), hour_ns);
        let remembered = self.hourly_edges().hours.lock().expect("hourly edges").get(&key).cloned();
        if let Some(table) = remembered.filter(|t| t.files == files) {
            return Ok(table);
        }
        let store = self.storage().object_store();
        let path = tenant.edges_path(DateTime::from_timestamp_nanos(hour_ns));
        let stored = match store.get(&path).await {
            Ok(object) => object.bytes().await.ok().and_then(|bytes| serde_json::from_slice::<HourEdges>(&bytes).ok()),
            Err(_) => None,
        };
        let table = match stored.filter(|t| t.files == files) {
            Some(table) => Arc::new(table),
            None => {
                let calls = self.edge_calls(tenant, hour_ns, hour_ns + HOUR_NS).await?;
                let table = Arc::new(HourEdges { files, calls });
                let json = serde_json::to_vec(table.as_ref()).expect("edges serialize");
                // A read-only process, or a full disk, answers without saving.
                if let Err(error) = store.put(&path, PutPayload::from(json)).await {
                    warn!(%tenant, %path, %error, "could not save an hour's dependency edges");
                }
                table
            }
        };
        self.hourly_edges().hours.lock().expect("hourly edges").insert(key, Arc::clone(&table));
        Ok(table)
    }

    /// Computes the tables of finished hours that lack a current one and
    /// drops those of hours no file covers any more, for every tenant.
    pub async fn maintain_edge_tables(&self) -> Result<(), QueryError> {
        let now = self.storage().clock().now_ns();
        for tenant in self.storage().tenants() {
            let snapshot = self.storage().snapshot(&tenant);
            let inputs = Inputs::new(&snapshot, now);
            let hours: BTreeSet<i64> =
                snapshot.files(FileKind::Spans).map(|f| f.hour.saturating_mul(1_000_000_000)).collect();
            for &hour in &hours {
                if let Some(files) = inputs.of_hour(hour) {
                    self.hour_edges(&tenant, hour, files).await?;
                }
            }
            self.hourly_edges()
                .hours
                .lock()
                .expect("hourly edges")
                .retain(|(t, h), _| t != &tenant || hours.contains(h));
            // Tables can only be orphaned when hours go (retention), or by
            // another process or an earlier run: list the store on the first
            // round and when an hour has gone, not every round.
            let previous =
                self.hourly_edges().known_hours.lock().expect("hourly edges").insert(tenant.clone(), hours.clone());
            if previous.is_some_and(|previous| previous.is_subset(&hours)) {
                continue;
            }
            let store = self.storage().object_store();
            let stored: Vec<_> =
                store.list(Some(&tenant.edges_prefix())).try_collect().await.map_err(object_store_error)?;
            for object in stored {
                let Some(hour) = TenantId::edges_hour(&object.location) else { continue };
                let hour_ns = hour.timestamp_nanos_opt().unwrap_or_default();
                if !hours.contains(&hour_ns) {
                    debug!(%tenant, path = %object.location, "removing the edges of an hour without spans");
                    store.delete(&object.location).await.map_err(object_store_error)?;
                }
            }
        }
        Ok(())
    }

    /// Runs [`Self::maintain_edge_tables`] every `interval` until `stop`.
    pub async fn run_edge_tables(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.maintain_edge_tables().await {
                warn!(%error, "could not bring the hourly dependency edges up to date; retrying next interval");
            }
        }
    }
}

fn object_store_error(e: object_store::Error) -> QueryError {
    QueryError::DataFusion(e.into())
}
