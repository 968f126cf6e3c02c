//! The VMDK inspector, bare descriptors (text naming extents in other files, always refused): images that start as a descriptor file. The properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

use common::At;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[(At::Start(0), b"# Disk DescriptorFile\n")]));
