//! The load generator's modes against a real `glint serve`: they move bytes, count them, see
//! the server's processes, and resume ranges correctly. No timing is asserted.
//!
//! The glint binary is `GLINT_BIN` if set (e.g. a release build), else the one cargo built
//! for this test (`CARGO_BIN_EXE_glint`): the test lives in glint's package so that it always
//! has a binary to drive and never passes without exercising the load generator.

use loadtest::download::{self, DownloadConfig};
use loadtest::harness::Glint;
use loadtest::metadata::{self, MetadataConfig};
use loadtest::run::Bounds;
use loadtest::target::Target;
use loadtest::upload::{self, UploadConfig};
use std::path::PathBuf;

/// `GLINT_BIN`, or the binary cargo built for this package's tests.
fn glint_bin() -> PathBuf {
    std::env::var_os("GLINT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_glint")))
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
