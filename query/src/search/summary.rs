//! Trace summaries of chosen traces, summed from their fragments in the
//! trace index, and the columns of query answers they are read from.

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryArray, Float64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use spanlake_storage::TenantId;
use spanlake_storage::ids::TraceId;

use super::ServiceSpans;
use crate::engine::{QueryEngine, TRACE_FRAGMENTS_TABLE, trace_summary_sql};
use crate::error::QueryError;
use crate::params::Params;

/// One trace's summary, with its id as bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) trace_id: TraceId,
    pub(crate) start_ns: i64,
    pub(crate) duration_ns: i64,
    pub(crate) root_service_name: Option<String>,
    pub(crate) root_span_name: Option<String>,
    pub(crate) span_count: i64,
    pub(crate) error_count: i64,
    pub(crate) services: Vec<ServiceSpans>,
}

fn arrow_error(e: arrow::error::ArrowError) -> QueryError {
    QueryError::DataFusion(e.into())
}

fn utf8(column: &ArrayRef) -> Result<ArrayRef, QueryError> {
    cast(column, &DataType::Utf8).map_err(arrow_error)
}

fn missing(name: &str) -> QueryError {
    QueryError::Render(format!("the answer has no column {name}"))
}

/// Typed access to a batch's columns by name.
pub(crate) struct Columns<'a>(pub(crate) &'a RecordBatch);

impl Columns<'_> {
    pub(crate) fn ids(&self, name: &str) -> Result<&FixedSizeBinaryArray, QueryError> {
        let column = self.0.column_by_name(name).ok_or_else(|| missing(name))?;
        column.as_fixed_size_binary_opt().ok_or_else(|| missing(name))
    }

    pub(crate) fn trace_id(&self, name: &str, row: usize) -> Result<TraceId, QueryError> {
        TraceId::from_slice(self.ids(name)?.value(row))
            .ok_or_else(|| QueryError::Render(format!("{name} is not a trace id")))
    }

    pub(crate) fn ints(&self, name: &str) -> Result<&[i64], QueryError> {
        let column = self.0.column_by_name(name).ok_or_else(|| missing(name))?;
        Ok(column.as_primitive_opt::<Int64Type>().ok_or_else(|| missing(name))?.values())
    }

    /// A numeric column as nullable doubles.
    pub(crate) fn floats(&self, name: &str) -> Result<Float64Array, QueryError> {
        let column = self.0.column_by_name(name).ok_or_else(|| missing(name))?;
        let column = cast(column, &DataType::Float64).map_err(arrow_error)?;
        Ok(column.as_primitive::<Float64Type>().clone())
    }

    pub(crate) fn texts(&self, name: &str) -> Result<StringArray, QueryError> {
        let column = self.0.column_by_name(name).ok_or_else(|| missing(name))?;
        Ok(utf8(column)?.as_string::<i32>().clone())
    }
}

fn text(strings: &StringArray, row: usize) -> Option<String> {
    (!strings.is_null(row)).then(|| strings.value(row).to_owned())
}

/// Reads the rows of [`QueryEngine::summaries`]' query.
pub(super) fn read(batch: &RecordBatch) -> Result<Vec<Summary>, QueryError> {
    let c = Columns(batch);
    let (start, duration) = (c.ints("start_ns")?, c.ints("duration_ns")?);
    let (spans, errors) = (c.ints("span_count")?, c.ints("error_count")?);
    let (root_service, root_span) = (c.texts("root_service_name")?, c.texts("root_span_name")?);
    let map = |name: &str| Ok::<_, QueryError>(batch.column_by_name(name).ok_or_else(|| missing(name))?.as_map());
    let (services, errors_of) = (map("services")?, map("service_errors")?);
    (0..batch.num_rows())
        .map(|row| {
            // Both maps list the trace's services in the same order.
            let (entries, error_entries) = (services.value(row), errors_of.value(row));
            let names = utf8(entries.column(0))?;
            let counts = cast(entries.column(1), &DataType::Int64).map_err(arrow_error)?;
            let error_counts = cast(error_entries.column(1), &DataType::Int64).map_err(arrow_error)?;
            let services = names
                .as_string::<i32>()
                .iter()
                .zip(counts.as_primitive::<Int64Type>().iter())
                .zip(error_counts.as_primitive::<Int64Type>().iter())
                .map(|((name, count), errors)| ServiceSpans {
                    name: name.unwrap_or_default().to_owned(),
                    span_count: count.unwrap_or(0),
                    error_count: errors.unwrap_or(0),
                })
                .collect();
            Ok(Summary {
                trace_id: c.trace_id("trace_id", row)?,
                start_ns: start[row],
                duration_ns: duration[row],
                root_service_name: text(&root_service, row),
                root_span_name: text(&root_span, row),
                span_count: spans[row],
                error_count: errors[row],
                services,
            })
        })
        .collect()
}

/// The `trace_id` of every row of `batches`.
pub(crate) fn trace_ids(batches: &[RecordBatch]) -> Result<Vec<TraceId>, QueryError> {
    let mut ids = Vec::new();
    for batch in batches {
        let c = Columns(batch);
        for row in 0..batch.num_rows() {
            ids.push(c.trace_id("trace_id", row)?);
        }
    }
    Ok(ids)
}

impl QueryEngine {
    /// The summaries of `ids` from their fragments that start in `[lo, hi)`;
    /// a trace with no fragment there has none.
    pub(crate) async fn summaries(
        &self,
        tenant: &TenantId,
        ids: &[TraceId],
        (lo, hi): (i64, i64),
    ) -> Result<Vec<Summary>, QueryError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = Params::default();
        let ids: Vec<String> = ids.iter().map(|id| params.trace_id(id)).collect();
        let (lo, hi) = (params.time(lo), params.time(hi));
        let summaries = trace_summary_sql("fragments");
        // An explicit list of ids, not a join: the Parquet reader prunes
        // row groups with the trace_id bloom filters only for literals.
        let sql = format!(
            "WITH fragments AS (SELECT * FROM {TRACE_FRAGMENTS_TABLE}
                                WHERE start_time >= {lo} AND start_time < {hi} AND trace_id IN ({})),
                  summaries AS ({summaries})
             SELECT trace_id, CAST(start_time AS BIGINT) AS start_ns, CAST(duration_ns AS BIGINT) AS duration_ns,
                    root_service_name, root_span_name, CAST(span_count AS BIGINT) AS span_count,
                    CAST(error_count AS BIGINT) AS error_count, services, service_errors
             FROM summaries",
            ids.join(", ")
        );
        let mut out = Vec::new();
        for batch in self.batches(tenant, &sql, params).await? {
            out.extend(read(&batch)?);
        }
        Ok(out)
    }
}
