//! OTLP/JSON as storage reads it: the JSON reader against serde_json and
//! the batch builder, then the batch read back.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| common::read_json(data));
