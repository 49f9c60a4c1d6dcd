//! `spanlake export` and `spanlake import`: a window of traces out of a
//! running server into a file, and files into a server through its OTLP
//! receiver, both through the driver client.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use prost::Message;
use spanlake_client::{Client, OtlpFormat};
use spanlake_storage::zipkin::{self, ZipkinSpan};
use spanlake_storage::{IngestLimits, SpanBatchBuilder, schema};

use crate::progress::Progress;
use crate::remote::{Identity, SearchFlags, ServerArgs};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    #[command(flatten)]
    pub(crate) search: SearchFlags,
    /// The file: `.parquet` for Parquet in spanlake's span schema, OTLP/JSON
    /// lines otherwise (a trace a line, as `spanlake import` reads them).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// At most this many traces; every trace of the window by default.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ImportArgs {
    /// The OTLP/HTTP receiver to send to.
    #[arg(long, env = "SPANLAKE_OTLP_ENDPOINT", default_value = "http://127.0.0.1:4318")]
    pub(crate) endpoint: String,
    #[command(flatten)]
    pub(crate) identity: Identity,
    /// OTLP/JSON lines (an export request a line, as `spanlake export`
    /// writes them) or Zipkin v2 JSON (a list of spans), told apart by
    /// their first character.
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
}

/// Traces asked for at once (`/api/v1/traces` takes 100 ids).
const TRACES_PER_CALL: usize = 100;
/// Spans per import request: exporters' batch size.
const SPANS_PER_REQUEST: usize = 1000;

pub(crate) async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let query = args.search.query(1000);
    let mut out = Output::create(&args.out)?;
    let mut progress = Progress::new("traces exported");
    let ids = client.search_all(&query).map_ok(|t| t.trace_id).take(args.limit.unwrap_or(usize::MAX));
    let mut chunks = pin!(ids.try_chunks(TRACES_PER_CALL));
    while let Some(ids) = chunks.try_next().await.map_err(|e| e.1)? {
        let list = client.traces(&ids).await?;
        progress.add(list.traces.len() as u64);
        out.write(list.traces.into_iter().map(|t| t.resource_spans).collect())?;
    }
    out.finish()?;
    eprintln!("exported {} traces to {}", progress.finish(), args.out.display());
    Ok(())
}

/// Where exported traces go.
enum Output {
    JsonLines(BufWriter<File>),
    Parquet(Box<ArrowWriter<File>>),
}

impl Output {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
            let properties =
                WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?)).build();
            Ok(Self::Parquet(Box::new(ArrowWriter::try_new(file, schema::span_schema(), Some(properties))?)))
        } else {
            Ok(Self::JsonLines(BufWriter::new(file)))
        }
    }

    /// Writes traces, each given as its resource spans.
    fn write(&mut self, traces: Vec<Vec<ResourceSpans>>) -> anyhow::Result<()> {
        match self {
            Self::JsonLines(out) => {
                for resource_spans in traces {
                    serde_json::to_writer(&mut *out, &ExportTraceServiceRequest { resource_spans })?;
                    out.write_all(b"\n")?;
                }
            }
            Self::Parquet(writer) => {
                let mut builder = SpanBatchBuilder::new(IngestLimits::default());
                for resource_spans in traces {
                    builder.append(&resource_spans);
                }
                writer.write(&builder.finish()?)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::JsonLines(mut out) => out.flush()?,
            Self::Parquet(writer) => {
                writer.close()?;
            }
        }
        Ok(())
    }
}

pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let client = args.identity.client(&args.endpoint, Some(&args.endpoint))?;
    let mut progress = Progress::new("spans imported");
    let mut sender = Sender { client: &client, pending: Vec::new(), spans: 0, rejected: 0 };
    for path in &args.files {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let zipkin = reader.fill_buf()?.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        if zipkin {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes)?;
            let spans: Vec<ZipkinSpan> = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a JSON list of Zipkin v2 spans", path.display()))?;
            for resource_spans in zipkin::to_otlp(spans).with_context(|| path.display().to_string())? {
                sender.add(resource_spans, &mut progress).await?;
            }
        } else {
            for (number, line) in reader.split(b'\n').enumerate() {
                let line = line?;
                if line.trim_ascii().is_empty() {
                    continue;
                }
                let request: ExportTraceServiceRequest = serde_json::from_slice(&line)
                    .with_context(|| format!("{}:{}: not an OTLP/JSON export request", path.display(), number + 1))?;
                for resource_spans in request.resource_spans {
                    sender.add(resource_spans, &mut progress).await?;
                }
            }
        }
    }
    sender.send(&mut progress).await?;
    let spans = progress.finish();
    eprintln!("imported {spans} spans from {} files", args.files.len());
    if sender.rejected > 0 {
        bail!("the server rejected {} spans", sender.rejected);
    }
    Ok(())
}

/// Batches resource spans into export requests of about
/// [`SPANS_PER_REQUEST`] spans; the client retries what the server refuses
/// for now.
struct Sender<'a> {
    client: &'a Client,
    pending: Vec<ResourceSpans>,
    spans: usize,
    rejected: i64,
}

impl Sender<'_> {
    async fn add(&mut self, resource_spans: ResourceSpans, progress: &mut Progress) -> anyhow::Result<()> {
        self.spans += resource_spans.scope_spans.iter().map(|s| s.spans.len()).sum::<usize>();
        self.pending.push(resource_spans);
        if self.spans >= SPANS_PER_REQUEST {
            self.send(progress).await?;
        }
        Ok(())
    }

    async fn send(&mut self, progress: &mut Progress) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let request = ExportTraceServiceRequest { resource_spans: std::mem::take(&mut self.pending) };
        let response = self.client.export(OtlpFormat::Protobuf, request.encode_to_vec().into()).await?;
        if let Some(partial) = response.partial_success.filter(|p| p.rejected_spans > 0) {
            eprintln!("{} spans rejected: {}", partial.rejected_spans, partial.error_message);
            self.rejected += partial.rejected_spans;
        }
        progress.add(std::mem::take(&mut self.spans) as u64);
        Ok(())
    }
}
