//! Data files: Parquet files of spans or trace-index fragments, one hour of
//! one tenant each.
//!
//! Rows are sorted (spans by [`schema::SORT_COLUMNS`], service then trace;
//! fragments by service then trace too) and the order is declared in the
//! footer. Span files are written in pairs with their fragment files
//! ([`PairedSink`]). zstd everywhere; ids without dictionaries (random bytes do not repeat); times
//! delta-encoded; a bloom filter on `trace_id`, sized by the writer to the
//! ids it saw, answers trace lookups; the page index lets readers skip
//! pages by min/max.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, DynComparator, RecordBatch, make_comparator};
use arrow::compute::{SortColumn, SortOptions, cast, interleave_record_batch, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Int32Type, SchemaRef, TimestampNanosecondType};
use arrow::error::ArrowError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::arrow::{ArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::catalog::DataFile;
use crate::error::StorageError;
use crate::paths::{DataFilePath, FileKind, TenantId};
use crate::schema::{self, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
use crate::tag_summary::{self, TagSummary};
use crate::trace_index::{self, SortedFragments};

/// Rows per row group of a file that is never merged again: large enough
/// for good compression and few footer entries, small enough that a trace
/// lookup decodes little.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per row group of a file written at `level`. A merge holds a row
/// group (the Parquet reader fetches its column chunks whole) and a
/// decompressed page per column of every input: files that will be merged
/// again have small row groups and pages, so that a merge of many of them
/// stays within tens of MB. They live minutes.
pub fn row_group_rows(level: u8) -> usize {
    match level {
        0 => 16 * 1024,
        1 => 32 * 1024,
        _ => ROW_GROUP_ROWS,
    }
}

/// Bytes per data page and per dictionary page of a file written at
/// `level` (see [`row_group_rows`]): a reader holds a decompressed page and
/// a decoded dictionary per column.
fn page_bytes(level: u8) -> usize {
    if level < crate::compaction::MAX_LEVEL { 64 * 1024 } else { 1024 * 1024 }
}

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// What one flush writes.
#[derive(Debug)]
pub struct FlushRows {
    /// The spans, hour by hour of their start, each hour in span file order.
    pub hours: Vec<(DateTime<Utc>, RecordBatch)>,
    /// Rows left out as equal to the one before them in every sort column:
    /// copies of a retried export that arrived before the flush.
    pub repeats: u64,
}

/// The spans of `batches` as one flush writes them. Only the sort columns
/// are concatenated; every row is copied once, straight into its hour's
/// sorted batch, so a flush holds one copy of the buffer, not three.
pub fn sorted_hours(batches: &[RecordBatch]) -> Result<FlushRows, ArrowError> {
    let keys = sort_keys(batches, &schema::SORT_COLUMNS)?;
    let same: Vec<DynComparator> = keys
        .iter()
        .map(|k| make_comparator(k.values.as_ref(), k.values.as_ref(), k.options.unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    let start = concat_column(batches, schema::START_TIME)?;
    let start = start.as_primitive::<TimestampNanosecondType>();
    let positions: Vec<(usize, usize)> =
        batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |row| (b, row))).collect();
    let mut hours: BTreeMap<i64, Vec<(usize, usize)>> = BTreeMap::new();
    let (mut last, mut repeats) = (None, 0);
    for i in lexsort_to_indices(&keys, None)?.values() {
        let i = *i as usize;
        if last.is_some_and(|last| same.iter().all(|cmp| cmp(last, i).is_eq())) {
            repeats += 1;
            continue;
        }
        last = Some(i);
        hours.entry(start.value(i).div_euclid(NANOS_PER_HOUR)).or_default().push(positions[i]);
    }
    let batches: Vec<&RecordBatch> = batches.iter().collect();
    let hours = hours
        .into_iter()
        .map(|(hour, rows)| {
            Ok((DateTime::from_timestamp_nanos(hour * NANOS_PER_HOUR), interleave_record_batch(&batches, &rows)?))
        })
        .collect::<Result<_, ArrowError>>()?;
    Ok(FlushRows { hours, repeats })
}

impl FileKind {
    pub fn schema(self) -> SchemaRef {
        match self {
            Self::Spans => schema::span_schema(),
            Self::TraceIndex => schema::trace_index_schema(),
            Self::Edges => schema::edges_schema(),
            Self::TraceDurations => schema::trace_durations_schema(),
        }
    }

    /// Whether readers look rows up by trace id (a bloom filter on it
    /// pays): not in trace-duration files, which are read by position.
    pub fn looked_up_by_trace_id(self) -> bool {
        self != Self::TraceDurations
    }

    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            Self::Spans => &schema::SORT_COLUMNS,
            Self::TraceIndex => &schema::trace_index::SORT_COLUMNS,
            Self::Edges => &schema::edges::SORT_COLUMNS,
            Self::TraceDurations => &schema::trace_durations::SORT_COLUMNS,
        }
    }
}

/// Sorts rows into the file order of `kind`.
pub fn sort(kind: FileKind, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    sort_by(batch, kind.sort_columns())
}

/// Sorts rows by `columns`, ascending, nulls first.
pub fn sort_by(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch, ArrowError> {
    let indices = lexsort_to_indices(&sort_keys(std::slice::from_ref(batch), columns)?, None)?;
    take_record_batch(batch, &indices)
}

/// `columns` of `batches` as ascending sort keys, nulls first.
fn sort_keys(batches: &[RecordBatch], columns: &[&str]) -> Result<Vec<SortColumn>, ArrowError> {
    let options = Some(SortOptions { descending: false, nulls_first: true });
    columns.iter().map(|name| Ok(SortColumn { values: concat_column(batches, name)?, options })).collect()
}

/// One column of `batches` as one array (no copy for a single batch).
fn concat_column(batches: &[RecordBatch], name: &str) -> Result<ArrayRef, ArrowError> {
    let parts: Vec<&dyn Array> = batches
        .iter()
        .map(|b| b.column_by_name(name).map(|c| c.as_ref()))
        .collect::<Option<_>>()
        .ok_or_else(|| ArrowError::SchemaError(format!("span batch lacks {name}")))?;
    arrow::compute::concat(&parts)
}

/// The sort order declared in the footers of `kind`'s files.
fn sorting_columns(kind: FileKind) -> Vec<SortingColumn> {
    let schema = kind.schema();
    kind.sort_columns()
        .iter()
        .map(|name| SortingColumn {
            column_idx: schema.index_of(name).expect("sort column in schema") as i32,
            descending: false,
            nulls_first: true,
        })
        .collect()
}

/// Whether a file of `kind` declares the current sort order. Span files
/// written before the layout study (service, span name, start, trace)
/// do not, and must be re-sorted before they can be merged.
pub fn in_current_order(kind: FileKind, metadata: &ParquetMetaData) -> bool {
    let expected = sorting_columns(kind);
    metadata.row_groups().iter().all(|group| group.sorting_columns() == Some(&expected))
}

/// Writer settings for files of `kind` written at `level`.
pub fn writer_properties(kind: FileKind, level: u8) -> WriterProperties {
    let schema = kind.schema();
    let row_group_rows = row_group_rows(level);
    // Flushes at zstd 1: 7% less encoding time than 3 for 0.3% more bytes
    // (`flush_encode` bench), and compaction rewrites their files. Compaction
    // at 3: 9 saved 5% of the bytes for 47% more compaction CPU, 15 7% for
    // 5.5 times (BENCHMARKS.md, "Compaction's zstd level").
    let zstd = if level == 0 { 1 } else { 3 };
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_data_page_size_limit(page_bytes(level))
        .set_dictionary_page_size_limit(page_bytes(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting_columns(kind)))
        .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]));
    if kind.looked_up_by_trace_id() {
        props = props
            .set_column_bloom_filter_enabled(ColumnPath::from(schema::TRACE_ID), true)
            .set_column_bloom_filter_fpp(ColumnPath::from(schema::TRACE_ID), 0.01)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(schema::TRACE_ID), row_group_rows as u64);
    }
    let ids = schema::ID_COLUMNS.iter().map(|(id, _)| *id);
    for id in ids.filter(|id| schema.index_of(id).is_ok()) {
        props = props.set_column_dictionary_enabled(ColumnPath::from(id), false);
    }
    let times = [schema::START_TIME, schema::DURATION_NS, schema::trace_index::END_TIME];
    for column in times.into_iter().filter(|c| schema.index_of(c).is_ok()) {
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    props.build()
}

/// Encodes sorted rows of `kind` as one Parquet file in memory.
pub fn encode(kind: FileKind, batch: &RecordBatch) -> Result<Bytes, ParquetError> {
    let mut buffer = Vec::with_capacity(1024 * 1024);
    let props = writer_properties(kind, crate::compaction::MAX_LEVEL);
    let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(batch.schema_ref()), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(buffer))
}

/// What a file's rows span: for the catalog.
#[derive(Debug, Default)]
struct FileStats {
    rows: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
    services: BTreeSet<String>,
    /// Span files only.
    tags: Option<TagSummary>,
}

impl FileStats {
    fn add(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.rows += batch.num_rows() as u64;
        if let Some(start) = batch.column_by_name(schema::START_TIME) {
            let start = start.as_primitive::<TimestampNanosecondType>();
            if let (Some(min), Some(max)) = (arrow::compute::min(start), arrow::compute::max(start)) {
                self.min_time = Some(self.min_time.map_or(min, |m| m.min(min)));
                self.max_time = Some(self.max_time.map_or(max, |m| m.max(max)));
            }
        }
        if let Some(service) = batch.column_by_name(schema::SERVICE_NAME) {
            let add = |name: &str| {
                if !self.services.contains(name) {
                    self.services.insert(name.to_owned());
                }
            };
            match service.as_dictionary_opt::<Int32Type>() {
                // The values the rows use, not a string per row.
                Some(service) => {
                    let names = service.values().as_string::<i32>();
                    let mut used = vec![false; names.len()];
                    service.keys().iter().flatten().for_each(|key| used[key as usize] = true);
                    names.iter().zip(used).filter_map(|(name, used)| name.filter(|_| used)).for_each(add);
                }
                None => cast(service, &DataType::Utf8)?.as_string::<i32>().iter().flatten().for_each(add),
            }
        }
        if let Some(tags) = &mut self.tags {
            tags.add(batch)?;
        }
        Ok(())
    }
}

/// Writes sorted batches of one kind as one data file at `path`.
pub struct FileSink {
    store: Arc<dyn ObjectStore>,
    path: DataFilePath,
    level: u8,
    /// Span files: the tags of the rows, known before they are written
    /// (compaction's inputs); otherwise summarized from the rows.
    tags: Option<Arc<TagSummary>>,
    /// Footer entries besides the schema version and the tags.
    metadata: Vec<KeyValue>,
    open: Option<(AsyncArrowWriter<BufWriter>, FileStats)>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink").field("path", &self.path).finish_non_exhaustive()
    }
}

impl FileSink {
    pub fn new(store: Arc<dyn ObjectStore>, path: DataFilePath, level: u8) -> Self {
        Self { store, path, level, tags: None, metadata: Vec::new(), open: None }
    }

    /// Adds a footer entry, written when the file is finished.
    pub fn add_metadata(&mut self, key: &str, value: String) {
        self.metadata.push(KeyValue::new(key.to_owned(), value));
    }

    /// Span files: `tags` holds the tags of every row to be written (and
    /// may hold more services, which are left out).
    pub fn with_tags(mut self, tags: Option<Arc<TagSummary>>) -> Self {
        self.tags = tags;
        self
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let kind = self.path.kind;
        if self.open.is_none() {
            let writer = AsyncArrowWriter::try_new(
                BufWriter::new(Arc::clone(&self.store), self.path.to_path()),
                kind.schema(),
                Some(writer_properties(kind, self.level)),
            )?;
            let tags = (kind == FileKind::Spans && self.tags.is_none()).then(TagSummary::default);
            self.open = Some((writer, FileStats { tags, ..FileStats::default() }));
        }
        let (writer, stats) = self.open.as_mut().expect("opened above");
        writer.write(batch).await?;
        stats.add(batch).map_err(|e| ParquetError::External(Box::new(e)))
    }

    /// Bytes of the row groups written so far.
    pub fn bytes_written(&self) -> usize {
        self.open.as_ref().map_or(0, |(writer, _)| writer.bytes_written())
    }

    /// Row groups written so far.
    pub fn row_groups(&self) -> usize {
        self.open.as_ref().map_or(0, |(writer, _)| writer.flushed_row_groups().len())
    }

    /// Ends the row group being written, so the next row starts a new one.
    pub async fn end_row_group(&mut self) -> Result<(), ParquetError> {
        match &mut self.open {
            Some((writer, _)) => writer.flush().await,
            None => Ok(()),
        }
    }

    /// Closes the file; `None` if no row was written.
    pub async fn finish(self) -> Result<Option<DataFile>, ParquetError> {
        let Some((mut writer, stats)) = self.open else { return Ok(None) };
        let tags = match (&self.tags, &stats.tags) {
            (Some(given), _) => Some(given.of_services(&stats.services)),
            (None, summarized) => summarized.clone(),
        };
        if let Some(tags) = tags {
            writer.append_key_value_metadata(KeyValue::new(tag_summary::FOOTER_KEY.to_owned(), tags.to_json()));
        }
        for entry in self.metadata {
            writer.append_key_value_metadata(entry);
        }
        writer.close().await?;
        let path = self.path.to_path();
        let size = self.store.head(&path).await.map_err(|e| ParquetError::External(Box::new(e)))?.size;
        Ok(Some(DataFile {
            path: path.to_string(),
            kind: self.path.kind,
            hour: self.path.hour.timestamp(),
            size,
            rows: stats.rows,
            min_time: stats.min_time.unwrap_or_default(),
            max_time: stats.max_time.unwrap_or_default(),
            services: stats.services.into_iter().collect(),
            schema_version: SCHEMA_VERSION,
            level: self.level,
            trace_index: None,
            covers: Vec::new(),
        }))
    }

    /// The file, if writing began (to delete it when the work is abandoned).
    pub fn written(&self) -> Option<String> {
        self.open.as_ref().map(|_| self.path.to_path().to_string())
    }
}

/// One span file being written and the fragment file of its rows.
struct Pair {
    spans: FileSink,
    fragments: FileSink,
    run: SortedFragments,
}

/// Writes span rows of one tenant and hour, in span file order, as span
/// files of about `target_bytes` (a new one starts at the first row group
/// past it), each with a fragment file computed from its own rows. Returns
/// the catalog entries, each span file naming its fragment file.
pub struct PairedSink {
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    hour: DateTime<Utc>,
    level: u8,
    target_bytes: usize,
    tags: Option<Arc<TagSummary>>,
    open: Option<Pair>,
    done: Vec<DataFile>,
}

impl std::fmt::Debug for PairedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairedSink").field("hour", &self.hour).field("done", &self.done.len()).finish_non_exhaustive()
    }
}

impl PairedSink {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        tenant: TenantId,
        hour: DateTime<Utc>,
        level: u8,
        target_bytes: usize,
    ) -> Self {
        Self { store, tenant, hour, level, target_bytes, tags: None, open: None, done: Vec::new() }
    }

    /// The tags of every span to be written, for the span files' footers;
    /// before the first write.
    pub fn set_tags(&mut self, tags: Option<Arc<TagSummary>>) {
        self.tags = tags;
    }

    pub async fn write(&mut self, spans: &RecordBatch) -> Result<(), StorageError> {
        if spans.num_rows() == 0 {
            return Ok(());
        }
        let pair = self.open.get_or_insert_with(|| {
            let (span_path, fragment_path) = DataFilePath::pair(self.tenant.clone(), self.hour);
            Pair {
                spans: FileSink::new(Arc::clone(&self.store), span_path, self.level).with_tags(self.tags.clone()),
                fragments: FileSink::new(Arc::clone(&self.store), fragment_path, self.level),
                run: SortedFragments::default(),
            }
        });
        pair.spans.write(spans).await?;
        let done = pair.run.add(spans)?;
        if !done.is_empty() {
            pair.fragments.write(&trace_index::to_batch(done)?).await?;
        }
        if pair.spans.bytes_written() >= self.target_bytes {
            self.close_pair().await?;
        }
        Ok(())
    }

    async fn close_pair(&mut self) -> Result<(), StorageError> {
        let Some(mut pair) = self.open.take() else { return Ok(()) };
        if let Some(last) = pair.run.finish() {
            pair.fragments.write(&trace_index::to_batch(vec![last])?).await?;
        }
        let Some(mut spans) = pair.spans.finish().await? else { return Ok(()) };
        let fragments = pair.fragments.finish().await?.expect("a span file has fragments");
        spans.trace_index = Some(fragments.path.clone());
        self.done.extend([spans, fragments]);
        Ok(())
    }

    /// Closes the last pair; returns every file written.
    pub async fn finish(mut self) -> Result<Vec<DataFile>, StorageError> {
        self.close_pair().await?;
        Ok(self.done)
    }

    /// Files written so far (to delete them when the work is abandoned).
    pub fn written(&self) -> Vec<String> {
        let open = self.open.iter().flat_map(|p| p.spans.written().into_iter().chain(p.fragments.written()));
        self.done.iter().map(|f| f.path.clone()).chain(open).collect()
    }
}

/// Reads a data file of known size from the object store.
pub(crate) struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl FileReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, file: &DataFile) -> Self {
        Self { store, path: Path::from(file.path.as_str()), size: file.size }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move { self.store.get_range(&self.path, range).await.map_err(external) })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move { self.store.get_ranges(&self.path, &ranges).await.map_err(external) })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata =
                ParquetMetaDataReader::new().with_arrow_reader_options(options).load_and_finish(self, size).await?;
            Ok(Arc::new(metadata))
        })
    }
}

/// The tag summary in a span file's footer; `None` for files written
/// before footers held one.
pub fn footer_tags(metadata: &ParquetMetaData) -> Result<Option<TagSummary>, ParquetError> {
    let footer = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == tag_summary::FOOTER_KEY).and_then(|e| e.value.as_deref()));
    footer.map(|json| TagSummary::from_json(json).map_err(|e| ParquetError::External(Box::new(e)))).transpose()
}

/// The tag summary of a span file: from its footer, or, for files written
/// before footers held one, from its tag columns.
pub async fn tag_summary(store: Arc<dyn ObjectStore>, file: &DataFile) -> Result<TagSummary, ParquetError> {
    let builder = ParquetRecordBatchStreamBuilder::new(FileReader::new(store, file)).await?;
    if let Some(summary) = footer_tags(builder.metadata())? {
        return Ok(summary);
    }
    let roots: Vec<usize> = tag_summary::columns().filter_map(|name| builder.schema().index_of(name).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut batches = builder.with_projection(mask).build()?;
    let mut summary = TagSummary::default();
    while let Some(batch) = batches.try_next().await? {
        summary.add(&batch).map_err(|e| ParquetError::External(Box::new(e)))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::{IngestLimits, SpanBatchBuilder};

    fn batch(hours: &[u64]) -> RecordBatch {
        let spans = hours
            .iter()
            .enumerate()
            .map(|(i, hour)| Span {
                trace_id: vec![i as u8 + 1; 16],
                span_id: vec![i as u8 + 1; 8],
                name: format!("op-{}", hours.len() - i),
                start_time_unix_nano: hour * 3_600_000_000_000 + 5,
                end_time_unix_nano: hour * 3_600_000_000_000 + 10,
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

    #[test]
    fn a_flush_gets_each_hour_sorted_from_several_batches_without_repeats() {
        let (first, second) = (batch(&[480_001, 480_000, 480_001]), batch(&[480_000]));
        // A retried export: the first batch once more.
        let flush = sorted_hours(&[first.clone(), second, first]).unwrap();
        assert_eq!(flush.repeats, 3);
        let hours = flush.hours;
        let ids = |b: &RecordBatch| {
            let ids = b.column_by_name(schema::TRACE_ID).unwrap().as_fixed_size_binary();
            ids.iter().map(|id| id.unwrap()[0]).collect::<Vec<_>>()
        };
        let hours: Vec<_> = hours.iter().map(|(h, b)| (h.timestamp() / 3600, ids(b))).collect();
        assert_eq!(hours, [(480_000, vec![1, 2]), (480_001, vec![1, 3])]);
    }

    #[test]
    fn files_are_sorted_compressed_versioned_and_carry_a_trace_id_bloom_filter() {
        let mut unsorted = batch(&[480_000, 480_000, 480_000]);
        unsorted = take_record_batch(&unsorted, &arrow::array::UInt32Array::from(vec![2, 0, 1])).unwrap();
        let sorted = sort(FileKind::Spans, &unsorted).unwrap();
        let ids = sorted.column_by_name(schema::TRACE_ID).unwrap().as_fixed_size_binary();
        assert_eq!(ids.iter().map(|id| id.unwrap()[0]).collect::<Vec<_>>(), [1, 2, 3]);

        let reader = SerializedFileReader::new(encode(FileKind::Spans, &sorted).unwrap()).unwrap();
        let metadata = reader.metadata();
        let kv = metadata.file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|e| e.key == SCHEMA_VERSION_KEY && e.value.as_deref() == Some("1")));
        let row_group = metadata.row_group(0);
        let sorting: Vec<_> = row_group.sorting_columns().unwrap().iter().map(|c| c.column_idx).collect();
        let schema = schema::span_schema();
        let expected: Vec<_> = schema::SORT_COLUMNS.iter().map(|c| schema.index_of(c).unwrap() as i32).collect();
        assert_eq!(sorting, expected);
        let trace_id = row_group.column(0);
        assert_eq!(trace_id.column_path().string(), schema::TRACE_ID);
        assert!(trace_id.bloom_filter_offset().is_some(), "trace_id has a bloom filter");
        assert!(matches!(trace_id.compression(), Compression::ZSTD(_)));
        assert!(row_group.column(1).bloom_filter_offset().is_none(), "only trace_id has one");
    }

    #[tokio::test]
    async fn span_files_carry_their_tag_summary_in_the_footer_or_get_one_from_their_columns() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let spans = batch(&[480_000, 480_000]);
        let hour = DateTime::from_timestamp(480_000 * 3600, 0).unwrap();
        let mut sink =
            FileSink::new(Arc::clone(&store), DataFilePath::new(TenantId::default(), FileKind::Spans, hour), 0);
        sink.write(&spans).await.unwrap();
        let file = sink.finish().await.unwrap().unwrap();

        let mut expected = TagSummary::default();
        expected.add(&spans).unwrap();
        assert!(!expected.keys(None).is_empty());
        assert_eq!(tag_summary(Arc::clone(&store), &file).await.unwrap(), expected);

        // A file from before footers held summaries is summarized from its columns.
        let bare = encode(FileKind::Spans, &sort(FileKind::Spans, &spans).unwrap()).unwrap();
        let old = DataFile { path: "old.parquet".into(), size: bare.len() as u64, ..file };
        store.put(&Path::from("old.parquet"), bare.into()).await.unwrap();
        assert_eq!(tag_summary(store, &old).await.unwrap(), expected);
    }
}
