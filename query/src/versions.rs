//! The versions of a service (`service.version` of its resource): what
//! each one serves, who still calls it, what it calls, and a canary held
//! against its baseline (`compare.rs`). Every answer is one or a few
//! DataFusion aggregates over the `spans` table of a window, run in one
//! session, so the API and the SQL table functions (`functions/analysis.rs`)
//! share them.

pub mod compare;

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::schema::{DURATION_NS, SERVICE_VERSION, SPAN_KIND, START_TIME, STATUS_CODE};
use utoipa::ToSchema;

use crate::calls::CallFilter;
use crate::engine::{QueryEngine, SPANS_TABLE, session_rows};
use crate::error::QueryError;
use crate::latency::percentile_ms_sql;
use crate::params::{Params, SpanFilter, Window};

/// The spans a service serves requests with.
pub(crate) const ENTRY_KINDS: &str = "('SERVER', 'CONSUMER')";

/// The versions of one service in a window, the newest seen first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub service: String,
    pub versions: Vec<VersionStats>,
}

/// One version's requests (its SERVER and CONSUMER spans) in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionStats {
    /// Absent for spans whose resource names no version.
    pub version: Option<String>,
    pub first_seen_unix_nano: i64,
    pub last_seen_unix_nano: i64,
    pub requests: i64,
    pub errors: i64,
    /// Requests per second over the whole window.
    pub requests_per_second: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// This version's part of the service's requests, 0 to 1.
    pub share: f64,
}

#[derive(Debug, Deserialize)]
struct VersionRow {
    version: Option<String>,
    first_seen: i64,
    last_seen: i64,
    requests: i64,
    errors: i64,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
}

/// The calling services (and their versions) of one version of a service,
/// or the called ones of one version of a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionCalls {
    pub service: String,
    pub version: String,
    /// Requests this version served in the window (callers), or calls it
    /// made to instrumented services (callees).
    pub calls: i64,
    /// Callers: requests whose caller is not in the window's spans (a root
    /// span, an uninstrumented client, a caller that started long before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unattributed_calls: Option<i64>,
    /// Callers: no request reached this version in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_to_remove: Option<bool>,
    /// Busiest first.
    pub peers: Vec<VersionPeer>,
}

/// A service version on the other end of the calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionPeer {
    pub service: String,
    pub version: Option<String>,
    pub calls: i64,
    pub errors: i64,
    pub last_call_unix_nano: i64,
}

/// Which side of the calls the named version is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Who calls it.
    Callers,
    /// What it calls.
    Callees,
}

/// The condition on the requests `service` served in `window`.
pub(crate) fn requests_sql(service: &str, window: &Window, params: &mut Params) -> String {
    let filter = SpanFilter { service: Some(service.to_owned()), ..SpanFilter::default() };
    format!("{} AND {SPAN_KIND} IN {ENTRY_KINDS}", filter.where_sql(window, params))
}

/// A service's versions in `window`.
pub(crate) async fn versions(ctx: &SessionContext, service: &str, window: &Window) -> Result<VersionList, QueryError> {
    let mut params = Params::default();
    let requests = requests_sql(service, window, &mut params);
    let percentile = |p: f64| percentile_ms_sql(p, DURATION_NS);
    let sql = format!(
        "SELECT CAST({SERVICE_VERSION} AS VARCHAR) AS version,
                CAST(min({START_TIME}) AS BIGINT) AS first_seen, CAST(max({START_TIME}) AS BIGINT) AS last_seen,
                count(*) AS requests, sum(CASE WHEN {STATUS_CODE} = 'ERROR' THEN 1 ELSE 0 END) AS errors,
                {} AS p50, {} AS p90, {} AS p99
         FROM {SPANS_TABLE} WHERE {requests}
         GROUP BY 1 ORDER BY last_seen DESC, version",
        percentile(0.5),
        percentile(0.9),
        percentile(0.99)
    );
    let rows: Vec<VersionRow> = session_rows(ctx, &sql, params).await?;
    let total: i64 = rows.iter().map(|r| r.requests).sum();
    let seconds = window.duration_ns().max(1) as f64 / 1e9;
    let versions = rows
        .into_iter()
        .map(|r| VersionStats {
            version: r.version,
            first_seen_unix_nano: r.first_seen,
            last_seen_unix_nano: r.last_seen,
            requests: r.requests,
            errors: r.errors,
            requests_per_second: r.requests as f64 / seconds,
            error_rate: r.errors as f64 / r.requests.max(1) as f64,
            p50_ms: r.p50,
            p90_ms: r.p90,
            p99_ms: r.p99,
            share: r.requests as f64 / total.max(1) as f64,
        })
        .collect();
    Ok(VersionList { service: service.to_owned(), versions })
}

#[derive(Debug, Deserialize)]
struct PeerRow {
    service: Option<String>,
    version: Option<String>,
    calls: i64,
    errors: i64,
    last_call: i64,
}

#[derive(Debug, Deserialize)]
struct CountRow {
    calls: i64,
}

/// Who calls `version` of `service` (or what it calls), from the parent
/// links of the window's spans.
pub(crate) async fn version_calls(
    ctx: &SessionContext,
    service: &str,
    version: &str,
    direction: Direction,
    window: &Window,
) -> Result<VersionCalls, QueryError> {
    let (other, filter) = match direction {
        Direction::Callers => (
            "client",
            CallFilter {
                server_service: Some(service.to_owned()),
                server_version: Some(version.to_owned()),
                ..CallFilter::default()
            },
        ),
        Direction::Callees => (
            "server",
            CallFilter {
                client_service: Some(service.to_owned()),
                client_version: Some(version.to_owned()),
                ..CallFilter::default()
            },
        ),
    };
    let mut params = Params::default();
    let calls = filter.cte(window, &mut params);
    let sql = format!(
        "WITH {calls}
         SELECT {other}_service AS service, {other}_version AS version, count(*) AS calls,
                sum(CASE WHEN client_error OR server_error THEN 1 ELSE 0 END) AS errors, max(start_ns) AS last_call
         FROM calls GROUP BY 1, 2 ORDER BY calls DESC, service, version"
    );
    let rows: Vec<PeerRow> = session_rows(ctx, &sql, params).await?;
    let peers: Vec<VersionPeer> = rows
        .into_iter()
        .map(|r| VersionPeer {
            service: r.service.unwrap_or_default(),
            version: r.version,
            calls: r.calls,
            errors: r.errors,
            last_call_unix_nano: r.last_call,
        })
        .collect();
    let linked: i64 = peers.iter().map(|p| p.calls).sum();
    let mut answer = VersionCalls {
        service: service.to_owned(),
        version: version.to_owned(),
        calls: linked,
        unattributed_calls: None,
        safe_to_remove: None,
        peers,
    };
    if direction == Direction::Callers {
        // Every request the version served counts, linked to a caller or not.
        let mut params = Params::default();
        let requests = requests_sql(service, window, &mut params);
        let sql = format!(
            "SELECT count(*) AS calls FROM {SPANS_TABLE} WHERE {requests} AND {SERVICE_VERSION} = {}",
            params.text(version)
        );
        let served = session_rows::<CountRow>(ctx, &sql, params).await?.first().map_or(0, |r| r.calls);
        answer.calls = served;
        answer.unattributed_calls = Some((served - linked).max(0));
        answer.safe_to_remove = Some(served == 0);
    }
    Ok(answer)
}

impl QueryEngine {
    pub async fn versions(&self, tenant: &TenantId, service: &str, window: &Window) -> Result<VersionList, QueryError> {
        let (service, window) = (service.to_owned(), *window);
        self.analyse(tenant, |ctx| async move { versions(&ctx, &service, &window).await }).await
    }

    pub async fn version_calls(
        &self,
        tenant: &TenantId,
        service: &str,
        version: &str,
        direction: Direction,
        window: &Window,
    ) -> Result<VersionCalls, QueryError> {
        let (service, version, window) = (service.to_owned(), version.to_owned(), *window);
        self.analyse(tenant, |ctx| async move { version_calls(&ctx, &service, &version, direction, &window).await })
            .await
    }
}
