//! Content inspection of uploads through the real `glint serve`, with images made by the real
//! `qemu-img` (Debian's qemu-utils): valid images are stored with their virtual size, hostile
//! ones (a qcow2 backing file or external data file, a VMDK naming another file, QED) and
//! content that is not the claimed `disk_format` are refused with 400; the image stays `queued`
//! and no byte is kept in the store. Glance's rules (`glance/location.py` `set_data`): only
//! `bare` images are inspected, `raw` accepts any content, claims that cannot be inspected
//! (`ami`, …) accept raw content. python-glanceclient and the `openstack` CLI see the same.

use loadtest::harness::{Glint, binary, random_bytes};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/workload.rs"]
mod workload;

/// Runs `qemu-img` with the arguments of `command_line` (split at spaces) in `dir`; panics
/// (loudly, never skips) if it is missing.
fn qemu_img(dir: &Path, command_line: &str) {
    let args: Vec<&str> = command_line.split(' ').collect();
    let out = Command::new("qemu-img")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("qemu-img not found: install Debian's qemu-utils");
    assert!(
        out.status.success(),
        "qemu-img {command_line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixtures, made once per test in a scratch directory.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn make() -> Fixtures {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for command_line in [
            "create -q -f qcow2 valid.qcow2 64M",
            "create -q -f raw base.raw 16M",
            "create -q -f qcow2 -b base.raw -F raw backing.qcow2",
            "create -q -f qcow2 -o data_file=data.raw datafile.qcow2 16M",
            "create -q -f vmdk -o subformat=streamOptimized stream.vmdk 32M",
            "create -q -f vhdx valid.vhdx 48M",
            "create -q -f vdi valid.vdi 40M",
            "create -q -f qed hostile.qed 16M",
            // a monolithicSparse VMDK whose embedded descriptor is rewritten below to name a
            // host file as its extent (CVE-2022-47951)
            "create -q -f vmdk -o subformat=monolithicSparse passwd.vmdk 8M",
        ] {
            qemu_img(d, command_line);
        }
        let path = d.join("passwd.vmdk");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = find(&bytes, b"RW 16384 SPARSE \"passwd.vmdk\"").expect("extent line");
        let evil = b"RW 16384 FLAT \"/etc/passwd\" 0";
        bytes[at..at + evil.len()].copy_from_slice(evil);
        let tail = at + b"RW 16384 SPARSE \"passwd.vmdk\"".len();
        for b in &mut bytes[at + evil.len()..tail] {
            *b = b' ';
        }
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(d.join("random.bin"), random_bytes(3 << 20)).unwrap();
        Fixtures { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn create(g: &Glint, disk_format: &str, container_format: &str) -> String {
    workload::create_as(g, "insp", disk_format, container_format)
}

fn show(g: &Glint, id: &str) -> Value {
    reqwest::blocking::get(g.url(&format!("/v2/images/{id}")))
        .unwrap()
        .json()
        .unwrap()
}

/// An upload that must be stored: 204, active, the virtual size, the bytes back.
fn accepted(g: &Glint, f: &Fixtures, file: &str, disk_format: &str, virtual_size: Option<u64>) {
    let id = create(g, disk_format, "bare");
    let data = f.bytes(file);
    let (status, body) = workload::put(g, &id, data.clone());
    assert_eq!(status, 204, "{file} as {disk_format}: {body}\n{}", g.log());
    let img = show(g, &id);
    assert_eq!(img["status"], "active", "{file}");
    assert_eq!(
        img["virtual_size"].as_u64(),
        virtual_size,
        "{file} as {disk_format}: {img}"
    );
    let got = reqwest::blocking::get(g.url(&format!("/v2/images/{id}/file")))
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got[..] == data[..], "{file}: bytes differ");
}

/// An upload that must be refused: 400 naming why, the image `queued`, nothing stored.
fn refused(g: &Glint, f: &Fixtures, file: &str, disk_format: &str, why: &str) {
    let id = create(g, disk_format, "bare");
    let (status, body) = workload::put(g, &id, f.bytes(file));
    assert_eq!(status, 400, "{file} as {disk_format}: {body}");
    assert!(body.contains(why), "{file}: {why:?} not in {body}");
    let img = show(g, &id);
    assert_eq!(img["status"], "queued", "{file}");
    assert_eq!(img["size"], Value::Null, "{file}");
    assert!(
        !g.store_files().iter().any(|n| n.contains(&id)),
        "{file}: data kept in the store: {:?}",
        g.store_files()
    );
}

fn metric(g: &Glint, series: &str) -> f64 {
    workload::metric(&workload::scrape(g), series)
}

#[test]
fn uploads_are_inspected_as_glance_does() {
    let f = Fixtures::make();
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).unwrap();

    // valid images of each kind, with the virtual size their headers declare
    accepted(&g, &f, "valid.qcow2", "qcow2", Some(64 << 20));
    accepted(&g, &f, "stream.vmdk", "vmdk", Some(32 << 20));
    accepted(&g, &f, "valid.vhdx", "vhdx", Some(48 << 20));
    accepted(&g, &f, "valid.vdi", "vdi", Some(40 << 20));
    // raw takes any content (its virtual size is the byte size); so do claims Glance cannot
    // inspect, for content that is no known format
    let qcow2_len = f.bytes("valid.qcow2").len() as u64;
    accepted(&g, &f, "valid.qcow2", "raw", Some(qcow2_len));
    accepted(&g, &f, "random.bin", "raw", Some(3 << 20));
    accepted(&g, &f, "random.bin", "ami", None);

    // hostile content and mismatches
    refused(&g, &f, "backing.qcow2", "qcow2", "backing file");
    refused(&g, &f, "datafile.qcow2", "qcow2", "data file");
    refused(&g, &f, "passwd.vmdk", "vmdk", "Image failed safety checks");
    // qed is not a disk_format Glance offers by default; as raw it is refused all the same
    refused(&g, &f, "hostile.qed", "raw", "Image failed safety checks");
    refused(&g, &f, "random.bin", "qcow2", "does not match");
    refused(&g, &f, "valid.vdi", "vmdk", "does not match");
    // a hostile image claimed as raw is refused too: the safety rules look at the content
    refused(&g, &f, "backing.qcow2", "raw", "backing file");

    // only bare images are inspected, as in Glance
    let id = create(&g, "qcow2", "ova");
    assert_eq!(workload::put(&g, &id, f.bytes("random.bin")).0, 204);
    assert_eq!(show(&g, &id)["virtual_size"], Value::Null);

    // counted by format and by reason
    assert!(metric(&g, "glint_dp_uploads_inspected_total{format=\"qcow2\"}") >= 3.0);
    assert_eq!(
        metric(
            &g,
            "glint_dp_uploads_refused_total{reason=\"qcow2_backing_file\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &g,
            "glint_dp_uploads_refused_total{reason=\"format_mismatch\"}"
        ),
        2.0
    );

    // the image stays usable: the same image takes a valid upload after a refusal
    let id = create(&g, "qcow2", "bare");
    assert_eq!(workload::put(&g, &id, f.bytes("backing.qcow2")).0, 400);
    assert_eq!(workload::put(&g, &id, f.bytes("valid.qcow2")).0, 204);
    assert_eq!(show(&g, &id)["virtual_size"], 64 << 20);
}

#[test]
fn without_require_image_format_match_only_hostile_content_is_refused() {
    let f = Fixtures::make();
    let config = f.path("glint.toml");
    std::fs::write(&config, "[image]\nrequire_image_format_match = false\n").unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    // a mismatch is let through, without a virtual size (Glance logs it)
    accepted(&g, &f, "random.bin", "qcow2", None);
    accepted(&g, &f, "valid.vdi", "vmdk", None);
    // hostile content is not
    refused(&g, &f, "backing.qcow2", "qcow2", "backing file");
    refused(&g, &f, "passwd.vmdk", "vmdk", "Image failed safety checks");
}

#[test]
#[ignore = "needs the client venv: run through ./scripts/test"]
fn glance_clients_see_the_refusal() {
    let f = Fixtures::make();
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).unwrap();
    let out = g
        .run_compat_script(
            "test_inspection.py",
            &[
                ("GLINT_VALID_QCOW2", f.path("valid.qcow2").to_str().unwrap()),
                (
                    "GLINT_HOSTILE_QCOW2",
                    f.path("backing.qcow2").to_str().unwrap(),
                ),
            ],
        )
        .unwrap();
    assert!(out.contains("ok   inspection:"), "{out}");
}

/// What the glint of these tests answers to an import request; (status, body).
fn post_import(g: &Glint, id: &str, body: Value) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .post(g.url(&format!("/v2/images/{id}/import")))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The image's one import task once it ended.
fn task_ended(g: &Glint, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let v: Value = reqwest::blocking::get(g.url(&format!("/v2/images/{id}/tasks")))
            .unwrap()
            .json()
            .unwrap();
        if let Some(t) = v["tasks"].get(0)
            && (t["status"] == "success" || t["status"] == "failure")
        {
            return t.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{v}\n{}", g.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stages (`PUT …/stage`) and web-downloads are inspected as uploads are: hostile content is
/// refused at the stage (400, the image `queued`, nothing staged) and fails a web-download's
/// import (the image `queued`, nothing kept); valid content goes through with its size.
#[test]
fn stages_and_web_downloads_are_inspected_too() {
    let f = Fixtures::make();
    let config = f.path("glint.toml");
    std::fs::write(
        &config,
        "[import_filtering_opts]\nallowed_ports = []\nallowed_networks = [\"127.0.0.2/32\"]\n",
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let staging = g.dir().join("data").join("staging");
    let staged = || -> usize { std::fs::read_dir(&staging).map_or(0, |d| d.count()) };
    for (file, disk_format, why) in [
        ("backing.qcow2", "qcow2", "backing file"),
        ("datafile.qcow2", "qcow2", "data file"),
        ("passwd.vmdk", "vmdk", "Image failed safety checks"),
        ("hostile.qed", "raw", "Image failed safety checks"),
        ("random.bin", "qcow2", "does not match"),
    ] {
        let id = create(&g, disk_format, "bare");
        let r = reqwest::blocking::Client::new()
            .put(g.url(&format!("/v2/images/{id}/stage")))
            .header("Content-Type", "application/octet-stream")
            .body(f.bytes(file))
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "stage of {file}");
        let body = r.text().unwrap();
        assert!(body.contains(why), "{file}: {why:?} not in {body}");
        assert_eq!(show(&g, &id)["status"], "queued");
        assert_eq!(staged(), 0, "{file}: staged data kept");
    }
    // the same files as web-download sources
    let dir = f.dir.path().to_owned();
    for (file, disk_format, why) in [
        ("backing.qcow2", "qcow2", "backing file"),
        ("passwd.vmdk", "vmdk", "Image failed safety checks"),
    ] {
        let src = workload::source_server("127.0.0.2", std::fs::read(dir.join(file)).unwrap());
        let id = create(&g, disk_format, "bare");
        let (status, body) = post_import(
            &g,
            &id,
            serde_json::json!({"method": {"name": "web-download", "uri": format!("{src}/image")}}),
        );
        assert_eq!(status, 202, "{body}");
        let t = task_ended(&g, &id);
        assert_eq!(t["status"], "failure", "{t}");
        assert!(
            t["message"].as_str().unwrap_or("").contains(why),
            "{file}: {t}"
        );
        assert_eq!(show(&g, &id)["status"], "queued");
        assert_eq!(staged(), 0, "{file}: staged data kept");
        assert!(!g.store_files().iter().any(|n| n.contains(&id)));
    }
    // a valid qcow2 staged and imported keeps its virtual size
    let src = workload::source_server("127.0.0.2", f.bytes("valid.qcow2"));
    let id = create(&g, "qcow2", "bare");
    let (status, _) = post_import(
        &g,
        &id,
        serde_json::json!({"method": {"name": "web-download", "uri": format!("{src}/image")}}),
    );
    assert_eq!(status, 202);
    assert_eq!(task_ended(&g, &id)["status"], "success");
    assert_eq!(show(&g, &id)["virtual_size"], 64 << 20);
}
