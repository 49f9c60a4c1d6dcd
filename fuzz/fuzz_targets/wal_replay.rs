//! WAL segment replay: any bytes after a valid header (and any bytes at
//! all) read without a panic, a hang or an allocation beyond the input;
//! the records found replay as storage reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spanlake_storage::ExportBody;
use spanlake_storage::wal::read_segment;

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = read_segment(data);
    // Version 1 (protobuf bodies) and version 2 (bodies with their format).
    for version in [1u8, 2] {
        let mut segment = b"SPLKWAL\0\0\0\0\0\0\0\0\0".to_vec();
        segment[8] = version;
        segment.extend_from_slice(data);
        let contents = read_segment(&segment).expect("a valid header");
        assert_eq!(contents.valid_len + contents.damaged_bytes, segment.len());
        for record in contents.records {
            match record.body {
                ExportBody::Protobuf(bytes) => common::read_protobuf(&bytes),
                ExportBody::Json(bytes) => common::read_json(&bytes),
            }
        }
    }
});
