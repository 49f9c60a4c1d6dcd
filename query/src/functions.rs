//! spanlake's own SQL functions, registered in every session. `docs/sql.md`
//! shows each with an example.
//!
//! - `id_to_hex(id)`, `id_from_hex(text)`: ids as hex text and back;
//!   `span_key(trace_id, span_id)`: both as one value, for joins by place.
//! - `duration_ms(duration_ns)`: nanoseconds as fractional milliseconds.
//! - `attr(key)`, `span_attr(key)`, `resource_attr(key)`: an attribute by
//!   key, wherever spanlake stored it (`attributes.rs`).
//! - `to_json(value)`: maps, lists and structs as JSON text.
//! - `span_has_event(events, name)`: whether a span has an event of a name;
//!   `nested_attribute_is(events_or_links, key, value)`: whether one of them
//!   has an attribute of that value; `nested_id_is(links, field, id)`:
//!   whether one of its links points at that span or trace;
//!   `event_offsets(events, start_time)`: each event's nanoseconds since
//!   the span's start; `event_attribute_sum(events, key, where_key,
//!   where_value)`: an integer attribute summed over matching events (`events.rs`).
//! - `spans_below(span_id, parent_span_id, marked)`, `spans_above(…)`:
//!   aggregates over one trace's spans, the ids of the spans below (or
//!   above) a marked one, for TraceQL's `>>` and `<<` (`span_walk.rs`).
//! - Table functions over one trace's tree (`trace_tree.rs`):
//!   `trace_tree(trace_id)`, `descendants(trace_id, span_id)`,
//!   `critical_path(trace_id)`.
//! - Table functions of the version and retry analyses (`analysis.rs`):
//!   `versions`, `version_compare`, `version_callers`, `version_callees`,
//!   `retries`.

mod analysis;
mod attributes;
mod events;
mod scalar;
mod span_walk;
mod trace_tree;

use std::sync::Arc;

use datafusion::catalog::Session;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub(crate) use attributes::Attributes;
pub(crate) use scalar::ID_FROM_HEX;

pub(crate) fn register(ctx: &SessionContext) {
    for udf in scalar() {
        ctx.register_udf(Arc::unwrap_or_clone(udf));
    }
    for udaf in aggregate() {
        ctx.register_udaf(Arc::unwrap_or_clone(udaf));
    }
    for (name, function) in trace_tree::functions().into_iter().chain(analysis::functions()) {
        ctx.register_udtf(name, Arc::clone(&function));
    }
}

/// The session a table function's scan runs its own queries in: the
/// query's, with its tables, limits and snapshot source.
fn session_of(state: &dyn Session, function: &str) -> datafusion::common::Result<SessionContext> {
    match state.as_any().downcast_ref::<SessionState>() {
        Some(state) => Ok(SessionContext::new_with_state(state.clone())),
        None => datafusion::common::exec_err!("{function} needs a spanlake session"),
    }
}

/// The scalar functions: also what a query worker needs to run plans.
pub(crate) fn scalar() -> Vec<Arc<ScalarUDF>> {
    let mut udfs: Vec<ScalarUDF> = scalar::functions();
    udfs.extend(attributes::functions());
    udfs.extend([
        ScalarUDF::from(events::SpanHasEvent::default()),
        ScalarUDF::from(events::NestedAttributeIs::default()),
        ScalarUDF::from(events::NestedIdIs::default()),
        ScalarUDF::from(events::EventOffsets::default()),
        ScalarUDF::from(events::EventAttributeSum::default()),
    ]);
    udfs.into_iter().map(Arc::new).collect()
}

/// The aggregate functions: also what a query worker needs to run plans.
pub(crate) fn aggregate() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(span_walk::SpanWalk::below())),
        Arc::new(AggregateUDF::from(span_walk::SpanWalk::above())),
    ]
}
