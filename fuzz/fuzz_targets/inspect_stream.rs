//! Any bytes as a disk image, fed to the format inspector in pieces the fuzzer picks, no
//! format favoured (the per-format targets, `inspect_*`, stamp one format's signatures). The
//! properties are those of every inspector target (`common.rs`).
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::run(data, &[]));
