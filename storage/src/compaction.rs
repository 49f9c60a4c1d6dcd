//! Compaction: merges by level, hour by hour, with bounded write
//! amplification.
//!
//! Every span file has a fragment file of its own (see `trace_index.rs`);
//! the two are compacted, replaced and deleted together. A file's level is
//! how many merges its rows have been through: flushes write level 0, and a
//! merge of files of level L writes level L + 1. Within an hour:
//!
//! - once a level below [`MAX_LEVEL`] has `min_files` (F) files, all of
//!   them are merged, in jobs of even size up to [`MAX_INPUTS`] (more than
//!   F collect between rounds at high rates);
//! - once the hour is finished (past its end and the settle time) two are
//!   enough, so a finished hour keeps at most one file per level below the
//!   top, and late spans make a small file that merges with the other
//!   small ones, never with the files at the top;
//! - files at [`MAX_LEVEL`] or at the target size are never rewritten.
//!
//! ```text
//! span files of one level ──k-way merge, drop repeats──> span files of the next (≤ target size each)
//!                                                         └─ each with the fragments of its own rows
//! ```
//!
//! So a byte is rewritten at most [`MAX_LEVEL`] times, whatever the size
//! or the rate of the hour: compaction writes at most twice what flushes
//! wrote. A top-level file holds F² flushes or more (at most 11 files an
//! hour at the default 5 s and F = 8; at high rates the target size cuts
//! them). Repeats are rows equal in every sort column (service, trace,
//! start, span id): a client that retries an export sends the same span
//! twice, and the two copies sort side by side when a flush or a merge
//! holds both. Fragment files are not merged: the outputs'
//! fragments are computed from their rows, so repeats dropped are gone from
//! the trace index too.
//!
//! Files from before span files had their own fragment files (legacy: one
//! fragment file covered an hour's compacted files) are merged all
//! together, once, when they include a flushed file; the outputs are
//! top-level pairs. Legacy span files in the sort order from before the
//! layout study are re-sorted first, in runs of [`RESORT_ROWS`] written
//! beside them, so the merge only ever reads sorted inputs.
//!
//! The merges stream: memory holds one batch per input plus the row groups
//! being written. The outputs' tag summaries are merged from the inputs'
//! footers, not summarized again from the rows. The outputs replace the inputs in one manifest version
//! (see `maintenance.rs`).

pub(crate) mod merge;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::error::ArrowError;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use crate::catalog::DataFile;
use crate::data_file::{self, FileReader, FileSink, PairedSink};
use crate::error::StorageError;
use crate::paths::{DataFilePath, FileKind, TenantId};
use crate::schema;
use crate::tag_summary::TagSummary;
use merge::{BatchStream, SortedMerge};

/// When and how big.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often hours are checked for compaction, retention and deletions.
    pub interval: std::time::Duration,
    /// Files of one level merged at once in an hour still being written.
    pub min_files: usize,
    /// Size of compacted files. 256 MB: few files per hour at high rates,
    /// row groups of 128Ki spans inside.
    pub target_file_bytes: usize,
    /// An hour counts as finished this long after its end (late spans).
    pub settle: std::time::Duration,
    /// Replaced files are deleted this long after the manifest stopped
    /// naming them, so queries planned before can still read them.
    pub tombstone_grace: std::time::Duration,
    /// The open ends of dependency calls (`edges.rs`) wait this long after
    /// they arrive for their other half. SDKs export every few seconds, so
    /// the two halves of a call arrive seconds apart.
    pub edges_wait: std::time::Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            interval: std::time::Duration::from_secs(30),
            min_files: 8,
            target_file_bytes: 256 * 1024 * 1024,
            settle: std::time::Duration::from_secs(120),
            tombstone_grace: std::time::Duration::from_secs(600),
            edges_wait: std::time::Duration::from_secs(30),
        }
    }
}

/// The level past which a file is never merged again: the bound on how
/// often a byte is rewritten.
pub(crate) const MAX_LEVEL: u8 = 2;

/// Span files merged by one job at most: a merge holds a row group and a
/// page per column of every input, so this bounds its memory. More files
/// of a level (a high rate, a backlog) make several jobs of even size.
const MAX_INPUTS: usize = 16;

/// Legacy span files in the old sort order are re-sorted in runs of this
/// many rows: one run in memory at a time.
const RESORT_ROWS: usize = 64 * 1024;

/// Span files of one hour to merge, and the fragment files that go with them.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) hour: i64,
    /// The outputs' level.
    pub(crate) level: u8,
    pub(crate) spans: Vec<DataFile>,
    pub(crate) fragments: Vec<DataFile>,
}

impl Job {
    pub(crate) fn inputs(&self) -> Vec<String> {
        self.spans.iter().chain(&self.fragments).map(|f| f.path.clone()).collect()
    }
}

/// The merges worth doing in `files`, oldest hour first.
pub(crate) fn plan(files: &[DataFile], now_secs: i64, config: &CompactionConfig) -> Vec<Job> {
    let mut hours: BTreeMap<i64, (Vec<&DataFile>, Vec<&DataFile>)> = BTreeMap::new();
    for file in files {
        let (spans, fragments) = hours.entry(file.hour).or_default();
        match file.kind {
            FileKind::Spans => spans.push(file),
            FileKind::TraceIndex => fragments.push(file),
            // Edge files merge their own way (`maintenance.rs`); trace
            // durations are recomputed, not merged.
            FileKind::Edges | FileKind::TraceDurations => {}
        }
    }
    let mut jobs = Vec::new();
    for (hour, (spans, fragments)) in hours {
        let fragment_of: HashMap<&str, &DataFile> = fragments.iter().map(|f| (f.path.as_str(), *f)).collect();
        let paired: HashSet<&str> = spans.iter().filter_map(|f| f.trace_index.as_deref()).collect();

        let legacy: Vec<DataFile> = spans.iter().filter(|f| f.trace_index.is_none()).map(|f| (*f).clone()).collect();
        if legacy.iter().any(|f| f.level == 0) {
            let fragments = fragments.iter().filter(|f| !paired.contains(f.path.as_str())).map(|f| (*f).clone());
            jobs.push(Job { hour, level: MAX_LEVEL, spans: legacy, fragments: fragments.collect() });
        }

        let finished = now_secs >= hour + 3600 + config.settle.as_secs() as i64;
        let enough = if finished { 2 } else { config.min_files.max(2) };
        let target = config.target_file_bytes as u64;
        let mut levels: BTreeMap<u8, Vec<&DataFile>> = BTreeMap::new();
        for file in spans.iter().filter(|f| f.trace_index.is_some() && f.level < MAX_LEVEL && f.size < target) {
            levels.entry(file.level).or_default().push(file);
        }
        for (level, mut files) in levels.into_iter().filter(|(_, files)| files.len() >= enough) {
            // Oldest first: uuid7 names sort by creation.
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let size = files.len().div_ceil(files.len().div_ceil(MAX_INPUTS));
            for files in files.chunks(size) {
                let fragments =
                    files.iter().filter_map(|f| fragment_of.get(f.trace_index.as_deref()?)).map(|f| (*f).clone());
                jobs.push(Job {
                    hour,
                    level: level + 1,
                    fragments: fragments.collect(),
                    spans: files.iter().map(|f| (*f).clone()).collect(),
                });
            }
        }
    }
    jobs
}

/// What a merge produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) files: Vec<DataFile>,
    pub(crate) duplicates: u64,
}

/// Rows decoded per input at a time; the merge holds a batch of every
/// input, so an hour of a few hundred flushed files stays small.
const MERGE_BATCH_ROWS: usize = 1024;

async fn open_input(store: &Arc<dyn ObjectStore>, file: &DataFile) -> Result<BatchStream, StorageError> {
    let reader = FileReader::new(Arc::clone(store), file);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    Ok(stream_of(builder.with_batch_size(MERGE_BATCH_ROWS).build()?, file.kind))
}

fn stream_of(
    stream: parquet::arrow::async_reader::ParquetRecordBatchStream<FileReader>,
    kind: FileKind,
) -> BatchStream {
    let schema = kind.schema();
    stream.map_err(|e| ArrowError::ExternalError(Box::new(e))).map(move |b| schema::conform(&b?, &schema)).boxed()
}

/// The span files to merge, with legacy files in the old sort order
/// replaced by sorted runs of their rows (written as files not in the
/// catalog, listed in `scratch` for deletion), and their tags merged from
/// their footers (`None` if one has no summary there).
async fn sorted_inputs(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    job: &Job,
    scratch: &mut Vec<String>,
) -> Result<(Vec<BatchStream>, Option<TagSummary>), StorageError> {
    let mut inputs = Vec::with_capacity(job.spans.len());
    let mut tags = Some(TagSummary::default());
    let hour = DateTime::<Utc>::from_timestamp(job.hour, 0).unwrap_or_default();
    for file in &job.spans {
        let builder = ParquetRecordBatchStreamBuilder::new(FileReader::new(Arc::clone(store), file)).await?;
        match (&mut tags, data_file::footer_tags(builder.metadata())?) {
            (Some(merged), Some(summary)) => merged.merge(&summary),
            _ => tags = None,
        }
        if data_file::in_current_order(FileKind::Spans, builder.metadata()) {
            inputs.push(stream_of(builder.with_batch_size(MERGE_BATCH_ROWS).build()?, FileKind::Spans));
            continue;
        }
        let mut rows = stream_of(builder.with_batch_size(RESORT_ROWS).build()?, FileKind::Spans);
        while let Some(batch) = rows.try_next().await? {
            let path = DataFilePath::new(tenant.clone(), FileKind::Spans, hour);
            scratch.push(path.to_path().to_string());
            let mut run = FileSink::new(Arc::clone(store), path, 0);
            run.write(&data_file::sort(FileKind::Spans, &batch)?).await?;
            if let Some(run) = run.finish().await? {
                inputs.push(open_input(store, &run).await?);
            }
        }
    }
    Ok((inputs, tags))
}

/// Runs one job of one tenant; on failure deletes what it wrote.
pub(crate) async fn compact(
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    job: Job,
    target_bytes: usize,
) -> Result<Output, StorageError> {
    let hour = DateTime::<Utc>::from_timestamp(job.hour, 0).unwrap_or_default();
    let mut sink = PairedSink::new(Arc::clone(&store), tenant.clone(), hour, job.level, target_bytes);
    let mut scratch = Vec::new();
    let merged = async {
        let (inputs, tags) = sorted_inputs(&store, &tenant, &job, &mut scratch).await?;
        sink.set_tags(tags.map(Arc::new));
        let mut merge = SortedMerge::new(FileKind::Spans.schema(), FileKind::Spans.sort_columns(), true, inputs)?;
        let mut duplicates = 0;
        while let Some(merged) = merge.next().await? {
            sink.write(&merged.rows).await?;
            duplicates += merged.duplicates as u64;
        }
        Ok::<_, StorageError>(duplicates)
    }
    .await;
    let written = sink.written();
    let outcome = match merged {
        Ok(duplicates) => sink.finish().await.map(|files| Output { files, duplicates }),
        Err(e) => Err(e),
    };
    let abandoned = if outcome.is_ok() { vec![] } else { written };
    for path in scratch.into_iter().chain(abandoned) {
        let _ = store.delete(&Path::from(path)).await;
    }
    outcome
}

#[cfg(test)]
mod tests;
