//! Questions about a span's events and links, which DataFusion cannot
//! reach into by field:
//!
//! - `span_has_event(events, name)`: whether a span has an event (a Zipkin
//!   annotation) called `name`, for Zipkin's `annotationQuery`;
//! - `nested_attribute_is(events_or_links, key, value)`: whether one of
//!   them has the attribute `key` set to `value` (set at all when `value`
//!   is NULL), for Jaeger's search, whose tags match log (event) and link
//!   attributes too.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
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
        match &args[0] {
            DataType::List(item) if matches!(item.data_type(), DataType::Struct(f) if f.find(schema::nested::NAME).is_some()) => {
                Ok(DataType::Boolean)
            }
            other => exec_err!("span_has_event takes the events column first, not {other}"),
        }
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
        match &args[0] {
            DataType::List(item) if matches!(item.data_type(), DataType::Struct(f) if f.find(schema::nested::ATTRIBUTES).is_some()) => {
                Ok(DataType::Boolean)
            }
            other => exec_err!("nested_attribute_is takes the events or links column first, not {other}"),
        }
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
