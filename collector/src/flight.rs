//! The collector's Arrow Flight service: its fresh spans (acknowledged,
//! not yet flushed) for the query nodes of a cluster, so that a span is
//! queryable everywhere as soon as its export is acknowledged.
//!
//! `DoGet` with a ticket holding a JSON [`FreshRequest`] (tenant, the
//! asker's WAL watermarks, filters) answers the tenant's buffered spans
//! above the asker's watermark, with the collector's WAL writer id in the
//! `spanlake-writer` header; a stale asker gets FAILED_PRECONDITION,
//! reloads its manifest and asks again (`storage/src/fresh.rs`).
//! Everything else in Flight is unimplemented.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse,
    PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use spanlake_storage::fresh::{Fresh, FreshRequest, WRITER_HEADER};
use spanlake_storage::{Storage, schema};
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves `storage`'s fresh spans; with `token`, only to callers that send
/// it as `authorization: Bearer`.
pub fn flight_service(storage: Arc<Storage>, token: Option<String>) -> FlightServiceServer<FreshSpans> {
    FlightServiceServer::new(FreshSpans { storage, token })
}

#[derive(Debug)]
pub struct FreshSpans {
    storage: Arc<Storage>,
    token: Option<String>,
}

impl FreshSpans {
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(token) = &self.token else { return Ok(()) };
        let sent = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match sent.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(sent) if sent == token => Ok(()),
            _ => Err(Status::unauthenticated("a valid bearer token is required")),
        }
    }
}

#[tonic::async_trait]
impl FlightService for FreshSpans {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        self.authorize(&request)?;
        let fresh: FreshRequest = serde_json::from_slice(&request.get_ref().ticket)
            .map_err(|e| Status::invalid_argument(format!("ticket is not a fresh-spans request: {e}")))?;
        let storage = Arc::clone(&self.storage);
        // Filtering a full buffer is CPU work: off the runtime.
        let answer = tokio::task::spawn_blocking(move || storage.fresh_spans(&fresh))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e {
                spanlake_storage::StorageError::Tenant(e) => Status::invalid_argument(e.to_string()),
                e => Status::internal(e.to_string()),
            })?;
        match answer {
            Fresh::Stale { flushed_through } => Err(Status::failed_precondition(format!(
                "the asker's manifest is older than this collector's flush through WAL sequence {flushed_through}"
            ))),
            Fresh::Spans(batches) => {
                // Dictionaries as they are: hydrated, they would arrive as
                // another schema than the files'.
                let stream = FlightDataEncoderBuilder::new()
                    .with_schema(schema::span_schema())
                    .with_dictionary_handling(DictionaryHandling::Resend)
                    .build(futures::stream::iter(batches.into_iter().map(Ok::<_, FlightError>)))
                    .map_err(|e| Status::internal(e.to_string()));
                let mut response = Response::new(stream.boxed());
                if let Some(writer) = self.storage.writer_id().and_then(|w| w.parse().ok()) {
                    response.metadata_mut().insert(WRITER_HEADER, writer);
                }
                Ok(response)
            }
        }
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(&self, _request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(&self, _request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_put(&self, _request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }

    async fn do_action(&self, _request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }
}
