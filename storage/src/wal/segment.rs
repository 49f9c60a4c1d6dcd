//! The on-disk format of WAL segments.
//!
//! ```text
//! segment  = header record*
//! header   = "SPLKWAL\0" (8 bytes) | format version u32 LE | reserved u32
//! record   = payload length u32 LE | CRC32 of payload u32 LE | payload
//! payload  = sequence u64 LE | tenant length u8 | tenant | body format u8 | body
//! body     = OTLP ExportTraceServiceRequest as received: protobuf (format 0) or JSON (1)
//! ```
//!
//! Version 1 segments (written before OTLP/JSON was logged as received)
//! have no body format byte: their bodies are protobuf. They are still read.
//!
//! A record is valid only if its length is plausible and its CRC matches;
//! reading stops at the first invalid one (a torn write at the tail, or
//! damage), and reports how many bytes it could not read.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::export::ExportBody;
use crate::paths::TenantId;

pub(crate) const MAGIC: &[u8; 8] = b"SPLKWAL\0";
pub(crate) const FORMAT_VERSION: u32 = 2;
/// Records without a body format byte: protobuf bodies.
const PROTOBUF_ONLY_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
/// Larger than any request spanlake accepts; a larger length is damage.
pub(crate) const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("not a WAL segment (bad magic)")]
    BadMagic,
    #[error("WAL format version {0} is newer than this spanlake understands ({FORMAT_VERSION})")]
    UnknownVersion(u32),
    #[error("segment shorter than its header")]
    Truncated,
}

/// One logged export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub tenant: TenantId,
    pub body: ExportBody,
}

pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Appends one framed record to `out`.
pub(crate) fn encode_record(seq: u64, tenant: &TenantId, body: &ExportBody, out: &mut BytesMut) {
    let tenant = tenant.as_str().as_bytes();
    let payload_len = 8 + 1 + tenant.len() + 1 + body.bytes().len();
    out.reserve(RECORD_HEADER_LEN + payload_len);
    let start = out.len();
    out.put_u32_le(payload_len as u32);
    out.put_u32_le(0); // CRC, filled in below
    out.put_u64_le(seq);
    out.put_u8(tenant.len() as u8);
    out.put_slice(tenant);
    out.put_u8(body.format_tag());
    out.put_slice(body.bytes());
    let crc = crc32fast::hash(&out[start + RECORD_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What reading a segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentContents {
    pub records: Vec<Record>,
    /// Length of the valid prefix: header and whole, intact records.
    pub valid_len: usize,
    /// Bytes after the valid prefix that could not be read.
    pub damaged_bytes: usize,
    /// Why reading stopped early, if it did.
    pub damage: Option<String>,
}

/// Reads every intact record of a segment; never panics on any input.
pub fn read_segment(data: &[u8]) -> Result<SegmentContents, SegmentError> {
    if data.len() < HEADER_LEN {
        return Err(SegmentError::Truncated);
    }
    if &data[..8] != MAGIC {
        return Err(SegmentError::BadMagic);
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if !(PROTOBUF_ONLY_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(SegmentError::UnknownVersion(version));
    }
    let mut contents = SegmentContents { valid_len: HEADER_LEN, ..Default::default() };
    let mut rest = &data[HEADER_LEN..];
    while !rest.is_empty() {
        match read_record(rest, version) {
            Ok((record, used)) => {
                contents.records.push(record);
                contents.valid_len += used;
                rest = &rest[used..];
            }
            Err(why) => {
                contents.damaged_bytes = rest.len();
                contents.damage = Some(why);
                break;
            }
        }
    }
    Ok(contents)
}

fn read_record(data: &[u8], version: u32) -> Result<(Record, usize), String> {
    if data.len() < RECORD_HEADER_LEN {
        return Err(format!("torn record header ({} bytes)", data.len()));
    }
    let mut header = &data[..RECORD_HEADER_LEN];
    let len = header.get_u32_le() as usize;
    let crc = header.get_u32_le();
    if !(9..=MAX_PAYLOAD).contains(&len) {
        return Err(format!("implausible record length {len}"));
    }
    let Some(payload) = data.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Err(format!("torn record: {len} bytes announced, {} present", data.len() - RECORD_HEADER_LEN));
    };
    if crc32fast::hash(payload) != crc {
        return Err("record CRC mismatch".into());
    }
    let mut p = payload;
    let seq = p.get_u64_le();
    let tenant_len = p.get_u8() as usize;
    if p.len() < tenant_len {
        return Err("record tenant longer than the record".into());
    }
    let tenant = std::str::from_utf8(&p[..tenant_len])
        .ok()
        .and_then(|t| TenantId::new(t).ok())
        .ok_or_else(|| "record names an invalid tenant".to_owned())?;
    p.advance(tenant_len);
    let body = if version == PROTOBUF_ONLY_VERSION {
        ExportBody::Protobuf(Bytes::copy_from_slice(p))
    } else {
        let (&format, bytes) = p.split_first().ok_or_else(|| "record without a body format".to_owned())?;
        ExportBody::from_tag(format, Bytes::copy_from_slice(bytes))
            .ok_or_else(|| format!("record body format {format} is newer than this spanlake understands"))?
    };
    Ok((Record { seq, tenant, body }, RECORD_HEADER_LEN + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, &str, &[u8])]) -> Vec<u8> {
        let mut out = BytesMut::from(&header()[..]);
        for (seq, tenant, body) in records {
            let body = ExportBody::Protobuf(Bytes::copy_from_slice(body));
            encode_record(*seq, &TenantId::new(tenant).unwrap(), &body, &mut out);
        }
        out.to_vec()
    }

    #[test]
    fn records_read_back_in_order() {
        let data = segment(&[(1, "a", b"one"), (2, "b", b""), (3, "a", b"three")]);
        let contents = read_segment(&data).unwrap();
        let read: Vec<_> =
            contents.records.iter().map(|r| (r.seq, r.tenant.as_str(), r.body.bytes().as_ref())).collect();
        assert_eq!(read, [(1, "a", &b"one"[..]), (2, "b", b""), (3, "a", b"three")]);
        assert_eq!((contents.valid_len, contents.damaged_bytes, contents.damage), (data.len(), 0, None));
    }

    #[test]
    fn bodies_keep_their_format() {
        let mut out = BytesMut::from(&header()[..]);
        let bodies =
            [ExportBody::Json(Bytes::from_static(b"{}")), ExportBody::Protobuf(Bytes::from_static(b"\x0a\x00"))];
        for (seq, body) in bodies.iter().enumerate() {
            encode_record(seq as u64, &TenantId::default(), body, &mut out);
        }
        let read: Vec<_> = read_segment(&out).unwrap().records.into_iter().map(|r| r.body).collect();
        assert_eq!(read, bodies);
    }

    /// A segment written before bodies carried their format: protobuf.
    #[test]
    fn version_1_segments_read_as_protobuf() {
        let mut data = header().to_vec();
        data[8..12].copy_from_slice(&PROTOBUF_ONLY_VERSION.to_le_bytes());
        let payload = [&7u64.to_le_bytes()[..], &[1], b"a", b"\x0a\x00"].concat();
        data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        data.extend_from_slice(&payload);
        let record = read_segment(&data).unwrap().records.remove(0);
        assert_eq!((record.seq, record.tenant.as_str()), (7, "a"));
        assert_eq!(record.body, ExportBody::Protobuf(Bytes::from_static(b"\x0a\x00")));
    }

    #[test]
    fn an_unknown_body_format_stops_reading() {
        let mut data = segment(&[(1, "a", b"first")]);
        let mut newer = BytesMut::new();
        encode_record(2, &TenantId::new("a").unwrap(), &ExportBody::Json(Bytes::from_static(b"{}")), &mut newer);
        let format_at = RECORD_HEADER_LEN + 8 + 1 + 1;
        newer[format_at] = 7;
        let crc = crc32fast::hash(&newer[RECORD_HEADER_LEN..]);
        newer[4..8].copy_from_slice(&crc.to_le_bytes());
        data.extend_from_slice(&newer);
        let contents = read_segment(&data).unwrap();
        assert_eq!(contents.records.len(), 1);
        assert_eq!(contents.damage.as_deref(), Some("record body format 7 is newer than this spanlake understands"));
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_possible_length() {
        let whole = segment(&[(1, "a", b"first"), (2, "a", b"second record")]);
        let first_end = segment(&[(1, "a", b"first")]).len();
        for cut in first_end + 1..whole.len() {
            let contents = read_segment(&whole[..cut]).unwrap();
            assert_eq!(contents.records.len(), 1, "cut at {cut}");
            assert_eq!(contents.valid_len, first_end);
            assert_eq!(contents.damaged_bytes, cut - first_end);
            assert!(contents.damage.is_some());
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_crc() {
        let mut data = segment(&[(1, "a", b"first"), (2, "a", b"second")]);
        let last = data.len() - 2;
        data[last] ^= 0x10;
        let contents = read_segment(&data).unwrap();
        assert_eq!(contents.records.len(), 1);
        assert_eq!(contents.damage.as_deref(), Some("record CRC mismatch"));
    }

    #[test]
    fn foreign_files_are_not_segments() {
        assert_eq!(read_segment(b"short"), Err(SegmentError::Truncated));
        assert_eq!(read_segment(&[0u8; 32]), Err(SegmentError::BadMagic));
        let mut newer = segment(&[]);
        newer[8] = 9;
        assert_eq!(read_segment(&newer), Err(SegmentError::UnknownVersion(9)));
    }
}
