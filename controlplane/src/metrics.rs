//! The control plane's Prometheus metrics, built once and passed to whoever records.
//!
//! [`Metrics`] owns a `metrics-exporter-prometheus` recorder *without* an HTTP listener; the
//! admin listener renders it at `/metrics`. Names come from [`shared::metrics`]; labels are
//! bounded (method, route template, status, kind, result, from/to status), never an id.
//!
//! Histogram samples wait in the recorder until an upkeep folds them into buckets; a scrape
//! does one, and [`Metrics::upkeep_every`] does one periodically whether or not anyone scrapes
//! (its runs are counted, [`Metrics::upkeep_runs`], so the task can be seen to work).

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use shared::image::ImageStatus;
use shared::metrics as names;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use names::{JOBS_DONE_TOTAL, JOBS_ENQUEUED_TOTAL, JOBS_FAILED_TOTAL, JOBS_OPEN};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Buckets of `glint_api_request_duration_seconds`.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Handles to the recorder; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// How often [`Metrics::run_upkeep`] ran (not counting scrapes), so that the periodic
    /// upkeep can be seen to run.
    upkeeps: Arc<AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Method label: the standard methods, anything else is `other` (bounded cardinality).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// A fresh recorder (not installed globally; see [`Metrics::install_global`]).
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::API_REQUEST_DURATION_SECONDS.into()),
                DURATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::CHANNEL_REQUEST_DURATION_SECONDS.into()),
                    DURATION_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(names::KEYSTONE_VALIDATION_DURATION_SECONDS.into()),
                    DURATION_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder: Arc::new(recorder),
            handle,
            upkeeps: Arc::new(AtomicU64::new(0)),
        };
        m.describe();
        m.zero_known();
        m.recorder
            .register_gauge(
                &Key::from_parts(
                    names::BUILD_INFO,
                    vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
                ),
                &METADATA,
            )
            .set(1.0);
        m
    }

    /// Registers every known label set of the counters at 0, so that `rate()` and
    /// `increase()` see the first event of each (a series that appears at 1 hides it).
    fn zero_known(&self) {
        let r = &self.recorder;
        let zero = |name: &'static str, labels: Vec<Label>| {
            r.register_counter(&Key::from_parts(name, labels), &METADATA)
                .absolute(0);
        };
        zero(names::CHANNEL_LEASES_REVERTED_TOTAL, Vec::new());
        for result in ["ok", "failed"] {
            zero(
                names::SCRUBBER_RUNS_TOTAL,
                vec![Label::new("result", result)],
            );
        }
        for outcome in crate::auth::keystone::OUTCOMES {
            zero(
                names::KEYSTONE_VALIDATIONS_TOTAL,
                vec![Label::new("outcome", outcome)],
            );
        }
        for result in ["hit", "miss"] {
            zero(
                names::KEYSTONE_CACHE_LOOKUPS_TOTAL,
                vec![Label::new("result", result)],
            );
        }
        for kind in crate::dataplane_link::KINDS {
            zero(
                names::CHANNEL_REQUESTS_TOTAL,
                vec![Label::new("kind", kind), Label::new("result", "ok")],
            );
        }
        for kind in crate::db::jobs::KINDS {
            zero(JOBS_DONE_TOTAL, vec![Label::new("kind", kind)]);
            zero(JOBS_FAILED_TOTAL, vec![Label::new("kind", kind)]);
        }
        for from in ImageStatus::ALL {
            for to in ImageStatus::ALL {
                if from.can_become(to) {
                    zero(
                        names::IMAGE_TRANSITIONS_TOTAL,
                        vec![
                            Label::new("from", from.as_str()),
                            Label::new("to", to.as_str()),
                        ],
                    );
                }
            }
        }
    }

    fn describe(&self) {
        let r = &self.recorder;
        let d = |s: &'static str| SharedString::from(s);
        r.describe_gauge(
            KeyName::from_const_str(names::BUILD_INFO),
            None,
            d("Always 1; the label `version` is glint's version."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::API_REQUESTS_TOTAL),
            None,
            d("Control-plane API requests by method, route template and status."),
        );
        r.describe_histogram(
            KeyName::from_const_str(names::API_REQUEST_DURATION_SECONDS),
            Some(Unit::Seconds),
            d("Control-plane API request duration by method and route template."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::CHANNEL_REQUESTS_TOTAL),
            None,
            d("Channel requests from the data plane by kind and result."),
        );
        r.describe_histogram(
            KeyName::from_const_str(names::CHANNEL_REQUEST_DURATION_SECONDS),
            Some(Unit::Seconds),
            d("Time the control plane took to answer a data-plane channel request, by kind."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::KEYSTONE_VALIDATIONS_TOTAL),
            None,
            d("Token validations asked of Keystone, by outcome (valid, invalid, unavailable)."),
        );
        r.describe_histogram(
            KeyName::from_const_str(names::KEYSTONE_VALIDATION_DURATION_SECONDS),
            Some(Unit::Seconds),
            d("How long Keystone took to validate a token, by outcome."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::KEYSTONE_CACHE_LOOKUPS_TOTAL),
            None,
            d("Token validations answered by the token cache (hit) or sent to Keystone (miss)."),
        );
        r.describe_gauge(
            KeyName::from_const_str(names::DB_POOL_CONNECTIONS),
            None,
            d("Database connections of the control plane's pool, by state (idle, in_use)."),
        );
        r.describe_gauge(
            KeyName::from_const_str(names::IMAGES),
            None,
            d("Images by status (read from the database every few seconds)."),
        );
        r.describe_gauge(
            KeyName::from_const_str(names::STORE_CAPACITY_BYTES),
            Some(Unit::Bytes),
            d("Size of a filesystem store's file system, by store."),
        );
        r.describe_gauge(
            KeyName::from_const_str(names::STORE_FREE_BYTES),
            Some(Unit::Bytes),
            d("Space left on a filesystem store's file system, by store."),
        );
        r.describe_gauge(
            KeyName::from_const_str(names::STORE_IMAGE_BYTES),
            Some(Unit::Bytes),
            d("Image data at rest in a store (its active locations' image sizes), by store."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::SCRUBBER_RUNS_TOTAL),
            None,
            d("Scrubber passes, by result."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::CHANNEL_LEASES_REVERTED_TOTAL),
            None,
            d("Upload leases reverted to queued because their channel connection closed."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::IMAGE_TRANSITIONS_TOTAL),
            None,
            d("Image status transitions committed, by from and to status."),
        );
        r.describe_counter(
            KeyName::from_const_str(names::IMAGE_CACHE_LOOKUPS_TOTAL),
            None,
            d("Image reads answered by the image cache (hit) or loaded from the database (miss)."),
        );
        r.describe_gauge(
            KeyName::from_const_str(names::IMAGE_CACHE_ENTRIES),
            None,
            d("Images held in the image cache."),
        );
        r.describe_counter(
            KeyName::from_const_str(JOBS_ENQUEUED_TOTAL),
            None,
            d("Jobs enqueued for the data plane, by kind."),
        );
        r.describe_counter(
            KeyName::from_const_str(JOBS_DONE_TOTAL),
            None,
            d("Jobs the data plane reported done, by kind."),
        );
        r.describe_counter(
            KeyName::from_const_str(JOBS_FAILED_TOTAL),
            None,
            d("Job attempts the data plane reported failed, by kind."),
        );
        r.describe_gauge(
            KeyName::from_const_str(JOBS_OPEN),
            None,
            d("Jobs not done yet (pending or claimed)."),
        );
    }

    /// Also installs the recorder as the process-global one, so `metrics::counter!` calls
    /// elsewhere in the process land in the same `/metrics` output. Fails if one is installed.
    pub fn install_global(&self) -> Result<(), metrics::SetRecorderError<Arc<PrometheusRecorder>>> {
        metrics::set_global_recorder(self.recorder.clone())
    }

    /// Folds the samples histograms collected since the last call into their buckets. The
    /// recorder keeps every sample until then, so this must run periodically whether or not
    /// anyone scrapes `/metrics` ([`Metrics::upkeep_every`]), or memory grows with each
    /// request.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
        self.upkeeps.fetch_add(1, Ordering::Relaxed);
    }

    /// How many times [`Metrics::run_upkeep`] has run.
    pub fn upkeep_runs(&self) -> u64 {
        self.upkeeps.load(Ordering::Relaxed)
    }

    /// Runs [`Metrics::run_upkeep`] every `period` until `shutdown` turns true.
    pub async fn upkeep_every(
        self,
        period: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.run_upkeep(),
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Counts one API request and records its duration.
    pub fn api_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        let route = SharedString::from(route.to_owned());
        let counter = Key::from_parts(
            names::API_REQUESTS_TOTAL,
            vec![
                Label::new("method", method),
                Label::new("route", route.clone()),
                Label::new("status", status.to_string()),
            ],
        );
        self.recorder
            .register_counter(&counter, &METADATA)
            .increment(1);
        let hist = Key::from_parts(
            names::API_REQUEST_DURATION_SECONDS,
            vec![Label::new("method", method), Label::new("route", route)],
        );
        self.recorder
            .register_histogram(&hist, &METADATA)
            .record(seconds);
    }

    /// Counts one channel request by kind (`authorize_upload`, …) and result (`ok` or a
    /// denial code).
    pub fn channel_request(&self, kind: &'static str, result: &'static str) {
        let key = Key::from_parts(
            names::CHANNEL_REQUESTS_TOTAL,
            vec![Label::new("kind", kind), Label::new("result", result)],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// Records how long a channel request of `kind` took to answer.
    pub fn channel_duration(&self, kind: &'static str, seconds: f64) {
        let key = Key::from_parts(
            names::CHANNEL_REQUEST_DURATION_SECONDS,
            vec![Label::new("kind", kind)],
        );
        self.recorder
            .register_histogram(&key, &METADATA)
            .record(seconds);
    }

    /// Publishes the pool's connections (read at each scrape).
    pub fn db_pool(&self, idle: usize, in_use: usize) {
        for (state, n) in [("idle", idle), ("in_use", in_use)] {
            let key = Key::from_parts(names::DB_POOL_CONNECTIONS, vec![Label::new("state", state)]);
            self.recorder.register_gauge(&key, &METADATA).set(n as f64);
        }
    }

    /// Publishes the number of images per status (every status, 0 included).
    pub fn images(&self, counts: &[(ImageStatus, i64)]) {
        for status in ImageStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            let key = Key::from_parts(names::IMAGES, vec![Label::new("status", status.as_str())]);
            self.recorder.register_gauge(&key, &METADATA).set(n as f64);
        }
    }

    /// Publishes a filesystem store's capacity and free space.
    pub fn store_space(&self, store: &str, capacity: u64, free: u64) {
        for (name, n) in [
            (names::STORE_CAPACITY_BYTES, capacity),
            (names::STORE_FREE_BYTES, free),
        ] {
            let key = Key::from_parts(name, vec![Label::new("store", store.to_owned())]);
            self.recorder.register_gauge(&key, &METADATA).set(n as f64);
        }
    }

    /// Publishes the image data at rest in each of `stores` (0 for those `bytes` lacks).
    pub fn store_bytes<'a>(&self, stores: impl Iterator<Item = &'a str>, bytes: &[(String, i64)]) {
        for store in stores {
            let n = bytes
                .iter()
                .find(|(s, _)| s == store)
                .map_or(0, |(_, n)| *n);
            let key = Key::from_parts(
                names::STORE_IMAGE_BYTES,
                vec![Label::new("store", store.to_owned())],
            );
            self.recorder.register_gauge(&key, &METADATA).set(n as f64);
        }
    }

    /// Counts one scrubber pass.
    pub fn scrubber_run(&self, ok: bool) {
        let key = Key::from_parts(
            names::SCRUBBER_RUNS_TOTAL,
            vec![Label::new("result", if ok { "ok" } else { "failed" })],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// Counts one upload lease reverted because its connection closed.
    pub fn lease_reverted(&self) {
        let key = Key::from_name(names::CHANNEL_LEASES_REVERTED_TOTAL);
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// Publishes the image cache's counts (read from the cache when `/metrics` is scraped).
    pub fn image_cache(&self, stats: crate::db::cache::CacheStats, entries: usize) {
        for (result, n) in [("hit", stats.hits), ("miss", stats.misses)] {
            let key = Key::from_parts(
                names::IMAGE_CACHE_LOOKUPS_TOTAL,
                vec![Label::new("result", result)],
            );
            self.recorder.register_counter(&key, &METADATA).absolute(n);
        }
        self.recorder
            .register_gauge(&Key::from_name(names::IMAGE_CACHE_ENTRIES), &METADATA)
            .set(entries as f64);
    }

    /// Publishes the jobs enqueued through this process by kind (read at each scrape) and,
    /// when the database answered, how many are not done.
    pub fn jobs(&self, enqueued: &crate::db::jobs::Enqueued, open: Option<i64>) {
        for kind in crate::db::jobs::KINDS {
            let key = Key::from_parts(JOBS_ENQUEUED_TOTAL, vec![Label::new("kind", kind)]);
            self.recorder
                .register_counter(&key, &METADATA)
                .absolute(enqueued.get(kind));
        }
        if let Some(n) = open {
            self.recorder
                .register_gauge(&Key::from_name(JOBS_OPEN), &METADATA)
                .set(n as f64);
        }
    }

    /// Counts one job reported done.
    pub fn job_done(&self, kind: &'static str) {
        let key = Key::from_parts(JOBS_DONE_TOTAL, vec![Label::new("kind", kind)]);
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// Counts one job attempt reported failed.
    pub fn job_failed(&self, kind: &'static str) {
        let key = Key::from_parts(JOBS_FAILED_TOTAL, vec![Label::new("kind", kind)]);
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }

    /// Counts one committed status transition.
    pub fn transition(&self, from: ImageStatus, to: ImageStatus) {
        let key = Key::from_parts(
            names::IMAGE_TRANSITIONS_TOTAL,
            vec![
                Label::new("from", from.as_str()),
                Label::new("to", to.as_str()),
            ],
        );
        self.recorder.register_counter(&key, &METADATA).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The periodic upkeep (which folds histogram samples into buckets, so that a long run of
    /// requests with nobody scraping does not grow memory) runs by itself, again and again,
    /// without a scrape; it ends on shutdown and runs no more; and every sample still counts.
    #[tokio::test]
    async fn upkeep_runs_until_shutdown() {
        let m = Metrics::new();
        for _ in 0..1000 {
            m.api_request("GET", "/v2/images/{image_id}", 200, 0.001);
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let upkeep = tokio::spawn(
            m.clone()
                .upkeep_every(std::time::Duration::from_millis(1), stopped),
        );
        let ran = async {
            while m.upkeep_runs() < 3 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), ran)
            .await
            .expect("the upkeep runs periodically without a scrape");
        stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), upkeep)
            .await
            .expect("upkeep stops on shutdown")
            .unwrap();
        let runs = m.upkeep_runs();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(m.upkeep_runs(), runs, "no upkeep after shutdown");
        let text = m.render();
        assert_eq!(m.upkeep_runs(), runs, "a scrape is not counted as upkeep");
        assert!(
            text.contains(r#"glint_api_request_duration_seconds_count{method="GET",route="/v2/images/{image_id}"} 1000"#),
            "{text}"
        );
    }

    #[test]
    fn renders_with_bounded_labels() {
        let m = Metrics::new();
        m.api_request("GET", "/v2/images/{image_id}", 200, 0.01);
        m.api_request("BREW", "unmatched", 404, 0.001);
        m.channel_request("authorize_upload", "ok");
        m.lease_reverted();
        m.transition(ImageStatus::Queued, ImageStatus::Saving);
        m.image_cache(crate::db::cache::CacheStats { hits: 7, misses: 2 }, 3);
        let text = m.render();
        assert!(
            text.contains(r#"glint_api_requests_total{method="GET",route="/v2/images/{image_id}",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"glint_api_requests_total{method="other",route="unmatched",status="404"} 1"#
        ));
        assert!(text.contains("glint_api_request_duration_seconds_bucket"));
        assert!(
            text.contains(r#"glint_channel_requests_total{kind="authorize_upload",result="ok"} 1"#)
        );
        assert!(text.contains("glint_channel_leases_reverted_total 1"));
        assert!(text.contains(r#"glint_db_image_transitions_total{from="queued",to="saving"} 1"#));
        assert!(text.contains("glint_build_info{version="));
        assert!(text.contains(r#"glint_db_image_cache_lookups_total{result="hit"} 7"#));
        assert!(text.contains("glint_db_image_cache_entries 3"));
    }
}
