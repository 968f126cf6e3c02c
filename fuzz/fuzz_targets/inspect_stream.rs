//! Any bytes as a disk image, fed to the format inspector in pieces the fuzzer picks: it must
//! never panic, never hold more than its bound, give the same verdict however the stream is
//! split, and `check` must never panic for any claimed `disk_format`.
//!
//! The input is read in one of two ways (first byte even or odd), so that the formats whose
//! headers sit deep in the image (ISO at 32 KiB, the VHDX tables at 192 KiB and beyond, a VMDK
//! stream footer at the end) are reachable from small inputs:
//!
//! - **plain**: the rest of the input is the image;
//! - **patched**: the rest is a list of `(gap: u16 × 16 bytes of zeros, len: u16, bytes)` patches
//!   laid out one after the other, up to 4 MiB in all.
#![no_main]

use inspect::{INSPECTABLE_FORMATS, Inspector, Verdict, check};
use libfuzzer_sys::fuzz_target;

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

fuzz_target!(|data: &[u8]| {
    let image = image(data);
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
});
