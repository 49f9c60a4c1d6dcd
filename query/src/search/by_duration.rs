//! Search sorted by trace duration.
//!
//! Ranking a window's traces by duration takes every fragment of the
//! window grouped by trace, whatever the page. Hours that upkeep has
//! ranked already (`spanlake_storage::trace_durations`: every trace of a
//! finished hour with its whole duration, in sorted runs) are not grouped
//! again: their rankings are merged from the head, and each trace met is
//! checked against the filter, until the page is decided. The rest of the
//! window (the hours being written, hours whose ranking is stale) is
//! grouped as before, and the two merge:
//!
//! ```text
//!  window:   |-- ranked hours: walk the head, check the filter --|-- the rest: group its fragments --|
//!                                      └────────── merge, first limit + 1 ──────────┘
//! ```
//!
//! The walk stops at the first trace that cannot beat the page's last one:
//! rankings are in order, so no later trace can. Each trace's extent (its
//! spans all start between its start and its end) decides most traces
//! without a query: one that ends before the window or starts after it
//! holds no span in it; with no filter, one that starts in the window
//! matches. The rest are checked against the filter in batches of ids
//! (the Parquet bloom filters prune for literal lists), sized to what the
//! page still needs, since a check costs per id. A filter that few of the
//! longest traces pass makes the walk read the ids of every matching
//! trace after a few checks and go on against those in memory; when they
//! are too many for that, the window's matching traces are grouped.

use std::collections::{HashMap, HashSet};

use tracing::debug;

use spanlake_storage::ids::TraceId;
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::trace_durations::{self, Ranked, Ranking};
use spanlake_storage::{DataFile, TenantId};

use super::matching::Matching;
use super::summary::{Columns, Summary, trace_ids};
use super::{After, SUMMARY_MARGIN_NS, SearchOrder};
use crate::engine::{QueryEngine, SPANS_TABLE, TRACE_FRAGMENTS_TABLE};
use crate::error::QueryError;
use crate::params::{HOUR_NS, NANOS_PER_SECOND, Params, SpanFilter, Window};

/// Trace ids checked against the filter per query. Tests check a few at
/// a time, so that walks of their few traces take many checks and some
/// give up.
const CHECK_IDS: usize = if cfg!(test) { 4 } else { 256 };

/// Checks a walk makes at most. A check costs about 2 ms per id at 100M
/// spans (bloom filters and row groups per id), so a filter that few of
/// the longest traces pass would make the walk cost more than reading
/// the ids of every matching trace once, which it does past this.
const MAX_CHECKS: usize = 3;

/// Matching traces held in memory at most for a walk (about 40 MB):
/// beyond, the window's matching traces are grouped instead.
const MAX_MEMBERS: usize = if cfg!(test) { 40 } else { 1_000_000 };

/// Traces taken from the ranking at a time once the matching ones are
/// known.
const MEMBER_BATCH: usize = 4096;

/// A trace's place in a duration order, and its id.
type Key = (i64, TraceId);

/// The start of a file's hour, ns.
fn hour_ns(file: &DataFile) -> i64 {
    file.hour.saturating_mul(NANOS_PER_SECOND)
}

/// The parts of `window` that no ranked hour covers, oldest first.
fn unranked(window: &Window, ranked: &[&DataFile]) -> Vec<Window> {
    let mut hours: Vec<i64> = ranked.iter().map(|f| hour_ns(f)).collect();
    hours.sort_unstable();
    let mut slices = Vec::new();
    let mut from = window.start_ns;
    for hour in hours {
        if hour > from {
            slices.push(Window { start_ns: from, end_ns: hour.min(window.end_ns) });
        }
        from = from.max(hour.saturating_add(HOUR_NS));
    }
    if from < window.end_ns {
        slices.push(Window { start_ns: from, end_ns: window.end_ns });
    }
    slices
}

/// The best `limit + 1` traces found so far, in order.
struct Page {
    keys: Vec<Key>,
    limit: usize,
    longest_first: bool,
}

impl Page {
    fn before(&self, a: &Key, b: &Key) -> bool {
        if self.longest_first { a > b } else { a < b }
    }

    fn holds(&self, id: &TraceId) -> bool {
        self.keys.iter().any(|(_, held)| held == id)
    }

    fn add(&mut self, key: Key) {
        if self.holds(&key.1) {
            return;
        }
        let at = self.keys.partition_point(|k| self.before(k, &key));
        self.keys.insert(at, key);
        self.keys.truncate(self.limit + 1);
    }

    /// Whether every trace from `key` on is out of the page.
    fn closed_at(&self, key: &Key) -> bool {
        self.keys.len() > self.limit && !self.before(key, &self.keys[self.limit])
    }
}

impl QueryEngine {
    /// The `limit + 1` traces after `after` in a duration order, with their
    /// summaries.
    pub(super) async fn by_duration(
        &self,
        tenant: &TenantId,
        filter: &SpanFilter,
        window: Window,
        order: SearchOrder,
        after: Option<&After>,
        limit: usize,
    ) -> Result<Vec<Summary>, QueryError> {
        let snapshot = self.snapshot(tenant, &ScanFilter::default()).await?;
        let ranked: Vec<&DataFile> = trace_durations::current(&snapshot)
            .into_iter()
            .filter(|f| hour_ns(f) < window.end_ns && hour_ns(f).saturating_add(HOUR_NS) > window.start_ns)
            .collect();
        let longest_first = order == SearchOrder::DurationDesc;
        let mut page = Page { keys: Vec::new(), limit, longest_first };
        let matching = self.matching(tenant, filter, &window).await?;
        for slice in unranked(&window, &ranked) {
            for key in self.grouped(tenant, &matching, &window, slice, after, &page).await? {
                page.add(key);
            }
        }
        if !ranked.is_empty() {
            let from = after.map(|a| (a.key, a.trace_id.0));
            let ranking = Ranking::open(self.storage().object_store(), &ranked, longest_first, from).await?;
            let free = *filter == SpanFilter::default();
            if !self.walk(tenant, &matching, free, &window, ranking, &mut page).await? {
                page.keys = self.grouped(tenant, &matching, &window, window, after, &page).await?;
            }
        }
        let ids: Vec<TraceId> = page.keys.iter().map(|(_, id)| *id).collect();
        let margin =
            (window.start_ns.saturating_sub(SUMMARY_MARGIN_NS), window.end_ns.saturating_add(SUMMARY_MARGIN_NS));
        let mut summaries: HashMap<TraceId, Summary> =
            self.summaries(tenant, &ids, margin).await?.into_iter().map(|s| (s.trace_id, s)).collect();
        Ok(ids.iter().filter_map(|id| summaries.remove(id)).collect())
    }

    /// Walks ranked hours into `page` until nothing left can enter it;
    /// `false` if that takes more than [`MAX_CHECKS`] checks.
    async fn walk(
        &self,
        tenant: &TenantId,
        matching: &Matching<'_>,
        free: bool,
        window: &Window,
        mut ranking: Ranking,
        page: &mut Page,
    ) -> Result<bool, QueryError> {
        // Traces known not to match: a check covers the whole window, so
        // they fail it from any hour.
        let mut rejected: HashSet<TraceId> = HashSet::new();
        // Every matching trace, once checks prove too slow.
        let mut members: Option<HashSet<TraceId>> = None;
        let mut checks = 0;
        loop {
            checks += 1;
            // Twice what the page still needs, doubling with each check.
            let needed = (page.limit + 1).saturating_sub(page.keys.len()).max(1);
            let size = if members.is_some() {
                MEMBER_BATCH
            } else {
                needed.saturating_mul(1 << checks.min(16)).min(CHECK_IDS)
            };
            let mut batch: Vec<Ranked> = Vec::new();
            let mut done = true;
            while let Some(next) = ranking.next().await? {
                let key = (next.duration_ns, TraceId(next.trace_id));
                if page.closed_at(&key) {
                    break;
                }
                if page.holds(&key.1) || rejected.contains(&key.1) {
                    continue;
                }
                // Every span of the trace starts between its start and end.
                let end = next.start_ns.saturating_add(next.duration_ns);
                if next.start_ns >= window.end_ns || end < window.start_ns {
                    rejected.insert(key.1);
                    continue;
                }
                if free && next.start_ns >= window.start_ns {
                    page.add(key);
                    continue;
                }
                batch.push(next);
                if batch.len() == size {
                    done = false;
                    break;
                }
            }
            let ids: Vec<TraceId> = batch.iter().map(|r| TraceId(r.trace_id)).collect();
            let matched = match &members {
                Some(members) => ids.iter().filter(|id| members.contains(id)).copied().collect(),
                None => self.matching_traces(tenant, matching, window, Some(&ids), None).await?,
            };
            for r in batch {
                let id = TraceId(r.trace_id);
                if matched.contains(&id) {
                    page.add((r.duration_ns, id));
                } else {
                    rejected.insert(id);
                }
            }
            if done {
                debug!(checks, rejected = rejected.len(), "duration ranking walked");
                return Ok(true);
            }
            if checks == MAX_CHECKS && members.is_none() {
                members = self.members(tenant, matching, window).await?;
                if members.is_none() {
                    debug!(checks, rejected = rejected.len(), "duration ranking too sparse; grouping instead");
                    return Ok(false);
                }
            }
        }
    }

    /// Every trace the search matches in `window`, if there are at most
    /// [`MAX_MEMBERS`].
    async fn members(
        &self,
        tenant: &TenantId,
        matching: &Matching<'_>,
        window: &Window,
    ) -> Result<Option<HashSet<TraceId>>, QueryError> {
        let members = self.matching_traces(tenant, matching, window, None, Some(MAX_MEMBERS + 1)).await?;
        Ok((members.len() <= MAX_MEMBERS).then_some(members))
    }

    /// The traces the search matches, with a span in `window` that passes
    /// the filter: of `among` if given, and `limit` at most.
    async fn matching_traces(
        &self,
        tenant: &TenantId,
        matching: &Matching<'_>,
        window: &Window,
        among: Option<&[TraceId]>,
        limit: Option<usize>,
    ) -> Result<HashSet<TraceId>, QueryError> {
        if among.is_some_and(<[TraceId]>::is_empty) {
            return Ok(HashSet::new());
        }
        let mut params = Params::default();
        let (table, mut condition) = match matching {
            Matching::Spans(filter) => (SPANS_TABLE, filter.where_sql(window, &mut params)),
            // A fragment that starts in the window holds a matching span.
            Matching::Fragments(fragments) => {
                let (start, end) = (params.time(window.start_ns), params.time(window.end_ns));
                let only = fragments.and_sql(window, &mut params);
                (TRACE_FRAGMENTS_TABLE, format!("start_time >= {start} AND start_time < {end}{only}"))
            }
        };
        if let Some(ids) = among {
            let ids: Vec<String> = ids.iter().map(|id| params.trace_id(id)).collect();
            condition += &format!(" AND trace_id IN ({})", ids.join(", "));
        }
        let sql = match limit {
            Some(n) => format!("SELECT DISTINCT trace_id FROM {table} WHERE {condition} LIMIT {n}"),
            None => format!("SELECT DISTINCT trace_id FROM {table} WHERE {condition}"),
        };
        let mut matched: HashSet<TraceId> =
            trace_ids(&self.batches(tenant, &sql, params).await?)?.into_iter().collect();
        // So may one that starts before the window and ends in it.
        if let Matching::Fragments(fragments) = matching
            && limit.is_none_or(|n| matched.len() < n)
        {
            let open: Option<Vec<TraceId>> =
                among.map(|ids| ids.iter().filter(|id| !matched.contains(id)).copied().collect());
            matched.extend(self.matched_before(tenant, fragments, window, open.as_deref()).await?);
        }
        Ok(matched)
    }

    /// The first traces for `page` (in its order, as many as it holds)
    /// after `after` that match in `slice` of `window`, by grouping their
    /// fragments: the keys of every matching trace, ranked.
    async fn grouped(
        &self,
        tenant: &TenantId,
        matching: &Matching<'_>,
        window: &Window,
        slice: Window,
        after: Option<&After>,
        page: &Page,
    ) -> Result<Vec<Key>, QueryError> {
        let mut params = Params::default();
        let direction = if page.longest_first { "DESC" } else { "ASC" };
        let keyset = match after {
            Some(after) => {
                let key = params.int(after.key);
                let id = params.trace_id(&after.trace_id);
                let beyond = if page.longest_first { "<" } else { ">" };
                format!("WHERE duration_ns {beyond} {key} OR (duration_ns = {key} AND trace_id {beyond} {id})")
            }
            None => String::new(),
        };
        let (lo, hi) = (
            params.time(window.start_ns.saturating_sub(SUMMARY_MARGIN_NS)),
            params.time(window.end_ns.saturating_add(SUMMARY_MARGIN_NS)),
        );
        // Keys only (trace ids and time bounds), so that millions of
        // matching traces cost little; from the trace index alone when it
        // can tell which traces match, in the same pass that sums them up.
        let keyed = match matching {
            Matching::Spans(filter) => {
                let matching = filter.where_sql_in(&slice, window, &mut params);
                format!(
                    "SELECT trace_id, CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns
                     FROM {TRACE_FRAGMENTS_TABLE}
                     WHERE start_time >= {lo} AND start_time < {hi}
                       AND trace_id IN (SELECT trace_id FROM {SPANS_TABLE} WHERE {matching})
                     GROUP BY trace_id"
                )
            }
            Matching::Fragments(fragments) => {
                let (start, end) = (params.time(slice.start_ns), params.time(slice.end_ns));
                let inside = format!(
                    "start_time >= {start} AND start_time < {end}{}",
                    fragments.and_fragment_sql(window, &mut params)
                );
                // Fragments that start before the window and hold spans in
                // it belong to the slice at the window's start.
                let early = if slice.start_ns == window.start_ns {
                    self.matched_before(tenant, fragments, window, None).await?
                } else {
                    Vec::new()
                };
                let early: Vec<String> = early.iter().map(|id| params.trace_id(id)).collect();
                let early =
                    if early.is_empty() { String::new() } else { format!("OR trace_id IN ({})", early.join(", ")) };
                let traces = fragments.and_traces_sql(window, &mut params);
                format!(
                    "SELECT trace_id, CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns
                     FROM {TRACE_FRAGMENTS_TABLE}
                     WHERE start_time >= {lo} AND start_time < {hi}{traces}
                     GROUP BY trace_id
                     HAVING bool_or({inside}) {early}"
                )
            }
        };
        let sql = format!(
            "WITH keyed AS ({keyed})
             SELECT trace_id, duration_ns FROM keyed {keyset}
             ORDER BY duration_ns {direction}, trace_id {direction}
             LIMIT {}",
            page.limit + 1
        );
        let mut keys = Vec::new();
        for batch in self.batches(tenant, &sql, params).await? {
            let c = Columns(&batch);
            for (row, duration) in c.ints("duration_ns")?.iter().enumerate() {
                keys.push((*duration, c.trace_id("trace_id", row)?));
            }
        }
        Ok(keys)
    }
}
