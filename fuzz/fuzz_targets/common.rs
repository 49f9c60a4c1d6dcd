//! Shared by the targets; each uses part of it.
#![allow(dead_code)]

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use spanlake_storage::{AppendSummary, IngestLimits, SpanBatchBuilder, spans_to_otlp};

pub fn limits() -> IngestLimits {
    IngestLimits { max_attribute_value_bytes: 4096 }
}

/// Builds a batch from any decoded request and reads it back: neither may
/// panic, and every accepted span must come back.
pub fn build_and_read_back(resource_spans: &[ResourceSpans]) -> (RecordBatch, AppendSummary) {
    let mut builder = SpanBatchBuilder::new(limits());
    let summary = builder.append(resource_spans);
    let batch = builder.finish().expect("the builder makes a valid batch");
    assert_eq!(batch.num_rows(), summary.accepted);
    let back = spans_to_otlp(&[batch.clone()]).expect("stored rows read back");
    let spans: usize = back.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
    assert_eq!(spans, summary.accepted);
    (batch, summary)
}

/// OTLP protobuf as storage reads it: the wire reader against prost and
/// the batch builder, the reference.
pub fn read_protobuf(data: &[u8]) {
    let mut builder = SpanBatchBuilder::new(limits());
    let read = builder.append_protobuf(data).ok();
    compare(builder, read, ExportTraceServiceRequest::decode(data));
}

/// OTLP/JSON as storage reads it: the JSON reader against serde_json and
/// the batch builder, the reference.
pub fn read_json(data: &[u8]) {
    let mut builder = SpanBatchBuilder::new(limits());
    let read = builder.append_json(data).ok();
    compare(builder, read, serde_json::from_slice(data));
}

/// Whatever a reader read (`read`, `builder` holding it) must come out
/// exactly as the reference builds it, and what the reference refuses the
/// reader must have left to it.
fn compare<E: std::fmt::Display>(
    mut builder: SpanBatchBuilder,
    read: Option<AppendSummary>,
    reference: Result<ExportTraceServiceRequest, E>,
) {
    match (read, reference) {
        (Some(summary), Ok(request)) => {
            let reference = build_and_read_back(&request.resource_spans);
            assert_eq!(summary, reference.1);
            assert_eq!(builder.finish().expect("a valid batch"), reference.0);
        }
        (Some(_), Err(e)) => panic!("the reader read what the reference refuses: {e}"),
        (None, Ok(request)) => _ = build_and_read_back(&request.resource_spans),
        (None, Err(_)) => {}
    }
}
