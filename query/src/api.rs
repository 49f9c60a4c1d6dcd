//! spanlake's HTTP JSON API under `/api/v1`, and the one place where query
//! errors become HTTP responses.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde::Deserialize;
use serde_json::json;
use spanlake_storage::ids::parse_trace_id;
use spanlake_storage::{TENANT_HEADER, TenantId};
use tracing::error;

use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::render::JsonResult;

pub fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/api/v1/traces/{trace_id}", get(get_trace))
        .route("/api/v1/sql", post(post_sql))
        .with_state(engine)
}

/// `GET /api/v1/traces/{trace_id}`: the whole trace as OTLP/JSON, in a form
/// that `POST /v1/traces` accepts unchanged.
async fn get_trace(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, QueryError> {
    let tenant = tenant(&headers)?;
    let trace_id = parse_trace_id(&id).map_err(|e| QueryError::BadRequest(e.to_string()))?;
    match engine.trace(&tenant, &trace_id).await? {
        Some(resource_spans) => Ok(Json(ExportTraceServiceRequest { resource_spans }).into_response()),
        None => Err(QueryError::NotFound(format!("trace {id} not found"))),
    }
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
}

/// `POST /api/v1/sql` with `{"sql": "..."}`: JSON rows, or CSV when the
/// client accepts `text/csv`.
async fn post_sql(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, QueryError> {
    let Json(request) = body
        .map_err(|e| QueryError::BadRequest(format!("expected a JSON body {{\"sql\": \"...\"}}: {}", e.body_text())))?;
    let result = engine.sql(&tenant(&headers)?, &request.sql).await?;
    let json = JsonResult::from_result(&result).map_err(|e| QueryError::Render(e.to_string()))?;
    if accepts_csv(&headers) {
        let csv = json.to_csv().map_err(|e| QueryError::Render(e.to_string()))?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response());
    }
    Ok(Json(json).into_response())
}

/// The tenant named by `X-Scope-OrgID`, `default` without it.
pub fn tenant(headers: &HeaderMap) -> Result<TenantId, QueryError> {
    TenantId::from_header(headers.get(TENANT_HEADER).map(|v| v.as_bytes()))
        .map_err(|e| QueryError::BadRequest(format!("{e} (header X-Scope-OrgID)")))
}

fn accepts_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")))
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = match &self {
            QueryError::NotFound(_) => StatusCode::NOT_FOUND,
            e if e.is_client_error() => StatusCode::BAD_REQUEST,
            e => {
                error!(error = %e, "query failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}
