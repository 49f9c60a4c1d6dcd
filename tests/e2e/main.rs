//! End-to-end tests of the whole `spanlake` binary with real clients. One
//! test binary (each extra one re-links DataFusion), one module per area.

// Modules share helpers with `pub`; nothing leaves this crate.
#![allow(unreachable_pub)]

mod analysis;
mod bad_input;
mod cli;
mod client;
mod cluster;
mod compaction;
mod deploy;
mod durability;
mod fixture;
mod flight_sql;
mod harness;
mod jaeger;
mod jaeger_v3;
mod load;
mod object_storage;
mod operations;
mod otlp_compare;
mod otlp_python;
mod otlp_rust;
mod pgwire;
mod query_api;
mod semconv;
mod sql;
mod storage;
mod tempo;
mod tenancy;
mod ui;
mod webdriver;
mod zipkin;
