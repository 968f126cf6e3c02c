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

/// Glance 33's own definition files (`etc/glance/metadefs/*.json` of the glance 33.0.0
/// package, which the test command downloads: `scripts/glance-metadefs.sh`) load whole; a
/// second load changes nothing; `export` then `load` into a fresh database gives the same
/// files back; the service shows what was loaded; and a directory with one broken file
/// leaves the database untouched, naming the file.
#[test]
#[ignore = "needs Glance's metadef files (GLINT_GLANCE_METADEFS): run through ./scripts/test"]
fn metadefs_load_unload_export() {
    let files = std::env::var("GLINT_GLANCE_METADEFS").expect(
        "GLINT_GLANCE_METADEFS is not set: run ./scripts/test (scripts/glance-metadefs.sh fetches them)",
    );
    let files = Path::new(&files);
    let count = std::fs::read_dir(files).unwrap().count();
    assert!(count >= 30, "{count} files in {}", files.display());
    let dir = tempfile::Builder::new()
        .prefix("glint-md")
        .tempdir_in("/tmp")
        .unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let path = files.to_str().unwrap();
    assert!(manage(&a, &["db", "sync"]).0);
    let (ok, out) = manage(&a, &["metadefs", "load", "--path", path]);
    assert!(ok && out.contains(&format!("{count} created")), "{out}");
    let (ok, out) = manage(&a, &["metadefs", "load", "--path", path]);
    assert!(
        ok && out.contains("0 rows written"),
        "a second load changes nothing: {out}"
    );
    let (ok, out) = manage(
        &a,
        &[
            "metadefs",
            "load",
            "--path",
            path,
            "--merge",
            "--prefer-new",
        ],
    );
    assert!(ok && out.contains(&format!("{count} merged")), "{out}");

    // export, load into a fresh database, export again: the same files
    let (e1, e2) = (dir.path().join("e1"), dir.path().join("e2"));
    assert!(manage(&a, &["metadefs", "export", "--path", e1.to_str().unwrap()]).0);
    assert!(manage(&b, &["db", "sync"]).0);
    let (ok, out) = manage(&b, &["metadefs", "load", "--path", e1.to_str().unwrap()]);
    assert!(ok && out.contains(&format!("{count} created")), "{out}");
    assert!(manage(&b, &["metadefs", "export", "--path", e2.to_str().unwrap()]).0);
    let read = |d: &Path| -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let doc = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), doc)
            })
            .collect();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (first, second) = (read(&e1), read(&e2));
    assert_eq!(first.len(), count);
    assert!(first == second, "export → load → export differs");

    // what the service shows: Glance's own watchdog namespace, as its file says
    let url = format!("sqlite://{}?mode=rwc", a.join("glint.db").display());
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--database-url", &url],
    )
    .unwrap();
    let c = reqwest::blocking::Client::new();
    let listed: Value = c
        .get(g.url("/v2/metadefs/namespaces?limit=100"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["namespaces"].as_array().unwrap().len(), count);
    let shown: Value = c
        .get(g.url("/v2/metadefs/namespaces/OS::Compute::Watchdog?resource_type=OS::Glance::Image"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let file: Value =
        serde_json::from_slice(&std::fs::read(files.join("compute-watchdog.json")).unwrap())
            .unwrap();
    assert_eq!(
        shown["properties"]["hw_watchdog_action"]["enum"],
        file["properties"]["watchdog_action"]["enum"],
        "{shown}"
    );
    assert_eq!(shown["protected"], true);
    drop(g);

    // one broken file among good ones: refused whole, named, nothing written
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["compute-watchdog.json", "compute-vtpm.json"] {
        std::fs::copy(files.join(f), broken.join(f)).unwrap();
    }
    let mut bad: Value =
        serde_json::from_slice(&std::fs::read(files.join("compute-hypervisor.json")).unwrap())
            .unwrap();
    let first_prop = bad["properties"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    bad["properties"][&first_prop]["type"] = json!("no-such-type");
    std::fs::write(broken.join("compute-hypervisor.json"), bad.to_string()).unwrap();
    let fresh = dir.path().join("c");
    assert!(manage(&fresh, &["db", "sync"]).0);
    let (ok, out) = manage(
        &fresh,
        &["metadefs", "load", "--path", broken.to_str().unwrap()],
    );
    assert!(!ok && out.contains("compute-hypervisor.json"), "{out}");
    let (ok, out) = manage(
        &fresh,
        &[
            "metadefs",
            "export",
            "--path",
            dir.path().join("e3").to_str().unwrap(),
        ],
    );
    assert!(
        ok && out.starts_with("0 namespaces"),
        "nothing was written: {out}"
    );

    // unload empties the catalog
    let (ok, out) = manage(&a, &["metadefs", "unload"]);
    assert!(
        ok && out.starts_with(&format!("{count} namespaces removed")),
        "{out}"
    );
    let (ok, out) = manage(
        &a,
        &[
            "metadefs",
            "export",
            "--path",
            dir.path().join("e4").to_str().unwrap(),
        ],
    );
    assert!(ok && out.starts_with("0 namespaces"), "{out}");
}
