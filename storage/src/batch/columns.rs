//! Small column builders for the span schema's composite types: attribute
//! maps (with their type-tag maps), event lists and link lists. Each builds
//! the final Arrow array directly from offsets and child arrays.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, FixedSizeBinaryBuilder, Int64Builder, ListArray, MapArray, PrimitiveArray, StringBuilder,
    StringDictionaryBuilder, StructArray, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType};
use arrow::error::ArrowError;

use crate::attributes::{self, EncodedValue, ValueRef};
use crate::schema::{self, ColumnKind, Dedicated};

pub(crate) type LabelBuilder = StringDictionaryBuilder<Int32Type>;

/// One `Map<Utf8, Utf8>` column.
#[derive(Debug, Default)]
pub(crate) struct MapColumn {
    keys: StringBuilder,
    values: StringBuilder,
    offsets: Vec<i32>,
}

impl MapColumn {
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        self.keys.append_value(key);
        self.values.append_value(value);
    }

    pub(crate) fn finish_row(&mut self) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.offsets.push(self.keys.len() as i32);
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let offsets = std::mem::take(&mut self.offsets);
        let offsets = if offsets.is_empty() { OffsetBuffer::new_empty() } else { OffsetBuffer::new(offsets.into()) };
        let DataType::Struct(fields) = schema::attributes_entries_field().data_type().clone() else {
            unreachable!("attribute map entries are a struct")
        };
        let entries = StructArray::try_new(
            fields,
            vec![Arc::new(self.keys.finish()) as ArrayRef, Arc::new(self.values.finish())],
            None,
        )?;
        let map = MapArray::try_new(Arc::new(schema::attributes_entries_field()), offsets, entries, None, false)?;
        Ok(Arc::new(map))
    }
}

/// An attribute map and its type-tag map, appended together.
#[derive(Debug, Default)]
pub(crate) struct AttributeColumns {
    pub(crate) values: MapColumn,
    pub(crate) types: MapColumn,
}

impl AttributeColumns {
    pub(crate) fn push(&mut self, key: &str, value: &EncodedValue<'_>) {
        self.values.push(key, &value.text);
        if let Some(tag) = value.type_tag {
            self.types.push(key, tag);
        }
    }

    pub(crate) fn finish_row(&mut self) {
        self.values.finish_row();
        self.types.finish_row();
    }

    pub(crate) fn finish(&mut self) -> Result<[ArrayRef; 2], ArrowError> {
        Ok([self.values.finish()?, self.types.finish()?])
    }
}

/// The builder of one dedicated attribute column.
pub(crate) enum DedicatedColumn {
    Label(LabelBuilder),
    Text(StringBuilder),
    Int(Int64Builder),
}

/// A dedicated column's value, when the attribute has the column's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DedicatedValue<'a> {
    Str(&'a str),
    Int(i64),
}

impl std::fmt::Debug for DedicatedColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DedicatedColumn")
    }
}

impl DedicatedColumn {
    pub(crate) fn new(dedicated: &Dedicated) -> Self {
        match dedicated.kind {
            ColumnKind::Label => Self::Label(LabelBuilder::new()),
            ColumnKind::Text => Self::Text(StringBuilder::new()),
            ColumnKind::Int => Self::Int(Int64Builder::new()),
        }
    }

    pub(crate) fn append(&mut self, value: Option<&DedicatedValue<'_>>) {
        match (self, value) {
            (Self::Label(b), Some(DedicatedValue::Str(s))) => b.append_value(s),
            (Self::Text(b), Some(DedicatedValue::Str(s))) => b.append_value(s),
            (Self::Int(b), Some(DedicatedValue::Int(i))) => b.append_value(*i),
            (Self::Label(b), _) => b.append_null(),
            (Self::Text(b), _) => b.append_null(),
            (Self::Int(b), _) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Label(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
        }
    }
}

/// Timestamps in nanoseconds, UTC.
#[derive(Debug, Default)]
pub(crate) struct TimestampColumn(Vec<i64>);

impl TimestampColumn {
    pub(crate) fn push(&mut self, nanos: i64) {
        self.0.push(nanos);
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        let values = std::mem::take(&mut self.0);
        Arc::new(PrimitiveArray::<TimestampNanosecondType>::from(values).with_timezone("UTC"))
    }
}

/// Offsets of a list column: one entry per row.
#[derive(Debug, Default)]
pub(crate) struct ListOffsets(Vec<i32>);

impl ListOffsets {
    pub(crate) fn finish_row(&mut self, items_so_far: usize) {
        if self.0.is_empty() {
            self.0.push(0);
        }
        self.0.push(items_so_far as i32);
    }

    fn finish(&mut self, fields: arrow::datatypes::Fields, children: Vec<ArrayRef>) -> Result<ArrayRef, ArrowError> {
        let offsets = std::mem::take(&mut self.0);
        let offsets = if offsets.is_empty() { OffsetBuffer::new_empty() } else { OffsetBuffer::new(offsets.into()) };
        let items = StructArray::try_new(fields.clone(), children, None)?;
        let list = ListArray::try_new(Arc::new(schema::list_item_field(fields)), offsets, Arc::new(items), None)?;
        Ok(Arc::new(list))
    }
}

/// The `events` column: `List<Struct<time, name, attributes, attribute_types, dropped_attributes_count>>`.
#[derive(Debug, Default)]
pub(crate) struct EventColumns {
    time: TimestampColumn,
    name: StringBuilder,
    attributes: AttributeColumns,
    dropped_attributes_count: UInt32Builder,
    offsets: ListOffsets,
}

impl EventColumns {
    /// Appends one event; push its attributes to [`Self::attributes`] first.
    pub(crate) fn push(&mut self, time: i64, name: &str, dropped_attributes_count: u32) {
        self.time.push(time);
        self.name.append_value(name);
        self.attributes.finish_row();
        self.dropped_attributes_count.append_value(dropped_attributes_count);
    }

    pub(crate) fn attributes(&mut self) -> &mut AttributeColumns {
        &mut self.attributes
    }

    pub(crate) fn finish_row(&mut self) {
        self.offsets.finish_row(self.name.len());
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let [attributes, attribute_types] = self.attributes.finish()?;
        let children = vec![
            self.time.finish(),
            Arc::new(self.name.finish()) as ArrayRef,
            attributes,
            attribute_types,
            Arc::new(self.dropped_attributes_count.finish()),
        ];
        self.offsets.finish(schema::event_fields(), children)
    }
}

/// The `links` column: `List<Struct<trace_id, span_id, trace_state, flags, attributes, attribute_types, dropped_attributes_count>>`.
#[derive(Debug)]
pub(crate) struct LinkColumns {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    attributes: AttributeColumns,
    dropped_attributes_count: UInt32Builder,
    offsets: ListOffsets,
}

impl Default for LinkColumns {
    fn default() -> Self {
        Self {
            trace_id: FixedSizeBinaryBuilder::new(16),
            span_id: FixedSizeBinaryBuilder::new(8),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            attributes: AttributeColumns::default(),
            dropped_attributes_count: UInt32Builder::new(),
            offsets: ListOffsets::default(),
        }
    }
}

impl LinkColumns {
    /// Appends one link with validated ids; push its attributes to [`Self::attributes`] first.
    pub(crate) fn push(&mut self, trace_id: &[u8; 16], span_id: &[u8; 8], trace_state: &str, flags: u32, dropped: u32) {
        self.trace_id.append_value(trace_id).expect("16-byte trace id");
        self.span_id.append_value(span_id).expect("8-byte span id");
        append_optional_str(&mut self.trace_state, trace_state);
        self.flags.append_value(flags);
        self.attributes.finish_row();
        self.dropped_attributes_count.append_value(dropped);
    }

    pub(crate) fn attributes(&mut self) -> &mut AttributeColumns {
        &mut self.attributes
    }

    pub(crate) fn finish_row(&mut self) {
        self.offsets.finish_row(self.flags.len());
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let [attributes, attribute_types] = self.attributes.finish()?;
        let children = vec![
            Arc::new(self.trace_id.finish()) as ArrayRef,
            Arc::new(self.span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            attributes,
            attribute_types,
            Arc::new(self.dropped_attributes_count.finish()),
        ];
        self.offsets.finish(schema::link_fields(), children)
    }
}

/// Empty strings are stored as NULL: OTLP cannot tell them apart.
pub(crate) fn append_optional_str(builder: &mut StringBuilder, value: &str) {
    if value.is_empty() { builder.append_null() } else { builder.append_value(value) }
}

pub(crate) fn append_optional_label(builder: &mut LabelBuilder, value: &str) {
    if value.is_empty() { builder.append_null() } else { builder.append_value(value) }
}

/// Encodes an attribute value, cutting text beyond `max_bytes`. Returns
/// whether it was cut.
pub(crate) fn encode_limited<'a>(value: &ValueRef<'a>, max_bytes: usize) -> (EncodedValue<'a>, bool) {
    let mut encoded = attributes::encode_ref(value);
    if encoded.text.len() <= max_bytes {
        return (encoded, false);
    }
    // Only long strings, bytes, arrays and kvlists get here; a cut one no
    // longer parses as its type, so what is left is kept as a string.
    encoded.text = attributes::truncate(&encoded.text, max_bytes).to_owned().into();
    encoded.type_tag = None;
    (encoded, true)
}
