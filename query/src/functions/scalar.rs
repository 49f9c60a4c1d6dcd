//! The row-by-row functions: ids, durations and JSON.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionImplementation, ScalarUDF, Signature, SimpleScalarUDF, Volatility,
};

use crate::render;

pub(crate) const ID_FROM_HEX: &str = "id_from_hex";

pub(super) fn functions() -> Vec<ScalarUDF> {
    let udf = |name: &str, return_type: DataType, fun: ScalarFunctionImplementation| {
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            name,
            Signature::any(1, Volatility::Immutable),
            return_type,
            fun,
        ))
    };
    vec![
        ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            "span_key",
            Signature::any(2, Volatility::Immutable),
            DataType::Binary,
            Arc::new(span_key),
        )),
        udf("id_to_hex", DataType::Utf8, Arc::new(|args| per_array(args, id_to_hex))),
        udf(ID_FROM_HEX, DataType::Binary, Arc::new(|args| per_array(args, id_from_hex))),
        udf("duration_ms", DataType::Float64, Arc::new(|args| per_array(args, duration_ms))),
        udf("to_json", DataType::Utf8, Arc::new(|args| per_array(args, to_json))),
    ]
}

fn per_array(args: &[ColumnarValue], f: fn(&ArrayRef) -> Result<ArrayRef>) -> Result<ColumnarValue> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let out = f(&arrays[0])?;
    Ok(if scalar {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(out)
    })
}

fn id_to_hex(ids: &ArrayRef) -> Result<ArrayRef> {
    let binary = match ids.data_type() {
        DataType::Binary => Arc::clone(ids),
        DataType::FixedSizeBinary(_) | DataType::LargeBinary | DataType::BinaryView | DataType::Null => {
            cast(ids, &DataType::Binary)?
        }
        other => return exec_err!("id_to_hex takes an id (binary), not {other}"),
    };
    let hex: StringArray = binary.as_binary::<i32>().iter().map(|id| id.map(const_hex::encode)).collect();
    Ok(Arc::new(hex))
}

/// A span's place in its trace as one value, a trace id followed by a span
/// id (zeros for none: a root's parent), so "the parent of this span is one
/// of those" is a plain `IN` that DataFusion runs as a hash semi-join.
fn span_key(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let [traces, spans] = [&arrays[0], &arrays[1]].map(|ids| cast(ids, &DataType::Binary));
    let (traces, spans) = (traces?, spans?);
    let (traces, spans) = (traces.as_binary::<i32>(), spans.as_binary::<i32>());
    let mut keys = BinaryBuilder::with_capacity(traces.len(), traces.len() * 24);
    let mut key = Vec::with_capacity(24);
    for row in 0..traces.len() {
        if traces.is_null(row) {
            keys.append_null();
            continue;
        }
        key.clear();
        key.extend_from_slice(traces.value(row));
        match spans.is_null(row) || spans.value(row).is_empty() {
            true => key.extend_from_slice(&[0; 8]),
            false => key.extend_from_slice(spans.value(row)),
        }
        keys.append_value(&key);
    }
    let out: ArrayRef = Arc::new(keys.finish());
    Ok(if scalar {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(out)
    })
}

fn id_from_hex(text: &ArrayRef) -> Result<ArrayRef> {
    let text = cast(text, &DataType::Utf8)?;
    let ids = text
        .as_string::<i32>()
        .iter()
        .map(|hex| hex.map(|h| const_hex::decode(h.trim()).map_err(|e| format!("{h:?} is not hex: {e}"))).transpose())
        .collect::<Result<Vec<_>, _>>();
    match ids {
        Ok(ids) => Ok(Arc::new(BinaryArray::from_iter(ids))),
        Err(e) => exec_err!("id_from_hex: {e}"),
    }
}

fn duration_ms(nanos: &ArrayRef) -> Result<ArrayRef> {
    if !nanos.data_type().is_integer() && !nanos.data_type().is_null() {
        return exec_err!("duration_ms takes nanoseconds (an integer), not {}", nanos.data_type());
    }
    let nanos = cast(nanos, &DataType::Float64)?;
    let ms: Float64Array = nanos.as_primitive::<Float64Type>().unary(|ns| ns / 1e6);
    Ok(Arc::new(ms))
}

fn to_json(values: &ArrayRef) -> Result<ArrayRef> {
    let cells = render::column_cells(values)?;
    let text: StringArray =
        cells.iter().enumerate().map(|(row, cell)| (!values.is_null(row)).then(|| cell.to_string())).collect();
    Ok(Arc::new(text))
}

#[cfg(test)]
mod tests {
    use arrow::array::{FixedSizeBinaryArray, Int64Array, MapBuilder, StringBuilder};

    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let ids: ArrayRef = Arc::new(FixedSizeBinaryArray::try_from_iter([[0x0a_u8, 0xf7, 0, 1]].into_iter()).unwrap());
        let hex = id_to_hex(&ids).unwrap();
        assert_eq!(hex.as_string::<i32>().value(0), "0af70001");
        let back = id_from_hex(&hex).unwrap();
        assert_eq!(back.as_binary::<i32>().value(0), [0x0a, 0xf7, 0, 1]);
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["xyz"]));
        assert!(id_from_hex(&bad).unwrap_err().to_string().contains("\"xyz\" is not hex"));
    }

    #[test]
    fn span_keys_join_a_trace_and_a_span_with_zeros_for_no_parent() {
        let traces: ArrayRef =
            Arc::new(FixedSizeBinaryArray::try_from_iter([[1_u8; 16], [2; 16]].into_iter()).unwrap());
        let spans: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size([Some([3_u8; 8]), None].into_iter(), 8).unwrap(),
        );
        let ColumnarValue::Array(keys) =
            span_key(&[ColumnarValue::Array(traces), ColumnarValue::Array(spans)]).unwrap()
        else {
            panic!("an array in, an array out")
        };
        let keys = keys.as_binary::<i32>();
        assert_eq!(keys.value(0), [[1_u8; 16].as_slice(), &[3; 8]].concat());
        assert_eq!(keys.value(1), [[2_u8; 16].as_slice(), &[0; 8]].concat());
    }

    #[test]
    fn durations_and_json() {
        let ns: ArrayRef = Arc::new(Int64Array::from(vec![Some(1_500_000), None]));
        let ms = duration_ms(&ns).unwrap();
        assert_eq!(ms.as_primitive::<Float64Type>().value(0), 1.5);
        assert!(ms.is_null(1));

        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        map.keys().append_value("http.route");
        map.values().append_value("/a\"b");
        map.append(true).unwrap();
        map.append(false).unwrap();
        let maps: ArrayRef = Arc::new(map.finish());
        let json = to_json(&maps).unwrap();
        assert_eq!(json.as_string::<i32>().value(0), r#"{"http.route":"/a\"b"}"#);
        assert!(json.is_null(1));
    }
}
