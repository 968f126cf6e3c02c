//! The block cache end to end: the real `glint serve` with an S3 store (Ceph radosgw) behind
//! the test's [`FaultProxy`], which counts every byte the store sends glint (the backend read
//! count is measured at the hop, never taken from glint's own counters), slows the store down,
//! or makes it return wrong bytes. Each test checks what a client would: every download's
//! bytes equal the image's, statuses and headers, and what the store was asked for.
//!
//! Blocks are 1 MiB here (images of a few MiB cover many blocks). Needs the servers
//! `./scripts/test` starts (`GLINT_TEST_S3B_*`).

use loadtest::harness::{Glint, binary, md5_hex, random_bytes, sha512_hex};
use reqwest::blocking::Client;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "support/faultproxy.rs"]
mod faultproxy;
#[path = "support/workload.rs"]
mod workload;

use faultproxy::{Bucket, FaultProxy, Mode, Server};

const MIB: usize = 1 << 20;
const BLOCK: usize = MIB;
/// What the store sends besides image bytes, per ranged GET (status line and headers), at most.
const HEAD_ALLOWANCE: u64 = 2048;

/// One glint whose only store is a radosgw bucket behind `proxy`, with the cache in
/// `cache_dir`. Fields drop in order: glint first.
struct Rig {
    g: Glint,
    proxy: FaultProxy,
    bucket: Bucket,
    cache_dir: PathBuf,
    c: Client,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// `cache` is more `[image_cache]` settings.
    fn start(cache: &str) -> Rig {
        Rig::start_with("", cache, None)
    }

    /// `top` is more top-level settings, `cache` more `[image_cache]` ones; `other` a rig
    /// whose bucket, through its proxy, this node shares (another node of one deployment).
    fn start_with(top: &str, cache: &str, other: Option<&Rig>) -> Rig {
        let server = Server::from_env("GLINT_TEST_S3B");
        let bucket = match other {
            Some(o) => Bucket::open(&server, &o.bucket.name),
            None => Bucket::create(&server),
        };
        let proxy = FaultProxy::start(&server.endpoint);
        let endpoint = other.map_or_else(|| proxy.endpoint(), |o| o.proxy.endpoint());
        let dir = tempfile::Builder::new()
            .prefix("glint-cache")
            .tempdir_in("/tmp")
            .unwrap();
        let cache_dir = dir.path().join("cache");
        let config = format!(
            r#"enabled_backends = "ceph:s3"
{top}
[glance_store]
default_backend = "ceph"
[backends.ceph]
s3_store_host = "{endpoint}"
s3_store_access_key = "{access}"
s3_store_secret_key = "{secret}"
s3_store_bucket = "{bucket}"
connect_timeout_seconds = 5
read_timeout_seconds = 30
[image_cache]
image_cache_dir = "{cache}"
image_cache_block_size = {BLOCK}
{more}
"#,
            access = server.access,
            secret = server.secret,
            bucket = bucket.name,
            cache = cache_dir.display(),
            more = cache,
        );
        let path = dir.path().join("glint.toml");
        std::fs::write(&path, config).unwrap();
        let g = Glint::start(
            &binary(env!("CARGO_BIN_EXE_glint")),
            &["--config", path.to_str().unwrap()],
        )
        .expect("glint starts");
        Rig {
            g,
            proxy,
            bucket,
            cache_dir,
            c: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            _dir: dir,
        }
    }

    /// A new image holding `data` (uploaded through glint into the bucket).
    fn image(&self, data: &[u8]) -> String {
        let id = workload::create(&self.g, "cached");
        let (status, body) = workload::put(&self.g, &id, data.to_vec());
        assert_eq!(status, 204, "{body}");
        id
    }

    fn get(&self, id: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
        let mut req = self.c.get(self.g.url(&format!("/v2/images/{id}/file")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().unwrap()
    }

    /// Downloads all of `id`; status and bytes.
    fn download(&self, id: &str) -> (u16, Vec<u8>) {
        let r = self.get(id, &[]);
        (
            r.status().as_u16(),
            r.bytes().map(|b| b.to_vec()).unwrap_or_default(),
        )
    }

    /// Bytes the store has sent glint so far.
    fn store_bytes(&self) -> u64 {
        self.proxy.carried_down()
    }

    fn metric(&self, series: &str) -> f64 {
        workload::metric(&workload::scrape(&self.g), series)
    }

    /// The block files in the cache and their sizes.
    fn cached_blocks(&self) -> Vec<(PathBuf, u64)> {
        block_files(&self.cache_dir)
    }

    /// Waits until `n` blocks are on disk.
    fn wait_cached(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.cached_blocks().len() < n {
            assert!(Instant::now() < deadline, "{n} blocks not cached");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn block_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for image in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if image.file_name() == "tmp" {
            continue;
        }
        for b in std::fs::read_dir(image.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let len = b.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((b.path(), len));
        }
    }
    out
}

/// Asserts the store sent `blocks` blocks' worth of image bytes (`bytes`) since `before`, plus
/// at most a head per block.
fn assert_read_once(rig: &Rig, before: u64, bytes: u64, blocks: u64) {
    let read = rig.store_bytes() - before;
    assert!(
        read >= bytes && read <= bytes + blocks * HEAD_ALLOWANCE,
        "the store sent {read} bytes for {bytes} bytes of image in {blocks} blocks"
    );
}

#[test]
fn concurrent_cold_pulls_read_each_block_from_the_store_once() {
    let rig = Rig::start("");
    let data = random_bytes(12 * MIB + 12345);
    let id = rig.image(&data);
    let want = md5_hex(&data);
    let before = rig.store_bytes();
    let clients = 16;
    let started = std::sync::Barrier::new(clients);
    let answers: Vec<(u16, String, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    started.wait();
                    let r = rig.get(&id, &[]);
                    let status = r.status().as_u16();
                    let length = r
                        .headers()
                        .get("content-length")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let body = r.bytes().unwrap();
                    (status, md5_hex(&body), length)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, md5, length) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(length.as_deref(), Some(data.len().to_string().as_str()));
        assert_eq!(md5, &want, "a client got other bytes");
    }
    assert_read_once(&rig, before, data.len() as u64, 13);
    let text = workload::scrape(&rig.g);
    assert_eq!(
        workload::metric(&text, "glint_dp_cache_fill_bytes_total"),
        data.len() as f64
    );
    assert!(workload::metric(&text, "glint_dp_cache_coalesced_total") > 0.0);
    assert_eq!(
        workload::metric(&text, "glint_dp_cache_bytes"),
        data.len() as f64
    );

    // warm: nothing more is read from the store, the bytes are the same
    let before = rig.store_bytes();
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert_eq!(md5_hex(&body), want);
    assert_eq!(rig.store_bytes(), before, "a warm download read the store");
    assert!(rig.metric("glint_dp_cache_lookups_total{result=\"hit\"}") >= 1.0);
    assert_eq!(
        rig.cached_blocks().iter().map(|(_, n)| n).sum::<u64>(),
        data.len() as u64
    );
}

#[test]
fn hundreds_of_followers_of_one_fill_are_all_served() {
    // more waiters on one fill than a worker's queue of wakeups from the other worker took
    // (compio's default, 64): waking them used to deadlock both workers
    let rig = Rig::start("");
    let data = random_bytes(2 * MIB);
    let id = rig.image(&data);
    rig.proxy.set(Mode::Throttle {
        bytes_per_second: 4 * MIB as u64,
    });
    let before = rig.store_bytes();
    let clients = 256;
    let started = std::sync::Barrier::new(clients);
    let answers: Vec<(u16, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    started.wait();
                    let r = rig.get(&id, &[]);
                    let status = r.status().as_u16();
                    (
                        status,
                        r.bytes().map(|b| b[..] == data[..]).unwrap_or(false),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, same) in &answers {
        assert_eq!(*status, 200);
        assert!(*same, "a client got other bytes");
    }
    assert_read_once(&rig, before, data.len() as u64, 2);
}

#[test]
fn ranges_fill_only_their_blocks_and_resume_safely() {
    let rig = Rig::start("image_cache_readahead_blocks = 0");
    let data = random_bytes(8 * MIB + 777);
    let id = rig.image(&data);
    let tag = format!("\"{}\"", sha512_hex(&data));

    // a range inside blocks 2..=3 reads those two blocks only
    let before = rig.store_bytes();
    let (a, b) = (2 * BLOCK + 100, 3 * BLOCK + 5000);
    let r = rig.get(&id, &[("Range", &format!("bytes={a}-{b}"))]);
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), tag);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes {a}-{b}/{}", data.len())
    );
    assert!(r.bytes().unwrap()[..] == data[a..=b]);
    assert_read_once(&rig, before, 2 * BLOCK as u64, 2);

    // a download resumed from the middle (as after a dropped connection) reads only the
    // blocks the cache lacks: 4..=8
    let before = rig.store_bytes();
    let from = 3 * BLOCK + 10;
    let r = rig.get(
        &id,
        &[("Range", &format!("bytes={from}-")), ("If-Range", &tag)],
    );
    assert_eq!(r.status(), 206);
    assert!(r.bytes().unwrap()[..] == data[from..]);
    assert_read_once(&rig, before, (data.len() - 4 * BLOCK) as u64, 5);

    // the whole image now reads blocks 0 and 1 only
    let before = rig.store_bytes();
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data);
    assert_read_once(&rig, before, 2 * BLOCK as u64, 2);

    // conditions: a stale If-Range gets the whole image, If-None-Match the tag gets 304
    let r = rig.get(
        &id,
        &[("Range", "bytes=0-9"), ("If-Range", "\"something-else\"")],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), data.len());
    let r = rig.get(&id, &[("If-None-Match", &tag)]);
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), tag);
    assert!(r.bytes().unwrap().is_empty());
    let r = rig.get(
        &id,
        &[("If-None-Match", "\"other\""), ("Range", "bytes=-10")],
    );
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().unwrap()[..], &data[data.len() - 10..]);
}

#[test]
fn a_corrupted_block_on_disk_is_never_served_and_is_filled_again() {
    let rig = Rig::start("");
    let data = random_bytes(4 * MIB);
    let id = rig.image(&data);
    assert!(rig.download(&id).1 == data);
    rig.wait_cached(4);
    // the data plane dies; a block is damaged on disk before the next one reads it
    workload::kill_dataplane(&rig.g);
    let (victim, _) = rig
        .cached_blocks()
        .into_iter()
        .find(|(p, _)| p.file_name().unwrap() == "2.blk")
        .expect("block 2 cached");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[4242] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();

    let before = rig.store_bytes();
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data, "a corrupted cached block was served");
    assert_read_once(&rig, before, BLOCK as u64, 1);
    assert_eq!(
        rig.metric("glint_dp_cache_verify_failures_total{source=\"disk\"}"),
        1.0
    );
    // the block filled again lands on disk once written and synced, after it was served
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(&victim).ok().as_deref() != Some(&data[2 * BLOCK..3 * BLOCK]) {
        assert!(Instant::now() < deadline, "block 2 not stored again whole");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_store_returning_wrong_bytes_is_detected_and_nothing_wrong_is_served() {
    let rig = Rig::start("");
    let data = random_bytes(3 * MIB);
    let id = rig.image(&data);
    // every store connection's next answer has one byte flipped in its body
    rig.proxy.set(Mode::Corrupt { at: 4000 });
    let (status, body) = rig.download(&id);
    assert!(
        status == 503 || body.len() < data.len(),
        "a download of wrong bytes ended cleanly ({status}, {} bytes)",
        body.len()
    );
    assert!(rig.metric("glint_dp_cache_verify_failures_total{source=\"store\"}") >= 1.0);
    assert!(
        rig.cached_blocks().len() < 3,
        "every block cached though one was wrong"
    );
    // the store is right again: the same download is whole and right
    rig.proxy.set(Mode::Pass);
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data);
}

#[test]
fn kill_9_mid_fill_leaves_only_whole_verified_blocks() {
    let rig = Rig::start("image_cache_readahead_blocks = 1");
    let data = random_bytes(16 * MIB);
    let id = rig.image(&data);
    rig.proxy.set(Mode::Throttle {
        bytes_per_second: 4 * MIB as u64,
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            // cut by the kill: whatever it got is short
            let r = rig.get(&id, &[]);
            let _ = r.bytes();
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while rig.cached_blocks().len() < 2 {
            assert!(Instant::now() < deadline, "no block cached");
            std::thread::sleep(Duration::from_millis(20));
        }
        workload::kill_dataplane(&rig.g);
    });
    rig.proxy.set(Mode::Pass);
    // only complete blocks that match the image's bytes; no temp file left
    let blocks = rig.cached_blocks();
    assert!(!blocks.is_empty());
    for (path, len) in &blocks {
        let index: usize = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(*len as usize, BLOCK, "{} is not whole", path.display());
        let on_disk = std::fs::read(path).unwrap();
        assert!(
            on_disk == data[index * BLOCK..(index + 1) * BLOCK],
            "{} holds other bytes",
            path.display()
        );
    }
    let tmp = std::fs::read_dir(rig.cache_dir.join("tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "temp files left after the restart");
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data);
}

#[test]
fn the_budget_holds_under_a_workload_larger_than_the_cache() {
    let rig = Rig::start(&format!("image_cache_max_size = {}", 5 * BLOCK));
    let images: Vec<(String, Vec<u8>)> = (0..3)
        .map(|_| {
            let d = random_bytes(3 * MIB);
            (rig.image(&d), d)
        })
        .collect();
    for round in 0..2 {
        for (id, d) in &images {
            let (status, body) = rig.download(id);
            assert_eq!(status, 200);
            assert!(&body == d, "round {round}: other bytes");
            let held: u64 = rig.cached_blocks().iter().map(|(_, n)| n).sum();
            assert!(
                held <= 5 * BLOCK as u64,
                "{held} bytes cached, over the budget"
            );
        }
    }
    let text = workload::scrape(&rig.g);
    assert!(workload::metric(&text, "glint_dp_cache_evictions_total") >= 2.0);
    assert!(workload::metric(&text, "glint_dp_cache_bytes") <= (5 * BLOCK) as f64);
    assert_eq!(
        workload::metric(&text, "glint_dp_cache_max_bytes"),
        (5 * BLOCK) as f64
    );
}

#[test]
fn a_follower_that_waits_too_long_reads_the_store_itself() {
    let rig = Rig::start("image_cache_wait_ms = 100\nimage_cache_readahead_blocks = 0");
    let data = random_bytes(2 * MIB);
    let id = rig.image(&data);
    // a block takes about half a second to fill
    rig.proxy.set(Mode::Throttle {
        bytes_per_second: 2 * MIB as u64,
    });
    let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| rig.download(&id).1)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for b in bodies {
        assert!(b == data);
    }
    assert!(rig.metric("glint_dp_cache_uncached_total{reason=\"stalled\"}") >= 1.0);
}

#[test]
fn glance_clients_manage_the_cache() {
    let node = "http://node-a.example:9292";
    let rig = Rig::start_with(&format!("worker_self_reference_url = \"{node}\""), "", None);
    // the versions the cache brings: 2.14, 2.16 and 2.18 (clean, prune), with 2.17 between
    let versions: serde_json::Value = rig
        .c
        .get(rig.g.url("/versions"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[..5], ["v2.18", "v2.17", "v2.16", "v2.15", "v2.14"]);
    let out = rig
        .g
        .run_compat_script("test_cache.py", &[("GLINT_NODE_URL", node)])
        .unwrap();
    assert!(out.contains("ok   cache:"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn two_nodes_on_one_database_each_list_in_cache_nodes() {
    use controlplane::db::Backend;
    use controlplane::db::scratch::ScratchDb;
    let db = ScratchDb::create_blocking(Backend::Postgres);
    let top = |node: &str| {
        format!(
            "worker_self_reference_url = \"{node}\"\n[database]\nurl = \"{}\"",
            db.url()
        )
    };
    let a = Rig::start_with(&top("http://node-a:9292"), "", None);
    let b = Rig::start_with(&top("http://node-b:9292"), "", Some(&a));
    let data = random_bytes(2 * MIB + 5);
    let id = a.image(&data);
    let nodes = |rig: &Rig| -> Vec<String> {
        let r = rig
            .c
            .get(rig.g.url(&format!("/v2/cache/nodes/{id}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    };
    let eventually = |want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while nodes(&a) != want {
            assert!(
                Instant::now() < deadline,
                "nodes {:?}, want {want:?}",
                nodes(&a)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(nodes(&a).is_empty());
    assert!(a.download(&id).1 == data);
    eventually(&["http://node-a:9292"]);
    assert!(b.download(&id).1 == data);
    eventually(&["http://node-a:9292", "http://node-b:9292"]);
    assert_eq!(nodes(&b), nodes(&a));
    // each node's cache is its own: clearing one leaves the other listed
    let r = b.c.delete(b.g.url("/v2/cache")).send().unwrap();
    assert_eq!(r.status(), 204);
    eventually(&["http://node-a:9292"]);
    let listed: serde_json::Value =
        a.c.get(a.g.url("/v2/cache"))
            .send()
            .unwrap()
            .json()
            .unwrap();
    assert_eq!(listed["cached_images"][0]["image_id"], id.as_str());
    assert_eq!(listed["cached_images"][0]["size"], data.len() as u64);
    let listed: serde_json::Value =
        b.c.get(b.g.url("/v2/cache"))
            .send()
            .unwrap()
            .json()
            .unwrap();
    assert_eq!(listed["cached_images"], serde_json::json!([]));
}

#[test]
fn the_auditor_discards_a_block_damaged_while_running() {
    let rig = Rig::start(&format!(
        "image_cache_audit_bytes_per_second = {}",
        256 * MIB
    ));
    let data = random_bytes(3 * MIB);
    let id = rig.image(&data);
    assert!(rig.download(&id).1 == data);
    // (a block is written just after its bytes went out)
    rig.wait_cached(3);
    // damaged behind the data plane's back while it runs (the block was verified when stored)
    let (victim, _) = rig
        .cached_blocks()
        .into_iter()
        .find(|(p, _)| p.file_name().unwrap() == "1.blk")
        .expect("block 1 cached");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.metric("glint_dp_cache_verify_failures_total{source=\"disk\"}") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the auditor did not find the damaged block"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!victim.exists(), "the damaged block is still in the cache");
    assert!(rig.metric("glint_dp_cache_audited_bytes_total") >= (2 * BLOCK) as f64);
    // the next download is whole and right, and reads that one block from the store again
    let before = rig.store_bytes();
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data);
    assert_read_once(&rig, before, BLOCK as u64, 1);
}

/// Runs `sql` (with `id` bound) on the node's SQLite database; the rows it answers, as
/// (block_size, hashes) pairs.
fn image_blocks(rig: &Rig, sql: &str, id: &str) -> Vec<(i64, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", rig.g.dir().join("data/glint.db").display());
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_as(sql)
            .bind(id)
            .fetch_all(&mut conn)
            .await
            .unwrap()
    })
}

/// Forgets the block hashes recorded with `id`, as for data uploaded before they were.
fn drop_block_hashes(rig: &Rig, id: &str) {
    image_blocks(rig, "DELETE FROM image_blocks WHERE image_id = ?", id);
}

fn recorded_block_hashes(rig: &Rig, id: &str) -> Option<(i64, String)> {
    let sql = "SELECT block_size, hashes FROM image_blocks WHERE image_id = ?";
    image_blocks(rig, sql, id).pop()
}

#[test]
fn an_image_without_block_hashes_is_read_once_verified_whole_and_cached() {
    let rig = Rig::start("");
    let data = random_bytes(5 * MIB + 1234);
    let id = rig.image(&data);
    drop_block_hashes(&rig, &id);
    // the store slowed so that the followers join the one fill under way
    rig.proxy.set(Mode::Throttle {
        bytes_per_second: 8 * MIB as u64,
    });
    let before = rig.store_bytes();
    let bodies: Vec<(u16, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (rig, id) = (&rig, &id);
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(100 * i));
                    rig.download(id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &bodies {
        assert_eq!(*status, 200);
        assert!(*body == data, "a download got other bytes");
    }
    // one GET of the whole image
    assert_read_once(&rig, before, data.len() as u64, 1);
    rig.proxy.set(Mode::Pass);
    // the block hashes computed from the verified bytes are the image's from now on
    let want: String = data
        .chunks(BLOCK)
        .map(|b| format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b)))
        .collect();
    assert_eq!(recorded_block_hashes(&rig, &id), Some((BLOCK as i64, want)));
    // after a restart the blocks are read back against them and served without the store
    workload::kill_dataplane(&rig.g);
    let before = rig.store_bytes();
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(rig.store_bytes(), before, "the store was read again");
}

#[test]
fn an_image_without_block_hashes_read_wrong_is_never_completed_nor_kept() {
    let rig = Rig::start("");
    let data = random_bytes(3 * MIB);
    let id = rig.image(&data);
    drop_block_hashes(&rig, &id);
    rig.proxy.set(Mode::Corrupt { at: 4000 });
    let (status, body) = rig.download(&id);
    assert!(
        status == 503 || body.len() < data.len(),
        "a download of wrong bytes ended cleanly ({status}, {} bytes)",
        body.len()
    );
    assert!(rig.metric("glint_dp_cache_verify_failures_total{source=\"store\"}") >= 1.0);
    assert!(rig.cached_blocks().is_empty(), "blocks of a bad read kept");
    assert_eq!(recorded_block_hashes(&rig, &id), None);
    rig.proxy.set(Mode::Pass);
    let (status, body) = rig.download(&id);
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(rig.cached_blocks().len(), 3);
}

#[test]
fn a_part_of_an_image_without_block_hashes_is_streamed_from_the_store() {
    let rig = Rig::start("");
    let data = random_bytes(3 * MIB);
    let id = rig.image(&data);
    drop_block_hashes(&rig, &id);
    // a part without the image's end could not be verified before it ends: not cached
    let r = rig.get(&id, &[("Range", "bytes=0-99")]);
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().unwrap()[..], &data[..100]);
    assert!(rig.cached_blocks().is_empty());
    assert_eq!(
        rig.metric("glint_dp_cache_uncached_total{reason=\"unhashed\"}"),
        1.0
    );
}

#[test]
fn a_download_that_leaves_mid_fill_does_not_stop_it_for_the_others() {
    use std::io::Read;
    let rig = Rig::start("");
    let data = random_bytes(4 * MIB);
    let id = rig.image(&data);
    rig.proxy.set(Mode::Throttle {
        bytes_per_second: 4 * MIB as u64,
    });
    let before = rig.store_bytes();
    let body = std::thread::scope(|s| {
        s.spawn(|| {
            // reads a little of the first block, then hangs up
            let mut r = rig.get(&id, &[]);
            let mut buf = vec![0u8; 64 << 10];
            r.read_exact(&mut buf).unwrap();
            assert!(buf[..] == data[..buf.len()]);
        });
        std::thread::sleep(Duration::from_millis(150));
        rig.download(&id)
    });
    assert_eq!(body.0, 200);
    assert!(body.1 == data);
    assert_read_once(&rig, before, data.len() as u64, 4);
}

#[test]
fn a_queued_prefetch_survives_a_restart_of_the_data_plane() {
    let rig = Rig::start_with("[dataplane]\njob_lease_seconds = 2", "", None);
    let data = random_bytes(4 * MIB);
    let id = rig.image(&data);
    let listed = || -> serde_json::Value {
        rig.c
            .get(rig.g.url("/v2/cache"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // the store is down: the prefetch cannot run yet
    rig.proxy.set(Mode::Refuse);
    let r = rig
        .c
        .put(rig.g.url(&format!("/v2/cache/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(listed()["queued_images"], serde_json::json!([id]));
    std::thread::sleep(Duration::from_millis(500));
    // the data plane dies; the queue is the control plane's, it is still there
    workload::kill_dataplane(&rig.g);
    assert_eq!(listed()["queued_images"], serde_json::json!([id]));
    rig.proxy.set(Mode::Pass);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = listed();
        let cached = l["cached_images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["image_id"] == id.as_str() && c["size"] == data.len() as u64);
        if cached && l["queued_images"] == serde_json::json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "not prefetched: {l}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = rig.store_bytes();
    assert!(rig.download(&id).1 == data);
    assert_eq!(
        rig.store_bytes(),
        before,
        "a prefetched image was read again"
    );

    // taken off the queue before it ran: never prefetched
    let other = rig.image(&random_bytes(MIB));
    rig.proxy.set(Mode::Refuse);
    let r = rig
        .c
        .put(rig.g.url(&format!("/v2/cache/{other}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = rig
        .c
        .delete(rig.g.url("/v2/cache"))
        .header("x-image-cache-clear-target", "queue")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(listed()["queued_images"], serde_json::json!([]));
    let r = rig
        .c
        .delete(rig.g.url("/v2/cache"))
        .header("x-image-cache-clear-target", "everything")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // the cache itself was left alone by clearing the queue
    assert!(listed()["cached_images"].as_array().unwrap().len() == 1);
}

#[test]
fn the_auditor_quarantines_image_data_damaged_in_a_filesystem_store() {
    // the embedded defaults' filesystem store, with the cache (and so the auditor) on
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glint.toml");
    std::fs::write(
        &config,
        format!(
            "[image_cache]\nimage_cache_dir = \"{}\"\nimage_cache_block_size = {BLOCK}\n\
             image_cache_audit_bytes_per_second = {}\n",
            dir.path().join("cache").display(),
            256 * MIB
        ),
    )
    .unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let c = Client::new();
    let (bad, good) = (random_bytes(3 * MIB), random_bytes(2 * MIB));
    let bad_id = workload::create(&g, "damaged");
    assert_eq!(workload::put(&g, &bad_id, bad.clone()).0, 204);
    let good_id = workload::create(&g, "intact");
    assert_eq!(workload::put(&g, &good_id, good.clone()).0, 204);
    // damaged behind glint's back
    let file = g.store_dir().join(&bad_id);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[MIB + 7] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let series = "glint_dp_cache_verify_failures_total{source=\"local_store\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    while workload::metric(&workload::scrape(&g), series) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the auditor did not find the damage"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // never served again: 503, not the wrong bytes; the intact image is served as before
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .get(g.url(&format!("/v2/images/{bad_id}/file")))
            .send()
            .unwrap();
        if r.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a quarantined location is still served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c
        .get(g.url(&format!("/v2/images/{good_id}/file")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap()[..] == good[..]);
    // the image is still listed active, and deleting it removes the damaged file
    let img: serde_json::Value = c
        .get(g.url(&format!("/v2/images/{bad_id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(img["status"], "active");
    let r = c
        .delete(g.url(&format!("/v2/images/{bad_id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    while file.exists() {
        assert!(
            Instant::now() < deadline,
            "the quarantined data was not removed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
