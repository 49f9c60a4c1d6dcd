//! `jaeger.api_v3.QueryService` over gRPC (Grafana's Jaeger data source in
//! gRPC mode, Jaeger's own tools), on its own port (`--jaeger-grpc-addr`).
//! Hand-written around tonic's server and prost codec, with the messages of
//! `proto.rs`; each method asks the same functions as the HTTP binding
//! (`v3.rs`). Traces stream one `TracesData` per trace. The tenant is the
//! `x-scope-orgid` metadata, and with an auth token every call must carry
//! `authorization: Bearer <token>`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use futures::stream;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use spanlake_storage::{TENANT_HEADER, TenantId};
use tonic::codegen::{Body, BoxFuture, BoxStream, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::proto;
use super::v3::{TraceQuery, dependencies_proto, find, operations_proto, summaries};
use crate::auth::AuthToken;
use crate::engine::QueryEngine;
use crate::error::QueryError;
use crate::params::{SpanKind, TraceIdParam, Window, bad};

const SERVICE: &str = "jaeger.api_v3.QueryService";

/// The service, for `tonic::transport::Server::add_service`.
#[derive(Debug, Clone)]
pub struct QueryService {
    engine: Arc<QueryEngine>,
    token: Option<AuthToken>,
}

pub fn query_service(engine: Arc<QueryEngine>, token: Option<AuthToken>) -> QueryService {
    QueryService { engine, token }
}

impl NamedService for QueryService {
    const NAME: &'static str = SERVICE;
}

fn status(error: QueryError) -> Status {
    Status::new(error.grpc_code(), error.to_string())
}

fn tenant<T>(request: &Request<T>) -> Result<TenantId, Status> {
    let value = request.metadata().get(TENANT_HEADER).map(|v| v.as_bytes());
    TenantId::from_header(value).map_err(|e| Status::invalid_argument(format!("{e} (metadata x-scope-orgid)")))
}

fn nanos(t: Option<prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds.saturating_mul(1_000_000_000).saturating_add(i64::from(t.nanos)))
}

/// A unary method: the engine, the tenant and the request make the answer.
struct Unary<F>(Arc<QueryEngine>, F);

impl<Req, Resp, F, Fut> UnaryService<Req> for Unary<F>
where
    F: Fn(Arc<QueryEngine>, TenantId, Req) -> Fut,
    Fut: Future<Output = Result<Resp, QueryError>> + Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<Response<Resp>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let tenant = match tenant(&request) {
            Ok(tenant) => tenant,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let answer = (self.1)(Arc::clone(&self.0), tenant, request.into_inner());
        Box::pin(async move { answer.await.map(Response::new).map_err(status) })
    }
}

/// A streaming method: the answer's messages, one after another.
struct Streaming<F>(Arc<QueryEngine>, F);

impl<Req, Resp, F, Fut> ServerStreamingService<Req> for Streaming<F>
where
    F: Fn(Arc<QueryEngine>, TenantId, Req) -> Fut,
    Fut: Future<Output = Result<Vec<Resp>, QueryError>> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = Resp;
    type ResponseStream = BoxStream<Resp>;
    type Future = BoxFuture<Response<BoxStream<Resp>>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let tenant = match tenant(&request) {
            Ok(tenant) => tenant,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let answer = (self.1)(Arc::clone(&self.0), tenant, request.into_inner());
        Box::pin(async move {
            let messages = answer.await.map_err(status)?;
            let stream: BoxStream<Resp> = Box::pin(stream::iter(messages.into_iter().map(Ok)));
            Ok(Response::new(stream))
        })
    }
}

async fn get_trace(
    engine: Arc<QueryEngine>,
    tenant: TenantId,
    request: proto::GetTraceRequest,
) -> Result<Vec<TracesData>, QueryError> {
    let id = request.trace_id.parse::<TraceIdParam>().map_err(|e| bad("trace_id", e))?.0;
    let spans = engine.trace(&tenant, &id).await?.ok_or_else(|| QueryError::NotFound("trace not found".into()))?;
    Ok(vec![TracesData { resource_spans: spans }])
}

async fn find_traces(
    engine: Arc<QueryEngine>,
    tenant: TenantId,
    request: proto::FindTracesRequest,
) -> Result<Vec<TracesData>, QueryError> {
    let query = TraceQuery::from_proto(request.query)?;
    let traces = find(&engine, &tenant, &query).await?;
    Ok(traces.into_iter().map(|(_, resource_spans)| TracesData { resource_spans }).collect())
}

async fn find_trace_summaries(
    engine: Arc<QueryEngine>,
    tenant: TenantId,
    request: proto::FindTraceSummariesRequest,
) -> Result<Vec<proto::FindTraceSummariesResponse>, QueryError> {
    let query = TraceQuery::from_proto(request.query)?;
    Ok(vec![proto::FindTraceSummariesResponse { summaries: summaries(&engine, &tenant, &query).await? }])
}

async fn get_services(
    engine: Arc<QueryEngine>,
    tenant: TenantId,
    _: proto::GetServicesRequest,
) -> Result<proto::GetServicesResponse, QueryError> {
    Ok(proto::GetServicesResponse { services: engine.services(&tenant, None).await? })
}

async fn get_operations(
    engine: Arc<QueryEngine>,
    tenant: TenantId,
    request: proto::GetOperationsRequest,
) -> Result<proto::GetOperationsResponse, QueryError> {
    if request.service.is_empty() {
        return Err(bad("service", "is required"));
    }
    let kind = match request.span_kind.as_str() {
        "" => None,
        text => Some(text.parse::<SpanKind>().map_err(|e| bad("span_kind", e))?),
    };
    Ok(proto::GetOperationsResponse { operations: operations_proto(&engine, &tenant, &request.service, kind).await? })
}

async fn get_dependencies(
    engine: Arc<QueryEngine>,
    tenant: TenantId,
    request: proto::GetDependenciesRequest,
) -> Result<proto::DependenciesResponse, QueryError> {
    let (Some(start), Some(end)) = (nanos(request.start_time), nanos(request.end_time)) else {
        return Err(bad("start_time", "start_time and end_time are required"));
    };
    let window = Window::new(Some(start), Some(end), None, 0);
    Ok(proto::DependenciesResponse { dependencies: dependencies_proto(&engine, &tenant, &window).await? })
}

impl<B> Service<http::Request<B>> for QueryService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(token) = &self.token
            && !token.admits(request.headers())
        {
            let refused = Status::unauthenticated("this server needs authorization: Bearer <token>");
            return Box::pin(async move { Ok(refused.into_http()) });
        }
        let engine = Arc::clone(&self.engine);
        let method = request.uri().path().strip_prefix(&format!("/{SERVICE}/")).unwrap_or_default().to_owned();
        Box::pin(async move {
            let response = match method.as_str() {
                "GetTrace" => {
                    Grpc::new(ProstCodec::default()).server_streaming(Streaming(engine, get_trace), request).await
                }
                "FindTraces" => {
                    Grpc::new(ProstCodec::default()).server_streaming(Streaming(engine, find_traces), request).await
                }
                "FindTraceSummaries" => {
                    let method = Streaming(engine, find_trace_summaries);
                    Grpc::new(ProstCodec::default()).server_streaming(method, request).await
                }
                "GetServices" => Grpc::new(ProstCodec::default()).unary(Unary(engine, get_services), request).await,
                "GetOperations" => Grpc::new(ProstCodec::default()).unary(Unary(engine, get_operations), request).await,
                "GetDependencies" => {
                    Grpc::new(ProstCodec::default()).unary(Unary(engine, get_dependencies), request).await
                }
                _ => Status::unimplemented(format!("{} is not served here", method)).into_http(),
            };
            Ok(response)
        })
    }
}
