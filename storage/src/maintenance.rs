//! Background upkeep of the files, per tenant, every compaction interval:
//!
//! 1. **Retention** drops whole hours older than the retention period from
//!    the manifest.
//! 2. **Compaction** merges small span files of an hour into larger ones,
//!    level by level (see `compaction.rs`).
//! 3. **Edges** match the open ends of the dependency edge files flushed
//!    since the last round with those still waiting, and merge edge files
//!    by level (see `edges.rs`).
//! 4. **Trace durations** rank the traces of hours that are finished and
//!    merged, for searches sorted by duration (see `trace_durations.rs`).
//! 5. **Deletion** removes files that left the manifest more than the grace
//!    period ago, so a query planned on an older manifest still finds them,
//!    and manifest versions no one can still need (`catalog.rs`).
//!
//! Every change is a manifest commit; a compaction that lost its inputs to
//! retention meanwhile is a conflict, and its outputs are deleted.

use std::time::Instant;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::{CatalogError, DataFile, VERSION_GRACE};
use crate::compaction::{self, Job};
use crate::edges::{self, Partial};
use crate::engine::Storage;
use crate::error::StorageError;
use crate::flush::on_blocking_pool;
use crate::metrics::TenantLabel;
use crate::paths::{FileKind, TenantId};
use crate::trace_durations;

impl Storage {
    /// Runs upkeep every compaction interval until `stop`, in the rounds
    /// that `active` holds true at the start of (in a cluster: while this
    /// process holds the compactor lease, `lease.rs`).
    pub async fn run_maintenance(self: std::sync::Arc<Self>, active: watch::Receiver<bool>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.compaction.interval) => {}
            }
            let turn = *active.borrow();
            self.metrics.compactor_lease_held.set(i64::from(turn));
            if !turn {
                continue;
            }
            if let Err(error) = self.maintain().await {
                warn!(%error, "upkeep failed; retrying next interval");
            }
        }
    }

    /// One round of retention, compaction and deletion for every tenant.
    pub async fn maintain(&self) -> Result<(), StorageError> {
        if let Err(error) = self.catalog.refresh_all().await {
            warn!(%error, "could not refresh the catalog");
        }
        for tenant in self.catalog.tenants() {
            self.apply_retention(&tenant).await?;
            self.compact(&tenant).await?;
            if let Err(error) = self.maintain_edges(&tenant).await {
                self.metrics.compaction_errors.inc();
                warn!(%tenant, %error, "edge upkeep failed");
            }
            if let Err(error) = self.rank_trace_durations(&tenant).await {
                self.metrics.compaction_errors.inc();
                warn!(%tenant, %error, "trace durations failed");
            }
            self.delete_tombstones(&tenant).await?;
            if let Err(error) = self.catalog.forget_old_versions(&tenant, VERSION_GRACE).await {
                warn!(%tenant, %error, "could not delete old manifests");
            }
        }
        Ok(())
    }

    async fn apply_retention(&self, tenant: &TenantId) -> Result<(), StorageError> {
        let Some(retention) = self.config.retention else { return Ok(()) };
        let cutoff_secs = self.clock().now_secs() - retention.as_secs() as i64;
        let expired: Vec<String> = self
            .catalog
            .manifest(tenant)
            .files
            .iter()
            .filter(|f| f.hour + 3600 <= cutoff_secs)
            .map(|f| f.path.clone())
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let manifest = self
            .catalog
            .commit(tenant, |base| Ok::<_, CatalogError>(base.without_any(&expired, self.clock().now_ms())))
            .await?;
        self.metrics.retention_removed_files.get_or_create(&TenantLabel::new(tenant)).inc_by(expired.len() as u64);
        self.update_file_metrics(tenant, &manifest);
        info!(%tenant, files = expired.len(), "removed hours past retention");
        Ok(())
    }

    async fn compact(&self, tenant: &TenantId) -> Result<(), StorageError> {
        let manifest = self.catalog.manifest(tenant);
        for job in compaction::plan(&manifest.files, self.clock().now_secs(), &self.config.compaction) {
            let started = Instant::now();
            match self.run_compaction(tenant, job).await {
                Ok(()) => {
                    self.metrics.compactions.get_or_create(&TenantLabel::new(tenant)).inc();
                    self.metrics.compaction_seconds.observe(started.elapsed().as_secs_f64());
                }
                Err(error) => {
                    self.metrics.compaction_errors.inc();
                    warn!(%tenant, %error, "compaction failed");
                }
            }
        }
        Ok(())
    }

    async fn run_compaction(&self, tenant: &TenantId, job: Job) -> Result<(), StorageError> {
        let inputs = job.inputs();
        let hour = job.hour;
        let work =
            compaction::compact(self.object_store(), tenant.clone(), job, self.config.compaction.target_file_bytes);
        let output = on_blocking_pool(work).await??;
        let outputs: Vec<String> = output.files.iter().map(|f| f.path.clone()).collect();
        self.sync_local(&outputs).await?;
        let committed = self
            .catalog
            .commit(tenant, |base| {
                let mut next = base.without(&inputs, self.clock().now_ms())?;
                next.files.extend(output.files.iter().cloned());
                Ok(next)
            })
            .await;
        match committed {
            Ok(manifest) => {
                let label = TenantLabel::new(tenant);
                self.metrics.duplicate_spans_removed.get_or_create(&label).inc_by(output.duplicates);
                let bytes = output.files.iter().map(|f| f.size).sum();
                self.metrics.compaction_bytes_written.get_or_create(&label).inc_by(bytes);
                self.update_file_metrics(tenant, &manifest);
                info!(%tenant, hour, inputs = inputs.len(), outputs = outputs.len(), duplicates = output.duplicates, "compacted");
                Ok(())
            }
            Err(error) => {
                self.delete_quietly(outputs).await;
                Err(error.into())
            }
        }
    }

    /// Writes the trace-duration files that are due, a few hours a round
    /// so that a backlog (a restart over a day of data) does not hold up
    /// the other upkeep.
    async fn rank_trace_durations(&self, tenant: &TenantId) -> Result<(), StorageError> {
        const HOURS_PER_ROUND: usize = 2;
        let manifest = self.catalog.manifest(tenant);
        let now = self.clock().now_secs();
        for due in trace_durations::due(&manifest, now, &self.config.compaction).into_iter().take(HOURS_PER_ROUND) {
            let started = Instant::now();
            let (store, owner) = (self.object_store(), tenant.clone());
            let work = async move {
                let file = trace_durations::write(store, owner, &due).await;
                (due, file)
            };
            let (due, file) = on_blocking_pool(work).await?;
            let Some(file) = file? else { continue };
            self.sync_local(std::slice::from_ref(&file.path)).await?;
            let committed = self
                .catalog
                .commit(tenant, |base| {
                    let mut next = base.without_any(&due.stale, self.clock().now_ms());
                    next.files.push(file.clone());
                    Ok::<_, CatalogError>(next)
                })
                .await;
            match committed {
                Ok(manifest) => {
                    let label = TenantLabel::new(tenant);
                    self.metrics.compaction_bytes_written.get_or_create(&label).inc_by(file.size);
                    self.update_file_metrics(tenant, &manifest);
                    let seconds = started.elapsed().as_secs_f64();
                    info!(%tenant, hour = due.hour, traces = file.rows, seconds, "ranked trace durations");
                }
                Err(error) => {
                    self.delete_quietly(vec![file.path]).await;
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    async fn delete_tombstones(&self, tenant: &TenantId) -> Result<(), StorageError> {
        let grace_ms = self.config.compaction.tombstone_grace.as_millis() as i64;
        let now_ms = self.clock().now_ms();
        let due: Vec<String> = self
            .catalog
            .manifest(tenant)
            .tombstones
            .iter()
            .filter(|t| t.removed_at_ms + grace_ms <= now_ms)
            .map(|t| t.path.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut deleted = Vec::new();
        for path in due {
            match self.store.delete(&Path::from(path.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted.push(path),
                Err(error) => warn!(path, %error, "could not delete a replaced file; retrying later"),
            }
        }
        self.catalog
            .commit(tenant, |base| {
                let mut next = base.clone();
                next.tombstones.retain(|t| !deleted.contains(&t.path));
                Ok::<_, CatalogError>(next)
            })
            .await?;
        Ok(())
    }
}

impl Storage {
    /// Resolves the open ends of the edge files at level 0 (flushed since
    /// the last round, and those still waiting) into a file of calls and one
    /// of the ends that go on waiting; merges files of calls by level.
    async fn maintain_edges(&self, tenant: &TenantId) -> Result<(), StorageError> {
        let manifest = self.catalog.manifest(tenant);
        let open: Vec<DataFile> = manifest.files_of(FileKind::Edges).filter(|f| f.level == 0).cloned().collect();
        if !open.is_empty() {
            let mut partial = Partial::default();
            for file in &open {
                partial.absorb(edges::read(self.object_store(), file).await?);
            }
            let ends = partial.servers.len() + partial.clients.len();
            partial.resolve();
            partial.close(self.clock().now_ns() - self.config.compaction.edges_wait.as_nanos() as i64);
            let unchanged =
                open.len() == 1 && partial.calls.is_empty() && partial.servers.len() + partial.clients.len() == ends;
            if !unchanged {
                let calls = Partial { calls: std::mem::take(&mut partial.calls), ..Partial::default() };
                self.replace_edges(tenant, &open, [(calls, 1), (partial, 0)]).await?;
            }
        }
        let manifest = self.catalog.manifest(tenant);
        for level in 1..edges::MAX_LEVEL {
            let files: Vec<DataFile> =
                manifest.files_of(FileKind::Edges).filter(|f| f.level == level).take(64).cloned().collect();
            if files.len() < self.config.compaction.min_files.max(2) {
                continue;
            }
            let mut merged = Partial::default();
            for file in &files {
                merged.absorb(edges::read(self.object_store(), file).await?);
            }
            self.replace_edges(tenant, &files, [(merged, level + 1)]).await?;
        }
        Ok(())
    }

    /// Writes `outputs` (partials, each at its level) and publishes them in
    /// place of `inputs`.
    async fn replace_edges<const N: usize>(
        &self,
        tenant: &TenantId,
        inputs: &[DataFile],
        outputs: [(Partial, u8); N],
    ) -> Result<(), StorageError> {
        let mut written = Vec::new();
        for (partial, level) in &outputs {
            match edges::write(self.object_store(), tenant, partial, *level).await {
                Ok(file) => written.extend(file),
                Err(error) => {
                    self.delete_quietly(written.iter().map(|f: &DataFile| f.path.clone()).collect()).await;
                    return Err(error);
                }
            }
        }
        let paths: Vec<String> = written.iter().map(|f| f.path.clone()).collect();
        let removed: Vec<String> = inputs.iter().map(|f| f.path.clone()).collect();
        self.sync_local(&paths).await?;
        let committed = self
            .catalog
            .commit(tenant, |base| {
                let mut next = base.without(&removed, self.clock().now_ms())?;
                next.files.extend(written.iter().cloned());
                Ok(next)
            })
            .await;
        match committed {
            Ok(manifest) => {
                let bytes = written.iter().map(|f| f.size).sum();
                self.metrics.compaction_bytes_written.get_or_create(&TenantLabel::new(tenant)).inc_by(bytes);
                self.update_file_metrics(tenant, &manifest);
                Ok(())
            }
            Err(error) => {
                self.delete_quietly(paths).await;
                Err(error.into())
            }
        }
    }
}
