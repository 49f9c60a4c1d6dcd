//! The catalog: per tenant, a manifest of the live data files.
//!
//! Manifests are immutable, numbered objects (`{tenant}/catalog/{n}.json`).
//! Publishing version n+1 is a conditional put (create only if absent), so
//! two processes sharing a bucket can never both publish the same version:
//! the loser reloads the newer manifest, re-applies its change to it and
//! tries the next number. A change that no longer applies (compaction of
//! files that retention removed meanwhile) is refused as a conflict.
//!
//! Queries plan from the manifest in memory and never list the store.
//! Replaced files are not deleted at once: they become tombstones, removed
//! after a grace period, so queries that planned with the older manifest
//! can still read them.
//!
//! `_latest` holds the newest version number as a hint; readers start there
//! and probe forward, so they need no listing either.
//!
//! Old versions are deleted by upkeep ([`Catalog::forget_old_versions`]),
//! never while a writer could still take their number: put-if-absent
//! succeeds on a deleted version's path, so a writer planning on a stale
//! manifest would publish a version no reader ever finds (a lost commit,
//! and a watermark its own process trusts). Every commit attempt therefore
//! starts from a fresh read of the catalog, and a version is deleted only
//! once [`KEEP_VERSIONS`] newer ones exist and it is older than
//! [`VERSION_GRACE`], far longer than the read-then-put of one attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, warn};

use crate::metrics::StorageMetrics;
use crate::paths::{FileKind, TenantId};

/// Older manifest versions kept beside the newest, for readers that are
/// still loading one of them.
pub const KEEP_VERSIONS: u64 = 10;
/// A version younger than this is never deleted (see the module docs).
pub const VERSION_GRACE: Duration = Duration::from_secs(120);
/// A commit that keeps losing the race gives up after this many attempts.
const MAX_ATTEMPTS: usize = 32;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("manifest {path} is unreadable: {error}")]
    Unreadable { path: String, error: String },
    #[error("catalog change conflicts with a newer manifest: {0}")]
    Conflict(String),
}

/// One live data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub kind: FileKind,
    /// Start of the hour partition, seconds since the Unix epoch.
    pub hour: i64,
    pub size: u64,
    pub rows: u64,
    /// Earliest and latest span start in the file, ns since the Unix epoch.
    pub min_time: i64,
    pub max_time: i64,
    /// Services with spans in the file, sorted.
    pub services: Vec<String>,
    pub schema_version: u32,
    /// How many merges the rows have been through: 0 for flushed files
    /// (see `compaction.rs`).
    pub level: u8,
    /// Span files: the fragment file of exactly this file's spans. `None`
    /// for files written before span files had their own (one fragment
    /// file then covered an hour's compacted files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_index: Option<String>,
    /// Trace-duration files: the fragment files they were computed from;
    /// the file is current while exactly these are live in its hours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<String>,
}

/// A file no longer in the manifest, to be deleted after the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub path: String,
    /// Milliseconds since the Unix epoch.
    pub removed_at_ms: i64,
}

/// A tenant's live files at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    pub files: Vec<DataFile>,
    /// Per WAL writer: every record of this tenant up to this sequence is in `files`.
    pub wal_through: BTreeMap<String, u64>,
    pub tombstones: Vec<Tombstone>,
}

impl Manifest {
    pub fn files_of(&self, kind: FileKind) -> impl Iterator<Item = &DataFile> {
        self.files.iter().filter(move |f| f.kind == kind)
    }

    /// This manifest with those of `removed` that are still live turned
    /// into tombstones: for removals that another change may have made
    /// already (retention, replaced rankings).
    pub fn without_any(&self, removed: &[String], now_ms: i64) -> Self {
        let live: Vec<String> = removed.iter().filter(|p| self.files.iter().any(|f| &f.path == *p)).cloned().collect();
        self.without(&live, now_ms).expect("only live files are removed")
    }

    /// This manifest with `removed` files turned into tombstones.
    pub fn without(&self, removed: &[String], now_ms: i64) -> Result<Self, CatalogError> {
        for path in removed {
            if !self.files.iter().any(|f| &f.path == path) {
                return Err(CatalogError::Conflict(format!("{path} is no longer live")));
            }
        }
        let mut next = self.clone();
        next.files.retain(|f| !removed.contains(&f.path));
        next.tombstones.extend(removed.iter().map(|path| Tombstone { path: path.clone(), removed_at_ms: now_ms }));
        Ok(next)
    }
}

/// The manifests of every tenant, as this process last saw them.
#[derive(Debug)]
pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    metrics: Arc<StorageMetrics>,
    manifests: RwLock<BTreeMap<TenantId, Arc<Manifest>>>,
}

impl Catalog {
    /// Finds the tenants (one listing of the top level) and loads their newest manifests.
    pub async fn open(store: Arc<dyn ObjectStore>, metrics: Arc<StorageMetrics>) -> Result<Self, CatalogError> {
        let catalog = Self { store, metrics, manifests: RwLock::new(BTreeMap::new()) };
        catalog.refresh_all().await?;
        Ok(catalog)
    }

    /// Picks up tenants and manifest versions published by other processes.
    pub async fn refresh_all(&self) -> Result<(), CatalogError> {
        let top = self.store.list_with_delimiter(None).await?;
        for prefix in top.common_prefixes {
            let Some(tenant) = prefix.parts().next().and_then(|p| TenantId::new(p.as_ref()).ok()) else { continue };
            self.refresh(&tenant).await?;
        }
        Ok(())
    }

    /// Loads versions of `tenant`'s manifest newer than the one in memory.
    pub async fn refresh(&self, tenant: &TenantId) -> Result<Arc<Manifest>, CatalogError> {
        let current = self.manifest(tenant);
        let hint = self.read_hint(tenant).await.unwrap_or(0);
        let mut newest = None;
        let mut version = (current.version + 1).max(hint);
        while let Some(manifest) = self.read_version(tenant, version).await? {
            newest = Some(manifest);
            version += 1;
        }
        match newest {
            Some(manifest) if manifest.version > current.version => Ok(self.remember(tenant, Arc::new(manifest))),
            _ => Ok(current),
        }
    }

    async fn read_hint(&self, tenant: &TenantId) -> Option<u64> {
        let bytes = self.store.get(&tenant.latest_manifest_hint()).await.ok()?.bytes().await.ok()?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }

    async fn read_version(&self, tenant: &TenantId, version: u64) -> Result<Option<Manifest>, CatalogError> {
        let path = tenant.manifest_path(version);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::Unreadable { path: path.to_string(), error: e.to_string() })
    }

    pub fn tenants(&self) -> Vec<TenantId> {
        self.manifests.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Keeps `manifest` as the newest of its tenant unless a newer one is
    /// known already: commits and refreshes running at once finish in any
    /// order, and the one that records last may hold the older version.
    /// Returns the newest.
    fn remember(&self, tenant: &TenantId, manifest: Arc<Manifest>) -> Arc<Manifest> {
        let mut manifests = self.manifests.write().unwrap_or_else(|p| p.into_inner());
        let known = manifests.entry(tenant.clone()).or_default();
        if manifest.version > known.version {
            *known = manifest;
        }
        Arc::clone(known)
    }

    /// The newest manifest of `tenant` this process knows; empty for a new tenant.
    pub fn manifest(&self, tenant: &TenantId) -> Arc<Manifest> {
        self.manifests.read().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned().unwrap_or_default()
    }

    /// Publishes `change` applied to the newest manifest, retrying on top
    /// of whatever another process published first.
    pub async fn commit(
        &self,
        tenant: &TenantId,
        mut change: impl FnMut(&Manifest) -> Result<Manifest, CatalogError>,
    ) -> Result<Arc<Manifest>, CatalogError> {
        let started = Instant::now();
        for _ in 0..MAX_ATTEMPTS {
            let base = self.refresh(tenant).await?;
            let mut next = change(&base)?;
            next.version = base.version + 1;
            let body = serde_json::to_vec(&next).expect("manifests serialize");
            let options = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&tenant.manifest_path(next.version), PutPayload::from(body), options).await {
                Ok(_) => {
                    self.metrics.catalog_commits.inc();
                    self.metrics.catalog_commit_seconds.observe(started.elapsed().as_secs_f64());
                    let next = Arc::new(next);
                    self.remember(tenant, Arc::clone(&next));
                    self.after_publish(tenant, next.version).await;
                    return Ok(next);
                }
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    self.metrics.catalog_commit_conflicts.inc();
                    debug!(%tenant, version = next.version, "manifest version taken by another writer; retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict(format!("gave up after {MAX_ATTEMPTS} attempts")))
    }

    /// Moves the hint: housekeeping, a failure only costs a longer probe later.
    async fn after_publish(&self, tenant: &TenantId, version: u64) {
        let hint = PutPayload::from(Bytes::from(version.to_string()));
        if let Err(error) = self.store.put(&tenant.latest_manifest_hint(), hint).await {
            warn!(%tenant, %error, "could not move the manifest hint");
        }
    }

    /// Deletes the versions of `tenant`'s manifest that no reader or writer
    /// can still need: behind the [`KEEP_VERSIONS`] newest and written more
    /// than `older_than` ago ([`VERSION_GRACE`] outside tests). Returns how many went.
    pub async fn forget_old_versions(&self, tenant: &TenantId, older_than: Duration) -> Result<usize, CatalogError> {
        let newest = self.manifest(tenant).version;
        let cutoff = chrono::Utc::now() - older_than;
        let listed = self.store.list_with_delimiter(Some(&tenant.catalog_prefix())).await?;
        let mut forgotten = 0;
        for object in listed.objects {
            let Some(version) = TenantId::version_of(&object.location) else { continue };
            if version + KEEP_VERSIONS < newest && object.last_modified < cutoff {
                match self.store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => forgotten += 1,
                    Err(error) => warn!(%tenant, %error, "could not delete an old manifest"),
                }
            }
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests;
