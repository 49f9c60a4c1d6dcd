//! Request parameters as the HTTP APIs and the UI spell them, parsed into
//! typed values: times, durations in a unit of the API's choosing, windows,
//! tag filters, span kinds, ids. Every endpoint describes its parameters
//! with one struct (`IntoParams` for the OpenAPI document, `Deserialize`
//! through [`parse`]); the HTTP layer only hands over the query string.
//! Also the span filters those parameters make, as SQL.

use spanlake_storage::scan_filter::ScanFilter;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::DateTime;
use datafusion::common::ScalarValue;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use spanlake_storage::ids::TraceId;
use spanlake_storage::schema::{self, DEDICATED, Level};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::error::QueryError;
use crate::traceql::TraceQl;

pub(crate) const NANOS_PER_MICRO: i64 = 1_000;
pub(crate) const NANOS_PER_MILLI: i64 = 1_000_000;
pub(crate) const NANOS_PER_SECOND: i64 = 1_000_000_000;
pub(crate) const HOUR_NS: i64 = 3600 * NANOS_PER_SECOND;
pub(crate) const DAY_NS: i64 = 24 * HOUR_NS;
/// Lookback of services and operations lists when the request gives none.
pub(crate) const NAMES_LOOKBACK_NS: i64 = 7 * DAY_NS;
/// Most trace ids one request for several traces takes.
pub const MAX_TRACE_IDS: usize = 100;

pub(crate) fn bad(name: &str, message: impl fmt::Display) -> QueryError {
    QueryError::BadRequest(format!("{name}: {message}"))
}

pub(crate) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// What to do with a parameter the endpoint does not describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// spanlake's own API: a typo must not silently widen a search.
    Refuse,
    /// Zipkin's and Jaeger's APIs, as their servers do.
    Ignore,
}

/// The parameters of `T` from a query string. Empty values count as absent
/// and an error names the parameter.
pub fn parse<T: DeserializeOwned + IntoParams>(query: &str, unknown: Unknown) -> Result<T, QueryError> {
    let known: Vec<String> = T::into_params(|| Some(ParameterIn::Query)).into_iter().map(|p| p.name).collect();
    let mut kept = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        // Ignored parameters go on: serde skips them, and takes aliases
        // (Jaeger's snake_case names) that the description does not list.
        if unknown == Unknown::Refuse && !known.iter().any(|k| *k == key) {
            let takes = if known.is_empty() { "no parameters".to_owned() } else { known.join(", ") };
            return Err(bad(&key, format!("unknown parameter; this endpoint takes {takes}")));
        }
        if !value.is_empty() {
            kept.append_pair(&key, &value);
        }
    }
    let kept = kept.finish();
    serde_path_to_error::deserialize(serde_html_form::Deserializer::from_bytes(kept.as_bytes())).map_err(|e| {
        // `tags[1]` is still the parameter `tags`.
        let path = e.path().to_string();
        let name = path.split('[').next().unwrap_or_default().to_owned();
        let message = e.into_inner().to_string();
        match message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            Some(field) => bad(field, "is required"),
            None if name == "." => QueryError::BadRequest(message),
            None => bad(&name, message),
        }
    })
}

/// [`parse`] from decoded pairs (the UI keeps them to build its links).
pub fn parse_pairs<T: DeserializeOwned + IntoParams>(pairs: &[(String, String)]) -> Result<T, QueryError> {
    parse(&form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish(), Unknown::Refuse)
}

/// A parameter type read from its text by `FromStr` and documented by
/// `$schema`.
macro_rules! schema_param {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let schema: fn() -> RefOr<Schema> = $schema;
                schema()
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

/// A parameter type read from its text by `FromStr`, documented as a
/// string with a pattern (or a set of values).
macro_rules! text_param {
    ($ty:ty, $name:literal, $describe:expr) => {
        schema_param!($ty, $name, || {
            let describe: fn(ObjectBuilder) -> ObjectBuilder = $describe;
            describe(ObjectBuilder::new().schema_type(Type::String)).into()
        });
    };
}

/// A duration: one or more `<number><unit>` (`250ms`, `1.5s`, `1m30s`,
/// `7d`), units ns, us (µs), ms, s, m, h, d; or a bare number in the API's
/// unit.
fn duration_ns(text: &str, bare_unit_ns: i64) -> Result<i64, String> {
    let text = text.trim();
    // Longer than i64 nanoseconds hold (292 years) is as good as forever:
    // saturated, like a timestamp past 2262.
    let nanos = |total: f64| if total >= 0.0 { Ok(total as i64) } else { Err(format!("{text:?} is negative")) };
    if let Ok(number) = text.parse::<f64>() {
        return nanos(number * bare_unit_ns as f64);
    }
    let expected = || format!("expected a duration such as 250ms, 1.5s, 1m30s or 2h, got {text:?}");
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        if number.is_empty() {
            return Err(expected());
        }
        let unit_ns = match unit {
            "ns" => 1,
            "us" | "µs" => NANOS_PER_MICRO,
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3600 * NANOS_PER_SECOND,
            "d" => 86_400 * NANOS_PER_SECOND,
            "" => return Err(expected()),
            other => return Err(format!("unknown unit {other:?} in {text:?} (use ns, us, ms, s, m, h or d)")),
        };
        let value: f64 = number.parse().map_err(|_| expected())?;
        total += value * unit_ns as f64;
        rest = &rest[digits + unit_len..];
    }
    nanos(total)
}

/// A bare number alone, or one or more numbers each with its unit.
const DURATION_PATTERN: &str =
    r"^\s*(([0-9]+(\.[0-9]*)?|\.[0-9]+)|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h|d))+)\s*$";

/// Durations in nanoseconds, written with units or as a bare number of the
/// unit the API chose for them.
macro_rules! duration_param {
    ($(#[$meta:meta])* $ty:ident, $name:literal, $bare_ns:expr, $bare:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty(pub i64);

        impl $ty {
            pub fn ns(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                duration_ns(text, $bare_ns).map(Self)
            }
        }

        text_param!($ty, $name, |s| s.pattern(Some(DURATION_PATTERN)).description(Some(concat!(
            "A duration: 250ms, 1.5s, 1m30s, 2h, 7d (units ns, us, ms, s, m, h, d), or a number of ",
            $bare
        ))));
    };
}

duration_param!(
    /// A span duration; bare numbers are microseconds (Jaeger's and Zipkin's unit).
    SpanDuration,
    "SpanDuration",
    NANOS_PER_MICRO,
    "microseconds"
);
duration_param!(
    /// A lookback; bare numbers are milliseconds.
    Lookback,
    "Lookback",
    NANOS_PER_MILLI,
    "milliseconds"
);
duration_param!(
    /// A series step; bare numbers are seconds.
    Step,
    "Step",
    NANOS_PER_SECOND,
    "seconds"
);

/// A point in time in unix nanoseconds, written in RFC 3339 or as unix
/// milliseconds. Times beyond what i64 nanoseconds hold (before 1677,
/// after 2262) saturate: as window bounds they mean "from the beginning"
/// and "until the end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(ms) = text.trim().parse::<i64>() {
            return Ok(Self(ms.saturating_mul(NANOS_PER_MILLI)));
        }
        rfc3339_ns(text)
            .map(Self)
            .ok_or_else(|| format!("expected RFC 3339 (2026-01-02T15:04:05Z) or unix milliseconds, got {text:?}"))
    }
}

/// An RFC 3339 time in unix nanoseconds, saturated beyond 1677 and 2262.
fn rfc3339_ns(text: &str) -> Option<i64> {
    let time = DateTime::parse_from_rfc3339(text.trim()).ok()?;
    Some(time.timestamp_nanos_opt().unwrap_or(if time.timestamp() < 0 { i64::MIN } else { i64::MAX }))
}

/// A time parameter's schema: RFC 3339 with the `date-time` format (which
/// a pattern cannot tell from an impossible date such as February 30th),
/// or a number matching `number`.
fn date_time_or(number: &str, description: &str) -> RefOr<Schema> {
    let date_time = SchemaFormat::KnownFormat(KnownFormat::DateTime);
    AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).format(Some(date_time)))
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(number)))
        .description(Some(description))
        .into()
}

schema_param!(Timestamp, "Timestamp", || date_time_or(
    r"^\s*-?[0-9]{1,18}\s*$",
    "RFC 3339 (2026-01-02T15:04:05Z) or unix milliseconds"
));

/// A point in time in unix nanoseconds, written as unix microseconds
/// (Jaeger's `start` and `end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixMicros(pub i64);

impl FromStr for UnixMicros {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let micros: i64 = text.trim().parse().map_err(|_| format!("expected unix microseconds, got {text:?}"))?;
        micros.checked_mul(NANOS_PER_MICRO).map(Self).ok_or_else(|| format!("{text:?} is out of range"))
    }
}

text_param!(UnixMicros, "UnixMicros", |s| s.pattern(Some(r"^-?[0-9]{1,16}$")).description(Some("Unix microseconds")));

/// A point in time in unix nanoseconds, written as unix milliseconds
/// (Zipkin's and Jaeger's `endTs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixMillis(pub i64);

impl FromStr for UnixMillis {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let millis: i64 = text.trim().parse().map_err(|_| format!("expected unix milliseconds, got {text:?}"))?;
        millis.checked_mul(NANOS_PER_MILLI).map(Self).ok_or_else(|| format!("{text:?} is out of range"))
    }
}

text_param!(UnixMillis, "UnixMillis", |s| s.pattern(Some(r"^-?[0-9]{1,13}$")).description(Some("Unix milliseconds")));

/// A point in time in unix nanoseconds, written as Tempo's metrics API
/// takes it: unix seconds (fractions allowed), unix nanoseconds (a number
/// past the year 33658 in seconds) or RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixSecondsOrNanos(pub i64);

impl FromStr for UnixSecondsOrNanos {
    type Err = String;

    /// Saturating, as [`Timestamp`].
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Self(if n.unsigned_abs() >= 1_000_000_000_000_000 {
                n
            } else {
                n.saturating_mul(NANOS_PER_SECOND)
            }));
        }
        if let Ok(seconds) = text.parse::<f64>() {
            // `as` saturates.
            return Ok(Self((seconds * NANOS_PER_SECOND as f64) as i64));
        }
        rfc3339_ns(text)
            .map(Self)
            .ok_or_else(|| format!("expected unix seconds, unix nanoseconds or RFC 3339, got {text:?}"))
    }
}

schema_param!(UnixSecondsOrNanos, "UnixSecondsOrNanos", || date_time_or(
    r"^\s*-?([0-9]{1,18}|[0-9]{1,12}\.[0-9]{1,9})\s*$",
    "Unix seconds (1750000000 or 1750000000.5), unix nanoseconds, or RFC 3339"
));

/// A half-open time range `[start, end)` in unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ns: i64,
    pub end_ns: i64,
}

/// The latest time a requested window reaches: a day short of the end of
/// i64 nanoseconds (2262), so that rounding a bound up to a slot, an hour
/// or a step never overflows. Windows start at 1970 the earliest: OTLP
/// times are unsigned.
const LATEST_NS: i64 = i64::MAX - DAY_NS;

impl Window {
    /// The bounds a scan of this window gives the collectors' fresh spans.
    pub fn scan_filter(&self) -> ScanFilter {
        ScanFilter {
            min_start: Some(self.start_ns),
            max_start: Some(self.end_ns.saturating_sub(1)),
            ..ScanFilter::default()
        }
    }

    /// From `start`/`end` or `lookback` back from `end` (default now);
    /// `default_lookback_ns` when neither start nor lookback is given.
    /// Lenient in what no API document can state across parameters, so
    /// that every request a document allows is answered: `start` wins over
    /// `lookback`, a window that ends before it starts is empty, and bounds
    /// before 1970 or after [`LATEST_NS`] are moved to those.
    pub fn new(start_ns: Option<i64>, end_ns: Option<i64>, lookback_ns: Option<i64>, default_lookback_ns: i64) -> Self {
        let end_ns = end_ns.unwrap_or_else(now_ns).clamp(0, LATEST_NS);
        let start_ns = match start_ns {
            Some(start) => start.clamp(0, LATEST_NS),
            None => end_ns.saturating_sub(lookback_ns.unwrap_or(default_lookback_ns)).max(0),
        };
        Self { start_ns: start_ns.min(end_ns), end_ns }
    }

    /// The `lookback` back from now.
    pub fn last(lookback_ns: i64) -> Self {
        Self::new(None, None, Some(lookback_ns), 0)
    }

    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// A span kind, as OTLP names them, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    const ALL: [Self; 6] =
        [Self::Unspecified, Self::Internal, Self::Server, Self::Client, Self::Producer, Self::Consumer];

    /// The value of the `span_kind` column.
    pub fn column_value(self) -> &'static str {
        schema::SPAN_KINDS[self as usize]
    }

    pub fn lowercase(self) -> &'static str {
        ["unspecified", "internal", "server", "client", "producer", "consumer"][self as usize]
    }
}

impl FromStr for SpanKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bare = text.trim().to_ascii_lowercase();
        let bare = bare.strip_prefix("span_kind_").unwrap_or(&bare);
        Self::ALL
            .into_iter()
            .find(|k| k.lowercase() == bare)
            .ok_or_else(|| format!("{text:?}: one of server, client, producer, consumer, internal, unspecified"))
    }
}

text_param!(SpanKind, "SpanKind", |s| s
    .enum_values(Some(["server", "client", "producer", "consumer", "internal", "unspecified"]))
    .description(Some("A span kind")));

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

impl FromStr for TagFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let key_of = |k: &str| {
            let k = k.trim();
            if k.is_empty() { Err(format!("a tag filter needs a key: {text:?}")) } else { Ok(k.to_owned()) }
        };
        Ok(if let Some((k, v)) = text.split_once("!=") {
            Self::NotEquals(key_of(k)?, v.trim().to_owned())
        } else if let Some((k, v)) = text.split_once("=~") {
            regex_check(v.trim())?;
            Self::Matches(key_of(k)?, v.trim().to_owned())
        } else if let Some((k, v)) = text.split_once('=') {
            Self::Equals(key_of(k)?, v.trim().to_owned())
        } else {
            Self::Exists(key_of(text)?)
        })
    }
}

text_param!(TagFilter, "TagFilter", |s| s
    .pattern(Some(r"^\s*[^=!\s]"))
    .description(Some("key=value, key!=value (set, to another value), key=~regex, or key (set)")));

impl TagFilter {
    pub(crate) fn key(&self) -> &str {
        match self {
            Self::Equals(k, _)
            | Self::NotEquals(k, _)
            | Self::Matches(k, _)
            | Self::Exists(k)
            | Self::ExistsOrEvent(k) => k,
        }
    }
}

/// Comma-separated trace ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIdList(pub Vec<TraceId>);

impl FromStr for TraceIdList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let ids: Vec<&str> = text.split(',').map(str::trim).filter(|v| !v.is_empty()).collect();
        if ids.is_empty() || ids.len() > MAX_TRACE_IDS {
            return Err(format!("give 1 to {MAX_TRACE_IDS} comma-separated trace ids"));
        }
        ids.into_iter()
            .map(|id| id.parse().map_err(|e: spanlake_storage::ids::IdError| e.to_string()))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

text_param!(TraceIdList, "TraceIdList", |s| s
    .pattern(Some(r"^\s*([0-9a-fA-F]{16}|[0-9a-fA-F]{32})\s*(,\s*([0-9a-fA-F]{16}|[0-9a-fA-F]{32})\s*){0,99}$"))
    .description(Some("Comma-separated trace ids (32 hex digits, or 16 for a 64-bit id), 1 to 100")));

/// Trace ids of one request, 1 to [`MAX_TRACE_IDS`] of them in all.
pub(crate) fn some_trace_ids(name: &str, ids: Vec<TraceId>) -> Result<Vec<TraceId>, QueryError> {
    if ids.is_empty() || ids.len() > MAX_TRACE_IDS {
        return Err(bad(name, format!("give 1 to {MAX_TRACE_IDS} comma-separated trace ids")));
    }
    Ok(ids)
}

/// A trace id in a path or a query: 32 hex digits, or 16 for a 64-bit id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIdParam(pub TraceId);

impl FromStr for TraceIdParam {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.trim().parse().map(Self).map_err(|e: spanlake_storage::ids::IdError| e.to_string())
    }
}

text_param!(TraceIdParam, "TraceId", |s| s
    .pattern(Some(r"^([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$"))
    .description(Some("A trace id: 32 hex digits, or 16 for a 64-bit id")));

/// A dedicated resource column to group a series by, by its attribute key
/// (`service.version`) or column name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy(pub &'static str);

impl FromStr for GroupBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        resource_columns().find(|d| d.key == text || d.column == text).map(|d| Self(d.column)).ok_or_else(|| {
            let known: Vec<&str> = resource_columns().map(|d| d.key).collect();
            format!("{text:?} is not a dedicated resource attribute; one of {}", known.join(", "))
        })
    }
}

fn resource_columns() -> impl Iterator<Item = &'static schema::Dedicated> {
    DEDICATED.iter().filter(|d| d.level == schema::Level::Resource)
}

impl FromStr for TraceQl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        TraceQl::parse(text).map_err(|e| e.to_string())
    }
}

text_param!(TraceQl, "TraceQL", |s| s
    .description(Some("A TraceQL spanset filter, e.g. { resource.service.name = \"shop\" && duration > 100ms }")));

impl<'de> Deserialize<'de> for GroupBy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for GroupBy {
    fn schema() -> RefOr<Schema> {
        let values: Vec<&str> = resource_columns().flat_map(|d| [d.key, d.column]).collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
            .description(Some("A dedicated resource attribute, by key or column: one series per value"))
            .into()
    }
}

impl ToSchema for GroupBy {}

/// Rejects a pattern the regex engine would reject.
fn regex_check(pattern: &str) -> Result<(), String> {
    if pattern.len() > 1024 {
        return Err("regular expressions are limited to 1024 characters".to_owned());
    }
    regex::Regex::new(pattern).map(|_| ()).map_err(|e| format!("invalid regular expression: {e}"))
}

/// The SQL value of a tag that is a field of the span rather than an
/// attribute (names of Zipkin's and Jaeger's conventions), or a dedicated
/// column.
fn field_tag_sql(key: &str) -> Option<String> {
    let lower = |column: &str| format!("lower(CAST({column} AS VARCHAR))");
    Some(match key {
        "span.kind" => lower(schema::SPAN_KIND),
        "status.code" => lower(schema::STATUS_CODE),
        "status.message" | "otel.status_description" => schema::STATUS_MESSAGE.to_owned(),
        "otel.status_code" => {
            format!("CASE WHEN {0} <> 'UNSET' THEN CAST({0} AS VARCHAR) END", schema::STATUS_CODE)
        }
        "otel.scope.name" => schema::SCOPE_NAME.to_owned(),
        "otel.scope.version" => schema::SCOPE_VERSION.to_owned(),
        // Zipkin's convention: the `error` tag is set on failed spans, its value the message.
        "error" => {
            format!("CASE WHEN {} = 'ERROR' THEN COALESCE({}, '') END", schema::STATUS_CODE, schema::STATUS_MESSAGE)
        }
        _ => {
            let dedicated =
                schema::dedicated_column(key, Level::Span).or_else(|| schema::dedicated_column(key, Level::Resource));
            return dedicated.map(|d| format!("CAST({} AS VARCHAR)", d.column));
        }
    })
}

/// The places of attribute `key` (under any of its names) in `maps`.
fn map_places(key: &str, maps: &[&str], params: &mut Params) -> Vec<String> {
    let names: Vec<String> = schema::attribute_names(key).into_iter().map(|n| params.text(n)).collect();
    maps.iter().flat_map(|map| names.iter().map(move |name| format!("{map}[{name}]"))).collect()
}

/// The SQL value of a tag key for one span: span fields and dedicated
/// columns first, then the span's attributes, then its resource's, each
/// under any name of the attribute.
pub(crate) fn tag_sql(key: &str, params: &mut Params) -> String {
    field_tag_sql(key).unwrap_or_else(|| {
        let places = map_places(key, &[schema::SPAN_ATTRIBUTES, schema::RESOURCE_ATTRIBUTES], params);
        format!("COALESCE({})", places.join(", "))
    })
}

/// Where a tag filter's key is looked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TagSources {
    /// The span's attributes, else its resource's: spanlake's, Zipkin's and
    /// Tempo's (unscoped) tags.
    #[default]
    SpanOrResource,
    /// Also its scope's, its events' (logs) and its links' attributes, any
    /// of which may hold the value: Jaeger's tags, for `=` and "is set".
    Anywhere,
}

/// A tag filter as a SQL condition.
fn tag_condition(tag: &TagFilter, sources: TagSources, params: &mut Params) -> String {
    let anywhere = sources == TagSources::Anywhere && field_tag_sql(tag.key()).is_none();
    if anywhere && let TagFilter::Equals(k, _) | TagFilter::Exists(k) = tag {
        let maps = [schema::SPAN_ATTRIBUTES, schema::RESOURCE_ATTRIBUTES, schema::SCOPE_ATTRIBUTES];
        let places = map_places(k, &maps, params);
        let key = params.text(k);
        let value = match tag {
            TagFilter::Equals(_, v) => Some(params.text(v)),
            _ => None,
        };
        let mut any: Vec<String> = places
            .iter()
            .map(|place| match &value {
                Some(value) => format!("{place} = {value}"),
                None => format!("{place} IS NOT NULL"),
            })
            .collect();
        let nested_value = value.unwrap_or_else(|| "CAST(NULL AS VARCHAR)".to_owned());
        for list in [schema::EVENTS, schema::LINKS] {
            any.push(format!("nested_attribute_is({list}, {key}, {nested_value})"));
        }
        return format!("({})", any.join(" OR "));
    }
    let value = tag_sql(tag.key(), params);
    match tag {
        TagFilter::Exists(_) => format!("{value} IS NOT NULL"),
        TagFilter::ExistsOrEvent(term) => {
            format!("({value} IS NOT NULL OR span_has_event({}, {}))", schema::EVENTS, params.text(term))
        }
        TagFilter::Equals(_, v) => format!("{value} = {}", params.text(v)),
        TagFilter::NotEquals(_, v) => format!("{value} <> {}", params.text(v)),
        TagFilter::Matches(_, v) => format!("regexp_like({value}, {})", params.text(v)),
    }
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

    pub(crate) fn trace_id(&mut self, id: &TraceId) -> String {
        self.add(ScalarValue::FixedSizeBinary(16, Some(id.0.to_vec())))
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
    pub span_kind: Option<SpanKind>,
    pub remote_service: Option<String>,
    pub tags: Vec<TagFilter>,
    pub tag_sources: TagSources,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub errors_only: bool,
    /// TraceQL queries whose spansets the span must be in, every one.
    pub traceql: Vec<TraceQl>,
}

impl SpanFilter {
    /// The SQL condition on `spans` for this filter inside `window`.
    pub(crate) fn where_sql(&self, window: &Window, params: &mut Params) -> String {
        self.where_sql_in(window, window, params)
    }

    /// The condition for the spans of `slice`, a part of the search's
    /// `window`: what a span must meet together with other spans of its
    /// trace (TraceQL's `{a} && {b}`) may be met anywhere in the window.
    pub(crate) fn where_sql_in(&self, slice: &Window, window: &Window, params: &mut Params) -> String {
        let mut conditions = vec![
            format!("{} >= {}", schema::START_TIME, params.time(slice.start_ns)),
            format!("{} < {}", schema::START_TIME, params.time(slice.end_ns)),
        ];
        let mut equals = |column: &str, value: &Option<String>, params: &mut Params| {
            if let Some(value) = value {
                conditions.push(format!("{column} = {}", params.text(value)));
            }
        };
        equals(schema::SERVICE_NAME, &self.service, params);
        equals(schema::SPAN_NAME, &self.operation, params);
        equals(schema::SPAN_KIND, &self.span_kind.map(|k| k.column_value().to_owned()), params);
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
            conditions.push(tag_condition(tag, self.tag_sources, params));
        }
        for query in &self.traceql {
            conditions.push(format!("({})", query.condition(window, params)));
        }
        conditions.join(" AND ")
    }
}

/// A `limit` parameter, between 1 and `max`.
pub(crate) fn limit(name: &str, value: Option<usize>, default: usize, max: usize) -> Result<usize, QueryError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(bad(name, format!("expected a number from 1 to {max}, got {n}"))),
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
    fn durations_take_units_compounds_and_bare_numbers() {
        let d = |t: &str, bare| duration_ns(t, bare).unwrap();
        assert_eq!(d("250ms", 1), 250 * NANOS_PER_MILLI);
        assert_eq!(d("1.5s", 1), 1_500 * NANOS_PER_MILLI);
        assert_eq!(d("2h", 1), 7_200 * NANOS_PER_SECOND);
        assert_eq!(d("1m30s", 1), 90 * NANOS_PER_SECOND);
        assert_eq!(d("1500", NANOS_PER_MICRO), 1_500_000);
        for bad in ["fast", "3 fortnights", "-1s", "1x", "s", "1m30"] {
            assert!(duration_ns(bad, 1).is_err(), "{bad}");
        }
        assert_eq!(d("400000d", 1), i64::MAX, "saturated");
    }

    #[test]
    fn the_documented_duration_pattern_is_what_parses() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "250ms", "1.5", " 2h ", "1m5s", "1.s", ".5us", "7d12h", "6910..6s", ".84.4us", "1m30", "1.5.5s", "5 s",
            "-1s",
        ] {
            assert_eq!(pattern.is_match(text), duration_ns(text, 1).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_or_unix_millis() {
        assert_eq!("1700000000000".parse::<Timestamp>().unwrap().0, 1_700_000_000_000 * NANOS_PER_MILLI);
        assert_eq!("2023-11-14T22:13:20Z".parse::<Timestamp>().unwrap().0, 1_700_000_000 * NANOS_PER_SECOND);
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert_eq!("9999-12-31T23:59:59Z".parse::<Timestamp>().unwrap().0, i64::MAX, "saturated");
        assert_eq!("0001-01-01T00:00:00Z".parse::<Timestamp>().unwrap().0, i64::MIN);
        assert_eq!("-980236767951109".parse::<Timestamp>().unwrap().0, i64::MIN);
    }

    #[test]
    fn windows_come_from_start_end_or_lookback() {
        let end = Some(1_700_000_000_000 * NANOS_PER_MILLI);
        assert_eq!(Window::new(None, end, Some(HOUR_NS), 0).duration_ns(), HOUR_NS);
        assert_eq!(Window::new(end.map(|e| e + 1), end, None, 0).duration_ns(), 0, "inverted: empty");
        assert_eq!(Window::new(Some(1), end, Some(HOUR_NS), 0).start_ns, 1, "start wins");
        assert_eq!(Window::new(None, Some(-5), Some(i64::MAX), 0), Window { start_ns: 0, end_ns: 0 });
        assert_eq!(Window::new(None, Some(i64::MAX), None, HOUR_NS).end_ns, LATEST_NS);
    }

    #[test]
    fn tag_filters_parse_every_form() {
        let p = |t: &str| t.parse::<TagFilter>().unwrap();
        assert_eq!(p("http.route=/a=b"), TagFilter::Equals("http.route".into(), "/a=b".into()));
        assert_eq!(p("k!=v"), TagFilter::NotEquals("k".into(), "v".into()));
        assert_eq!(p("k=~^v.*"), TagFilter::Matches("k".into(), "^v.*".into()));
        assert_eq!(p("k"), TagFilter::Exists("k".into()));
        assert!("=v".parse::<TagFilter>().is_err());
        assert!("k=~(".parse::<TagFilter>().unwrap_err().starts_with("invalid regular expression"));
    }

    #[derive(Debug, Deserialize, IntoParams)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Example {
        #[param(inline)]
        min_duration: Option<SpanDuration>,
        #[serde(default)]
        #[param(inline)]
        tags: Vec<TagFilter>,
        limit: Option<usize>,
    }

    #[test]
    fn parameters_parse_by_their_description() {
        let e: Example = parse("minDuration=1.5ms&tags=a=b&tags=c&limit=", Unknown::Refuse).unwrap();
        assert_eq!(e.min_duration.map(SpanDuration::ns), Some(1_500_000));
        assert_eq!(e.tags.len(), 2);
        assert_eq!(e.limit, None, "an empty value is absent");
        let error = parse::<Example>("minDuration=fast", Unknown::Refuse).unwrap_err().to_string();
        assert!(error.starts_with("minDuration: expected a duration"), "{error}");
        let error = parse::<Example>("minDuraton=1s", Unknown::Refuse).unwrap_err().to_string();
        assert!(
            error.starts_with("minDuraton: unknown parameter; this endpoint takes minDuration, tags, limit"),
            "{error}"
        );
        assert!(parse::<Example>("minDuraton=1s&limit=2", Unknown::Ignore).is_ok());
        assert!(parse::<Example>("limit=x", Unknown::Refuse).unwrap_err().to_string().starts_with("limit:"));
    }
}
