//! The OpenAPI 3 document of `/api/v1`, generated from the handlers'
//! `#[utoipa::path]` attributes, their parameter structs and the response
//! types; served at `/api/v1/openapi.json`.

use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::v1;

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
        Every endpoint is scoped to the tenant named by the X-Scope-OrgID header (`default` without it). \
        A trace matches a search when **one of its spans** passes every filter given, as in Jaeger and Tempo: \
        `service=a&tags=k=v` finds traces with a span of `a` that has `k=v`."
    ),
    paths(
        v1::search,
        v1::services,
        v1::operations,
        v1::tag_keys,
        v1::tag_values,
        v1::dependencies,
        v1::latency,
        v1::latency_histogram,
        v1::get_traces,
        v1::get_trace,
    )
)]
pub(crate) struct ApiDoc;
