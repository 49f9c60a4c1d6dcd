//! Calls between services read from the parent links of spans: a SERVER or
//! CONSUMER span of one service whose parent is a span of another, each
//! side with its service's version. The version APIs (who calls a version,
//! what a version calls), the graph split by version and the cost of each
//! hop read it; the dependency graph's counts come from the edge files
//! (`dependencies.rs`), which also link Zipkin's shared spans and leaf
//! calls.

use spanlake_storage::schema::{
    DURATION_NS, EVENTS, PARENT_SPAN_ID, SERVICE_NAME, SERVICE_VERSION, SPAN_ATTRIBUTES, SPAN_ID, SPAN_KIND, SPAN_NAME,
    START_TIME, STATUS_CODE, TRACE_ID,
};

use crate::engine::SPANS_TABLE;
use crate::params::{Params, Window};
use crate::versions::ENTRY_KINDS;

/// How long before the window a caller's span may start: its server span
/// starts a little after it.
const CALLER_LEAD_NS: i64 = 60_000_000_000;

/// The span attributes that carry a message's size, request side and
/// response side; the first one set counts, the client's before the
/// server's, then the sizes of gRPC's `message` events.
pub(crate) const REQUEST_BYTES: [&str; 2] = ["http.request.body.size", "messaging.message.body.size"];
pub(crate) const RESPONSE_BYTES: [&str; 1] = ["http.response.body.size"];
const RPC_MESSAGE_SIZE: &str = "rpc.message.uncompressed_size";

/// Which calls: each side's service and version, all when not given.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallFilter {
    pub client_service: Option<String>,
    pub client_version: Option<String>,
    pub server_service: Option<String>,
    pub server_version: Option<String>,
    /// Only callers of this span kind (CLIENT for the cost of a hop).
    pub client_kind: Option<&'static str>,
    /// Read the message sizes too, from these of [`REQUEST_BYTES`] and
    /// [`RESPONSE_BYTES`] (the ones the window's spans have: decoding the
    /// attribute maps of every span is most of a scan's cost) and the
    /// message events.
    pub sizes: Option<Vec<&'static str>>,
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
        let mut client = side(&self.client_service, &self.client_version, params);
        if let Some(kind) = self.client_kind {
            client.push_str(&format!(" AND {SPAN_KIND} = '{kind}'"));
        }
        let (start, end) = (params.time(window.start_ns), params.time(window.end_ns));
        let lead = params.time(window.start_ns.saturating_sub(CALLER_LEAD_NS));
        // A side's sizes: its attributes, else the gRPC messages it sent
        // (the request, on a client) and received.
        let sizes = |sent: &str, received: &str| {
            let Some(present) = &self.sizes else { return String::new() };
            let bytes = |keys: &[&str], message: &str| {
                let mut tries: Vec<String> = keys
                    .iter()
                    .filter(|k| present.contains(k))
                    .map(|k| format!("TRY_CAST({SPAN_ATTRIBUTES}['{k}'] AS BIGINT)"))
                    .collect();
                tries.push(format!(
                    "event_attribute_sum({EVENTS}, '{RPC_MESSAGE_SIZE}', 'rpc.message.type', '{message}')"
                ));
                format!("COALESCE({})", tries.join(", "))
            };
            let (request, response) = (bytes(&REQUEST_BYTES, sent), bytes(&RESPONSE_BYTES, received));
            format!(", {request} AS request_bytes, {response} AS response_bytes")
        };
        let side_sizes = if self.sizes.is_some() {
            ", COALESCE(c.request_bytes, s.request_bytes) AS request_bytes, \
               COALESCE(c.response_bytes, s.response_bytes) AS response_bytes"
        } else {
            ""
        };
        let columns = |sizes: String| {
            format!(
                "{TRACE_ID}, {SERVICE_NAME}, {SERVICE_VERSION}, CAST({START_TIME} AS BIGINT) AS start_ns, \
                 {DURATION_NS}, {STATUS_CODE} = 'ERROR' AS error{sizes}"
            )
        };
        let server_columns = columns(sizes("RECEIVED", "SENT"));
        let client_columns = columns(sizes("SENT", "RECEIVED"));
        let servers = format!(
            "(SELECT {server_columns}, {PARENT_SPAN_ID}, {SPAN_NAME} FROM {SPANS_TABLE}
        WHERE {START_TIME} >= {start} AND {START_TIME} < {end} AND {SPAN_KIND} IN {ENTRY_KINDS}
          AND {PARENT_SPAN_ID} IS NOT NULL{server}) s"
        );
        let clients = format!(
            "(SELECT {client_columns}, {SPAN_ID}, {SPAN_KIND} FROM {SPANS_TABLE}
        WHERE {START_TIME} >= {lead} AND {START_TIME} < {end}{client}) c"
        );
        // The hash table is built on the side written first: the servers
        // (every span can be a caller, only some are servers), unless only
        // the caller's service is named.
        let client_first = self.client_service.is_some() && self.server_service.is_none();
        let (first, second) = if client_first { (clients, servers) } else { (servers, clients) };
        format!(
            "calls AS (
  SELECT CAST(c.{SERVICE_NAME} AS VARCHAR) AS client_service, CAST(c.{SERVICE_VERSION} AS VARCHAR) AS client_version,
         CAST(c.{SPAN_KIND} AS VARCHAR) AS client_kind,
         CAST(s.{SERVICE_NAME} AS VARCHAR) AS server_service, CAST(s.{SERVICE_VERSION} AS VARCHAR) AS server_version,
         CAST(s.{SPAN_NAME} AS VARCHAR) AS operation, s.start_ns,
         c.{DURATION_NS} AS client_ns, s.{DURATION_NS} AS server_ns, c.error AS client_error, s.error AS server_error{side_sizes}
  FROM {first}
  JOIN {second}
    ON s.{TRACE_ID} = c.{TRACE_ID} AND s.{PARENT_SPAN_ID} = c.{SPAN_ID}
  WHERE s.{SERVICE_NAME} <> c.{SERVICE_NAME})"
        )
    }
}
