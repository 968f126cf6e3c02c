//! `compare` mode: glint against nginx (`sendfile on`) on the same file, and against its own
//! limits, in one run on this machine.
//!
//! 1. Start `glint serve` (port 0, temp data dir, 2 data-plane workers) and upload one image of
//!    `size_bytes`; add 30 small images for the list. nginx (generated config, temp dir,
//!    loopback port, `sendfile on`, `worker_processes auto`) serves the very file glint stores
//!    (`data_dir/images/<id>`), so both read the same page cache.
//! 2. `rounds` times, alternating glint (A) and nginx (B) for each measurement: downloads with 1,
//!    `streams` and `many_streams` concurrent keep-alive connections (server CPU and RSS of both
//!    process trees measured from `/proc`); one upload of `size_bytes` into glint and, right
//!    after, the md5+sha512 hash limit over as many bytes ([`crate::hashlimit`]); image show and
//!    list through the data plane (TCP) and straight from the control plane (`run/api.sock`),
//!    and image show through nginx proxying to that same socket (`proxy_pass` with a keep-alive
//!    upstream): what a general-purpose proxy costs on this machine, next to glint's.
//! 3. Take the median of every measurement over the rounds, print glint/reference ratios next to
//!    the targets, and write everything (environment, every run, the table) as JSON.

use crate::download::{self, DownloadConfig};
use crate::harness::{Glint, raw_status};
use crate::hashlimit::{self, HashLimit};
use crate::metadata::{self, MetadataConfig};
use crate::run::{Bounds, Report};
use crate::stats::median;
use crate::target::Target;
use crate::upload::{self, UploadConfig};
use crate::{machine, stats};
use anyhow::{Context, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareConfig {
    /// The `glint` binary.
    pub glint_bin: PathBuf,
    /// The `nginx` binary.
    pub nginx_bin: PathBuf,
    /// Image size, bytes.
    pub size_bytes: u64,
    /// A/B rounds.
    pub rounds: usize,
    /// Length of each download run, s.
    pub download_seconds: f64,
    /// Length of each metadata run, s.
    pub metadata_seconds: f64,
    /// Concurrent downloads of the "many streams" run.
    pub streams: usize,
    /// Concurrent downloads of the memory run.
    pub many_streams: usize,
    /// Connections of the metadata runs.
    pub metadata_concurrency: usize,
    /// Where the JSON summary goes.
    pub out: PathBuf,
    /// Nice value for the client and both servers (negative = ahead of other work on a shared
    /// machine; needs root); 0 leaves the priority alone.
    pub nice: i32,
}

/// One line of the result table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is measured, with its unit.
    pub metric: String,
    /// What glint's figure is compared with.
    pub reference: String,
    /// glint, one value per round.
    pub glint_values: Vec<f64>,
    /// The reference, one value per round.
    pub reference_values: Vec<f64>,
    /// Median of `glint_values`.
    pub glint: Option<f64>,
    /// Median of `reference_values`.
    pub reference_median: Option<f64>,
    /// glint / reference: the median of the per-round ratios (each round measures both back
    /// to back, so a machine that is slower in one round slows both), or the ratio of the
    /// medians when the rounds are not paired.
    pub ratio: Option<f64>,
    /// The target, in words.
    pub target: String,
    /// Whether the target is met (`None` when there is no target or no figure).
    pub met: Option<bool>,
}

/// Every run of one round.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Round {
    /// glint, 1 stream.
    pub glint_download_1: Option<Report>,
    /// nginx, 1 stream.
    pub nginx_download_1: Option<Report>,
    /// glint, `streams` streams.
    pub glint_download_n: Option<Report>,
    /// nginx, `streams` streams.
    pub nginx_download_n: Option<Report>,
    /// glint, `many_streams` streams.
    pub glint_download_many: Option<Report>,
    /// nginx, `many_streams` streams.
    pub nginx_download_many: Option<Report>,
    /// One upload into glint.
    pub glint_upload: Option<Report>,
    /// One upload into glint of an image whose content is not inspected (`ovf`).
    pub glint_upload_uninspected: Option<Report>,
    /// The hash limit measured right after it.
    pub hash_limit: Option<HashLimit>,
    /// `openssl speed -bytes 1048576 md5 sha512` right after that (MB/s each): the machine's
    /// reference for the digests the limit uses.
    pub openssl_speed: Option<(f64, f64)>,
    /// `GET /v2/images/{id}` through the data plane.
    pub show_dataplane: Option<Report>,
    /// `GET /v2/images/{id}` on `run/api.sock`.
    pub show_controlplane: Option<Report>,
    /// `GET /v2/images/{id}` through nginx proxying to `run/api.sock`.
    pub show_nginx_proxy: Option<Report>,
    /// `GET /v2/images?limit=25` through the data plane.
    pub list_dataplane: Option<Report>,
    /// `GET /v2/images?limit=25` on `run/api.sock`.
    pub list_controlplane: Option<Report>,
}

/// The JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Machine, kernel, toolchain, git revision.
    pub environment: machine::Environment,
    /// `nginx -v`.
    pub nginx_version: String,
    /// The settings.
    pub config: CompareConfig,
    /// Every run.
    pub rounds: Vec<Round>,
    /// The table.
    pub table: Vec<Row>,
    /// Wall time of the whole comparison, s.
    pub total_seconds: f64,
    /// `/proc/loadavg` at the end.
    pub loadavg_at_end: String,
    /// The nice value the client and servers ran at.
    pub nice: i32,
    /// Median share of the machine other processes took during glint's download runs, cores.
    pub other_load_cores_glint_downloads: Option<f64>,
    /// The same during nginx's download runs, cores.
    pub other_load_cores_nginx_downloads: Option<f64>,
    /// Median over all runs of the CPU share other processes took (busy CPU seconds of
    /// everything but the client and the server, per second of run, in cores).
    pub other_load_cores: Option<f64>,
}

/// nginx on a generated config in a temp dir; stopped on drop.
#[derive(Debug)]
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// The port where nginx proxies to glint's control plane socket.
    proxy_port: u16,
}

impl Nginx {
    fn start(bin: &Path, root: &Path, api_sock: &Path, workers: usize) -> anyhow::Result<Nginx> {
        let dir = tempfile::Builder::new()
            .prefix("glint-nginx")
            .tempdir_in("/tmp")?;
        let free_port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let port = free_port()?;
        let proxy_port = free_port()?;
        let d = dir.path().display();
        // As root, workers would drop to `nobody` and could not read glint's 0700 data dir.
        let user = if rustix::process::geteuid().is_root() {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            "{user}\n\
             daemon off;\n\
             worker_processes {workers};\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               sendfile on;\n\
               tcp_nopush on;\n\
               keepalive_requests 1000000;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location /images/ {{ alias {root}/; default_type application/octet-stream; }}\n\
               }}\n\
               upstream glint_api {{ server unix:{api}; keepalive 64; }}\n\
               server {{\n\
                 listen 127.0.0.1:{proxy_port};\n\
                 location / {{ proxy_pass http://glint_api; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
               }}\n\
             }}\n",
            root = root.display(),
            api = api_sock.display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::File::create(dir.path().join("stderr.log"))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Nginx {
            child,
            dir,
            port,
            proxy_port,
        })
    }

    fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\nConnection: close\r\n\r\n"
        );
        loop {
            if let Some(s) = self.child.try_wait()? {
                bail!("nginx exited ({s}): {}", self.log());
            }
            match raw_status(&format!("127.0.0.1:{}", self.port), &req) {
                Some(206) => return Ok(()),
                Some(other) => bail!("nginx answers {other} for {path}: {}", self.log()),
                None => {}
            }
            if Instant::now() > deadline {
                bail!("nginx not ready within 20 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nginx -v` (it prints to stderr).
fn nginx_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}

const MIB: f64 = 1048576.0;

/// The target of a [`Row`], checked by [`row`].
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// No target.
    None,
    /// ratio ≥ x.
    RatioAtLeast(f64),
    /// ratio ≤ x.
    RatioAtMost(f64),
    /// glint median ≥ x.
    AtLeast(f64),
    /// glint median ≤ x.
    AtMost(f64),
}

/// A [`Row`] from glint's and the reference's values (one per round): medians, ratio, verdict.
pub fn row(
    metric: &str,
    reference: &str,
    g: Vec<f64>,
    r: Vec<f64>,
    target: &str,
    goal: Goal,
) -> Row {
    let gm = median(&g);
    let rm = median(&r);
    let paired: Vec<f64> = g
        .iter()
        .zip(&r)
        .filter(|(_, b)| **b != 0.0)
        .map(|(a, b)| a / b)
        .collect();
    let ratio = match (gm, rm) {
        _ if g.len() == r.len() && paired.len() == g.len() && !paired.is_empty() => median(&paired),
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    };
    let met = match goal {
        Goal::None => None,
        Goal::RatioAtLeast(x) => ratio.map(|v| v >= x),
        Goal::RatioAtMost(x) => ratio.map(|v| v <= x),
        Goal::AtLeast(x) => gm.map(|v| v >= x),
        Goal::AtMost(x) => gm.map(|v| v <= x),
    };
    Row {
        metric: metric.to_owned(),
        reference: reference.to_owned(),
        glint_values: g,
        reference_values: r,
        glint: gm,
        reference_median: rm,
        ratio,
        target: target.to_owned(),
        met,
    }
}

/// Builds the result table from the rounds.
pub fn table(cfg: &CompareConfig, rounds: &[Round]) -> Vec<Row> {
    let mbps = |r: &Option<Report>| r.as_ref().map(|r| r.mb_per_second);
    let rps = |r: &Option<Report>| r.as_ref().map(|r| r.requests_per_second);
    let p99 = |r: &Option<Report>| r.as_ref().map(|r| r.latency.p99_ms);
    let cpu = |r: &Option<Report>| r.as_ref().and_then(|r| r.server_cpu_seconds_per_gib);
    let rss_total = |r: &Option<Report>| {
        r.as_ref()
            .and_then(|r| r.server.as_ref())
            .map(|s| s.peak_rss_total_bytes as f64 / MIB)
    };
    let rss_dp = |r: &Option<Report>| {
        r.as_ref()
            .and_then(|r| r.server.as_ref())
            .and_then(|s| s.peak_rss_of("dataplane"))
            .map(|b| b as f64 / MIB)
    };
    let ttfb = |r: &Option<Report>| r.as_ref().and_then(|r| r.ttfb).map(|t| t.p50_ms);
    let n = cfg.streams;
    let m = cfg.many_streams;
    let c = cfg.metadata_concurrency;
    let size_gib = stats::gib(cfg.size_bytes);
    vec![
        row(
            "download, 1 stream (MB/s)",
            "nginx",
            values(rounds, |r| mbps(&r.glint_download_1)),
            values(rounds, |r| mbps(&r.nginx_download_1)),
            ">= 0.95x nginx",
            Goal::RatioAtLeast(0.95),
        ),
        row(
            &format!("download, {n} streams aggregate (MB/s)"),
            "nginx",
            values(rounds, |r| mbps(&r.glint_download_n)),
            values(rounds, |r| mbps(&r.nginx_download_n)),
            ">= 0.9x nginx",
            Goal::RatioAtLeast(0.9),
        ),
        row(
            &format!("server CPU-seconds per GiB, {n} streams"),
            "nginx",
            values(rounds, |r| cpu(&r.glint_download_n)),
            values(rounds, |r| cpu(&r.nginx_download_n)),
            "<= 1.1x nginx",
            Goal::RatioAtMost(1.1),
        ),
        row(
            &format!("server RSS peak, {n} streams, all processes (MiB)"),
            "nginx",
            values(rounds, |r| rss_total(&r.glint_download_n)),
            values(rounds, |r| rss_total(&r.nginx_download_n)),
            "",
            Goal::None,
        ),
        row(
            &format!("download, {m} streams aggregate (MB/s)"),
            "nginx",
            values(rounds, |r| mbps(&r.glint_download_many)),
            values(rounds, |r| mbps(&r.nginx_download_many)),
            "",
            Goal::None,
        ),
        row(
            &format!("data plane RSS peak, {m} streams (MiB)"),
            "nginx, all processes",
            values(rounds, |r| rss_dp(&r.glint_download_many)),
            values(rounds, |r| {
                rss_total(&r.glint_download_many).and(rss_total(&r.nginx_download_many))
            }),
            "<= 32 MiB",
            Goal::AtMost(32.0),
        ),
        row(
            "time to first byte p50, 1 stream (ms)",
            "nginx",
            values(rounds, |r| ttfb(&r.glint_download_1)),
            values(rounds, |r| ttfb(&r.nginx_download_1)),
            "",
            Goal::None,
        ),
        row(
            &format!("upload {size_gib:.2} GiB, md5+sha512 (MB/s)"),
            "two-core hash limit",
            values(rounds, |r| mbps(&r.glint_upload)),
            values(rounds, |r| r.hash_limit.map(|h| h.two_core_mb_per_second)),
            ">= 0.85x limit",
            Goal::RatioAtLeast(0.85),
        ),
        row(
            &format!("upload {size_gib:.2} GiB, inspected (bare) (MB/s)"),
            "not inspected (ovf)",
            values(rounds, |r| mbps(&r.glint_upload)),
            values(rounds, |r| mbps(&r.glint_upload_uninspected)),
            ">= 0.95x",
            Goal::RatioAtLeast(0.95),
        ),
        row(
            "  (md5 alone, MB/s)",
            "openssl speed md5",
            values(rounds, |r| r.hash_limit.map(|h| h.md5_mb_per_second)),
            values(rounds, |r| r.openssl_speed.map(|s| s.0)),
            "~1x: the machine's fastest",
            Goal::None,
        ),
        row(
            "  (sha512 alone, MB/s)",
            "openssl speed sha512",
            values(rounds, |r| r.hash_limit.map(|h| h.sha512_mb_per_second)),
            values(rounds, |r| r.openssl_speed.map(|s| s.1)),
            "~1x: the machine's fastest",
            Goal::None,
        ),
        row(
            "  (one-core hash limit, MB/s)",
            "two-core hash limit",
            values(rounds, |r| r.hash_limit.map(|h| h.one_core_mb_per_second)),
            values(rounds, |r| r.hash_limit.map(|h| h.two_core_mb_per_second)),
            "",
            Goal::None,
        ),
        row(
            &format!("GET /v2/images/{{id}}, {c} conns (req/s)"),
            "control plane direct",
            values(rounds, |r| rps(&r.show_dataplane)),
            values(rounds, |r| rps(&r.show_controlplane)),
            ">= 0.8x control plane",
            Goal::RatioAtLeast(0.8),
        ),
        row(
            &format!("GET /v2/images/{{id}}, {c} conns (req/s) absolute"),
            "control plane direct",
            values(rounds, |r| rps(&r.show_dataplane)),
            values(rounds, |r| rps(&r.show_controlplane)),
            ">= 15000 req/s",
            Goal::AtLeast(15000.0),
        ),
        row(
            &format!("GET /v2/images/{{id}}, {c} conns (req/s)"),
            "nginx proxy_pass, same socket",
            values(rounds, |r| rps(&r.show_dataplane)),
            values(rounds, |r| rps(&r.show_nginx_proxy)),
            "",
            Goal::None,
        ),
        row(
            "GET /v2/images/{id} p99 (ms)",
            "control plane direct",
            values(rounds, |r| p99(&r.show_dataplane)),
            values(rounds, |r| p99(&r.show_controlplane)),
            "< 5 ms",
            Goal::AtMost(5.0),
        ),
        row(
            &format!("GET /v2/images?limit=25, {c} conns (req/s)"),
            "control plane direct",
            values(rounds, |r| rps(&r.list_dataplane)),
            values(rounds, |r| rps(&r.list_controlplane)),
            ">= 5000 req/s",
            Goal::AtLeast(5000.0),
        ),
    ]
}

/// A number with a sensible count of decimals, `-` for none.
pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The table as aligned text.
pub fn render(rows: &[Row]) -> String {
    let mut lines = vec![[
        "metric".to_owned(),
        "glint".into(),
        "reference".into(),
        "ref".into(),
        "ratio".into(),
        "target".into(),
        "".into(),
    ]];
    for r in rows {
        lines.push([
            r.metric.clone(),
            fmt_num(r.glint),
            r.reference.clone(),
            fmt_num(r.reference_median),
            r.ratio.map(|v| format!("{v:.2}x")).unwrap_or("-".into()),
            r.target.clone(),
            match r.met {
                Some(true) => "ok".into(),
                Some(false) => "MISS".into(),
                None => "".into(),
            },
        ]);
    }
    let mut width = [0usize; 7];
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut s = String::new();
        for (i, c) in l.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            if i == 1 || i == 3 || i == 4 {
                s += &" ".repeat(pad);
                s += c;
            } else {
                s += c;
                s += &" ".repeat(pad);
            }
            s += "  ";
        }
        out += s.trim_end();
        out.push('\n');
    }
    out
}

/// Cores' worth of CPU other processes used during a run.
fn other_cores(r: &Report) -> Option<f64> {
    r.other_cpu_seconds.map(|o| o / r.elapsed_seconds.max(1e-9))
}

/// Pause between runs so that the previous run's connections (and deletions) are done on the
/// server.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// Sets the nice value of this process; call before any thread or child exists (they inherit
/// it). A refusal is reported on stderr, prefixed with `tool`.
pub fn set_nice(tool: &str, nice: i32) {
    if nice != 0
        && let Err(e) = rustix::process::setpriority_process(None, nice)
    {
        eprintln!("{tool}: cannot set nice {nice} ({e}); other work on this machine will compete");
    }
}

/// Prints the machine and revision a comparison runs on, and the reference's version.
pub fn announce(tool: &str, environment: &machine::Environment, reference: &str) {
    eprintln!(
        "{tool}: {} ({} CPUs, kernel {}, load {}), git {}{}, {reference}",
        environment.cpu_model,
        environment.cpus,
        environment.kernel,
        environment.loadavg_at_start,
        environment.git_revision,
        if environment.git_dirty {
            " (dirty)"
        } else {
            ""
        },
    );
}

/// The load clients' runtime.
pub fn client_runtime(client_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads.max(1))
        .enable_all()
        .build()
}

/// One value per round, where the round has it.
pub fn values<R>(rounds: &[R], f: impl Fn(&R) -> Option<f64>) -> Vec<f64> {
    rounds.iter().filter_map(f).collect()
}

/// Runs the whole comparison, printing progress to stderr and the table to stdout.
pub fn run(cfg: CompareConfig, client_threads: usize) -> anyhow::Result<Summary> {
    let started = Instant::now();
    set_nice("compare", cfg.nice);
    let environment = machine::environment();
    let nginx_version = nginx_version(&cfg.nginx_bin);
    announce("compare", &environment, &nginx_version);
    let rt = client_runtime(client_threads)?;

    let glint = Glint::start(&cfg.glint_bin, &[])?;
    measure(cfg, &glint, &rt, environment, nginx_version, started).map_err(|e| {
        let log = glint.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        e.context(format!("glint log (last lines):\n{}", tail.join("\n")))
    })
}

fn measure(
    cfg: CompareConfig,
    glint: &Glint,
    rt: &tokio::runtime::Runtime,
    environment: machine::Environment,
    nginx_version: String,
    started: Instant,
) -> anyhow::Result<Summary> {
    let endpoint = Target::parse(&format!("http://{}", glint.public))?;
    let api_sock = glint.dir().join("data").join("run").join("api.sock");
    eprintln!(
        "compare: glint at {} (data in {}), uploading a {} byte image…",
        glint.public,
        glint.dir().display(),
        cfg.size_bytes
    );
    let id = rt.block_on(upload::upload_image(
        &endpoint,
        cfg.size_bytes,
        "loadtest-download",
    ))?;
    let file = glint.store_dir().join(&id);
    let len = std::fs::metadata(&file)
        .with_context(|| format!("glint's store file {}", file.display()))?
        .len();
    if len != cfg.size_bytes {
        bail!(
            "{} holds {len} bytes, not {}",
            file.display(),
            cfg.size_bytes
        );
    }
    rt.block_on(async {
        let mut meta = crate::http::MetaClient::new(endpoint.clone());
        for i in 0..30 {
            meta.create_image(serde_json::json!({
                "name": format!("loadtest-list-{i}"),
                "tags": ["loadtest"],
                "os_distro": "cirros",
            }))
            .await?;
        }
        anyhow::Ok(())
    })?;

    let mut nginx = Nginx::start(
        &cfg.nginx_bin,
        &glint.store_dir(),
        &api_sock,
        environment.cpus,
    )?;
    let nginx_path = format!("/images/{id}");
    nginx.wait_ready(&nginx_path)?;
    eprintln!("compare: nginx at 127.0.0.1:{}", nginx.port);

    let glint_url = Target::parse(&format!("http://{}/v2/images/{id}/file", glint.public))?;
    let nginx_url = Target::parse(&format!("http://127.0.0.1:{}{nginx_path}", nginx.port))?;
    let glint_pids = vec![glint.pid()];
    let nginx_pids = vec![nginx.child.id()];

    let dl = |t: &Target, pids: &[u32], n: usize| -> anyhow::Result<Report> {
        let mut c = DownloadConfig::new(vec![t.clone()], n, Bounds::seconds(cfg.download_seconds));
        c.server_pids = pids.to_vec();
        let r = rt.block_on(download::run(c))?;
        eprint!("{}", r.text());
        if r.errors > 0 {
            eprintln!("compare: warning: {} errors in this run", r.errors);
        }
        settle();
        Ok(r)
    };
    let md = |t: Target, pids: &[u32]| -> anyhow::Result<Report> {
        let mut c = MetadataConfig::new(
            t,
            cfg.metadata_concurrency,
            Bounds::seconds(cfg.metadata_seconds),
        );
        c.server_pids = pids.to_vec();
        let r = rt.block_on(metadata::run(c))?;
        eprint!("{}", r.text());
        settle();
        Ok(r)
    };

    // Warm both paths once (page cache, connection setup code).
    let mut warm = DownloadConfig::new(
        vec![glint_url.clone(), nginx_url.clone()],
        1,
        Bounds::requests(2),
    );
    warm.keep_alive = false;
    rt.block_on(download::run(warm))?;

    let mut rounds = Vec::new();
    for i in 0..cfg.rounds {
        eprintln!("compare: round {}/{}", i + 1, cfg.rounds);
        let mut r = Round {
            glint_download_1: Some(dl(&glint_url, &glint_pids, 1)?),
            nginx_download_1: Some(dl(&nginx_url, &nginx_pids, 1)?),
            glint_download_n: Some(dl(&glint_url, &glint_pids, cfg.streams)?),
            nginx_download_n: Some(dl(&nginx_url, &nginx_pids, cfg.streams)?),
            glint_download_many: Some(dl(&glint_url, &glint_pids, cfg.many_streams)?),
            nginx_download_many: Some(dl(&nginx_url, &nginx_pids, cfg.many_streams)?),
            ..Round::default()
        };
        // with and without content inspection (a bare image is inspected, an ovf one not),
        // taking turns at going first
        for inspected in [i % 2 == 0, i % 2 != 0] {
            let mut up =
                UploadConfig::new(endpoint.clone(), cfg.size_bytes, 1, Bounds::requests(1));
            up.server_pids = glint_pids.clone();
            if !inspected {
                up.create = serde_json::json!({"container_format": "ovf"});
            }
            let u = rt.block_on(upload::run(up))?;
            eprint!(
                "{}{}",
                if inspected { "" } else { "(not inspected) " },
                u.text()
            );
            if inspected {
                r.glint_upload = Some(u);
            } else {
                r.glint_upload_uninspected = Some(u);
            }
            settle();
        }
        let h = hashlimit::measure(cfg.size_bytes, &upload::pattern());
        eprintln!(
            "hash limit over {} bytes: two cores {:.0} MB/s, one core {:.0} MB/s (md5 {:.0}, sha512 {:.0})",
            h.bytes,
            h.two_core_mb_per_second,
            h.one_core_mb_per_second,
            h.md5_mb_per_second,
            h.sha512_mb_per_second
        );
        r.hash_limit = Some(h);
        r.openssl_speed = hashlimit::openssl_speed();
        if let Some((md5, sha512)) = r.openssl_speed {
            eprintln!("openssl speed: md5 {md5:.0} MB/s, sha512 {sha512:.0} MB/s");
        }
        settle();
        let show = format!("/v2/images/{id}");
        let list = "/v2/images?limit=25";
        r.show_dataplane = Some(md(endpoint.with_path(&show), &glint_pids)?);
        r.show_controlplane = Some(md(Target::unix(&api_sock, &show), &glint_pids)?);
        let proxied = Target::parse(&format!("http://127.0.0.1:{}{show}", nginx.proxy_port))?;
        r.show_nginx_proxy = Some(md(
            proxied,
            &[glint_pids.clone(), nginx_pids.clone()].concat(),
        )?);
        r.list_dataplane = Some(md(endpoint.with_path(list), &glint_pids)?);
        r.list_controlplane = Some(md(Target::unix(&api_sock, list), &glint_pids)?);
        rounds.push(r);
    }
    drop(nginx);
    let table = table(&cfg, &rounds);
    let other: Vec<f64> = rounds
        .iter()
        .flat_map(|r| {
            [
                &r.glint_download_1,
                &r.nginx_download_1,
                &r.glint_download_n,
                &r.nginx_download_n,
                &r.glint_download_many,
                &r.nginx_download_many,
                &r.glint_upload,
                &r.glint_upload_uninspected,
                &r.show_dataplane,
                &r.show_controlplane,
                &r.show_nginx_proxy,
                &r.list_dataplane,
                &r.list_controlplane,
            ]
        })
        .flatten()
        .filter_map(other_cores)
        .collect();
    let glint_dl: Vec<f64> = rounds
        .iter()
        .flat_map(|r| {
            [
                &r.glint_download_1,
                &r.glint_download_n,
                &r.glint_download_many,
            ]
        })
        .flatten()
        .filter_map(other_cores)
        .collect();
    let nginx_dl: Vec<f64> = rounds
        .iter()
        .flat_map(|r| {
            [
                &r.nginx_download_1,
                &r.nginx_download_n,
                &r.nginx_download_many,
            ]
        })
        .flatten()
        .filter_map(other_cores)
        .collect();
    let summary = Summary {
        environment,
        nginx_version,
        config: cfg.clone(),
        rounds,
        table,
        total_seconds: started.elapsed().as_secs_f64(),
        loadavg_at_end: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        other_load_cores: median(&other),
        nice: rustix::process::getpriority_process(None).unwrap_or(0),
        other_load_cores_glint_downloads: median(&glint_dl),
        other_load_cores_nginx_downloads: median(&nginx_dl),
    };
    if let Some(parent) = cfg.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cfg.out, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", cfg.out.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compute_medians_ratios_and_verdicts() {
        let r = row(
            "x",
            "y",
            vec![3.0, 1.0, 2.0],
            vec![2.0, 2.0, 4.0],
            "",
            Goal::RatioAtLeast(0.95),
        );
        assert_eq!(r.glint, Some(2.0));
        assert_eq!(r.reference_median, Some(2.0));
        // per-round ratios 1.5, 0.5, 0.5: their median
        assert_eq!(r.ratio, Some(0.5));
        assert_eq!(r.met, Some(false));
        // unpaired: ratio of the medians
        let r = row(
            "x",
            "y",
            vec![3.0, 1.0],
            vec![2.0],
            "",
            Goal::RatioAtLeast(0.95),
        );
        assert_eq!(r.ratio, Some(1.0));
        let r = row("x", "y", vec![3.0], vec![2.0], "", Goal::RatioAtMost(1.1));
        assert_eq!(r.met, Some(false));
        let r = row("x", "y", vec![40.0], vec![], "", Goal::AtMost(32.0));
        assert_eq!((r.ratio, r.met), (None, Some(false)));
        let r = row("x", "y", vec![], vec![], "", Goal::AtLeast(1.0));
        assert_eq!(r.met, None);
        let text = render(&[r]);
        assert!(text.starts_with("metric"));
        assert_eq!(text.lines().count(), 2);
    }
}
