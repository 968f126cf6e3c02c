//! The `loadtest` command: a Nova-fleet load generator for a local glint (see the library docs).
//!
//! ```text
//! loadtest download --endpoint http://127.0.0.1:9292 --image ID -c 32 --duration-seconds 10 --keep-alive
//! loadtest upload   --endpoint http://127.0.0.1:9292 --size-bytes 1073741824 --requests 1
//! loadtest metadata --endpoint http://127.0.0.1:9292 --op list --query 'limit=25&status=active'
//! loadtest metadata --unix glint-data/run/api.sock --op show --image ID
//! loadtest compare  --glint-bin target/release/glint
//! loadtest compare-stores --glint-bin target/release/glint --size 1GiB --memory-size 4GiB
//! ```

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use loadtest::compare::{self, CompareConfig};
use loadtest::compare_stores::{self, StoresConfig};
use loadtest::download::{self, DownloadConfig};
use loadtest::http::MetaClient;
use loadtest::metadata::{self, MetadataConfig};
use loadtest::run::{Bounds, Report};
use loadtest::target::Target;
use loadtest::upload::{self, UploadConfig};
use loadtest::{hashlimit, machine};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    about = "Load generator for a local glint (loopback targets only)"
)]
struct Cli {
    /// tokio worker threads of the client.
    #[arg(long, global = true, default_value_t = 2)]
    client_threads: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Stop after this many seconds (default 10 when --requests is not given either).
    #[arg(long)]
    duration_seconds: Option<f64>,
    /// Stop after this many requests (downloads/uploads count whole transfers).
    #[arg(long)]
    requests: Option<u64>,
    /// Measure this server process tree (root pid: glint's supervisor, nginx's master); repeat.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Measure the glint whose data dir this is (its supervisor is found through its planes).
    #[arg(long)]
    glint_data_dir: Option<PathBuf>,
    /// Write a JSON summary (environment + report) here.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Common {
    fn bounds(&self) -> Bounds {
        Bounds {
            duration: self.duration_seconds.map(Duration::from_secs_f64),
            requests: self.requests,
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Op {
    /// `GET /v2/images/{id}`.
    Show,
    /// `GET /v2/images?<query>`.
    List,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// N concurrent image downloads (a fleet of Nova nodes fetching images).
    Download {
        /// Full URL to download; repeat for several (round-robin).
        #[arg(long = "url")]
        urls: Vec<String>,
        /// glint public endpoint (with --image, or alone: every active image).
        #[arg(long)]
        endpoint: Option<String>,
        /// Image id at --endpoint; repeat for several.
        #[arg(long = "image")]
        images: Vec<String>,
        /// Reuse connections between downloads.
        #[arg(long)]
        keep_alive: bool,
        /// Cut every download at a random point and resume it with `Range`.
        #[arg(long)]
        range_resume: bool,
        /// Read buffer per connection, bytes.
        #[arg(long, default_value_t = 512 << 10)]
        buffer_bytes: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Image uploads (create + PUT file).
    Upload {
        /// glint public endpoint.
        #[arg(long)]
        endpoint: String,
        /// Bytes per image.
        #[arg(long, default_value_t = 1 << 30)]
        size_bytes: u64,
        /// Keep the uploaded images (default: delete each after its upload).
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Image show / list requests.
    Metadata {
        /// glint public endpoint (data plane).
        #[arg(long, conflicts_with = "unix")]
        endpoint: Option<String>,
        /// A Unix socket instead (the control plane directly: `<data_dir>/run/api.sock`).
        #[arg(long)]
        unix: Option<PathBuf>,
        /// What to request.
        #[arg(long, value_enum, default_value_t = Op::List)]
        op: Op,
        /// Image id for `show` (default: the first image listed).
        #[arg(long)]
        image: Option<String>,
        /// Query string for `list` (Glance filters), e.g. `limit=25&status=active`.
        #[arg(long, default_value = "limit=25")]
        query: String,
        #[command(flatten)]
        common: Common,
    },
    /// glint against nginx (sendfile) and against its own limits; prints a table of medians
    /// and ratios and writes a JSON summary.
    Compare {
        /// The glint binary.
        #[arg(long, default_value = "target/release/glint")]
        glint_bin: PathBuf,
        /// The nginx binary (default: `nginx` on PATH, or /usr/sbin/nginx).
        #[arg(long)]
        nginx_bin: Option<PathBuf>,
        /// Image size, bytes.
        #[arg(long, default_value_t = 1 << 30)]
        size_bytes: u64,
        /// A/B rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Length of each download run, s.
        #[arg(long, default_value_t = 4.0)]
        download_seconds: f64,
        /// Length of each metadata run, s.
        #[arg(long, default_value_t = 3.0)]
        metadata_seconds: f64,
        /// Concurrent downloads of the multi-stream run.
        #[arg(long, default_value_t = 32)]
        streams: usize,
        /// Concurrent downloads of the memory run.
        #[arg(long, default_value_t = 256)]
        many_streams: usize,
        /// Connections of the metadata runs.
        #[arg(long, default_value_t = 32)]
        metadata_concurrency: usize,
        /// Where the JSON summary goes.
        #[arg(long, default_value = "target/compare/summary.json")]
        out: PathBuf,
        /// Nice value for the client and both servers, so that other work on a shared machine
        /// competes less (negative values need root; 0 = leave alone).
        #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
        nice: i32,
    },
    /// glint's S3 (radosgw, Swift s3api) and Swift stores against rclone on the same servers,
    /// and the data plane's memory per multipart upload; prints a table and writes a JSON summary.
    CompareStores {
        /// The glint binary.
        #[arg(long, default_value = "target/release/glint")]
        glint_bin: PathBuf,
        /// The rclone binary.
        #[arg(long, default_value = "rclone")]
        rclone_bin: PathBuf,
        /// Directory of `ceph-rgw-start.sh` and `swift-aio-start.sh`.
        #[arg(long, env = "GLINT_SERVICES_DIR", default_value = "../shared/services")]
        services_dir: PathBuf,
        /// Bytes of each upload and download (`1GiB`, `64MiB`, or bytes).
        #[arg(long, default_value = "1GiB", value_parser = compare_stores::parse_size)]
        size: u64,
        /// Bytes of the large memory run (a chunked upload; the second one is `--size`).
        #[arg(long, default_value = "4GiB", value_parser = compare_stores::parse_size)]
        memory_size: u64,
        /// A/B rounds of uploads and downloads.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Multipart part size of glint's S3 stores and of rclone, MiB (at least 5).
        #[arg(long, default_value_t = 10)]
        part_size_mib: u64,
        /// Parts in flight per upload, glint's S3 stores and rclone.
        #[arg(long, default_value_t = 10)]
        parts_in_flight: u64,
        /// Uploads above this size go multipart, glint's S3 stores and rclone, MiB.
        #[arg(long, default_value_t = 100)]
        large_object_size_mib: u64,
        /// Where the upload file for rclone is written (a temp dir inside it).
        #[arg(long, default_value = "/tmp")]
        work_dir: PathBuf,
        /// Where the JSON summary goes.
        #[arg(long, default_value = "target/compare-stores/summary.json")]
        out: PathBuf,
        /// Nice value for the client, glint and rclone (negative values need root; 0 = leave
        /// alone).
        #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
        nice: i32,
    },
    /// N clients at once on one image no cache holds (radosgw behind a counting hop): glint
    /// with its block cache (cold and warm), without it, nginx proxy_cache_lock and Varnish in
    /// front of the same bucket, nginx sendfile of a local copy; prints a table and writes a
    /// JSON summary.
    ColdPull {
        /// The glint binary.
        #[arg(long, default_value = "target/release/glint")]
        glint_bin: PathBuf,
        /// The nginx binary.
        #[arg(long, default_value = "/usr/sbin/nginx")]
        nginx_bin: PathBuf,
        /// The varnishd binary (left out when missing).
        #[arg(long, default_value = "/usr/sbin/varnishd")]
        varnishd_bin: PathBuf,
        /// Directory of `ceph-rgw-start.sh`.
        #[arg(long, env = "GLINT_SERVICES_DIR", default_value = "../shared/services")]
        services_dir: PathBuf,
        /// Bytes of the image (`1GiB`, `256MiB`, or bytes).
        #[arg(long, default_value = "1GiB", value_parser = compare_stores::parse_size)]
        size: u64,
        /// Client counts, comma-separated.
        #[arg(long, default_value = "64", value_delimiter = ',')]
        clients: Vec<usize>,
        /// Rounds per client count.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// glint's image_cache_block_size.
        #[arg(long, default_value = "8MiB", value_parser = compare_stores::parse_size)]
        block_size: u64,
        /// Where the image, caches and configs go (a temp dir inside it).
        #[arg(long, default_value = "/tmp")]
        work_dir: PathBuf,
        /// Where the JSON summary goes.
        #[arg(long, default_value = "target/cold-pull/summary.json")]
        out: PathBuf,
        /// Hold the store to this many bytes a second in all (`100MiB`; unlimited when not
        /// given): a slow store, fills longer than nginx's 5 s lock timeout (glint without its
        /// cache is not run then).
        #[arg(long, value_parser = compare_stores::parse_size)]
        store_rate: Option<u64>,
        /// Only these runs (`glint-cold`, `glint-warm`, `glint-nocache`, `nginx-cold`,
        /// `nginx-local`, `varnish-cold`), comma-separated; all when not given.
        #[arg(long, value_delimiter = ',')]
        servers: Vec<String>,
    },
    /// Measure the md5+sha512 hash limit of this machine.
    HashLimit {
        /// Bytes to hash.
        #[arg(long, default_value_t = 1 << 30)]
        size_bytes: u64,
    },
}

/// The data dir of a `glint serve` process: its `--data-dir` argument, else `GLINT_DATA_DIR`
/// from its environment, else `glint-data`, relative to its working directory.
fn data_dir_of(pid: u32, args: &[String]) -> Option<PathBuf> {
    let arg = args
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--data-dir=").map(str::to_owned))
        });
    let env = || {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ.split(|b| *b == 0).find_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.strip_prefix("GLINT_DATA_DIR=").map(str::to_owned)
        })
    };
    let dir = PathBuf::from(arg.or_else(env).unwrap_or_else(|| "glint-data".into()));
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    std::fs::canonicalize(cwd.join(dir)).ok()
}

/// The supervisor pid of the `glint serve` whose data dir is `data_dir`.
fn glint_supervisor(data_dir: &std::path::Path) -> anyhow::Result<u32> {
    let want = std::fs::canonicalize(data_dir)
        .with_context(|| format!("data dir {}", data_dir.display()))?;
    for e in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_glint = args
            .first()
            .is_some_and(|a| a.rsplit('/').next() == Some("glint"));
        if is_glint
            && args.iter().any(|a| a == "serve")
            && data_dir_of(pid, &args).as_deref() == Some(want.as_path())
        {
            return Ok(pid);
        }
    }
    bail!(
        "no `glint serve` with data dir {} found; pass --server-pid",
        data_dir.display()
    )
}

fn server_pids(c: &Common) -> anyhow::Result<Vec<u32>> {
    let mut pids = c.server_pids.clone();
    if let Some(d) = &c.glint_data_dir {
        pids.push(glint_supervisor(d)?);
    }
    Ok(pids)
}

fn emit(report: &Report, json: Option<&PathBuf>) -> anyhow::Result<()> {
    print!("{}", report.text());
    if let Some(path) = json {
        let v = serde_json::json!({
            "environment": machine::environment(),
            "report": report,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if report.requests == 0 && report.bytes == 0 {
        bail!(
            "nothing completed: {}",
            report.first_error.as_deref().unwrap_or("no error recorded")
        );
    }
    Ok(())
}

/// Every active image at `endpoint` (first page of up to 1000).
async fn active_images(endpoint: &Target) -> anyhow::Result<Vec<String>> {
    let mut c = MetaClient::new(endpoint.clone());
    let r = c.get("/v2/images?status=active&limit=1000").await?;
    if r.status != 200 {
        bail!("listing images: {}", r.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    Ok(v["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nginx"))
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads.max(1))
            .enable_all()
            .build()
    };
    match cli.mode {
        Mode::Download {
            urls,
            endpoint,
            images,
            keep_alive,
            range_resume,
            buffer_bytes,
            common,
        } => {
            let rt = rt()?;
            let mut targets = urls
                .iter()
                .map(|u| Target::parse(u))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Some(e) = endpoint {
                let e = Target::parse(&e)?;
                let ids = if images.is_empty() {
                    rt.block_on(active_images(&e))?
                } else {
                    images
                };
                if ids.is_empty() {
                    bail!("no active image at {}", e.base());
                }
                targets.extend(
                    ids.iter()
                        .map(|id| e.with_path(&format!("/v2/images/{id}/file"))),
                );
            } else if !images.is_empty() {
                bail!("--image needs --endpoint");
            }
            let mut cfg = DownloadConfig::new(targets, common.concurrency, common.bounds());
            cfg.keep_alive = keep_alive;
            cfg.range_resume = range_resume;
            cfg.buffer_bytes = buffer_bytes;
            cfg.server_pids = server_pids(&common)?;
            let r = rt.block_on(download::run(cfg))?;
            emit(&r, common.json.as_ref())
        }
        Mode::Upload {
            endpoint,
            size_bytes,
            keep,
            common,
        } => {
            let rt = rt()?;
            let mut bounds = common.bounds();
            if bounds.duration.is_none() && bounds.requests.is_none() {
                bounds.requests = Some(1);
            }
            let mut cfg = UploadConfig::new(
                Target::parse(&endpoint)?,
                size_bytes,
                common.concurrency,
                bounds,
            );
            cfg.delete_after = !keep;
            cfg.server_pids = server_pids(&common)?;
            let r = rt.block_on(upload::run(cfg))?;
            emit(&r, common.json.as_ref())
        }
        Mode::Metadata {
            endpoint,
            unix,
            op,
            image,
            query,
            common,
        } => {
            let rt = rt()?;
            let base = match (endpoint, unix) {
                (Some(e), None) => Target::parse(&e)?,
                (None, Some(u)) => Target::unix(u, "/"),
                _ => bail!("give --endpoint or --unix"),
            };
            let path = match op {
                Op::List => format!("/v2/images?{query}"),
                Op::Show => {
                    let id = match image {
                        Some(i) => i,
                        None => {
                            let mut c = MetaClient::new(base.clone());
                            let r = rt.block_on(c.get("/v2/images?limit=1"))?;
                            let v: serde_json::Value = serde_json::from_slice(&r.body)?;
                            v["images"][0]["id"]
                                .as_str()
                                .context("no image to show; pass --image")?
                                .to_owned()
                        }
                    };
                    format!("/v2/images/{id}")
                }
            };
            let mut cfg =
                MetadataConfig::new(base.with_path(&path), common.concurrency, common.bounds());
            cfg.server_pids = server_pids(&common)?;
            let r = rt.block_on(metadata::run(cfg))?;
            emit(&r, common.json.as_ref())
        }
        Mode::Compare {
            glint_bin,
            nginx_bin,
            size_bytes,
            rounds,
            download_seconds,
            metadata_seconds,
            streams,
            many_streams,
            metadata_concurrency,
            out,
            nice,
        } => {
            let nginx_bin = nginx_bin
                .or_else(find_nginx)
                .context("nginx not found (benches/compare installs it)")?;
            if !glint_bin.is_file() {
                bail!(
                    "{} not found: cargo build --release -p glint",
                    glint_bin.display()
                );
            }
            let cfg = CompareConfig {
                glint_bin,
                nginx_bin,
                size_bytes,
                rounds: rounds.max(1),
                download_seconds,
                metadata_seconds,
                streams,
                many_streams,
                metadata_concurrency,
                out,
                nice,
            };
            let s = compare::run(cfg, cli.client_threads)?;
            let e = &s.environment;
            println!(
                "\nglint vs nginx, medians of {} rounds (ratio: median of the per-round ratios) — {} ({} CPUs), kernel {}, git {}{}, {}",
                s.config.rounds,
                e.cpu_model,
                e.cpus,
                e.kernel,
                &e.git_revision[..e.git_revision.len().min(12)],
                if e.git_dirty { "+dirty" } else { "" },
                s.nginx_version
            );
            print!("{}", compare::render(&s.table));
            if let Some(o) = s.other_load_cores {
                println!(
                    "other processes used {o:.2} of {} cores during the runs (median; glint \
                     downloads {}, nginx downloads {}; nice {}){}",
                    e.cpus,
                    compare::fmt_num(s.other_load_cores_glint_downloads),
                    compare::fmt_num(s.other_load_cores_nginx_downloads),
                    s.nice,
                    if o > 0.2 {
                        ": the machine was shared, figures are noisy"
                    } else {
                        ""
                    }
                );
            }
            println!(
                "summary: {} ({:.0} s)",
                s.config.out.display(),
                s.total_seconds
            );
            Ok(())
        }
        Mode::CompareStores {
            glint_bin,
            rclone_bin,
            services_dir,
            size,
            memory_size,
            rounds,
            part_size_mib,
            parts_in_flight,
            large_object_size_mib,
            work_dir,
            out,
            nice,
        } => {
            if part_size_mib < 5 || parts_in_flight == 0 {
                bail!("--part-size-mib must be at least 5 and --parts-in-flight at least 1");
            }
            let cfg = StoresConfig {
                glint_bin,
                rclone_bin,
                services_dir,
                size_bytes: size,
                memory_size_bytes: memory_size,
                rounds: rounds.max(1),
                part_size_mib,
                parts_in_flight,
                large_object_size_mib,
                work_dir,
                out,
                nice,
            };
            let s = compare_stores::run(cfg, cli.client_threads)?;
            let e = &s.environment;
            let c = &s.config;
            println!(
                "\nglint stores vs rclone, medians of {} rounds (ratio: median of the per-round ratios) — {} ({} CPUs), kernel {}, git {}{}, {}",
                c.rounds,
                e.cpu_model,
                e.cpus,
                e.kernel,
                &e.git_revision[..e.git_revision.len().min(12)],
                if e.git_dirty { "+dirty" } else { "" },
                s.rclone_version
            );
            println!(
                "multipart: parts of {} MiB, {} in flight, above {} MiB — glint s3_store_large_object_chunk_size / \
                 s3_store_thread_pools / s3_store_large_object_size = rclone {}",
                c.part_size_mib,
                c.parts_in_flight,
                c.large_object_size_mib,
                s.rclone_upload_flags.join(" ")
            );
            print!("{}", compare::render(&s.table));
            println!(
                "summary: {} ({:.0} s, load at end {})",
                c.out.display(),
                s.total_seconds,
                s.loadavg_at_end
            );
            Ok(())
        }
        Mode::ColdPull {
            glint_bin,
            nginx_bin,
            varnishd_bin,
            services_dir,
            size,
            clients,
            rounds,
            block_size,
            work_dir,
            out,
            store_rate,
            servers,
        } => {
            let cfg = loadtest::cold_pull::ColdPullConfig {
                glint_bin,
                nginx_bin,
                varnishd_bin: varnishd_bin.exists().then_some(varnishd_bin),
                services_dir,
                size_bytes: size,
                clients,
                rounds: rounds.max(1),
                block_size,
                work_dir,
                out,
                store_rate: store_rate.unwrap_or(0),
                servers,
            };
            let s = loadtest::cold_pull::run(cfg, cli.client_threads)?;
            let e = &s.environment;
            println!(
                "\ncold pull of a {} MiB image, medians of {} rounds — {} ({} CPUs), kernel {}, git {}{}",
                s.config.size_bytes >> 20,
                s.config.rounds,
                e.cpu_model,
                e.cpus,
                e.kernel,
                &e.git_revision[..e.git_revision.len().min(12)],
                if e.git_dirty { "+dirty" } else { "" },
            );
            print!("{}", compare::render(&s.table));
            println!("summary: {}", s.config.out.display());
            Ok(())
        }
        Mode::HashLimit { size_bytes } => {
            let h = hashlimit::measure(size_bytes, &upload::pattern());
            println!("{}", serde_json::to_string_pretty(&h)?);
            Ok(())
        }
    }
}
