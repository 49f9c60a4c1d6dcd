//! spanlake's web UI, rendered on the server with Leptos. For now one page
//! at `/` that says where to send spans and how to query them.

use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use leptos::prelude::*;
use spanlake_query::QueryEngine;

pub fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new().route("/", get(home)).with_state(engine)
}

async fn home() -> Html<String> {
    Html(format!("<!DOCTYPE html>{}", home_page().to_html()))
}

fn home_page() -> impl IntoView {
    view! {
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <title>"spanlake"</title>
            </head>
            <body>
                <h1>"spanlake"</h1>
                <p>"Send spans over OTLP: gRPC on port 4317, HTTP on port 4318 ("<code>"POST /v1/traces"</code>")."</p>
                <p>"Query them: "<code>"POST /api/v1/sql"</code>" or "<code>"GET /api/v1/traces/{trace_id}"</code>"."</p>
            </body>
        </html>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_page_names_the_endpoints() {
        let html = home_page().to_html();
        assert!(html.contains("4317") && html.contains("/api/v1/sql"), "{html}");
    }
}
