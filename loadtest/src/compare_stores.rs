//! `compare-stores` mode: glint's S3 and Swift stores against `rclone` on the same servers,
//! and the data plane's memory per multipart upload, in one run on this machine.
//!
//! The servers are the real ones of `../shared/services` (Ceph radosgw: S3; the Swift
//! all-in-one: native Swift with tempauth, and S3 through its s3api middleware), started (or
//! found running: the scripts are idempotent) by their start scripts, whose `KEY=VALUE` lines
//! give the endpoints and credentials. rclone is configured by environment variables only
//! (`RCLONE_CONFIG_<REMOTE>_*`, no config file) with the same part size, parts in flight and
//! multipart threshold as glint's stores.
//!
//! 1. Make a bucket of its own on radosgw and on the s3api (`rclone mkdir`), write the upload
//!    file (`size_bytes` of [`upload::pattern`], the bytes glint is sent), and start
//!    `glint serve` with four stores: `fast` (file, default), `rgw` and `swifts3` (S3) and
//!    `swift` (native Swift, auth v1). Upload one image into `rgw` and one into `swift` for
//!    the downloads.
//! 2. `rounds` times, alternating glint (A) and rclone (B): upload into radosgw, then into the
//!    s3api (glint: `PUT /v2/images/{id}/file` with `Content-Length` and `X-Image-Meta-Store`,
//!    md5+sha512 as always, timed from the first byte to the 204; rclone: `copyto` of the file,
//!    timed over the whole process, without its own checksums); the md5+sha512 hash limit
//!    over as many bytes ([`hashlimit::measure`]); download of the radosgw image and of the
//!    Swift image (glint: [`download::run`], one stream, one whole download; rclone:
//!    `rclone cat` of the same object to `/dev/null`). Both sides read every byte into their
//!    own memory and throw it away. glint keeps no local copy: every download reads the store.
//! 3. Memory: a fresh glint per upload (so that no earlier transfer has grown the data plane),
//!    a small warm-up upload, the data plane's idle `VmRSS`, `VmHWM` reset
//!    (`/proc/<pid>/clear_refs`), then one upload of unknown size (chunked, so multipart) of
//!    `memory_size_bytes` and one of `size_bytes` into radosgw while [`procs::Monitor`] samples
//!    `VmRSS`; the cost of the upload is the peak (sampled or `VmHWM`, whichever is larger)
//!    minus the idle figure.
//! 4. Import memory, on the glint of step 2: the data plane's idle `VmRSS`, `VmHWM` reset,
//!    then its peak over a `web-download` of the radosgw image (fetched from glint itself,
//!    loopback allowed for it) into the s3api, and over a `copy-image` of the radosgw image
//!    into the s3api (each through staging); the goal is an upload's bound.
//!
//! With Ceph's configuration known (radosgw's cluster), step 2 also uploads into an RBD store
//! (pool `glint-bench-rbd`, made once) against `rbd import` of the same file, and downloads
//! the RBD image against `rbd export` of its snapshot to `/dev/null`.
//!
//! 5. Delete the images, purge the buckets and containers (`rclone purge`, after aborting
//!    any multipart upload left), let radosgw collect the deleted data at once
//!    (`radosgw-admin gc process`, best effort), and write the table ([`compare::render`])
//!    and the JSON summary.

use crate::compare::{self, Goal, Row, settle, values};
use crate::download::{self, DownloadConfig};
use crate::harness::Glint;
use crate::hashlimit::{self, HashLimit};
use crate::http::{MetaClient, connect_tcp, read_head};
use crate::procs::{self, Monitor, ServerUsage};
use crate::run::{Bounds, Report};
use crate::target::Target;
use crate::{machine, stats, upload};
use anyhow::{Context, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

/// Settings of a store comparison.
#[derive(Debug, Clone, Serialize)]
pub struct StoresConfig {
    /// The `glint` binary.
    pub glint_bin: PathBuf,
    /// The `rclone` binary.
    pub rclone_bin: PathBuf,
    /// The directory of `ceph-rgw-start.sh` and `swift-aio-start.sh`.
    pub services_dir: PathBuf,
    /// Bytes of the upload and download runs (and of the second memory run).
    pub size_bytes: u64,
    /// Bytes of the first memory run.
    pub memory_size_bytes: u64,
    /// A/B rounds of uploads and downloads.
    pub rounds: usize,
    /// Part size of both clients' multipart uploads, MiB (glint
    /// `s3_store_large_object_chunk_size`, rclone `--s3-chunk-size`).
    pub part_size_mib: u64,
    /// Parts in flight per upload (glint `s3_store_thread_pools`, rclone
    /// `--s3-upload-concurrency`).
    pub parts_in_flight: u64,
    /// Above this size uploads go multipart, MiB (glint `s3_store_large_object_size`, rclone
    /// `--s3-upload-cutoff`).
    pub large_object_size_mib: u64,
    /// Where the upload file for rclone is written (a temp dir inside it).
    pub work_dir: PathBuf,
    /// Where the JSON summary goes.
    pub out: PathBuf,
    /// Nice value for the client, glint and rclone (negative needs root; 0 = leave alone).
    pub nice: i32,
}

impl StoresConfig {
    /// The memory goal of one upload: parts in flight × part size + 8 MiB, bytes.
    pub fn memory_bound_bytes(&self) -> u64 {
        self.parts_in_flight * self.part_size_mib * MIB + 8 * MIB
    }
}

/// Parses a size: bytes, or a number with `KiB`/`MiB`/`GiB`/`TiB` (also `K`, `M`, `G`, `T`:
/// binary) or `kB`/`MB`/`GB`/`TB` (decimal).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?}: not a size"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => {
            return Err(format!(
                "{s:?}: unknown unit {u:?} (KiB, MiB, GiB, MB, GB…)"
            ));
        }
    };
    let v = n * mult as f64;
    if !(v.is_finite() && v >= 1.0 && v.fract() == 0.0) {
        return Err(format!("{s:?}: not a whole number of bytes (at least 1)"));
    }
    Ok(v as u64)
}

/// `1 GiB`, `64 MiB`, `1000 bytes`.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 28) {
        format!("{} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

// === the servers ===

/// The `KEY=VALUE` lines of a start script's output.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            let ok = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            ok.then(|| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// An S3 endpoint.
#[derive(Debug, Clone)]
struct S3Server {
    endpoint: String,
    access: String,
    secret: String,
    region: String,
}

/// A Swift endpoint with v1 (tempauth) auth.
#[derive(Debug, Clone)]
struct SwiftServer {
    auth_url: String,
    user: String,
    key: String,
}

/// One endpoint as the summary records it (credentials left out).
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInfo {
    /// The server.
    pub server: String,
    /// `s3` or `swift`.
    pub api: String,
    /// Endpoint (S3) or auth URL (Swift).
    pub endpoint: String,
    /// Access key (S3) or `account:user` (Swift).
    pub user: String,
}

#[derive(Debug)]
struct Services {
    rgw: S3Server,
    aio_s3: S3Server,
    aio_swift: SwiftServer,
    ceph_conf: Option<String>,
}

/// Runs one of `../shared/services`' start scripts (`tool` names the caller in progress
/// lines); its `KEY=VALUE` lines.
pub fn start_service(
    tool: &str,
    dir: &Path,
    script: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let path = dir.join(script);
    eprintln!("{tool}: {}", path.display());
    let out = Command::new(&path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_env(&String::from_utf8_lossy(&out.stdout)))
}

impl Services {
    fn start(dir: &Path) -> anyhow::Result<Services> {
        let run = |script: &str| start_service("compare-stores", dir, script);
        let ceph = run("ceph-rgw-start.sh")?;
        let aio = run("swift-aio-start.sh")?;
        let get = |m: &BTreeMap<String, String>, script: &str, k: &str| {
            m.get(k)
                .cloned()
                .with_context(|| format!("{script} printed no {k}="))
        };
        let s3 = |m: &BTreeMap<String, String>, script: &str| -> anyhow::Result<S3Server> {
            Ok(S3Server {
                endpoint: get(m, script, "S3_ENDPOINT")?,
                access: get(m, script, "S3_ACCESS_KEY")?,
                secret: get(m, script, "S3_SECRET_KEY")?,
                region: m
                    .get("S3_REGION")
                    .cloned()
                    .unwrap_or_else(|| "us-east-1".into()),
            })
        };
        Ok(Services {
            rgw: s3(&ceph, "ceph-rgw-start.sh")?,
            aio_s3: s3(&aio, "swift-aio-start.sh")?,
            aio_swift: SwiftServer {
                auth_url: get(&aio, "swift-aio-start.sh", "SWIFT_AUTH_URL")?,
                user: get(&aio, "swift-aio-start.sh", "SWIFT_USER")?,
                key: get(&aio, "swift-aio-start.sh", "SWIFT_KEY")?,
            },
            ceph_conf: ceph.get("CEPH_CONF").cloned(),
        })
    }

    fn info(&self) -> Vec<ServiceInfo> {
        let s3 = |server: &str, s: &S3Server| ServiceInfo {
            server: server.into(),
            api: "s3".into(),
            endpoint: s.endpoint.clone(),
            user: s.access.clone(),
        };
        vec![
            s3("ceph radosgw", &self.rgw),
            s3("swift all-in-one (s3api)", &self.aio_s3),
            ServiceInfo {
                server: "swift all-in-one".into(),
                api: "swift".into(),
                endpoint: self.aio_swift.auth_url.clone(),
                user: self.aio_swift.user.clone(),
            },
        ]
    }
}

// === impl Rclone ===

/// rclone with three remotes configured by environment variables: `rgw` (radosgw S3),
/// `sws3` (the all-in-one's s3api) and `sw` (the all-in-one's native Swift, auth v1).
#[derive(Debug, Clone)]
struct Rclone {
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// `copyto` flags that match glint's store settings.
    upload_flags: Vec<String>,
}

impl Rclone {
    fn new(bin: &Path, s: &Services, cfg: &StoresConfig) -> Rclone {
        let mut env = vec![("RCLONE_CONFIG".to_owned(), "/dev/null".to_owned())];
        let mut set = |remote: &str, k: &str, v: &str| {
            env.push((format!("RCLONE_CONFIG_{remote}_{k}"), v.to_owned()));
        };
        for (remote, srv, provider) in [("RGW", &s.rgw, "Ceph"), ("SWS3", &s.aio_s3, "Other")] {
            set(remote, "TYPE", "s3");
            set(remote, "PROVIDER", provider);
            set(remote, "ENDPOINT", &srv.endpoint);
            set(remote, "ACCESS_KEY_ID", &srv.access);
            set(remote, "SECRET_ACCESS_KEY", &srv.secret);
            set(remote, "REGION", &srv.region);
            set(remote, "FORCE_PATH_STYLE", "true");
        }
        set("SW", "TYPE", "swift");
        set("SW", "AUTH", &s.aio_swift.auth_url);
        set("SW", "USER", &s.aio_swift.user);
        set("SW", "KEY", &s.aio_swift.key);
        set("SW", "AUTH_VERSION", "1");
        let upload_flags = vec![
            format!("--s3-chunk-size={}M", cfg.part_size_mib),
            format!("--s3-upload-concurrency={}", cfg.parts_in_flight),
            format!("--s3-upload-cutoff={}M", cfg.large_object_size_mib),
            // No md5 of the file before the upload (metadata) nor after it (verification):
            // rclone stands for what the server takes in; glint's hashing is the other limit.
            "--s3-disable-checksum".into(),
            "--ignore-checksum".into(),
            // The bucket exists and the key is new: no HEADs first.
            "--s3-no-check-bucket".into(),
            "--no-check-dest".into(),
        ];
        Rclone {
            bin: bin.to_owned(),
            env,
            upload_flags,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .arg("--retries=1")
            .stdin(Stdio::null())
            // The AWS SDK in rclone refuses a custom CA bundle with its HTTP transport, and
            // these endpoints are plain HTTP anyway.
            .env_remove("AWS_CA_BUNDLE")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// Runs rclone; its stdout is returned, a failure carries its stderr.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command(args)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "rclone {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs rclone with its stdout to `/dev/null`; the wall time of the process.
    fn timed(&self, args: &[&str]) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let out = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "rclone {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    }

    fn version(&self) -> anyhow::Result<String> {
        let v = self.run(&["version"]).with_context(|| {
            format!(
                "{} not usable (benches/compare-stores installs rclone)",
                self.bin.display()
            )
        })?;
        Ok(v.lines().next().unwrap_or_default().trim().to_owned())
    }

    fn upload(&self, file: &Path, dest: &str, bytes: u64) -> anyhow::Result<Transfer> {
        let file = file.to_string_lossy();
        let mut args = vec!["copyto", &*file, dest];
        args.extend(self.upload_flags.iter().map(String::as_str));
        let took = self.timed(&args)?;
        Ok(Transfer::new(bytes, took, None))
    }

    fn download(&self, src: &str, bytes: u64) -> anyhow::Result<Transfer> {
        let took = self.timed(&["cat", src])?;
        Ok(Transfer::new(bytes, took, None))
    }
}

/// Removes what the run put on the servers, also when it fails half-way.
#[derive(Debug)]
struct Cleanup {
    rclone: Rclone,
    /// `remote:bucket` of S3 buckets (multipart uploads aborted, then purged).
    s3: Vec<String>,
    /// `remote:container` of Swift containers (purged if they exist).
    swift: Vec<String>,
    ceph_conf: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for b in &self.s3 {
            let _ = self
                .rclone
                .run(&["backend", "cleanup", b, "-o", "max-age=0s"]);
            if let Err(e) = self.rclone.run(&["purge", b]) {
                eprintln!("compare-stores: warning: cleanup: {e:#}");
            }
        }
        for c in &self.swift {
            // A container that was never made (no segments) is not an error.
            let _ = self.rclone.run(&["purge", c]);
        }
        // radosgw keeps deleted data for `rgw_gc_obj_min_wait` (2 h): collect it now so that
        // repeated runs do not fill the test cluster's OSD.
        if let Some(conf) = &self.ceph_conf
            && let Ok(child) = Command::new("radosgw-admin")
                .args(["--conf", conf, "gc", "process", "--include-all"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        {
            wait_bounded(child, Duration::from_secs(300));
        }
    }
}

fn wait_bounded(mut child: std::process::Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// === measurements ===

/// One whole transfer.
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// Body bytes.
    pub bytes: u64,
    /// Wall time, s.
    pub seconds: f64,
    /// MB/s (10⁶ bytes).
    pub mb_per_second: f64,
    /// glint's processes over the transfer (glint's uploads).
    pub server: Option<ServerUsage>,
}

impl Transfer {
    fn new(bytes: u64, took: Duration, server: Option<ServerUsage>) -> Transfer {
        Transfer {
            bytes,
            seconds: took.as_secs_f64(),
            mb_per_second: stats::mb_per_second(bytes, took),
            server,
        }
    }

    fn text(&self, what: &str) -> String {
        let mut s = format!(
            "{what}: {} in {:.2} s, {:.1} MB/s\n",
            human(self.bytes),
            self.seconds,
            self.mb_per_second
        );
        if let Some(srv) = &self.server {
            s += &format!(
                "  glint CPU {:.2} s, data plane peak RSS {:.1} MiB\n",
                srv.cpu_seconds,
                srv.peak_rss_of("dataplane").unwrap_or(0) as f64 / MIB as f64
            );
        }
        s
    }
}

/// Every run of one round.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Round {
    /// glint into radosgw (S3 store `rgw`).
    pub glint_upload_rgw: Option<Transfer>,
    /// rclone into the same bucket.
    pub rclone_upload_rgw: Option<Transfer>,
    /// glint into the all-in-one's s3api (S3 store `swifts3`).
    pub glint_upload_swifts3: Option<Transfer>,
    /// rclone into the same bucket.
    pub rclone_upload_swifts3: Option<Transfer>,
    /// glint's `glance-direct` import of as many bytes into radosgw (the import alone).
    pub glint_import_rgw: Option<Transfer>,
    /// The md5+sha512 hash limit over as many bytes, measured right after.
    pub hash_limit: Option<HashLimit>,
    /// glint, the image in radosgw, one stream.
    pub glint_download_rgw: Option<Report>,
    /// `rclone cat` of the same object.
    pub rclone_download_rgw: Option<Transfer>,
    /// glint, the image in the Swift store (native API), one stream.
    pub glint_download_swift: Option<Report>,
    /// `rclone cat` of the same object.
    pub rclone_download_swift: Option<Transfer>,
    /// glint into Ceph RBD (store `rbd`).
    pub glint_upload_rbd: Option<Transfer>,
    /// `rbd import` of the same file into the same pool.
    pub rbd_import: Option<Transfer>,
    /// glint, the image in RBD, one stream.
    pub glint_download_rbd: Option<Report>,
    /// `rbd export` of the same image's snapshot to `/dev/null`.
    pub rbd_export: Option<Transfer>,
}

/// The RBD pool of the run (`rbd` store and the `rbd` tool's runs).
pub const BENCH_POOL: &str = "glint-bench-rbd";

/// Runs the `rbd` tool on the cluster of `conf`, stdout to `/dev/null`; its wall time.
fn rbd_timed(conf: &str, args: &[&str]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = Command::new("rbd")
        .arg("-c")
        .arg(conf)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running rbd (ceph-common)")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "rbd {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// Makes the run's pool once (kept between runs, like the cluster).
fn ensure_pool(conf: &str) -> anyhow::Result<()> {
    let ls = Command::new("ceph")
        .args(["-c", conf, "osd", "pool", "ls"])
        .output()
        .context("running ceph (ceph-common)")?;
    if String::from_utf8_lossy(&ls.stdout)
        .lines()
        .any(|l| l.trim() == BENCH_POOL)
    {
        return Ok(());
    }
    let made = Command::new("ceph")
        .args(["-c", conf, "osd", "pool", "create", BENCH_POOL, "8"])
        .output()?;
    if !made.status.success() {
        bail!(
            "ceph osd pool create {BENCH_POOL}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    rbd_timed(conf, &["pool", "init", BENCH_POOL])?;
    Ok(())
}

/// The data plane's memory over one upload of unknown size into radosgw.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryRun {
    /// Bytes uploaded (chunked).
    pub bytes: u64,
    /// The data plane's pid.
    pub dataplane_pid: u32,
    /// `VmRSS` before the upload (after a warm-up upload), bytes.
    pub idle_rss_bytes: u64,
    /// Largest `VmRSS` sampled during the upload, bytes.
    pub peak_rss_sampled_bytes: u64,
    /// `VmHWM` after the upload, when it could be reset before it (else `None`), bytes.
    pub hwm_bytes: Option<u64>,
    /// The larger of the two peaks, bytes.
    pub peak_bytes: u64,
    /// `peak_bytes - idle_rss_bytes`.
    pub per_upload_bytes: u64,
    /// The goal: parts in flight × part size + 8 MiB, bytes.
    pub bound_bytes: u64,
    /// The upload itself.
    pub upload: Transfer,
}

/// The data plane's memory over one import (`web-download`, `copy-image`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportMemory {
    /// The import method and its source.
    pub method: String,
    /// Bytes imported.
    pub bytes: u64,
    /// `VmRSS` before the import, bytes.
    pub idle_rss_bytes: u64,
    /// The larger of the sampled `VmRSS` peak and `VmHWM` (when it could be reset), bytes.
    pub peak_bytes: u64,
    /// `peak_bytes - idle_rss_bytes`.
    pub per_import_bytes: u64,
    /// The goal: an upload's bound (parts in flight × part size + 8 MiB), bytes.
    pub bound_bytes: u64,
    /// The import itself.
    pub import: Transfer,
}

/// The JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Machine, kernel, toolchain, git revision.
    pub environment: machine::Environment,
    /// `rclone version`, first line.
    pub rclone_version: String,
    /// The servers (no credentials).
    pub services: Vec<ServiceInfo>,
    /// The settings.
    pub config: StoresConfig,
    /// The rclone flags of every upload (the part settings match glint's stores).
    pub rclone_upload_flags: Vec<String>,
    /// The S3 buckets used (deleted at the end).
    pub bucket: String,
    /// The Swift container of the `swift` store (deleted at the end).
    pub swift_container: String,
    /// Every A/B round.
    pub rounds: Vec<Round>,
    /// The memory runs: `memory_size_bytes`, then `size_bytes`.
    pub memory: Vec<MemoryRun>,
    /// The imports' memory runs: `web-download`, then `copy-image`, of `size_bytes`.
    pub import_memory: Vec<ImportMemory>,
    /// The table.
    pub table: Vec<Row>,
    /// Wall time of the whole comparison, s.
    pub total_seconds: f64,
    /// `/proc/loadavg` at the end.
    pub loadavg_at_end: String,
    /// The nice value the client, glint and rclone ran at.
    pub nice: i32,
}

/// The glint configuration: a file store (the default) and the three object stores.
fn glint_config(
    cfg: &StoresConfig,
    dir: &Path,
    s: &Services,
    bucket: &str,
    container: &str,
) -> String {
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let s3 = |id: &str, srv: &S3Server, what: &str| {
        format!(
            "[backends.{id}]\n\
             store_description = {}\n\
             s3_store_host = {}\n\
             s3_store_access_key = {}\n\
             s3_store_secret_key = {}\n\
             s3_store_bucket = {}\n\
             s3_store_bucket_url_format = \"path\"\n\
             s3_store_region_name = {}\n\
             s3_store_create_bucket_on_put = true\n\
             s3_store_large_object_size = {}\n\
             s3_store_large_object_chunk_size = {}\n\
             s3_store_thread_pools = {}\n",
            q(what),
            q(&srv.endpoint),
            q(&srv.access),
            q(&srv.secret),
            q(bucket),
            q(&srv.region),
            cfg.large_object_size_mib,
            cfg.part_size_mib,
            cfg.parts_in_flight,
        )
    };
    let sw = &s.aio_swift;
    format!(
        "enabled_backends = \"fast:file, rgw:s3, swifts3:s3, swift:swift{}\"\n\
         [glance_store]\n\
         default_backend = \"fast\"\n\
         [backends.fast]\n\
         filesystem_store_datadir = {}\n\
         {}{}\
         [backends.swift]\n\
         store_description = \"Swift all-in-one (native API)\"\n\
         swift_store_auth_address = {}\n\
         swift_store_auth_version = \"1\"\n\
         swift_store_user = {}\n\
         swift_store_key = {}\n\
         swift_store_container = {}\n\
         swift_store_create_container_on_put = true\n\
         {}\
         [import_filtering_opts]\n\
         allowed_ports = []\n\
         allowed_networks = [\"127.0.0.0/8\"]\n",
        if s.ceph_conf.is_some() {
            ", rbd:rbd"
        } else {
            ""
        },
        q(&dir.join("fast").to_string_lossy()),
        s3("rgw", &s.rgw, "Ceph radosgw (S3)"),
        s3("swifts3", &s.aio_s3, "Swift all-in-one (s3api)"),
        q(&sw.auth_url),
        q(&sw.user),
        q(&sw.key),
        q(container),
        match &s.ceph_conf {
            Some(conf) => format!(
                "[backends.rbd]\n\
                 store_description = \"Ceph RBD\"\n\
                 rbd_store_pool = {}\n\
                 rbd_store_ceph_conf = {}\n",
                q(BENCH_POOL),
                q(conf)
            ),
            None => String::new(),
        },
    )
}

/// Writes `bytes` of the upload pattern to `path` (what glint is sent, for rclone).
fn write_pattern_file(path: &Path, bytes: u64, pattern: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(
        8 << 20,
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(pattern.len() as u64) as usize;
        f.write_all(&pattern[..n])?;
        done += n as u64;
    }
    f.flush()?;
    Ok(())
}

async fn write_body(
    s: &mut TcpStream,
    pattern: &[u8],
    bytes: u64,
    chunked: bool,
) -> std::io::Result<()> {
    const STEP: u64 = 1 << 20;
    let mut sent = 0u64;
    while sent < bytes {
        let off = (sent % pattern.len() as u64) as usize;
        let n = STEP.min(bytes - sent).min((pattern.len() - off) as u64) as usize;
        if chunked {
            s.write_all(format!("{n:x}\r\n").as_bytes()).await?;
        }
        s.write_all(&pattern[off..off + n]).await?;
        if chunked {
            s.write_all(b"\r\n").await?;
        }
        sent += n as u64;
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Creates an image and uploads `bytes` of the pattern into `store` (`Content-Length`, or
/// chunked); returns its id and the time from the first byte of the `PUT` to its answer.
async fn put_image(
    endpoint: &Target,
    store: &str,
    bytes: u64,
    chunked: bool,
    pattern: &[u8],
) -> anyhow::Result<(String, Duration)> {
    let mut meta = MetaClient::new(endpoint.clone());
    let id = meta
        .create_image(serde_json::json!({"name": "loadtest-stores"}))
        .await?;
    let took = put_data(endpoint, &id, Some(store), bytes, chunked, pattern).await?;
    Ok((id, took))
}

/// `PUT …/file` into `store` (or, without one, `PUT …/stage`) of `bytes` of the pattern; the
/// time from the first byte to the answer.
async fn put_data(
    endpoint: &Target,
    id: &str,
    store: Option<&str>,
    bytes: u64,
    chunked: bool,
    pattern: &[u8],
) -> anyhow::Result<Duration> {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {bytes}")
    };
    let (what, store_header) = match store {
        Some(s) => ("file", format!("X-Image-Meta-Store: {s}\r\n")),
        None => ("stage", String::new()),
    };
    let store = store.unwrap_or("staging");
    let head = format!(
        "PUT /v2/images/{id}/{what} HTTP/1.1\r\nHost: {}\r\nUser-Agent: glint-loadtest\r\n\
         Content-Type: application/octet-stream\r\n{store_header}{framing}\r\n\
         Connection: close\r\n\r\n",
        endpoint.host
    );
    // Generous: 60 s plus 2 MB/s.
    let limit = Duration::from_secs(60 + bytes / 2_000_000);
    let start = Instant::now();
    let answer = tokio::time::timeout(limit, async {
        let mut s = connect_tcp(endpoint)
            .await
            .with_context(|| format!("connect {}", endpoint.base()))?;
        s.write_all(head.as_bytes()).await?;
        // The server may answer early (an error): read the answer either way.
        let written = write_body(&mut s, pattern, bytes, chunked).await;
        let mut buf = vec![0u8; 16 << 10];
        let (h, filled) = match (read_head(&mut s, &mut buf).await, written) {
            (Ok(a), _) => a,
            (Err(e), Err(w)) => return Err(anyhow::Error::from(w).context(e)),
            (Err(e), Ok(())) => return Err(e),
        };
        anyhow::Ok((
            h.status,
            String::from_utf8_lossy(&buf[h.head_len..filled]).into_owned(),
        ))
    })
    .await
    .with_context(|| format!("upload of {id} into {store}: no answer within {limit:?}"))??;
    let took = start.elapsed();
    if answer.0 != 204 {
        bail!("upload of {id} into {store}: {} {}", answer.0, answer.1);
    }
    Ok(took)
}

/// `glance-direct` into `store`: the data staged (not timed), then the import timed from the
/// `POST …/import` to the image `active`, with glint measured meanwhile.
fn glint_import(
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    store: &str,
    bytes: u64,
    pattern: &[u8],
) -> anyhow::Result<(String, Transfer)> {
    let endpoint = Target::parse(&glint.url("/"))?;
    let mut meta = MetaClient::new(endpoint.clone());
    let id = rt.block_on(meta.create_image(serde_json::json!({"name": "loadtest-import"})))?;
    rt.block_on(put_data(&endpoint, &id, None, bytes, false, pattern))?;
    settle();
    let method = serde_json::json!({"name": "glance-direct"});
    let t = timed_import(rt, glint, &[glint.pid()], &id, method, store, bytes)?;
    Ok((id, t))
}

/// Imports `id` with `method` into `store`, timed from the `POST …/import` to the import's
/// end (the image `active` in `store`, nothing left importing), `pids` measured meanwhile.
fn timed_import(
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    pids: &[u32],
    id: &str,
    method: serde_json::Value,
    store: &str,
    bytes: u64,
) -> anyhow::Result<Transfer> {
    let mut meta = MetaClient::new(Target::parse(&glint.url("/"))?);
    let monitor = Monitor::start(pids, Duration::from_millis(20));
    let start = Instant::now();
    let body = serde_json::json!({"method": method, "stores": [store]});
    let r = rt.block_on(meta.post_json(&format!("/v2/images/{id}/import"), &body))?;
    if r.status != 202 {
        bail!(
            "import of {id}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    let limit = Duration::from_secs(60 + bytes / 2_000_000);
    let listed = |v: &serde_json::Value, key: &str| {
        v[key]
            .as_str()
            .is_some_and(|l| l.split(',').any(|s| s == store))
    };
    loop {
        let r = rt.block_on(meta.get(&format!("/v2/images/{id}")))?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)?;
        let importing = v["os_glance_importing_to_stores"].as_str().unwrap_or("");
        if v["status"] == "active" && listed(&v, "stores") && importing.is_empty() {
            break;
        }
        if v["status"] == "queued" || listed(&v, "os_glance_failed_import") {
            bail!("import of {id} into {store} failed: {v}");
        }
        if start.elapsed() > limit {
            bail!("import of {id} into {store} did not finish: {v}");
        }
        // each look is a request through both planes: not too often
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    Ok(Transfer::new(bytes, took, Some(monitor.finish())))
}

/// The data plane's memory over one import of `bytes` (see the module docs, step 4): its
/// idle `VmRSS`, then its peak (sampled or `VmHWM`) over the import.
#[allow(clippy::too_many_arguments)]
fn import_memory_run(
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    what: &str,
    id: &str,
    method: serde_json::Value,
    store: &str,
    bytes: u64,
    bound_bytes: u64,
) -> anyhow::Result<ImportMemory> {
    let dp = glint
        .plane_pid("dataplane")
        .context("no data plane process under glint's supervisor")?;
    settle();
    let idle = rss_of(dp)?;
    let hwm_reset = reset_hwm(dp);
    let import = timed_import(rt, glint, &[dp], id, method, store, bytes)?;
    let usage = import.server.as_ref();
    let sampled = usage.and_then(|u| u.peak_rss_of("dataplane")).unwrap_or(0);
    let hwm = usage
        .and_then(|u| u.processes.iter().find(|p| p.pid == dp))
        .map(|p| p.hwm_bytes)
        .filter(|_| hwm_reset);
    let peak = sampled.max(hwm.unwrap_or(0));
    let run = ImportMemory {
        method: what.to_owned(),
        bytes,
        idle_rss_bytes: idle,
        peak_bytes: peak,
        per_import_bytes: peak.saturating_sub(idle),
        bound_bytes,
        import,
    };
    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "memory, {what} of {} into {store}: idle {:.1} MiB, peak {:.1} MiB, per import {:.1} MiB \
         (goal <= {:.0} MiB), {:.1} MB/s",
        human(bytes),
        mib(idle),
        mib(peak),
        mib(run.per_import_bytes),
        mib(bound_bytes),
        run.import.mb_per_second
    );
    Ok(run)
}

/// Uploads into `store` with glint measured.
fn glint_upload(
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    store: &str,
    bytes: u64,
    chunked: bool,
    pattern: &[u8],
) -> anyhow::Result<(String, Transfer)> {
    let endpoint = Target::parse(&glint.url("/"))?;
    let monitor = Monitor::start(&[glint.pid()], Duration::from_millis(50));
    let r = rt.block_on(put_image(&endpoint, store, bytes, chunked, pattern));
    let usage = monitor.finish();
    let (id, took) = r?;
    Ok((id, Transfer::new(bytes, took, Some(usage))))
}

fn delete_image(rt: &tokio::runtime::Runtime, glint: &Glint, id: &str) -> anyhow::Result<()> {
    let mut meta = MetaClient::new(Target::parse(&glint.url("/"))?);
    rt.block_on(meta.delete_image(id))
}

/// Checks that an image is active, of `bytes`, in `store`.
fn check_image(
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    id: &str,
    store: &str,
    bytes: u64,
) -> anyhow::Result<()> {
    let mut meta = MetaClient::new(Target::parse(&glint.url("/"))?);
    let r = rt.block_on(meta.get(&format!("/v2/images/{id}")))?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    if v["status"] != "active" || v["size"] != bytes || v["stores"] != store {
        bail!("image {id}: expected active, {bytes} bytes, in {store}; got {v}");
    }
    Ok(())
}

fn glint_download(
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    id: &str,
    bytes: u64,
) -> anyhow::Result<Report> {
    let url = Target::parse(&glint.url(&format!("/v2/images/{id}/file")))?;
    let mut c = DownloadConfig::new(vec![url], 1, Bounds::requests(1));
    c.keep_alive = false;
    c.server_pids = vec![glint.pid()];
    let r = rt.block_on(download::run(c))?;
    if r.errors > 0 || r.bytes != bytes {
        bail!(
            "download of {id}: {} of {bytes} bytes, {} errors ({})",
            r.bytes,
            r.errors,
            r.first_error.as_deref().unwrap_or("-")
        );
    }
    Ok(r)
}

/// Resets a process's `VmHWM` to its current RSS (`clear_refs` 5); whether it worked.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn rss_of(pid: u32) -> anyhow::Result<u64> {
    procs::read_proc(pid)
        .map(|p| p.rss_bytes)
        .with_context(|| format!("process {pid} is gone"))
}

/// One memory run on a fresh glint (see the module docs, step 3).
fn memory_run(
    cfg: &StoresConfig,
    rt: &tokio::runtime::Runtime,
    config_path: &Path,
    bytes: u64,
    pattern: &[u8],
) -> anyhow::Result<MemoryRun> {
    let glint = start_glint(cfg, config_path)?;
    with_log(&glint, || {
        let dp = glint
            .plane_pid("dataplane")
            .context("no data plane process under glint's supervisor")?;
        // A small upload first: the store's connections and the buffer pool exist afterwards.
        let (warm, _) = glint_upload(rt, &glint, "rgw", 2 * MIB, true, pattern)?;
        delete_image(rt, &glint, &warm)?;
        settle();
        let idle = rss_of(dp)?;
        let hwm_reset = reset_hwm(dp);
        let monitor = Monitor::start(&[dp], Duration::from_millis(20));
        let r = rt.block_on(put_image(
            &Target::parse(&glint.url("/"))?,
            "rgw",
            bytes,
            true,
            pattern,
        ));
        let usage = monitor.finish();
        let (id, took) = r?;
        let sampled = usage.peak_rss_of("dataplane").unwrap_or(0);
        let hwm = usage
            .processes
            .iter()
            .find(|p| p.pid == dp)
            .map(|p| p.hwm_bytes)
            .filter(|_| hwm_reset);
        let peak = sampled.max(hwm.unwrap_or(0));
        delete_image(rt, &glint, &id)?;
        let run = MemoryRun {
            bytes,
            dataplane_pid: dp,
            idle_rss_bytes: idle,
            peak_rss_sampled_bytes: sampled,
            hwm_bytes: hwm,
            peak_bytes: peak,
            per_upload_bytes: peak.saturating_sub(idle),
            bound_bytes: cfg.memory_bound_bytes(),
            upload: Transfer::new(bytes, took, Some(usage)),
        };
        let mib = |b: u64| b as f64 / MIB as f64;
        eprintln!(
            "memory, {} chunked into rgw: idle {:.1} MiB, peak {:.1} MiB (sampled {:.1}, VmHWM {}), \
             per upload {:.1} MiB (goal <= {:.0} MiB), {:.1} MB/s",
            human(bytes),
            mib(idle),
            mib(peak),
            mib(sampled),
            hwm.map(|h| format!("{:.1}", mib(h)))
                .unwrap_or_else(|| "not reset".into()),
            mib(run.per_upload_bytes),
            mib(run.bound_bytes),
            run.upload.mb_per_second
        );
        Ok(run)
    })
}

fn start_glint(cfg: &StoresConfig, config_path: &Path) -> anyhow::Result<Glint> {
    Glint::start(
        &cfg.glint_bin,
        &["--config", &config_path.to_string_lossy()],
    )
}

/// Runs `f`; an error carries the last lines of glint's log.
fn with_log<T>(glint: &Glint, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    f().map_err(|e| {
        let log = glint.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        e.context(format!("glint log (last lines):\n{}", tail.join("\n")))
    })
}

fn suffix() -> String {
    use rand::RngCore;
    let mut b = [0u8; 6];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

// === the table ===

/// Builds the result table.
pub fn table(
    cfg: &StoresConfig,
    rounds: &[Round],
    memory: &[MemoryRun],
    imports: &[ImportMemory],
) -> Vec<Row> {
    let mbps = |t: &Option<Transfer>| t.as_ref().map(|t| t.mb_per_second);
    let rmbps = |r: &Option<Report>| r.as_ref().map(|r| r.mb_per_second);
    let limit = |r: &Round| r.hash_limit.map(|h| h.two_core_mb_per_second);
    let size = human(cfg.size_bytes);
    let mut rows = Vec::new();
    type Pick = fn(&Round) -> &Option<Transfer>;
    let uploads: [(&str, Pick, Pick); 2] = [
        (
            "radosgw S3",
            |r| &r.glint_upload_rgw,
            |r| &r.rclone_upload_rgw,
        ),
        (
            "Swift s3api",
            |r| &r.glint_upload_swifts3,
            |r| &r.rclone_upload_swifts3,
        ),
    ];
    for (name, glint, rclone) in uploads {
        let g = values(rounds, |r| mbps(glint(r)));
        rows.push(compare::row(
            &format!("upload {size} -> {name}, md5+sha512 (MB/s)"),
            "min(hash limit, rclone)",
            g.clone(),
            values(rounds, |r| Some(limit(r)?.min(mbps(rclone(r))?))),
            ">= 0.85x",
            Goal::RatioAtLeast(0.85),
        ));
        rows.push(compare::row(
            "  (same, vs rclone copyto alone)",
            "rclone copyto",
            g.clone(),
            values(rounds, |r| mbps(rclone(r))),
            "",
            Goal::None,
        ));
        rows.push(compare::row(
            "  (same, vs hash limit alone)",
            "two-core hash limit",
            g,
            values(rounds, limit),
            "",
            Goal::None,
        ));
    }
    rows.push(compare::row(
        &format!("glance-direct import {size} -> radosgw S3, staged to active (MB/s)"),
        "glint upload -> radosgw",
        values(rounds, |r| mbps(&r.glint_import_rgw)),
        values(rounds, |r| mbps(&r.glint_upload_rgw)),
        ">= 0.85x",
        Goal::RatioAtLeast(0.85),
    ));
    rows.push(compare::row(
        &format!("download {size} <- radosgw S3, 1 stream (MB/s)"),
        "rclone cat",
        values(rounds, |r| rmbps(&r.glint_download_rgw)),
        values(rounds, |r| mbps(&r.rclone_download_rgw)),
        ">= 0.9x",
        Goal::RatioAtLeast(0.9),
    ));
    rows.push(compare::row(
        &format!("download {size} <- Swift native, 1 stream (MB/s)"),
        "rclone cat",
        values(rounds, |r| rmbps(&r.glint_download_swift)),
        values(rounds, |r| mbps(&r.rclone_download_swift)),
        ">= 0.9x",
        Goal::RatioAtLeast(0.9),
    ));
    if rounds.iter().any(|r| r.glint_upload_rbd.is_some()) {
        let g = values(rounds, |r| mbps(&r.glint_upload_rbd));
        rows.push(compare::row(
            &format!("upload {size} -> Ceph RBD, md5+sha512 (MB/s)"),
            "min(hash limit, rbd import)",
            g.clone(),
            values(rounds, |r| Some(limit(r)?.min(mbps(&r.rbd_import)?))),
            ">= 0.85x",
            Goal::RatioAtLeast(0.85),
        ));
        rows.push(compare::row(
            "  (same, vs rbd import alone)",
            "rbd import",
            g,
            values(rounds, |r| mbps(&r.rbd_import)),
            "",
            Goal::None,
        ));
        rows.push(compare::row(
            &format!("download {size} <- Ceph RBD, 1 stream (MB/s)"),
            "rbd export",
            values(rounds, |r| rmbps(&r.glint_download_rbd)),
            values(rounds, |r| mbps(&r.rbd_export)),
            ">= 0.9x",
            Goal::RatioAtLeast(0.9),
        ));
    }
    let mib = |b: u64| b as f64 / MIB as f64;
    let bound = mib(cfg.memory_bound_bytes());
    for m in memory {
        rows.push(compare::row(
            &format!(
                "data plane RSS per upload, {} chunked -> radosgw (MiB)",
                human(m.bytes)
            ),
            "parts x part + 8 MiB",
            vec![mib(m.per_upload_bytes)],
            vec![mib(m.bound_bytes)],
            &format!("<= {bound:.0} MiB"),
            Goal::AtMost(bound),
        ));
    }
    if let [big, small] = memory {
        rows.push(compare::row(
            &format!(
                "  (RSS per upload, {} vs {})",
                human(big.bytes),
                human(small.bytes)
            ),
            &format!("{} upload", human(small.bytes)),
            vec![mib(big.per_upload_bytes)],
            vec![mib(small.per_upload_bytes)],
            "flat: <= 1.1x",
            Goal::RatioAtMost(1.1),
        ));
    }
    for m in imports {
        rows.push(compare::row(
            &format!("data plane RSS, {} {} (MiB)", m.method, human(m.bytes)),
            "an upload's bound",
            vec![mib(m.per_import_bytes)],
            vec![mib(m.bound_bytes)],
            &format!("<= {:.0} MiB", mib(m.bound_bytes)),
            Goal::AtMost(mib(m.bound_bytes)),
        ));
    }
    rows
}

// === the run ===

/// Runs the whole comparison, printing progress to stderr; the caller prints the table.
pub fn run(cfg: StoresConfig, client_threads: usize) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // before any thread or child exists: glint and rclone inherit it
    compare::set_nice("compare-stores", cfg.nice);
    if !cfg.glint_bin.is_file() {
        bail!(
            "{} not found: cargo build -p glint",
            cfg.glint_bin.display()
        );
    }
    let environment = machine::environment();
    let services = Services::start(&cfg.services_dir)?;
    let rclone = Rclone::new(&cfg.rclone_bin, &services, &cfg);
    let rclone_version = rclone.version()?;
    compare::announce("compare-stores", &environment, &rclone_version);
    let rt = compare::client_runtime(client_threads)?;

    let tag = suffix();
    let bucket = format!("glint-bench-{tag}");
    let container = format!("glint-bench-{tag}-swift");
    let _cleanup = Cleanup {
        rclone: rclone.clone(),
        s3: vec![format!("rgw:{bucket}"), format!("sws3:{bucket}")],
        swift: vec![
            format!("sw:{bucket}+segments"),
            format!("sw:{container}"),
            format!("sw:{container}+segments"),
        ],
        ceph_conf: services.ceph_conf.clone(),
    };
    rclone.run(&["mkdir", &format!("rgw:{bucket}")])?;
    if let Some(conf) = &services.ceph_conf {
        ensure_pool(conf)?;
    }
    rclone.run(&["mkdir", &format!("sws3:{bucket}")])?;

    std::fs::create_dir_all(&cfg.work_dir)?;
    let work = tempfile::Builder::new()
        .prefix("glint-stores")
        .tempdir_in(&cfg.work_dir)?;
    let pattern = upload::pattern();
    let file = work.path().join("upload.bin");
    write_pattern_file(&file, cfg.size_bytes, &pattern)?;
    let config_path = work.path().join("glint.toml");
    std::fs::write(
        &config_path,
        glint_config(&cfg, work.path(), &services, &bucket, &container),
    )?;
    eprintln!(
        "compare-stores: bucket {bucket} on radosgw and the s3api, container {container}; \
         parts of {} MiB, {} in flight, multipart above {} MiB (glint and rclone)",
        cfg.part_size_mib, cfg.parts_in_flight, cfg.large_object_size_mib
    );

    let (rounds, import_memory) = {
        let glint = start_glint(&cfg, &config_path)?;
        with_log(&glint, || {
            ab_rounds(
                &cfg,
                &rt,
                &glint,
                &rclone,
                &file,
                &bucket,
                &container,
                services.ceph_conf.as_deref(),
            )
        })?
    };
    let _ = std::fs::remove_file(&file);
    let mut memory = Vec::new();
    for bytes in [cfg.memory_size_bytes, cfg.size_bytes] {
        memory.push(memory_run(&cfg, &rt, &config_path, bytes, &pattern)?);
        settle();
    }

    let table = table(&cfg, &rounds, &memory, &import_memory);
    let summary = Summary {
        environment,
        rclone_version,
        services: services.info(),
        config: cfg.clone(),
        rclone_upload_flags: rclone.upload_flags.clone(),
        bucket,
        swift_container: container,
        rounds,
        memory,
        import_memory,
        table,
        total_seconds: started.elapsed().as_secs_f64(),
        loadavg_at_end: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        nice: rustix::process::getpriority_process(None).unwrap_or(0),
    };
    if let Some(parent) = cfg.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&cfg.out, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", cfg.out.display()))?;
    Ok(summary)
}

/// Steps 1 (the download images) and 2 of the module docs, on one glint.
#[allow(clippy::too_many_arguments)]
fn ab_rounds(
    cfg: &StoresConfig,
    rt: &tokio::runtime::Runtime,
    glint: &Glint,
    rclone: &Rclone,
    file: &Path,
    bucket: &str,
    container: &str,
    rbd_conf: Option<&str>,
) -> anyhow::Result<(Vec<Round>, Vec<ImportMemory>)> {
    let size = cfg.size_bytes;
    let pattern = upload::pattern();
    eprintln!(
        "compare-stores: glint at {} (data in {}), uploading the download images…",
        glint.public,
        glint.dir().display()
    );
    let (rgw_image, t) = glint_upload(rt, glint, "rgw", size, false, &pattern)?;
    eprint!("{}", t.text("glint upload -> rgw (download image)"));
    check_image(rt, glint, &rgw_image, "rgw", size)?;
    let (swift_image, t) = glint_upload(rt, glint, "swift", size, false, &pattern)?;
    eprint!("{}", t.text("glint upload -> swift (download image)"));
    check_image(rt, glint, &swift_image, "swift", size)?;
    let rbd_conf = rbd_conf.map(str::to_owned);
    let rbd_image = match &rbd_conf {
        Some(_) => {
            let (id, t) = glint_upload(rt, glint, "rbd", size, false, &pattern)?;
            eprint!("{}", t.text("glint upload -> rbd (download image)"));
            check_image(rt, glint, &id, "rbd", size)?;
            Some(id)
        }
        None => None,
    };
    settle();

    let mut rounds = Vec::new();
    for i in 0..cfg.rounds {
        eprintln!("compare-stores: round {}/{}", i + 1, cfg.rounds);
        let mut r = Round::default();
        let mut images = Vec::new();
        let mut objects = Vec::new();
        for (store, remote) in [("rgw", "rgw"), ("swifts3", "sws3")] {
            let (id, t) = glint_upload(rt, glint, store, size, false, &pattern)?;
            eprint!("{}", t.text(&format!("glint upload -> {store}")));
            images.push(id);
            settle();
            let dest = format!("{remote}:{bucket}/rclone-{i}");
            let rc = rclone.upload(file, &dest, size)?;
            eprint!("{}", rc.text(&format!("rclone copyto {dest}")));
            objects.push(dest);
            settle();
            if store == "rgw" {
                r.glint_upload_rgw = Some(t);
                r.rclone_upload_rgw = Some(rc);
            } else {
                r.glint_upload_swifts3 = Some(t);
                r.rclone_upload_swifts3 = Some(rc);
            }
        }
        if let Some(conf) = &rbd_conf {
            let (id, t) = glint_upload(rt, glint, "rbd", size, false, &pattern)?;
            eprint!("{}", t.text("glint upload -> rbd"));
            images.push(id);
            r.glint_upload_rbd = Some(t);
            settle();
            let name = format!("{BENCH_POOL}/rbd-import-{i}");
            let took = rbd_timed(
                conf,
                &["import", "--no-progress", &file.to_string_lossy(), &name],
            )?;
            let t = Transfer::new(size, took, None);
            eprint!("{}", t.text(&format!("rbd import {name}")));
            r.rbd_import = Some(t);
            rbd_timed(conf, &["rm", "--no-progress", &name])?;
            settle();
        }
        let (id, t) = glint_import(rt, glint, "rgw", size, &pattern)?;
        eprint!("{}", t.text("glint glance-direct import -> rgw"));
        check_image(rt, glint, &id, "rgw", size)?;
        images.push(id);
        r.glint_import_rgw = Some(t);
        settle();
        let h = hashlimit::measure(size, &pattern);
        eprintln!(
            "hash limit over {} bytes: two cores {:.0} MB/s, one core {:.0} MB/s (md5 {:.0}, sha512 {:.0})",
            h.bytes,
            h.two_core_mb_per_second,
            h.one_core_mb_per_second,
            h.md5_mb_per_second,
            h.sha512_mb_per_second
        );
        r.hash_limit = Some(h);
        for id in &images {
            delete_image(rt, glint, id)?;
        }
        for o in &objects {
            rclone.run(&["deletefile", o])?;
        }
        settle();

        let d = glint_download(rt, glint, &rgw_image, size)?;
        eprint!("{}", d.text());
        r.glint_download_rgw = Some(d);
        settle();
        let src = format!("rgw:{bucket}/{rgw_image}");
        let rc = rclone.download(&src, size)?;
        eprint!("{}", rc.text(&format!("rclone cat {src} > /dev/null")));
        r.rclone_download_rgw = Some(rc);
        settle();
        let d = glint_download(rt, glint, &swift_image, size)?;
        eprint!("{}", d.text());
        r.glint_download_swift = Some(d);
        settle();
        let src = format!("sw:{container}/{swift_image}");
        let rc = rclone.download(&src, size)?;
        eprint!("{}", rc.text(&format!("rclone cat {src} > /dev/null")));
        r.rclone_download_swift = Some(rc);
        settle();
        if let (Some(conf), Some(id)) = (&rbd_conf, &rbd_image) {
            let d = glint_download(rt, glint, id, size)?;
            eprint!("{}", d.text());
            r.glint_download_rbd = Some(d);
            settle();
            let snap = format!("{BENCH_POOL}/{id}@snap");
            let took = rbd_timed(conf, &["export", "--no-progress", &snap, "-"])?;
            let t = Transfer::new(size, took, None);
            eprint!("{}", t.text(&format!("rbd export {snap} > /dev/null")));
            r.rbd_export = Some(t);
            settle();
        }
        rounds.push(r);
    }
    // step 4: the imports' memory, of the radosgw image's bytes into the s3api
    let bound = cfg.memory_bound_bytes();
    let mut memory = Vec::new();
    let mut meta = MetaClient::new(Target::parse(&glint.url("/"))?);
    let name = serde_json::json!({"name": "loadtest-web-download"});
    let web = rt.block_on(meta.create_image(name))?;
    let uri = glint.url(&format!("/v2/images/{rgw_image}/file"));
    let method = serde_json::json!({"name": "web-download", "uri": uri});
    let what = "web-download (glint's own radosgw image)";
    memory.push(import_memory_run(
        rt, glint, what, &web, method, "swifts3", size, bound,
    )?);
    delete_image(rt, glint, &web)?;
    let method = serde_json::json!({"name": "copy-image"});
    let what = "copy-image (radosgw to the s3api)";
    memory.push(import_memory_run(
        rt, glint, what, &rgw_image, method, "swifts3", size, bound,
    )?);
    delete_image(rt, glint, &rgw_image)?;
    delete_image(rt, glint, &swift_image)?;
    if let Some(id) = &rbd_image {
        delete_image(rt, glint, id)?;
    }
    Ok((rounds, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4 GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1.5").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn names_sizes() {
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(4 << 30), "4 GiB");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn parses_start_script_output() {
        let m = parse_env(
            "[ceph-rgw] already running\nCEPH_RGW_READY=1\nS3_ENDPOINT=http://127.0.0.1:19020\n\
             SWIFT_USER=test:swift\nnot a line\nlower=x\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m["S3_ENDPOINT"], "http://127.0.0.1:19020");
        assert_eq!(m["SWIFT_USER"], "test:swift");
    }

    fn cfg() -> StoresConfig {
        StoresConfig {
            glint_bin: "glint".into(),
            rclone_bin: "rclone".into(),
            services_dir: "s".into(),
            size_bytes: 1 << 30,
            memory_size_bytes: 4 << 30,
            rounds: 2,
            part_size_mib: 10,
            parts_in_flight: 10,
            large_object_size_mib: 100,
            work_dir: "/tmp".into(),
            out: "o.json".into(),
            nice: 0,
        }
    }

    #[test]
    fn builds_the_table() {
        let c = cfg();
        assert_eq!(c.memory_bound_bytes(), 108 * MIB);
        let t = |mbps: f64| {
            Some(Transfer::new(
                1_000_000,
                Duration::from_secs_f64(1.0 / mbps),
                None,
            ))
        };
        let round = |g: f64, rc: f64, limit: f64| Round {
            glint_upload_rgw: t(g),
            rclone_upload_rgw: t(rc),
            hash_limit: Some(HashLimit {
                bytes: 1,
                md5_mb_per_second: 0.0,
                sha512_mb_per_second: 0.0,
                two_core_mb_per_second: limit,
                one_core_mb_per_second: 0.0,
            }),
            ..Round::default()
        };
        let rounds = [round(90.0, 100.0, 200.0), round(90.0, 300.0, 100.0)];
        let upload = Transfer::new(1, Duration::from_secs(1), None);
        let mem = |bytes: u64, per: u64| MemoryRun {
            bytes,
            dataplane_pid: 1,
            idle_rss_bytes: 10 * MIB,
            peak_rss_sampled_bytes: 0,
            hwm_bytes: None,
            peak_bytes: 0,
            per_upload_bytes: per,
            bound_bytes: c.memory_bound_bytes(),
            upload: upload.clone(),
        };
        let import = ImportMemory {
            method: "copy-image".into(),
            bytes: 1 << 30,
            idle_rss_bytes: 10 * MIB,
            peak_bytes: 0,
            per_import_bytes: 200 * MIB,
            bound_bytes: c.memory_bound_bytes(),
            import: upload.clone(),
        };
        let rows = table(
            &c,
            &rounds,
            &[mem(4 << 30, 100 * MIB), mem(1 << 30, 95 * MIB)],
            &[import],
        );
        // an import over the bound misses it
        let last = rows.last().unwrap();
        assert!(last.metric.contains("copy-image"), "{}", last.metric);
        assert_eq!(last.met, Some(false));
        // the reference of each round is the lower of rclone and the hash limit
        assert_eq!(rows[0].reference_values, [100.0, 100.0]);
        let ratio = rows[0].ratio.expect("ratio");
        assert!((ratio - 0.9).abs() < 1e-6, "{ratio}");
        assert_eq!(rows[0].met, Some(true));
        // no swift s3api uploads in these rounds: no figure, no verdict
        assert_eq!(rows[3].met, None);
        let memory: Vec<&Row> = rows
            .iter()
            .filter(|r| r.metric.contains("RSS per upload"))
            .collect();
        assert_eq!(memory.len(), 3);
        assert_eq!(memory[0].met, Some(true));
        assert_eq!(memory[2].met, Some(true));
        assert!(compare::render(&rows).lines().count() == rows.len() + 1);
    }

    #[test]
    fn writes_glint_config() {
        let s = Services {
            rgw: S3Server {
                endpoint: "http://127.0.0.1:19020".into(),
                access: "a".into(),
                secret: "s\"x".into(),
                region: "us-east-1".into(),
            },
            aio_s3: S3Server {
                endpoint: "http://127.0.0.1:18888".into(),
                access: "test:tester".into(),
                secret: "testing".into(),
                region: "us-east-1".into(),
            },
            aio_swift: SwiftServer {
                auth_url: "http://127.0.0.1:18888/auth/v1.0".into(),
                user: "test:tester".into(),
                key: "testing".into(),
            },
            ceph_conf: None,
        };
        let text = glint_config(&cfg(), Path::new("/tmp/x"), &s, "b", "c");
        assert!(text.contains("s3_store_thread_pools = 10\n"));
        assert!(text.contains("s3_store_secret_key = \"s\\\"x\"\n"));
        assert!(text.contains("swift_store_container = \"c\"\n"));
        let r = Rclone::new(Path::new("rclone"), &s, &cfg());
        assert!(r.upload_flags.contains(&"--s3-chunk-size=10M".to_owned()));
        assert!(
            r.upload_flags
                .contains(&"--s3-upload-concurrency=10".to_owned())
        );
        assert!(
            r.env
                .contains(&("RCLONE_CONFIG_SW_AUTH_VERSION".into(), "1".into()))
        );
    }
}
