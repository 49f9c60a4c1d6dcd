//! Data files: Parquet files of spans or trace-index fragments, one hour of
//! one tenant each.
//!
//! Rows are sorted (spans by [`schema::SORT_COLUMNS`], fragments by trace
//! id) and the order is declared in the footer. zstd everywhere; ids without
//! dictionaries (random bytes do not repeat); times delta-encoded; a bloom
//! filter on `trace_id`, sized by the writer to the ids it saw, answers
//! trace lookups; the page index lets readers skip pages by min/max.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, SortOptions, cast, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
use arrow::error::ArrowError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::catalog::DataFile;
use crate::paths::{DataFilePath, FileKind, TenantId};
use crate::schema::{self, SCHEMA_VERSION, SCHEMA_VERSION_KEY};

/// Rows per row group: large enough for good compression and few footer
/// entries, small enough that a trace lookup decodes little.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Splits a batch by the hour its spans start in; each part becomes one file.
pub fn split_by_hour(batch: &RecordBatch) -> Result<Vec<(DateTime<Utc>, RecordBatch)>, ArrowError> {
    let start = batch
        .column_by_name(schema::START_TIME)
        .ok_or_else(|| ArrowError::SchemaError("span batch lacks start_time".into()))?
        .as_primitive::<TimestampNanosecondType>();
    let mut hours: Vec<(i64, Vec<u32>)> = Vec::new();
    for (row, nanos) in start.values().iter().enumerate() {
        let hour = nanos.div_euclid(NANOS_PER_HOUR);
        match hours.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, rows)) => rows.push(row as u32),
            None => hours.push((hour, vec![row as u32])),
        }
    }
    hours.sort_by_key(|(h, _)| *h);
    hours
        .into_iter()
        .map(|(hour, rows)| {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
            Ok((DateTime::from_timestamp_nanos(hour * NANOS_PER_HOUR), part))
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
    let columns = kind
        .sort_columns()
        .iter()
        .map(|name| {
            let values: ArrayRef = batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| ArrowError::SchemaError(format!("span batch lacks {name}")))?;
            Ok(SortColumn { values, options: Some(SortOptions { descending: false, nulls_first: true }) })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let indices = lexsort_to_indices(&columns, None)?;
    take_record_batch(batch, &indices)
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
            self.open = Some((path, writer, FileStats::default()));
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
        let Some((path, writer, stats)) = self.open.take() else { return Ok(()) };
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
    fn batches_split_by_the_hour_their_spans_start_in() {
        let parts = split_by_hour(&batch(&[480_000, 480_001, 480_000])).unwrap();
        let rows: Vec<_> = parts.iter().map(|(h, b)| (h.timestamp() / 3600, b.num_rows())).collect();
        assert_eq!(rows, [(480_000, 2), (480_001, 1)]);
    }

    #[test]
    fn files_are_sorted_compressed_versioned_and_carry_a_trace_id_bloom_filter() {
        let sorted = sort(FileKind::Spans, &batch(&[480_000, 480_000, 480_000])).unwrap();
        let names = sorted.column_by_name(schema::SPAN_NAME).unwrap();
        let names = arrow::compute::cast(names, &arrow::datatypes::DataType::Utf8).unwrap();
        assert_eq!(names.as_string::<i32>().iter().flatten().collect::<Vec<_>>(), ["op-1", "op-2", "op-3"]);

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
}
