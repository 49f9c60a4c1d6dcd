//! What a TraceQL query says, as the parser reads it.

/// Where an attribute is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Span,
    Resource,
    Event,
    Link,
    Instrumentation,
    /// `.name`: the span's attribute, or its resource's.
    Unscoped,
}

/// Fields of a span (or its trace) that are not attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    ChildCount,
    SpanId,
    ParentId,
    TraceId,
    RootName,
    RootServiceName,
    TraceDuration,
    EventName,
    EventTimeSinceStart,
    LinkSpanId,
    LinkTraceId,
    InstrumentationName,
    InstrumentationVersion,
    NestedSetLeft,
    NestedSetRight,
    NestedSetParent,
}

impl Intrinsic {
    /// A fact about the whole trace (its root, its length), the same for
    /// each of its spans.
    pub(crate) fn is_trace_level(self) -> bool {
        matches!(self, Self::RootName | Self::RootServiceName | Self::TraceDuration)
    }

    /// The name Tempo gives it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Status => "status",
            Self::StatusMessage => "statusMessage",
            Self::Kind => "kind",
            Self::Duration => "duration",
            Self::ChildCount => "span:childCount",
            Self::SpanId => "span:id",
            Self::ParentId => "span:parentID",
            Self::TraceId => "trace:id",
            Self::RootName => "rootName",
            Self::RootServiceName => "rootServiceName",
            Self::TraceDuration => "traceDuration",
            Self::EventName => "event:name",
            Self::EventTimeSinceStart => "event:timeSinceStart",
            Self::LinkSpanId => "link:spanID",
            Self::LinkTraceId => "link:traceID",
            Self::InstrumentationName => "instrumentation:name",
            Self::InstrumentationVersion => "instrumentation:version",
            Self::NestedSetLeft => "nestedSetLeft",
            Self::NestedSetRight => "nestedSetRight",
            Self::NestedSetParent => "nestedSetParent",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "name" | "span:name" => Self::Name,
            "status" | "span:status" => Self::Status,
            "statusMessage" | "span:statusMessage" => Self::StatusMessage,
            "kind" | "span:kind" => Self::Kind,
            "duration" | "span:duration" => Self::Duration,
            "childCount" | "span:childCount" => Self::ChildCount,
            "span:id" => Self::SpanId,
            "span:parentID" => Self::ParentId,
            "trace:id" => Self::TraceId,
            "rootName" | "trace:rootName" => Self::RootName,
            "rootServiceName" | "trace:rootService" => Self::RootServiceName,
            "traceDuration" | "trace:duration" => Self::TraceDuration,
            "event:name" => Self::EventName,
            "event:timeSinceStart" => Self::EventTimeSinceStart,
            "link:spanID" => Self::LinkSpanId,
            "link:traceID" => Self::LinkTraceId,
            "instrumentation:name" => Self::InstrumentationName,
            "instrumentation:version" => Self::InstrumentationVersion,
            "nestedSetLeft" | "span:nestedSetLeft" => Self::NestedSetLeft,
            "nestedSetRight" | "span:nestedSetRight" => Self::NestedSetRight,
            "nestedSetParent" | "span:nestedSetParent" => Self::NestedSetParent,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Error,
    Ok,
    Unset,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(i64),
    Status(Status),
    Kind(crate::params::SpanKind),
    Nil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    And,
    Or,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Regex,
    NotRegex,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// A field expression inside a spanset filter, with the byte offset it
/// starts at (for errors).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal, usize),
    Attribute { scope: Scope, name: String, at: usize },
    Intrinsic(Intrinsic, usize),
    Not(Box<Expr>, usize),
    Neg(Box<Expr>, usize),
    Binary(BinaryOp, Box<Expr>, Box<Expr>, usize),
}

impl Expr {
    pub(crate) fn at(&self) -> usize {
        match self {
            Self::Literal(_, at)
            | Self::Attribute { at, .. }
            | Self::Intrinsic(_, at)
            | Self::Not(_, at)
            | Self::Neg(_, at)
            | Self::Binary(_, _, _, at) => *at,
        }
    }
}

/// Operators between spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpansetOp {
    And,
    Or,
    Child,
    Descendant,
    Parent,
    Ancestor,
    Sibling,
    NotChild,
    NotDescendant,
    NotParent,
    NotAncestor,
    NotSibling,
    UnionChild,
    UnionDescendant,
    UnionParent,
    UnionAncestor,
    UnionSibling,
}

impl SpansetOp {
    pub(crate) fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "&&" => Self::And,
            "||" => Self::Or,
            ">" => Self::Child,
            ">>" => Self::Descendant,
            "<" => Self::Parent,
            "<<" => Self::Ancestor,
            "~" => Self::Sibling,
            "!>" => Self::NotChild,
            "!>>" => Self::NotDescendant,
            "!<" => Self::NotParent,
            "!<<" => Self::NotAncestor,
            "!~" => Self::NotSibling,
            "&>" => Self::UnionChild,
            "&>>" => Self::UnionDescendant,
            "&<" => Self::UnionParent,
            "&<<" => Self::UnionAncestor,
            "&~" => Self::UnionSibling,
            _ => return None,
        })
    }
}

/// A spanset expression: filters combined by spanset operators.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Spanset {
    /// `{ expr }`; `{}` (no expression) is every span.
    Filter(Option<Expr>, usize),
    Op(SpansetOp, Box<Spanset>, Box<Spanset>, usize),
}

/// One stage after `|`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stage {
    /// `count() > 2`, `avg(duration) > 1s`: an aggregate compared.
    Aggregate {
        function: String,
        argument: Option<Expr>,
        op: BinaryOp,
        value: Literal,
        at: usize,
    },
    By(Vec<Expr>, usize),
    Select(Vec<Expr>, usize),
    Coalesce(usize),
    /// A metrics function: `rate()`, `quantile_over_time(duration, .9)`,
    /// with its arguments, and `by(...)` after it.
    Metrics {
        function: String,
        arguments: Vec<Expr>,
        by: Vec<Expr>,
        at: usize,
    },
    /// `compare({ selection }, top, start, end)`: the metrics function
    /// that sets the spans of a selection against the rest, attribute by
    /// attribute.
    Compare {
        selection: Spanset,
        /// Values kept per attribute (10 when not given).
        top: usize,
        /// Only spans that start in `[start, end)` (unix ns) are selected.
        between: Option<(i64, i64)>,
        at: usize,
    },
    /// `topk(5)`, `bottomk(5)` after a metrics function.
    Followup {
        function: String,
        arguments: Vec<Expr>,
        at: usize,
    },
    /// A spanset filter after a pipe: `| { status = error }`.
    Filter(Spanset),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub(crate) spanset: Spanset,
    pub(crate) stages: Vec<Stage>,
}
