//! Retries and abandoned work, per edge (client service → server service,
//! operation), from span timing:
//!
//! - a **retry** is a CLIENT span that repeats the same operation (span
//!   name) of the same service under the same parent span, starting after
//!   an earlier attempt ended in error; or one that says it is a resend
//!   (`http.request.resend_count` > 0). Calls in a loop that succeed are
//!   not retries; attempts that overlap (hedged or fanned-out calls) are not
//!   either.
//! - **abandoned work** is a server span that went on after its client span
//!   had ended in error (a timeout, a cancelled call): the client gave up,
//!   the server did not know.
//!
//! The SQL (`retries`) and the trace page's marks ([`marks`]) apply the
//! same rule; the end-to-end test `analysis::retries_timeouts_abandoned_work_and_the_cost_of_a_hop`
//! checks both on the same trace.

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::schema::{
    DURATION_NS, PARENT_SPAN_ID, REMOTE_SERVICE_NAME, SERVICE_NAME, SPAN_ATTRIBUTES, SPAN_ID, SPAN_KIND, SPAN_NAME,
    START_TIME, STATUS_CODE, STATUS_MESSAGE, TRACE_ID,
};
use utoipa::ToSchema;

use crate::engine::{QueryEngine, SPANS_TABLE, session_rows};
use crate::error::QueryError;
use crate::params::{NANOS_PER_MILLI, Params, Window};
use crate::versions::ENTRY_KINDS;

/// The attribute of a resent HTTP request (OpenTelemetry semantic conventions).
pub const RESEND_COUNT: &str = "http.request.resend_count";
/// Status messages that name a timeout, case-insensitively.
pub const TIMEOUT_PATTERN: &str = "timeout|timed out|deadline";
/// How long after the window a server span may end and still be matched.
const SERVER_TAIL_NS: i64 = 60_000_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// Edges with the most retries and abandoned work first.
    pub edges: Vec<RetryEdge>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryEdge {
    pub client: String,
    /// The server's service; its remote service name when uninstrumented.
    pub server: Option<String>,
    /// The client span's name.
    pub operation: String,
    /// Client attempts.
    pub calls: i64,
    /// Attempts that were retries.
    pub retries: i64,
    pub retry_rate: f64,
    /// Calls the client meant to make: attempts less retries.
    pub logical_calls: i64,
    /// Server calls per logical call (attempts per logical call when the
    /// server is not instrumented).
    pub amplification: f64,
    pub errors: i64,
    /// Failed attempts whose status message names a timeout or deadline.
    pub timeouts: i64,
    /// Server spans that went on after their client had failed.
    pub abandoned: i64,
    /// Server time spent after the client had given up, in all.
    pub abandoned_ms: f64,
}

#[derive(Debug, Deserialize)]
struct EdgeRow {
    client: Option<String>,
    server: Option<String>,
    operation: Option<String>,
    calls: i64,
    retries: i64,
    server_calls: i64,
    errors: i64,
    timeouts: i64,
    abandoned: i64,
    abandoned_ns: i64,
}

/// The retry edges of `window`, of `service` on either side when given.
/// `resends_seen`: whether spans in the window may carry [`RESEND_COUNT`]
/// (decoding every client span's attributes to find none costs more than
/// the rest of the query).
pub(crate) async fn retries(
    ctx: &SessionContext,
    service: Option<&str>,
    window: &Window,
    resends_seen: bool,
) -> Result<Retries, QueryError> {
    let resend = if resends_seen {
        format!("COALESCE(TRY_CAST({SPAN_ATTRIBUTES}['{RESEND_COUNT}'] AS BIGINT), 0)")
    } else {
        "0".to_owned()
    };
    let mut params = Params::default();
    let (start, end) = (params.time(window.start_ns), params.time(window.end_ns));
    let tail = params.time(window.end_ns.saturating_add(SERVER_TAIL_NS));
    let service_condition = match service {
        Some(service) => {
            let service = params.text(service);
            format!("WHERE client = {service} OR server = {service}")
        }
        None => String::new(),
    };
    // Memory is what bounds this over large windows: the window function
    // runs only over the attempts of calls with a failed attempt, and every
    // join builds its hash table on the smaller side, written first.
    let attempt =
        format!("PARTITION BY c.{TRACE_ID}, c.{PARENT_SPAN_ID}, c.{SERVICE_NAME}, c.{SPAN_NAME} ORDER BY c.start_ns");
    let sql = format!(
        "WITH c AS (
            SELECT {TRACE_ID}, {SPAN_ID}, {PARENT_SPAN_ID}, {SERVICE_NAME}, {SPAN_NAME}, {REMOTE_SERVICE_NAME},
                   CAST({START_TIME} AS BIGINT) AS start_ns, CAST({START_TIME} AS BIGINT) + {DURATION_NS} AS end_ns,
                   {STATUS_CODE} = 'ERROR' AS error,
                   {STATUS_CODE} = 'ERROR'
                       AND COALESCE(regexp_like(CAST({STATUS_MESSAGE} AS VARCHAR), '{TIMEOUT_PATTERN}', 'i'), false) AS timeout,
                   {resend} AS resend
            FROM {SPANS_TABLE}
            WHERE {START_TIME} >= {start} AND {START_TIME} < {end} AND {SPAN_KIND} = 'CLIENT'),
         failed AS (
            SELECT DISTINCT {TRACE_ID}, {PARENT_SPAN_ID}, {SERVICE_NAME}, {SPAN_NAME} FROM c WHERE error),
         attempts AS (
            SELECT c.{TRACE_ID}, c.{SPAN_ID}, c.start_ns,
                   lag(c.end_ns) OVER ({attempt}) AS previous_end, lag(c.error) OVER ({attempt}) AS previous_error
            FROM failed f JOIN c
              ON f.{TRACE_ID} = c.{TRACE_ID} AND f.{PARENT_SPAN_ID} = c.{PARENT_SPAN_ID}
             AND f.{SERVICE_NAME} = c.{SERVICE_NAME} AND f.{SPAN_NAME} = c.{SPAN_NAME}),
         retried AS (
            SELECT {TRACE_ID}, {SPAN_ID} FROM attempts
            WHERE previous_end IS NOT NULL AND start_ns >= previous_end AND previous_error),
         s AS (
            SELECT {TRACE_ID}, {PARENT_SPAN_ID}, {SERVICE_NAME} AS server, count(*) AS servers,
                   max(CAST({START_TIME} AS BIGINT) + {DURATION_NS}) AS server_end
            FROM {SPANS_TABLE}
            WHERE {START_TIME} >= {start} AND {START_TIME} < {tail} AND {SPAN_KIND} IN {ENTRY_KINDS}
              AND {PARENT_SPAN_ID} IS NOT NULL
            GROUP BY 1, 2, 3),
         served AS (
            SELECT c.*, s.server, s.servers, s.server_end
            FROM s RIGHT JOIN c ON s.{TRACE_ID} = c.{TRACE_ID} AND s.{PARENT_SPAN_ID} = c.{SPAN_ID}),
         j AS (
            SELECT CAST(a.{SERVICE_NAME} AS VARCHAR) AS client,
                   COALESCE(CAST(a.server AS VARCHAR), CAST(a.{REMOTE_SERVICE_NAME} AS VARCHAR)) AS server,
                   CAST(a.{SPAN_NAME} AS VARCHAR) AS operation,
                   a.resend > 0 OR r.{SPAN_ID} IS NOT NULL AS retry,
                   a.error, a.timeout, COALESCE(a.servers, 0) AS servers,
                   CASE WHEN a.error AND a.server_end > a.end_ns THEN a.server_end - a.end_ns END AS abandoned_ns
            FROM retried r RIGHT JOIN served a ON r.{TRACE_ID} = a.{TRACE_ID} AND r.{SPAN_ID} = a.{SPAN_ID})
         SELECT client, server, operation, count(*) AS calls,
                sum(CASE WHEN retry THEN 1 ELSE 0 END) AS retries, sum(servers) AS server_calls,
                sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors,
                sum(CASE WHEN error AND timeout THEN 1 ELSE 0 END) AS timeouts,
                count(abandoned_ns) AS abandoned, COALESCE(sum(abandoned_ns), 0) AS abandoned_ns
         FROM j {service_condition}
         GROUP BY 1, 2, 3
         HAVING sum(CASE WHEN retry THEN 1 ELSE 0 END) > 0 OR count(abandoned_ns) > 0 OR sum(CASE WHEN error THEN 1 ELSE 0 END) > 0
         ORDER BY retries + abandoned DESC, calls DESC, client, server, operation
         LIMIT 1000"
    );
    let rows: Vec<EdgeRow> = session_rows(ctx, &sql, params).await?;
    let edges = rows
        .into_iter()
        .map(|r| {
            let logical = (r.calls - r.retries).max(1);
            let reached = if r.server_calls > 0 { r.server_calls } else { r.calls };
            RetryEdge {
                client: r.client.unwrap_or_default(),
                server: r.server,
                operation: r.operation.unwrap_or_default(),
                calls: r.calls,
                retries: r.retries,
                retry_rate: r.retries as f64 / r.calls.max(1) as f64,
                logical_calls: r.calls - r.retries,
                amplification: reached as f64 / logical as f64,
                errors: r.errors,
                timeouts: r.timeouts,
                abandoned: r.abandoned,
                abandoned_ms: r.abandoned_ns as f64 / NANOS_PER_MILLI as f64,
            }
        })
        .collect();
    Ok(Retries { edges })
}

impl QueryEngine {
    pub async fn retries(
        &self,
        tenant: &TenantId,
        service: Option<&str>,
        window: &Window,
    ) -> Result<Retries, QueryError> {
        let (service, window) = (service.map(str::to_owned), *window);
        let resends_seen = !self.tags_maybe_set(tenant, &window, &[RESEND_COUNT]).await?.is_empty();
        self.analyse(tenant, |ctx| async move { retries(&ctx, service.as_deref(), &window, resends_seen).await }).await
    }
}

/// One span of a trace, as far as the retry rule looks at it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub id: &'a str,
    pub parent: Option<&'a str>,
    pub service: &'a str,
    pub name: &'a str,
    /// CLIENT, SERVER, …, as the span kind column spells it.
    pub kind: &'a str,
    pub start_ns: i64,
    pub end_ns: i64,
    pub error: bool,
    pub resend_count: i64,
}

/// What the trace page marks on a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A client span that retried an earlier attempt (its number, 2 for the first retry).
    Retry { attempt: usize },
    /// A server span that ran this long after its client had failed.
    Abandoned { after_ns: i64 },
}

/// The marks of a trace's spans, by index: the rule of the module comment.
pub fn marks(spans: &[Attempt<'_>]) -> Vec<Option<Mark>> {
    let mut marks = vec![None; spans.len()];
    let mut clients: Vec<usize> = (0..spans.len()).filter(|&i| spans[i].kind == "CLIENT").collect();
    clients.sort_by(|&a, &b| {
        let (x, y) = (&spans[a], &spans[b]);
        (x.parent, x.service, x.name, x.start_ns).cmp(&(y.parent, y.service, y.name, y.start_ns))
    });
    let mut attempt = 1;
    for (k, &i) in clients.iter().enumerate() {
        let span = &spans[i];
        let previous = k
            .checked_sub(1)
            .map(|k| &spans[clients[k]])
            .filter(|p| (p.parent, p.service, p.name) == (span.parent, span.service, span.name));
        attempt = if previous.is_some() { attempt + 1 } else { 1 };
        let retried = span.resend_count > 0 || previous.is_some_and(|p| p.error && span.start_ns >= p.end_ns);
        if retried {
            // A resend whose earlier attempts have no spans still says which attempt it is.
            let attempt = attempt.max(usize::try_from(span.resend_count).unwrap_or(0) + 1);
            marks[i] = Some(Mark::Retry { attempt });
        }
    }
    for (i, span) in spans.iter().enumerate() {
        if !matches!(span.kind, "SERVER" | "CONSUMER") {
            continue;
        }
        let client = span.parent.and_then(|p| spans.iter().find(|c| c.id == p && c.kind == "CLIENT"));
        if let Some(client) = client.filter(|c| c.error && span.end_ns > c.end_ns) {
            marks[i] = Some(Mark::Abandoned { after_ns: span.end_ns - client.end_ns });
        }
    }
    marks
}
