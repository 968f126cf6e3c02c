//! Client-level sharing flows: `loadtest/compat/test_sharing_osc_sdk.py` runs the real
//! `openstack` CLI (image set/unset/add project/remove project/member list/set --accept),
//! openstacksdk sharing calls as two projects, and glanceclient `image-list` filters against
//! the real `glint serve`. Needs `GLINT_COMPAT_PYTHON` (the venv made by
//! `scripts/compat-venv.sh`); `#[ignore]`d so plain `cargo test` needs no Python, and the
//! test command runs it with `--include-ignored` — without the variable it fails loudly.

use loadtest::harness::{Glint, binary};

#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn sharing_and_filters_with_the_real_clients() {
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).expect("glint starts");
    match g.run_compat_script("test_sharing_osc_sdk.py", &[]) {
        Ok(stdout) => println!("{stdout}"),
        Err(e) => panic!("{e:#}"),
    }
}
