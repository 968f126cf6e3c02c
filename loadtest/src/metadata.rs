//! `metadata` mode: image-show and image-list requests at a steady concurrency.
//!
//! `concurrency` workers each hold one keep-alive connection (TCP to the data plane, or the
//! control plane's Unix socket `run/api.sock` to query it directly) and send `GET` requests
//! back to back, reading each whole answer. Typical paths: `/v2/images/{id}` (show) and
//! `/v2/images?limit=25` (list; any Glance filters go in the query string). A request that does
//! not answer `expect_status` counts as an error.

use crate::http::MetaClient;
use crate::run::{Bounds, Counters, Gate, Meter, Report};
use crate::stats::Latencies;
use crate::target::Target;
use anyhow::{Context, bail};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// Settings of a metadata run.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// Endpoint and path (with query) to `GET`.
    pub target: Target,
    /// Concurrent connections.
    pub concurrency: usize,
    /// When to stop.
    pub bounds: Bounds,
    /// The status every answer must have.
    pub expect_status: u16,
    /// Roots of the server's process tree to measure (may be empty).
    pub server_pids: Vec<u32>,
}

impl MetadataConfig {
    /// Defaults: 200 expected, no server measurement.
    pub fn new(target: Target, concurrency: usize, bounds: Bounds) -> MetadataConfig {
        MetadataConfig {
            target,
            concurrency,
            bounds,
            expect_status: 200,
            server_pids: Vec::new(),
        }
    }
}

/// Runs a metadata load and reports it. Must be called inside a tokio runtime.
pub async fn run(cfg: MetadataConfig) -> anyhow::Result<Report> {
    if cfg.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    let cfg = Arc::new(cfg);
    let counters = Arc::new(Counters::default());
    let meter = Meter::start(&cfg.server_pids);
    let gate = Arc::new(Gate::new(cfg.bounds));
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency {
        let (cfg, gate, counters) = (cfg.clone(), gate.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = MetaClient::new(cfg.target.clone());
            let mut latency = Latencies::new();
            let mut first_error: Option<String> = None;
            while gate.take() {
                let start = Instant::now();
                let Some(r) = gate.within(client.get(&cfg.target.path)).await else {
                    break;
                };
                let failure = match r {
                    Ok(resp) if resp.status == cfg.expect_status => {
                        latency.record(start.elapsed());
                        counters.add_bytes(resp.body.len());
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Ok(resp) => Some(format!(
                        "{}: status {} {}",
                        cfg.target.path,
                        resp.status,
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                    )),
                    Err(e) => Some(format!("{e:#}")),
                };
                if let Some(f) = failure {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(f);
                    let _ = gate
                        .within(tokio::time::sleep(std::time::Duration::from_millis(10)))
                        .await;
                }
            }
            (latency, first_error)
        }));
    }
    let mut latency = Latencies::new();
    let mut first_error = None;
    for t in tasks {
        let (l, e) = t.await.context("metadata worker panicked")?;
        latency.merge(l);
        first_error = first_error.or(e);
    }
    Ok(meter.finish(
        "metadata",
        format!("{}{}", cfg.target.base(), cfg.target.path),
        cfg.concurrency,
        &counters,
        first_error,
        latency.summary(),
        None,
    ))
}
