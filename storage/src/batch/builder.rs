//! OTLP spans straight into Arrow builders, one row per span.
//!
//! Each span is validated before anything of it is appended, so a rejected
//! span leaves no partial row behind and the valid spans of the same request
//! are kept. Resource and scope columns are worked out once per
//! `ResourceSpans` / `ScopeSpans` and repeated for each of their spans.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeBinaryBuilder, Int64Builder, RecordBatch, StringBuilder, StringDictionaryBuilder, UInt32Builder,
};
use arrow::datatypes::Int8Type;
use arrow::error::ArrowError;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use super::columns::{
    AttributeColumns, DedicatedColumn, DedicatedValue, EventColumns, LabelBuilder, LinkColumns, TimestampColumn,
    append_optional_label, append_optional_str, encode_limited,
};
use super::json::{self, LeftToSerde};
use super::view::{Attr, ResourceView, ScopeView, SpanView};
use super::wire::{self, LeftToProst};
use crate::attributes::{EncodedValue, ValueRef};
use crate::remote_service::RemoteService;
use crate::schema::{self, ColumnKind, DEDICATED, Level};

const DEDICATED_COUNT: usize = DEDICATED.len();

/// Limits applied to incoming spans.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Attribute keys and values, span names and status messages longer than
    /// this are cut. 64 KiB keeps stack traces and SQL statements whole while
    /// one pathological value cannot blow up a batch.
    pub max_attribute_value_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self { max_attribute_value_bytes: 64 * 1024 }
    }
}

/// What happened to the spans of one append.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendSummary {
    pub accepted: usize,
    pub rejected: usize,
    /// Values cut to [`IngestLimits::max_attribute_value_bytes`].
    pub truncated_values: usize,
    /// Why the first rejected span was rejected.
    pub first_error: Option<String>,
}

impl AppendSummary {
    fn reject(&mut self, reason: String) {
        self.rejected += 1;
        self.first_error.get_or_insert(reason);
    }
}

/// Ids of a span that passed validation.
struct SpanIds {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    start: i64,
    end: i64,
}

/// Builds a [`RecordBatch`] of the span schema from OTLP spans.
pub struct SpanBatchBuilder {
    limits: IngestLimits,
    rows: usize,
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent_span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    span_name: LabelBuilder,
    span_kind: StringDictionaryBuilder<Int8Type>,
    start_time: TimestampColumn,
    duration_ns: Int64Builder,
    status_code: StringDictionaryBuilder<Int8Type>,
    status_message: StringBuilder,
    remote_service_name: LabelBuilder,
    /// One builder per entry of [`DEDICATED`], same order.
    dedicated: Vec<DedicatedColumn>,
    span_attributes: AttributeColumns,
    events: EventColumns,
    links: LinkColumns,
    dropped_attributes_count: UInt32Builder,
    dropped_events_count: UInt32Builder,
    dropped_links_count: UInt32Builder,
    resource_attributes: AttributeColumns,
    resource_dropped_attributes_count: UInt32Builder,
    resource_schema_url: LabelBuilder,
    scope_name: LabelBuilder,
    scope_version: LabelBuilder,
    scope_attributes: AttributeColumns,
    scope_dropped_attributes_count: UInt32Builder,
    scope_schema_url: LabelBuilder,
}

impl std::fmt::Debug for SpanBatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBatchBuilder").field("rows", &self.rows).finish_non_exhaustive()
    }
}

/// A resource's columns, worked out once for all its spans.
pub(super) struct ResourceColumns<'a> {
    /// Indexed like [`DEDICATED`]; only resource entries are set.
    dedicated: Vec<Option<DedicatedValue<'a>>>,
    attributes: Vec<(&'a str, EncodedValue<'a>)>,
    dropped_attributes_count: u32,
}

pub(super) struct ScopeColumns<'a> {
    name: &'a str,
    version: &'a str,
    attributes: Vec<(&'a str, EncodedValue<'a>)>,
    dropped_attributes_count: u32,
}

impl SpanBatchBuilder {
    pub fn new(limits: IngestLimits) -> Self {
        Self {
            limits,
            rows: 0,
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            parent_span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            span_name: LabelBuilder::new(),
            span_kind: StringDictionaryBuilder::new(),
            start_time: TimestampColumn::default(),
            duration_ns: Int64Builder::new(),
            status_code: StringDictionaryBuilder::new(),
            status_message: StringBuilder::new(),
            remote_service_name: LabelBuilder::new(),
            dedicated: DEDICATED.iter().map(DedicatedColumn::new).collect(),
            span_attributes: AttributeColumns::default(),
            events: EventColumns::default(),
            links: LinkColumns::default(),
            dropped_attributes_count: UInt32Builder::new(),
            dropped_events_count: UInt32Builder::new(),
            dropped_links_count: UInt32Builder::new(),
            resource_attributes: AttributeColumns::default(),
            resource_dropped_attributes_count: UInt32Builder::new(),
            resource_schema_url: LabelBuilder::new(),
            scope_name: LabelBuilder::new(),
            scope_version: LabelBuilder::new(),
            scope_attributes: AttributeColumns::default(),
            scope_dropped_attributes_count: UInt32Builder::new(),
            scope_schema_url: LabelBuilder::new(),
        }
    }

    /// Rows appended since the last [`Self::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends every valid span of decoded requests; invalid ones are
    /// counted and skipped. The reference for [`Self::append_protobuf`].
    pub fn append(&mut self, resource_spans: &[ResourceSpans]) -> AppendSummary {
        let mut summary = AppendSummary::default();
        let mut span = SpanView::default();
        for rs in resource_spans {
            let resource_rows = self.rows;
            let resource_view = ResourceView::of(rs);
            let resource = self.resource_columns(&resource_view, &mut summary);
            for ss in &rs.scope_spans {
                let scope_rows = self.rows;
                let scope_view = ScopeView::of(ss);
                let scope = self.scope_columns(&scope_view, &mut summary);
                for s in &ss.spans {
                    span.fill_from(s);
                    self.append_view(&span, &resource, &scope, &mut summary);
                }
                self.end_scope(&ss.schema_url, scope_rows);
            }
            self.end_resource(&rs.schema_url, resource_rows);
        }
        summary
    }

    /// Appends the spans of an OTLP `ExportTraceServiceRequest` read straight
    /// from its protobuf bytes, as [`Self::append`] would append them after
    /// prost decoded the bytes. `Err` when the bytes do not decode or use
    /// what the reader leaves to prost (see [`wire`]); the builder then holds
    /// part of the request and is to be dropped.
    pub fn append_protobuf(&mut self, bytes: &[u8]) -> Result<AppendSummary, LeftToProst> {
        wire::append(self, bytes)
    }

    /// Appends the spans of an OTLP/JSON `ExportTraceServiceRequest` read
    /// straight from its bytes, as [`Self::append`] would append them after
    /// serde_json decoded them. `Err` when the bytes do not decode or use
    /// what the reader leaves to serde_json (see [`json`]); the builder then
    /// holds part of the request and is to be dropped.
    pub fn append_json(&mut self, bytes: &[u8]) -> Result<AppendSummary, LeftToSerde> {
        json::append(self, bytes)
    }

    pub(super) fn append_view(
        &mut self,
        span: &SpanView<'_>,
        resource: &ResourceColumns<'_>,
        scope: &ScopeColumns<'_>,
        summary: &mut AppendSummary,
    ) {
        match validate(span) {
            Ok(ids) => {
                self.append_span(span, &ids, resource, scope, summary);
                summary.accepted += 1;
            }
            Err(reason) => summary.reject(reason),
        }
    }

    pub(super) fn resource_columns<'a>(
        &self,
        resource: &'a ResourceView<'a>,
        summary: &mut AppendSummary,
    ) -> ResourceColumns<'a> {
        let mut columns = ResourceColumns {
            dedicated: vec![None; DEDICATED.len()],
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        };
        let (unique, dropped) = self.unique(&resource.attributes);
        columns.dropped_attributes_count = resource.dropped_attributes_count.saturating_add(dropped);
        for (key, attr) in unique {
            match promotion(Level::Resource, key, &attr.value) {
                Some((i, v)) => columns.dedicated[i] = Some(v),
                None => columns.attributes.push(self.encode(key, attr, summary)),
            }
        }
        columns
    }

    pub(super) fn scope_columns<'a>(&self, scope: &'a ScopeView<'a>, summary: &mut AppendSummary) -> ScopeColumns<'a> {
        let (attributes, dropped) = self.encode_all(&scope.attributes, summary);
        ScopeColumns {
            name: scope.name,
            version: scope.version,
            attributes,
            dropped_attributes_count: scope.dropped_attributes_count.saturating_add(dropped),
        }
    }

    /// Ends a `ResourceSpans`: its schema URL for every row appended since
    /// `first_row`. Readers find schema URLs after the spans (JSON exporters
    /// write them last), so they are appended once the spans are in.
    pub(super) fn end_resource(&mut self, schema_url: &str, first_row: usize) {
        self.resource_schema_url.append_options((!schema_url.is_empty()).then_some(schema_url), self.rows - first_row);
    }

    /// Ends a `ScopeSpans`, as [`Self::end_resource`] ends a `ResourceSpans`.
    pub(super) fn end_scope(&mut self, schema_url: &str, first_row: usize) {
        self.scope_schema_url.append_options((!schema_url.is_empty()).then_some(schema_url), self.rows - first_row);
    }

    /// The value of an attribute whose key is already cut to `key`.
    fn encode<'a>(&self, key: &'a str, attr: &'a Attr<'a>, summary: &mut AppendSummary) -> (&'a str, EncodedValue<'a>) {
        let (value, cut) = encode_limited(&attr.value, self.limits.max_attribute_value_bytes);
        summary.truncated_values += usize::from(cut) + usize::from(key.len() < attr.key.len());
        (key, value)
    }

    fn cut<'a>(&self, text: &'a str, summary: &mut AppendSummary) -> &'a str {
        let cut = crate::attributes::truncate(text, self.limits.max_attribute_value_bytes);
        summary.truncated_values += usize::from(cut.len() < text.len());
        cut
    }

    /// [`first_of_each_key`] with this builder's key limit.
    fn unique<'a>(&self, attributes: &'a [Attr<'a>]) -> (Vec<(&'a str, &'a Attr<'a>)>, u32) {
        let max = self.limits.max_attribute_value_bytes;
        first_of_each_key(attributes, move |key| crate::attributes::truncate(key, max))
    }

    /// Encodes a whole attribute list; returns it and the repeats dropped.
    fn encode_all<'a>(
        &self,
        attributes: &'a [Attr<'a>],
        summary: &mut AppendSummary,
    ) -> (Vec<(&'a str, EncodedValue<'a>)>, u32) {
        let (unique, dropped) = self.unique(attributes);
        (unique.into_iter().map(|(key, attr)| self.encode(key, attr, summary)).collect(), dropped)
    }

    fn append_span(
        &mut self,
        span: &SpanView<'_>,
        ids: &SpanIds,
        resource: &ResourceColumns<'_>,
        scope: &ScopeColumns<'_>,
        summary: &mut AppendSummary,
    ) {
        self.rows += 1;
        self.trace_id.append_value(ids.trace_id).expect("16 bytes");
        self.span_id.append_value(ids.span_id).expect("8 bytes");
        match ids.parent_span_id {
            Some(parent) => self.parent_span_id.append_value(parent).expect("8 bytes"),
            None => self.parent_span_id.append_null(),
        }
        append_optional_str(&mut self.trace_state, span.trace_state);
        self.flags.append_value(span.flags);
        let name = self.cut(span.name, summary);
        self.span_name.append_value(name);
        self.span_kind.append_value(enum_name(&schema::SPAN_KINDS, span.kind));
        self.start_time.push(ids.start);
        self.duration_ns.append_value(ids.end.wrapping_sub(ids.start));
        self.status_code.append_value(enum_name(&schema::STATUS_CODES, span.status_code));
        let message = self.cut(span.status_message, summary);
        append_optional_str(&mut self.status_message, message);

        // Span attributes: promote what has a dedicated column, keep the rest.
        let mut filled = [false; DEDICATED_COUNT];
        let mut remote = RemoteService::default();
        let (unique, repeated) = self.unique(&span.attributes);
        for &(key, attr) in &unique {
            let value = &attr.value;
            remote.observe(key, value.as_str());
            if let Some((i, v)) = promotion(Level::Span, key, value) {
                filled[i] = true;
                self.dedicated[i].append(Some(&v));
                continue;
            }
            // An older name fills the column when the current one was not
            // sent; the attribute stays in the map as it was sent.
            if let Some(current) = schema::current_name(key)
                && !unique.iter().any(|(k, _)| *k == current)
                && let Some((i, v)) = promotion(Level::Span, current, value)
                && !filled[i]
            {
                filled[i] = true;
                self.dedicated[i].append(Some(&v));
                self.span_attributes.types.push(current, schema::value_type::DERIVED);
            }
            let (key, value) = self.encode(key, attr, summary);
            self.span_attributes.push(key, &value);
        }
        self.span_attributes.finish_row();
        match remote.name(span.kind) {
            Some(name) => self.remote_service_name.append_value(name),
            None => self.remote_service_name.append_null(),
        }
        for (i, d) in DEDICATED.iter().enumerate() {
            match d.level {
                Level::Span if !filled[i] => self.dedicated[i].append(None),
                Level::Span => {}
                Level::Resource => self.dedicated[i].append(resource.dedicated[i].as_ref()),
            }
        }

        for event in &span.events {
            let (attributes, dropped) = self.encode_all(span.item_attributes(&event.attributes), summary);
            for (key, value) in &attributes {
                self.events.attributes().push(key, value);
            }
            let name = self.cut(event.name, summary);
            self.events.push(
                clamp_nanos(event.time_unix_nano),
                name,
                event.dropped_attributes_count.saturating_add(dropped),
            );
        }
        self.events.finish_row();
        for link in &span.links {
            let (attributes, dropped) = self.encode_all(span.item_attributes(&link.attributes), summary);
            for (key, value) in &attributes {
                self.links.attributes().push(key, value);
            }
            let trace_id = link.trace_id.try_into().expect("validated");
            let span_id = link.span_id.try_into().expect("validated");
            let dropped = link.dropped_attributes_count.saturating_add(dropped);
            self.links.push(trace_id, span_id, link.trace_state, link.flags, dropped);
        }
        self.links.finish_row();
        self.dropped_attributes_count.append_value(span.dropped_attributes_count.saturating_add(repeated));
        self.dropped_events_count.append_value(span.dropped_events_count);
        self.dropped_links_count.append_value(span.dropped_links_count);

        for (key, value) in &resource.attributes {
            self.resource_attributes.push(key, value);
        }
        self.resource_attributes.finish_row();
        self.resource_dropped_attributes_count.append_value(resource.dropped_attributes_count);
        append_optional_label(&mut self.scope_name, scope.name);
        append_optional_label(&mut self.scope_version, scope.version);
        for (key, value) in &scope.attributes {
            self.scope_attributes.push(key, value);
        }
        self.scope_attributes.finish_row();
        self.scope_dropped_attributes_count.append_value(scope.dropped_attributes_count);
    }

    /// Takes the rows appended so far as a batch of [`schema::span_schema`].
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let mut columns: HashMap<&str, ArrayRef> = HashMap::from([
            (schema::TRACE_ID, Arc::new(self.trace_id.finish()) as ArrayRef),
            (schema::SPAN_ID, Arc::new(self.span_id.finish())),
            (schema::PARENT_SPAN_ID, Arc::new(self.parent_span_id.finish())),
            (schema::TRACE_STATE, Arc::new(self.trace_state.finish())),
            (schema::FLAGS, Arc::new(self.flags.finish())),
            (schema::SPAN_NAME, Arc::new(self.span_name.finish())),
            (schema::SPAN_KIND, Arc::new(self.span_kind.finish())),
            (schema::START_TIME, self.start_time.finish()),
            (schema::DURATION_NS, Arc::new(self.duration_ns.finish())),
            (schema::STATUS_CODE, Arc::new(self.status_code.finish())),
            (schema::STATUS_MESSAGE, Arc::new(self.status_message.finish())),
            (schema::REMOTE_SERVICE_NAME, Arc::new(self.remote_service_name.finish())),
            (schema::EVENTS, self.events.finish()?),
            (schema::LINKS, self.links.finish()?),
            (schema::DROPPED_ATTRIBUTES_COUNT, Arc::new(self.dropped_attributes_count.finish())),
            (schema::DROPPED_EVENTS_COUNT, Arc::new(self.dropped_events_count.finish())),
            (schema::DROPPED_LINKS_COUNT, Arc::new(self.dropped_links_count.finish())),
            (schema::RESOURCE_DROPPED_ATTRIBUTES_COUNT, Arc::new(self.resource_dropped_attributes_count.finish())),
            (schema::RESOURCE_SCHEMA_URL, Arc::new(self.resource_schema_url.finish())),
            (schema::SCOPE_NAME, Arc::new(self.scope_name.finish())),
            (schema::SCOPE_VERSION, Arc::new(self.scope_version.finish())),
            (schema::SCOPE_DROPPED_ATTRIBUTES_COUNT, Arc::new(self.scope_dropped_attributes_count.finish())),
            (schema::SCOPE_SCHEMA_URL, Arc::new(self.scope_schema_url.finish())),
        ]);
        for (names, attributes) in [
            ((schema::SPAN_ATTRIBUTES, schema::SPAN_ATTRIBUTE_TYPES), &mut self.span_attributes),
            ((schema::RESOURCE_ATTRIBUTES, schema::RESOURCE_ATTRIBUTE_TYPES), &mut self.resource_attributes),
            ((schema::SCOPE_ATTRIBUTES, schema::SCOPE_ATTRIBUTE_TYPES), &mut self.scope_attributes),
        ] {
            let [values, types] = attributes.finish()?;
            columns.insert(names.0, values);
            columns.insert(names.1, types);
        }
        for (d, builder) in DEDICATED.iter().zip(&mut self.dedicated) {
            columns.insert(d.column, builder.finish());
        }
        let schema = schema::span_schema();
        let ordered = schema
            .fields()
            .iter()
            .map(|f| columns.remove(f.name().as_str()).expect("every schema column is built"))
            .collect();
        RecordBatch::try_new(schema, ordered)
    }
}

/// The attributes of one list whose stored key (after cutting) comes first.
/// OTLP requires unique keys and a map holds one value per key, so later
/// repeats are dropped and counted with the list's dropped attributes.
fn first_of_each_key<'a>(
    attributes: &'a [Attr<'a>],
    cut: impl Fn(&'a str) -> &'a str,
) -> (Vec<(&'a str, &'a Attr<'a>)>, u32) {
    let mut keep: Vec<(&str, &Attr<'_>)> = Vec::with_capacity(attributes.len());
    for attr in attributes {
        let key = cut(attr.key);
        if keep.iter().any(|(seen, _)| *seen == key) {
            continue;
        }
        keep.push((key, attr));
    }
    let dropped = (attributes.len() - keep.len()) as u32;
    (keep, dropped)
}

/// The dedicated column for an attribute, when its value has the column's type.
fn promotion<'a>(level: Level, key: &str, value: &ValueRef<'a>) -> Option<(usize, DedicatedValue<'a>)> {
    let i = DEDICATED.iter().position(|d| d.level == level && d.key == key)?;
    let value = match (DEDICATED[i].kind, value) {
        (ColumnKind::Label | ColumnKind::Text, ValueRef::Str(s)) => DedicatedValue::Str(s),
        (ColumnKind::Int, ValueRef::Int(n)) => DedicatedValue::Int(*n),
        _ => return None,
    };
    Some((i, value))
}

/// Unknown enum numbers (from newer or broken senders) fall back to the
/// first, "unspecified" name; the dictionary stays small.
fn enum_name(names: &[&'static str], value: i32) -> &'static str {
    usize::try_from(value).ok().and_then(|i| names.get(i)).copied().unwrap_or(names[0])
}

fn clamp_nanos(nanos: u64) -> i64 {
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

fn validate(span: &SpanView<'_>) -> Result<SpanIds, String> {
    let trace_id: [u8; 16] =
        span.trace_id.try_into().map_err(|_| format!("trace_id must be 16 bytes, got {}", span.trace_id.len()))?;
    if trace_id == [0; 16] {
        return Err("trace_id must not be all zeros".into());
    }
    let span_id: [u8; 8] =
        span.span_id.try_into().map_err(|_| format!("span_id must be 8 bytes, got {}", span.span_id.len()))?;
    if span_id == [0; 8] {
        return Err("span_id must not be all zeros".into());
    }
    let parent_span_id = match span.parent_span_id.len() {
        0 => None,
        8 if span.parent_span_id.iter().all(|b| *b == 0) => None,
        8 => Some(span.parent_span_id.try_into().expect("8 bytes")),
        n => return Err(format!("parent_span_id must be empty or 8 bytes, got {n}")),
    };
    let start = i64::try_from(span.start_time_unix_nano).map_err(|_| "start_time_unix_nano is after the year 2262")?;
    let end = i64::try_from(span.end_time_unix_nano).map_err(|_| "end_time_unix_nano is after the year 2262")?;
    for (i, link) in span.links.iter().enumerate() {
        if link.trace_id.len() != 16 || link.span_id.len() != 8 {
            return Err(format!("link {i} must have a 16-byte trace_id and an 8-byte span_id"));
        }
    }
    Ok(SpanIds { trace_id, span_id, parent_span_id, start, end })
}
