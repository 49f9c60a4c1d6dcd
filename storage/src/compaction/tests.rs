use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::trace_index;
use crate::{IngestLimits, SpanBatchBuilder};

const HOUR: i64 = 490_000 * 3600;

fn span(trace: u8, id: u8, error: bool) -> Span {
    let start = HOUR as u64 * 1_000_000_000 + u64::from(id) * 1000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if id == 1 { vec![] } else { vec![1; 8] },
        // Names sort against ids, so the old order (by name first) differs.
        name: format!("op-{}", 999 - u32::from(id)),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500,
        status: Some(Status { code: if error { 2 } else { 0 }, message: String::new() }),
        ..Default::default()
    }
}

fn rows_of(spans: Vec<Span>) -> RecordBatch {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    builder.append(&[ResourceSpans {
        scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
        ..Default::default()
    }]);
    builder.finish().unwrap()
}

fn hour() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(HOUR, 0).unwrap()
}

/// Flushes spans the way `flush.rs` does: a span file and its fragment file.
async fn flushed(store: &Arc<dyn ObjectStore>, spans: Vec<Span>) -> Vec<DataFile> {
    let rows = data_file::sort(FileKind::Spans, &rows_of(spans)).unwrap();
    let mut sink = PairedSink::new(Arc::clone(store), TenantId::default(), hour(), 0, usize::MAX);
    sink.write(&rows).await.unwrap();
    sink.finish().await.unwrap()
}

/// A file as flushes wrote them before span files had their own fragment
/// files; `old_order` sorts and declares it as before the layout study.
async fn legacy(store: &Arc<dyn ObjectStore>, spans: Vec<Span>, old_order: bool) -> Vec<DataFile> {
    let files = flushed(store, spans).await;
    let mut out = Vec::new();
    for mut file in files {
        if file.kind == FileKind::Spans {
            file.trace_index = None;
            if old_order {
                let path = Path::from(file.path.as_str());
                let batch = read(store, std::slice::from_ref(&file)).await;
                let columns = [schema::SERVICE_NAME, schema::SPAN_NAME, schema::START_TIME, schema::TRACE_ID];
                let sorted = data_file::sort_by(&batch, &columns).unwrap();
                let span_schema = FileKind::Spans.schema();
                let sorting = columns
                    .iter()
                    .map(|c| SortingColumn {
                        column_idx: span_schema.index_of(c).unwrap() as i32,
                        descending: false,
                        nulls_first: true,
                    })
                    .collect();
                let props = WriterProperties::builder().set_sorting_columns(Some(sorting)).build();
                let mut bytes = Vec::new();
                let mut writer = ArrowWriter::try_new(&mut bytes, span_schema, Some(props)).unwrap();
                writer.write(&sorted).unwrap();
                writer.close().unwrap();
                file.size = bytes.len() as u64;
                store.put(&path, bytes.into()).await.unwrap();
            }
        }
        out.push(file);
    }
    out
}

async fn read(store: &Arc<dyn ObjectStore>, files: &[DataFile]) -> RecordBatch {
    let mut out = Vec::new();
    for file in files {
        let mut stream = open_input(store, file).await.unwrap();
        while let Some(batch) = stream.try_next().await.unwrap() {
            out.push(batch);
        }
    }
    let kind = files.first().map_or(FileKind::Spans, |f| f.kind);
    arrow::compute::concat_batches(&kind.schema(), &out).unwrap()
}

fn of_kind(files: &[DataFile], kind: FileKind) -> Vec<DataFile> {
    files.iter().filter(|f| f.kind == kind).cloned().collect()
}

/// A merge of all of `files` into level 1.
fn level_one_job(files: &[DataFile]) -> Job {
    Job {
        hour: HOUR,
        level: 1,
        spans: of_kind(files, FileKind::Spans),
        fragments: of_kind(files, FileKind::TraceIndex),
    }
}

/// (trace, span) of each row, in file order.
fn keys(spans: &RecordBatch) -> Vec<(u8, u8)> {
    let trace = spans.column_by_name(schema::TRACE_ID).unwrap().as_fixed_size_binary();
    let span = spans.column_by_name(schema::SPAN_ID).unwrap().as_fixed_size_binary();
    (0..spans.num_rows()).map(|i| (trace.value(i)[0], span.value(i)[0])).collect()
}

/// Each output span file's fragments are exactly those of its own rows.
async fn assert_paired(store: &Arc<dyn ObjectStore>, files: &[DataFile]) {
    for spans in of_kind(files, FileKind::Spans) {
        let fragments = files.iter().find(|f| Some(&f.path) == spans.trace_index.as_ref()).expect("paired");
        let expected = trace_index::fragments(&read(store, std::slice::from_ref(&spans)).await).unwrap();
        let actual = trace_index::read_fragments(&read(store, std::slice::from_ref(fragments)).await).unwrap();
        assert_eq!(actual, expected);
    }
}

#[tokio::test]
async fn a_merge_drops_repeats_and_gives_each_output_the_fragments_of_its_rows() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut files = flushed(&store, vec![span(1, 1, false), span(2, 1, false)]).await;
    // A retried export: span 2 of trace 1 twice, and trace 1 goes on.
    files.extend(flushed(&store, vec![span(1, 2, true), span(1, 3, false)]).await);
    files.extend(flushed(&store, vec![span(1, 2, true)]).await);
    assert_paired(&store, &files).await;

    let jobs = plan(&files, HOUR + 7200, &CompactionConfig { min_files: 2, ..Default::default() });
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].spans.len(), jobs[0].fragments.len()), (3, 3));
    let output = compact(Arc::clone(&store), TenantId::default(), jobs[0].clone(), 1 << 30).await.unwrap();
    assert_eq!(output.duplicates, 1);
    assert!(output.files.iter().all(|f| f.level == 1));
    assert_paired(&store, &output.files).await;

    let spans = read(&store, &of_kind(&output.files, FileKind::Spans)).await;
    assert_eq!(keys(&spans), [(1, 1), (1, 2), (1, 3), (2, 1)], "5 spans written, one of them twice");
    let fragments = trace_index::read_fragments(&read(&store, &of_kind(&output.files, FileKind::TraceIndex)).await);
    let totals: Vec<_> =
        fragments.unwrap().iter().map(|f| (f.trace_id[0], f.spans, f.errors, f.root_span_name.clone())).collect();
    assert_eq!(totals, [(1, 3, 1, Some("op-998".to_owned())), (2, 1, 0, Some("op-998".to_owned()))]);
    let durations = spans.column_by_name(schema::DURATION_NS).unwrap().as_primitive::<Int64Type>();
    assert!(durations.values().iter().all(|d| *d == 500));
}

#[tokio::test]
async fn outputs_are_cut_at_the_target_size_each_with_its_own_fragments() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut files = Vec::new();
    for flush in 0..8u8 {
        let spans = (0..10).flat_map(|t| (1..=210).map(move |id| span(flush * 10 + t + 1, id, false))).collect();
        files.extend(flushed(&store, spans).await);
    }
    let job = level_one_job(&files);
    // 16800 rows come out of the merge in three batches; with a tiny target
    // each makes a file of its own.
    let output = compact(Arc::clone(&store), TenantId::default(), job, 1).await.unwrap();
    let spans = of_kind(&output.files, FileKind::Spans);
    assert_eq!(spans.len(), 3);
    assert_paired(&store, &output.files).await;
    let rows: u64 = spans.iter().map(|f| f.rows).sum();
    assert_eq!(rows, 16_800);
}

fn file(path: &str, size: u64, level: u8, paired: bool) -> DataFile {
    DataFile {
        path: path.to_owned(),
        kind: FileKind::Spans,
        hour: HOUR,
        size,
        rows: 1,
        min_time: 0,
        max_time: 0,
        services: vec![],
        schema_version: 1,
        level,
        trace_index: paired.then(|| format!("{path}-ti")),
        covers: Vec::new(),
    }
}

fn fragments_of(path: &str) -> DataFile {
    DataFile { path: path.to_owned(), kind: FileKind::TraceIndex, trace_index: None, ..file(path, 1, 0, false) }
}

fn with_fragments(spans: Vec<DataFile>) -> Vec<DataFile> {
    let fragments: Vec<_> = spans.iter().filter_map(|f| f.trace_index.as_deref()).map(fragments_of).collect();
    spans.into_iter().chain(fragments).collect()
}

fn planned(files: &[DataFile], now: i64, config: &CompactionConfig) -> Vec<Vec<String>> {
    plan(files, now, config).iter().map(|job| job.spans.iter().map(|f| f.path.clone()).collect()).collect()
}

#[test]
fn a_live_hour_merges_a_level_once_it_has_min_files_and_never_a_top_or_full_file() {
    let config = CompactionConfig { min_files: 3, target_file_bytes: 9000, ..Default::default() };
    let live = HOUR + 1800;
    let files = with_fragments(vec![
        file("a-top", 500, MAX_LEVEL, true),
        file("b-full", 9000, 1, true),
        file("c1", 5000, 1, true),
        file("d1", 4000, 1, true),
        file("e0", 2000, 0, true),
        file("f0", 1500, 0, true),
        file("g0", 1200, 0, true),
    ]);
    let jobs = plan(&files, live, &config);
    assert_eq!(planned(&files, live, &config), [vec!["e0", "f0", "g0"]]);
    assert_eq!(jobs[0].level, 1);
    let fragments: Vec<_> = jobs[0].fragments.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(fragments, ["e0-ti", "f0-ti", "g0-ti"], "each span file goes with its fragment file");

    // Finished, two of a level are enough; the top and full files still stay.
    let finished = HOUR + 3600 + config.settle.as_secs() as i64;
    assert_eq!(planned(&files, finished, &config), [vec!["e0", "f0", "g0"], vec!["c1", "d1"]]);
    assert_eq!(plan(&files, finished, &config)[1].level, MAX_LEVEL);
    // A late flush in a finished hour merges with the small files only.
    let files = with_fragments(vec![
        file("a-top", 9000, MAX_LEVEL, true),
        file("c1", 5000, 1, true),
        file("z-late", 20, 0, true),
    ]);
    assert!(planned(&files, finished, &config).is_empty(), "one file per level is left alone");
    let mut files = files;
    files.extend(with_fragments(vec![file("z-later", 30, 0, true)]));
    assert_eq!(planned(&files, finished, &config), [vec!["z-late", "z-later"]]);
}

#[test]
fn many_files_of_a_level_merge_in_jobs_of_even_size() {
    let config = CompactionConfig { min_files: 8, ..Default::default() };
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files = with_fragments(names.iter().map(|n| file(n, 100, 0, true)).collect());
    let jobs = planned(&files, HOUR + 1800, &config);
    assert_eq!(jobs.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10], "at most {MAX_INPUTS} inputs a job");
    assert_eq!(jobs.concat(), names, "every file once, oldest first");
}

#[test]
fn legacy_files_merge_all_together_once_they_include_a_flushed_one() {
    let config = CompactionConfig { min_files: 3, ..Default::default() };
    let live = HOUR + 1800;
    let compacted = vec![file("a", 5000, 1, false), file("b", 4000, 1, false), fragments_of("hour-ti")];
    assert!(planned(&compacted, live, &config).is_empty(), "an hour compacted the old way is left as it is");

    let mut files = compacted;
    files.extend([file("c", 10, 0, false), fragments_of("c-ti")]);
    files.extend(with_fragments(vec![file("d", 10, 0, true)]));
    let jobs = plan(&files, live, &config);
    assert_eq!(jobs.len(), 1);
    let spans: Vec<_> = jobs[0].spans.iter().map(|f| f.path.as_str()).collect();
    let fragments: Vec<_> = jobs[0].fragments.iter().map(|f| f.path.as_str()).collect();
    assert_eq!((spans, fragments), (vec!["a", "b", "c"], vec!["hour-ti", "c-ti"]));
}

#[tokio::test]
async fn legacy_files_in_the_old_sort_order_are_re_sorted_before_the_merge() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut files = legacy(&store, vec![span(2, 1, false), span(2, 2, false), span(1, 3, false)], true).await;
    files.extend(legacy(&store, vec![span(1, 1, false), span(2, 2, false)], false).await);
    let old = files.iter().find(|f| f.kind == FileKind::Spans).unwrap();
    assert_ne!(keys(&read(&store, std::slice::from_ref(old)).await), [(1, 3), (2, 1), (2, 2)], "not in today's order");
    let before: Vec<_> = store.list(None).map_ok(|o| o.location).try_collect().await.unwrap();

    let jobs = plan(&files, HOUR + 1800, &CompactionConfig::default());
    assert_eq!(jobs.len(), 1);
    let output = compact(Arc::clone(&store), TenantId::default(), jobs[0].clone(), 1 << 30).await.unwrap();
    assert_eq!(output.duplicates, 1);
    let spans = read(&store, &of_kind(&output.files, FileKind::Spans)).await;
    assert_eq!(keys(&spans), [(1, 1), (1, 3), (2, 1), (2, 2)]);
    assert_paired(&store, &output.files).await;
    let after: Vec<_> = store.list(None).map_ok(|o| o.location).try_collect().await.unwrap();
    assert_eq!(after.len(), before.len() + output.files.len(), "the sorted runs were deleted");
}

#[tokio::test]
async fn outputs_carry_the_inputs_tags_of_their_own_services() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut files = Vec::new();
    for (flush, service) in ["api", "db", "api"].iter().enumerate() {
        let flush = flush as u8;
        let spans = (0..30u8)
            .flat_map(|t| (1..=200u8).map(move |id| (flush * 40 + t + 1, id)))
            .map(|(trace, id)| Span { attributes: vec![kv("flush", &flush.to_string())], ..span(trace, id, false) })
            .collect();
        let resource = Resource { attributes: vec![kv("service.name", service)], ..Default::default() };
        let mut builder = SpanBatchBuilder::new(IngestLimits::default());
        builder.append(&[ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }]);
        let rows = data_file::sort(FileKind::Spans, &builder.finish().unwrap()).unwrap();
        let mut sink = PairedSink::new(Arc::clone(&store), TenantId::default(), hour(), 0, usize::MAX);
        sink.write(&rows).await.unwrap();
        files.extend(sink.finish().await.unwrap());
    }
    let job = level_one_job(&files);
    // A tiny target: each merged batch of 8192 rows makes a file, so the
    // 12000 rows of api and the 6000 of db part.
    let output = compact(Arc::clone(&store), TenantId::default(), job, 1).await.unwrap();
    let spans = of_kind(&output.files, FileKind::Spans);
    assert!(spans.len() > 1);
    let mut inputs = TagSummary::default();
    for file in of_kind(&files, FileKind::Spans) {
        inputs.merge(&data_file::tag_summary(Arc::clone(&store), &file).await.unwrap());
    }
    for file in &spans {
        let in_footer = data_file::tag_summary(Arc::clone(&store), file).await.unwrap();
        assert_eq!(in_footer, inputs.of_services(&file.services), "{:?}", file.services);
        // What the rows hold is all there (a service split across outputs
        // keeps its whole summary in each).
        let mut from_rows = TagSummary::default();
        from_rows.add(&read(&store, std::slice::from_ref(file)).await).unwrap();
        let mut both = in_footer.clone();
        both.merge(&from_rows);
        assert_eq!(both, in_footer);
    }
}
