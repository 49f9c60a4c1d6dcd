//! One pgwire connection: who it is (startup and password), its tenant
//! (the user name), and its DataFusion session, made on the first statement
//! so that `SET` and `TimeZone` stay with the connection that sent them.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    PgCatalogSchemaProvider, PgCatalogStaticTables, setup_pg_catalog,
};
use datafusion_postgres::pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, Response};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, METADATA_USER, PgWireServerHandlers, Type,
};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::Sink;
use spanlake_storage::TenantId;
use tokio::sync::OnceCell;

use super::hooks::{self, Errors, error};
use super::wire::WireCatalog;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::sql::{bind_params, parameter_types, refuse_file_statements};

/// A prepared statement as datafusion-postgres keeps it: the SQL, and the
/// statement with its plan.
type Prepared = (String, Option<(Statement, LogicalPlan)>);

/// The handlers of one connection.
#[derive(Debug)]
pub(super) struct Connection {
    statements: Arc<Statements>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Connection {
    pub(super) fn new(engine: Arc<QueryEngine>, token: Option<Arc<str>>, connections: Arc<ConnectionManager>) -> Self {
        Self {
            statements: Arc::new(Statements { engine, session: OnceCell::new() }),
            startup: Arc::new(Startup { token, connections: Arc::clone(&connections) }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Handler(Arc::clone(&self.statements)))
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Handler(Arc::clone(&self.statements)))
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(Errors)
    }
}

/// Startup: the user must name a tenant, and give the token as password
/// when spanlake has one. Connections are registered for cancel requests.
#[derive(Debug)]
struct Startup {
    token: Option<Arc<str>>,
    connections: Arc<ConnectionManager>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup.parameters.get(METADATA_USER).map_or("", String::as_str);
            TenantId::new(user).map_err(|e| {
                fatal("28000", format!("the user name selects the tenant, and {user:?} is not one: {e}"))
            })?;
        }
        match &self.token {
            None => Trust(Arc::clone(&self.connections)).on_startup(client, message).await,
            Some(token) => {
                CleartextPasswordAuthStartupHandler::new(
                    Token(Arc::clone(token)),
                    DefaultServerParameterProvider::default(),
                )
                .with_connection_manager(Arc::clone(&self.connections))
                .on_startup(client, message)
                .await
            }
        }
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// No password asked (spanlake runs without `--auth-token`).
#[derive(Debug)]
struct Trust(Arc<ConnectionManager>);

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.0))
    }
}

#[derive(Debug)]
struct Token(Arc<str>);

#[async_trait]
impl AuthSource for Token {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(None, self.0.as_bytes().to_vec()))
    }
}

/// The connection's session, made for its tenant on first use.
#[derive(Debug)]
struct Statements {
    engine: Arc<QueryEngine>,
    session: OnceCell<Session>,
}

struct Session {
    ctx: Arc<SessionContext>,
    service: DfSessionService,
    hooks: Vec<Arc<dyn QueryHook>>,
}

impl Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Statements {
    async fn session<C: ClientInfo + ?Sized>(&self, client: &C) -> PgWireResult<&Session> {
        self.session
            .get_or_try_init(|| async {
                let user = client.metadata().get(METADATA_USER).map_or("", String::as_str);
                let tenant = TenantId::new(user).map_err(|e| error(QueryError::BadRequest(e.to_string())))?;
                let ctx = self.engine.session(&tenant).await.map_err(error)?;
                add_pg_catalog(&ctx).map_err(|e| error(QueryError::DataFusion(*e)))?;
                let ctx = Arc::new(ctx);
                let hooks = hooks::hooks(&self.engine);
                let service = DfSessionService::new_with_hooks(Arc::clone(&ctx), hooks.clone());
                Ok(Session { ctx, service, hooks })
            })
            .await
    }

    fn parser(&self) -> PgWireResult<Arc<Parser>> {
        // Statements exist only after `parse_sql`, which makes the session.
        let session = self.session.get().ok_or_else(|| error(QueryError::Render("no session yet".into())))?;
        Ok(session.service.query_parser())
    }
}

/// `pg_catalog`, describing tables with the types clients receive.
fn add_pg_catalog(ctx: &SessionContext) -> Result<(), Box<datafusion::error::DataFusionError>> {
    const CATALOG: &str = "datafusion";
    // The library's functions and tables, then its pg_catalog schema again
    // over the wire types.
    setup_pg_catalog(ctx, CATALOG, EmptyContextProvider)?;
    let tables = Arc::new(PgCatalogStaticTables::try_new()?);
    let pg_catalog = PgCatalogSchemaProvider::try_new(
        WireCatalog(ctx.state().catalog_list().clone()),
        tables,
        EmptyContextProvider,
    )?;
    if let Some(catalog) = ctx.catalog(CATALOG) {
        catalog.register_schema("pg_catalog", Arc::new(pg_catalog))?;
    }
    Ok(())
}

/// pgwire's query handlers, over the connection's session.
#[derive(Debug)]
struct Handler(Arc<Statements>);

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        refuse_file_statements(query).map_err(error)?;
        let session = self.0.session(&*client).await?;
        SimpleQueryHandler::do_query(&session.service, client, query).await
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Statements;

    fn query_parser(&self) -> Arc<Statements> {
        Arc::clone(&self.0)
    }

    /// The hooks answer what they know (SET, SHOW, BEGIN, ...); everything
    /// else is a query, run in the result formats the client asked for.
    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.0.session(&*client).await?;
        let (_, Some((statement, plan))) = &portal.statement.statement else { return Ok(Response::EmptyQuery) };
        let params = parameters(portal, plan)?;
        for hook in &session.hooks {
            if let Some(response) = hook.handle_extended_query(statement, plan, &params, &session.ctx, client).await {
                return response;
            }
        }
        let plan = plan.clone().replace_params_with_values(&params).map_err(|e| error(e.into()))?;
        hooks::run(&self.0.engine, &session.ctx, plan, &*client, &portal.result_column_format).await
    }
}

fn is_id(data_type: Option<&DataType>) -> bool {
    matches!(data_type, Some(DataType::FixedSizeBinary(_)))
}

/// The bound parameter values, decoded by the types the client declared or
/// else the inferred ones, ids as hex text (or as bytes, if the client says
/// bytea), then bound as every surface binds them (`sql::bind_params`).
fn parameters(portal: &Portal<Prepared>, plan: &LogicalPlan) -> PgWireResult<ParamValues> {
    let inferred = parameter_types(plan).map_err(error)?;
    let decode_as: Vec<Option<&DataType>> =
        inferred.iter().map(|t| if is_id(t.as_ref()) { Some(&DataType::Utf8) } else { t.as_ref() }).collect();
    let values = deserialize_parameters(portal, &decode_as)?;
    bind_params(plan, values).map_err(error)
}

#[async_trait]
impl QueryParser for Statements {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        refuse_file_statements(sql).map_err(error)?;
        let session = self.session(client).await?;
        session.service.query_parser().parse_sql(client, sql, types).await
    }

    /// As the library infers them, except that ids are bound as hex text.
    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        let mut types = self.parser()?.get_parameter_types(statement)?;
        if let (_, Some((_, plan))) = statement {
            for (inferred, wire) in parameter_types(plan).map_err(error)?.iter().zip(&mut types) {
                if is_id(inferred.as_ref()) {
                    *wire = Type::TEXT;
                }
            }
        }
        Ok(types)
    }

    fn get_result_schema(&self, statement: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        self.parser()?.get_result_schema(statement, format)
    }
}
