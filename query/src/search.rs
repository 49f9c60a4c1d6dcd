//! Trace search: the traces with a span that passes every span-level filter
//! in a time window, as summaries from the trace index, one page at a time.
//! Two queries: the page's trace keys (id, start, duration) out of all
//! matching traces, then the summaries of those traces alone.
//!
//! Pages are cut by key, not by offset: a cursor holds the window, the sort,
//! a hash of the filters and the sort key and id of the last trace sent;
//! the next page starts strictly after it. The window's end is fixed by the
//! first page, so spans arriving while a client pages (new traces after
//! that end) neither push traces onto the next page nor pull them back.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::ids::parse_trace_id;
use utoipa::ToSchema;

use crate::engine::{QueryEngine, SPANS_TABLE, TRACE_FRAGMENTS_TABLE, trace_summary_sql};
use crate::error::QueryError;
use crate::params::{Params, SpanFilter, Window, bad};

/// A trace's fragments are read this far either side of the window: the
/// summary of a trace longer than that counts only its spans inside.
const SUMMARY_MARGIN_NS: i64 = 3600 * 1_000_000_000;

/// Largest page.
pub const MAX_SEARCH_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SearchOrder {
    /// Newest trace start first.
    StartDesc,
    DurationDesc,
    DurationAsc,
}

impl SearchOrder {
    pub(crate) fn parse(text: Option<&str>) -> Result<Self, QueryError> {
        match text {
            None | Some("start_desc") => Ok(Self::StartDesc),
            Some("duration_desc") => Ok(Self::DurationDesc),
            Some("duration_asc") => Ok(Self::DurationAsc),
            Some(other) => Err(bad("sort", format!("{other:?}: use start_desc, duration_desc or duration_asc"))),
        }
    }

    /// The sort key column and whether it runs descending.
    fn key(self) -> (&'static str, bool) {
        match self {
            Self::StartDesc => ("start_ns", true),
            Self::DurationDesc => ("duration_ns", true),
            Self::DurationAsc => ("duration_ns", false),
        }
    }
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
    pub trace_id: String,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    pub traces: Vec<TraceSummary>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Where the previous page ended, and what it was a page of.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    start_ns: i64,
    end_ns: i64,
    order: SearchOrder,
    filter: u64,
    key: i64,
    trace_id: String,
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

/// A trace's place in the order.
#[derive(Debug, Deserialize)]
struct Key {
    trace_id: String,
    start_ns: i64,
    duration_ns: i64,
}

#[derive(Debug, Deserialize)]
struct Row {
    trace_id: String,
    start_ns: i64,
    duration_ns: i64,
    root_service_name: Option<String>,
    root_span_name: Option<String>,
    span_count: i64,
    error_count: i64,
    services: serde_json::Map<String, serde_json::Value>,
}

/// The traces of one page, in order, before their summaries are read.
struct Page {
    keys: Vec<Key>,
    next_cursor: Option<String>,
    /// The fragments' time range.
    fragments: (i64, i64),
}

impl QueryEngine {
    pub async fn search(&self, tenant: &TenantId, request: &SearchRequest) -> Result<SearchPage, QueryError> {
        let Page { keys, next_cursor, fragments: (lo, hi) } = self.page(tenant, request).await?;
        let mut summaries = self.summaries(tenant, &keys, lo, hi).await?;
        let traces = keys
            .iter()
            .filter_map(|k| summaries.remove(&k.trace_id))
            .map(|row| TraceSummary {
                trace_id: row.trace_id,
                root_service_name: row.root_service_name,
                root_span_name: row.root_span_name,
                start_time_unix_nano: row.start_ns,
                duration_ns: row.duration_ns,
                span_count: row.span_count,
                error_count: row.error_count,
                services: row
                    .services
                    .into_iter()
                    .map(|(name, count)| ServiceSpans { name, span_count: count.as_i64().unwrap_or(0) })
                    .collect(),
            })
            .collect();
        Ok(SearchPage { traces, next_cursor })
    }

    /// The ids of a search's traces, in order, without their summaries
    /// (Zipkin's `/traces` reads the whole traces instead).
    pub(crate) async fn search_trace_ids(
        &self,
        tenant: &TenantId,
        request: &SearchRequest,
    ) -> Result<Vec<String>, QueryError> {
        Ok(self.page(tenant, request).await?.keys.into_iter().map(|k| k.trace_id).collect())
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
            after = Some((cursor.key, cursor.trace_id));
        }

        let mut params = Params::default();
        let matching = request.filter.where_sql(&window, &mut params);
        let (key, descending) = request.order.key();
        let direction = if descending { "DESC" } else { "ASC" };
        let keyset = match &after {
            Some((last_key, last_id)) => {
                let id = parse_trace_id(last_id).map_err(|_| bad("cursor", "not a cursor from a previous page"))?;
                let (last_key, last_id) =
                    (params.int(*last_key), params.add(ScalarValue::FixedSizeBinary(16, Some(id.to_vec()))));
                let beyond = if descending { "<" } else { ">" };
                format!("WHERE {key} {beyond} {last_key} OR ({key} = {last_key} AND trace_id {beyond} {last_id})")
            }
            None => String::new(),
        };
        let (lo, hi) =
            (window.start_ns.saturating_sub(SUMMARY_MARGIN_NS), window.end_ns.saturating_add(SUMMARY_MARGIN_NS));
        let (lo_param, hi_param) = (params.time(lo), params.time(hi));
        // First the page's keys: only trace ids and time bounds per trace,
        // so that millions of matching traces cost little; then the
        // summaries of the page's traces alone.
        let sql = format!(
            "WITH matched AS (SELECT DISTINCT trace_id FROM {SPANS_TABLE} WHERE {matching}),
                  keyed AS (SELECT trace_id, CAST(min(start_time) AS BIGINT) AS start_ns,
                                   CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns
                            FROM {TRACE_FRAGMENTS_TABLE}
                            WHERE start_time >= {lo_param} AND start_time < {hi_param}
                              AND trace_id IN (SELECT trace_id FROM matched)
                            GROUP BY trace_id)
             SELECT trace_id, start_ns, duration_ns FROM keyed {keyset}
             ORDER BY {key} {direction}, trace_id {direction}
             LIMIT {}",
            request.limit + 1
        );
        let mut keys: Vec<Key> = self.rows(tenant, &sql, params).await?;
        let next_cursor = (keys.len() > request.limit).then(|| {
            keys.truncate(request.limit);
            let last = keys.last().expect("a full page");
            Cursor {
                start_ns: window.start_ns,
                end_ns: window.end_ns,
                order: request.order,
                filter: filter_hash(&request.filter),
                key: if key == "start_ns" { last.start_ns } else { last.duration_ns },
                trace_id: last.trace_id.clone(),
            }
            .encode()
        });
        Ok(Page { keys, next_cursor, fragments: (lo, hi) })
    }

    /// Summaries of the traces `keys` names, from their fragments in `[lo, hi)`.
    async fn summaries(
        &self,
        tenant: &TenantId,
        keys: &[Key],
        lo: i64,
        hi: i64,
    ) -> Result<HashMap<String, Row>, QueryError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut params = Params::default();
        let ids: Vec<String> = keys
            .iter()
            .map(|k| {
                let id = parse_trace_id(&k.trace_id).map_err(|e| QueryError::Render(e.to_string()))?;
                Ok(params.add(ScalarValue::FixedSizeBinary(16, Some(id.to_vec()))))
            })
            .collect::<Result<_, QueryError>>()?;
        let (lo, hi) = (params.time(lo), params.time(hi));
        let summaries = trace_summary_sql("fragments");
        let sql = format!(
            "WITH fragments AS (SELECT * FROM {TRACE_FRAGMENTS_TABLE}
                                WHERE start_time >= {lo} AND start_time < {hi} AND trace_id IN ({})),
                  summaries AS ({summaries})
             SELECT trace_id, CAST(start_time AS BIGINT) AS start_ns, duration_ns, root_service_name, root_span_name,
                    span_count, error_count, services
             FROM summaries",
            ids.join(", ")
        );
        let rows: Vec<Row> = self.rows(tenant, &sql, params).await?;
        Ok(rows.into_iter().map(|r| (r.trace_id.clone(), r)).collect())
    }
}
