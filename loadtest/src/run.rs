//! What every load mode shares: its bounds, the gate that enforces them, and the report.
//!
//! A load always stops by itself: after `duration` (workers are cut at the deadline, bytes
//! already received still count) or after `requests` completed requests, whichever comes first.

use crate::procs::{Monitor, ServerUsage, machine_busy_seconds, self_cpu_seconds};
use crate::stats::{LatencySummary, gib, mb_per_second};
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// When a load stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// Stop at this deadline (from the start of the run).
    pub duration: Option<Duration>,
    /// Stop after this many requests were started (all of them then finish).
    pub requests: Option<u64>,
}

impl Bounds {
    /// A run of `seconds`.
    pub fn seconds(seconds: f64) -> Bounds {
        Bounds {
            duration: Some(Duration::from_secs_f64(seconds)),
            requests: None,
        }
    }

    /// A run of `n` requests.
    pub fn requests(n: u64) -> Bounds {
        Bounds {
            duration: None,
            requests: Some(n),
        }
    }
}

/// Enforces [`Bounds`] for the workers of one run.
#[derive(Debug)]
pub struct Gate {
    deadline: Option<Instant>,
    tickets: Option<AtomicU64>,
}

impl Gate {
    /// A gate for a run that starts now. With no bound at all, the run lasts 10 s.
    pub fn new(b: Bounds) -> Gate {
        let duration = match (b.duration, b.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        };
        Gate {
            deadline: duration.map(|d| Instant::now() + d),
            tickets: b.requests.map(AtomicU64::new),
        }
    }

    /// Takes the right to start one more request; `false` when the run is over.
    pub fn take(&self) -> bool {
        if self.expired() {
            return false;
        }
        match &self.tickets {
            None => true,
            Some(t) => t
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Runs `f` unless the deadline comes first (`None` then). A future that is ready at once
    /// is never cut (tokio's timeout polls it first), so loops also check [`Gate::expired`].
    pub async fn within<F: Future>(&self, f: F) -> Option<F::Output> {
        match self.deadline {
            Some(d) => tokio::time::timeout_at(d, f).await.ok(),
            None => Some(f.await),
        }
    }
}

/// Counters shared by the workers of one run (bytes are counted as they arrive, so a transfer
/// cut by the deadline still counts).
#[derive(Debug, Default)]
pub struct Counters {
    /// Body bytes moved.
    pub bytes: AtomicU64,
    /// Requests completed.
    pub requests: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
    /// Downloads interrupted and resumed with `Range`.
    pub resumes: AtomicU64,
}

impl Counters {
    /// Adds `n` bytes.
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The result of one load run (any mode).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `download`, `upload`, `metadata`.
    pub mode: String,
    /// What was loaded (URL or socket + path).
    pub target: String,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Wall time of the run, s.
    pub elapsed_seconds: f64,
    /// Body bytes moved.
    pub bytes: u64,
    /// Requests completed.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Downloads interrupted and resumed with `Range`.
    pub resumes: u64,
    /// MB/s (10⁶ bytes) of body bytes.
    pub mb_per_second: f64,
    /// Completed requests per second.
    pub requests_per_second: f64,
    /// Latency of completed requests (whole transfer for downloads and uploads).
    pub latency: LatencySummary,
    /// Time to the first response byte (downloads).
    pub ttfb: Option<LatencySummary>,
    /// CPU seconds the load generator itself used (to tell whether the client was the limit).
    pub client_cpu_seconds: f64,
    /// Busy CPU seconds of the whole machine during the run.
    pub machine_cpu_seconds: f64,
    /// Busy CPU seconds of everything else (machine − client − server, when the server was
    /// measured): other work on a shared machine that competed with the run.
    pub other_cpu_seconds: Option<f64>,
    /// The server's cost, when its pids were given.
    pub server: Option<ServerUsage>,
    /// Server CPU seconds per GiB of body bytes moved.
    pub server_cpu_seconds_per_gib: Option<f64>,
}

/// Measures the client and (optionally) the server around a run.
#[derive(Debug)]
pub struct Meter {
    started: Instant,
    client_cpu: f64,
    machine_cpu: f64,
    monitor: Option<Monitor>,
}

impl Meter {
    /// Starts measuring; `server_pids` are process-tree roots (may be empty).
    pub fn start(server_pids: &[u32]) -> Meter {
        Meter {
            monitor: (!server_pids.is_empty())
                .then(|| Monitor::start(server_pids, Duration::from_millis(50))),
            client_cpu: self_cpu_seconds(),
            machine_cpu: machine_busy_seconds(),
            started: Instant::now(),
        }
    }

    /// Stops measuring and builds the report of a run.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        self,
        mode: &str,
        target: String,
        concurrency: usize,
        c: &Counters,
        first_error: Option<String>,
        latency: LatencySummary,
        ttfb: Option<LatencySummary>,
    ) -> Report {
        let elapsed = self.started.elapsed();
        let server = self.monitor.map(Monitor::finish);
        let client_cpu_seconds = self_cpu_seconds() - self.client_cpu;
        let machine_cpu_seconds = machine_busy_seconds() - self.machine_cpu;
        let bytes = c.bytes.load(Ordering::Relaxed);
        let requests = c.requests.load(Ordering::Relaxed);
        let server_cpu_seconds_per_gib = server
            .as_ref()
            .filter(|_| bytes > 0)
            .map(|s| s.cpu_seconds / gib(bytes));
        Report {
            mode: mode.to_owned(),
            target,
            concurrency,
            elapsed_seconds: elapsed.as_secs_f64(),
            bytes,
            requests,
            errors: c.errors.load(Ordering::Relaxed),
            first_error,
            resumes: c.resumes.load(Ordering::Relaxed),
            mb_per_second: mb_per_second(bytes, elapsed),
            requests_per_second: requests as f64 / elapsed.as_secs_f64().max(1e-9),
            latency,
            ttfb,
            client_cpu_seconds,
            machine_cpu_seconds,
            other_cpu_seconds: server
                .as_ref()
                .map(|s| (machine_cpu_seconds - client_cpu_seconds - s.cpu_seconds).max(0.0)),
            server,
            server_cpu_seconds_per_gib,
        }
    }
}

impl Report {
    /// A few human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} {} x{}: {:.1} s, {} requests ({:.0} req/s), {:.1} MB/s, {} errors, {} resumes\n  \
             latency ms p50 {:.3} p99 {:.3} p999 {:.3} max {:.3}\n",
            self.mode,
            self.target,
            self.concurrency,
            self.elapsed_seconds,
            self.requests,
            self.requests_per_second,
            self.mb_per_second,
            self.errors,
            self.resumes,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.p999_ms,
            self.latency.max_ms,
        );
        if let Some(t) = &self.ttfb {
            s += &format!(
                "  ttfb ms    p50 {:.3} p99 {:.3} p999 {:.3} max {:.3}\n",
                t.p50_ms, t.p99_ms, t.p999_ms, t.max_ms
            );
        }
        s += &format!(
            "  client CPU {:.2} s, machine busy {:.2} s{}\n",
            self.client_cpu_seconds,
            self.machine_cpu_seconds,
            self.other_cpu_seconds
                .map(|o| format!(" (other processes {o:.2} s)"))
                .unwrap_or_default()
        );
        if let Some(srv) = &self.server {
            s += &format!(
                "  server CPU {:.2} s ({} per GiB), peak RSS total {:.1} MiB\n",
                srv.cpu_seconds,
                self.server_cpu_seconds_per_gib
                    .map(|v| format!("{v:.3} s"))
                    .unwrap_or_else(|| "-".into()),
                srv.peak_rss_total_bytes as f64 / 1048576.0
            );
            for p in &srv.processes {
                s += &format!(
                    "    {:>7} {:<14} CPU {:.2} s, peak RSS {:.1} MiB (HWM {:.1} MiB)\n",
                    p.pid,
                    p.name,
                    p.cpu_seconds,
                    p.peak_rss_bytes as f64 / 1048576.0,
                    p.hwm_bytes as f64 / 1048576.0
                );
            }
        }
        if let Some(e) = &self.first_error {
            s += &format!("  first error: {e}\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gate_counts_tickets() {
        let g = Gate::new(Bounds::requests(3));
        assert!(g.take() && g.take() && g.take());
        assert!(!g.take());
        assert!(!g.expired());
    }

    #[tokio::test]
    async fn gate_stops_at_the_deadline() {
        let g = Gate::new(Bounds::seconds(0.05));
        assert!(g.take());
        let r = g.within(tokio::time::sleep(Duration::from_secs(5))).await;
        assert!(r.is_none());
        assert!(g.expired() && !g.take());
        let unbounded = Gate::new(Bounds {
            duration: None,
            requests: None,
        });
        assert!(unbounded.deadline.is_some());
    }
}
