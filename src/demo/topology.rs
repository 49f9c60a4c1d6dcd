//! The demo shop: a web front end, a product catalog, a cart on Redis, a
//! checkout (with a canary version beside the stable one) that charges a
//! payment service, writes orders to PostgreSQL and publishes to Kafka, and
//! an email worker that consumes the orders and calls an uninstrumented SMTP
//! relay. Traces carry HTTP, RPC, database and messaging semantic-convention
//! attributes, some errors with exception events, retries and slow calls.
//!
//! ```text
//! frontend 2.3.1 ─┬─> product-catalog 1.8.0 ──> postgresql   (large responses)
//! frontend 2.2.0 ─┼─> product-catalog 1.7.3 (only the old frontend still calls it)
//!                 ├─> redis
//!                 ├─> cart ──> redis
//!                 ├─> checkout GET /shipping/quote (canary no different)
//!                 └─> checkout POST /checkout (1.4.2 | 1.5.0-rc.1) ─┬─> cart
//!                                              ├─> payment (a timeout, abandoned by the client, then a retry)
//!                                              ├─> postgresql
//!                                              └─> kafka ~~> email ──> smtp-relay
//! ```
//!
//! So every question of the version and retry views has a visible answer:
//! the canary is slower and fails more on `POST /checkout` only, the old
//! frontend keeps the old catalog alive, payment calls time out and are
//! retried while the payment service works on, and the catalog's large
//! responses cost the frontend time the catalog never sees.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use rand::Rng;

/// A service instance: one OTLP resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) language: &'static str,
}

const FRONTEND: usize = 0;
const CATALOG: usize = 1;
const CART: usize = 2;
const CHECKOUT: usize = 3;
const CHECKOUT_CANARY: usize = 4;
const PAYMENT: usize = 5;
const EMAIL: usize = 6;
const FRONTEND_OLD: usize = 7;
const CATALOG_OLD: usize = 8;

pub(crate) const SERVICES: [Service; 9] = [
    Service { name: "frontend", version: "2.3.1", language: "nodejs" },
    Service { name: "product-catalog", version: "1.8.0", language: "go" },
    Service { name: "cart", version: "3.1.4", language: "dotnet" },
    Service { name: "checkout", version: "1.4.2", language: "go" },
    Service { name: "checkout", version: "1.5.0-rc.1", language: "go" },
    Service { name: "payment", version: "0.9.7", language: "python" },
    Service { name: "email", version: "1.0.3", language: "ruby" },
    Service { name: "frontend", version: "2.2.0", language: "nodejs" },
    Service { name: "product-catalog", version: "1.7.3", language: "go" },
];

/// How long checkout waits for a payment before it gives up.
const PAYMENT_TIMEOUT_MS: u64 = 100;
/// The catalog's product pages, with images: a large answer.
const PRODUCT_RESPONSE_BYTES: i64 = 240_000;

const MS: u64 = 1_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(value: &str) -> Value {
    Value::StringValue(value.to_owned())
}

fn i(value: i64) -> Value {
    Value::IntValue(value)
}

/// One generated trace: spans with the index of the service that emitted them.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) spans: Vec<(usize, Span)>,
}

/// Builds one trace. Times are nanoseconds since the Unix epoch.
struct TraceBuilder<'r, R: Rng> {
    rng: &'r mut R,
    trace_id: [u8; 16],
    trace: Trace,
    /// Whether the request failed as a whole (the front end answers 502).
    failed: bool,
    /// Which front end version serves the trace.
    frontend: usize,
}

/// What a span needs besides its place in the tree.
struct SpanSpec {
    service: usize,
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
}

impl SpanSpec {
    fn new(service: usize, name: impl Into<String>, kind: SpanKind) -> Self {
        Self { service, name: name.into(), kind, attributes: Vec::new() }
    }

    fn attr(mut self, key: &str, value: Value) -> Self {
        self.attributes.push(kv(key, value));
        self
    }
}

impl<R: Rng> TraceBuilder<'_, R> {
    fn new_id<const N: usize>(&mut self) -> [u8; N] {
        let mut id = [0u8; N];
        self.rng.fill(&mut id[..]);
        id[0] |= 1; // never all zeros
        id
    }

    /// A duration around `typical_ms`, now and then ten times slower.
    fn latency(&mut self, typical_ms: u64) -> u64 {
        let jitter = self.rng.random_range(0.6..1.6);
        let slow = if self.rng.random_bool(0.02) { 10.0 } else { 1.0 };
        ((typical_ms * MS) as f64 * jitter * slow) as u64
    }

    fn push(&mut self, spec: SpanSpec, parent: Option<[u8; 8]>, start: u64, end: u64, error: Option<&str>) -> [u8; 8] {
        let span_id = self.new_id::<8>();
        let status = match error {
            Some(message) => Status { code: StatusCode::Error as i32, message: message.to_owned() },
            None => Status::default(),
        };
        let events = error
            .map(|message| {
                vec![Event {
                    time_unix_nano: end.saturating_sub(MS / 2),
                    name: "exception".into(),
                    attributes: vec![
                        kv("exception.type", s("UpstreamError")),
                        kv("exception.message", s(message)),
                        kv(
                            "exception.stacktrace",
                            s("UpstreamError: upstream failed\n    at handler (server.js:42:7)"),
                        ),
                    ],
                    dropped_attributes_count: 0,
                }]
            })
            .unwrap_or_default();
        let span = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x101,
            name: spec.name,
            kind: spec.kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: spec.attributes,
            events,
            status: Some(status),
            ..Default::default()
        };
        self.trace.spans.push((spec.service, span));
        span_id
    }

    /// An HTTP call from `client` to `server`; `inner` adds the server's own
    /// work between `start` and returns when it ends.
    fn http_call(
        &mut self,
        (client, server): (usize, usize),
        parent: [u8; 8],
        start: u64,
        (method, route): (&str, &str),
        status: i64,
        inner: impl FnOnce(&mut Self, [u8; 8], u64) -> u64,
    ) -> u64 {
        let host = SERVICES[server].name;
        let client_spec = SpanSpec::new(client, method, SpanKind::Client)
            .attr("http.request.method", s(method))
            .attr("server.address", s(host))
            .attr("server.port", i(8080))
            .attr("url.full", s(&format!("http://{host}:8080{route}")))
            .attr("http.response.status_code", i(status));
        let client_index = self.trace.spans.len();
        let client_id = self.push(client_spec, Some(parent), start, start, None);
        let server_start = start + MS / 4;
        let server_spec = SpanSpec::new(server, format!("{method} {route}"), SpanKind::Server)
            .attr("http.request.method", s(method))
            .attr("http.route", s(route))
            .attr("http.response.status_code", i(status))
            .attr("url.scheme", s("http"));
        let error = (status >= 500).then_some("internal server error");
        let server_index = self.trace.spans.len();
        let server_id = self.push(server_spec, Some(client_id), server_start, server_start, error);
        let server_end = inner(self, server_id, server_start + MS / 10) + MS / 10;
        self.trace.spans[server_index].1.end_time_unix_nano = server_end;
        let end = server_end + MS / 4;
        let client = &mut self.trace.spans[client_index].1;
        client.end_time_unix_nano = end;
        if status >= 500 {
            client.status = Some(Status { code: StatusCode::Error as i32, message: format!("HTTP {status}") });
        }
        end
    }

    fn db_call(
        &mut self,
        service: usize,
        parent: [u8; 8],
        start: u64,
        system: &str,
        statement: &str,
        typical_ms: u64,
    ) -> u64 {
        let operation = statement.split_whitespace().next().unwrap_or("QUERY");
        let spec = SpanSpec::new(service, operation, SpanKind::Client)
            .attr("db.system", s(system))
            .attr("db.query.text", s(statement))
            .attr("db.namespace", s(if system == "redis" { "0" } else { "shop" }))
            .attr("server.address", s(system));
        let end = start + self.latency(typical_ms);
        self.push(spec, Some(parent), start, end, None);
        end
    }

    fn rpc_call(
        &mut self,
        (client, server): (usize, usize),
        parent: [u8; 8],
        start: u64,
        (rpc_service, method): (&str, &str),
        error: Option<&str>,
        typical_ms: u64,
    ) -> u64 {
        let status = if error.is_some() { 14 } else { 0 };
        let end = start + self.latency(typical_ms);
        let client_id = self.push(
            rpc_spec(client, SpanKind::Client, (rpc_service, method), status),
            Some(parent),
            start,
            end,
            error,
        );
        let server_spec = rpc_spec(server, SpanKind::Server, (rpc_service, method), status);
        self.push(server_spec, Some(client_id), start + MS / 5, end - MS / 5, error);
        end
    }
}

impl<R: Rng> TraceBuilder<'_, R> {
    /// An RPC the client gives up on after `timeout_ms` while the server
    /// works on for `server_ms`: abandoned work. Returns when the client gave up.
    fn timed_out_rpc(
        &mut self,
        (client, server): (usize, usize),
        parent: [u8; 8],
        start: u64,
        (rpc_service, method): (&str, &str),
        timeout_ms: u64,
        server_ms: u64,
    ) -> u64 {
        let end = start + timeout_ms * MS;
        let client_spec = rpc_spec(client, SpanKind::Client, (rpc_service, method), 4);
        let client_id = self.push(client_spec, Some(parent), start, end, Some("deadline exceeded"));
        let server_spec = rpc_spec(server, SpanKind::Server, (rpc_service, method), 0);
        self.push(server_spec, Some(client_id), start + MS / 5, start + server_ms * MS, None);
        end
    }
}

/// One side of a gRPC call, with its status code (4: deadline exceeded, 14: unavailable).
fn rpc_spec(service: usize, kind: SpanKind, (rpc_service, method): (&str, &str), status: i64) -> SpanSpec {
    SpanSpec::new(service, format!("{rpc_service}/{method}"), kind)
        .attr("rpc.system", s("grpc"))
        .attr("rpc.service", s(rpc_service))
        .attr("rpc.method", s(method))
        .attr("rpc.grpc.status_code", i(status))
}

/// Generates one demo trace starting at `start` (ns since the epoch).
pub(crate) fn generate<R: Rng>(rng: &mut R, start: u64) -> Trace {
    let mut b = TraceBuilder { trace_id: [0; 16], rng, trace: Trace::default(), failed: false, frontend: FRONTEND };
    b.trace_id = b.new_id::<16>();
    // One visitor in ten still gets the old front end.
    if b.rng.random_bool(0.1) {
        b.frontend = FRONTEND_OLD;
    }
    let roll: f64 = b.rng.random();
    let (route, method) = match roll {
        r if r < 0.5 => ("/product/{id}", "GET"),
        r if r < 0.8 => ("/cart", "POST"),
        _ => ("/checkout", "POST"),
    };
    let root_spec = SpanSpec::new(b.frontend, format!("{method} {route}"), SpanKind::Server)
        .attr("http.request.method", s(method))
        .attr("http.route", s(route))
        .attr("url.scheme", s("https"))
        .attr("user_agent.original", s("Mozilla/5.0 (X11; Linux x86_64) demo"))
        .attr("enduser.id", s(&format!("user-{}", b.rng.random_range(1..500))));
    let root = b.push(root_spec, None, start, start, None);
    let end = match route {
        "/product/{id}" => browse(&mut b, root, start + MS / 2),
        "/cart" => add_to_cart(&mut b, root, start + MS / 2),
        _ => checkout(&mut b, root, start + MS / 2),
    };
    let failed = b.failed;
    let root_span = &mut b.trace.spans[0].1;
    root_span.end_time_unix_nano = end + MS / 2;
    root_span.attributes.push(kv("http.response.status_code", i(if failed { 502 } else { 200 })));
    if failed {
        root_span.status = Some(Status { code: StatusCode::Error as i32, message: "upstream failed".into() });
    }
    b.trace
}

fn browse<R: Rng>(b: &mut TraceBuilder<'_, R>, parent: [u8; 8], start: u64) -> u64 {
    let (frontend, catalog) =
        if b.frontend == FRONTEND_OLD { (FRONTEND_OLD, CATALOG_OLD) } else { (FRONTEND, CATALOG) };
    let product = b.rng.random_range(1..120);
    let after_cache = b.db_call(frontend, parent, start, "redis", &format!("GET product:{product}"), 1);
    if b.rng.random_bool(0.6) {
        return after_cache; // cache hit
    }
    let client_index = b.trace.spans.len();
    let end = b.http_call((frontend, catalog), parent, after_cache, ("GET", "/products/{id}"), 200, |b, server, t| {
        b.db_call(catalog, server, t, "postgresql", "SELECT id, name, price FROM products WHERE id = $1", 4)
    });
    // The answer takes a while to cross the network (about 50 MB/s): time
    // the frontend waits and the catalog does not see.
    let transfer = b.latency(5);
    let client = &mut b.trace.spans[client_index].1;
    client.attributes.push(kv("http.response.body.size", i(PRODUCT_RESPONSE_BYTES)));
    client.end_time_unix_nano += transfer;
    end + transfer
}

fn add_to_cart<R: Rng>(b: &mut TraceBuilder<'_, R>, parent: [u8; 8], start: u64) -> u64 {
    let frontend = b.frontend;
    let t = b.http_call((frontend, CART), parent, start, ("POST", "/cart/items"), 200, |b, server, t| {
        let t = b.db_call(CART, server, t, "redis", "HGETALL cart:{user}", 1);
        b.db_call(CART, server, t, "redis", "HSET cart:{user} {item} {qty}", 1)
    });
    if !b.rng.random_bool(0.4) {
        return t;
    }
    // A shipping quote, served alike by the canary and the stable checkout.
    let service = if b.rng.random_bool(0.2) { CHECKOUT_CANARY } else { CHECKOUT };
    b.http_call((frontend, service), parent, t, ("GET", "/shipping/quote"), 200, |b, server, t| {
        b.db_call(service, server, t, "postgresql", "SELECT rate FROM shipping_rates WHERE zone = $1", 3)
    })
}

fn checkout<R: Rng>(b: &mut TraceBuilder<'_, R>, parent: [u8; 8], start: u64) -> u64 {
    // One checkout in five goes to the canary, which is slower and fails more.
    let canary = b.rng.random_bool(0.2);
    let (service, extra_ms, failure_rate) = if canary { (CHECKOUT_CANARY, 15, 0.12) } else { (CHECKOUT, 0, 0.03) };
    let frontend = b.frontend;
    b.http_call((frontend, service), parent, start, ("POST", "/checkout"), 200, |b, server, t| {
        let t = b.http_call((service, CART), server, t, ("GET", "/cart/{user}"), 200, |b, cart, t| {
            b.db_call(CART, cart, t, "redis", "HGETALL cart:{user}", 1)
        });
        // A payment attempt now and then times out while the payment
        // service works on; checkout retries it.
        let mut t = t + extra_ms * MS;
        if b.rng.random_bool(failure_rate * 3.0) {
            let server_ms = PAYMENT_TIMEOUT_MS + 20 + b.rng.random_range(0..80);
            t = b.timed_out_rpc(
                (service, PAYMENT),
                server,
                t,
                ("PaymentService", "Charge"),
                PAYMENT_TIMEOUT_MS,
                server_ms,
            );
        }
        let error = b.rng.random_bool(failure_rate).then_some("card declined by issuer");
        let t = b.rpc_call((service, PAYMENT), server, t, ("PaymentService", "Charge"), error, 40);
        if error.is_some() {
            b.failed = true;
            let server_span = b.trace.spans.iter_mut().find(|(_, s)| s.span_id == server.to_vec()).map(|(_, s)| s);
            if let Some(span) = server_span {
                span.status = Some(Status { code: StatusCode::Error as i32, message: "payment failed".into() });
            }
            return t;
        }
        let t = b.db_call(service, server, t, "postgresql", "INSERT INTO orders (user_id, total) VALUES ($1, $2)", 6);
        publish_order(b, service, server, t)
    })
}

fn publish_order<R: Rng>(b: &mut TraceBuilder<'_, R>, service: usize, parent: [u8; 8], start: u64) -> u64 {
    let messaging = |service, name, kind| {
        SpanSpec::new(service, name, kind)
            .attr("messaging.system", s("kafka"))
            .attr("messaging.destination.name", s("orders"))
            .attr("messaging.operation.type", s(if kind == SpanKind::Producer { "publish" } else { "process" }))
    };
    let end = start + b.latency(2);
    let producer = b.push(messaging(service, "publish orders", SpanKind::Producer), Some(parent), start, end, None);
    // The email worker picks the message up a little later, after the checkout answered.
    let consume_start = end + b.latency(20);
    let consumer_index = b.trace.spans.len();
    let consumer = b.push(
        messaging(EMAIL, "process orders", SpanKind::Consumer),
        Some(producer),
        consume_start,
        consume_start,
        None,
    );
    let smtp = SpanSpec::new(EMAIL, "smtp send", SpanKind::Client)
        .attr("peer.service", s("smtp-relay"))
        .attr("server.address", s("smtp.example.net"))
        .attr("network.protocol.name", s("smtp"));
    let smtp_end = consume_start + MS + b.latency(80);
    b.push(smtp, Some(consumer), consume_start + MS, smtp_end, None);
    b.trace.spans[consumer_index].1.end_time_unix_nano = smtp_end + MS;
    end
}

/// Groups traces into one export request: one resource per service instance.
pub(crate) fn export_request(traces: &[Trace]) -> ExportTraceServiceRequest {
    let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for trace in traces {
        for (service, span) in &trace.spans {
            per_service[*service].push(span.clone());
        }
    }
    let resource_spans = per_service
        .into_iter()
        .enumerate()
        .filter(|(_, spans)| !spans.is_empty())
        .map(|(index, spans)| ResourceSpans {
            resource: Some(resource(index)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "spanlake-demo".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn resource(index: usize) -> Resource {
    let service = SERVICES[index];
    Resource {
        attributes: vec![
            kv("service.name", s(service.name)),
            kv("service.version", s(service.version)),
            kv("service.namespace", s("shop")),
            kv("deployment.environment.name", s("demo")),
            kv("host.name", s(&format!("{}-{}", service.name, index))),
            kv("k8s.namespace.name", s("shop")),
            kv("k8s.pod.name", s(&format!("{}-{}-7d9f", service.name, service.version.replace('.', "-")))),
            kv("telemetry.sdk.language", s(service.language)),
            kv("telemetry.sdk.name", s("opentelemetry")),
        ],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn traces_are_well_formed_trees() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let trace = generate(&mut rng, 1_700_000_000_000_000_000);
            let roots = trace.spans.iter().filter(|(_, s)| s.parent_span_id.is_empty()).count();
            assert_eq!(roots, 1);
            for (_, span) in &trace.spans {
                assert!(span.end_time_unix_nano >= span.start_time_unix_nano, "{}", span.name);
                if !span.parent_span_id.is_empty() {
                    assert!(trace.spans.iter().any(|(_, p)| p.span_id == span.parent_span_id));
                }
            }
        }
    }

    #[test]
    fn every_version_and_retry_question_has_an_answer() {
        let mut rng = StdRng::seed_from_u64(5);
        let traces: Vec<_> = (0..3000).map(|_| generate(&mut rng, 1_700_000_000_000_000_000)).collect();
        let spans: Vec<&(usize, Span)> = traces.iter().flat_map(|t| &t.spans).collect();
        let parent_of = |span: &Span| spans.iter().find(|(_, p)| p.span_id == span.parent_span_id);
        // Only the old front end calls the old catalog, and it does.
        let old_catalog: Vec<_> =
            spans.iter().filter(|(s, sp)| *s == CATALOG_OLD && sp.kind == SpanKind::Server as i32).collect();
        assert!(!old_catalog.is_empty());
        assert!(old_catalog.iter().all(|(_, s)| parent_of(s).is_some_and(|(p, _)| *p == FRONTEND_OLD)));
        // Timed-out payments run on after their client gave up.
        let abandoned = spans
            .iter()
            .filter(|(s, sp)| {
                *s == PAYMENT
                    && parent_of(sp).is_some_and(|(_, c)| {
                        c.status.as_ref().is_some_and(|st| st.message == "deadline exceeded")
                            && sp.end_time_unix_nano > c.end_time_unix_nano
                    })
            })
            .count();
        assert!(abandoned > 0);
        // The canary serves shipping quotes too; the catalog's answers are large.
        assert!(spans.iter().any(|(s, sp)| *s == CHECKOUT_CANARY && sp.name == "GET /shipping/quote"));
        assert!(spans.iter().any(|(_, sp)| sp.attributes.iter().any(|kv| kv.key == "http.response.body.size")));
    }

    #[test]
    fn the_canary_and_errors_show_up() {
        let mut rng = StdRng::seed_from_u64(11);
        let traces: Vec<_> = (0..500).map(|_| generate(&mut rng, 1_700_000_000_000_000_000)).collect();
        let request = export_request(&traces);
        let versions: Vec<_> =
            request.resource_spans.iter().map(|rs| rs.resource.as_ref().unwrap().attributes[1].value.clone()).collect();
        assert!(versions.contains(&Some(AnyValue { value: Some(s("1.5.0-rc.1")) })));
        let errors = traces.iter().flat_map(|t| &t.spans).filter(|(_, s)| s.status.as_ref().unwrap().code == 2).count();
        assert!(errors > 0);
    }
}
