//! Server-side cost of a run, read from `/proc`: CPU seconds and resident memory per process.
//!
//! A server is named by the pid of its root process (glint's supervisor, nginx's master); the
//! processes measured are that root and all its descendants (found through the `ppid` field of
//! `/proc/<pid>/stat`), so glint's data plane and control plane, and nginx's workers, are counted.
//!
//! 1. [`Monitor::start`] reads `utime + stime` of every process of the tree.
//! 2. A sampling thread reads `VmRSS` of every process of the tree every `interval` and keeps the
//!    peak per process (processes that appear during the run are picked up).
//! 3. [`Monitor::finish`] reads the CPU times again; CPU seconds = the difference (a process that
//!    appeared during the run counts from zero).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// One reading of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSample {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// A short role name: `dataplane`, `controlplane`, `supervisor`, `nginx master`,
    /// `nginx worker`, else the command name.
    pub name: String,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size now, bytes.
    pub rss_bytes: u64,
    /// Peak resident set size since the process started (`VmHWM`), bytes.
    pub hwm_bytes: u64,
}

/// Parses `/proc/<pid>/stat` into `(comm, ppid, utime + stime)`.
pub fn parse_stat(stat: &str) -> Option<(String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // Fields after the command: state(3) ppid(4) … utime(14) stime(15).
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, ppid, utime + stime))
}

/// Reads a `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status` text as bytes.
pub fn status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// The role of a process from its command name and its `cmdline` arguments.
pub fn role(comm: &str, args: &[String]) -> String {
    for plane in ["dataplane", "controlplane"] {
        if args.iter().any(|a| a == plane) {
            return plane.to_owned();
        }
    }
    let first = args.first().map(String::as_str).unwrap_or("");
    if first.starts_with("nginx: master") {
        return "nginx master".into();
    }
    if first.starts_with("nginx: worker") {
        return "nginx worker".into();
    }
    if first.starts_with("nginx: ") {
        return first.trim_end().to_owned();
    }
    if comm == "glint" && args.iter().any(|a| a == "serve") {
        return "supervisor".into();
    }
    comm.to_owned()
}

/// Reads one process; `None` if it is gone.
pub fn read_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, ppid, cpu_ticks) = parse_stat(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(ProcSample {
        pid,
        ppid,
        name: role(&comm, &args),
        cpu_ticks,
        rss_bytes: status_kb(&status, "VmRSS").unwrap_or(0),
        hwm_bytes: status_kb(&status, "VmHWM").unwrap_or(0),
    })
}

/// `roots` and all their descendants that are alive now.
pub fn tree(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some((_, ppid, _)) = parse_stat(&stat) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        if out.contains(&p) || !std::path::Path::new(&format!("/proc/{p}")).exists() {
            continue;
        }
        out.push(p);
        if let Some(c) = children.get(&p) {
            todo.extend(c);
        }
    }
    out.sort_unstable();
    out
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// Cost of one process over a run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcUsage {
    /// Process id.
    pub pid: u32,
    /// Role (see [`ProcSample::name`]).
    pub name: String,
    /// CPU seconds (user + system) spent during the run.
    pub cpu_seconds: f64,
    /// Largest `VmRSS` sampled during the run, bytes.
    pub peak_rss_bytes: u64,
    /// `VmHWM` at the end of the run (peak since the process started), bytes.
    pub hwm_bytes: u64,
}

/// Cost of a server (a process tree) over a run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerUsage {
    /// One entry per process seen.
    pub processes: Vec<ProcUsage>,
    /// Sum of the CPU seconds of every process.
    pub cpu_seconds: f64,
    /// Largest sum of `VmRSS` over the tree in one sample, bytes.
    pub peak_rss_total_bytes: u64,
    /// Number of RSS samples taken.
    pub samples: u64,
}

impl ServerUsage {
    /// Peak RSS of the processes whose role is `name` (largest of them), bytes.
    pub fn peak_rss_of(&self, name: &str) -> Option<u64> {
        self.processes
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.peak_rss_bytes)
            .max()
    }
}

#[derive(Debug, Default)]
struct Peaks {
    per_pid: BTreeMap<u32, (String, u64)>,
    total: u64,
    samples: u64,
}

/// Measures a server's process tree while a run goes on.
#[derive(Debug)]
pub struct Monitor {
    roots: Vec<u32>,
    start_ticks: HashMap<u32, u64>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<Peaks>>,
}

fn sample(roots: &[u32], peaks: &mut Peaks) {
    let mut total = 0;
    for pid in tree(roots) {
        if let Some(s) = read_proc(pid) {
            total += s.rss_bytes;
            let e = peaks.per_pid.entry(pid).or_insert((s.name.clone(), 0));
            e.1 = e.1.max(s.rss_bytes);
        }
    }
    peaks.total = peaks.total.max(total);
    peaks.samples += 1;
}

impl Monitor {
    /// Starts measuring the trees rooted at `roots`, sampling RSS every `interval`.
    pub fn start(roots: &[u32], interval: Duration) -> Monitor {
        let start_ticks = tree(roots)
            .into_iter()
            .filter_map(|p| read_proc(p).map(|s| (p, s.cpu_ticks)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let roots_owned = roots.to_vec();
        let stop2 = stop.clone();
        let sampler = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut peaks = Peaks::default();
                while !stop2.load(Ordering::Relaxed) {
                    sample(&roots_owned, &mut peaks);
                    std::thread::sleep(interval);
                }
                sample(&roots_owned, &mut peaks);
                peaks
            })
            .ok();
        Monitor {
            roots: roots.to_vec(),
            start_ticks,
            stop,
            sampler,
        }
    }

    /// Stops sampling and returns what the tree spent since [`Monitor::start`].
    pub fn finish(mut self) -> ServerUsage {
        // Read CPU times first: the sampler's last pass must not be counted in the window.
        let end: Vec<ProcSample> = tree(&self.roots)
            .into_iter()
            .filter_map(read_proc)
            .collect();
        self.stop.store(true, Ordering::Relaxed);
        let peaks = self
            .sampler
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let tps = ticks_per_second() as f64;
        let mut processes = Vec::new();
        let mut cpu = 0.0;
        for s in &end {
            let before = self.start_ticks.get(&s.pid).copied().unwrap_or(0);
            let secs = s.cpu_ticks.saturating_sub(before) as f64 / tps;
            cpu += secs;
            processes.push(ProcUsage {
                pid: s.pid,
                name: s.name.clone(),
                cpu_seconds: secs,
                peak_rss_bytes: peaks
                    .per_pid
                    .get(&s.pid)
                    .map(|p| p.1)
                    .unwrap_or(0)
                    .max(s.rss_bytes),
                hwm_bytes: s.hwm_bytes,
            });
        }
        ServerUsage {
            processes,
            cpu_seconds: cpu,
            peak_rss_total_bytes: peaks.total,
            samples: peaks.samples,
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Busy CPU time of the whole machine so far, in clock ticks: the first line of `/proc/stat`
/// without `idle` and `iowait` (guest time is already inside `user`).
pub fn machine_busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// Busy CPU seconds of the whole machine so far (see [`machine_busy_ticks`]).
pub fn machine_busy_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| machine_busy_ticks(&s))
        .map(|t| t as f64 / ticks_per_second() as f64)
        .unwrap_or(0.0)
}

/// CPU seconds (user + system) this process has used so far.
pub fn self_cpu_seconds() -> f64 {
    read_proc(std::process::id())
        .map(|s| s.cpu_ticks as f64 / ticks_per_second() as f64)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "1234 (my (odd) proc) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0 \
                    12345 1000000 200 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(("my (odd) proc".to_owned(), 77, 281))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_machine_busy_time() {
        let stat = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        assert_eq!(machine_busy_ticks(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        assert_eq!(machine_busy_ticks("intr 1"), None);
        assert!(machine_busy_seconds() > 0.0);
    }

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tglint\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kb(status, "VmRSS"), Some(10 << 20));
        assert_eq!(status_kb(status, "VmHWM"), Some(20 << 20));
        assert_eq!(status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn names_roles() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            role("glint", &s(&["/x/glint", "dataplane", "--fd", "3"])),
            "dataplane"
        );
        assert_eq!(
            role("glint", &s(&["/x/glint", "controlplane"])),
            "controlplane"
        );
        assert_eq!(
            role("glint", &s(&["/x/glint", "serve", "--data-dir", "d"])),
            "supervisor"
        );
        assert_eq!(
            role("nginx", &s(&["nginx: master process nginx -c x"])),
            "nginx master"
        );
        assert_eq!(
            role("nginx", &s(&["nginx: worker process"])),
            "nginx worker"
        );
        assert_eq!(role("bash", &s(&["bash"])), "bash");
    }

    #[test]
    fn measures_own_process() {
        let me = std::process::id();
        assert!(tree(&[me]).contains(&me));
        let m = Monitor::start(&[me], Duration::from_millis(5));
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let u = m.finish();
        assert!(x > 0);
        let mine = u.processes.iter().find(|p| p.pid == me).expect("self");
        assert!(mine.peak_rss_bytes > 0 && mine.hwm_bytes > 0);
        assert!(u.samples >= 1);
        assert!(u.cpu_seconds >= 0.0);
    }
}
