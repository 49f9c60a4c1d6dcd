//! Attribute values as text plus a type tag, and back.
//!
//! Attributes are stored as `Map<Utf8, Utf8>` so that SQL users can write
//! `span_attributes['http.target']`. String values are stored as they are and
//! have no type tag; every other value has an entry in the sibling
//! `*_attribute_types` map, so an int `5` and a string `"5"` stay apart and
//! OTLP round-trips losslessly:
//!
//! | OTLP value | text                         | type tag |
//! |------------|------------------------------|----------|
//! | string     | as is                        | (none)   |
//! | int        | decimal                      | `int`    |
//! | double     | shortest round-trip form     | `double` |
//! | bool       | `true` / `false`             | `bool`   |
//! | bytes      | base64                       | `bytes`  |
//! | array      | JSON array                   | `array`  |
//! | kvlist     | JSON object (order kept)     | `kvlist` |
//! | empty      | empty string                 | `empty`  |
//!
//! Inside arrays and kvlists: ints are JSON integers, doubles always carry a
//! fraction or exponent, bytes are `{"bytesValue": "<base64>"}`, empty values
//! are `null`.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

use crate::schema::value_type;

#[derive(Debug, Error)]
pub enum AttributeError {
    #[error("attribute {key:?} of type {tag:?} has an unreadable value {text:?}")]
    Unreadable { key: String, tag: String, text: String },
}

/// An attribute value encoded for storage.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedValue<'a> {
    pub text: Cow<'a, str>,
    pub type_tag: Option<&'static str>,
}

/// An OTLP attribute value borrowed from wherever it was read: a decoded
/// message or the request's wire bytes. Arrays and key-value lists, rare in
/// spans, are held decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueRef<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Cow<'a, ArrayValue>),
    Kvlist(Cow<'a, KeyValueList>),
    /// No value, or a string-table index: the profiles signal's, which the
    /// OTLP specification says to treat as absent elsewhere.
    Empty,
}

impl<'a> From<Option<&'a Value>> for ValueRef<'a> {
    fn from(value: Option<&'a Value>) -> Self {
        match value {
            Some(Value::StringValue(s)) => Self::Str(s),
            Some(Value::BoolValue(b)) => Self::Bool(*b),
            Some(Value::IntValue(i)) => Self::Int(*i),
            Some(Value::DoubleValue(d)) => Self::Double(*d),
            Some(Value::BytesValue(b)) => Self::Bytes(b),
            Some(Value::ArrayValue(a)) => Self::Array(Cow::Borrowed(a)),
            Some(Value::KvlistValue(kv)) => Self::Kvlist(Cow::Borrowed(kv)),
            None | Some(Value::StringValueStrindex(_)) => Self::Empty,
        }
    }
}

impl<'a> ValueRef<'a> {
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as prost holds it, to nest it in an array or key-value list.
    pub fn into_owned(self) -> Option<Value> {
        Some(match self {
            Self::Str(s) => Value::StringValue(s.to_owned()),
            Self::Bool(b) => Value::BoolValue(b),
            Self::Int(i) => Value::IntValue(i),
            Self::Double(d) => Value::DoubleValue(d),
            Self::Bytes(b) => Value::BytesValue(b.to_vec()),
            Self::Array(a) => Value::ArrayValue(a.into_owned()),
            Self::Kvlist(kv) => Value::KvlistValue(kv.into_owned()),
            Self::Empty => return None,
        })
    }
}

pub fn encode(value: Option<&Value>) -> EncodedValue<'_> {
    encode_ref(&ValueRef::from(value))
}

pub fn encode_ref<'a>(value: &ValueRef<'a>) -> EncodedValue<'a> {
    let (text, type_tag): (Cow<'_, str>, _) = match value {
        ValueRef::Str(s) => (Cow::Borrowed(*s), None),
        ValueRef::Int(i) => (i.to_string().into(), Some(value_type::INT)),
        ValueRef::Double(d) => (format_double(*d).into(), Some(value_type::DOUBLE)),
        ValueRef::Bool(b) => (Cow::Borrowed(if *b { "true" } else { "false" }), Some(value_type::BOOL)),
        ValueRef::Bytes(b) => (BASE64.encode(b).into(), Some(value_type::BYTES)),
        ValueRef::Array(a) => (array_to_json(a).to_string().into(), Some(value_type::ARRAY)),
        ValueRef::Kvlist(kv) => (kvlist_to_json(kv).to_string().into(), Some(value_type::KVLIST)),
        ValueRef::Empty => (Cow::Borrowed(""), Some(value_type::EMPTY)),
    };
    EncodedValue { text, type_tag }
}

pub fn decode(key: &str, text: &str, type_tag: Option<&str>) -> Result<Option<Value>, AttributeError> {
    let unreadable = || AttributeError::Unreadable {
        key: key.to_owned(),
        tag: type_tag.unwrap_or_default().to_owned(),
        text: text.chars().take(64).collect(),
    };
    let value = match type_tag {
        None => Value::StringValue(text.to_owned()),
        Some(value_type::INT) => Value::IntValue(text.parse().map_err(|_| unreadable())?),
        Some(value_type::DOUBLE) => Value::DoubleValue(text.parse().map_err(|_| unreadable())?),
        Some(value_type::BOOL) => Value::BoolValue(text.parse().map_err(|_| unreadable())?),
        Some(value_type::BYTES) => Value::BytesValue(BASE64.decode(text).map_err(|_| unreadable())?),
        Some(value_type::ARRAY) => match serde_json::from_str(text) {
            Ok(Json::Array(items)) => Value::ArrayValue(json_to_array(items)),
            _ => return Err(unreadable()),
        },
        Some(value_type::KVLIST) => match serde_json::from_str(text) {
            Ok(Json::Object(entries)) => Value::KvlistValue(json_to_kvlist(entries)),
            _ => return Err(unreadable()),
        },
        Some(value_type::EMPTY) => return Ok(None),
        Some(_) => return Err(unreadable()),
    };
    Ok(Some(value))
}

/// Debug formatting of f64 is the shortest text that parses back to the same
/// value, and always shows a fraction or an exponent (`1.0`, `1e300`, `NaN`).
fn format_double(d: f64) -> String {
    format!("{d:?}")
}

fn to_json(value: Option<&Value>) -> Json {
    match value {
        None | Some(Value::StringValueStrindex(_)) => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::IntValue(i)) => Json::Number((*i).into()),
        Some(Value::DoubleValue(d)) => {
            Number::from_f64(*d).map_or_else(|| Json::String(format_double(*d)), Json::Number)
        }
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::BytesValue(b)) => {
            let mut map = Map::new();
            map.insert("bytesValue".to_owned(), Json::String(BASE64.encode(b)));
            Json::Object(map)
        }
        Some(Value::ArrayValue(a)) => array_to_json(a),
        Some(Value::KvlistValue(kv)) => kvlist_to_json(kv),
    }
}

fn array_to_json(array: &ArrayValue) -> Json {
    Json::Array(array.values.iter().map(|v| to_json(v.value.as_ref())).collect())
}

fn kvlist_to_json(list: &KeyValueList) -> Json {
    let entries =
        list.values.iter().map(|kv| (kv.key.clone(), to_json(kv.value.as_ref().and_then(|v| v.value.as_ref()))));
    Json::Object(entries.collect())
}

fn from_json(json: Json) -> AnyValue {
    let value = match json {
        Json::Null => None,
        Json::String(s) => Some(Value::StringValue(s)),
        Json::Bool(b) => Some(Value::BoolValue(b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Some(Value::IntValue(i)),
            _ => n.as_f64().map(Value::DoubleValue),
        },
        Json::Array(items) => Some(Value::ArrayValue(json_to_array(items))),
        Json::Object(mut entries) => match entries.get("bytesValue") {
            Some(Json::String(b64)) if entries.len() == 1 => match BASE64.decode(b64) {
                Ok(bytes) => Some(Value::BytesValue(bytes)),
                Err(_) => entries.remove("bytesValue").map(|b| Value::StringValue(b.to_string())),
            },
            _ => Some(Value::KvlistValue(json_to_kvlist(entries))),
        },
    };
    AnyValue { value }
}

fn json_to_array(items: Vec<Json>) -> ArrayValue {
    ArrayValue { values: items.into_iter().map(from_json).collect() }
}

fn json_to_kvlist(entries: Map<String, Json>) -> KeyValueList {
    let values = entries
        .into_iter()
        .map(|(key, value)| KeyValue { key, value: Some(from_json(value)), ..Default::default() })
        .collect();
    KeyValueList { values }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
    }

    #[test]
    fn every_value_type_round_trips() {
        let values = vec![
            Value::StringValue("5".into()),
            Value::IntValue(5),
            Value::IntValue(i64::MIN),
            Value::DoubleValue(5.0),
            Value::DoubleValue(1e300),
            Value::DoubleValue(-0.1),
            Value::BoolValue(true),
            Value::BytesValue(vec![0, 1, 255]),
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue { value: Some(Value::StringValue("a".into())) },
                    AnyValue { value: Some(Value::IntValue(1)) },
                    AnyValue { value: Some(Value::DoubleValue(1.0)) },
                    AnyValue { value: Some(Value::BytesValue(vec![9])) },
                    AnyValue { value: None },
                ],
            }),
            Value::KvlistValue(KeyValueList {
                values: vec![kv("z", Value::BoolValue(false)), kv("a", Value::IntValue(-3))],
            }),
        ];
        for value in values {
            let encoded = encode(Some(&value));
            let decoded = decode("k", &encoded.text, encoded.type_tag).unwrap();
            assert_eq!(decoded, Some(value));
        }
        let empty = encode(None);
        assert_eq!(decode("k", &empty.text, empty.type_tag).unwrap(), None);
    }

    #[test]
    fn strings_have_no_type_tag_and_others_do() {
        assert_eq!(encode(Some(&Value::StringValue("x".into()))).type_tag, None);
        assert_eq!(encode(Some(&Value::IntValue(7))).text, "7");
        assert_eq!(encode(Some(&Value::IntValue(7))).type_tag, Some("int"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn unreadable_stored_values_are_errors_not_panics() {
        assert!(decode("k", "x", Some("int")).is_err());
        assert!(decode("k", "[", Some("array")).is_err());
        assert!(decode("k", "1", Some("nonsense")).is_err());
    }
}
