//! `/search`: the search form, a scatter plot of the results and the
//! result list, paged by cursor. The URL carries the whole query with the
//! parameters of `/api/v1/search`, so a search is a link to share.

use std::sync::Arc;

use axum::extract::{Query as RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use spanlake_query::QueryEngine;
use spanlake_query::api::Tenant;
use spanlake_query::api::v1::SearchParams;
use spanlake_query::params::parse_pairs;
use spanlake_query::search::{SearchPage, TraceSummary};

use crate::charts::{self, Dot};
use crate::format;
use crate::layout::{Nav, page};

const LOOKBACKS: [(&str, &str); 5] =
    [("15m", "Last 15 minutes"), ("1h", "Last hour"), ("6h", "Last 6 hours"), ("24h", "Last 24 hours"), ("", "Custom")];
const SORTS: [(&str, &str); 3] =
    [("start_desc", "Newest first"), ("duration_desc", "Slowest first"), ("duration_asc", "Fastest first")];
const LIMITS: [&str; 4] = ["20", "50", "100", "500"];
/// Tag keys whose values are offered as `key=value` suggestions.
const SUGGESTED_KEYS: usize = 40;

pub(crate) async fn search(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    RawQuery(pairs): RawQuery<Vec<(String, String)>>,
) -> Response {
    let mut pairs = pairs;
    if !pairs.iter().any(|(k, v)| ["lookback", "start", "end"].contains(&k.as_str()) && !v.is_empty()) {
        pairs.retain(|(k, _)| k != "lookback");
        pairs.push(("lookback".into(), "1h".into()));
    }
    let params = parse_pairs::<SearchParams>(&pairs);
    let tenant = match Tenant::of(&headers) {
        Ok(tenant) => tenant,
        Err(error) => return crate::layout::error_page("Search", Nav::Search, &error),
    };
    let form = Form::new(&engine, &tenant, params.as_ref().ok(), &pairs).await;
    let result = match params.and_then(|p| p.request()) {
        Ok(request) => engine.search(&tenant, &request).await.map(|page| (page, request.window)),
        Err(error) => Err(error),
    };
    let (status, results) = match result {
        Ok((found, window)) => (StatusCode::OK, results(found, &pairs, window.start_ns, window.end_ns).into_any()),
        Err(error) => (error.status(), view! { <p class="error">{error.to_string()}</p> }.into_any()),
    };
    let body = view! {
        <h1>"Search traces" <a class="button quiet" href="/traces/view">"Open a trace file"</a></h1>
        {form.view()}
        {results}
    }
    .into_any();
    (status, page("Search", Nav::Search, body)).into_response()
}

/// The form's choices and current values.
struct Form {
    services: Vec<String>,
    operations: Vec<String>,
    suggestions: Vec<String>,
    values: Vec<(String, Vec<String>)>,
}

impl Form {
    async fn new(
        engine: &QueryEngine,
        tenant: &spanlake_storage::TenantId,
        params: Option<&SearchParams>,
        pairs: &[(String, String)],
    ) -> Self {
        let service = params.and_then(|p| p.service.as_deref());
        let window = params.map(|p| p.window());
        let mut operations = Vec::new();
        let mut suggestions = Vec::new();
        if let Some(window) = &window {
            if let Some(service) = service {
                operations = engine.operations(tenant, service, window).await.unwrap_or_default();
            }
            let tags = engine.tag_summary(tenant, window).await.unwrap_or_default();
            for key in tags.keys(service).into_iter().take(SUGGESTED_KEYS) {
                suggestions.push(key.to_owned());
                suggestions.extend(tags.values(key, service).into_iter().take(20).map(|v| format!("{key}={v}")));
            }
        }
        let mut values: Vec<(String, Vec<String>)> = Vec::new();
        for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            match values.iter_mut().find(|(n, _)| n == name) {
                Some((_, all)) => all.push(value.clone()),
                None => values.push((name.clone(), vec![value.clone()])),
            }
        }
        let mut operation_names: Vec<String> = operations.into_iter().map(|o| o.name).collect();
        operation_names.dedup();
        Self {
            services: engine.services(tenant, None).await.unwrap_or_default(),
            operations: operation_names,
            suggestions,
            values,
        }
    }

    fn value(&self, name: &str) -> String {
        self.values.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.last().cloned()).unwrap_or_default()
    }

    fn view(self) -> impl IntoView {
        let service = self.value("service");
        let lookback = self.value("lookback");
        let sort = self.value("sort");
        let limit = self.value("limit");
        let mut tags: Vec<String> =
            self.values.iter().find(|(n, _)| n == "tags").map(|(_, v)| v.clone()).unwrap_or_default();
        tags.resize(tags.len().max(2), String::new());
        let service_options = self
            .services
            .iter()
            .map(|s| view! { <option value=s.clone() selected=*s == service>{s.clone()}</option> })
            .collect_view();
        let operation_options =
            self.operations.iter().map(|o| view! { <option value=o.clone()></option> }).collect_view();
        let suggestion_options =
            self.suggestions.iter().map(|s| view! { <option value=s.clone()></option> }).collect_view();
        let tag_inputs = tags
            .into_iter()
            .map(|t| view! { <label>"Tag"<input name="tags" value=t list="tag-suggestions" placeholder="http.route=/cart" /></label> })
            .collect_view();
        let lookbacks = LOOKBACKS
            .iter()
            .map(|(v, label)| view! { <option value=*v selected=*v == lookback>{*label}</option> })
            .collect_view();
        let sorts = SORTS
            .iter()
            .map(|(v, label)| view! { <option value=*v selected=*v == sort>{*label}</option> })
            .collect_view();
        let limits =
            LIMITS.iter().map(|v| view! { <option value=*v selected=*v == limit>{*v}</option> }).collect_view();
        view! {
            <form class="panel search-form" method="get" action="/search">
                <label>"Service"
                    <select name="service"><option value="">"All services"</option>{service_options}</select>
                </label>
                <label>"Operation"
                    <input name="operation" value=self.value("operation") list="operations" placeholder="Any" />
                </label>
                {tag_inputs}
                <label>"Min duration"<input name="minDuration" value=self.value("minDuration") placeholder="100ms" /></label>
                <label>"Max duration"<input name="maxDuration" value=self.value("maxDuration") placeholder="2s" /></label>
                <label>"Time range"<select name="lookback">{lookbacks}</select></label>
                <label>"From (custom)"<input name="start" value=self.value("start") placeholder="2026-11-26T09:00:00Z" /></label>
                <label>"To (custom)"<input name="end" value=self.value("end") placeholder="now" /></label>
                <label>"Sort"<select name="sort">{sorts}</select></label>
                <label>"Limit"<select name="limit">{limits}</select></label>
                <label class="check"><span><input type="checkbox" name="status" value="error" checked=self.value("status") == "error" />" Errors only"</span></label>
                <button type="submit">"Find traces"</button>
                <datalist id="operations">{operation_options}</datalist>
                <datalist id="tag-suggestions">{suggestion_options}</datalist>
            </form>
        }
    }
}

fn results(found: SearchPage, pairs: &[(String, String)], start: i64, end: i64) -> impl IntoView {
    let partial = found.partial.as_ref().map(|p| {
        let text = format!("Partial results: {}. Their spans not yet written to files are missing.", p.describe());
        view! { <p class="error">{text}</p> }
    });
    view! { {partial} {traces(found, pairs, start, end)} }
}

fn traces(found: SearchPage, pairs: &[(String, String)], start: i64, end: i64) -> AnyView {
    if found.traces.is_empty() {
        return view! { <div class="panel"><p class="muted">"No trace matches in this time range."</p></div> }
            .into_any();
    }
    let longest = found.traces.iter().map(|t| t.duration_ns).max().unwrap_or(1).max(1);
    let dots = found
        .traces
        .iter()
        .map(|t| Dot {
            start_ns: t.start_time_unix_nano,
            duration_ns: t.duration_ns,
            href: format!("/traces/{}", t.trace_id),
            title: format!("{} {}: {}", root_service(t), root_name(t), format::duration(t.duration_ns)),
            error: t.error_count > 0,
        })
        .collect();
    let count = found.traces.len();
    let rows = found.traces.into_iter().map(|t| row(t, longest)).collect_view();
    let keep: Vec<(&str, &str)> =
        pairs.iter().filter(|(k, _)| k != "cursor").map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let first = format!("/search?{}", format::query(&keep));
    let next = found.next_cursor.map(|cursor| {
        let mut with_cursor = keep.clone();
        with_cursor.push(("cursor", &cursor));
        format!("/search?{}", format::query(&with_cursor))
    });
    let paged = pairs.iter().any(|(k, _)| k == "cursor");
    view! {
        <div class="panel">{charts::scatter(dots, start, end)}</div>
        <div class="panel">
            <table class="results">
                <tr><th>"Trace"</th><th>"Start"</th><th class="bar-cell">"Duration"</th><th class="num">"Spans"</th><th>"Services"</th></tr>
                {rows}
            </table>
            <div class="pager">
                <span class="muted">{format!("{count} traces on this page")}</span>
                {paged.then(|| view! { <a class="button quiet" href=first.clone()>"First page"</a> })}
                {next.map(|href| view! { <a class="button" href=href rel="next">"Next page"</a> })}
            </div>
        </div>
    }
    .into_any()
}

fn root_service(t: &TraceSummary) -> String {
    t.root_service_name.clone().unwrap_or_else(|| "(no root)".into())
}

fn root_name(t: &TraceSummary) -> String {
    t.root_span_name.clone().unwrap_or_else(|| "(root span missing)".into())
}

fn row(t: TraceSummary, longest: i64) -> impl IntoView {
    let width = format!("width:{:.1}%", t.duration_ns as f64 / longest as f64 * 100.0);
    let href = format!("/traces/{}", t.trace_id);
    let services = t
        .services
        .iter()
        .map(|s| {
            let style = format!("background:{}", format::service_colour(&s.name));
            view! { <span class="chip"><span class="dot" style=style></span>{format!("{} ({})", s.name, s.span_count)}</span> }
        })
        .collect_view();
    let errors = t.error_count;
    view! {
        <tr class="trace-row">
            <td>
                <a class="trace-link" href=href><b>{root_service(&t)}</b>" "{root_name(&t)}</a>
                {(errors > 0).then(|| view! { " " <span class="badge err">{format!("{errors} errors")}</span> })}
                <div class="muted mono">{t.trace_id.to_string()}</div>
            </td>
            <td>{format::time(t.start_time_unix_nano)}</td>
            <td class="bar-cell"><div class="dur-bar" style=width></div><span class="muted">{format::duration(t.duration_ns)}</span></td>
            <td class="num">{t.span_count}</td>
            <td>{services}</td>
        </tr>
    }
}
