//! Query parameters as the HTTP APIs spell them (times, durations, windows,
//! tag filters, limits), parsed into typed values with errors that name the
//! parameter, and the span filters they turn into as SQL.

use std::collections::BTreeMap;

use chrono::DateTime;
use datafusion::common::ScalarValue;
use spanlake_storage::ids::{TraceId, parse_trace_id};
use spanlake_storage::schema::{self, DEDICATED};

use crate::error::QueryError;

const NANOS_PER_MICRO: i64 = 1_000;
pub(crate) const NANOS_PER_MILLI: i64 = 1_000_000;
pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub(crate) const HOUR_NS: i64 = 3600 * NANOS_PER_SECOND;
pub(crate) const DAY_NS: i64 = 24 * HOUR_NS;
/// Lookback of services and operations lists when the request gives none.
pub(crate) const NAMES_LOOKBACK_NS: i64 = 7 * DAY_NS;
/// Most trace ids one request for several traces takes.
pub const MAX_TRACE_IDS: usize = 100;

pub(crate) fn bad(name: &str, message: impl std::fmt::Display) -> QueryError {
    QueryError::BadRequest(format!("{name}: {message}"))
}

pub(crate) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// A duration such as `250ms`, `1.5s`, `2h` or `7d`; a bare number counts in
/// `bare_unit_ns` (µs for span durations, ms for Zipkin's lookback).
pub(crate) fn duration_ns(name: &str, text: &str, bare_unit_ns: i64) -> Result<i64, QueryError> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ns = match unit.trim() {
        "" => bare_unit_ns,
        "ns" => 1,
        "us" | "µs" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3600 * NANOS_PER_SECOND,
        "d" => 86_400 * NANOS_PER_SECOND,
        other => return Err(bad(name, format!("unknown unit {other:?} in {text:?} (use ns, us, ms, s, m, h or d)"))),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| bad(name, format!("expected a duration such as 250ms, 1.5s or 2h, got {text:?}")))?;
    let nanos = value * unit_ns as f64;
    if !nanos.is_finite() || nanos < 0.0 || nanos > i64::MAX as f64 {
        return Err(bad(name, format!("{text:?} is out of range")));
    }
    Ok(nanos as i64)
}

/// A point in time: RFC 3339, or unix milliseconds.
pub(crate) fn time_ns(name: &str, text: &str) -> Result<i64, QueryError> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return ms.checked_mul(NANOS_PER_MILLI).ok_or_else(|| bad(name, format!("{text:?} is out of range")));
    }
    let time = DateTime::parse_from_rfc3339(text.trim()).map_err(|_| {
        bad(name, format!("expected RFC 3339 (2026-01-02T15:04:05Z) or unix milliseconds, got {text:?}"))
    })?;
    time.timestamp_nanos_opt().ok_or_else(|| bad(name, format!("{text:?} is out of range")))
}

/// A half-open time range `[start, end)` in unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ns: i64,
    pub end_ns: i64,
}

impl Window {
    /// From `start`/`end` (RFC 3339 or unix ms) or `lookback` back from
    /// `end` (default now); `default_lookback_ns` when neither is given.
    pub(crate) fn parse(
        start: Option<&str>,
        end: Option<&str>,
        lookback: Option<&str>,
        default_lookback_ns: i64,
    ) -> Result<Self, QueryError> {
        let end_ns = match end {
            Some(end) => time_ns("end", end)?,
            None => now_ns(),
        };
        let start_ns = match (start, lookback) {
            (Some(_), Some(_)) => return Err(bad("lookback", "give either start or lookback, not both")),
            (Some(start), None) => time_ns("start", start)?,
            (None, Some(lookback)) => end_ns.saturating_sub(duration_ns("lookback", lookback, NANOS_PER_MILLI)?),
            (None, None) => end_ns.saturating_sub(default_lookback_ns),
        };
        if start_ns >= end_ns {
            return Err(bad("start", "the window must start before it ends"));
        }
        Ok(Self { start_ns, end_ns })
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ns - self.start_ns
    }
}

/// One `tags` filter: `key=value`, `key!=value` (the tag is set, to
/// another value), `key=~regex`, or a bare `key` (the tag is set).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TagFilter {
    Equals(String, String),
    NotEquals(String, String),
    Matches(String, String),
    Exists(String),
    /// Zipkin's bare `annotationQuery` term: the tag is set, or the span
    /// has an event (annotation) of that name.
    ExistsOrEvent(String),
}

impl TagFilter {
    pub(crate) fn parse(name: &str, text: &str) -> Result<Self, QueryError> {
        let key_of = |k: &str| {
            let k = k.trim();
            if k.is_empty() { Err(bad(name, format!("a tag filter needs a key: {text:?}"))) } else { Ok(k.to_owned()) }
        };
        Ok(if let Some((k, v)) = text.split_once("!=") {
            Self::NotEquals(key_of(k)?, v.trim().to_owned())
        } else if let Some((k, v)) = text.split_once("=~") {
            regex_check(name, v.trim())?;
            Self::Matches(key_of(k)?, v.trim().to_owned())
        } else if let Some((k, v)) = text.split_once('=') {
            Self::Equals(key_of(k)?, v.trim().to_owned())
        } else {
            Self::Exists(key_of(text)?)
        })
    }

    fn key(&self) -> &str {
        match self {
            Self::Equals(k, _)
            | Self::NotEquals(k, _)
            | Self::Matches(k, _)
            | Self::Exists(k)
            | Self::ExistsOrEvent(k) => k,
        }
    }
}

/// Rejects a pattern the regex engine would reject, with the parameter's name.
fn regex_check(name: &str, pattern: &str) -> Result<(), QueryError> {
    if pattern.len() > 1024 {
        return Err(bad(name, "regular expressions are limited to 1024 characters"));
    }
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| bad(name, format!("invalid regular expression: {e}")))
}

/// The SQL value of a tag key for one span: intrinsic fields first, then
/// dedicated columns, then the span's attributes, then its resource's.
pub(crate) fn tag_sql(key: &str, params: &mut Params) -> String {
    match key {
        "span.kind" => return format!("lower(CAST({} AS VARCHAR))", schema::SPAN_KIND),
        "status.code" => return format!("lower(CAST({} AS VARCHAR))", schema::STATUS_CODE),
        "status.message" => return schema::STATUS_MESSAGE.to_owned(),
        // Zipkin's convention: the `error` tag is set on failed spans, its value the message.
        "error" => {
            return format!(
                "CASE WHEN {} = 'ERROR' THEN COALESCE({}, '') END",
                schema::STATUS_CODE,
                schema::STATUS_MESSAGE
            );
        }
        _ => {}
    }
    if let Some(d) = DEDICATED.iter().find(|d| d.key == key) {
        return format!("CAST({} AS VARCHAR)", d.column);
    }
    let key = params.add(ScalarValue::Utf8(Some(key.to_owned())));
    format!("COALESCE({}[{key}], {}[{key}])", schema::SPAN_ATTRIBUTES, schema::RESOURCE_ATTRIBUTES)
}

/// Named query parameters (`$p0`, `$p1`, ...): values never enter SQL text.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, ScalarValue)>);

impl Params {
    pub(crate) fn add(&mut self, value: ScalarValue) -> String {
        let name = format!("p{}", self.0.len());
        self.0.push((name.clone(), value));
        format!("${name}")
    }

    pub(crate) fn text(&mut self, value: &str) -> String {
        self.add(ScalarValue::Utf8(Some(value.to_owned())))
    }

    pub(crate) fn time(&mut self, nanos: i64) -> String {
        self.add(ScalarValue::TimestampNanosecond(Some(nanos), Some("UTC".into())))
    }

    pub(crate) fn int(&mut self, value: i64) -> String {
        self.add(ScalarValue::Int64(Some(value)))
    }

    pub(crate) fn into_values(self) -> Vec<(String, ScalarValue)> {
        self.0
    }
}

/// Span-level filters: a trace matches when one of its spans passes all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SpanFilter {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub span_kind: Option<String>,
    pub remote_service: Option<String>,
    pub tags: Vec<TagFilter>,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub errors_only: bool,
}

impl SpanFilter {
    /// The SQL condition on `spans` for this filter inside `window`.
    pub(crate) fn where_sql(&self, window: &Window, params: &mut Params) -> String {
        let mut conditions = vec![
            format!("{} >= {}", schema::START_TIME, params.time(window.start_ns)),
            format!("{} < {}", schema::START_TIME, params.time(window.end_ns)),
        ];
        let mut equals = |column: &str, value: &Option<String>, params: &mut Params| {
            if let Some(value) = value {
                conditions.push(format!("{column} = {}", params.text(value)));
            }
        };
        equals(schema::SERVICE_NAME, &self.service, params);
        equals(schema::SPAN_NAME, &self.operation, params);
        equals(schema::SPAN_KIND, &self.span_kind.as_ref().map(|k| k.to_uppercase()), params);
        equals(schema::REMOTE_SERVICE_NAME, &self.remote_service, params);
        if let Some(min) = self.min_duration_ns {
            conditions.push(format!("{} >= {}", schema::DURATION_NS, params.int(min)));
        }
        if let Some(max) = self.max_duration_ns {
            conditions.push(format!("{} <= {}", schema::DURATION_NS, params.int(max)));
        }
        if self.errors_only {
            conditions.push(format!("{} = 'ERROR'", schema::STATUS_CODE));
        }
        for tag in &self.tags {
            let value = tag_sql(tag.key(), params);
            conditions.push(match tag {
                TagFilter::Exists(_) => format!("{value} IS NOT NULL"),
                TagFilter::ExistsOrEvent(term) => {
                    format!("({value} IS NOT NULL OR span_has_event({}, {}))", schema::EVENTS, params.text(term))
                }
                TagFilter::Equals(_, v) => format!("{value} = {}", params.text(v)),
                TagFilter::NotEquals(_, v) => format!("{value} <> {}", params.text(v)),
                TagFilter::Matches(_, v) => format!("regexp_like({value}, {})", params.text(v)),
            });
        }
        conditions.join(" AND ")
    }
}

/// Comma-separated trace ids (the values of `name`, all of them), 1 to
/// [`MAX_TRACE_IDS`].
pub(crate) fn trace_ids<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> Result<Vec<TraceId>, QueryError> {
    let ids: Vec<&str> = values.flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).collect();
    if ids.is_empty() || ids.len() > MAX_TRACE_IDS {
        return Err(bad(name, format!("give 1 to {MAX_TRACE_IDS} comma-separated trace ids")));
    }
    ids.into_iter().map(|id| parse_trace_id(id).map_err(|e| bad(name, e))).collect()
}

/// A `limit` parameter, between 1 and `max`.
pub(crate) fn limit(name: &str, text: Option<&str>, default: usize, max: usize) -> Result<usize, QueryError> {
    let Some(text) = text else { return Ok(default) };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(bad(name, format!("expected a number from 1 to {max}, got {text:?}"))),
    }
}

/// The dedicated resource column for `groupBy` (its attribute key, e.g.
/// `service.version`, or the column name).
pub(crate) fn group_column(text: &str) -> Result<&'static str, QueryError> {
    DEDICATED
        .iter()
        .find(|d| d.level == schema::Level::Resource && (d.key == text || d.column == text))
        .map(|d| d.column)
        .ok_or_else(|| {
            let known: Vec<&str> =
                DEDICATED.iter().filter(|d| d.level == schema::Level::Resource).map(|d| d.key).collect();
            bad("groupBy", format!("{text:?} is not a dedicated resource attribute; one of {}", known.join(", ")))
        })
}

/// Query string pairs with repeats kept (`tags=a&tags=b`).
#[derive(Debug, Default)]
pub struct Query(BTreeMap<String, Vec<String>>);

impl Query {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            map.entry(k).or_default().push(v);
        }
        Self(map)
    }

    /// The one value of `name`; empty values count as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.last()).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.get(name).into_iter().flatten().map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Rejects parameters this endpoint does not know: a typo must not
    /// silently widen a search.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), QueryError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(bad(k, format!("unknown parameter; this endpoint takes {}", known.join(", ")))),
            None => Ok(()),
        }
    }
}

/// Percent-encodes everything but unreserved characters, for a value in a
/// URL's path or query.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_unreserved_characters() {
        assert_eq!(percent_encode("a b/é~x"), "a%20b%2F%C3%A9~x");
    }

    #[test]
    fn durations_take_units_and_bare_numbers() {
        assert_eq!(duration_ns("d", "250ms", 1).unwrap(), 250 * NANOS_PER_MILLI);
        assert_eq!(duration_ns("d", "1.5s", 1).unwrap(), 1_500 * NANOS_PER_MILLI);
        assert_eq!(duration_ns("d", "2h", 1).unwrap(), 7_200 * NANOS_PER_SECOND);
        assert_eq!(duration_ns("d", "1500", NANOS_PER_MICRO).unwrap(), 1_500_000);
        let error = duration_ns("minDuration", "fast", 1).unwrap_err().to_string();
        assert!(error.starts_with("minDuration:"), "{error}");
        assert!(duration_ns("d", "3 fortnights", 1).is_err());
        assert!(duration_ns("d", "-1s", 1).is_err());
    }

    #[test]
    fn times_are_rfc3339_or_unix_millis() {
        assert_eq!(time_ns("t", "1700000000000").unwrap(), 1_700_000_000_000 * NANOS_PER_MILLI);
        assert_eq!(time_ns("t", "2023-11-14T22:13:20Z").unwrap(), 1_700_000_000 * NANOS_PER_SECOND);
        assert!(time_ns("end", "yesterday").unwrap_err().to_string().starts_with("end:"));
    }

    #[test]
    fn windows_come_from_start_end_or_lookback() {
        let w = Window::parse(None, Some("1700000000000"), Some("1h"), 0).unwrap();
        assert_eq!(w.duration_ns(), 3600 * NANOS_PER_SECOND);
        let w = Window::parse(None, Some("1700000000000"), Some("60000"), 0).unwrap();
        assert_eq!(w.duration_ns(), 60 * NANOS_PER_SECOND, "bare lookback is milliseconds");
        assert!(Window::parse(Some("1700000000001"), Some("1700000000000"), None, 0).is_err());
        assert!(Window::parse(Some("1"), None, Some("1h"), 0).is_err());
    }

    #[test]
    fn tag_filters_parse_every_form() {
        let p = |t| TagFilter::parse("tags", t).unwrap();
        assert_eq!(p("http.route=/a=b"), TagFilter::Equals("http.route".into(), "/a=b".into()));
        assert_eq!(p("k!=v"), TagFilter::NotEquals("k".into(), "v".into()));
        assert_eq!(p("k=~^v.*"), TagFilter::Matches("k".into(), "^v.*".into()));
        assert_eq!(p("k"), TagFilter::Exists("k".into()));
        assert!(TagFilter::parse("tags", "=v").is_err());
        assert!(TagFilter::parse("tags", "k=~(").unwrap_err().to_string().starts_with("tags:"));
    }
}
