//! The write path after decoding: WAL appends with group commit (fsync),
//! and a flush of buffered spans into Parquet files.
//!
//! cargo bench --workspace --bench storage

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use object_store::local::LocalFileSystem;
use prost::Message;
use spanlake_benches::{demo_request, span_count};
use spanlake_storage::{ExportBody, Storage, StorageConfig, TenantId, WalSync};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime")
}

/// One export as the receivers hand it to storage: its protobuf and span count.
fn export(traces: usize) -> (Bytes, usize) {
    let request = demo_request(traces);
    (Bytes::from(request.encode_to_vec()), span_count(&request))
}

async fn open(dir: &std::path::Path, sync: WalSync) -> Arc<Storage> {
    let mut config = StorageConfig::new(dir.join("wal"));
    config.wal.sync = sync;
    config.max_buffer_bytes = usize::MAX;
    config.flush.max_rows = usize::MAX;
    config.local_root = Some(dir.join("data"));
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.join("data")).expect("store"));
    Storage::open(store, config, Arc::default()).await.expect("storage")
}

/// `writers` concurrent exports of ~100 spans each, durable before each returns.
fn wal_append(c: &mut Criterion) {
    let rt = runtime();
    let (body, spans) = export(20);
    let mut group = c.benchmark_group("wal_append");
    group.sample_size(10);
    for writers in [1usize, 8, 64] {
        group.throughput(Throughput::Elements((spans * writers) as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("fsync_{spans}_spans_{}_bytes", body.len()), writers),
            &writers,
            |b, &writers| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let dir = tempfile::tempdir().expect("temp dir");
                        let storage = open(dir.path(), WalSync::Fsync).await;
                        let decoded = storage.decode(ExportBody::Protobuf(body.clone())).expect("decodes");
                        let tenant = TenantId::default();
                        let started = Instant::now();
                        for _ in 0..iters {
                            let appends = (0..writers).map(|_| storage.write(&tenant, decoded.clone()));
                            for result in futures::future::join_all(appends).await {
                                result.expect("appended");
                            }
                        }
                        started.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
}

/// A flush of ~128Ki buffered spans: sort, encode, write, fsync, publish.
fn flush(c: &mut Criterion) {
    let rt = runtime();
    let exports: Vec<_> = (0..50).map(|_| export(500)).collect();
    let spans: usize = exports.iter().map(|e| e.1).sum();
    let mut group = c.benchmark_group("flush");
    group.sample_size(10);
    group.throughput(Throughput::Elements(spans as u64));
    group.bench_function(format!("{spans}_spans"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let storage = open(dir.path(), WalSync::None).await;
                    for (body, _) in &exports {
                        let decoded = storage.decode(ExportBody::Protobuf(body.clone())).expect("decodes");
                        storage.write(&TenantId::default(), decoded).await.expect("written");
                    }
                    let started = Instant::now();
                    storage.flush().await.expect("flushed");
                    total += started.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, wal_append, flush);
criterion_main!(benches);
