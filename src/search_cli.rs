//! `spanlake search`: a running server's traces by the search's filters,
//! as a table or as JSON lines of trace summaries.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use spanlake_client::model::TraceSummary;

use crate::remote::{SearchFlags, ServerArgs};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SearchArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) search: SearchFlags,
    /// Traces to list, following the pages.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub(crate) format: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    /// One trace summary per line, as `/api/v1/search` writes them.
    Json,
}

/// Largest page the API serves.
const MAX_PAGE: usize = 1000;

pub(crate) async fn run(args: SearchArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let query = args.search.query(args.limit.clamp(1, MAX_PAGE) as u32);
    let traces: Vec<TraceSummary> = client.search_all(&query).take(args.limit).try_collect().await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Output::Json => {
            for trace in &traces {
                writeln!(out, "{}", serde_json::to_string(trace)?)?;
            }
        }
        Output::Table => write!(out, "{}", table(&traces))?,
    }
    Ok(())
}

/// Traces newest first (or as sorted), one line each.
fn table(traces: &[TraceSummary]) -> String {
    let header = ["TRACE ID", "START", "DURATION", "SPANS", "ERRORS", "ROOT"].map(str::to_owned);
    let rows: Vec<[String; 6]> = traces
        .iter()
        .map(|t| {
            let start = UNIX_EPOCH + Duration::from_nanos(t.start_time_unix_nano.max(0) as u64);
            let root = match (&t.root_service_name, &t.root_span_name) {
                (Some(service), Some(name)) => format!("{service}: {name}"),
                (Some(service), None) => service.clone(),
                _ => "(root not found)".to_owned(),
            };
            [
                t.trace_id.to_string(),
                humantime::format_rfc3339_millis(start).to_string(),
                spanlake_ui::format::duration(t.duration_ns),
                t.span_count.to_string(),
                t.error_count.to_string(),
                root,
            ]
        })
        .collect();
    let widths: Vec<usize> =
        (0..6).map(|c| rows.iter().map(|r| r[c].len()).chain([header[c].len()]).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}
