//! The hash limit: how fast this machine can compute md5 and sha512 over the bytes of an upload.
//!
//! An upload cannot finish faster than its two digests (`checksum` = md5 and `os_hash_value` =
//! sha512 by default). With two cores the best a server can do is run them side by side, so the
//! **two-core limit** is `bytes / max(time(md5), time(sha512))` with both running at once on two
//! threads; the **one-core limit** is `bytes / (time(md5) + time(sha512))` on one thread. The
//! digests are the data plane's own ([`dataplane::hash::Secure`]), which picks the fastest
//! implementation on the machine (OpenSSL's), in 1 MiB updates like the data plane's transfer
//! buffer, over the same pattern the upload mode sends. [`openssl_speed`] asks `openssl speed`
//! for the same two digests, so a run shows that the limit is the machine's, not glint's code.

use dataplane::hash::Secure;
use serde::Serialize;
use shared::image::HashAlgo;
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

fn feed(algo: HashAlgo, bytes: u64, pattern: &[u8], chunk: usize) -> Duration {
    let mut d = Secure::new(algo);
    let start = Instant::now();
    let mut done = 0u64;
    while done < bytes {
        let off = (done % pattern.len() as u64) as usize;
        let n = (chunk as u64)
            .min(bytes - done)
            .min((pattern.len() - off) as u64) as usize;
        d.update(&pattern[off..off + n]);
        done += n as u64;
    }
    std::hint::black_box(d.finish());
    start.elapsed()
}

/// `openssl speed -bytes 1048576` for md5 and sha512, MB/s each, when the command is there.
pub fn openssl_speed() -> Option<(f64, f64)> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed", "-bytes", "1048576", "-seconds", "2", "md5", "sha512",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // rows "md5   895768.44k": bytes per second in thousands
    let rate = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.trim_end_matches('k').parse::<f64>().ok())
            .map(|k| k * 1000.0 / 1e6)
    };
    Some((rate("md5")?, rate("sha512")?))
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
        let a = s.spawn(|| feed(HashAlgo::Md5, bytes, pattern, CHUNK));
        let b = s.spawn(|| feed(HashAlgo::Sha512, bytes, pattern, CHUNK));
        (
            a.join().expect("md5 thread"),
            b.join().expect("sha512 thread"),
        )
    });
    let wall = start.elapsed().max(t_md5_par).max(t_sha_par);
    let t_md5 = feed(HashAlgo::Md5, bytes, pattern, CHUNK);
    let t_sha = feed(HashAlgo::Sha512, bytes, pattern, CHUNK);
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
