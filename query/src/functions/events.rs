//! Questions about a span's events and links, which DataFusion cannot
//! reach into by field:
//!
//! - `span_has_event(events, name)`: whether a span has an event (a Zipkin
//!   annotation) called `name`, for Zipkin's `annotationQuery`;
//! - `nested_attribute_is(events_or_links, key, value)`: whether one of
//!   them has the attribute `key` set to `value` (set at all when `value`
//!   is NULL), for Jaeger's search, whose tags match log (event) and link
//!   attributes too;
//! - `nested_id_is(links, 'span_id', id)`: whether one of a span's links
//!   points at that span (or, with `'trace_id'`, trace), for TraceQL's
//!   `link:spanID` and `link:traceID`;
//! - `event_offsets(events, start_time)`: each event's time since the
//!   span's start in nanoseconds, for TraceQL's `event:timeSinceStart`;
//! - `event_attribute_sum(events, key, where_key, where_value)`: an integer
//!   attribute summed over the events that match, for gRPC message sizes.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Builder, ListBuilder, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, TimestampNanosecondType};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use spanlake_storage::schema;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct SpanHasEvent {
    signature: Signature,
}

impl Default for SpanHasEvent {
    fn default() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for SpanHasEvent {
    fn name(&self) -> &str {
        "span_has_event"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        nested_list_first(self.name(), "events", schema::nested::NAME, &args[0])?;
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let events = arrays[0].as_list::<i32>();
        let wanted = cast(&arrays[1], &DataType::Utf8)?;
        let wanted = wanted.as_string::<i32>();
        let Some(names) = events.values().as_struct().column_by_name(schema::nested::NAME) else {
            return exec_err!("span_has_event: events have no name");
        };
        let names = cast(names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let offsets = events.value_offsets();
        let found: BooleanArray = (0..events.len())
            .map(|row| {
                if events.is_null(row) || wanted.is_null(row) {
                    return None;
                }
                let range = offsets[row] as usize..offsets[row + 1] as usize;
                Some(range.into_iter().any(|i| names.value(i) == wanted.value(row)))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(found)))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct NestedAttributeIs {
    signature: Signature,
}

impl Default for NestedAttributeIs {
    fn default() -> Self {
        Self { signature: Signature::any(3, Volatility::Immutable) }
    }
}

/// Checks that a function's first argument is a list of structs with
/// `field` (events or links, as `what` names them).
fn nested_list_first(function: &str, what: &str, field: &str, first: &DataType) -> Result<()> {
    match first {
        DataType::List(item) if matches!(item.data_type(), DataType::Struct(f) if f.find(field).is_some()) => Ok(()),
        other => exec_err!("{function} takes the {what} column first, not {other}"),
    }
}

fn utf8(array: &ArrayRef) -> Result<StringArray> {
    Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
}

impl ScalarUDFImpl for NestedAttributeIs {
    fn name(&self) -> &str {
        "nested_attribute_is"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        nested_list_first(self.name(), "events or links", schema::nested::ATTRIBUTES, &args[0])?;
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let list = arrays[0].as_list::<i32>();
        let (keys, values) = (utf8(&arrays[1])?, utf8(&arrays[2])?);
        let Some(maps) = list.values().as_struct().column_by_name(schema::nested::ATTRIBUTES) else {
            return exec_err!("nested_attribute_is: no attributes");
        };
        let maps = maps.as_map();
        let (map_keys, map_values) = (utf8(maps.keys())?, utf8(maps.values())?);
        let (list_offsets, map_offsets) = (list.value_offsets(), maps.value_offsets());
        let found: BooleanArray = (0..list.len())
            .map(|row| {
                if list.is_null(row) || keys.is_null(row) {
                    return None;
                }
                let (key, value) = (keys.value(row), (!values.is_null(row)).then(|| values.value(row)));
                let items = list_offsets[row] as usize..list_offsets[row + 1] as usize;
                Some(items.into_iter().any(|item| {
                    let entries = map_offsets[item] as usize..map_offsets[item + 1] as usize;
                    entries.into_iter().any(|e| {
                        map_keys.value(e) == key
                            && value.is_none_or(|v| !map_values.is_null(e) && map_values.value(e) == v)
                    })
                }))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(found)))
    }
}

/// `event_attribute_sum(events, key, where_key, where_value)`: the sum of
/// the integer attribute `key` over a span's events whose `where_key` is
/// `where_value`, NULL when none has it: gRPC's message sizes, recorded on
/// `message` events (`rpc.message.uncompressed_size` where
/// `rpc.message.type` is `SENT` or `RECEIVED`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct EventAttributeSum {
    signature: Signature,
}

impl Default for EventAttributeSum {
    fn default() -> Self {
        Self { signature: Signature::any(4, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for EventAttributeSum {
    fn name(&self) -> &str {
        "event_attribute_sum"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        nested_list_first(self.name(), "events", schema::nested::ATTRIBUTES, &args[0])?;
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let list = arrays[0].as_list::<i32>();
        let (keys, where_keys, where_values) = (utf8(&arrays[1])?, utf8(&arrays[2])?, utf8(&arrays[3])?);
        let Some(maps) = list.values().as_struct().column_by_name(schema::nested::ATTRIBUTES) else {
            return exec_err!("event_attribute_sum: no attributes");
        };
        let maps = maps.as_map();
        let (map_keys, map_values) = (utf8(maps.keys())?, utf8(maps.values())?);
        let (list_offsets, map_offsets) = (list.value_offsets(), maps.value_offsets());
        let value_of = |item: usize, key: &str| {
            (map_offsets[item] as usize..map_offsets[item + 1] as usize)
                .find(|&e| map_keys.value(e) == key && !map_values.is_null(e))
                .map(|e| map_values.value(e))
        };
        let mut sums = Int64Builder::with_capacity(list.len());
        for row in 0..list.len() {
            if list.is_null(row) || keys.is_null(row) || where_keys.is_null(row) || where_values.is_null(row) {
                sums.append_null();
                continue;
            }
            let (key, where_key, where_value) = (keys.value(row), where_keys.value(row), where_values.value(row));
            let sum = (list_offsets[row] as usize..list_offsets[row + 1] as usize)
                .filter(|&item| value_of(item, where_key) == Some(where_value))
                .filter_map(|item| value_of(item, key).and_then(|v| v.parse::<i64>().ok()))
                .reduce(i64::saturating_add);
            sums.append_option(sum);
        }
        Ok(ColumnarValue::Array(Arc::new(sums.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct NestedIdIs {
    signature: Signature,
}

impl Default for NestedIdIs {
    fn default() -> Self {
        Self { signature: Signature::any(3, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for NestedIdIs {
    fn name(&self) -> &str {
        "nested_id_is"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        nested_list_first(self.name(), "links", schema::nested::SPAN_ID, &args[0])?;
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let list = arrays[0].as_list::<i32>();
        let fields = utf8(&arrays[1])?;
        let wanted = cast(&arrays[2], &DataType::Binary)?;
        let wanted = wanted.as_binary::<i32>();
        let links = list.values().as_struct();
        let offsets = list.value_offsets();
        let mut columns = std::collections::HashMap::new();
        let mut found = BooleanArray::builder(list.len());
        for row in 0..list.len() {
            if list.is_null(row) || fields.is_null(row) || wanted.is_null(row) {
                found.append_null();
                continue;
            }
            let field = fields.value(row);
            if !columns.contains_key(field) {
                let Some(ids) = links.column_by_name(field) else {
                    return exec_err!("nested_id_is: links have no {field}");
                };
                columns.insert(field.to_owned(), cast(ids, &DataType::Binary)?);
            }
            let ids = columns[field].as_binary::<i32>();
            let items = offsets[row] as usize..offsets[row + 1] as usize;
            found.append_value(items.into_iter().any(|i| !ids.is_null(i) && ids.value(i) == wanted.value(row)));
        }
        Ok(ColumnarValue::Array(Arc::new(found.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct EventOffsets {
    signature: Signature,
}

impl Default for EventOffsets {
    fn default() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for EventOffsets {
    fn name(&self) -> &str {
        "event_offsets"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        nested_list_first(self.name(), "events", schema::nested::TIME, &args[0])?;
        Ok(DataType::new_list(DataType::Int64, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let list = arrays[0].as_list::<i32>();
        let Some(times) = list.values().as_struct().column_by_name(schema::nested::TIME) else {
            return exec_err!("event_offsets: events have no time");
        };
        let time_type = DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None);
        let times = cast(times, &time_type)?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        let starts = cast(&arrays[1], &time_type)?;
        let starts = starts.as_primitive::<TimestampNanosecondType>();
        let offsets = list.value_offsets();
        let mut out = ListBuilder::new(Int64Builder::new()).with_field(Field::new_list_field(DataType::Int64, true));
        for row in 0..list.len() {
            if list.is_null(row) || starts.is_null(row) {
                out.append_null();
                continue;
            }
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                out.values()
                    .append_option((!times.is_null(i)).then(|| times.value(i).saturating_sub(starts.value(row))));
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
