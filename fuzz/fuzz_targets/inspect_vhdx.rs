//! The VHDX inspector (region table, metadata table, virtual size item, followed through the stream): images with the `vhdxfile` identifier and a region table signature at 192 KiB. The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(0), b"vhdxfile"), (At::Start(192 * 1024), b"regi")]));
