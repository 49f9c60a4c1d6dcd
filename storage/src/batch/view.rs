//! OTLP resources, scopes and spans as the batch builder reads them: every
//! string and byte field borrowed, absent messages read as their defaults.
//! The wire reader fills them from a request's bytes; prost's structs
//! convert into them, so both go through the one builder.

use std::ops::Range;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::attributes::ValueRef;

/// One attribute as sent: the key uncut, the value borrowed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attr<'a> {
    pub key: &'a str,
    pub value: ValueRef<'a>,
}

impl<'a> From<&'a KeyValue> for Attr<'a> {
    fn from(kv: &'a KeyValue) -> Self {
        Self { key: &kv.key, value: ValueRef::from(kv.value.as_ref().and_then(|v| v.value.as_ref())) }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ResourceView<'a> {
    pub attributes: Vec<Attr<'a>>,
    pub dropped_attributes_count: u32,
}

impl<'a> ResourceView<'a> {
    pub(super) fn of(rs: &'a ResourceSpans) -> Self {
        let resource = rs.resource.as_ref();
        Self {
            attributes: resource.map(|r| r.attributes.iter().map(Attr::from).collect()).unwrap_or_default(),
            dropped_attributes_count: resource.map_or(0, |r| r.dropped_attributes_count),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct ScopeView<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub attributes: Vec<Attr<'a>>,
    pub dropped_attributes_count: u32,
}

impl<'a> ScopeView<'a> {
    pub(super) fn of(ss: &'a ScopeSpans) -> Self {
        let scope = ss.scope.as_ref();
        Self {
            name: scope.map_or("", |s| &s.name),
            version: scope.map_or("", |s| &s.version),
            attributes: scope.map(|s| s.attributes.iter().map(Attr::from).collect()).unwrap_or_default(),
            dropped_attributes_count: scope.map_or(0, |s| s.dropped_attributes_count),
        }
    }
}

/// A span, its status flattened in. One view is refilled for every span of
/// a request, so its lists keep their room.
#[derive(Debug, Default)]
pub(crate) struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub parent_span_id: &'a [u8],
    pub flags: u32,
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<Attr<'a>>,
    pub dropped_attributes_count: u32,
    pub events: Vec<EventView<'a>>,
    pub dropped_events_count: u32,
    pub links: Vec<LinkView<'a>>,
    pub dropped_links_count: u32,
    pub status_message: &'a str,
    pub status_code: i32,
    /// The attributes of the events and links, each a range of this list.
    pub item_attributes: Vec<Attr<'a>>,
}

#[derive(Debug, Default)]
pub(crate) struct EventView<'a> {
    pub time_unix_nano: u64,
    pub name: &'a str,
    pub attributes: Range<usize>,
    pub dropped_attributes_count: u32,
}

#[derive(Debug, Default)]
pub(crate) struct LinkView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub attributes: Range<usize>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

impl<'a> SpanView<'a> {
    /// Empties the view for the next span, keeping its lists' room.
    pub(super) fn clear(&mut self) {
        fn emptied<T>(list: &mut Vec<T>) -> Vec<T> {
            let mut list = std::mem::take(list);
            list.clear();
            list
        }
        *self = Self {
            attributes: emptied(&mut self.attributes),
            events: emptied(&mut self.events),
            links: emptied(&mut self.links),
            item_attributes: emptied(&mut self.item_attributes),
            ..Self::default()
        };
    }

    /// Appends attributes for an event or link; returns their range.
    fn push_item_attributes(&mut self, attributes: impl IntoIterator<Item = Attr<'a>>) -> Range<usize> {
        let start = self.item_attributes.len();
        self.item_attributes.extend(attributes);
        start..self.item_attributes.len()
    }

    pub(super) fn item_attributes(&self, range: &Range<usize>) -> &[Attr<'a>] {
        &self.item_attributes[range.clone()]
    }

    pub(super) fn fill_from(&mut self, span: &'a Span) {
        self.clear();
        let status = span.status.as_ref();
        self.trace_id = &span.trace_id;
        self.span_id = &span.span_id;
        self.trace_state = &span.trace_state;
        self.parent_span_id = &span.parent_span_id;
        self.flags = span.flags;
        self.name = &span.name;
        self.kind = span.kind;
        self.start_time_unix_nano = span.start_time_unix_nano;
        self.end_time_unix_nano = span.end_time_unix_nano;
        self.attributes.extend(span.attributes.iter().map(Attr::from));
        self.dropped_attributes_count = span.dropped_attributes_count;
        self.dropped_events_count = span.dropped_events_count;
        self.dropped_links_count = span.dropped_links_count;
        self.status_message = status.map_or("", |s| &s.message);
        self.status_code = status.map_or(0, |s| s.code);
        for event in &span.events {
            let attributes = self.push_item_attributes(event.attributes.iter().map(Attr::from));
            self.events.push(EventView {
                time_unix_nano: event.time_unix_nano,
                name: &event.name,
                attributes,
                dropped_attributes_count: event.dropped_attributes_count,
            });
        }
        for link in &span.links {
            let attributes = self.push_item_attributes(link.attributes.iter().map(Attr::from));
            self.links.push(LinkView {
                trace_id: &link.trace_id,
                span_id: &link.span_id,
                trace_state: &link.trace_state,
                attributes,
                dropped_attributes_count: link.dropped_attributes_count,
                flags: link.flags,
            });
        }
    }
}
