//! OTLP protobuf, as a receiver gets it, read by the wire reader and by
//! prost + the batch builder, compared, and read back.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| common::read_protobuf(data));
