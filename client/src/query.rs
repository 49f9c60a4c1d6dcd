//! The parameters of the `/api/v1` calls, typed, and how they go on the
//! query string (`/api/v1/openapi.json` documents each).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) type Pairs = Vec<(&'static str, String)>;

/// A time window: `lookback` back from `end` (now when absent), or from
/// `start` to `end`. Empty, each call's own default (the last hour for
/// most).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
    pub lookback: Option<Duration>,
}

impl Window {
    /// The last `lookback` up to now.
    pub fn last(lookback: Duration) -> Self {
        Self { lookback: Some(lookback), ..Self::default() }
    }

    pub fn between(start: SystemTime, end: SystemTime) -> Self {
        Self { start: Some(start), end: Some(end), lookback: None }
    }

    pub(crate) fn push(&self, pairs: &mut Pairs) {
        let millis = |t: SystemTime| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_millis().to_string(),
            Err(before) => format!("-{}", before.duration().as_millis()),
        };
        push(pairs, "start", self.start.map(millis));
        push(pairs, "end", self.end.map(millis));
        push(pairs, "lookback", self.lookback.map(duration));
    }
}

/// Durations go as exact nanoseconds with their unit.
fn duration(d: Duration) -> String {
    format!("{}ns", d.as_nanos())
}

fn push(pairs: &mut Pairs, name: &'static str, value: Option<String>) {
    if let Some(value) = value {
        pairs.push((name, value));
    }
}

/// A span kind, as OTLP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }
}

/// The order of a search's traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchOrder {
    /// Newest first.
    #[default]
    StartDesc,
    DurationDesc,
    DurationAsc,
}

impl SearchOrder {
    fn as_str(self) -> &'static str {
        match self {
            Self::StartDesc => "start_desc",
            Self::DurationDesc => "duration_desc",
            Self::DurationAsc => "duration_asc",
        }
    }
}

/// Span-level filters of a search or latency query: a trace matches when
/// one of its spans passes every filter given, as in Jaeger and Tempo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub service: Option<String>,
    /// Span name.
    pub operation: Option<String>,
    pub span_kind: Option<SpanKind>,
    /// All must hold: `key=value`, `key!=value`, `key=~regex` or `key`.
    pub tags: Vec<String>,
    pub min_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
    /// Only spans with status ERROR.
    pub errors_only: bool,
    /// A TraceQL spanset filter, with the others.
    pub traceql: Option<String>,
    pub window: Window,
    /// Newest first when not given.
    pub order: Option<SearchOrder>,
    /// Traces per page (1 to 1000); the server's 20 when not given.
    pub limit: Option<u32>,
}

impl SearchQuery {
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = Some(operation.into());
        self
    }

    pub fn tag(mut self, filter: impl Into<String>) -> Self {
        self.tags.push(filter.into());
        self
    }

    pub fn lookback(mut self, lookback: Duration) -> Self {
        self.window = Window::last(lookback);
        self
    }

    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn order(mut self, order: SearchOrder) -> Self {
        self.order = Some(order);
        self
    }

    /// The filters and the window, shared with [`LatencyQuery`].
    pub(crate) fn push_filters(&self, pairs: &mut Pairs) {
        push(pairs, "service", self.service.clone());
        push(pairs, "operation", self.operation.clone());
        push(pairs, "spanKind", self.span_kind.map(|k| k.as_str().to_owned()));
        pairs.extend(self.tags.iter().map(|t| ("tags", t.clone())));
        push(pairs, "minDuration", self.min_duration.map(duration));
        push(pairs, "maxDuration", self.max_duration.map(duration));
        push(pairs, "status", self.errors_only.then(|| "error".to_owned()));
        push(pairs, "q", self.traceql.clone());
        self.window.push(pairs);
    }

    /// One page's parameters, `cursor` from the page before.
    pub(crate) fn pairs(&self, cursor: Option<&str>) -> Pairs {
        let mut pairs = Pairs::new();
        self.push_filters(&mut pairs);
        push(&mut pairs, "sort", self.order.map(|o| o.as_str().to_owned()));
        push(&mut pairs, "limit", self.limit.map(|l| l.to_string()));
        push(&mut pairs, "cursor", cursor.map(str::to_owned));
        pairs
    }
}

/// A latency series or histogram: span filters and window as a search's
/// (its `order` and `limit` unused), a step and a grouping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyQuery {
    pub filters: SearchQuery,
    /// About 60 steps over the window when not given.
    pub step: Option<Duration>,
    /// A dedicated resource attribute, e.g. `service.version`.
    pub group_by: Option<String>,
}

impl LatencyQuery {
    pub(crate) fn pairs(&self) -> Pairs {
        let mut pairs = Pairs::new();
        self.filters.push_filters(&mut pairs);
        push(&mut pairs, "step", self.step.map(duration));
        push(&mut pairs, "groupBy", self.group_by.clone());
        pairs
    }
}

/// A window's parameters alone.
pub(crate) fn window_pairs(window: &Window) -> Pairs {
    let mut pairs = Pairs::new();
    window.push(&mut pairs);
    pairs
}

/// Named parameters, then a window's.
pub(crate) fn with_window<const N: usize>(named: [(&'static str, Option<String>); N], window: &Window) -> Pairs {
    let mut pairs = Pairs::new();
    for (name, value) in named {
        push(&mut pairs, name, value);
    }
    window.push(&mut pairs);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_writes_every_parameter_the_api_names() {
        let query = SearchQuery {
            span_kind: Some(SpanKind::Server),
            min_duration: Some(Duration::from_millis(250)),
            errors_only: true,
            traceql: Some("{ span.http.route = \"/pay\" }".into()),
            window: Window::between(UNIX_EPOCH + Duration::from_secs(10), UNIX_EPOCH + Duration::from_secs(20)),
            ..SearchQuery::default()
        }
        .service("shop")
        .tag("http.status_code=500")
        .tag("retry")
        .order(SearchOrder::DurationDesc)
        .limit(50);
        let pairs = query.pairs(Some("abc"));
        let expected: Pairs = vec![
            ("service", "shop".into()),
            ("spanKind", "server".into()),
            ("tags", "http.status_code=500".into()),
            ("tags", "retry".into()),
            ("minDuration", "250000000ns".into()),
            ("status", "error".into()),
            ("q", "{ span.http.route = \"/pay\" }".into()),
            ("start", "10000".into()),
            ("end", "20000".into()),
            ("sort", "duration_desc".into()),
            ("limit", "50".into()),
            ("cursor", "abc".into()),
        ];
        assert_eq!(pairs, expected);
        assert_eq!(window_pairs(&Window::last(Duration::from_secs(90))), vec![("lookback", "90000000000ns".into())]);
    }
}
