//! Calls between services read from the parent links of spans: a SERVER or
//! CONSUMER span of one service whose parent is a span of another, each
//! side with its service's version. The version APIs (who calls a version,
//! what a version calls), the graph split by version and the cost of each
//! hop read it; the dependency graph's counts come from the edge files
//! (`dependencies.rs`), which also link Zipkin's shared spans and leaf
//! calls.

use spanlake_storage::schema::{
    DURATION_NS, PARENT_SPAN_ID, SERVICE_NAME, SPAN_ATTRIBUTES, SPAN_ID, SPAN_KIND, SPAN_NAME, START_TIME, STATUS_CODE, TRACE_ID,
};

use crate::engine::SPANS_TABLE;
use crate::params::{Params, Window};

/// The dedicated column of `service.version`.
pub(crate) const SERVICE_VERSION: &str = "service_version";

/// How long before the window a caller's span may start: its server span
/// starts a little after it.
const CALLER_LEAD_NS: i64 = 60_000_000_000;

/// The span attributes that carry a message's size, request side and
/// response side; the first one set counts, the client's before the server's.
const REQUEST_BYTES: [&str; 3] = ["http.request.body.size", "rpc.request.body.size", "messaging.message.body.size"];
const RESPONSE_BYTES: [&str; 2] = ["http.response.body.size", "rpc.response.body.size"];

/// Which calls: each side's service and version, all when not given.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallFilter {
    pub client_service: Option<String>,
    pub client_version: Option<String>,
    pub server_service: Option<String>,
    pub server_version: Option<String>,
    /// Read the message sizes too (a wider scan).
    pub sizes: bool,
}

impl CallFilter {
    /// A `calls` CTE over `window` (by the server span's start), one row
    /// per call: `client_service`, `client_version`, `client_kind`,
    /// `server_service`, `server_version`, `operation` (the server span's
    /// name), `start_ns`, `client_ns`, `server_ns`, `client_error`,
    /// `server_error`, and with `sizes` `request_bytes` and `response_bytes`.
    pub(crate) fn cte(&self, window: &Window, params: &mut Params) -> String {
        let side = |service: &Option<String>, version: &Option<String>, params: &mut Params| {
            let mut conditions = Vec::new();
            if let Some(service) = service {
                conditions.push(format!("{SERVICE_NAME} = {}", params.text(service)));
            }
            if let Some(version) = version {
                conditions.push(format!("{SERVICE_VERSION} = {}", params.text(version)));
            }
            conditions.iter().map(|c| format!(" AND {c}")).collect::<String>()
        };
        let server = side(&self.server_service, &self.server_version, params);
        let client = side(&self.client_service, &self.client_version, params);
        let (start, end) = (params.time(window.start_ns), params.time(window.end_ns));
        let lead = params.time(window.start_ns.saturating_sub(CALLER_LEAD_NS));
        let bytes = |keys: &[&str]| {
            let tries: Vec<String> = keys.iter().map(|k| format!("TRY_CAST({SPAN_ATTRIBUTES}['{k}'] AS BIGINT)")).collect();
            format!("COALESCE({})", tries.join(", "))
        };
        let sizes = if self.sizes {
            format!(", {} AS request_bytes, {} AS response_bytes", bytes(&REQUEST_BYTES), bytes(&RESPONSE_BYTES))
        } else {
            String::new()
        };
        let side_sizes = if self.sizes {
            ", COALESCE(c.request_bytes, s.request_bytes) AS request_bytes, \
               COALESCE(c.response_bytes, s.response_bytes) AS response_bytes"
        } else {
            ""
        };
        let columns = format!(
            "{TRACE_ID}, {SERVICE_NAME}, {SERVICE_VERSION}, CAST({START_TIME} AS BIGINT) AS start_ns, {DURATION_NS}, \
             {STATUS_CODE} = 'ERROR' AS error{sizes}"
        );
        format!(
            "calls AS (
  SELECT CAST(c.{SERVICE_NAME} AS VARCHAR) AS client_service, CAST(c.{SERVICE_VERSION} AS VARCHAR) AS client_version,
         CAST(c.{SPAN_KIND} AS VARCHAR) AS client_kind,
         CAST(s.{SERVICE_NAME} AS VARCHAR) AS server_service, CAST(s.{SERVICE_VERSION} AS VARCHAR) AS server_version,
         CAST(s.{SPAN_NAME} AS VARCHAR) AS operation, s.start_ns,
         c.{DURATION_NS} AS client_ns, s.{DURATION_NS} AS server_ns, c.error AS client_error, s.error AS server_error{side_sizes}
  FROM (SELECT {columns}, {PARENT_SPAN_ID}, {SPAN_NAME} FROM {SPANS_TABLE}
        WHERE {START_TIME} >= {start} AND {START_TIME} < {end} AND {SPAN_KIND} IN ('SERVER', 'CONSUMER')
          AND {PARENT_SPAN_ID} IS NOT NULL{server}) s
  JOIN (SELECT {columns}, {SPAN_ID}, {SPAN_KIND} FROM {SPANS_TABLE}
        WHERE {START_TIME} >= {lead} AND {START_TIME} < {end}{client}) c
    ON s.{TRACE_ID} = c.{TRACE_ID} AND s.{PARENT_SPAN_ID} = c.{SPAN_ID}
  WHERE s.{SERVICE_NAME} <> c.{SERVICE_NAME})"
        )
    }
}
