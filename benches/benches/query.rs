//! The read path on compacted files: trace by id (no time range) and the
//! analytic SQL users run most, over 524k spans of `spanlake load`'s shape.
//!
//! cargo bench --workspace --bench query

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use object_store::local::LocalFileSystem;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use spanlake_benches::{FOUR_ROW_GROUPS, load_requests};
use spanlake_query::{QueryEngine, QueryLimits};
use spanlake_storage::ids::TraceId;
use spanlake_storage::{ExportBody, Storage, StorageConfig, TenantId, WalSync};

const QUERIES: [(&str, &str); 4] = [
    ("spans_per_service", "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY n DESC"),
    (
        "error_rate_per_operation",
        "SELECT service_name, span_name, avg(CASE WHEN status_code = 'ERROR' THEN 1.0 ELSE 0.0 END) AS r \
         FROM spans GROUP BY service_name, span_name ORDER BY r DESC",
    ),
    (
        "p99_per_operation",
        "SELECT service_name, span_name, approx_percentile_cont(duration_ns, 0.99) AS p99 \
         FROM spans GROUP BY service_name, span_name ORDER BY p99 DESC",
    ),
    (
        "top10_slowest_traces",
        "SELECT trace_id, service_name, span_name, duration_ns FROM spans \
         WHERE parent_span_id IS NULL ORDER BY duration_ns DESC LIMIT 10",
    ),
];

/// Load requests written, flushed and compacted; returns the engine and a trace id of every 50th request.
async fn stored(dir: &std::path::Path) -> (QueryEngine, Vec<TraceId>) {
    let mut config = StorageConfig::new(dir.join("wal"));
    config.wal.sync = WalSync::None;
    config.max_buffer_bytes = usize::MAX;
    config.flush.max_rows = usize::MAX;
    config.compaction.min_files = 1;
    config.local_root = Some(dir.join("data"));
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.join("data")).expect("store"));
    let storage = Storage::open(store, config, Arc::default()).await.expect("storage");
    let tenant = TenantId::default();
    let mut ids = Vec::new();
    for (send, body) in load_requests(FOUR_ROW_GROUPS).into_iter().enumerate() {
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
        if send % 50 == 0 {
            ids.push(
                TraceId::from_slice(&request.resource_spans[0].scope_spans[0].spans[0].trace_id).expect("16 bytes"),
            );
        }
        storage
            .write(&tenant, storage.decode(ExportBody::Protobuf(body.into())).expect("decodes"))
            .await
            .expect("written");
    }
    storage.flush().await.expect("flushed");
    storage.maintain().await.expect("compacted");
    (QueryEngine::new(storage, QueryLimits::default()).expect("engine"), ids)
}

fn query(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (engine, ids) = rt.block_on(stored(dir.path()));
    let tenant = TenantId::default();
    let mut group = c.benchmark_group("query");
    group.sample_size(20);
    let mut next = ids.iter().cycle();
    group.bench_function("trace_by_id", |b| {
        b.iter(|| {
            let id = next.next().expect("ids");
            rt.block_on(engine.trace(&tenant, id)).expect("queried").expect("found")
        })
    });
    for (name, sql) in QUERIES {
        group.bench_function(name, |b| b.iter(|| rt.block_on(engine.sql(&tenant, sql)).expect("queried")));
    }
    group.finish();
}

criterion_group!(benches, query);
criterion_main!(benches);
