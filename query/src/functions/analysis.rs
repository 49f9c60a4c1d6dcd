//! The version and retry analyses as table functions, answering the same
//! rows as the API (`crate::versions`, `crate::retries`) so they join with
//! anything else:
//!
//! - `versions('checkout')`: one row per version;
//! - `version_compare('checkout', '2.0.1', '2.1.0')`: one row per
//!   operation and one for all (operation NULL), with the tests and verdicts;
//! - `version_callers('checkout', '2.0.1')`, `version_callees(…)`: one row
//!   per calling (called) service and version;
//! - `retries()`, `retries('checkout')`: one row per edge with retries,
//!   errors or abandoned work.
//!
//! Each takes the window last: nothing (the last hour), a lookback
//! (`INTERVAL '6 hours'`), or a start and an end (timestamps or text as the
//! API takes them). The analysis runs when the query is planned, in the
//! query's own session, so it is bounded like the query.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::error::QueryError;
use crate::params::{HOUR_NS, Timestamp, Window};
use crate::retries::{RetryEdge, retries};
use crate::versions::compare::{CompareRequest, DEFAULT_ALPHA, OperationComparison, compare};
use crate::versions::{Direction, VersionPeer, VersionStats, version_calls, versions};

pub(super) fn functions() -> Vec<(&'static str, Arc<dyn TableFunctionImpl>)> {
    [Analysis::Versions, Analysis::Compare, Analysis::Callers, Analysis::Callees, Analysis::Retries]
        .into_iter()
        .map(|a| (a.name(), Arc::new(a) as Arc<dyn TableFunctionImpl>))
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Analysis {
    Versions,
    Compare,
    Callers,
    Callees,
    Retries,
}

impl Analysis {
    fn name(self) -> &'static str {
        match self {
            Self::Versions => "versions",
            Self::Compare => "version_compare",
            Self::Callers => "version_callers",
            Self::Callees => "version_callees",
            Self::Retries => "retries",
        }
    }

    /// The text arguments before the window: (fewest, most).
    fn texts(self) -> (usize, usize) {
        match self {
            Self::Versions => (1, 1),
            Self::Compare => (3, 3),
            Self::Callers | Self::Callees => (2, 2),
            Self::Retries => (0, 1),
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Self::Versions => "versions('service' [, window])",
            Self::Compare => "version_compare('service', 'baseline', 'candidate' [, window])",
            Self::Callers => "version_callers('service', 'version' [, window])",
            Self::Callees => "version_callees('service', 'version' [, window])",
            Self::Retries => "retries(['service'] [, window])",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CompareRow {
    operation: Option<String>,
    verdict: String,
    baseline_requests: i64,
    candidate_requests: i64,
    baseline_error_rate: Option<f64>,
    candidate_error_rate: Option<f64>,
    baseline_p50_ms: Option<f64>,
    candidate_p50_ms: Option<f64>,
    baseline_p99_ms: Option<f64>,
    candidate_p99_ms: Option<f64>,
    latency_p_value: Option<f64>,
    latency_adjusted_p_value: Option<f64>,
    probability_slower: Option<f64>,
    errors_p_value: Option<f64>,
    errors_adjusted_p_value: Option<f64>,
    error_rate_difference: Option<f64>,
    needed_per_version: i64,
}

impl From<&OperationComparison> for CompareRow {
    fn from(o: &OperationComparison) -> Self {
        Self {
            operation: o.operation.clone(),
            verdict: o.verdict.as_str().to_owned(),
            baseline_requests: o.baseline.requests,
            candidate_requests: o.candidate.requests,
            baseline_error_rate: o.baseline.error_rate,
            candidate_error_rate: o.candidate.error_rate,
            baseline_p50_ms: o.baseline.p50_ms,
            candidate_p50_ms: o.candidate.p50_ms,
            baseline_p99_ms: o.baseline.p99_ms,
            candidate_p99_ms: o.candidate.p99_ms,
            latency_p_value: o.latency.as_ref().map(|t| t.p_value),
            latency_adjusted_p_value: o.latency.as_ref().map(|t| t.adjusted_p_value),
            probability_slower: o.latency.as_ref().map(|t| t.probability_slower),
            errors_p_value: o.errors.as_ref().map(|t| t.p_value),
            errors_adjusted_p_value: o.errors.as_ref().map(|t| t.adjusted_p_value),
            error_rate_difference: o.errors.as_ref().map(|t| t.difference),
            needed_per_version: o.needed_per_version,
        }
    }
}

/// One call of a table function, its arguments parsed.
#[derive(Debug, Clone)]
enum Call {
    Versions { service: String },
    Compare(CompareRequest),
    Calls { service: String, version: String, direction: Direction },
    Retries { service: Option<String> },
}

impl TableFunctionImpl for Analysis {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (fewest, most) = self.texts();
        let exprs = args.exprs();
        let texts: Vec<String> = exprs.iter().take(most).map_while(text_literal).collect();
        if texts.len() < fewest {
            return plan_err!("{} takes {}", self.name(), self.usage());
        }
        let window = window_arguments(&exprs[texts.len()..])
            .map_err(|e| DataFusionError::Plan(format!("{}: {e}; it takes {}", self.name(), self.usage())))?;
        let text = |i: usize| texts.get(i).cloned().unwrap_or_default();
        let (call, fields) = match self {
            Self::Versions => (Call::Versions { service: text(0) }, fields::<VersionStats>()?),
            Self::Compare => {
                let request = CompareRequest {
                    service: text(0),
                    baseline: text(1),
                    candidate: text(2),
                    window,
                    alpha: DEFAULT_ALPHA,
                };
                (Call::Compare(request), fields::<CompareRow>()?)
            }
            Self::Callers | Self::Callees => {
                let direction = if matches!(self, Self::Callers) { Direction::Callers } else { Direction::Callees };
                (Call::Calls { service: text(0), version: text(1), direction }, fields::<VersionPeer>()?)
            }
            Self::Retries => (Call::Retries { service: texts.first().cloned() }, fields::<RetryEdge>()?),
        };
        Ok(Arc::new(AnalysisTable { name: self.name(), call, window, fields }))
    }
}

/// A table's columns: the fields of the rows it holds, as serde names them
/// (the API's camelCase), in SQL's snake_case.
fn fields<T: Serialize + DeserializeOwned>() -> Result<Vec<FieldRef>> {
    Ok(traced::<T>()?.iter().map(|f| Arc::new(f.as_ref().clone().with_name(snake_case(f.name())))).collect())
}

fn traced<T: Serialize + DeserializeOwned>() -> Result<Vec<FieldRef>> {
    Vec::<FieldRef>::from_type::<T>(TracingOptions::default().strings_as_large_utf8(false))
        .map_err(|e| DataFusionError::External(e.into()))
}

fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

/// A text literal argument.
fn text_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// The window from the trailing arguments: none, a lookback interval, or a
/// start and an end.
fn window_arguments(exprs: &[Expr]) -> std::result::Result<Window, String> {
    let time = |expr: &Expr| -> std::result::Result<i64, String> {
        match expr {
            Expr::Literal(ScalarValue::TimestampNanosecond(Some(t), _), _) => Ok(*t),
            Expr::Literal(ScalarValue::TimestampMicrosecond(Some(t), _), _) => Ok(t.saturating_mul(1_000)),
            Expr::Literal(ScalarValue::TimestampMillisecond(Some(t), _), _) => Ok(t.saturating_mul(1_000_000)),
            Expr::Literal(ScalarValue::TimestampSecond(Some(t), _), _) => Ok(t.saturating_mul(1_000_000_000)),
            Expr::Cast(cast) => text_literal(&cast.expr)
                .ok_or_else(|| format!("a time must be a literal, not {expr}"))?
                .parse::<Timestamp>()
                .map(|t| t.0),
            other => text_literal(other)
                .ok_or_else(|| format!("a time must be a timestamp or text literal, not {other}"))?
                .parse::<Timestamp>()
                .map(|t| t.0),
        }
    };
    match exprs {
        [] => Ok(Window::new(None, None, None, HOUR_NS)),
        [Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _)] if i.months == 0 => {
            let lookback = i64::from(i.days).saturating_mul(86_400_000_000_000).saturating_add(i.nanoseconds);
            if lookback <= 0 {
                return Err("the lookback must be positive".into());
            }
            Ok(Window::new(None, None, Some(lookback), HOUR_NS))
        }
        [Expr::Literal(ScalarValue::IntervalDayTime(Some(i)), _)] => {
            let lookback = i64::from(i.days) * 86_400_000_000_000 + i64::from(i.milliseconds) * 1_000_000;
            if lookback <= 0 {
                return Err("the lookback must be positive".into());
            }
            Ok(Window::new(None, None, Some(lookback), HOUR_NS))
        }
        [start, end] => Ok(Window::new(Some(time(start)?), Some(time(end)?), None, HOUR_NS)),
        [other] => {
            Err(format!("the window is a lookback interval (INTERVAL '1 hour') or a start and an end, not {other}"))
        }
        _ => Err("too many arguments".into()),
    }
}

#[derive(Debug)]
struct AnalysisTable {
    name: &'static str,
    call: Call,
    window: Window,
    fields: Vec<FieldRef>,
}

impl AnalysisTable {
    async fn run(&self, ctx: &SessionContext) -> std::result::Result<RecordBatch, QueryError> {
        let window = &self.window;
        match &self.call {
            Call::Versions { service } => self.batch(&versions(ctx, service, window).await?.versions),
            Call::Compare(request) => {
                let comparison = compare(ctx, request).await?;
                let rows: Vec<CompareRow> =
                    std::iter::once(&comparison.overall).chain(&comparison.operations).map(CompareRow::from).collect();
                self.batch(&rows)
            }
            Call::Calls { service, version, direction } => {
                self.batch(&version_calls(ctx, service, version, *direction, window).await?.peers)
            }
            // No tag summaries here: look for resends on every span.
            Call::Retries { service } => self.batch(&retries(ctx, service.as_deref(), window, true).await?.edges),
        }
    }

    /// The rows as the table's columns: serialized under their serde
    /// names, then given the table's.
    fn batch<T: Serialize + DeserializeOwned>(&self, rows: &[T]) -> std::result::Result<RecordBatch, QueryError> {
        let render = |e: &dyn std::fmt::Display| QueryError::Render(e.to_string());
        let traced = traced::<T>().map_err(|e| render(&e))?;
        let batch = serde_arrow::to_record_batch(&traced, &rows).map_err(|e| render(&e))?;
        RecordBatch::try_new(self.schema(), batch.columns().to_vec()).map_err(|e| render(&e))
    }
}

#[async_trait]
impl TableProvider for AnalysisTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.clone()))
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = super::session_of(state, self.name)?;
        let batch = self.run(&ctx).await.map_err(|e| match e {
            QueryError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        })?;
        MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())
            .map(|exec| exec as Arc<dyn ExecutionPlan>)
    }
}
