//! TraceQL metrics (`{ } | rate() by (resource.service.name)`): the spans
//! the query keeps, grouped by time step and the `by()` values in one SQL
//! aggregate that DataFusion runs, then cut into series. Quantiles are
//! exact (`percentile_cont`), not estimated from buckets; durations are
//! reported in seconds, as Tempo reports them.

use std::collections::BTreeMap;

use spanlake_storage::TenantId;
use spanlake_storage::schema::START_TIME;

use super::ast::{Expr, Intrinsic, Literal, Query, Scope, Stage};
use super::compare::Compare;
use super::sql::Compiler;
use super::{TraceQlError, parse_query};
use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{NANOS_PER_SECOND, Params, Window};
use crate::search::Columns;

/// Most points one query answers per series, as Prometheus bounds them.
pub(crate) const MAX_POINTS: i64 = 11_000;
/// Most series one query answers.
const MAX_SERIES: usize = 1_000;

#[derive(Debug, Clone, PartialEq)]
enum Function {
    Rate,
    Count,
    /// `min_over_time`, ...: the SQL aggregate and its argument.
    Over(&'static str, Expr),
    Quantiles(Expr, Vec<f64>),
    Histogram(Expr),
    Compare(Compare),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rank {
    Top(usize),
    Bottom(usize),
}

/// A parsed TraceQL metrics query.
#[derive(Debug, Clone)]
pub struct TraceQlMetrics {
    text: String,
    query: Query,
    function: Function,
    by: Vec<Expr>,
    rank: Option<Rank>,
}

/// A label's value: attribute values are text; quantiles and histogram
/// buckets are numbers; `compare()`'s totals name an attribute alone.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum LabelValue {
    Text(String),
    Number(f64),
    Nil,
}

/// One series: its labels and its samples (unix milliseconds, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, LabelValue)>,
    pub samples: Vec<(i64, f64)>,
}

impl TraceQlMetrics {
    pub fn parse(text: &str) -> Result<Self, TraceQlError> {
        let query = parse_query(text)?;
        let err = |at: usize, message: &str| TraceQlError::at(text, at, message);
        let metrics_at = query.stages.iter().position(|s| matches!(s, Stage::Metrics { .. } | Stage::Compare { .. }));
        let Some(position) = metrics_at else {
            return Err(err(text.len(), "a metrics query ends in a metrics function such as | rate()"));
        };
        let after = &query.stages[position + 1..];
        if let Stage::Compare { selection, top, between, .. } = &query.stages[position] {
            if let Some(stage) = after.first() {
                return Err(err(stage_at(stage).unwrap_or(text.len()), "nothing may follow compare()"));
            }
            let function = Function::Compare(Compare { selection: selection.clone(), top: *top, between: *between });
            return Self { text: text.to_owned(), query, function, by: Vec::new(), rank: None }.checked(position);
        }
        let Stage::Metrics { function, arguments, by, at } = &query.stages[position] else { unreachable!() };
        let rank = match after {
            [] => None,
            [Stage::Followup { function: f, arguments: a, at }] if f == "topk" || f == "bottomk" => {
                let k = match a.as_slice() {
                    [Expr::Literal(Literal::Int(k), _)] if *k > 0 => *k as usize,
                    _ => return Err(err(*at, &format!("{f}() takes a positive whole number"))),
                };
                Some(if f == "topk" { Rank::Top(k) } else { Rank::Bottom(k) })
            }
            [stage, ..] => {
                return Err(err(
                    stage_at(stage).unwrap_or(*at),
                    "only topk() or bottomk() may follow a metrics function",
                ));
            }
        };
        let one = |what: &str| match arguments.as_slice() {
            [argument] => Ok(argument.clone()),
            _ => Err(err(*at, &format!("{function}() takes {what}"))),
        };
        let function = match function.as_str() {
            "rate" | "count_over_time" if !arguments.is_empty() => {
                return Err(err(*at, &format!("{function}() takes no argument")));
            }
            "rate" => Function::Rate,
            "count_over_time" => Function::Count,
            "min_over_time" => Function::Over("min", one("one attribute or intrinsic")?),
            "max_over_time" => Function::Over("max", one("one attribute or intrinsic")?),
            "avg_over_time" => Function::Over("avg", one("one attribute or intrinsic")?),
            "sum_over_time" => Function::Over("sum", one("one attribute or intrinsic")?),
            "histogram_over_time" => Function::Histogram(one("one attribute or intrinsic")?),
            "quantile_over_time" => {
                let Some((value, quantiles)) = arguments.split_first().filter(|(_, q)| !q.is_empty()) else {
                    return Err(err(*at, "quantile_over_time() takes a value and one or more quantiles"));
                };
                let quantiles = quantiles
                    .iter()
                    .map(|q| match q {
                        Expr::Literal(Literal::Float(f), _) if (0.0..=1.0).contains(f) => Ok(*f),
                        Expr::Literal(Literal::Int(n @ (0 | 1)), _) => Ok(*n as f64),
                        other => Err(err(other.at(), "a quantile is a number from 0 to 1")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Function::Quantiles(value.clone(), quantiles)
            }
            other => return Err(err(*at, &format!("unknown metrics function {other}"))),
        };
        for expr in by {
            label_name(expr).ok_or_else(|| err(expr.at(), "by() takes attributes or intrinsics"))?;
        }
        let by = by.clone();
        Self { text: text.to_owned(), query, function, by, rank }.checked(position)
    }

    /// The query with the metrics function at `position` and what follows
    /// cut from its stages (the spans part is compiled like a search's,
    /// which refuses metrics stages), once compiled to find its errors.
    fn checked(mut self, position: usize) -> Result<Self, TraceQlError> {
        self.query.stages.truncate(position);
        self.sql(&Window { start_ns: 0, end_ns: 1 }, NANOS_PER_SECOND, &[], &mut Params::default())?;
        Ok(self)
    }

    /// The aggregate: `t` (the step's start, unix ns), `g0..` (the `by()`
    /// values), `b` (a histogram's bucket), `v0..` (the values); or
    /// `compare()`'s, which tells apart the values of the attribute keys
    /// not `many_valued`.
    fn sql(
        &self,
        window: &Window,
        step_ns: i64,
        many_valued: &[String],
        params: &mut Params,
    ) -> Result<String, TraceQlError> {
        let mut compiler = Compiler::new(&self.text, params, *window);
        let spans = compiler.query(&self.query, true)?;
        let origin = window.start_ns;
        let step = format!("{origin} + (CAST({START_TIME} AS BIGINT) - {origin}) / {step_ns} * {step_ns}");
        if let Function::Compare(compare) = &self.function {
            return compare.sql(&mut compiler, &spans, &step, many_valued);
        }
        let mut columns = vec![format!("{step} AS t")];
        let mut groups = vec!["t".to_owned()];
        for (i, expr) in self.by.iter().enumerate() {
            columns.push(format!("{} AS g{i}", compiler.group_value(expr)?));
            groups.push(format!("g{i}"));
        }
        match &self.function {
            Function::Rate => columns.push(format!("CAST(count(*) AS DOUBLE) / {} AS v0", step_ns as f64 / 1e9)),
            Function::Count => columns.push("CAST(count(*) AS DOUBLE) AS v0".to_owned()),
            Function::Over(aggregate, expr) => {
                columns.push(format!("CAST({aggregate}({}) AS DOUBLE) AS v0", seconds_or_number(&mut compiler, expr)?));
            }
            Function::Quantiles(expr, quantiles) => {
                let x = seconds_or_number(&mut compiler, expr)?;
                for (i, q) in quantiles.iter().enumerate() {
                    columns.push(format!("percentile_cont({q:?}) WITHIN GROUP (ORDER BY {x}) AS v{i}"));
                }
            }
            Function::Histogram(expr) => {
                // Powers of two, as Tempo's buckets: each value counts in
                // the smallest bucket bound at or above it.
                let number = compiler.number(expr, expr.at())?;
                let scale = if is_duration(expr) { 1e9 } else { 1.0 };
                columns.push(format!("power(2.0, ceil(log2(greatest({number}, 1.0)))) / {scale:?} AS b"));
                columns.push("CAST(count(*) AS DOUBLE) AS v0".to_owned());
                groups.push("b".to_owned());
            }
            Function::Compare(_) => unreachable!("compiled above"),
        }
        let inside = compiler.inside(None);
        Ok(format!(
            "SELECT {} FROM {SPANS_TABLE} WHERE {inside} AND ({spans}) GROUP BY {}",
            columns.join(", "),
            groups.join(", ")
        ))
    }

    /// Whether steps without spans are zeros (counts) rather than absent.
    fn counts(&self) -> bool {
        matches!(self.function, Function::Rate | Function::Count | Function::Histogram(_))
    }
}

/// A value to aggregate: durations in seconds, other numbers as they are.
fn seconds_or_number(compiler: &mut Compiler, expr: &Expr) -> Result<String, TraceQlError> {
    let number = compiler.number(expr, expr.at())?;
    Ok(if is_duration(expr) { format!("({number} / 1e9)") } else { number })
}

fn stage_at(stage: &Stage) -> Option<usize> {
    match stage {
        Stage::Aggregate { at, .. }
        | Stage::By(_, at)
        | Stage::Select(_, at)
        | Stage::Coalesce(at)
        | Stage::Metrics { at, .. }
        | Stage::Compare { at, .. }
        | Stage::Followup { at, .. } => Some(*at),
        Stage::Filter(_) => None,
    }
}

fn is_duration(expr: &Expr) -> bool {
    matches!(expr, Expr::Intrinsic(Intrinsic::Duration, _))
}

/// A `by()` label as Tempo names it: the attribute as written.
fn label_name(expr: &Expr) -> Option<String> {
    Some(match expr {
        Expr::Attribute { scope, name, .. } => {
            let prefix = match scope {
                Scope::Span => "span.",
                Scope::Resource => "resource.",
                Scope::Event => "event.",
                Scope::Link => "link.",
                Scope::Instrumentation => "instrumentation.",
                Scope::Unscoped => ".",
            };
            format!("{prefix}{name}")
        }
        Expr::Intrinsic(intrinsic, _) => intrinsic.name().to_owned(),
        _ => return None,
    })
}

impl QueryEngine {
    /// The series of a metrics query over `window` in steps of `step_ns`
    /// from the window's start.
    pub async fn traceql_metrics(
        &self,
        tenant: &TenantId,
        query: &TraceQlMetrics,
        window: Window,
        step_ns: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let step_ns = step_ns.max(1);
        let start_ns = window.start_ns;
        let range = window.end_ns.saturating_sub(start_ns);
        let points = range / step_ns + i64::from(range % step_ns != 0);
        if points > MAX_POINTS {
            return Err(QueryError::BadRequest(format!(
                "{points} points per series is more than {MAX_POINTS}: use a larger step or a shorter range"
            )));
        }
        let many_valued = match &query.function {
            Function::Compare(_) => self.many_valued_keys(tenant, &window).await?,
            _ => Vec::new(),
        };
        let mut params = Params::default();
        let sql = query
            .sql(&window, step_ns, &many_valued, &mut params)
            .map_err(|e| QueryError::BadRequest(e.to_string()))?;
        let steps: Vec<i64> = (0..points).map(|i| start_ns + i * step_ns).collect();
        if let Function::Compare(compare) = &query.function {
            return Ok(compare.series(self.rows(tenant, &sql, params).await?, &steps));
        }
        let names: Vec<String> = query.by.iter().filter_map(label_name).collect();
        let quantiles = match &query.function {
            Function::Quantiles(_, q) => q.clone(),
            _ => vec![],
        };
        // Labels (in order) → step start → value.
        let mut series: BTreeMap<Vec<(String, LabelKey)>, BTreeMap<i64, f64>> = BTreeMap::new();
        for batch in self.batches(tenant, &sql, params).await? {
            let c = Columns(&batch);
            let times = c.ints("t")?;
            let groups = (0..names.len()).map(|i| c.texts(&format!("g{i}"))).collect::<Result<Vec<_>, _>>()?;
            let buckets = matches!(query.function, Function::Histogram(_)).then(|| c.floats("b")).transpose()?;
            let values =
                (0..quantiles.len().max(1)).map(|i| c.floats(&format!("v{i}"))).collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                let mut labels: Vec<(String, LabelKey)> = names
                    .iter()
                    .zip(&groups)
                    .filter(|(_, g)| !arrow::array::Array::is_null(*g, row))
                    .map(|(name, g)| (name.clone(), LabelKey::Text(g.value(row).to_owned())))
                    .collect();
                if let Some(b) = &buckets {
                    labels.push(("__bucket".to_owned(), LabelKey::Number(b.value(row).to_bits())));
                }
                for (i, v) in values.iter().enumerate() {
                    if arrow::array::Array::is_null(v, row) {
                        continue;
                    }
                    let mut labels = labels.clone();
                    if let Some(q) = quantiles.get(i) {
                        labels.push(("p".to_owned(), LabelKey::Number(q.to_bits())));
                    }
                    series.entry(labels).or_default().insert(times[row], v.value(row));
                }
            }
        }
        if series.len() > MAX_SERIES && query.rank.is_none() {
            return Err(QueryError::BadRequest(format!(
                "{} series is more than {MAX_SERIES}: narrow by() or add topk()",
                series.len()
            )));
        }
        let mut out: Vec<Series> = series
            .into_iter()
            .map(|(labels, values)| Series {
                labels: labels.into_iter().map(|(k, v)| (k, v.into())).collect(),
                samples: match query.counts() {
                    true => steps.iter().map(|t| (t / 1_000_000, values.get(t).copied().unwrap_or(0.0))).collect(),
                    false => values.into_iter().map(|(t, v)| (t / 1_000_000, v)).collect(),
                },
            })
            .collect();
        if let Some(rank) = query.rank {
            out = ranked(out, rank);
        }
        Ok(out)
    }
}

/// Labels as map keys: numbers by their bits, so they order and compare.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LabelKey {
    Text(String),
    Number(u64),
}

impl From<LabelKey> for LabelValue {
    fn from(key: LabelKey) -> Self {
        match key {
            LabelKey::Text(text) => Self::Text(text),
            LabelKey::Number(bits) => Self::Number(f64::from_bits(bits)),
        }
    }
}

/// At each step, only the `k` series with the highest (`topk`) or lowest
/// (`bottomk`) values keep their sample there; series left without a
/// sample are dropped.
fn ranked(mut series: Vec<Series>, rank: Rank) -> Vec<Series> {
    let mut at_step: BTreeMap<i64, Vec<(f64, usize)>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        for (t, v) in &s.samples {
            at_step.entry(*t).or_default().push((*v, i));
        }
    }
    let mut keep: std::collections::HashSet<(usize, i64)> = std::collections::HashSet::new();
    for (t, mut values) in at_step {
        let (k, descending) = match rank {
            Rank::Top(k) => (k, true),
            Rank::Bottom(k) => (k, false),
        };
        values.sort_by(|a, b| if descending { b.0.total_cmp(&a.0) } else { a.0.total_cmp(&b.0) }.then(a.1.cmp(&b.1)));
        keep.extend(values.into_iter().take(k).map(|(_, i)| (i, t)));
    }
    for (i, s) in series.iter_mut().enumerate() {
        s.samples.retain(|(t, _)| keep.contains(&(i, *t)));
    }
    series.retain(|s| !s.samples.is_empty());
    series
}
