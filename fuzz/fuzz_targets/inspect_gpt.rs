//! The MBR/GPT inspector (Glance's `mbr` safety check): images whose first sector ends in 0x55 0xAA with a protective first entry. The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(450), b"\xee"), (At::Start(510), b"\x55\xaa")]));
