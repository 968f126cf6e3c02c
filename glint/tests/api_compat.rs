//! Client-level sharing flows: `loadtest/compat/test_sharing_osc_sdk.py` runs the real
//! `openstack` CLI (image set/unset/add project/remove project/member list/set --accept),
//! openstacksdk sharing calls as two projects, and glanceclient `image-list` filters against
//! the real `glint serve`. Needs `GLINT_COMPAT_PYTHON` (the venv made by
//! `scripts/compat-venv.sh`); `#[ignore]`d so plain `cargo test` needs no Python, and the
//! test command runs it with `--include-ignored` — without the variable it fails loudly.

use loadtest::harness::{Glint, binary};
use std::process::Command;

#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn sharing_and_filters_with_the_real_clients() {
    let python = std::env::var("GLINT_COMPAT_PYTHON")
        .expect("GLINT_COMPAT_PYTHON is not set: run ./scripts/test, or scripts/compat-venv.sh and export it");
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).expect("glint starts");
    let scratch = g.dir().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let script = format!(
        "{}/../loadtest/compat/test_sharing_osc_sdk.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(&python)
        .arg(&script)
        .env("GLINT_ENDPOINT", g.url(""))
        .env("GLINT_SCRATCH", &scratch)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "sharing script failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        g.log()
    );
}
