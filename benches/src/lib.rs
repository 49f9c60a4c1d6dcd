//! Shared inputs of spanlake's benchmarks: demo-shop traces, the same shapes
//! `spanlake demo` sends, and the requests `spanlake load` sends.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use rand::SeedableRng;
use rand::rngs::StdRng;

// The allocator the spanlake binary uses, so that the numbers match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The binary's own sources, so that benchmarks and the server see the same spans.
#[path = "../../src/demo/topology.rs"]
#[allow(dead_code, unreachable_pub)]
mod topology;

#[path = "../../src/load/requests.rs"]
#[allow(dead_code, unreachable_pub)]
mod requests;

/// Where `requests` finds the topology in the binary.
mod demo {
    pub(crate) use super::topology;
}

/// Where generated traces start: 2025-11-24T16:00Z, on an hour boundary.
const START_NS: u64 = 1_764_000_000_000_000_000;

/// `load_requests` of this many sends fill four row groups of 128Ki spans.
pub const FOUR_ROW_GROUPS: u64 = 1_049;

/// An export request of `traces` demo traces, the same every run.
pub fn demo_request(traces: usize) -> ExportTraceServiceRequest {
    let mut rng = StdRng::seed_from_u64(42);
    let traces: Vec<_> = (0..traces).map(|i| topology::generate(&mut rng, START_NS + i as u64 * 1_000_000)).collect();
    topology::export_request(&traces)
}

/// `sends` requests as `spanlake load` sends them (500 spans each, 8 extra
/// attributes), every one from its own template as in `benches/e2e.sh`:
/// repeated attribute values would compress unrealistically well.
pub fn load_requests(sends: u64) -> Vec<Vec<u8>> {
    let shape = requests::DEFAULT_SHAPE;
    let templates = requests::templates(&mut StdRng::seed_from_u64(42), shape, sends as usize, START_NS);
    (0..sends).map(|send| templates.request(send).1).collect()
}

/// Spans in a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum()
}
