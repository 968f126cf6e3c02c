//! The inspector runs in the upload's hashing pass on every buffer, so it must cost next to
//! nothing past the first regions. `cargo test -p inspect --release --test throughput --
//! --ignored --nocapture` prints the cost of feeding 1 GiB in 4 MiB buffers next to the cost of
//! merely reading every byte once (a lower bound for any hash).

use std::hint::black_box;
use std::time::Instant;

use inspect::{Format, Inspector};

const GIB: usize = 1 << 30;
const BUFFER: usize = 4 << 20;

/// A 4 MiB buffer of binary noise.
fn buffer() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..BUFFER)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Feeds 1 GiB (the same buffer again and again) and returns the verdict's format.
fn feed_gib(buf: &[u8]) -> (Format, usize) {
    let mut inspector = Inspector::new();
    for _ in 0..GIB / BUFFER {
        inspector.feed(black_box(buf));
    }
    let held = inspector.bytes_buffered();
    (inspector.finish().format, held)
}

#[test]
fn a_gib_in_4_mib_buffers_keeps_only_the_head_and_tail() {
    let (format, held) = feed_gib(&buffer());
    assert_eq!(format, Format::Raw);
    assert!(held < 40 * 1024, "{held} bytes held");
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn cost_per_gib() {
    let buf = buffer();
    let rounds = 20;
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(feed_gib(&buf));
    }
    let inspect_ns = started.elapsed().as_nanos() / rounds;

    let started = Instant::now();
    for _ in 0..rounds {
        let mut acc = 0u64;
        for _ in 0..GIB / BUFFER {
            for word in black_box(&buf[..]).chunks_exact(8) {
                acc = acc.wrapping_add(u64::from_le_bytes(word.try_into().unwrap()));
            }
        }
        black_box(acc);
    }
    let read_ns = started.elapsed().as_nanos() / rounds;
    println!(
        "inspector: {inspect_ns} ns per GiB in 4 MiB buffers; reading every byte once: {read_ns} ns per GiB ({:.0}x)",
        read_ns as f64 / inspect_ns.max(1) as f64
    );
}
