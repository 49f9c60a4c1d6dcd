use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;
use crate::StorageConfig;
use crate::export::ExportBody;
use crate::ids::TraceId;

/// An export of one span of trace `trace` by `service`, starting at `start` ns.
fn export(service: &str, trace: u8, start: u64) -> Bytes {
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(service.into())) }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let span = Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace, 1, 1, 1, 1, 1, 1, 1],
        name: "op".into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1000,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

fn rows(fresh: &Fresh) -> usize {
    match fresh {
        Fresh::Spans(batches) => batches.iter().map(RecordBatch::num_rows).sum(),
        Fresh::Stale { .. } => panic!("stale: {fresh:?}"),
    }
}

const T0: u64 = 1_700_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn fresh_spans_are_those_above_the_askers_watermark_and_a_stale_asker_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let storage = Storage::open(store, StorageConfig::new(dir.path().join("wal")), Arc::default()).await.unwrap();
    let tenant = TenantId::default();
    let write = async |body| storage.write(&tenant, storage.decode(ExportBody::Protobuf(body)).unwrap()).await.unwrap();
    write(export("cart", 1, T0)).await;
    write(export("shop", 2, T0 + 10)).await;
    write(export("cart", 3, T0 + 20)).await;

    let mut request =
        FreshRequest { tenant: tenant.as_str().into(), wal_through: BTreeMap::new(), filter: ScanFilter::default() };
    assert_eq!(rows(&storage.fresh_spans(&request).unwrap()), 3);

    let filtered = |filter| FreshRequest { filter, ..request.clone() };
    let by_service = ScanFilter { service: Some("cart".into()), ..Default::default() };
    assert_eq!(rows(&storage.fresh_spans(&filtered(by_service)).unwrap()), 2);
    let by_time =
        ScanFilter { min_start: Some((T0 + 5) as i64), max_start: Some((T0 + 10) as i64), ..Default::default() };
    assert_eq!(rows(&storage.fresh_spans(&filtered(by_time)).unwrap()), 1);
    let by_trace = ScanFilter { trace_ids: Some(vec![TraceId([3; 16]), TraceId([9; 16])]), ..Default::default() };
    assert_eq!(rows(&storage.fresh_spans(&filtered(by_trace)).unwrap()), 1);
    let none = ScanFilter { service: Some("nobody".into()), ..Default::default() };
    assert_eq!(rows(&storage.fresh_spans(&filtered(none)).unwrap()), 0);

    // A flush publishes the three spans: an asker with the old manifest is
    // stale, one with the new manifest gets only what came after.
    storage.flush().await.unwrap();
    let Fresh::Stale { flushed_through } = storage.fresh_spans(&request).unwrap() else { panic!("not stale") };
    write(export("cart", 4, T0 + 30)).await;
    request.wal_through = storage.snapshot(&tenant).manifest.wal_through.clone();
    assert_eq!(request.wal_through.values().copied().max(), Some(flushed_through));
    assert_eq!(rows(&storage.fresh_spans(&request).unwrap()), 1);

    let unknown = FreshRequest { tenant: "../etc".into(), ..request };
    assert!(matches!(storage.fresh_spans(&unknown), Err(StorageError::Tenant(_))));
}
