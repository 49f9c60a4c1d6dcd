//! Span files: one Parquet file per flushed hour of one tenant.
//!
//! Rows are sorted by [`schema::SORT_COLUMNS`] and the order is declared in
//! the footer. zstd everywhere; ids without dictionaries (random bytes do not
//! repeat); times delta-encoded; a bloom filter on `trace_id`, sized by the
//! writer to the ids it saw, answers trace lookups; the page index lets
//! readers skip pages by min/max.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use arrow::datatypes::TimestampNanosecondType;
use arrow::error::ArrowError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::schema::{self, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SORT_COLUMNS};

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

/// Sorts rows into the file order.
pub fn sort(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let columns = SORT_COLUMNS
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

/// Writer settings for span files.
pub fn writer_properties() -> WriterProperties {
    let schema = schema::span_schema();
    let sorting = SORT_COLUMNS
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
    for (id, _) in schema::ID_COLUMNS {
        props = props.set_column_dictionary_enabled(ColumnPath::from(id), false);
    }
    for column in [schema::START_TIME, schema::DURATION_NS] {
        props = props
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    props.build()
}

/// Encodes sorted span rows as one Parquet file.
pub fn encode(batch: &RecordBatch) -> Result<Bytes, ParquetError> {
    let mut buffer = Vec::with_capacity(1024 * 1024);
    let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(batch.schema_ref()), Some(writer_properties()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(buffer))
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
        let sorted = sort(&batch(&[480_000, 480_000, 480_000])).unwrap();
        let names = sorted.column_by_name(schema::SPAN_NAME).unwrap();
        let names = arrow::compute::cast(names, &arrow::datatypes::DataType::Utf8).unwrap();
        assert_eq!(names.as_string::<i32>().iter().flatten().collect::<Vec<_>>(), ["op-1", "op-2", "op-3"]);

        let reader = SerializedFileReader::new(encode(&sorted).unwrap()).unwrap();
        let metadata = reader.metadata();
        let kv = metadata.file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().any(|e| e.key == SCHEMA_VERSION_KEY && e.value.as_deref() == Some("1")));
        let row_group = metadata.row_group(0);
        let sorting: Vec<_> = row_group.sorting_columns().unwrap().iter().map(|c| c.column_idx).collect();
        let schema = schema::span_schema();
        let expected: Vec<_> = SORT_COLUMNS.iter().map(|c| schema.index_of(c).unwrap() as i32).collect();
        assert_eq!(sorting, expected);
        let trace_id = row_group.column(0);
        assert_eq!(trace_id.column_path().string(), schema::TRACE_ID);
        assert!(trace_id.bloom_filter_offset().is_some(), "trace_id has a bloom filter");
        assert!(matches!(trace_id.compression(), Compression::ZSTD(_)));
        assert!(row_group.column(1).bloom_filter_offset().is_none(), "only trace_id has one");
    }
}
