//! spanlake's web UI: pages rendered on the server with Leptos (`view!`
//! trees to HTML), charts and graphs as inline SVG, one stylesheet, and no
//! script needed: every page is a link or a form away (one small script
//! reads a chosen trace file into a text area, for comfort). Routes:
//!
//! - `/`: a first-run page while there is no data, an overview after;
//! - `/search`: the query in the URL, the same parameters as `/api/v1/search`;
//! - `/traces/{id}`: the waterfall (`?span=` opens a span), `/traces?id=` jumps there,
//!   `/traces/view` shows a trace file without storing it;
//! - `/dependencies`: the service graph with each hop's cost, by service or by version;
//! - `/services` and `/services/{service}`: latency, retries and abandoned work;
//!   `/services/{service}/versions`: versions, the canary verdict, callers per version;
//! - `/sql`: the SQL console, `/sql.csv` its CSV download;
//! - `/login`: with `--auth-token`, the token for a cookie ([`public_router`]).
//!
//! Everything from span data goes through Leptos' escaping.

mod charts;
/// How numbers, times and names read, on the pages and in the terminal.
pub mod format;
mod layout;
mod pages;
mod waterfall;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use spanlake_query::QueryEngine;
use spanlake_query::auth::AuthToken;

pub fn router(engine: Arc<QueryEngine>) -> Router {
    Router::new()
        .route("/", get(pages::home::home))
        .route("/search", get(pages::search::search))
        .route("/traces", get(pages::trace::jump))
        .route(
            "/traces/view",
            get(pages::trace::view_form)
                .post(pages::trace::view_file)
                .layer(DefaultBodyLimit::max(pages::trace::MAX_FILE_BYTES)),
        )
        .route("/traces/{trace_id}", get(pages::trace::trace))
        .route("/dependencies", get(pages::dependencies::dependencies))
        .route("/services", get(pages::service::services))
        .route("/services/{service}", get(pages::service::service))
        .route("/services/{service}/versions", get(pages::versions::versions))
        .route("/sql", get(pages::sql::console).post(pages::sql::run))
        .route("/sql.csv", get(pages::sql::csv))
        .with_state(engine)
}

/// What a visitor without the token may see: the stylesheet and, when
/// there is a token, the login page.
pub fn public_router(token: Option<AuthToken>) -> Router {
    let router = Router::new().route("/ui/style.css", get(stylesheet));
    match token {
        Some(token) => router
            .merge(Router::new().route("/login", get(pages::login::form).post(pages::login::login)).with_state(token)),
        None => router,
    }
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], STYLE)
}

const STYLE: &str = include_str!("style.css");
