use std::sync::Mutex as StdMutex;

use bytes::Bytes;

use super::*;
use crate::schema;

fn empty_batch() -> RecordBatch {
    RecordBatch::new_empty(schema::span_schema())
}

/// Opens a WAL in `dir`; returns it, the replayed records and a log of the
/// sequences applied after fsync.
fn open(dir: &Path) -> (Wal, Vec<Record>, ReplayReport, Arc<StdMutex<Vec<u64>>>) {
    let applied = Arc::new(StdMutex::new(Vec::new()));
    let log = Arc::clone(&applied);
    let mut replayed = Vec::new();
    let (wal, report) = Wal::open(
        WalConfig::new(dir),
        Arc::new(StorageMetrics::default()),
        0,
        |r| replayed.push(r),
        Box::new(move |group| log.lock().unwrap().extend(group.iter().map(|d| d.seq))),
    )
    .unwrap();
    (wal, replayed, report, applied)
}

fn tenant() -> TenantId {
    TenantId::default()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_are_applied_in_order_and_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, replayed, _, applied) = open(dir.path());
    assert!(replayed.is_empty());
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let wal = Arc::clone(&wal);
            tokio::spawn(async move {
                wal.append(tenant(), ExportBody::Protobuf(Bytes::from(i.to_le_bytes().to_vec())), empty_batch()).await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=64).collect::<Vec<u64>>());
    assert_eq!(*applied.lock().unwrap(), (1..=64).collect::<Vec<u64>>(), "applied in sequence order");
    let writer = wal.writer_id().to_owned();
    wal.close().await;

    let (wal, replayed, report, _) = open(dir.path());
    assert_eq!(wal.writer_id(), writer, "the writer id survives a restart");
    assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=64).collect::<Vec<u64>>());
    assert_eq!((report.records, report.damaged_segments), (64, 0));
    // New appends continue after the replayed sequences.
    assert_eq!(wal.append(tenant(), ExportBody::Protobuf(Bytes::new()), empty_batch()).await.unwrap(), 65);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_tail_is_reported_and_the_intact_records_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, ..) = open(dir.path());
    for i in 0..3u8 {
        wal.append(tenant(), ExportBody::Protobuf(Bytes::from(vec![i; 100])), empty_batch()).await.unwrap();
    }
    wal.close().await;
    let segment = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 30).unwrap();

    let (_, replayed, report, _) = open(dir.path());
    assert_eq!(replayed.len(), 2);
    assert_eq!(report.damaged_segments, 1);
    // Record header, sequence, tenant length, tenant, body format, body.
    assert_eq!(report.damaged_bytes, 8 + 8 + 1 + 7 + 1 + 100 - 30);
    // Reopening again does not fail either: no crash loop.
    let (_, replayed, _, _) = open(dir.path());
    assert_eq!(replayed.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_segments_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(format!("{:020}.wal", 7)), b"this is not a WAL segment").unwrap();
    let (_, replayed, report, _) = open(dir.path());
    assert!(replayed.is_empty());
    assert_eq!(report.damaged_segments, 1);
    assert!(dir.path().join(format!("{:020}.corrupt", 7)).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_segments_are_released_only_once_every_tenant_flushed_them() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, ..) = open(dir.path());
    let other = TenantId::new("other").unwrap();
    wal.append(tenant(), ExportBody::Protobuf(Bytes::new()), empty_batch()).await.unwrap();
    wal.append(other.clone(), ExportBody::Protobuf(Bytes::new()), empty_batch()).await.unwrap();
    wal.seal().await;
    wal.append(tenant(), ExportBody::Protobuf(Bytes::new()), empty_batch()).await.unwrap();
    assert_eq!(segments(dir.path()).len(), 2);

    let only_default = HashMap::from([(tenant(), 10)]);
    assert_eq!(wal.release(&only_default).unwrap(), 0, "tenant other has not flushed");
    let both = HashMap::from([(tenant(), 1), (other, 2)]);
    assert_eq!(wal.release(&both).unwrap(), 1);
    assert_eq!(segments(dir.path()).len(), 1, "the open segment stays");
}
