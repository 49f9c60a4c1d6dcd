//! The write buffer: per tenant, the batches made durable by the WAL and
//! not yet in a published file, each tagged with its WAL sequence.
//!
//! Batches arrive in sequence order (the WAL thread applies them so), and
//! leave once a manifest with a watermark at or above their sequence is
//! published. Readers filter by that watermark themselves (see
//! `Storage::snapshot`), so the order of "publish" and "remove" never shows
//! a span twice or not at all.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::RecordBatch;

use crate::metrics::StorageMetrics;
use crate::paths::TenantId;

#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub(crate) seq: u64,
    pub(crate) batch: RecordBatch,
}

#[derive(Debug, Default)]
struct TenantBuffer {
    batches: Vec<Buffered>,
    rows: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Buffer {
    tenants: Mutex<BTreeMap<TenantId, TenantBuffer>>,
    bytes: AtomicUsize,
}

fn size(batch: &RecordBatch) -> usize {
    batch.get_array_memory_size()
}

impl Buffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TenantId, TenantBuffer>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a durable batch; returns the tenant's buffered row count.
    pub(crate) fn insert(&self, tenant: TenantId, seq: u64, batch: RecordBatch, metrics: &StorageMetrics) -> usize {
        let bytes = size(&batch);
        let mut tenants = self.lock();
        let buffer = tenants.entry(tenant).or_default();
        buffer.rows += batch.num_rows();
        buffer.batches.push(Buffered { seq, batch });
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        metrics.buffer_bytes.set(total as i64);
        buffer.rows
    }

    /// Every buffered batch of `tenant`, in sequence order.
    pub(crate) fn batches(&self, tenant: &TenantId) -> Vec<Buffered> {
        self.lock().get(tenant).map(|b| b.batches.clone()).unwrap_or_default()
    }

    /// Drops the batches of `tenant` up to and including `seq`.
    pub(crate) fn remove_through(&self, tenant: &TenantId, seq: u64, metrics: &StorageMetrics) {
        let mut tenants = self.lock();
        let Some(buffer) = tenants.get_mut(tenant) else { return };
        let keep = buffer.batches.partition_point(|b| b.seq <= seq);
        let removed: Vec<Buffered> = buffer.batches.drain(..keep).collect();
        buffer.rows -= removed.iter().map(|b| b.batch.num_rows()).sum::<usize>();
        let bytes: usize = removed.iter().map(|b| size(&b.batch)).sum();
        let total = self.bytes.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        metrics.buffer_bytes.set(total as i64);
        if buffer.batches.is_empty() {
            tenants.remove(tenant);
        }
    }

    pub(crate) fn tenants(&self) -> Vec<TenantId> {
        self.lock().keys().cloned().collect()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}
