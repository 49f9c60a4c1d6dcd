//! Shared inputs of spanlake's benchmarks: demo-shop traces, the same shapes
//! `spanlake demo` sends.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use rand::SeedableRng;
use rand::rngs::StdRng;

// The allocator the spanlake binary uses, so that the numbers match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../src/demo/topology.rs"]
#[allow(dead_code, unreachable_pub)]
mod topology;

/// An export request of `traces` demo traces, the same every run.
pub fn demo_request(traces: usize) -> ExportTraceServiceRequest {
    let mut rng = StdRng::seed_from_u64(42);
    let start = 1_764_000_000_000_000_000;
    let traces: Vec<_> = (0..traces).map(|i| topology::generate(&mut rng, start + i as u64 * 1_000_000)).collect();
    topology::export_request(&traces)
}

/// Spans in a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum()
}
