//! Client compatibility: the real python-glanceclient, openstacksdk and `openstack` CLI
//! against the real `glint serve`. The scripts live in `loadtest/compat/`; the venv with the
//! pinned clients is made by `scripts/compat-venv.sh`, which the test command runs and whose
//! python it passes in `GLINT_COMPAT_PYTHON`. Without that variable these tests fail loudly
//! (they are `#[ignore]`d so a plain `cargo test` does not need Python; the test command runs
//! them with `--include-ignored`).

use loadtest::harness::{Glint, binary};
use std::process::Command;

fn run_script(script: &str) {
    let python = std::env::var("GLINT_COMPAT_PYTHON")
        .expect("GLINT_COMPAT_PYTHON is not set: run ./scripts/test, or scripts/compat-venv.sh and export it");
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).expect("glint starts");
    let scratch = g.dir().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let path = format!("{}/../loadtest/compat/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(&python)
        .arg(&path)
        .env("GLINT_ENDPOINT", g.url(""))
        .env("GLINT_SCRATCH", &scratch)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
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
