//! The dashboards against a real Prometheus: Debian's `prometheus` binary (the test command
//! installs the package; its service is never started) run here with a generated config that
//! scrapes a real `glint serve` every second, while a workload runs that includes a dropped
//! download, a dropped upload and a SIGKILL of the data plane. Then every expression of every
//! panel of `grafana/dashboards/*.json` (Grafana's variables filled in as Grafana would) must
//! parse and return data through Prometheus's HTTP API, and the restart and the lease revert
//! must be visible in what Prometheus stored.

use loadtest::harness::{Glint, binary};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/workload.rs"]
mod workload;

/// A Prometheus of this test, stopped on drop.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: glint\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect(
                "prometheus not found: install Debian's prometheus package (./scripts/test does)",
            );
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::blocking::get(format!("{}/-/ready", p.base))
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "prometheus not ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// An instant query: the result vector (the query must succeed).
    fn query(&self, expr: &str) -> Vec<Value> {
        let r: Value = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["status"], "success", "{expr}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `expr` returns a sample for which `ok` holds.
    fn wait_for(&self, expr: &str, ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<f64> = self
                .query(expr)
                .iter()
                .filter_map(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
                .collect();
            if got.iter().any(|v| ok(*v)) {
                return;
            }
            assert!(Instant::now() < deadline, "{expr}: {got:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Every `expr` of every panel (nested rows included) of the dashboards.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let d: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut panels: Vec<Value> = d["panels"].as_array().cloned().unwrap_or_default();
        while let Some(p) = panels.pop() {
            panels.extend(p["panels"].as_array().cloned().unwrap_or_default());
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("{}: {}", path.display(), p["title"]), e.to_owned()));
                }
            }
        }
    }
    out
}

/// What Grafana sends for the dashboard's variables (all jobs and instances, a rate window
/// of four scrapes).
fn grafana_filled(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$job", ".*")
        .replace("$instance", ".*")
}

#[test]
#[ignore = "needs Debian's prometheus: run through ./scripts/test"]
fn every_dashboard_expression_returns_data_from_a_real_prometheus() {
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).unwrap();
    let admin = g.admin_url("/metrics");
    let target = admin
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let prom = Prometheus::start(&target);
    prom.wait_for("up{job=\"glint\"}", |v| v == 1.0);

    // the workload: uploads, downloads, listings, a 404, an unserved API
    let c = reqwest::blocking::Client::new();
    let ids: Vec<String> = (0..3)
        .map(|_| workload::uploaded(&g, "p", 4 << 20))
        .collect();
    for id in &ids {
        assert_eq!(
            c.get(g.url(&format!("/v2/images/{id}/file")))
                .send()
                .unwrap()
                .bytes()
                .unwrap()
                .len(),
            4 << 20
        );
    }
    let _ = c.get(g.url("/v2/images?limit=2")).send().unwrap();
    // an API glint does not serve (Glance's v1, as an old client calls it)
    let _ = c.get(g.url("/v1/images")).send().unwrap();
    // a download the client drops after a little
    workload::download_part_of(&g, &ids[0], 130_000);
    // an upload the client drops half-way: the image goes back to queued
    let dropped = workload::create(&g, "dropped");
    drop(workload::upload_part_of(&g, &dropped, 8 << 20, 4 << 20));
    // an upload in flight when the data plane is killed: its lease is reverted
    let killed = workload::create(&g, "killed");
    let s = workload::upload_part_of(&g, &killed, 8 << 20, 2 << 20);
    let saving = Instant::now() + Duration::from_secs(10);
    while c
        .get(g.url(&format!("/v2/images/{killed}")))
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["status"]
        != "saving"
    {
        assert!(Instant::now() < saving, "upload never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    workload::kill_dataplane(&g);
    drop(s);
    // more traffic after the restart, so every rate has two samples on both sides of it
    for _ in 0..5 {
        let _ = c
            .get(g.url(&format!("/v2/images/{}/file", ids[1])))
            .send()
            .unwrap()
            .bytes();
        let _ = c.get(g.url("/v2/images")).send().unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }

    // what Prometheus stored: the restart, the revert
    prom.wait_for(
        "glint_supervisor_restarts_total{plane=\"dataplane\"}",
        |v| v == 1.0,
    );
    prom.wait_for("glint_channel_leases_reverted_total", |v| v >= 1.0);
    prom.wait_for(
        "increase(glint_supervisor_restarts_total{plane=\"dataplane\"}[1m])",
        |v| v > 0.0,
    );
    prom.wait_for("increase(glint_channel_leases_reverted_total[1m])", |v| {
        v > 0.0
    });
    prom.wait_for(
        "sum(glint_api_requests_total{route=\"unmatched:/v1\"})",
        |v| v >= 1.0,
    );

    // every panel's expression parses and returns data
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 15, "{exprs:?}");
    let mut empty = Vec::new();
    for (panel, expr) in &exprs {
        let filled = grafana_filled(expr);
        if prom.query(&filled).is_empty() {
            empty.push(format!("{panel}: {filled}"));
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
}
