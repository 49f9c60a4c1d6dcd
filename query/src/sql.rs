//! User SQL, read-only, for every surface (HTTP, CLI, pgwire).
//!
//! Two gates: the statement must be a query (SELECT / WITH / VALUES, or
//! EXPLAIN, SHOW, DESCRIBE of one), and the plan must pass DataFusion's own
//! check with DDL, DML and statements off. Tables come only from the
//! session's catalog (no `SELECT * FROM '/path'`: URL tables stay disabled),
//! and no registered function reads files.

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;
use spanlake_storage::{TenantId, ids};

use crate::distributed;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::render::JsonResult;

/// The answer to a query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The rows as JSON values (ids as hex, maps as objects).
    pub fn to_json(&self) -> Result<JsonResult, QueryError> {
        JsonResult::from_result(self).map_err(|e| QueryError::Render(e.to_string()))
    }
}

impl QueryEngine {
    /// Runs one read-only SQL statement against `tenant`'s tables.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<QueryResult, QueryError> {
        self.sql_with(tenant, sql, &ParamValues::List(Vec::new())).await
    }

    /// Runs one read-only SQL statement with its `$1`, `$2`... bound to
    /// `params`, each cast to the type the statement gives it.
    pub async fn sql_with(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: &ParamValues,
    ) -> Result<QueryResult, QueryError> {
        let ctx = self.session(tenant).await?;
        let plan = read_only_plan(&ctx, one_statement(sql)?).await?;
        let plan = match params {
            ParamValues::List(values) if values.is_empty() => plan,
            _ => {
                let params = bind_params(&plan, params.clone())?;
                plan.replace_params_with_values(&params)?
            }
        };
        self.run_plan(&ctx, plan).await
    }

    /// What a statement would answer and take, without running it: its
    /// columns, and the types of its parameters, `$1` first (`None` where
    /// the statement does not decide one).
    pub async fn describe(&self, tenant: &TenantId, sql: &str) -> Result<Described, QueryError> {
        let ctx = self.session(tenant).await?;
        let plan = read_only_plan(&ctx, one_statement(sql)?).await?;
        Ok(Described { schema: plan.schema().inner().clone(), parameters: parameter_types(&plan)? })
    }

    /// Runs a plan (from [`read_only_plan`]) within the query limits.
    pub(crate) async fn run_plan(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<QueryResult, QueryError> {
        if self.distributes()
            && let Some(explained) = distributed::explain(ctx, &plan).await?
        {
            return Ok(explained);
        }
        let frame = ctx.execute_logical_plan(plan).await?;
        let schema = frame.schema().inner().clone();
        let batches = self.collect(frame).await?;
        Ok(QueryResult { schema, batches })
    }
}

/// A statement's columns and parameter types.
#[derive(Debug, Clone)]
pub struct Described {
    pub schema: SchemaRef,
    pub parameters: Vec<Option<DataType>>,
}

/// The plan's parameter types, `$1` first, up to the highest it names
/// (`None` where the statement does not decide one).
pub(crate) fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, QueryError> {
    let types = plan.get_parameter_types()?;
    let number = |name: &str| name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
    let count = types.keys().filter_map(|name| number(name)).max().unwrap_or(0);
    Ok((1..=count).map(|n| types.get(&format!("${n}")).cloned().flatten()).collect())
}

/// Parameter values as the plan takes them, for every surface that binds
/// parameters (pgwire, Flight SQL): ids from hex text (or their bytes),
/// other values cast to the type the plan gives them (a driver binds `5` as
/// Int64 for an Int32 column).
pub(crate) fn bind_params(plan: &LogicalPlan, params: ParamValues) -> Result<ParamValues, QueryError> {
    let ParamValues::List(values) = params else { return Ok(params) };
    let types = parameter_types(plan)?;
    let bound = values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let bad = |e: String| QueryError::BadRequest(format!("parameter ${}: {e}", i + 1));
            let scalar = match (types.get(i).cloned().flatten(), value.value()) {
                (Some(DataType::FixedSizeBinary(width)), ScalarValue::Utf8(Some(hex))) => {
                    let id = ids::parse_id(hex, width as usize).map_err(|e| bad(e.to_string()))?;
                    ScalarValue::FixedSizeBinary(width, Some(id))
                }
                (Some(DataType::FixedSizeBinary(width)), ScalarValue::Binary(Some(bytes))) => {
                    ScalarValue::FixedSizeBinary(width, Some(bytes.clone()))
                }
                (Some(wanted), scalar) if scalar.data_type() != wanted => {
                    scalar.cast_to(&wanted).map_err(|e| bad(e.strip_backtrace()))?
                }
                _ => return Ok(value),
            };
            Ok(scalar.into())
        })
        .collect::<Result<_, QueryError>>()?;
    Ok(ParamValues::List(bound))
}

/// Plans `statement` if it only reads spanlake's tables.
pub(crate) async fn read_only_plan(ctx: &SessionContext, statement: DfStatement) -> Result<LogicalPlan, QueryError> {
    check_read_only(&statement)?;
    let plan = ctx.state().statement_to_plan(statement).await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| QueryError::Refused(e.strip_backtrace()))?;
    Ok(plan)
}

/// Refuses the statements of DataFusion's own dialect that touch files:
/// `CREATE EXTERNAL TABLE` and `COPY … TO '<path>'`. For pgwire, whose
/// Postgres parser cannot read them and would only report a syntax error:
/// the same refusal, in the same words, as over HTTP. Anything else is left
/// to the caller's parser and gates.
pub(crate) fn refuse_file_statements(sql: &str) -> Result<(), QueryError> {
    let Ok(statements) = DFParser::parse_sql(sql) else { return Ok(()) };
    statements
        .iter()
        .filter(|s| matches!(s, DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_)))
        .try_for_each(check_read_only)
}

/// Parses `sql`, which must hold exactly one statement.
fn one_statement(sql: &str) -> Result<DfStatement, QueryError> {
    let mut statements: VecDeque<DfStatement> = DFParser::parse_sql(sql)?;
    match (statements.pop_front(), statements.is_empty()) {
        (Some(statement), true) => Ok(statement),
        (None, _) => Err(QueryError::Refused("the SQL text holds no statement".into())),
        (Some(_), false) => Err(QueryError::Refused("send one SQL statement at a time".into())),
    }
}

fn check_read_only(statement: &DfStatement) -> Result<(), QueryError> {
    if reads_only(statement) {
        Ok(())
    } else {
        Err(QueryError::Refused(format!(
            "spanlake SQL is read-only: only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE are allowed, not {}",
            statement_kind(statement)
        )))
    }
}

fn reads_only(statement: &DfStatement) -> bool {
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            Statement::Query(_) | Statement::ShowTables { .. } | Statement::ShowColumns { .. } => true,
            Statement::ExplainTable { .. } => true,
            Statement::Explain { statement, .. } => matches!(statement.as_ref(), Statement::Query(_)),
            _ => false,
        },
        DfStatement::Explain(explain) => reads_only(&explain.statement),
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) | DfStatement::Reset(_) => false,
    }
}

/// The leading keywords of a statement, for error messages.
fn statement_kind(statement: &DfStatement) -> String {
    match statement {
        DfStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE".into(),
        DfStatement::CopyTo(_) => "COPY".into(),
        DfStatement::Reset(_) => "RESET".into(),
        DfStatement::Explain(_) => "EXPLAIN of a statement that is not a query".into(),
        DfStatement::Statement(s) => {
            let text = s.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            words.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pass_and_everything_else_is_refused() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1) SELECT * FROM t",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "DESCRIBE spans",
        ] {
            assert!(one_statement(ok).and_then(|s| check_read_only(&s)).is_ok(), "{ok}");
        }
        for refused in [
            "CREATE EXTERNAL TABLE p (a TEXT) STORED AS CSV LOCATION '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/x.csv'",
            "INSERT INTO spans VALUES (1)",
            "DROP TABLE spans",
            "CREATE TABLE t AS SELECT 1",
            "SET datafusion.execution.batch_size = 1",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
            "SELECT 1; SELECT 2",
        ] {
            let err = one_statement(refused).and_then(|s| check_read_only(&s)).unwrap_err();
            assert!(matches!(err, QueryError::Refused(_)), "{refused}: {err}");
        }
    }
}
