//! Partials as rows of edge files (`schema::edges`), sorted by time.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, FixedSizeBinaryBuilder, Int8Builder, Int32Builder, Int64Builder,
    RecordBatch, StringDictionaryBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int8Type, Int32Type, Int64Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use chrono::DateTime;
use futures::TryStreamExt;
use object_store::ObjectStore;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use super::{CallKey, CallStats, OpenClient, OpenServer, Partial, id};
use crate::batch::TimestampColumn;
use crate::catalog::DataFile;
use crate::data_file::{FileReader, FileSink};
use crate::error::StorageError;
use crate::paths::{DataFilePath, FileKind, TenantId};
use crate::schema::{self, edges as e};

/// The ids an open end is matched by.
struct OpenIds {
    trace: [u8; 16],
    span: [u8; 8],
    parent: Option<[u8; 8]>,
}

/// One row of an edge file, before it is appended.
struct Row<'a> {
    kind: i8,
    time: i64,
    parent: Option<&'a str>,
    child: Option<&'a str>,
    bucket: i32,
    stats: CallStats,
    ids: Option<OpenIds>,
    leaf: bool,
    producer: bool,
    arrived: i64,
}

/// The rows of `partial`, sorted by time.
pub fn to_batch(partial: &Partial) -> Result<RecordBatch, ArrowError> {
    let mut rows: Vec<Row<'_>> =
        Vec::with_capacity(partial.calls.len() + partial.servers.len() + partial.clients.len());
    rows.extend(partial.calls.iter().map(|(key, stats)| Row {
        kind: e::ROW_CALLS,
        time: key.slot,
        parent: Some(&key.parent),
        child: Some(&key.child),
        bucket: key.bucket,
        stats: *stats,
        ids: None,
        leaf: false,
        producer: false,
        arrived: 0,
    }));
    let open = |error: bool, duration: i64| CallStats {
        calls: 1,
        errors: i64::from(error),
        min_ns: duration,
        max_ns: duration,
    };
    rows.extend(partial.servers.iter().map(|s| Row {
        kind: e::ROW_OPEN_SERVER,
        time: s.start_ns,
        parent: None,
        child: s.service.as_deref(),
        bucket: 0,
        stats: open(s.error, s.duration_ns),
        ids: Some(OpenIds { trace: s.trace_id, span: s.span_id, parent: s.parent_span_id }),
        leaf: false,
        producer: false,
        arrived: s.arrived_ns,
    }));
    rows.extend(partial.clients.iter().map(|c| Row {
        kind: e::ROW_OPEN_CLIENT,
        time: c.start_ns,
        parent: c.service.as_deref(),
        child: c.remote.as_deref(),
        bucket: 0,
        stats: open(c.error, c.duration_ns),
        ids: Some(OpenIds { trace: c.trace_id, span: c.span_id, parent: None }),
        leaf: c.leaf,
        producer: c.producer,
        arrived: c.arrived_ns,
    }));
    rows.sort_by_key(|r| (r.time, r.kind));

    let n = rows.len();
    let mut kind = Int8Builder::with_capacity(n);
    let mut time = TimestampColumn::default();
    let mut parent = StringDictionaryBuilder::<Int32Type>::new();
    let mut child = StringDictionaryBuilder::<Int32Type>::new();
    let mut bucket = Int32Builder::with_capacity(n);
    let (mut calls, mut errors) = (Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
    let (mut min_ns, mut max_ns) = (Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
    let mut trace_id = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let mut parent_span_id = FixedSizeBinaryBuilder::with_capacity(n, 8);
    let (mut leaf, mut producer) = (BooleanBuilder::with_capacity(n), BooleanBuilder::with_capacity(n));
    let mut arrived = TimestampColumn::default();
    for row in rows {
        kind.append_value(row.kind);
        time.push(row.time);
        parent.append_option(row.parent);
        child.append_option(row.child);
        bucket.append_value(row.bucket);
        calls.append_value(row.stats.calls);
        errors.append_value(row.stats.errors);
        min_ns.append_value(row.stats.min_ns);
        max_ns.append_value(row.stats.max_ns);
        match row.ids {
            Some(OpenIds { trace, span, parent }) => {
                trace_id.append_value(trace)?;
                span_id.append_value(span)?;
                match parent {
                    Some(parent) => parent_span_id.append_value(parent)?,
                    None => parent_span_id.append_null(),
                }
            }
            None => {
                trace_id.append_null();
                span_id.append_null();
                parent_span_id.append_null();
            }
        }
        leaf.append_value(row.leaf);
        producer.append_value(row.producer);
        arrived.push(row.arrived);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(kind.finish()),
        time.finish(),
        Arc::new(parent.finish()),
        Arc::new(child.finish()),
        Arc::new(bucket.finish()),
        Arc::new(calls.finish()),
        Arc::new(errors.finish()),
        Arc::new(min_ns.finish()),
        Arc::new(max_ns.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(parent_span_id.finish()),
        Arc::new(leaf.finish()),
        Arc::new(producer.finish()),
        arrived.finish(),
    ];
    RecordBatch::try_new(schema::edges_schema(), columns)
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    batch.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))
}

fn text(strings: &arrow::array::StringArray, row: usize) -> Option<String> {
    (!strings.is_null(row)).then(|| strings.value(row).to_owned())
}

/// Adds the rows of `batch` to `partial`.
fn read_batch(batch: &RecordBatch, partial: &mut Partial) -> Result<(), ArrowError> {
    let kind = column(batch, e::ROW)?.as_primitive::<Int8Type>();
    let time = column(batch, e::TIME)?.as_primitive::<TimestampNanosecondType>();
    let parent = cast(column(batch, e::PARENT)?, &DataType::Utf8)?;
    let child = cast(column(batch, e::CHILD)?, &DataType::Utf8)?;
    let (parent, child) = (parent.as_string::<i32>(), child.as_string::<i32>());
    let bucket = column(batch, e::BUCKET)?.as_primitive::<Int32Type>();
    let ints = |name| Ok::<_, ArrowError>(column(batch, name)?.as_primitive::<Int64Type>());
    let (calls, errors, min_ns, max_ns) = (ints(e::CALLS)?, ints(e::ERRORS)?, ints(e::MIN_NS)?, ints(e::MAX_NS)?);
    let trace_id = column(batch, e::TRACE_ID)?.as_fixed_size_binary();
    let span_id = column(batch, e::SPAN_ID)?.as_fixed_size_binary();
    let parent_span_id = column(batch, e::PARENT_SPAN_ID)?.as_fixed_size_binary();
    let leaf = column(batch, e::LEAF)?.as_boolean();
    let producer = column(batch, e::PRODUCER)?.as_boolean();
    let arrived = column(batch, e::ARRIVED)?.as_primitive::<TimestampNanosecondType>();
    for row in 0..batch.num_rows() {
        match kind.value(row) {
            e::ROW_CALLS => {
                let key = CallKey {
                    slot: time.value(row),
                    parent: text(parent, row).unwrap_or_default(),
                    child: text(child, row).unwrap_or_default(),
                    bucket: bucket.value(row),
                };
                let stats = CallStats {
                    calls: calls.value(row),
                    errors: errors.value(row),
                    min_ns: min_ns.value(row),
                    max_ns: max_ns.value(row),
                };
                partial.calls.entry(key).or_default().add(&stats);
            }
            e::ROW_OPEN_SERVER => partial.servers.push(OpenServer {
                trace_id: id(trace_id.value(row))?,
                span_id: id(span_id.value(row))?,
                parent_span_id: if parent_span_id.is_null(row) { None } else { Some(id(parent_span_id.value(row))?) },
                service: text(child, row),
                start_ns: time.value(row),
                duration_ns: min_ns.value(row),
                error: errors.value(row) > 0,
                arrived_ns: arrived.value(row),
            }),
            e::ROW_OPEN_CLIENT => partial.clients.push(OpenClient {
                trace_id: id(trace_id.value(row))?,
                span_id: id(span_id.value(row))?,
                service: text(parent, row),
                remote: text(child, row),
                start_ns: time.value(row),
                duration_ns: min_ns.value(row),
                error: errors.value(row) > 0,
                leaf: leaf.value(row),
                producer: producer.value(row),
                arrived_ns: arrived.value(row),
            }),
            other => return Err(ArrowError::InvalidArgumentError(format!("unknown edge row kind {other}"))),
        }
    }
    Ok(())
}

/// Reads rows back into a partial.
pub fn from_batches(batches: &[RecordBatch]) -> Result<Partial, ArrowError> {
    let mut partial = Partial::default();
    for batch in batches {
        read_batch(batch, &mut partial)?;
    }
    Ok(partial)
}

/// The partial an edge file holds.
pub async fn read(store: Arc<dyn ObjectStore>, file: &DataFile) -> Result<Partial, StorageError> {
    let builder = ParquetRecordBatchStreamBuilder::new(FileReader::new(store, file)).await?;
    let batches: Vec<RecordBatch> = builder.build()?.try_collect().await?;
    Ok(from_batches(&batches)?)
}

/// Writes `partial` as an edge file of `tenant` at `level`, in the hour of
/// its latest time (retention drops it with that hour); `None` when it is
/// empty.
pub async fn write(
    store: Arc<dyn ObjectStore>,
    tenant: &TenantId,
    partial: &Partial,
    level: u8,
) -> Result<Option<DataFile>, StorageError> {
    let Some((min_time, max_time)) = partial.time_range() else { return Ok(None) };
    let hour = DateTime::from_timestamp_nanos(max_time);
    let mut sink = FileSink::new(store, DataFilePath::new(tenant.clone(), FileKind::Edges, hour), level);
    sink.write(&to_batch(partial)?).await?;
    Ok(sink.finish().await?.map(|file| DataFile { min_time, max_time, ..file }))
}
