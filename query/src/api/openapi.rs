//! The OpenAPI 3 document of every read API family (`/api/v1`, Zipkin's,
//! Jaeger's and Tempo's), generated from the handlers' `#[utoipa::path]`
//! attributes, their parameter structs and the response types; served at
//! `/api/v1/openapi.json`. The other families' answers are their servers'
//! formats, named in each response's description.

use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::{OpenApi, ToSchema};

use super::{jaeger, tempo, v1, zipkin};

/// Every error answer: 400 for bad parameters (the message starts with the
/// parameter's name), 404, 500.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ApiError {
    pub(crate) error: String,
}

/// The 400 of the other families, whose error bodies are their servers'.
pub(crate) struct BadParameter;

impl<'s> utoipa::ToResponse<'s> for BadParameter {
    fn response() -> (&'s str, RefOr<Response>) {
        let description = "A parameter is missing or malformed; the message names it";
        ("BadParameter", ResponseBuilder::new().description(description).into())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "spanlake API",
        description = "Traces, services, dependencies and latency over spanlake's spans. \
        Every endpoint is scoped to the tenant named by the X-Scope-OrgID header (`default` without it). \
        A trace matches a search when **one of its spans** passes every filter given, as in Jaeger and Tempo: \
        `service=a&tags=k=v` finds traces with a span of `a` that has `k=v`. \
        Zipkin's v2, Jaeger's (legacy HTTP and api_v3) and Tempo's read APIs answer in their servers' formats."
    ),
    paths(
        v1::search,
        v1::services,
        v1::operations,
        v1::tag_keys,
        v1::tag_values,
        v1::dependencies,
        v1::versions,
        v1::compare_versions,
        v1::version_callers,
        v1::version_callees,
        v1::retries,
        v1::latency,
        v1::latency_histogram,
        v1::get_traces,
        v1::get_trace,
        v1::post_sql,
        super::trace_by_id,
    )
)]
pub(crate) struct ApiDoc;

/// `/api/v1`'s document with the other families' parts.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    for part in [zipkin::document(), jaeger::document(), tempo::document()] {
        document.merge(part);
    }
    document
}
