//! Tag autocomplete's source: the tag summaries in span file footers,
//! read once per file and kept while the file is live, plus a summary of
//! the buffer made on the spot. No data file is scanned.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use spanlake_storage::tag_summary::TagSummary;
use spanlake_storage::{DataFile, FileKind, Snapshot, Storage, TenantId, data_file};

use crate::error::QueryError;
use crate::params::Window;

/// Footers read at once when a window's files are new to the cache.
const CONCURRENT_READS: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct TagSummaries {
    /// By file path (paths start with the tenant).
    files: Mutex<HashMap<String, Arc<TagSummary>>>,
}

impl TagSummaries {
    /// The tags of `tenant`'s spans in `window`, to the file: every file
    /// whose time range overlaps it counts whole.
    pub(crate) async fn of_window(
        &self,
        storage: &Storage,
        tenant: &TenantId,
        snapshot: &Snapshot,
        window: &Window,
    ) -> Result<TagSummary, QueryError> {
        let files: Vec<&DataFile> = snapshot
            .files(FileKind::Spans)
            .filter(|f| f.min_time < window.end_ns && f.max_time >= window.start_ns)
            .collect();
        let missing: Vec<DataFile> = {
            let cached = self.files.lock().expect("tag summary cache");
            files.iter().filter(|f| !cached.contains_key(&f.path)).map(|f| (*f).clone()).collect()
        };
        let store = storage.object_store();
        let read: Vec<(String, TagSummary)> = futures::stream::iter(missing)
            .map(|file| {
                let store = Arc::clone(&store);
                async move {
                    let summary =
                        data_file::tag_summary(store, &file).await.map_err(|e| QueryError::DataFusion(e.into()))?;
                    Ok::<_, QueryError>((file.path, summary))
                }
            })
            .buffer_unordered(CONCURRENT_READS)
            .try_collect()
            .await?;

        let mut summary = TagSummary::default();
        {
            let mut cached = self.files.lock().expect("tag summary cache");
            cached.extend(read.into_iter().map(|(path, s)| (path, Arc::new(s))));
            for file in &files {
                if let Some(file_summary) = cached.get(&file.path) {
                    summary.merge(file_summary);
                }
            }
            // Forget this tenant's files that compaction or retention replaced.
            let live: HashSet<&str> = snapshot.files(FileKind::Spans).map(|f| f.path.as_str()).collect();
            let prefix = format!("{}/", tenant.as_str());
            cached.retain(|path, _| !path.starts_with(&prefix) || live.contains(path.as_str()));
        }
        for batch in &snapshot.batches {
            summary.add(batch).map_err(|e| QueryError::DataFusion(e.into()))?;
        }
        Ok(summary)
    }
}
