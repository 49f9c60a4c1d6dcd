//! What a query's filters require of a span's start, service and trace,
//! for pruning before any row is read: files whose catalog entries cannot
//! match are not opened, and collectors leave out fresh spans that cannot
//! match before sending them (`fresh.rs`). Read from a query's expressions
//! by `query/src/pruning.rs`.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int32Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use crate::catalog::DataFile;
use crate::ids::TraceId;
use crate::schema;

/// The bounds; inexact: the query applies its own filters again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanFilter {
    /// Inclusive bounds on span start, ns since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_ids: Option<Vec<TraceId>>,
}

impl ScanFilter {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `file` may hold matching rows (trace ids aside: the query
    /// side's trace filters decide those).
    pub fn may_match(&self, file: &DataFile) -> bool {
        self.min_start.is_none_or(|t| file.max_time >= t)
            && self.max_start.is_none_or(|t| file.min_time <= t)
            && self.service.as_ref().is_none_or(|s| file.services.binary_search(s).is_ok())
    }

    /// Only the trace ids: what keeps whole traces, so that fragments
    /// computed from the rows left are the traces' own.
    pub fn traces_only(&self) -> Self {
        Self { trace_ids: self.trace_ids.clone(), ..Self::default() }
    }

    /// The rows of `batch` (a span batch) that pass.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        if self.is_empty() {
            return Ok(batch.clone());
        }
        let mut keep = vec![true; batch.num_rows()];
        if self.min_start.is_some() || self.max_start.is_some() {
            let (min, max) = (self.min_start.unwrap_or(i64::MIN), self.max_start.unwrap_or(i64::MAX));
            let starts = column(batch, schema::START_TIME)?.as_primitive::<TimestampNanosecondType>();
            for (row, start) in starts.values().iter().enumerate() {
                keep[row] &= (min..=max).contains(start);
            }
        }
        if let Some(service) = &self.service {
            let services = column(batch, schema::SERVICE_NAME)?.as_dictionary::<Int32Type>();
            let names = services.values().as_string::<i32>();
            let wanted: HashSet<i32> =
                (0..names.len()).filter(|&i| names.value(i) == service).map(|i| i as i32).collect();
            for (row, key) in services.keys().iter().enumerate() {
                keep[row] &= key.is_some_and(|k| wanted.contains(&k));
            }
        }
        if let Some(ids) = &self.trace_ids {
            let ids: HashSet<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
            let column = column(batch, schema::TRACE_ID)?.as_fixed_size_binary();
            for (row, id) in column.iter().enumerate() {
                keep[row] &= id.is_some_and(|id| ids.contains(id));
            }
        }
        filter_record_batch(batch, &BooleanArray::from(keep))
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, ArrowError> {
    batch.column_by_name(name).map(|c| c.as_ref()).ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))
}
