//! The load generator's modes against a real `glint serve`: they move bytes, count them, see
//! the server's processes, and resume ranges correctly. No timing is asserted.
//!
//! The glint binary is `GLINT_BIN` if set (e.g. a release build), else this test builds it
//! with the cargo that runs the test (`cargo build -p glint`, into the target directory that
//! cargo uses, `CARGO_TARGET_DIR` included). A build that fails fails the test: it never passes
//! without exercising the load generator.

use loadtest::download::{self, DownloadConfig};
use loadtest::harness::Glint;
use loadtest::metadata::{self, MetadataConfig};
use loadtest::run::Bounds;
use loadtest::target::Target;
use loadtest::upload::{self, UploadConfig};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `GLINT_BIN`, or the binary `cargo build -p glint` produced (its path read from cargo's
/// artifact messages, so any target directory works). Panics when the build fails.
fn glint_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GLINT_BIN") {
        return PathBuf::from(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(&cargo)
        .args([
            "build",
            "-p",
            "glint",
            "--bin",
            "glint",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        out.status.success(),
        "`cargo build -p glint` failed ({}); set GLINT_BIN to test a prebuilt binary",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "glint")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no glint executable")
}

#[test]
fn modes_run_against_a_real_glint() {
    let bin = glint_bin();
    let g = Glint::start(&bin, &[]).expect("glint starts");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = Target::parse(&format!("http://{}", g.public)).unwrap();
    const SIZE: u64 = 3 << 20;
    let id = rt
        .block_on(upload::upload_image(&endpoint, SIZE, "loadgen-test"))
        .expect("upload");
    let file = endpoint.with_path(&format!("/v2/images/{id}/file"));

    // 1 s of 4 concurrent keep-alive downloads, with the server measured.
    let mut cfg = DownloadConfig::new(vec![file.clone()], 4, Bounds::seconds(1.0));
    cfg.server_pids = vec![g.pid()];
    let r = rt.block_on(download::run(cfg)).expect("download run");
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert!(r.requests >= 1, "{}", r.text());
    assert!(r.bytes >= r.requests * SIZE);
    assert_eq!(r.latency.count, r.requests);
    assert!(r.ttfb.expect("ttfb").count >= r.requests);
    let server = r.server.as_ref().expect("server usage");
    for plane in ["dataplane", "controlplane", "supervisor"] {
        assert!(
            server.peak_rss_of(plane).unwrap_or(0) > 0,
            "{plane} not measured: {}",
            r.text()
        );
    }
    assert!(r.server_cpu_seconds_per_gib.is_some());

    // Interrupted downloads resumed with Range: every byte arrives exactly once.
    let mut cfg = DownloadConfig::new(vec![file], 2, Bounds::requests(4));
    cfg.range_resume = true;
    cfg.keep_alive = false;
    let r = rt.block_on(download::run(cfg)).expect("resume run");
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert_eq!((r.requests, r.resumes, r.bytes), (4, 4, 4 * SIZE));

    // Show through the data plane and straight from the control plane's socket.
    let api_sock = g.dir().join("data").join("run").join("api.sock");
    for t in [
        endpoint.with_path(&format!("/v2/images/{id}")),
        Target::unix(&api_sock, "/v2/images?limit=25&status=active"),
    ] {
        let r = rt
            .block_on(metadata::run(MetadataConfig::new(
                t,
                4,
                Bounds::requests(40),
            )))
            .expect("metadata run");
        assert_eq!((r.requests, r.errors), (40, 0), "{:?}", r.first_error);
        assert!(r.bytes > 0);
    }

    // One upload, deleted afterwards.
    let r = rt
        .block_on(upload::run(UploadConfig::new(
            endpoint,
            SIZE,
            1,
            Bounds::requests(1),
        )))
        .expect("upload run");
    assert_eq!(
        (r.requests, r.errors, r.bytes),
        (1, 0, SIZE),
        "{:?}",
        r.first_error
    );
}
