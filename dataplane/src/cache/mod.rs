//! The block cache in front of remote stores (issue "The block cache"): one per data plane,
//! shared by its workers ([`Cache`]).
//!
//! An image in a remote store is cached in blocks of the size its upload recorded block hashes
//! in ([`crate::hash::blocks`]). [`blocks`] keeps the blocks on disk, its index and its budget
//! (verified before admission, written crash-safe, least-recently-used images evicted at
//! admission, images being read pinned). This module adds what makes N concurrent downloads read
//! each block from the store once: the table of fills under way. A download that needs a block
//! that is not present either joins the fill under way for it ([`Found::Joined`], counted as
//! coalesced) or starts one ([`Found::Started`]); the fill itself runs as a task of its own
//! (`server::cached`), so a download that leaves does not stop it, and every waiter gets the
//! verified bytes the moment the block is complete ([`Fill::wait`]), before it is written. A
//! fill's entry stays in the table until its block is on disk (or known not to be kept), so a
//! download never starts a second read of a block in between.
//!
//! Waits cross worker threads: a fill's waiters are woken through their wakers, which reach
//! each worker's runtime (compio wakes a runtime from another thread through its driver), and
//! are called with no lock held (`Waiters`: a wakeup may wait for the other worker to drain
//! its queue). The table is one mutex, held for bookkeeping only.

pub mod blocks;

use crate::metrics::Metrics;
use shared::image::ImageId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Images whose block hashes are remembered at most (each is a few KiB).
const MAX_MAPS: usize = 4096;

/// The block hashes recorded with an image's data.
#[derive(Debug)]
pub struct BlockMap {
    /// Bytes per block; 0: none recorded (the image is cached by a [`Sequential`] fill
    /// verified against `whole`, or streamed).
    pub block_size: u64,
    /// xxh3-64 of each block, in order.
    pub hashes: Vec<u64>,
    /// With no block hashes: the image's own hashes.
    pub whole: Whole,
}

/// The hashes of an image's whole data (`checksum`, `os_hash_algo`, `os_hash_value`).
#[derive(Debug, Clone, Default)]
pub struct Whole {
    /// md5 hex.
    pub checksum: Option<String>,
    /// The secure hash's algorithm and hex value.
    pub secure: Option<(shared::image::HashAlgo, String)>,
}

/// Where a [`Sequential`] fill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Blocks read so far (`0..landed` have landed; the last block lands only once the
    /// whole image matched its hashes).
    pub landed: u64,
    /// `Some(true)`: every block read and the image verified; `Some(false)`: it failed (a
    /// store error on every location, or the image did not match its hashes).
    pub ended: Option<bool>,
}

/// A fill of a whole image that has no block hashes: read in order from the store, written
/// block by block, verified at its end against the image's `checksum` and `os_hash_value`.
/// Downloads follow it: each block once it landed (from its file), the last one only after the
/// verification, so a download of an image that turns out bad is cut, never completed.
#[derive(Debug)]
pub struct Sequential {
    progress: Mutex<Progress>,
    moved: Waiters,
    /// Bytes per block.
    pub block_size: u64,
}

impl Sequential {
    fn new(block_size: u64) -> Sequential {
        Sequential {
            progress: Mutex::new(Progress {
                landed: 0,
                ended: None,
            }),
            moved: Waiters::default(),
            block_size,
        }
    }

    /// Where the fill is now.
    pub fn progress(&self) -> Progress {
        *lock(&self.progress)
    }

    /// Blocks `0..landed` have landed.
    pub fn land(&self, landed: u64) {
        lock(&self.progress).landed = landed;
        self.moved.wake_all();
    }

    /// The fill ended, verified or not.
    pub fn end(&self, verified: bool) {
        lock(&self.progress).ended = Some(verified);
        self.moved.wake_all();
    }

    /// Waits up to `limit` until block `index` landed or the fill ended; where it is then.
    pub async fn wait_for(&self, index: u64, limit: Duration) -> Progress {
        let there = || {
            let now = self.progress();
            (now.landed > index || now.ended.is_some()).then_some(now)
        };
        match self.moved.until(limit, there).await {
            Some(p) => p,
            None => self.progress(),
        }
    }
}

impl BlockMap {
    /// Whether the map describes data of `size` bytes (a block per `block_size`, the last
    /// one shorter).
    pub fn covers(&self, size: u64) -> bool {
        self.block_size > 0
            && self.hashes.len() as u64 == shared::blocks::count(size, self.block_size)
    }

    /// The length of block `index` of data of `size` bytes.
    pub fn block_len(&self, index: u64, size: u64) -> u64 {
        (size - index * self.block_size).min(self.block_size)
    }
}

/// What a fill came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Still reading.
    Running,
    /// The block's verified bytes.
    Ready(Arc<Vec<u8>>),
    /// No location gave the block's bytes.
    Failed,
}

/// The tasks waiting for a fill, woken with no lock held. They may run on other workers'
/// threads, whose queues of wakeups from other threads are bounded: waking one whose queue is
/// full waits until that worker drains it, which it cannot do while it needs a lock the waking
/// thread holds (event_listener wakes with its list locked: with 256 followers of one fill on
/// two workers, both deadlocked).
#[derive(Debug, Default)]
struct Waiters {
    wakers: Mutex<Vec<std::task::Waker>>,
}

impl Waiters {
    fn register(&self, waker: &std::task::Waker) {
        let mut wakers = lock(&self.wakers);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for w in wakers {
            w.wake();
        }
    }

    /// Waits up to `limit` until `ready` gives a value (checked again after each wakeup, and
    /// after registering, so that no wakeup is lost); `None` at the limit.
    async fn until<T>(&self, limit: Duration, ready: impl Fn() -> Option<T>) -> Option<T> {
        let wait = std::future::poll_fn(|cx| {
            if let Some(v) = ready() {
                return std::task::Poll::Ready(v);
            }
            self.register(cx.waker());
            match ready() {
                Some(v) => std::task::Poll::Ready(v),
                None => std::task::Poll::Pending,
            }
        });
        compio::time::timeout(limit, wait).await.ok()
    }
}

/// One block being filled: its outcome, and its waiters.
#[derive(Debug)]
pub struct Fill {
    outcome: Mutex<Outcome>,
    done: Waiters,
}

impl Fill {
    fn new() -> Fill {
        Fill {
            outcome: Mutex::new(Outcome::Running),
            done: Waiters::default(),
        }
    }

    fn outcome(&self) -> Outcome {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes the outcome and wakes every waiter.
    pub fn finish(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
        self.done.wake_all();
    }

    /// Waits up to `limit` for the fill to end; [`Outcome::Running`] if it did not.
    pub async fn wait(&self, limit: Duration) -> Outcome {
        let ended = || Some(self.outcome()).filter(|o| !matches!(o, Outcome::Running));
        match self.done.until(limit, ended).await {
            Some(o) => o,
            None => self.outcome(),
        }
    }
}

/// What [`Cache::find`] found for a block.
#[derive(Debug)]
pub enum Found {
    /// On disk; `verified` false: found at start, not read back yet.
    Present(std::fs::File, bool),
    /// Another download's fill is under way: wait for it.
    Joined(Arc<Fill>),
    /// A fill was registered for the caller to run (then [`Cache::filled`]).
    Started(Arc<Fill>),
    /// As many fills as allowed are under way: read the store directly.
    Busy,
}

/// The cache's settings (from `[image_cache]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `image_cache_dir`.
    pub dir: std::path::PathBuf,
    /// `image_cache_max_size`.
    pub max_bytes: u64,
    /// `image_cache_wait_ms`.
    pub wait: Duration,
    /// `image_cache_stall_time`.
    pub stall: Duration,
    /// `image_cache_readahead_blocks`.
    pub readahead: u64,
    /// `image_cache_max_fills`.
    pub max_fills: usize,
    /// `image_cache_audit_bytes_per_second` (0: no auditor).
    pub audit_rate: u64,
    /// `image_cache_block_size`: the blocks of images cached without block hashes.
    pub block_size: u64,
}

impl Settings {
    /// The settings, when the configuration turns the cache on.
    pub fn from_config(c: &shared::config::ImageCache) -> Option<Settings> {
        Some(Settings {
            dir: c.image_cache_dir.clone()?,
            max_bytes: c.image_cache_max_size,
            wait: Duration::from_millis(c.image_cache_wait_ms),
            stall: Duration::from_secs(c.image_cache_stall_time),
            readahead: c.image_cache_readahead_blocks,
            max_fills: c.image_cache_max_fills,
            audit_rate: c.image_cache_audit_bytes_per_second,
            block_size: c.image_cache_block_size,
        })
    }
}

/// The data plane's block cache.
#[derive(Debug)]
pub struct Cache {
    /// The blocks on disk.
    pub blocks: blocks::BlockStore,
    /// Its settings.
    pub settings: Settings,
    fills: Mutex<HashMap<(ImageId, u64), Arc<Fill>>>,
    maps: Mutex<HashMap<ImageId, Arc<BlockMap>>>,
    /// Locations that returned wrong bytes: tried last from then on.
    suspects: Mutex<HashSet<(ImageId, String)>>,
    /// Images being prefetched here now (the queue itself is this node's `prefetch` jobs, in
    /// the control plane's database).
    queued: Mutex<Vec<ImageId>>,
    /// Wakes the job runner when a prefetch was queued.
    jobs: event_listener::Event,
    /// Fills of whole images without block hashes, under way.
    sequential: Mutex<HashMap<ImageId, Arc<Sequential>>>,
    /// Where the cache's own counters go (worker 0's slot; any thread adds to it).
    pub metrics: Metrics,
}

impl Cache {
    /// Opens the cache (rebuilding its index from `settings.dir`).
    pub fn open(settings: Settings, metrics: Metrics) -> std::io::Result<Cache> {
        let blocks = blocks::BlockStore::open(&settings.dir, settings.max_bytes)?;
        let cache = Cache {
            blocks,
            settings,
            fills: Mutex::new(HashMap::new()),
            maps: Mutex::new(HashMap::new()),
            suspects: Mutex::new(HashSet::new()),
            queued: Mutex::new(Vec::new()),
            jobs: event_listener::Event::new(),
            sequential: Mutex::new(HashMap::new()),
            metrics,
        };
        cache.publish();
        Ok(cache)
    }

    /// Sets the cache's gauges (bytes held, budget, evictions).
    pub fn publish(&self) {
        self.metrics.cache_state(
            self.blocks.used(),
            self.settings.max_bytes,
            self.blocks.evictions(),
        );
    }

    /// The block hashes of `image`, if known here.
    pub fn map(&self, image: ImageId) -> Option<Arc<BlockMap>> {
        lock(&self.maps).get(&image).cloned()
    }

    /// Remembers the block hashes of `image` (an image's data never changes once active).
    pub fn remember(&self, image: ImageId, map: BlockMap) -> Arc<BlockMap> {
        let map = Arc::new(map);
        let mut maps = lock(&self.maps);
        if maps.len() >= MAX_MAPS {
            maps.clear();
        }
        maps.insert(image, map.clone());
        map
    }

    /// Block `index` (of `len` bytes) of `image`: present, being filled, or registered as a
    /// fill for the caller to run. All under the table's lock, the table looked at before the
    /// index; a fill leaves the table only after its block is recorded present, so no two fills
    /// of one block run at once.
    pub fn find(&self, image: ImageId, index: u64, len: u64) -> Found {
        let mut fills = lock(&self.fills);
        if let Some(f) = fills.get(&(image, index)) {
            return Found::Joined(f.clone());
        }
        if let Some((file, verified)) = self.blocks.open_block(image, index, len) {
            return Found::Present(file, verified);
        }
        if fills.len() >= self.settings.max_fills {
            return Found::Busy;
        }
        let f = Arc::new(Fill::new());
        fills.insert((image, index), f.clone());
        Found::Started(f)
    }

    /// Registers a fill of block `index` ahead of need (read-ahead), if it is neither present
    /// nor being filled and fills are not near their limit (read-ahead never takes the last
    /// places from downloads that need a block now).
    pub fn prefetch(&self, image: ImageId, index: u64, len: u64) -> Option<Arc<Fill>> {
        let mut fills = lock(&self.fills);
        if fills.len() + 2 > self.settings.max_fills
            || fills.contains_key(&(image, index))
            || self.blocks.has(image, index, len)
        {
            return None;
        }
        let f = Arc::new(Fill::new());
        fills.insert((image, index), f.clone());
        Some(f)
    }

    /// The sequential fill of `image` under way, or a new one (`true`: the caller runs it,
    /// then calls [`Cache::sequential_ended`]).
    pub fn sequential(&self, image: ImageId) -> (Arc<Sequential>, bool) {
        let mut table = lock(&self.sequential);
        if let Some(s) = table.get(&image) {
            return (s.clone(), false);
        }
        let s = Arc::new(Sequential::new(self.settings.block_size));
        table.insert(image, s.clone());
        (s, true)
    }

    /// The sequential fill of `image` ended (after [`Sequential::end`]).
    pub fn sequential_ended(&self, image: ImageId) {
        lock(&self.sequential).remove(&image);
        self.publish();
    }

    /// Whether a fill of a block of `image` is under way (its block may not be on disk yet).
    pub fn filling(&self, image: ImageId) -> bool {
        lock(&self.fills).keys().any(|(i, _)| *i == image)
            || lock(&self.sequential).contains_key(&image)
    }

    /// A fill ended (its block stored, or not kept, or failed): it leaves the table.
    pub fn filled(&self, image: ImageId, index: u64) {
        lock(&self.fills).remove(&(image, index));
        self.publish();
    }

    /// Marks a location of `image` as having returned wrong bytes.
    pub fn suspect(&self, image: ImageId, url: &str) {
        lock(&self.suspects).insert((image, url.to_owned()));
    }

    /// Whether a location of `image` returned wrong bytes before.
    pub fn is_suspect(&self, image: ImageId, url: &str) -> bool {
        lock(&self.suspects).contains(&(image, url.to_owned()))
    }

    /// Drops everything cached of `image` (its data was deleted, or an operator asked);
    /// whether anything was held.
    pub fn forget(&self, image: ImageId) -> bool {
        lock(&self.maps).remove(&image);
        let held = self.blocks.remove_image(image);
        self.publish();
        held
    }

    /// Wakes the job runner (a prefetch job was queued for this node).
    pub fn nudge(&self) {
        self.jobs.notify(usize::MAX);
    }

    /// What the job runner waits on between claims.
    pub fn nudged(&self) -> event_listener::EventListener {
        self.jobs.listen()
    }

    /// Marks `image` as being prefetched; false if it is already.
    pub fn queue(&self, image: ImageId) -> bool {
        let mut q = lock(&self.queued);
        if q.contains(&image) {
            return false;
        }
        q.push(image);
        true
    }

    /// `image` is not being prefetched any more (done, or taken off the queue: its prefetch
    /// stops); whether it was.
    pub fn dequeue(&self, image: ImageId) -> bool {
        let mut q = lock(&self.queued);
        let before = q.len();
        q.retain(|i| *i != image);
        q.len() != before
    }

    /// Whether `image` is still being prefetched (a prefetch stops once it is not).
    pub fn is_queued(&self, image: ImageId) -> bool {
        lock(&self.queued).contains(&image)
    }

    /// Stops every prefetch; how many were running.
    pub fn clear_queue(&self) -> usize {
        std::mem::take(&mut *lock(&self.queued)).len()
    }

    /// Removes every cached image (a download under way keeps reading the files it opened);
    /// how many were removed.
    pub fn clear(&self) -> usize {
        let removed = self
            .blocks
            .images()
            .into_iter()
            .filter(|c| self.forget(c.image))
            .count();
        self.publish();
        removed
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ImageId {
        "00000000-0000-4000-8000-000000000001".parse().unwrap()
    }

    fn cache(dir: &std::path::Path, max_fills: usize) -> Cache {
        let settings = Settings {
            dir: dir.to_owned(),
            max_bytes: 1 << 20,
            wait: Duration::from_secs(1),
            stall: Duration::from_secs(1),
            readahead: 1,
            max_fills,
            audit_rate: 0,
            block_size: 4,
        };
        Cache::open(settings, Metrics::detached()).unwrap()
    }

    #[test]
    fn one_fill_per_block_and_waiters_get_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 2);
        let Found::Started(fill) = c.find(id(), 0, 4) else {
            panic!("the first finder fills");
        };
        let Found::Joined(joined) = c.find(id(), 0, 4) else {
            panic!("the second joins");
        };
        assert!(Arc::ptr_eq(&fill, &joined));
        assert!(matches!(c.find(id(), 1, 4), Found::Started(_)));
        assert!(
            matches!(c.find(id(), 2, 4), Found::Busy),
            "at the fill limit"
        );
        assert!(c.prefetch(id(), 3, 4).is_none(), "read-ahead keeps room");
        let waiter = std::thread::spawn(move || {
            compio::runtime::Runtime::new()
                .unwrap()
                .block_on(joined.wait(Duration::from_secs(5)))
        });
        std::thread::sleep(Duration::from_millis(50));
        let data = b"abcd".to_vec();
        c.blocks.store(id(), 0, &data).unwrap();
        fill.finish(Outcome::Ready(Arc::new(data)));
        c.filled(id(), 0);
        match waiter.join().unwrap() {
            Outcome::Ready(b) => assert_eq!(&b[..], b"abcd"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.find(id(), 0, 4), Found::Present(_, true)));
    }

    #[test]
    fn a_wait_ends_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), 2);
        let Found::Started(fill) = c.find(id(), 0, 4) else {
            panic!()
        };
        let out = compio::runtime::Runtime::new()
            .unwrap()
            .block_on(fill.wait(Duration::from_millis(30)));
        assert!(matches!(out, Outcome::Running));
    }
}
