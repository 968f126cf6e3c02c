//! Start, inspect and stop a real `glint serve` for a test.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `glint serve` in its own temp directory.
#[derive(Debug)]
pub struct Glint {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    /// `host:port` of the public listener.
    pub public: String,
    /// `host:port` of the admin listener.
    pub admin: String,
    /// Whether the public listener speaks TLS (`GLINT_TLS_CERT_FILE` was given).
    pub tls: bool,
}

/// The glint binary to test: `GLINT_BIN` if set (e.g. a release build), else `default`.
pub fn binary(default: &str) -> PathBuf {
    std::env::var_os("GLINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl Glint {
    /// Starts `bin serve` on port 0 with a fresh data directory and waits until both planes
    /// answer. `extra` is appended to the command line.
    pub fn start(bin: &Path, extra: &[&str]) -> anyhow::Result<Glint> {
        Self::start_with_env(bin, extra, &[])
    }

    /// Like [`Glint::start`], with extra environment variables.
    pub fn start_with_env(
        bin: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Glint> {
        // Unix socket paths must stay short: use /tmp rather than a deep TMPDIR.
        let dir = tempfile::Builder::new()
            .prefix("glint-t")
            .tempdir_in("/tmp")?;
        let data = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("glint.log"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--data-dir").arg(&data).args([
            "--bind-port",
            "0",
            "--admin-port",
            "0",
        ]);
        if !extra.contains(&"--workers") {
            cmd.args(["--workers", "2"]);
        }
        cmd.args(extra)
            .env(
                "GLINT_LOG",
                std::env::var("GLINT_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let tls = env.iter().any(|(k, _)| *k == "GLINT_TLS_CERT_FILE");
        let mut g = Glint {
            child: Some(child),
            dir: Some(dir),
            public: String::new(),
            admin: String::new(),
            tls,
        };
        g.wait_ready(&data)?;
        Ok(g)
    }

    fn public_ready(&self) -> bool {
        if self.tls {
            // the supervisor bound the port before publishing it; the handshake is the test's
            TcpStream::connect(&self.public).is_ok()
        } else {
            raw_status(
                &self.public,
                "GET /versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ) == Some(200)
        }
    }

    fn wait_ready(&mut self, data: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addresses = data.join("run").join("addresses.json");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("glint exited during start ({status}); log:\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&addresses)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                self.public = v["public"].as_str().unwrap_or_default().to_owned();
                self.admin = v["admin"].as_str().unwrap_or_default().to_owned();
                if raw_status(
                    &self.admin,
                    "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                ) == Some(200)
                    && self.public_ready()
                {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("glint not ready within 60 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls until the public listener answers `GET /versions` again (after a plane restart).
    pub fn wait_public(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if raw_status(
                &self.public,
                "GET /versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ) == Some(200)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("public listener did not recover; log:\n{}", self.log())
    }

    /// `http://<public>` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// The public listener's `host:port`.
    pub fn public_addr(&self) -> String {
        self.public.clone()
    }

    /// `http://<admin>` + `path`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The temp directory holding data and log.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }

    /// The filesystem store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir().join("data").join("images")
    }

    /// Every file in the store directory (including temp files).
    pub fn store_files(&self) -> Vec<String> {
        std::fs::read_dir(self.store_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("glint.log")).unwrap_or_default()
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The pid of a plane process (`"controlplane"` or `"dataplane"`), a child of the supervisor.
    pub fn plane_pid(&self, plane: &str) -> Option<u32> {
        let me = self.pid();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let ppid: u32 = after
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if ppid != me {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.split(|b| *b == 0).any(|a| a == plane.as_bytes()) {
                return Some(pid);
            }
        }
        None
    }

    /// Sends `sig` to a process.
    pub fn kill(pid: u32, sig: rustix::process::Signal) {
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, sig);
        }
    }

    /// Runs one client-compatibility script (`loadtest/compat/<script>`) with the python in
    /// `GLINT_COMPAT_PYTHON` against this glint (`GLINT_ENDPOINT`, `GLINT_SCRATCH` set), plus
    /// `env`. Returns its stdout; an error carries stdout, stderr and glint's log.
    pub fn run_compat_script(&self, script: &str, env: &[(&str, &str)]) -> anyhow::Result<String> {
        let python = std::env::var("GLINT_COMPAT_PYTHON").context(
            "GLINT_COMPAT_PYTHON is not set: run ./scripts/test, or scripts/compat-venv.sh and export it",
        )?;
        let scratch = self.dir().join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("compat")
            .join(script);
        let scheme = if self.tls { "https" } else { "http" };
        let mut cmd = Command::new(&python);
        cmd.arg(&path)
            .env("GLINT_ENDPOINT", format!("{scheme}://{}", self.public))
            .env("GLINT_SCRATCH", &scratch);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().with_context(|| format!("running {python}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            bail!(
                "{script} failed ({}):\n{stdout}\n{stderr}\n--- glint log ---\n{}",
                out.status,
                self.log()
            );
        }
        Ok(stdout)
    }

    /// Stops glint with SIGTERM and waits; returns its exit status.
    pub fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Self::kill(child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("glint did not stop within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Glint {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let log = std::fs::read_to_string(dir.path().join("glint.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let kept = dir.keep();
            eprintln!("--- glint log kept in {} (last lines) ---", kept.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Sends a raw request and returns the response status, or `None` on any failure.
pub fn raw_status(addr: &str, request: &str) -> Option<u16> {
    let resp = raw_request(addr, request.as_bytes(), Duration::from_secs(5)).ok()?;
    parse_status(&resp)
}

/// Sends raw bytes, reads until the peer closes (or `timeout`), returns what came back.
pub fn raw_request(addr: &str, request: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(request)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if out.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// The status code of a raw HTTP response.
pub fn parse_status(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|b| *b == b'\n').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Random bytes for test images.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; len];
    rand::rng().fill_bytes(&mut v);
    v
}

/// md5 hex of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// sha512 hex of `data`.
pub fn sha512_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha512::digest(data))
}
