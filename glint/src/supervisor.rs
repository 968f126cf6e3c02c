//! The supervisor behind `glint serve`.
//!
//! 1. Make the data directory and `run/`, and lock `run/serve.lock` (one `glint serve` per data
//!    directory; a second one stops here, before touching anything); bind the public listener
//!    (so port 0 resolves once, and the port survives data-plane restarts: connections wait in
//!    the backlog meanwhile).
//! 2. Start the control plane; wait until it has written `run/admin.addr` and bound its
//!    sockets.
//! 3. Start the data plane, handing it the listener as an inherited file descriptor.
//! 4. Write `run/addresses.json` (`{"public": "...", "admin": "..."}`) for tools and tests.
//! 5. Watch both: a plane that exits is restarted (with a growing pause if it keeps dying).
//! 6. On SIGINT/SIGTERM: SIGTERM both planes, wait up to 10 s, then SIGKILL what is left.
//!    SIGHUP is passed to the data plane, which reloads its TLS certificate.

use anyhow::Context;
use rustix::process::{Pid, Signal};
use shared::config::Config;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Env var carrying the effective configuration (JSON) to a plane.
pub(crate) const CONFIG_ENV: &str = "GLINT_PLANE_CONFIG";
/// Env var carrying the listener's file descriptor number to the data plane.
pub(crate) const LISTEN_FD_ENV: &str = "GLINT_LISTEN_FD";
/// Env var carrying the supervisor's pid, so a plane can tell if it was orphaned.
const PARENT_ENV: &str = "GLINT_SUPERVISOR_PID";

/// The configuration a plane was started with.
pub(crate) fn plane_config() -> anyhow::Result<Config> {
    let raw = std::env::var(CONFIG_ENV).context("this subcommand is started by `glint serve`")?;
    Ok(serde_json::from_str(&raw)?)
}

/// Makes a plane receive SIGTERM when the supervisor dies, even by SIGKILL.
pub(crate) fn die_with_parent() -> anyhow::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))?;
    if let Ok(parent) = std::env::var(PARENT_ENV)
        && rustix::process::getppid().map(|p| p.as_raw_nonzero().get().to_string()) != Some(parent)
    {
        anyhow::bail!("supervisor exited before this plane started");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plane {
    Control,
    Data,
}

impl Plane {
    fn name(self) -> &'static str {
        match self {
            Plane::Control => "controlplane",
            Plane::Data => "dataplane",
        }
    }
}

struct Supervised {
    plane: Plane,
    child: Child,
    started: Instant,
    restarts: u32,
}

struct Supervisor {
    config: Config,
    config_json: String,
    listener: std::net::TcpListener,
    public: std::net::SocketAddr,
}

impl Supervisor {
    fn spawn(&self, plane: Plane) -> anyhow::Result<Child> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg(plane.name())
            .env(CONFIG_ENV, &self.config_json)
            .env(PARENT_ENV, std::process::id().to_string());
        if plane == Plane::Control {
            let _ = std::fs::remove_file(self.config.run_dir().join("admin.addr"));
            return Ok(cmd.spawn()?);
        }
        // Let exactly this child inherit the listener: clear close-on-exec around the spawn.
        use std::os::fd::{AsFd, AsRawFd};
        let fd = self.listener.as_fd();
        cmd.env(LISTEN_FD_ENV, self.listener.as_raw_fd().to_string());
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        let child = cmd.spawn();
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        Ok(child?)
    }

    /// Waits for a fresh control plane to publish its admin address and sockets.
    fn wait_control_ready(&self, child: &mut Child) -> anyhow::Result<String> {
        let addr_file = self.config.run_dir().join("admin.addr");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("control plane exited during start ({status})");
            }
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.trim().is_empty()
                && self.config.channel_socket().exists()
                && self.config.api_socket().exists()
            {
                return Ok(addr.trim().to_owned());
            }
            if Instant::now() > deadline {
                anyhow::bail!("control plane did not become ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Publishes the restart counts (`glint_supervisor_restarts_total`) for the control
    /// plane's `/metrics`.
    fn write_restarts(&self, restarts: [u64; 2]) {
        let path = self
            .config
            .run_dir()
            .join(shared::metrics::supervisor::FILE_NAME);
        if let Err(e) = publish(
            &path,
            shared::metrics::supervisor::render(restarts).as_bytes(),
        ) {
            tracing::warn!(error = %e, path = %path.display(), "cannot publish the restart counts");
        }
    }

    /// Publishes the pids of the three processes (for the `process_*` metrics).
    fn write_pids(&self, planes: &[Supervised]) {
        let mut pids = serde_json::Map::new();
        pids.insert("supervisor".into(), std::process::id().into());
        for p in planes {
            pids.insert(p.plane.name().into(), p.child.id().into());
        }
        let path = self
            .config
            .run_dir()
            .join(shared::metrics::supervisor::PIDS_FILE);
        let text = serde_json::Value::Object(pids).to_string();
        if let Err(e) = publish(&path, text.as_bytes()) {
            tracing::warn!(error = %e, path = %path.display(), "cannot publish the pids");
        }
    }

    fn write_addresses(&self, admin: &str) -> anyhow::Result<()> {
        let json = serde_json::json!({ "public": self.public.to_string(), "admin": admin });
        publish(
            &self.config.addresses_file(),
            &serde_json::to_vec_pretty(&json)?,
        )?;
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temp file and a rename, so a reader (a scrape, a test
/// harness) never sees half of it.
fn publish(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Runs `glint serve` until SIGINT/SIGTERM.
pub(crate) fn serve(mut config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    config.data_dir = std::fs::canonicalize(&config.data_dir)?;
    std::fs::create_dir_all(config.run_dir())?;
    // Held for the supervisor's life (the kernel drops it when the process exits).
    let lock_path = config.run_dir().join("serve.lock");
    let Some(_lock) = shared::lockfile::lock_exclusive(&lock_path)
        .with_context(|| format!("locking {}", lock_path.display()))?
    else {
        anyhow::bail!(
            "another glint serve is running on {} ({} is locked)",
            config.data_dir.display(),
            lock_path.display()
        );
    };
    let _ = std::fs::remove_file(config.addresses_file());

    let listener = std::net::TcpListener::bind((config.bind.host.as_str(), config.bind.port))
        .with_context(|| {
            format!(
                "binding public listener {}:{}",
                config.bind.host, config.bind.port
            )
        })?;
    let public = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let sup = Supervisor {
        config_json: serde_json::to_string(&config)?,
        config,
        listener,
        public,
    };
    tracing::info!(data_dir = %sup.config.data_dir.display(), "starting glint");

    let mut cp = sup.spawn(Plane::Control)?;
    let admin = match sup.wait_control_ready(&mut cp) {
        Ok(a) => a,
        Err(e) => {
            signal(&cp, Signal::KILL);
            let _ = cp.wait();
            return Err(e);
        }
    };
    let dp = sup.spawn(Plane::Data)?;
    sup.write_addresses(&admin)?;
    tracing::info!(public = %format!("http://{public}"), admin = %format!("http://{admin}"), "glint serving");

    let mut planes = [
        Supervised {
            plane: Plane::Control,
            child: cp,
            started: Instant::now(),
            restarts: 0,
        },
        Supervised {
            plane: Plane::Data,
            child: dp,
            started: Instant::now(),
            restarts: 0,
        },
    ];
    // every restart since start, by plane (`restarts` above counts quick ones for the pause)
    let mut total = [0u64; 2];
    sup.write_restarts(total);
    sup.write_pids(&planes);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: asking the data plane to reload its TLS certificate");
            signal(&planes[1].child, Signal::HUP);
        }
        let mut respawned = false;
        for (i, p) in planes.iter_mut().enumerate() {
            let Some(status) = p.child.try_wait()? else {
                continue;
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            total[i] += 1;
            sup.write_restarts(total);
            // A plane that keeps dying right after start gets a growing pause (max 5 s).
            if p.started.elapsed() < Duration::from_secs(10) {
                p.restarts += 1;
            } else {
                p.restarts = 0;
            }
            let pause = Duration::from_millis((100u64 << p.restarts.min(6)).min(5000));
            tracing::warn!(plane = p.plane.name(), %status, pause_ms = pause.as_millis() as u64, "plane exited; restarting");
            std::thread::sleep(pause);
            p.child = sup.spawn(p.plane)?;
            p.started = Instant::now();
            respawned = true;
            if p.plane == Plane::Control {
                match sup.wait_control_ready(&mut p.child) {
                    Ok(admin) => sup.write_addresses(&admin)?,
                    Err(e) => tracing::error!(error = %e, "control plane restart failed; retrying"),
                }
            }
        }
        if respawned {
            sup.write_pids(&planes);
        }
    }

    tracing::info!("stopping glint");
    for p in &planes {
        signal(&p.child, Signal::TERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in planes.iter_mut() {
        loop {
            if p.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                tracing::warn!(
                    plane = p.plane.name(),
                    "plane did not stop in time; killing"
                );
                signal(&p.child, Signal::KILL);
                let _ = p.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file(sup.config.addresses_file());
    remove_if_exists(&sup.config.run_dir().join("admin.addr"));
    tracing::info!("glint stopped");
    Ok(())
}

fn remove_if_exists(p: &Path) {
    let _ = std::fs::remove_file(p);
}
