//! Structural operators (`>`, `>>`, `<`, `<<`, `~`, negated `!>`, union
//! `&>`, ...) as SQL: a span's place in its trace is `span_key(trace_id,
//! span_id)`, so "its parent is one of those spans" is an `IN` over the
//! left side's keys, which DataFusion runs as a hash semi-join; ancestors
//! and descendants are found by walking each trace's spans once, in an
//! aggregate (`functions/span_walk.rs`).
//!
//! `{A} op {B}` yields spans of B related to some span of A, as Tempo does;
//! a union form yields those and the spans of A related to them. Only
//! spans inside the search window are walked (a parent outside it is not
//! seen), and ancestors and descendants only in traces holding spans of
//! both sides.

use spanlake_storage::schema::{PARENT_SPAN_ID, SPAN_ID, START_TIME, TRACE_ID};

use super::TraceQlError;
use super::ast::{Spanset, SpansetOp};
use super::sql::Compiler;
use crate::engine::SPANS_TABLE;

/// How B's spans relate to A's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Child,
    Descendant,
    Parent,
    Ancestor,
    Sibling,
}

impl Relation {
    /// The relation seen from the other side: A is B's parent when B is
    /// A's child.
    fn inverse(self) -> Self {
        match self {
            Self::Child => Self::Parent,
            Self::Descendant => Self::Ancestor,
            Self::Parent => Self::Child,
            Self::Ancestor => Self::Descendant,
            Self::Sibling => Self::Sibling,
        }
    }
}

/// A condition built of key lookups, so that its negation can be pushed
/// down to `NOT IN` (which DataFusion plans as an anti-join) instead of a
/// `NOT` over subqueries.
enum Test {
    In {
        key: String,
        keys: String,
        negated: bool,
    },
    /// A condition without subqueries.
    Plain {
        sql: String,
        negated: bool,
    },
    All(Vec<Test>),
    Any(Vec<Test>),
}

impl Test {
    fn negate(self) -> Self {
        match self {
            Self::In { key, keys, negated } => Self::In { key, keys, negated: !negated },
            Self::Plain { sql, negated } => Self::Plain { sql, negated: !negated },
            Self::All(tests) => Self::Any(tests.into_iter().map(Self::negate).collect()),
            Self::Any(tests) => Self::All(tests.into_iter().map(Self::negate).collect()),
        }
    }

    fn sql(&self) -> String {
        let join = |tests: &[Test], joiner: &str| {
            format!("({})", tests.iter().map(Self::sql).collect::<Vec<_>>().join(joiner))
        };
        match self {
            Self::In { key, keys, negated } => format!("{key} {}IN ({keys})", if *negated { "NOT " } else { "" }),
            Self::Plain { sql, negated: false } => format!("({sql})"),
            Self::Plain { sql, negated: true } => format!("NOT ({sql})"),
            Self::All(tests) => join(tests, " AND "),
            Self::Any(tests) => join(tests, " OR "),
        }
    }
}

/// `span_key(trace_id, span)`: a span's place in its trace.
pub(super) fn key(span: &str) -> String {
    format!("span_key({TRACE_ID}, {span})")
}

impl Compiler<'_> {
    pub(super) fn structural(
        &mut self,
        op: SpansetOp,
        left: &Spanset,
        right: &Spanset,
    ) -> Result<String, TraceQlError> {
        let (a, b) = (self.spanset(left)?, self.spanset(right)?);
        let (relation, form) = match op {
            SpansetOp::Child => (Relation::Child, Form::Plain),
            SpansetOp::Descendant => (Relation::Descendant, Form::Plain),
            SpansetOp::Parent => (Relation::Parent, Form::Plain),
            SpansetOp::Ancestor => (Relation::Ancestor, Form::Plain),
            SpansetOp::Sibling => (Relation::Sibling, Form::Plain),
            SpansetOp::NotChild => (Relation::Child, Form::Negated),
            SpansetOp::NotDescendant => (Relation::Descendant, Form::Negated),
            SpansetOp::NotParent => (Relation::Parent, Form::Negated),
            SpansetOp::NotAncestor => (Relation::Ancestor, Form::Negated),
            SpansetOp::NotSibling => (Relation::Sibling, Form::Negated),
            SpansetOp::UnionChild => (Relation::Child, Form::Union),
            SpansetOp::UnionDescendant => (Relation::Descendant, Form::Union),
            SpansetOp::UnionParent => (Relation::Parent, Form::Union),
            SpansetOp::UnionAncestor => (Relation::Ancestor, Form::Union),
            SpansetOp::UnionSibling => (Relation::Sibling, Form::Union),
            SpansetOp::And | SpansetOp::Or => unreachable!("spanset && and || are not structural"),
        };
        Ok(match form {
            Form::Plain => format!("(({b}) AND {})", self.related(relation, &a, &b).sql()),
            Form::Negated => format!("(({b}) AND {})", self.related(relation, &a, &b).negate().sql()),
            Form::Union => format!(
                "((({b}) AND {}) OR (({a}) AND {}))",
                self.related(relation, &a, &b).sql(),
                self.related(relation.inverse(), &b, &a).sql()
            ),
        })
    }

    /// Whether a span (one meeting `tested`) stands in `relation` to some
    /// span meeting `condition`.
    fn related(&mut self, relation: Relation, condition: &str, tested: &str) -> Test {
        let own = key(SPAN_ID);
        let parent = key(PARENT_SPAN_ID);
        match relation {
            Relation::Child => Test::In { keys: self.keys_where(&own, condition), key: parent, negated: false },
            Relation::Parent => Test::In { keys: self.keys_where(&parent, condition), key: own, negated: false },
            Relation::Descendant => Test::In { keys: self.descendants(condition, tested), key: own, negated: false },
            Relation::Ancestor => Test::In { keys: self.ancestors(condition, tested), key: own, negated: false },
            // Another span under the same parent meets the condition: the
            // parent has two such children, or one and this span is not it.
            Relation::Sibling => {
                let with_parent = format!("{PARENT_SPAN_ID} IS NOT NULL AND ({condition})");
                let twice = format!(
                    "SELECT {parent} AS k FROM {SPANS_TABLE} WHERE {} AND {with_parent} GROUP BY 1 HAVING count(*) > 1",
                    self.inside(None)
                );
                Test::All(vec![
                    Test::Plain { sql: format!("{PARENT_SPAN_ID} IS NOT NULL"), negated: false },
                    Test::Any(vec![
                        Test::In { key: parent.clone(), keys: twice, negated: false },
                        Test::All(vec![
                            Test::In {
                                key: parent.clone(),
                                keys: self.keys_where(&parent, &with_parent),
                                negated: false,
                            },
                            Test::In { key: own.clone(), keys: self.keys_where(&own, condition), negated: true },
                        ]),
                    ]),
                ])
            }
        }
    }

    /// `SELECT key FROM spans WHERE` the window `AND condition`.
    fn keys_where(&mut self, key: &str, condition: &str) -> String {
        format!("SELECT {key} AS k FROM {SPANS_TABLE} WHERE {} AND ({condition})", self.inside(None))
    }

    /// The time window as a condition on the spans of `alias`.
    pub(super) fn inside(&mut self, alias: Option<&str>) -> String {
        let column = match alias {
            Some(alias) => format!("{alias}.{START_TIME}"),
            None => START_TIME.to_owned(),
        };
        let (start, end) = (self.params.time(self.window.start_ns), self.params.time(self.window.end_ns));
        format!("{column} >= {start} AND {column} < {end}")
    }

    /// Whether the span's trace holds a span meeting `condition` in the
    /// window. Walks stay inside traces holding spans of both sides, the
    /// only ones where a walk from one to the other can end. Distinct ids,
    /// so that the hash joins hold a trace once rather than once per span.
    fn in_trace_holding(&mut self, condition: &str) -> String {
        let inside = self.inside(None);
        format!("{TRACE_ID} IN (SELECT DISTINCT {TRACE_ID} FROM {SPANS_TABLE} WHERE {inside} AND ({condition}))")
    }

    /// The keys of every span below one that meets `condition`, in traces
    /// that also hold a span meeting `tested`.
    fn descendants(&mut self, condition: &str, tested: &str) -> String {
        self.walk("spans_below", condition, tested)
    }

    /// The keys of every span above one that meets `condition`, in traces
    /// that also hold a span meeting `tested`.
    fn ancestors(&mut self, condition: &str, tested: &str) -> String {
        self.walk("spans_above", condition, tested)
    }

    /// The keys `walk` (`spans_below` or `spans_above`) finds from the spans
    /// meeting `condition`: the spans of each trace walked are grouped once,
    /// those meeting it marked (a union, as a subquery may not stand in a
    /// projection).
    fn walk(&mut self, walk: &str, condition: &str, tested: &str) -> String {
        let (with_marked, with_tested) = (self.in_trace_holding(condition), self.in_trace_holding(tested));
        let inside = self.inside(None);
        let ids = format!("{TRACE_ID}, {SPAN_ID}, {PARENT_SPAN_ID}");
        // A marked span is in a trace holding one: only `tested` narrows it.
        format!(
            "SELECT span_key({TRACE_ID}, s) AS k FROM (
                SELECT {TRACE_ID}, unnest(found) AS s FROM (
                    SELECT {TRACE_ID}, {walk}({SPAN_ID}, {PARENT_SPAN_ID}, marked) AS found FROM (
                        SELECT {ids}, true AS marked FROM {SPANS_TABLE} WHERE {inside} AND ({condition}) AND {with_tested}
                        UNION ALL
                        SELECT {ids}, false FROM {SPANS_TABLE} WHERE {inside} AND {with_marked} AND {with_tested}
                    ) GROUP BY {TRACE_ID}))"
        )
    }
}

#[derive(Clone, Copy)]
enum Form {
    Plain,
    Negated,
    Union,
}
