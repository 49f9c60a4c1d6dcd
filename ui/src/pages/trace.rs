//! `/traces/{id}`: the trace waterfall. Rows nest as `<details>`, so
//! subtrees collapse and expand without script; `?span=` opens a span's
//! attributes, resource, events and links below the header, and keeps the
//! path to it expanded. The critical path is outlined.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Form, Path, Query as RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use leptos::prelude::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::Deserialize;
use spanlake_query::api::Tenant;
use spanlake_query::{QueryEngine, QueryError};
use spanlake_storage::ids::TraceId;
use spanlake_storage::zipkin::{self, ZipkinSpan};

use crate::format;
use crate::layout::{Nav, error_page, page};
use crate::waterfall::{SpanRow, Waterfall};
use spanlake_query::retries::Mark;

/// Traces with more spans than this open only their top levels at first.
const OPEN_ALL_BELOW: usize = 300;
const OPEN_DEPTH_LARGE: usize = 2;
const OPEN_DEPTH: usize = 8;

#[derive(Debug, Deserialize)]
pub(crate) struct Jump {
    id: Option<String>,
}

/// `/traces?id=`: the trace-id box.
pub(crate) async fn jump(RawQuery(jump): RawQuery<Jump>) -> Response {
    match jump.id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => Redirect::to(&format!("/traces/{}", format::encode(id))).into_response(),
        None => Redirect::to("/search").into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TraceParams {
    span: Option<String>,
}

/// Largest trace file `/traces/view` takes.
pub(crate) const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct TraceFile {
    json: String,
}

/// `GET /traces/view`: paste (or, with script, choose) a trace file.
pub(crate) async fn view_form() -> Response {
    page("Open a trace file", Nav::Trace, file_form(None)).into_response()
}

/// `POST /traces/view`: a trace from OTLP/JSON (`/api/v1/traces/{id}`'s
/// download) or Zipkin v2 JSON, shown without storing it.
pub(crate) async fn view_file(Form(file): Form<TraceFile>) -> Response {
    match parse_file(&file.json) {
        Ok(resource_spans) => {
            let waterfall = Waterfall::new(&resource_spans);
            let trace_id = resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| const_hex::encode(&s.trace_id))
                .next()
                .unwrap_or_default();
            page("Trace file", Nav::Trace, trace_view(&trace_id, waterfall, Source::File)).into_response()
        }
        Err(message) => {
            (StatusCode::BAD_REQUEST, page("Open a trace file", Nav::Trace, file_form(Some(message)))).into_response()
        }
    }
}

fn parse_file(json: &str) -> Result<Vec<ResourceSpans>, String> {
    let otlp = serde_json::from_str::<ExportTraceServiceRequest>(json);
    let resource_spans = match otlp {
        Ok(request) if !request.resource_spans.is_empty() => request.resource_spans,
        otlp => match serde_json::from_str::<Vec<ZipkinSpan>>(json) {
            Ok(spans) => zipkin::to_otlp(spans).map_err(|e| format!("Zipkin JSON: {e}"))?,
            Err(zipkin_error) => {
                let otlp_error = otlp.err().map_or_else(|| "no resourceSpans".to_owned(), |e| e.to_string());
                return Err(format!("neither OTLP/JSON ({otlp_error}) nor a Zipkin v2 list ({zipkin_error})"));
            }
        },
    };
    if resource_spans.iter().all(|rs| rs.scope_spans.iter().all(|ss| ss.spans.is_empty())) {
        return Err("the file holds no spans".into());
    }
    Ok(resource_spans)
}

/// Choosing a file fills the text area: comfort for those with script.
const FILE_SCRIPT: &str = "document.getElementById('trace-file').addEventListener('change', async (e) => {
  const file = e.target.files[0];
  if (file) { document.getElementById('trace-json').value = await file.text(); }
});";

fn file_form(error: Option<String>) -> AnyView {
    view! {
        <h1>"Open a trace file"</h1>
        <form class="panel" method="post" action="/traces/view">
            <p class="muted">"OTLP/JSON (as "<code>"Download OTLP JSON"</code>" saves it) or a Zipkin v2 JSON list. It is shown, not stored."</p>
            <p><input type="file" id="trace-file" accept="application/json,.json" /></p>
            <textarea id="trace-json" name="json" rows="12" placeholder="Paste the JSON here"></textarea>
            <p><button type="submit">"View"</button></p>
            {error.map(|e| view! { <p class="error">{e}</p> })}
        </form>
        <script inner_html=FILE_SCRIPT></script>
    }
    .into_any()
}

pub(crate) async fn trace(
    State(engine): State<Arc<QueryEngine>>,
    headers: HeaderMap,
    Path(trace_id): Path<String>,
    RawQuery(params): RawQuery<TraceParams>,
) -> Response {
    let title = "Trace";
    let id = match trace_id.parse::<TraceId>() {
        Ok(id) => id,
        Err(error) => return error_page(title, Nav::Trace, &QueryError::BadRequest(format!("trace id: {error}"))),
    };
    let found = match Tenant::of(&headers) {
        Ok(tenant) => engine.trace(&tenant, &id).await,
        Err(error) => Err(error),
    };
    match found {
        Ok(Some(resource_spans)) => {
            let waterfall = Waterfall::new(&resource_spans);
            let hex = id.to_string();
            let source = Source::Stored { selected: params.span.as_deref() };
            page(&format!("Trace {hex}"), Nav::Trace, trace_view(&hex, waterfall, source)).into_response()
        }
        Ok(None) => {
            let message = format!("No span of trace {trace_id} is stored (or retention has removed it).");
            let body = view! { <h1>"Trace not found"</h1><p class="error">{message}</p> }.into_any();
            (StatusCode::NOT_FOUND, page(title, Nav::Trace, body)).into_response()
        }
        Err(error) => error_page(title, Nav::Trace, &error),
    }
}

/// Where the trace on the page came from.
#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    /// The store: `?span=` opens one span below the header.
    Stored { selected: Option<&'a str> },
    /// A file the person pasted or chose: every span's details follow the waterfall.
    File,
}

fn trace_view(trace_id: &str, waterfall: Waterfall, source: Source<'_>) -> AnyView {
    let root = waterfall.spans.first().map(|s| (s.service.clone(), s.name.clone())).unwrap_or_default();
    let services: HashSet<&str> = waterfall.spans.iter().map(|s| s.service.as_str()).collect();
    let errors = waterfall.spans.iter().filter(|s| s.error).count();
    let stats = [
        ("Duration", format::duration(waterfall.duration_ns())),
        ("Services", services.len().to_string()),
        ("Depth", waterfall.depth().to_string()),
        ("Spans", waterfall.spans.len().to_string()),
        ("Errors", errors.to_string()),
        ("Started", format::time(waterfall.start_ns)),
    ]
    .into_iter()
    .map(|(label, value)| view! { <span class="stat"><span class="muted">{label}" "</span><b>{value}</b></span> })
    .collect_view();
    let (selected, details, file_details) = match source {
        Source::Stored { selected } => {
            let span = selected.and_then(|id| waterfall.spans.iter().find(|s| s.id == id));
            (selected, span.map(|s| detail(trace_id, s, waterfall.start_ns, source)), None)
        }
        Source::File => {
            let all = waterfall.spans.iter().map(|s| detail(trace_id, s, waterfall.start_ns, source)).collect_view();
            (None, None, Some(all))
        }
    };
    let actions = match source {
        Source::Stored { .. } => {
            let otlp = format!("/api/v1/traces/{trace_id}");
            let zipkin = format!("/api/v2/trace/{trace_id}");
            view! {
                <a class="button quiet" href=otlp download=format!("{trace_id}.otlp.json")>"Download OTLP JSON"</a>
                <a class="button quiet" href=zipkin download=format!("{trace_id}.zipkin.json")>"Download Zipkin JSON"</a>
            }
            .into_any()
        }
        Source::File => view! { <span class="badge">"From a file, not stored"</span> }.into_any(),
    };
    view! {
        <div class="panel">
            <h1>{root.0}" "<span class="muted">{root.1}</span></h1>
            <div class="trace-head">
                {stats}
                <span class="mono muted">{trace_id.to_owned()}</span>
                {actions}
            </div>
            <p class="legend">
                <span><span class="wf-bar-sample critical"></span>"Outlined: the critical path"</span>
                <span class="err-mark">"!"</span><span>" an error"</span>
                <span>"| marks on a bar: events"</span>
                <span class="mark retry">"retry"</span><span>" a call repeated after a failed attempt"</span>
                <span class="mark abandoned">"abandoned"</span><span>" server work after its client gave up"</span>
            </p>
        </div>
        {details}
        <div class="panel waterfall">{rows(trace_id, &waterfall, selected, source)}</div>
        {file_details}
    }
    .into_any()
}

/// The time axis and the tree of rows.
fn rows(trace_id: &str, waterfall: &Waterfall, selected: Option<&str>, source: Source<'_>) -> AnyView {
    let duration = waterfall.duration_ns().max(1);
    let ticks = (0..=4)
        .map(|i| {
            let style = format!("left:{}%", i * 25);
            view! { <span style=style>{format::duration(duration * i / 4)}</span> }
        })
        .collect_view();
    // Keep the way to the selected span open.
    let mut open_path = HashSet::new();
    if let Some(mut i) = selected.and_then(|id| waterfall.spans.iter().position(|s| s.id == id)) {
        let by_id: std::collections::HashMap<&str, usize> =
            waterfall.spans.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        while let Some(&p) = waterfall.spans[i].parent.as_deref().and_then(|p| by_id.get(p)) {
            open_path.insert(p);
            i = p;
        }
    }
    let ctx =
        Context { trace_id, waterfall, selected, source, open_path, large: waterfall.spans.len() > OPEN_ALL_BELOW };
    let mut views = Vec::new();
    let mut i = 0;
    while i < waterfall.spans.len() {
        views.push(ctx.node(i));
        i += waterfall.spans[i].descendants + 1;
    }
    view! {
        <div class="wf-axis"><div class="wf-name muted">"Service and operation"</div><div class="wf-ticks">{ticks}</div></div>
        {views}
    }
    .into_any()
}

struct Context<'a> {
    trace_id: &'a str,
    waterfall: &'a Waterfall,
    selected: Option<&'a str>,
    source: Source<'a>,
    open_path: HashSet<usize>,
    large: bool,
}

impl Context<'_> {
    /// Span `i` and its subtree.
    fn node(&self, i: usize) -> AnyView {
        let span = &self.waterfall.spans[i];
        if span.descendants == 0 {
            return self.row(span, false);
        }
        let mut children = Vec::new();
        let mut c = i + 1;
        while c <= i + span.descendants {
            children.push(self.node(c));
            c += self.waterfall.spans[c].descendants + 1;
        }
        let open = self.open_path.contains(&i) || span.depth < if self.large { OPEN_DEPTH_LARGE } else { OPEN_DEPTH };
        view! {
            <details class="subtree" open=open>
                <summary>{self.row(span, true)}</summary>
                {children}
            </details>
        }
        .into_any()
    }

    fn row(&self, span: &SpanRow, has_children: bool) -> AnyView {
        let total = self.waterfall.duration_ns().max(1) as f64;
        let left = (span.start_ns - self.waterfall.start_ns) as f64 / total * 100.0;
        let width = (span.end_ns - span.start_ns) as f64 / total * 100.0;
        let mut bar_class = String::from("wf-bar");
        if span.critical {
            bar_class.push_str(" critical");
        }
        if span.error {
            bar_class.push_str(" error");
        }
        let bar_style =
            format!("left:{left:.3}%;width:{width:.3}%;background:{}", format::service_colour(&span.service));
        let label_style = format!("left:calc({:.3}% + 6px)", (left + width).min(92.0));
        let events = span
            .events
            .iter()
            .map(|e| {
                let style = format!("left:{:.3}%", (e.time_ns - self.waterfall.start_ns) as f64 / total * 100.0);
                view! { <span class="wf-event" style=style title=e.name.clone()></span> }
            })
            .collect_view();
        let row_class = if self.selected == Some(span.id.as_str()) { "wf-row selected" } else { "wf-row" };
        let indent = format!("padding-left:{}px", span.depth * 14);
        let dot = format!("background:{}", format::service_colour(&span.service));
        let href = match self.source {
            Source::Stored { .. } => format!("/traces/{}?span={}#span-detail", self.trace_id, span.id),
            Source::File => format!("#detail-{}", span.id),
        };
        let tip = format!(
            "{} {} · {} · {}",
            span.service,
            span.name,
            span.kind,
            format::duration(span.end_ns - span.start_ns)
        );
        view! {
            <div class=row_class id=format!("span-{}", span.id)>
                <div class="wf-name" style=indent>
                    {if has_children { view! { <span class="toggle"></span> }.into_any() } else { view! { <span class="leaf-pad"></span> }.into_any() }}
                    <span class="dot" style=dot></span>
                    <a class="span-link" href=href title=tip><span class="svc">{span.service.clone()}</span>" "{span.name.clone()}</a>
                    {span.error.then(|| view! { <span class="err-mark" title="error">"!"</span> })}
                    {span.mark.map(mark_badge)}
                </div>
                <div class="wf-track">
                    <div class=bar_class style=bar_style></div>
                    {events}
                    <span class="wf-label" style=label_style>{format::duration(span.end_ns - span.start_ns)}</span>
                </div>
            </div>
        }
        .into_any()
    }
}

/// The badge of a retried call or of abandoned server work.
fn mark_badge(mark: Mark) -> AnyView {
    match mark {
        Mark::Retry { attempt } => {
            let tip = format!("attempt {attempt}: a retry after a failed attempt of the same call");
            view! { <span class="mark retry" title=tip>{format!("retry #{}", attempt - 1)}</span> }.into_any()
        }
        Mark::Abandoned { after_ns } => {
            let tip = format!("ran {} after its client had failed: abandoned work", format::duration(after_ns));
            view! { <span class="mark abandoned" title=tip>{format!("abandoned +{}", format::duration(after_ns))}</span> }
                .into_any()
        }
    }
}

fn kv_table(pairs: &[(String, String)]) -> AnyView {
    if pairs.is_empty() {
        return view! { <p class="muted">"None"</p> }.into_any();
    }
    let rows = pairs.iter().map(|(k, v)| view! { <tr><td>{k.clone()}</td><td>{v.clone()}</td></tr> }).collect_view();
    view! { <table class="kv">{rows}</table> }.into_any()
}

fn detail(trace_id: &str, span: &SpanRow, trace_start: i64, source: Source<'_>) -> AnyView {
    let facts = vec![
        ("span id".to_owned(), span.id.clone()),
        ("parent span id".to_owned(), span.parent.clone().unwrap_or_else(|| "(root)".into())),
        ("kind".to_owned(), span.kind.to_owned()),
        ("status".to_owned(), span.status.clone()),
        (
            "start".to_owned(),
            format!("{} (+{})", format::time(span.start_ns), format::duration(span.start_ns - trace_start)),
        ),
        ("duration".to_owned(), format::duration(span.end_ns - span.start_ns)),
        ("scope".to_owned(), span.scope.clone()),
    ];
    let events = span
        .events
        .iter()
        .map(|e| {
            view! {
                <tr>
                    <td class="mono">{format!("+{}", format::duration(e.time_ns - span.start_ns))}</td>
                    <td><b>{e.name.clone()}</b>{kv_table(&e.attributes)}</td>
                </tr>
            }
        })
        .collect_view();
    let links = span
        .links
        .iter()
        .map(|(t, s)| {
            let href = format!("/traces/{t}?span={s}#span-detail");
            view! { <li><a class="mono" href=href>{format!("{t} / {s}")}</a></li> }
        })
        .collect_view();
    let (anchor, close) = match source {
        Source::Stored { .. } => {
            let close = format!("/traces/{trace_id}");
            ("span-detail".to_owned(), Some(view! { <a class="button quiet" href=close>"Close"</a> }))
        }
        Source::File => (format!("detail-{}", span.id), None),
    };
    view! {
        <div class="panel span-detail" id=anchor>
            <h2>{span.service.clone()}" · "{span.name.clone()}" "{close}</h2>
            <div class="chart-row">
                <div><h2>"Span"</h2>{kv_table(&facts)}<h2>"Attributes"</h2>{kv_table(&span.attributes)}</div>
                <div>
                    <h2>"Resource"</h2>{kv_table(&span.resource)}
                    <h2>"Events"</h2>
                    {if span.events.is_empty() { view! { <p class="muted">"None"</p> }.into_any() } else { view! { <table class="kv">{events}</table> }.into_any() }}
                    <h2>"Links"</h2>
                    {if span.links.is_empty() { view! { <p class="muted">"None"</p> }.into_any() } else { view! { <ul>{links}</ul> }.into_any() }}
                </div>
            </div>
        </div>
    }
    .into_any()
}
