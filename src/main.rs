//! spanlake: a distributed tracing backend. One binary: `serve` runs
//! everything, `demo` sends demo traffic, `load` measures ingest, `sql`
//! queries the spans.

mod cors;
mod demo;
mod load;
mod ops;
mod roles;
mod serve;
mod sql_cli;
mod store;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs what it does; a one-shot query prints only its answer.
    let default_level = if matches!(cli.command, Command::Sql(_)) { "warn" } else { "info" };
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
