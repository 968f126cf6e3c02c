//! `glint manage` as an operator runs it: the real binary against the database a real
//! `glint serve` uses.

use loadtest::harness::{Glint, binary, random_bytes};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn manage(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary(env!("CARGO_BIN_EXE_glint")))
        .arg("manage")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run glint manage");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `db version` and `db sync` on a fresh data directory; a service on that database; `db
/// purge` of a deleted image's rows, after which its id is still taken.
#[test]
fn db_sync_version_and_purge() {
    let dir = tempfile::Builder::new()
        .prefix("glint-manage")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    let (ok, out) = manage(&data, &["db", "version"]);
    assert!(ok && out.contains("pending"), "{out}");
    let (ok, out) = manage(&data, &["db", "sync"]);
    assert!(ok && out.contains("migrations applied"), "{out}");
    let (ok, out) = manage(&data, &["db", "version"]);
    assert!(
        ok && out.contains("schema version") && !out.contains("pending"),
        "{out}"
    );
    let (ok, out) = manage(&data, &["db", "sync"]);
    assert!(ok && out.starts_with("0 migrations applied"), "{out}");

    let url = format!("sqlite://{}?mode=rwc", data.join("glint.db").display());
    let bin = binary(env!("CARGO_BIN_EXE_glint"));
    let mut g = Glint::start(&bin, &["--database-url", &url]).unwrap();
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(g.url("/v2/images"))
        .json(
            &json!({"name": "old", "disk_format": "raw", "container_format": "bare",
                      "tags": ["a", "b"], "color": "blue"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .body(random_bytes(10_000))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        c.delete(g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    // its data removed by the data plane's job, the location is history
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.store_files().iter().any(|f| f.contains(&id)) {
        assert!(Instant::now() < deadline, "image data not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    g.stop().unwrap();

    let (ok, out) = manage(
        &data,
        &["db", "purge", "--age-in-days", "0", "--max-rows", "-1"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("image_properties 1")
            && out.contains("image_tags 2")
            && out.contains("image_locations 1"),
        "{out}"
    );
    let (ok, out) = manage(&data, &["db", "purge", "--age_in_days", "0"]);
    assert!(ok && out.contains("image_tags 0"), "{out}");

    // the id stays taken
    let g = Glint::start(&bin, &["--database-url", &url]).unwrap();
    let r = c
        .post(g.url("/v2/images"))
        .json(&json!({"id": id, "name": "again", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().unwrap_or_default());
    assert_eq!(
        c.get(g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap()
            .status(),
        404
    );
}
