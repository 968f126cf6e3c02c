//! Client compatibility: the real python-glanceclient, openstacksdk and `openstack` CLI
//! against the real `glint serve`. The scripts live in `loadtest/compat/`; the venv with the
//! pinned clients is made by `scripts/compat-venv.sh`, which the test command runs and whose
//! python it passes in `GLINT_COMPAT_PYTHON`. Without that variable these tests fail loudly
//! (they are `#[ignore]`d so a plain `cargo test` does not need Python; the test command runs
//! them with `--include-ignored`).

use loadtest::harness::{Glint, binary};

fn run_script(script: &str) {
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).expect("glint starts");
    match g.run_compat_script(script, &[]) {
        Ok(stdout) => println!("{stdout}"),
        Err(e) => panic!("{e:#}"),
    }
}

#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn openstack_cli() {
    run_script("test_osc.py");
}

#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn openstacksdk() {
    run_script("test_sdk.py");
}

#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn python_glanceclient() {
    run_script("test_glanceclient.py");
}

/// Interoperable import through python-glanceclient (API and shell), openstacksdk and
/// `openstack image create --import`: `glance-direct`, and `web-download` from a source on
/// 127.0.0.2 (the one network this glint allows beside the defaults; a loopback source on
/// 127.0.0.1 is refused).
#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn image_import_through_every_client() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glint.toml");
    std::fs::write(
        &config,
        "[import_filtering_opts]\nallowed_ports = []\nallowed_networks = [\"127.0.0.2/32\"]\n",
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .expect("glint starts");
    match g.run_compat_script("test_import.py", &[("GLINT_WEB_SOURCE_HOST", "127.0.0.2")]) {
        Ok(stdout) => println!("{stdout}"),
        Err(e) => panic!("{e:#}"),
    }
}

/// Glance's `hashing_algorithm` beyond the default: glint started with each of these
/// hashlib names, python-glanceclient uploads and downloads with verification, and the script
/// recomputes `os_hash_value` with Python's hashlib.
#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn hashing_algorithms_match_hashlib() {
    for algo in ["sha3_256", "blake2b", "sha512_256", "sha256"] {
        let g = Glint::start_with_env(
            &binary(env!("CARGO_BIN_EXE_glint")),
            &[],
            &[("GLINT_HASHING_ALGORITHM", algo)],
        )
        .expect("glint starts");
        match g.run_compat_script(
            "test_hash_algorithms.py",
            &[("GLINT_EXPECT_HASH_ALGO", algo)],
        ) {
            Ok(stdout) => println!("{stdout}"),
            Err(e) => panic!("{algo}: {e:#}"),
        }
    }
}

/// The metadata definitions catalog through python-glanceclient (its schema-validated
/// controllers), the `glance md-*` CLI, `openstack image metadef …` and openstacksdk.
#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn metadefs_through_every_client() {
    run_script("test_metadefs.py");
}
