//! Structural operators (`>`, `>>`, `<`, `<<`, `~`, negated `!>`, union
//! `&>`, ...) as SQL: a span's place in its trace is `span_key(trace_id,
//! span_id)`, so "its parent is one of those spans" is an `IN` over the
//! left side's keys, which DataFusion runs as a hash semi-join; ancestors
//! and descendants are a recursive CTE from the left side's spans.
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

/// Deepest nesting walked by `>>` and `<<`, so that a cycle in bad data
/// (a span that is its own ancestor) ends.
const MAX_DEPTH: usize = 128;

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

    /// Traces holding a span that meets `a` and one that meets `b`: the
    /// only ones where a walk from one to the other can end, so the only
    /// ones walked.
    fn holding_both(&mut self, a: &str, b: &str) -> String {
        let traces = |this: &mut Self, condition: &str| {
            format!(
                "{TRACE_ID} IN (SELECT {TRACE_ID} FROM {SPANS_TABLE} WHERE {} AND ({condition}))",
                this.inside(None)
            )
        };
        format!("{} AND {}", traces(self, a), traces(self, b))
    }

    // The walks join the spans to the frontier with the frontier first, so
    // that it is the side DataFusion builds its hash table of (the work
    // table has no statistics, so the order written is kept): memory
    // follows the frontier, not the window's spans.

    /// The keys of every span below one that meets `condition`, in traces
    /// that also hold a span meeting `tested`.
    fn descendants(&mut self, condition: &str, tested: &str) -> String {
        let name = self.cte_name("below");
        let children = self.keys_where(&key(SPAN_ID), condition);
        let scope = self.holding_both(condition, tested);
        let first = self.inside(None);
        let next = self.inside(Some("c"));
        format!(
            "WITH RECURSIVE {name}(k, depth) AS (
                SELECT {own}, 1 FROM {SPANS_TABLE} WHERE {first} AND {scope} AND {parent} IN ({children})
                UNION ALL
                SELECT span_key(c.{TRACE_ID}, c.{SPAN_ID}), b.depth + 1
                FROM {name} b JOIN {SPANS_TABLE} c ON span_key(c.{TRACE_ID}, c.{PARENT_SPAN_ID}) = b.k
                WHERE {next} AND b.depth < {MAX_DEPTH}
            ) SELECT k FROM {name}",
            own = key(SPAN_ID),
            parent = key(PARENT_SPAN_ID),
        )
    }

    /// The keys of every span above one that meets `condition`, in traces
    /// that also hold a span meeting `tested`.
    fn ancestors(&mut self, condition: &str, tested: &str) -> String {
        let name = self.cte_name("above");
        let parents = self.keys_where(&key(PARENT_SPAN_ID), condition);
        let scope = self.holding_both(condition, tested);
        let first = self.inside(None);
        let next = self.inside(Some("p"));
        format!(
            "WITH RECURSIVE {name}(k, up, depth) AS (
                SELECT {own}, {parent}, 1 FROM {SPANS_TABLE} WHERE {first} AND {scope} AND {own} IN ({parents})
                UNION ALL
                SELECT span_key(p.{TRACE_ID}, p.{SPAN_ID}), span_key(p.{TRACE_ID}, p.{PARENT_SPAN_ID}), a.depth + 1
                FROM {name} a JOIN {SPANS_TABLE} p ON span_key(p.{TRACE_ID}, p.{SPAN_ID}) = a.up
                WHERE {next} AND a.depth < {MAX_DEPTH}
            ) SELECT k FROM {name}",
            own = key(SPAN_ID),
            parent = key(PARENT_SPAN_ID),
        )
    }
}

#[derive(Clone, Copy)]
enum Form {
    Plain,
    Negated,
    Union,
}
