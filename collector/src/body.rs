//! Request bodies read under a size limit, and gzip inflated under the same
//! limit: a gzip bomb stops at the limit instead of filling memory.

use std::io::Read;

use axum::body::Body;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::IngestError;

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub(crate) fn from_header(value: Option<&str>) -> Result<Self, IngestError> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Identity),
            Some(v) if v.eq_ignore_ascii_case("identity") => Ok(Self::Identity),
            Some(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => Ok(Self::Gzip),
            Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
        }
    }
}

/// Reads the whole body (chunked or not), refusing more than `limit` bytes.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(IngestError::TooLarge { limit, decompressed: false })
        }
        Err(e) => Err(IngestError::InvalidRequest(format!("reading the body failed: {e}"))),
    }
}

/// Inflates `raw` if it is compressed, to at most `limit` bytes.
pub(crate) fn decompress(raw: Bytes, encoding: Encoding, limit: usize) -> Result<Bytes, IngestError> {
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity((raw.len() * 4).min(limit));
            MultiGzDecoder::new(raw.as_ref())
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| IngestError::InvalidRequest(format!("gzip body does not inflate: {e}")))?;
            if out.len() > limit {
                return Err(IngestError::TooLarge { limit, decompressed: true });
            }
            Ok(out.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap().into()
    }

    #[test]
    fn gzip_inflates_up_to_the_limit_and_no_further() {
        let data = vec![b'a'; 1000];
        assert_eq!(decompress(gzip(&data), Encoding::Gzip, 1000).unwrap().len(), 1000);
        let bomb = gzip(&vec![0u8; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            decompress(bomb, Encoding::Gzip, 1000),
            Err(IngestError::TooLarge { decompressed: true, .. })
        ));
        assert!(matches!(
            decompress(Bytes::from_static(b"not gzip"), Encoding::Gzip, 1000),
            Err(IngestError::InvalidRequest(_))
        ));
    }

    #[test]
    fn encodings_are_read_from_the_header() {
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Identity);
        assert_eq!(Encoding::from_header(Some("GZIP")).unwrap(), Encoding::Gzip);
        assert!(Encoding::from_header(Some("br")).is_err());
    }
}
