use std::collections::BTreeMap;

use object_store::memory::InMemory;

use super::*;
use crate::catalog::Manifest;
use crate::trace_index::{self, Fragment};

const H: i64 = 490_000 * 3600;
const SECOND: i64 = 1_000_000_000;

/// A small deterministic generator: the test needs spread-out ids, not
/// good randomness.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

fn fragment(trace: [u8; 16], start: i64, end: i64) -> Fragment {
    Fragment { trace_id: trace, service: Some("svc".into()), start, end, spans: 1, errors: 0, root_span_name: None }
}

async fn fragment_file(store: &Arc<dyn ObjectStore>, hour: i64, fragments: Vec<Fragment>) -> DataFile {
    let path = DataFilePath::new(TenantId::default(), FileKind::TraceIndex, DateTime::from_timestamp(hour, 0).unwrap());
    let mut sink = FileSink::new(Arc::clone(store), path, 0);
    sink.write(&trace_index::to_batch(fragments).unwrap()).await.unwrap();
    sink.finish().await.unwrap().unwrap()
}

/// Fragment files in three hours, some traces crossing from one hour into
/// the next; and every trace's (duration, id) over all of them, per hour
/// it has a fragment file in, and every trace's start.
async fn three_hours(
    store: &Arc<dyn ObjectStore>,
) -> (Vec<DataFile>, BTreeMap<i64, Vec<(i64, [u8; 16])>>, BTreeMap<[u8; 16], i64>) {
    let mut numbers = Numbers(16);
    let mut files = Vec::new();
    let mut extents: BTreeMap<[u8; 16], (i64, i64, Vec<i64>)> = BTreeMap::new();
    for (hour, traces) in [(H - 3600, 300), (H, 2500), (H + 3600, 400)] {
        // Three files per hour; a trace's fragments fall in any of them.
        let mut per_file: Vec<Vec<Fragment>> = vec![Vec::new(); 3];
        for _ in 0..traces {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&numbers.next().to_le_bytes());
            id[8..].copy_from_slice(&numbers.next().to_le_bytes());
            // Some traces of the hour before carry on into this one.
            if numbers.below(10) == 0
                && let Some((earlier, _)) = extents.iter().find(|(_, (_, _, hours))| hours == &[hour - 3600])
            {
                id = *earlier;
            }
            let start = hour * SECOND + numbers.below(3600) * SECOND;
            for _ in 0..=numbers.below(3) {
                let begin = start + numbers.below(1000) * 1_000_000;
                let end = begin + 1 + numbers.below(2000) * 1_000_000;
                per_file[numbers.below(3) as usize].push(fragment(id, begin, end));
                let extent = extents.entry(id).or_insert((begin, end, Vec::new()));
                *extent = (extent.0.min(begin), extent.1.max(end), std::mem::take(&mut extent.2));
                if !extent.2.contains(&hour) {
                    extent.2.push(hour);
                }
            }
        }
        for fragments in per_file {
            files.push(fragment_file(store, hour, fragments).await);
        }
    }
    let starts = extents.iter().map(|(id, (start, _, _))| (*id, *start)).collect();
    let mut expected: BTreeMap<i64, Vec<(i64, [u8; 16])>> = BTreeMap::new();
    for (id, (start, end, hours)) in extents {
        for hour in hours {
            expected.entry(hour).or_default().push((end - start, id));
        }
    }
    for ranked in expected.values_mut() {
        ranked.sort_unstable();
    }
    (files, expected, starts)
}

/// A manifest of `files`, newest first: manifests list files in no
/// particular order.
fn manifest(mut files: Vec<DataFile>) -> Manifest {
    files.reverse();
    Manifest { files, ..Manifest::default() }
}

async fn ranked(
    store: &Arc<dyn ObjectStore>,
    files: &[&DataFile],
    longest_first: bool,
    after: Option<(i64, [u8; 16])>,
) -> Vec<(i64, [u8; 16])> {
    let mut ranking = Ranking::open(Arc::clone(store), files, longest_first, after).await.unwrap();
    let mut out = Vec::new();
    while let Some(r) = ranking.next().await.unwrap() {
        out.push((r.duration_ns, r.trace_id));
    }
    out
}

#[tokio::test]
async fn an_hour_is_ranked_in_passes_by_its_traces_whole_durations() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (files, expected, starts) = three_hours(&store).await;
    let now = H + 3 * 3600 + 60;
    let due = due(&manifest(files.clone()), now, &CompactionConfig::default());
    let hours: Vec<i64> = due.iter().map(|d| d.hour).collect();
    // The newest hour has no finished hour after it yet.
    assert_eq!(hours, [H - 3600, H]);
    let due = due.into_iter().find(|d| d.hour == H).unwrap();
    assert_eq!(due.covers.len(), 9);
    let file = write(Arc::clone(&store), TenantId::default(), &due).await.unwrap().unwrap();
    assert_eq!(file.rows as usize, expected[&H].len());
    assert_eq!(file.covers.len(), 9);

    // More than one run, each of more than one row group.
    let mut reader = FileReader::new(Arc::clone(&store), &file);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await.unwrap();
    let runs = metadata.metadata().file_metadata().key_value_metadata().unwrap();
    let runs = runs.iter().find(|e| e.key == RUNS_KEY).unwrap().value.clone().unwrap();
    assert!(runs.split(',').count() > 1, "runs {runs}");
    assert!(metadata.metadata().num_row_groups() > 2 * runs.split(',').count());

    let mut ranking = Ranking::open(Arc::clone(&store), &[&file], false, None).await.unwrap();
    while let Some(r) = ranking.next().await.unwrap() {
        assert_eq!(r.start_ns, starts[&r.trace_id]);
    }
    let shortest = ranked(&store, &[&file], false, None).await;
    assert_eq!(shortest, expected[&H]);
    let longest = ranked(&store, &[&file], true, None).await;
    assert_eq!(longest, expected[&H].iter().rev().copied().collect::<Vec<_>>());

    // From a cursor, both ways: strictly after it.
    let middle = expected[&H][expected[&H].len() / 3];
    let after = ranked(&store, &[&file], false, Some(middle)).await;
    assert_eq!(after, expected[&H].iter().filter(|r| **r > middle).copied().collect::<Vec<_>>());
    let before = ranked(&store, &[&file], true, Some(middle)).await;
    assert_eq!(before, expected[&H].iter().rev().filter(|r| **r < middle).copied().collect::<Vec<_>>());
}

#[tokio::test]
async fn rankings_of_many_hours_merge_and_go_stale_with_their_hours() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (mut files, expected, _) = three_hours(&store).await;
    let now = H + 3 * 3600 + 60;
    let mut written = Vec::new();
    for due in due(&manifest(files.clone()), now, &CompactionConfig::default()) {
        written.push(write(Arc::clone(&store), TenantId::default(), &due).await.unwrap().unwrap());
    }
    let both: Vec<&DataFile> = written.iter().collect();
    let mut merged: Vec<(i64, [u8; 16])> = expected[&(H - 3600)].iter().chain(&expected[&H]).copied().collect();
    merged.sort_unstable();
    assert_eq!(ranked(&store, &both, false, None).await, merged);

    files.extend(written.iter().cloned());
    let snapshot = |files: &[DataFile], batches: Vec<RecordBatch>| Snapshot {
        manifest: Arc::new(manifest(files.to_vec())),
        batches,
    };
    let current_hours = |snapshot: &Snapshot| {
        let mut hours: Vec<i64> = current(snapshot).iter().map(|f| f.hour).collect();
        hours.sort_unstable();
        hours
    };
    assert_eq!(current_hours(&snapshot(&files, vec![])), [H - 3600, H]);
    assert!(due(&manifest(files.clone()), now, &CompactionConfig::default()).is_empty());

    // Late spans in the newest hour: its neighbour's ranking is stale, in
    // the buffer and once flushed, and due again.
    let late = vec![fragment([9; 16], (H + 3600) * SECOND, (H + 3600) * SECOND + 5)];
    let buffered = trace_index::to_batch(late.clone()).unwrap();
    assert_eq!(current_hours(&snapshot(&files, vec![buffered])), [H - 3600]);
    files.push(fragment_file(&store, H + 3600, late).await);
    assert_eq!(current_hours(&snapshot(&files, vec![])), [H - 3600]);
    let due_again = due(&manifest(files.clone()), now, &CompactionConfig::default());
    assert_eq!(due_again.iter().map(|d| (d.hour, d.stale.len())).collect::<Vec<_>>(), [(H, 1)]);
    // Not while the hours are not finished.
    assert!(due(&manifest(files.clone()), H + 2 * 3600, &CompactionConfig::default()).is_empty());
}
