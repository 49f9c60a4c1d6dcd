use bytes::Bytes;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;
use crate::clock::ManualClock;
use crate::schema;

const HOUR_NS: u64 = 3_600_000_000_000;

/// An export of `n` spans of trace `trace`, starting `hours_ago` hours back.
fn export(trace: u8, n: u8, hours_ago: u64) -> Bytes {
    let now = SystemClock.now_ns() as u64;
    let start = now - hours_ago * HOUR_NS;
    let spans = (1..=n)
        .map(|i| Span {
            trace_id: vec![trace; 16],
            span_id: vec![trace, i, 1, 1, 1, 1, 1, 1],
            name: "op".into(),
            start_time_unix_nano: start,
            end_time_unix_nano: start + 1000,
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    Bytes::from(request.encode_to_vec())
}

fn config(dir: &std::path::Path) -> StorageConfig {
    let mut config = StorageConfig::new(dir.join("wal"));
    config.compaction = CompactionConfig { min_files: 2, tombstone_grace: Duration::ZERO, ..Default::default() };
    config
}

async fn open(store: &Arc<dyn ObjectStore>, config: &StorageConfig) -> Arc<Storage> {
    Storage::open(Arc::clone(store), config.clone(), Arc::default()).await.unwrap()
}

fn rows(snapshot: &Snapshot) -> (u64, usize) {
    let in_files = snapshot.files(FileKind::Spans).map(|f| f.rows).sum();
    (in_files, snapshot.batches.iter().map(RecordBatch::num_rows).sum())
}

/// Buffer room a write of `export` takes.
fn room(body: &Bytes) -> usize {
    export::decode(ExportBody::Protobuf(body.clone()), &IngestLimits::default()).unwrap().room()
}

/// Storage with a buffer budget of `max_buffer_bytes`, flushed only on demand.
async fn with_budget(max_buffer_bytes: usize) -> (tempfile::TempDir, Arc<Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut config = config(dir.path());
    config.max_buffer_bytes = max_buffer_bytes;
    config.flush.interval = Duration::from_secs(3600);
    let storage = open(&store, &config).await;
    (dir, storage)
}

async fn try_write(storage: &Storage, body: &Bytes) -> Result<(), StorageError> {
    storage.write(&TenantId::default(), storage.decode(ExportBody::Protobuf(body.clone()))?).await
}

async fn write(storage: &Storage, body: Bytes) {
    try_write(storage, &body).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_move_from_buffer_to_files_and_a_restart_replays_only_what_was_not_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = config(dir.path());
    let tenant = TenantId::default();

    let storage = open(&store, &config).await;
    write(&storage, export(1, 3, 0)).await;
    write(&storage, export(2, 2, 0)).await;
    assert_eq!(rows(&storage.snapshot(&tenant)), (0, 5));
    storage.flush().await.unwrap();
    assert_eq!(rows(&storage.snapshot(&tenant)), (5, 0));
    assert_eq!(storage.snapshot(&tenant).files(FileKind::TraceIndex).count(), 1);
    // Written after the flush, never flushed: only the WAL has it.
    write(&storage, export(3, 4, 0)).await;
    drop(storage);

    let storage = open(&store, &config).await;
    assert_eq!(storage.replay_report().records, 1, "the flushed segments were released");
    assert_eq!(rows(&storage.snapshot(&tenant)), (5, 4));
    storage.flush().await.unwrap();
    drop(storage);
    let storage = open(&store, &config).await;
    assert_eq!(rows(&storage.snapshot(&tenant)), (9, 0), "nothing is stored twice");

    // Every segment was flushed and released: sequence numbers must still
    // go on above the catalog's watermark, or new spans would count as
    // flushed already (invisible, never flushed, skipped by the next replay).
    assert_eq!(storage.replay_report().records, 0);
    write(&storage, export(4, 1, 0)).await;
    assert_eq!(rows(&storage.snapshot(&tenant)), (9, 1));
    drop(storage);
    let storage = open(&store, &config).await;
    assert_eq!(rows(&storage.snapshot(&tenant)), (9, 1), "replayed after the restart");
    storage.flush().await.unwrap();
    assert_eq!(rows(&storage.snapshot(&tenant)), (10, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_buffer_is_flushed_about_a_row_group_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut config = config(dir.path());
    config.flush.max_rows = 5;
    let tenant = TenantId::default();
    let storage = open(&store, &config).await;
    for trace in 1..=3 {
        write(&storage, export(trace, 3, 0)).await;
    }
    storage.flush().await.unwrap();
    let snapshot = storage.snapshot(&tenant);
    assert_eq!(rows(&snapshot), (9, 0));
    let files: Vec<_> = snapshot.files(FileKind::Spans).map(|f| f.rows).collect();
    assert_eq!(files, [3, 3, 3], "3 + 3 rows would pass 5");
    drop(storage);
    let storage = open(&store, &config).await;
    assert_eq!(rows(&storage.snapshot(&tenant)), (9, 0), "the watermark covers every chunk");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_refuses_writes_until_a_flush_frees_it() {
    let body = export(1, 50, 0);
    let (_dir, storage) = with_budget(room(&body) + 1).await;
    write(&storage, body.clone()).await;
    let refused = try_write(&storage, &body).await;
    assert!(matches!(refused, Err(StorageError::Overloaded)), "{refused:?}");
    storage.flush().await.unwrap();
    write(&storage, body).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_write_wakes_the_flusher_and_gets_in_on_retry() {
    let small = export(1, 10, 0);
    let big = export(2, 100, 0);
    // The small write stays below the half-budget flush trigger; the big one does not fit beside it.
    let budget = 2 * room(&small) + 1;
    assert!(room(&big) > budget / 2 + 1);
    let (_dir, storage) = with_budget(budget).await;
    let stop = CancellationToken::new();
    let flusher = tokio::spawn(Arc::clone(&storage).run_flusher(stop.clone()));

    write(&storage, small).await;
    let refused = try_write(&storage, &big).await;
    assert!(matches!(refused, Err(StorageError::Overloaded)), "{refused:?}");
    let retried = tokio::time::timeout(Duration::from_secs(30), async {
        while try_write(&storage, &big).await.is_err() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(retried.is_ok(), "the refusal never led to a flush");
    stop.cancel();
    flusher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_write_gives_its_room_back() {
    let body = export(1, 50, 0);
    let (_dir, storage) = with_budget(room(&body) + 1).await;
    let tenant = TenantId::default();
    let mut cancelled = 0;
    for _ in 0..20 {
        // Dropped while it waits for the WAL, with its room reserved.
        let mut write = Box::pin(storage.write(&tenant, storage.decode(ExportBody::Protobuf(body.clone())).unwrap()));
        if futures::poll!(&mut write).is_pending() && storage.in_flight.load(Ordering::Acquire) > 0 {
            cancelled += 1;
        }
    }
    assert!(cancelled > 0, "no write was caught waiting for the WAL");
    storage.flush().await.unwrap();
    assert!(storage.check_room().is_ok(), "cancelled writes still hold buffer room");
    write(&storage, body).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_larger_than_the_budget_gets_in_alone() {
    let (_dir, storage) = with_budget(1024).await;
    write(&storage, export(1, 50, 0)).await;
    let refused = try_write(&storage, &export(2, 1, 0)).await;
    assert!(matches!(refused, Err(StorageError::Overloaded)), "{refused:?}");
    storage.flush().await.unwrap();
    write(&storage, export(3, 50, 0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_that_is_not_otlp_is_the_clients_error() {
    let (_dir, storage) = with_budget(DEFAULT_MAX_BUFFER_BYTES).await;
    for body in [
        ExportBody::Protobuf(Bytes::from_static(b"\xff\xff not protobuf")),
        ExportBody::Json(Bytes::from_static(br#"{"resourceSpans": 7}"#)),
    ] {
        let refused = storage.decode(body);
        assert!(matches!(refused, Err(StorageError::Decode(_))), "{refused:?}");
        assert!(!refused.unwrap_err().is_retryable());
    }
}

/// OTLP/JSON goes into the WAL as received and replays into the batch it
/// was when it was acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_export_is_logged_as_received_and_replays_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = config(dir.path());
    let tenant = TenantId::default();
    let request = ExportTraceServiceRequest::decode(export(1, 3, 0)).unwrap();
    let json = Bytes::from(serde_json::to_vec(&request).unwrap());

    let storage = open(&store, &config).await;
    let decoded = storage.decode(ExportBody::Json(json.clone())).unwrap();
    let acknowledged = decoded.batch().clone();
    storage.write(&tenant, decoded).await.unwrap();
    drop(storage);

    let logged: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .flat_map(|path| crate::wal::read_segment(&std::fs::read(path).unwrap()).unwrap().records)
        .map(|record| record.body)
        .collect();
    assert_eq!(logged, [ExportBody::Json(json)]);
    let storage = open(&store, &config).await;
    assert_eq!(storage.replay_report().records, 1);
    assert_eq!(storage.snapshot(&tenant).batches, [acknowledged]);
}

#[tokio::test(flavor = "multi_thread")]
async fn upkeep_compacts_hours_expires_old_ones_and_deletes_replaced_files() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut config = config(dir.path());
    config.retention = Some(Duration::from_secs(48 * 3600));
    let grace = Duration::from_secs(600);
    config.compaction.tombstone_grace = grace;
    let clock = Arc::new(ManualClock::starting_now());
    config.clock = Arc::clone(&clock) as Arc<dyn Clock>;
    let tenant = TenantId::default();
    let storage = open(&store, &config).await;
    for trace in 1..=3 {
        write(&storage, export(trace, 2, 5)).await;
        storage.flush().await.unwrap();
    }
    write(&storage, export(9, 1, 24 * 5)).await;
    storage.flush().await.unwrap();
    assert_eq!(storage.snapshot(&tenant).files(FileKind::Spans).count(), 4);

    storage.maintain().await.unwrap();
    let snapshot = storage.snapshot(&tenant);
    let spans: Vec<_> = snapshot.files(FileKind::Spans).collect();
    assert_eq!(spans.len(), 1, "three flushes of one hour became one file; the 5-day-old hour expired");
    assert_eq!((spans[0].level, spans[0].rows), (1, 6));
    assert_eq!(snapshot.manifest.tombstones.len(), 8, "4 + 4 files replaced or expired");
    let ranked: Vec<_> = snapshot.files(FileKind::TraceDurations).collect();
    assert_eq!(ranked.len(), 1, "the finished hour, merged, is ranked by trace duration");
    assert_eq!((ranked[0].hour, ranked[0].rows), (spans[0].hour, 3));
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None)).await.unwrap();
    assert_eq!(
        objects.iter().filter(|o| o.location.as_ref().ends_with(".parquet")).count(),
        11,
        "kept for the grace period"
    );

    clock.advance(grace);
    storage.maintain().await.unwrap();
    assert!(storage.snapshot(&tenant).manifest.tombstones.is_empty());
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None)).await.unwrap();
    let parquet = objects.iter().filter(|o| o.location.as_ref().ends_with(".parquet")).count();
    assert_eq!(parquet, 3, "one span file, its trace-index file and the hour's ranking are left");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_storage_sees_the_files_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = config(dir.path());
    let storage = open(&store, &config).await;
    write(&storage, export(1, 3, 0)).await;
    storage.flush().await.unwrap();

    let reader = Storage::open_read_only(Arc::clone(&store), config, Arc::default()).await.unwrap();
    assert_eq!(rows(&reader.snapshot(&TenantId::default())), (3, 0));
    assert!(matches!(try_write(&reader, &export(2, 1, 0)).await, Err(StorageError::ReadOnly)));
}

/// A cluster's writers on one catalog: four collectors flushing after every
/// export while a compactor merges. Every commit lands once (the final
/// version is the sum of the commits each process made), every span is in
/// exactly one live file, and each collector's watermark covers its writes.
#[tokio::test(flavor = "multi_thread")]
async fn four_writers_and_a_compactor_share_a_catalog_without_losing_or_repeating_a_commit() {
    const WRITERS: u8 = 4;
    const EXPORTS: u8 = 12;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let dirs: Vec<tempfile::TempDir> = (0..=WRITERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let metrics: Vec<Arc<StorageMetrics>> = (0..=WRITERS).map(|_| Arc::default()).collect();
    let mut writers = Vec::new();
    for (dir, metrics) in dirs.iter().zip(&metrics).take(WRITERS as usize) {
        writers.push(Storage::open(Arc::clone(&store), config(dir.path()), Arc::clone(metrics)).await.unwrap());
    }
    let compactor = Storage::open_read_only(
        Arc::clone(&store),
        config(dirs[WRITERS as usize].path()),
        Arc::clone(&metrics[WRITERS as usize]),
    )
    .await
    .unwrap();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compacting = {
        let (compactor, done) = (Arc::clone(&compactor), Arc::clone(&done));
        tokio::spawn(async move {
            let mut rounds = 0;
            while !done.load(Ordering::Acquire) {
                compactor.maintain().await.unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    let writing = writers.iter().enumerate().map(|(w, storage)| async move {
        for e in 0..EXPORTS {
            write(storage, export(1 + w as u8 * EXPORTS + e, 3, 0)).await;
            storage.flush().await.unwrap();
        }
    });
    futures::future::join_all(writing).await;
    done.store(true, Ordering::Release);
    assert!(compacting.await.unwrap() > 0);
    compactor.maintain().await.unwrap();

    let tenant = TenantId::default();
    let reader = Storage::open_read_only(Arc::clone(&store), config(dirs[0].path()), Arc::default()).await.unwrap();
    let snapshot = reader.snapshot(&tenant);
    let commits: u64 = metrics.iter().map(|m| m.catalog_commits.get()).sum();
    assert_eq!(snapshot.manifest.version, commits, "every commit is one version, none lost or repeated");
    let conflicts: u64 = metrics.iter().map(|m| m.catalog_commit_conflicts.get()).sum();
    eprintln!("{commits} commits, {conflicts} conflicts");
    let seen = keys_seen(&store, &snapshot).await;
    assert_eq!(seen.len(), usize::from(WRITERS) * usize::from(EXPORTS) * 3, "every span is in a live file");
    assert!(seen.values().all(|n| *n == 1), "no span is in two live files");
    assert!(
        metrics[WRITERS as usize].compactions.get_or_create(&TenantLabel::new(&tenant)).get() > 0,
        "merged meanwhile"
    );
    for storage in &writers {
        let writer = storage.writer_id().unwrap();
        assert_eq!(snapshot.manifest.wal_through.get(writer), Some(&u64::from(EXPORTS)), "{writer}'s watermark");
    }
}

/// Every (trace, span) key in a snapshot's files and buffer, with its count.
async fn keys_seen(store: &Arc<dyn ObjectStore>, snapshot: &Snapshot) -> HashMap<Vec<u8>, usize> {
    use arrow::array::AsArray;
    use object_store::ObjectStoreExt;

    let mut batches = snapshot.batches.clone();
    for file in snapshot.files(FileKind::Spans) {
        let bytes =
            store.get(&object_store::path::Path::from(file.path.as_str())).await.unwrap().bytes().await.unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        batches.extend(reader.map(Result::unwrap));
    }
    let mut seen = HashMap::new();
    for batch in &batches {
        let trace = batch.column_by_name(schema::TRACE_ID).unwrap().as_fixed_size_binary();
        let span = batch.column_by_name(schema::SPAN_ID).unwrap().as_fixed_size_binary();
        for row in 0..batch.num_rows() {
            *seen.entry([trace.value(row), span.value(row)].concat()).or_insert(0) += 1;
        }
    }
    seen
}

/// A live hour through many flushes and upkeep rounds: files at the top
/// level stay as they are (that files at the target size do too is
/// `compaction::tests`' part: outputs are cut at row groups of 128Ki rows), the spans any snapshot sees
/// are exactly those written (repeats only until a merge meets them),
/// every span is accounted for as a row or a dropped repeat, and
/// compaction writes at most `MAX_LEVEL` times what flushes wrote.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_hour_compacts_level_by_level_without_rewriting_final_files() {
    use crate::compaction::MAX_LEVEL;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut config = config(dir.path());
    config.compaction.min_files = 3;
    let metrics = Arc::new(StorageMetrics::default());
    let storage = Storage::open(Arc::clone(&store), config.clone(), Arc::clone(&metrics)).await.unwrap();
    let tenant = TenantId::default();
    let label = TenantLabel::new(&tenant);
    let is_final = |f: &DataFile| f.level == MAX_LEVEL;

    let (mut written, mut repeated) = (0u64, std::collections::HashSet::new());
    let mut finals: Vec<DataFile> = Vec::new();
    let mut exports = Vec::new();
    for trace in 1..=40u8 {
        exports.push(export(trace, 200, 0));
        write(&storage, exports.last().unwrap().clone()).await;
        written += 200;
        if trace % 5 == 0 {
            // A client retried the export of an earlier trace.
            write(&storage, exports[usize::from(trace) - 3].clone()).await;
            written += 200;
            repeated.insert(trace - 2);
        }
        storage.flush().await.unwrap();
        for round in [false, true] {
            if round {
                storage.maintain().await.unwrap();
            }
            let snapshot = storage.snapshot(&tenant);
            let live: Vec<&DataFile> = snapshot.files(FileKind::Spans).collect();
            for file in &finals {
                assert!(live.contains(&file), "a final file was rewritten: {}", file.path);
            }
            assert!(live.iter().all(|f| f.level <= MAX_LEVEL));
            let new: Vec<DataFile> =
                live.iter().filter(|f| is_final(f) && !finals.contains(f)).map(|f| (*f).clone()).collect();
            finals.extend(new);
            let seen = keys_seen(&store, &snapshot).await;
            assert_eq!(seen.len(), usize::from(trace) * 200, "every span written is seen");
            for (key, count) in &seen {
                assert!(*count == 1 || repeated.contains(&key[0]), "trace {} seen {count} times", key[0]);
            }
            let rows: usize = seen.values().sum();
            let dropped = metrics.duplicate_spans_removed.get_or_create(&label).get();
            assert_eq!(rows as u64 + dropped, written, "rows and dropped repeats add up");
        }
    }
    assert!(finals.len() >= 3, "the hour reached the top level several times: {finals:?}");
    // A merge's output may complete a level: upkeep until nothing changes.
    loop {
        let version = storage.snapshot(&tenant).manifest.version;
        storage.maintain().await.unwrap();
        if storage.snapshot(&tenant).manifest.version == version {
            break;
        }
    }
    let spans: Vec<_> = storage.snapshot(&tenant).files(FileKind::Spans).cloned().collect();
    for level in 0..MAX_LEVEL {
        let open = spans.iter().filter(|f| f.level == level && !is_final(f)).count();
        assert!(open < config.compaction.min_files, "{open} files left at level {level}");
    }
    assert!(spans.iter().all(|f| f.trace_index.is_some()), "every span file has its own fragment file");
    let fragments = storage.snapshot(&tenant).files(FileKind::TraceIndex).count();
    assert_eq!(fragments, spans.len());
    let flushed = metrics.flush_bytes_written.get_or_create(&label).get();
    let compacted = metrics.compaction_bytes_written.get_or_create(&label).get();
    assert!(
        compacted > 0 && compacted <= u64::from(MAX_LEVEL) * flushed,
        "flush {flushed}, compaction {compacted} bytes"
    );
}
