//! Flush: buffered spans of a tenant become span and trace-index files, one
//! of each per hour, and an edge file of their dependency calls, published
//! in one manifest version together with the WAL watermark they reach. A tenant's flush is all or nothing: if any
//! file fails, none is published and the spans stay buffered (and logged).

use std::collections::BTreeSet;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Instant;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::{debug, warn};

use crate::buffer::Buffered;
use crate::catalog::DataFile;
use crate::data_file::{self, PairedSink};
use crate::edges;
use crate::engine::Storage;
use crate::error::StorageError;
use crate::metrics::TenantLabel;
use crate::paths::TenantId;

/// Runs a future on the blocking pool: encoding Parquet is CPU work that
/// must not hold up the runtime's workers.
pub(crate) async fn on_blocking_pool<T: Send + 'static>(
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StorageError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(future))
        .await
        .map_err(|e| StorageError::Internal(format!("background task failed: {e}")))
}

impl Storage {
    /// Writes every tenant's buffered spans to files.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        // Everything appended so far lands in sealed segments, which can be
        // deleted once flushed.
        let Ok(wal) = self.wal() else { return Ok(()) };
        wal.seal().await;
        let mut first_error = None;
        for tenant in self.buffer.tenants() {
            let started = Instant::now();
            match self.flush_tenant(&tenant).await {
                Ok(true) => {
                    self.metrics.flushes.get_or_create(&TenantLabel::new(&tenant)).inc();
                    self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
                }
                Ok(false) => {}
                Err(error) => {
                    self.metrics.flush_errors.inc();
                    warn!(%tenant, %error, "flush failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        self.release_wal();
        first_error.map_or(Ok(()), Err)
    }

    /// Returns whether anything was written.
    async fn flush_tenant(&self, tenant: &TenantId) -> Result<bool, StorageError> {
        let flushed = self.flushed_through(&self.catalog.manifest(tenant));
        let buffered: Vec<_> = self.buffer.batches(tenant).into_iter().filter(|b| b.seq > flushed).collect();
        if buffered.is_empty() {
            self.buffer.remove_through(tenant, flushed, &self.metrics);
            return Ok(false);
        }
        // About a row group at a time: a flush holds a sorted copy of what
        // it writes, and a buffer that filled up while the last flush ran
        // must not double the process's memory.
        let mut chunk = Vec::new();
        let mut rows = 0;
        for buffered in buffered {
            if rows > 0 && rows + buffered.batch.num_rows() > self.config.flush.max_rows {
                self.flush_chunk(tenant, std::mem::take(&mut chunk)).await?;
                rows = 0;
            }
            rows += buffered.batch.num_rows();
            chunk.push(buffered);
        }
        self.flush_chunk(tenant, chunk).await?;
        Ok(true)
    }

    /// Writes buffered batches, consecutive in sequence, to files and
    /// publishes them with the WAL watermark of the last one.
    async fn flush_chunk(&self, tenant: &TenantId, chunk: Vec<Buffered>) -> Result<(), StorageError> {
        let Some(through) = chunk.last().map(|b| b.seq) else { return Ok(()) };
        let batches: Vec<_> = chunk.into_iter().map(|b| b.batch).collect();
        let arrived = self.clock().now_ns();
        let written = write_hours(self.object_store(), tenant.clone(), batches, arrived);
        let (files, repeats) = match on_blocking_pool(written).await? {
            Ok(written) => written,
            Err((error, partial)) => {
                self.delete_quietly(partial).await;
                return Err(error);
            }
        };
        let written: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let published = async {
            self.sync_local(&written).await?;
            let writer = self.wal()?.writer_id().to_owned();
            let manifest = self
                .catalog
                .commit(tenant, |base| {
                    let mut next = base.clone();
                    next.files.extend(files.iter().cloned());
                    let mark = next.wal_through.entry(writer.clone()).or_insert(0);
                    *mark = (*mark).max(through);
                    Ok(next)
                })
                .await?;
            self.sync_local(&[tenant.manifest_path(manifest.version).to_string()]).await?;
            Ok::<_, StorageError>(manifest)
        }
        .await;
        match published {
            Ok(manifest) => {
                let label = TenantLabel::new(tenant);
                self.metrics.flush_bytes_written.get_or_create(&label).inc_by(files.iter().map(|f| f.size).sum());
                self.metrics.duplicate_spans_removed.get_or_create(&label).inc_by(repeats);
                self.buffer.remove_through(tenant, through, &self.metrics);
                self.update_file_metrics(tenant, &manifest);
                debug!(%tenant, files = files.len(), through, "flushed");
                Ok(())
            }
            Err(error) => {
                self.delete_quietly(written).await;
                Err(error)
            }
        }
    }

    /// Best-effort cleanup of files no manifest names.
    pub(crate) async fn delete_quietly(&self, paths: Vec<String>) {
        for path in paths {
            if let Err(error) = self.store.delete(&Path::from(path.as_str())).await {
                warn!(path, %error, "could not delete an unpublished file");
            }
        }
    }

    /// fsyncs files of a store on local disk, and their directories.
    pub(crate) async fn sync_local(&self, paths: &[String]) -> Result<(), StorageError> {
        let Some(root) = self.config.local_root.clone() else { return Ok(()) };
        let paths = paths.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut dirs = BTreeSet::new();
            for path in &paths {
                let full = root.join(path);
                std::fs::File::open(&full)?.sync_all()?;
                dirs.extend(full.parent().map(FsPath::to_path_buf));
            }
            for dir in dirs {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| StorageError::Internal(e.to_string()))??;
        Ok(())
    }
}

/// Sorts and writes the spans of each hour as a span file and its
/// fragment file, and the dependency edges of them all as one edge file
/// (`edges.rs`); returns them and how many repeats were left out. On
/// failure returns the error and the files already written.
async fn write_hours(
    store: Arc<dyn object_store::ObjectStore>,
    tenant: TenantId,
    batches: Vec<arrow::array::RecordBatch>,
    arrived_ns: i64,
) -> Result<(Vec<DataFile>, u64), (StorageError, Vec<String>)> {
    let mut done: Vec<DataFile> = Vec::new();
    let paths = |done: &[DataFile], more: Vec<String>| done.iter().map(|f| f.path.clone()).chain(more).collect();
    let flush = data_file::sorted_hours(&batches).map_err(|e| (e.into(), vec![]))?;
    for (hour, rows) in &flush.hours {
        let hour = *hour;
        let mut sink = PairedSink::new(Arc::clone(&store), tenant.clone(), hour, 0, usize::MAX);
        if let Err(e) = sink.write(rows).await {
            return Err((e, paths(&done, sink.written())));
        }
        let written = sink.written();
        match sink.finish().await {
            Ok(files) => done.extend(files),
            Err(e) => return Err((e, paths(&done, written))),
        }
    }
    let rows: Vec<_> = flush.hours.iter().map(|(_, rows)| rows.clone()).collect();
    let partial = edges::of_spans(&rows, arrived_ns).map_err(|e| (e.into(), paths(&done, vec![])))?;
    match edges::write(store, &tenant, &partial, 0).await {
        Ok(file) => done.extend(file),
        Err(e) => return Err((e, paths(&done, vec![]))),
    }
    Ok((done, flush.repeats))
}
