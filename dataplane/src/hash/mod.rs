//! The on-the-fly multi-hasher: md5 (Glance's `checksum`) plus the configured secure hash
//! (`os_hash_algo`/`os_hash_value`) and the byte count, fed once per buffer of an upload.
//!
//! Every digest is computed by the fastest implementation on the machine, which is OpenSSL's
//! (the system's libcrypto, through the `openssl` crate; the same code Python's hashlib and
//! `openssl speed` run). Measured on this class of machine with 1 MiB updates
//! (`cargo bench -p benches --bench hash -- implementations`): md5 883 MB/s (RustCrypto's asm
//! 724), SHA-512 1215 (ring 890, aws-lc 887, RustCrypto 789), SHA-256 2100 (all SHA-NI, a
//! tie), SHA3-256 627 (aws-lc 613, RustCrypto 553), BLAKE2b 1481 (RustCrypto 1486, a tie).
//! Where the system's OpenSSL refuses an algorithm (a FIPS provider refuses md5), the
//! RustCrypto implementation is used instead. [`MultiHasher`] runs both digests inline (the
//! single-thread baseline, and what tests use); uploads use [`pipeline::PipelinedHasher`],
//! which runs md5 and the secure hash on two other cores while the worker keeps reading.

pub mod blocks;
pub mod pipeline;

use shared::image::HashAlgo;

/// Running digests of one upload.
#[derive(Debug)]
pub struct MultiHasher {
    md5: Secure,
    secure: Secure,
    size: u64,
}

/// One running digest of any hashlib algorithm (md5 included).
pub struct Secure {
    algo: HashAlgo,
    digest: Engine,
}

enum Engine {
    OpenSsl(openssl::hash::Hasher),
    Crate(Box<dyn sha2::digest::DynDigest + Send>),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::OpenSsl(_) => "openssl",
            Engine::Crate(_) => "rustcrypto",
        })
    }
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("algo", &self.algo)
            .field("engine", &self.digest)
            .finish()
    }
}

/// Final digests of one upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digests {
    /// Bytes hashed.
    pub size: u64,
    /// md5 hex (`checksum`).
    pub md5_hex: String,
    /// Algorithm of `secure_hex`.
    pub algo: HashAlgo,
    /// Secure hash hex (`os_hash_value`).
    pub secure_hex: String,
}

/// OpenSSL's digest for a hashlib name.
fn openssl_digest(algo: HashAlgo) -> Option<openssl::hash::MessageDigest> {
    use openssl::hash::MessageDigest as M;
    Some(match algo {
        HashAlgo::Md5 => M::md5(),
        HashAlgo::Sha1 => M::sha1(),
        HashAlgo::Sha224 => M::sha224(),
        HashAlgo::Sha256 => M::sha256(),
        HashAlgo::Sha384 => M::sha384(),
        HashAlgo::Sha512 => M::sha512(),
        HashAlgo::Sha512_224 => M::from_name("SHA512-224")?,
        HashAlgo::Sha512_256 => M::from_name("SHA512-256")?,
        HashAlgo::Sha3_224 => M::sha3_224(),
        HashAlgo::Sha3_256 => M::sha3_256(),
        HashAlgo::Sha3_384 => M::sha3_384(),
        HashAlgo::Sha3_512 => M::sha3_512(),
        HashAlgo::Blake2b => M::from_name("BLAKE2B512")?,
        HashAlgo::Blake2s => M::from_name("BLAKE2S256")?,
    })
}

/// RustCrypto's implementation of a hashlib name.
fn rustcrypto(algo: HashAlgo) -> Box<dyn sha2::digest::DynDigest + Send> {
    match algo {
        HashAlgo::Md5 => Box::new(md5::Md5::default()),
        HashAlgo::Sha1 => Box::new(sha1::Sha1::default()),
        HashAlgo::Sha224 => Box::new(sha2::Sha224::default()),
        HashAlgo::Sha256 => Box::new(sha2::Sha256::default()),
        HashAlgo::Sha384 => Box::new(sha2::Sha384::default()),
        HashAlgo::Sha512 => Box::new(sha2::Sha512::default()),
        HashAlgo::Sha512_224 => Box::new(sha2::Sha512_224::default()),
        HashAlgo::Sha512_256 => Box::new(sha2::Sha512_256::default()),
        HashAlgo::Sha3_224 => Box::new(sha3::Sha3_224::default()),
        HashAlgo::Sha3_256 => Box::new(sha3::Sha3_256::default()),
        HashAlgo::Sha3_384 => Box::new(sha3::Sha3_384::default()),
        HashAlgo::Sha3_512 => Box::new(sha3::Sha3_512::default()),
        HashAlgo::Blake2b => Box::new(blake2::Blake2b512::default()),
        HashAlgo::Blake2s => Box::new(blake2::Blake2s256::default()),
    }
}

impl Secure {
    /// A fresh digest of `algo`: OpenSSL's, or RustCrypto's where OpenSSL refuses it.
    pub fn new(algo: HashAlgo) -> Self {
        let digest = match openssl_digest(algo).map(openssl::hash::Hasher::new) {
            Some(Ok(h)) => Engine::OpenSsl(h),
            _ => Engine::Crate(rustcrypto(algo)),
        };
        Secure { algo, digest }
    }

    /// The RustCrypto implementation (tests: the two must agree).
    pub fn rustcrypto(algo: HashAlgo) -> Self {
        Secure {
            algo,
            digest: Engine::Crate(rustcrypto(algo)),
        }
    }

    /// Which implementation runs: `openssl` or `rustcrypto`.
    pub fn engine(&self) -> &'static str {
        match self.digest {
            Engine::OpenSsl(_) => "openssl",
            Engine::Crate(_) => "rustcrypto",
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.digest {
            // EVP_DigestUpdate fails only on a context that was never initialised, which
            // `Hasher::new` rules out.
            Engine::OpenSsl(h) => h.update(data).expect("OpenSSL digest update"),
            Engine::Crate(d) => d.update(data),
        }
    }

    /// The algorithm and the hex digest.
    pub fn finish(self) -> (HashAlgo, String) {
        let hex = match self.digest {
            Engine::OpenSsl(mut h) => hex::encode(h.finish().expect("OpenSSL digest final")),
            Engine::Crate(d) => hex::encode(d.finalize()),
        };
        (self.algo, hex)
    }
}

impl MultiHasher {
    /// A hasher computing md5 and `algo`.
    pub fn new(algo: HashAlgo) -> Self {
        MultiHasher {
            md5: Secure::new(HashAlgo::Md5),
            secure: Secure::new(algo),
            size: 0,
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.secure.update(data);
        self.size += data.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes both digests.
    pub fn finish(self) -> Digests {
        let (algo, secure_hex) = self.secure.finish();
        Digests {
            size: self.size,
            md5_hex: self.md5.finish().1,
            algo,
            secure_hex,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known vectors (RFC 1321 for md5, FIPS 180-2 examples for SHA-2).
    #[test]
    fn known_vectors() {
        let d = MultiHasher::new(HashAlgo::Sha512).finish();
        assert_eq!(d.md5_hex, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            d.secure_hex,
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
             47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        let mut h = MultiHasher::new(HashAlgo::Sha256);
        h.update(b"a");
        h.update(b"bc");
        let d = h.finish();
        assert_eq!(d.size, 3);
        assert_eq!(d.md5_hex, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            d.secure_hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = MultiHasher::new(HashAlgo::Sha512);
        h.update(b"abc");
        assert_eq!(
            h.finish().secure_hex,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    /// Every algorithm against a known digest of "abc" (FIPS 180-4, FIPS 202, RFC 7693, and
    /// what Python's `hashlib.new(name, b"abc").hexdigest()` prints).
    #[test]
    fn every_hashlib_algorithm() {
        let want = [
            (HashAlgo::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                HashAlgo::Sha512_256,
                "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23",
            ),
            (
                HashAlgo::Sha512_224,
                "4634270f707b6a54daae7530460842e20e37ed265ceee9a43e8924aa",
            ),
            (
                HashAlgo::Sha3_256,
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
            (
                HashAlgo::Sha3_224,
                "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf",
            ),
            (
                HashAlgo::Blake2s,
                "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
            ),
            (
                HashAlgo::Blake2b,
                "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
                 7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
            ),
            (HashAlgo::Md5, "900150983cd24fb0d6963f7d28e17f72"),
        ];
        for (algo, hex) in want {
            let mut h = MultiHasher::new(algo);
            h.update(b"abc");
            let d = h.finish();
            assert_eq!((d.algo, d.secure_hex.as_str()), (algo, hex), "{algo:?}");
        }
        for algo in HashAlgo::ALL {
            let mut h = MultiHasher::new(algo);
            h.update(b"abc");
            assert_eq!(h.finish().algo, algo);
        }
    }

    /// OpenSSL's code (what uploads use) and RustCrypto's (the fallback) agree on every
    /// algorithm, over an odd length fed in odd pieces.
    #[test]
    fn openssl_and_rustcrypto_agree() {
        let data: Vec<u8> = (0..3_000_017u32).map(|i| (i * 31 + 7) as u8).collect();
        for algo in HashAlgo::ALL {
            let mut a = Secure::new(algo);
            assert_eq!(a.engine(), "openssl", "{algo:?}");
            let mut b = Secure::rustcrypto(algo);
            for c in data.chunks(65_537) {
                a.update(c);
                b.update(c);
            }
            assert_eq!(a.finish(), b.finish(), "{algo:?}");
        }
    }

    #[test]
    fn split_points_do_not_matter() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = MultiHasher::new(HashAlgo::Sha384);
        whole.update(&data);
        let whole = whole.finish();
        for chunk in [1, 63, 64, 65, 4096, 99_999] {
            let mut h = MultiHasher::new(HashAlgo::Sha384);
            data.chunks(chunk).for_each(|c| h.update(c));
            assert_eq!(h.finish(), whole, "chunk {chunk}");
        }
    }
}
