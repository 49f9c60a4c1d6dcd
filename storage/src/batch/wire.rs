//! OTLP protobuf read straight from a request's bytes into the batch
//! builder: no prost structs, every string and id borrowed from the bytes,
//! one [`SpanView`] refilled for every span.
//!
//! It accepts only what prost accepts and reads it as prost does (the last
//! value of a scalar field wins, repeated fields concatenate, unknown fields
//! are skipped), and leaves to prost, with [`LeftToProst`], what exporters do
//! not send: a message field or a oneof value given twice (prost merges
//! them), groups, arrays or key-value lists nested deeper than
//! [`MAX_NESTING`], and anything that does not decode, so that the error a
//! sender sees is prost's.

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
use prost::Message;

use super::builder::{AppendSummary, ResourceColumns, SpanBatchBuilder};
use super::view::{Attr, EventView, LinkView, ResourceView, ScopeView, SpanView};
use crate::attributes::ValueRef;

/// The request is for prost to decode: it does not decode, or it uses a
/// form the wire reader does not read itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftToProst;

type Read<T> = Result<T, LeftToProst>;

/// Array and key-value-list values nested deeper than this (in messages)
/// are left to prost, which alone knows how deep the whole request is.
pub const MAX_NESTING: usize = 32;

pub(super) fn append(builder: &mut SpanBatchBuilder, bytes: &[u8]) -> Read<AppendSummary> {
    let mut summary = AppendSummary::default();
    let mut span = SpanView::default();
    for field in Fields(bytes) {
        if let (1, value) = field? {
            resource_spans(builder, value.bytes()?, &mut span, &mut summary)?;
        }
    }
    Ok(summary)
}

/// A `ResourceSpans`: its resource and schema URL first, wherever they are
/// in the message, then its scopes in order.
fn resource_spans<'a>(
    builder: &mut SpanBatchBuilder,
    bytes: &'a [u8],
    span: &mut SpanView<'a>,
    summary: &mut AppendSummary,
) -> Read<()> {
    let first_row = builder.len();
    let (header, schema_url) = header_and_schema_url(bytes)?;
    let mut resource = ResourceView::default();
    if let Some(header) = header {
        read_resource(header, &mut resource)?;
    }
    let columns = builder.resource_columns(&resource, summary);
    for scope_spans_bytes in children(bytes) {
        scope_spans(builder, scope_spans_bytes?, &columns, span, summary)?;
    }
    builder.end_resource(schema_url, first_row);
    Ok(())
}

fn scope_spans<'a>(
    builder: &mut SpanBatchBuilder,
    bytes: &'a [u8],
    resource: &ResourceColumns<'_>,
    span: &mut SpanView<'a>,
    summary: &mut AppendSummary,
) -> Read<()> {
    let first_row = builder.len();
    let (header, schema_url) = header_and_schema_url(bytes)?;
    let mut scope = ScopeView::default();
    if let Some(header) = header {
        read_scope(header, &mut scope)?;
    }
    let columns = builder.scope_columns(&scope, summary);
    for span_bytes in children(bytes) {
        read_span(span_bytes?, span)?;
        builder.append_view(span, resource, &columns, summary);
    }
    builder.end_scope(schema_url, first_row);
    Ok(())
}

/// `ResourceSpans` and `ScopeSpans` share a layout: their resource or scope
/// (field 1, at most once), their children (field 2) and the schema URL
/// (field 3). Checks the whole message; returns field 1 and field 3.
fn header_and_schema_url(bytes: &[u8]) -> Read<(Option<&[u8]>, &str)> {
    let (mut header, mut schema_url, mut seen_header) = (None, "", false);
    for field in Fields(bytes) {
        match field? {
            (1, value) => {
                once(&mut seen_header)?;
                header = Some(value.bytes()?);
            }
            (2, value) => _ = value.bytes()?,
            (3, value) => schema_url = value.str()?,
            _ => {}
        }
    }
    Ok((header, schema_url))
}

/// The children (field 2) of a message [`header_and_schema_url`] checked.
fn children(bytes: &[u8]) -> impl Iterator<Item = Read<&[u8]>> {
    Fields(bytes).filter_map(|field| match field {
        Ok((2, value)) => Some(value.bytes()),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

fn read_resource<'a>(bytes: &'a [u8], resource: &mut ResourceView<'a>) -> Read<()> {
    for field in Fields(bytes) {
        match field? {
            (1, value) => resource.attributes.push(read_key_value(value.bytes()?)?),
            (2, value) => resource.dropped_attributes_count = value.uint32()?,
            // Entity references: not stored, but prost checks their strings.
            (3, value) => {
                for field in Fields(value.bytes()?) {
                    if let (1..=4, value) = field? {
                        value.str()?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_scope<'a>(bytes: &'a [u8], scope: &mut ScopeView<'a>) -> Read<()> {
    for field in Fields(bytes) {
        match field? {
            (1, value) => scope.name = value.str()?,
            (2, value) => scope.version = value.str()?,
            (3, value) => scope.attributes.push(read_key_value(value.bytes()?)?),
            (4, value) => scope.dropped_attributes_count = value.uint32()?,
            _ => {}
        }
    }
    Ok(())
}

fn read_span<'a>(bytes: &'a [u8], span: &mut SpanView<'a>) -> Read<()> {
    span.clear();
    let mut seen_status = false;
    for field in Fields(bytes) {
        match field? {
            (1, value) => span.trace_id = value.bytes()?,
            (2, value) => span.span_id = value.bytes()?,
            (3, value) => span.trace_state = value.str()?,
            (4, value) => span.parent_span_id = value.bytes()?,
            (5, value) => span.name = value.str()?,
            (6, value) => span.kind = value.int32()?,
            (7, value) => span.start_time_unix_nano = value.fixed64()?,
            (8, value) => span.end_time_unix_nano = value.fixed64()?,
            (9, value) => span.attributes.push(read_key_value(value.bytes()?)?),
            (10, value) => span.dropped_attributes_count = value.uint32()?,
            (11, value) => read_event(value.bytes()?, span)?,
            (12, value) => span.dropped_events_count = value.uint32()?,
            (13, value) => read_link(value.bytes()?, span)?,
            (14, value) => span.dropped_links_count = value.uint32()?,
            (15, value) => {
                once(&mut seen_status)?;
                for field in Fields(value.bytes()?) {
                    match field? {
                        (2, value) => span.status_message = value.str()?,
                        (3, value) => span.status_code = value.int32()?,
                        _ => {}
                    }
                }
            }
            (16, value) => span.flags = value.fixed32()?,
            _ => {}
        }
    }
    Ok(())
}

fn read_event<'a>(bytes: &'a [u8], span: &mut SpanView<'a>) -> Read<()> {
    let mut event = EventView::default();
    let start = span.item_attributes.len();
    for field in Fields(bytes) {
        match field? {
            (1, value) => event.time_unix_nano = value.fixed64()?,
            (2, value) => event.name = value.str()?,
            (3, value) => span.item_attributes.push(read_key_value(value.bytes()?)?),
            (4, value) => event.dropped_attributes_count = value.uint32()?,
            _ => {}
        }
    }
    event.attributes = start..span.item_attributes.len();
    span.events.push(event);
    Ok(())
}

fn read_link<'a>(bytes: &'a [u8], span: &mut SpanView<'a>) -> Read<()> {
    let mut link = LinkView::default();
    let start = span.item_attributes.len();
    for field in Fields(bytes) {
        match field? {
            (1, value) => link.trace_id = value.bytes()?,
            (2, value) => link.span_id = value.bytes()?,
            (3, value) => link.trace_state = value.str()?,
            (4, value) => span.item_attributes.push(read_key_value(value.bytes()?)?),
            (5, value) => link.dropped_attributes_count = value.uint32()?,
            (6, value) => link.flags = value.fixed32()?,
            _ => {}
        }
    }
    link.attributes = start..span.item_attributes.len();
    span.links.push(link);
    Ok(())
}

fn read_key_value(bytes: &[u8]) -> Read<Attr<'_>> {
    let mut attr = Attr { key: "", value: ValueRef::Empty };
    let mut seen_value = false;
    for field in Fields(bytes) {
        match field? {
            (1, value) => attr.key = value.str()?,
            (2, value) => {
                once(&mut seen_value)?;
                attr.value = read_any_value(value.bytes()?)?;
            }
            // `key_strindex`: the profiles signal's string table.
            (3, value) => _ = value.int32()?,
            _ => {}
        }
    }
    Ok(attr)
}

/// An `AnyValue`: one of its oneof fields, or none.
fn read_any_value(bytes: &[u8]) -> Read<ValueRef<'_>> {
    let mut read = ValueRef::Empty;
    let mut seen_value = false;
    for field in Fields(bytes) {
        let (number, value) = field?;
        if (1..=8).contains(&number) {
            once(&mut seen_value)?;
        }
        read = match number {
            1 => ValueRef::Str(value.str()?),
            2 => ValueRef::Bool(value.varint()? != 0),
            3 => ValueRef::Int(value.varint()? as i64),
            4 => ValueRef::Double(f64::from_bits(value.fixed64()?)),
            5 => {
                let array = ArrayValue::decode(value.bytes()?).map_err(|_| LeftToProst)?;
                shallow(array_nesting(&array))?;
                ValueRef::Array(Cow::Owned(array))
            }
            6 => {
                let list = KeyValueList::decode(value.bytes()?).map_err(|_| LeftToProst)?;
                shallow(list_nesting(&list))?;
                ValueRef::Kvlist(Cow::Owned(list))
            }
            7 => ValueRef::Bytes(value.bytes()?),
            8 => {
                value.int32()?;
                ValueRef::Empty
            }
            _ => continue,
        };
    }
    Ok(read)
}

fn shallow(nesting: usize) -> Read<()> {
    if nesting > MAX_NESTING { Err(LeftToProst) } else { Ok(()) }
}

/// How many messages deep an array reaches.
fn array_nesting(array: &ArrayValue) -> usize {
    1 + array.values.iter().map(any_nesting).max().unwrap_or(0)
}

fn list_nesting(list: &KeyValueList) -> usize {
    1 + list.values.iter().map(|kv| 1 + kv.value.as_ref().map_or(0, any_nesting)).max().unwrap_or(0)
}

fn any_nesting(value: &AnyValue) -> usize {
    1 + match &value.value {
        Some(Value::ArrayValue(array)) => array_nesting(array),
        Some(Value::KvlistValue(list)) => list_nesting(list),
        _ => 0,
    }
}

/// Marks a singular message field seen; the second time is for prost, which
/// merges the two.
fn once(seen: &mut bool) -> Read<()> {
    if std::mem::replace(seen, true) { Err(LeftToProst) } else { Ok(()) }
}

/// A field's value by wire type.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Wire<'a> {
    fn varint(self) -> Read<u64> {
        match self {
            Self::Varint(v) => Ok(v),
            _ => Err(LeftToProst),
        }
    }

    /// prost's `int32` and enums: the varint's low 32 bits.
    fn int32(self) -> Read<i32> {
        Ok(self.varint()? as i32)
    }

    fn uint32(self) -> Read<u32> {
        Ok(self.varint()? as u32)
    }

    fn fixed64(self) -> Read<u64> {
        match self {
            Self::Fixed64(v) => Ok(v),
            _ => Err(LeftToProst),
        }
    }

    fn fixed32(self) -> Read<u32> {
        match self {
            Self::Fixed32(v) => Ok(v),
            _ => Err(LeftToProst),
        }
    }

    fn bytes(self) -> Read<&'a [u8]> {
        match self {
            Self::Bytes(b) => Ok(b),
            _ => Err(LeftToProst),
        }
    }

    fn str(self) -> Read<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| LeftToProst)
    }
}

/// The fields of one message, in order: field number and value.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Read<(u32, Wire<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        (!self.0.is_empty()).then(|| self.field())
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Read<(u32, Wire<'a>)> {
        let key = u32::try_from(self.varint()?).map_err(|_| LeftToProst)?;
        let number = key >> 3;
        if number == 0 {
            return Err(LeftToProst);
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| LeftToProst)?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            // Groups (which prost skips in unknown fields) and invalid types.
            _ => return Err(LeftToProst),
        };
        Ok((number, value))
    }

    fn take(&mut self, len: usize) -> Read<&'a [u8]> {
        if len > self.0.len() {
            return Err(LeftToProst);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    /// A base-128 varint of at most ten bytes, the tenth at most 1, as prost
    /// reads it.
    fn varint(&mut self) -> Read<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                if i == 9 && byte > 1 {
                    return Err(LeftToProst);
                }
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(LeftToProst)
    }
}

#[cfg(test)]
mod tests;
