//! A typed async client for spanlake's HTTP API (`/api/v1`) and its OTLP/HTTP
//! receiver: the reference for how the API is called, its errors read and
//! its answers decoded.
//!
//! ```no_run
//! # async fn example() -> Result<(), spanlake_client::Error> {
//! use std::time::Duration;
//! use futures::TryStreamExt;
//! use spanlake_client::{Client, SearchQuery};
//!
//! let client = Client::builder("http://127.0.0.1:9411").tenant("shop").build()?;
//! let query = SearchQuery::default().service("checkout").lookback(Duration::from_secs(3600));
//! let traces: Vec<_> = client.search_all(&query).try_collect().await?;
//! # Ok(()) }
//! ```
//!
//! Every request carries the tenant (`X-Scope-OrgID`) and the token, runs
//! under a timeout, and is retried with backoff on the answers that say
//! "later" (503, honouring `Retry-After`; 429) and when the server cannot be
//! reached; never on any other answer.

mod client;
mod error;
mod ids;
pub mod model;
mod query;
mod retry;
mod routes;

pub use client::{Client, ClientBuilder, OtlpFormat};
pub use error::Error;
pub use ids::{InvalidTraceId, TraceId};
pub use query::{LatencyQuery, SearchOrder, SearchQuery, SpanKind, Window};
pub use retry::RetryPolicy;
pub use routes::Route;

/// The header that names the tenant, as in Tempo, Loki and Mimir.
pub const TENANT_HEADER: &str = "x-scope-orgid";
