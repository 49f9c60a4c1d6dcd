//! Request bodies read under a size limit, and gzip inflated under the same
//! limit: a gzip bomb stops at the limit instead of filling memory. Both
//! land in buffers kept between requests ([`BodyBuffers`]).

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http_body_util::BodyExt;

use crate::error::IngestError;
use crate::ingest::Ingest;

/// Buffers kept for request bodies between requests. A body lives until
/// the WAL has copied it; a fresh buffer per request would be fresh pages
/// the kernel zeroes each time (7.5 % of the server's CPU under OTLP/JSON
/// load), a kept one is memory already mapped.
#[derive(Debug)]
pub(crate) struct BodyBuffers {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

/// Larger buffers go back to the allocator: one outsized request must not
/// pin its memory for good. Exporters' batches are well below.
const MAX_KEPT_BYTES: usize = 4 * 1024 * 1024;

impl BodyBuffers {
    /// Keeps at most `keep` buffers: about the requests handled at once.
    pub(crate) fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self { free: Mutex::new(Vec::new()), keep })
    }

    fn take(self: &Arc<Self>) -> PooledBuffer {
        let bytes = self.lock().pop().unwrap_or_default();
        PooledBuffer { bytes, pool: Arc::clone(self) }
    }

    fn put(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() == 0 || bytes.capacity() > MAX_KEPT_BYTES {
            return;
        }
        let mut free = self.lock();
        if free.len() < self.keep {
            bytes.clear();
            free.push(bytes);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A body's buffer, back to its pool when the last [`Bytes`] of it drops.
struct PooledBuffer {
    bytes: Vec<u8>,
    pool: Arc<BodyBuffers>,
}

impl PooledBuffer {
    fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.bytes));
    }
}

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    fn from_header(value: Option<&str>) -> Result<Self, IngestError> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Identity),
            Some(v) if v.eq_ignore_ascii_case("identity") => Ok(Self::Identity),
            Some(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => Ok(Self::Gzip),
            Some(other) => Err(IngestError::UnsupportedEncoding(other.to_owned())),
        }
    }
}

/// A request body as read, to be inflated (CPU work) on the blocking pool.
pub(crate) struct ReadBody {
    raw: Bytes,
    encoding: Encoding,
    limit: usize,
    buffers: Arc<BodyBuffers>,
}

impl ReadBody {
    pub(crate) fn inflate(self) -> Result<Bytes, IngestError> {
        decompress(self.raw, self.encoding, self.limit, &self.buffers)
    }
}

/// Reads a request's body under the receivers' size limit, compressed as
/// its `Content-Encoding` says.
pub(crate) async fn read(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<ReadBody, IngestError> {
    let encoding = Encoding::from_header(headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()))?;
    let limit = ingest.config().max_request_bytes;
    let buffers = Arc::clone(ingest.body_buffers());
    let raw = read_limited(body, limit, &buffers).await?;
    Ok(ReadBody { raw, encoding, limit, buffers })
}

/// Reads the whole body (chunked or not), refusing more than `limit` bytes.
async fn read_limited(mut body: Body, limit: usize, buffers: &Arc<BodyBuffers>) -> Result<Bytes, IngestError> {
    let too_large = || IngestError::TooLarge { limit, decompressed: false };
    // The length the sender declared, so the buffer grows once. A body
    // declared too large is still read up to the limit: answered before
    // that, a client still sending would meet a closed connection, not 413.
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut buffer = buffers.take();
    buffer.bytes.reserve(declared.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| IngestError::InvalidRequest(format!("reading the body failed: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buffer.bytes.len() + data.len() > limit {
            return Err(too_large());
        }
        buffer.bytes.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Inflates `raw` if it is compressed, to at most `limit` bytes.
fn decompress(raw: Bytes, encoding: Encoding, limit: usize, buffers: &Arc<BodyBuffers>) -> Result<Bytes, IngestError> {
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => {
            let mut out = buffers.take();
            out.bytes.reserve((raw.len() * 4).min(limit));
            MultiGzDecoder::new(raw.as_ref())
                .take(limit as u64 + 1)
                .read_to_end(&mut out.bytes)
                .map_err(|e| IngestError::InvalidRequest(format!("gzip body does not inflate: {e}")))?;
            if out.bytes.len() > limit {
                return Err(IngestError::TooLarge { limit, decompressed: true });
            }
            Ok(out.freeze())
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
        let buffers = BodyBuffers::new(4);
        let data = vec![b'a'; 1000];
        assert_eq!(decompress(gzip(&data), Encoding::Gzip, 1000, &buffers).unwrap(), data);
        let bomb = gzip(&vec![0u8; 10_000_000]);
        assert!(bomb.len() < 20_000);
        assert!(matches!(
            decompress(bomb, Encoding::Gzip, 1000, &buffers),
            Err(IngestError::TooLarge { decompressed: true, .. })
        ));
        assert!(matches!(
            decompress(Bytes::from_static(b"not gzip"), Encoding::Gzip, 1000, &buffers),
            Err(IngestError::InvalidRequest(_))
        ));
    }

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<_> = chunks.iter().map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))).collect();
        Body::from_stream(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn bodies_are_read_whole_and_refused_past_the_limit() {
        let buffers = BodyBuffers::new(4);
        let body = read_limited(chunked(&[b"abc", b"", b"def"]), 6, &buffers).await.unwrap();
        assert_eq!(body, Bytes::from_static(b"abcdef"));
        let over = read_limited(chunked(&[b"abc", b"defg"]), 6, &buffers).await;
        assert!(matches!(over, Err(IngestError::TooLarge { decompressed: false, .. })));
        let declared = read_limited(Body::from(vec![0u8; 7]), 6, &buffers).await;
        assert!(matches!(declared, Err(IngestError::TooLarge { decompressed: false, .. })));
    }

    #[tokio::test]
    async fn a_body_buffer_is_reused_once_its_bytes_are_dropped() {
        let buffers = BodyBuffers::new(1);
        let first = read_limited(Body::from(vec![1u8; 1000]), 10_000, &buffers).await.unwrap();
        let address = first.as_ptr();
        // Still held: the next body needs a buffer of its own.
        let second = read_limited(Body::from(vec![2u8; 1000]), 10_000, &buffers).await.unwrap();
        assert_ne!(second.as_ptr(), address);
        let copy = first.clone();
        drop(first);
        assert_eq!(buffers.lock().len(), 0, "a clone still holds the buffer");
        drop(copy);
        drop(second);
        assert_eq!(buffers.lock().len(), 1, "only `keep` buffers are kept");
        let third = read_limited(Body::from(vec![3u8; 900]), 10_000, &buffers).await.unwrap();
        assert_eq!(third, vec![3u8; 900]);
        assert_eq!(third.as_ptr(), address, "the kept buffer is the first body's");
        assert!(buffers.lock().is_empty());
        // Outsized buffers go back to the allocator.
        drop(third);
        let big =
            decompress(gzip(&vec![0u8; MAX_KEPT_BYTES + 1]), Encoding::Gzip, 2 * MAX_KEPT_BYTES, &buffers).unwrap();
        let kept = buffers.lock().len();
        drop(big);
        assert_eq!(buffers.lock().len(), kept);
    }

    #[test]
    fn encodings_are_read_from_the_header() {
        assert_eq!(Encoding::from_header(None).unwrap(), Encoding::Identity);
        assert_eq!(Encoding::from_header(Some("GZIP")).unwrap(), Encoding::Gzip);
        assert!(Encoding::from_header(Some("br")).is_err());
    }
}
