//! Trace durations of finished hours: the ranking a search sorted by
//! duration reads the head of, instead of grouping every fragment.
//!
//! A trace's duration runs from its earliest fragment's start to its
//! latest fragment's end, and one trace has fragments in many files
//! (compacted files split by service and trace). No bound per file or per
//! fragment tells which traces are longest, so ranking a window's traces
//! means grouping all its fragments: at 100M spans, 41.5M rows into 18.2M
//! traces, seconds per search. Once an hour and the hours either side are
//! finished and compacted, upkeep groups them once and writes a file for
//! the hour: every trace with a fragment that starts in it, with its
//! duration over the fragments of all three hours. A trace shorter than an
//! hour is measured whole, as search summaries measure it.
//!
//! A hash map of traces being grouped holds tens of bytes per trace, so an
//! hour is grouped in passes, each over the traces whose id falls in one
//! part (about [`PASS_FRAGMENTS`] of the hour's fragments), and each pass
//! is written as a run sorted by (duration, trace id) in row groups of its
//! own. The footer lists where the runs start; a [`Ranking`] merges the
//! runs of many files, from either end.
//!
//! ```text
//! fragments of hours h-1, h, h+1 ──pass p: traces with id ≡ p, grouped──> run p of h's file, sorted
//! ```
//!
//! A file is current while the fragment files it was computed from
//! ([`DataFile::covers`]) are exactly the live ones of its three hours and
//! no buffered span starts in them. Late spans, or a merge in those hours,
//! make it stale: readers pass it by, and upkeep writes it again once the
//! hours settle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{AsArray, FixedSizeBinaryBuilder, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use chrono::DateTime;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::statistics::Statistics;

use crate::batch::start_time_range;
use crate::catalog::{DataFile, Manifest};
use crate::compaction::{self, CompactionConfig};
use crate::data_file::{FileReader, FileSink};
use crate::engine::Snapshot;
use crate::error::StorageError;
use crate::paths::{DataFilePath, FileKind, TenantId};
use crate::schema::{self, trace_durations as td};

const HOUR_SECS: i64 = 3600;
const HOUR_NS: i64 = HOUR_SECS * 1_000_000_000;

/// Fragments of the hour grouped per pass: about as many traces, at most,
/// in the hash map (some 70 MB).
const PASS_FRAGMENTS: u64 = if cfg!(test) { 1000 } else { 1_500_000 };

/// Rows per row group: a reader of a ranking's head decodes one group per
/// run.
const ROW_GROUP_ROWS: usize = if cfg!(test) { 128 } else { 16 * 1024 };

/// Footer key: the row groups where runs start, comma-separated.
const RUNS_KEY: &str = "spanlake.duration_runs";

/// A manifest's fragment files by hour, each hour's by path.
struct FragmentsByHour<'a>(BTreeMap<i64, Vec<&'a DataFile>>);

impl<'a> FragmentsByHour<'a> {
    fn of(manifest: &'a Manifest) -> Self {
        let mut hours: BTreeMap<i64, Vec<&DataFile>> = BTreeMap::new();
        for file in manifest.files_of(FileKind::TraceIndex) {
            hours.entry(file.hour).or_default().push(file);
        }
        for files in hours.values_mut() {
            files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        }
        Self(hours)
    }

    /// The fragment files of `hour` and the hours either side, by path
    /// (paths name the date and hour, so hour order is path order): what a
    /// trace-duration file of `hour` is computed from.
    fn covering(&self, hour: i64) -> Vec<&'a DataFile> {
        self.0.range(hour - HOUR_SECS..=hour + HOUR_SECS).flat_map(|(_, files)| files.iter().copied()).collect()
    }
}

/// Whether `file` was computed from exactly `covering`.
fn covers(file: &DataFile, covering: &[&DataFile]) -> bool {
    file.covers.len() == covering.len() && file.covers.iter().zip(covering).all(|(path, f)| *path == f.path)
}

/// The current trace-duration files of a snapshot (see the module docs).
pub fn current(snapshot: &Snapshot) -> Vec<&DataFile> {
    let buffered: Vec<(i64, i64)> = snapshot.batches.iter().filter_map(start_time_range).collect();
    let fragments = FragmentsByHour::of(&snapshot.manifest);
    snapshot
        .files(FileKind::TraceDurations)
        .filter(|file| {
            let (from, until) = (file.hour * 1_000_000_000 - HOUR_NS, file.hour * 1_000_000_000 + 2 * HOUR_NS);
            covers(file, &fragments.covering(file.hour))
                && buffered.iter().all(|(min, max)| *max < from || *min >= until)
        })
        .collect()
}

/// An hour whose trace-duration file is due.
#[derive(Debug)]
pub(crate) struct Due {
    pub(crate) hour: i64,
    /// The fragment files of the three hours, by path.
    pub(crate) covers: Vec<DataFile>,
    /// The hour's stale trace-duration files, to replace.
    pub(crate) stale: Vec<String>,
}

/// Hours that lack a current trace-duration file although they and the
/// hours either side are finished and have nothing left to merge.
pub(crate) fn due(manifest: &Manifest, now_secs: i64, config: &CompactionConfig) -> Vec<Due> {
    let merging: Vec<i64> = compaction::plan(&manifest.files, now_secs, config).iter().map(|job| job.hour).collect();
    let settled = |hour: i64| {
        now_secs >= hour + 2 * HOUR_SECS + config.settle.as_secs() as i64
            && !merging.iter().any(|m| (hour - HOUR_SECS..=hour + HOUR_SECS).contains(m))
    };
    let fragments = FragmentsByHour::of(manifest);
    fragments
        .0
        .keys()
        .copied()
        .filter(|hour| settled(*hour))
        .filter_map(|hour| {
            let covering = fragments.covering(hour);
            let existing: Vec<&DataFile> =
                manifest.files_of(FileKind::TraceDurations).filter(|f| f.hour == hour).collect();
            if existing.iter().any(|f| covers(f, &covering)) {
                return None;
            }
            Some(Due {
                hour,
                covers: covering.into_iter().cloned().collect(),
                stale: existing.iter().map(|f| f.path.clone()).collect(),
            })
        })
        .collect()
}

/// Which pass groups a trace.
fn pass_of(trace_id: &[u8], passes: u64) -> u64 {
    let tail: [u8; 8] = trace_id[8..16].try_into().expect("16-byte trace ids");
    u64::from_le_bytes(tail) % passes
}

/// Calls `each` with the trace id, start and end of every fragment of `file`.
async fn for_each_fragment(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
    mut each: impl FnMut(&[u8], i64, i64),
) -> Result<(), StorageError> {
    let builder = ParquetRecordBatchStreamBuilder::new(FileReader::new(Arc::clone(store), file)).await?;
    let columns = [schema::trace_index::TRACE_ID, schema::trace_index::START_TIME, schema::trace_index::END_TIME];
    let mask = ProjectionMask::columns(builder.parquet_schema(), columns);
    let mut batches = builder.with_projection(mask).with_batch_size(8192).build()?;
    while let Some(batch) = batches.try_next().await? {
        let missing = |name: &str| ArrowError::SchemaError(format!("{}: no column {name}", file.path));
        let column = |name: &str| batch.column_by_name(name).ok_or_else(|| missing(name));
        let ids = column(columns[0])?.as_fixed_size_binary_opt().ok_or_else(|| missing(columns[0]))?;
        let starts =
            column(columns[1])?.as_primitive_opt::<TimestampNanosecondType>().ok_or_else(|| missing(columns[1]))?;
        let ends =
            column(columns[2])?.as_primitive_opt::<TimestampNanosecondType>().ok_or_else(|| missing(columns[2]))?;
        for row in 0..batch.num_rows() {
            each(ids.value(row), starts.value(row), ends.value(row));
        }
    }
    Ok(())
}

fn run_batch(rows: &[Ranked]) -> Result<RecordBatch, ArrowError> {
    let mut ids = FixedSizeBinaryBuilder::with_capacity(rows.len(), 16);
    for row in rows {
        ids.append_value(row.trace_id)?;
    }
    let starts = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.start_ns)).with_timezone("UTC");
    let durations = Int64Array::from_iter_values(rows.iter().map(|r| r.duration_ns));
    RecordBatch::try_new(
        FileKind::TraceDurations.schema(),
        vec![Arc::new(ids.finish()), Arc::new(starts), Arc::new(durations)],
    )
}

/// Groups the traces of `due`'s hour and writes its file; `None` when the
/// hour holds no fragment.
pub(crate) async fn write(
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    due: &Due,
) -> Result<Option<DataFile>, StorageError> {
    let (own, neighbours): (Vec<&DataFile>, Vec<&DataFile>) = due.covers.iter().partition(|f| f.hour == due.hour);
    let passes = own.iter().map(|f| f.rows).sum::<u64>().div_ceil(PASS_FRAGMENTS).max(1);
    let hour = DateTime::from_timestamp(due.hour, 0).unwrap_or_default();
    let mut sink = FileSink::new(Arc::clone(&store), DataFilePath::new(tenant, FileKind::TraceDurations, hour), 0);
    let mut runs = Vec::new();
    let written = async {
        for pass in 0..passes {
            let mut extents: HashMap<[u8; 16], (i64, i64)> = HashMap::new();
            for file in &own {
                for_each_fragment(&store, file, |id, start, end| {
                    if pass_of(id, passes) == pass {
                        let id: [u8; 16] = id.try_into().expect("16-byte trace ids");
                        let extent = extents.entry(id).or_insert((start, end));
                        *extent = (extent.0.min(start), extent.1.max(end));
                    }
                })
                .await?;
            }
            for file in &neighbours {
                for_each_fragment(&store, file, |id, start, end| {
                    if pass_of(id, passes) == pass
                        && let Some(extent) = extents.get_mut(id)
                    {
                        *extent = (extent.0.min(start), extent.1.max(end));
                    }
                })
                .await?;
            }
            let mut rows: Vec<Ranked> = extents
                .into_iter()
                .map(|(trace_id, (start_ns, end))| Ranked {
                    duration_ns: end.saturating_sub(start_ns),
                    trace_id,
                    start_ns,
                })
                .collect();
            rows.sort_unstable_by_key(Ranked::key);
            if rows.is_empty() {
                continue;
            }
            runs.push(sink.row_groups().to_string());
            for chunk in rows.chunks(ROW_GROUP_ROWS) {
                sink.write(&run_batch(chunk)?).await?;
                sink.end_row_group().await?;
            }
        }
        Ok::<_, StorageError>(())
    }
    .await;
    if let Err(error) = written {
        if let Some(path) = sink.written() {
            let _ = store.delete(&object_store::path::Path::from(path)).await;
        }
        return Err(error);
    }
    sink.add_metadata(RUNS_KEY, runs.join(","));
    let file = sink.finish().await?;
    Ok(file.map(|file| DataFile { covers: due.covers.iter().map(|f| f.path.clone()).collect(), ..file }))
}

/// One trace in a ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked {
    pub duration_ns: i64,
    pub trace_id: [u8; 16],
    /// The earliest span start: every span of the trace starts between
    /// this and `start_ns + duration_ns`.
    pub start_ns: i64,
}

impl Ranked {
    /// Its place in a ranking.
    pub fn key(&self) -> (i64, [u8; 16]) {
        (self.duration_ns, self.trace_id)
    }
}

/// The row groups of one run, read one at a time in the ranking's order.
struct Run {
    file: usize,
    /// Row groups still to read, in reading order.
    groups: std::collections::VecDeque<usize>,
    /// Rows read and not yet taken, the next one last.
    rows: Vec<Ranked>,
}

/// Traces of trace-duration files merged into one order: shortest first, or
/// longest first, ties by trace id the same way; starting after a given
/// (duration, trace id).
pub struct Ranking {
    store: Arc<dyn ObjectStore>,
    files: Vec<(DataFile, ArrowReaderMetadata)>,
    runs: Vec<Run>,
    longest_first: bool,
    after: Option<(i64, [u8; 16])>,
}

impl std::fmt::Debug for Ranking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranking").field("files", &self.files.len()).field("runs", &self.runs.len()).finish()
    }
}

/// A row group's least and greatest duration.
fn duration_range(metadata: &ArrowReaderMetadata, group: usize) -> Option<(i64, i64)> {
    let column = metadata.parquet_schema().columns().iter().position(|c| c.name() == td::DURATION_NS)?;
    match metadata.metadata().row_group(group).column(column).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

impl Ranking {
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        files: &[&DataFile],
        longest_first: bool,
        after: Option<(i64, [u8; 16])>,
    ) -> Result<Self, StorageError> {
        let mut ranking = Self { store, files: Vec::new(), runs: Vec::new(), longest_first, after };
        for file in files {
            let mut reader = FileReader::new(Arc::clone(&ranking.store), file);
            let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
            let groups = metadata.metadata().num_row_groups();
            let mut starts: Vec<usize> = metadata
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .and_then(|kv| kv.iter().find(|e| e.key == RUNS_KEY))
                .and_then(|e| e.value.as_deref())
                .map(|runs| runs.split(',').filter_map(|s| s.parse().ok()).collect())
                .ok_or_else(|| StorageError::Internal(format!("{}: no run list in the footer", file.path)))?;
            starts.push(groups);
            for run in starts.windows(2) {
                let mut order: Vec<usize> = (run[0]..run[1].min(groups)).collect();
                if longest_first {
                    order.reverse();
                }
                // Groups wholly at or before `after` in this order.
                let passed = |group: &usize| match (after, duration_range(&metadata, *group)) {
                    (Some((key, _)), Some((min, max))) => {
                        if longest_first {
                            min > key
                        } else {
                            max < key
                        }
                    }
                    _ => false,
                };
                let groups = order.into_iter().skip_while(passed).collect();
                ranking.runs.push(Run { file: ranking.files.len(), groups, rows: Vec::new() });
            }
            ranking.files.push(((*file).clone(), metadata));
        }
        Ok(ranking)
    }

    /// Whether `a` comes before `b` in this ranking.
    fn before(&self, a: &(i64, [u8; 16]), b: &(i64, [u8; 16])) -> bool {
        if self.longest_first { a > b } else { a < b }
    }

    /// Makes sure `run` has its next row loaded, if it has one left.
    async fn fill(&mut self, run: usize) -> Result<(), StorageError> {
        while self.runs[run].rows.is_empty() {
            let Some(group) = self.runs[run].groups.pop_front() else { return Ok(()) };
            let (file, metadata) = &self.files[self.runs[run].file];
            let reader = FileReader::new(Arc::clone(&self.store), file);
            let batches: Vec<RecordBatch> =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone())
                    .with_row_groups(vec![group])
                    .build()?
                    .try_collect()
                    .await?;
            let mut rows = Vec::new();
            for batch in &batches {
                let batch = schema::conform(batch, &FileKind::TraceDurations.schema())?;
                let ids = batch.column(0).as_fixed_size_binary();
                let starts = batch.column(1).as_primitive::<TimestampNanosecondType>();
                let durations = batch.column(2).as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    let trace_id: [u8; 16] = ids.value(row).try_into().expect("16-byte trace ids");
                    let (start_ns, duration_ns) = (starts.value(row), durations.value(row));
                    rows.push(Ranked { duration_ns, trace_id, start_ns });
                }
            }
            // Taken from the end: the first row in ranking order last.
            if !self.longest_first {
                rows.reverse();
            }
            if let Some(after) = self.after {
                rows.retain(|row| self.before(&after, &row.key()));
            }
            self.runs[run].rows = rows;
        }
        Ok(())
    }

    /// The next trace in the ranking.
    pub async fn next(&mut self) -> Result<Option<Ranked>, StorageError> {
        let mut best: Option<usize> = None;
        for run in 0..self.runs.len() {
            self.fill(run).await?;
            let Some(row) = self.runs[run].rows.last() else { continue };
            if best.is_none_or(|b| self.before(&row.key(), &self.runs[b].rows.last().expect("filled").key())) {
                best = Some(run);
            }
        }
        Ok(best.map(|run| self.runs[run].rows.pop().expect("filled")))
    }
}

#[cfg(test)]
mod tests;
