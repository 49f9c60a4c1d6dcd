//! The storage engine: WAL, write buffer, catalog and data files, and the
//! background work that moves spans between them.
//!
//! ```text
//! write ──> WAL (fsync) ──> buffer ──flush──> span + trace-index files ──> manifest ──> WAL segments deleted
//!                              │                                              │
//! snapshot(tenant) = manifest files + buffered batches above the manifest's WAL watermark
//! ```
//!
//! A snapshot reads the buffer first and the manifest second, and keeps
//! only the batches above the manifest's watermark. A flush publishes the
//! manifest before it drops the batches from the buffer. Whichever way the
//! two interleave, a snapshot holds every span exactly once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use object_store::ObjectStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::batch::IngestLimits;
use crate::buffer::Buffer;
use crate::catalog::{Catalog, DataFile, Manifest};
use crate::clock::{Clock, SystemClock};
use crate::compaction::CompactionConfig;
use crate::error::StorageError;
use crate::export::{self, DecodedExport, ExportBody};
use crate::metrics::{StorageMetrics, TenantLabel};
use crate::paths::{FileKind, TenantId};
use crate::wal::{self, Durable, Record, ReplayReport, Wal, WalConfig};

/// When buffered spans become files.
#[derive(Debug, Clone)]
pub struct FlushConfig {
    /// Flush at least this often: bounds how long spans wait in memory.
    pub interval: Duration,
    /// Flush as soon as a tenant buffers this many spans: one full row group.
    pub max_rows: usize,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(5), max_rows: crate::data_file::ROW_GROUP_ROWS }
    }
}

/// 256 MiB of buffered spans absorbs a few seconds of bursts on a small
/// machine; at 512 MiB a saturated 2-core server peaked near 2 GiB
/// (BENCHMARKS.md).
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub flush: FlushConfig,
    /// Buffered spans (in Arrow memory) above which writes are refused with
    /// a retryable error; a flush starts at half of it.
    pub max_buffer_bytes: usize,
    pub wal: WalConfig,
    pub compaction: CompactionConfig,
    /// Hours older than this are removed; `None` keeps everything.
    pub retention: Option<Duration>,
    /// Applied to every export, live and when the WAL is replayed.
    pub limits: IngestLimits,
    /// For a store on local disk, its directory: files are fsynced there
    /// before the WAL records they hold are deleted.
    pub local_root: Option<PathBuf>,
    /// What retention, compaction and deletions take as now.
    pub clock: Arc<dyn Clock>,
}

impl StorageConfig {
    pub fn new(wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            flush: FlushConfig::default(),
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
            wal: WalConfig::new(wal_dir),
            compaction: CompactionConfig::default(),
            retention: None,
            limits: IngestLimits::default(),
            local_root: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// What a query reads: one tenant's live files and buffered spans at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub manifest: Arc<Manifest>,
    pub batches: Vec<RecordBatch>,
}

impl Snapshot {
    pub fn files(&self, kind: FileKind) -> impl Iterator<Item = &DataFile> {
        self.manifest.files_of(kind)
    }
}

/// Spans of all tenants: logged, buffered, flushed, compacted, expired.
#[derive(Debug)]
pub struct Storage {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) catalog: Catalog,
    /// `None` when opened read-only.
    pub(crate) wal: Option<Wal>,
    pub(crate) buffer: Arc<Buffer>,
    pub(crate) config: StorageConfig,
    pub(crate) metrics: Arc<StorageMetrics>,
    pub(crate) flush_lock: tokio::sync::Mutex<()>,
    pub(crate) flush_wanted: Arc<Notify>,
    /// Bytes of writes waiting for the WAL, counted against the buffer limit.
    pub(crate) in_flight: AtomicUsize,
    replay: ReplayReport,
}

impl Storage {
    /// Loads the catalog, replays the WAL into the buffer and starts the WAL.
    /// Every span acknowledged before a crash is queryable when this returns.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        config: StorageConfig,
        metrics: Arc<StorageMetrics>,
    ) -> Result<Arc<Self>, StorageError> {
        let catalog = Catalog::open(Arc::clone(&store), Arc::clone(&metrics)).await?;
        let writer_id = wal::writer_id(&config.wal.dir)?;
        let buffer = Arc::new(Buffer::default());
        let flush_wanted = Arc::new(Notify::new());
        let flushed: HashMap<TenantId, u64> = catalog
            .tenants()
            .into_iter()
            .filter_map(|tenant| {
                let through = catalog.manifest(&tenant).wal_through.get(&writer_id).copied()?;
                Some((tenant, through))
            })
            .collect();
        let flushed_through = flushed.values().copied().max().unwrap_or(0);

        let replay = {
            let (buffer, metrics, limits) = (Arc::clone(&buffer), Arc::clone(&metrics), config.limits.clone());
            move |record: Record| {
                if record.seq <= flushed.get(&record.tenant).copied().unwrap_or(0) {
                    return;
                }
                match export::decode(record.body, &limits) {
                    Ok(export) => {
                        buffer.insert(record.tenant, record.seq, export.batch, &metrics);
                    }
                    Err(error) => warn!(seq = record.seq, %error, "WAL record does not decode; skipped"),
                }
            }
        };
        let on_durable = {
            let (buffer, metrics, wanted) = (Arc::clone(&buffer), Arc::clone(&metrics), Arc::clone(&flush_wanted));
            let (max_rows, flush_bytes) = (config.flush.max_rows, config.max_buffer_bytes / 2);
            Box::new(move |group: Vec<Durable>| {
                let mut full = false;
                for durable in group {
                    full |= buffer.insert(durable.tenant, durable.seq, durable.batch, &metrics) >= max_rows;
                }
                if full || buffer.bytes() >= flush_bytes {
                    wanted.notify_one();
                }
            })
        };
        // Replay reads and decodes every segment: CPU and disk work, off the runtime.
        let (wal_config, wal_metrics) = (config.wal.clone(), Arc::clone(&metrics));
        let (wal, report) = tokio::task::spawn_blocking(move || {
            Wal::open(wal_config, wal_metrics, flushed_through, replay, on_durable)
        })
        .await
        .map_err(|e| StorageError::Internal(format!("WAL replay failed: {e}")))??;
        let storage = Arc::new(Self {
            store,
            catalog,
            wal: Some(wal),
            buffer,
            config,
            metrics,
            flush_lock: tokio::sync::Mutex::new(()),
            flush_wanted,
            in_flight: AtomicUsize::new(0),
            replay: report,
        });
        for tenant in storage.catalog.tenants() {
            storage.update_file_metrics(&tenant, &storage.catalog.manifest(&tenant));
        }
        Ok(storage)
    }

    /// Opens the catalog and the files without a WAL: for the query and
    /// compactor nodes of a cluster, and for reading the files while a
    /// server owns the WAL (`spanlake sql --data-dir`). Span writes are refused.
    pub async fn open_read_only(
        store: Arc<dyn ObjectStore>,
        config: StorageConfig,
        metrics: Arc<StorageMetrics>,
    ) -> Result<Arc<Self>, StorageError> {
        let catalog = Catalog::open(Arc::clone(&store), Arc::clone(&metrics)).await?;
        Ok(Arc::new(Self {
            store,
            catalog,
            wal: None,
            buffer: Arc::default(),
            config,
            metrics,
            flush_lock: tokio::sync::Mutex::new(()),
            flush_wanted: Arc::default(),
            in_flight: AtomicUsize::new(0),
            replay: ReplayReport::default(),
        }))
    }

    pub(crate) fn wal(&self) -> Result<&Wal, StorageError> {
        self.wal.as_ref().ok_or(StorageError::ReadOnly)
    }

    /// This process's WAL writer id; `None` when opened read-only.
    pub fn writer_id(&self) -> Option<&str> {
        self.wal.as_ref().map(Wal::writer_id)
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// What the WAL replay at open found.
    pub fn replay_report(&self) -> &ReplayReport {
        &self.replay
    }

    /// Decodes an OTLP export request (protobuf or JSON) into a span batch
    /// under the ingest limits, each invalid span rejected alone. CPU work:
    /// callers on an async runtime run it on the blocking pool.
    pub fn decode(&self, body: ExportBody) -> Result<DecodedExport, StorageError> {
        Ok(export::decode(body, &self.config.limits)?)
    }

    /// Logs and buffers a decoded export. Returns once the WAL has it on
    /// disk and its spans are queryable; refuses with
    /// [`StorageError::Overloaded`] while the buffer is full.
    pub async fn write(&self, tenant: &TenantId, export: DecodedExport) -> Result<(), StorageError> {
        if export.batch.num_rows() == 0 {
            return Ok(());
        }
        let wal = self.wal()?;
        let _room = self.reserve(export.room())?;
        wal.append(tenant.clone(), export.body, export.batch).await?;
        Ok(())
    }

    pub fn limits(&self) -> &IngestLimits {
        &self.config.limits
    }

    /// What retention, compaction and deletions take as now.
    pub fn clock(&self) -> &dyn Clock {
        self.config.clock.as_ref()
    }

    /// Counts `bytes` against the buffer budget until the returned guard is
    /// dropped, which also happens when the write is cancelled mid-way: a
    /// client that hangs up must not keep its room. A write larger than the
    /// whole budget gets in alone, so that no export is refused forever.
    fn reserve(&self, bytes: usize) -> Result<Reservation<'_>, StorageError> {
        let in_flight = self.in_flight.fetch_add(bytes, Ordering::AcqRel);
        let reservation = Reservation { in_flight: &self.in_flight, bytes };
        let used = self.buffer.bytes() + in_flight;
        if used > 0 && used + bytes > self.config.max_buffer_bytes {
            return Err(self.overloaded()); // the reservation is dropped: no room taken
        }
        Ok(reservation)
    }

    /// Refuses while the buffer is full, before the caller pays for decoding.
    pub fn check_room(&self) -> Result<(), StorageError> {
        if self.buffer.bytes() + self.in_flight.load(Ordering::Acquire) >= self.config.max_buffer_bytes {
            return Err(self.overloaded());
        }
        Ok(())
    }

    /// Every refusal asks for a flush: the buffer may sit below the flush
    /// threshold while the next write needs more room than is left.
    fn overloaded(&self) -> StorageError {
        self.flush_wanted.notify_one();
        StorageError::Overloaded
    }

    /// The live files and buffered spans of `tenant`, as one consistent view.
    pub fn snapshot(&self, tenant: &TenantId) -> Snapshot {
        let buffered = self.buffer.batches(tenant);
        let manifest = self.catalog.manifest(tenant);
        let flushed = self.flushed_through(&manifest);
        Snapshot { batches: buffered.into_iter().filter(|b| b.seq > flushed).map(|b| b.batch).collect(), manifest }
    }

    pub(crate) fn flushed_through(&self, manifest: &Manifest) -> u64 {
        let Some(wal) = &self.wal else { return 0 };
        manifest.wal_through.get(wal.writer_id()).copied().unwrap_or(0)
    }

    /// Loads manifest versions other processes published since this one
    /// last looked; for a query node whose collectors flushed meanwhile.
    pub async fn refresh_manifest(&self, tenant: &TenantId) -> Result<(), StorageError> {
        self.catalog.refresh(tenant).await?;
        Ok(())
    }

    /// Picks up new tenants and manifest versions of every tenant.
    pub async fn refresh_catalog(&self) -> Result<(), StorageError> {
        self.catalog.refresh_all().await?;
        Ok(())
    }

    /// Tenants with files or buffered spans.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut tenants = self.catalog.tenants();
        tenants.extend(self.buffer.tenants());
        tenants.sort();
        tenants.dedup();
        tenants
    }

    pub(crate) fn update_file_metrics(&self, tenant: &TenantId, manifest: &Manifest) {
        let label = TenantLabel::new(tenant);
        self.metrics.files.get_or_create(&label).set(manifest.files.len() as i64);
        self.metrics.file_bytes.get_or_create(&label).set(manifest.files.iter().map(|f| f.size as i64).sum());
    }

    /// Deletes the WAL segments whose records are all in published files.
    pub(crate) fn release_wal(&self) {
        let Some(wal) = &self.wal else { return };
        let flushed: HashMap<TenantId, u64> = self
            .catalog
            .tenants()
            .into_iter()
            .map(|t| {
                let through = self.flushed_through(&self.catalog.manifest(&t));
                (t, through)
            })
            .collect();
        match wal.release(&flushed) {
            Ok(0) => {}
            Ok(released) => tracing::debug!(released, "released WAL segments"),
            Err(error) => warn!(%error, "could not delete flushed WAL segments"),
        }
    }

    /// Flushes on the interval, or sooner when a buffer fills, until `stop`;
    /// then flushes what is left and closes the WAL.
    pub async fn run_flusher(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.config.flush.interval) => {}
                () = self.flush_wanted.notified() => {}
            }
            if let Err(error) = self.flush().await {
                warn!(%error, "flush failed; the spans stay in the WAL and the buffer, and are retried");
            }
        }
        match self.flush().await {
            Ok(()) => info!("flushed buffered spans at shutdown"),
            Err(error) => warn!(%error, "final flush failed; the WAL keeps the spans for the next start"),
        }
        if let Some(wal) = &self.wal {
            wal.close().await;
        }
    }
}

/// Bytes of one admitted write, counted as in flight while it lives.
struct Reservation<'a> {
    in_flight: &'a AtomicUsize,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
