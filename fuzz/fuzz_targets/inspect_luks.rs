//! The LUKS inspector (version 1 only): images that start with LUKS's magic. The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(0), b"LUKS\xba\xbe")]));
