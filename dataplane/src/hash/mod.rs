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
#[derive(Debug, Clone)]
pub struct MultiHasher {
    md5: Md5,
    secure: Secure,
    size: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum Secure {
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
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
    pub(crate) fn new(algo: HashAlgo) -> Self {
        match algo {
            HashAlgo::Sha224 => Secure::Sha224(Default::default()),
            HashAlgo::Sha256 => Secure::Sha256(Default::default()),
            HashAlgo::Sha384 => Secure::Sha384(Default::default()),
            HashAlgo::Sha512 => Secure::Sha512(Default::default()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Secure::Sha224(h) => h.update(data),
            Secure::Sha256(h) => h.update(data),
            Secure::Sha384(h) => h.update(data),
            Secure::Sha512(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> (HashAlgo, String) {
        match self {
            Secure::Sha224(h) => (HashAlgo::Sha224, hex::encode(h.finalize())),
            Secure::Sha256(h) => (HashAlgo::Sha256, hex::encode(h.finalize())),
            Secure::Sha384(h) => (HashAlgo::Sha384, hex::encode(h.finalize())),
            Secure::Sha512(h) => (HashAlgo::Sha512, hex::encode(h.finalize())),
        }
    }
}

impl MultiHasher {
    /// A hasher computing md5 and `algo`.
    pub fn new(algo: HashAlgo) -> Self {
        let secure = match algo {
            HashAlgo::Sha224 => Secure::Sha224(Default::default()),
            HashAlgo::Sha256 => Secure::Sha256(Default::default()),
            HashAlgo::Sha384 => Secure::Sha384(Default::default()),
            HashAlgo::Sha512 => Secure::Sha512(Default::default()),
        };
        MultiHasher {
            md5: Md5::new(),
            secure,
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
