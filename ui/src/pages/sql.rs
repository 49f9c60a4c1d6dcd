//! `/sql`: a console for spanlake's read-only SQL. The schema of `spans`
//! beside an example; results as a table (the first rows), errors inline,
//! and the same query as CSV from `/sql.csv`. The engine refuses anything
//! but queries and bounds each in memory and time.

use std::sync::Arc;

use arrow::datatypes::DataType;
use axum::extract::{Form, Query as RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use serde::Deserialize;
use spanlake_query::api::Tenant;
use spanlake_query::{JsonResult, QueryEngine, QueryError, render};
use spanlake_storage::schema;

use crate::format;
use crate::layout::{Nav, page};

const EXAMPLE: &str = "SELECT service_name, span_name, count(*) AS spans,
       approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) / 1e6 AS p99_ms
FROM spans
WHERE start_time > now() - INTERVAL '1 hour'
GROUP BY 1, 2
ORDER BY spans DESC
LIMIT 20";
/// Rows the page shows; the CSV has them all.
const SHOWN_ROWS: usize = 500;

#[derive(Debug, Deserialize)]
pub(crate) struct SqlForm {
    sql: Option<String>,
}

pub(crate) async fn console() -> Response {
    page("SQL", Nav::Sql, body(EXAMPLE, None).into_any()).into_response()
}

pub(crate) async fn run(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Form(form): Form<SqlForm>,
) -> Response {
    let sql = form.sql.unwrap_or_default();
    let result = answer(&engine, &headers, &sql).await;
    let status = result.as_ref().map_or_else(QueryError::status, |_| StatusCode::OK);
    (status, page("SQL", Nav::Sql, body(&sql, Some(result)).into_any())).into_response()
}

/// `/sql.csv?sql=`: the whole result as a CSV download.
pub(crate) async fn csv(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    RawQuery(form): RawQuery<SqlForm>,
) -> Response {
    let sql = form.sql.unwrap_or_default();
    let csv =
        answer(&engine, &headers, &sql).await.and_then(|r| r.to_csv().map_err(|e| QueryError::Render(e.to_string())));
    match csv {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"spanlake.csv\""),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => (error.status(), error.to_string()).into_response(),
    }
}

async fn answer(engine: &QueryEngine, headers: &HeaderMap, sql: &str) -> Result<JsonResult, QueryError> {
    engine.sql(&Tenant::of(headers)?, sql).await?.to_json()
}

fn body(sql: &str, result: Option<Result<JsonResult, QueryError>>) -> impl IntoView {
    let columns = schema::span_schema()
        .fields()
        .iter()
        .map(|f| view! { <tr><td class="mono">{f.name().clone()}</td><td class="muted mono">{type_name(f.data_type())}</td></tr> })
        .collect_view();
    let csv = format!("/sql.csv?{}", format::query(&[("sql", sql)]));
    let result = result.map(|r| match r {
        Ok(table) => table_view(table, csv).into_any(),
        Err(error) => view! { <p class="error sql-error">{error.to_string()}</p> }.into_any(),
    });
    view! {
        <h1>"SQL"</h1>
        <div class="sql-layout chart-row">
            <div>
                <form class="panel" method="post" action="/sql">
                    <textarea name="sql" rows="12" spellcheck="false">{sql.to_owned()}</textarea>
                    <p><button type="submit">"Run"</button>" "<span class="muted">"Read-only: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE. Tables: spans, trace_index, trace_fragments."</span></p>
                </form>
                {result}
            </div>
            <div class="panel schema"><h2>"spans"</h2><table class="kv">{columns}</table></div>
        </div>
    }
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Dictionary(_, value) => value.to_string(),
        DataType::Map(..) => "map<text, text>".into(),
        DataType::List(item) => {
            format!("list<{}>", if matches!(item.data_type(), DataType::Struct(_)) { "struct" } else { "value" })
        }
        other => other.to_string(),
    }
}

fn table_view(table: JsonResult, csv: String) -> impl IntoView {
    let total = table.rows.len();
    let header = table.columns.iter().map(|c| view! { <th>{c.name.clone()}</th> }).collect_view();
    let rows = table
        .rows
        .iter()
        .take(SHOWN_ROWS)
        .map(|row| {
            let cells = row.iter().map(|v| view! { <td>{render::cell_text(v)}</td> }).collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    let note = if total > SHOWN_ROWS {
        format!("{total} rows; the first {SHOWN_ROWS} shown")
    } else {
        format!("{total} rows")
    };
    view! {
        <div class="panel sql-result">
            <p><span class="muted">{note}</span>" "<a class="button quiet" href=csv download="spanlake.csv">"Download CSV"</a></p>
            <div style="overflow-x:auto"><table>{header}{rows}</table></div>
        </div>
    }
}
