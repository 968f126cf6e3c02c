//! Where a measurement was taken: hardware, kernel, toolchain, git revision.
//!
//! Every JSON summary carries one [`Environment`] so that a number can always be traced to the
//! machine and the code that produced it (STYLE §9). The load average at the start is recorded
//! too: on a shared machine it tells whether something else was running.

use serde::Serialize;
use std::process::Command;

/// The environment of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// `/proc/sys/kernel/hostname`.
    pub hostname: String,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// `MemTotal`, bytes.
    pub memory_bytes: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os: String,
    /// `rustc -V`.
    pub rustc: String,
    /// `git rev-parse HEAD` of the working directory (else of the checkout the running binary
    /// was built in).
    pub git_revision: String,
    /// Whether the work tree had uncommitted changes (`git status --porcelain` not empty).
    pub git_dirty: bool,
    /// `/proc/loadavg` when the run started.
    pub loadavg_at_start: String,
    /// UTC time of the run, RFC 3339.
    pub timestamp: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs git in the working directory, else in the directory of the running binary (inside
/// the checkout it was built in).
fn git(args: &[&str]) -> Option<String> {
    command_output("git", args).or_else(|| {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?.to_string_lossy().into_owned();
        let mut a = vec!["-C", dir.as_str()];
        a.extend_from_slice(args);
        command_output("git", &a)
    })
}

/// Reads the environment now.
pub fn environment() -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    Environment {
        hostname: read_trim("/proc/sys/kernel/hostname"),
        cpu_model,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_bytes: crate::procs::status_kb(&meminfo, "MemTotal").unwrap_or(0),
        kernel: read_trim("/proc/sys/kernel/osrelease"),
        os,
        rustc: command_output("rustc", &["-V"]).unwrap_or_default(),
        git_revision: git(&["rev-parse", "HEAD"]).unwrap_or_default(),
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
            .map(|s| !s.is_empty())
            .unwrap_or(false),
        loadavg_at_start: read_trim("/proc/loadavg"),
        timestamp: chrono::Utc::now().to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_machine() {
        let e = super::environment();
        assert!(e.cpus >= 1);
        assert!(!e.kernel.is_empty());
        assert!(e.memory_bytes > 0);
        assert!(!e.timestamp.is_empty());
    }
}
