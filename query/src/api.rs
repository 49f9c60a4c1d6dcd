//! The HTTP read APIs, one module per family over the same domain methods:
//! spanlake's own `/api/v1` (`v1.rs`, documented in `openapi.rs`), Zipkin's
//! v2 (`zipkin.rs`), Jaeger's (`jaeger.rs`: its legacy HTTP API, api_v3
//! over HTTP in `jaeger/v3.rs` and over gRPC in `jaeger/grpc.rs`) and
//! Tempo's (`tempo.rs`). Here: what they share, the
//! tenant and query-string extractors and the one place where query errors
//! become HTTP responses.

pub mod jaeger;
mod openapi;
mod tempo;
pub mod v1;
mod zipkin;

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use spanlake_storage::{TENANT_HEADER, TenantId};
use tracing::error;
use utoipa::IntoParams;

use crate::collectors::PARTIAL_HEADER;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{self, Unknown};
pub(crate) use openapi::ApiError;

/// Every read route of every family.
pub fn router(engine: Arc<QueryEngine>) -> Router {
    v1::router(Arc::clone(&engine))
        .merge(zipkin::router(Arc::clone(&engine)))
        .merge(jaeger::router(Arc::clone(&engine)))
        .merge(tempo::router(Arc::clone(&engine)))
        .merge(Router::new().route("/api/traces/{trace_id}", get(trace_by_id)).with_state(engine))
}

/// Marks the answers of `reads` computed while a collector of the cluster
/// could not be reached: they hold every file and the fresh spans of the
/// other collectors, and the [`PARTIAL_HEADER`] names the missing ones.
pub fn mark_partial(reads: Router, engine: Arc<QueryEngine>) -> Router {
    reads.layer(axum::middleware::map_response_with_state(engine, partial_header))
}

async fn partial_header(State(engine): State<Arc<QueryEngine>>, mut response: Response) -> Response {
    if let Some(value) = engine.partial().and_then(|p| HeaderValue::from_str(&p.describe()).ok()) {
        response.headers_mut().insert(PARTIAL_HEADER, value);
    }
    response
}

/// `GET /api/traces/{id}` is both Jaeger's and Tempo's: Tempo's protobuf
/// when the client asks for `application/protobuf` (as Grafana's Tempo data
/// source does), Jaeger's JSON otherwise.
#[utoipa::path(get, path = "/api/traces/{trace_id}", tag = "jaeger", operation_id = "jaeger_or_tempo_trace",
    params(("trace_id" = String, Path, pattern = r"^([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$")),
    responses((status = 200, description = "Jaeger's JSON model; with `Accept: application/protobuf`, Tempo's `tempopb.Trace`"),
        (status = 404, description = "No span of it is stored")))]
async fn trace_by_id(State(engine): State<Arc<QueryEngine>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if tempo::wants_protobuf(&headers) {
        tempo::trace_v1(&engine, &headers, &id).await
    } else {
        jaeger::trace(&engine, &headers, &id).await
    }
}

/// The tenant named by `X-Scope-OrgID`, `default` without it.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

impl Tenant {
    pub fn of(headers: &axum::http::HeaderMap) -> Result<TenantId, QueryError> {
        TenantId::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
            .map_err(|e| QueryError::BadRequest(format!("{e} (header X-Scope-OrgID)")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, QueryError> {
        Self::of(&parts.headers).map(Self)
    }
}

/// An endpoint's parameters, described by `T` (see [`params::parse`]);
/// parameters `T` does not describe are refused.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + IntoParams> FromRequestParts<S> for Query<T> {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, QueryError> {
        params::parse(parts.uri.query().unwrap_or_default(), Unknown::Refuse).map(Self)
    }
}

/// The tenant and parameters of a request to another server's API (whose
/// servers ignore parameters they do not know), refused in that API's
/// error shape `E`.
#[derive(Debug)]
pub(crate) struct Request<T, E> {
    pub(crate) tenant: TenantId,
    pub(crate) params: T,
    error: PhantomData<E>,
}

impl<S, T, E> FromRequestParts<S> for Request<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned + IntoParams,
    E: From<QueryError> + IntoResponse,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, E> {
        let tenant = Tenant::of(&parts.headers)?;
        let params = params::parse(parts.uri.query().unwrap_or_default(), Unknown::Ignore)?;
        Ok(Self { tenant, params, error: PhantomData })
    }
}

/// Logs what failed on our side; the client's mistakes are only answered.
pub(crate) fn log_failure(error: &QueryError) {
    if error.status().is_server_error() && !matches!(error, QueryError::Timeout(_)) {
        error!(%error, "query failed");
    }
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        log_failure(&self);
        (self.status(), Json(ApiError { error: self.to_string() })).into_response()
    }
}
