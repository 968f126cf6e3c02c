//! The block cache's blocks on disk, its index and its budget.
//!
//! Each cached block of an image is one file, `<image_cache_dir>/<image id>/<index>.blk`,
//! holding bytes `[index × block size, …)` of the image, whole (the last block of an image is
//! shorter). A block is admitted only after its bytes matched the block hash recorded with the
//! image ([`crate::hash::blocks`]); it is written to `tmp/`, synced, renamed into place and the
//! directory synced, and only then recorded in the index. So a crash (kill -9 mid-fill) leaves a
//! temp file, which [`BlockStore::open`] removes, and never a half-written block under a block's
//! name; the index is rebuilt from the file names at start.
//!
//! The budget (`image_cache_max_size`) is held when a block is admitted, never by a later
//! prune: room is made by evicting whole images, least recently used first, skipping those that
//! are pinned ([`BlockStore::pin`]: an image being served). When everything left is pinned, the
//! block is not admitted ([`Admitted::Full`]) and the caller serves it from the store directly.
//!
//! The calls do blocking file I/O (a block write and its fsync): the data plane runs them off its
//! io_uring workers. The index is one mutex, held for bookkeeping only, never across I/O.

use shared::image::ImageId;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a block was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The bytes do not hash to the block hash recorded with the image: discarded.
    #[error("block {index} of image {image} does not match its recorded hash")]
    Mismatch {
        /// The image.
        image: ImageId,
        /// The block.
        index: u64,
    },
    /// Writing the block failed (nothing is recorded).
    #[error("writing a cache block: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`BlockStore::admit`] did with a verified block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Stored and present from now on.
    Stored,
    /// Already present (another fill got there first).
    Present,
    /// No room: every image that could be evicted is pinned. Not stored.
    Full,
}

/// A present block: its length, and whether its bytes were checked against the block hash
/// since this process started (a block found on disk at start is checked at its first read).
#[derive(Debug, Clone, Copy)]
struct Block {
    len: u64,
    verified: bool,
}

#[derive(Debug, Default)]
struct Entry {
    /// Present blocks.
    blocks: BTreeMap<u64, Block>,
    bytes: u64,
    last_used: u64,
    pins: u32,
    /// Downloads of the image through the cache since start.
    hits: u64,
    /// Unix time of the last download (or of the newest block found at start).
    accessed: f64,
    /// Unix time of the last block stored.
    modified: f64,
}

/// One image the cache holds, as `GET /v2/cache` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The image.
    pub image: ImageId,
    /// Bytes held.
    pub bytes: u64,
    /// Downloads through the cache since start.
    pub hits: u64,
    /// Unix time of the last download.
    pub last_accessed: f64,
    /// Unix time of the last block stored.
    pub last_modified: f64,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Debug, Default)]
struct Index {
    images: HashMap<ImageId, Entry>,
    used: u64,
    clock: u64,
    evictions: u64,
    /// Images whose held bytes changed since [`BlockStore::take_changes`] last ran.
    changed: std::collections::HashSet<ImageId>,
}

/// The cache's blocks on disk (one per data plane, shared by its workers).
#[derive(Debug)]
pub struct BlockStore {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
}

/// An image pinned against eviction while it lives.
#[derive(Debug)]
pub struct Pin<'a> {
    store: &'a BlockStore,
    image: ImageId,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut ix = self.store.lock();
        if let Some(e) = ix.images.get_mut(&self.image) {
            e.pins = e.pins.saturating_sub(1);
            if e.pins == 0 && e.blocks.is_empty() {
                ix.images.remove(&self.image);
            }
        }
    }
}

impl BlockStore {
    /// Opens the cache in `dir` (created if missing) with a budget of `max_bytes`: removes
    /// what interrupted writes left in `tmp/` and rebuilds the index from the block files.
    /// Files that are not blocks are left alone and not counted.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<BlockStore> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        for entry in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        let mut ix = Index::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(image) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<ImageId>().ok())
            else {
                continue;
            };
            let mut e = Entry::default();
            for block in std::fs::read_dir(entry.path())? {
                let block = block?;
                let name = block.file_name();
                let Some(index) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".blk"))
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                let meta = block.metadata()?;
                let len = meta.len();
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                e.modified = e.modified.max(mtime);
                e.accessed = e.modified;
                e.blocks.insert(
                    index,
                    Block {
                        len,
                        verified: false,
                    },
                );
                e.bytes += len;
            }
            if !e.blocks.is_empty() {
                ix.used += e.bytes;
                ix.images.insert(image, e);
            }
        }
        Ok(BlockStore {
            dir: dir.to_owned(),
            max_bytes,
            index: Mutex::new(ix),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn block_path(&self, image: &ImageId, index: u64) -> PathBuf {
        self.dir
            .join(image.to_string())
            .join(format!("{index}.blk"))
    }

    /// Pins `image` (it is not evicted while the pin lives) and marks it used now.
    pub fn pin(&self, image: ImageId) -> Pin<'_> {
        let mut ix = self.lock();
        ix.clock += 1;
        let now = ix.clock;
        let e = ix.images.entry(image).or_default();
        e.pins += 1;
        e.last_used = now;
        e.hits += 1;
        e.accessed = self::now();
        Pin { store: self, image }
    }

    /// Whether block `index` of `image` is present with `len` bytes.
    pub fn has(&self, image: ImageId, index: u64, len: u64) -> bool {
        self.lock()
            .images
            .get(&image)
            .and_then(|e| e.blocks.get(&index))
            .is_some_and(|b| b.len == len)
    }

    /// Records that present block `index` of `image` was read back and matched its hash.
    pub fn mark_verified(&self, image: ImageId, index: u64) {
        if let Some(b) = self
            .lock()
            .images
            .get_mut(&image)
            .and_then(|e| e.blocks.get_mut(&index))
        {
            b.verified = true;
        }
    }

    /// Drops a present block (it failed verification when read back): it is fetched again
    /// on the next read.
    pub fn discard(&self, image: ImageId, index: u64) {
        self.forget_block(image, index);
    }

    /// Drops every block of `image`, keeping its pins (an image about to be filled again from
    /// its start, or one whose fill turned out bad).
    pub fn discard_blocks(&self, image: ImageId) {
        let present: Vec<u64> = self
            .lock()
            .images
            .get(&image)
            .map(|e| e.blocks.keys().copied().collect())
            .unwrap_or_default();
        for index in present {
            self.forget_block(image, index);
        }
    }

    /// The file of a present block, if it holds exactly `len` bytes (a block of another length
    /// belongs to other data: it is dropped), and whether its bytes were verified since start
    /// (if not, the caller reads it back against its hash before serving it).
    pub fn open_block(&self, image: ImageId, index: u64, len: u64) -> Option<(File, bool)> {
        let present = self
            .lock()
            .images
            .get(&image)?
            .blocks
            .get(&index)
            .copied()?;
        if present.len != len {
            self.forget_block(image, index);
            return None;
        }
        match File::open(self.block_path(&image, index)) {
            Ok(file) => Some((file, present.verified)),
            Err(_) => {
                // gone from under the index (removed by hand): no longer present
                self.forget_block(image, index);
                None
            }
        }
    }

    fn forget_block(&self, image: ImageId, index: u64) {
        let mut ix = self.lock();
        let Some(e) = ix.images.get_mut(&image) else {
            return;
        };
        if let Some(Block { len, .. }) = e.blocks.remove(&index) {
            e.bytes -= len;
            ix.used -= len;
            ix.changed.insert(image);
            let _ = std::fs::remove_file(self.block_path(&image, index));
        }
    }

    /// Verifies `data` as block `index` of `image` against `hash` (its recorded xxh3-64) and
    /// stores it within the budget, evicting least recently used images that are not pinned.
    pub fn admit(
        &self,
        image: ImageId,
        index: u64,
        data: &[u8],
        hash: u64,
    ) -> Result<Admitted, AdmitError> {
        if crate::hash::blocks::hash_block(data) != hash {
            return Err(AdmitError::Mismatch { image, index });
        }
        Ok(self.store(image, index, data)?)
    }

    /// Stores `data`, already verified against block `index`'s recorded hash, within the
    /// budget (as [`BlockStore::admit`] does after verifying).
    pub fn store(&self, image: ImageId, index: u64, data: &[u8]) -> std::io::Result<Admitted> {
        let len = data.len() as u64;
        let evicted = {
            let mut ix = self.lock();
            if ix
                .images
                .get(&image)
                .is_some_and(|e| e.blocks.contains_key(&index))
            {
                return Ok(Admitted::Present);
            }
            match self.make_room(&mut ix, image, len) {
                Some(evicted) => {
                    // reserved now, so that concurrent admissions do not overrun the budget
                    ix.used += len;
                    evicted
                }
                None => return Ok(Admitted::Full),
            }
        };
        for victim in evicted {
            let _ = std::fs::remove_dir_all(self.dir.join(victim.to_string()));
        }
        match self.write_block(image, index, data) {
            Ok(()) => {
                let mut ix = self.lock();
                let e = ix.images.entry(image).or_default();
                let block = Block {
                    len,
                    verified: true,
                };
                if e.blocks.insert(index, block).is_some() {
                    // a concurrent fill stored the same (verified) bytes first
                    ix.used -= len;
                    return Ok(Admitted::Present);
                }
                e.bytes += len;
                e.modified = now();
                ix.changed.insert(image);
                Ok(Admitted::Stored)
            }
            Err(err) => {
                self.lock().used -= len;
                Err(err)
            }
        }
    }

    /// Evicts whole images, least recently used first, until `len` more bytes fit; `None` if
    /// they cannot (what is left is pinned, or is `image` itself). Returns the images evicted
    /// (their files are removed by the caller, outside the lock).
    fn make_room(&self, ix: &mut Index, image: ImageId, len: u64) -> Option<Vec<ImageId>> {
        let mut evicted = Vec::new();
        while ix.used + len > self.max_bytes {
            let victim = ix
                .images
                .iter()
                .filter(|(id, e)| **id != image && e.pins == 0 && e.bytes > 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| *id)?;
            if let Some(e) = ix.images.remove(&victim) {
                ix.used -= e.bytes;
            }
            ix.changed.insert(victim);
            ix.evictions += 1;
            evicted.push(victim);
        }
        Some(evicted)
    }

    fn write_block(&self, image: ImageId, index: u64, data: &[u8]) -> std::io::Result<()> {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{image}-{index}-{}", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            let image_dir = self.dir.join(image.to_string());
            std::fs::create_dir_all(&image_dir)?;
            std::fs::rename(&tmp, self.block_path(&image, index))?;
            File::open(&image_dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Removes every block of `image`; whether it held any.
    pub fn remove_image(&self, image: ImageId) -> bool {
        let removed = {
            let mut ix = self.lock();
            match ix.images.remove(&image) {
                Some(e) => {
                    ix.used -= e.bytes;
                    ix.changed.insert(image);
                    e.bytes > 0
                }
                None => false,
            }
        };
        if removed {
            let _ = std::fs::remove_dir_all(self.dir.join(image.to_string()));
        }
        removed
    }

    /// Every present block: image, index, length (what the auditor reads back).
    pub fn all_blocks(&self) -> Vec<(ImageId, u64, u64)> {
        let ix = self.lock();
        ix.images
            .iter()
            .flat_map(|(id, e)| e.blocks.iter().map(|(i, b)| (*id, *i, b.len)))
            .collect()
    }

    /// Every image the cache holds blocks of, most recently used first.
    pub fn images(&self) -> Vec<Cached> {
        let ix = self.lock();
        let mut out: Vec<(u64, Cached)> = ix
            .images
            .iter()
            .filter(|(_, e)| e.bytes > 0)
            .map(|(id, e)| {
                let c = Cached {
                    image: *id,
                    bytes: e.bytes,
                    hits: e.hits,
                    last_accessed: e.accessed,
                    last_modified: e.modified,
                };
                (e.last_used, c)
            })
            .collect();
        out.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// Evicts least recently used images not being read until at most `max_bytes` are held
    /// (what Glance's prune does; the budget is held at admission, so there is rarely
    /// anything to do). Returns the blocks and bytes removed.
    pub fn prune(&self) -> (u64, u64) {
        let (victims, bytes) = {
            let mut ix = self.lock();
            let before = ix.used;
            // no image is exempt: the one asked to make room for is none
            let victims = self
                .make_room(&mut ix, ImageId::new_random(), 0)
                .unwrap_or_default();
            (victims, before - ix.used)
        };
        let mut blocks = 0;
        for v in &victims {
            let dir = self.dir.join(v.to_string());
            blocks += std::fs::read_dir(&dir).map_or(0, |d| d.count() as u64);
            let _ = std::fs::remove_dir_all(dir);
        }
        (blocks, bytes)
    }

    /// Removes what writes left in `tmp/` longer than `older_than` ago (Glance's clean of
    /// stalled entries; a write under way is younger). Returns how many.
    pub fn clean(&self, older_than: std::time::Duration) -> u64 {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.dir.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= older_than);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The images whose held bytes changed since the last call, and what each holds now (0:
    /// nothing).
    pub fn take_changes(&self) -> Vec<(ImageId, u64)> {
        let mut ix = self.lock();
        let changed: Vec<ImageId> = ix.changed.drain().collect();
        changed
            .into_iter()
            .map(|id| (id, ix.images.get(&id).map_or(0, |e| e.bytes)))
            .collect()
    }

    /// Bytes of blocks held (and reserved by admissions under way).
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Images evicted to make room since start.
    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// How many of blocks `range` of `image` are present.
    pub fn count_present(&self, image: ImageId, range: std::ops::RangeInclusive<u64>) -> u64 {
        self.lock()
            .images
            .get(&image)
            .map_or(0, |e| e.blocks.range(range).count() as u64)
    }

    /// The present blocks of `image`, in order.
    #[cfg(test)]
    pub fn present(&self, image: ImageId) -> Vec<u64> {
        self.lock()
            .images
            .get(&image)
            .map(|e| e.blocks.keys().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::blocks::hash_block;

    fn id(n: u8) -> ImageId {
        format!("00000000-0000-4000-8000-0000000000{n:02x}")
            .parse()
            .unwrap()
    }

    fn block(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn verified_blocks_are_stored_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), 1 << 20).unwrap();
        let a = block(1, 4096);
        assert_eq!(
            store.admit(id(1), 0, &a, hash_block(&a)).unwrap(),
            Admitted::Stored
        );
        assert_eq!(
            store.admit(id(1), 0, &a, hash_block(&a)).unwrap(),
            Admitted::Present
        );
        // bytes that are not the block's are discarded, never stored
        let bad = block(2, 4096);
        assert!(matches!(
            store.admit(id(1), 1, &bad, hash_block(&a)),
            Err(AdmitError::Mismatch { index: 1, .. })
        ));
        assert_eq!(store.present(id(1)), [0]);
        assert_eq!(store.used(), 4096);
        // what an interrupted write leaves is swept; the index comes back from the files
        std::fs::write(dir.path().join("tmp").join("half"), b"partial").unwrap();
        drop(store);
        let store = BlockStore::open(dir.path(), 1 << 20).unwrap();
        assert!(
            std::fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
        assert_eq!(store.present(id(1)), [0]);
        assert_eq!(store.used(), 4096);
        let mut got = Vec::new();
        let (mut file, verified) = store.open_block(id(1), 0, 4096).unwrap();
        assert!(!verified, "found at start: read back before it is served");
        std::io::Read::read_to_end(&mut file, &mut got).unwrap();
        assert_eq!(got, a);
        store.mark_verified(id(1), 0);
        assert!(store.open_block(id(1), 0, 4096).unwrap().1);
        // a block of another length is other data: dropped
        assert!(store.open_block(id(1), 0, 4000).is_none());
        assert_eq!(store.used(), 0);
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used_unpinned_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(dir.path(), 3 * 1000).unwrap();
        let b = block(3, 1000);
        let h = hash_block(&b);
        for n in 1..=3 {
            let _pin = store.pin(id(n));
            assert_eq!(store.admit(id(n), 0, &b, h).unwrap(), Admitted::Stored);
        }
        // image 1 was used last: image 2 goes first
        drop(store.pin(id(1)));
        assert_eq!(store.admit(id(4), 0, &b, h).unwrap(), Admitted::Stored);
        assert!(store.present(id(2)).is_empty());
        assert!(!dir.path().join(id(2).to_string()).exists());
        assert_eq!(store.used(), 3000);
        // pinned images are never evicted: with all of them pinned, the block is not stored
        let pins: Vec<_> = [1, 3, 4].iter().map(|n| store.pin(id(*n))).collect();
        assert_eq!(store.admit(id(5), 0, &b, h).unwrap(), Admitted::Full);
        assert_eq!(store.used(), 3000);
        drop(pins);
        assert_eq!(store.admit(id(5), 0, &b, h).unwrap(), Admitted::Stored);
        assert_eq!(store.used(), 3000);
        assert_eq!(store.evictions(), 2);
        store.remove_image(id(5));
        assert_eq!(store.used(), 2000);
    }
}
