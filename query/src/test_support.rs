//! What the query crate's tests share: a storage engine over an in-memory
//! store that flushes only when told, and OTLP attributes.

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use spanlake_storage::{CompactionConfig, Storage, StorageConfig};

pub(crate) fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

/// Storage with its WAL in `dir`, flushed and compacted (two files make a
/// merge) only when a test says so.
pub(crate) async fn storage(dir: &std::path::Path) -> Arc<Storage> {
    let mut config = StorageConfig::new(dir.join("wal"));
    config.flush.interval = Duration::from_secs(3600);
    config.compaction = CompactionConfig { min_files: 2, ..Default::default() };
    Storage::open(Arc::new(InMemory::new()), config, Arc::default()).await.expect("storage")
}
