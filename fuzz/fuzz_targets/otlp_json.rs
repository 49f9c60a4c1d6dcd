//! OTLP/JSON, as a receiver gets it, into the batch builder and back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) {
        _ = common::build_and_read_back(&request.resource_spans);
    }
});
