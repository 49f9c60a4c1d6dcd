//! The flags of the commands that talk to a running spanlake through the
//! driver client (`spanlake-client`): where it is, who asks, and a
//! search's filters.

use std::time::{Duration, SystemTime};

use spanlake_client::{Client, SearchOrder, SearchQuery, Window};
use spanlake_storage::TenantId;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// The server's HTTP address.
    #[arg(long, env = "SPANLAKE_SERVER", default_value = "http://127.0.0.1:9411")]
    pub(crate) server: String,
    #[command(flatten)]
    pub(crate) identity: Identity,
}

/// Who asks: the tenant, and the server's token.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Identity {
    /// The server's `--auth-token`, sent as a bearer token.
    #[arg(long, env = "SPANLAKE_AUTH_TOKEN", hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// The tenant (`X-Scope-OrgID`).
    #[arg(long, env = "SPANLAKE_TENANT", default_value = TenantId::DEFAULT)]
    pub(crate) tenant: String,
}

impl Identity {
    /// A client of `base_url` that sends this identity.
    pub(crate) fn client(&self, base_url: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<Client> {
        let mut builder = Client::builder(base_url).tenant(&self.tenant);
        if let Some(token) = &self.auth_token {
            builder = builder.token(token);
        }
        if let Some(endpoint) = otlp_endpoint {
            builder = builder.otlp_endpoint(endpoint);
        }
        Ok(builder.build()?)
    }
}

impl ServerArgs {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.identity.client(&self.server, None)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Sort {
    /// Newest first.
    Start,
    /// Longest first.
    Duration,
    /// Shortest first.
    DurationAsc,
}

/// A search's filters and window, as `/api/v1/search` takes them.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SearchFlags {
    /// Traces with a span of this service.
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// ... with this span name.
    #[arg(long)]
    pub(crate) operation: Option<String>,
    /// Repeatable, all must hold: `key=value`, `key!=value`, `key=~regex`
    /// or `key` (set).
    #[arg(long = "tags", value_name = "TAG")]
    pub(crate) tags: Vec<String>,
    /// Shortest span duration, e.g. `250ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) min_duration: Option<Duration>,
    /// Longest span duration.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) max_duration: Option<Duration>,
    /// Only spans with status ERROR.
    #[arg(long)]
    pub(crate) errors: bool,
    /// A TraceQL spanset filter, with the others: `{ span.http.route = "/pay" }`.
    #[arg(long)]
    pub(crate) traceql: Option<String>,
    /// Back from `--end` (now), unless `--start` is given.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub(crate) lookback: Duration,
    /// Window start, RFC 3339 (`2026-12-06T09:00:00Z`).
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub(crate) start: Option<SystemTime>,
    /// Window end, RFC 3339; now by default.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub(crate) end: Option<SystemTime>,
    #[arg(long, value_enum, default_value_t = Sort::Start)]
    pub(crate) sort: Sort,
}

impl SearchFlags {
    /// The search, `page` traces a page.
    pub(crate) fn query(&self, page: u32) -> SearchQuery {
        let window = match self.start {
            Some(start) => Window::between(start, self.end.unwrap_or_else(SystemTime::now)),
            None => Window { end: self.end, lookback: Some(self.lookback), start: None },
        };
        SearchQuery {
            service: self.service.clone(),
            operation: self.operation.clone(),
            span_kind: None,
            tags: self.tags.clone(),
            min_duration: self.min_duration,
            max_duration: self.max_duration,
            errors_only: self.errors,
            traceql: self.traceql.clone(),
            window,
            order: Some(match self.sort {
                Sort::Start => SearchOrder::StartDesc,
                Sort::Duration => SearchOrder::DurationDesc,
                Sort::DurationAsc => SearchOrder::DurationAsc,
            }),
            limit: Some(page),
        }
    }
}
