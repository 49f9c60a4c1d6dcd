//! The tags of a span file, per service, for autocomplete without a scan.
//!
//! Every span file carries in its footer (`spanlake.tags`) the tag keys
//! of its spans per service (span and resource attribute keys, the
//! dedicated columns, `span.kind` and `status.code`) and, per key, its
//! values while they are few and short. Autocomplete reads footers, which
//! a reader caches, and summarizes the buffer the same way.
//!
//! A key with more values than [`MAX_VALUES`] (ids, URLs) keeps the first
//! ones seen and is marked `more`: its suggestions are a sample.
//!
//! Flushes summarize their rows; compaction merges its inputs' summaries
//! instead (per service, so each output keeps the part about the services
//! it holds; a service split across outputs keeps its whole summary in
//! each), which costs nothing per span.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, DictionaryArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type};
use arrow::error::ArrowError;
use foldhash::{HashMap, HashSet};
use serde::{Deserialize, Serialize};

use crate::schema::{self, DEDICATED};

/// The footer key that holds a span file's summary, as JSON.
pub const FOOTER_KEY: &str = "spanlake.tags";
/// Values kept per service and key.
pub const MAX_VALUES: usize = 64;
/// Longer values are not kept (their key is marked `more`).
pub const MAX_VALUE_BYTES: usize = 128;
/// Keys kept per service; further keys are dropped.
pub const MAX_KEYS: usize = 1000;

/// The columns a summary is made of.
pub fn columns() -> impl Iterator<Item = &'static str> {
    let dedicated = DEDICATED.iter().map(|d| d.column);
    dedicated.chain([schema::SPAN_KIND, schema::STATUS_CODE, schema::SPAN_ATTRIBUTES, schema::RESOURCE_ATTRIBUTES])
}

/// Per service, per tag key, the values seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagSummary {
    pub services: BTreeMap<String, BTreeMap<String, TagValues>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagValues {
    pub values: BTreeSet<String>,
    /// Values were left out: more than [`MAX_VALUES`], or too long.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
    /// Seen as a span attribute (a span-level dedicated column included).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub span: bool,
    /// Seen as a resource attribute. Summaries written before scopes were
    /// kept have neither flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resource: bool,
}

/// Where a tag key was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagScope {
    Span,
    Resource,
    /// A field of the span (`span.kind`, `status.code`).
    Intrinsic,
}

/// Whether a new value joins `count` others: only a few, short ones do.
fn kept(count: usize, value: &str) -> bool {
    count < MAX_VALUES && value.len() <= MAX_VALUE_BYTES
}

impl TagValues {
    fn insert(&mut self, value: &str) {
        if self.values.contains(value) {
            return;
        }
        if kept(self.values.len(), value) {
            self.values.insert(value.to_owned());
        } else {
            self.more = true;
        }
    }

    fn merge(&mut self, other: &TagValues) {
        other.values.iter().for_each(|v| self.insert(v));
        self.more |= other.more;
        self.span |= other.span;
        self.resource |= other.resource;
    }

    /// Whether the key was seen in `scope`; a key of an old summary, seen
    /// nowhere in particular, counts as a span attribute.
    pub fn in_scope(&self, scope: TagScope) -> bool {
        match scope {
            TagScope::Span => self.span || !self.resource,
            TagScope::Resource => self.resource,
            TagScope::Intrinsic => false,
        }
    }
}

/// A key's values in one batch, borrowed from its arrays, and whether
/// some were left out.
type Staged<'a> = (HashSet<&'a str>, bool);

fn stage<'a>((values, more): &mut Staged<'a>, value: &'a str) {
    if *more || values.contains(value) {
        return;
    }
    if kept(values.len(), value) {
        values.insert(value);
    } else {
        *more = true;
    }
}

/// `column` as dictionary keys into its distinct values.
fn dictionary(batch: &RecordBatch, column: &str) -> Result<Option<DictionaryArray<Int32Type>>, ArrowError> {
    let Some(array) = batch.column_by_name(column) else { return Ok(None) };
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    Ok(Some(cast(array, &dictionary)?.as_dictionary::<Int32Type>().clone()))
}

impl TagSummary {
    /// Adds the tags of a batch of spans. Tags are gathered per service
    /// by dictionary index, and borrowed until the end, so the cost per
    /// span is a few fast hashes and no allocation.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let Some(services) = dictionary(batch, schema::SERVICE_NAME)? else { return Ok(()) };
        let names = services.values().as_string::<i32>();
        // Spans without a service go to the slot after the named ones.
        let service: Vec<usize> = services.keys().iter().map(|k| k.map_or(names.len(), |k| k as usize)).collect();
        let service_name = |slot: usize| if slot < names.len() { names.value(slot) } else { "" };

        // Columns whose every value is one tag: the dedicated ones, and the
        // span kind and status in the lower case that search filters use.
        let mut columns: Vec<(&str, DictionaryArray<Int32Type>, TagScope)> = Vec::new();
        for d in DEDICATED.iter().filter(|d| d.column != schema::SERVICE_NAME) {
            let scope = if d.level == schema::Level::Resource { TagScope::Resource } else { TagScope::Span };
            columns.extend(dictionary(batch, d.column)?.map(|values| (d.key, values, scope)));
        }
        for (key, column) in [("span.kind", schema::SPAN_KIND), ("status.code", schema::STATUS_CODE)] {
            columns.extend(dictionary(batch, column)?.map(|values| (key, values, TagScope::Intrinsic)));
        }
        for (key, values, scope) in &columns {
            let mut pairs: HashSet<(usize, i32)> = HashSet::default();
            for (row, value) in values.keys().iter().enumerate() {
                if let Some(value) = value {
                    pairs.insert((service[row], value));
                }
            }
            let texts = values.values().as_string::<i32>();
            for (slot, value) in pairs {
                let text = texts.value(value as usize);
                let text = if *scope == TagScope::Intrinsic { text.to_lowercase() } else { text.to_owned() };
                self.insert(service_name(slot), key, std::iter::once(text.as_str()), false, *scope);
            }
        }

        for (name, scope) in
            [(schema::SPAN_ATTRIBUTES, TagScope::Span), (schema::RESOURCE_ATTRIBUTES, TagScope::Resource)]
        {
            let Some(map) = batch.column_by_name(name).map(|c| c.as_map()) else { continue };
            let (keys, values) = (map.keys().as_string::<i32>(), map.values().as_string::<i32>());
            let offsets = map.value_offsets();
            let mut staged: Vec<HashMap<&str, Staged>> = vec![HashMap::default(); names.len() + 1];
            for (row, &slot) in service.iter().enumerate() {
                for i in offsets[row] as usize..offsets[row + 1] as usize {
                    stage(staged[slot].entry(keys.value(i)).or_default(), values.value(i));
                }
            }
            for (slot, keys) in staged.into_iter().enumerate() {
                for (key, (values, more)) in keys {
                    self.insert(service_name(slot), key, values.into_iter(), more, scope);
                }
            }
        }
        Ok(())
    }

    fn insert<'a>(
        &mut self,
        service: &str,
        key: &str,
        values: impl Iterator<Item = &'a str>,
        more: bool,
        scope: TagScope,
    ) {
        let keys = self.services.entry(service.to_owned()).or_default();
        if !keys.contains_key(key) && keys.len() >= MAX_KEYS {
            return;
        }
        let entry = keys.entry(key.to_owned()).or_default();
        values.for_each(|v| entry.insert(v));
        entry.more |= more;
        entry.span |= scope == TagScope::Span;
        entry.resource |= scope == TagScope::Resource;
    }

    pub fn merge(&mut self, other: &TagSummary) {
        for (service, keys) in &other.services {
            let mine = self.services.entry(service.clone()).or_default();
            for (key, values) in keys {
                if mine.contains_key(key) || mine.len() < MAX_KEYS {
                    mine.entry(key.clone()).or_default().merge(values);
                }
            }
        }
    }

    /// The part of this summary about `services`.
    pub fn of_services<'a>(&self, services: impl IntoIterator<Item = &'a String>) -> TagSummary {
        let services = services
            .into_iter()
            .filter_map(|service| Some((service.clone(), self.services.get(service)?.clone())))
            .collect();
        TagSummary { services }
    }

    /// Whether spans may have the tag `key`: it was seen, or some service
    /// reached [`MAX_KEYS`] and further keys were dropped.
    pub fn may_have(&self, key: &str) -> bool {
        self.services.values().any(|keys| keys.contains_key(key) || keys.len() >= MAX_KEYS)
    }

    /// The tag keys (of `service`, if given).
    pub fn keys(&self, service: Option<&str>) -> BTreeSet<&str> {
        self.of(service).flat_map(|keys| keys.keys().map(String::as_str)).collect()
    }

    /// The attribute keys seen in `scope` (of `service`, if given).
    pub fn keys_in(&self, service: Option<&str>, scope: TagScope) -> BTreeSet<&str> {
        self.of(service)
            .flat_map(|keys| keys.iter().filter(move |(_, v)| v.in_scope(scope)).map(|(k, _)| k.as_str()))
            .filter(|key| !matches!(*key, "span.kind" | "status.code"))
            .collect()
    }

    /// The values of `key` (of `service`, if given).
    pub fn values(&self, key: &str, service: Option<&str>) -> BTreeSet<&str> {
        self.of(service).filter_map(|keys| keys.get(key)).flat_map(|v| v.values.iter().map(String::as_str)).collect()
    }

    fn of(&self, service: Option<&str>) -> impl Iterator<Item = &BTreeMap<String, TagValues>> {
        self.services.iter().filter(move |(s, _)| service.is_none_or(|want| want == s.as_str())).map(|(_, k)| k)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a tag summary serializes")
    }

    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;
    use crate::{IngestLimits, SpanBatchBuilder};

    fn attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
            ..Default::default()
        }
    }

    fn batch(service: &str, spans: Vec<Vec<KeyValue>>) -> RecordBatch {
        let spans = spans
            .into_iter()
            .enumerate()
            .map(|(i, attributes)| Span {
                trace_id: vec![1; 16],
                span_id: vec![i as u8 + 1; 8],
                name: "op".into(),
                kind: 2,
                attributes,
                ..Default::default()
            })
            .collect();
        let resource = Resource {
            attributes: vec![
                attribute("service.name", service),
                attribute("service.version", "1.0"),
                attribute("cloud.region", "eu"),
            ],
            ..Default::default()
        };
        let mut builder = SpanBatchBuilder::new(IngestLimits::default());
        builder.append(&[ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }]);
        builder.finish().unwrap()
    }

    #[test]
    fn keys_and_values_are_kept_per_service() {
        let mut summary = TagSummary::default();
        summary
            .add(&batch("api", vec![vec![attribute("customer", "acme")], vec![attribute("customer", "globex")]]))
            .unwrap();
        summary.add(&batch("db", vec![vec![attribute("table", "users")]])).unwrap();
        assert_eq!(
            summary.keys(Some("api")),
            BTreeSet::from(["cloud.region", "customer", "service.version", "span.kind", "status.code"])
        );
        assert_eq!(summary.keys_in(Some("api"), TagScope::Span), BTreeSet::from(["customer"]));
        assert_eq!(summary.keys_in(None, TagScope::Resource), BTreeSet::from(["cloud.region", "service.version"]));
        assert!(summary.keys(None).contains("table"));
        assert_eq!(summary.values("customer", None), BTreeSet::from(["acme", "globex"]));
        assert_eq!(summary.values("span.kind", Some("db")), BTreeSet::from(["server"]));
        assert_eq!(summary.values("table", Some("api")), BTreeSet::new());
        assert_eq!(TagSummary::from_json(&summary.to_json()).unwrap(), summary);
    }

    #[test]
    fn many_or_long_values_keep_a_sample_and_say_so() {
        let spans = (0..MAX_VALUES + 10).map(|i| vec![attribute("user", &format!("u{i}"))]).collect();
        let mut summary = TagSummary::default();
        summary.add(&batch("api", spans)).unwrap();
        summary.add(&batch("api", vec![vec![attribute("url", &"x".repeat(MAX_VALUE_BYTES + 1))]])).unwrap();
        let user = &summary.services["api"]["user"];
        assert_eq!((user.values.len(), user.more), (MAX_VALUES, true));
        let url = &summary.services["api"]["url"];
        assert!(url.values.is_empty() && url.more);

        let mut merged = TagSummary::default();
        merged.merge(&summary);
        merged.merge(&summary);
        assert_eq!(merged, summary);
    }
}
