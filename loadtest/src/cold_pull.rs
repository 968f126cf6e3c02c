//! `cold-pull` mode (issue "The block cache"): N clients start together on one image that no
//! cache holds yet, as Nova compute nodes do when a cloud boots a new image, and the store's
//! side of it is counted.
//!
//! The store is Ceph radosgw (S3) from `../shared/services` behind a counting hop of our own
//! ([`Hop`], a TCP forwarder): every server under test reads the image through it, so the
//! bytes it read from the store are measured at the store's door, never taken from the server's
//! own counters. Servers, each fed the same image in the same bucket:
//!
//! - glint with the block cache (cold: `DELETE /v2/cache` before each run; warm: right after a
//!   cold run);
//! - glint without a cache (Glance's behaviour for concurrent misses: each download reads the
//!   store);
//! - nginx with `proxy_cache` and `proxy_cache_lock on` in front of the bucket (a presigned
//!   GET), its cache emptied before each run;
//! - Varnish (Debian's package) in front of the bucket, restarted (so empty) before each run;
//! - nginx `sendfile` of a local copy of the image (the warm-cache reference).
//!
//! Each run: `clients` connections, released at once (within a few ms of each other), each one
//! whole GET; per client the time to the first body byte and the bytes (every client checks
//! its length, the first its md5). Reported: store bytes read (× image size), aggregate MB/s
//! (all bytes / first start to last end), time to first byte p50/p99, the first client's
//! (the leader's) time to first byte against the other clients' p99, and the server's peak RSS
//! and CPU per GiB. The table compares with the targets of the issue.

use crate::compare::{self, Goal, Row, values};
use crate::harness::Glint;
use crate::procs::{Monitor, ServerUsage};
use crate::{machine, stats};
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

/// Settings of a cold-pull comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ColdPullConfig {
    /// The `glint` binary.
    pub glint_bin: PathBuf,
    /// The `nginx` binary.
    pub nginx_bin: PathBuf,
    /// The `varnishd` binary, if installed.
    pub varnishd_bin: Option<PathBuf>,
    /// The directory of `ceph-rgw-start.sh`.
    pub services_dir: PathBuf,
    /// Bytes of the image.
    pub size_bytes: u64,
    /// Client counts, one set of runs each.
    pub clients: Vec<usize>,
    /// Rounds of runs per client count.
    pub rounds: usize,
    /// glint's `image_cache_block_size`.
    pub block_size: u64,
    /// Where the image file, caches and configs go (a temp dir inside it).
    pub work_dir: PathBuf,
    /// Where the JSON summary goes.
    pub out: PathBuf,
    /// The store's answers held to this many bytes a second in all (0: as fast as it goes): a
    /// slow store, so that a fill takes longer than nginx's 5 s lock timeout. glint without
    /// the cache is not run then (it would read the image once per client at that rate).
    pub store_rate: u64,
    /// The runs to make, by name (`glint-cold`, `glint-warm`, `glint-nocache`, `nginx-cold`,
    /// `nginx-local`, `varnish-cold`); empty: all.
    pub servers: Vec<String>,
}

impl ColdPullConfig {
    fn runs(&self, name: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|s| s == name)
    }
}

// === the counting hop ===

/// A TCP forwarder to the store that counts the bytes the store sends, and can hold them to a
/// rate (a slow store: all its connections together send at most `rate` bytes a second).
#[derive(Debug)]
pub struct Hop {
    addr: SocketAddr,
    down: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// What the store's answers are held to: bytes per second in all (time the store was idle
/// earns no credit: at most 100 ms of it).
#[derive(Debug)]
struct Limit {
    rate: u64,
    sent: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl Limit {
    /// `n` more bytes went out: sleeps until the rate allows them.
    fn took(&self, n: u64) {
        let wait = {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            let (start, total) = sent.get_or_insert((Instant::now(), 0));
            let due = Duration::from_secs_f64(*total as f64 / self.rate as f64);
            if start.elapsed() > due + Duration::from_millis(100) {
                // idle since: the rate counts from now
                *start = Instant::now();
                *total = 0;
            }
            *total += n;
            let due = Duration::from_secs_f64(*total as f64 / self.rate as f64);
            due.checked_sub(start.elapsed())
        };
        if let Some(w) = wait {
            std::thread::sleep(w);
        }
    }
}

impl Hop {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Hop> {
        Hop::start_limited(upstream, 0)
    }

    /// As [`Hop::start`], the store's answers held to `rate` bytes a second in all (0: not).
    pub fn start_limited(upstream: SocketAddr, rate: u64) -> anyhow::Result<Hop> {
        let limit = (rate > 0).then(|| {
            Arc::new(Limit {
                rate,
                sent: std::sync::Mutex::new(None),
            })
        });
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let down = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (down.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let d = d.clone();
                let limit = limit.clone();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let up = std::thread::spawn(move || pump(c2, s2, None, None));
                    pump(server, client, Some(&d), limit.as_deref());
                    let _ = up.join();
                });
            }
        });
        Ok(Hop { addr, down, stop })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes the store has sent so far.
    pub fn store_bytes(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn pump(mut src: TcpStream, mut dst: TcpStream, count: Option<&AtomicU64>, limit: Option<&Limit>) {
    // smaller reads when held to a rate, so that the rate is even
    let mut buf = vec![
        0u8;
        if limit.is_some() {
            64 * 1024
        } else {
            256 * 1024
        }
    ];
    loop {
        match src.read(&mut buf) {
            Ok(n) if n > 0 => {
                if dst.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(c) = count {
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
                if let Some(l) = limit {
                    l.took(n as u64);
                }
            }
            _ => break,
        }
    }
    let _ = dst.shutdown(Shutdown::Write);
}

// === one run ===

/// What the clients of one run saw, and what the store and the server spent on it.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The server (`glint-cold`, `glint-warm`, `glint-nocache`, `nginx-cold`, `varnish-cold`,
    /// `nginx-local`).
    pub server: String,
    /// Clients.
    pub clients: usize,
    /// Bytes the store sent during the run.
    pub store_bytes: u64,
    /// Bytes the clients received.
    pub client_bytes: u64,
    /// Clients that did not get the whole image (wrong status, short body, wrong md5).
    pub failed: usize,
    /// All bytes over the time from the first start to the last end, MB/s.
    pub aggregate_mb_s: f64,
    /// Time to the first body byte, median and p99, ms.
    pub ttfb_p50_ms: f64,
    /// p99.
    pub ttfb_p99_ms: f64,
    /// The first client to get a byte (the leader), ms.
    pub leader_ttfb_ms: f64,
    /// The other clients' p99, ms.
    pub followers_ttfb_p99_ms: f64,
    /// The server's peak RSS (the data plane for glint), MiB.
    pub server_rss_mib: f64,
    /// The server's CPU seconds per GiB sent.
    pub cpu_s_per_gib: f64,
}

/// Runs `clients` GETs of `url_path` on `addr` released at once.
async fn pull(
    addr: SocketAddr,
    url_path: &str,
    clients: usize,
    size: u64,
    md5_want: &str,
) -> (Vec<Option<Duration>>, Vec<u64>, usize, Duration) {
    let release = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let release = release.clone();
        let path = url_path.to_owned();
        let want = md5_want.to_owned();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await;
            release.wait().await;
            let started = Instant::now();
            let mut s = match stream {
                Ok(s) => s,
                Err(_) => return (None, 0, false, started, Instant::now()),
            };
            let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
            if s.write_all(req.as_bytes()).await.is_err() {
                return (None, 0, false, started, Instant::now());
            }
            let mut buf = vec![0u8; 256 * 1024];
            let (head, filled) = match crate::http::read_head(&mut s, &mut buf).await {
                Ok(h) => h,
                Err(_) => return (None, 0, false, started, Instant::now()),
            };
            let mut got = (filled - head.head_len) as u64;
            let mut ttfb = (got > 0).then(|| started.elapsed());
            let mut md5 = (i == 0).then(|| {
                use md5::Digest;
                let mut h = md5::Md5::new();
                h.update(&buf[head.head_len..filled]);
                h
            });
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if ttfb.is_none() {
                            ttfb = Some(started.elapsed());
                        }
                        got += n as u64;
                        if let Some(h) = md5.as_mut() {
                            use md5::Digest;
                            h.update(&buf[..n]);
                        }
                    }
                }
            }
            let ended = Instant::now();
            let md5_ok = md5.is_none_or(|h| {
                use md5::Digest;
                hex::encode(h.finalize()) == want
            });
            let ok = head.status == 200 && got == size && md5_ok;
            if !ok && i < 3 {
                eprintln!(
                    "cold-pull: client {i}: status {}, {got} of {size} bytes, md5 {}",
                    head.status,
                    if md5_ok { "ok" } else { "wrong" }
                );
            }
            (ttfb, got, ok, started, ended)
        }));
    }
    release.wait().await;
    let mut ttfbs = Vec::new();
    let mut bytes = Vec::new();
    let mut failed = 0;
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for t in tasks {
        let (ttfb, got, ok, started, ended) =
            t.await
                .unwrap_or((None, 0, false, Instant::now(), Instant::now()));
        ttfbs.push(ttfb);
        bytes.push(got);
        failed += usize::from(!ok);
        first = Some(first.map_or(started, |f| f.min(started)));
        last = Some(last.map_or(ended, |l| l.max(ended)));
    }
    let wall = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => Duration::ZERO,
    };
    (ttfbs, bytes, failed, wall)
}

#[allow(clippy::too_many_arguments)]
fn measure(
    rt: &tokio::runtime::Runtime,
    server: &str,
    addr: SocketAddr,
    path: &str,
    clients: usize,
    size: u64,
    md5: &str,
    hop: &Hop,
    pids: &[u32],
    rss_of: Option<&str>,
) -> RunResult {
    compare::settle();
    let before = hop.store_bytes();
    let monitor = Monitor::start(pids, Duration::from_millis(50));
    let (ttfbs, bytes, failed, wall) = rt.block_on(pull(addr, path, clients, size, md5));
    let usage: ServerUsage = monitor.finish();
    // the hop may still be forwarding the end of a fill
    std::thread::sleep(Duration::from_millis(200));
    let store_bytes = hop.store_bytes() - before;
    let client_bytes: u64 = bytes.iter().sum();
    let mut lat = stats::Latencies::new();
    let mut firsts: Vec<Duration> = ttfbs.iter().flatten().copied().collect();
    for t in &firsts {
        lat.record(*t);
    }
    let all = lat.summary();
    firsts.sort();
    let leader = firsts.first().copied().unwrap_or_default();
    let mut others = stats::Latencies::new();
    for t in firsts.iter().skip(1) {
        others.record(*t);
    }
    let others = others.summary();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let rss = match rss_of {
        Some(name) => usage.peak_rss_of(name).unwrap_or(0),
        None => usage.peak_rss_total_bytes,
    };
    let gib = client_bytes as f64 / (1u64 << 30) as f64;
    let r = RunResult {
        server: server.to_owned(),
        clients,
        store_bytes,
        client_bytes,
        failed,
        aggregate_mb_s: client_bytes as f64 / 1e6 / wall.as_secs_f64().max(1e-9),
        ttfb_p50_ms: all.p50_ms,
        ttfb_p99_ms: all.p99_ms,
        leader_ttfb_ms: ms(leader),
        followers_ttfb_p99_ms: others.p99_ms,
        server_rss_mib: rss as f64 / MIB as f64,
        cpu_s_per_gib: if gib > 0.0 {
            usage.cpu_seconds / gib
        } else {
            0.0
        },
    };
    eprintln!(
        "cold-pull: {server:>13} × {clients:>3}: store {:.2}× image, {:.0} MB/s, ttfb p50 {:.1} ms p99 {:.1} ms (leader {:.1}, followers p99 {:.1}), rss {:.1} MiB, {} failed",
        store_bytes as f64 / size as f64,
        r.aggregate_mb_s,
        r.ttfb_p50_ms,
        r.ttfb_p99_ms,
        r.leader_ttfb_ms,
        r.followers_ttfb_p99_ms,
        r.server_rss_mib,
        failed
    );
    r
}

// === the servers ===

struct Rgw {
    endpoint: String,
    access: String,
    secret: String,
    region: String,
}

fn start_rgw(dir: &Path) -> anyhow::Result<Rgw> {
    let script = "ceph-rgw-start.sh";
    let env = crate::compare_stores::start_service("cold-pull", dir, script)?;
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .with_context(|| format!("{script} printed no {k}"))
    };
    Ok(Rgw {
        endpoint: get("S3_ENDPOINT")?,
        access: get("S3_ACCESS_KEY")?,
        secret: get("S3_SECRET_KEY")?,
        region: env
            .get("S3_REGION")
            .cloned()
            .unwrap_or_else(|| "us-east-1".into()),
    })
}

fn s3_bucket(
    rgw: &Rgw,
    endpoint: &str,
    name: &str,
) -> anyhow::Result<(rusty_s3::Bucket, rusty_s3::Credentials)> {
    let bucket = rusty_s3::Bucket::new(
        endpoint.parse()?,
        rusty_s3::UrlStyle::Path,
        name.to_owned(),
        rgw.region.clone(),
    )?;
    Ok((
        bucket,
        rusty_s3::Credentials::new(rgw.access.clone(), rgw.secret.clone()),
    ))
}

/// A glint with one S3 store (the bucket, through the hop), with the cache or without.
fn start_glint(
    cfg: &ColdPullConfig,
    dir: &Path,
    rgw: &Rgw,
    hop: &Hop,
    bucket: &str,
    cache: bool,
) -> anyhow::Result<Glint> {
    let name = if cache { "cache" } else { "nocache" };
    let cache_section = if cache {
        format!(
            "[image_cache]\nimage_cache_dir = \"{}\"\nimage_cache_max_size = {}\nimage_cache_block_size = {}\n",
            dir.join(format!("glint-{name}")).display(),
            cfg.size_bytes * 2 + cfg.block_size,
            cfg.block_size
        )
    } else {
        format!(
            "[image_cache]\nimage_cache_block_size = {}\n",
            cfg.block_size
        )
    };
    let config = format!(
        "enabled_backends = \"rgw:s3\"\n[glance_store]\ndefault_backend = \"rgw\"\n[backends.rgw]\n\
         s3_store_host = \"{}\"\ns3_store_access_key = \"{}\"\ns3_store_secret_key = \"{}\"\n\
         s3_store_bucket = \"{bucket}\"\n{cache_section}",
        hop.endpoint(),
        rgw.access,
        rgw.secret,
    );
    let path = dir.join(format!("glint-{name}.toml"));
    std::fs::write(&path, config)?;
    Glint::start(
        &cfg.glint_bin,
        &["--config", path.to_str().unwrap_or_default()],
    )
}

/// Uploads `file` into a new image of `g`; its id.
fn upload(g: &Glint, file: &Path, size: u64) -> anyhow::Result<String> {
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let r = c
        .post(g.url("/v2/images"))
        .json(&serde_json::json!({"name": "cold-pull", "disk_format": "raw", "container_format": "bare"}))
        .send()?;
    let id = r.json::<serde_json::Value>()?["id"]
        .as_str()
        .context("no image id")?
        .to_owned();
    let body = reqwest::blocking::Body::sized(std::fs::File::open(file)?, size);
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()?;
    if r.status() != 204 {
        bail!("upload answered {}", r.status());
    }
    Ok(id)
}

/// Whether an HTTP server on `port` answers a request (any status).
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut b = [0u8; 12];
    matches!(s.read(&mut b), Ok(n) if n >= 12 && b.starts_with(b"HTTP/1."))
}

/// A server process of the comparison (nginx, varnishd) listening on `port`; stopped when
/// dropped.
struct Running {
    child: Option<Child>,
    port: u16,
}

impl Running {
    fn new(port: u16) -> Running {
        Running { child: None, port }
    }

    /// Stops the running process, then spawns `cmd` and waits until the port listens.
    fn start(&mut self, cmd: &mut Command, what: &str) -> anyhow::Result<()> {
        self.stop();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        wait_port(self.port, &mut child, what)?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM (nginx's master stops its workers, varnishd's manager its cache child: a SIGKILL
    /// would leave them serving on the port), a SIGKILL after 10 s, then a wait until nothing
    /// answers on the port.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(st) = child.try_wait()? {
            bail!("{what} exited during start: {st}");
        }
        if Instant::now() > deadline {
            bail!("{what} not listening on {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// nginx with `proxy_cache` + `proxy_cache_lock` in front of `upstream_path` on the hop
/// (`/cold`) and `sendfile` of the local copy (`/local`), its cache emptied at each start.
struct Nginx {
    server: Running,
    dir: PathBuf,
    bin: PathBuf,
}

impl Nginx {
    fn start(
        bin: &Path,
        dir: &Path,
        hop: &Hop,
        upstream_path: &str,
        local: &Path,
    ) -> anyhow::Result<Nginx> {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let conf = format!(
            "worker_processes 2;\ndaemon off;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy_temp;\n\
               fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               proxy_cache_path {d}/cache levels=1:2 keys_zone=img:10m max_size=64g inactive=1h use_temp_path=off;\n\
               server {{\n    listen 127.0.0.1:{port};\n\
                 location = /cold {{\n      proxy_pass http://{hop}{upstream_path};\n\
                   proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                   proxy_cache img;\n      proxy_cache_lock on;\n      proxy_cache_lock_timeout 5s;\n\
                   proxy_cache_valid 200 1h;\n      proxy_read_timeout 600s;\n    }}\n\
                 location = /local {{\n      alias {local};\n      default_type application/octet-stream;\n    }}\n\
               }}\n}}\n",
            d = dir.display(),
            hop = hop.addr,
            local = local.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let mut n = Nginx {
            server: Running::new(port),
            dir,
            bin: bin.to_owned(),
        };
        n.restart()?;
        Ok(n)
    }

    /// Stops nginx, empties its cache, starts it again.
    fn restart(&mut self) -> anyhow::Result<()> {
        self.server.stop();
        let _ = std::fs::remove_dir_all(self.dir.join("cache"));
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-p")
            .arg(&self.dir)
            .stderr(Stdio::null());
        self.server.start(&mut cmd, "nginx")
    }
}

/// Varnish in front of `upstream_path` on the hop (`/cold`), malloc storage (empty at each
/// start).
struct Varnish {
    server: Running,
    dir: PathBuf,
    bin: PathBuf,
    storage: u64,
}

impl Varnish {
    fn start(
        bin: &Path,
        dir: &Path,
        hop: &Hop,
        upstream_path: &str,
        size: u64,
    ) -> anyhow::Result<Varnish> {
        let dir = dir.join("varnish");
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let vcl = format!(
            "vcl 4.1;\nbackend rgw {{ .host = \"127.0.0.1\"; .port = \"{hport}\"; \
             .first_byte_timeout = 600s; .between_bytes_timeout = 600s; }}\n\
             sub vcl_recv {{ if (req.url == \"/cold\") {{ set req.url = \"{upstream_path}\"; \
             set req.http.host = \"{hop}\"; return (hash); }} }}\n\
             sub vcl_backend_response {{ set beresp.ttl = 1h; set beresp.do_stream = true; }}\n",
            hport = hop.addr.port(),
            hop = hop.addr,
        );
        std::fs::write(dir.join("bench.vcl"), vcl)?;
        let mut v = Varnish {
            server: Running::new(port),
            dir,
            bin: bin.to_owned(),
            storage: size * 2,
        };
        v.restart()?;
        Ok(v)
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        let port = self.server.port;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-F")
            .arg("-a")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-f")
            .arg(self.dir.join("bench.vcl"))
            .arg("-s")
            .arg(format!("malloc,{}", self.storage))
            .arg("-n")
            .arg(self.dir.join("work"))
            .stderr(std::fs::File::create(self.dir.join("varnishd.log"))?);
        self.server.start(&mut cmd, "varnishd")?;
        // the manager listens before its child serves: wait for a first answer
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers(port) {
            if Instant::now() > deadline {
                bail!("varnishd not answering on {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

// === the comparison ===

/// What `cold-pull` writes.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The machine.
    pub environment: machine::Environment,
    /// The settings.
    pub config: ColdPullConfig,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// The table.
    pub table: Vec<Row>,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn port_of(hostport: &str) -> anyhow::Result<u16> {
    hostport
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {hostport:?}"))
}

/// Runs the comparison; progress on stderr.
pub fn run(cfg: ColdPullConfig, client_threads: usize) -> anyhow::Result<Summary> {
    let environment = machine::environment();
    compare::announce("cold-pull", &environment, "nginx proxy_cache_lock, Varnish");
    let rt = compare::client_runtime(client_threads)?;
    std::fs::create_dir_all(&cfg.work_dir)?;
    let work = tempfile::Builder::new()
        .prefix("cold-pull")
        .tempdir_in(&cfg.work_dir)?;
    let dir = work.path();
    let rgw = start_rgw(&cfg.services_dir)?;
    let upstream: SocketAddr = rgw
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("radosgw endpoint")?;
    let hop = Hop::start_limited(upstream, cfg.store_rate)?;
    let bucket_name = format!("cold-pull-{}", std::process::id());
    let (bucket, creds) = s3_bucket(&rgw, &hop.endpoint(), &bucket_name)?;
    {
        use rusty_s3::S3Action;
        let url = bucket.create_bucket(&creds).sign(Duration::from_secs(60));
        let r = reqwest::blocking::Client::new().put(url).send()?;
        if !r.status().is_success() {
            bail!("creating bucket {bucket_name}: {}", r.status());
        }
    }

    // the image: random bytes, a local copy for nginx's sendfile reference
    let file = dir.join("image.bin");
    let md5 = {
        use md5::Digest;
        let mut h = md5::Md5::new();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut chunk = vec![0u8; 4 * MIB as usize];
        let mut left = cfg.size_bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            rand::Rng::fill(&mut rand::rng(), &mut chunk[..n]);
            h.update(&chunk[..n]);
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.flush()?;
        hex::encode(h.finalize())
    };
    let cached = start_glint(&cfg, dir, &rgw, &hop, &bucket_name, true)?;
    let plain = start_glint(&cfg, dir, &rgw, &hop, &bucket_name, false)?;
    eprintln!(
        "cold-pull: uploading {} bytes into each glint",
        cfg.size_bytes
    );
    let cached_id = upload(&cached, &file, cfg.size_bytes)?;
    let plain_id = upload(&plain, &file, cfg.size_bytes)?;
    let upstream_path = {
        use rusty_s3::S3Action;
        let url = bucket
            .get_object(Some(&creds), &cached_id)
            .sign(Duration::from_secs(7 * 86400));
        format!("{}?{}", url.path(), url.query().unwrap_or(""))
    };
    let mut nginx = Nginx::start(&cfg.nginx_bin, dir, &hop, &upstream_path, &file)?;
    let mut varnish = match &cfg.varnishd_bin {
        Some(bin) => match Varnish::start(bin, dir, &hop, &upstream_path, cfg.size_bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("cold-pull: varnish not measured: {e:#}");
                None
            }
        },
        None => None,
    };
    let clear = |g: &Glint| -> anyhow::Result<()> {
        let r = reqwest::blocking::Client::new()
            .delete(g.url("/v2/cache"))
            .send()?;
        if r.status() != 204 {
            bail!("DELETE /v2/cache answered {}", r.status());
        }
        Ok(())
    };
    let dp = |g: &Glint| g.plane_pid("dataplane").unwrap_or(0);
    let size = cfg.size_bytes;
    let mut runs = Vec::new();
    for &n in &cfg.clients {
        for round in 0..cfg.rounds {
            eprintln!("cold-pull: {n} clients, round {}", round + 1);
            let g_addr = addr(port_of(&cached.public)?);
            let p_addr = addr(port_of(&plain.public)?);
            clear(&cached)?;
            let path = format!("/v2/images/{cached_id}/file");
            let ppath = format!("/v2/images/{plain_id}/file");
            // one run, when `--servers` asks for it
            let mut one = |name: &str, at, path: &str, pids: &[u32], rss_of| {
                if cfg.runs(name) {
                    let r = measure(&rt, name, at, path, n, size, &md5, &hop, pids, rss_of);
                    runs.push(r);
                }
            };
            let glint = Some("dataplane");
            one("glint-cold", g_addr, &path, &[dp(&cached)], glint);
            one("glint-warm", g_addr, &path, &[dp(&cached)], glint);
            if cfg.store_rate == 0 {
                one("glint-nocache", p_addr, &ppath, &[dp(&plain)], glint);
            }
            nginx.restart()?;
            let (at, pid) = (addr(nginx.server.port), nginx.server.pid());
            one("nginx-cold", at, "/cold", &[pid], None);
            one("nginx-local", at, "/local", &[pid], None);
            if let Some(v) = varnish.as_mut() {
                v.restart()?;
                one(
                    "varnish-cold",
                    addr(v.server.port),
                    "/cold",
                    &[v.server.pid()],
                    None,
                );
            }
        }
    }
    let table = table(&cfg, &runs);
    drop((nginx, varnish));
    // the image objects and the bucket go: radosgw's OSD is small, and runs add up
    {
        use rusty_s3::S3Action;
        let client = reqwest::blocking::Client::new();
        for key in [&cached_id, &plain_id] {
            let url = bucket
                .delete_object(Some(&creds), key)
                .sign(Duration::from_secs(60));
            let _ = client.delete(url).send();
        }
        let url = bucket.delete_bucket(&creds).sign(Duration::from_secs(60));
        if let Err(e) = client.delete(url).send() {
            eprintln!("cold-pull: bucket {bucket_name} not removed: {e}");
        }
    }
    let summary = Summary {
        environment,
        config: cfg.clone(),
        runs,
        table,
    };
    if let Some(parent) = cfg.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cfg.out, serde_json::to_vec_pretty(&summary)?)?;
    Ok(summary)
}

/// A figure of a run, given the image size.
type Figure = fn(&RunResult, f64) -> f64;
/// One line of the table: metric, glint's run, reference, the reference's run, the figure,
/// target, goal.
type Line = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Figure,
    &'static str,
    Goal,
);

fn table(cfg: &ColdPullConfig, runs: &[RunResult]) -> Vec<Row> {
    let size = cfg.size_bytes as f64;
    let of = |server: &str, n: usize, f: Figure| -> Vec<f64> {
        let picked: Vec<&RunResult> = runs
            .iter()
            .filter(|r| r.server == server && r.clients == n)
            .collect();
        values(&picked, |r| Some(f(r, size)))
    };
    let store: Figure = |r, size| r.store_bytes as f64 / size;
    let agg: Figure = |r, _| r.aggregate_mb_s;
    let spread: Figure = |r, _| r.followers_ttfb_p99_ms / r.leader_ttfb_ms.max(1e-3);
    let p99: Figure = |r, _| r.ttfb_p99_ms;
    let cpu: Figure = |r, _| r.cpu_s_per_gib;
    let rss: Figure = |r, _| r.server_rss_mib;
    let failed: Figure = |r, _| r.failed as f64;
    // (metric, glint's run, reference, the reference's run, what, target, goal)
    let lines: [Line; 11] = [
        (
            "store bytes read, × image size (cold)",
            "glint-cold",
            "nginx proxy_cache_lock",
            "nginx-cold",
            store,
            "glint = 1.00",
            Goal::AtMost(1.01),
        ),
        (
            "store bytes read, × image size (cold)",
            "glint-cold",
            "Varnish",
            "varnish-cold",
            store,
            "glint = 1.00",
            Goal::AtMost(1.01),
        ),
        (
            "store bytes read, × image size",
            "glint-cold",
            "glint without cache",
            "glint-nocache",
            store,
            "",
            Goal::None,
        ),
        (
            "cold aggregate MB/s",
            "glint-cold",
            "glint warm cache",
            "glint-warm",
            agg,
            "≥ 0.8",
            Goal::RatioAtLeast(0.8),
        ),
        (
            "cold aggregate MB/s",
            "glint-cold",
            "better of nginx, Varnish cold",
            "best-cold",
            agg,
            "≥ 1.0",
            Goal::RatioAtLeast(1.0),
        ),
        (
            "followers' TTFB p99 / leader's TTFB",
            "glint-cold",
            "nginx proxy_cache_lock",
            "nginx-cold",
            spread,
            "glint ≤ 2",
            Goal::AtMost(2.0),
        ),
        (
            "TTFB p99 ms (cold)",
            "glint-cold",
            "Varnish",
            "varnish-cold",
            p99,
            "",
            Goal::None,
        ),
        (
            "warm aggregate MB/s",
            "glint-warm",
            "nginx sendfile, local file",
            "nginx-local",
            agg,
            "≥ 0.95",
            Goal::RatioAtLeast(0.95),
        ),
        (
            "warm CPU s/GiB",
            "glint-warm",
            "nginx sendfile, local file",
            "nginx-local",
            cpu,
            "≤ 1.1",
            Goal::RatioAtMost(1.1),
        ),
        (
            "data plane peak RSS MiB (cold)",
            "glint-cold",
            "nginx proxy_cache (all workers)",
            "nginx-cold",
            rss,
            "glint ≤ 64",
            Goal::AtMost(64.0),
        ),
        (
            "clients not served whole",
            "glint-cold",
            "nginx proxy_cache_lock",
            "nginx-cold",
            failed,
            "glint = 0",
            Goal::AtMost(0.0),
        ),
    ];
    let mut rows = Vec::new();
    for &n in &cfg.clients {
        for (metric, ours, reference, theirs, f, target, goal) in lines {
            let reference_values = if theirs == "best-cold" {
                // per round, the better of the two (either alone when the other was not run)
                let (nginx, varnish) = (of("nginx-cold", n, f), of("varnish-cold", n, f));
                (0..nginx.len().max(varnish.len()))
                    .map(|i| {
                        let a = nginx.get(i).copied().unwrap_or(0.0);
                        a.max(varnish.get(i).copied().unwrap_or(0.0))
                    })
                    .collect()
            } else {
                of(theirs, n, f)
            };
            rows.push(compare::row(
                &format!("{n} clients: {metric}"),
                reference,
                of(ours, n, f),
                reference_values,
                target,
                goal,
            ));
        }
    }
    rows
}
