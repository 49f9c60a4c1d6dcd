//! Demo traffic: the shop of [`topology`], exported over real OTLP/gRPC to a
//! spanlake (or any OTLP receiver) at a steady rate.

pub(crate) mod topology;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tracing::{info, warn};

/// Flags of `spanlake demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// OTLP/gRPC endpoint to export to.
    #[arg(long, env = "SPANLAKE_DEMO_ENDPOINT", default_value = "http://127.0.0.1:4317")]
    pub(crate) endpoint: String,
    /// Traces per second.
    #[arg(long, env = "SPANLAKE_DEMO_RATE", default_value_t = 5.0)]
    pub(crate) rate: f64,
    /// Stop after this long (`30s`, `10m`); without it, run until interrupted.
    #[arg(long, env = "SPANLAKE_DEMO_DURATION", value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Stop after this many traces.
    #[arg(long, env = "SPANLAKE_DEMO_TRACES")]
    pub(crate) traces: Option<u64>,
}

/// What a demo run sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DemoReport {
    pub(crate) traces: u64,
    pub(crate) spans: u64,
    pub(crate) failed_exports: u64,
}

/// How often due traces are sent, as one export request.
const TICK: Duration = Duration::from_millis(200);

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Sends demo traces until the duration or trace count is reached, or `stop`.
pub(crate) async fn run(args: DemoArgs, stop: CancellationToken) -> anyhow::Result<DemoReport> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be above zero");
    let mut client = connect(&args.endpoint, &stop).await?;
    let mut rng = StdRng::from_os_rng();
    let mut report = DemoReport::default();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(TICK);
    info!(endpoint = %args.endpoint, rate = args.rate, "sending demo traces");
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let elapsed = started.elapsed();
        if args.duration.is_some_and(|d| elapsed >= d) || args.traces.is_some_and(|n| report.traces >= n) {
            break;
        }
        let target = (args.rate * elapsed.as_secs_f64()) as u64;
        let mut due = target.saturating_sub(report.traces);
        if let Some(limit) = args.traces {
            due = due.min(limit - report.traces);
        }
        if due == 0 {
            continue;
        }
        let start = now_nanos().saturating_sub(2_000_000_000);
        let traces: Vec<_> = (0..due.min(10_000)).map(|_| topology::generate(&mut rng, start)).collect();
        let spans: usize = traces.iter().map(|t| t.spans.len()).sum();
        report.traces += traces.len() as u64;
        match client.export(topology::export_request(&traces)).await {
            Ok(_) => report.spans += spans as u64,
            Err(status) => {
                report.failed_exports += 1;
                warn!(code = ?status.code(), message = status.message(), "demo export failed");
            }
        }
    }
    info!(traces = report.traces, spans = report.spans, failed_exports = report.failed_exports, "demo finished");
    Ok(report)
}

/// Connects, retrying for a few seconds while the receiver starts.
async fn connect(
    endpoint: &str,
    stop: &CancellationToken,
) -> anyhow::Result<TraceServiceClient<tonic::transport::Channel>> {
    let mut attempts = 0;
    loop {
        match TraceServiceClient::connect(endpoint.to_owned()).await {
            Ok(client) => return Ok(client.send_compressed(CompressionEncoding::Gzip)),
            Err(e) if attempts < 50 && !stop.is_cancelled() => {
                attempts += 1;
                if attempts == 1 {
                    warn!(endpoint, error = %e, "waiting for the OTLP receiver");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot connect to {endpoint}")),
        }
    }
}
