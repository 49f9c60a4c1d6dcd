//! Trace search: the traces with a span that passes every span-level filter
//! in a time window, as summaries from the trace index, one page at a time.
//!
//! Newest first (the default) walks the window from its newest spans back
//! and stops once the page is decided (`newest.rs`). Sorted by duration,
//! it walks the rankings of finished hours from the head and groups the
//! fragments of the rest (`by_duration.rs`). Either way the summaries are
//! read for the page's traces alone (`summary.rs`).
//!
//! Pages are cut by key, not by offset: a cursor holds the window, the sort,
//! a hash of the filters and the sort key and id of the last trace sent;
//! the next page starts strictly after it. The window's end is fixed by the
//! first page, so spans arriving while a client pages (new traces after
//! that end) neither push traces onto the next page nor pull them back.

mod by_duration;
mod matching;
mod newest;
mod summary;

use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;
use utoipa::ToSchema;

use crate::collectors::Partial;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{SpanFilter, Window, bad};
pub(crate) use summary::Columns;
use summary::Summary;

/// A trace's fragments are read this far either side of the window: the
/// summary of a trace longer than that counts only its spans inside.
const SUMMARY_MARGIN_NS: i64 = 3600 * 1_000_000_000;

/// Largest page.
pub const MAX_SEARCH_LIMIT: usize = 1000;

/// The order of a search's traces: `start_desc` (newest first, the
/// default), `duration_desc` or `duration_asc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchOrder {
    StartDesc,
    DurationDesc,
    DurationAsc,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub filter: SpanFilter,
    pub window: Window,
    pub order: SearchOrder,
    pub limit: usize,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// One trace in a search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    #[serde(rename = "traceID")]
    #[schema(value_type = String)]
    pub trace_id: TraceId,
    pub root_service_name: Option<String>,
    pub root_span_name: Option<String>,
    /// Unix nanoseconds.
    pub start_time_unix_nano: i64,
    pub duration_ns: i64,
    pub span_count: i64,
    pub error_count: i64,
    pub services: Vec<ServiceSpans>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpans {
    pub name: String,
    pub span_count: i64,
    /// Spans of this service with status ERROR.
    pub error_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    pub traces: Vec<TraceSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
    /// Set when collectors of the cluster could not be reached: the page
    /// lacks their spans that are not in files yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
}

/// Where the previous page ended, and what it was a page of.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    start_ns: i64,
    end_ns: i64,
    order: SearchOrder,
    filter: u64,
    key: i64,
    trace_id: TraceId,
}

fn filter_hash(filter: &SpanFilter) -> u64 {
    let mut hasher = DefaultHasher::new();
    filter.hash(&mut hasher);
    hasher.finish()
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("cursors serialize"))
    }

    fn decode(text: &str) -> Result<Self, QueryError> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad("cursor", "not a cursor from a previous page"))?;
        serde_json::from_slice(&bytes).map_err(|_| bad("cursor", "not a cursor from a previous page"))
    }
}

/// Where the previous page ended: its last trace's sort key and id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct After {
    pub(crate) key: i64,
    pub(crate) trace_id: TraceId,
}

impl From<Summary> for TraceSummary {
    fn from(s: Summary) -> Self {
        Self {
            trace_id: s.trace_id,
            root_service_name: s.root_service_name,
            root_span_name: s.root_span_name,
            start_time_unix_nano: s.start_ns,
            duration_ns: s.duration_ns,
            span_count: s.span_count,
            error_count: s.error_count,
            services: s.services,
        }
    }
}

/// The traces of one page, in order, and the cursor to the next.
struct Page {
    traces: Vec<Summary>,
    next_cursor: Option<String>,
}

impl QueryEngine {
    pub async fn search(&self, tenant: &TenantId, request: &SearchRequest) -> Result<SearchPage, QueryError> {
        let Page { traces, next_cursor } = self.page(tenant, request).await?;
        let traces = traces.into_iter().map(TraceSummary::from).collect();
        Ok(SearchPage { traces, next_cursor, partial: self.partial() })
    }

    /// The ids of a search's traces, in order (Zipkin's `/traces` reads the
    /// whole traces next).
    pub(crate) async fn search_trace_ids(
        &self,
        tenant: &TenantId,
        request: &SearchRequest,
    ) -> Result<Vec<TraceId>, QueryError> {
        Ok(self.page(tenant, request).await?.traces.into_iter().map(|t| t.trace_id).collect())
    }

    async fn page(&self, tenant: &TenantId, request: &SearchRequest) -> Result<Page, QueryError> {
        let mut window = request.window;
        let mut after = None;
        if let Some(text) = &request.cursor {
            let cursor = Cursor::decode(text)?;
            if cursor.order != request.order || cursor.filter != filter_hash(&request.filter) {
                return Err(bad("cursor", "belongs to a search with other filters or another sort"));
            }
            window = Window { start_ns: cursor.start_ns, end_ns: cursor.end_ns };
            after = Some(After { key: cursor.key, trace_id: cursor.trace_id });
        }
        let mut traces = match request.order {
            SearchOrder::StartDesc => {
                self.newest_first(tenant, &request.filter, window, after.as_ref(), request.limit).await?
            }
            order => self.by_duration(tenant, &request.filter, window, order, after.as_ref(), request.limit).await?,
        };
        let next_cursor = (traces.len() > request.limit).then(|| {
            traces.truncate(request.limit);
            let last = traces.last().expect("a full page");
            Cursor {
                start_ns: window.start_ns,
                end_ns: window.end_ns,
                order: request.order,
                filter: filter_hash(&request.filter),
                key: if request.order == SearchOrder::StartDesc { last.start_ns } else { last.duration_ns },
                trace_id: last.trace_id,
            }
            .encode()
        });
        Ok(Page { traces, next_cursor })
    }
}

#[cfg(test)]
mod tests;
