//! Span and service graph metrics from real span batches, read back in the
//! Prometheus text a scrape gets.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prometheus_client::encoding::text::encode;
use spanlake_storage::{IngestLimits, SpanBatchBuilder};

use super::*;

fn span(service: &str, name: &str, kind: i32, id: u8, parent: Option<u8>, error: bool) -> ResourceSpans {
    let attributes = match name {
        "SELECT" => vec![KeyValue {
            key: "db.system".into(),
            value: Some(AnyValue { value: Some(Value::StringValue("postgresql".into())) }),
            ..Default::default()
        }],
        _ => vec![],
    };
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue { value: Some(Value::StringValue(service.into())) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![7; 16],
                span_id: vec![id; 8],
                parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                name: name.into(),
                kind,
                start_time_unix_nano: 1_750_000_000_000_000_000,
                end_time_unix_nano: 1_750_000_000_000_000_000 + u64::from(id) * 3_000_000,
                status: Some(Status { code: if error { 2 } else { 0 }, ..Default::default() }),
                attributes,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn batch(spans: &[ResourceSpans]) -> RecordBatch {
    let mut builder = SpanBatchBuilder::new(IngestLimits::default());
    builder.append(spans);
    builder.finish().expect("a batch")
}

fn scrape(metrics: &SpanMetrics) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry).expect("encodes");
    text
}

/// The value of the one sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

#[test]
fn spans_count_per_service_name_kind_and_status() {
    let metrics = SpanMetrics::new(SpanMetricsConfig::default());
    let tenant = TenantId::default();
    metrics
        .record(&tenant, &batch(&[span("shop", "GET /", 2, 1, None, false), span("shop", "GET /", 2, 2, None, true)]));
    metrics.record(&tenant, &batch(&[span("shop", "GET /", 2, 3, None, true)]));
    let text = scrape(&metrics);
    let labels = |status: &str| {
        format!(
            r#"{{tenant="default",service="shop",service_name="shop",span_name="GET /",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_{status}"}}"#
        )
    };
    assert_eq!(sample(&text, &format!("traces_spanmetrics_calls_total{}", labels("UNSET"))), Some(1.0), "{text}");
    assert_eq!(sample(&text, &format!("traces_spanmetrics_calls_total{}", labels("ERROR"))), Some(2.0), "{text}");
    let errors = labels("ERROR");
    let bucket = |le: &str| format!("traces_spanmetrics_latency_bucket{{le=\"{le}\",{}", &errors[1..]);
    // 6 ms and 9 ms: both above 4 ms, both within 16 ms.
    assert_eq!(sample(&text, &bucket("0.004")), Some(0.0), "{text}");
    assert_eq!(sample(&text, &bucket("0.016")), Some(2.0), "{text}");
    let sum = sample(&text, &format!("traces_spanmetrics_latency_sum{errors}")).unwrap();
    assert!((sum - 0.015).abs() < 1e-9, "{sum}");
}

#[test]
fn label_sets_past_the_bound_count_as_overflow() {
    let metrics = SpanMetrics::new(SpanMetricsConfig { max_series: 2, ..SpanMetricsConfig::default() });
    let tenant = TenantId::default();
    let names = ["GET /users/1", "GET /users/2", "GET /users/3", "GET /users/4"];
    let spans: Vec<ResourceSpans> =
        names.iter().enumerate().map(|(i, n)| span("shop", n, 1, i as u8 + 1, None, false)).collect();
    metrics.record(&tenant, &batch(&spans));
    let text = scrape(&metrics);
    let calls: Vec<&str> = text.lines().filter(|l| l.starts_with("traces_spanmetrics_calls_total")).collect();
    assert_eq!(calls.len(), 3, "{text}");
    let overflow = format!(
        r#"traces_spanmetrics_calls_total{{tenant="default",service="{OVERFLOW}",service_name="{OVERFLOW}",span_name="{OVERFLOW}",span_kind="SPAN_KIND_INTERNAL",status_code="STATUS_CODE_UNSET"}}"#
    );
    assert_eq!(sample(&text, &overflow), Some(2.0), "{text}");
}

#[test]
fn calls_pair_client_and_server_halves_across_batches() {
    let metrics = SpanMetrics::new(SpanMetricsConfig::default());
    let tenant = TenantId::default();
    let start = Instant::now();
    // shop's root server span (1) calls cart (client 2 → server 3, which fails)
    // and a database (client 4, no server); a server 5 whose client never comes.
    metrics.record_at(
        &tenant,
        &batch(&[span("shop", "GET /", 2, 1, None, false), span("shop", "POST /cart", 3, 2, Some(1), false)]),
        start,
    );
    metrics.record_at(
        &tenant,
        &batch(&[
            span("cart", "POST /cart", 2, 3, Some(2), true),
            span("shop", "SELECT", 3, 4, Some(1), false),
            span("cart", "GET /cart", 2, 5, Some(9), false),
        ]),
        start + Duration::from_secs(1),
    );
    let text = scrape(&metrics);
    let edge = |client: &str, server: &str, connection: &str| {
        format!(r#"{{tenant="default",client="{client}",server="{server}",connection_type="{connection}"}}"#)
    };
    assert_eq!(
        sample(&text, &format!("traces_service_graph_request_total{}", edge("shop", "cart", ""))),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("traces_service_graph_request_failed_total{}", edge("shop", "cart", ""))),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, &format!("traces_service_graph_request_total{}", edge("user", "shop", "virtual_node"))),
        Some(1.0)
    );
    let server = edge("shop", "cart", "");
    let server_bucket = format!("traces_service_graph_request_server_seconds_bucket{{le=\"0.016\",{}", &server[1..]);
    assert_eq!(sample(&text, &server_bucket), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, &format!("traces_service_graph_request_total{}", edge("shop", "postgresql", "database"))),
        None
    );

    // Past the wait, the lone halves count: the database call as a call to
    // a virtual node, the server without a client as unpaired.
    metrics.record_at(&tenant, &batch(&[]), start + Duration::from_secs(12));
    let text = scrape(&metrics);
    assert_eq!(
        sample(&text, &format!("traces_service_graph_request_total{}", edge("shop", "postgresql", "database"))),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, r#"traces_service_graph_unpaired_spans_total{tenant="default"}"#), Some(1.0), "{text}");
}
