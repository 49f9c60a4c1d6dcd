//! The trace → file map: per live span file, a bloom filter of the trace
//! ids it holds (`spanlake_storage::trace_filter`), built from its fragment
//! file, which has a few rows per trace rather than one per span. A scan
//! that pins trace ids (a trace lookup, `WHERE trace_id = …`) opens only
//! the files whose filter may hold one, instead of reading the Parquet
//! bloom filters of every row group of every file.
//!
//! Filters are built off the query path, by the upkeep loop, for files new
//! since its last round; a file without one is scanned as before, so the
//! map only ever saves work. They take about 2 bytes per trace and file.
//! Past the budget the oldest files' filters are dropped (and not built
//! again), so lookups of old traces fall back to the Parquet blooms.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use spanlake_storage::ids::TraceId;
use spanlake_storage::trace_filter::TraceFilter;
use spanlake_storage::{DataFile, FileKind, Snapshot, Storage, TenantId};

use crate::error::QueryError;

/// Fragment files read at once while filters are built.
const CONCURRENT_READS: usize = 4;

#[derive(Debug)]
struct Entry {
    /// `None` once dropped for the budget.
    filter: Option<TraceFilter>,
    /// The newest span start in the file: the oldest files go first.
    max_time: i64,
}

#[derive(Debug)]
pub(crate) struct TraceFiles {
    /// By span file path (paths start with the tenant).
    files: Mutex<HashMap<String, Entry>>,
    /// Bytes of filters kept at most.
    budget: usize,
}

impl TraceFiles {
    pub(crate) fn new(budget: usize) -> Self {
        Self { files: Mutex::default(), budget }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `file` may hold one of `ids`: no only when its filter says so.
    pub(crate) fn may_hold(&self, file: &DataFile, ids: &[TraceId]) -> bool {
        match self.lock().get(&file.path).and_then(|e| e.filter.as_ref()) {
            Some(filter) => ids.iter().any(|id| filter.may_hold(id)),
            None => true,
        }
    }

    /// Bytes of the filters held.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().values().filter_map(|e| e.filter.as_ref()).map(TraceFilter::bytes).sum()
    }

    /// Builds the filters of `tenant`'s live span files that have none and
    /// forgets those of files compaction or retention replaced. Returns
    /// how many were built.
    pub(crate) async fn load(&self, storage: &Storage, tenant: &TenantId) -> Result<usize, QueryError> {
        let snapshot = storage.snapshot(tenant);
        let missing: Vec<(DataFile, DataFile)> = {
            let mut files = self.lock();
            let live: HashSet<&str> = snapshot.files(FileKind::Spans).map(|f| f.path.as_str()).collect();
            let prefix = format!("{}/", tenant.as_str());
            files.retain(|path, _| !path.starts_with(&prefix) || live.contains(path.as_str()));
            snapshot
                .files(FileKind::Spans)
                .filter(|f| !files.contains_key(&f.path))
                .map(|f| (f.clone(), source(&snapshot, f).clone()))
                .collect()
        };
        let store = storage.object_store();
        let built: Vec<(DataFile, TraceFilter)> = futures::stream::iter(missing)
            .map(|(file, source)| {
                let store = Arc::clone(&store);
                async move {
                    let filter =
                        TraceFilter::read(store, &source).await.map_err(|e| QueryError::DataFusion(e.into()))?;
                    Ok::<_, QueryError>((file, filter))
                }
            })
            .buffer_unordered(CONCURRENT_READS)
            .try_collect()
            .await?;
        let count = built.len();
        let mut files = self.lock();
        for (file, filter) in built {
            files.insert(file.path, Entry { filter: Some(filter), max_time: file.max_time });
        }
        let mut held: usize = files.values().filter_map(|e| e.filter.as_ref()).map(TraceFilter::bytes).sum();
        if held > self.budget {
            let mut oldest: Vec<(i64, &mut Entry)> =
                files.values_mut().filter(|e| e.filter.is_some()).map(|e| (e.max_time, e)).collect();
            oldest.sort_unstable_by_key(|(time, _)| *time);
            for (_, entry) in oldest {
                if held <= self.budget {
                    break;
                }
                held -= entry.filter.take().map_or(0, |f| f.bytes());
            }
        }
        Ok(count)
    }
}

/// What a span file's filter is built from: its fragment file, or the file
/// itself when it has none (files from before span files had their own).
fn source<'a>(snapshot: &'a Snapshot, file: &'a DataFile) -> &'a DataFile {
    file.trace_index
        .as_deref()
        .and_then(|path| snapshot.files(FileKind::TraceIndex).find(|f| f.path == path))
        .unwrap_or(file)
}
