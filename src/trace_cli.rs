//! `spanlake trace ID`: one trace from a running server, as a tree in the
//! terminal (offsets, durations, the critical path) or in the shape of
//! OTLP, Zipkin or Jaeger.

use std::fmt::Write;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use spanlake_client::TraceId;
use spanlake_query::tree::{self, Node};
use spanlake_ui::format::duration;

use crate::remote::ServerArgs;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// 32 hex digits, or 16 for a 64-bit id.
    pub(crate) id: TraceId,
    #[arg(long, value_enum, default_value_t = TraceFormat::Tree)]
    pub(crate) format: TraceFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TraceFormat {
    /// Spans as a tree, the critical path marked.
    Tree,
    /// OTLP/JSON, as `POST /v1/traces` takes it back.
    Otlp,
    /// Zipkin's v2 JSON.
    Zipkin,
    /// Jaeger's query API JSON.
    Jaeger,
}

pub(crate) async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let not_found = || anyhow::anyhow!("trace {} not found", args.id);
    let text = match args.format {
        TraceFormat::Tree => tree_view(&client.trace(args.id).await?.ok_or_else(not_found)?),
        TraceFormat::Otlp => serde_json::to_string_pretty(&client.trace(args.id).await?.ok_or_else(not_found)?)?,
        TraceFormat::Zipkin => {
            serde_json::to_string_pretty(&client.trace_zipkin(args.id).await?.ok_or_else(not_found)?)?
        }
        TraceFormat::Jaeger => {
            serde_json::to_string_pretty(&client.trace_jaeger(args.id).await?.ok_or_else(not_found)?)?
        }
    };
    println!("{}", text.trim_end());
    Ok(())
}

/// What the tree prints of a span.
struct Line<'a> {
    service: &'a str,
    name: &'a str,
    error: bool,
}

/// One line per span, children under their parent by start: offset from
/// the trace's start, duration, `*` and the time it adds on the critical
/// path.
fn tree_view(trace: &ExportTraceServiceRequest) -> String {
    let mut nodes = Vec::new();
    let mut lines = Vec::new();
    for resource_spans in &trace.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                Value::StringValue(name) => Some(name.as_str()),
                _ => None,
            })
            .unwrap_or("(unknown service)");
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            nodes.push(Node {
                id: &span.span_id,
                parent: &span.parent_span_id,
                start_ns: span.start_time_unix_nano as i64,
                end_ns: span.end_time_unix_nano as i64,
            });
            let error = span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32);
            lines.push(Line { service, name: &span.name, error });
        }
    }
    let start = nodes.iter().map(|n| n.start_ns).min().unwrap_or(0);
    let end = nodes.iter().map(|n| n.end_ns).max().unwrap_or(0);
    let mut text = format!(
        "{} spans, {}; * on the critical path, with the time it adds\n\n{:>10}  {:>10}  {:>10}  SPAN\n",
        nodes.len(),
        duration(end - start),
        "AT",
        "DURATION",
        "CRITICAL"
    );
    for placed in tree::layout(&nodes) {
        let (node, line) = (&nodes[placed.index], &lines[placed.index]);
        let critical = placed.critical_ns.map(|ns| format!("* {}", duration(ns))).unwrap_or_default();
        let _ = writeln!(
            text,
            "{:>10}  {:>10}  {:>10}  {}{}: {}{}",
            duration(node.start_ns - start),
            duration(node.end_ns - node.start_ns),
            critical,
            "  ".repeat(placed.depth),
            line.service,
            line.name,
            if line.error { "  [error]" } else { "" }
        );
    }
    text
}
