//! What spanlake adds to datafusion-postgres's statement handling.
//!
//! datafusion-postgres runs any statement DataFusion can plan, CREATE
//! EXTERNAL TABLE and COPY included, with no time or row limit. Its hooks
//! run in order and the first to answer wins, so spanlake puts:
//!
//! 1. [`SessionStatements`] first: `SET datafusion.*` would let a client
//!    raise its own memory limit or parallelism, so it is refused; Postgres
//!    settings (`statement_timeout`, `DateStyle`, `TimeZone`, ...) pass on.
//!    `DEALLOCATE` and `DISCARD`, which drivers and pools send, are answered.
//! 2. the library's `SET`/`SHOW` and transaction hooks (BEGIN and COMMIT are
//!    answered; there is nothing to commit).
//! 3. [`Queries`] last: every other statement goes through spanlake's
//!    read-only planner and runs under the query limits.
//!
//! The library's cursor hook is left out: it plans `DECLARE` queries itself.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::types::format::FormatOptions;

use super::wire;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::sql::read_only_plan;

/// The hooks, in the order they are asked.
pub(super) fn hooks(engine: &Arc<QueryEngine>) -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(SessionStatements),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
        Arc::new(Queries { engine: Arc::clone(engine) }),
    ]
}

/// Refuses `SET datafusion.*`; answers `DEALLOCATE` and `DISCARD`.
#[derive(Debug)]
struct SessionStatements;

impl SessionStatements {
    fn answer(statement: &Statement, client: &dyn HookClient) -> Option<PgWireResult<Response>> {
        if let Some(refused) = refused_setting(statement) {
            return Some(Err(refused));
        }
        match statement {
            Statement::Deallocate { name, .. } if name.value.eq_ignore_ascii_case("all") => {
                // pgwire's store cannot list statements; they go with the connection.
                Some(Ok(Response::Execution(Tag::new("DEALLOCATE ALL"))))
            }
            Statement::Deallocate { name, .. } => {
                client.portal_store().rm_statement(&name.value);
                Some(Ok(Response::Execution(Tag::new("DEALLOCATE"))))
            }
            Statement::Discard { .. } => Some(Ok(Response::Execution(Tag::new("DISCARD ALL")))),
            _ => None,
        }
    }
}

#[async_trait]
impl QueryHook for SessionStatements {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement, client)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Some(refused) = refused_setting(statement) {
            return Some(Err(refused));
        }
        // Answered when executed, with no rows.
        matches!(statement, Statement::Deallocate { .. } | Statement::Discard { .. })
            .then(|| LogicalPlanBuilder::empty(false).build().map_err(|e| error(e.into())))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::answer(statement, client)
    }
}

fn refused_setting(statement: &Statement) -> Option<PgWireError> {
    let Statement::Set(Set::SingleAssignment { variable, .. }) = statement else { return None };
    variable.to_string().to_ascii_lowercase().starts_with("datafusion").then(|| {
        error(QueryError::Refused(format!(
            "{variable} cannot be changed over pgwire: spanlake's query limits are set by its flags"
        )))
    })
}

/// Plans every remaining statement read-only; runs simple queries. Extended
/// queries are run by the connection (`connection.rs`), which has the
/// result formats the client asked for.
#[derive(Debug)]
struct Queries {
    engine: Arc<QueryEngine>,
}

#[async_trait]
impl QueryHook for Queries {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Some(match plan(ctx, statement).await {
            Ok(plan) => run(&self.engine, ctx, plan, &*client, &Format::UnifiedText).await,
            Err(e) => Err(error(e)),
        })
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Some(plan(ctx, statement).await.map_err(error))
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}

/// The read-only plan of `statement`, its columns converted for the wire.
async fn plan(ctx: &SessionContext, statement: &Statement) -> Result<LogicalPlan, QueryError> {
    let plan = read_only_plan(ctx, DfStatement::Statement(Box::new(statement.clone()))).await?;
    Ok(wire::project(ctx, plan)?)
}

/// Runs `plan` within the query limits, and the client's own
/// `statement_timeout` if shorter, and encodes the rows in `format`.
pub(super) async fn run(
    engine: &QueryEngine,
    ctx: &SessionContext,
    plan: LogicalPlan,
    client: &(dyn ClientInfo + Send + Sync),
    format: &Format,
) -> PgWireResult<Response> {
    let query = engine.run_plan(ctx, plan);
    let result = match statement_timeout(client) {
        Some(limit) => tokio::time::timeout(limit, query)
            .await
            .unwrap_or(Err(QueryError::Cancelled("it ran past the client's statement_timeout"))),
        None => query.await,
    }
    .map_err(error)?;
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(&result.schema, format, Some(options))?);
    // Rows are encoded as pgwire sends them, not all up front.
    let encoder = Arc::clone(&fields);
    let rows = result.batches.into_iter().flat_map(move |batch| encode_recordbatch(Arc::clone(&encoder), batch));
    Ok(Response::Query(QueryResponse::new(fields, futures::stream::iter(rows))))
}

/// The client's `SET statement_timeout`, as datafusion-postgres records it.
fn statement_timeout(client: &(dyn ClientInfo + Send + Sync)) -> Option<std::time::Duration> {
    let millis = client.metadata().get("statement_timeout_ms")?.parse().ok()?;
    Some(std::time::Duration::from_millis(millis))
}

/// A Postgres error with the SQLSTATE closest to what went wrong.
pub(super) fn error(e: QueryError) -> PgWireError {
    let code = sqlstate(&e);
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), e.to_string())))
}

fn sqlstate(e: &QueryError) -> &'static str {
    match e {
        QueryError::Refused(_) => "25006",    // read_only_sql_transaction
        QueryError::BadRequest(_) => "22023", // invalid_parameter_value
        QueryError::NotFound(_) => "42704",   // undefined_object
        QueryError::Timeout(_) | QueryError::Cancelled(_) => "57014", // query_canceled
        QueryError::Unavailable(_) => "57P03", // cannot_connect_now
        QueryError::TooManyRows(_) => "54000", // program_limit_exceeded
        QueryError::DataFusion(e) => datafusion_sqlstate(e),
        QueryError::Otlp(_) | QueryError::Storage(_) | QueryError::Render(_) => "XX000",
    }
}

fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => "53200", // out_of_memory
        DataFusionError::SQL(..) => "42601",               // syntax_error
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => "42000", // syntax_error_or_access_rule_violation
        DataFusionError::NotImplemented(_) => "0A000",     // feature_not_supported
        _ => "XX000",                                      // internal_error
    }
}

/// Gives errors raised inside datafusion-postgres (its parser, planning in
/// its own hooks) a SQLSTATE too; they would all be XX000, internal error.
#[derive(Debug)]
pub(super) struct Errors;

impl ErrorHandler for Errors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        let PgWireError::ApiError(inner) = error else { return };
        let code = match inner.downcast_ref::<DataFusionError>() {
            Some(e) => datafusion_sqlstate(e),
            None if inner.is::<ParserError>() => "42601",
            None => return,
        };
        *error = PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), inner.to_string())));
    }
}
