//! Trace ids as the API writes them: 32 lower-case hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A 128-bit trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

#[derive(Debug, Error)]
#[error("expected a trace id of 32 hex digits (or 16 for a 64-bit id), got {0:?}")]
pub struct InvalidTraceId(String);

impl FromStr for TraceId {
    type Err = InvalidTraceId;

    /// 32 hex digits, or 16 for a 64-bit id (Zipkin's and Jaeger's older
    /// ids), which fill the low half.
    fn from_str(text: &str) -> Result<Self, InvalidTraceId> {
        let invalid = || InvalidTraceId(text.to_owned());
        let mut id = [0u8; 16];
        match text.len() {
            32 => const_hex::decode_to_slice(text, &mut id).map_err(|_| invalid())?,
            16 => const_hex::decode_to_slice(text, &mut id[8..]).map_err(|_| invalid())?,
            _ => return Err(invalid()),
        }
        Ok(Self(id))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&const_hex::encode(self.0))
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_write_as_hex() {
        let id: TraceId = "0102030405060708090a0b0c0d0e0f10".parse().unwrap();
        assert_eq!(id.0[0], 1);
        assert_eq!(id.to_string(), "0102030405060708090a0b0c0d0e0f10");
        let short: TraceId = "090A0B0C0D0E0F10".parse().unwrap();
        assert_eq!(short.to_string(), "0000000000000000090a0b0c0d0e0f10");
        assert!("xyz".parse::<TraceId>().is_err());
        assert!("0102030405060708090a0b0c0d0e0fzz".parse::<TraceId>().is_err());
    }
}
