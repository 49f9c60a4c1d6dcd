//! Query results as JSON, CSV and aligned text.
//!
//! One renderer for every surface: binary values (the ids) as lowercase hex,
//! dictionaries as their values, maps as JSON objects, lists as arrays,
//! timestamps as RFC 3339. JSON keeps numbers and booleans typed; CSV and
//! text show everything as text, nested values as compact JSON.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::sql::QueryResult;

/// The JSON shape of a result: `{"columns":[{"name","type"}],"rows":[[...]]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonResult {
    pub columns: Vec<JsonColumn>,
    pub rows: Vec<Vec<Json>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl JsonResult {
    pub fn from_result(result: &QueryResult) -> Result<Self, ArrowError> {
        let columns = result
            .schema
            .fields()
            .iter()
            .map(|f| JsonColumn { name: f.name().clone(), data_type: type_name(f.data_type()) })
            .collect();
        let mut rows = Vec::with_capacity(result.num_rows());
        for batch in &result.batches {
            let cells = batch_cells(batch)?;
            rows.extend((0..batch.num_rows()).map(|row| cells.iter().map(|c| c[row].clone()).collect()));
        }
        Ok(Self { columns, rows })
    }

    /// CSV with a header row.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(self.columns.iter().map(|c| &c.name))?;
        for row in &self.rows {
            writer.write_record(row.iter().map(cell_text))?;
        }
        writer.into_inner().map_err(|e| e.into_error().into())
    }

    /// An aligned text table, as a terminal shows it.
    pub fn to_table(&self) -> String {
        let header: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        let body: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(cell_text).collect()).collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| body.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule = format!("+{}+\n", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
        let mut out = rule.clone();
        out.push_str(&line(&header));
        out.push_str(&rule);
        for row in &body {
            out.push_str(&line(row));
        }
        out.push_str(&rule);
        let n = body.len();
        out.push_str(&format!("{n} row{}\n", if n == 1 { "" } else { "s" }));
        out
    }
}

/// The type as users read it: dictionaries show their value type.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Dictionary(_, value) => type_name(value),
        other => other.to_string(),
    }
}

/// A cell as text: strings bare, NULL empty, everything else as JSON.
pub fn cell_text(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every column of a batch as JSON cells.
fn batch_cells(batch: &RecordBatch) -> Result<Vec<Vec<Json>>, ArrowError> {
    batch.columns().iter().map(column_cells).collect()
}

pub(crate) fn column_cells(array: &ArrayRef) -> Result<Vec<Json>, ArrowError> {
    let array = match array.data_type() {
        DataType::Dictionary(_, value) => cast(array, value)?,
        DataType::Utf8View | DataType::LargeUtf8 => cast(array, &DataType::Utf8)?,
        DataType::BinaryView | DataType::LargeBinary => cast(array, &DataType::Binary)?,
        _ => array.clone(),
    };
    let formatter = ArrayFormatter::try_new(&array, &FormatOptions::default())?;
    (0..array.len())
        .map(|row| if array.is_null(row) { Ok(Json::Null) } else { cell(&array, &formatter, row) })
        .collect()
}

fn cell(array: &ArrayRef, formatter: &ArrayFormatter<'_>, row: usize) -> Result<Json, ArrowError> {
    macro_rules! number {
        ($t:ty) => {
            Json::from(array.as_primitive::<$t>().value(row))
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => Json::Bool(array.as_boolean().value(row)),
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Json::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::FixedSizeBinary(_) => Json::String(const_hex::encode(array.as_fixed_size_binary().value(row))),
        DataType::Binary => Json::String(const_hex::encode(array.as_binary::<i32>().value(row))),
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let keys = column_cells(entries.column(0))?;
            let values = column_cells(entries.column(1))?;
            Json::Object(keys.into_iter().map(|k| cell_text(&k)).zip(values).collect::<Map<_, _>>())
        }
        DataType::List(_) => Json::Array(column_cells(&array.as_list::<i32>().value(row))?),
        DataType::LargeList(_) => Json::Array(column_cells(&array.as_list::<i64>().value(row))?),
        DataType::Struct(fields) => {
            let strukt = array.as_struct();
            let mut object = Map::new();
            for (field, column) in fields.iter().zip(strukt.columns()) {
                let value = column_cells(&column.slice(row, 1))?.pop().unwrap_or(Json::Null);
                object.insert(field.name().clone(), value);
            }
            Json::Object(object)
        }
        _ => Json::String(formatter.value(row).to_string()),
    })
}

/// Non-finite floats have no JSON number: they become strings.
fn float(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or_else(|| Json::String(value.to_string()), Json::Number)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{FixedSizeBinaryArray, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn result() -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("trace_id", DataType::FixedSizeBinary(2), false),
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(FixedSizeBinaryArray::try_from_iter([[0xab, 0x01], [0, 0xff]].into_iter()).unwrap()),
                Arc::new(StringArray::from(vec![Some("a,b"), None])),
                Arc::new(Int64Array::from(vec![1, 22])),
            ],
        )
        .unwrap();
        QueryResult { schema, batches: vec![batch] }
    }

    #[test]
    fn ids_are_hex_numbers_stay_numbers() {
        let json = JsonResult::from_result(&result()).unwrap();
        assert_eq!(json.rows[0], vec![Json::from("ab01"), Json::from("a,b"), Json::from(1)]);
        assert_eq!(json.rows[1][1], Json::Null);
        assert_eq!(json.columns[0].data_type, "FixedSizeBinary(2)");
    }

    #[test]
    fn csv_quotes_and_table_aligns() {
        let json = JsonResult::from_result(&result()).unwrap();
        let csv = String::from_utf8(json.to_csv().unwrap()).unwrap();
        assert_eq!(csv, "trace_id,name,n\nab01,\"a,b\",1\n00ff,,22\n");
        let table = json.to_table();
        assert!(table.contains("| ab01     | a,b  | 1  |"), "{table}");
        assert!(table.ends_with("2 rows\n"));
    }
}
