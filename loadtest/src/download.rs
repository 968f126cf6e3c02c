//! `download` mode: a fleet of Nova nodes fetching images.
//!
//! `concurrency` workers each loop: pick the next image URL (round-robin over the list, offset
//! by the worker number so that many images spread over the workers), `GET` it, read the body
//! into a large buffer and throw it away, counting bytes. With `keep_alive` a worker reuses its
//! connection (`Connection: close` is sent otherwise). With `range_resume`, each download is cut
//! at a random point (the connection is dropped, as when a node's transfer breaks) and resumed
//! on a new connection with `Range: bytes=<received>-`; the 206 answer and its `Content-Range`
//! are checked.

use crate::http::{ResponseHead, connect_tcp, parse_content_range, read_head};
use crate::run::{Bounds, Counters, Gate, Meter, Report};
use crate::stats::Latencies;
use crate::target::Target;
use anyhow::{Context, bail};
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Settings of a download run.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// URLs to download (round-robin).
    pub targets: Vec<Target>,
    /// Concurrent downloads.
    pub concurrency: usize,
    /// When to stop.
    pub bounds: Bounds,
    /// Reuse connections between downloads.
    pub keep_alive: bool,
    /// Interrupt every download at a random point and resume it with `Range`.
    pub range_resume: bool,
    /// Read buffer per worker, bytes.
    pub buffer_bytes: usize,
    /// Roots of the server's process tree to measure (may be empty).
    pub server_pids: Vec<u32>,
}

impl DownloadConfig {
    /// Defaults: keep-alive, no resume, 512 KiB buffers, no server measurement.
    pub fn new(targets: Vec<Target>, concurrency: usize, bounds: Bounds) -> DownloadConfig {
        DownloadConfig {
            targets,
            concurrency,
            bounds,
            keep_alive: true,
            range_resume: false,
            buffer_bytes: 512 << 10,
            server_pids: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct WorkerResult {
    latency: Latencies,
    ttfb: Latencies,
    first_error: Option<String>,
}

/// Why a transfer stopped early.
enum Stop {
    Deadline,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Stop {
        Stop::Failed(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Failed(e.into())
    }
}

struct Worker<'a> {
    cfg: &'a DownloadConfig,
    gate: &'a Gate,
    counters: &'a Counters,
    buf: Vec<u8>,
    conn: Option<TcpStream>,
    out: WorkerResult,
}

impl Worker<'_> {
    /// Sends the request head of a `GET` on `conn` (a new connection if `None`) and reads the
    /// response head. Returns the connection, the head and how much of the buffer is filled.
    async fn send(
        &mut self,
        conn: Option<TcpStream>,
        t: &Target,
        from: Option<u64>,
    ) -> Result<(TcpStream, ResponseHead, usize), Stop> {
        let gate = self.gate;
        let mut s = match conn {
            Some(s) => s,
            None => gate
                .within(connect_tcp(t))
                .await
                .ok_or(Stop::Deadline)?
                .with_context(|| format!("connect {}", t.base()))?,
        };
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: glint-loadtest\r\n",
            t.path, t.host
        );
        if let Some(f) = from {
            req += &format!("Range: bytes={f}-\r\n");
        }
        if !self.cfg.keep_alive {
            req += "Connection: close\r\n";
        }
        req += "\r\n";
        gate.within(s.write_all(req.as_bytes()))
            .await
            .ok_or(Stop::Deadline)??;
        let (head, filled) = gate
            .within(read_head(&mut s, &mut self.buf))
            .await
            .ok_or(Stop::Deadline)??;
        Ok((s, head, filled))
    }

    /// One `GET` (ranged from `from` if set). With `cut`, stops reading after that fraction of
    /// the body and drops the connection. Returns the head and how many body bytes were read.
    async fn fetch(
        &mut self,
        t: &Target,
        from: Option<u64>,
        cut: Option<f64>,
        ttfb_from: Instant,
    ) -> Result<(ResponseHead, u64), Stop> {
        let gate = self.gate;
        // A kept-alive connection the server closed meanwhile fails at once: retry once on a
        // new connection before calling it an error.
        let (mut s, head, filled) = match self.conn.take() {
            Some(old) => match self.send(Some(old), t, from).await {
                Err(Stop::Failed(_)) => self.send(None, t, from).await?,
                other => other?,
            },
            None => self.send(None, t, from).await?,
        };
        self.out.ttfb.record(ttfb_from.elapsed());
        let ok = match from {
            None => head.status == 200,
            Some(_) => head.status == 206,
        };
        if !ok {
            let body = String::from_utf8_lossy(&self.buf[head.head_len..filled]).into_owned();
            return Err(Stop::Failed(anyhow::anyhow!(
                "{}: status {} {body}",
                t.path,
                head.status
            )));
        }
        if head.chunked {
            return Err(Stop::Failed(anyhow::anyhow!(
                "{}: chunked download bodies are not supported",
                t.path
            )));
        }
        let len = head.content_length.unwrap_or(u64::MAX);
        let want = match (cut, head.content_length) {
            (Some(f), Some(len)) => ((len as f64) * f) as u64,
            (Some(_), None) => {
                return Err(Stop::Failed(anyhow::anyhow!(
                    "{}: no Content-Length, cannot resume",
                    t.path
                )));
            }
            (None, _) => len,
        };
        let early = (filled - head.head_len) as u64;
        self.counters.add_bytes(early.min(want) as usize);
        let mut got = early;
        while got < want {
            // `within` alone is not enough: a read that is always ready never lets its
            // timeout look at the clock.
            if gate.expired() {
                return Err(Stop::Deadline);
            }
            let room = self
                .buf
                .len()
                .min((want - got).min(usize::MAX as u64) as usize);
            let n = gate
                .within(s.read(&mut self.buf[..room]))
                .await
                .ok_or(Stop::Deadline)??;
            if n == 0 {
                if head.content_length.is_none() {
                    return Ok((head, got));
                }
                return Err(Stop::Failed(anyhow::anyhow!(
                    "{}: connection closed after {got} of {len} body bytes",
                    t.path
                )));
            }
            got += n as u64;
            self.counters.add_bytes(n);
        }
        // Early bytes past a cut point are not counted (the connection is dropped below).
        got = got.min(want);
        let whole = got == len;
        if whole && self.cfg.keep_alive && head.keep_alive {
            self.conn = Some(s);
        }
        Ok((head, got))
    }

    /// One logical download of `t` (two requests with `range_resume`).
    async fn download(&mut self, t: &Target) -> Result<(), Stop> {
        let start = Instant::now();
        let cut = self
            .cfg
            .range_resume
            .then(|| rand::rng().random_range(0.05..0.95));
        let (head, got) = self.fetch(t, None, cut, start).await?;
        let len = head.content_length.unwrap_or(got);
        if got < len {
            // Interrupted on purpose: resume on a new connection.
            self.conn = None;
            self.counters.resumes.fetch_add(1, Ordering::Relaxed);
            let (h2, got2) = self.fetch(t, Some(got), None, Instant::now()).await?;
            let cr = h2.content_range.as_deref().unwrap_or("");
            if parse_content_range(cr) != Some((got, len - 1, len)) || got + got2 != len {
                return Err(Stop::Failed(anyhow::anyhow!(
                    "{}: resume from {got} answered Content-Range {cr:?} with {got2} bytes",
                    t.path
                )));
            }
        }
        self.out.latency.record(start.elapsed());
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn run(mut self, index: usize) -> WorkerResult {
        let mut i = index;
        while self.gate.take() {
            let t = &self.cfg.targets[i % self.cfg.targets.len()];
            i += 1;
            match self.download(t).await {
                Ok(()) => {}
                Err(Stop::Deadline) => break,
                Err(Stop::Failed(e)) => {
                    self.conn = None;
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if self.out.first_error.is_none() {
                        self.out.first_error = Some(format!("{e:#}"));
                    }
                    // Do not spin on a refused connection.
                    let _ = self
                        .gate
                        .within(tokio::time::sleep(std::time::Duration::from_millis(10)))
                        .await;
                }
            }
        }
        self.out
    }
}

/// Runs a download load and reports it. Must be called inside a tokio runtime.
pub async fn run(cfg: DownloadConfig) -> anyhow::Result<Report> {
    if cfg.targets.is_empty() {
        bail!("nothing to download");
    }
    if cfg.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    let cfg = Arc::new(cfg);
    let counters = Arc::new(Counters::default());
    let meter = Meter::start(&cfg.server_pids);
    let gate = Arc::new(Gate::new(cfg.bounds));
    let mut tasks = Vec::new();
    for index in 0..cfg.concurrency {
        let (cfg, gate, counters) = (cfg.clone(), gate.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let w = Worker {
                cfg: &cfg,
                gate: &gate,
                counters: &counters,
                buf: vec![0u8; cfg.buffer_bytes.max(16 << 10)],
                conn: None,
                out: WorkerResult::default(),
            };
            w.run(index).await
        }));
    }
    let mut latency = Latencies::new();
    let mut ttfb = Latencies::new();
    let mut first_error = None;
    for t in tasks {
        let r = t.await.context("download worker panicked")?;
        latency.merge(r.latency);
        ttfb.merge(r.ttfb);
        first_error = first_error.or(r.first_error);
    }
    let target = if cfg.targets.len() == 1 {
        format!("{}{}", cfg.targets[0].base(), cfg.targets[0].path)
    } else {
        format!("{} images at {}", cfg.targets.len(), cfg.targets[0].base())
    };
    Ok(meter.finish(
        "download",
        target,
        cfg.concurrency,
        &counters,
        first_error,
        latency.summary(),
        Some(ttfb.summary()),
    ))
}
