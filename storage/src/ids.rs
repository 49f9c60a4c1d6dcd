//! Trace and span ids: bytes everywhere, hex only at the edges. Users write
//! them in lowercase or uppercase hex; a 16-hex-digit trace id is a Zipkin
//! 64-bit id, left-padded with zeros.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("trace id must be 32 hex characters (or 16 for a 64-bit id), got {0:?}")]
    TraceId(String),
    #[error("span id must be 16 hex characters, got {0:?}")]
    SpanId(String),
}

/// A 16-byte trace id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl SpanId {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl FromStr for TraceId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        let invalid = || IdError::TraceId(text.to_owned());
        let mut id = [0u8; 16];
        match text.len() {
            32 => const_hex::decode_to_slice(text, &mut id).map_err(|_| invalid())?,
            16 => const_hex::decode_to_slice(text, &mut id[8..]).map_err(|_| invalid())?,
            _ => return Err(invalid()),
        }
        Ok(Self(id))
    }
}

impl FromStr for SpanId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        let mut id = [0u8; 8];
        if text.len() != 16 {
            return Err(IdError::SpanId(text.to_owned()));
        }
        const_hex::decode_to_slice(text, &mut id).map_err(|_| IdError::SpanId(text.to_owned()))?;
        Ok(Self(id))
    }
}

macro_rules! hex_edges {
    ($id:ty) => {
        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&const_hex::encode(self.0))
            }
        }

        impl fmt::Debug for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl Serialize for $id {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $id {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_edges!(TraceId);
hex_edges!(SpanId);

/// Parses an id of `len` bytes (16 for traces, 8 for spans), for SQL
/// literals compared with id columns.
pub fn parse_id(text: &str, len: usize) -> Result<Vec<u8>, IdError> {
    match len {
        16 => text.parse::<TraceId>().map(|id| id.0.to_vec()),
        _ => text.parse::<SpanId>().map(|id| id.0.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_in_any_case_and_short_ids_are_padded() {
        let upper: TraceId = "0AF7651916CD43DD8448EB211C80319C".parse().unwrap();
        let lower: TraceId = "0af7651916cd43dd8448eb211c80319c".parse().unwrap();
        assert_eq!(upper, lower);
        assert_eq!(upper.to_string(), "0af7651916cd43dd8448eb211c80319c");
        let short: TraceId = "8448eb211c80319c".parse().unwrap();
        assert_eq!(&short.0[..8], &[0; 8]);
        assert_eq!(short.to_string(), "00000000000000008448eb211c80319c");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "abc", "0af7651916cd43dd8448eb211c80319", "zzf7651916cd43dd8448eb211c80319c"] {
            assert!(bad.parse::<TraceId>().is_err(), "{bad}");
        }
        assert!("00f067aa0ba902b".parse::<SpanId>().is_err());
        assert_eq!("00F067AA0BA902B7".parse::<SpanId>().unwrap().to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn ids_are_hex_strings_in_json() {
        let id: TraceId = serde_json::from_str("\"4bf92f3577b34da6a3ce929d0e0e4736\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"4bf92f3577b34da6a3ce929d0e0e4736\"");
        assert!(serde_json::from_str::<SpanId>("\"xyz\"").is_err());
    }
}
