//! `/services/{service}/versions`: the versions of a service in a window,
//! a candidate held against its baseline (`?baseline=&candidate=`; by
//! default the newest version against the busiest) with overlaid duration
//! histograms and the verdict per operation, and who still calls each
//! version, with "safe to remove" when nothing does.

use std::sync::Arc;

use axum::extract::{Path, Query as RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use spanlake_query::api::Tenant;
use spanlake_query::api::v1::CompareParams;
use spanlake_query::api::v1::VersionsParams;
use spanlake_query::params::{Window, parse_pairs};
use spanlake_query::versions::compare::{Comparison, OperationComparison, Verdict};
use spanlake_query::versions::{Direction, VersionCalls, VersionStats};
use spanlake_query::{QueryEngine, QueryError};

use crate::charts;
use crate::format;
use crate::layout::{Nav, error_page, lookback_links, page};

/// Versions whose callers the page lists, busiest first.
const MAX_CALLER_LISTS: usize = 8;

pub(crate) async fn versions(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    RawQuery(pairs): RawQuery<Vec<(String, String)>>,
) -> Response {
    let title = format!("{service} · versions");
    match render(&engine, &headers, &service, &pairs).await {
        Ok(body) => page(&title, Nav::Services, body).into_response(),
        Err(error) => error_page(&title, Nav::Services, &error),
    }
}

async fn render(
    engine: &QueryEngine,
    headers: &HeaderMap,
    service: &str,
    pairs: &[(String, String)],
) -> Result<AnyView, QueryError> {
    let tenant = Tenant::of(headers)?;
    let lookback = format::value(pairs, "lookback").unwrap_or("1h").to_owned();
    let base = [("service".to_owned(), service.to_owned()), ("lookback".to_owned(), lookback.clone())];
    let window = parse_pairs::<VersionsParams>(&base)?.window();
    let list = engine.versions(&tenant, service, &window).await?;
    let named: Vec<&str> = list.versions.iter().filter_map(|v| v.version.as_deref()).collect();

    // The busiest version is the baseline, the newest other one the candidate.
    let busiest = list.versions.iter().filter(|v| v.version.is_some()).max_by_key(|v| v.requests);
    let baseline = format::value(pairs, "baseline").or(busiest.and_then(|v| v.version.as_deref())).map(str::to_owned);
    let newest = list
        .versions
        .iter()
        .filter(|v| v.version.is_some() && v.version != baseline)
        .max_by_key(|v| v.first_seen_unix_nano);
    let candidate = format::value(pairs, "candidate").or(newest.and_then(|v| v.version.as_deref())).map(str::to_owned);
    let comparison = match (&baseline, &candidate) {
        (Some(baseline), Some(candidate)) => {
            let mut query = base.to_vec();
            query.push(("baseline".into(), baseline.clone()));
            query.push(("candidate".into(), candidate.clone()));
            Some(engine.compare_versions(&tenant, &parse_pairs::<CompareParams>(&query)?.request()?).await?)
        }
        _ => None,
    };
    let mut callers = Vec::new();
    for version in named.iter().take(MAX_CALLER_LISTS) {
        callers.push(engine.version_calls(&tenant, service, version, Direction::Callers, &window).await?);
    }

    let choices = lookback_links(&lookback, |l| {
        format!(
            "?{}",
            format::query(&[
                ("lookback", l),
                ("baseline", baseline.as_deref().unwrap_or("")),
                ("candidate", candidate.as_deref().unwrap_or(""))
            ])
        )
    });
    let service_href = format!("/services/{}?lookback={lookback}", format::encode(service));
    Ok(view! {
        <h1>{format!("{service} · versions")}</h1>
        <div class="pager">{choices}<a class="button quiet" href=service_href>"Service overview"</a></div>
        {versions_table(&list.versions, &window)}
        {compare_form(&lookback, &named, baseline.as_deref(), candidate.as_deref())}
        {comparison.map(comparison_view)}
        {callers_view(callers)}
    }
    .into_any())
}

fn versions_table(versions: &[VersionStats], window: &Window) -> AnyView {
    if versions.is_empty() {
        return view! { <div class="panel"><p class="muted">"No requests served in this time range."</p></div> }
            .into_any();
    }
    let ms = |v: Option<f64>| v.map(format::millis).unwrap_or_default();
    let rows = versions
        .iter()
        .map(|v| {
            let name = v.version.clone().unwrap_or_else(|| "(no version)".into());
            view! {
                <tr>
                    <td><span class="dot" style=format!("background:{}", format::service_colour(&name))></span>" "{name.clone()}</td>
                    <td>{format::time(v.first_seen_unix_nano)}</td>
                    <td>{format::time(v.last_seen_unix_nano)}</td>
                    <td class="num">{format!("{:.2}/s", v.requests_per_second)}</td>
                    <td class="num">{v.requests}</td>
                    <td class="num">{format!("{:.2}%", 100.0 * v.error_rate)}</td>
                    <td class="num">{ms(v.p50_ms)}</td>
                    <td class="num">{ms(v.p90_ms)}</td>
                    <td class="num">{ms(v.p99_ms)}</td>
                    <td class="num">{format!("{:.1}%", 100.0 * v.share)}</td>
                </tr>
            }
        })
        .collect_view();
    let span = format::duration(window.duration_ns());
    view! {
        <div class="panel">
            <h2>{format!("Versions serving requests, last {span}")}</h2>
            <table class="versions">
                <tr><th>"service.version"</th><th>"First seen"</th><th>"Last seen"</th><th class="num">"Rate"</th>
                    <th class="num">"Requests"</th><th class="num">"Errors"</th><th class="num">"p50"</th><th class="num">"p90"</th>
                    <th class="num">"p99"</th><th class="num">"Share"</th></tr>
                {rows}
            </table>
        </div>
    }
    .into_any()
}

fn compare_form(lookback: &str, versions: &[&str], baseline: Option<&str>, candidate: Option<&str>) -> AnyView {
    if versions.len() < 2 {
        return ().into_any();
    }
    let options = |chosen: Option<&str>| {
        versions
            .iter()
            .map(|v| view! { <option value=v.to_string() selected=chosen == Some(*v)>{v.to_string()}</option> })
            .collect_view()
    };
    view! {
        <form class="panel compare-form" method="get">
            <input type="hidden" name="lookback" value=lookback.to_owned() />
            <label>"Baseline "<select name="baseline">{options(baseline)}</select></label>
            <label>"Candidate "<select name="candidate">{options(candidate)}</select></label>
            <button type="submit">"Compare"</button>
        </form>
    }
    .into_any()
}

fn verdict_badge(verdict: Verdict) -> AnyView {
    let class = match verdict {
        Verdict::Worse => "verdict worse",
        Verdict::Better => "verdict better",
        Verdict::NoDifference => "verdict same",
        Verdict::NotEnoughData => "verdict unknown",
    };
    view! { <span class=class>{verdict.as_str()}</span> }.into_any()
}

fn comparison_view(c: Comparison) -> AnyView {
    let p = |v: Option<f64>| {
        v.map(|p| if p < 0.0001 { "<0.0001".to_owned() } else { format!("{p:.4}") }).unwrap_or_default()
    };
    let pct = |v: Option<f64>| v.map(|r| format!("{:.2}%", 100.0 * r)).unwrap_or_default();
    let ms = |v: Option<f64>| v.map(format::millis).unwrap_or_default();
    let row = |o: &OperationComparison| {
        let name = o.operation.clone().unwrap_or_else(|| "all requests".into());
        view! {
            <tr class=if o.operation.is_none() { "overall" } else { "" }>
                <td>{name}</td>
                <td class="num">{format!("{} / {}", o.baseline.requests, o.candidate.requests)}</td>
                <td class="num">{format!("{} / {}", pct(o.baseline.error_rate), pct(o.candidate.error_rate))}</td>
                <td class="num">{format!("{} / {}", ms(o.baseline.p50_ms), ms(o.candidate.p50_ms))}</td>
                <td class="num">{format!("{} / {}", ms(o.baseline.p99_ms), ms(o.candidate.p99_ms))}</td>
                <td class="num">{p(o.latency.as_ref().map(|t| t.adjusted_p_value))}</td>
                <td class="num">{o.latency.as_ref().map(|t| format!("{:.0}%", 100.0 * t.probability_slower)).unwrap_or_default()}</td>
                <td class="num">{p(o.errors.as_ref().map(|t| t.adjusted_p_value))}</td>
                <td>{verdict_badge(o.verdict)}
                    {(o.verdict == Verdict::NotEnoughData).then(|| view! { <span class="muted">{format!(" needs {} per version", o.needed_per_version)}</span> })}</td>
            </tr>
        }
    };
    let rows = std::iter::once(&c.overall).chain(&c.operations).map(row).collect_view();
    let labels = (c.baseline.as_str(), c.candidate.as_str());
    let charts = std::iter::once(&c.overall)
        .chain(&c.operations)
        .map(|o| {
            let title = o.operation.clone().unwrap_or_else(|| "All requests".into());
            let buckets = o.histogram.iter().map(|b| (b.lower_ns, b.upper_ns, b.baseline, b.candidate)).collect();
            charts::paired_histogram(&title, buckets, labels)
        })
        .collect_view();
    view! {
        <div class="panel">
            <h2>{format!("{} against {}: ", c.candidate, c.baseline)}{verdict_badge(c.verdict)}</h2>
            <p class="muted">{format!(
                "Mann-Whitney U on durations and a two-proportion test on errors, Holm-corrected over the operations at α = {}; \
                 a difference counts when significant and the candidate is slower in at least 55% of pairs, or its error \
                 rate differs by at least half a point. Cells read baseline / candidate.",
                c.alpha
            )}</p>
            <table class="compare">
                <tr><th>"Operation"</th><th class="num">"Requests"</th><th class="num">"Error rate"</th><th class="num">"p50"</th>
                    <th class="num">"p99"</th><th class="num">"p (latency)"</th><th class="num">"P(slower)"</th>
                    <th class="num">"p (errors)"</th><th>"Verdict"</th></tr>
                {rows}
            </table>
        </div>
        <div class="chart-row">{charts}</div>
    }
    .into_any()
}

fn callers_view(lists: Vec<VersionCalls>) -> AnyView {
    if lists.is_empty() {
        return ().into_any();
    }
    let panels = lists
        .into_iter()
        .map(|list| {
            let safe = if list.safe_to_remove == Some(true) {
                view! { <span class="verdict better">"safe to remove"</span> }.into_any()
            } else {
                view! { <span class="verdict unknown">{format!("{} requests", list.calls)}</span> }.into_any()
            };
            let rows = list
                .peers
                .iter()
                .map(|p| {
                    let version = p.version.clone().unwrap_or_else(|| "(no version)".into());
                    view! {
                        <tr><td>{p.service.clone()}</td><td>{version}</td><td class="num">{p.calls}</td>
                            <td class="num">{p.errors}</td><td>{format::time(p.last_call_unix_nano)}</td></tr>
                    }
                })
                .collect_view();
            let unattributed = list.unattributed_calls.filter(|n| *n > 0).map(|n| {
                view! { <p class="muted">{format!("{n} requests without a caller in the spans (roots, uninstrumented clients)")}</p> }
            });
            view! {
                <div class="panel callers">
                    <h2>{format!("Callers of {} ", list.version)}{safe}</h2>
                    <table>
                        <tr><th>"Service"</th><th>"Its version"</th><th class="num">"Calls"</th><th class="num">"Errors"</th><th>"Last call"</th></tr>
                        {rows}
                    </table>
                    {unattributed}
                </div>
            }
        })
        .collect_view();
    view! { <h2>"Who calls each version"</h2><div class="chart-row">{panels}</div> }.into_any()
}
