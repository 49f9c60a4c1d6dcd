//! The ingest path piece by piece: OTLP protobuf and OTLP/JSON into an
//! Arrow batch (each read from the bytes as the server does, and through
//! its reference decoder, prost or serde_json), a batch into a sorted Parquet span file, and a flush's encoding
//! at its zstd level and at compaction's.
//!
//! cargo bench --workspace --bench ingest

use arrow::array::RecordBatch;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use prost::Message;
use spanlake_benches::{FOUR_ROW_GROUPS, demo_request, load_requests, span_count};
use spanlake_storage::{FileKind, IngestLimits, SpanBatchBuilder, data_file};

fn to_batch(request: &ExportTraceServiceRequest) -> RecordBatch {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    builder.append(&request.resource_spans);
    builder.finish().expect("a batch")
}

fn decode(c: &mut Criterion) {
    let request = demo_request(200);
    let spans = span_count(&request) as u64;
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(&request).expect("JSON");
    let mut group = c.benchmark_group("otlp_to_arrow");
    group.throughput(Throughput::Elements(spans));
    group.bench_function(format!("protobuf/{spans}_spans_{}_bytes", protobuf.len()), |b| {
        b.iter(|| {
            let mut builder = SpanBatchBuilder::new(IngestLimits::default());
            builder.append_protobuf(&protobuf).expect("read from the wire");
            builder.finish().expect("a batch")
        })
    });
    group.bench_function(format!("protobuf_prost/{spans}_spans_{}_bytes", protobuf.len()), |b| {
        b.iter(|| to_batch(&ExportTraceServiceRequest::decode(protobuf.as_slice()).expect("decodes")))
    });
    group.bench_function(format!("json/{spans}_spans_{}_bytes", json.len()), |b| {
        b.iter(|| {
            let mut builder = SpanBatchBuilder::new(IngestLimits::default());
            builder.append_json(&json).expect("read from the bytes");
            builder.finish().expect("a batch")
        })
    });
    group.bench_function(format!("json_serde/{spans}_spans_{}_bytes", json.len()), |b| {
        b.iter(|| to_batch(&serde_json::from_slice(&json).expect("decodes")))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    // About one row group: 128Ki spans.
    let request = demo_request(25_000);
    let batch = to_batch(&request);
    let mut group = c.benchmark_group("span_file");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));
    group.sample_size(10);
    group.bench_function(format!("sort_and_encode/{}_spans", batch.num_rows()), |b| {
        b.iter(|| {
            data_file::encode(FileKind::Spans, &data_file::sort(FileKind::Spans, &batch).expect("sorts"))
                .expect("encodes")
        })
    });
    group.finish();
    let bytes =
        data_file::encode(FileKind::Spans, &data_file::sort(FileKind::Spans, &batch).expect("sorts")).expect("encodes");
    println!(
        "span file: {} spans, {} bytes, {:.1} bytes/span",
        batch.num_rows(),
        bytes.len(),
        bytes.len() as f64 / batch.num_rows() as f64
    );
}

/// A flush's Parquet encoding of the load generator's spans (a row group's
/// worth, sorted): the level-0 settings as shipped, and the same with the
/// zstd level compaction writes at.
fn flush_encode(c: &mut Criterion) {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    for request in load_requests(FOUR_ROW_GROUPS / 4) {
        builder.append_protobuf(&request).expect("read from the wire");
    }
    let batch = data_file::sort(FileKind::Spans, &builder.finish().expect("a batch")).expect("sorts");
    let shipped = data_file::writer_properties(FileKind::Spans, 0);
    let zstd3 =
        shipped.clone().into_builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("a level")));
    let mut group = c.benchmark_group("flush_encode");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));
    group.sample_size(10);
    for (name, props) in [("level_0", shipped), ("level_0_zstd_3", zstd3.build())] {
        let encode = || {
            let mut file = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(props.clone())).expect("a writer");
            writer.write(&batch).expect("writes");
            writer.close().expect("closes");
            file
        };
        group.bench_function(format!("{name}/{}_spans", batch.num_rows()), |b| b.iter(encode));
        println!("{name}: {:.1} bytes/span", encode().len() as f64 / batch.num_rows() as f64);
    }
    group.finish();
}

criterion_group!(benches, decode, encode, flush_encode);
criterion_main!(benches);
