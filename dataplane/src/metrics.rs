//! The data plane's counters: one slot per worker in a shared-memory file
//! (`run/dataplane.metrics`, layout in `shared::metrics::shm`), updated with relaxed atomic adds
//! on the worker's own cache lines and summed by the control plane when Prometheus scrapes it.

use shared::metrics::shm::{self, idx};
use std::sync::atomic::{AtomicU64, Ordering};

/// The data plane's routes (label `route`).
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// `PUT …/file`.
    Upload = 0,
    /// `GET …/file`.
    Download = 1,
    /// Everything forwarded to the control plane.
    Forward = 2,
}

/// Who caused a transfer to fail (label `side`): decides whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (went away, sent bad data).
    Client = 0,
    /// The store (full, write denied, I/O).
    Store = 1,
    /// The control plane (unreachable, refused the commit).
    Control = 2,
    /// Our own bug.
    Internal = 3,
}

/// A block cache lookup's result (label `result`, in `shm::CACHE_RESULTS` order).
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// Every block of the range was present.
    Hit = 0,
    /// None was.
    Miss = 1,
    /// Some were.
    Partial = 2,
}

/// Where a block failed verification (label `source`, in `shm::CACHE_SOURCES` order).
#[derive(Debug, Clone, Copy)]
pub enum Corrupt {
    /// A store returned bytes that do not hash to the block's recorded hash.
    Store = 0,
    /// A cached block read back from disk did not.
    Disk = 1,
    /// The auditor found an image's data in a filesystem store that did not.
    LocalStore = 2,
}

/// Why a block read bypassed the cache (label `reason`, in `shm::CACHE_REASONS` order).
#[derive(Debug, Clone, Copy)]
pub enum Uncached {
    /// Verified, but not kept: no room, every other image pinned.
    Full = 0,
    /// Waited longer than `image_cache_wait_ms` for another's fill; read from the store.
    Stalled = 1,
    /// `image_cache_max_fills` fills under way; read from the store.
    Busy = 2,
    /// The image has no block hashes: streamed from the store.
    Unhashed = 3,
}

/// A transfer in flight ([`Metrics::in_flight`]); dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    slot: &'static AtomicU64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker's counters.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    slot: &'static [AtomicU64],
}

impl Metrics {
    /// Counters that go nowhere (tests, or when the file cannot be created).
    pub fn detached() -> Self {
        let slot: &'static [AtomicU64] =
            Box::leak((0..shm::SLOT_COUNTERS).map(|_| AtomicU64::new(0)).collect());
        Metrics { slot }
    }

    /// Maps `run_dir/dataplane.metrics` and returns one [`Metrics`] per worker; `stores` are
    /// the node's store ids in configuration order (the `store` labels).
    pub fn create<'a>(
        run_dir: &std::path::Path,
        workers: usize,
        stores: impl IntoIterator<Item = &'a str>,
    ) -> std::io::Result<Vec<Metrics>> {
        let header = shm::header(workers, stores);
        let words = crate::io::map_counters(
            &run_dir.join(shm::FILE_NAME),
            shm::file_len(workers),
            &header,
        )?;
        let first = shm::HEADER_BYTES / 8;
        Ok((0..workers)
            .map(|w| {
                let start = first + w * shm::SLOT_COUNTERS;
                Metrics {
                    slot: &words[start..start + shm::SLOT_COUNTERS],
                }
            })
            .collect())
    }

    fn add(&self, i: usize, n: u64) {
        self.slot[i].fetch_add(n, Ordering::Relaxed);
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.add(idx::CONNECTIONS, 1);
        self.add(idx::ACTIVE, 1);
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        self.slot[idx::ACTIVE].fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused at the limit.
    pub fn connection_rejected(&self) {
        self.add(idx::REJECTED, 1);
    }

    /// A response with `status` was sent on `route`.
    pub fn request(&self, route: Route, status: u16) {
        self.add(
            shm::request_index(route as usize, shm::class_index(status)),
            1,
        );
    }

    /// The worker accepts at most `n` connections (set once at start).
    pub fn connection_limit(&self, n: usize) {
        self.slot[idx::CONNECTION_LIMIT].store(n as u64, Ordering::Relaxed);
    }

    /// Upload bytes received for store slot `store` ([`crate::store::Stores::metric_slot`];
    /// counted as they arrive: a dropped upload counts what it moved).
    pub fn bytes_in(&self, store: usize, n: u64) {
        self.add(idx::STORE_BYTES + 2 * store, n);
    }

    /// Download bytes sent from store slot `store` (counted as they go: a dropped download
    /// counts what it moved).
    pub fn bytes_out(&self, store: usize, n: u64) {
        self.add(idx::STORE_BYTES + 2 * store + 1, n);
    }

    /// One sample of `took` into the latency histogram starting at `at`.
    fn latency(&self, at: usize, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        shm::record(
            &self.slot[at..at + shm::HISTOGRAM_COUNTERS],
            &shm::LATENCY_BOUNDS_US,
            us,
        );
    }

    /// A request on `route` answered `status` took `took`, from its head to the last byte
    /// answered.
    pub fn request_duration(&self, route: Route, status: u16, took: std::time::Duration) {
        self.latency(
            shm::duration_index(route as usize, shm::class_index(status)),
            took,
        );
    }

    /// An upload or download (`route`) ended having moved `bytes` image bytes.
    pub fn transfer_size(&self, route: Route, bytes: u64) {
        let at = idx::TRANSFER_SIZE + (route as usize).min(1) * shm::SIZE_COUNTERS;
        shm::record(
            &self.slot[at..at + shm::SIZE_COUNTERS],
            &shm::SIZE_BOUNDS,
            bytes,
        );
    }

    /// An upload's content was inspected and found to be `format`.
    pub fn inspected(&self, format: inspect::Format) {
        if let Some(i) = inspect::Format::ALL.iter().position(|f| *f == format) {
            self.add(idx::INSPECTED + i, 1);
        }
    }

    /// An upload was refused by inspection.
    pub fn upload_refused(&self, refusal: &inspect::Refusal) {
        let reason = refusal.reason();
        if let Some(i) = inspect::Refusal::REASONS.iter().position(|r| *r == reason) {
            self.add(idx::REFUSED + i, 1);
        }
    }

    /// A channel round trip of request kind `kind` (a `Request::kind_index`) took `took`.
    pub fn channel_round_trip(&self, kind: usize, took: std::time::Duration) {
        self.latency(idx::CHANNEL + kind * shm::HISTOGRAM_COUNTERS, took);
    }

    /// A download's answer head went out `took` after its request head arrived.
    pub fn time_to_first_byte(&self, took: std::time::Duration) {
        self.latency(idx::TTFB, took);
    }

    /// A download that was granted failed.
    pub fn download_failed(&self, side: Side) {
        self.add(idx::DOWNLOAD_FAILURES + side as usize, 1);
    }

    /// A transfer on `route` (upload or download) starts moving bytes; it counts as in
    /// flight until the guard is dropped.
    pub fn in_flight(&self, route: Route) -> InFlight {
        let i = idx::IN_FLIGHT + (route as usize).min(1);
        self.add(i, 1);
        InFlight {
            slot: &self.slot[i],
        }
    }

    /// An upload failed.
    pub fn upload_failed(&self, side: Side) {
        self.add(idx::FAILURES + side as usize, 1);
    }

    /// A download location failed and the next one was tried.
    pub fn download_failover(&self) {
        self.add(idx::FAILOVERS, 1);
    }

    /// A download from a remote store was looked up in the block cache.
    pub fn cache_lookup(&self, result: Lookup) {
        self.add(idx::CACHE_LOOKUPS + result as usize, 1);
    }

    /// A block read joined a fill already under way.
    pub fn cache_coalesced(&self) {
        self.add(idx::CACHE_COALESCED, 1);
    }

    /// A fill read `n` bytes from a store.
    pub fn cache_fill_bytes(&self, n: u64) {
        self.add(idx::CACHE_FILL_BYTES, n);
    }

    /// A download sent `n` bytes of verified cache blocks.
    pub fn cache_served(&self, n: u64) {
        self.add(idx::CACHE_SERVED_BYTES, n);
    }

    /// A block failed verification.
    pub fn cache_corrupt(&self, source: Corrupt) {
        self.add(idx::CACHE_VERIFY_FAILURES + source as usize, 1);
    }

    /// A block read bypassed the cache.
    pub fn cache_uncached(&self, reason: Uncached) {
        self.add(idx::CACHE_UNCACHED + reason as usize, 1);
    }

    /// The cache's state: bytes held, budget, evictions since start (set, not added: the
    /// cache records them in one slot).
    pub fn cache_state(&self, used: u64, max: u64, evictions: u64) {
        self.slot[idx::CACHE_BYTES].store(used, Ordering::Relaxed);
        self.slot[idx::CACHE_MAX_BYTES].store(max, Ordering::Relaxed);
        self.slot[idx::CACHE_EVICTIONS].store(evictions, Ordering::Relaxed);
    }

    /// Filling one block took `took`.
    pub fn cache_fill_took(&self, took: std::time::Duration) {
        self.latency(idx::CACHE_FILL_DURATION, took);
    }

    /// The auditor read `n` bytes of cached blocks back.
    pub fn cache_audited(&self, n: u64) {
        self.add(idx::CACHE_AUDITED, n);
    }

    /// The auditor finished a pass over the cache.
    pub fn cache_audit_pass(&self) {
        self.add(idx::CACHE_AUDIT_PASSES, 1);
    }

    /// A download waited `took` for a block being filled.
    pub fn cache_wait_took(&self, took: std::time::Duration) {
        self.latency(idx::CACHE_WAIT_DURATION, took);
    }

    /// A job of `kind` (a [`shm::JOB_KINDS`] name) ended: done, or failed
    /// (to be retried).
    pub fn job(&self, kind: &str, done: bool) {
        use shm::{JOB_KINDS, job_index};
        if let Some(k) = JOB_KINDS.iter().position(|n| *n == kind) {
            self.add(job_index(k, done), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_land_in_the_file_the_control_plane_reads() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics::create(dir.path(), 2, ["file"]).unwrap();
        m[0].request(Route::Download, 200);
        m[1].request(Route::Download, 206);
        m[1].request(Route::Upload, 503);
        m[0].bytes_out(0, 5);
        m[1].bytes_out(shm::store_slot(None), 1); // a store the node lacks: `other`
        m[0].request_duration(Route::Download, 206, std::time::Duration::from_micros(300));
        m[1].connection_opened();
        m[1].upload_failed(Side::Store);
        let bytes = std::fs::read(dir.path().join(shm::FILE_NAME)).unwrap();
        let totals = shm::parse(&bytes).unwrap();
        assert_eq!(totals.stores, ["file"]);
        let t = &totals.counters;
        assert_eq!(t[idx::REQUESTS + shm::CLASSES.len()], 2);
        assert_eq!(t[idx::REQUESTS + 3], 1);
        assert_eq!(t[idx::STORE_BYTES + 1], 5);
        assert_eq!(t[idx::STORE_BYTES + 2 * (shm::MAX_STORES - 1) + 1], 1);
        assert_eq!(t[shm::duration_index(1, shm::class_index(206)) + 2], 1);
        assert_eq!(t[idx::ACTIVE], 1);
        assert_eq!(t[idx::FAILURES + 1], 1);
    }
}
