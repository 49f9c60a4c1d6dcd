//! `spanlake load`: a load generator. Concurrent senders export pre-encoded
//! demo-shop requests over OTLP/gRPC or OTLP/HTTP protobuf, at a target rate
//! or flat out, retry refused exports as SDKs do, and the run ends with what
//! was acknowledged, what was refused and how long exports took; with
//! `--verify`, also whether a sample of it reads back as sent.

mod limit;
mod requests;
mod sender;
mod verify;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use self::requests::Shape;
use self::sender::{Outcome, Sender};
use self::verify::Verification;
use crate::remote::ServerArgs;

/// Flags of `spanlake load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// `grpc` (OTLP/gRPC), `http` (OTLP/HTTP protobuf) or `http-json`
    /// (OTLP/HTTP JSON, each request turned into JSON before it is sent).
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// Receiver address; by default 127.0.0.1:4317 for gRPC, :4318 for HTTP.
    #[arg(long)]
    endpoint: Option<String>,
    /// Spans per second; 0 sends flat out.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop after this many spans.
    #[arg(long, default_value_t = 1_000_000)]
    spans: u64,
    /// Stop after this long, whichever comes first.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Spans per export request.
    #[arg(long, default_value_t = requests::DEFAULT_SHAPE.spans_per_request)]
    batch: usize,
    /// Spans per trace; by default as the demo shop makes them (5 to 30).
    #[arg(long)]
    spans_per_trace: Option<usize>,
    /// Attributes added to each span beside the demo's own semantic-convention
    /// ones; the default makes spans of about 500 bytes of protobuf.
    #[arg(long, default_value_t = requests::DEFAULT_SHAPE.extra_attributes)]
    attributes: usize,
    /// Exports in flight at once, each sender on its own connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Different requests encoded before the run and sent in turn; each
    /// round through them has fresh ids and later times, the same names
    /// and attribute values.
    #[arg(long, default_value_t = requests::DEFAULT_TEMPLATES)]
    templates: usize,
    /// The tenant the spans go to; the server's API and token, for `--verify`.
    #[command(flatten)]
    server: ServerArgs,
    /// After the run, read a sample of the acknowledged requests back
    /// through the server's API (`--server`) and report every span missing
    /// or different; fails if there is one.
    #[arg(long)]
    verify: bool,
    /// First measure the decode + encode limit of the same spans on one core.
    #[arg(long)]
    measure_limit: bool,
    /// Count a refused export and move on, instead of retrying it after a
    /// pause as OTLP SDKs do.
    #[arg(long)]
    no_retry: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Protocol {
    Grpc,
    Http,
    #[serde(rename = "http-json")]
    HttpJson,
}

/// Counters the senders share.
#[derive(Debug, Default)]
struct Tally {
    next_send: AtomicU64,
    acknowledged_spans: AtomicU64,
    /// Spans of every refused attempt, retried or not.
    refused_spans: AtomicU64,
    /// Spans never acknowledged because they were refused to the end.
    given_up_spans: AtomicU64,
    failed_spans: AtomicU64,
}

/// First pause before a refused export is sent again; it doubles up to the max.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

pub(crate) async fn run(args: LoadArgs, stop: CancellationToken) -> anyhow::Result<()> {
    ensure!(
        args.batch > 0 && args.concurrency > 0 && args.templates > 0,
        "--batch, --concurrency and --templates must be above zero"
    );
    ensure!(args.rate >= 0.0, "--rate must not be negative");
    let shape = Shape {
        spans_per_request: args.batch,
        spans_per_trace: args.spans_per_trace,
        extra_attributes: args.attributes,
    };
    let start = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 - 5_000_000_000;
    let templates = Arc::new(requests::templates(&mut StdRng::from_os_rng(), shape, args.templates, start));
    let bytes: usize = templates.iter().map(|t| t.bytes.len()).sum();
    let spans: usize = templates.iter().map(|t| t.spans).sum();
    let bytes_per_span = bytes as f64 / spans as f64;
    eprintln!("{} requests of {} spans, {bytes_per_span:.0} bytes of protobuf per span", templates.len(), args.batch);

    let limit = if args.measure_limit {
        let templates = templates.clone();
        let rate = tokio::task::spawn_blocking(move || {
            limit::decode_and_encode(&templates, 1_000_000, Duration::from_secs(5))
        })
        .await??;
        eprintln!("decode + sort + encode limit on one core: {rate:.0} spans/s");
        Some(rate)
    } else {
        None
    };

    let endpoint = args.endpoint.clone().unwrap_or_else(|| match args.protocol {
        Protocol::Grpc => "http://127.0.0.1:4317".into(),
        Protocol::Http | Protocol::HttpJson => "http://127.0.0.1:4318".into(),
    });
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let sends = args.spans.div_ceil(args.batch as u64);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let sender = Sender::connect(args.protocol, &endpoint, &args.server.identity.tenant).await?;
        let (templates, tally, stop, no_retry) = (templates.clone(), tally.clone(), stop.clone(), args.no_retry);
        let pace = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.batch as f64 / args.rate));
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut acknowledged) = (Vec::new(), Vec::new());
            loop {
                let send = tally.next_send.fetch_add(1, Ordering::Relaxed);
                if send >= sends || stop.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                    return (latencies, acknowledged);
                }
                if let Some(pace) = pace {
                    tokio::time::sleep_until((started + pace.mul_f64(send as f64)).into()).await;
                }
                let (template, body) = templates.request(send);
                let body = sender.body(body);
                let sent = Instant::now();
                let mut pause = RETRY_PAUSE;
                let counter = loop {
                    match sender.export(body.clone()).await {
                        Outcome::Acknowledged => {
                            latencies.push(sent.elapsed());
                            acknowledged.push(send);
                            break &tally.acknowledged_spans;
                        }
                        Outcome::Refused => {
                            tally.refused_spans.fetch_add(template.spans as u64, Ordering::Relaxed);
                            let out_of_time = deadline.is_some_and(|d| Instant::now() + pause >= d);
                            if no_retry || out_of_time || stop.is_cancelled() {
                                break &tally.given_up_spans;
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(MAX_RETRY_PAUSE);
                        }
                        Outcome::Failed(error) => {
                            tracing::warn!(%error, "export failed");
                            break &tally.failed_spans;
                        }
                    }
                };
                counter.fetch_add(template.spans as u64, Ordering::Relaxed);
            }
        }));
    }
    let (mut latencies, mut acknowledged_sends) = (Vec::new(), Vec::new());
    for worker in workers {
        let (worker_latencies, worker_sends) = worker.await?;
        latencies.extend(worker_latencies);
        acknowledged_sends.extend(worker_sends);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let acknowledged = tally.acknowledged_spans.load(Ordering::Relaxed);
    let verified = if args.verify {
        let sends = verify::sample(acknowledged_sends);
        Some(verify::verify(&args.server.client()?, &templates, &sends).await?)
    } else {
        None
    };
    let report = Report {
        protocol: args.protocol,
        seconds: elapsed,
        spans_acknowledged: acknowledged,
        spans_refused: tally.refused_spans.load(Ordering::Relaxed),
        spans_given_up: tally.given_up_spans.load(Ordering::Relaxed),
        spans_failed: tally.failed_spans.load(Ordering::Relaxed),
        spans_per_second: acknowledged as f64 / elapsed,
        export_latency_ms: Latency { p50: quantile(0.5), p99: quantile(0.99), max: quantile(1.0) },
        bytes_per_span,
        limit_spans_per_second: limit,
        verified,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    if let Some(verified) = report.verified.as_ref().filter(|v| !v.ok()) {
        bail!(
            "{} spans missing, {} different of {} read back",
            verified.spans_missing,
            verified.spans_different,
            verified.spans_checked
        );
    }
    Ok(())
}

/// What a run achieved; `--json` prints it as is.
#[derive(Debug, serde::Serialize)]
struct Report {
    protocol: Protocol,
    seconds: f64,
    spans_acknowledged: u64,
    spans_refused: u64,
    spans_given_up: u64,
    spans_failed: u64,
    spans_per_second: f64,
    export_latency_ms: Latency,
    bytes_per_span: f64,
    limit_spans_per_second: Option<f64>,
    verified: Option<Verification>,
}

#[derive(Debug, serde::Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} spans acknowledged in {:.1} s: {:.0} spans/s over {:?} ({:.0} bytes of protobuf per span)",
            self.spans_acknowledged, self.seconds, self.spans_per_second, self.protocol, self.bytes_per_span
        )?;
        writeln!(
            f,
            "refused (retryable): {} spans in all, {} of them never acknowledged; failed: {} spans",
            self.spans_refused, self.spans_given_up, self.spans_failed
        )?;
        let latency = &self.export_latency_ms;
        writeln!(f, "export latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", latency.p50, latency.p99, latency.max)?;
        if let Some(limit) = self.limit_spans_per_second {
            let share = self.spans_per_second / limit;
            writeln!(f, "decode + encode limit: {limit:.0} spans/s on one core; ingest reached {share:.2} of it")?;
        }
        if let Some(verified) = &self.verified {
            writeln!(
                f,
                "read back {} spans of up to {} acknowledged requests: {} missing, {} different",
                verified.spans_checked,
                verify::SAMPLED_SENDS,
                verified.spans_missing,
                verified.spans_different
            )?;
            for problem in &verified.problems {
                writeln!(f, "  {problem}")?;
            }
        }
        Ok(())
    }
}
