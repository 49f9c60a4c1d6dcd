//! Which traces a filter matches in a stretch of time, each with an upper
//! bound on its start.
//!
//! In general that takes the spans: a trace matches through a span that
//! passes every filter. A filter on the service alone (or no filter), with
//! TraceQL queries about whole traces at most (`rootServiceName`,
//! `traceDuration`, ...), is answered from the trace index instead, which
//! holds a few rows per trace rather than one per span. A fragment (the
//! spans of one trace and service in one file) that starts inside the
//! window holds a matching span; one that starts before it may or may
//! not, when it ends inside: those few traces are checked against their
//! spans, between the window's start and the latest such fragment's end.
//! Every span of a file starts in the file's hour, so such a fragment
//! starts less than an hour early.

use std::collections::HashMap;

use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;

use super::summary::Columns;
use crate::engine::{QueryEngine, SPANS_TABLE, TRACE_FRAGMENTS_TABLE};
use crate::error::QueryError;
use crate::params::{HOUR_NS, Params, SpanFilter, Window};
use crate::traceql::TraceQl;

/// Ids checked against the spans per query: a literal list, so that the
/// bloom filters prune.
const CHECK_IDS: usize = 256;

/// What decides whether a trace matches.
#[derive(Debug, Clone, Copy)]
pub(super) enum Matching<'a> {
    /// The trace index: the filter names a service at most, and asks
    /// TraceQL questions about whole traces.
    Fragments(Fragments<'a>),
    Spans(&'a SpanFilter),
}

/// A match in the trace index: a fragment (of `service`) that starts in
/// the stretch, in a trace that passes `traces`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fragments<'a> {
    pub(super) service: Option<&'a str>,
    traces: &'a [TraceQl],
}

impl<'a> Matching<'a> {
    pub(super) fn of(filter: &'a SpanFilter) -> Self {
        let index_only =
            SpanFilter { service: filter.service.clone(), traceql: filter.traceql.clone(), ..SpanFilter::default() };
        if *filter == index_only && filter.traceql.iter().all(TraceQl::is_trace_level) {
            Self::Fragments(Fragments { service: filter.service.as_deref(), traces: &filter.traceql })
        } else {
            Self::Spans(filter)
        }
    }
}

impl Fragments<'_> {
    /// ` AND` the conditions on a fragment's (or a span's) service and
    /// trace, for a search of `window`.
    pub(super) fn and_sql(&self, window: &Window, params: &mut Params) -> String {
        let service = self.service.map(|s| format!(" AND service_name = {}", params.text(s))).unwrap_or_default();
        service + &self.and_traces_sql(window, params)
    }

    /// ` AND` the conditions on the trace alone.
    pub(super) fn and_traces_sql(&self, window: &Window, params: &mut Params) -> String {
        self.traces.iter().map(|query| format!(" AND ({})", query.condition(window, params))).collect()
    }
}

fn read_bounds(batches: &[arrow::array::RecordBatch]) -> Result<Vec<(TraceId, i64)>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        let c = Columns(batch);
        for (row, bound) in c.ints("bound")?.iter().enumerate() {
            out.push((c.trace_id("trace_id", row)?, *bound));
        }
    }
    Ok(out)
}

impl QueryEngine {
    /// The traces matched in `slice` of `window`, each with an upper bound
    /// on its start. Traces that match only through a fragment that starts
    /// before the window are included when `slice` begins at the window's
    /// start; other slices leave them to the slice that holds the fragment.
    pub(super) async fn matched(
        &self,
        tenant: &TenantId,
        matching: Matching<'_>,
        window: &Window,
        slice: Window,
    ) -> Result<Vec<(TraceId, i64)>, QueryError> {
        let mut params = Params::default();
        let (lo, hi) = (params.time(slice.start_ns), params.time(slice.end_ns));
        let sql = match matching {
            Matching::Spans(filter) => {
                let matching = filter.where_sql_in(&slice, window, &mut params);
                format!(
                    "SELECT trace_id, CAST(min(start_time) AS BIGINT) AS bound FROM {SPANS_TABLE}
                     WHERE {matching} GROUP BY trace_id"
                )
            }
            Matching::Fragments(fragments) => {
                let only = fragments.and_sql(window, &mut params);
                format!(
                    "SELECT trace_id, CAST(min(start_time) AS BIGINT) AS bound FROM {TRACE_FRAGMENTS_TABLE}
                     WHERE start_time >= {lo} AND start_time < {hi}{only} GROUP BY trace_id"
                )
            }
        };
        let mut bounds = read_bounds(&self.batches(tenant, &sql, params).await?)?;
        if let Matching::Fragments(fragments) = matching
            && slice.start_ns == window.start_ns
        {
            let seen: HashMap<TraceId, i64> = bounds.iter().copied().collect();
            let early = self.matched_before(tenant, fragments, window).await?;
            bounds.extend(early.into_iter().filter(|id| !seen.contains_key(id)).map(|id| (id, window.start_ns)));
        }
        Ok(bounds)
    }

    /// Traces whose fragments (of the service) start before `window` and
    /// end in it, that have a span (of the service) starting in the window.
    pub(super) async fn matched_before(
        &self,
        tenant: &TenantId,
        fragments: Fragments<'_>,
        window: &Window,
    ) -> Result<Vec<TraceId>, QueryError> {
        let mut params = Params::default();
        let (from, start) = (params.time(window.start_ns - HOUR_NS), params.time(window.start_ns));
        let only = fragments.and_sql(window, &mut params);
        let sql = format!(
            "SELECT trace_id, CAST(max(end_time) AS BIGINT) AS bound FROM {TRACE_FRAGMENTS_TABLE}
             WHERE start_time >= {from} AND start_time < {start} AND end_time >= {start}{only}
             GROUP BY trace_id"
        );
        // Spans that start in the window, up to the latest end.
        let open: Vec<(TraceId, i64)> = read_bounds(&self.batches(tenant, &sql, params).await?)?
            .into_iter()
            .map(|(id, end)| (id, end.min(window.end_ns - 1)))
            .collect();
        let mut matched = Vec::new();
        for chunk in open.chunks(CHECK_IDS) {
            let mut params = Params::default();
            let latest = chunk.iter().map(|(_, end)| *end).max().unwrap_or(window.start_ns);
            let (start, until) = (params.time(window.start_ns), params.time(latest.saturating_add(1)));
            let only = fragments.and_sql(window, &mut params);
            let ids: Vec<String> = chunk.iter().map(|(id, _)| params.trace_id(id)).collect();
            let sql = format!(
                "SELECT DISTINCT trace_id FROM {SPANS_TABLE}
                 WHERE start_time >= {start} AND start_time < {until}{only} AND trace_id IN ({})",
                ids.join(", ")
            );
            for batch in self.batches(tenant, &sql, params).await? {
                let c = Columns(&batch);
                for row in 0..batch.num_rows() {
                    matched.push(c.trace_id("trace_id", row)?);
                }
            }
        }
        Ok(matched)
    }
}
