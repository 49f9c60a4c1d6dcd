//! `spanlake serve`: receivers, storage, query API and UI in one process.
//!
//! Shutdown on SIGINT/SIGTERM: the listeners stop accepting and finish the
//! requests in flight, then the flusher writes what is still buffered.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::local::LocalFileSystem;
use spanlake_collector::{CollectorConfig, Ingest};
use spanlake_query::QueryEngine;
use spanlake_storage::{FlushConfig, IngestLimits, Storage};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::demo::{self, DemoArgs};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) ingest: IngestArgs,
    /// Also send demo traffic to this server's OTLP/gRPC receiver.
    #[arg(long, env = "SPANLAKE_DEMO")]
    pub(crate) demo: bool,
    /// Demo traces per second, with --demo.
    #[arg(long, env = "SPANLAKE_DEMO_RATE", default_value_t = 5.0)]
    pub(crate) demo_rate: f64,
}

/// Where spanlake listens.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ListenArgs {
    /// OTLP/gRPC receiver.
    #[arg(long, env = "SPANLAKE_OTLP_GRPC_ADDR", default_value = "127.0.0.1:4317")]
    pub(crate) otlp_grpc_addr: SocketAddr,
    /// OTLP/HTTP receiver (`POST /v1/traces`).
    #[arg(long, env = "SPANLAKE_OTLP_HTTP_ADDR", default_value = "127.0.0.1:4318")]
    pub(crate) otlp_http_addr: SocketAddr,
    /// HTTP API and UI.
    #[arg(long, env = "SPANLAKE_HTTP_ADDR", default_value = "127.0.0.1:9411")]
    pub(crate) http_addr: SocketAddr,
}

/// Where and how spans are stored.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StorageArgs {
    /// Directory of the span files.
    #[arg(long, env = "SPANLAKE_DATA_DIR", default_value = "./spanlake-data")]
    pub(crate) data_dir: PathBuf,
    /// Write buffered spans to files at least this often.
    #[arg(long, env = "SPANLAKE_FLUSH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) flush_interval: Duration,
    /// Write a tenant's buffer as soon as it holds this many spans.
    #[arg(long, env = "SPANLAKE_FLUSH_ROWS", default_value_t = FlushConfig::default().max_rows)]
    pub(crate) flush_rows: usize,
}

/// Limits on what clients send.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IngestArgs {
    /// Largest request body in bytes, before and after decompression.
    #[arg(long, env = "SPANLAKE_MAX_REQUEST_BYTES", default_value_t = CollectorConfig::default().max_request_bytes)]
    pub(crate) max_request_bytes: usize,
    /// Attribute values (and keys, span names, status messages) longer than this are cut.
    #[arg(long, env = "SPANLAKE_MAX_ATTRIBUTE_BYTES", default_value_t = IngestLimits::default().max_attribute_value_bytes)]
    pub(crate) max_attribute_bytes: usize,
}

/// Opens the span store under `data_dir`.
pub(crate) async fn open_storage(data_dir: &std::path::Path, flush: FlushConfig) -> anyhow::Result<Arc<Storage>> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let store =
        LocalFileSystem::new_with_prefix(data_dir).with_context(|| format!("cannot open {}", data_dir.display()))?;
    Ok(Storage::open(Arc::new(store), flush).await?)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for {what}"))
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flush = FlushConfig { interval: args.storage.flush_interval, max_rows: args.storage.flush_rows };
    let storage = open_storage(&args.storage.data_dir, flush).await?;
    let engine = Arc::new(QueryEngine::new(Arc::clone(&storage))?);
    let ingest = Ingest::new(
        Arc::clone(&storage),
        CollectorConfig {
            max_request_bytes: args.ingest.max_request_bytes,
            limits: IngestLimits { max_attribute_value_bytes: args.ingest.max_attribute_bytes },
        },
    );

    let grpc_listener = bind(args.listen.otlp_grpc_addr, "OTLP/gRPC").await?;
    let otlp_http_listener = bind(args.listen.otlp_http_addr, "OTLP/HTTP").await?;
    let http_listener = bind(args.listen.http_addr, "the HTTP API").await?;
    let grpc_addr = grpc_listener.local_addr()?;
    info!(
        otlp_grpc = %grpc_addr,
        otlp_http = %otlp_http_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        data_dir = %args.storage.data_dir.display(),
        "spanlake is listening"
    );

    let shutdown = CancellationToken::new();
    let stop_flusher = CancellationToken::new();
    let flusher = tokio::spawn(Arc::clone(&storage).run_flusher(stop_flusher.clone()));
    tokio::spawn(signal_shutdown(shutdown.clone()));

    let grpc = tonic::transport::Server::builder()
        .add_service(spanlake_collector::grpc_service(ingest.clone()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), shutdown.clone().cancelled_owned());
    let otlp_http = axum::serve(otlp_http_listener, spanlake_collector::http_router(ingest))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let http = axum::serve(
        http_listener,
        spanlake_query::api::router(Arc::clone(&engine)).merge(spanlake_ui::router(Arc::clone(&engine))),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    if args.demo {
        let demo_args =
            DemoArgs { endpoint: format!("http://{grpc_addr}"), rate: args.demo_rate, duration: None, traces: None };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = demo::run(demo_args, stop).await {
                tracing::error!(%error, "demo traffic stopped");
            }
        });
    }

    let (grpc, otlp_http, http) = tokio::join!(grpc, otlp_http, http);
    // Whatever ended the servers, buffered spans are flushed before exit.
    shutdown.cancel();
    stop_flusher.cancel();
    flusher.await?;
    grpc.context("OTLP/gRPC server")?;
    otlp_http.context("OTLP/HTTP server")?;
    http.context("HTTP server")?;
    info!("spanlake stopped");
    Ok(())
}

async fn signal_shutdown(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot watch SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        _ = term.recv() => info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
