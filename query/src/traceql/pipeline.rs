//! The stages after `|` that narrow a search's spans: aggregates compared
//! with a value (`count() > 2`, `avg(duration) > 1s`), `by()` to aggregate
//! per group of spans instead of per trace, `coalesce()` to undo it, and
//! spanset filters. Each stage keeps the spans of the groups (or traces)
//! that pass, as a condition on a span: an `IN` over the groups an
//! aggregate over the window let through, planned as a semi-join.

use super::TraceQlError;
use super::ast::{BinaryOp, Expr, Literal, Query, Spanset, SpansetOp, Stage};
use super::sql::{Compiler, Sql};
use crate::engine::SPANS_TABLE;
use spanlake_storage::schema::TRACE_ID;

impl Compiler<'_> {
    /// The spans a query's spansets and filter stages keep. `metrics` is
    /// whether metrics functions (and what follows them) are allowed at
    /// the end; they do not narrow the spans and are left to the caller.
    pub(super) fn query(&mut self, query: &Query, metrics: bool) -> Result<String, TraceQlError> {
        let mut spans = self.spanset(&query.spanset)?;
        let mut groups: Vec<String> = Vec::new();
        for stage in &query.stages {
            match stage {
                Stage::Select(..) => {}
                Stage::Coalesce(_) => groups.clear(),
                Stage::By(exprs, _) => {
                    groups = exprs.iter().map(|e| self.group_value(e)).collect::<Result<_, _>>()?;
                }
                Stage::Filter(spanset) => {
                    if let Some(at) = structural_at(spanset) {
                        return Err(TraceQlError::at(
                            self.text,
                            at,
                            "a structural operator after | is not supported yet",
                        ));
                    }
                    spans = format!("(({spans}) AND ({}))", self.spanset(spanset)?);
                }
                Stage::Aggregate { function, argument, op, value, at } => {
                    spans = self.aggregate(&spans, &groups, function, argument.as_ref(), *op, value, *at)?;
                }
                Stage::Metrics { at, .. } | Stage::Compare { at, .. } | Stage::Followup { at, .. } if !metrics => {
                    return Err(TraceQlError::at(
                        self.text,
                        *at,
                        "a metrics function in a search is not supported (ask /api/metrics/query_range)",
                    ));
                }
                Stage::Metrics { .. } | Stage::Compare { .. } | Stage::Followup { .. } => {}
            }
        }
        Ok(spans)
    }

    /// A `by()` value as text, NULL when the span has none.
    pub(super) fn group_value(&mut self, expr: &Expr) -> Result<String, TraceQlError> {
        Ok(match self.expr(expr)? {
            Sql::Attr(places) if places.len() == 1 => places[0].0.clone(),
            Sql::Attr(places) => {
                format!("COALESCE({})", places.iter().map(|(text, _)| text.as_str()).collect::<Vec<_>>().join(", "))
            }
            Sql::Text(sql) | Sql::Status(sql) | Sql::Kind(sql) => sql,
            Sql::Num(sql) | Sql::Bool(sql) => format!("CAST({sql} AS VARCHAR)"),
            Sql::Lit(_) => return Err(self.err(expr.at(), "by() takes an attribute or an intrinsic, not a value")),
        })
    }

    /// The spans of `spans` in groups whose aggregate passes.
    #[allow(clippy::too_many_arguments)]
    fn aggregate(
        &mut self,
        spans: &str,
        groups: &[String],
        function: &str,
        argument: Option<&Expr>,
        op: BinaryOp,
        value: &Literal,
        at: usize,
    ) -> Result<String, TraceQlError> {
        let aggregate = match argument {
            None => "CAST(count(*) AS DOUBLE)".to_owned(),
            Some(argument) => format!("{function}({})", self.number(argument, argument.at())?),
        };
        let value = match value {
            Literal::Int(_) | Literal::Float(_) | Literal::Duration(_) => self.literal_number(value),
            _ => return Err(self.err(at, format!("{function}() is compared with a number or a duration"))),
        };
        let cmp = match op {
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            _ => ">=",
        };
        let key = group_key(groups);
        let inside = self.inside(None);
        Ok(format!(
            "(({spans}) AND {key} IN (SELECT {key} AS k FROM {SPANS_TABLE} WHERE {inside} AND ({spans}) GROUP BY {key} HAVING {aggregate} {cmp} {value}))"
        ))
    }
}

/// The group a span is in: its trace, or its trace and its `by()` values
/// (each marked set or nil and length-prefixed, so no two groups share a
/// key).
fn group_key(groups: &[String]) -> String {
    if groups.is_empty() {
        return TRACE_ID.to_owned();
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|g| format!("CASE WHEN {g} IS NULL THEN 'n' ELSE concat('v', character_length({g}), ':', {g}) END"))
        .collect();
    format!("concat(id_to_hex({TRACE_ID}), {})", parts.join(", "))
}

/// Where a spanset uses a structural operator, if it does.
fn structural_at(spanset: &Spanset) -> Option<usize> {
    match spanset {
        Spanset::Filter(..) => None,
        Spanset::Op(SpansetOp::And | SpansetOp::Or, left, right, _) => structural_at(left).or(structural_at(right)),
        Spanset::Op(_, _, _, at) => Some(*at),
    }
}
