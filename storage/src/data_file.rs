//! Data files: Parquet files of spans or trace-index fragments, one hour of
//! one tenant each.
//!
//! Rows are sorted (spans by [`schema::SORT_COLUMNS`], service then trace;
//! fragments by trace id) and the order is declared in the footer. zstd
//! everywhere; ids without dictionaries (random bytes do not repeat); times
//! delta-encoded; a bloom filter on `trace_id`, sized by the writer to the
//! ids it saw, answers trace lookups; the page index lets readers skip
//! pages by min/max.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{SortColumn, SortOptions, cast, interleave_record_batch, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
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
use crate::paths::{DataFilePath, FileKind, TenantId};
use crate::schema::{self, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
use crate::tag_summary::{self, TagSummary};

/// Rows per row group: large enough for good compression and few footer
/// entries, small enough that a trace lookup decodes little.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// The spans of `batches`, hour by hour of their start, each hour in span
/// file order: what one flush writes. Only the sort columns are
/// concatenated; every row is copied once, straight into its hour's sorted
/// batch, so a flush holds one copy of the buffer, not three.
pub fn sorted_hours(batches: &[RecordBatch]) -> Result<Vec<(DateTime<Utc>, RecordBatch)>, ArrowError> {
    let keys = sort_keys(batches, &schema::SORT_COLUMNS)?;
    let start = concat_column(batches, schema::START_TIME)?;
    let start = start.as_primitive::<TimestampNanosecondType>();
    let positions: Vec<(usize, usize)> =
        batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |row| (b, row))).collect();
    let mut hours: BTreeMap<i64, Vec<(usize, usize)>> = BTreeMap::new();
    for i in lexsort_to_indices(&keys, None)?.values() {
        let i = *i as usize;
        hours.entry(start.value(i).div_euclid(NANOS_PER_HOUR)).or_default().push(positions[i]);
    }
    let batches: Vec<&RecordBatch> = batches.iter().collect();
    hours
        .into_iter()
        .map(|(hour, rows)| {
            Ok((DateTime::from_timestamp_nanos(hour * NANOS_PER_HOUR), interleave_record_batch(&batches, &rows)?))
        })
        .collect()
}

impl FileKind {
    pub fn schema(self) -> SchemaRef {
        match self {
            Self::Spans => schema::span_schema(),
            Self::TraceIndex => schema::trace_index_schema(),
        }
    }

    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            Self::Spans => &schema::SORT_COLUMNS,
            Self::TraceIndex => &schema::trace_index::SORT_COLUMNS,
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

/// Writer settings for files of `kind`.
pub fn writer_properties(kind: FileKind) -> WriterProperties {
    let schema = kind.schema();
    let sorting = kind
        .sort_columns()
        .iter()
        .map(|name| SortingColumn {
            column_idx: schema.index_of(name).expect("sort column in schema") as i32,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting))
        .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_string())]))
        .set_column_bloom_filter_enabled(ColumnPath::from(schema::TRACE_ID), true)
        .set_column_bloom_filter_fpp(ColumnPath::from(schema::TRACE_ID), 0.01)
        .set_column_bloom_filter_max_ndv(ColumnPath::from(schema::TRACE_ID), ROW_GROUP_ROWS as u64);
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
    let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(batch.schema_ref()), Some(writer_properties(kind)))?;
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
            let service = cast(service, &DataType::Utf8)?;
            self.services.extend(service.as_string::<i32>().iter().flatten().map(str::to_owned));
        }
        if let Some(tags) = &mut self.tags {
            tags.add(batch)?;
        }
        Ok(())
    }
}

/// Writes sorted batches of one tenant, kind and hour as files of about
/// `target_bytes` each (a new file starts at a row-group boundary past it).
/// Returns the catalog entries of the files written.
pub struct FileSink {
    store: Arc<dyn ObjectStore>,
    tenant: TenantId,
    kind: FileKind,
    hour: DateTime<Utc>,
    level: u8,
    target_bytes: usize,
    open: Option<(object_store::path::Path, AsyncArrowWriter<BufWriter>, FileStats)>,
    done: Vec<DataFile>,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink").field("kind", &self.kind).field("done", &self.done.len()).finish_non_exhaustive()
    }
}

impl FileSink {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        tenant: TenantId,
        kind: FileKind,
        hour: DateTime<Utc>,
        level: u8,
        target_bytes: usize,
    ) -> Self {
        Self { store, tenant, kind, hour, level, target_bytes, open: None, done: Vec::new() }
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            let path = DataFilePath::new(self.tenant.clone(), self.kind, self.hour).to_path();
            let writer = AsyncArrowWriter::try_new(
                BufWriter::new(Arc::clone(&self.store), path.clone()),
                self.kind.schema(),
                Some(writer_properties(self.kind)),
            )?;
            let tags = (self.kind == FileKind::Spans).then(TagSummary::default);
            self.open = Some((path, writer, FileStats { tags, ..FileStats::default() }));
        }
        let (_, writer, stats) = self.open.as_mut().expect("opened above");
        writer.write(batch).await?;
        stats.add(batch).map_err(|e| ParquetError::External(Box::new(e)))?;
        if writer.bytes_written() >= self.target_bytes {
            self.close_file().await?;
        }
        Ok(())
    }

    async fn close_file(&mut self) -> Result<(), ParquetError> {
        let Some((path, mut writer, stats)) = self.open.take() else { return Ok(()) };
        if let Some(tags) = &stats.tags {
            writer.append_key_value_metadata(KeyValue::new(tag_summary::FOOTER_KEY.to_owned(), tags.to_json()));
        }
        writer.close().await?;
        let size = self.store.head(&path).await.map_err(|e| ParquetError::External(Box::new(e)))?.size;
        self.done.push(DataFile {
            path: path.to_string(),
            kind: self.kind,
            hour: self.hour.timestamp(),
            size,
            rows: stats.rows,
            min_time: stats.min_time.unwrap_or_default(),
            max_time: stats.max_time.unwrap_or_default(),
            services: stats.services.into_iter().collect(),
            schema_version: SCHEMA_VERSION,
            level: self.level,
        });
        Ok(())
    }

    /// Closes the last file; returns every file written.
    pub async fn finish(mut self) -> Result<Vec<DataFile>, ParquetError> {
        self.close_file().await?;
        Ok(self.done)
    }

    /// Files written so far (to delete them when the work is abandoned).
    pub fn written(&self) -> Vec<String> {
        self.done.iter().map(|f| f.path.clone()).chain(self.open.as_ref().map(|(p, _, _)| p.to_string())).collect()
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

/// The tag summary of a span file: from its footer, or, for files written
/// before footers held one, from its tag columns.
pub async fn tag_summary(store: Arc<dyn ObjectStore>, file: &DataFile) -> Result<TagSummary, ParquetError> {
    let builder = ParquetRecordBatchStreamBuilder::new(FileReader::new(store, file)).await?;
    let footer = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == tag_summary::FOOTER_KEY).and_then(|e| e.value.clone()));
    if let Some(json) = footer {
        return TagSummary::from_json(&json).map_err(|e| ParquetError::External(Box::new(e)));
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
    fn a_flush_gets_each_hour_sorted_from_several_batches() {
        let (first, second) = (batch(&[480_001, 480_000, 480_001]), batch(&[480_000]));
        let hours = sorted_hours(&[first, second]).unwrap();
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
        let mut sink = FileSink::new(Arc::clone(&store), TenantId::default(), FileKind::Spans, hour, 0, usize::MAX);
        sink.write(&spans).await.unwrap();
        let files = sink.finish().await.unwrap();

        let mut expected = TagSummary::default();
        expected.add(&spans).unwrap();
        assert!(!expected.keys(None).is_empty());
        assert_eq!(tag_summary(Arc::clone(&store), &files[0]).await.unwrap(), expected);

        // A file from before footers held summaries is summarized from its columns.
        let bare = encode(FileKind::Spans, &sort(FileKind::Spans, &spans).unwrap()).unwrap();
        let old = DataFile { path: "old.parquet".into(), size: bare.len() as u64, ..files[0].clone() };
        store.put(&Path::from("old.parquet"), bare.into()).await.unwrap();
        assert_eq!(tag_summary(store, &old).await.unwrap(), expected);
    }
}
