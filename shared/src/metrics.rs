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
    /// Data-plane request duration histogram, label `route`.
    pub const REQUEST_DURATION_SECONDS: &str = "glint_dp_request_duration_seconds";
    /// Downloads' time to first byte histogram, label `route` (download).
    pub const TIME_TO_FIRST_BYTE_SECONDS: &str = "glint_dp_time_to_first_byte_seconds";
}

/// The shared-memory layout of the data plane's counters: a file in the run directory that the
/// data plane maps and its workers update with relaxed atomic adds (each worker in its own
/// 512-byte slot, so the hot path shares no cache line), and that the control plane reads and
/// sums at scrape time. Values are little-endian `u64`.
///
/// ```text
/// [0..8) magic "GLINTDPM" | [8..12) version | [12..16) workers | pad to 64 | slot 0 | slot 1 | …
/// ```
pub mod shm {
    /// File name inside the run directory.
    pub const FILE_NAME: &str = "dataplane.metrics";
    /// First 8 bytes of the file.
    pub const MAGIC: [u8; 8] = *b"GLINTDPM";
    /// Layout version (2: 128 counters per slot, with the latency histograms).
    pub const VERSION: u32 = 2;
    /// Bytes before the first slot.
    pub const HEADER_BYTES: usize = 64;
    /// Counters per worker slot.
    pub const SLOT_COUNTERS: usize = 128;
    /// Bytes per worker slot.
    pub const SLOT_BYTES: usize = SLOT_COUNTERS * 8;

    /// Routes of the data plane, for `glint_dp_requests_total{route}`.
    pub const ROUTES: [&str; 3] = ["upload", "download", "forward"];
    /// Status classes, for `glint_dp_requests_total{status_class}`.
    pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
    /// Error sides, for `glint_dp_upload_failures_total{side}`.
    pub const SIDES: [&str; 4] = ["client", "store", "control", "internal"];

    /// Counter indexes inside a slot.
    pub mod idx {
        /// Connections accepted.
        pub const CONNECTIONS: usize = 0;
        /// Connections open (incremented on accept, decremented on close).
        pub const ACTIVE: usize = 1;
        /// Connections refused at the limit.
        pub const REJECTED: usize = 2;
        /// Upload body bytes stored.
        pub const BYTES_IN: usize = 3;
        /// Download bytes sent.
        pub const BYTES_OUT: usize = 4;
        /// First of `ROUTES × CLASSES` request counters (route-major).
        pub const REQUESTS: usize = 8;
        /// First of the `SIDES` upload-failure counters.
        pub const FAILURES: usize = REQUESTS + 12;
        /// Download failovers.
        pub const FAILOVERS: usize = FAILURES + 4;
        /// First of the `JOB_KINDS × 2` job counters (kind-major: done, failed).
        pub const JOBS: usize = FAILOVERS + 1;
        /// First of the `SIDES` download-failure counters.
        pub const DOWNLOAD_FAILURES: usize = JOBS + 2 * super::JOB_KINDS.len();
        /// Transfers in flight: upload, then download (gauges: added at start, taken at end).
        pub const IN_FLIGHT: usize = DOWNLOAD_FAILURES + 4;
        /// First of the `ROUTES` request-duration histograms ([`super::HISTOGRAM_COUNTERS`]
        /// each, route-major).
        pub const DURATION: usize = IN_FLIGHT + 2;
        /// The downloads' time-to-first-byte histogram.
        pub const TTFB: usize = DURATION + 3 * super::HISTOGRAM_COUNTERS;
    }

    const _: () = assert!(idx::TTFB + HISTOGRAM_COUNTERS <= SLOT_COUNTERS);

    /// Upper bounds of the latency histograms' buckets, in microseconds: from a 1 KiB show
    /// (half a millisecond) to a 100 GiB download (an hour); one more bucket takes the rest.
    pub const LATENCY_BOUNDS_US: [u64; 19] = [
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

    /// Counters of one histogram: a count per bucket (not cumulative; `+Inf` last), then the
    /// sum in microseconds, then the count.
    pub const HISTOGRAM_COUNTERS: usize = LATENCY_BOUNDS_US.len() + 1 + 2;

    /// The offsets, within a histogram, of the counters one sample of `us` microseconds adds
    /// to: its bucket, the sum, the count.
    pub fn latency_bucket(us: u64) -> usize {
        LATENCY_BOUNDS_US.partition_point(|b| *b < us)
    }

    /// Renders the histogram starting at `at` as family `name` with `labels` (`k="v"`, …).
    fn histogram(out: &mut String, v: &[u64], at: usize, name: &str, labels: &str) {
        use std::fmt::Write;
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += v[at + i];
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                *bound as f64 / 1e6
            );
        }
        cumulative += v[at + LATENCY_BOUNDS_US.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = v[at + LATENCY_BOUNDS_US.len() + 1] as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{{labels}}} {}",
            v[at + LATENCY_BOUNDS_US.len() + 2]
        );
    }

    /// The kinds of data-plane jobs, in counter order.
    pub const JOB_KINDS: [&str; 2] = crate::channel::Work::<String>::KINDS;

    /// The counter of a job of kind `kind` (a [`JOB_KINDS`] index) that ended `done` or not.
    pub fn job_index(kind: usize, done: bool) -> usize {
        idx::JOBS + kind * 2 + usize::from(!done)
    }

    /// Total file length for `workers` slots.
    pub fn file_len(workers: usize) -> usize {
        HEADER_BYTES + workers * SLOT_BYTES
    }

    /// Counters summed over all workers, indexed like a slot.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Totals(pub [u64; SLOT_COUNTERS]);

    /// Sums the slots of a metrics file; `None` if it is not one.
    pub fn parse(bytes: &[u8]) -> Option<Totals> {
        if bytes.len() < HEADER_BYTES || bytes[..8] != MAGIC {
            return None;
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
        let workers = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
        if version != VERSION || bytes.len() < file_len(workers) {
            return None;
        }
        let mut t = [0u64; SLOT_COUNTERS];
        for w in 0..workers {
            let slot = &bytes[HEADER_BYTES + w * SLOT_BYTES..HEADER_BYTES + (w + 1) * SLOT_BYTES];
            for (i, v) in t.iter_mut().enumerate() {
                *v = v.wrapping_add(u64::from_le_bytes(slot[i * 8..i * 8 + 8].try_into().ok()?));
            }
        }
        Some(Totals(t))
    }

    /// The `# HELP` and `# TYPE` lines of a family.
    fn family(out: &mut String, name: &str, kind: &str, help: &str) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// Prometheus text for the totals.
    pub fn render(t: &Totals, out: &mut String) {
        use super::dp;
        use std::fmt::Write;
        let v = &t.0;
        family(
            out,
            dp::CONNECTIONS_TOTAL,
            "counter",
            "Client connections the data plane accepted.",
        );
        let _ = writeln!(out, "{} {}", dp::CONNECTIONS_TOTAL, v[idx::CONNECTIONS]);
        family(
            out,
            dp::CONNECTIONS_ACTIVE,
            "gauge",
            "Client connections open now.",
        );
        let _ = writeln!(out, "{} {}", dp::CONNECTIONS_ACTIVE, v[idx::ACTIVE] as i64);
        family(
            out,
            dp::CONNECTIONS_REJECTED_TOTAL,
            "counter",
            "Client connections refused at a worker's connection limit.",
        );
        let _ = writeln!(
            out,
            "{} {}",
            dp::CONNECTIONS_REJECTED_TOTAL,
            v[idx::REJECTED]
        );
        family(
            out,
            dp::REQUESTS_TOTAL,
            "counter",
            "Data-plane requests answered, by route and status class.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = v[idx::REQUESTS + r * CLASSES.len() + c];
                let _ = writeln!(
                    out,
                    "{}{{route=\"{route}\",status_class=\"{class}\"}} {n}",
                    dp::REQUESTS_TOTAL
                );
            }
        }
        family(
            out,
            dp::TRANSFER_BYTES_TOTAL,
            "counter",
            "Image bytes moved by the data plane, by direction and store.",
        );
        let _ = writeln!(
            out,
            "{}{{direction=\"in\",store=\"file\"}} {}",
            dp::TRANSFER_BYTES_TOTAL,
            v[idx::BYTES_IN]
        );
        let _ = writeln!(
            out,
            "{}{{direction=\"out\",store=\"file\"}} {}",
            dp::TRANSFER_BYTES_TOTAL,
            v[idx::BYTES_OUT]
        );
        family(
            out,
            dp::UPLOAD_FAILURES_TOTAL,
            "counter",
            "Uploads that failed, by the side that failed.",
        );
        for (s, side) in SIDES.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{side=\"{side}\"}} {}",
                dp::UPLOAD_FAILURES_TOTAL,
                v[idx::FAILURES + s]
            );
        }
        family(
            out,
            dp::DOWNLOAD_FAILOVERS_TOTAL,
            "counter",
            "Download locations skipped because their store failed (the next was tried).",
        );
        let _ = writeln!(
            out,
            "{} {}",
            dp::DOWNLOAD_FAILOVERS_TOTAL,
            v[idx::FAILOVERS]
        );
        family(
            out,
            dp::JOBS_TOTAL,
            "counter",
            "Jobs the data plane ran for the control plane, by kind and outcome.",
        );
        family(
            out,
            dp::DOWNLOAD_FAILURES_TOTAL,
            "counter",
            "Downloads that failed after they were granted, by the side that failed.",
        );
        for (s, side) in SIDES.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{side=\"{side}\"}} {}",
                dp::DOWNLOAD_FAILURES_TOTAL,
                v[idx::DOWNLOAD_FAILURES + s]
            );
        }
        family(
            out,
            dp::REQUEST_DURATION_SECONDS,
            "histogram",
            "Data-plane request duration, from the request head to the last byte answered, by route.",
        );
        for (r, route) in ROUTES.iter().enumerate() {
            histogram(
                out,
                v,
                idx::DURATION + r * HISTOGRAM_COUNTERS,
                dp::REQUEST_DURATION_SECONDS,
                &format!("route=\"{route}\""),
            );
        }
        family(
            out,
            dp::TIME_TO_FIRST_BYTE_SECONDS,
            "histogram",
            "Downloads' time from the request head to the answer's head being sent.",
        );
        histogram(
            out,
            v,
            idx::TTFB,
            dp::TIME_TO_FIRST_BYTE_SECONDS,
            "route=\"download\"",
        );
        family(
            out,
            dp::TRANSFERS_IN_FLIGHT,
            "gauge",
            "Image transfers moving bytes now, by route.",
        );
        for (r, route) in ["upload", "download"].iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{{route=\"{route}\"}} {}",
                dp::TRANSFERS_IN_FLIGHT,
                v[idx::IN_FLIGHT + r] as i64
            );
        }
        for (k, kind) in JOB_KINDS.iter().enumerate() {
            for (outcome, done) in [("done", true), ("failed", false)] {
                let _ = writeln!(
                    out,
                    "{}{{kind=\"{kind}\",outcome=\"{outcome}\"}} {}",
                    dp::JOBS_TOTAL,
                    v[job_index(k, done)]
                );
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sums_slots_and_renders() {
            let workers = 2;
            let mut f = vec![0u8; file_len(workers)];
            f[..8].copy_from_slice(&MAGIC);
            f[8..12].copy_from_slice(&VERSION.to_le_bytes());
            f[12..16].copy_from_slice(&(workers as u32).to_le_bytes());
            let put = |f: &mut Vec<u8>, w: usize, i: usize, v: u64| {
                let at = HEADER_BYTES + w * SLOT_BYTES + i * 8;
                f[at..at + 8].copy_from_slice(&v.to_le_bytes());
            };
            put(&mut f, 0, idx::BYTES_OUT, 10);
            put(&mut f, 1, idx::BYTES_OUT, 32);
            put(&mut f, 1, idx::REQUESTS + CLASSES.len() + 2, 3); // download 4xx
            let t = parse(&f).unwrap();
            assert_eq!(t.0[idx::BYTES_OUT], 42);
            let mut text = String::new();
            render(&t, &mut text);
            assert!(
                text.contains("glint_dp_transfer_bytes_total{direction=\"out\",store=\"file\"} 42"),
                "{text}"
            );
            assert!(
                text.contains("glint_dp_requests_total{route=\"download\",status_class=\"4xx\"} 3"),
                "{text}"
            );
            assert!(parse(&f[..10]).is_none());
            assert!(parse(&[0u8; 200]).is_none());
        }
    }
}
