//! OTLP/JSON read straight from a request's bytes into the batch builder:
//! no `serde_json::Value` trees and no prost structs, strings borrowed from
//! the bytes, one [`SpanView`] refilled for every span.
//!
//! serde_json with opentelemetry-proto's mapping is the reference: this
//! reader accepts only what the reference accepts and reads it alike
//! (camelCase keys, ids in hex, 64-bit integers as numbers or strings,
//! unknown keys skipped, `null` for an absent message or value, the last of
//! an `AnyValue`'s fields winning). What it is not sure to read alike it
//! leaves to the reference with [`LeftToSerde`]: a known key given twice
//! (the reference refuses those in messages), entity references, and
//! anything that does not parse, so that the error a sender sees is
//! serde_json's.

mod scan;

use std::borrow::Cow;

use bumpalo::Bump;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};

use self::scan::Scanner;
use super::builder::{AppendSummary, ResourceColumns, SpanBatchBuilder};
use super::view::{Attr, EventView, LinkView, ResourceView, ScopeView, SpanView};
use crate::attributes::ValueRef;

/// The request is for serde_json to decode: it does not decode, or it uses
/// a form this reader does not read itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftToSerde;

type Read<T> = Result<T, LeftToSerde>;

/// A message's known keys, numbered in order: a function from a key to its
/// number, made of one `match` so that the compiler dispatches on the
/// key's length before comparing bytes.
macro_rules! keys {
    ($($key:literal),+ $(,)?) => {
        |key: &str| keys!(@arms key; 0usize; []; $($key),+)
    };
    (@arms $k:ident; $n:expr; [$($arms:tt)*]; $first:literal $(, $rest:literal)*) => {
        keys!(@arms $k; $n + 1; [$($arms)* $first => Some($n),]; $($rest),*)
    };
    (@arms $k:ident; $n:expr; [$($arms:tt)*];) => {
        match $k {
            $($arms)*
            _ => None,
        }
    };
}

pub(super) fn append(builder: &mut SpanBatchBuilder, bytes: &[u8]) -> Read<AppendSummary> {
    // Unescaped strings and decoded ids live here until the request is built.
    let arena = Bump::new();
    let mut scanner = Scanner::new(bytes, &arena).ok_or(LeftToSerde)?;
    let mut summary = AppendSummary::default();
    let mut span = SpanView::default();
    fields(&mut scanner, keys!["resourceSpans"], |s, _| {
        s.array(|s| resource_spans(builder, s, &mut span, &mut summary))
    })?;
    scanner.end()?;
    Ok(summary)
}

/// Stores a value read.
fn set<T>(slot: &mut T, read: Read<T>) -> Read<()> {
    *slot = read?;
    Ok(())
}

/// Which of a message's known keys were read.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn has(&self, field: usize) -> bool {
        self.0 & 1 << field != 0
    }
}

/// Reads a message: `read` gets the number (`field_of`, made by [`keys!`])
/// of each known key and reads its value; unknown keys are skipped. A known
/// key given twice is for the reference, which refuses it.
fn fields<'a>(
    s: &mut Scanner<'a>,
    field_of: impl Fn(&str) -> Option<usize>,
    mut read: impl FnMut(&mut Scanner<'a>, usize) -> Read<()>,
) -> Read<Seen> {
    let mut seen = Seen::default();
    s.object(|s, key| {
        let Some(field) = field_of(key) else { return s.skip() };
        if seen.has(field) {
            return Err(LeftToSerde);
        }
        seen.0 |= 1 << field;
        read(s, field)
    })?;
    Ok(seen)
}

/// Reads a `ResourceSpans` or a `ScopeSpans`: its header (`keys[0]`, the
/// resource or scope) with `read_header`, its children (`keys[1]`) with
/// `children` once the header is known, and returns its schema URL, which
/// exporters write after the children. Children written before their
/// header are skipped over and read after the object.
fn parent<'a, H: Default>(
    s: &mut Scanner<'a>,
    keys: [&str; 2],
    read_header: impl Fn(&mut Scanner<'a>, &mut H) -> Read<()>,
    mut children: impl FnMut(&mut Scanner<'a>, &H) -> Read<()>,
) -> Read<&'a str> {
    let (mut header, mut header_read, mut later, mut schema_url) = (H::default(), false, None, "");
    let field_of = |key: &str| [keys[0], keys[1], "schemaUrl"].iter().position(|k| *k == key);
    let seen = fields(s, field_of, |s, field| {
        match field {
            0 => {
                header_read = true;
                if !s.null() {
                    read_header(s, &mut header)?;
                }
            }
            1 if header_read => children(s, &header)?,
            1 => later = Some(s.mark()?),
            _ => schema_url = s.string()?,
        }
        Ok(())
    })?;
    if let Some(mark) = later {
        s.at(mark, |s| children(s, &header))?;
    } else if !seen.has(1) {
        // No children: the header is still worked out (its values cut and
        // counted), as the reference does.
        children(&mut s.over("[]"), &header)?;
    }
    Ok(schema_url)
}

fn resource_spans<'a>(
    builder: &mut SpanBatchBuilder,
    s: &mut Scanner<'a>,
    span: &mut SpanView<'a>,
    summary: &mut AppendSummary,
) -> Read<()> {
    let first_row = builder.len();
    let schema_url = parent(s, ["resource", "scopeSpans"], read_resource, |s, resource| {
        let columns = builder.resource_columns(resource, summary);
        s.array(|s| scope_spans(builder, s, &columns, span, summary))
    })?;
    builder.end_resource(schema_url, first_row);
    Ok(())
}

fn scope_spans<'a>(
    builder: &mut SpanBatchBuilder,
    s: &mut Scanner<'a>,
    resource: &ResourceColumns<'_>,
    span: &mut SpanView<'a>,
    summary: &mut AppendSummary,
) -> Read<()> {
    let first_row = builder.len();
    let schema_url = parent(s, ["scope", "spans"], read_scope, |s, scope| {
        let columns = builder.scope_columns(scope, summary);
        s.array(|s| {
            read_span(s, span)?;
            builder.append_view(span, resource, &columns, summary);
            Ok(())
        })
    })?;
    builder.end_scope(schema_url, first_row);
    Ok(())
}

fn read_resource<'a>(s: &mut Scanner<'a>, resource: &mut ResourceView<'a>) -> Read<()> {
    fields(s, keys!["attributes", "droppedAttributesCount", "entityRefs"], |s, field| match field {
        0 => attributes(s, &mut resource.attributes),
        1 => set(&mut resource.dropped_attributes_count, s.u32()),
        // Not stored; only an empty list is read here.
        _ => s.array(|_| Err(LeftToSerde)),
    })
    .map(drop)
}

fn read_scope<'a>(s: &mut Scanner<'a>, scope: &mut ScopeView<'a>) -> Read<()> {
    fields(s, keys!["name", "version", "attributes", "droppedAttributesCount"], |s, field| match field {
        0 => set(&mut scope.name, s.string()),
        1 => set(&mut scope.version, s.string()),
        2 => attributes(s, &mut scope.attributes),
        _ => set(&mut scope.dropped_attributes_count, s.u32()),
    })
    .map(drop)
}

fn read_span<'a>(s: &mut Scanner<'a>, span: &mut SpanView<'a>) -> Read<()> {
    span.clear();
    fields(
        s,
        keys![
            "traceId",
            "spanId",
            "traceState",
            "parentSpanId",
            "flags",
            "name",
            "kind",
            "startTimeUnixNano",
            "endTimeUnixNano",
            "attributes",
            "droppedAttributesCount",
            "events",
            "droppedEventsCount",
            "links",
            "droppedLinksCount",
            "status"
        ],
        |s, field| match field {
            0 => set(&mut span.trace_id, s.hex()),
            1 => set(&mut span.span_id, s.hex()),
            2 => set(&mut span.trace_state, s.string()),
            3 => set(&mut span.parent_span_id, s.hex()),
            4 => set(&mut span.flags, s.u32()),
            5 => set(&mut span.name, s.string()),
            6 => set(&mut span.kind, s.i32()),
            7 => set(&mut span.start_time_unix_nano, s.u64_or_string()),
            8 => set(&mut span.end_time_unix_nano, s.u64_or_string()),
            9 => attributes(s, &mut span.attributes),
            10 => set(&mut span.dropped_attributes_count, s.u32()),
            11 => s.array(|s| read_event(s, span)),
            12 => set(&mut span.dropped_events_count, s.u32()),
            13 => s.array(|s| read_link(s, span)),
            14 => set(&mut span.dropped_links_count, s.u32()),
            _ if s.null() => Ok(()),
            _ => fields(s, keys!["message", "code"], |s, field| match field {
                0 => set(&mut span.status_message, s.string()),
                _ => set(&mut span.status_code, s.i32()),
            })
            .map(drop),
        },
    )
    .map(drop)
}

fn read_event<'a>(s: &mut Scanner<'a>, span: &mut SpanView<'a>) -> Read<()> {
    let mut event = EventView { attributes: span.item_attributes.len()..0, ..EventView::default() };
    fields(s, keys!["timeUnixNano", "name", "attributes", "droppedAttributesCount"], |s, field| match field {
        0 => set(&mut event.time_unix_nano, s.u64_or_string()),
        1 => set(&mut event.name, s.string()),
        2 => attributes(s, &mut span.item_attributes),
        _ => set(&mut event.dropped_attributes_count, s.u32()),
    })?;
    event.attributes.end = span.item_attributes.len();
    span.events.push(event);
    Ok(())
}

fn read_link<'a>(s: &mut Scanner<'a>, span: &mut SpanView<'a>) -> Read<()> {
    let mut link = LinkView { attributes: span.item_attributes.len()..0, ..LinkView::default() };
    fields(
        s,
        keys!["traceId", "spanId", "traceState", "attributes", "droppedAttributesCount", "flags"],
        |s, field| match field {
            0 => set(&mut link.trace_id, s.hex()),
            1 => set(&mut link.span_id, s.hex()),
            2 => set(&mut link.trace_state, s.string()),
            3 => attributes(s, &mut span.item_attributes),
            4 => set(&mut link.dropped_attributes_count, s.u32()),
            _ => set(&mut link.flags, s.u32()),
        },
    )?;
    link.attributes.end = span.item_attributes.len();
    span.links.push(link);
    Ok(())
}

/// A list of `KeyValue`s, appended to `list`.
fn attributes<'a>(s: &mut Scanner<'a>, list: &mut Vec<Attr<'a>>) -> Read<()> {
    s.array(|s| {
        let (key, value) = key_and_value(s)?;
        list.push(Attr { key, value: value.unwrap_or(ValueRef::Empty) });
        Ok(())
    })
}

/// A `KeyValue`: its key, which the reference requires, and its value if
/// it has one.
fn key_and_value<'a>(s: &mut Scanner<'a>) -> Read<(&'a str, Option<ValueRef<'a>>)> {
    let (mut key, mut value) = ("", None);
    // `keyStrindex`: the profiles signal's string table, read and ignored.
    let seen = fields(s, keys!["key", "value", "keyStrindex"], |s, field| match field {
        0 => set(&mut key, s.string()),
        1 if s.null() => Ok(()),
        1 => set(&mut value, read_any_value(s).map(Some)),
        _ => s.i32().map(drop),
    })?;
    if seen.has(0) { Ok((key, value)) } else { Err(LeftToSerde) }
}

/// An `AnyValue`: the last of its fields that is not `null`, or none.
fn read_any_value<'a>(s: &mut Scanner<'a>) -> Read<ValueRef<'a>> {
    let mut read = ValueRef::Empty;
    fields(
        s,
        keys!["stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue", "bytesValue"],
        |s, field| {
            if s.null() {
                return Ok(());
            }
            read = match field {
                0 => ValueRef::Str(s.string()?),
                1 => ValueRef::Bool(s.bool()?),
                2 => ValueRef::Int(s.i64_or_string()?),
                3 => ValueRef::Double(s.f64()?),
                4 => ValueRef::Array(Cow::Owned(read_array(s)?)),
                5 => ValueRef::Kvlist(Cow::Owned(read_kvlist(s)?)),
                _ => ValueRef::Bytes(s.base64()?),
            };
            Ok(())
        },
    )?;
    Ok(read)
}

/// `{"values": [...]}`, `values` required as the reference requires it.
fn values<'a>(s: &mut Scanner<'a>, mut item: impl FnMut(&mut Scanner<'a>) -> Read<()>) -> Read<()> {
    let seen = fields(s, keys!["values"], |s, _| s.array(&mut item))?;
    if seen.has(0) { Ok(()) } else { Err(LeftToSerde) }
}

fn read_array(s: &mut Scanner<'_>) -> Read<ArrayValue> {
    let mut array = ArrayValue::default();
    values(s, |s| {
        array.values.push(AnyValue { value: read_any_value(s)?.into_owned() });
        Ok(())
    })?;
    Ok(array)
}

fn read_kvlist(s: &mut Scanner<'_>) -> Read<KeyValueList> {
    let mut list = KeyValueList::default();
    values(s, |s| {
        let (key, value) = key_and_value(s)?;
        let value = value.map(|v| AnyValue { value: v.into_owned() });
        list.values.push(KeyValue { key: key.to_owned(), value, ..KeyValue::default() });
        Ok(())
    })?;
    Ok(list)
}

#[cfg(test)]
mod tests;
