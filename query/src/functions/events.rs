//! `span_has_event(events, name)`: whether a span has an event (a Zipkin
//! annotation) called `name`. DataFusion cannot reach into a list of structs
//! by field, and Zipkin's `annotationQuery` needs this.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
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
