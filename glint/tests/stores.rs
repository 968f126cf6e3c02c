//! Multi-store end to end: the real `glint serve` with a filesystem store and two real S3
//! servers at once (Swift's s3api middleware and Ceph radosgw, started by the test command from
//! `../shared/services/`), driven over HTTP as a Glance client would. What lands in a bucket is
//! checked on the server itself (signed S3 requests), never through glint.
//!
//! The servers' endpoints come from `GLINT_TEST_S3_*` and `GLINT_TEST_S3B_*`; without them
//! these tests fail loudly (they are `#[ignore]`d so a plain `cargo test` needs no servers; the
//! test command runs them with `--include-ignored`).

#[path = "support/workload.rs"]
mod workload;

use loadtest::harness::{Glint, binary, md5_hex, random_bytes, raw_request, sha512_hex};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[path = "support/faultproxy.rs"]
mod faultproxy;
#[path = "support/swiftproxy.rs"]
mod swiftproxy;

use faultproxy::{Bucket, Server};

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn suffix() -> String {
    uuid_like()[..12].to_owned()
}

fn uuid_like() -> String {
    let b = random_bytes(16);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The stores of the multi-store tests: `fast` (file), `swifts3` and `ceph` (S3), and a
/// bucket name of their own per run.
struct Cluster {
    g: Glint,
    bucket: String,
    swift: Server,
    ceph: Server,
}

fn config(
    dir: &std::path::Path,
    bucket: &str,
    swift: &Server,
    ceph: &Server,
    native: &Native,
    extra_ids: &str,
    extra: &str,
) -> String {
    format!(
        r#"
enabled_backends = "fast:file, swifts3:s3, ceph:s3, sw:swift{extra_ids}"
[glance_store]
default_backend = "fast"
[backends.fast]
filesystem_store_datadir = "{dir}/fast"
store_description = "Local disk"
weight = 100
[backends.swifts3]
s3_store_host = "{sw}"
s3_store_access_key = "{swa}"
s3_store_secret_key = "{sws}"
s3_store_bucket = "{bucket}"
s3_store_create_bucket_on_put = true
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
s3_store_thread_pools = 2
weight = 50
[backends.ceph]
s3_store_host = "{ce}"
s3_store_access_key = "{cea}"
s3_store_secret_key = "{ces}"
s3_store_bucket = "{bucket}"
s3_store_create_bucket_on_put = true
s3_store_large_object_chunk_size = 5
store_description = "Ceph radosgw"
[backends.sw]
swift_store_auth_address = "{swauth}"
swift_store_auth_version = "1"
swift_store_user = "{swuser}"
swift_store_key = "{swkey}"
swift_store_container = "{bucket}-sw"
swift_store_create_container_on_put = true
swift_store_large_object_size = 5
swift_store_large_object_chunk_size = 5
{extra}
"#,
        dir = dir.display(),
        sw = swift.endpoint,
        swa = swift.access,
        sws = swift.secret,
        ce = ceph.endpoint,
        cea = ceph.access,
        ces = ceph.secret,
        swauth = native.auth,
        swuser = native.user,
        swkey = native.key,
    )
}

/// The Swift all-in-one's native API (tempauth), from `GLINT_TEST_SWIFT_SWIFT_*`.
#[derive(Clone)]
struct Native {
    auth: String,
    user: String,
    key: String,
}

impl Native {
    fn from_env() -> Native {
        let var = |k: &str| {
            std::env::var(format!("GLINT_TEST_SWIFT_SWIFT_{k}")).unwrap_or_else(|_| {
                panic!(
                    "GLINT_TEST_SWIFT_SWIFT_{k} is not set: run ./scripts/test (it starts Swift)"
                )
            })
        };
        Native {
            auth: var("AUTH_URL"),
            user: var("USER"),
            key: var("KEY"),
        }
    }

    /// (token, storage URL).
    fn login(&self) -> (String, String) {
        let r = client()
            .get(&self.auth)
            .header("X-Auth-User", &self.user)
            .header("X-Auth-Key", &self.key)
            .send()
            .unwrap();
        let h = |n: &str| r.headers()[n].to_str().unwrap().to_owned();
        (h("x-auth-token"), h("x-storage-url"))
    }

    /// The objects of a container (segments included).
    fn names(&self, container: &str) -> Vec<String> {
        let (token, storage) = self.login();
        let r = client()
            .get(format!("{storage}/{container}?format=json"))
            .header("X-Auth-Token", token)
            .send()
            .unwrap();
        if r.status() == 404 {
            return Vec::new();
        }
        let v: Value = r.json().unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn object(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let (token, storage) = self.login();
        let r = client()
            .get(format!("{storage}/{container}/{name}"))
            .header("X-Auth-Token", token)
            .send()
            .unwrap();
        match r.status().as_u16() {
            // a body cut short: the object is being deleted under the read, still there
            200 => Some(r.bytes().map(|b| b.to_vec()).unwrap_or_default()),
            404 => None,
            // a Static Large Object whose segments are being deleted: still there
            409 => Some(Vec::new()),
            s => panic!("GET {name}: {s}"),
        }
    }
}

impl Cluster {
    fn start(extra: &str) -> Cluster {
        let ids = if extra.is_empty() { "" } else { ", dead:s3" };
        Cluster::start_with(ids, extra)
    }

    /// With more stores (`extra_ids`, e.g. `", dead:s3"`) and more TOML after the stores.
    fn start_with(extra_ids: &str, extra: &str) -> Cluster {
        let swift = Server::from_env("GLINT_TEST_S3");
        let ceph = Server::from_env("GLINT_TEST_S3B");
        let native = Native::from_env();
        let bucket = format!("glint-{}", suffix());
        let dir = tempfile::Builder::new()
            .prefix("glint-st")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let path = dir.join("glint.toml");
        std::fs::write(
            &path,
            config(&dir, &bucket, &swift, &ceph, &native, extra_ids, extra),
        )
        .unwrap();
        let g = Glint::start(
            &binary(env!("CARGO_BIN_EXE_glint")),
            &["--config", path.to_str().unwrap()],
        )
        .expect("glint starts");
        Cluster {
            g,
            bucket,
            swift,
            ceph,
        }
    }

    /// The bucket of an S3 store, looked at on its server (glint made it; left alone).
    fn probe(&self, store: &str) -> Bucket {
        match store {
            "swifts3" => Bucket::open(&self.swift, &self.bucket),
            "ceph" => Bucket::open(&self.ceph, &self.bucket),
            other => panic!("{other} is not an S3 store"),
        }
    }

    fn create(&self, c: &Client) -> (String, reqwest::header::HeaderMap) {
        let r = c
            .post(self.g.url("/v2/images"))
            .json(&json!({"name": "ms", "disk_format": "raw", "container_format": "bare"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        let headers = r.headers().clone();
        let v: Value = r.json().unwrap();
        (v["id"].as_str().unwrap().to_owned(), headers)
    }

    fn show(&self, c: &Client, id: &str) -> Value {
        let r = c
            .get(self.g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    }

    fn upload(&self, c: &Client, id: &str, store: Option<&str>, data: &[u8], chunked: bool) -> u16 {
        let mut req = c
            .put(self.g.url(&format!("/v2/images/{id}/file")))
            .header("Content-Type", "application/octet-stream");
        if let Some(s) = store {
            req = req.header("X-Image-Meta-Store", s);
        }
        let req = if chunked {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(300_000).map(|c| Ok(c.to_vec())).collect();
            req.body(reqwest::blocking::Body::new(ChunkReader::new(chunks)))
        } else {
            req.body(data.to_vec())
        };
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        if status != 204 {
            eprintln!("upload answer {status}: {}", r.text().unwrap_or_default());
        }
        status
    }

    fn download(&self, c: &Client, id: &str) -> Vec<u8> {
        let r = c
            .get(self.g.url(&format!("/v2/images/{id}/file")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "download {id}\n{}", self.g.log());
        r.bytes().unwrap().to_vec()
    }
}

/// A body of unknown length (sent chunked).
struct ChunkReader {
    chunks: std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl ChunkReader {
    fn new(chunks: Vec<Result<Vec<u8>, std::io::Error>>) -> Self {
        ChunkReader {
            chunks: chunks.into_iter(),
            current: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.chunks.next() {
                Some(Ok(c)) => self.current = std::io::Cursor::new(c),
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn file_and_two_s3_servers_serve_as_one_multistore_service() {
    let cl = Cluster::start("");
    let c = client();

    // the stores, as Glance lists them
    let r = c.get(cl.g.url("/v2/info/stores")).send().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let ids: Vec<&str> = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fast", "swifts3", "ceph", "sw"]);
    assert_eq!(v["stores"][0]["default"], "true");
    assert_eq!(v["stores"][0]["description"], "Local disk");
    // multi-store's versions are advertised (2.8 … 2.13), as Glance with enabled_backends
    let versions: Value = c.get(cl.g.url("/versions")).send().unwrap().json().unwrap();
    let listed: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for want in ["v2.8", "v2.9", "v2.10", "v2.11", "v2.12", "v2.13"] {
        assert!(listed.contains(&want), "{want} not in {listed:?}");
    }

    // every store: a sized upload and one of unknown size (multipart in S3), bytes identical
    let data = random_bytes(7 * 1024 * 1024 + 4321);
    let mut ids = Vec::new();
    for store in ["fast", "swifts3", "ceph", "sw"] {
        for chunked in [false, true] {
            let (id, headers) = cl.create(&c);
            let offered = headers["openstack-image-store-ids"].to_str().unwrap();
            assert!(offered.contains(store), "{offered}");
            assert_eq!(
                cl.upload(&c, &id, Some(store), &data, chunked),
                204,
                "{store}\n{}",
                cl.g.log()
            );
            let img = cl.show(&c, &id);
            assert_eq!(img["status"], "active");
            assert_eq!(img["stores"], store);
            assert_eq!(img["checksum"], md5_hex(&data));
            assert_eq!(img["os_hash_value"], sha512_hex(&data));
            assert!(
                cl.download(&c, &id) == data,
                "{store}: downloaded bytes differ"
            );
            // a range from every store (Glance refuses ranges on S3; glint serves them)
            let r = c
                .get(cl.g.url(&format!("/v2/images/{id}/file")))
                .header("Range", "bytes=5000000-5100000")
                .send()
                .unwrap();
            assert_eq!(r.status(), 206, "{store}");
            assert!(
                r.bytes().unwrap()[..] == data[5_000_000..=5_100_000],
                "{store}: range bytes"
            );
            if store == "sw" {
                // the object (a Static Large Object when chunked) under the image id
                let stored = Native::from_env()
                    .object(&format!("{}-sw", cl.bucket), &id)
                    .expect("object in the container");
                assert!(stored == data, "{store}: object bytes differ");
            } else if store != "fast" {
                // the object is in the bucket under the image id, with the image's bytes
                let stored = cl.probe(store).object(&id).expect("object in the bucket");
                assert!(stored == data, "{store}: object bytes differ");
            }
            ids.push((store, id));
        }
    }
    for store in ["swifts3", "ceph"] {
        assert_eq!(cl.probe(store).multipart_uploads().len(), 0, "{store}");
    }
    // the data plane's bytes are counted by store: two uploads in, two downloads and a range
    // out of each
    let metrics = workload::scrape(&cl.g);
    let bytes = |direction: &str, store: &str| {
        let series =
            format!("glint_dp_transfer_bytes_total{{direction=\"{direction}\",store=\"{store}\"}}");
        workload::metric(&metrics, &series) as u64
    };
    for store in ["fast", "swifts3", "ceph", "sw"] {
        assert_eq!(bytes("in", store), 2 * data.len() as u64, "{store}");
        assert_eq!(
            bytes("out", store),
            2 * (data.len() as u64 + 100_001),
            "{store}"
        );
    }
    assert_eq!(bytes("out", "other"), 0);

    // an unknown store: 400, image stays queued
    let (id, _) = cl.create(&c);
    assert_eq!(cl.upload(&c, &id, Some("nowhere"), b"abc", false), 400);
    assert_eq!(cl.show(&c, &id)["status"], "queued");

    // the last location cannot be deleted from its store (403, as Glance)
    let (store, id) = &ids[4];
    let r = c
        .delete(cl.g.url(&format!("/v2/stores/{store}/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // a store that does not hold the image: 404 ... but with one location 403 comes first
    let r = c
        .delete(cl.g.url(&format!("/v2/stores/nowhere/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409, "a store not configured on this node");

    // deleting images removes their objects (checked on the servers)
    for (store, id) in &ids {
        let r = c
            .delete(cl.g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
        if *store == "sw" {
            let native = Native::from_env();
            let container = format!("{}-sw", cl.bucket);
            eventually("object deleted", || native.object(&container, id).is_none());
        } else if *store != "fast" {
            let probe = cl.probe(store);
            eventually("object deleted", || !probe.exists(id));
        }
    }
    for store in ["swifts3", "ceph"] {
        let left = cl.probe(store).keys();
        assert!(left.is_empty(), "{store}: objects left: {left:?}");
    }
    // the Static Large Object's segments went with it
    let native = Native::from_env();
    let container = format!("{}-sw", cl.bucket);
    eventually("segments deleted", || native.names(&container).is_empty());
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn an_interrupted_s3_upload_leaves_no_object_and_no_parts() {
    let cl = Cluster::start("");
    let c = client();
    for store in ["swifts3", "ceph"] {
        let (id, _) = cl.create(&c);
        // 12 MiB of a chunked body (two 5 MiB parts sent), then the client goes away
        let mut req = format!(
            "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nX-Image-Meta-Store: {store}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        let piece = random_bytes(1 << 20);
        for _ in 0..12 {
            req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            req.extend_from_slice(&piece);
            req.extend_from_slice(b"\r\n");
        }
        let _ = raw_request(&cl.g.public_addr(), &req, Duration::from_secs(3));
        eventually("image back to queued", || {
            cl.show(&c, &id)["status"] == "queued"
        });
        let probe = cl.probe(store);
        eventually("multipart upload aborted", || {
            probe.multipart_uploads().is_empty()
        });
        assert!(!probe.exists(&id), "{store}: object left");
    }
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn a_store_down_at_start_is_named_and_the_others_keep_working() {
    let extra = r#"[backends.dead]
s3_store_host = "http://127.0.0.1:9"
s3_store_access_key = "x"
s3_store_secret_key = "y"
s3_store_bucket = "nowhere"
connect_timeout_seconds = 1
"#;
    let cl = Cluster::start(extra);
    let c = client();
    // the log names it as unavailable (not only in the list of stores every start prints)
    assert!(
        cl.g.log()
            .lines()
            .any(|l| l.contains("store unavailable") && l.contains("store=dead")),
        "the dead store is named in the log:\n{}",
        cl.g.log()
    );
    let (id, _) = cl.create(&c);
    assert_eq!(cl.upload(&c, &id, Some("dead"), b"data", false), 503);
    assert_eq!(cl.show(&c, &id)["status"], "queued");
    let data = random_bytes(100_000);
    assert_eq!(cl.upload(&c, &id, Some("ceph"), &data, false), 204);
    assert!(cl.download(&c, &id) == data);
}

/// With `delayed_delete`, a deleted image keeps its object until the scrubber's pass, which
/// removes it from the bucket (checked on the server).
#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn the_scrubber_removes_remote_objects() {
    let cl = Cluster::start_with(
        "",
        "[controlplane]\ndelayed_delete = true\nscrub_time_seconds = 2\nscrub_wakeup_seconds = 1\n",
    );
    let c = client();
    let (id, _) = cl.create(&c);
    let data = random_bytes(300_000);
    assert_eq!(cl.upload(&c, &id, Some("ceph"), &data, false), 204);
    let r = c
        .delete(cl.g.url(&format!("/v2/images/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let probe = cl.probe("ceph");
    // pending_delete: the data is kept for scrub_time
    assert!(
        probe.object(&id).is_some(),
        "object gone before the scrubber's pass"
    );
    eventually("object scrubbed", || !probe.exists(&id));
}

#[test]
#[ignore = "needs the client venv and the S3 servers: run through ./scripts/test"]
fn glance_clients_multistore_calls() {
    let cl = Cluster::start("");
    match cl.g.run_compat_script("test_multistore.py", &[]) {
        Ok(stdout) => println!("{stdout}"),
        Err(e) => panic!("{e:#}"),
    }
}

/// Waits until the supervisor runs a new `plane` after `old` was killed.
fn wait_restarted(g: &Glint, plane: &str, old: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while g.plane_pid(plane).is_none_or(|p| p == old) {
        assert!(
            Instant::now() < deadline,
            "{plane} not restarted within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    g.wait_public(Duration::from_secs(60)).unwrap();
}

/// Either plane killed with SIGKILL in the middle of an upload (a multipart upload to S3
/// with parts sent; a Static Large Object with segments written to Swift): once the
/// supervisor has it back, the image is `queued` and nothing of the upload is left on the
/// server, because what the upload could leave was recorded before it existed and a data
/// plane removes it as a job.
#[test]
#[ignore = "needs the S3 and Swift servers: run through ./scripts/test"]
fn a_plane_killed_mid_upload_leaves_no_parts_and_no_segments() {
    use std::io::Write;
    let cl = Cluster::start("");
    let c = client();
    let native = Native::from_env();
    let container = format!("{}-sw", cl.bucket);
    let probe = cl.probe("ceph");
    for plane in ["dataplane", "controlplane"] {
        for store in ["ceph", "sw"] {
            let (id, _) = cl.create(&c);
            // 12 MiB of a chunked body that never ends: the upload stays open
            let mut stream = std::net::TcpStream::connect(cl.g.public_addr()).unwrap();
            let mut req = format!(
                "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nX-Image-Meta-Store: {store}\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            let piece = random_bytes(1 << 20);
            for _ in 0..12 {
                req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                req.extend_from_slice(&piece);
                req.extend_from_slice(b"\r\n");
            }
            stream.write_all(&req).unwrap();
            let ours =
                |names: Vec<String>| names.into_iter().filter(|n| n.starts_with(&id)).count();
            if store == "ceph" {
                eventually("a multipart upload under way", || {
                    !probe.multipart_uploads().is_empty()
                });
            } else {
                eventually("a segment written", || ours(native.names(&container)) > 0);
            }
            let pid = cl.g.plane_pid(plane).expect("plane pid");
            Glint::kill(pid, rustix::process::Signal::KILL);
            wait_restarted(&cl.g, plane, pid);
            drop(stream);
            eventually("image back to queued", || {
                cl.show(&c, &id)["status"] == "queued"
            });
            if store == "ceph" {
                eventually(&format!("{plane} killed: multipart upload aborted"), || {
                    probe.multipart_uploads().is_empty()
                });
                assert!(!probe.exists(&id), "{plane} killed: object left");
            } else {
                eventually(&format!("{plane} killed: segments removed"), || {
                    ours(native.names(&container)) == 0
                });
            }
        }
    }
    // and the image takes a new upload, kept
    let (id, _) = cl.create(&c);
    let data = random_bytes(12 << 20);
    assert_eq!(cl.upload(&c, &id, Some("sw"), &data, true), 204);
    assert!(cl.download(&c, &id) == data);
}

/// An image uploaded before multi-store names the legacy store `file`; once
/// `enabled_backends` names two filesystem stores, its location moves to the one whose
/// directory holds it (`stores` shows it, `DELETE /v2/stores/<it>/…` knows it), and both
/// stores take and serve uploads at once.
#[test]
fn legacy_locations_move_to_the_filesystem_store_holding_them() {
    let bin = binary(env!("CARGO_BIN_EXE_glint"));
    let c = client();
    let mut g1 = Glint::start(&bin, &[]).unwrap();
    let create = |g: &Glint| -> String {
        let r = c
            .post(g.url("/v2/images"))
            .json(&json!({"name": "legacy", "disk_format": "raw", "container_format": "bare"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let put = |g: &Glint, id: &str, store: Option<&str>, data: &[u8]| {
        let mut req = c
            .put(g.url(&format!("/v2/images/{id}/file")))
            .header("Content-Type", "application/octet-stream");
        if let Some(s) = store {
            req = req.header("X-Image-Meta-Store", s);
        }
        assert_eq!(req.body(data.to_vec()).send().unwrap().status(), 204);
    };
    let get = |g: &Glint, id: &str| -> Vec<u8> {
        let r = c
            .get(g.url(&format!("/v2/images/{id}/file")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().unwrap().to_vec()
    };
    let show = |g: &Glint, id: &str| -> Value {
        c.get(g.url(&format!("/v2/images/{id}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let old = create(&g1);
    let old_data = random_bytes(200_000);
    put(&g1, &old, None, &old_data);
    assert!(
        show(&g1, &old).get("stores").is_none(),
        "no stores property without multi-store"
    );
    g1.stop().unwrap();

    let dir = tempfile::Builder::new()
        .prefix("glint-legacy")
        .tempdir_in("/tmp")
        .unwrap();
    let path = dir.path().join("glint.toml");
    std::fs::write(
        &path,
        format!(
            r#"
enabled_backends = "fast:file, slow:file"
[glance_store]
default_backend = "slow"
[backends.fast]
filesystem_store_datadir = "{fast}"
[backends.slow]
filesystem_store_datadir = "{slow}"
[database]
url = "sqlite://{db}?mode=rwc"
"#,
            fast = g1.store_dir().display(),
            slow = dir.path().join("slow").display(),
            db = g1.dir().join("data").join("glint.db").display(),
        ),
    )
    .unwrap();
    let g2 = Glint::start(&bin, &["--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(show(&g2, &old)["stores"], "fast", "{}", g2.log());
    assert!(get(&g2, &old) == old_data);
    // the store knows it now: removing its last location is refused (403), not unknown (404)
    let r = c
        .delete(g2.url(&format!("/v2/stores/fast/{old}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "{}", r.text().unwrap_or_default());

    // two filesystem stores at once
    let (a, b) = (create(&g2), create(&g2));
    let (da, db) = (random_bytes(300_000), random_bytes(70_000));
    put(&g2, &a, Some("fast"), &da);
    put(&g2, &b, None, &db);
    assert_eq!(show(&g2, &a)["stores"], "fast");
    assert_eq!(show(&g2, &b)["stores"], "slow");
    assert!(get(&g2, &a) == da && get(&g2, &b) == db);
    assert_eq!(std::fs::read(g1.store_dir().join(&a)).unwrap(), da);
    assert_eq!(std::fs::read(dir.path().join("slow").join(&b)).unwrap(), db);
    assert_eq!(
        show(&g2, &a)["checksum"].as_str().unwrap(),
        md5_hex(&da),
        "hashes of the fast store's upload"
    );
}

/// S3 with virtual-host-style addressing (`<bucket>.localhost:<port>`) and a region of the
/// server's own: a Swift proxy with s3api (`storage_domain = localhost`, `location =
/// glint-test-1`) over the all-in-one. Uploads (one PUT, multipart) and ranged downloads work,
/// the objects are where path style on the all-in-one's own s3api finds them, and a store
/// signing for another region is refused by the server and named unavailable.
#[test]
#[ignore = "needs the Swift all-in-one: run through ./scripts/test"]
fn s3_virtual_host_style_and_a_region_of_the_servers_own() {
    let region = "glint-test-1";
    let vh = swiftproxy::SwiftProxy::start(
        "vh",
        "s3api tempauth",
        &format!(
            "[filter:s3api]\nuse = egg:swift#s3api\nlocation = {region}\nstorage_domain = localhost\n\n\
             [filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = testing .admin\n"
        ),
        "swift.common.middleware.s3api",
    );
    let aio = Server::from_env("GLINT_TEST_S3");
    let bucket = format!("glint-vh-{}", suffix());
    let dir = tempfile::Builder::new()
        .prefix("glint-vh")
        .tempdir_in("/tmp")
        .unwrap();
    let store = |id: &str, style: &str, region: &str| {
        format!(
            r#"[backends.{id}]
s3_store_host = "http://localhost:{port}"
s3_store_access_key = "{access}"
s3_store_secret_key = "{secret}"
s3_store_bucket = "{bucket}"
s3_store_create_bucket_on_put = true
s3_store_bucket_url_format = "{style}"
s3_store_region_name = "{region}"
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
connect_timeout_seconds = 5
read_timeout_seconds = 30
"#,
            port = vh.port,
            access = aio.access,
            secret = aio.secret,
        )
    };
    let path = dir.path().join("glint.toml");
    std::fs::write(
        &path,
        format!(
            "enabled_backends = \"vh:s3, elsewhere:s3\"\n[glance_store]\ndefault_backend = \"vh\"\n{}{}",
            store("vh", "virtual", region),
            store("elsewhere", "path", "us-east-1"),
        ),
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", path.to_str().unwrap()],
    )
    .expect("glint starts");
    let c = client();
    let create = || -> String {
        let r = c
            .post(g.url("/v2/images"))
            .json(&json!({"name": "vh", "disk_format": "raw", "container_format": "bare"}))
            .send()
            .unwrap();
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let put = |id: &str, store: &str, data: &[u8]| -> u16 {
        c.put(g.url(&format!("/v2/images/{id}/file")))
            .header("Content-Type", "application/octet-stream")
            .header("X-Image-Meta-Store", store)
            .body(data.to_vec())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let probe = Bucket::open(&aio, &bucket);
    for len in [300_000, 12 << 20] {
        let id = create();
        let data = random_bytes(len);
        assert_eq!(put(&id, "vh", &data), 204, "{}\n{}", g.log(), vh.log());
        let r = c
            .get(g.url(&format!("/v2/images/{id}/file")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().unwrap() == data);
        let r = c
            .get(g.url(&format!("/v2/images/{id}/file")))
            .header("Range", "bytes=5242870-5242889")
            .send()
            .unwrap();
        if len > 5242889 {
            assert_eq!(r.status(), 206);
            assert!(r.bytes().unwrap() == data[5242870..5242890]);
        }
        assert!(
            probe.object(&id).unwrap() == data,
            "object in the bucket, path style"
        );
        assert!(probe.multipart_uploads().is_empty());
        let r = c.delete(g.url(&format!("/v2/images/{id}"))).send().unwrap();
        assert_eq!(r.status(), 204);
        eventually("object deleted", || !probe.exists(&id));
    }
    // the vh store's requests (signed for its region) went to <bucket>.localhost: the proxy
    // saw the bucket in the host, never in the path
    assert!(
        !vh.log()
            .lines()
            .any(|l| l.contains(&format!(" /{bucket}/")) && l.contains(region)),
        "a path-style request reached the virtual-host proxy:\n{}",
        vh.log()
    );
    // signed for us-east-1, the server refuses: named unavailable, the upload 503
    let id = create();
    assert_eq!(put(&id, "elsewhere", b"data"), 503);
    assert!(
        g.log()
            .lines()
            .any(|l| l.contains("store=elsewhere") && l.contains("unavailable")),
        "{}",
        g.log()
    );
}

/// Waits until the image has more than `tasks_before` tasks and all have ended; the newest.
fn import_task_ended(cl: &Cluster, c: &Client, id: &str, tasks_before: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = c
            .get(cl.g.url(&format!("/v2/images/{id}/tasks")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
        let ended = |t: &Value| t["status"] == "success" || t["status"] == "failure";
        if tasks.len() > tasks_before && tasks.iter().all(ended) {
            // oldest first
            return tasks[tasks.len() - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "import not over: {tasks:?}\n{}",
            cl.g.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post_import(cl: &Cluster, c: &Client, id: &str, body: Value) -> (u16, String) {
    let r = c
        .post(cl.g.url(&format!("/v2/images/{id}/import")))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn stage(cl: &Cluster, c: &Client, id: &str, data: &[u8]) {
    let r = c
        .put(cl.g.url(&format!("/v2/images/{id}/stage")))
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", cl.g.log());
}

fn stores_of(img: &Value) -> Vec<String> {
    let mut s: Vec<String> = img["stores"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    s.sort();
    s
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn import_into_several_stores_and_copy_between_them() {
    let extra = r#"[backends.dead]
s3_store_host = "http://127.0.0.1:9"
s3_store_access_key = "x"
s3_store_secret_key = "y"
s3_store_bucket = "nowhere"
connect_timeout_seconds = 1
"#;
    let cl = Cluster::start(extra);
    let c = client();
    let data = random_bytes((12 << 20) + 5);

    // glance-direct into a file and an S3 store (multipart on Swift's s3api)
    let (id, headers) = cl.create(&c);
    assert!(
        headers["openstack-image-import-methods"]
            .to_str()
            .unwrap()
            .contains("copy-image")
    );
    stage(&cl, &c, &id, &data);
    let (status, body) = post_import(
        &cl,
        &c,
        &id,
        json!({"method": {"name": "glance-direct"}, "stores": ["fast", "swifts3"]}),
    );
    assert_eq!(status, 202, "{body}");
    let t = import_task_ended(&cl, &c, &id, 0);
    assert_eq!(t["status"], "success", "{t}\n{}", cl.g.log());
    let img = cl.show(&c, &id);
    assert_eq!(img["status"], "active");
    assert_eq!(stores_of(&img), ["fast", "swifts3"]);
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(img["os_hash_value"], sha512_hex(&data));
    assert!(
        img.get("os_glance_importing_to_stores")
            .is_none_or(|v| v == ""),
        "{img}"
    );
    assert!(cl.probe("swifts3").exists(&id));
    assert!(cl.download(&c, &id) == data);

    // copy-image into ceph; then all_stores copies into what is left (sw), dead excepted...
    let (status, body) = post_import(
        &cl,
        &c,
        &id,
        json!({"method": {"name": "copy-image"}, "stores": ["fast"]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("Image is already present at store 'fast'"),
        "{body}"
    );
    let (status, body) = post_import(
        &cl,
        &c,
        &id,
        json!({"method": {"name": "copy-image"}, "stores": ["ceph"]}),
    );
    assert_eq!(status, 202, "{body}");
    let t = import_task_ended(&cl, &c, &id, 1);
    assert_eq!(t["status"], "success", "{t}\n{}", cl.g.log());
    let img = cl.show(&c, &id);
    assert_eq!(img["status"], "active");
    assert_eq!(stores_of(&img), ["ceph", "fast", "swifts3"]);
    assert!(cl.probe("ceph").exists(&id));
    // ... without all_stores_must_succeed: sw is written, dead fails and is listed
    let (status, body) = post_import(
        &cl,
        &c,
        &id,
        json!({"method": {"name": "copy-image"}, "all_stores": true, "all_stores_must_succeed": false}),
    );
    assert_eq!(status, 202, "{body}");
    let t = import_task_ended(&cl, &c, &id, 2);
    assert_eq!(t["status"], "success", "{t}\n{}", cl.g.log());
    let img = cl.show(&c, &id);
    assert_eq!(stores_of(&img), ["ceph", "fast", "sw", "swifts3"], "{img}");
    assert_eq!(img["os_glance_failed_import"], "dead", "{img}");
    assert_eq!(img["checksum"], md5_hex(&data));

    // glance-direct where a store fails: with all_stores_must_succeed (the default) the
    // import fails, what it wrote is removed and the image is queued again
    let (id2, _) = cl.create(&c);
    stage(&cl, &c, &id2, &data);
    let (status, body) = post_import(
        &cl,
        &c,
        &id2,
        json!({"method": {"name": "glance-direct"}, "stores": ["swifts3", "dead"]}),
    );
    assert_eq!(status, 202, "{body}");
    let t = import_task_ended(&cl, &c, &id2, 0);
    assert_eq!(t["status"], "failure", "{t}");
    let img = cl.show(&c, &id2);
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img.get("stores").is_none_or(|v| v == ""), "{img}");
    let probe = cl.probe("swifts3");
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.exists(&id2) {
        assert!(
            Instant::now() < deadline,
            "the copy in swifts3 is left\n{}",
            cl.g.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // without it the image becomes active with the store that worked
    let (id3, _) = cl.create(&c);
    stage(&cl, &c, &id3, &data);
    let (status, body) = post_import(
        &cl,
        &c,
        &id3,
        json!({"method": {"name": "glance-direct"}, "stores": ["dead", "fast"], "all_stores_must_succeed": false}),
    );
    assert_eq!(status, 202, "{body}");
    let t = import_task_ended(&cl, &c, &id3, 0);
    assert_eq!(t["status"], "success", "{t}\n{}", cl.g.log());
    let img = cl.show(&c, &id3);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(stores_of(&img), ["fast"]);
    assert_eq!(img["os_glance_failed_import"], "dead", "{img}");
    assert!(cl.download(&c, &id3) == data);
}
