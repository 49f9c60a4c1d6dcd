//! Newest-first search that stops as soon as its page is decided.
//!
//! A trace's place is its start: the earliest start of its fragments. A
//! trace matches through one of its spans in the window, and starts no
//! later than that span. So the window is walked in slices from its newest
//! data back, each twice as wide as the one before:
//!
//! ```text
//!  window.start                          lo          hi   window.end
//!      |..... not walked yet ..........|== slice ==|== walked ==|
//!   every trace matched only here starts before lo
//! ```
//!
//! Each slice yields the traces with a matching span in it and, for each,
//! an upper bound on its start (its earliest matching span). Summaries
//! (the exact start) are read for the candidates with the highest bounds,
//! a few dozen at a time, until no candidate left can pass the page's
//! last trace. The page is decided once it is full and its last trace
//! starts at or after `lo`: every trace not seen yet starts before `lo`.
//! Slices are sized from the catalog's row counts, so the first one holds
//! about [`FIRST_SLICE_SPANS`] spans whatever the rate.

use std::collections::HashMap;

use spanlake_storage::batch::start_time_range;
use spanlake_storage::ids::TraceId;
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::{FileKind, Snapshot, TenantId};

use super::summary::Summary;
use super::{After, SUMMARY_MARGIN_NS};
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{SpanFilter, Window};

/// Spans the first slice holds, by the catalog's count. Tests walk many
/// small slices over their few spans.
const FIRST_SLICE_SPANS: f64 = if cfg!(test) { 16.0 } else { 256.0 * 1024.0 };

/// Where a window's spans are, by the catalog and the buffer.
struct Spread {
    /// The newest span start in the window.
    newest_ns: i64,
    /// The oldest span start in the window.
    oldest_ns: i64,
    /// About how many spans start in the window.
    spans: f64,
}

impl Spread {
    fn of(snapshot: &Snapshot, window: &Window) -> Option<Self> {
        let mut spread: Option<Self> = None;
        let mut add = |min: i64, max: i64, rows: f64| {
            let (lo, hi) = (min.max(window.start_ns), max.min(window.end_ns - 1));
            if lo > hi {
                return;
            }
            // Rows spread evenly over the file's time range.
            let share = if max > min { (hi - lo) as f64 / (max - min) as f64 } else { 1.0 };
            let s = spread.get_or_insert(Self { newest_ns: hi, oldest_ns: lo, spans: 0.0 });
            s.newest_ns = s.newest_ns.max(hi);
            s.oldest_ns = s.oldest_ns.min(lo);
            s.spans += rows * share;
        };
        for file in snapshot.files(FileKind::Spans) {
            add(file.min_time, file.max_time, file.rows as f64);
        }
        for batch in &snapshot.batches {
            if let Some((min, max)) = start_time_range(batch) {
                add(min, max, batch.num_rows() as f64);
            }
        }
        spread
    }

    /// The width of a slice that holds about `spans` of the newest spans.
    fn width_for(&self, spans: f64) -> i64 {
        let covered = (self.newest_ns - self.oldest_ns + 1) as f64;
        ((covered * (spans / self.spans.max(1.0)).min(1.0)) as i64).max(1)
    }
}

/// Candidates in summary order: start descending, then trace id descending.
fn best<'a>(known: &'a HashMap<TraceId, Summary>, after: Option<&After>, n: usize) -> Vec<&'a Summary> {
    let mut page: Vec<&Summary> =
        known.values().filter(|s| after.is_none_or(|a| (s.start_ns, s.trace_id) < (a.key, a.trace_id))).collect();
    page.sort_unstable_by_key(|s| std::cmp::Reverse((s.start_ns, s.trace_id)));
    page.truncate(n);
    page
}

impl QueryEngine {
    /// The newest `limit + 1` traces that `filter` matches in `window`,
    /// after the cursor's position, with their summaries.
    pub(super) async fn newest_first(
        &self,
        tenant: &TenantId,
        filter: &SpanFilter,
        window: Window,
        after: Option<&After>,
        limit: usize,
    ) -> Result<Vec<Summary>, QueryError> {
        let snapshot = self.snapshot(tenant, &ScanFilter::default()).await?;
        let Some(spread) = Spread::of(&snapshot, &window) else { return Ok(Vec::new()) };
        let fragments =
            (window.start_ns.saturating_sub(SUMMARY_MARGIN_NS), window.end_ns.saturating_add(SUMMARY_MARGIN_NS));
        let lookups = 2 * (limit + 1);
        let mut width = spread.width_for(FIRST_SLICE_SPANS);
        let mut hi = spread.newest_ns.saturating_add(1).min(window.end_ns);
        // Candidates whose summary is not read yet, with their bound.
        let mut bounds: HashMap<TraceId, i64> = HashMap::new();
        let mut known: HashMap<TraceId, Summary> = HashMap::new();
        let matching = self.matching(tenant, filter, &window).await?;
        loop {
            let lo = hi.saturating_sub(width).max(window.start_ns);
            let slice = Window { start_ns: lo, end_ns: hi };
            for (id, bound) in self.matched(tenant, &matching, &window, slice).await? {
                if !known.contains_key(&id) {
                    bounds.entry(id).and_modify(|b| *b = (*b).min(bound)).or_insert(bound);
                }
            }
            loop {
                let page = best(&known, after, limit + 1);
                let bar = (page.len() > limit).then(|| page[limit].start_ns);
                let mut pending: Vec<(i64, TraceId)> =
                    bounds.iter().filter(|(_, b)| bar.is_none_or(|bar| **b >= bar)).map(|(id, b)| (*b, *id)).collect();
                if pending.is_empty() {
                    break;
                }
                pending.sort_unstable_by(|a, b| b.cmp(a));
                pending.truncate(lookups);
                let ids: Vec<TraceId> = pending.into_iter().map(|(_, id)| id).collect();
                for id in &ids {
                    bounds.remove(id);
                }
                for summary in self.summaries(tenant, &ids, fragments).await? {
                    known.insert(summary.trace_id, summary);
                }
            }
            let page = best(&known, after, limit + 1);
            if lo <= window.start_ns || (page.len() > limit && page[limit].start_ns >= lo) {
                return Ok(page.into_iter().cloned().collect());
            }
            hi = lo;
            width = width.saturating_mul(2);
        }
    }
}
