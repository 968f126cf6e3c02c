//! Interoperable import (`glance-direct`) through the real `glint serve`: `PUT …/stage` into
//! the staging directory (`uploading`, the size recorded), `POST …/import` (202, a task, the
//! job on the data plane), the image `active` with the file's bytes and hashes, the task
//! `success`, nothing left in staging; Glance's refusals (409 before a stage or on an active
//! image, 400 for a method not enabled, 404 for a stage with `glance-direct` off); a stage
//! refused by inspection or cut short leaves the image `queued` and staging empty; deleting a
//! staged image removes its staged data; kill -9 of the data plane in the middle of an import
//! resumes it after the job's lease runs out. The clients' view is `compat.rs`'s
//! `test_import.py`.

use loadtest::harness::{Glint, binary, md5_hex, random_bytes, sha512_hex};
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

#[path = "support/workload.rs"]
mod workload;

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

fn show(g: &Glint, id: &str) -> Value {
    client()
        .get(g.url(&format!("/v2/images/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn stage(g: &Glint, id: &str, data: Vec<u8>) -> (u16, String) {
    let r = client()
        .put(g.url(&format!("/v2/images/{id}/stage")))
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn import(g: &Glint, id: &str, body: Value) -> (u16, String) {
    let r = client()
        .post(g.url(&format!("/v2/images/{id}/import")))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn glance_direct() -> Value {
    json!({"method": {"name": "glance-direct"}})
}

/// Every file in the staging directory, sorted.
fn staging_files(g: &Glint) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(g.dir().join("data").join("staging"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// What a stage of `id` leaves in staging: the data and the record of its hashes.
fn staged_files(id: &str) -> Vec<String> {
    vec![format!(".{id}.staged"), id.to_owned()]
}

/// Waits until `cond` holds for the image, or fails after `within`.
fn wait_for(
    g: &Glint,
    id: &str,
    within: Duration,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let img = show(g, id);
        if cond(&img) {
            return img;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}: {img}\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tasks_of(g: &Glint, id: &str) -> Vec<Value> {
    let v: Value = client()
        .get(g.url(&format!("/v2/images/{id}/tasks")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["tasks"].as_array().cloned().unwrap_or_default()
}

/// The image is active with `data`'s size, hashes and bytes, its one task succeeded, and
/// nothing is left in staging or on the image.
fn imported(g: &Glint, id: &str, data: &[u8]) {
    // active first, then the task ends and releases the lock (as in Glance)
    let img = wait_for(g, id, Duration::from_secs(60), "import", |i| {
        i["status"] == "active" && i.get("os_glance_import_task").is_none()
    });
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["checksum"], md5_hex(data));
    assert_eq!(img["os_hash_value"], sha512_hex(data));
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
    assert!(img.get("os_glance_stage_host").is_none(), "{img}");
    let got = client()
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got[..] == data[..], "the bytes differ");
    let tasks = tasks_of(g, id);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["status"], "success", "{tasks:?}");
    assert!(
        tasks[0]["type"] == "api_image_import" || tasks[0]["type"] == "import",
        "{tasks:?}"
    );
    let task: Value = client()
        .get(g.url(&format!("/v2/tasks/{}", tasks[0]["id"].as_str().unwrap())))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["result"]["image_id"], id, "{task}");
    assert!(task["expires_at"].is_string(), "{task}");
    assert!(
        staging_files(g).is_empty(),
        "staged data left: {:?}",
        staging_files(g)
    );
}

#[test]
fn glance_direct_stages_and_imports() {
    let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).unwrap();
    let info: Value = client()
        .get(g.url("/v2/info/import"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        info["import-methods"]["value"],
        json!(["glance-direct", "web-download", "copy-image"])
    );
    let r = client()
        .post(g.url("/v2/images"))
        .json(&json!({"name": "imp", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["openstack-image-import-methods"],
        "glance-direct,web-download,copy-image"
    );
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // not staged yet: Glance's 409
    let (status, body) = import(&g, &id, glance_direct());
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("Image needs to be staged before 'glance-direct' method can be used"),
        "{body}"
    );
    // a method that is not enabled is a 400
    let (status, body) = import(&g, &id, json!({"method": {"name": "glance-download"}}));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Unknown import method name 'glance-download'."),
        "{body}"
    );

    let data = random_bytes((5 << 20) + 4321);
    let (status, body) = stage(&g, &id, data.clone());
    assert_eq!(status, 204, "{body}\n{}", g.log());
    let img = show(&g, &id);
    assert_eq!(img["status"], "uploading", "{img}");
    assert_eq!(img["size"], data.len() as u64);
    assert!(img.get("os_glance_stage_host").is_none(), "hidden: {img}");
    assert_eq!(staging_files(&g), staged_files(&id));
    // staged once: another stage is a 409 (the image is no longer queued); a small body, as
    // the refusal comes before the body is read and the connection is closed after it
    assert_eq!(stage(&g, &id, random_bytes(1000)).0, 409);

    let (status, body) = import(&g, &id, glance_direct());
    assert_eq!(status, 202, "{body}\n{}", g.log());
    imported(&g, &id, &data);
    // active now: no second import
    let (status, body) = import(&g, &id, glance_direct());
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("Image with status active cannot be target for import"),
        "{body}"
    );

    // a stage refused by inspection: 400, queued, nothing staged
    let q = workload::create_as(&g, "imp-qcow2", "qcow2", "bare");
    let (status, body) = stage(&g, &q, random_bytes(1 << 20));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("does not match"), "{body}");
    assert_eq!(show(&g, &q)["status"], "queued");
    assert!(staging_files(&g).is_empty(), "{:?}", staging_files(&g));

    // a stage cut short: queued again, nothing staged
    let cut = workload::create(&g, "imp-cut");
    {
        let mut s = std::net::TcpStream::connect(g.public_addr()).unwrap();
        write!(
            s,
            "PUT /v2/images/{cut}/stage HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 4000000\r\n\r\n"
        )
        .unwrap();
        s.write_all(&random_bytes(1 << 20)).unwrap();
        wait_for(&g, &cut, Duration::from_secs(10), "stage running", |i| {
            i["status"] == "uploading"
        });
    }
    wait_for(&g, &cut, Duration::from_secs(20), "stage cut short", |i| {
        i["status"] == "queued"
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !staging_files(&g).is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", staging_files(&g));
        std::thread::sleep(Duration::from_millis(100));
    }

    // staged data that changes after its stage is not imported: the import takes the stage's
    // hashes and checks the blocks against them
    let bad = workload::create(&g, "imp-changed");
    let data = random_bytes((3 << 20) + 17);
    assert_eq!(stage(&g, &bad, data.clone()).0, 204);
    let path = g.dir().join("data").join("staging").join(&bad);
    let mut changed = data.clone();
    changed[(2 << 20) + 5] ^= 0x40;
    std::fs::write(&path, &changed).unwrap();
    let (status, body) = import(&g, &bad, glance_direct());
    assert_eq!(status, 202, "{body}");
    let img = wait_for(&g, &bad, Duration::from_secs(60), "import failed", |i| {
        i["status"] == "queued" && i.get("os_glance_import_task").is_none()
    });
    assert!(img["checksum"].is_null(), "{img}");
    let tasks = tasks_of(&g, &bad);
    assert_eq!(tasks[0]["status"], "failure", "{tasks:?}");
    let message = tasks[0]["message"].as_str().unwrap_or("");
    assert!(message.contains("changed after it was staged"), "{tasks:?}");
    assert!(staging_files(&g).is_empty(), "{:?}", staging_files(&g));

    // a staged image deleted: its staged data goes too
    let del = workload::create(&g, "imp-del");
    assert_eq!(stage(&g, &del, random_bytes(1 << 20)).0, 204);
    assert_eq!(staging_files(&g), staged_files(&del));
    let r = client()
        .delete(g.url(&format!("/v2/images/{del}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !staging_files(&g).is_empty() {
        assert!(
            Instant::now() < deadline,
            "left: {:?}\n{}",
            staging_files(&g),
            g.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn import_methods_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glint.toml");
    std::fs::write(&config, "enabled_import_methods = []\n").unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let info: Value = client()
        .get(g.url("/v2/info/import"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["import-methods"]["value"], json!([]));
    let r = client()
        .post(g.url("/v2/images"))
        .json(&json!({"name": "off", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap();
    assert!(r.headers().get("openstack-image-import-methods").is_none());
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = stage(&g, &id, random_bytes(1000));
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("'glance-direct' method is not available at this site."),
        "{body}"
    );
    assert_eq!(show(&g, &id)["status"], "queued");
    let (status, _) = import(&g, &id, glance_direct());
    assert_eq!(status, 400);
}

/// Stages 384 MiB, asks for the import, and kill -9s `plane` once the copy into the store is
/// under way: the supervisor restarts it, the job's (2 s) lease runs out, and the import goes
/// on to the end, with nothing left beside the image's file.
fn crash_mid_copy(plane: &str) -> Glint {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glint.toml");
    std::fs::write(&config, "[dataplane]\njob_lease_seconds = 2\n").unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let id = workload::create(&g, "imp-crash");
    let data = random_bytes(384 << 20);
    assert_eq!(stage(&g, &id, data.clone()).0, 204);
    let pid = g.plane_pid(plane).expect("plane pid");
    assert_eq!(import(&g, &id, glance_direct()).0, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !g.store_files().iter().any(|f| f.contains(&id)) {
        assert!(
            Instant::now() < deadline,
            "the copy never started\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Glint::kill(pid, rustix::process::Signal::KILL);
    // the public listener is the data plane's: once the killed process is gone, wait for the
    // restarted one (a request in between is reset)
    let gone = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(5));
    }
    g.wait_public(Duration::from_secs(30)).unwrap();
    imported(&g, &id, &data);
    assert!(
        g.store_files().iter().all(|f| f == &id),
        "only the image's file is in the store: {:?}",
        g.store_files()
    );
    g
}

#[test]
fn an_import_survives_a_data_plane_crash() {
    crash_mid_copy("dataplane");
}

#[test]
fn an_import_survives_a_control_plane_crash() {
    let g = crash_mid_copy("controlplane");
    // the crash cut the copy: nothing was settled without the control plane
    assert!(
        g.log()
            .contains("import interrupted: the control plane is unreachable"),
        "the crash did not cut the copy:\n{}",
        g.log()
    );
}

fn web_download(uri: &str) -> Value {
    json!({"method": {"name": "web-download", "uri": uri}})
}

/// Waits for the image's one import task to end; the task.
fn task_ended(g: &Glint, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = tasks_of(g, id);
        if let Some(t) = tasks.first()
            && (t["status"] == "success" || t["status"] == "failure")
        {
            return t.clone();
        }
        assert!(Instant::now() < deadline, "no end: {tasks:?}\n{}", g.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An import that must fail: the task `failure` naming `why`, the image `queued` again with
/// nothing staged or stored.
fn import_failed(g: &Glint, id: &str, why: &str) {
    let t = task_ended(g, id);
    assert_eq!(t["status"], "failure", "{t}");
    assert!(
        t["message"].as_str().unwrap_or("").contains(why),
        "{why:?} not in {t}"
    );
    let img = wait_for(g, id, Duration::from_secs(20), "back to queued", |i| {
        i["status"] == "queued" && i.get("os_glance_import_task").is_none()
    });
    assert_eq!(img["size"], Value::Null, "{img}");
    assert!(staging_files(g).is_empty(), "{:?}", staging_files(g));
    assert!(
        !g.store_files().iter().any(|f| f.contains(id)),
        "{:?}",
        g.store_files()
    );
}

#[test]
fn web_download_fetches_only_what_the_filters_allow() {
    let data = random_bytes((3 << 20) + 77);
    let allowed = workload::source_server("127.0.0.2", data.clone());
    let denied = workload::source_server("127.0.0.1", data.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glint.toml");
    // the test servers listen on loopback ports: any port, and only 127.0.0.2 allowed
    std::fs::write(
        &config,
        "enabled_import_methods = [\"glance-direct\", \"web-download\"]\n\
         [import_filtering_opts]\nallowed_ports = []\nallowed_networks = [\"127.0.0.2/32\"]\n",
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let info: Value = client()
        .get(g.url("/v2/info/import"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        info["import-methods"]["value"],
        json!(["glance-direct", "web-download"])
    );

    // an allowed source: active with its bytes and hashes
    let id = workload::create(&g, "web");
    let (status, body) = import(&g, &id, web_download(&format!("{allowed}/image")));
    assert_eq!(status, 202, "{body}");
    imported(&g, &id, &data);

    // Glance's checks when asked: 400, nothing started
    let id = workload::create(&g, "web-refused");
    for uri in [
        "file:///etc/passwd",
        "ftp://example.com/x.img",
        "gopher://h/",
    ] {
        let (status, body) = import(&g, &id, web_download(uri));
        assert_eq!(status, 400, "{uri}: {body}");
        assert!(
            body.contains(&format!(
                "URI for web-download does not pass filtering: {uri}"
            )),
            "{body}"
        );
    }
    let (status, body) = import(&g, &id, json!({"method": {"name": "web-download"}}));
    assert_eq!(status, 400, "{body}");
    assert!(tasks_of(&g, &id).is_empty());
    assert_eq!(show(&g, &id)["status"], "queued");

    // beyond Glance: the addresses, checked by the data plane before it connects
    let id = workload::create(&g, "web-loopback");
    assert_eq!(
        import(&g, &id, web_download(&format!("{denied}/image"))).0,
        202
    );
    import_failed(&g, &id, "forbidden address");
    let id = workload::create(&g, "web-metadata");
    let metadata = "http://169.254.169.254/latest/meta-data/";
    assert_eq!(import(&g, &id, web_download(metadata)).0, 202);
    import_failed(&g, &id, "169.254.169.254, a forbidden address");
    let id = workload::create(&g, "web-localhost");
    let port = denied.rsplit(':').next().unwrap();
    let by_name = format!("http://localhost:{port}/image");
    assert_eq!(import(&g, &id, web_download(&by_name)).0, 202);
    import_failed(&g, &id, "forbidden address");
    // an allowed source that redirects to a forbidden one
    let id = workload::create(&g, "web-redirect");
    let hop = format!("{allowed}/to/{denied}/image");
    assert_eq!(import(&g, &id, web_download(&hop)).0, 202);
    import_failed(&g, &id, "forbidden address");
    // a redirect to an allowed one is followed
    let id = workload::create(&g, "web-redirect-ok");
    let hop = format!("{allowed}/to/{allowed}/image");
    assert_eq!(import(&g, &id, web_download(&hop)).0, 202);
    imported(&g, &id, &data);
    // a source that answers 404
    let id = workload::create(&g, "web-404");
    assert_eq!(
        import(&g, &id, web_download(&format!("{allowed}/nothing"))).0,
        202
    );
    import_failed(&g, &id, "HTTP 404");

    // the content is inspected: random bytes are not the qcow2 the image claims
    let id = workload::create_as(&g, "web-qcow2", "qcow2", "bare");
    assert_eq!(
        import(&g, &id, web_download(&format!("{allowed}/image"))).0,
        202
    );
    import_failed(&g, &id, "does not match");
}

/// Runs `python3 -c <script> <args>` (to make gzip and zip files as a user would).
fn python(script: &str, args: &[&str]) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plugins_decompress_and_inject_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("glint.toml");
    std::fs::write(
        &config,
        "[image_import_opts]\nimage_import_plugins = [\"image_decompression\", \"inject_image_metadata\"]\n\
         [inject_metadata_properties]\nignore_user_roles = [\"admin\"]\ninject = { injected = \"yes\", site = \"lab\" }\n",
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let data = random_bytes((2 << 20) + 99);
    let raw = d.join("image.raw");
    std::fs::write(&raw, &data).unwrap();
    let raw_s = raw.to_str().unwrap();
    let gz = d.join("image.raw.gz");
    python(
        "import gzip,shutil,sys; shutil.copyfileobj(open(sys.argv[1],'rb'), gzip.open(sys.argv[2],'wb'))",
        &[raw_s, gz.to_str().unwrap()],
    );
    let one = d.join("one.zip");
    let two = d.join("two.zip");
    python(
        "import zipfile,sys; z=zipfile.ZipFile(sys.argv[2],'w',zipfile.ZIP_DEFLATED); z.write(sys.argv[1],'image.raw'); z.close()",
        &[raw_s, one.to_str().unwrap()],
    );
    python(
        "import zipfile,sys; z=zipfile.ZipFile(sys.argv[2],'w',zipfile.ZIP_DEFLATED); z.write(sys.argv[1],'a'); z.write(sys.argv[1],'b'); z.close()",
        &[raw_s, two.to_str().unwrap()],
    );
    // a member of project p1 (admins get nothing injected)
    let member = |r: reqwest::blocking::RequestBuilder| {
        r.header("X-Project-Id", "p1")
            .header("X-User-Id", "u1")
            .header("X-Roles", "member")
    };
    let made = |container: &str| -> String {
        let r = member(client().post(g.url("/v2/images")))
            .json(&json!({"name": "plug", "disk_format": "raw", "container_format": container}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let staged_and_imported = |id: &str, file: &std::path::Path, as_member: bool| {
        let r = member(client().put(g.url(&format!("/v2/images/{id}/stage"))))
            .header("Content-Type", "application/octet-stream")
            .body(std::fs::read(file).unwrap())
            .send()
            .unwrap();
        assert_eq!(r.status(), 204, "{}", g.log());
        let mut req = client()
            .post(g.url(&format!("/v2/images/{id}/import")))
            .json(&glance_direct());
        if as_member {
            req = member(req);
        }
        assert_eq!(req.send().unwrap().status(), 202);
    };

    // gzip and a one-file zip are decompressed; the properties are injected
    for file in [&gz, &one] {
        let id = made("bare");
        staged_and_imported(&id, file, true);
        imported(&g, &id, &data);
        let img = show(&g, &id);
        assert_eq!(
            (img["injected"].as_str(), img["site"].as_str()),
            (Some("yes"), Some("lab")),
            "{img}"
        );
    }
    // a gzip of a qcow2 stages (its content is judged once decompressed) and is inspected as
    // it goes into the store
    let qcow2 = d.join("disk.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            qcow2.to_str().unwrap(),
            "64M",
        ])
        .output()
        .expect("qemu-img not found: install Debian's qemu-utils");
    assert!(out.status.success());
    let qcow2_gz = d.join("disk.qcow2.gz");
    python(
        "import gzip,shutil,sys; shutil.copyfileobj(open(sys.argv[1],'rb'), gzip.open(sys.argv[2],'wb'))",
        &[qcow2.to_str().unwrap(), qcow2_gz.to_str().unwrap()],
    );
    let r = member(client().post(g.url("/v2/images")))
        .json(&json!({"name": "plug-qcow2", "disk_format": "qcow2", "container_format": "bare"}))
        .send()
        .unwrap();
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    staged_and_imported(&id, &qcow2_gz, true);
    imported(&g, &id, &std::fs::read(&qcow2).unwrap());
    assert_eq!(show(&g, &id)["virtual_size"], 64 << 20);
    // a zip of two files is refused: the import fails, the image is queued again
    let id = made("bare");
    staged_and_imported(&id, &two, true);
    import_failed(&g, &id, "Archive contains more than one file.");
    // a `compressed` container is kept as it is; an admin's import gets nothing injected
    let id = made("compressed");
    staged_and_imported(&id, &gz, false);
    imported(&g, &id, &std::fs::read(&gz).unwrap());
    assert!(show(&g, &id).get("injected").is_none());
}

fn qemu_img(args: &[&str]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img not found: install Debian's qemu-utils");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_conversion_plugin_inspects_then_converts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("glint.toml");
    std::fs::write(
        &config,
        "[image_import_opts]\nimage_import_plugins = [\"image_conversion\"]\n[image_conversion]\noutput_format = \"raw\"\n",
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    // a qcow2 with some data written into it, and what qemu-img makes of it as raw
    let raw_src = d.join("src.raw");
    let mut content = vec![0u8; 24 << 20];
    content[..3 << 20].copy_from_slice(&random_bytes(3 << 20));
    std::fs::write(&raw_src, &content).unwrap();
    let qcow2 = d.join("disk.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw_src.to_str().unwrap(),
        qcow2.to_str().unwrap(),
    ]);
    let stage_file = |id: &str, file: &std::path::Path| {
        assert_eq!(
            stage(&g, id, std::fs::read(file).unwrap()).0,
            204,
            "{}",
            g.log()
        );
        assert_eq!(import(&g, id, glance_direct()).0, 202);
    };

    let id = workload::create_as(&g, "conv", "qcow2", "bare");
    stage_file(&id, &qcow2);
    imported(&g, &id, &content);
    let img = show(&g, &id);
    assert_eq!(
        (img["disk_format"].as_str(), img["virtual_size"].as_u64()),
        (Some("raw"), Some(24 << 20)),
        "{img}"
    );

    // already raw: stored as it is
    let id = workload::create_as(&g, "conv-raw", "raw", "bare");
    stage_file(&id, &raw_src);
    imported(&g, &id, &content);

    // a qcow2 claimed to be raw passes the stage (raw takes any content) but is never given
    // to qemu-img: the inspection before the conversion refuses it
    let id = workload::create_as(&g, "conv-liar", "raw", "bare");
    stage_file(&id, &qcow2);
    import_failed(&g, &id, "Image format mismatch");
    assert_eq!(show(&g, &id)["disk_format"], "raw");
}

#[test]
fn the_legacy_import_task_makes_and_imports_an_image() {
    let data = random_bytes((1 << 20) + 11);
    let allowed = workload::source_server("127.0.0.2", data.clone());
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
    .unwrap();
    let post = |body: Value| -> (u16, Value) {
        let r = client()
            .post(g.url("/v2/tasks"))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    };
    let get = |id: &str| -> Value {
        client()
            .get(g.url(&format!("/v2/tasks/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let ended = |id: &str| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = get(id);
            if t["status"] == "success" || t["status"] == "failure" {
                return t;
            }
            assert!(Instant::now() < deadline, "{t}\n{}", g.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let (status, t) = post(json!({"type": "import", "input": {
        "import_from": format!("{allowed}/image"),
        "import_from_format": "raw",
        "image_properties": {"name": "legacy", "container_format": "bare", "os_distro": "debian"},
    }}));
    assert_eq!(status, 201, "{t}");
    assert_eq!(
        (t["type"].as_str(), t["status"].as_str()),
        (Some("import"), Some("pending")),
        "{t}"
    );
    let t = ended(t["id"].as_str().unwrap());
    assert_eq!(t["status"], "success", "{t}\n{}", g.log());
    let id = t["result"]["image_id"].as_str().unwrap().to_owned();
    imported(&g, &id, &data);
    let img = show(&g, &id);
    assert_eq!(
        (
            img["name"].as_str(),
            img["os_distro"].as_str(),
            img["disk_format"].as_str()
        ),
        (Some("legacy"), Some("debian"), Some("raw"))
    );

    // Glance's refusals when asked
    for (input, why) in [
        (
            json!({"import_from": "file:///etc/passwd", "import_from_format": "raw", "image_properties": {}}),
            "File based imports are not allowed.",
        ),
        (
            json!({"import_from": "ftp://example.com/x", "import_from_format": "raw", "image_properties": {}}),
            "The given uri is not valid.",
        ),
    ] {
        let (status, body) = post(json!({"type": "import", "input": input}));
        assert_eq!(status, 400, "{body}");
        assert!(body.to_string().contains(why), "{why:?} not in {body}");
    }
    let (status, body) = post(json!({"type": "import"}));
    assert_eq!(status, 400);
    assert!(
        body.to_string().contains("Task 'input' is required"),
        "{body}"
    );
    // what the flow checks fails the task
    let (status, t) = post(json!({"type": "import", "input": {
        "import_from": format!("{allowed}/image"), "import_from_format": "raw"}}));
    assert_eq!(status, 201);
    let t = ended(t["id"].as_str().unwrap());
    assert_eq!(t["status"], "failure");
    assert_eq!(
        t["message"],
        "Input does not contain 'image_properties' field"
    );
}
