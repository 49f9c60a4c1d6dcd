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

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};

use crate::engine::Storage;
use crate::error::StorageError;
use crate::paths::TenantId;
use crate::scan_filter::ScanFilter;

/// The collector's WAL writer id, a header on its answers: a process that
/// is both collector and query node skips its own.
pub const WRITER_HEADER: &str = "spanlake-writer";

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
            .collect::<Result<_, ArrowError>>()?;
        Ok(Fresh::Spans(batches))
    }
}

#[cfg(test)]
mod tests;
