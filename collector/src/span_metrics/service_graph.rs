//! Service graph metrics, as Tempo's metrics generator makes them: a CLIENT
//! (or PRODUCER) span and the SERVER (or CONSUMER) span whose parent it is
//! are one call from the client's service to the server's. Each half waits
//! in memory for the other (`pair_wait`); a call counts when both are in.
//! A half that waits in vain counts alone where the other side can be named
//! (virtual nodes): a root SERVER span is a call from `user`, a CLIENT
//! span with a remote service (`peer.service`, `db.system`, ... by
//! spanlake's remote-service rule) a call to it. Otherwise it is an
//! unpaired span. Waiting halves are bounded (`max_pending`), and so are
//! the edges (`max_series`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use arrow::array::Array;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use spanlake_storage::TenantId;

use super::{Histograms, OVERFLOW, SpanMetricsConfig, Spans, seconds_histogram};

/// The caller of root SERVER spans, as Tempo names it.
const USER: &str = "user";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct EdgeLabels {
    tenant: String,
    client: String,
    server: String,
    /// Empty for two instrumented services; `virtual_node`, `database` or
    /// `messaging_system` otherwise.
    connection_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

/// One side of a call, waiting for the other.
#[derive(Debug, Clone)]
struct Half {
    service: String,
    error: bool,
    seconds: f64,
    messaging: bool,
    /// Where a lone client half points: (remote service, connection type).
    remote: Option<(String, &'static str)>,
}

/// A call's place: tenant, trace id and the client span's id.
type CallKey = (TenantId, [u8; 16], [u8; 8]);

#[derive(Debug, Default)]
struct Pending {
    clients: HashMap<CallKey, Half>,
    servers: HashMap<CallKey, Half>,
    /// When each half arrived, oldest first (a half gone already is skipped).
    arrivals: VecDeque<(Instant, CallKey, Side)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

#[derive(Debug)]
pub(super) struct ServiceGraph {
    requests: Family<EdgeLabels, Counter>,
    failed: Family<EdgeLabels, Counter>,
    server_seconds: Histograms<EdgeLabels>,
    client_seconds: Histograms<EdgeLabels>,
    unpaired: Family<TenantLabels, Counter>,
    dropped: Family<TenantLabels, Counter>,
    pending: Mutex<Pending>,
    edges: Mutex<HashSet<EdgeLabels>>,
    config: SpanMetricsConfig,
}

impl ServiceGraph {
    pub(super) fn new(config: &SpanMetricsConfig) -> Self {
        Self {
            requests: Family::default(),
            failed: Family::default(),
            server_seconds: Family::new_with_constructor(seconds_histogram),
            client_seconds: Family::new_with_constructor(seconds_histogram),
            unpaired: Family::default(),
            dropped: Family::default(),
            pending: Mutex::default(),
            edges: Mutex::default(),
            config: config.clone(),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register("traces_service_graph_request", "Calls between two services", self.requests.clone());
        registry.register(
            "traces_service_graph_request_failed",
            "Calls that failed on either side",
            self.failed.clone(),
        );
        registry.register(
            "traces_service_graph_request_server_seconds",
            "Call durations on the server side",
            self.server_seconds.clone(),
        );
        registry.register(
            "traces_service_graph_request_client_seconds",
            "Call durations on the client side",
            self.client_seconds.clone(),
        );
        registry.register(
            "traces_service_graph_unpaired_spans",
            "Client or server spans whose other half did not arrive in time",
            self.unpaired.clone(),
        );
        registry.register(
            "traces_service_graph_dropped_spans",
            "Client or server spans not paired because too many were waiting",
            self.dropped.clone(),
        );
    }

    pub(super) fn record(&self, tenant: &TenantId, spans: &Spans, now: Instant) {
        let mut guard = self.pending.lock().expect("service graph pending");
        let pending = &mut *guard;
        self.expire(pending, now.checked_sub(self.config.pair_wait));
        for row in 0..spans.names.len() {
            let kind = spans.kinds.value(row);
            let side = match kind {
                "CLIENT" | "PRODUCER" => Side::Client,
                "SERVER" | "CONSUMER" => Side::Server,
                _ => continue,
            };
            let half = Half {
                service: spans.service(row).to_owned(),
                error: spans.statuses.value(row) == "ERROR",
                seconds: spans.seconds(row),
                messaging: matches!(kind, "PRODUCER" | "CONSUMER"),
                remote: remote(spans, row),
            };
            let trace: [u8; 16] = spans.trace_ids.value(row).try_into().expect("16-byte trace ids");
            let key_span = match side {
                Side::Client => Some(spans.span_ids.value(row)),
                Side::Server => (!spans.parents.is_null(row)).then(|| spans.parents.value(row)),
            };
            let Some(span) = key_span else {
                // A root server span: its caller is not instrumented.
                self.count(tenant, USER, &half.service, "virtual_node", None, Some(&half));
                continue;
            };
            let key: CallKey = (tenant.clone(), trace, span.try_into().expect("8-byte span ids"));
            let (mine, theirs) = match side {
                Side::Client => (&mut pending.clients, &mut pending.servers),
                Side::Server => (&mut pending.servers, &mut pending.clients),
            };
            if let Some(other) = theirs.remove(&key) {
                let (client, server) = if side == Side::Client { (half, other) } else { (other, half) };
                let connection = if client.messaging || server.messaging { "messaging_system" } else { "" };
                self.count(tenant, &client.service, &server.service, connection, Some(&client), Some(&server));
                continue;
            }
            if mine.len() + theirs.len() >= self.config.max_pending {
                self.dropped.get_or_create(&TenantLabels { tenant: tenant.as_str().to_owned() }).inc();
                continue;
            }
            mine.insert(key.clone(), half);
            pending.arrivals.push_back((now, key, side));
        }
    }

    /// Counts, alone, the halves that arrived before `before`.
    fn expire(&self, pending: &mut Pending, before: Option<Instant>) {
        let Some(before) = before else { return };
        while let Some((at, ..)) = pending.arrivals.front() {
            if *at > before {
                break;
            }
            let (_, key, side) = pending.arrivals.pop_front().expect("a front");
            let half = match side {
                Side::Client => pending.clients.remove(&key),
                Side::Server => pending.servers.remove(&key),
            };
            let Some(half) = half else { continue };
            match (side, &half.remote) {
                (Side::Client, Some((remote, connection))) => {
                    self.count(&key.0, &half.service, remote, connection, Some(&half), None);
                }
                _ => {
                    self.unpaired.get_or_create(&TenantLabels { tenant: key.0.as_str().to_owned() }).inc();
                }
            }
        }
    }

    fn count(
        &self,
        tenant: &TenantId,
        client: &str,
        server: &str,
        connection_type: &str,
        client_half: Option<&Half>,
        server_half: Option<&Half>,
    ) {
        let mut labels = EdgeLabels {
            tenant: tenant.as_str().to_owned(),
            client: client.to_owned(),
            server: server.to_owned(),
            connection_type: connection_type.to_owned(),
        };
        {
            let mut edges = self.edges.lock().expect("service graph edges");
            if !edges.contains(&labels) && !(edges.len() < self.config.max_series && edges.insert(labels.clone())) {
                labels.client = OVERFLOW.to_owned();
                labels.server = OVERFLOW.to_owned();
            }
        }
        self.requests.get_or_create(&labels).inc();
        if client_half.is_some_and(|h| h.error) || server_half.is_some_and(|h| h.error) {
            self.failed.get_or_create(&labels).inc();
        }
        if let Some(half) = client_half {
            self.client_seconds.get_or_create(&labels).observe(half.seconds);
        }
        if let Some(half) = server_half {
            self.server_seconds.get_or_create(&labels).observe(half.seconds);
        }
    }
}

/// Where a client span calls, when it names it: the remote service (from
/// `peer.service`, `db.system`, ... as storage derives it) and the kind of
/// node it is.
fn remote(spans: &Spans, row: usize) -> Option<(String, &'static str)> {
    let name = Spans::text(&spans.remotes, row)?;
    let connection = if Spans::text(&spans.db_systems, row).is_some() {
        "database"
    } else if Spans::text(&spans.messaging_systems, row).is_some() {
        "messaging_system"
    } else {
        "virtual_node"
    };
    Some((name.to_owned(), connection))
}
