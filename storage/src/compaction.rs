//! Compaction: the small files that flushes leave in an hour become a few
//! large, re-sorted ones.
//!
//! ```text
//! span files of hour H ──k-way merge, drop repeats──> span files (level 1, ~target size)
//!                                    │ repeats
//!                                    v
//! fragment files of H ──k-way merge, sum per trace+service, minus repeats──> fragment file
//! ```
//!
//! Both merges stream: memory holds one batch per input file plus the
//! row groups being written, whatever the size of the hour. Repeats are
//! rows equal in every sort column (service, trace, start, span id): a
//! client that retries an export sends the same span twice, and the two
//! copies sort side by side. The outputs replace the inputs in one
//! manifest version (see `maintenance.rs`).

pub(crate) mod merge;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use crate::catalog::DataFile;
use crate::data_file::{FileReader, FileSink};
use crate::error::StorageError;
use crate::paths::{FileKind, TenantId};
use crate::schema;
use crate::trace_index::{self, Fragment};
use merge::{BatchStream, SortedMerge};

/// When and how big.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// How often hours are checked for compaction, retention and deletions.
    pub interval: std::time::Duration,
    /// An hour still being written is compacted once it has this many
    /// flushed files; a finished hour as soon as it has two files.
    pub min_files: usize,
    /// Size of compacted files. 256 MB: few files per hour at high rates,
    /// row groups of 128Ki spans inside.
    pub target_file_bytes: usize,
    /// An hour counts as finished this long after its end (late spans).
    pub settle: std::time::Duration,
    /// Replaced files are deleted this long after the manifest stopped
    /// naming them, so queries planned before can still read them.
    pub tombstone_grace: std::time::Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            interval: std::time::Duration::from_secs(30),
            min_files: 8,
            target_file_bytes: 256 * 1024 * 1024,
            settle: std::time::Duration::from_secs(120),
            tombstone_grace: std::time::Duration::from_secs(600),
        }
    }
}

/// The files of one hour to compact.
#[derive(Debug, Clone)]
pub(crate) struct HourPlan {
    pub(crate) hour: i64,
    pub(crate) spans: Vec<DataFile>,
    pub(crate) fragments: Vec<DataFile>,
}

impl HourPlan {
    pub(crate) fn inputs(&self) -> Vec<String> {
        self.spans.iter().chain(&self.fragments).map(|f| f.path.clone()).collect()
    }
}

/// Hours worth compacting in `files`, oldest first.
pub(crate) fn plan(files: &[DataFile], now_secs: i64, config: &CompactionConfig) -> Vec<HourPlan> {
    let mut hours: std::collections::BTreeMap<i64, HourPlan> = std::collections::BTreeMap::new();
    for file in files {
        let plan =
            hours.entry(file.hour).or_insert_with(|| HourPlan { hour: file.hour, spans: vec![], fragments: vec![] });
        match file.kind {
            FileKind::Spans => plan.spans.push(file.clone()),
            FileKind::TraceIndex => plan.fragments.push(file.clone()),
        }
    }
    hours
        .into_values()
        .filter(|plan| {
            let flushed = plan.spans.iter().filter(|f| f.level == 0).count();
            let finished = now_secs >= plan.hour + 3600 + config.settle.as_secs() as i64;
            flushed >= config.min_files || (finished && flushed >= 1 && plan.spans.len() >= 2)
        })
        .collect()
}

/// What compacting an hour produced.
#[derive(Debug)]
pub(crate) struct HourOutput {
    pub(crate) files: Vec<DataFile>,
    pub(crate) duplicates: u64,
}

/// Rows decoded per input at a time; the merge holds a batch of every
/// input, so an hour of a few hundred flushed files stays small.
const MERGE_BATCH_ROWS: usize = 1024;

async fn open_input(store: &Arc<dyn ObjectStore>, file: &DataFile) -> Result<BatchStream, StorageError> {
    let reader = FileReader::new(Arc::clone(store), file);
    let stream = ParquetRecordBatchStreamBuilder::new(reader).await?.with_batch_size(MERGE_BATCH_ROWS).build()?;
    let schema = file.kind.schema();
    Ok(stream.map_err(|e| ArrowError::ExternalError(Box::new(e))).map(move |b| schema::conform(&b?, &schema)).boxed())
}

async fn merge_of(
    store: &Arc<dyn ObjectStore>,
    kind: FileKind,
    files: &[DataFile],
    dedup: bool,
) -> Result<SortedMerge, StorageError> {
    let mut inputs = Vec::with_capacity(files.len());
    for file in files {
        inputs.push(open_input(store, file).await?);
    }
    Ok(SortedMerge::new(kind.schema(), kind.sort_columns(), dedup, inputs)?)
}

/// Compacts one hour of one tenant; on failure deletes what it wrote.
pub(crate) async fn compact_hour(
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    plan: HourPlan,
    target_bytes: usize,
) -> Result<HourOutput, StorageError> {
    let hour = DateTime::<Utc>::from_timestamp(plan.hour, 0).unwrap_or_default();
    let mut spans = FileSink::new(Arc::clone(&store), tenant.clone(), FileKind::Spans, hour, 1, target_bytes);
    let mut fragments = FileSink::new(Arc::clone(&store), tenant, FileKind::TraceIndex, hour, 1, target_bytes);
    let result = merge_hour(&store, &plan, &mut spans, &mut fragments).await;
    let written: Vec<String> = spans.written().into_iter().chain(fragments.written()).collect();
    let outcome = match result {
        Ok(duplicates) => match (spans.finish().await, fragments.finish().await) {
            (Ok(mut files), Ok(more)) => {
                files.extend(more);
                return Ok(HourOutput { files, duplicates });
            }
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    for path in written {
        let _ = store.delete(&Path::from(path)).await;
    }
    outcome
}

async fn merge_hour(
    store: &Arc<dyn ObjectStore>,
    plan: &HourPlan,
    spans: &mut FileSink,
    fragments: &mut FileSink,
) -> Result<u64, StorageError> {
    let mut merge = merge_of(store, FileKind::Spans, &plan.spans, true).await?;
    let mut repeats: HashMap<([u8; 16], Option<String>), Fragment> = HashMap::new();
    let mut duplicates = 0;
    while let Some(merged) = merge.next().await? {
        spans.write(&merged.rows).await?;
        if let Some(dups) = merged.duplicates {
            duplicates += dups.num_rows() as u64;
            for f in trace_index::read_fragments(&trace_index::fragments_of_spans(&dups)?)? {
                repeats
                    .entry((f.trace_id, f.service.clone()))
                    .and_modify(|r| {
                        r.spans += f.spans;
                        r.errors += f.errors;
                    })
                    .or_insert(f);
            }
        }
    }

    let mut merge = merge_of(store, FileKind::TraceIndex, &plan.fragments, false).await?;
    let mut carry: Option<Fragment> = None;
    let subtract = |mut f: Fragment| {
        if let Some(r) = repeats.get(&(f.trace_id, f.service.clone())) {
            f.spans -= r.spans;
            f.errors = (f.errors - r.errors).max(0);
        }
        f
    };
    while let Some(merged) = merge.next().await? {
        let mut combined =
            trace_index::combine_sorted(carry.take().into_iter().chain(trace_index::read_fragments(&merged.rows)?));
        // The last trace may continue in the next batch.
        carry = combined.pop();
        write_fragments(fragments, combined.into_iter().map(subtract).collect()).await?;
    }
    write_fragments(fragments, carry.into_iter().map(subtract).collect()).await?;
    Ok(duplicates)
}

async fn write_fragments(sink: &mut FileSink, fragments: Vec<Fragment>) -> Result<(), StorageError> {
    if fragments.is_empty() {
        return Ok(());
    }
    let batch: RecordBatch = trace_index::to_batch(fragments)?;
    sink.write(&batch).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
