//! spanlake: a distributed tracing backend. One binary: `serve` runs
//! everything, `demo` sends demo traffic, `load` measures ingest, `sql`
//! queries the spans; `search`, `trace`, `export` and `import` use a
//! running server through the driver client (`spanlake-client`).

mod cors;
mod demo;
mod load;
mod ops;
mod progress;
mod remote;
mod roles;
mod search_cli;
mod serve;
mod sql_cli;
mod store;
mod trace_cli;
mod transfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

// Ingest allocates and frees many small strings and buffers per span;
// mimalloc decodes OTLP/JSON 16 % faster than glibc's allocator, protobuf
// equally fast (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "spanlake", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive spans (OTLP gRPC and HTTP), store them, serve the API and UI.
    Serve(Box<serve::ServeArgs>),
    /// Send demo traces of a small shop over OTLP/gRPC.
    Demo(demo::DemoArgs),
    /// Send OTLP load as fast as asked and report what was acknowledged.
    Load(load::LoadArgs),
    /// Run a read-only SQL query over the spans.
    Sql(sql_cli::SqlArgs),
    /// Search a running server's traces.
    Search(search_cli::SearchArgs),
    /// Show one trace of a running server: a tree with the critical path,
    /// or OTLP, Zipkin or Jaeger JSON.
    Trace(trace_cli::TraceArgs),
    /// Write a window of a running server's traces, filtered as a search,
    /// to OTLP/JSON lines or Parquet.
    Export(transfer::ExportArgs),
    /// Send OTLP/JSON lines or Zipkin JSON files to a server's OTLP/HTTP
    /// receiver.
    Import(transfer::ImportArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; a one-shot command prints only its answer.
    let one_shot = matches!(
        cli.command,
        Command::Sql(_) | Command::Search(_) | Command::Trace(_) | Command::Export(_) | Command::Import(_)
    );
    let default_level = if one_shot { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Demo(args) => {
            let report = demo::run(args, stop_on_interrupt()).await?;
            println!(
                "sent {} traces, {} spans ({} exports failed)",
                report.traces, report.spans, report.failed_exports
            );
            Ok(())
        }
        Command::Load(args) => load::run(args, stop_on_interrupt()).await,
        Command::Sql(args) => sql_cli::run(args).await,
        Command::Search(args) => search_cli::run(args).await,
        Command::Trace(args) => trace_cli::run(args).await,
        Command::Export(args) => transfer::export(args).await,
        Command::Import(args) => transfer::import(args).await,
    }
}

fn stop_on_interrupt() -> CancellationToken {
    let stop = CancellationToken::new();
    let on_interrupt = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_interrupt.cancel();
    });
    stop
}
