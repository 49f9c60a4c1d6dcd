use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use spanlake_storage::{IngestLimits, SpanBatchBuilder, spans_to_otlp};

/// Builds a batch from any decoded request and reads it back: neither may
/// panic, and every accepted span must come back.
pub fn build_and_read_back(resource_spans: &[ResourceSpans]) {
    let mut builder = SpanBatchBuilder::new(IngestLimits { max_attribute_value_bytes: 4096 });
    let summary = builder.append(resource_spans);
    let batch = builder.finish().expect("the builder makes a valid batch");
    assert_eq!(batch.num_rows(), summary.accepted);
    let back = spans_to_otlp(&[batch]).expect("stored rows read back");
    let spans: usize = back.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
    assert_eq!(spans, summary.accepted);
}
