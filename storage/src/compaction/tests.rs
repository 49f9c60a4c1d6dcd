use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::data_file;
use crate::{IngestLimits, SpanBatchBuilder};

const HOUR: i64 = 490_000 * 3600;

fn span(trace: u8, id: u8, error: bool) -> Span {
    let start = HOUR as u64 * 1_000_000_000 + u64::from(id) * 1000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if id == 1 { vec![] } else { vec![1; 8] },
        name: format!("op-{id}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500,
        status: Some(Status { code: if error { 2 } else { 0 }, message: String::new() }),
        ..Default::default()
    }
}

/// Flushes spans the way `flush.rs` does: a span file and a fragment file.
async fn flushed(store: &Arc<dyn ObjectStore>, spans: Vec<Span>) -> Vec<DataFile> {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    builder.append(&[ResourceSpans {
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }]);
    let rows = builder.finish().unwrap();
    let hour = DateTime::<Utc>::from_timestamp(HOUR, 0).unwrap();
    let mut files = Vec::new();
    for (kind, batch) in [
        (FileKind::Spans, data_file::sort(FileKind::Spans, &rows).unwrap()),
        (FileKind::TraceIndex, trace_index::fragments_of_spans(&rows).unwrap()),
    ] {
        let mut sink = FileSink::new(Arc::clone(store), TenantId::default(), kind, hour, 0, usize::MAX);
        sink.write(&batch).await.unwrap();
        files.extend(sink.finish().await.unwrap());
    }
    files
}

async fn read_all(store: &Arc<dyn ObjectStore>, files: &[DataFile], kind: FileKind) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for file in files.iter().filter(|f| f.kind == kind) {
        let mut stream = open_input(store, file).await.unwrap();
        while let Some(batch) = stream.try_next().await.unwrap() {
            out.push(batch);
        }
    }
    out
}

#[tokio::test]
async fn an_hour_compacts_into_sorted_files_without_repeats_and_with_right_trace_totals() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut files = flushed(&store, vec![span(1, 1, false), span(2, 1, false)]).await;
    // A retried export: span 2 of trace 1 twice, and trace 1 goes on.
    files.extend(flushed(&store, vec![span(1, 2, true), span(1, 3, false)]).await);
    files.extend(flushed(&store, vec![span(1, 2, true)]).await);

    let plans = plan(&files, HOUR + 7200, &CompactionConfig { min_files: 2, ..Default::default() });
    assert_eq!(plans.len(), 1);
    let output = compact_hour(Arc::clone(&store), TenantId::default(), plans[0].clone(), 1 << 30).await.unwrap();
    assert_eq!(output.duplicates, 1);
    assert!(output.files.iter().all(|f| f.level == 1));

    let spans = read_all(&store, &output.files, FileKind::Spans).await;
    let rows: usize = spans.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 4, "5 spans written, one of them twice");
    let fragments: Vec<_> = read_all(&store, &output.files, FileKind::TraceIndex)
        .await
        .iter()
        .flat_map(|b| trace_index::read_fragments(b).unwrap())
        .collect();
    let totals: Vec<_> =
        fragments.iter().map(|f| (f.trace_id[0], f.spans, f.errors, f.root_span_name.as_deref())).collect();
    assert_eq!(totals, [(1, 3, 1, Some("op-1")), (2, 1, 0, Some("op-1"))]);
    let counts = spans[0].column_by_name(schema::DURATION_NS).unwrap().as_primitive::<Int64Type>();
    assert!(counts.values().iter().all(|d| *d == 500));
}

#[test]
fn busy_hours_wait_for_enough_files_and_finished_ones_for_two() {
    let file = |hour: i64, level: u8| DataFile {
        path: format!("{hour}-{level}"),
        kind: FileKind::Spans,
        hour,
        size: 1,
        rows: 1,
        min_time: 0,
        max_time: 0,
        services: vec![],
        schema_version: 1,
        level,
    };
    let config = CompactionConfig { min_files: 3, ..Default::default() };
    let now = HOUR + 1800;
    let files =
        vec![file(HOUR, 0), file(HOUR, 0), file(HOUR - 7200, 1), file(HOUR - 7200, 0), file(HOUR - 3600 * 5, 1)];
    let hours: Vec<_> = plan(&files, now, &config).iter().map(|p| p.hour).collect();
    assert_eq!(hours, [HOUR - 7200], "the busy hour has 2 of 3 files; the lone compacted file is left alone");
}
