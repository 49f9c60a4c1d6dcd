//! Export requests encoded once, before the run: each send copies one and
//! stamps fresh ids and later times into it, so every span sent is new to
//! the server while the generator spends almost nothing per span.

use std::collections::HashSet;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use rand::Rng;

use crate::demo::topology::{self, Trace};

/// The shape of the generated load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) spans_per_request: usize,
    /// `None`: as the demo shop makes them (5 to 30 spans).
    pub(crate) spans_per_trace: Option<usize>,
    pub(crate) extra_attributes: usize,
}

/// `spanlake load`'s defaults: spans of about 500 bytes of protobuf, as
/// SDKs batch them.
pub(crate) const DEFAULT_SHAPE: Shape = Shape { spans_per_request: 500, spans_per_trace: None, extra_attributes: 8 };
pub(crate) const DEFAULT_TEMPLATES: usize = 64;

/// An encoded request and where its ids and times sit in it.
#[derive(Debug)]
pub(crate) struct Template {
    pub(crate) bytes: Vec<u8>,
    pub(crate) spans: usize,
    trace_id_offsets: Vec<usize>,
    /// Span ids and parent span ids.
    span_id_offsets: Vec<usize>,
    /// Span start and end times and event times.
    time_offsets: Vec<usize>,
}

/// The requests a run cycles through. Send `n` uses template `n % len` in
/// round `n / len`.
#[derive(Debug)]
pub(crate) struct Templates {
    list: Vec<Template>,
    /// How much time the templates' traces cover together: each round
    /// moves its times on by this much, so the load is a steady stream of
    /// traces in time rather than the same instants over and over.
    period_ns: u64,
}

impl Templates {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Template> {
        self.list.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The request of send `send`, and its template. Every trace id and span
    /// id is xor-ed with a stamp made from the send, which keeps the ids of
    /// one request apart, its parent links whole, and different sends apart.
    /// Both halves of a trace id change: were the leading bytes kept, copies
    /// of a template trace would sort side by side in span files and
    /// compress unrealistically well.
    pub(crate) fn request(&self, send: u64) -> (&Template, Vec<u8>) {
        let template = &self.list[(send % self.list.len() as u64) as usize];
        let mut bytes = template.bytes.clone();
        let stamp = send.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1).to_le_bytes();
        let xor = |bytes: &mut [u8], offset: usize| {
            for (byte, s) in bytes[offset..offset + 8].iter_mut().zip(stamp) {
                *byte ^= s;
            }
        };
        for &offset in &template.trace_id_offsets {
            xor(&mut bytes, offset);
            xor(&mut bytes, offset + 8);
        }
        for &offset in &template.span_id_offsets {
            xor(&mut bytes, offset);
        }
        let shift = send / self.list.len() as u64 * self.period_ns;
        for &offset in &template.time_offsets {
            let field = &mut bytes[offset..offset + 8];
            let time = u64::from_le_bytes(field.try_into().expect("8 bytes")) + shift;
            field.copy_from_slice(&time.to_le_bytes());
        }
        (template, bytes)
    }
}

/// Traces start this far apart on average, as at ~4k traces/s.
const TRACE_SPACING_NS: u64 = 250_000;

/// `count` different requests of the given shape; traces start from `start` (ns) on.
pub(crate) fn templates<R: Rng>(rng: &mut R, shape: Shape, count: usize, start: u64) -> Templates {
    let mut trace_start = start;
    let list = (0..count)
        .map(|_| {
            let mut traces = Vec::new();
            let mut spans = 0;
            while spans < shape.spans_per_request {
                trace_start += rng.random_range(0..2 * TRACE_SPACING_NS);
                let mut trace = shaped_trace(rng, trace_start, shape.spans_per_trace);
                trace.spans.truncate(shape.spans_per_request - spans);
                spans += trace.spans.len();
                traces.push(trace);
            }
            for (_, span) in traces.iter_mut().flat_map(|t| &mut t.spans) {
                add_attributes(span, shape.extra_attributes);
            }
            encode(&topology::export_request(&traces), &traces)
        })
        .collect();
    Templates { list, period_ns: trace_start - start + TRACE_SPACING_NS }
}

/// A demo trace cut or extended to `spans` spans. Spans come parents first,
/// so a prefix is still a tree; extra demo traces join under the first root.
fn shaped_trace<R: Rng>(rng: &mut R, start: u64, spans: Option<usize>) -> Trace {
    let mut trace = topology::generate(rng, start);
    let Some(wanted) = spans else { return trace };
    let trace_id = trace.spans[0].1.trace_id.clone();
    let root = trace.spans[0].1.span_id.clone();
    while trace.spans.len() < wanted {
        let mut more = topology::generate(rng, start);
        for (_, span) in &mut more.spans {
            span.trace_id.clone_from(&trace_id);
            if span.parent_span_id.is_empty() {
                span.parent_span_id.clone_from(&root);
            }
        }
        trace.spans.append(&mut more.spans);
    }
    trace.spans.truncate(wanted);
    trace
}

/// Attributes instrumentation libraries commonly add, cycled through; a
/// key the span already has (the demo's `server.address` of client spans)
/// is left out, as OTLP wants keys unique.
fn add_attributes(span: &mut opentelemetry_proto::tonic::trace::v1::Span, count: usize) {
    const KEYS: [&str; 8] = [
        "thread.name",
        "code.function",
        "code.filepath",
        "network.peer.address",
        "network.peer.port",
        "server.address",
        "session.id",
        "app.request.id",
    ];
    let span_id = u64::from_le_bytes(span.span_id[..8].try_into().unwrap_or_default());
    for i in 0..count {
        let key = match i / KEYS.len() {
            0 => KEYS[i].to_owned(),
            round => format!("{}.{round}", KEYS[i % KEYS.len()]),
        };
        let value = match i % KEYS.len() {
            0 => Value::StringValue(format!("worker-{}", span_id % 16)),
            1 => Value::StringValue("handle_request".into()),
            2 => Value::StringValue("src/handlers/request.rs".into()),
            3 => Value::StringValue(format!("10.0.{}.{}", span_id % 7, span_id % 250)),
            4 => Value::IntValue((span_id % 60_000) as i64),
            5 => Value::StringValue("api.shop.internal".into()),
            6 => Value::StringValue(format!("{:016x}", span_id.rotate_left(17))),
            _ => Value::StringValue(format!("req-{:012x}", span_id >> 16)),
        };
        if span.attributes.iter().any(|a| a.key == key) {
            continue;
        }
        span.attributes.push(KeyValue { key, value: Some(AnyValue { value: Some(value) }), ..Default::default() });
    }
}

/// Encodes the request and finds its ids and times: the `Span.trace_id`
/// fields (tag 0x0a, length 16), the `span_id` and `parent_span_id` fields
/// (tags 0x12 and 0x22, length 8), and the fixed64 `start_time_unix_nano`,
/// `end_time_unix_nano` and `Event.time_unix_nano` fields (tags 0x39, 0x41
/// and 0x09), whose values are the traces' own.
fn encode(request: &ExportTraceServiceRequest, traces: &[Trace]) -> Template {
    let bytes = request.encode_to_vec();
    let spans = || traces.iter().flat_map(|t| &t.spans).map(|(_, s)| s);
    let trace_ids: HashSet<&[u8]> = traces.iter().map(|t| t.spans[0].1.trace_id.as_slice()).collect();
    let span_ids: HashSet<&[u8]> = spans().map(|s| s.span_id.as_slice()).collect();
    let times: HashSet<[u8; 8]> = spans()
        .flat_map(|s| {
            [s.start_time_unix_nano, s.end_time_unix_nano].into_iter().chain(s.events.iter().map(|e| e.time_unix_nano))
        })
        .map(u64::to_le_bytes)
        .collect();
    let field = |i: usize, tags: &[u8], len: usize, ids: &HashSet<&[u8]>| {
        i + 2 + len <= bytes.len()
            && tags.contains(&bytes[i])
            && usize::from(bytes[i + 1]) == len
            && ids.contains(&bytes[i + 2..i + 2 + len])
    };
    let time = |i: usize| {
        i + 9 <= bytes.len()
            && [0x39, 0x41, 0x09].contains(&bytes[i])
            && times.contains(&<[u8; 8]>::try_from(&bytes[i + 1..i + 9]).expect("8 bytes"))
    };
    let trace_id_offsets = (0..bytes.len()).filter(|&i| field(i, &[0x0a], 16, &trace_ids)).map(|i| i + 2).collect();
    let span_id_offsets = (0..bytes.len()).filter(|&i| field(i, &[0x12, 0x22], 8, &span_ids)).map(|i| i + 2).collect();
    let time_offsets = (0..bytes.len()).filter(|&i| time(i)).map(|i| i + 1).collect();
    Template { bytes, spans: spans().count(), trace_id_offsets, span_id_offsets, time_offsets }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(bytes).expect("decodes")
    }

    fn ids(request: &ExportTraceServiceRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
        let spans = request.resource_spans.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans);
        spans.map(|s| (s.trace_id.clone(), s.span_id.clone())).collect()
    }

    #[test]
    fn requests_have_the_asked_shape() {
        let shape = Shape { spans_per_request: 100, spans_per_trace: Some(40), extra_attributes: 10 };
        let templates = templates(&mut StdRng::seed_from_u64(1), shape, 3, 1_000);
        for template in templates.iter() {
            let request = decode(&template.bytes);
            let spans = ids(&request);
            assert_eq!((spans.len(), template.spans), (100, 100));
            let traces: HashSet<_> = spans.iter().map(|(t, _)| t.clone()).collect();
            assert_eq!(traces.len(), 3, "40 + 40 + 20 spans");
            let span = &request.resource_spans[0].scope_spans[0].spans[0];
            assert!(span.attributes.iter().any(|kv| kv.key == "thread.name.1"), "{:?}", span.attributes);
        }
    }

    #[test]
    fn every_send_has_new_ids_later_times_and_the_same_spans_otherwise() {
        let shape = Shape { spans_per_request: 200, spans_per_trace: None, extra_attributes: 2 };
        let templates = templates(&mut StdRng::seed_from_u64(2), shape, 2, 1_000);
        // Sends 0 and 2 use the first template, in rounds 0 and 1.
        let first = decode(&templates.request(0).1);
        let second = decode(&templates.request(2).1);
        let (a, b) = (ids(&first), ids(&second));
        assert_eq!(a.len(), 200);
        let a_traces: HashSet<_> = a.iter().map(|(t, _)| &t[..8]).collect();
        assert!(
            b.iter().all(|(t, _)| !a_traces.contains(&t[..8])),
            "trace ids differ between sends, from the first byte"
        );
        let a_spans: HashSet<_> = a.iter().map(|(_, s)| s).collect();
        assert!(b.iter().all(|(_, s)| !a_spans.contains(s)), "span ids differ between sends");
        // Every parent is still a span of the request.
        let spans = first.resource_spans.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans);
        let parents: Vec<_> = spans.map(|s| s.parent_span_id.clone()).filter(|p| !p.is_empty()).collect();
        assert!(!parents.is_empty() && parents.iter().all(|p| a_spans.contains(p)), "parent links hold");
        // Apart from ids and a shift of whole periods, the requests are the template.
        let original = decode(&templates.list[0].bytes);
        let normal = |mut r: ExportTraceServiceRequest, rounds: u64| {
            let shift = rounds * templates.period_ns;
            for rs in &mut r.resource_spans {
                for span in rs.scope_spans.iter_mut().flat_map(|ss| &mut ss.spans) {
                    span.trace_id.clear();
                    span.span_id.clear();
                    span.parent_span_id.clear();
                    span.start_time_unix_nano -= shift;
                    span.end_time_unix_nano -= shift;
                    span.events.iter_mut().for_each(|e| e.time_unix_nano -= shift);
                }
            }
            r
        };
        assert!(
            original
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .any(|ss| ss.spans.iter().any(|s| !s.events.is_empty())),
            "some spans have events"
        );
        assert_eq!(normal(second, 1), normal(first, 0));
        assert_eq!(normal(decode(&templates.request(0).1), 0), normal(original, 0));
    }

    /// The spans every ingest figure is measured on read through the wire
    /// reader exactly as through prost and the same builder.
    #[test]
    fn the_wire_reader_builds_what_prost_builds_from_the_load_requests() {
        use spanlake_storage::{IngestLimits, SpanBatchBuilder};
        let templates = templates(&mut StdRng::seed_from_u64(3), DEFAULT_SHAPE, 4, 1_000);
        for send in 0..8 {
            let bytes = templates.request(send).1;
            let mut wire = SpanBatchBuilder::new(IngestLimits::default());
            let summary = wire.append_protobuf(&bytes).expect("read from the wire");
            let mut reference = SpanBatchBuilder::new(IngestLimits::default());
            assert_eq!(summary, reference.append(&decode(&bytes).resource_spans));
            assert_eq!(summary.accepted, 500);
            assert_eq!(wire.finish().unwrap(), reference.finish().unwrap());
        }
    }
}
