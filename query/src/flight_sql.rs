//! Arrow Flight SQL on `--flight-sql-addr`: the same read-only SQL as
//! `POST /api/v1/sql` and pgwire, under the same limits, tenant
//! (`x-scope-orgid` metadata) and token (`authorization: Bearer`), answered
//! as Arrow record batches, for ADBC, JDBC Flight SQL drivers and DBeaver.
//! Clients that log in (`Handshake` with user and password, as JDBC does)
//! give the tenant as user and the token as password.
//!
//! A statement's `FlightInfo` plans it (so a refused statement fails
//! there) and hands out a ticket that names the statement and a query id;
//! `DoGet` runs it, once, within ten minutes. Prepared statements live in
//! this process until closed (10,000 at most), bound by `DoPut` to one row
//! of parameters. `CancelFlightInfo` (and the
//! older `CancelQuery`) stops the query of a ticket, running or not yet
//! started.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTables, CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use datafusion::common::{ParamValues, ScalarValue};
use futures::{Stream, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use spanlake_storage::{TENANT_HEADER, TenantId};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::AuthToken;
use crate::engine::QueryEngine;
use crate::error::QueryError;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// The Flight SQL service over `engine`; with `token`, every call must
/// carry it.
pub fn service(engine: Arc<QueryEngine>, token: Option<AuthToken>) -> FlightServiceServer<FlightSql> {
    FlightServiceServer::new(FlightSql { engine, token, statements: Mutex::default(), queries: Mutex::default() })
}

#[derive(Debug)]
pub struct FlightSql {
    engine: Arc<QueryEngine>,
    token: Option<AuthToken>,
    statements: Mutex<HashMap<u64, Prepared>>,
    /// Queries of tickets handed out and not yet finished, by query id,
    /// with when the ticket was made.
    queries: Mutex<HashMap<u64, (Instant, CancellationToken)>>,
}

/// A ticket not used this long is forgotten: clients that ask for a
/// `FlightInfo` (for its schema, say) and never read it must not pile up.
const TICKET_LIFETIME: Duration = Duration::from_secs(600);
/// Open prepared statements per process; more are refused until some close.
const MAX_PREPARED: usize = 10_000;

/// A prepared statement: its text, its tenant, and the parameters last bound.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    tenant: TenantId,
    params: Vec<ScalarValue>,
}

/// What a ticket runs, inside `TicketStatementQuery.statement_handle`.
#[derive(Debug, Serialize, Deserialize)]
struct QueryTicket {
    id: u64,
    statement: Statement,
}

#[derive(Debug, Serialize, Deserialize)]
enum Statement {
    Sql(String),
    Prepared(u64),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Ids no other process hands out alike: a restarted server refuses an old
/// handle instead of running another statement.
fn next_id() -> u64 {
    let started = *STARTED;
    started.wrapping_add(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

static STARTED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    let nanos = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default().as_nanos() as u64;
    nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15)
});

fn status(error: QueryError) -> Status {
    Status::new(error.grpc_code(), error.to_string())
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

/// The schema as Flight SQL carries it: an IPC schema message.
fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into().map_err(internal)?;
    Ok(bytes)
}

fn info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn batches_stream(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_dictionary_handling(DictionaryHandling::Resend)
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .map_err(|e| Status::internal(e.to_string()));
    Response::new(Box::pin(stream))
}

impl FlightSql {
    /// The caller's tenant, once its token is checked.
    fn caller<T>(&self, request: &Request<T>) -> Result<TenantId, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        // A handshake's session names the tenant; `x-scope-orgid` still wins.
        let session = bearer.and_then(|b| self.session(b));
        let token_given = bearer.is_some_and(|b| self.token.as_ref().is_some_and(|t| t.matches(b)));
        if self.token.is_some() && !token_given && session.is_none() {
            return Err(Status::unauthenticated("this server needs authorization: Bearer <token>"));
        }
        match request.metadata().get(TENANT_HEADER) {
            Some(value) => TenantId::from_header(Some(value.as_bytes()))
                .map_err(|e| Status::invalid_argument(format!("{e} (metadata x-scope-orgid)"))),
            None => Ok(session.unwrap_or_default()),
        }
    }

    /// The tenant of a bearer that `Handshake` handed out: `{tenant}.{token}`.
    fn session(&self, bearer: &str) -> Option<TenantId> {
        let (tenant, token) = bearer.split_once('.')?;
        let valid = match &self.token {
            Some(expected) => expected.matches(token),
            None => token.is_empty(),
        };
        valid.then(|| TenantId::new(tenant).ok()).flatten()
    }

    fn prepared(&self, handle: &[u8], tenant: &TenantId) -> Result<(u64, Prepared), Status> {
        let id = handle.try_into().map(u64::from_be_bytes).map_err(|_| unknown_statement())?;
        let statements = self.statements.lock().unwrap_or_else(|p| p.into_inner());
        match statements.get(&id) {
            Some(prepared) if &prepared.tenant == tenant => Ok((id, prepared.clone())),
            _ => Err(unknown_statement()),
        }
    }

    /// A ticket for `statement`, its query registered so that it can be
    /// cancelled before it runs.
    fn ticket(&self, statement: Statement) -> Result<Vec<u8>, Status> {
        let id = next_id();
        let mut queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
        queries.retain(|_, (made, _)| made.elapsed() < TICKET_LIFETIME);
        queries.insert(id, (Instant::now(), CancellationToken::new()));
        drop(queries);
        let handle = serde_json::to_vec(&QueryTicket { id, statement }).map_err(internal)?;
        Ok(TicketStatementQuery { statement_handle: handle.into() }.as_any().encode_to_vec())
    }

    /// Cancels the queries of `info`'s tickets; whether one was still to run.
    fn cancel(&self, info: &FlightInfo) -> bool {
        let queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
        let mut cancelled = false;
        for ticket in info.endpoint.iter().filter_map(|e| e.ticket.as_ref()) {
            let Some(query) = decode_ticket(&ticket.ticket) else { continue };
            if let Some((_, token)) = queries.get(&query.id) {
                token.cancel();
                cancelled = true;
            }
        }
        cancelled
    }

    async fn run(&self, tenant: &TenantId, ticket: QueryTicket) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
        let cancelled = self.queries.lock().unwrap_or_else(|p| p.into_inner()).get(&ticket.id).map(|(_, t)| t.clone());
        let Some(cancelled) = cancelled else {
            return Err(Status::not_found(
                "this ticket was used or cancelled; ask for the statement's FlightInfo again",
            ));
        };
        let query = async {
            match &ticket.statement {
                Statement::Sql(sql) => self.engine.sql(tenant, sql).await.map_err(status),
                Statement::Prepared(handle) => {
                    let (_, prepared) = self.prepared(&handle.to_be_bytes(), tenant)?;
                    let params = ParamValues::List(prepared.params.into_iter().map(Into::into).collect());
                    self.engine.sql_with(tenant, &prepared.sql, &params).await.map_err(status)
                }
            }
        };
        let result = tokio::select! {
            result = query => result,
            () = cancelled.cancelled() => Err(status(QueryError::Cancelled("by CancelFlightInfo"))),
        };
        self.queries.lock().unwrap_or_else(|p| p.into_inner()).remove(&ticket.id);
        let result = result?;
        Ok((result.schema, result.batches))
    }
}

fn unknown_statement() -> Status {
    Status::not_found("no such prepared statement (closed, or made by another server)")
}

fn decode_ticket(ticket: &[u8]) -> Option<QueryTicket> {
    let any = prost_types::Any::decode(ticket).ok()?;
    let query = TicketStatementQuery::decode(any.value.as_slice()).ok()?;
    serde_json::from_slice(&query.statement_handle).ok()
}

/// The parameters of a statement as Flight SQL states them: `$1`, `$2`...,
/// of the types the statement gives them (text where it leaves one open).
fn parameter_schema(parameters: &[Option<DataType>]) -> Schema {
    Schema::new(
        parameters
            .iter()
            .enumerate()
            .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(DataType::Utf8), true))
            .collect::<Vec<_>>(),
    )
}

/// Names the server answers `GetSqlInfo` with.
static SQL_INFO: std::sync::LazyLock<SqlInfoData> = std::sync::LazyLock::new(|| {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "spanlake");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    builder.append(SqlInfo::FlightSqlServerReadOnly, true);
    builder.append(SqlInfo::FlightSqlServerSql, true);
    builder.append(SqlInfo::FlightSqlServerSubstrait, false);
    builder.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    builder.append(SqlInfo::FlightSqlServerCancel, true);
    builder.build().expect("the server's SqlInfo")
});

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic authentication, as JDBC drivers and DBeaver log in: the user
    /// is the tenant (as over pgwire), the password the server's token.
    /// Answers a bearer for the calls that follow, naming the tenant.
    async fn do_handshake(
        &self,
        request: Request<tonic::Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let refused = || Status::unauthenticated("log in with the tenant as user and the server's token as password");
        let basic = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .ok_or_else(refused)?;
        // Go's Flight client leaves the padding out.
        let decoded =
            STANDARD.decode(basic.trim()).or_else(|_| STANDARD_NO_PAD.decode(basic.trim())).map_err(|_| refused())?;
        let (user, password) =
            std::str::from_utf8(&decoded).ok().and_then(|c| c.split_once(':')).ok_or_else(refused)?;
        let tenant = if user.is_empty() { TenantId::default() } else { TenantId::new(user).map_err(|_| refused())? };
        if self.token.as_ref().is_some_and(|t| !t.matches(password)) {
            return Err(refused());
        }
        let bearer =
            format!("Bearer {}.{}", tenant.as_str(), self.token.as_ref().map(|_| password).unwrap_or_default());
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(HandshakeResponse::default())])));
        response.metadata_mut().insert("authorization", bearer.parse().map_err(internal)?);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.caller(&request)?;
        let described = self.engine.describe(&tenant, &query.query).await.map_err(status)?;
        let ticket = self.ticket(Statement::Sql(query.query))?;
        info(&described.schema, ticket, request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.caller(&request)?;
        let (id, prepared) = self.prepared(&command.prepared_statement_handle, &tenant)?;
        let described = self.engine.describe(&tenant, &prepared.sql).await.map_err(status)?;
        info(&described.schema, self.ticket(Statement::Prepared(id))?, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.caller(&request)?;
        let ticket: QueryTicket = serde_json::from_slice(&ticket.statement_handle)
            .map_err(|_| Status::invalid_argument("not a ticket of this server"))?;
        let (schema, batches) = self.run(&tenant, ticket).await?;
        Ok(batches_stream(schema, batches))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.caller(&request)?;
        let described = self.engine.describe(&tenant, &query.query).await.map_err(status)?;
        let id = next_id();
        let prepared = Prepared { sql: query.query, tenant, params: Vec::new() };
        let mut statements = self.statements.lock().unwrap_or_else(|p| p.into_inner());
        if statements.len() >= MAX_PREPARED {
            return Err(Status::resource_exhausted(format!(
                "{MAX_PREPARED} prepared statements are open on this server; close some"
            )));
        }
        statements.insert(id, prepared);
        drop(statements);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: id.to_be_bytes().to_vec().into(),
            dataset_schema: ipc_schema(&described.schema)?,
            parameter_schema: ipc_schema(&parameter_schema(&described.parameters))?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let tenant = self.caller(&request)?;
        let (id, _) = self.prepared(&command.prepared_statement_handle, &tenant)?;
        let stream = request.into_inner().map_err(|e| e.into());
        let batches: Vec<RecordBatch> =
            FlightRecordBatchStream::new_from_flight_data(stream).try_collect().await.map_err(internal)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 1 {
            return Err(Status::invalid_argument(format!("bind one row of parameters, not {rows}")));
        }
        let params = match batches.iter().find(|b| b.num_rows() == 1) {
            Some(batch) => batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(internal)?,
            None => Vec::new(),
        };
        if let Some(prepared) = self.statements.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            prepared.params = params;
        }
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(id.to_be_bytes().to_vec().into()) })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let tenant = self.caller(&request)?;
        let (id, _) = self.prepared(&query.prepared_statement_handle, &tenant)?;
        self.statements.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.caller(&request)?;
        let info = FlightInfo::decode(query.info).map_err(|_| Status::invalid_argument("not a FlightInfo"))?;
        let result = if self.cancel(&info) { CancelStatus::Cancelled } else { CancelStatus::NotCancellable };
        Ok(ActionCancelQueryResult { result: result as i32 })
    }

    /// `CancelFlightInfo`, Flight's own cancellation, which newer drivers use.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>, Status> {
        self.caller(&request)?;
        let action = request.into_inner();
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!("unknown action {:?}", action.r#type)));
        }
        let cancel = CancelFlightInfoRequest::decode(action.body)
            .map_err(|_| Status::invalid_argument("not a CancelFlightInfoRequest"))?;
        let info =
            cancel.info.ok_or_else(|| Status::invalid_argument("CancelFlightInfoRequest without its FlightInfo"))?;
        let status = if self.cancel(&info) { CancelStatus::Cancelled } else { CancelStatus::NotCancellable };
        let result = CancelFlightInfoResult::new(status);
        let body = arrow_flight::Result { body: result.encode_to_vec().into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(body)]))))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.caller(&request)?;
        let mut builder = query.into_builder();
        let tables = self.tables(&tenant).await?;
        let mut catalogs: Vec<&str> = tables.iter().map(|(catalog, ..)| catalog.as_str()).collect();
        catalogs.dedup();
        for catalog in catalogs {
            builder.append(catalog);
        }
        let schema = builder.schema();
        Ok(batches_stream(schema, vec![builder.build().map_err(internal)?]))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.caller(&request)?;
        let mut builder = query.into_builder();
        let tables = self.tables(&tenant).await?;
        let mut schemas: Vec<(&str, &str)> = tables.iter().map(|(c, s, _)| (c.as_str(), s.as_str())).collect();
        schemas.dedup();
        for (catalog, schema) in schemas {
            builder.append(catalog, schema);
        }
        let schema = builder.schema();
        Ok(batches_stream(schema, vec![builder.build().map_err(internal)?]))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.caller(&request)?;
        let mut builder = query.into_builder();
        for (catalog, schema, table) in self.tables(&tenant).await? {
            builder.append(&catalog, &schema, &table.0, "TABLE", &table.1).map_err(internal)?;
        }
        let schema = builder.schema();
        Ok(batches_stream(schema, vec![builder.build().map_err(internal)?]))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request)?;
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        Ok(batches_stream(schema, vec![builder.build().map_err(internal)?]))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A table's name and columns.
type Table = (String, SchemaRef);

impl FlightSql {
    /// Every table of the tenant's session, sorted: catalog, schema, table.
    async fn tables(&self, tenant: &TenantId) -> Result<Vec<(String, String, Table)>, Status> {
        let ctx = self.engine.session(tenant).await.map_err(status)?;
        let mut tables = Vec::new();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else { continue };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else { continue };
                for table_name in schema.table_names() {
                    let Some(table) = schema.table(&table_name).await.map_err(|e| status(e.into()))? else { continue };
                    tables.push((catalog_name.clone(), schema_name.clone(), (table_name, table.schema())));
                }
            }
        }
        tables.sort_by(|a, b| (&a.0, &a.1, &a.2.0).cmp(&(&b.0, &b.1, &b.2.0)));
        Ok(tables)
    }
}
