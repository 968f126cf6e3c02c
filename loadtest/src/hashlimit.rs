//! The hash limit: how fast this machine can compute md5 and sha512 over the bytes of an upload.
//!
//! An upload cannot finish faster than its two digests (`checksum` = md5 and `os_hash_value` =
//! sha512 by default). With two cores the best a server can do is run them side by side, so the
//! **two-core limit** is `bytes / max(time(md5), time(sha512))` with both running at once on two
//! threads; the **one-core limit** is `bytes / (time(md5) + time(sha512))` on one thread. The same
//! code as the data plane is used — md5 from `md-5` (asm), SHA-512 from ring — in 1 MiB updates
//! like the data plane's transfer buffer, over the same pattern the upload mode sends.

use serde::Serialize;
use std::time::{Duration, Instant};

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HashLimit {
    /// Bytes hashed by each digest.
    pub bytes: u64,
    /// md5 alone on one thread, MB/s.
    pub md5_mb_per_second: f64,
    /// sha512 alone on one thread, MB/s.
    pub sha512_mb_per_second: f64,
    /// md5 and sha512 on two threads at once: bytes / wall time, MB/s.
    pub two_core_mb_per_second: f64,
    /// md5 then sha512 on one thread: bytes / (t_md5 + t_sha512), MB/s.
    pub one_core_mb_per_second: f64,
}

/// One of the two digests of an upload.
enum Digest {
    Md5(md5::Md5),
    Sha512(ring::digest::Context),
}

impl Digest {
    fn md5() -> Digest {
        Digest::Md5(md5::Md5::default())
    }

    fn sha512() -> Digest {
        Digest::Sha512(ring::digest::Context::new(&ring::digest::SHA512))
    }
}

fn feed(mut d: Digest, bytes: u64, pattern: &[u8], chunk: usize) -> Duration {
    use md5::Digest as _;
    let start = Instant::now();
    let mut done = 0u64;
    while done < bytes {
        let off = (done % pattern.len() as u64) as usize;
        let n = (chunk as u64)
            .min(bytes - done)
            .min((pattern.len() - off) as u64) as usize;
        match &mut d {
            Digest::Md5(h) => h.update(&pattern[off..off + n]),
            Digest::Sha512(h) => h.update(&pattern[off..off + n]),
        }
        done += n as u64;
    }
    match d {
        Digest::Md5(h) => {
            std::hint::black_box(h.finalize());
        }
        Digest::Sha512(h) => {
            std::hint::black_box(h.finish());
        }
    }
    start.elapsed()
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Hashes `bytes` of `pattern` (repeated) with md5 and sha512, at once on two threads, then
/// one after the other on one thread.
pub fn measure(bytes: u64, pattern: &[u8]) -> HashLimit {
    const CHUNK: usize = 1 << 20;
    let start = Instant::now();
    let (t_md5_par, t_sha_par) = std::thread::scope(|s| {
        let a = s.spawn(|| feed(Digest::md5(), bytes, pattern, CHUNK));
        let b = s.spawn(|| feed(Digest::sha512(), bytes, pattern, CHUNK));
        (
            a.join().expect("md5 thread"),
            b.join().expect("sha512 thread"),
        )
    });
    let wall = start.elapsed().max(t_md5_par).max(t_sha_par);
    let t_md5 = feed(Digest::md5(), bytes, pattern, CHUNK);
    let t_sha = feed(Digest::sha512(), bytes, pattern, CHUNK);
    HashLimit {
        bytes,
        md5_mb_per_second: mbps(bytes, t_md5),
        sha512_mb_per_second: mbps(bytes, t_sha),
        two_core_mb_per_second: mbps(bytes, wall),
        one_core_mb_per_second: mbps(bytes, t_md5 + t_sha),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_are_consistent() {
        let pattern = vec![7u8; 1 << 20];
        let h = super::measure(4 << 20, &pattern);
        assert!(h.one_core_mb_per_second > 0.0);
        assert!(h.one_core_mb_per_second <= h.md5_mb_per_second);
        assert!(h.one_core_mb_per_second <= h.sha512_mb_per_second);
        assert!(h.two_core_mb_per_second > 0.0);
    }
}
