//! Which row order should span files have? The same spans (what `spanlake
//! load` sends) sorted three ways and encoded with spanlake's writer
//! settings; then bytes per span, column by column, and the reads each order
//! favours or hurts: trace by id, search by service and operation, and one
//! operation's latency series.
//!
//! cargo bench --workspace --bench layout

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::common::ScalarValue;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext, col, lit};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parquet::file::reader::{FileReader, SerializedFileReader};
use prost::Message;
use spanlake_benches::{FOUR_ROW_GROUPS, load_requests};
use spanlake_storage::schema::{SERVICE_NAME, SPAN_ID, SPAN_NAME, START_TIME, TRACE_ID};
use spanlake_storage::{FileKind, IngestLimits, SpanBatchBuilder, data_file, schema};

/// The design's starting point, Tempo's order, and spanlake's: a mix of the two.
const ORDERS: [(&str, &[&str]); 3] = [
    ("service", &[SERVICE_NAME, SPAN_NAME, START_TIME, TRACE_ID, SPAN_ID]),
    ("trace", &[TRACE_ID, START_TIME, SPAN_ID]),
    ("service_trace", &schema::SORT_COLUMNS),
];

fn spans() -> RecordBatch {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    for request in load_requests(FOUR_ROW_GROUPS) {
        builder.append(&ExportTraceServiceRequest::decode(request.as_slice()).expect("decodes").resource_spans);
    }
    builder.finish().expect("a batch")
}

/// Compressed bytes per span of each top-level column, largest first.
fn column_bytes(file: &bytes::Bytes, rows: usize) -> Vec<(String, f64)> {
    let reader = SerializedFileReader::new(file.clone()).expect("a Parquet file");
    let mut columns: BTreeMap<String, i64> = BTreeMap::new();
    for group in reader.metadata().row_groups() {
        for column in group.columns() {
            let top = column.column_path().parts()[0].clone();
            *columns.entry(top).or_default() += column.compressed_size();
        }
    }
    let mut columns: Vec<_> = columns.into_iter().map(|(c, b)| (c, b as f64 / rows as f64)).collect();
    columns.sort_by(|a, b| b.1.total_cmp(&a.1));
    columns
}

/// A busy operation, a duration that 5% of its spans exceed, and some trace ids.
async fn probes(ctx: &SessionContext) -> (String, String, i64, Vec<Vec<u8>>) {
    let top = ctx
        .sql(
            "SELECT service_name, span_name, CAST(approx_percentile_cont(duration_ns, 0.95) AS BIGINT) AS slow FROM service \
             GROUP BY service_name, span_name ORDER BY count(*) DESC LIMIT 1",
        )
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let text = |i: usize| arrow::compute::cast(top[0].column(i), &arrow::datatypes::DataType::Utf8).expect("text");
    let (service, name) = (text(0), text(1));
    let slow = top[0].column(2).as_primitive::<arrow::datatypes::Int64Type>().value(0);
    let ids =
        ctx.sql("SELECT DISTINCT trace_id FROM service LIMIT 20").await.expect("plans").collect().await.expect("runs");
    let ids =
        ids.iter().flat_map(|b| b.column(0).as_fixed_size_binary().iter().flatten().map(<[u8]>::to_vec)).collect();
    (service.as_string::<i32>().value(0).to_owned(), name.as_string::<i32>().value(0).to_owned(), slow, ids)
}

fn layout(c: &mut Criterion) {
    let spans = spans();
    let rows = spans.num_rows();
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    let config = SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    let ctx = SessionContext::new_with_config(config);
    for (order, columns) in ORDERS {
        let sorted = data_file::sort_by(&spans, columns).expect("sorts");
        let file = data_file::encode(FileKind::Spans, &sorted).expect("encodes");
        println!("{order}: {rows} spans, {:.1} bytes/span", file.len() as f64 / rows as f64);
        for (column, bytes) in column_bytes(&file, rows).iter().take(10) {
            println!("  {column:<28} {bytes:>6.2}");
        }
        let path = dir.path().join(format!("{order}.parquet"));
        std::fs::write(&path, &file).expect("written");
        rt.block_on(ctx.register_parquet(order, path.to_str().expect("utf-8"), ParquetReadOptions::default()))
            .expect("registered");
    }
    let (service, name, slow, ids) = rt.block_on(probes(&ctx));
    println!("probes: {service} / {name}, slower than {:.1} ms, {} trace ids", slow as f64 / 1e6, ids.len());

    let mut group = c.benchmark_group("layout");
    group.sample_size(20);
    for (order, _) in ORDERS {
        let mut next = ids.iter().cycle();
        group.bench_function(format!("{order}/trace_by_id"), |b| {
            b.iter(|| {
                let id = lit(ScalarValue::FixedSizeBinary(16, next.next().cloned()));
                let found =
                    rt.block_on(async { ctx.table(order).await?.filter(col(TRACE_ID).eq(id))?.collect().await });
                assert!(found.expect("runs").iter().map(RecordBatch::num_rows).sum::<usize>() > 0);
            })
        });
        let search = format!(
            "SELECT DISTINCT trace_id FROM {order} WHERE {SERVICE_NAME} = '{service}' AND {SPAN_NAME} = '{name}' \
             AND duration_ns > {slow} LIMIT 20"
        );
        let latency = format!(
            "SELECT date_bin(INTERVAL '1 second', {START_TIME}) AS t, count(*), \
             approx_percentile_cont(duration_ns, 0.99) FROM {order} \
             WHERE {SERVICE_NAME} = '{service}' AND {SPAN_NAME} = '{name}' GROUP BY t"
        );
        for (query, sql) in [("search", search), ("latency", latency)] {
            group.bench_function(format!("{order}/{query}"), |b| {
                b.iter(|| rt.block_on(async { ctx.sql(&sql).await?.collect().await }).expect("runs"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, layout);
criterion_main!(benches);
