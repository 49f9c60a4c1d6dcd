//! Dependency edges as partials that add up, with Zipkin's linking rules.
//!
//! A call is an edge between two services, anchored at one span: the
//! SERVER or CONSUMER span of a linked call, the CLIENT or PRODUCER span of
//! a leaf call (a database, an uninstrumented peer). Its caller is, in
//! order of preference, the CLIENT or PRODUCER span that shares its id
//! (Zipkin's shared spans), else its parent when that is a CLIENT or
//! PRODUCER span or a span of another service. A root SERVER or CONSUMER
//! span that names its caller (`remote_service_name`) is a call too. A
//! CLIENT or PRODUCER span that names its remote service and that no SERVER
//! or CONSUMER span claims (as child or as sharer) is a leaf call. A call is
//! an error when either side is; it lasts as long as its client span, or
//! its server span when it has no client span.
//!
//! Every flush turns its spans into a [`Partial`]: the calls it can link
//! itself, counted per anchor slot ([`SLOT_NS`]), edge and duration bucket,
//! and the *open ends* whose other half it did not hold: servers whose
//! parent is in another flush, clients that no server claimed (counted as
//! leaf calls for now; but a client span with `db.system`, a database
//! call, is a leaf at once) and every producer (a message may have many
//! consumers). Open ends
//! of different partials are matched ([`Partial::resolve`]): a match adds
//! the linked call and takes back the leaf call it was counted as, so
//! counts add up across partials and any window is the sum of the calls of
//! its slots.
//!
//! ```text
//! flush ──> partial: calls + open ends ──┐
//!                                        ├─ resolve (upkeep, and queries over what upkeep has not seen yet)
//!   pending open ends (< PENDING_FOR) ───┘     └─> calls (+ linked, − leaves claimed) + open ends still waiting
//! ```
//!
//! Open ends wait for their other half for a while after they arrive
//! (`EdgesConfig::pending_for`), then count as they are: a call whose two
//! halves reach spanlake further apart than that stays a leaf call and an
//! unlinked server. Some cases are linked only within one flush: a server
//! whose caller is a span of another service that is no client (an
//! uninstrumented client), and a Zipkin shared client span for a server
//! that is a root or whose parent is in its flush. Windows are whole slots: a window's ragged ends
//! are rounded inwards to [`SLOT_NS`].

mod file;
mod link;

use std::collections::BTreeMap;

pub use file::{from_batches, read, to_batch, write};
pub use link::of_spans;

/// Calls are counted per 10 seconds of their anchor's start.
pub const SLOT_NS: i64 = 10_000_000_000;
/// Files of calls are merged up to this level: a file of the top level
/// holds the calls of `min_files²` upkeep rounds (about half an hour).
pub const MAX_LEVEL: u8 = 3;
/// Duration buckets per doubling: a bucket is 4.4% wide.
pub const BUCKETS_PER_OCTAVE: f64 = 16.0;

/// An id column's value as an array of its length.
fn id<const N: usize>(bytes: &[u8]) -> Result<[u8; N], arrow::error::ArrowError> {
    bytes
        .try_into()
        .map_err(|_| arrow::error::ArrowError::SchemaError(format!("an id of {} bytes, not {N}", bytes.len())))
}

/// The slot of a time, ns.
pub fn slot_of(time_ns: i64) -> i64 {
    time_ns.div_euclid(SLOT_NS) * SLOT_NS
}

/// The duration bucket of a call: `floor(log2(ns) * BUCKETS_PER_OCTAVE)`.
pub fn bucket_of(duration_ns: i64) -> i32 {
    ((duration_ns.max(1) as f64).log2() * BUCKETS_PER_OCTAVE).floor() as i32
}

/// Which calls a row counts: an edge, a slot and a duration bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey {
    pub slot: i64,
    pub parent: String,
    pub child: String,
    pub bucket: i32,
}

impl CallKey {
    /// Sorts before every key of the slot at `slot`.
    fn first_of(slot: i64) -> Self {
        Self { slot, parent: String::new(), child: String::new(), bucket: i32::MIN }
    }
}

/// Calls of one key. Counts may be negative in a partial that takes back
/// leaf calls counted elsewhere; the extremes are those of the calls added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallStats {
    pub calls: i64,
    pub errors: i64,
    pub min_ns: i64,
    pub max_ns: i64,
}

impl Default for CallStats {
    fn default() -> Self {
        Self { calls: 0, errors: 0, min_ns: i64::MAX, max_ns: i64::MIN }
    }
}

impl CallStats {
    pub fn add(&mut self, other: &CallStats) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// A server or consumer span that waits for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenServer {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// `None` for spans without `service.name`: they claim clients, but
    /// their calls have no edge.
    pub service: Option<String>,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub error: bool,
    /// Storage clock time of the flush that wrote it.
    pub arrived_ns: i64,
}

/// A client or producer span that a server of another flush may claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenClient {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub service: Option<String>,
    pub remote: Option<String>,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub error: bool,
    /// Counted as a leaf call to `remote` until a server claims it.
    pub leaf: bool,
    pub producer: bool,
    pub arrived_ns: i64,
}

/// Calls and open ends of some spans; partials of disjoint spans add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub calls: BTreeMap<CallKey, CallStats>,
    pub servers: Vec<OpenServer>,
    pub clients: Vec<OpenClient>,
}

impl Partial {
    /// Counts `calls` (negative to take them back) of an edge; an edge
    /// with a side without a service counts nothing.
    pub(crate) fn count(
        &mut self,
        (parent, child): (Option<&str>, Option<&str>),
        anchor_ns: i64,
        duration_ns: i64,
        error: bool,
        calls: i64,
    ) {
        let (Some(parent), Some(child)) = (parent, child) else { return };
        let key = CallKey {
            slot: slot_of(anchor_ns),
            parent: parent.to_owned(),
            child: child.to_owned(),
            bucket: bucket_of(duration_ns),
        };
        let stats = if calls > 0 {
            CallStats { calls, errors: i64::from(error) * calls, min_ns: duration_ns, max_ns: duration_ns }
        } else {
            CallStats { calls, errors: i64::from(error) * calls, ..CallStats::default() }
        };
        self.calls.entry(key).or_default().add(&stats);
    }

    /// Adds `other`'s calls and open ends, as they are.
    pub fn absorb(&mut self, other: Partial) {
        for (key, stats) in other.calls {
            self.calls.entry(key).or_default().add(&stats);
        }
        self.servers.extend(other.servers);
        self.clients.extend(other.clients);
    }

    /// Matches open ends with each other: a server and its caller become a
    /// linked call, a leaf call whose client a server claims is taken back.
    /// Matched servers and claimed clients (but producers) close.
    pub fn resolve(&mut self) {
        link::resolve(self);
    }

    /// Closes the open ends that arrived before `arrived_before_ns`: they
    /// count as they are (leaf calls, unlinked servers).
    pub fn close(&mut self, arrived_before_ns: i64) {
        self.servers.retain(|s| s.arrived_ns >= arrived_before_ns);
        self.clients.retain(|c| c.arrived_ns >= arrived_before_ns);
    }

    /// The calls whose slot lies in `[start_ns, end_ns)`.
    pub fn calls_in(&self, start_ns: i64, end_ns: i64) -> impl Iterator<Item = (&CallKey, &CallStats)> {
        self.calls.range(CallKey::first_of(start_ns)..CallKey::first_of(end_ns))
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.servers.is_empty() && self.clients.is_empty()
    }

    /// The earliest and latest time of its calls' slots and open ends.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let times = self
            .calls
            .keys()
            .map(|k| k.slot)
            .chain(self.servers.iter().map(|s| s.start_ns))
            .chain(self.clients.iter().map(|c| c.start_ns));
        times.fold(None, |range, t| Some(range.map_or((t, t), |(lo, hi): (i64, i64)| (lo.min(t), hi.max(t)))))
    }
}

#[cfg(test)]
mod tests;
