//! A spanset filter as a SQL condition on the `spans` table, which
//! DataFusion plans like any other: so TraceQL runs on the same pruning,
//! bloom filters and search walk as every other filter.
//!
//! Attribute values are stored as text; a comparison with a number casts
//! them (`TRY_CAST`, so text that is no number matches nothing), a
//! dedicated numeric column is compared as it is. An unscoped attribute
//! (`.key`) matches when the span's or the resource's value does. Regular
//! expressions are anchored at both ends, as in Tempo.

use spanlake_storage::schema::{self, Level};

use super::TraceQlError;
use super::ast::{BinaryOp, Expr, Intrinsic, Literal, Scope, Spanset, SpansetOp, Status};
use super::structure::key;
use crate::engine::{SPANS_TABLE, TRACE_FRAGMENTS_TABLE};
use crate::params::{HOUR_NS, Params, Window};

/// A compiled field expression.
pub(super) enum Sql {
    Bool(String),
    Num(String),
    Text(String),
    /// The places an attribute may be (span, resource): each a text value
    /// and, for a dedicated numeric column, its number.
    Attr(Vec<(String, Option<String>)>),
    Status(String),
    Kind(String),
    /// A literal kept as it is until its other side says how to use it.
    Lit(Literal),
}

pub(super) struct Compiler<'a> {
    pub(super) text: &'a str,
    pub(super) params: &'a mut Params,
    pub(super) window: Window,
}

fn unsupported(text: &str, at: usize, what: &str) -> TraceQlError {
    TraceQlError::at(text, at, format!("{what} is not supported yet"))
}

impl<'a> Compiler<'a> {
    pub(super) fn new(text: &'a str, params: &'a mut Params, window: Window) -> Self {
        Self { text, params, window }
    }

    pub(super) fn err(&self, at: usize, message: impl Into<String>) -> TraceQlError {
        TraceQlError::at(self.text, at, message)
    }

    /// The spans a spanset expression yields, as a condition on a span.
    pub(super) fn spanset(&mut self, spanset: &Spanset) -> Result<String, TraceQlError> {
        match spanset {
            Spanset::Filter(None, _) => Ok("TRUE".to_owned()),
            Spanset::Filter(Some(expr), _) => self.condition(expr),
            Spanset::Op(SpansetOp::Or, left, right, _) => {
                Ok(format!("(({}) OR ({}))", self.spanset(left)?, self.spanset(right)?))
            }
            // Both spansets must be non-empty in the trace; the spans of both are kept.
            Spanset::Op(SpansetOp::And, left, right, _) => {
                let (left, right) = (self.spanset(left)?, self.spanset(right)?);
                let (left_traces, right_traces) = (self.traces_with(&left), self.traces_with(&right));
                Ok(format!(
                    "((({left}) AND {} IN ({right_traces})) OR (({right}) AND {} IN ({left_traces})))",
                    schema::TRACE_ID,
                    schema::TRACE_ID
                ))
            }
            Spanset::Op(op, left, right, _) => self.structural(*op, left, right),
        }
    }

    /// The traces with a span in the window that meets `condition`.
    fn traces_with(&mut self, condition: &str) -> String {
        format!("SELECT {} FROM {SPANS_TABLE} WHERE {} AND ({condition})", schema::TRACE_ID, self.inside(None))
    }

    /// A field expression that must be a condition.
    pub(super) fn condition(&mut self, expr: &Expr) -> Result<String, TraceQlError> {
        match self.expr(expr)? {
            Sql::Bool(sql) => Ok(sql),
            Sql::Lit(Literal::Bool(b)) => Ok(if b { "TRUE" } else { "FALSE" }.to_owned()),
            // A bare attribute holds when it is the boolean true.
            Sql::Attr(places) => Ok(any(places.iter().map(|(text, _)| format!("{text} = 'true'")).collect(), " OR ")),
            _ => Err(self.err(expr.at(), "a spanset filter needs a condition here, not a value")),
        }
    }

    pub(super) fn expr(&mut self, expr: &Expr) -> Result<Sql, TraceQlError> {
        Ok(match expr {
            Expr::Literal(literal, _) => Sql::Lit(literal.clone()),
            Expr::Attribute { scope, name, at } => self.attribute(*scope, name, *at)?,
            Expr::Intrinsic(intrinsic, at) => self.intrinsic(*intrinsic, *at)?,
            Expr::Not(inner, _) => Sql::Bool(format!("NOT ({})", self.condition(inner)?)),
            Expr::Neg(inner, at) => Sql::Num(format!("(-{})", self.number(inner, *at)?)),
            Expr::Binary(op @ (BinaryOp::And | BinaryOp::Or), left, right, _) => {
                let joiner = if *op == BinaryOp::And { "AND" } else { "OR" };
                Sql::Bool(format!("(({}) {joiner} ({}))", self.condition(left)?, self.condition(right)?))
            }
            Expr::Binary(op, left, right, at) if arithmetic(*op) => {
                let (l, r) = (self.number(left, *at)?, self.number(right, *at)?);
                Sql::Num(match op {
                    BinaryOp::Add => format!("({l} + {r})"),
                    BinaryOp::Sub => format!("({l} - {r})"),
                    BinaryOp::Mul => format!("({l} * {r})"),
                    BinaryOp::Div => format!("({l} / NULLIF({r}, 0))"),
                    BinaryOp::Mod => format!("({l} % NULLIF({r}, 0))"),
                    _ => format!("power({l}, {r})"),
                })
            }
            Expr::Binary(op, left, right, at) => self.comparison(*op, left, right, *at)?,
        })
    }

    /// An expression used as a number.
    pub(super) fn number(&mut self, expr: &Expr, at: usize) -> Result<String, TraceQlError> {
        match self.expr(expr)? {
            Sql::Num(sql) => Ok(sql),
            Sql::Lit(Literal::Int(n)) => Ok(format!("CAST({} AS DOUBLE)", self.params.int(n))),
            Sql::Lit(Literal::Duration(n)) => Ok(format!("CAST({} AS DOUBLE)", self.params.int(n))),
            Sql::Lit(Literal::Float(f)) => Ok(self.params.add(datafusion::common::ScalarValue::Float64(Some(f)))),
            Sql::Attr(places) if places.len() == 1 => Ok(numeric(&places[0])),
            Sql::Attr(places) => Ok(format!("COALESCE({})", places.iter().map(numeric).collect::<Vec<_>>().join(", "))),
            _ => Err(self.err(at, "arithmetic needs numbers")),
        }
    }

    fn attribute(&mut self, scope: Scope, name: &str, at: usize) -> Result<Sql, TraceQlError> {
        Ok(Sql::Attr(match scope {
            Scope::Span => vec![attribute_sql(name, Level::Span, self.params)],
            Scope::Resource => vec![attribute_sql(name, Level::Resource, self.params)],
            Scope::Unscoped => {
                vec![attribute_sql(name, Level::Span, self.params), attribute_sql(name, Level::Resource, self.params)]
            }
            Scope::Instrumentation => vec![(format!("{}[{}]", schema::SCOPE_ATTRIBUTES, self.params.text(name)), None)],
            Scope::Event | Scope::Link => {
                return Err(self.err(at, "event. and link. attributes are supported only as `= \"text\"` and `!= nil`"));
            }
        }))
    }

    fn intrinsic(&mut self, intrinsic: Intrinsic, at: usize) -> Result<Sql, TraceQlError> {
        let text = |column: &str| Sql::Text(format!("CAST({column} AS VARCHAR)"));
        Ok(match intrinsic {
            Intrinsic::Name => text(schema::SPAN_NAME),
            Intrinsic::StatusMessage => text(schema::STATUS_MESSAGE),
            Intrinsic::Status => Sql::Status(format!("CAST({} AS VARCHAR)", schema::STATUS_CODE)),
            Intrinsic::Kind => Sql::Kind(format!("CAST({} AS VARCHAR)", schema::SPAN_KIND)),
            Intrinsic::Duration => Sql::Num(format!("CAST({} AS DOUBLE)", schema::DURATION_NS)),
            Intrinsic::SpanId => Sql::Text(format!("id_to_hex({})", schema::SPAN_ID)),
            Intrinsic::ParentId => Sql::Text(format!("id_to_hex({})", schema::PARENT_SPAN_ID)),
            Intrinsic::TraceId => Sql::Text(format!("id_to_hex({})", schema::TRACE_ID)),
            Intrinsic::InstrumentationName => text(schema::SCOPE_NAME),
            Intrinsic::InstrumentationVersion => text(schema::SCOPE_VERSION),
            other => return Err(unsupported(self.text, at, &format!("{other:?}"))),
        })
    }

    fn comparison(&mut self, op: BinaryOp, left: &Expr, right: &Expr, at: usize) -> Result<Sql, TraceQlError> {
        if let Some(sql) = self.root_test(op, left, right, at)? {
            return Ok(Sql::Bool(sql));
        }
        if let Some(sql) = self.trace_level(op, left, right, at)? {
            return Ok(Sql::Bool(sql));
        }
        if let Some(sql) = self.child_count(op, left, right, at)? {
            return Ok(Sql::Bool(sql));
        }
        if let Some(sql) = self.link_or_event(op, left, right, at)? {
            return Ok(Sql::Bool(sql));
        }
        // Nested attributes and event names answer equality only.
        for (side, other) in [(left, right), (right, left)] {
            if let Some(sql) = self.nested(op, side, other, at)? {
                return Ok(Sql::Bool(sql));
            }
        }
        let (l, r) = (self.expr(left)?, self.expr(right)?);
        self.compare(op, l, r, at)
    }

    /// Two compiled sides compared.
    fn compare(&mut self, op: BinaryOp, l: Sql, r: Sql, at: usize) -> Result<Sql, TraceQlError> {
        let (l, r, op) = match (&l, &r) {
            (Sql::Lit(_), Sql::Lit(_)) => return Err(self.err(at, "a comparison needs an attribute or an intrinsic")),
            (Sql::Lit(_), _) => (r, l, flip(op)),
            _ => (l, r, op),
        };
        let cmp = sql_op(op);
        let regex = matches!(op, BinaryOp::Regex | BinaryOp::NotRegex);
        Ok(Sql::Bool(match (l, r) {
            (Sql::Attr(places), Sql::Lit(Literal::Nil)) => match op {
                BinaryOp::Eq => any(places.iter().map(|(t, _)| format!("{t} IS NULL")).collect(), " AND "),
                BinaryOp::NotEq => any(places.iter().map(|(t, _)| format!("{t} IS NOT NULL")).collect(), " OR "),
                _ => return Err(self.err(at, "nil is compared with = or != only")),
            },
            (_, Sql::Lit(Literal::Nil)) => match op {
                BinaryOp::Eq => "FALSE".to_owned(),
                BinaryOp::NotEq => "TRUE".to_owned(),
                _ => return Err(self.err(at, "nil is compared with = or != only")),
            },
            (Sql::Attr(places), Sql::Lit(Literal::Str(s))) => {
                let value = if regex { self.params.text(&anchored(&s)) } else { self.params.text(&s) };
                any(places.iter().map(|(t, _)| compare_text(t, op, cmp, &value)).collect(), " OR ")
            }
            (Sql::Attr(places), Sql::Lit(Literal::Bool(b))) if matches!(op, BinaryOp::Eq | BinaryOp::NotEq) => {
                let value = self.params.text(if b { "true" } else { "false" });
                any(places.iter().map(|(t, _)| format!("{t} {cmp} {value}")).collect(), " OR ")
            }
            (Sql::Attr(places), Sql::Lit(literal @ (Literal::Int(_) | Literal::Float(_) | Literal::Duration(_))))
                if !regex =>
            {
                let value = self.literal_number(&literal);
                any(places.iter().map(|p| format!("{} {cmp} {value}", numeric(p))).collect(), " OR ")
            }
            (Sql::Text(t), Sql::Lit(Literal::Str(s))) => {
                let value = if regex { self.params.text(&anchored(&s)) } else { self.params.text(&s) };
                compare_text(&t, op, cmp, &value)
            }
            (Sql::Num(n), Sql::Lit(literal @ (Literal::Int(_) | Literal::Float(_) | Literal::Duration(_)))) if !regex => {
                format!("{n} {cmp} {}", self.literal_number(&literal))
            }
            (Sql::Num(a), Sql::Num(b)) if !regex => format!("{a} {cmp} {b}"),
            (Sql::Num(a), Sql::Attr(places)) | (Sql::Attr(places), Sql::Num(a)) if !regex => {
                any(places.iter().map(|p| format!("{a} {cmp} {}", numeric(p))).collect(), " OR ")
            }
            (Sql::Status(column), Sql::Lit(Literal::Status(status))) if matches!(op, BinaryOp::Eq | BinaryOp::NotEq) => {
                let value = match status {
                    Status::Error => "ERROR",
                    Status::Ok => "OK",
                    Status::Unset => "UNSET",
                };
                format!("{column} {cmp} {}", self.params.text(value))
            }
            (Sql::Kind(column), Sql::Lit(Literal::Kind(kind))) if matches!(op, BinaryOp::Eq | BinaryOp::NotEq) => {
                format!("{column} {cmp} {}", self.params.text(kind.column_value()))
            }
            (Sql::Text(a), Sql::Text(b)) if !regex => format!("{a} {cmp} {b}"),
            (Sql::Text(a), Sql::Attr(places)) | (Sql::Attr(places), Sql::Text(a)) if !regex => {
                any(places.iter().map(|(t, _)| format!("{a} {cmp} {t}")).collect(), " OR ")
            }
            _ => return Err(self.err(at, "these two sides cannot be compared (check the types: status = error, kind = server, duration > 1s, name = \"text\")")),
        }))
    }

    /// `rootServiceName = "shop"`, `rootName =~ "GET.*"`, `traceDuration >
    /// 1s`: every span of the traces whose root (or whose whole length)
    /// passes, from the trace index's fragments of the window and an hour
    /// either side.
    fn trace_level(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        at: usize,
    ) -> Result<Option<String>, TraceQlError> {
        let Some((intrinsic, other, column_left)) = intrinsic_side(left, right, Intrinsic::is_trace_level) else {
            return Ok(None);
        };
        let Expr::Literal(..) = other else {
            return Err(self.err(at, format!("{} is compared with a value", intrinsic.name())));
        };
        let value = self.expr(other)?;
        let column = match intrinsic {
            Intrinsic::RootName => Sql::Text(format!("CAST({} AS VARCHAR)", schema::trace_index::ROOT_SPAN_NAME)),
            Intrinsic::RootServiceName => Sql::Text(format!("CAST({} AS VARCHAR)", schema::trace_index::SERVICE_NAME)),
            _ => Sql::Num(format!(
                "CAST(CAST(max({end}) AS BIGINT) - CAST(min({start}) AS BIGINT) AS DOUBLE)",
                end = schema::trace_index::END_TIME,
                start = schema::trace_index::START_TIME
            )),
        };
        let (l, r) = if column_left { (column, value) } else { (value, column) };
        let Sql::Bool(test) = self.compare(op, l, r, at)? else { unreachable!("a comparison is a condition") };
        let (lo, hi) = (
            self.params.time(self.window.start_ns.saturating_sub(HOUR_NS)),
            self.params.time(self.window.end_ns.saturating_add(HOUR_NS)),
        );
        let inside = format!("{start} >= {lo} AND {start} < {hi}", start = schema::trace_index::START_TIME);
        let traces = match intrinsic {
            Intrinsic::TraceDuration => format!(
                "SELECT {trace} FROM {TRACE_FRAGMENTS_TABLE} WHERE {inside} GROUP BY {trace} HAVING {test}",
                trace = schema::TRACE_ID
            ),
            _ => format!(
                "SELECT {trace} FROM {TRACE_FRAGMENTS_TABLE} WHERE {inside} AND {root} IS NOT NULL AND {test}",
                trace = schema::TRACE_ID,
                root = schema::trace_index::ROOT_SPAN_NAME
            ),
        };
        Ok(Some(format!("{} IN ({traces})", schema::TRACE_ID)))
    }

    /// `intrinsic op n` or `n op intrinsic` with a whole number, as `(op, n)`
    /// with the intrinsic on the left; `None` when the comparison is about
    /// something else.
    fn whole_number_test(
        &self,
        intrinsic: Intrinsic,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        at: usize,
    ) -> Result<Option<(BinaryOp, i64)>, TraceQlError> {
        let test = match (left, right) {
            (Expr::Intrinsic(i, _), Expr::Literal(Literal::Int(n), _)) if *i == intrinsic => (op, *n),
            (Expr::Literal(Literal::Int(n), _), Expr::Intrinsic(i, _)) if *i == intrinsic => (flip(op), *n),
            (Expr::Intrinsic(i, p), _) | (_, Expr::Intrinsic(i, p)) if *i == intrinsic => {
                return Err(self.err(*p, format!("{} is compared with a whole number", intrinsic.name())));
            }
            _ => return Ok(None),
        };
        if holds(test.0, 0, 0).is_none() {
            return Err(self.err(at, format!("{} is compared with = != < <= > >=", intrinsic.name())));
        }
        Ok(Some(test))
    }

    /// `span:childCount > 2`: the spans whose key is among the parents with
    /// that many children in the window. When the test holds for no
    /// children at all, it is the spans *not* among the parents for which
    /// it fails.
    fn child_count(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        at: usize,
    ) -> Result<Option<String>, TraceQlError> {
        let Some((op, n)) = self.whole_number_test(Intrinsic::ChildCount, op, left, right, at)? else {
            return Ok(None);
        };
        let holds_for_none = holds(op, 0, n) == Some(true);
        let (cmp, n) = (sql_op(op), self.params.int(n));
        let (parent, own) = (key(schema::PARENT_SPAN_ID), key(schema::SPAN_ID));
        let inside = self.inside(None);
        let (having, negated) = if holds_for_none {
            (format!("NOT (count(*) {cmp} {n})"), "NOT ")
        } else {
            (format!("count(*) {cmp} {n}"), "")
        };
        Ok(Some(format!(
            "{own} {negated}IN (SELECT {parent} AS k FROM {SPANS_TABLE} WHERE {inside} AND {} IS NOT NULL GROUP BY 1 HAVING {having})",
            schema::PARENT_SPAN_ID
        )))
    }

    /// `nestedSetParent < 0` and the like, which tell roots (-1) from the
    /// spans below them (the parent's `nestedSetLeft`, 1 or more): what
    /// Grafana asks for root spans. Other thresholds would need the trace's
    /// numbering and are refused.
    fn root_test(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        at: usize,
    ) -> Result<Option<String>, TraceQlError> {
        let Some((op, n)) = self.whole_number_test(Intrinsic::NestedSetParent, op, left, right, at)? else {
            return Ok(None);
        };
        let (root, below, far_below) = (holds(op, -1, n), holds(op, 1, n), holds(op, i64::MAX, n));
        if n > 1 || below != far_below {
            return Err(self.err(at, "nestedSetParent is compared only with numbers that tell roots (-1) from other spans (1 or more), such as < 0"));
        }
        let parent = schema::PARENT_SPAN_ID;
        Ok(Some(match (root == Some(true), below == Some(true)) {
            (true, true) => "TRUE".to_owned(),
            (true, false) => format!("{parent} IS NULL"),
            (false, true) => format!("{parent} IS NOT NULL"),
            (false, false) => "FALSE".to_owned(),
        }))
    }

    /// `link:spanID = "…"`, `link:traceID != nil`, `event:timeSinceStart >
    /// 2ms`: a span's links by the ids they point at, its events by their
    /// time since the span's start; `None` when neither side is one.
    fn link_or_event(
        &mut self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        at: usize,
    ) -> Result<Option<String>, TraceQlError> {
        use Intrinsic::{EventTimeSinceStart, LinkSpanId, LinkTraceId};
        let nested = |i: Intrinsic| matches!(i, EventTimeSinceStart | LinkSpanId | LinkTraceId);
        let Some((intrinsic, other, on_left)) = intrinsic_side(left, right, nested) else { return Ok(None) };
        let op = if on_left { op } else { flip(op) };
        if intrinsic == EventTimeSinceStart {
            let Expr::Literal(Literal::Duration(ns) | Literal::Int(ns), _) = other else {
                return Err(self.err(at, "event:timeSinceStart is compared with a duration"));
            };
            let offsets = format!("event_offsets({}, {})", schema::EVENTS, schema::START_TIME);
            let value = self.params.int(*ns);
            let cmp = sql_op(op);
            return Ok(Some(match op {
                BinaryOp::Gt | BinaryOp::GtEq => format!("array_max({offsets}) {cmp} {value}"),
                BinaryOp::Lt | BinaryOp::LtEq => format!("array_min({offsets}) {cmp} {value}"),
                BinaryOp::Eq => format!("array_has({offsets}, {value})"),
                BinaryOp::NotEq => format!("(array_min({offsets}) <> {value} OR array_max({offsets}) <> {value})"),
                _ => return Err(self.err(at, "event:timeSinceStart is compared with =, !=, <, <=, > or >=")),
            }));
        }
        let (field, width) =
            if intrinsic == LinkSpanId { (schema::nested::SPAN_ID, 8) } else { (schema::nested::TRACE_ID, 16) };
        Ok(Some(match (op, other) {
            (BinaryOp::Eq, Expr::Literal(Literal::Str(hex), value_at)) => {
                let id = padded_id(hex, width).ok_or_else(|| {
                    self.err(*value_at, format!("{hex:?} is not an id of at most {width} bytes in hex"))
                })?;
                let id = self.params.add(datafusion::common::ScalarValue::Binary(Some(id)));
                format!("nested_id_is({}, '{field}', {id})", schema::LINKS)
            }
            (BinaryOp::NotEq, Expr::Literal(Literal::Nil, _)) => format!("cardinality({}) > 0", schema::LINKS),
            _ => return Err(self.err(at, "link ids are compared with = \"hex\" or != nil")),
        }))
    }

    /// `event.x = "v"`, `link.x != nil`, `event:name = "v"`: conditions
    /// on a span's events or links; `None` when `side` is none of those.
    fn nested(&mut self, op: BinaryOp, side: &Expr, other: &Expr, at: usize) -> Result<Option<String>, TraceQlError> {
        let list = match side {
            Expr::Attribute { scope: Scope::Event, .. } | Expr::Intrinsic(Intrinsic::EventName, _) => schema::EVENTS,
            Expr::Attribute { scope: Scope::Link, .. } => schema::LINKS,
            _ => return Ok(None),
        };
        let unsupported = || self.err(at, "event and link values are compared with = \"text\" or != nil only");
        let value = match (op, other) {
            (BinaryOp::Eq, Expr::Literal(Literal::Str(s), _)) => Some(s.clone()),
            (BinaryOp::NotEq, Expr::Literal(Literal::Nil, _)) => None,
            _ => return Err(unsupported()),
        };
        Ok(Some(match side {
            Expr::Intrinsic(..) => match value {
                Some(name) => format!("span_has_event({list}, {})", self.params.text(&name)),
                None => format!("cardinality({list}) > 0"),
            },
            Expr::Attribute { name, .. } => {
                let key = self.params.text(name);
                let value = match value {
                    Some(v) => self.params.text(&v),
                    None => "CAST(NULL AS VARCHAR)".to_owned(),
                };
                format!("nested_attribute_is({list}, {key}, {value})")
            }
            _ => unreachable!("matched above"),
        }))
    }

    pub(super) fn literal_number(&mut self, literal: &Literal) -> String {
        match literal {
            Literal::Float(f) => self.params.add(datafusion::common::ScalarValue::Float64(Some(*f))),
            Literal::Int(n) | Literal::Duration(n) => format!("CAST({} AS DOUBLE)", self.params.int(*n)),
            _ => "NULL".to_owned(),
        }
    }
}

/// Where an attribute of a level is stored: its text, and its number when
/// it has a dedicated numeric column.
pub(crate) fn attribute_sql(key: &str, level: Level, params: &mut Params) -> (String, Option<String>) {
    match schema::dedicated_column(key, level) {
        Some(d) => (
            format!("CAST({} AS VARCHAR)", d.column),
            (d.kind == schema::ColumnKind::Int).then(|| format!("CAST({} AS DOUBLE)", d.column)),
        ),
        None => {
            let map = if level == Level::Span { schema::SPAN_ATTRIBUTES } else { schema::RESOURCE_ATTRIBUTES };
            // Either name of a renamed attribute.
            let places: Vec<String> =
                schema::attribute_names(key).into_iter().map(|name| format!("{map}[{}]", params.text(name))).collect();
            match places.as_slice() {
                [one] => (one.clone(), None),
                _ => (format!("COALESCE({})", places.join(", ")), None),
            }
        }
    }
}

fn arithmetic(op: BinaryOp) -> bool {
    matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::Pow)
}

/// An attribute place as a number.
fn numeric((text, number): &(String, Option<String>)) -> String {
    number.clone().unwrap_or_else(|| format!("TRY_CAST({text} AS DOUBLE)"))
}

fn compare_text(text: &str, op: BinaryOp, cmp: &str, value: &str) -> String {
    match op {
        BinaryOp::Regex => format!("regexp_like({text}, {value})"),
        BinaryOp::NotRegex => format!("NOT regexp_like({text}, {value})"),
        _ => format!("{text} {cmp} {value}"),
    }
}

fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn any(parts: Vec<String>, joiner: &str) -> String {
    format!("({})", parts.join(joiner))
}

fn sql_op(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        _ => "",
    }
}

/// Whether `value op n` holds, for the comparisons.
fn holds(op: BinaryOp, value: i64, n: i64) -> Option<bool> {
    Some(match op {
        BinaryOp::Eq => value == n,
        BinaryOp::NotEq => value != n,
        BinaryOp::Lt => value < n,
        BinaryOp::LtEq => value <= n,
        BinaryOp::Gt => value > n,
        BinaryOp::GtEq => value >= n,
        _ => return None,
    })
}

/// Whether compiled SQL holds a subquery. Values a query names enter as
/// parameters, never as text, so every SELECT in it is one the compiler
/// wrote.
pub(super) fn has_subquery(sql: &str) -> bool {
    sql.contains("SELECT")
}

/// A hex id left-padded with zeros to `width` bytes, as Tempo reads ids.
fn padded_id(hex: &str, width: usize) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if hex.is_empty() || hex.len() > width * 2 {
        return None;
    }
    let digits = format!("{hex:0>width$}", width = width * 2);
    const_hex::decode(digits).ok()
}

/// The intrinsic that `wanted` picks on either side of a comparison, the
/// other side, and whether the intrinsic is on the left.
fn intrinsic_side<'a>(
    left: &'a Expr,
    right: &'a Expr,
    wanted: impl Fn(Intrinsic) -> bool,
) -> Option<(Intrinsic, &'a Expr, bool)> {
    match (left, right) {
        (Expr::Intrinsic(i, _), other) if wanted(*i) => Some((*i, other, true)),
        (other, Expr::Intrinsic(i, _)) if wanted(*i) => Some((*i, other, false)),
        _ => None,
    }
}

/// The same comparison with its sides swapped.
fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::LtEq => BinaryOp::GtEq,
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::GtEq => BinaryOp::LtEq,
        other => other,
    }
}
