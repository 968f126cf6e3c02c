//! Metric names shared by both planes, the tests and `grafana/`.
//!
//! Shape: `<ns>_<subsystem>_<what>_<unit>`; counters end in `_total`. Labels are bounded:
//! method, route template, status, direction, store, result, side — never an id.

/// Build information gauge, label `version`.
pub const BUILD_INFO: &str = "glint_build_info";
/// Control-plane API requests, labels `method`, `route`, `status`.
pub const API_REQUESTS_TOTAL: &str = "glint_api_requests_total";
/// Control-plane API request duration histogram, labels `method`, `route`.
pub const API_REQUEST_DURATION_SECONDS: &str = "glint_api_request_duration_seconds";
/// Channel requests handled by the control plane, labels `kind`, `result`.
pub const CHANNEL_REQUESTS_TOTAL: &str = "glint_channel_requests_total";
/// Upload leases reverted because their channel connection closed.
pub const CHANNEL_LEASES_REVERTED_TOTAL: &str = "glint_channel_leases_reverted_total";
/// Image status transitions committed, labels `from`, `to`.
pub const IMAGE_TRANSITIONS_TOTAL: &str = "glint_db_image_transitions_total";
/// Image reads by the control plane's image cache, label `result` (`hit`, `miss`).
pub const IMAGE_CACHE_LOOKUPS_TOTAL: &str = "glint_db_image_cache_lookups_total";
/// Images held in the control plane's image cache.
pub const IMAGE_CACHE_ENTRIES: &str = "glint_db_image_cache_entries";
/// Plane restarts by the supervisor, label `plane`.
pub const SUPERVISOR_RESTARTS_TOTAL: &str = "glint_supervisor_restarts_total";
/// Time the control plane took to answer a channel request, histogram, label `kind`.
pub const CHANNEL_REQUEST_DURATION_SECONDS: &str = "glint_channel_request_duration_seconds";
/// Database connections of the control plane's pool, label `state` (idle, in_use).
pub const DB_POOL_CONNECTIONS: &str = "glint_db_pool_connections";
/// Most connections the control plane's pool opens (gauge).
pub const DB_POOL_MAX_CONNECTIONS: &str = "glint_db_pool_max_connections";
/// Tasks waiting for a connection of the control plane's pool now (gauge).
pub const DB_POOL_WAITERS: &str = "glint_db_pool_waiters";
/// How long taking a connection from the pool took, histogram.
pub const DB_POOL_ACQUIRE_DURATION_SECONDS: &str = "glint_db_pool_acquire_duration_seconds";
/// Images by status, read from the database every few seconds (not at each scrape), label
/// `status`.
pub const IMAGES: &str = "glint_db_images";
/// Size of a filesystem store's file system, label `store`.
pub const STORE_CAPACITY_BYTES: &str = "glint_store_capacity_bytes";
/// Space left on a filesystem store's file system (for unprivileged writers), label `store`.
pub const STORE_FREE_BYTES: &str = "glint_store_free_bytes";
/// Image data at rest in a store (sum of the sizes of its active locations' images), label
/// `store`, counted with the images per status.
pub const STORE_IMAGE_BYTES: &str = "glint_store_image_bytes";
/// Scrubber passes, label `result` (ok, failed).
pub const SCRUBBER_RUNS_TOTAL: &str = "glint_scrubber_runs_total";
/// Keystone token validations the control plane asked Keystone for, label `outcome`
/// (valid, invalid, unavailable).
pub const KEYSTONE_VALIDATIONS_TOTAL: &str = "glint_keystone_validations_total";
/// How long asking Keystone to validate a token took, histogram, label `outcome`.
pub const KEYSTONE_VALIDATION_DURATION_SECONDS: &str = "glint_keystone_validation_duration_seconds";
/// Token validations answered by the token cache (hit) or sent to Keystone (miss), label
/// `result`.
pub const KEYSTONE_CACHE_LOOKUPS_TOTAL: &str = "glint_keystone_token_cache_lookups_total";
/// Jobs enqueued for the data plane (through this control plane), label `kind`.
pub const JOBS_ENQUEUED_TOTAL: &str = "glint_db_jobs_enqueued_total";
/// Jobs the data plane reported done, label `kind`.
pub const JOBS_DONE_TOTAL: &str = "glint_db_jobs_done_total";
/// Job attempts the data plane reported failed (each retried after a backoff), label `kind`.
pub const JOBS_FAILED_TOTAL: &str = "glint_db_jobs_failed_total";
/// Jobs not done yet (held, pending or claimed), read from the database at each scrape.
pub const JOBS_OPEN: &str = "glint_db_jobs_open";

/// A latency histogram in atomics with the data plane's buckets ([`shm::LATENCY_BOUNDS_US`]),
/// for a sample recorded from many tasks and rendered at scrape (the control plane's database
/// pool).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counters: [std::sync::atomic::AtomicU64; shm::HISTOGRAM_COUNTERS],
}

impl LatencyHistogram {
    /// Adds one sample.
    pub fn record(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        shm::record(&self.counters, &shm::LATENCY_BOUNDS_US, us);
    }

    /// Renders it as family `name` (with its `# HELP` `help` and `# TYPE`), no labels.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write;
        let v: Vec<u64> = self
            .counters
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        shm::render_histogram(out, name, "", &shm::LATENCY_BOUNDS_US, 1e6, &v);
    }
}

/// What the supervisor publishes: its restart counts, in Prometheus text in a file of the
/// run directory ([`supervisor::FILE_NAME`]) that the control plane's `/metrics` appends, so
/// the counts outlive a control-plane restart (the supervisor owns them).
pub mod supervisor {
    use super::SUPERVISOR_RESTARTS_TOTAL;
    use std::fmt::Write;

    /// The file, in the run directory.
    pub const FILE_NAME: &str = "supervisor.prom";

    /// The pids of glint's processes, `{"supervisor": …, "controlplane": …, "dataplane": …}`,
    /// in the run directory (for the `process_*` metrics).
    pub const PIDS_FILE: &str = "pids.json";

    /// The planes, as the `plane` label has them.
    pub const PLANES: [&str; 2] = ["controlplane", "dataplane"];

    /// The text for restart counts per plane (in [`PLANES`] order).
    pub fn render(restarts: [u64; 2]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP {SUPERVISOR_RESTARTS_TOTAL} Planes restarted by the supervisor after they exited, by plane.\n# TYPE {SUPERVISOR_RESTARTS_TOTAL} counter"
        );
        for (plane, n) in PLANES.iter().zip(restarts) {
            let _ = writeln!(out, "{SUPERVISOR_RESTARTS_TOTAL}{{plane=\"{plane}\"}} {n}");
        }
        out
    }
}

/// Every metric name (for the README table and the dashboard check).
pub const ALL: &[&str] = &[
    dp::CONNECTIONS_TOTAL,
    dp::CONNECTIONS_ACTIVE,
    dp::CONNECTIONS_REJECTED_TOTAL,
    dp::REQUESTS_TOTAL,
    dp::TRANSFER_BYTES_TOTAL,
    dp::UPLOAD_FAILURES_TOTAL,
    dp::DOWNLOAD_FAILOVERS_TOTAL,
    dp::JOBS_TOTAL,
    dp::DOWNLOAD_FAILURES_TOTAL,
    dp::TRANSFERS_IN_FLIGHT,
    dp::REQUEST_DURATION_SECONDS,
    dp::TIME_TO_FIRST_BYTE_SECONDS,
    dp::TRANSFER_SIZE_BYTES,
    dp::CONNECTIONS_LIMIT,
    dp::CHANNEL_ROUND_TRIP_SECONDS,
    dp::UPLOADS_INSPECTED_TOTAL,
    dp::UPLOADS_REFUSED_TOTAL,
    dp::CACHE_LOOKUPS_TOTAL,
    dp::CACHE_COALESCED_TOTAL,
    dp::CACHE_FILL_BYTES_TOTAL,
    dp::CACHE_SERVED_BYTES_TOTAL,
    dp::CACHE_EVICTIONS_TOTAL,
    dp::CACHE_VERIFY_FAILURES_TOTAL,
    dp::CACHE_UNCACHED_TOTAL,
    dp::CACHE_BYTES,
    dp::CACHE_MAX_BYTES,
    dp::CACHE_FILL_DURATION_SECONDS,
    dp::CACHE_WAIT_DURATION_SECONDS,
    dp::CACHE_AUDITED_BYTES_TOTAL,
    dp::CACHE_AUDIT_PASSES_TOTAL,
    BUILD_INFO,
    API_REQUESTS_TOTAL,
    API_REQUEST_DURATION_SECONDS,
    CHANNEL_REQUESTS_TOTAL,
    CHANNEL_LEASES_REVERTED_TOTAL,
    IMAGE_TRANSITIONS_TOTAL,
    IMAGE_CACHE_LOOKUPS_TOTAL,
    IMAGE_CACHE_ENTRIES,
    SUPERVISOR_RESTARTS_TOTAL,
    CHANNEL_REQUEST_DURATION_SECONDS,
    KEYSTONE_VALIDATIONS_TOTAL,
    KEYSTONE_VALIDATION_DURATION_SECONDS,
    KEYSTONE_CACHE_LOOKUPS_TOTAL,
    DB_POOL_CONNECTIONS,
    DB_POOL_MAX_CONNECTIONS,
    DB_POOL_WAITERS,
    DB_POOL_ACQUIRE_DURATION_SECONDS,
    IMAGES,
    STORE_CAPACITY_BYTES,
    STORE_FREE_BYTES,
    STORE_IMAGE_BYTES,
    SCRUBBER_RUNS_TOTAL,
    JOBS_ENQUEUED_TOTAL,
    JOBS_DONE_TOTAL,
    JOBS_FAILED_TOTAL,
    JOBS_OPEN,
];

#[cfg(test)]
mod tests {
    /// Every `glint_*` name a dashboard references must be one we export (histogram series
    /// may add `_bucket`, `_sum`, `_count`).
    #[test]
    fn dashboards_use_only_known_metrics() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("grafana/dashboards exists") {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("glint_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| super::ALL.contains(b)))
                    .unwrap_or(name);
                assert!(
                    super::ALL.contains(&base),
                    "{}: unknown metric {name}",
                    path.display()
                );
                checked += 1;
                rest = &tail[end..];
            }
        }
        assert!(checked > 5, "no metrics found in dashboards");
    }

    /// README's metric table has a row for every metric.
    #[test]
    fn readme_lists_every_metric() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let section = &readme[readme.find("## Metrics").expect("a Metrics section")..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
        let missing: Vec<&str> = super::ALL
            .iter()
            .filter(|name| !rows.iter().any(|r| r.contains(&format!("`{name}`"))))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "not in README's metric table: {missing:?}"
        );
    }
}

/// Data-plane metric names (rendered by the control plane from [`shm`]).
pub mod dp {
    /// Client connections accepted.
    pub const CONNECTIONS_TOTAL: &str = "glint_dp_connections_total";
    /// Client connections open now (gauge).
    pub const CONNECTIONS_ACTIVE: &str = "glint_dp_connections_active";
    /// Connections refused because a worker was at its connection limit.
    pub const CONNECTIONS_REJECTED_TOTAL: &str = "glint_dp_connections_rejected_total";
    /// Requests answered, labels `route` (upload, download, forward) and `status_class`
    /// (2xx, 3xx, 4xx, 5xx).
    pub const REQUESTS_TOTAL: &str = "glint_dp_requests_total";
    /// Image bytes moved, labels `direction` (in = uploads stored, out = downloads sent) and
    /// `store`.
    pub const TRANSFER_BYTES_TOTAL: &str = "glint_dp_transfer_bytes_total";
    /// Uploads that failed, label `side` (client, store, control, internal).
    pub const UPLOAD_FAILURES_TOTAL: &str = "glint_dp_upload_failures_total";
    /// Download locations skipped because their store failed (the next location was tried).
    pub const DOWNLOAD_FAILOVERS_TOTAL: &str = "glint_dp_download_failovers_total";
    /// Jobs the data plane ran for the control plane, labels `kind`, `outcome` (done, failed).
    pub const JOBS_TOTAL: &str = "glint_dp_jobs_total";
    /// Downloads that failed after they were granted, label `side` (client, store, control,
    /// internal).
    pub const DOWNLOAD_FAILURES_TOTAL: &str = "glint_dp_download_failures_total";
    /// Image transfers moving bytes now, label `route` (upload, download).
    pub const TRANSFERS_IN_FLIGHT: &str = "glint_dp_transfers_in_flight";
    /// Data-plane request duration histogram, labels `route`, `status_class`.
    pub const REQUEST_DURATION_SECONDS: &str = "glint_dp_request_duration_seconds";
    /// Downloads' time to first byte histogram, label `route` (download).
    pub const TIME_TO_FIRST_BYTE_SECONDS: &str = "glint_dp_time_to_first_byte_seconds";
    /// Image bytes per upload or download histogram, label `route` (upload, download).
    pub const TRANSFER_SIZE_BYTES: &str = "glint_dp_transfer_size_bytes";
    /// Client connections the data plane accepts at most (gauge).
    pub const CONNECTIONS_LIMIT: &str = "glint_dp_connections_limit";
    /// The data plane's channel round trips histogram, label `kind`.
    pub const CHANNEL_ROUND_TRIP_SECONDS: &str = "glint_dp_channel_round_trip_seconds";
    /// Uploads whose content was inspected, label `format` (what the content is).
    pub const UPLOADS_INSPECTED_TOTAL: &str = "glint_dp_uploads_inspected_total";
    /// Uploads refused by the content inspection, label `reason`.
    pub const UPLOADS_REFUSED_TOTAL: &str = "glint_dp_uploads_refused_total";
    /// Downloads of images in remote stores looked up in the block cache, label `result`
    /// (hit: every block present; miss: none; partial).
    pub const CACHE_LOOKUPS_TOTAL: &str = "glint_dp_cache_lookups_total";
    /// Block reads that joined a fill another download had started (single flight).
    pub const CACHE_COALESCED_TOTAL: &str = "glint_dp_cache_coalesced_total";
    /// Bytes the block cache read from stores to fill blocks.
    pub const CACHE_FILL_BYTES_TOTAL: &str = "glint_dp_cache_fill_bytes_total";
    /// Bytes downloads sent from verified cache blocks (on disk or just filled).
    pub const CACHE_SERVED_BYTES_TOTAL: &str = "glint_dp_cache_served_bytes_total";
    /// Images evicted from the block cache to make room.
    pub const CACHE_EVICTIONS_TOTAL: &str = "glint_dp_cache_evictions_total";
    /// Blocks that did not match their recorded hash, label `source` (store: a store returned
    /// wrong bytes; disk: a cached block read back wrong), discarded.
    pub const CACHE_VERIFY_FAILURES_TOTAL: &str = "glint_dp_cache_verify_failures_total";
    /// Block reads the cache could not take, label `reason` (full: verified but not kept,
    /// every other image pinned; stalled: waited too long for another's fill and read the
    /// store; busy: too many fills at once, read the store; unhashed: the image has no block
    /// hashes, streamed from the store).
    pub const CACHE_UNCACHED_TOTAL: &str = "glint_dp_cache_uncached_total";
    /// Bytes of blocks the cache holds now (gauge).
    pub const CACHE_BYTES: &str = "glint_dp_cache_bytes";
    /// The cache's budget, `image_cache_max_size` (gauge).
    pub const CACHE_MAX_BYTES: &str = "glint_dp_cache_max_bytes";
    /// How long filling one block took (store read, verification, write), histogram.
    pub const CACHE_FILL_DURATION_SECONDS: &str = "glint_dp_cache_fill_duration_seconds";
    /// How long a download waited for a block being filled, histogram.
    pub const CACHE_WAIT_DURATION_SECONDS: &str = "glint_dp_cache_wait_duration_seconds";
    /// Bytes of cached blocks the auditor read back against their hashes.
    pub const CACHE_AUDITED_BYTES_TOTAL: &str = "glint_dp_cache_audited_bytes_total";
    /// Complete passes of the auditor over the cache.
    pub const CACHE_AUDIT_PASSES_TOTAL: &str = "glint_dp_cache_audit_passes_total";
}

/// The shared-memory layout of the data plane's counters: a file in the run directory that the
/// data plane maps and its workers update with relaxed atomic adds (each worker in its own
/// slot, so the hot path shares no cache line), and that the control plane reads and sums at
/// scrape time. Values are little-endian `u64`.
///
/// ```text
/// [0..8) magic "GLINTDPM" | [8..12) version | [12..16) workers | [16..20) stores
/// [64..64+16·256) store ids (a length byte, then up to 255 bytes each)
/// pad to 8192 | slot 0 | slot 1 | …
/// ```
///
/// The file is made anew at each data-plane start, so its counters start again from 0: the
/// data plane's `process_start_time_seconds` changes at the same time, and Prometheus's
/// `rate()`/`increase()` treat the drop as a counter reset.
pub mod shm {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// File name inside the run directory.
    pub const FILE_NAME: &str = "dataplane.metrics";
    /// First 8 bytes of the file.
    pub const MAGIC: [u8; 8] = *b"GLINTDPM";
    /// Layout version (5: 1024 counters per slot, store ids in the header, durations by
    /// status class, bytes per transfer, channel round trips, content inspection, the block
    /// cache).
    pub const VERSION: u32 = 9;
    /// Stores with their own `store` label; the last of them is `other` when a node has more
    /// (or a location names a store this node does not have).
    pub const MAX_STORES: usize = 16;
    /// Bytes of one store id field in the header.
    const STORE_FIELD: usize = 256;
    /// Where the store ids start.
    const STORES_AT: usize = 64;
    /// Bytes before the first slot.
    pub const HEADER_BYTES: usize = 8192;
    /// Counters per worker slot.
    pub const SLOT_COUNTERS: usize = 1024;
    /// Bytes per worker slot.
    pub const SLOT_BYTES: usize = SLOT_COUNTERS * 8;

    const _: () = assert!(STORES_AT + MAX_STORES * STORE_FIELD <= HEADER_BYTES);

    /// Routes of the data plane, for `glint_dp_requests_total{route}`.
    pub const ROUTES: [&str; 3] = ["upload", "download", "forward"];
    /// Status classes, for `glint_dp_requests_total{status_class}`.
    pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
    /// Error sides, for `glint_dp_upload_failures_total{side}`.
    pub const SIDES: [&str; 4] = ["client", "store", "control", "internal"];
    /// Image transfers, for `glint_dp_transfers_in_flight{route}` and the bytes per transfer.
    pub const TRANSFERS: [&str; 2] = ["upload", "download"];
    /// Channel request kinds, for `glint_dp_channel_round_trip_seconds{kind}`.
    pub const CHANNEL_KINDS: [&str; 21] = crate::channel::Request::<String>::KINDS;
    /// Block cache lookup results, for `glint_dp_cache_lookups_total{result}`.
    pub const CACHE_RESULTS: [&str; 3] = ["hit", "miss", "partial"];
    /// Where a block failed verification, for `glint_dp_cache_verify_failures_total{source}`
    /// (`local_store`: an image's data in a filesystem store, found by the auditor).
    pub const CACHE_SOURCES: [&str; 3] = ["store", "disk", "local_store"];
    /// Why a block read bypassed the cache, for `glint_dp_cache_uncached_total{reason}`.
    pub const CACHE_REASONS: [&str; 4] = ["full", "stalled", "busy", "unhashed"];

    /// Counter indexes inside a slot.
    pub mod idx {
        use super::{
            CACHE_REASONS, CACHE_RESULTS, CACHE_SOURCES, CHANNEL_KINDS, CLASSES,
            HISTOGRAM_COUNTERS, MAX_STORES, ROUTES, SIZE_COUNTERS,
        };
        /// Connections accepted.
        pub const CONNECTIONS: usize = 0;
        /// Connections open (incremented on accept, decremented on close).
        pub const ACTIVE: usize = 1;
        /// Connections refused at the limit.
        pub const REJECTED: usize = 2;
        /// The worker's connection limit (set once at start; summed, the node's).
        pub const CONNECTION_LIMIT: usize = 3;
        /// First of the `ROUTES × CLASSES` request counters (route-major).
        pub const REQUESTS: usize = 8;
        /// First of the `SIDES` upload-failure counters.
        pub const FAILURES: usize = REQUESTS + ROUTES.len() * CLASSES.len();
        /// Download failovers.
        pub const FAILOVERS: usize = FAILURES + 4;
        /// First of the `JOB_KINDS × 2` job counters (kind-major: done, failed).
        pub const JOBS: usize = FAILOVERS + 1;
        /// First of the `SIDES` download-failure counters.
        pub const DOWNLOAD_FAILURES: usize = JOBS + 2 * super::JOB_KINDS.len();
        /// Transfers in flight: upload, then download (gauges: added at start, taken at end).
        pub const IN_FLIGHT: usize = DOWNLOAD_FAILURES + 4;
        /// Image bytes moved, `MAX_STORES × 2` (store-major: in = uploaded, out = downloaded).
        pub const STORE_BYTES: usize = 48;
        /// First of the `ROUTES × CLASSES` request-duration histograms
        /// ([`HISTOGRAM_COUNTERS`] each, route-major).
        pub const DURATION: usize = STORE_BYTES + 2 * MAX_STORES;
        /// The downloads' time-to-first-byte histogram.
        pub const TTFB: usize = DURATION + ROUTES.len() * CLASSES.len() * HISTOGRAM_COUNTERS;
        /// The bytes-per-transfer histograms, upload then download ([`SIZE_COUNTERS`] each).
        pub const TRANSFER_SIZE: usize = TTFB + HISTOGRAM_COUNTERS;
        /// The channel round-trip histograms, by `CHANNEL_KINDS`.
        pub const CHANNEL: usize = TRANSFER_SIZE + 2 * SIZE_COUNTERS;
        /// Uploads inspected, by the format found (`inspect::Format::ALL` order).
        pub const INSPECTED: usize = CHANNEL + CHANNEL_KINDS.len() * HISTOGRAM_COUNTERS;
        /// Uploads refused by inspection, by reason (`inspect::Refusal::REASONS` order).
        pub const REFUSED: usize = INSPECTED + inspect::Format::ALL.len();
        /// Block cache lookups, by `CACHE_RESULTS`.
        pub const CACHE_LOOKUPS: usize = REFUSED + inspect::Refusal::REASONS.len();
        /// Block reads that joined another's fill.
        pub const CACHE_COALESCED: usize = CACHE_LOOKUPS + CACHE_RESULTS.len();
        /// Bytes read from stores for fills.
        pub const CACHE_FILL_BYTES: usize = CACHE_COALESCED + 1;
        /// Bytes sent from verified blocks.
        pub const CACHE_SERVED_BYTES: usize = CACHE_FILL_BYTES + 1;
        /// Evictions since start (set, not added: the cache's own count, in worker 0's slot).
        pub const CACHE_EVICTIONS: usize = CACHE_SERVED_BYTES + 1;
        /// Verification failures, by `CACHE_SOURCES`.
        pub const CACHE_VERIFY_FAILURES: usize = CACHE_EVICTIONS + 1;
        /// Block reads that bypassed the cache, by `CACHE_REASONS`.
        pub const CACHE_UNCACHED: usize = CACHE_VERIFY_FAILURES + CACHE_SOURCES.len();
        /// Bytes held (gauge, set in worker 0's slot).
        pub const CACHE_BYTES: usize = CACHE_UNCACHED + CACHE_REASONS.len();
        /// The budget (gauge, set once in worker 0's slot).
        pub const CACHE_MAX_BYTES: usize = CACHE_BYTES + 1;
        /// The block fill duration histogram.
        pub const CACHE_FILL_DURATION: usize = CACHE_MAX_BYTES + 1;
        /// The fill wait duration histogram.
        pub const CACHE_WAIT_DURATION: usize = CACHE_FILL_DURATION + HISTOGRAM_COUNTERS;
        /// Bytes the auditor read back.
        pub const CACHE_AUDITED: usize = CACHE_WAIT_DURATION + HISTOGRAM_COUNTERS;
        /// The auditor's complete passes.
        pub const CACHE_AUDIT_PASSES: usize = CACHE_AUDITED + 1;
        /// One past the last counter in use.
        pub const END: usize = CACHE_AUDIT_PASSES + 1;

        const _: () = assert!(IN_FLIGHT + 2 <= STORE_BYTES);
    }

    const _: () = assert!(idx::END <= SLOT_COUNTERS);

    /// Upper bounds of the latency histograms' buckets, in microseconds: from a channel round
    /// trip or a 1 KiB show (a tenth of a millisecond) to a 100 GiB download (an hour); one
    /// more bucket takes the rest.
    pub const LATENCY_BOUNDS_US: [u64; 21] = [
        100,
        250,
        500,
        1_000,
        2_500,
        5_000,
        10_000,
        25_000,
        50_000,
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        30_000_000,
        60_000_000,
        300_000_000,
        900_000_000,
        3_600_000_000,
    ];

    /// Upper bounds of the bytes-per-transfer buckets: from a 1 KiB image to a 256 GiB one.
    pub const SIZE_BOUNDS: [u64; 11] = [
        1 << 10,
        64 << 10,
        1 << 20,
        16 << 20,
        64 << 20,
        256 << 20,
        1 << 30,
        4 << 30,
        16 << 30,
        64 << 30,
        256 << 30,
    ];

    /// Counters of one latency histogram: a count per bucket (not cumulative; `+Inf` last),
    /// then the sum in microseconds, then the count.
    pub const HISTOGRAM_COUNTERS: usize = LATENCY_BOUNDS_US.len() + 1 + 2;
    /// Counters of one bytes-per-transfer histogram (laid out as a latency one; sum in bytes).
    pub const SIZE_COUNTERS: usize = SIZE_BOUNDS.len() + 1 + 2;

    /// The bucket (offset within a histogram) a sample `v` lands in, for bucket bounds
    /// `bounds`; the sum is at `bounds.len() + 1`, the count after it.
    pub fn bucket(bounds: &[u64], v: u64) -> usize {
        bounds.partition_point(|b| *b < v)
    }

    /// Adds one sample `v` to the histogram `h` (a bucket count per bound of `bounds`, `+Inf`,
    /// sum, count), with relaxed atomic adds.
    pub fn record(h: &[AtomicU64], bounds: &[u64], v: u64) {
        h[bucket(bounds, v)].fetch_add(1, Ordering::Relaxed);
        h[bounds.len() + 1].fetch_add(v, Ordering::Relaxed);
        h[bounds.len() + 2].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the histogram `v` (a bucket count per bound, `+Inf`, sum, count) as family
    /// `name` with `labels` (`k="v"`, …); bounds and sum are divided by `scale` (1e6 for
    /// microseconds into seconds, 1 for bytes).
    pub fn render_histogram(
        out: &mut String,
        name: &str,
        labels: &str,
        bounds: &[u64],
        scale: f64,
        v: &[u64],
    ) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += v[i];
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                *bound as f64 / scale
            );
        }
        cumulative += v[bounds.len()];
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = v[bounds.len() + 1] as f64 / scale;
        let count = v[bounds.len() + 2];
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        } else {
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}"
            );
        }
    }

    /// The kinds of data-plane jobs, in counter order.
    pub const JOB_KINDS: [&str; 5] = crate::channel::Work::<String>::KINDS;

    /// The counter of a job of kind `kind` (a [`JOB_KINDS`] index) that ended `done` or not.
    pub fn job_index(kind: usize, done: bool) -> usize {
        idx::JOBS + kind * 2 + usize::from(!done)
    }

    /// The [`CLASSES`] index of an answer's status (1xx counts as 2xx, anything above 5xx as
    /// 5xx).
    pub fn class_index(status: u16) -> usize {
        (status / 100).clamp(2, 5) as usize - 2
    }

    /// The request counter of route `route` (a [`ROUTES`] index) and status class `class`.
    pub fn request_index(route: usize, class: usize) -> usize {
        idx::REQUESTS + route * CLASSES.len() + class
    }

    /// The first counter of the duration histogram of route `route` and status class `class`.
    pub fn duration_index(route: usize, class: usize) -> usize {
        idx::DURATION + (route * CLASSES.len() + class) * HISTOGRAM_COUNTERS
    }

    /// Total file length for `workers` slots.
    pub fn file_len(workers: usize) -> usize {
        HEADER_BYTES + workers * SLOT_BYTES
    }

    /// The store slot of the store at position `i` of the node's configuration (`None`: a
    /// store the node does not have): its own up to `MAX_STORES - 1`, then the last slot,
    /// labelled `other`.
    pub fn store_slot(i: Option<usize>) -> usize {
        i.unwrap_or(MAX_STORES - 1).min(MAX_STORES - 1)
    }

    /// The header of a file for `workers` slots and stores `ids` (the data plane writes it).
    pub fn header<'a>(workers: usize, ids: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
        let labels: Vec<&str> = ids.into_iter().take(MAX_STORES - 1).collect();
        let mut h = vec![0u8; HEADER_BYTES];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(workers as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(labels.len() as u32).to_le_bytes());
        for (i, id) in labels.iter().enumerate() {
            let at = STORES_AT + i * STORE_FIELD;
            let id = &id.as_bytes()[..id.len().min(STORE_FIELD - 1)];
            h[at] = id.len() as u8;
            h[at + 1..at + 1 + id.len()].copy_from_slice(id);
        }
        h
    }

    /// Counters summed over all workers, indexed like a slot, and the store labels.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Totals {
        /// The sums.
        pub counters: Box<[u64; SLOT_COUNTERS]>,
        /// The `store` label of each store slot but the last (`other`).
        pub stores: Vec<String>,
    }

    /// Sums the slots of a metrics file; `None` if it is not one.
    pub fn parse(bytes: &[u8]) -> Option<Totals> {
        if bytes.len() < HEADER_BYTES || bytes[..8] != MAGIC {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let (version, workers, stores) = (word(8), word(12) as usize, word(16) as usize);
        if version != VERSION || bytes.len() < file_len(workers) || stores >= MAX_STORES {
            return None;
        }
        let stores = (0..stores)
            .map(|i| {
                let at = STORES_AT + i * STORE_FIELD;
                let len = bytes[at] as usize;
                String::from_utf8_lossy(&bytes[at + 1..at + 1 + len]).into_owned()
            })
            .collect();
        let mut t = Box::new([0u64; SLOT_COUNTERS]);
        for w in 0..workers {
            let slot = &bytes[HEADER_BYTES + w * SLOT_BYTES..HEADER_BYTES + (w + 1) * SLOT_BYTES];
            for (v, b) in t.iter_mut().zip(slot.chunks_exact(8)) {
                *v = v.wrapping_add(u64::from_le_bytes(b.try_into().unwrap()));
            }
        }
        Some(Totals {
            counters: t,
            stores,
        })
    }

    /// A family: its `# HELP` and `# TYPE` lines, then one series per `(labels, value)` row
    /// (labels `k="v",…`, empty for none).
    fn family<V: std::fmt::Display>(
        out: &mut String,
        name: &str,
        kind: &str,
        help: &str,
        rows: impl IntoIterator<Item = (String, V)>,
    ) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }

    /// A histogram family: one histogram per `(labels, counters)` row (see
    /// [`render_histogram`]).
    fn histograms<'a>(
        out: &mut String,
        name: &str,
        help: &str,
        (bounds, scale): (&[u64], f64),
        rows: impl IntoIterator<Item = (String, &'a [u64])>,
    ) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (labels, v) in rows {
            render_histogram(out, name, &labels, bounds, scale, v);
        }
    }

    /// Prometheus text for the totals.
    pub fn render(t: &Totals, out: &mut String) {
        use super::dp;
        let v = &t.counters[..];
        let one = |i: usize| [(String::new(), v[i])];
        let latency = (&LATENCY_BOUNDS_US[..], 1e6);
        let hist = |at: usize| &v[at..at + HISTOGRAM_COUNTERS];
        family(
            out,
            dp::CONNECTIONS_TOTAL,
            "counter",
            "Client connections the data plane accepted.",
            one(idx::CONNECTIONS),
        );
        family(
            out,
            dp::CONNECTIONS_ACTIVE,
            "gauge",
            "Client connections open now.",
            [(String::new(), v[idx::ACTIVE] as i64)],
        );
        family(
            out,
            dp::CONNECTIONS_LIMIT,
            "gauge",
            "Client connections the data plane accepts at most (the workers' limits summed).",
            one(idx::CONNECTION_LIMIT),
        );
        family(
            out,
            dp::CONNECTIONS_REJECTED_TOTAL,
            "counter",
            "Client connections refused at a worker's connection limit.",
            one(idx::REJECTED),
        );
        let by_route_and_class = || {
            ROUTES.iter().enumerate().flat_map(|(r, route)| {
                CLASSES.iter().enumerate().map(move |(c, class)| {
                    (r, c, format!("route=\"{route}\",status_class=\"{class}\""))
                })
            })
        };
        family(
            out,
            dp::REQUESTS_TOTAL,
            "counter",
            "Data-plane requests answered, by route and status class.",
            by_route_and_class().map(|(r, c, l)| (l, v[request_index(r, c)])),
        );
        let named = t.stores.iter().map(String::as_str).enumerate();
        family(
            out,
            dp::TRANSFER_BYTES_TOTAL,
            "counter",
            "Image bytes moved by the data plane, by direction and store.",
            named
                .chain([(MAX_STORES - 1, "other")])
                .flat_map(|(s, store)| {
                    ["in", "out"].into_iter().enumerate().map(move |(d, dir)| {
                        (
                            format!("direction=\"{dir}\",store=\"{store}\""),
                            v[idx::STORE_BYTES + 2 * s + d],
                        )
                    })
                }),
        );
        for (name, at, help) in [
            (
                dp::UPLOAD_FAILURES_TOTAL,
                idx::FAILURES,
                "Uploads that failed, by the side that failed.",
            ),
            (
                dp::DOWNLOAD_FAILURES_TOTAL,
                idx::DOWNLOAD_FAILURES,
                "Downloads that failed after they were granted, by the side that failed.",
            ),
        ] {
            let rows = SIDES.iter().enumerate();
            let rows = rows.map(|(i, side)| (format!("side=\"{side}\""), v[at + i]));
            family(out, name, "counter", help, rows);
        }
        family(
            out,
            dp::DOWNLOAD_FAILOVERS_TOTAL,
            "counter",
            "Download locations skipped because their store failed (the next was tried).",
            one(idx::FAILOVERS),
        );
        family(
            out,
            dp::JOBS_TOTAL,
            "counter",
            "Jobs the data plane ran for the control plane, by kind and outcome.",
            JOB_KINDS.iter().enumerate().flat_map(|(k, kind)| {
                [("done", true), ("failed", false)].map(|(outcome, done)| {
                    (
                        format!("kind=\"{kind}\",outcome=\"{outcome}\""),
                        v[job_index(k, done)],
                    )
                })
            }),
        );
        histograms(
            out,
            dp::REQUEST_DURATION_SECONDS,
            "Data-plane request duration, from the request head to the last byte answered, by route and status class.",
            latency,
            by_route_and_class().map(|(r, c, l)| (l, hist(duration_index(r, c)))),
        );
        histograms(
            out,
            dp::TIME_TO_FIRST_BYTE_SECONDS,
            "Downloads' time from the request head to the answer's head being sent.",
            latency,
            [("route=\"download\"".to_owned(), hist(idx::TTFB))],
        );
        histograms(
            out,
            dp::TRANSFER_SIZE_BYTES,
            "Image bytes each upload or download moved (a transfer cut short counts what it moved), by route.",
            (&SIZE_BOUNDS[..], 1.0),
            TRANSFERS.iter().enumerate().map(|(r, route)| {
                let at = idx::TRANSFER_SIZE + r * SIZE_COUNTERS;
                (format!("route=\"{route}\""), &v[at..at + SIZE_COUNTERS])
            }),
        );
        family(
            out,
            dp::TRANSFERS_IN_FLIGHT,
            "gauge",
            "Image transfers moving bytes now, by route.",
            TRANSFERS
                .iter()
                .enumerate()
                .map(|(r, route)| (format!("route=\"{route}\""), v[idx::IN_FLIGHT + r] as i64)),
        );
        family(
            out,
            dp::UPLOADS_INSPECTED_TOTAL,
            "counter",
            "Uploads whose content was inspected, by the format it is.",
            inspect::Format::ALL
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("format=\"{}\"", f.as_str()), v[idx::INSPECTED + i])),
        );
        family(
            out,
            dp::UPLOADS_REFUSED_TOTAL,
            "counter",
            "Uploads refused by the content inspection (hostile, or not the claimed disk_format), by reason.",
            inspect::Refusal::REASONS
                .iter()
                .enumerate()
                .map(|(i, reason)| (format!("reason=\"{reason}\""), v[idx::REFUSED + i])),
        );
        histograms(
            out,
            dp::CHANNEL_ROUND_TRIP_SECONDS,
            "Data plane's channel round trips to the control plane (request sent to answer read), by kind.",
            latency,
            CHANNEL_KINDS.iter().enumerate().map(|(k, kind)| {
                (
                    format!("kind=\"{kind}\""),
                    hist(idx::CHANNEL + k * HISTOGRAM_COUNTERS),
                )
            }),
        );
        let labelled = |label: &'static str, names: &'static [&'static str], at: usize| {
            names
                .iter()
                .enumerate()
                .map(move |(i, n)| (format!("{label}=\"{n}\""), v[at + i]))
        };
        family(
            out,
            dp::CACHE_LOOKUPS_TOTAL,
            "counter",
            "Downloads from remote stores looked up in the block cache, by result (hit: every block present, miss: none, partial).",
            labelled("result", &CACHE_RESULTS, idx::CACHE_LOOKUPS),
        );
        for (name, at, help) in [
            (
                dp::CACHE_COALESCED_TOTAL,
                idx::CACHE_COALESCED,
                "Block reads that joined a fill another download had started.",
            ),
            (
                dp::CACHE_FILL_BYTES_TOTAL,
                idx::CACHE_FILL_BYTES,
                "Bytes the block cache read from stores to fill blocks.",
            ),
            (
                dp::CACHE_SERVED_BYTES_TOTAL,
                idx::CACHE_SERVED_BYTES,
                "Bytes downloads sent from verified cache blocks.",
            ),
            (
                dp::CACHE_EVICTIONS_TOTAL,
                idx::CACHE_EVICTIONS,
                "Images evicted from the block cache to make room.",
            ),
            (
                dp::CACHE_AUDITED_BYTES_TOTAL,
                idx::CACHE_AUDITED,
                "Bytes of cached blocks the auditor read back against their hashes.",
            ),
            (
                dp::CACHE_AUDIT_PASSES_TOTAL,
                idx::CACHE_AUDIT_PASSES,
                "Complete passes of the auditor over the block cache.",
            ),
        ] {
            family(out, name, "counter", help, one(at));
        }
        family(
            out,
            dp::CACHE_VERIFY_FAILURES_TOTAL,
            "counter",
            "Blocks that did not match their recorded hash (discarded), by where they came from.",
            labelled("source", &CACHE_SOURCES, idx::CACHE_VERIFY_FAILURES),
        );
        family(
            out,
            dp::CACHE_UNCACHED_TOTAL,
            "counter",
            "Block reads the cache could not take, by reason.",
            labelled("reason", &CACHE_REASONS, idx::CACHE_UNCACHED),
        );
        family(
            out,
            dp::CACHE_BYTES,
            "gauge",
            "Bytes of blocks the block cache holds.",
            one(idx::CACHE_BYTES),
        );
        family(
            out,
            dp::CACHE_MAX_BYTES,
            "gauge",
            "The block cache's budget (image_cache_max_size).",
            one(idx::CACHE_MAX_BYTES),
        );
        histograms(
            out,
            dp::CACHE_FILL_DURATION_SECONDS,
            "How long filling one cache block took (store read, verification, write).",
            latency,
            [(String::new(), hist(idx::CACHE_FILL_DURATION))],
        );
        histograms(
            out,
            dp::CACHE_WAIT_DURATION_SECONDS,
            "How long a download waited for a cache block being filled.",
            latency,
            [(String::new(), hist(idx::CACHE_WAIT_DURATION))],
        );
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sums_slots_and_renders() {
            let workers = 2;
            let mut f = header(workers, ["fast", "ceph"]);
            f.resize(file_len(workers), 0);
            let put = |f: &mut Vec<u8>, w: usize, i: usize, v: u64| {
                let at = HEADER_BYTES + w * SLOT_BYTES + i * 8;
                f[at..at + 8].copy_from_slice(&v.to_le_bytes());
            };
            put(&mut f, 0, idx::STORE_BYTES + 3, 10); // ceph out
            put(&mut f, 1, idx::STORE_BYTES + 3, 32);
            put(&mut f, 1, request_index(1, class_index(404)), 3); // download 4xx
            put(
                &mut f,
                0,
                duration_index(1, class_index(404)) + bucket(&LATENCY_BOUNDS_US, 300),
                1,
            );
            let t = parse(&f).unwrap();
            assert_eq!(t.counters[idx::STORE_BYTES + 3], 42);
            assert_eq!(t.stores, ["fast", "ceph"]);
            let mut text = String::new();
            render(&t, &mut text);
            for want in [
                "glint_dp_transfer_bytes_total{direction=\"out\",store=\"ceph\"} 42",
                "glint_dp_transfer_bytes_total{direction=\"in\",store=\"other\"} 0",
                "glint_dp_requests_total{route=\"download\",status_class=\"4xx\"} 3",
                "glint_dp_request_duration_seconds_bucket{route=\"download\",status_class=\"4xx\",le=\"0.00025\"} 0",
                "glint_dp_request_duration_seconds_bucket{route=\"download\",status_class=\"4xx\",le=\"0.0005\"} 1",
                "glint_dp_transfer_size_bytes_bucket{route=\"upload\",le=\"1024\"} 0",
                "glint_dp_channel_round_trip_seconds_count{kind=\"authorize_download\"} 0",
            ] {
                assert!(text.contains(want), "{want} not in\n{text}");
            }
            assert!(parse(&f[..10]).is_none());
            assert!(parse(&[0u8; 200]).is_none());
        }

        #[test]
        fn many_stores_share_other() {
            let ids: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
            let mut f = header(1, ids.iter().map(String::as_str));
            f.resize(file_len(1), 0);
            let t = parse(&f).unwrap();
            assert_eq!(t.stores.len(), MAX_STORES - 1);
            assert_eq!(t.stores[MAX_STORES - 2], "s14");
            assert_eq!(store_slot(Some(3)), 3);
            assert_eq!(store_slot(Some(17)), MAX_STORES - 1);
            assert_eq!(store_slot(None), MAX_STORES - 1);
        }
    }
}
