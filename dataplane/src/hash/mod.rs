//! The on-the-fly multi-hasher: md5 (Glance's `checksum`) plus the configured secure hash
//! (`os_hash_algo`/`os_hash_value`) and the byte count, fed once per buffer of an upload.
//!
//! Both digests use the crates' `asm` back-ends. [`MultiHasher`] runs both inline (the
//! single-thread baseline, and what tests use); uploads use [`pipeline::PipelinedHasher`],
//! which runs md5 and the secure hash on two other cores while the worker keeps reading.

pub mod pipeline;

use md5::{Digest, Md5};
use shared::image::HashAlgo;

/// Running digests of one upload.
#[derive(Debug)]
pub struct MultiHasher {
    md5: Md5,
    secure: Secure,
    size: u64,
}

/// The running `os_hash_algo` digest, whichever algorithm is configured: ring's (BoringSSL's
/// assembly) for the SHA-2 sizes and SHA-1 it has — its SHA-512 is ~15 % faster than the `sha2`
/// crate's AVX2 code on this class of machine, and SHA-512 is what bounds an upload — and the
/// RustCrypto crates for the rest.
pub struct Secure {
    algo: HashAlgo,
    digest: Engine,
}

enum Engine {
    Ring(Box<ring::digest::Context>),
    Crate(Box<dyn sha2::digest::DynDigest + Send>),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Ring(_) => "ring",
            Engine::Crate(_) => "rustcrypto",
        })
    }
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure").field("algo", &self.algo).finish()
    }
}

/// Final digests of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Secure {
    /// A fresh digest of `algo`.
    pub fn new(algo: HashAlgo) -> Self {
        use ring::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY, SHA256, SHA384, SHA512, SHA512_256};
        let ring = |a: &'static ring::digest::Algorithm| Engine::Ring(Box::new(Context::new(a)));
        let digest = match algo {
            HashAlgo::Sha256 => ring(&SHA256),
            HashAlgo::Sha384 => ring(&SHA384),
            HashAlgo::Sha512 => ring(&SHA512),
            HashAlgo::Sha512_256 => ring(&SHA512_256),
            HashAlgo::Sha1 => ring(&SHA1_FOR_LEGACY_USE_ONLY),
            HashAlgo::Sha224 => Engine::Crate(Box::new(sha2::Sha224::default())),
            HashAlgo::Sha512_224 => Engine::Crate(Box::new(sha2::Sha512_224::default())),
            HashAlgo::Sha3_224 => Engine::Crate(Box::new(sha3::Sha3_224::default())),
            HashAlgo::Sha3_256 => Engine::Crate(Box::new(sha3::Sha3_256::default())),
            HashAlgo::Sha3_384 => Engine::Crate(Box::new(sha3::Sha3_384::default())),
            HashAlgo::Sha3_512 => Engine::Crate(Box::new(sha3::Sha3_512::default())),
            HashAlgo::Blake2b => Engine::Crate(Box::new(blake2::Blake2b512::default())),
            HashAlgo::Blake2s => Engine::Crate(Box::new(blake2::Blake2s256::default())),
            HashAlgo::Md5 => Engine::Crate(Box::new(Md5::default())),
        };
        Secure { algo, digest }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.digest {
            Engine::Ring(c) => c.update(data),
            Engine::Crate(d) => d.update(data),
        }
    }

    /// The algorithm and the hex digest.
    pub fn finish(self) -> (HashAlgo, String) {
        let hex = match self.digest {
            Engine::Ring(c) => hex::encode(c.finish()),
            Engine::Crate(d) => hex::encode(d.finalize()),
        };
        (self.algo, hex)
    }
}

impl MultiHasher {
    /// A hasher computing md5 and `algo`.
    pub fn new(algo: HashAlgo) -> Self {
        MultiHasher {
            md5: Md5::new(),
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
            md5_hex: hex::encode(self.md5.finalize()),
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

    /// Where ring computes a digest, RustCrypto's code must agree with it.
    #[test]
    fn ring_and_rustcrypto_agree() {
        let data: Vec<u8> = (0..3_000_017u32).map(|i| (i * 31 + 7) as u8).collect();
        for algo in [
            HashAlgo::Sha256,
            HashAlgo::Sha384,
            HashAlgo::Sha512,
            HashAlgo::Sha512_256,
            HashAlgo::Sha1,
        ] {
            let mut a = Secure::new(algo);
            assert!(matches!(a.digest, Engine::Ring(_)), "{algo:?}");
            let mut b: Box<dyn sha2::digest::DynDigest> = match algo {
                HashAlgo::Sha256 => Box::new(sha2::Sha256::default()),
                HashAlgo::Sha384 => Box::new(sha2::Sha384::default()),
                HashAlgo::Sha512 => Box::new(sha2::Sha512::default()),
                HashAlgo::Sha512_256 => Box::new(sha2::Sha512_256::default()),
                _ => Box::new(sha1::Sha1::default()),
            };
            for c in data.chunks(65_537) {
                a.update(c);
                b.update(c);
            }
            assert_eq!(a.finish().1, hex::encode(b.finalize()), "{algo:?}");
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
