//! The client: one method per `/api/v1` operation ([`crate::Route`]), the
//! trace in Zipkin's and Jaeger's shapes, and OTLP/HTTP export.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::model::{
    Comparison, DependencyGraph, Histogram, LatencySeries, Operation, OperationList, Retries, SearchPage, ServiceList,
    SqlRows, TagKeys, TagValues, TraceList, TraceSummary, VersionCalls, VersionList,
};
use crate::query::{LatencyQuery, Pairs, SearchQuery, Window, window_pairs, with_window};
use crate::retry::{self, RetryPolicy};
use crate::{Route, TENANT_HEADER, TraceId};

/// Arrow's IPC stream format, as its media type names it.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// How an OTLP export body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFormat {
    Protobuf,
    Json,
}

impl OtlpFormat {
    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// A spanlake server's HTTP API. Cheap to clone: clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    otlp: String,
    retry: RetryPolicy,
}

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: String,
    otlp: Option<String>,
    tenant: Option<String>,
    token: Option<String>,
    timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// The tenant (`X-Scope-OrgID`); the server's `default` without one.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The server's `--auth-token`, sent as a bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The longest one try of a call may take; 60 s by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318`; by default the
    /// API's host on port 4318.
    pub fn otlp_endpoint(mut self, url: impl Into<String>) -> Self {
        self.otlp = Some(url.into());
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let base = reqwest::Url::parse(&self.base)
            .map_err(|e| Error::Invalid(format!("{:?} is not a URL: {e}", self.base)))?;
        let otlp = match self.otlp {
            Some(url) => url,
            None => {
                let mut url = base.clone();
                url.set_port(Some(4318)).map_err(|()| Error::Invalid(format!("{base} has no host")))?;
                url.to_string()
            }
        };
        let mut headers = HeaderMap::new();
        let header = |name: &str, value: String| {
            HeaderValue::from_str(&value).map_err(|_| Error::Invalid(format!("{name} {value:?} is not a header value")))
        };
        if let Some(tenant) = self.tenant {
            headers.insert(TENANT_HEADER, header("tenant", tenant)?);
        }
        if let Some(token) = self.token {
            let mut value = header("token", format!("Bearer {token}"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: self.base.trim_end_matches('/').to_owned(),
            otlp: otlp.trim_end_matches('/').to_owned(),
            retry: self.retry,
        })
    }
}

impl Client {
    /// `base_url` is the server's HTTP address, e.g. `http://127.0.0.1:9411`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into(),
            otlp: None,
            tenant: None,
            token: None,
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }

    /// A client with the default settings.
    pub fn new(base_url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(base_url).build()
    }

    /// One page of a search; `cursor` is the previous page's `next_cursor`.
    pub async fn search_page(&self, query: &SearchQuery, cursor: Option<&str>) -> Result<SearchPage, Error> {
        self.get(Route::Search, None, &query.pairs(cursor)).await
    }

    /// The first page of a search.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, Error> {
        self.search_page(query, None).await
    }

    /// Every trace of a search, page after page (`query.limit` a page)
    /// until the last: the window is fixed by the first page, so traces
    /// arriving meanwhile never move one across pages.
    pub fn search_all<'a>(&'a self, query: &'a SearchQuery) -> impl Stream<Item = Result<TraceSummary, Error>> + 'a {
        futures::stream::try_unfold(Some(None::<String>), move |cursor| async move {
            let Some(cursor) = cursor else { return Ok(None) };
            let page = self.search_page(query, cursor.as_deref()).await?;
            let traces = futures::stream::iter(page.traces.into_iter().map(Ok));
            Ok(Some((traces, page.next_cursor.map(Some))))
        })
        .try_flatten()
    }

    /// Services with spans in the window; every stored one for an empty
    /// window.
    pub async fn services(&self, window: &Window) -> Result<Vec<String>, Error> {
        Ok(self.get::<ServiceList>(Route::Services, None, &window_pairs(window)).await?.services)
    }

    /// A service's span names and kinds (a week back for an empty window).
    pub async fn operations(&self, service: &str, window: &Window) -> Result<Vec<Operation>, Error> {
        Ok(self.get::<OperationList>(Route::Operations, Some(service), &window_pairs(window)).await?.operations)
    }

    /// Tag keys of a service, or of all.
    pub async fn tag_keys(&self, service: Option<&str>, window: &Window) -> Result<Vec<String>, Error> {
        let pairs = with_window([("service", service.map(str::to_owned))], window);
        Ok(self.get::<TagKeys>(Route::TagKeys, None, &pairs).await?.tags)
    }

    /// Values of a tag, by prefix.
    pub async fn tag_values(
        &self,
        key: &str,
        service: Option<&str>,
        prefix: Option<&str>,
        window: &Window,
    ) -> Result<Vec<String>, Error> {
        let pairs =
            with_window([("service", service.map(str::to_owned)), ("prefix", prefix.map(str::to_owned))], window);
        Ok(self.get::<TagValues>(Route::TagValues, Some(key), &pairs).await?.values)
    }

    /// The service graph, its nodes per service, or per service and
    /// version with `by_version`.
    pub async fn dependencies(&self, window: &Window, by_version: bool) -> Result<DependencyGraph, Error> {
        let pairs = with_window([("groupBy", by_version.then(|| "service.version".to_owned()))], window);
        self.get(Route::Dependencies, None, &pairs).await
    }

    /// A service's versions with their traffic and latency.
    pub async fn versions(&self, service: &str, window: &Window) -> Result<VersionList, Error> {
        self.get(Route::Versions, None, &with_window([("service", Some(service.to_owned()))], window)).await
    }

    /// The canary verdict: `candidate` held against `baseline`, at the
    /// family-wise significance `alpha` (the server's 0.05 when `None`).
    pub async fn compare_versions(
        &self,
        service: &str,
        baseline: &str,
        candidate: &str,
        alpha: Option<f64>,
        window: &Window,
    ) -> Result<Comparison, Error> {
        let pairs = with_window(
            [
                ("service", Some(service.to_owned())),
                ("baseline", Some(baseline.to_owned())),
                ("candidate", Some(candidate.to_owned())),
                ("alpha", alpha.map(|a| a.to_string())),
            ],
            window,
        );
        self.get(Route::CompareVersions, None, &pairs).await
    }

    /// Who called this version of a service (`safe_to_remove` when nobody).
    pub async fn version_callers(&self, service: &str, version: &str, window: &Window) -> Result<VersionCalls, Error> {
        self.get(Route::VersionCallers, None, &version_pairs(service, version, window)).await
    }

    /// What this version of a service called.
    pub async fn version_callees(&self, service: &str, version: &str, window: &Window) -> Result<VersionCalls, Error> {
        self.get(Route::VersionCallees, None, &version_pairs(service, version, window)).await
    }

    /// Retries, timeouts and abandoned work per edge, of one service or all.
    pub async fn retries(&self, service: Option<&str>, window: &Window) -> Result<Retries, Error> {
        self.get(Route::Retries, None, &with_window([("service", service.map(str::to_owned))], window)).await
    }

    /// Rate, errors and percentiles per step.
    pub async fn latency(&self, query: &LatencyQuery) -> Result<LatencySeries, Error> {
        self.get(Route::Latency, None, &query.pairs()).await
    }

    /// Span durations in log-sized buckets.
    pub async fn latency_histogram(&self, query: &LatencyQuery) -> Result<Histogram, Error> {
        self.get(Route::LatencyHistogram, None, &query.pairs()).await
    }

    /// Up to 100 traces at once, as OTLP; the ids without spans under
    /// `missing`.
    pub async fn traces(&self, ids: &[TraceId]) -> Result<TraceList, Error> {
        let ids = ids.iter().map(TraceId::to_string).collect::<Vec<_>>().join(",");
        self.get(Route::Traces, None, &vec![("ids", ids)]).await
    }

    /// A whole trace as OTLP, in the form the OTLP receivers take back
    /// unchanged; `None` when no span of it is stored.
    pub async fn trace(&self, id: TraceId) -> Result<Option<ExportTraceServiceRequest>, Error> {
        found(self.get(Route::Trace, Some(&id.to_string()), &Pairs::new()).await)
    }

    /// A trace as Zipkin's v2 API answers it (a JSON list of spans).
    pub async fn trace_zipkin(&self, id: TraceId) -> Result<Option<Value>, Error> {
        found(self.get_url(&format!("{}/api/v2/trace/{id}", self.base), &Pairs::new()).await)
    }

    /// A trace as Jaeger's query API answers it (`{"data": [trace]}`).
    pub async fn trace_jaeger(&self, id: TraceId) -> Result<Option<Value>, Error> {
        found(self.get_url(&format!("{}/api/traces/{id}", self.base), &Pairs::new()).await)
    }

    /// A read-only SQL query, its rows as JSON.
    pub async fn sql(&self, sql: &str) -> Result<SqlRows, Error> {
        let url = format!("{}{}", self.base, Route::Sql.path(None));
        let body = serde_json::json!({ "sql": sql });
        let response = self.send(&url, || self.http.request(Route::Sql.method(), &url).json(&body)).await?;
        decode(&url, response).await
    }

    /// A read-only SQL query, its answer as Arrow record batches (an Arrow
    /// IPC stream on the wire): types kept, nothing through JSON.
    pub async fn sql_arrow(&self, sql: &str) -> Result<Vec<RecordBatch>, Error> {
        let url = format!("{}{}", self.base, Route::Sql.path(None));
        let body = serde_json::json!({ "sql": sql });
        let response = self
            .send(&url, || self.http.request(Route::Sql.method(), &url).header(ACCEPT, ARROW_STREAM).json(&body))
            .await?;
        let bytes = response.bytes().await.map_err(|source| Error::Transport { url: url.clone(), source })?;
        let invalid = |e: arrow::error::ArrowError| Error::Decode { url: url.clone(), message: e.to_string() };
        StreamReader::try_new(bytes.as_ref(), None).map_err(invalid)?.collect::<Result<_, _>>().map_err(invalid)
    }

    /// The server's OpenAPI document.
    pub async fn openapi(&self) -> Result<Value, Error> {
        self.get_url(&format!("{}/api/v1/openapi.json", self.base), &Pairs::new()).await
    }

    /// Sends spans to the OTLP/HTTP receiver (`/v1/traces`), retried while
    /// the server answers that it is full. Returns the receiver's answer,
    /// with the spans it rejected (OTLP partial success).
    pub async fn export(&self, format: OtlpFormat, body: Bytes) -> Result<ExportTraceServiceResponse, Error> {
        let url = format!("{}/v1/traces", self.otlp);
        let response = self
            .send(&url, || self.http.post(&url).header(CONTENT_TYPE, format.content_type()).body(body.clone()))
            .await?;
        let bytes = response.bytes().await.map_err(|source| Error::Transport { url: url.clone(), source })?;
        let invalid = |message: String| Error::Decode { url: url.clone(), message };
        match format {
            OtlpFormat::Protobuf => ExportTraceServiceResponse::decode(bytes).map_err(|e| invalid(e.to_string())),
            OtlpFormat::Json => serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string())),
        }
    }

    async fn get<T: DeserializeOwned>(&self, route: Route, parameter: Option<&str>, pairs: &Pairs) -> Result<T, Error> {
        debug_assert_eq!(route.method(), Method::GET);
        self.get_url(&format!("{}{}", self.base, route.path(parameter)), pairs).await
    }

    async fn get_url<T: DeserializeOwned>(&self, url: &str, pairs: &Pairs) -> Result<T, Error> {
        let response = self.send(url, || self.http.get(url).query(pairs)).await?;
        decode(url, response).await
    }

    /// Sends the request `request` builds, again while the answer is
    /// retryable and the policy allows; an error answer becomes
    /// [`Error::Api`] with the server's message.
    async fn send(&self, url: &str, request: impl Fn() -> RequestBuilder) -> Result<Response, Error> {
        let mut attempt = 1;
        loop {
            let result = request().send().await;
            let retry_after = match &result {
                Ok(response) if retry::retryable(response.status()) => Some(retry::retry_after(response.headers())),
                Err(error) if retry::retryable_transport(error) => Some(None),
                _ => None,
            };
            match retry_after {
                Some(after) if attempt < self.retry.attempts => {
                    tokio::time::sleep(self.retry.wait(attempt, after)).await;
                    attempt += 1;
                }
                _ => {
                    let response = result.map_err(|source| Error::Transport { url: url.to_owned(), source })?;
                    return if response.status().is_success() { Ok(response) } else { Err(api_error(response).await) };
                }
            }
        }
    }
}

fn version_pairs(service: &str, version: &str, window: &Window) -> Pairs {
    with_window([("service", Some(service.to_owned())), ("version", Some(version.to_owned()))], window)
}

/// A 404 as `None`.
fn found<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::Api { status: StatusCode::NOT_FOUND, .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

async fn decode<T: DeserializeOwned>(url: &str, response: Response) -> Result<T, Error> {
    let bytes = response.bytes().await.map_err(|source| Error::Transport { url: url.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode { url: url.to_owned(), message: e.to_string() })
}

/// The server's message: `/api/v1`'s `{"error": ...}`, an OTLP status's
/// `message`, or the body as text.
async fn api_error(response: Response) -> Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| ["error", "message"].iter().find_map(|k| body.get(k)?.as_str().map(str::to_owned)))
        .unwrap_or(text);
    Error::Api { status, message }
}
