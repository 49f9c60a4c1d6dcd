//! Metrics made from the spans themselves, on `/metrics/spans`, in the names
//! Grafana (its Tempo data source's RED panels and service graph) and
//! Jaeger's Monitor tab read from a Prometheus that scrapes them:
//!
//! - `traces_spanmetrics_calls_total` and `traces_spanmetrics_latency`
//!   (seconds) per service, span name, kind and status, as Tempo's metrics
//!   generator writes them (`service`; `service_name` too, the label
//!   Jaeger's queries use);
//! - `traces_service_graph_request_total`, `..._failed_total`,
//!   `..._server_seconds` and `..._client_seconds` per client and server
//!   service (`service_graph.rs`).
//!
//! Spans count once they are durable (after the WAL append), since the
//! process started. Label sets are bounded: past `max_series` per family,
//! new combinations are counted under `__overflow__` in place of the
//! service and span name (or client and server), so a span name with ids
//! in it cannot grow the scrape without end.

mod service_graph;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use spanlake_storage::TenantId;
use spanlake_storage::schema;
use tracing::warn;

use service_graph::ServiceGraph;

/// Stands for the service and span name of spans past the series bound.
pub const OVERFLOW: &str = "__overflow__";

#[derive(Debug, Clone)]
pub struct SpanMetricsConfig {
    /// Most label sets per metric family.
    pub max_series: usize,
    /// How long a client or server span waits for the other half of its
    /// call before it counts alone.
    pub pair_wait: Duration,
    /// Most spans waiting for their other half.
    pub max_pending: usize,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        Self { max_series: 10_000, pair_wait: Duration::from_secs(10), max_pending: 100_000 }
    }
}

/// Tempo's default buckets: 2 ms to 16 s, doubling.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.002, 2.0, 14))
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SpanLabels {
    tenant: String,
    service: String,
    service_name: String,
    span_name: String,
    span_kind: String,
    status_code: String,
}

#[derive(Debug)]
pub struct SpanMetrics {
    calls: Family<SpanLabels, Counter>,
    latency: Histograms<SpanLabels>,
    series: Mutex<HashSet<SpanLabels>>,
    graph: ServiceGraph,
    config: SpanMetricsConfig,
}

impl SpanMetrics {
    pub fn new(config: SpanMetricsConfig) -> Self {
        Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(seconds_histogram),
            series: Mutex::default(),
            graph: ServiceGraph::new(&config),
            config,
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register("traces_spanmetrics_calls", "Spans received", self.calls.clone());
        registry.register("traces_spanmetrics_latency", "Span durations in seconds", self.latency.clone());
        self.graph.register(registry);
    }

    /// Counts the spans of one stored export.
    pub fn record(&self, tenant: &TenantId, batch: &RecordBatch) {
        self.record_at(tenant, batch, Instant::now());
    }

    fn record_at(&self, tenant: &TenantId, batch: &RecordBatch, now: Instant) {
        let spans = match Spans::of(batch) {
            Ok(spans) => spans,
            Err(error) => {
                warn!(%error, "span metrics skip a batch");
                return;
            }
        };
        // Grouped first, so labels are built once per distinct set in a batch.
        let mut groups: HashMap<(&str, &str, &str, &str), Vec<f64>> = HashMap::new();
        for row in 0..batch.num_rows() {
            let key = (spans.service(row), spans.names.value(row), spans.kinds.value(row), spans.statuses.value(row));
            groups.entry(key).or_default().push(spans.seconds(row));
        }
        for ((service, name, kind, status), durations) in groups {
            let mut labels = SpanLabels {
                tenant: tenant.as_str().to_owned(),
                service: service.to_owned(),
                service_name: service.to_owned(),
                span_name: name.to_owned(),
                span_kind: format!("SPAN_KIND_{kind}"),
                status_code: format!("STATUS_CODE_{status}"),
            };
            if !self.admit(&labels) {
                labels.service = OVERFLOW.to_owned();
                labels.service_name = OVERFLOW.to_owned();
                labels.span_name = OVERFLOW.to_owned();
            }
            self.calls.get_or_create(&labels).inc_by(durations.len() as u64);
            let histogram = self.latency.get_or_create(&labels);
            for seconds in durations {
                histogram.observe(seconds);
            }
        }
        self.graph.record(tenant, &spans, now);
    }

    /// Whether `labels` is a series already or there is room for it.
    fn admit(&self, labels: &SpanLabels) -> bool {
        let mut series = self.series.lock().expect("span metric series");
        series.contains(labels) || (series.len() < self.config.max_series && series.insert(labels.clone()))
    }
}

/// The columns of a batch the metrics read.
struct Spans {
    services: StringArray,
    names: StringArray,
    kinds: StringArray,
    statuses: StringArray,
    remotes: StringArray,
    db_systems: StringArray,
    messaging_systems: StringArray,
    durations: arrow::array::Int64Array,
    trace_ids: arrow::array::FixedSizeBinaryArray,
    span_ids: arrow::array::FixedSizeBinaryArray,
    parents: arrow::array::FixedSizeBinaryArray,
}

impl Spans {
    fn of(batch: &RecordBatch) -> Result<Self, String> {
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column {name}"));
        let text = |name: &str| -> Result<StringArray, String> {
            let array = cast(column(name)?, &DataType::Utf8).map_err(|e| e.to_string())?;
            Ok(array.as_string::<i32>().clone())
        };
        let ids = |name: &str| -> Result<arrow::array::FixedSizeBinaryArray, String> {
            column(name)?.as_fixed_size_binary_opt().cloned().ok_or_else(|| format!("{name} is no id column"))
        };
        let durations = column(schema::DURATION_NS)?
            .as_primitive_opt::<Int64Type>()
            .cloned()
            .ok_or_else(|| "duration_ns is not Int64".to_owned())?;
        Ok(Self {
            services: text(schema::SERVICE_NAME)?,
            names: text(schema::SPAN_NAME)?,
            kinds: text(schema::SPAN_KIND)?,
            statuses: text(schema::STATUS_CODE)?,
            remotes: text(schema::REMOTE_SERVICE_NAME)?,
            db_systems: text("db_system")?,
            messaging_systems: text("messaging_system")?,
            durations,
            trace_ids: ids(schema::TRACE_ID)?,
            span_ids: ids(schema::SPAN_ID)?,
            parents: ids(schema::PARENT_SPAN_ID)?,
        })
    }

    fn service(&self, row: usize) -> &str {
        if self.services.is_null(row) { "unknown_service" } else { self.services.value(row) }
    }

    fn seconds(&self, row: usize) -> f64 {
        self.durations.value(row) as f64 / 1e9
    }

    fn text<'a>(array: &'a StringArray, row: usize) -> Option<&'a str> {
        (!array.is_null(row) && !array.value(row).is_empty()).then(|| array.value(row))
    }
}

#[cfg(test)]
mod tests;
