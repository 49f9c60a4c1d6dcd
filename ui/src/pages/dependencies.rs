//! `/dependencies`: the service graph of a window, laid out in layers from
//! callers to callees; `?groupBy=service.version` gives each version its
//! own node. Edges carry calls per second, the error share and the hop's
//! cost (client time less server time, message sizes), grow thicker with
//! traffic and turn red with errors; nodes link to the service page.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Query as RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use spanlake_query::QueryEngine;
use spanlake_query::api::Tenant;
use spanlake_query::api::v1::DependenciesParams;
use spanlake_query::dependencies::DependencyGraph;
use spanlake_query::params::parse_pairs;

use crate::format;
use crate::layout::{Nav, error_page, lookback_links, page};

const NODE_W: f64 = 150.0;
const NODE_H: f64 = 34.0;
const COLUMN: f64 = 250.0;
const ROW: f64 = 70.0;

pub(crate) async fn dependencies(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    RawQuery(pairs): RawQuery<Vec<(String, String)>>,
) -> Response {
    let title = "Dependencies";
    let lookback = format::value(&pairs, "lookback").unwrap_or("1h").to_owned();
    let params = parse_pairs::<DependenciesParams>(&pairs);
    let grouped = params.as_ref().is_ok_and(|p| p.group_by.is_some());
    let graph = match (Tenant::of(&headers), params) {
        (Ok(tenant), Ok(p)) => {
            let window = p.window();
            engine.dependency_graph(&tenant, &window, p.group_by).await.map(|g| (g, window.duration_ns()))
        }
        (Err(error), _) | (_, Err(error)) => Err(error),
    };
    let (graph, window_ns) = match graph {
        Ok(found) => found,
        Err(error) => return error_page(title, Nav::Dependencies, &error),
    };
    let group = if grouped { "&groupBy=service.version" } else { "" };
    let choices = lookback_links(&lookback, |l| format!("/dependencies?lookback={l}{group}"));
    let toggle = if grouped {
        view! { <a class="button quiet" href=format!("/dependencies?lookback={lookback}")>"By service"</a> }
    } else {
        view! { <a class="button quiet" href=format!("/dependencies?lookback={lookback}&groupBy=service.version")>"By version"</a> }
    };
    let (graph, links) = if grouped { by_version_nodes(graph) } else { (graph, BTreeMap::new()) };
    let body = view! {
        <h1>"Service dependencies"</h1>
        <div class="pager">{choices}{toggle}</div>
        <div class="panel graph">{graph_view(graph, window_ns, &links)}</div>
    }
    .into_any();
    page(title, Nav::Dependencies, body).into_response()
}

/// The version graph with one node per service and version, named
/// `service@version`, and each such node's link: its service's versions page.
fn by_version_nodes(graph: DependencyGraph) -> (DependencyGraph, BTreeMap<String, String>) {
    let mut links = BTreeMap::new();
    let mut name = |service: &str, version: &Option<String>| match version {
        Some(version) => {
            let name = format!("{service}@{version}");
            links.insert(name.clone(), format!("/services/{}/versions", format::encode(service)));
            name
        }
        None => service.to_owned(),
    };
    let mut edges = graph.edges;
    for e in &mut edges {
        e.parent = name(&e.parent, &e.parent_version);
        e.child = name(&e.child, &e.child_version);
    }
    (DependencyGraph::of(edges), links)
}

/// Each service's layer: the longest chain of callers above it (back
/// edges of cycles ignored).
fn layers(graph: &DependencyGraph) -> BTreeMap<String, usize> {
    let mut layer: BTreeMap<String, usize> = graph.nodes.iter().map(|n| (n.clone(), 0)).collect();
    // Relax at most once per node: a cycle cannot push a layer past the node count.
    for _ in 0..graph.nodes.len() {
        let mut changed = false;
        for e in graph.edges.iter().filter(|e| e.parent != e.child) {
            let next = layer[&e.parent] + 1;
            if next > layer[&e.child] && next < graph.nodes.len() {
                layer.insert(e.child.clone(), next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

/// The graph; nodes link to `links`' page for them, else to their service's.
fn graph_view(graph: DependencyGraph, window_ns: i64, links: &BTreeMap<String, String>) -> impl IntoView {
    if graph.edges.is_empty() {
        return view! { <p class="muted">"No calls between services in this time range."</p> }.into_any();
    }
    let layer = layers(&graph);
    let mut columns: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (node, l) in &layer {
        columns.entry(*l).or_default().insert(node.clone());
    }
    let mut position: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (l, nodes) in &columns {
        for (row, node) in nodes.iter().enumerate() {
            position.insert(node.clone(), (20.0 + *l as f64 * COLUMN, 20.0 + row as f64 * ROW));
        }
    }
    let width = 40.0 + columns.len() as f64 * COLUMN;
    let height = 40.0 + columns.values().map(|c| c.len()).max().unwrap_or(1) as f64 * ROW;
    let seconds = (window_ns as f64 / 1e9).max(1.0);
    let busiest = graph.edges.iter().map(|e| e.call_count).max().unwrap_or(1).max(1) as f64;
    let edges = graph
        .edges
        .iter()
        .map(|e| {
            let (px, py) = position[&e.parent];
            let (cx, cy) = position[&e.child];
            let (x1, y1) = (px + NODE_W, py + NODE_H / 2.0);
            let (x2, y2) = (cx, cy + NODE_H / 2.0);
            let d = if e.parent == e.child {
                format!("M{x1},{y1} C{},{} {},{} {},{}", x1 + 40.0, y1 - 40.0, px + NODE_W - 40.0, py - 30.0, px + NODE_W - 20.0, py)
            } else if x2 > x1 {
                let mid = (x1 + x2) / 2.0;
                format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
            } else {
                // Back edge: around below.
                format!("M{x1},{y1} C{},{} {},{} {x2},{y2}", x1 + 60.0, y1 + 80.0, x2 - 60.0, y2 + 80.0)
            };
            let stroke = 1.0 + 6.0 * (e.call_count as f64).ln_1p() / busiest.ln_1p();
            let class = if e.error_count > 0 { "edge err" } else { "edge" };
            let rate = e.call_count as f64 / seconds;
            let errors = 100.0 * e.error_count as f64 / e.call_count.max(1) as f64;
            let label = format!("{rate:.2}/s · {errors:.1}% err");
            let tip = format!(
                "{} → {}: {} calls, {} errors, p50 {}, p99 {}",
                e.parent,
                e.child,
                e.call_count,
                e.error_count,
                e.p50_ms.map(format::millis).unwrap_or_default(),
                e.p99_ms.map(format::millis).unwrap_or_default()
            );
            let (lx, ly) = if e.parent == e.child { (px + NODE_W - 30.0, py - 34.0) } else { (x2 - 58.0, y2 - 7.0) };
            let cost = e.hop.as_ref().and_then(|h| {
                let gap = h.gap_p50_ms.map(|ms| format!("hop +{}", format::millis(ms)));
                let bytes = [h.request_bytes, h.response_bytes]
                    .iter()
                    .zip(["↑", "↓"])
                    .filter_map(|(b, arrow)| b.map(|b| format!("{arrow}{}", format::bytes(b))))
                    .collect::<Vec<_>>();
                let text: Vec<String> = gap.into_iter().chain(bytes).collect();
                (!text.is_empty()).then(|| text.join(" · "))
            });
            let cost_tip = e.hop.as_ref().map(|h| {
                format!(
                    "client − server time over {} linked calls: p50 {}, p99 {}",
                    h.linked_calls,
                    h.gap_p50_ms.map(format::millis).unwrap_or_default(),
                    h.gap_p99_ms.map(format::millis).unwrap_or_default()
                )
            });
            view! {
                <g class="edge-group">
                    <path class=class d=d stroke-width=format!("{stroke:.1}") marker-end="url(#arrow)"><title>{tip}</title></path>
                    <text class="edge-label" x=format!("{lx:.0}") y=format!("{ly:.0}") text-anchor="middle">{label}</text>
                    {cost.map(|cost| view! {
                        <text class="edge-cost" x=format!("{lx:.0}") y=format!("{:.0}", ly + 22.0) text-anchor="middle">{cost}<title>{cost_tip}</title></text>
                    })}
                </g>
            }
        })
        .collect_view();
    let nodes = position
        .into_iter()
        .map(|(name, (x, y))| {
            let href = links.get(&name).cloned().unwrap_or_else(|| format!("/services/{}", format::encode(&name)));
            let stripe = format::service_colour(&name);
            view! {
                <a class="node" href=href>
                    <rect x=format!("{x}") y=format!("{y}") width=format!("{NODE_W}") height=format!("{NODE_H}") rx="6" />
                    <rect x=format!("{x}") y=format!("{y}") width="5" height=format!("{NODE_H}") rx="2" fill=stripe />
                    <text x=format!("{}", x + 12.0) y=format!("{}", y + NODE_H / 2.0) dominant-baseline="middle">{name}</text>
                </a>
            }
        })
        .collect_view();
    view! {
        <svg viewBox=format!("0 0 {width} {height}") role="img" aria-label="Service dependency graph">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
                    <path d="M 0 0 L 10 5 L 0 10 z" fill="var(--muted)" />
                </marker>
            </defs>
            {edges}
            {nodes}
        </svg>
    }
    .into_any()
}
