//! `upload` mode: image uploads as `glance image-create --file` does them.
//!
//! Each of `concurrency` workers loops: create a `raw`/`bare` image (`POST /v2/images`), then
//! `PUT /v2/images/{id}/file` with `Content-Length` and `size_bytes` of pseudo-random bytes
//! (an 8 MiB block generated once, sent again and again: the hashes cost the same whatever the
//! bytes are), then read the answer (204 expected); optionally delete the image afterwards so that
//! long runs do not fill the disk. Latency is the `PUT` alone, from its first byte to the answer.

use crate::http::{MetaClient, connect_tcp, read_head};
use crate::run::{Bounds, Counters, Gate, Meter, Report};
use crate::stats::Latencies;
use crate::target::Target;
use anyhow::{Context, bail};
use rand::RngCore;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Settings of an upload run.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// The glint public endpoint (`http://127.0.0.1:9292`; the path is ignored).
    pub endpoint: Target,
    /// Bytes per image.
    pub size_bytes: u64,
    /// Concurrent uploads.
    pub concurrency: usize,
    /// When to stop.
    pub bounds: Bounds,
    /// Delete each image after its upload.
    pub delete_after: bool,
    /// Bytes per write.
    pub write_bytes: usize,
    /// Roots of the server's process tree to measure (may be empty).
    pub server_pids: Vec<u32>,
    /// More fields of each image's create request (e.g. `{"container_format": "ovf"}`: an
    /// image whose content is not inspected).
    pub create: serde_json::Value,
}

impl UploadConfig {
    /// Defaults: 1 MiB writes, images deleted afterwards, no server measurement.
    pub fn new(endpoint: Target, size_bytes: u64, concurrency: usize, bounds: Bounds) -> Self {
        UploadConfig {
            endpoint,
            size_bytes,
            concurrency,
            bounds,
            delete_after: true,
            write_bytes: 1 << 20,
            server_pids: Vec::new(),
            create: serde_json::json!({}),
        }
    }
}

/// The pattern every upload sends (8 MiB, pseudo-random, fixed seed).
pub fn pattern() -> Arc<Vec<u8>> {
    use rand::SeedableRng;
    let mut v = vec![0u8; 8 << 20];
    rand::rngs::StdRng::seed_from_u64(0x6c696e74).fill_bytes(&mut v);
    Arc::new(v)
}

/// Sends one image body; returns the id of the (now active) image.
async fn upload_one(
    cfg: &UploadConfig,
    gate: &Gate,
    counters: &Counters,
    meta: &mut MetaClient,
    pattern: &[u8],
    latency: &mut Latencies,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let mut create = cfg.create.clone();
    if let Some(fields) = create.as_object_mut() {
        fields.insert("name".into(), name.into());
    }
    let Some(id) = gate.within(meta.create_image(create)).await else {
        return Ok(None);
    };
    let id = id?;
    let t = &cfg.endpoint;
    let start = Instant::now();
    let mut s = connect_tcp(t)
        .await
        .with_context(|| format!("connect {}", t.base()))?;
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: {}\r\nUser-Agent: glint-loadtest\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.host, cfg.size_bytes
    );
    let mut sent = 0u64;
    let mut write_err = None;
    match gate.within(s.write_all(head.as_bytes())).await {
        None => return Ok(Some(id)),
        Some(r) => r?,
    }
    let step = cfg.write_bytes.clamp(1, pattern.len()) as u64;
    while sent < cfg.size_bytes {
        // A write that is always ready never lets `within` look at the clock.
        if gate.expired() {
            return Ok(Some(id));
        }
        let off = (sent % pattern.len() as u64) as usize;
        let n = step
            .min(cfg.size_bytes - sent)
            .min((pattern.len() - off) as u64) as usize;
        match gate.within(s.write_all(&pattern[off..off + n])).await {
            None => return Ok(Some(id)),
            Some(Err(e)) => {
                // The server may have answered early (an error): read it below.
                write_err = Some(e);
                break;
            }
            Some(Ok(())) => {}
        }
        sent += n as u64;
        counters.add_bytes(n);
    }
    let mut buf = vec![0u8; 16 << 10];
    let Some(answer) = gate.within(read_head(&mut s, &mut buf)).await else {
        return Ok(Some(id));
    };
    let (h, filled) = match (answer, write_err) {
        (Ok(a), _) => a,
        (Err(e), Some(w)) => return Err(anyhow::Error::from(w).context(e)),
        (Err(e), None) => return Err(e),
    };
    if h.status != 204 {
        bail!(
            "upload {id}: status {} {}",
            h.status,
            String::from_utf8_lossy(&buf[h.head_len..filled])
        );
    }
    latency.record(start.elapsed());
    counters.requests.fetch_add(1, Ordering::Relaxed);
    Ok(Some(id))
}

/// Runs an upload load and reports it. Must be called inside a tokio runtime.
pub async fn run(cfg: UploadConfig) -> anyhow::Result<Report> {
    if cfg.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    let cfg = Arc::new(cfg);
    let pattern = pattern();
    let counters = Arc::new(Counters::default());
    let meter = Meter::start(&cfg.server_pids);
    let gate = Arc::new(Gate::new(cfg.bounds));
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency {
        let (cfg, gate, counters, pattern) =
            (cfg.clone(), gate.clone(), counters.clone(), pattern.clone());
        tasks.push(tokio::spawn(async move {
            let mut meta = MetaClient::new(cfg.endpoint.clone());
            let mut latency = Latencies::new();
            let mut first_error = None;
            let mut created = Vec::new();
            while gate.take() {
                match upload_one(
                    &cfg,
                    &gate,
                    &counters,
                    &mut meta,
                    &pattern,
                    &mut latency,
                    "loadtest-upload",
                )
                .await
                {
                    Ok(Some(id)) => created.push(id),
                    Ok(None) => break,
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (latency, first_error, created, meta)
        }));
    }
    let mut latency = Latencies::new();
    let mut first_error = None;
    let mut cleanup = Vec::new();
    for t in tasks {
        let (l, e, created, meta) = t.await.context("upload worker panicked")?;
        latency.merge(l);
        first_error = first_error.or(e);
        cleanup.push((created, meta));
    }
    let report = meter.finish(
        "upload",
        format!("{}/v2/images/{{id}}/file", cfg.endpoint.base()),
        cfg.concurrency,
        &counters,
        first_error,
        latency.summary(),
        None,
    );
    if cfg.delete_after {
        for (ids, mut meta) in cleanup {
            for id in ids {
                if let Err(e) = meta.delete_image(&id).await {
                    eprintln!("warning: cleanup: {e:#}");
                }
            }
        }
    }
    Ok(report)
}

/// Creates one image and uploads `size_bytes` of the pattern into it; returns its id (the
/// image stays). For setting up downloads.
pub async fn upload_image(
    endpoint: &Target,
    size_bytes: u64,
    name: &str,
) -> anyhow::Result<String> {
    let cfg = UploadConfig::new(endpoint.clone(), size_bytes, 1, Bounds::requests(1));
    let gate = Gate::new(cfg.bounds);
    let counters = Counters::default();
    let mut meta = MetaClient::new(endpoint.clone());
    let mut latency = Latencies::new();
    let id = upload_one(
        &cfg,
        &gate,
        &counters,
        &mut meta,
        &pattern(),
        &mut latency,
        name,
    )
    .await?
    .context("upload cut short")?;
    if counters.requests.load(Ordering::Relaxed) != 1 {
        bail!("upload of {id} did not complete");
    }
    Ok(id)
}
