//! The OpenAPI 3 document of `/api/v1`, generated from the handlers'
//! `#[utoipa::path]` attributes and the response types; served at
//! `/api/v1/openapi.json`. The structs here document query parameters
//! (the handlers parse them with `params::Query`, which keeps repeats).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::api;

/// Span-level filters. A trace matches when **one of its spans** passes
/// every filter given, as in Jaeger and Tempo: `service=a&tags=k=v` finds
/// traces with a span of `a` that has `k=v`, not a trace where one span is
/// of `a` and another has `k=v`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct SpanFilterParams {
    /// Service name.
    service: Option<String>,
    /// Span name.
    operation: Option<String>,
    /// server, client, producer, consumer or internal.
    #[param(rename = "spanKind")]
    span_kind: Option<String>,
    /// Repeatable, all must hold: `key=value`, `key!=value` (set, to another
    /// value), `key=~regex`, or `key` (set). Keys are attribute keys of the
    /// span or its resource (`http.route`, `service.version`), or
    /// `span.kind`, `status.code`, `status.message`, `error`.
    tags: Option<Vec<String>>,
    /// `250ms`, `1.5s`, or a number of microseconds.
    #[param(rename = "minDuration")]
    min_duration: Option<String>,
    #[param(rename = "maxDuration")]
    max_duration: Option<String>,
    /// `error`: only failed spans.
    status: Option<String>,
}

/// A time window: `start`/`end` (RFC 3339 or unix ms), or `lookback`
/// (`1h`, `30m`) back from `end` (default now). Default: the last hour.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct WindowParams {
    start: Option<String>,
    end: Option<String>,
    lookback: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// `start_desc` (default), `duration_desc` or `duration_asc`.
    sort: Option<String>,
    /// Traces per page, 1 to 1000; 20 by default.
    limit: Option<usize>,
    /// `nextCursor` of the previous page. The window is fixed by the first
    /// page, so spans arriving meanwhile never move a trace across pages.
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct SeriesParams {
    /// Step of the series (`1m`, `30s`); about 60 steps by default.
    step: Option<String>,
    /// A dedicated resource attribute (`service.version`,
    /// `deployment.environment.name`, ...): one series per value.
    #[param(rename = "groupBy")]
    group_by: Option<String>,
}

/// Every error answer: 400 for bad parameters (the message starts with the
/// parameter's name), 404, 500.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ApiError {
    pub(crate) error: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "spanlake API",
        description = "Traces, services, dependencies and latency over spanlake's spans. \
        Every endpoint is scoped to the tenant named by the X-Scope-OrgID header (`default` without it)."
    ),
    paths(
        api::search,
        api::services,
        api::operations,
        api::tag_keys,
        api::tag_values,
        api::dependencies,
        api::latency,
        api::latency_histogram,
        api::get_traces,
        api::get_trace,
    )
)]
pub(crate) struct ApiDoc;
