//! The storage engine's Prometheus metrics. Created once by whoever wires
//! the server and registered in its registry; no globals.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

impl TenantLabel {
    pub fn new(tenant: &crate::TenantId) -> Self {
        Self { tenant: tenant.as_str().to_owned() }
    }
}

fn seconds_histogram() -> Histogram {
    // 100 µs .. ~100 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

#[derive(Debug)]
pub struct StorageMetrics {
    pub wal_bytes: Counter,
    pub wal_fsync_seconds: Histogram,
    pub wal_segments: Gauge,
    pub wal_damaged_bytes: Counter,
    pub wal_write_errors: Counter,
    pub buffer_bytes: Gauge,
    pub flushes: Family<TenantLabel, Counter>,
    pub flush_errors: Counter,
    pub flush_seconds: Histogram,
    pub flush_bytes_written: Family<TenantLabel, Counter>,
    pub compactions: Family<TenantLabel, Counter>,
    pub compaction_errors: Counter,
    pub compaction_seconds: Histogram,
    pub compaction_bytes_written: Family<TenantLabel, Counter>,
    pub duplicate_spans_removed: Family<TenantLabel, Counter>,
    pub retention_removed_files: Family<TenantLabel, Counter>,
    pub files: Family<TenantLabel, Gauge>,
    pub file_bytes: Family<TenantLabel, Gauge>,
    pub catalog_commits: Counter,
    pub catalog_commit_conflicts: Counter,
    pub catalog_commit_seconds: Histogram,
    pub compactor_lease_held: Gauge,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self {
            wal_bytes: Counter::default(),
            wal_fsync_seconds: seconds_histogram(),
            wal_segments: Gauge::default(),
            wal_damaged_bytes: Counter::default(),
            wal_write_errors: Counter::default(),
            buffer_bytes: Gauge::default(),
            flushes: Family::default(),
            flush_errors: Counter::default(),
            flush_seconds: seconds_histogram(),
            flush_bytes_written: Family::default(),
            compactions: Family::default(),
            compaction_errors: Counter::default(),
            compaction_seconds: seconds_histogram(),
            compaction_bytes_written: Family::default(),
            duplicate_spans_removed: Family::default(),
            retention_removed_files: Family::default(),
            files: Family::default(),
            file_bytes: Family::default(),
            catalog_commits: Counter::default(),
            catalog_commit_conflicts: Counter::default(),
            catalog_commit_seconds: seconds_histogram(),
            compactor_lease_held: Gauge::default(),
        }
    }
}

impl StorageMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("spanlake");
        r.register("wal_bytes", "Bytes appended to the WAL", self.wal_bytes.clone());
        r.register("wal_fsync_seconds", "Time of one WAL fsync (one per group commit)", self.wal_fsync_seconds.clone());
        r.register("wal_segments", "WAL segment files on disk", self.wal_segments.clone());
        r.register(
            "wal_damaged_bytes",
            "Bytes of torn or corrupt WAL found at replay and skipped",
            self.wal_damaged_bytes.clone(),
        );
        r.register("wal_write_errors", "WAL writes that failed (exports refused)", self.wal_write_errors.clone());
        r.register("buffer_bytes", "Spans in memory, waiting for a flush, in bytes", self.buffer_bytes.clone());
        r.register("flushes", "Flushes of buffered spans into files", self.flushes.clone());
        r.register("flush_errors", "Flushes that failed and will be retried", self.flush_errors.clone());
        r.register("flush_seconds", "Duration of one flush", self.flush_seconds.clone());
        r.register(
            "flush_bytes_written",
            "Bytes of span and trace-index files written by flushes",
            self.flush_bytes_written.clone(),
        );
        r.register("compactions", "Merges of span files into larger ones", self.compactions.clone());
        r.register("compaction_errors", "Compactions that failed", self.compaction_errors.clone());
        r.register("compaction_seconds", "Duration of one compaction", self.compaction_seconds.clone());
        r.register(
            "compaction_bytes_written",
            "Bytes of span and trace-index files written by compaction (over flush bytes: the write amplification)",
            self.compaction_bytes_written.clone(),
        );
        r.register(
            "duplicate_spans_removed",
            "Spans dropped by flushes and compaction as repeats (same service, trace, start and span id)",
            self.duplicate_spans_removed.clone(),
        );
        r.register(
            "retention_removed_files",
            "Files removed because their hour fell out of retention",
            self.retention_removed_files.clone(),
        );
        r.register("files", "Live span and trace-index files", self.files.clone());
        r.register("file_bytes", "Bytes of live span and trace-index files", self.file_bytes.clone());
        r.register("catalog_commits", "Manifest versions this process published", self.catalog_commits.clone());
        r.register(
            "catalog_commit_conflicts",
            "Manifest versions another process published first; the change was applied again on top",
            self.catalog_commit_conflicts.clone(),
        );
        r.register(
            "catalog_commit_seconds",
            "Time to publish a change, retries included",
            self.catalog_commit_seconds.clone(),
        );
        r.register(
            "compactor_lease_held",
            "1 while this process runs compaction: always on one node, while it holds the lease in a cluster",
            self.compactor_lease_held.clone(),
        );
    }
}
