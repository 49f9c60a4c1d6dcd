//! The linking rules (see `edges.rs`): over the spans of a flush, and over
//! open ends of several partials.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
use arrow::error::ArrowError;

use super::{OpenClient, OpenServer, Partial, id};
use crate::schema;
use crate::trace_index::strings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// SERVER or CONSUMER.
    Server,
    Client,
    Producer,
    Other,
}

impl Kind {
    fn of(name: &str) -> Self {
        match name {
            "SERVER" | "CONSUMER" => Self::Server,
            "CLIENT" => Self::Client,
            "PRODUCER" => Self::Producer,
            _ => Self::Other,
        }
    }

    fn calls_out(self) -> bool {
        matches!(self, Self::Client | Self::Producer)
    }
}

/// What linking needs of one span.
struct Node {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    service: Option<String>,
    kind: Kind,
    remote: Option<String>,
    /// A client span with `db.system`: a database call, which no server
    /// span answers.
    database: bool,
    error: bool,
    start_ns: i64,
    duration_ns: i64,
}

fn nodes(batch: &RecordBatch) -> Result<Vec<Node>, ArrowError> {
    let column = |name: &str| {
        batch.column_by_name(name).cloned().ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))
    };
    let (trace, span, parent) = (column(schema::TRACE_ID)?, column(schema::SPAN_ID)?, column(schema::PARENT_SPAN_ID)?);
    let (trace, span, parent) =
        (trace.as_fixed_size_binary(), span.as_fixed_size_binary(), parent.as_fixed_size_binary());
    let start = column(schema::START_TIME)?;
    let start = start.as_primitive::<TimestampNanosecondType>();
    let duration = column(schema::DURATION_NS)?;
    let duration = duration.as_primitive::<Int64Type>();
    let (service, kind, remote, status) = (
        strings(batch, schema::SERVICE_NAME)?,
        strings(batch, schema::SPAN_KIND)?,
        strings(batch, schema::REMOTE_SERVICE_NAME)?,
        strings(batch, schema::STATUS_CODE)?,
    );
    let database = schema::dedicated_for(schema::Level::Span, schema::attr::DB_SYSTEM)
        .and_then(|d| batch.column_by_name(d.column))
        .ok_or_else(|| ArrowError::SchemaError("no db.system column".into()))?;
    (0..batch.num_rows())
        .map(|row| {
            Ok(Node {
                trace_id: id(trace.value(row))?,
                span_id: id(span.value(row))?,
                parent_span_id: if parent.is_null(row) { None } else { Some(id(parent.value(row))?) },
                service: (!service.is_null(row)).then(|| service.value(row).to_owned()),
                kind: Kind::of(kind.value(row)),
                remote: (!remote.is_null(row)).then(|| remote.value(row).to_owned()),
                database: database.is_valid(row),
                error: status.value(row) == schema::STATUS_CODES[2],
                start_ns: start.value(row),
                duration_ns: duration.value(row).max(0),
            })
        })
        .collect()
}

/// The partial of the spans of one flush; open ends carry `arrived_ns`.
pub fn of_spans(batches: &[RecordBatch], arrived_ns: i64) -> Result<Partial, ArrowError> {
    let mut spans = Vec::new();
    for batch in batches {
        spans.extend(nodes(batch)?);
    }
    let mut by_id: HashMap<([u8; 16], [u8; 8]), Vec<usize>> = HashMap::new();
    // (trace, id) of the spans servers name: their parent, and their own id
    // (which a shared client span has too).
    let mut claimed: HashSet<([u8; 16], [u8; 8])> = HashSet::new();
    for (i, span) in spans.iter().enumerate() {
        by_id.entry((span.trace_id, span.span_id)).or_default().push(i);
        if span.kind == Kind::Server {
            claimed.insert((span.trace_id, span.span_id));
            if let Some(parent) = span.parent_span_id {
                claimed.insert((span.trace_id, parent));
            }
        }
    }
    let mut partial = Partial::default();
    for server in spans.iter().filter(|s| s.kind == Kind::Server) {
        let with_id = |id: [u8; 8]| by_id.get(&(server.trace_id, id)).into_iter().flatten().map(|&i| &spans[i]);
        let caller = with_id(server.span_id).find(|p| p.kind.calls_out()).or_else(|| {
            let parent = server.parent_span_id?;
            // SQL's `p.service <> c.service`: false when either is missing.
            with_id(parent)
                .find(|p| p.kind.calls_out() || matches!((&p.service, &server.service), (Some(a), Some(b)) if a != b))
        });
        match caller {
            Some(caller) => {
                let duration = if caller.kind.calls_out() { caller.duration_ns } else { server.duration_ns };
                let error = server.error || caller.error;
                let edge = (caller.service.as_deref(), server.service.as_deref());
                partial.count(edge, server.start_ns, duration, error, 1);
            }
            // Only a server whose parent is in another flush waits for it.
            None if server.parent_span_id.is_some_and(|p| with_id(p).next().is_none()) => {
                partial.servers.push(OpenServer {
                    trace_id: server.trace_id,
                    span_id: server.span_id,
                    parent_span_id: server.parent_span_id,
                    service: server.service.clone(),
                    start_ns: server.start_ns,
                    duration_ns: server.duration_ns,
                    error: server.error,
                    arrived_ns,
                })
            }
            None => {}
        }
        if let (None, Some(remote)) = (server.parent_span_id, &server.remote) {
            let edge = (Some(remote.as_str()), server.service.as_deref());
            partial.count(edge, server.start_ns, server.duration_ns, server.error, 1);
        }
    }
    for client in spans.iter().filter(|s| s.kind.calls_out()) {
        let is_claimed = claimed.contains(&(client.trace_id, client.span_id));
        let leaf = !is_claimed && client.remote.is_some();
        if leaf {
            let edge = (client.service.as_deref(), client.remote.as_deref());
            partial.count(edge, client.start_ns, client.duration_ns, client.error, 1);
        }
        let producer = client.kind == Kind::Producer;
        if (!is_claimed && !client.database) || producer {
            partial.clients.push(OpenClient {
                trace_id: client.trace_id,
                span_id: client.span_id,
                service: client.service.clone(),
                remote: client.remote.clone(),
                start_ns: client.start_ns,
                duration_ns: client.duration_ns,
                error: client.error,
                leaf,
                producer,
                arrived_ns,
            });
        }
    }
    Ok(partial)
}

/// See [`Partial::resolve`].
pub(super) fn resolve(partial: &mut Partial) {
    let mut clients: HashMap<([u8; 16], [u8; 8]), Vec<usize>> = HashMap::new();
    for (i, client) in partial.clients.iter().enumerate() {
        clients.entry((client.trace_id, client.span_id)).or_default().push(i);
    }
    let mut claimed = HashSet::new();
    let mut linked = Vec::new();
    let mut waiting = Vec::new();
    for server in std::mem::take(&mut partial.servers) {
        claimed.insert((server.trace_id, server.span_id));
        if let Some(parent) = server.parent_span_id {
            claimed.insert((server.trace_id, parent));
        }
        let with_id = |id: [u8; 8]| clients.get(&(server.trace_id, id)).and_then(|found| found.first()).copied();
        match with_id(server.span_id).or_else(|| with_id(server.parent_span_id?)) {
            Some(caller) => linked.push((caller, server)),
            None => waiting.push(server),
        }
    }
    for (caller, server) in linked {
        let caller = &partial.clients[caller];
        let (parent, error, duration) = (caller.service.clone(), server.error || caller.error, caller.duration_ns);
        partial.count((parent.as_deref(), server.service.as_deref()), server.start_ns, duration, error, 1);
    }
    partial.servers = waiting;
    let mut taken_back = Vec::new();
    partial.clients.retain_mut(|client| {
        if !claimed.contains(&(client.trace_id, client.span_id)) {
            return true;
        }
        if client.leaf {
            taken_back.push((
                client.service.clone(),
                client.remote.clone(),
                client.start_ns,
                client.duration_ns,
                client.error,
            ));
            client.leaf = false;
        }
        client.producer
    });
    for (service, remote, start, duration, error) in taken_back {
        partial.count((service.as_deref(), remote.as_deref()), start, duration, error, -1);
    }
}
