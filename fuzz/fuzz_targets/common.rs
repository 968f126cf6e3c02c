//! What every inspector fuzz target shares: the fuzz input made into a disk image (plain, or
//! patched: zero gaps and byte runs, so headers deep in an image are reachable from small
//! inputs), optionally stamped with one format's signatures so the fuzzer spends its time
//! inside that format's inspector, then the properties every target checks: the inspector
//! never panics, never holds more than its bound, gives the same verdict however the stream is
//! split, counts every byte, and `check` never panics for any claimed `disk_format`.
//!
//! A target is `fuzz_target!(|data| common::run(data, MARKS))`, `MARKS` the signatures of its
//! format (each written at an offset from the start, or from the end, of the image).

#![allow(dead_code)] // each target uses only the placements it needs

use inspect::{INSPECTABLE_FORMATS, Inspector, Verdict, check};

/// Where a signature goes.
#[derive(Clone, Copy)]
pub enum At {
    /// This many bytes from the start.
    Start(usize),
    /// This many bytes before the end (the image grows to hold it if too short).
    End(usize),
}

/// The most the inspector may hold (its docs say about 1.3 MiB).
const HELD_MAX: usize = 1400 * 1024;
const IMAGE_MAX: usize = 4 << 20;

fn image(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    if mode % 2 == 0 {
        return rest.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = rest;
    while rest.len() >= 4 && out.len() < IMAGE_MAX {
        let gap = usize::from(u16::from_le_bytes([rest[0], rest[1]])) * 16;
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        out.resize((out.len() + gap).min(IMAGE_MAX), 0);
        let room = IMAGE_MAX - out.len();
        out.extend_from_slice(&rest[4..4 + len.min(room)]);
        rest = &rest[4 + len..];
    }
    out
}

/// Feeds `image` in pieces whose sizes come from `seed`, checking the memory bound as it goes.
fn feed(image: &[u8], mut seed: u64) -> Verdict {
    let mut inspector = Inspector::new();
    let mut rest = image;
    while !rest.is_empty() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n = match seed >> 62 {
            0 => 1 + (seed >> 32) as usize % 16,
            1 => 1 + (seed >> 32) as usize % 4096,
            _ => 1 + (seed >> 32) as usize % (1 << 20),
        };
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        inspector.feed(chunk);
        assert!(
            inspector.bytes_buffered() <= HELD_MAX,
            "{} bytes held",
            inspector.bytes_buffered()
        );
        rest = tail;
    }
    inspector.finish()
}

/// Stamps `marks` over `image`, growing it where a mark does not fit.
fn stamp(image: &mut Vec<u8>, marks: &[(At, &[u8])]) {
    for &(at, bytes) in marks {
        let start = match at {
            At::Start(n) => n,
            At::End(n) => image.len().max(n) - n,
        };
        if image.len() < start + bytes.len() {
            image.resize(start + bytes.len(), 0);
        }
        image[start..start + bytes.len()].copy_from_slice(bytes);
    }
}

/// One run: the input made into an image, stamped with `marks`, and every property checked.
pub fn run(data: &[u8], marks: &[(At, &[u8])]) {
    let mut image = image(data);
    if !marks.is_empty() {
        stamp(&mut image, marks);
    }
    let image = image;
    let whole = {
        let mut inspector = Inspector::new();
        inspector.feed(&image);
        inspector.finish()
    };
    let seed = data
        .iter()
        .fold(0u64, |h, &b| h.rotate_left(5) ^ u64::from(b));
    let split = feed(&image, seed);
    assert_eq!(whole, split);
    assert_eq!(whole.size, image.len() as u64);
    let claims = INSPECTABLE_FORMATS
        .iter()
        .chain(&["ami", "ari", "aki", "ploop", "mbr", ""]);
    for claim in claims {
        for require_match in [true, false] {
            if let Err(refusal) = check(&whole, claim, require_match) {
                assert!(!refusal.reason().is_empty() && !refusal.to_string().is_empty());
            }
        }
    }
}
