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
//! starts less than an hour early. "Errors only" is answered from the
//! fragments' error counts the same way (see [`Fragments`]).

use std::collections::HashMap;

use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;

use super::summary::{Columns, trace_ids};
use crate::engine::{QueryEngine, SPANS_TABLE, TRACE_FRAGMENTS_TABLE};
use crate::error::QueryError;
use crate::params::{HOUR_NS, Params, SpanFilter, Window};
use crate::traceql::TraceQl;
use spanlake_storage::schema;

/// Ids checked against the spans per query: a literal list, so that the
/// bloom filters prune.
const CHECK_IDS: usize = 256;

/// The stretch a trace's candidate fragments cover, for [`read_open`].
const OPEN_STRETCH: &str = "CAST(min(start_time) AS BIGINT) AS first_start, CAST(max(end_time) AS BIGINT) AS last_end";

/// What decides whether a trace matches.
#[derive(Debug, Clone)]
pub(super) enum Matching<'a> {
    /// The trace index: the filter names a service and errors only at
    /// most, and asks TraceQL questions about whole traces.
    Fragments(Fragments<'a>),
    Spans(&'a SpanFilter),
}

/// A match in the trace index: a fragment (of `service`, with errors when
/// `errors` is set) that starts in the stretch, in a trace that passes
/// `traces`.
///
/// A fragment's spans all start between its start and its end, so one
/// with error spans that starts in the window and ends before the window
/// does holds an error span in it. One that ends after the window may
/// not: those few are checked against their spans once per search.
#[derive(Debug, Clone)]
pub(super) struct Fragments<'a> {
    pub(super) service: Option<&'a str>,
    /// Errors only: the traces whose error fragments end after the window
    /// and that have an error span (of the service) in it.
    errors: Option<Vec<TraceId>>,
    traces: &'a [TraceQl],
}

impl Fragments<'_> {
    /// ` AND` the conditions on a fragment that starts in the window and
    /// so holds a matching span.
    pub(super) fn and_sql(&self, window: &Window, params: &mut Params) -> String {
        self.and_fragment_sql(window, params) + &self.and_traces_sql(window, params)
    }

    /// ` AND` the conditions on the fragment itself (service, errors),
    /// not on its trace.
    pub(super) fn and_fragment_sql(&self, window: &Window, params: &mut Params) -> String {
        let mut sql = self.and_may_hold_sql(params);
        if let Some(confirmed) = &self.errors {
            let end = params.time(window.end_ns);
            let confirmed: Vec<String> = confirmed.iter().map(|id| params.trace_id(id)).collect();
            sql += &if confirmed.is_empty() {
                format!(" AND end_time < {end}")
            } else {
                format!(" AND (end_time < {end} OR trace_id IN ({}))", confirmed.join(", "))
            };
        }
        sql
    }

    /// ` AND` the conditions on a fragment that may hold a matching span,
    /// not on its trace.
    fn and_may_hold_sql(&self, params: &mut Params) -> String {
        let mut sql = self.service.map(|s| format!(" AND service_name = {}", params.text(s))).unwrap_or_default();
        if self.errors.is_some() {
            sql += " AND error_count > 0";
        }
        sql
    }

    /// ` AND` the conditions on a matching span.
    pub(super) fn and_span_sql(&self, window: &Window, params: &mut Params) -> String {
        let mut sql = self.service.map(|s| format!(" AND service_name = {}", params.text(s))).unwrap_or_default();
        if self.errors.is_some() {
            sql += &format!(" AND {} = 'ERROR'", schema::STATUS_CODE);
        }
        sql + &self.and_traces_sql(window, params)
    }

    /// ` AND` the conditions on the trace alone.
    pub(super) fn and_traces_sql(&self, window: &Window, params: &mut Params) -> String {
        self.traces.iter().map(|query| format!(" AND ({})", query.condition(window, params))).collect()
    }
}

/// Traces to check against their spans: each with the stretch its
/// candidate fragments cover (first start, last end).
fn read_open(batches: &[arrow::array::RecordBatch]) -> Result<Vec<(TraceId, i64, i64)>, QueryError> {
    let mut out = Vec::new();
    for batch in batches {
        let c = Columns(batch);
        for (row, (from, until)) in c.ints("first_start")?.iter().zip(c.ints("last_end")?).enumerate() {
            out.push((c.trace_id("trace_id", row)?, *from, *until));
        }
    }
    Ok(out)
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
    /// How a search of `window` with `filter` decides which traces match.
    pub(super) async fn matching<'a>(
        &self,
        tenant: &TenantId,
        filter: &'a SpanFilter,
        window: &Window,
    ) -> Result<Matching<'a>, QueryError> {
        let index_only = SpanFilter {
            service: filter.service.clone(),
            errors_only: filter.errors_only,
            traceql: filter.traceql.clone(),
            ..SpanFilter::default()
        };
        if *filter != index_only || !filter.traceql.iter().all(TraceQl::is_trace_level) {
            return Ok(Matching::Spans(filter));
        }
        let mut fragments = Fragments { service: filter.service.as_deref(), errors: None, traces: &filter.traceql };
        if filter.errors_only {
            // Error fragments that start before the window's end and end
            // after it, checked against their error spans in the window.
            fragments.errors = Some(Vec::new());
            let confirmed = self.open_at(tenant, &fragments, window, window.end_ns, None).await?;
            fragments.errors = Some(confirmed);
        }
        Ok(Matching::Fragments(fragments))
    }

    /// Those of `open` (traces, each with the stretch its candidate spans
    /// start in) with a matching span in `window`.
    async fn with_spans_in(
        &self,
        tenant: &TenantId,
        fragments: &Fragments<'_>,
        window: &Window,
        open: &[(TraceId, i64, i64)],
    ) -> Result<Vec<TraceId>, QueryError> {
        let mut matched = Vec::new();
        for chunk in open.chunks(CHECK_IDS) {
            let mut params = Params::default();
            let first = chunk.iter().map(|(_, from, _)| *from).min().unwrap_or(window.start_ns);
            let last = chunk.iter().map(|(_, _, until)| *until).max().unwrap_or(window.end_ns);
            let (start, end) =
                (params.time(first.max(window.start_ns)), params.time(last.saturating_add(1).min(window.end_ns)));
            let only = fragments.and_span_sql(window, &mut params);
            let ids: Vec<String> = chunk.iter().map(|(id, _, _)| params.trace_id(id)).collect();
            let sql = format!(
                "SELECT DISTINCT trace_id FROM {SPANS_TABLE}
                 WHERE start_time >= {start} AND start_time < {end}{only} AND trace_id IN ({})",
                ids.join(", ")
            );
            matched.extend(trace_ids(&self.batches(tenant, &sql, params).await?)?);
        }
        Ok(matched)
    }

    /// The traces matched in `slice` of `window`, each with an upper bound
    /// on its start. Traces that match only through a fragment that starts
    /// before the window are included when `slice` begins at the window's
    /// start; other slices leave them to the slice that holds the fragment.
    pub(super) async fn matched(
        &self,
        tenant: &TenantId,
        matching: &Matching<'_>,
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
            let early = self.matched_before(tenant, fragments, window, None).await?;
            bounds.extend(early.into_iter().filter(|id| !seen.contains_key(id)).map(|id| (id, window.start_ns)));
        }
        Ok(bounds)
    }

    /// Traces (of `among`, if given) whose fragments that may match start
    /// before `window` and end in it, that have a matching span starting
    /// in the window.
    pub(super) async fn matched_before(
        &self,
        tenant: &TenantId,
        fragments: &Fragments<'_>,
        window: &Window,
        among: Option<&[TraceId]>,
    ) -> Result<Vec<TraceId>, QueryError> {
        self.open_at(tenant, fragments, window, window.start_ns, among).await
    }

    /// Traces (of `among`, if given) with fragments that may match open at
    /// `at` (starting less than an hour before it, ending at or after it),
    /// that have a matching span starting in `window`.
    async fn open_at(
        &self,
        tenant: &TenantId,
        fragments: &Fragments<'_>,
        window: &Window,
        at: i64,
        among: Option<&[TraceId]>,
    ) -> Result<Vec<TraceId>, QueryError> {
        let mut params = Params::default();
        let (from, at) = (params.time(at.saturating_sub(HOUR_NS)), params.time(at));
        let mut only = fragments.and_may_hold_sql(&mut params) + &fragments.and_traces_sql(window, &mut params);
        if let Some(ids) = among {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<String> = ids.iter().map(|id| params.trace_id(id)).collect();
            only += &format!(" AND trace_id IN ({})", ids.join(", "));
        }
        let sql = format!(
            "SELECT trace_id, {OPEN_STRETCH} FROM {TRACE_FRAGMENTS_TABLE}
             WHERE start_time >= {from} AND start_time < {at} AND end_time >= {at}{only}
             GROUP BY trace_id"
        );
        let open = read_open(&self.batches(tenant, &sql, params).await?)?;
        self.with_spans_in(tenant, fragments, window, &open).await
    }
}
