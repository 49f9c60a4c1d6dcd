//! The storage engine: an in-memory write buffer per tenant, flushed to span
//! files in the object store.
//!
//! ```text
//! write(batch) ──> pending ──flush──> flushing ──put──> files
//!                  └──────── all three visible to snapshot() ───────┘
//! ```
//!
//! A write returns once its batch is in `pending`, which the next flush
//! writes. A flush moves `pending` to `flushing` (still visible), writes one
//! file per hour, then in one step adds the files and drops their rows, so a
//! snapshot never sees a span twice or misses one. Rows of an hour whose
//! write failed go back to `pending` and are retried by the next flush.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::error::StorageError;
use crate::paths::{SpanFilePath, TenantId};
use crate::schema;
use crate::span_file;

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
        Self { interval: Duration::from_secs(5), max_rows: span_file::ROW_GROUP_ROWS }
    }
}

/// A span file in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanFile {
    pub path: Path,
    pub size: u64,
}

/// What a query reads: the files and the buffered rows of one tenant at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub files: Vec<SpanFile>,
    pub batches: Vec<RecordBatch>,
}

#[derive(Debug, Default)]
struct TenantState {
    files: Vec<SpanFile>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    flushing: Vec<RecordBatch>,
}

/// Spans of all tenants: buffered in memory, flushed to the object store.
#[derive(Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    flush: FlushConfig,
    tenants: Mutex<BTreeMap<TenantId, TenantState>>,
    /// One flush at a time.
    flush_lock: tokio::sync::Mutex<()>,
    flush_wanted: Notify,
}

impl Storage {
    /// Opens the store and finds the span files already in it.
    pub async fn open(store: Arc<dyn ObjectStore>, flush: FlushConfig) -> Result<Arc<Self>, StorageError> {
        let mut tenants: BTreeMap<TenantId, TenantState> = BTreeMap::new();
        let mut listing = store.list(None);
        while let Some(meta) = listing.try_next().await? {
            if let Some(file) = SpanFilePath::parse(&meta.location) {
                tenants.entry(file.tenant).or_default().files.push(SpanFile { path: meta.location, size: meta.size });
            }
        }
        let files: usize = tenants.values().map(|t| t.files.len()).sum();
        info!(files, tenants = tenants.len(), "opened span store");
        Ok(Arc::new(Self {
            store,
            flush,
            tenants: Mutex::new(tenants),
            flush_lock: tokio::sync::Mutex::new(()),
            flush_wanted: Notify::new(),
        }))
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    fn tenants(&self) -> MutexGuard<'_, BTreeMap<TenantId, TenantState>> {
        // A panic while holding the lock cannot leave the map half-updated:
        // every update is a few pushes and swaps.
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Buffers a batch of the span schema; it is queryable when this returns.
    pub fn write(&self, tenant: &TenantId, batch: RecordBatch) -> Result<(), StorageError> {
        if batch.schema_ref() != &schema::span_schema() {
            return Err(StorageError::Schema);
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let full = {
            let mut tenants = self.tenants();
            let state = tenants.entry(tenant.clone()).or_default();
            state.pending_rows += batch.num_rows();
            state.pending.push(batch);
            state.pending_rows >= self.flush.max_rows
        };
        if full {
            self.flush_wanted.notify_one();
        }
        Ok(())
    }

    /// The files and buffered rows of `tenant`, as one consistent view.
    pub fn snapshot(&self, tenant: &TenantId) -> Snapshot {
        let tenants = self.tenants();
        let Some(state) = tenants.get(tenant) else { return Snapshot::default() };
        Snapshot { files: state.files.clone(), batches: state.flushing.iter().chain(&state.pending).cloned().collect() }
    }

    /// Writes every tenant's buffered spans to files.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let work: Vec<(TenantId, Vec<RecordBatch>)> = {
            let mut tenants = self.tenants();
            tenants
                .iter_mut()
                .filter(|(_, s)| !s.pending.is_empty())
                .map(|(tenant, state)| {
                    state.pending_rows = 0;
                    state.flushing = std::mem::take(&mut state.pending);
                    (tenant.clone(), state.flushing.clone())
                })
                .collect()
        };
        let mut first_error = None;
        for (tenant, batches) in work {
            let (files, failed) = self.write_files(&tenant, batches).await;
            let mut tenants = self.tenants();
            let state = tenants.entry(tenant).or_default();
            state.files.extend(files);
            state.flushing.clear();
            if let Some((error, failed)) = failed {
                state.pending_rows += failed.iter().map(RecordBatch::num_rows).sum::<usize>();
                state.pending.splice(0..0, failed);
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes one file per hour; returns the files written and, if some hour
    /// failed, the error and the rows that still need a file.
    async fn write_files(
        &self,
        tenant: &TenantId,
        batches: Vec<RecordBatch>,
    ) -> (Vec<SpanFile>, Option<(StorageError, Vec<RecordBatch>)>) {
        let parts = match tokio::task::spawn_blocking(move || encode_hours(&batches)).await {
            Ok(Ok(parts)) => parts,
            Ok(Err((error, batches))) => return (Vec::new(), Some((error, batches))),
            Err(join) => panic!("span file encoding panicked: {join}"),
        };
        let mut files = Vec::new();
        let mut failed: Vec<RecordBatch> = Vec::new();
        let mut error = None;
        for (hour, rows, bytes) in parts {
            let path = SpanFilePath::new(tenant.clone(), hour).to_path();
            let size = bytes.len() as u64;
            match self.store.put(&path, PutPayload::from_bytes(bytes)).await {
                Ok(_) => {
                    debug!(%path, rows = rows.num_rows(), bytes = size, "wrote span file");
                    files.push(SpanFile { path, size });
                }
                Err(e) => {
                    warn!(%path, error = %e, "writing span file failed; its spans stay buffered");
                    failed.push(rows);
                    error.get_or_insert(StorageError::from(e));
                }
            }
        }
        (files, error.map(|e| (e, failed)))
    }

    /// Flushes every `interval`, or sooner when a buffer is full, until
    /// `stop`; then flushes what is left.
    pub async fn run_flusher(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.flush.interval) => {}
                () = self.flush_wanted.notified() => {}
            }
            if let Err(error) = self.flush().await {
                warn!(%error, "flush failed; retrying on the next one");
            }
        }
        match self.flush().await {
            Ok(()) => info!("flushed buffered spans at shutdown"),
            Err(error) => warn!(%error, "final flush failed; buffered spans are lost"),
        }
    }
}

type HourParts = Vec<(chrono::DateTime<chrono::Utc>, RecordBatch, bytes::Bytes)>;

/// Concatenates, splits by hour, sorts and encodes. On error hands the input back.
fn encode_hours(batches: &[RecordBatch]) -> Result<HourParts, (StorageError, Vec<RecordBatch>)> {
    let run = || -> Result<HourParts, StorageError> {
        let all = concat_batches(&schema::span_schema(), batches)?;
        span_file::split_by_hour(&all)?
            .into_iter()
            .map(|(hour, rows)| {
                let sorted = span_file::sort(&rows)?;
                let bytes = span_file::encode(&sorted)?;
                Ok((hour, sorted, bytes))
            })
            .collect()
    };
    run().map_err(|e| (e, batches.to_vec()))
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;
    use crate::{IngestLimits, SpanBatchBuilder};

    fn batch(n: u8) -> RecordBatch {
        let spans = (1..=n)
            .map(|i| Span {
                trace_id: vec![i; 16],
                span_id: vec![i; 8],
                start_time_unix_nano: 1_700_000_000_000_000_000,
                end_time_unix_nano: 1_700_000_000_000_000_100,
                ..Default::default()
            })
            .collect();
        let mut builder = SpanBatchBuilder::new(IngestLimits::default());
        builder.append(&[ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }]);
        builder.finish().unwrap()
    }

    fn rows(snapshot: &Snapshot) -> usize {
        snapshot.batches.iter().map(RecordBatch::num_rows).sum()
    }

    #[tokio::test]
    async fn written_spans_move_from_the_buffer_into_files_and_are_found_again() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let storage = Storage::open(Arc::clone(&store), FlushConfig::default()).await.unwrap();
        let tenant = TenantId::default();
        storage.write(&tenant, batch(3)).unwrap();
        storage.write(&tenant, batch(2)).unwrap();
        let before = storage.snapshot(&tenant);
        assert_eq!((before.files.len(), rows(&before)), (0, 5));

        storage.flush().await.unwrap();
        let after = storage.snapshot(&tenant);
        assert_eq!((after.files.len(), rows(&after)), (1, 0));
        assert!(storage.snapshot(&TenantId::new("other").unwrap()).files.is_empty());

        let reopened = Storage::open(store, FlushConfig::default()).await.unwrap();
        assert_eq!(reopened.snapshot(&tenant).files, after.files);
    }

    #[tokio::test]
    async fn a_full_buffer_wakes_the_flusher() {
        let storage =
            Storage::open(Arc::new(InMemory::new()), FlushConfig { interval: Duration::from_secs(3600), max_rows: 4 })
                .await
                .unwrap();
        let stop = CancellationToken::new();
        let flusher = tokio::spawn(Arc::clone(&storage).run_flusher(stop.clone()));
        storage.write(&TenantId::default(), batch(5)).unwrap();
        let tenant = TenantId::default();
        for _ in 0..500 {
            if !storage.snapshot(&tenant).files.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(storage.snapshot(&tenant).files.len(), 1);
        stop.cancel();
        flusher.await.unwrap();
    }

    #[test]
    fn batches_of_another_schema_are_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let storage = runtime.block_on(Storage::open(Arc::new(InMemory::new()), FlushConfig::default())).unwrap();
        let other = RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty()));
        assert!(matches!(storage.write(&TenantId::default(), other), Err(StorageError::Schema)));
    }
}
