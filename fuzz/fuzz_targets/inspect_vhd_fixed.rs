//! The VHD inspector, fixed disks: images that end with the `conectix` footer (checksum, disk type and size must agree with the stream). The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::End(512), b"conectix")]));
