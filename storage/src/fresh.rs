//! Fresh spans: acknowledged by a collector, in its buffer, and not yet in
//! the files of the manifest a query node plans from. In a cluster, query
//! nodes ask every collector for them (over Arrow Flight,
//! `collector/src/flight.rs`), so a span is queryable everywhere once its
//! export is acknowledged.
//!
//! The request carries the asking node's WAL watermarks. A collector whose
//! own manifest has a higher watermark may have dropped batches the asker
//! has no files for yet; it answers [`Fresh::Stale`], and the asker
//! reloads its manifest and asks again. Otherwise it answers the batches
//! above the asker's watermark. It reads its buffer before its manifest,
//! as `Storage::snapshot` does, so every span is answered exactly once:
//! by a file the asker knows, or by the collector.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int32Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use crate::catalog::DataFile;
use crate::engine::Storage;
use crate::error::StorageError;
use crate::ids::TraceId;
use crate::paths::TenantId;
use crate::schema;

/// The collector's WAL writer id, a header on its answers: a process that
/// is both collector and query node skips its own.
pub const WRITER_HEADER: &str = "spanlake-writer";

/// What a query's filters require of a span's start, service and trace:
/// files that cannot match are not opened (`DataFile`'s bounds), and
/// collectors leave out fresh spans that cannot match before sending. The
/// filters are inexact; the query applies its own again.
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

/// A query node's request for a tenant's fresh spans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshRequest {
    pub tenant: String,
    /// The asker's manifest: per WAL writer, the sequence its files hold everything up to.
    pub wal_through: BTreeMap<String, u64>,
    #[serde(default)]
    pub filter: ScanFilter,
}

/// A collector's answer.
#[derive(Debug)]
pub enum Fresh {
    /// The buffered spans above the asker's watermark, filtered.
    Spans(Vec<RecordBatch>),
    /// The asker's manifest is older than this collector's last flush.
    Stale { flushed_through: u64 },
}

impl Storage {
    /// This collector's fresh spans for `request` (see the module docs).
    pub fn fresh_spans(&self, request: &FreshRequest) -> Result<Fresh, StorageError> {
        let wal = self.wal()?;
        let tenant = TenantId::new(&request.tenant)?;
        // The buffer first, then the manifest: see `Storage::snapshot`.
        let buffered = self.buffer.batches(&tenant);
        let flushed_through = self.flushed_through(&self.catalog.manifest(&tenant));
        let known = request.wal_through.get(wal.writer_id()).copied().unwrap_or(0);
        if flushed_through > known {
            return Ok(Fresh::Stale { flushed_through });
        }
        let batches = buffered
            .into_iter()
            .filter(|b| b.seq > known)
            .map(|b| request.filter.apply(&b.batch))
            .filter(|b| b.as_ref().map_or(true, |b| b.num_rows() > 0))
            .collect::<Result<_, _>>()
            .map_err(|e| StorageError::Internal(e.to_string()))?;
        Ok(Fresh::Spans(batches))
    }

    /// Loads manifest versions other processes published since this one
    /// last looked; for a query node whose collectors flushed meanwhile.
    pub async fn refresh_manifest(&self, tenant: &TenantId) -> Result<(), StorageError> {
        self.catalog.refresh(tenant).await?;
        Ok(())
    }

    /// Picks up new tenants and manifest versions of every tenant.
    pub async fn refresh_catalog(&self) -> Result<(), StorageError> {
        self.catalog.refresh_all().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
