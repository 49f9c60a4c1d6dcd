//! spanlake: a distributed tracing backend. One binary: `serve` runs
//! everything, `demo` sends demo traffic, `sql` queries the spans.

mod demo;
mod ops;
mod serve;
mod sql_cli;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "spanlake", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive spans (OTLP gRPC and HTTP), store them, serve the API and UI.
    Serve(serve::ServeArgs),
    /// Send demo traces of a small shop over OTLP/gRPC.
    Demo(demo::DemoArgs),
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
        Command::Serve(args) => serve::run(args).await,
        Command::Demo(args) => {
            let stop = CancellationToken::new();
            let on_interrupt = stop.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                on_interrupt.cancel();
            });
            let report = demo::run(args, stop).await?;
            println!(
                "sent {} traces, {} spans ({} exports failed)",
                report.traces, report.spans, report.failed_exports
            );
            Ok(())
        }
        Command::Sql(args) => sql_cli::run(args).await,
    }
}
