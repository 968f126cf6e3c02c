//! The VMDK inspector, sparse and stream-optimized: images that start with `KDMV` (the embedded descriptor, its lines and extents, the stream footer). The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(0), b"KDMV")]));
