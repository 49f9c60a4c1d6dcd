//! `/services` lists the services; `/services/{service}` shows one (and
//! optionally one operation): request rate, error rate and p50/p90/p99
//! over time, a duration histogram, the operations table, and the same
//! split by `service.version`, so a canary stands beside the version it
//! replaces (its verdict is on the versions page), and the retries and
//! abandoned work of the calls it makes and serves.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query as RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use spanlake_query::api::Tenant;
use spanlake_query::api::v1::LatencyParams;
use spanlake_query::latency::{LatencySeries, OperationStats, Point};
use spanlake_query::params::parse_pairs;
use spanlake_query::retries::Retries;
use spanlake_query::{QueryEngine, QueryError};

use crate::charts::{self, Line};
use crate::format;
use crate::layout::{Nav, error_page, lookback_links, page, service_link};

const PERCENTILES: [(&str, &str); 3] =
    [("p50", "hsl(210, 70%, 50%)"), ("p90", "hsl(35, 85%, 50%)"), ("p99", "hsl(0, 70%, 52%)")];

pub(crate) async fn services(State(engine): State<Arc<QueryEngine>>, headers: HeaderMap) -> Response {
    let tenant = match Tenant::of(&headers) {
        Ok(tenant) => tenant,
        Err(error) => return error_page("Services", Nav::Services, &error),
    };
    let services = match engine.services(&tenant, None).await {
        Ok(services) => services,
        Err(error) => return error_page("Services", Nav::Services, &error),
    };
    let rows = services.into_iter().map(|s| view! { <tr><td>{service_link(&s)}</td></tr> }).collect_view();
    let body = view! {
        <h1>"Services"</h1>
        <div class="panel"><table><tr><th>"Service"</th></tr>{rows}</table></div>
    }
    .into_any();
    page("Services", Nav::Services, body).into_response()
}

pub(crate) async fn service(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    RawQuery(pairs): RawQuery<Vec<(String, String)>>,
) -> Response {
    match render(&engine, &headers, &service, pairs).await {
        Ok(response) => response,
        Err(error) => error_page(&service, Nav::Services, &error),
    }
}

async fn render(
    engine: &QueryEngine,
    headers: &HeaderMap,
    service: &str,
    pairs: Vec<(String, String)>,
) -> Result<Response, QueryError> {
    let tenant = Tenant::of(headers)?;
    let lookback = format::value(&pairs, "lookback").unwrap_or("1h").to_owned();
    let operation = format::value(&pairs, "operation").map(str::to_owned);
    let mut base = vec![("service".to_owned(), service.to_owned()), ("lookback".to_owned(), lookback.clone())];
    if let Some(operation) = &operation {
        base.push(("operation".into(), operation.clone()));
    }
    let request = parse_pairs::<LatencyParams>(&base)?.request()?;
    let mut by_version = base.clone();
    by_version.push(("groupBy".into(), "service.version".into()));
    let version_request = parse_pairs::<LatencyParams>(&by_version)?.request()?;

    let series = engine.latency(&tenant, &request).await?;
    let histogram = engine.latency_histogram(&tenant, &request).await?;
    let versions = engine.latency(&tenant, &version_request).await?;
    let operations = engine.operation_stats(&tenant, service, &request.window).await?;
    let retries = engine.retries(&tenant, Some(service), &request.window).await?;

    let (start, end) = (request.window.start_ns, request.window.end_ns);
    let points = series.series.into_iter().next().map(|s| s.points).unwrap_or_default();
    let rate = Line {
        label: "requests/s".into(),
        colour: format::service_colour(service),
        points: pick(&points, |p| Some(p.requests_per_second)),
    };
    let errors = Line {
        label: "errors %".into(),
        colour: "hsl(0, 70%, 52%)".into(),
        points: pick(&points, |p| p.error_rate.map(|r| r * 100.0)),
    };
    let latency: Vec<Line> = PERCENTILES
        .iter()
        .map(|(name, colour)| Line {
            label: name.to_string(),
            colour: colour.to_string(),
            points: pick(&points, |p| match *name {
                "p50" => p.p50_ms,
                "p90" => p.p90_ms,
                _ => p.p99_ms,
            }),
        })
        .collect();
    let buckets = histogram.series.into_iter().next().map(|s| s.buckets).unwrap_or_default();
    let buckets = buckets.into_iter().map(|b| (b.lower_ns, b.upper_ns, b.count)).collect();

    let choices = lookback_links(&lookback, |l| {
        format!("?{}", format::query(&[("lookback", l), ("operation", operation.as_deref().unwrap_or(""))]))
    });
    let title = match &operation {
        Some(operation) => format!("{service} · {operation}"),
        None => service.to_owned(),
    };
    let all_operations = operation.as_ref().map(|_| {
        let href = format!("/services/{}?lookback={lookback}", format::encode(service));
        view! { <a class="button quiet" href=href>"All operations"</a> }
    });
    let search = format!(
        "/search?{}",
        format::query(&[
            ("service", service),
            ("lookback", &lookback),
            ("operation", operation.as_deref().unwrap_or(""))
        ])
    );
    let versions_href = format!("/services/{}/versions?lookback={lookback}", format::encode(service));
    let body = view! {
        <h1>{title.clone()}</h1>
        <div class="pager">
            {choices}{all_operations}<a class="button quiet" href=search>"Search its traces"</a>
            <a class="button quiet" href=versions_href>"Versions and canary"</a>
        </div>
        <div class="chart-row">
            {charts::line_chart("Request rate", vec![rate], (start, end), 0.1, |v| format!("{v:.2}/s"))}
            {charts::line_chart("Error rate", vec![errors], (start, end), 5.0, |v| format!("{v:.1}%"))}
            {charts::line_chart("Latency", latency, (start, end), 1.0, format::millis)}
            {charts::histogram("Duration histogram", buckets)}
        </div>
        {versions_view(versions, start, end)}
        {operations_view(service, &lookback, operations)}
        {retries_view(retries)}
    }
    .into_any();
    Ok(page(&title, Nav::Services, body).into_response())
}

fn pick(points: &[Point], value: impl Fn(&Point) -> Option<f64>) -> Vec<(i64, Option<f64>)> {
    points.iter().map(|p| (p.time_unix_nano, value(p))).collect()
}

/// Per `service.version`: p99 side by side, and totals.
fn versions_view(versions: LatencySeries, start: i64, end: i64) -> AnyView {
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let lines: Vec<Line> = versions
        .series
        .into_iter()
        .map(|s| {
            let name = s.group.clone().unwrap_or_else(|| "(no version)".into());
            let total = totals.entry(name.clone()).or_default();
            for p in &s.points {
                total.0 += p.requests;
                total.1 += p.errors;
            }
            Line { colour: format::service_colour(&name), label: name, points: pick(&s.points, |p| p.p99_ms) }
        })
        .collect();
    let rows = totals
        .into_iter()
        .map(|(version, (requests, errors))| {
            let share = if requests > 0 { format!("{:.2}%", 100.0 * errors as f64 / requests as f64) } else { "–".into() };
            view! { <tr><td>{version}</td><td class="num">{requests}</td><td class="num">{errors}</td><td class="num">{share}</td></tr> }
        })
        .collect_view();
    view! {
        <h2>"By version"</h2>
        <div class="chart-row">
            {charts::line_chart("p99 latency per service.version", lines, (start, end), 1.0, format::millis)}
            <div class="panel">
                <h2>"Requests per version"</h2>
                <table><tr><th>"service.version"</th><th class="num">"Requests"</th><th class="num">"Errors"</th><th class="num">"Error rate"</th></tr>{rows}</table>
            </div>
        </div>
    }
    .into_any()
}

fn operations_view(service: &str, lookback: &str, operations: Vec<OperationStats>) -> AnyView {
    let rows = operations
        .into_iter()
        .map(|o| {
            let href = format!("/services/{}?{}", format::encode(service), format::query(&[("operation", &o.name), ("lookback", lookback)]));
            let p50 = o.p50_ms.map(format::millis).unwrap_or_default();
            let p99 = o.p99_ms.map(format::millis).unwrap_or_default();
            view! {
                <tr>
                    <td><a href=href>{o.name}</a></td><td class="muted">{o.span_kind}</td>
                    <td class="num">{o.calls}</td><td class="num">{o.errors}</td><td class="num">{p50}</td><td class="num">{p99}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="panel">
            <h2>"Operations"</h2>
            <table class="operations">
                <tr><th>"Operation"</th><th>"Kind"</th><th class="num">"Calls"</th><th class="num">"Errors"</th><th class="num">"p50"</th><th class="num">"p99"</th></tr>
                {rows}
            </table>
        </div>
    }
    .into_any()
}

/// The calls this service makes or serves that were retried, failed, or
/// left a server working after its client gave up.
fn retries_view(retries: Retries) -> AnyView {
    let rows = retries
        .edges
        .into_iter()
        .map(|e| {
            view! {
                <tr>
                    <td>{e.client}</td><td>{e.server.unwrap_or_else(|| "?".into())}</td><td>{e.operation}</td>
                    <td class="num">{e.calls}</td><td class="num">{e.retries}</td>
                    <td class="num">{format!("{:.1}%", 100.0 * e.retry_rate)}</td>
                    <td class="num">{format!("{:.2}×", e.amplification)}</td>
                    <td class="num">{e.errors}</td><td class="num">{e.timeouts}</td><td class="num">{e.abandoned}</td>
                    <td class="num">{format::millis(e.abandoned_ms)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="panel retries">
            <h2>"Retries and abandoned work"</h2>
            <p class="muted">"A retry repeats a call under the same parent after an attempt failed; abandoned work is server time after its client had failed (a timeout)."</p>
            <table>
                <tr><th>"Client"</th><th>"Server"</th><th>"Operation"</th><th class="num">"Attempts"</th><th class="num">"Retries"</th>
                    <th class="num">"Retry rate"</th><th class="num">"Amplification"</th><th class="num">"Errors"</th>
                    <th class="num">"Timeouts"</th><th class="num">"Abandoned"</th><th class="num">"Server time wasted"</th></tr>
                {rows}
            </table>
        </div>
    }
    .into_any()
}
