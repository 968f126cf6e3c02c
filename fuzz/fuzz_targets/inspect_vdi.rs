//! The VDI inspector: images with VDI's signature at 0x40. The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(0x40), &0xbeda_107f_u32.to_le_bytes())]));
