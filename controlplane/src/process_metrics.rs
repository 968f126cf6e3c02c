//! The standard `process_*` metrics of glint's three processes (supervisor, control plane,
//! data plane), read from `/proc` by the `procfs` crate when `/metrics` is scraped, with a
//! `process` label, since one page serves all three.
//!
//! The control plane knows its own pid; the supervisor publishes the others in
//! `run/pids.json` ([`shared::metrics::supervisor::PIDS_FILE`]) whenever it starts a plane.
//! `process_start_time_seconds` tells a restarted plane apart, so its counters starting
//! again from 0 read as the counter reset Prometheus's `rate()` expects.

use std::fmt::Write;
use std::path::Path;

/// One process's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Figures {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: usize,
    max_fds: Option<u64>,
    start_time_seconds: f64,
}

fn figures(pid: i32) -> Option<Figures> {
    let p = procfs::process::Process::new(pid).ok()?;
    let stat = p.stat().ok()?;
    let tps = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().ok()? as f64;
    let max_fds = p
        .limits()
        .ok()
        .and_then(|l| match l.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(n) => Some(n),
            procfs::process::LimitValue::Unlimited => None,
        });
    Some(Figures {
        cpu_seconds: (stat.utime + stat.stime) as f64 / tps,
        resident_bytes: stat.rss * procfs::page_size(),
        virtual_bytes: stat.vsize,
        open_fds: p.fd_count().unwrap_or(0),
        max_fds,
        start_time_seconds: boot + stat.starttime as f64 / tps,
    })
}

/// The processes to report: this one as `controlplane`, and those `run_dir/pids.json` names.
fn processes(run_dir: &Path) -> Vec<(String, i32)> {
    let mut out = vec![("controlplane".to_owned(), std::process::id() as i32)];
    let path = run_dir.join(shared::metrics::supervisor::PIDS_FILE);
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text)
    {
        for (name, pid) in map {
            if name != "controlplane"
                && let Some(pid) = pid.as_i64().and_then(|p| i32::try_from(p).ok())
            {
                out.push((name, pid));
            }
        }
    }
    out
}

/// Appends the `process_*` families for glint's processes to `out`.
pub fn render(run_dir: &Path, out: &mut String) {
    let all: Vec<(String, Figures)> = processes(run_dir)
        .into_iter()
        .filter_map(|(name, pid)| figures(pid).map(|f| (name, f)))
        .collect();
    let family = |out: &mut String,
                  name: &str,
                  kind: &str,
                  help: &str,
                  value: &dyn Fn(&Figures) -> Option<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (process, f) in &all {
            if let Some(v) = value(f) {
                let _ = writeln!(out, "{name}{{process=\"{process}\"}} {v}");
            }
        }
    };
    family(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        &|f| Some(f.cpu_seconds.to_string()),
    );
    family(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        &|f| Some(f.resident_bytes.to_string()),
    );
    family(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        &|f| Some(f.virtual_bytes.to_string()),
    );
    family(
        out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        &|f| Some(f.open_fds.to_string()),
    );
    family(
        out,
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        &|f| f.max_fds.map(|n| n.to_string()),
    );
    family(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        &|f| Some(format!("{:.2}", f.start_time_seconds)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_reported_and_pids_json_adds_others() {
        let dir = tempfile::tempdir().unwrap();
        // the parent (cargo's test runner) stands in for a plane
        let parent = std::os::unix::process::parent_id();
        std::fs::write(
            dir.path().join(shared::metrics::supervisor::PIDS_FILE),
            format!("{{\"supervisor\": {parent}, \"dataplane\": 999999999}}"),
        )
        .unwrap();
        let mut out = String::new();
        render(dir.path(), &mut out);
        assert!(
            out.contains("process_cpu_seconds_total{process=\"controlplane\"}"),
            "{out}"
        );
        assert!(
            out.contains("process_open_fds{process=\"supervisor\"}"),
            "{out}"
        );
        assert!(
            !out.contains("process=\"dataplane\""),
            "a pid that is gone is left out: {out}"
        );
        let start: f64 = out
            .lines()
            .find(|l| l.starts_with("process_start_time_seconds{process=\"controlplane\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
