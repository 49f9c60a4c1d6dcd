//! One module per page.

pub(crate) mod dependencies;
pub(crate) mod home;
pub(crate) mod search;
pub(crate) mod service;
pub(crate) mod sql;
pub(crate) mod trace;

use axum::http::HeaderMap;
use spanlake_query::QueryError;
use spanlake_query::params::Query;
use spanlake_storage::TenantId;

/// The tenant a page shows: `X-Scope-OrgID`, as for the API.
pub(crate) fn tenant(headers: &HeaderMap) -> Result<TenantId, QueryError> {
    spanlake_query::api::tenant(headers)
}

/// The query string with repeats kept.
pub(crate) fn query(pairs: Vec<(String, String)>) -> Query {
    Query::from_pairs(pairs)
}
