//! `spanlake serve`: receivers, storage, query API and UI in one process,
//! or the roles of a cluster named by `--roles` (`roles.rs`).
//!
//! Start-up binds every port first and answers `/healthz` (and `/readyz`
//! with 503) while the WAL replays; the API and the receivers open once the
//! replay is done. Shutdown on SIGINT/SIGTERM: the listeners stop accepting
//! and finish the requests in flight, then the buffer is flushed and the
//! WAL closed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use spanlake_collector::{CollectorConfig, CollectorMetrics, Ingest, SpanMetrics, SpanMetricsConfig};
use spanlake_query::auth::AuthToken;
use spanlake_query::collectors::Collectors;
use spanlake_query::distributed::QueryWorkers;
use spanlake_query::peers::Peers;
use spanlake_query::{QueryEngine, QueryLimits};
use spanlake_storage::lease::Lease;
use spanlake_storage::{
    CompactionConfig, DEFAULT_MAX_BUFFER_BYTES, FlushConfig, IngestLimits, Storage, StorageConfig, StorageMetrics,
    WalConfig, WalSync,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::demo::{self, DemoArgs};
use crate::ops::Ops;
use crate::roles::{ClusterArgs, Roles};
use crate::store::{StoreLocation, open_store};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    #[command(flatten)]
    pub(crate) ingest: IngestArgs,
    #[command(flatten)]
    pub(crate) query: QueryArgs,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
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
    /// HTTP API, UI, /metrics, /healthz and /readyz.
    #[arg(long, env = "SPANLAKE_HTTP_ADDR", default_value = "127.0.0.1:9411")]
    pub(crate) http_addr: SocketAddr,
    /// PostgreSQL wire protocol, for psql, drivers and BI tools.
    #[arg(long, env = "SPANLAKE_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub(crate) pg_addr: SocketAddr,
    /// Jaeger's gRPC query API (`jaeger.api_v3.QueryService`).
    #[arg(long, env = "SPANLAKE_JAEGER_GRPC_ADDR", default_value = "127.0.0.1:16685")]
    pub(crate) jaeger_grpc_addr: SocketAddr,
    /// Arrow Flight SQL, for ADBC, JDBC Flight SQL drivers and DBeaver.
    #[arg(long, env = "SPANLAKE_FLIGHT_SQL_ADDR", default_value = "127.0.0.1:50051")]
    pub(crate) flight_sql_addr: SocketAddr,
}

/// Where and how spans are stored.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StorageArgs {
    /// Local directory: the WAL (always), and the data files unless --storage names S3.
    #[arg(long, env = "SPANLAKE_DATA_DIR", default_value = "./spanlake-data")]
    pub(crate) data_dir: PathBuf,
    /// Where data files and the catalog go: `s3://bucket/prefix`, configured
    /// by the standard AWS_* variables; without it, the data directory.
    #[arg(long, env = "SPANLAKE_STORAGE")]
    pub(crate) storage: Option<StoreLocation>,
    #[command(flatten)]
    pub(crate) s3: crate::store::S3Args,
    /// Write buffered spans to files at least this often.
    #[arg(long, env = "SPANLAKE_FLUSH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) flush_interval: Duration,
    /// Write a tenant's buffer as soon as it holds this many spans.
    #[arg(long, env = "SPANLAKE_FLUSH_ROWS", default_value_t = FlushConfig::default().max_rows)]
    pub(crate) flush_rows: usize,
    /// Buffered spans (bytes of Arrow memory) above which exports are
    /// refused with a retryable error; a flush starts at half of it.
    #[arg(long, env = "SPANLAKE_MAX_BUFFER_BYTES", default_value_t = DEFAULT_MAX_BUFFER_BYTES)]
    pub(crate) max_buffer_bytes: usize,
    /// `fsync` acknowledges exports only once the WAL is on disk; `none`
    /// leaves that to the OS (survives a crash of spanlake, not of the machine).
    #[arg(long, env = "SPANLAKE_WAL_SYNC", value_enum, default_value_t = WalSyncArg::Fsync)]
    pub(crate) wal_sync: WalSyncArg,
    /// Remove spans older than this (`7d`, `36h`); keep everything without it.
    #[arg(long, env = "SPANLAKE_RETENTION", value_parser = humantime::parse_duration)]
    pub(crate) retention: Option<Duration>,
    /// How often hours are checked for compaction, retention and deletion.
    #[arg(long, env = "SPANLAKE_COMPACTION_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) compaction_interval: Duration,
    /// Files of one compaction level that an hour still being written
    /// collects before they are merged into one of the next level.
    #[arg(long, env = "SPANLAKE_COMPACTION_MIN_FILES", default_value_t = CompactionConfig::default().min_files)]
    pub(crate) compaction_min_files: usize,
    /// Size of compacted files, in bytes.
    #[arg(long, env = "SPANLAKE_COMPACTION_TARGET_BYTES", default_value_t = CompactionConfig::default().target_file_bytes)]
    pub(crate) compaction_target_bytes: usize,
    /// Replaced files are deleted this long after leaving the catalog.
    #[arg(long, env = "SPANLAKE_DELETE_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) delete_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WalSyncArg {
    Fsync,
    None,
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
    /// Label sets per span metric family on `/metrics/spans` (service, span
    /// name, kind, status; or client and server); more are counted as `__overflow__`.
    #[arg(long, env = "SPANLAKE_SPAN_METRICS_MAX_SERIES", default_value_t = SpanMetricsConfig::default().max_series)]
    pub(crate) span_metrics_max_series: usize,
}

/// Who may query, and bounds on queries (API, SQL, pgwire, UI).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct QueryArgs {
    /// Required to read spans: as `Authorization: Bearer` on the HTTP API,
    /// through the UI's login page, and as the pgwire password. Receivers stay open.
    #[arg(long, env = "SPANLAKE_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// Origins whose pages may call the read APIs from a browser
    /// (comma-separated, or `*`). Default: every origin without an auth
    /// token, none with one (then list them; `*` is refused with credentials).
    #[arg(long, env = "SPANLAKE_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub(crate) cors_allowed_origins: Vec<String>,
    /// Memory one query may hold, in bytes.
    #[arg(long, env = "SPANLAKE_QUERY_MEMORY_LIMIT", default_value_t = QueryLimits::default().memory_bytes)]
    pub(crate) query_memory_limit: usize,
    /// Queries running at once; more wait for a turn. Queries run at a
    /// lower CPU priority than ingest.
    #[arg(long, env = "SPANLAKE_QUERY_CONCURRENCY", default_value_t = QueryLimits::default().concurrency)]
    pub(crate) query_concurrency: usize,
    /// A query running longer is cancelled (504).
    #[arg(long, env = "SPANLAKE_QUERY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(crate) query_timeout: Duration,
    /// Most rows one answer may have (400 past it, for SQL, API and UI alike).
    #[arg(long, env = "SPANLAKE_QUERY_MAX_ROWS", default_value_t = QueryLimits::default().max_rows)]
    pub(crate) query_max_rows: usize,
}

impl QueryArgs {
    fn limits(&self) -> QueryLimits {
        QueryLimits {
            memory_bytes: self.query_memory_limit,
            concurrency: self.query_concurrency,
            timeout: self.query_timeout,
            max_rows: self.query_max_rows,
            ..QueryLimits::default()
        }
    }
}

impl StorageArgs {
    fn config(&self, limits: IngestLimits) -> StorageConfig {
        let mut config = StorageConfig::new(self.data_dir.join(".wal"));
        config.flush = FlushConfig { interval: self.flush_interval, max_rows: self.flush_rows };
        config.max_buffer_bytes = self.max_buffer_bytes;
        config.wal = WalConfig {
            sync: match self.wal_sync {
                WalSyncArg::Fsync => WalSync::Fsync,
                WalSyncArg::None => WalSync::None,
            },
            ..WalConfig::new(self.data_dir.join(".wal"))
        };
        config.compaction = CompactionConfig {
            interval: self.compaction_interval,
            min_files: self.compaction_min_files.max(2),
            target_file_bytes: self.compaction_target_bytes,
            tombstone_grace: self.delete_grace,
            ..CompactionConfig::default()
        };
        config.retention = self.retention;
        config.limits = limits;
        config.local_root = self.storage.is_none().then(|| self.data_dir.clone());
        config
    }
}

/// A gRPC server's connections, Nagle's algorithm off: HTTP/2 writes a
/// response's headers and data apart, and the second small write would wait
/// for the client's delayed ACK (40 ms a call, measured on Flight SQL).
fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|connection| {
        let connection = connection?;
        connection.set_nodelay(true)?;
        Ok(connection)
    })
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for {what}"))
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let roles = args.cluster.roles(args.storage.storage.is_some())?;
    // Every process answers /healthz, /readyz and /metrics on the HTTP port.
    let http_listener = bind(args.listen.http_addr, "the HTTP API").await?;
    let mut listeners = Listeners::bind(&args, roles).await?;
    let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string());
    info!(
        roles = ?roles,
        http = %http_listener.local_addr()?,
        otlp_grpc = addr(&listeners.grpc),
        otlp_http = addr(&listeners.otlp_http),
        flight = addr(&listeners.flight),
        pg = addr(&listeners.pg),
        jaeger_grpc = addr(&listeners.jaeger),
        flight_sql = addr(&listeners.flight_sql),
        worker = addr(&listeners.worker),
        data_dir = %args.storage.data_dir.display(),
        "spanlake is listening"
    );

    let storage_metrics = Arc::new(StorageMetrics::default());
    let collector_metrics = Arc::new(CollectorMetrics::default());
    let mut registry = Registry::default();
    storage_metrics.register(&mut registry);
    collector_metrics.register(&mut registry);
    let span_metrics = Arc::new(SpanMetrics::new(SpanMetricsConfig {
        max_series: args.ingest.span_metrics_max_series,
        ..SpanMetricsConfig::default()
    }));
    let mut span_registry = Registry::default();
    span_metrics.register(&mut span_registry);
    let ops = Ops::new(registry, span_registry);

    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    let http = tokio::spawn(
        axum::serve(http_listener, ops.router())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    let limits = IngestLimits { max_attribute_value_bytes: args.ingest.max_attribute_bytes };
    let store = open_store(args.storage.storage.as_ref(), &args.storage.data_dir, &args.storage.s3)?;
    let config = args.storage.config(limits);
    // Only collectors own a WAL.
    let storage = if roles.collector {
        Storage::open(store, config, storage_metrics).await?
    } else {
        Storage::open_read_only(store, config, storage_metrics).await?
    };
    let replay = storage.replay_report();
    info!(records = replay.records, damaged_segments = replay.damaged_segments, "storage is ready");

    let mut process = Process {
        args: &args,
        roles,
        token: args.query.auth_token.as_deref().and_then(AuthToken::new),
        storage,
        shutdown: shutdown.clone(),
        stop_background: CancellationToken::new(),
        servers: Vec::new(),
        background: Vec::new(),
        app: axum::Router::new(),
    };
    if roles.collector {
        process.collector(&mut listeners, collector_metrics, span_metrics)?;
    }
    if roles.query {
        process.query(&mut listeners).await?;
    }
    if roles.compactor {
        process.compactor();
    }
    ops.ready(std::mem::take(&mut process.app));

    let mut failures = Vec::new();
    if process.servers.is_empty() {
        shutdown.cancelled().await;
    }
    for (what, server) in process.servers {
        // Whatever ended one server, the others stop and buffered spans are flushed before exit.
        let result = server.await?;
        shutdown.cancel();
        if let Err(error) = result {
            failures.push(error.context(what));
        }
    }
    shutdown.cancel();
    let http = http.await?;
    process.stop_background.cancel();
    for task in process.background {
        task.await?;
    }
    if let Some(error) = failures.into_iter().next() {
        return Err(error);
    }
    http.context("HTTP server")?;
    info!("spanlake stopped");
    Ok(())
}

/// What each role listens on, bound before anything else starts.
#[derive(Debug, Default)]
struct Listeners {
    grpc: Option<TcpListener>,
    otlp_http: Option<TcpListener>,
    flight: Option<TcpListener>,
    pg: Option<TcpListener>,
    jaeger: Option<TcpListener>,
    flight_sql: Option<TcpListener>,
    worker: Option<TcpListener>,
}

impl Listeners {
    async fn bind(args: &ServeArgs, roles: Roles) -> anyhow::Result<Self> {
        let mut listeners = Self::default();
        if roles.collector {
            listeners.grpc = Some(bind(args.listen.otlp_grpc_addr, "OTLP/gRPC").await?);
            listeners.otlp_http = Some(bind(args.listen.otlp_http_addr, "OTLP/HTTP").await?);
            if roles.split() {
                listeners.flight = Some(bind(args.cluster.flight_addr, "Arrow Flight (fresh spans)").await?);
            }
        }
        if roles.query {
            listeners.pg = Some(bind(args.listen.pg_addr, "pgwire").await?);
            listeners.jaeger = Some(bind(args.listen.jaeger_grpc_addr, "Jaeger's gRPC query API").await?);
            listeners.flight_sql = Some(bind(args.listen.flight_sql_addr, "Arrow Flight SQL").await?);
            if roles.split() || !args.cluster.query_workers.is_empty() {
                listeners.worker = Some(bind(args.cluster.worker_addr, "the query worker").await?);
            }
        }
        Ok(listeners)
    }
}

/// One process's roles being started: the servers they run until
/// shutdown, the background loops stopped after those, and the routes
/// they add to the HTTP port.
struct Process<'a> {
    args: &'a ServeArgs,
    roles: Roles,
    token: Option<AuthToken>,
    storage: Arc<Storage>,
    shutdown: CancellationToken,
    stop_background: CancellationToken,
    servers: Vec<(&'static str, tokio::task::JoinHandle<anyhow::Result<()>>)>,
    background: Vec<tokio::task::JoinHandle<()>>,
    app: axum::Router,
}

impl Process<'_> {
    fn serve<E: Into<anyhow::Error>>(
        &mut self,
        what: &'static str,
        server: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        self.servers.push((what, tokio::spawn(async move { server.await.map_err(Into::into) })));
    }

    fn secret(&self) -> Option<String> {
        self.token.as_ref().map(|t| t.secret().to_string())
    }

    fn collector(
        &mut self,
        listeners: &mut Listeners,
        metrics: Arc<CollectorMetrics>,
        span_metrics: Arc<SpanMetrics>,
    ) -> anyhow::Result<()> {
        let config =
            CollectorConfig { max_request_bytes: self.args.ingest.max_request_bytes, ..CollectorConfig::default() };
        let ingest = Ingest::new(Arc::clone(&self.storage), config, metrics, span_metrics);
        self.app = std::mem::take(&mut self.app).merge(spanlake_collector::zipkin_router(ingest.clone()));
        let grpc = listeners.grpc.take().expect("bound for the collector role");
        let grpc_addr = grpc.local_addr()?;
        let stop = self.shutdown.clone().cancelled_owned();
        self.serve(
            "OTLP/gRPC server",
            tonic::transport::Server::builder()
                .add_service(spanlake_collector::grpc_service(ingest.clone()))
                .serve_with_incoming_shutdown(incoming(grpc), stop),
        );
        let otlp_http = listeners.otlp_http.take().expect("bound for the collector role");
        let stop = self.shutdown.clone().cancelled_owned();
        self.serve(
            "OTLP/HTTP server",
            axum::serve(otlp_http, spanlake_collector::http_router(ingest)).with_graceful_shutdown(stop).into_future(),
        );
        if let Some(flight) = listeners.flight.take() {
            let service = spanlake_collector::flight_service(Arc::clone(&self.storage), self.secret());
            let stop = self.shutdown.clone().cancelled_owned();
            self.serve(
                "Arrow Flight server",
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming(flight), stop),
            );
        }
        self.background.push(tokio::spawn(Arc::clone(&self.storage).run_flusher(self.stop_background.clone())));
        if self.args.demo {
            let demo_args = DemoArgs {
                endpoint: format!("http://{grpc_addr}"),
                rate: self.args.demo_rate,
                duration: None,
                traces: None,
            };
            let stop = self.shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = demo::run(demo_args, stop).await {
                    tracing::error!(%error, "demo traffic stopped");
                }
            });
        }
        Ok(())
    }

    async fn query(&mut self, listeners: &mut Listeners) -> anyhow::Result<()> {
        let cluster = &self.args.cluster;
        let mut engine = QueryEngine::new(Arc::clone(&self.storage), self.args.query.limits())?;
        if !cluster.collectors.is_empty() {
            let peers = Peers::resolve("collectors", cluster.collectors.clone(), self.stop_background.clone()).await;
            engine = engine.with_collectors(Arc::new(Collectors::new(peers, self.secret())));
        }
        if !cluster.query_workers.is_empty() {
            let peers =
                Peers::resolve("query workers", cluster.query_workers.clone(), self.stop_background.clone()).await;
            let bytes_per_partition = cluster.query_worker_bytes;
            engine = engine.with_workers(QueryWorkers { peers, bytes_per_partition, token: self.secret() });
        }
        let engine = Arc::new(engine);
        let reads = spanlake_query::api::router(Arc::clone(&engine)).merge(spanlake_ui::router(Arc::clone(&engine)));
        let reads = spanlake_query::api::mark_partial(reads, Arc::clone(&engine));
        let reads = match &self.token {
            Some(token) => token.require(reads),
            None => reads,
        };
        // Outside the token check: a preflight request carries no credentials.
        let reads = match crate::cors::layer(&self.args.query.cors_allowed_origins, self.token.is_some())? {
            Some(cors) => reads.layer(cors),
            None => reads,
        };
        self.app = std::mem::take(&mut self.app).merge(reads).merge(spanlake_ui::public_router(self.token.clone()));
        let pg = spanlake_query::pg::serve(
            listeners.pg.take().expect("bound for the query role"),
            Arc::clone(&engine),
            self.token.as_ref().map(|t| t.secret()),
            self.shutdown.clone(),
        );
        self.serve("pgwire server", async move {
            pg.await;
            Ok::<_, anyhow::Error>(())
        });
        let jaeger = listeners.jaeger.take().expect("bound for the query role");
        let stop = self.shutdown.clone().cancelled_owned();
        self.serve(
            "Jaeger gRPC server",
            tonic::transport::Server::builder()
                .add_service(spanlake_query::api::jaeger::grpc::query_service(Arc::clone(&engine), self.token.clone()))
                .serve_with_incoming_shutdown(incoming(jaeger), stop),
        );
        let flight_sql = listeners.flight_sql.take().expect("bound for the query role");
        let stop = self.shutdown.clone().cancelled_owned();
        self.serve(
            "Flight SQL server",
            tonic::transport::Server::builder()
                .add_service(spanlake_query::flight_sql::service(Arc::clone(&engine), self.token.clone()))
                .serve_with_incoming_shutdown(incoming(flight_sql), stop),
        );
        if let Some(worker) = listeners.worker.take() {
            let service = engine.worker()?.into_worker_server();
            let secret = self.secret();
            let stop = self.shutdown.clone().cancelled_owned();
            self.serve(
                "query worker",
                tonic::transport::Server::builder()
                    .layer(tonic::service::InterceptorLayer::new(move |request| bearer(&secret, request)))
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming(worker), stop),
            );
        }
        let interval = self.args.storage.compaction_interval;
        self.background.push(tokio::spawn(Arc::clone(&engine).run_upkeep(interval, self.stop_background.clone())));
        if self.roles.split() {
            let (storage, every) = (Arc::clone(&self.storage), cluster.catalog_refresh);
            self.background.push(tokio::spawn(refresh_catalog(storage, every, self.stop_background.clone())));
        }
        Ok(())
    }

    /// Upkeep: always on one node; in a cluster while this process holds the lease.
    fn compactor(&mut self) {
        let (active, lease_held) = tokio::sync::watch::channel(!self.roles.split());
        if self.roles.split() {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
            let holder = format!("{host}/{}", std::process::id());
            let lease = Lease::new(self.storage.object_store(), "compactor", holder, self.args.cluster.compactor_lease);
            self.background.push(tokio::spawn(lease.run(active, self.stop_background.clone())));
        }
        let maintenance = Arc::clone(&self.storage).run_maintenance(lease_held, self.stop_background.clone());
        self.background.push(tokio::spawn(maintenance));
    }
}

/// A query node reads the manifests other processes publish this often.
async fn refresh_catalog(storage: Arc<Storage>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(error) = storage.refresh_catalog().await {
            tracing::warn!(%error, "could not read the catalog");
        }
    }
}

/// The worker service, like every read surface, asks for the auth token.
fn bearer(secret: &Option<String>, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let Some(secret) = secret else { return Ok(request) };
    let sent = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
    match sent.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(sent) if sent == secret => Ok(request),
        _ => Err(tonic::Status::unauthenticated("a valid bearer token is required")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grpc_connections_are_accepted_without_nagle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut connections = std::pin::pin!(incoming(listener));
        let _client = TcpStream::connect(addr).await.unwrap();
        let accepted = connections.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
