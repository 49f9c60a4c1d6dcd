//! Trace and span ids as users write them: lowercase or uppercase hex.
//! A 16-hex-digit trace id is a Zipkin 64-bit id, left-padded with zeros.

use thiserror::Error;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("trace id must be 32 hex characters (or 16 for a 64-bit id), got {0:?}")]
    TraceId(String),
    #[error("span id must be 16 hex characters, got {0:?}")]
    SpanId(String),
}

pub fn parse_trace_id(text: &str) -> Result<TraceId, IdError> {
    let invalid = || IdError::TraceId(text.to_owned());
    let mut id = [0u8; 16];
    match text.len() {
        32 => const_hex::decode_to_slice(text, &mut id).map_err(|_| invalid())?,
        16 => const_hex::decode_to_slice(text, &mut id[8..]).map_err(|_| invalid())?,
        _ => return Err(invalid()),
    }
    Ok(id)
}

pub fn parse_span_id(text: &str) -> Result<SpanId, IdError> {
    let mut id = [0u8; 8];
    if text.len() != 16 {
        return Err(IdError::SpanId(text.to_owned()));
    }
    const_hex::decode_to_slice(text, &mut id).map_err(|_| IdError::SpanId(text.to_owned()))?;
    Ok(id)
}

/// Parses an id of `len` bytes (16 for traces, 8 for spans).
pub fn parse_id(text: &str, len: usize) -> Result<Vec<u8>, IdError> {
    match len {
        16 => parse_trace_id(text).map(|id| id.to_vec()),
        _ => parse_span_id(text).map(|id| id.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_parse_in_any_case_and_short_ids_are_padded() {
        let upper = parse_trace_id("0AF7651916CD43DD8448EB211C80319C").unwrap();
        let lower = parse_trace_id("0af7651916cd43dd8448eb211c80319c").unwrap();
        assert_eq!(upper, lower);
        let short = parse_trace_id("8448eb211c80319c").unwrap();
        assert_eq!(&short[..8], &[0; 8]);
        assert_eq!(const_hex::encode(&short[8..]), "8448eb211c80319c");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "abc", "0af7651916cd43dd8448eb211c80319", "zzf7651916cd43dd8448eb211c80319c"] {
            assert!(parse_trace_id(bad).is_err(), "{bad}");
        }
        assert!(parse_span_id("00f067aa0ba902b").is_err());
        assert!(parse_span_id("00f067aa0ba902b7").is_ok());
    }
}
