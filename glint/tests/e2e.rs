//! End-to-end tests: the real `glint serve` (both planes as processes) on port 0, driven over
//! real sockets. Each test asserts what a user would check: statuses, bytes, hashes.

use loadtest::harness::{
    Glint, binary, md5_hex, parse_status, random_bytes, raw_request, sha512_hex,
};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn start() -> Glint {
    Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &[]).expect("glint starts")
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn create(g: &Glint, c: &Client, body: Value) -> Value {
    let r = c.post(g.url("/v2/images")).json(&body).send().unwrap();
    assert_eq!(r.status(), 201, "create: {}", r.text().unwrap_or_default());
    r.json().unwrap()
}

fn create_raw_image(g: &Glint, c: &Client) -> String {
    let img = create(
        g,
        c,
        json!({"name": "t", "disk_format": "raw", "container_format": "bare"}),
    );
    img["id"].as_str().unwrap().to_owned()
}

fn show(g: &Glint, c: &Client, id: &str) -> Value {
    let r = c.get(g.url(&format!("/v2/images/{id}"))).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn upload(g: &Glint, c: &Client, id: &str, data: Vec<u8>) -> reqwest::StatusCode {
    c.put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .unwrap()
        .status()
}

fn wait_status(g: &Glint, c: &Client, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let img = show(g, c, id);
        if img["status"] == want {
            return img;
        }
        assert!(
            Instant::now() < deadline,
            "image {id} stayed {} (wanted {want})\n{}",
            img["status"],
            g.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn upload_and_download_round_trip_with_hashes_and_ranges() {
    let g = start();
    let c = client();
    let id = create_raw_image(&g, &c);
    assert_eq!(show(&g, &c, &id)["status"], "queued");
    let data = random_bytes(8 * 1024 * 1024 + 123);
    assert_eq!(upload(&g, &c, &id, data.clone()), 204);

    let img = show(&g, &c, &id);
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512_hex(&data));

    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["content-md5"], md5_hex(&data).as_str());
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert!(
        r.headers()["x-openstack-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req-")
    );
    let body = r.bytes().unwrap();
    assert!(body[..] == data[..], "downloaded bytes differ");

    let n = data.len() as u64;
    for (range, start, end) in [
        ("bytes=0-99".to_string(), 0, 99),
        ("bytes=-100".to_string(), n - 100, n - 1),
        (format!("bytes={}-", n - 5000), n - 5000, n - 1),
        ("bytes=1000-1000".to_string(), 1000, 1000),
    ] {
        let r = c
            .get(g.url(&format!("/v2/images/{id}/file")))
            .header("Range", &range)
            .send()
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {start}-{end}/{n}").as_str()
        );
        let body = r.bytes().unwrap();
        assert!(
            body[..] == data[start as usize..=end as usize],
            "{range}: wrong bytes"
        );
    }
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .header("Range", format!("bytes={n}-"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{n}").as_str()
    );
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .header("Range", "bytes=0-1,5-6")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // a second upload into an active image is a conflict and changes nothing
    assert_eq!(upload(&g, &c, &id, b"other".to_vec()), 409);
    assert_eq!(show(&g, &c, &id)["checksum"], md5_hex(&data));

    // delete removes the data from the store
    assert_eq!(
        c.delete(g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(g.url(&format!("/v2/images/{id}/file")))
            .send()
            .unwrap()
            .status(),
        404
    );
    // the data plane deletes the data (a job the control plane recorded with the delete)
    let deadline = Instant::now() + Duration::from_secs(15);
    while !g.store_files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        g.store_files().is_empty(),
        "store still holds {:?}",
        g.store_files()
    );
}

#[test]
fn chunked_upload_and_declared_size() {
    let g = start();
    let c = client();
    let data = random_bytes(3 * 1024 * 1024 + 7);

    // chunked, size unknown
    let id = create_raw_image(&g, &c);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(data.clone()));
    let _ = chunks;
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let img = show(&g, &c, &id);
    assert_eq!(
        (img["status"].as_str(), img["size"].as_u64()),
        (Some("active"), Some(data.len() as u64))
    );
    assert_eq!(img["os_hash_value"], sha512_hex(&data));

    // chunked with a matching x-openstack-image-size
    let id = create_raw_image(&g, &c);
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(data.clone()));
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", data.len().to_string())
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(show(&g, &c, &id)["checksum"], md5_hex(&data));

    // chunked body shorter than the declared size: 400, image back to queued, no data kept
    let id = create_raw_image(&g, &c);
    let before = g.store_files().len();
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(data.clone()));
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", (data.len() + 1).to_string())
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let img = show(&g, &c, &id);
    assert_eq!(img["status"], "queued");
    assert!(img["size"].is_null() && img["checksum"].is_null());
    assert_eq!(
        g.store_files().len(),
        before,
        "partial data left: {:?}",
        g.store_files()
    );

    // sized body that disagrees with x-openstack-image-size: 400 before anything is stored
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .header("x-openstack-image-size", "5")
        .body(vec![1u8; 6])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(show(&g, &c, &id)["status"], "queued");
}

#[test]
fn upload_preconditions() {
    let g = start();
    let c = client();
    let id = create_raw_image(&g, &c);
    // wrong media type
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(show(&g, &c, &id)["status"], "queued");
    // no formats yet
    let bare = create(&g, &c, json!({"name": "noformats"}));
    let bare_id = bare["id"].as_str().unwrap();
    assert_eq!(upload(&g, &c, bare_id, b"abc".to_vec()), 400);
    assert_eq!(show(&g, &c, bare_id)["status"], "queued");
    // unknown image and bad ids
    assert_eq!(
        upload(
            &g,
            &c,
            "0b3a8c7e-1234-4321-abcd-0123456789ab",
            b"abc".to_vec()
        ),
        404
    );
    assert_eq!(
        upload(&g, &c, "..%2F..%2Fetc%2Fpasswd", b"abc".to_vec()),
        404
    );
    // a queued image has no data: 204
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    // zero-byte image becomes active and downloads as empty
    assert_eq!(upload(&g, &c, &id, Vec::new()), 204);
    let img = show(&g, &c, &id);
    assert_eq!(
        (img["status"].as_str(), img["size"].as_u64()),
        (Some("active"), Some(0))
    );
    assert_eq!(img["checksum"], "d41d8cd98f00b204e9800998ecf8427e");
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), 0);
    assert!(g.store_files().iter().all(|f| !f.ends_with(".tmp")));
}

#[test]
fn interrupted_upload_leaves_image_queued_and_no_data() {
    let g = start();
    let c = client();
    let id = create_raw_image(&g, &c);
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&g.public).unwrap();
        let head = format!(
            "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            64 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = random_bytes(1024 * 1024);
        for _ in 0..4 {
            s.write_all(&chunk).unwrap();
        }
        // the image is saving while the body streams
        wait_status(&g, &c, &id, "saving");
        // the client dies mid-upload
    }
    wait_status(&g, &c, &id, "queued");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !g.store_files().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        g.store_files().is_empty(),
        "store holds {:?}",
        g.store_files()
    );
    // and a new upload works
    let data = random_bytes(100_000);
    assert_eq!(upload(&g, &c, &id, data.clone()), 204);
    assert_eq!(show(&g, &c, &id)["checksum"], md5_hex(&data));
}

#[test]
fn a_plane_crash_is_survived() {
    let g = start();
    let c = client();
    let id = create_raw_image(&g, &c);
    let data = random_bytes(1_000_000);
    assert_eq!(upload(&g, &c, &id, data.clone()), 204);

    // kill the control plane: the supervisor restarts it, metadata survives
    let cp = g.plane_pid("controlplane").expect("control plane pid");
    Glint::kill(cp, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.plane_pid("controlplane").is_none_or(|p| p == cp) {
        assert!(
            Instant::now() < deadline,
            "control plane not restarted\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    g.wait_public(Duration::from_secs(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c
            .get(g.url(&format!("/v2/images/{id}/file")))
            .send()
            .unwrap();
        if r.status() == 200 {
            assert!(r.bytes().unwrap()[..] == data[..]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "download after control-plane restart: {}",
            r.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // kill the data plane mid-upload: the image goes back to queued, no partial data stays
    let id2 = create_raw_image(&g, &c);
    let mut s = std::net::TcpStream::connect(&g.public).unwrap();
    {
        use std::io::Write;
        let head = format!(
            "PUT /v2/images/{id2}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            32 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&random_bytes(2 * 1024 * 1024)).unwrap();
    }
    wait_status(&g, &c, &id2, "saving");
    let dp = g.plane_pid("dataplane").expect("data plane pid");
    Glint::kill(dp, rustix::process::Signal::KILL);
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.plane_pid("dataplane").is_none_or(|p| p == dp) {
        assert!(
            Instant::now() < deadline,
            "data plane not restarted\n{}",
            g.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    g.wait_public(Duration::from_secs(30)).unwrap();
    wait_status(&g, &c, &id2, "queued");
    let files = g.store_files();
    assert_eq!(
        files,
        vec![id.clone()],
        "store should hold only the first image"
    );
    // the first image is still served, by the new data plane
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap();
    assert!(r.bytes().unwrap()[..] == data[..]);
}

#[test]
fn metadata_api_through_the_data_plane() {
    let g = start();
    let c = client();
    // versions
    let r = c.get(g.url("/")).send().unwrap();
    assert_eq!(r.status(), 300);
    let v: Value = r.json().unwrap();
    let ids: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"v2.15") && ids.contains(&"v2.0"), "{ids:?}");
    assert!(
        ids.contains(&"v2.17"),
        "the location API is served: {ids:?}"
    );
    assert_eq!(c.get(g.url("/versions")).send().unwrap().status(), 200);

    // create with a client-supplied id and custom property, list, patch, tags
    let id = "5a1e3a9c-0000-4000-8000-000000000001";
    let img = create(
        &g,
        &c,
        json!({"id": id, "name": "cirros", "disk_format": "qcow2", "container_format": "bare", "hw_disk_bus": "virtio"}),
    );
    assert_eq!(img["visibility"], "shared");
    assert_eq!(img["hw_disk_bus"], "virtio");
    assert_eq!(img["self"], format!("/v2/images/{id}"));
    for key in ["checksum", "os_hash_value", "size", "virtual_size", "owner"] {
        assert!(
            img.get(key).is_some_and(Value::is_null),
            "{key} should be present and null"
        );
    }
    let r = c
        .post(g.url("/v2/images"))
        .json(&json!({"id": id}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .post(g.url("/v2/images"))
        .json(&json!({"status": "active"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(g.url("/v2/images"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    let list: Value = c
        .get(g.url("/v2/images?name=cirros"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["images"].as_array().unwrap().len(), 1);

    let r = c
        .patch(g.url(&format!("/v2/images/{id}")))
        .header("Content-Type", "application/openstack-images-v2.1-json-patch")
        .body(r#"[{"op":"replace","path":"/name","value":"renamed"},{"op":"add","path":"/os_distro","value":"cirros"}]"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let img: Value = r.json().unwrap();
    assert_eq!(
        (img["name"].as_str(), img["os_distro"].as_str()),
        (Some("renamed"), Some("cirros"))
    );
    let r = c
        .patch(g.url(&format!("/v2/images/{id}")))
        .header("Content-Type", "application/json")
        .body("[]")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.headers().get("accept-patch").is_some());

    assert_eq!(
        c.put(g.url(&format!("/v2/images/{id}/tags/fast")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(show(&g, &c, id)["tags"], json!(["fast"]));
    assert_eq!(
        c.delete(g.url(&format!("/v2/images/{id}/tags/fast")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(g.url(&format!("/v2/images/{id}/tags/fast")))
            .send()
            .unwrap()
            .status(),
        404
    );

    // errors
    assert_eq!(
        c.get(g.url("/v2/images/not-a-uuid"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(g.url("/v2/nothing-here")).send().unwrap().status(),
        404
    );
    assert_eq!(c.put(g.url("/v2/images")).send().unwrap().status(), 405);
    let big = json!({"name": "x".repeat(200_000)});
    assert_eq!(
        c.post(g.url("/v2/images"))
            .json(&big)
            .send()
            .unwrap()
            .status(),
        413
    );

    // schemas
    let s: Value = c
        .get(g.url("/v2/schemas/image"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(s["name"], "image");
    let s: Value = c
        .get(g.url("/v2/schemas/images"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(s["name"], "images");

    // every response carries a request id, and a client-sent one is echoed
    let r = c
        .get(g.url("/v2/images"))
        .header("x-openstack-request-id", "req-abc")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-openstack-request-id"], "req-abc");

    // protected images cannot be deleted
    let r = c
        .patch(g.url(&format!("/v2/images/{id}")))
        .header(
            "Content-Type",
            "application/openstack-images-v2.1-json-patch",
        )
        .body(r#"[{"op":"replace","path":"/protected","value":true}]"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.delete(g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap()
            .status(),
        403
    );

    // admin listener
    assert_eq!(c.get(g.admin_url("/healthz")).send().unwrap().status(), 200);
    assert_eq!(c.get(g.admin_url("/readyz")).send().unwrap().status(), 200);
    let metrics = c
        .get(g.admin_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("glint_api_requests_total"), "{metrics}");
}

#[test]
fn hostile_http_gets_clean_errors() {
    let g = start();
    let t = Duration::from_secs(10);
    let status = |req: &[u8]| parse_status(&raw_request(&g.public, req, t).unwrap());
    // oversized head
    let big = format!(
        "GET /versions HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(status(big.as_bytes()), Some(431));
    // oversized request line
    let long_line = format!(
        "GET /v2/images?name={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "n".repeat(20_000)
    );
    assert_eq!(status(long_line.as_bytes()), Some(431));
    // too many headers
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        status(format!("GET /versions HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes()),
        Some(431)
    );
    // smuggling shapes
    assert_eq!(
        status(b"POST /v2/images HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        Some(400)
    );
    assert_eq!(status(b"POST /v2/images HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n{}{}"), Some(400));
    // garbage
    assert_eq!(
        status(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n"),
        Some(400)
    );
    // invalid chunk framing on an upload leaves the image queued
    let c = client();
    let id = create_raw_image(&g, &c);
    let req = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    );
    assert_eq!(status(req.as_bytes()), Some(400));
    assert_eq!(show(&g, &c, &id)["status"], "queued");
    assert!(g.store_files().is_empty());
    // keep-alive: several requests on one connection
    let two = b"GET /versions HTTP/1.1\r\nHost: x\r\n\r\nGET /versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let resp = raw_request(&g.public, two, t).unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
}

#[test]
fn check_config_prints_effective_config_and_sigterm_stops_cleanly() {
    let out = std::process::Command::new(binary(env!("CARGO_BIN_EXE_glint")))
        .args(["serve", "--check-config", "--bind-port", "1234"])
        .env("GLINT_DATA_DIR", "/srv/glint")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("port = 1234") && text.contains("data_dir = \"/srv/glint\""),
        "{text}"
    );
    let bad = std::process::Command::new(binary(env!("CARGO_BIN_EXE_glint")))
        .args(["serve", "--check-config"])
        .env("GLINT_BIND_PORT", "http")
        .env("GLINT_HASHING_ALGORITHM", "crc")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(
        err.contains("GLINT_BIND_PORT") && err.contains("GLINT_HASHING_ALGORITHM"),
        "{err}"
    );

    let mut g = start();
    let cp = g.plane_pid("controlplane").unwrap();
    let dp = g.plane_pid("dataplane").unwrap();
    let status = g.stop().unwrap();
    assert!(status.success(), "{status}");
    for pid in [cp, dp] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "plane {pid} still running"
        );
    }
}

#[test]
fn data_plane_runs_on_io_uring() {
    let g = start();
    let log = g.log();
    assert!(
        log.contains("driver=\"io_uring\"") || log.contains("driver=io_uring"),
        "{log}"
    );
    // From Linux 6.1 the rings defer completion work to the worker's waits.
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if (major, minor) >= (6, 1) {
        assert!(log.contains("defer_taskrun=true"), "{log}");
    } else {
        eprintln!("SKIPPED: kernel {release} predates IORING_SETUP_DEFER_TASKRUN (6.1)");
    }
}

#[test]
fn connection_limit_answers_503_instead_of_queueing_forever() {
    let dir = tempfile_dir();
    let cfg = dir.join("glint.toml");
    std::fs::write(&cfg, "[dataplane]\nmax_connections = 2\n").unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--workers", "1", "-c", cfg.to_str().unwrap()],
    )
    .expect("glint starts");
    let c = client();
    let active = || -> u64 {
        let m = c
            .get(g.admin_url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        m.lines()
            .find_map(|l| l.strip_prefix("glint_dp_connections_active "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while active() != 0 {
        assert!(
            Instant::now() < deadline,
            "connections from start-up never closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = std::net::TcpStream::connect(&g.public).unwrap();
    let b = std::net::TcpStream::connect(&g.public).unwrap();
    while active() != 2 {
        assert!(Instant::now() < deadline, "idle connections not accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let req = "GET /versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let over =
        parse_status(&raw_request(&g.public, req.as_bytes(), Duration::from_secs(5)).unwrap());
    assert_eq!(over, Some(503));
    drop(a);
    drop(b);
    while active() != 0 {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = parse_status(&raw_request(&g.public, req.as_bytes(), Duration::from_secs(5)).unwrap());
    assert_eq!(ok, Some(200));
    let m = c
        .get(g.admin_url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(m.contains("glint_dp_connections_rejected_total 1"), "{m}");
    std::fs::remove_dir_all(dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "glint-e2e-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

#[test]
fn slow_clients_are_timed_out_and_uploads_rolled_back() {
    let dir = tempfile_dir();
    let cfg = dir.join("glint.toml");
    std::fs::write(
        &cfg,
        "[dataplane]\nheader_timeout_seconds = 1\nidle_timeout_seconds = 1\n",
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["-c", cfg.to_str().unwrap()],
    )
    .expect("glint starts");
    let c = client();
    use std::io::{Read, Write};

    // a head that never completes: 408 after the header timeout, then close
    let mut s = std::net::TcpStream::connect(&g.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /versions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    assert_eq!(
        parse_status(&resp),
        Some(408),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // an upload whose body stalls: the connection is dropped and the image goes back to queued
    let id = create_raw_image(&g, &c);
    let mut s = std::net::TcpStream::connect(&g.public).unwrap();
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&random_bytes(10_000)).unwrap();
    wait_status(&g, &c, &id, "saving");
    wait_status(&g, &c, &id, "queued");
    assert!(g.store_files().is_empty(), "{:?}", g.store_files());
    drop(s);
    std::fs::remove_dir_all(dir).ok();
}

/// One `glint serve` per data directory: a second one on the same directory stops at once
/// with a clear error, before it touches the first one's sockets, address file or database.
#[test]
fn a_second_serve_on_the_same_data_dir_is_refused() {
    let g = start();
    let c = client();
    let id = create_raw_image(&g, &c);
    let addresses = std::fs::read_to_string(g.dir().join("data/run/addresses.json")).unwrap();
    let out = std::process::Command::new(binary(env!("CARGO_BIN_EXE_glint")))
        .args([
            "serve",
            "--bind-port",
            "0",
            "--admin-port",
            "0",
            "--data-dir",
        ])
        .arg(g.dir().join("data"))
        .env("GLINT_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another glint serve is running"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(g.dir().join("data/run/addresses.json")).unwrap(),
        addresses
    );
    // the first one serves on, unharmed
    assert_eq!(show(&g, &c, &id)["id"], id.as_str());
}

/// A metadata body the control plane refuses before reading it all (413) leaves the rest in
/// the client's socket: the answer must close the connection, or a request sent after it on
/// the same connection must still be understood — never be parsed out of the leftover body.
#[test]
fn a_refused_body_never_poisons_the_connection() {
    use std::io::{Read, Write};
    let g = start();
    for size in [100_000usize, 2_000_000] {
        let body = format!("{{\"name\": \"{}\"}}", "x".repeat(size));
        let mut s = std::net::TcpStream::connect(&g.public).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "POST /v2/images HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // glint may stop reading once it has answered: a failed write is fine
        let _ = s.write_all(body.as_bytes());
        let mut resp = Vec::new();
        let mut buf = [0u8; 65536];
        let head_end = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed without an answer");
            resp.extend_from_slice(&buf[..n]);
            if let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
        };
        assert_eq!(parse_status(&resp), Some(413), "{size}");
        let head = String::from_utf8_lossy(&resp[..head_end]).to_ascii_lowercase();
        if head.contains("connection: close") {
            continue;
        }
        // kept alive: then the whole body was taken, and the next request is answered
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap();
        while resp.len() < head_end + 4 + len {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            resp.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"GET /versions HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(
            parse_status(&buf[..n]),
            Some(200),
            "{size}: next request on the connection"
        );
    }
}

/// A request's id, the client's or the one the data plane makes, is on the control plane's
/// log lines for that request: the API request it forwarded, and every channel request made
/// for a transfer (authorization, leftovers, commit).
#[test]
fn request_ids_reach_the_control_planes_log_lines() {
    let g = Glint::start_with_env(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &[],
        &[("GLINT_LOG", "info,controlplane=debug")],
    )
    .unwrap();
    let c = reqwest::blocking::Client::new();
    let r = c
        .post(g.url("/v2/images"))
        .header("X-Openstack-Request-Id", "trace-create")
        .json(&serde_json::json!({"name": "t", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap();
    let id = r.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("X-Openstack-Request-Id", "trace-upload")
        .header("Content-Type", "application/octet-stream")
        .body(vec![7u8; 100_000])
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .header("X-Openstack-Request-Id", "trace-download")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // no id sent: the data plane makes one, and answers with it
    let r = c
        .get(g.url(&format!("/v2/images/{id}/file")))
        .send()
        .unwrap();
    let made = r.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(made.starts_with("req-"), "{made}");
    let _ = r.bytes();
    let r = c
        .get(g.url(&format!("/v2/images/{id}")))
        .header("X-Openstack-Request-Id", "trace-show")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    std::thread::sleep(Duration::from_millis(300));
    let log = g.log();
    let cp = |needle: &str| {
        log.lines()
            .any(|l| l.contains("controlplane") && l.contains(needle))
    };
    for needle in [
        "route=/v2/images request_id=req-trace-create",
        "kind=\"authorize_upload\" request_id=req-trace-upload",
        "kind=\"upload_leftover\" request_id=req-trace-upload",
        "kind=\"upload_complete\" request_id=req-trace-upload",
        "kind=\"authorize_download\" request_id=req-trace-download",
        &format!("kind=\"authorize_download\" request_id={made}"),
        "route=/v2/images/{image_id} request_id=req-trace-show",
    ] {
        assert!(cp(needle), "no control-plane line with {needle}:\n{log}");
    }
}
