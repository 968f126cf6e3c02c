//! The image read cache: domain images by id, kept by [`super::images`] so that the hot reads
//! (image show, the data plane's download authorization, list pages) skip the database, or
//! most of it.
//!
//! Modes (`[database] image_cache`, see [`ImageCacheMode`]):
//! - **exclusive** (the default on SQLite, whose file belongs to one glint node): a cached
//!   image is served without asking the database at all.
//! - **shared** (the default on PostgreSQL and MySQL, where other nodes may write): the image
//!   row is read every time — one indexed query — and the cached tags, properties and
//!   locations are reused while the row's `version` is the cached one (every write of tags,
//!   properties or locations bumps it), which saves the other three queries.
//! - **off**.
//!
//! Coherence inside this process: every write to an image goes through [`super::images`],
//! which calls [`ImageCache::invalidate`] after its transaction ends. A reader that read the
//! database *before* that write committed must not put its stale copy in the cache *after*
//! the invalidation. So each id maps to one of [`STRIPES`] counters behind small mutexes:
//! [`ImageCache::invalidate`] bumps the counter and removes the entry under the stripe's lock;
//! a reader notes the counter ([`ImageCache::ticket`]) before it reads the database and
//! [`ImageCache::fill`] inserts only if the counter has not moved, under the same lock.
//!
//! Memory is bounded by `image_cache_bytes`, weighed by the sizes of each image's strings;
//! eviction is quick_cache's (S3-FIFO-like: one-off reads of cold images do not push out the
//! images everyone asks for).

use crate::domain::Image;
use shared::config::ImageCacheMode;
use shared::image::ImageId;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Number of invalidation stripes.
pub const STRIPES: usize = 64;

/// How cached images may be used (the configured mode, with `auto` resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coherence {
    /// Hits are served without asking the database.
    Exclusive,
    /// The row is re-read; tags and properties are reused while the version matches.
    Shared,
    /// Nothing is cached.
    Off,
}

impl Coherence {
    /// Resolves a configured mode for a backend (`auto`: exclusive on SQLite, else shared).
    pub fn resolve(mode: ImageCacheMode, backend: super::Backend) -> Coherence {
        match mode {
            ImageCacheMode::Off => Coherence::Off,
            ImageCacheMode::Exclusive => Coherence::Exclusive,
            ImageCacheMode::Shared => Coherence::Shared,
            ImageCacheMode::Auto if backend == super::Backend::Sqlite => Coherence::Exclusive,
            ImageCacheMode::Auto => Coherence::Shared,
        }
    }

    /// The configuration word for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Coherence::Exclusive => "exclusive",
            Coherence::Shared => "shared",
            Coherence::Off => "off",
        }
    }
}

#[derive(Debug, Clone)]
struct Weigh;

impl quick_cache::Weighter<ImageId, Arc<Image>> for Weigh {
    fn weight(&self, _id: &ImageId, image: &Arc<Image>) -> u64 {
        let s = |v: &Option<String>| v.as_ref().map_or(0, String::len);
        let props: usize = image
            .properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        let tags: usize = image.tags.iter().map(|t| t.len() + 32).sum();
        let locations: usize = image
            .locations
            .iter()
            .map(|l| l.url.len() + l.store.len() + std::mem::size_of_val(l))
            .sum();
        (std::mem::size_of::<Image>()
            + s(&image.name)
            + s(&image.owner)
            + s(&image.checksum)
            + s(&image.os_hash_algo)
            + s(&image.os_hash_value)
            + s(&image.container_format)
            + s(&image.disk_format)
            + locations
            + props
            + tags) as u64
    }
}

/// What a reader noted before reading the database (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    epoch: u64,
}

/// Every stripe's counter, noted before a read whose ids are not known in advance (a list
/// page); see [`ImageCache::fill_after`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    epochs: [u64; STRIPES],
}

/// Hit and miss counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache (in shared mode: with the row's version confirmed).
    pub hits: u64,
    /// Reads that had to load the image from the database.
    pub misses: u64,
}

/// The cache (one per [`super::Db`]; cheap to share).
pub struct ImageCache {
    coherence: Coherence,
    images: quick_cache::sync::Cache<ImageId, Arc<Image>, Weigh>,
    stripes: Box<[Mutex<u64>]>,
    hasher: std::collections::hash_map::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ImageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageCache")
            .field("coherence", &self.coherence)
            .field("len", &self.images.len())
            .field("weight", &self.images.weight())
            .finish()
    }
}

impl ImageCache {
    /// A cache with this coherence holding up to about `capacity_bytes` of images.
    pub fn new(coherence: Coherence, capacity_bytes: u64) -> ImageCache {
        let capacity_bytes = capacity_bytes.max(64 * 1024);
        // quick_cache sizes its tables from the expected number of entries (~1 KiB each).
        let estimated = (capacity_bytes / 1024).clamp(64, 1 << 20) as usize;
        ImageCache {
            coherence,
            images: quick_cache::sync::Cache::with_weighter(estimated, capacity_bytes, Weigh),
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            hasher: Default::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// How entries may be used.
    pub fn coherence(&self) -> Coherence {
        self.coherence
    }

    fn stripe(&self, id: ImageId) -> usize {
        (self.hasher.hash_one(id) as usize) % STRIPES
    }

    fn lock(&self, stripe: usize) -> std::sync::MutexGuard<'_, u64> {
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The cached image, if any (whatever the mode; the caller decides whether it may be
    /// served as it is).
    pub fn get(&self, id: ImageId) -> Option<Arc<Image>> {
        if self.coherence == Coherence::Off {
            return None;
        }
        self.images.get(&id)
    }

    /// Notes the invalidation counter of `id`'s stripe; call before reading the database.
    pub fn ticket(&self, id: ImageId) -> Ticket {
        let stripe = self.stripe(id);
        Ticket {
            stripe,
            epoch: *self.lock(stripe),
        }
    }

    /// Caches `image` as read from the database, unless a write to it (or to an image in the
    /// same stripe) finished since `ticket` was taken.
    pub fn fill(&self, ticket: Ticket, image: &Arc<Image>) {
        if self.coherence == Coherence::Off {
            return;
        }
        let epoch = self.lock(ticket.stripe);
        if *epoch == ticket.epoch {
            self.images.insert(image.id, image.clone());
        }
    }

    /// Notes every stripe's counter; call before a read whose ids are not known yet.
    pub fn snapshot(&self) -> Snapshot {
        let mut epochs = [0; STRIPES];
        for (s, e) in epochs.iter_mut().enumerate() {
            *e = *self.lock(s);
        }
        Snapshot { epochs }
    }

    /// Like [`ImageCache::fill`], for an image read after `snapshot` was taken.
    pub fn fill_after(&self, snapshot: &Snapshot, image: &Arc<Image>) {
        let stripe = self.stripe(image.id);
        self.fill(
            Ticket {
                stripe,
                epoch: snapshot.epochs[stripe],
            },
            image,
        );
    }

    /// Forgets `id` after a write to it ended (committed or not).
    pub fn invalidate(&self, id: ImageId) {
        let mut epoch = self.lock(self.stripe(id));
        *epoch += 1;
        self.images.remove(&id);
    }

    /// Counts a read answered from the cache.
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a read that went to the database.
    pub(crate) fn miss(&self) {
        if self.coherence != Coherence::Off {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Images held now.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::sample;

    #[test]
    fn a_fill_racing_a_write_is_dropped() {
        let cache = ImageCache::new(Coherence::Exclusive, 1 << 20);
        let img = Arc::new(sample());
        // a reader notes the counter, then a write ends before it fills: its copy is stale
        let ticket = cache.ticket(img.id);
        cache.invalidate(img.id);
        cache.fill(ticket, &img);
        assert!(cache.get(img.id).is_none());
        // a reader that started after the write fills normally
        let ticket = cache.ticket(img.id);
        cache.fill(ticket, &img);
        assert_eq!(cache.get(img.id).as_deref(), Some(&*img));
        cache.invalidate(img.id);
        assert!(cache.get(img.id).is_none());
        // the same for a read noted with a snapshot of every stripe
        let snapshot = cache.snapshot();
        cache.invalidate(img.id);
        cache.fill_after(&snapshot, &img);
        assert!(cache.is_empty());
        let snapshot = cache.snapshot();
        cache.fill_after(&snapshot, &img);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn off_caches_nothing_and_memory_is_bounded() {
        let off = ImageCache::new(Coherence::Off, 1 << 20);
        let img = Arc::new(sample());
        off.fill(off.ticket(img.id), &img);
        assert!(off.get(img.id).is_none());

        let small = ImageCache::new(Coherence::Exclusive, 64 * 1024);
        for _ in 0..2000 {
            let mut i = sample();
            i.id = ImageId::new_random();
            i.properties.insert("k".into(), "v".repeat(100));
            let i = Arc::new(i);
            small.fill(small.ticket(i.id), &i);
        }
        assert!(small.len() < 2000, "{}", small.len());
        assert!(small.images.weight() <= 64 * 1024);
    }

    #[test]
    fn auto_resolves_per_backend() {
        use super::super::Backend;
        assert_eq!(
            Coherence::resolve(ImageCacheMode::Auto, Backend::Sqlite),
            Coherence::Exclusive
        );
        for b in [Backend::Postgres, Backend::Mysql] {
            assert_eq!(
                Coherence::resolve(ImageCacheMode::Auto, b),
                Coherence::Shared
            );
        }
        assert_eq!(
            Coherence::resolve(ImageCacheMode::Off, Backend::Sqlite),
            Coherence::Off
        );
    }
}
