//! The messages of `jaeger.api_v3.QueryService` (jaeger-idl's
//! `proto/api_v3/query_service.proto`), written out for prost; the traces
//! themselves are OTLP's `TracesData`.

use std::collections::HashMap;

use prost_types::{Duration, Timestamp};

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetTraceRequest {
    /// Hex, 64 or 128 bits.
    #[prost(string, tag = "1")]
    pub trace_id: String,
    #[prost(message, optional, tag = "2")]
    pub start_time: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub end_time: Option<Timestamp>,
    #[prost(bool, tag = "4")]
    pub raw_traces: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceQueryParameters {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(string, tag = "2")]
    pub operation_name: String,
    #[prost(map = "string, string", tag = "3")]
    pub attributes: HashMap<String, String>,
    #[prost(message, optional, tag = "4")]
    pub start_time_min: Option<Timestamp>,
    #[prost(message, optional, tag = "5")]
    pub start_time_max: Option<Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub duration_min: Option<Duration>,
    #[prost(message, optional, tag = "7")]
    pub duration_max: Option<Duration>,
    #[prost(int32, tag = "8")]
    pub search_depth: i32,
    #[prost(bool, tag = "9")]
    pub raw_traces: bool,
    /// The experimental structured filter, kept as bytes only to refuse it:
    /// ignoring a predicate would answer more traces than were asked for.
    #[prost(bytes = "vec", tag = "10")]
    pub filter: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FindTracesRequest {
    #[prost(message, optional, tag = "1")]
    pub query: Option<TraceQueryParameters>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetServicesRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetServicesResponse {
    #[prost(string, repeated, tag = "1")]
    pub services: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetOperationsRequest {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub span_kind: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub span_kind: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetOperationsResponse {
    #[prost(message, repeated, tag = "1")]
    pub operations: Vec<Operation>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetDependenciesRequest {
    #[prost(message, optional, tag = "1")]
    pub start_time: Option<Timestamp>,
    #[prost(message, optional, tag = "2")]
    pub end_time: Option<Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dependency {
    #[prost(string, tag = "1")]
    pub parent: String,
    #[prost(string, tag = "2")]
    pub child: String,
    #[prost(uint64, tag = "3")]
    pub call_count: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DependenciesResponse {
    #[prost(message, repeated, tag = "1")]
    pub dependencies: Vec<Dependency>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceSummary {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub span_count: i32,
    #[prost(int32, tag = "3")]
    pub error_span_count: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceSummary {
    #[prost(string, tag = "1")]
    pub trace_id: String,
    #[prost(string, tag = "2")]
    pub root_service_name: String,
    #[prost(string, tag = "3")]
    pub root_operation_name: String,
    #[prost(fixed64, tag = "4")]
    pub min_start_time_unix_nano: u64,
    #[prost(fixed64, tag = "5")]
    pub max_end_time_unix_nano: u64,
    #[prost(int32, tag = "6")]
    pub span_count: i32,
    #[prost(int32, tag = "7")]
    pub error_span_count: i32,
    #[prost(int32, tag = "8")]
    pub orphan_span_count: i32,
    #[prost(message, repeated, tag = "9")]
    pub services: Vec<ServiceSummary>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FindTraceSummariesRequest {
    #[prost(message, optional, tag = "1")]
    pub query: Option<TraceQueryParameters>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FindTraceSummariesResponse {
    #[prost(message, repeated, tag = "1")]
    pub summaries: Vec<TraceSummary>,
}
