//! `/`: how to send spans while there are none, then an overview.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use spanlake_query::QueryEngine;
use spanlake_query::api::Tenant;

use crate::format;
use crate::layout::{Nav, error_page, page, service_link};

const EXAMPLE: &str = r#"curl -s http://127.0.0.1:4318/v1/traces -H 'Content-Type: application/json' -d '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"hello"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"first span","kind":2,"startTimeUnixNano":"'$(date +%s%N)'","endTimeUnixNano":"'$(date +%s%N)'"}]}]}]}'"#;

pub(crate) async fn home(State(engine): State<Arc<QueryEngine>>, headers: HeaderMap) -> Response {
    let tenant = match Tenant::of(&headers) {
        Ok(tenant) => tenant,
        Err(error) => return error_page("spanlake", Nav::Home, &error),
    };
    let services = match engine.services(&tenant, None).await {
        Ok(services) => services,
        Err(error) => return error_page("spanlake", Nav::Home, &error),
    };
    if services.is_empty() {
        return page("Welcome", Nav::Home, first_run().into_any()).into_response();
    }
    let count = services.len();
    let list = services
        .into_iter()
        .map(|s| {
            let search = format!("/search?{}", format::query(&[("service", &s), ("lookback", "1h")]));
            view! {
                <tr>
                    <td>{service_link(&s)}</td>
                    <td><a href=search>"Traces of the last hour"</a></td>
                </tr>
            }
        })
        .collect_view();
    let body = view! {
        <h1>"spanlake"</h1>
        <div class="panel">
            <p>{format!("{count} services have sent spans. ")}<a href="/search">"Search traces"</a>", see the "
            <a href="/dependencies">"service graph"</a>", or ask "<a href="/sql">"SQL"</a>"."</p>
            <table><tr><th>"Service"</th><th></th></tr>{list}</table>
        </div>
    }
    .into_any();
    page("Start", Nav::Home, body).into_response()
}

fn first_run() -> impl IntoView {
    view! {
        <h1>"Welcome to spanlake"</h1>
        <div class="panel first-run">
            <p>"No spans yet. Point any OpenTelemetry SDK or Collector at spanlake:"</p>
            <table>
                <tr><th>"Protocol"</th><th>"Endpoint"</th></tr>
                <tr><td>"OTLP/gRPC"</td><td><code>"127.0.0.1:4317"</code></td></tr>
                <tr><td>"OTLP/HTTP (protobuf or JSON)"</td><td><code>"http://127.0.0.1:4318/v1/traces"</code></td></tr>
                <tr><td>"Zipkin v2"</td><td><code>"http://127.0.0.1:9411/api/v2/spans"</code></td></tr>
            </table>
            <h2>"Send one span by hand"</h2>
            <pre>{EXAMPLE}</pre>
            <h2>"Or watch demo traffic"</h2>
            <p>"Restart with "<code>"spanlake serve --demo"</code>
            " (or "<code>"cargo run --release -- serve --demo"</code>
            "): a small shop sends traces through the OTLP receiver, and they show here within seconds."</p>
        </div>
    }
}
