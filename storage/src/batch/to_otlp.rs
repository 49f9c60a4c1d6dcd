//! Rows of the span schema back into OTLP, the inverse of the builder:
//! promoted attributes return to their maps, type tags restore each value's
//! type, and spans regroup under their resource and scope.

use std::collections::HashMap;

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampNanosecondArray, UInt32Array,
};
use arrow::compute::cast;
use arrow::datatypes::{Int64Type, UInt32Type};
use arrow::error::ArrowError;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use thiserror::Error;

use crate::attributes::{self, AttributeError};
use crate::schema::{self, ColumnKind, DEDICATED, Level, nested, value_type};

#[derive(Debug, Error)]
pub enum ToOtlpError {
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Attribute(#[from] AttributeError),
    #[error("span batch lacks column {0}")]
    MissingColumn(&'static str),
}

/// Regroups span rows into OTLP `ResourceSpans`, keeping row order within each scope.
pub fn spans_to_otlp(batches: &[RecordBatch]) -> Result<Vec<ResourceSpans>, ToOtlpError> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut resources: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut scopes: HashMap<(usize, Vec<u8>), usize> = HashMap::new();
    for batch in batches {
        let batch = schema::conform(batch, &schema::span_schema())?;
        let rows = Rows::new(&batch)?;
        for row in 0..batch.num_rows() {
            let (resource, resource_schema_url) = rows.resource(row)?;
            let mut key = resource.encode_to_vec();
            key.extend_from_slice(resource_schema_url.as_bytes());
            let r = *resources.entry(key).or_insert_with(|| {
                out.push(ResourceSpans {
                    resource: Some(resource),
                    scope_spans: Vec::new(),
                    schema_url: resource_schema_url.to_owned(),
                });
                out.len() - 1
            });
            let (scope, scope_schema_url) = rows.scope(row)?;
            let mut key = scope.encode_to_vec();
            key.extend_from_slice(scope_schema_url.as_bytes());
            let scope_spans = &mut out[r].scope_spans;
            let s = *scopes.entry((r, key)).or_insert_with(|| {
                scope_spans.push(ScopeSpans {
                    scope: Some(scope),
                    spans: Vec::new(),
                    schema_url: scope_schema_url.to_owned(),
                });
                scope_spans.len() - 1
            });
            scope_spans[s].spans.push(rows.span(row)?);
        }
    }
    Ok(out)
}

/// A string-valued column of any physical form, read by row.
struct Strings(StringArray);

impl Strings {
    fn new(batch: &RecordBatch, name: &'static str) -> Result<Self, ToOtlpError> {
        let column = batch.column_by_name(name).ok_or(ToOtlpError::MissingColumn(name))?;
        Ok(Self(cast(column, &arrow::datatypes::DataType::Utf8)?.as_string::<i32>().clone()))
    }

    fn get(&self, row: usize) -> &str {
        if self.0.is_null(row) { "" } else { self.0.value(row) }
    }

    fn opt(&self, row: usize) -> Option<&str> {
        (!self.0.is_null(row)).then(|| self.0.value(row))
    }
}

/// Typed views of the columns of one batch.
struct Rows<'a> {
    batch: &'a RecordBatch,
    trace_id: &'a FixedSizeBinaryArray,
    span_id: &'a FixedSizeBinaryArray,
    parent_span_id: &'a FixedSizeBinaryArray,
    trace_state: Strings,
    flags: &'a UInt32Array,
    span_name: Strings,
    span_kind: Strings,
    start_time: &'a TimestampNanosecondArray,
    duration_ns: &'a arrow::array::Int64Array,
    status_code: Strings,
    status_message: Strings,
    dedicated: Vec<Strings>,
    events: &'a ListArray,
    links: &'a ListArray,
    resource_schema_url: Strings,
    scope_name: Strings,
    scope_version: Strings,
    scope_schema_url: Strings,
}

fn column<'a>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a dyn Array, ToOtlpError> {
    batch.column_by_name(name).map(|c| c.as_ref()).ok_or(ToOtlpError::MissingColumn(name))
}

impl<'a> Rows<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self, ToOtlpError> {
        Ok(Self {
            batch,
            trace_id: column(batch, schema::TRACE_ID)?.as_fixed_size_binary(),
            span_id: column(batch, schema::SPAN_ID)?.as_fixed_size_binary(),
            parent_span_id: column(batch, schema::PARENT_SPAN_ID)?.as_fixed_size_binary(),
            trace_state: Strings::new(batch, schema::TRACE_STATE)?,
            flags: column(batch, schema::FLAGS)?.as_primitive::<UInt32Type>(),
            span_name: Strings::new(batch, schema::SPAN_NAME)?,
            span_kind: Strings::new(batch, schema::SPAN_KIND)?,
            start_time: column(batch, schema::START_TIME)?.as_primitive(),
            duration_ns: column(batch, schema::DURATION_NS)?.as_primitive::<Int64Type>(),
            status_code: Strings::new(batch, schema::STATUS_CODE)?,
            status_message: Strings::new(batch, schema::STATUS_MESSAGE)?,
            dedicated: DEDICATED.iter().map(|d| Strings::new(batch, d.column)).collect::<Result<_, _>>()?,
            events: column(batch, schema::EVENTS)?.as_list::<i32>(),
            links: column(batch, schema::LINKS)?.as_list::<i32>(),
            resource_schema_url: Strings::new(batch, schema::RESOURCE_SCHEMA_URL)?,
            scope_name: Strings::new(batch, schema::SCOPE_NAME)?,
            scope_version: Strings::new(batch, schema::SCOPE_VERSION)?,
            scope_schema_url: Strings::new(batch, schema::SCOPE_SCHEMA_URL)?,
        })
    }

    fn u32(&self, name: &'static str, row: usize) -> Result<u32, ToOtlpError> {
        Ok(column(self.batch, name)?.as_primitive::<UInt32Type>().value(row))
    }

    fn map(&self, name: &'static str) -> Result<&'a MapArray, ToOtlpError> {
        Ok(column(self.batch, name)?.as_map())
    }

    /// Dedicated columns of `level` first, then the rest of the map.
    fn attributes(
        &self,
        level: Level,
        values: &'static str,
        types: &'static str,
        row: usize,
    ) -> Result<Vec<KeyValue>, ToOtlpError> {
        let mut out = Vec::new();
        let types_of_row = self.map(types)?.value(row);
        let type_keys = types_of_row.column(0).as_string::<i32>();
        let type_tags = types_of_row.column(1).as_string::<i32>();
        // A column filled from an older name was not sent under its own.
        let derived = |key: &str| {
            (0..type_keys.len()).any(|i| type_keys.value(i) == key && type_tags.value(i) == value_type::DERIVED)
        };
        for (d, column) in DEDICATED.iter().zip(&self.dedicated) {
            let Some(text) = column.opt(row).filter(|_| d.level == level) else { continue };
            if derived(d.key) {
                continue;
            }
            let value = match d.kind {
                ColumnKind::Int => Value::IntValue(text.parse().map_err(|_| AttributeError::Unreadable {
                    key: d.key.to_owned(),
                    tag: "int".into(),
                    text: text.to_owned(),
                })?),
                ColumnKind::Label | ColumnKind::Text => Value::StringValue(text.to_owned()),
            };
            out.push(key_value(d.key, Some(value)));
        }
        out.extend(map_attributes(&self.map(values)?.value(row), &self.map(types)?.value(row))?);
        Ok(out)
    }

    fn resource(&self, row: usize) -> Result<(Resource, &str), ToOtlpError> {
        let resource = Resource {
            attributes: self.attributes(
                Level::Resource,
                schema::RESOURCE_ATTRIBUTES,
                schema::RESOURCE_ATTRIBUTE_TYPES,
                row,
            )?,
            dropped_attributes_count: self.u32(schema::RESOURCE_DROPPED_ATTRIBUTES_COUNT, row)?,
            ..Default::default()
        };
        Ok((resource, self.resource_schema_url.get(row)))
    }

    fn scope(&self, row: usize) -> Result<(InstrumentationScope, &str), ToOtlpError> {
        let scope = InstrumentationScope {
            name: self.scope_name.get(row).to_owned(),
            version: self.scope_version.get(row).to_owned(),
            attributes: map_attributes(
                &self.map(schema::SCOPE_ATTRIBUTES)?.value(row),
                &self.map(schema::SCOPE_ATTRIBUTE_TYPES)?.value(row),
            )?,
            dropped_attributes_count: self.u32(schema::SCOPE_DROPPED_ATTRIBUTES_COUNT, row)?,
        };
        Ok((scope, self.scope_schema_url.get(row)))
    }

    fn span(&self, row: usize) -> Result<Span, ToOtlpError> {
        let start = self.start_time.value(row);
        let end = start.wrapping_add(self.duration_ns.value(row));
        Ok(Span {
            trace_id: self.trace_id.value(row).to_vec(),
            span_id: self.span_id.value(row).to_vec(),
            trace_state: self.trace_state.get(row).to_owned(),
            parent_span_id: if self.parent_span_id.is_null(row) {
                Vec::new()
            } else {
                self.parent_span_id.value(row).to_vec()
            },
            flags: self.flags.value(row),
            name: self.span_name.get(row).to_owned(),
            kind: enum_number(&schema::SPAN_KINDS, self.span_kind.get(row)),
            start_time_unix_nano: start as u64,
            end_time_unix_nano: end as u64,
            attributes: self.attributes(Level::Span, schema::SPAN_ATTRIBUTES, schema::SPAN_ATTRIBUTE_TYPES, row)?,
            dropped_attributes_count: self.u32(schema::DROPPED_ATTRIBUTES_COUNT, row)?,
            events: events(&self.events.value(row))?,
            dropped_events_count: self.u32(schema::DROPPED_EVENTS_COUNT, row)?,
            links: links(&self.links.value(row))?,
            dropped_links_count: self.u32(schema::DROPPED_LINKS_COUNT, row)?,
            status: Some(Status {
                message: self.status_message.get(row).to_owned(),
                code: enum_number(&schema::STATUS_CODES, self.status_code.get(row)),
            }),
        })
    }
}

fn enum_number(names: &[&str], name: &str) -> i32 {
    names.iter().position(|n| *n == name).unwrap_or(0) as i32
}

fn key_value(key: &str, value: Option<Value>) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value }), ..Default::default() }
}

/// Decodes one row of an attribute map with its type-tag map.
fn map_attributes(values: &StructArray, types: &StructArray) -> Result<Vec<KeyValue>, ToOtlpError> {
    let keys = values.column(0).as_string::<i32>();
    let texts = values.column(1).as_string::<i32>();
    let type_keys = types.column(0).as_string::<i32>();
    let type_tags = types.column(1).as_string::<i32>();
    let tag_of = |key: &str| (0..type_keys.len()).find(|&i| type_keys.value(i) == key).map(|i| type_tags.value(i));
    (0..keys.len())
        .map(|i| {
            let key = keys.value(i);
            let text = if texts.is_null(i) { "" } else { texts.value(i) };
            Ok(key_value(key, attributes::decode(key, text, tag_of(key))?))
        })
        .collect()
}

fn struct_field<'a>(items: &'a StructArray, name: &'static str) -> Result<&'a dyn Array, ToOtlpError> {
    items.column_by_name(name).map(|c| c.as_ref()).ok_or(ToOtlpError::MissingColumn(name))
}

fn events(list: &dyn Array) -> Result<Vec<Event>, ToOtlpError> {
    let items = list.as_struct();
    let time = struct_field(items, nested::TIME)?.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
    let name = struct_field(items, nested::NAME)?.as_string::<i32>();
    let attrs = struct_field(items, nested::ATTRIBUTES)?.as_map();
    let types = struct_field(items, nested::ATTRIBUTE_TYPES)?.as_map();
    let dropped = struct_field(items, nested::DROPPED_ATTRIBUTES_COUNT)?.as_primitive::<UInt32Type>();
    (0..items.len())
        .map(|i| {
            Ok(Event {
                time_unix_nano: time.value(i) as u64,
                name: name.value(i).to_owned(),
                attributes: map_attributes(&attrs.value(i), &types.value(i))?,
                dropped_attributes_count: dropped.value(i),
            })
        })
        .collect()
}

fn links(list: &dyn Array) -> Result<Vec<Link>, ToOtlpError> {
    let items = list.as_struct();
    let trace_id = struct_field(items, nested::TRACE_ID)?.as_fixed_size_binary();
    let span_id = struct_field(items, nested::SPAN_ID)?.as_fixed_size_binary();
    let trace_state = struct_field(items, nested::TRACE_STATE)?.as_string::<i32>();
    let flags = struct_field(items, nested::FLAGS)?.as_primitive::<UInt32Type>();
    let attrs = struct_field(items, nested::ATTRIBUTES)?.as_map();
    let types = struct_field(items, nested::ATTRIBUTE_TYPES)?.as_map();
    let dropped = struct_field(items, nested::DROPPED_ATTRIBUTES_COUNT)?.as_primitive::<UInt32Type>();
    (0..items.len())
        .map(|i| {
            Ok(Link {
                trace_id: trace_id.value(i).to_vec(),
                span_id: span_id.value(i).to_vec(),
                trace_state: if trace_state.is_null(i) { String::new() } else { trace_state.value(i).to_owned() },
                attributes: map_attributes(&attrs.value(i), &types.value(i))?,
                dropped_attributes_count: dropped.value(i),
                flags: flags.value(i),
            })
        })
        .collect()
}
