//! Per-block hashes of an upload, for the block cache: the image is cut into blocks of a fixed
//! size (`[image_cache] image_cache_block_size`, recorded with the hashes), and each block's
//! xxh3-64 is computed as the bytes stream through the hashing pass (on the secure hash's
//! thread; xxh3 runs at tens of GB/s, so it costs next to nothing beside sha512). A cache fill
//! verifies each block it reads from a store against these before the block counts as present.
//!
//! The hashes travel and are stored as one lowercase hex string ([`shared::blocks`]).

use xxhash_rust::xxh3::Xxh3;

/// Hashes the blocks of a stream.
#[derive(Clone)]
pub struct BlockHasher {
    block_size: u64,
    current: Xxh3,
    in_block: u64,
    hashes: Vec<u64>,
}

impl std::fmt::Debug for BlockHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockHasher")
            .field("block_size", &self.block_size)
            .field("blocks", &self.hashes.len())
            .finish_non_exhaustive()
    }
}

impl BlockHasher {
    /// A hasher of blocks of `block_size` bytes (at least 1).
    pub fn new(block_size: u64) -> Self {
        BlockHasher {
            block_size: block_size.max(1),
            current: Xxh3::new(),
            in_block: 0,
            hashes: Vec::new(),
        }
    }

    /// The next bytes of the stream, cut at block boundaries wherever they fall.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.block_size - self.in_block) as usize;
            let take = room.min(data.len());
            self.current.update(&data[..take]);
            self.in_block += take as u64;
            data = &data[take..];
            if self.in_block == self.block_size {
                self.hashes.push(self.current.digest());
                self.current.reset();
                self.in_block = 0;
            }
        }
    }

    /// The hashes of every block, the last (shorter) one included; none for an empty stream.
    pub fn finish(mut self) -> Blocks {
        if self.in_block > 0 {
            self.hashes.push(self.current.digest());
        }
        Blocks {
            block_size: self.block_size,
            hashes: self.hashes,
        }
    }
}

/// The block hashes of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blocks {
    /// Bytes per block (the last block may be shorter).
    pub block_size: u64,
    /// xxh3-64 of each block, in order.
    pub hashes: Vec<u64>,
}

/// The xxh3-64 of one block, as a fill checks it.
pub fn hash_block(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_depend_on_how_the_stream_is_cut() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = {
            let mut h = BlockHasher::new(4096);
            h.update(&data);
            h.finish()
        };
        assert_eq!(whole.hashes.len(), 100_000usize.div_ceil(4096));
        for piece in [1, 1000, 4096, 5000, 65536] {
            let mut h = BlockHasher::new(4096);
            data.chunks(piece).for_each(|c| h.update(c));
            assert_eq!(h.finish(), whole, "{piece}");
        }
        for (i, want) in whole.hashes.iter().enumerate() {
            let block = &data[i * 4096..((i + 1) * 4096).min(data.len())];
            assert_eq!(hash_block(block), *want, "block {i}");
        }
        assert!(BlockHasher::new(4096).finish().hashes.is_empty());
    }
}
