//! A trace as the waterfall shows it: spans flattened from OTLP, placed in
//! their tree (`spanlake_query::tree`).

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, span, status};
use spanlake_query::retries::{self, Attempt, Mark, RESEND_COUNT};
use spanlake_query::tree::{self, Node};
use spanlake_storage::attributes;

/// One span, with what the page shows of it.
#[derive(Debug, Clone)]
pub(crate) struct SpanRow {
    pub(crate) id: String,
    pub(crate) parent: Option<String>,
    pub(crate) service: String,
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) start_ns: i64,
    pub(crate) end_ns: i64,
    pub(crate) error: bool,
    pub(crate) status: String,
    pub(crate) attributes: Vec<(String, String)>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) scope: String,
    pub(crate) events: Vec<Event>,
    /// (trace id, span id).
    pub(crate) links: Vec<(String, String)>,
    pub(crate) depth: usize,
    /// Spans below it, all levels.
    pub(crate) descendants: usize,
    pub(crate) critical: bool,
    /// A retried call or abandoned server work (`spanlake_query::retries`).
    pub(crate) mark: Option<Mark>,
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) time_ns: i64,
    pub(crate) name: String,
    pub(crate) attributes: Vec<(String, String)>,
}

#[derive(Debug)]
pub(crate) struct Waterfall {
    /// In tree order: each span before its children, siblings by start.
    pub(crate) spans: Vec<SpanRow>,
    pub(crate) start_ns: i64,
    pub(crate) end_ns: i64,
}

impl Waterfall {
    pub(crate) fn new(resource_spans: &[ResourceSpans]) -> Self {
        let mut flat = Vec::new();
        for rs in resource_spans {
            let resource: Vec<(String, String)> =
                rs.resource.as_ref().map(|r| pairs(&r.attributes)).unwrap_or_default();
            let service =
                resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone()).unwrap_or_default();
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for s in &ss.spans {
                    let status = s.status.as_ref();
                    let code = status.map_or(0, |s| s.code);
                    flat.push(SpanRow {
                        id: const_hex::encode(&s.span_id),
                        parent: (!s.parent_span_id.is_empty()).then(|| const_hex::encode(&s.parent_span_id)),
                        service: service.clone(),
                        name: s.name.clone(),
                        kind: span::SpanKind::try_from(s.kind).map_or("UNSPECIFIED", |k| kind_name(k)),
                        start_ns: s.start_time_unix_nano as i64,
                        end_ns: s.end_time_unix_nano.max(s.start_time_unix_nano) as i64,
                        error: code == status::StatusCode::Error as i32,
                        status: match status {
                            Some(st) if code == status::StatusCode::Error as i32 => format!("ERROR {}", st.message),
                            Some(_) if code == status::StatusCode::Ok as i32 => "OK".into(),
                            _ => "UNSET".into(),
                        },
                        attributes: pairs(&s.attributes),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        events: s
                            .events
                            .iter()
                            .map(|e| Event {
                                time_ns: e.time_unix_nano as i64,
                                name: e.name.clone(),
                                attributes: pairs(&e.attributes),
                            })
                            .collect(),
                        links: s
                            .links
                            .iter()
                            .map(|l| (const_hex::encode(&l.trace_id), const_hex::encode(&l.span_id)))
                            .collect(),
                        depth: 0,
                        descendants: 0,
                        critical: false,
                        mark: None,
                    });
                }
            }
        }
        let attempts: Vec<Attempt<'_>> = flat
            .iter()
            .map(|s| Attempt {
                id: &s.id,
                parent: s.parent.as_deref(),
                service: &s.service,
                name: &s.name,
                kind: s.kind,
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                error: s.error,
                resend_count: s
                    .attributes
                    .iter()
                    .find(|(k, _)| k == RESEND_COUNT)
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0),
            })
            .collect();
        let marks = retries::marks(&attempts);
        for (span, mark) in flat.iter_mut().zip(marks) {
            span.mark = mark;
        }
        let start_ns = flat.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let end_ns = flat.iter().map(|s| s.end_ns).max().unwrap_or(0);
        let nodes: Vec<Node<'_>> = flat
            .iter()
            .map(|s| Node {
                id: s.id.as_bytes(),
                parent: s.parent.as_deref().unwrap_or_default().as_bytes(),
                start_ns: s.start_ns,
                end_ns: s.end_ns,
            })
            .collect();
        let spans = tree::layout(&nodes)
            .into_iter()
            .map(|p| SpanRow {
                depth: p.depth,
                descendants: p.descendants,
                critical: p.critical_ns.is_some(),
                ..flat[p.index].clone()
            })
            .collect();
        Self { spans, start_ns, end_ns }
    }

    pub(crate) fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }

    pub(crate) fn depth(&self) -> usize {
        self.spans.iter().map(|s| s.depth + 1).max().unwrap_or(0)
    }
}

fn kind_name(kind: span::SpanKind) -> &'static str {
    match kind {
        span::SpanKind::Server => "SERVER",
        span::SpanKind::Client => "CLIENT",
        span::SpanKind::Producer => "PRODUCER",
        span::SpanKind::Consumer => "CONSUMER",
        span::SpanKind::Internal => "INTERNAL",
        span::SpanKind::Unspecified => "UNSPECIFIED",
    }
}

/// Attribute values as text, as stored and as SQL shows them.
fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    let text = |kv: &KeyValue| attributes::encode(kv.value.as_ref().and_then(|v| v.value.as_ref())).text.into_owned();
    attributes.iter().map(|kv| (kv.key.clone(), text(kv))).collect()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    use super::*;

    fn span(id: u8, parent: Option<u8>, start: u64, end: u64) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("s{id}"),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..Default::default()
        }
    }

    #[test]
    fn tree_order_depths_and_the_critical_path() {
        // 1 [0, 100]: 2 [10, 40] with child 4 [15, 35], 3 [50, 95]; 5 has a parent outside the trace.
        let spans = vec![
            span(3, Some(1), 50, 95),
            span(1, None, 0, 100),
            span(4, Some(2), 15, 35),
            span(2, Some(1), 10, 40),
            span(5, Some(9), 20, 30),
        ];
        let w = Waterfall::new(&[ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }]);
        let order: Vec<(String, usize, usize, bool)> =
            w.spans.iter().map(|s| (s.name.clone(), s.depth, s.descendants, s.critical)).collect();
        let expected =
            [("s1", 0, 3, true), ("s2", 1, 1, true), ("s4", 2, 0, true), ("s3", 1, 0, true), ("s5", 0, 0, false)];
        let expected: Vec<_> = expected.iter().map(|(n, d, c, k)| (n.to_string(), *d, *c, *k)).collect();
        assert_eq!(order, expected);
        assert_eq!((w.duration_ns(), w.depth()), (100, 3));
    }
}
