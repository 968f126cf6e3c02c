//! The ISO 9660 inspector: images with a primary volume descriptor at 32 KiB. The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(32 * 1024), b"\x01CD001")]));
