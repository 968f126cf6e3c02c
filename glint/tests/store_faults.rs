//! Store faults end to end: the real `glint serve` with S3 stores behind the test's
//! [`FaultProxy`] (a TCP forwarder in front of the real servers: Ceph radosgw and Swift's
//! s3api), switched between forwarding, refusing, stalling and cutting while glint uploads
//! and downloads through it. Each test checks the client's answer (Glance's status codes),
//! the image's status, what is left on the server itself (objects, multipart uploads: signed
//! requests of our own, never through glint), and that a stalled store never holds a worker.
//!
//! Timeouts are short (`connect_timeout_seconds = 2`, `read_timeout_seconds = 3`) so each test
//! takes seconds. Needs the servers `./scripts/test` starts (`GLINT_TEST_S3_*`,
//! `GLINT_TEST_S3B_*`, `GLINT_TEST_SWIFT_SWIFT_*`, `GLINT_TEST_CEPH_CEPH_CONF`, PostgreSQL);
//! without them the tests fail loudly.

use controlplane::db::Backend;
use controlplane::db::scratch::ScratchDb;
use loadtest::harness::{Glint, binary, md5_hex, parse_status, random_bytes};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[path = "support/faultproxy.rs"]
mod faultproxy;

use faultproxy::{Bucket, FaultProxy, Mode, Server, env};

const MIB: usize = 1 << 20;
/// `read_timeout_seconds` of the stores behind a proxy.
const READ_TIMEOUT: Duration = Duration::from_secs(3);

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn eventually(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How a [`Rig`] is started.
#[derive(Default)]
struct Options<'a> {
    /// A PostgreSQL scratch database instead of the node's SQLite.
    postgres: bool,
    /// More command-line arguments.
    args: &'a [&'a str],
}

/// One glint with three stores: `fast` (file, the default), `flaky` (radosgw behind
/// `proxy_a`, weight 100) and `spare` (Swift's s3api behind `proxy_b`, weight 50), each S3
/// store in a bucket of its own made for the test. Fields drop in order: glint first.
struct Rig {
    g: Glint,
    proxy_a: FaultProxy,
    proxy_b: FaultProxy,
    bucket_a: Bucket,
    bucket_b: Bucket,
    db: Option<ScratchDb>,
    c: Client,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(opts: Options<'_>) -> Rig {
        let ceph = Server::from_env("GLINT_TEST_S3B");
        let swift = Server::from_env("GLINT_TEST_S3");
        let (bucket_a, bucket_b) = (Bucket::create(&ceph), Bucket::create(&swift));
        let (proxy_a, proxy_b) = (
            FaultProxy::start(&ceph.endpoint),
            FaultProxy::start(&swift.endpoint),
        );
        let db = opts
            .postgres
            .then(|| ScratchDb::create_blocking(Backend::Postgres));
        let dir = tempfile::Builder::new()
            .prefix("glint-sf")
            .tempdir_in("/tmp")
            .unwrap();
        let s3 = |proxy: &FaultProxy, server: &Server, bucket: &Bucket, weight: u32| {
            format!(
                r#"s3_store_host = "{}"
s3_store_access_key = "{}"
s3_store_secret_key = "{}"
s3_store_bucket = "{}"
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
s3_store_thread_pools = 2
connect_timeout_seconds = 2
read_timeout_seconds = {}
weight = {weight}
"#,
                proxy.endpoint(),
                server.access,
                server.secret,
                bucket.name,
                READ_TIMEOUT.as_secs(),
            )
        };
        let database = match &db {
            Some(db) => format!("[database]\nurl = \"{}\"\n", db.url()),
            None => String::new(),
        };
        let config = format!(
            r#"enabled_backends = "fast:file, flaky:s3, spare:s3"
[glance_store]
default_backend = "fast"
{database}
[backends.fast]
filesystem_store_datadir = "{dir}/fast"
[backends.flaky]
{flaky}
[backends.spare]
{spare}
"#,
            dir = dir.path().display(),
            flaky = s3(&proxy_a, &ceph, &bucket_a, 100),
            spare = s3(&proxy_b, &swift, &bucket_b, 50),
        );
        let path = dir.path().join("glint.toml");
        std::fs::write(&path, config).unwrap();
        let mut args = vec!["--config", path.to_str().unwrap()];
        args.extend_from_slice(opts.args);
        let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), &args).expect("glint starts");
        Rig {
            g,
            proxy_a,
            proxy_b,
            bucket_a,
            bucket_b,
            db,
            c: client(),
            _dir: dir,
        }
    }

    fn create(&self) -> String {
        create(&self.g, &self.c)
    }

    fn status(&self, id: &str) -> String {
        show(&self.g, &self.c, id)["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn upload(&self, id: &str, store: &str, data: &[u8]) -> u16 {
        upload(&self.g, &self.c, id, store, data)
    }

    fn download(&self, id: &str, range: Option<&str>) -> (u16, Vec<u8>) {
        let mut req = self.c.get(self.g.url(&format!("/v2/images/{id}/file")));
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    }

    /// A counter's value on the admin `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let text = self
            .c
            .get(self.g.admin_url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Nothing of image `id` in `bucket`: no object, no multipart upload in progress.
    fn assert_nothing_left(&self, bucket: &Bucket, id: &str) {
        assert!(
            bucket.object(id).is_none(),
            "object {id} left in {}",
            bucket.name
        );
        // the abort runs in a task of its own after the client's answer
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut open = bucket.multipart_uploads();
        while !open.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            open = bucket.multipart_uploads();
        }
        assert!(open.is_empty(), "multipart uploads left: {open:?}");
    }
}

fn create(g: &Glint, c: &Client) -> String {
    let r = c
        .post(g.url("/v2/images"))
        .json(&json!({"name": "fault", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().unwrap();
    v["id"].as_str().unwrap().to_owned()
}

fn show(g: &Glint, c: &Client, id: &str) -> Value {
    let r = c.get(g.url(&format!("/v2/images/{id}"))).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn upload(g: &Glint, c: &Client, id: &str, store: &str, data: &[u8]) -> u16 {
    let r = c
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .header("X-Image-Meta-Store", store)
        .body(data.to_vec())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    if status != 204 {
        eprintln!("upload answer {status}: {}", r.text().unwrap_or_default());
    }
    status
}

/// An upload over a raw socket whose body the test paces: the head and the first `first`
/// bytes of the body go out, `meanwhile` runs, then a thread sends the rest while the answer
/// is read (glint may answer before it has read the whole body). `chunked` sends the body
/// with `Transfer-Encoding: chunked` (unknown size: a multipart upload in S3). Returns the
/// status (`None`: the connection ended without an answer) and the time it took.
fn upload_paced(
    g: &Glint,
    id: &str,
    store: &str,
    data: &[u8],
    chunked: bool,
    first: usize,
    meanwhile: impl FnOnce(),
) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(g.public_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", data.len())
    };
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         X-Image-Meta-Store: {store}\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let body = if chunked {
        let mut b = Vec::with_capacity(data.len() + 1024);
        for piece in data.chunks(256 * 1024) {
            b.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            b.extend_from_slice(piece);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"0\r\n\r\n");
        b
    } else {
        data.to_vec()
    };
    let first = first.min(body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..first]).unwrap();
    meanwhile();
    let mut w = s.try_clone().unwrap();
    let rest = body[first..].to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&rest);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let took = started.elapsed();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    (parse_status(&answer), took)
}

// === the tests ===

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn a_store_going_down_mid_upload_answers_503_and_leaves_nothing_behind() {
    let rig = Rig::start(Options::default());

    // 1. a single PUT (declared size below s3_store_large_object_size): the store goes
    //    away once a part of the body has reached it
    let id = rig.create();
    let data = random_bytes(4 * MIB + 123);
    let before = rig.proxy_a.carried_up();
    let (status, took) = upload_paced(&rig.g, &id, "flaky", &data, false, 2 * MIB + 7, || {
        eventually(
            "a part of the body reached the store",
            Duration::from_secs(10),
            || rig.proxy_a.carried_up() >= before + MIB as u64,
        );
        rig.proxy_a.set(Mode::Refuse);
    });
    assert_eq!(status, Some(503), "single PUT: {}", rig.g.log());
    assert!(took < Duration::from_secs(15), "answered in {took:?}");
    assert_eq!(rig.status(&id), "queued");
    rig.proxy_a.set(Mode::Pass);
    rig.assert_nothing_left(&rig.bucket_a, &id);

    // 2. a chunked upload (multipart): every connection is cut after 1 MiB towards the
    //    store, so each 5 MiB part fails (retries included); the small requests (create,
    //    abort) still pass, so the multipart upload is aborted
    let id = rig.create();
    let data = random_bytes(12 * MIB);
    rig.proxy_a.set(Mode::Cut {
        after_bytes: MIB as u64,
    });
    let (status, took) = upload_paced(&rig.g, &id, "flaky", &data, true, 0, || {});
    assert_eq!(status, Some(503), "multipart: {}", rig.g.log());
    assert!(took < Duration::from_secs(20), "answered in {took:?}");
    assert_eq!(rig.status(&id), "queued");
    rig.proxy_a.set(Mode::Pass);
    rig.assert_nothing_left(&rig.bucket_a, &id);

    // 3. the store is back: the same image uploads (multipart) and reads back whole
    assert_eq!(rig.upload(&id, "flaky", &data), 204, "{}", rig.g.log());
    assert!(rig.download(&id, None).1 == data);
    assert!(rig.bucket_a.multipart_uploads().is_empty());
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn a_multipart_upload_cut_off_by_a_store_outage_is_aborted_once_the_store_is_back() {
    let rig = Rig::start(Options::default());
    let id = rig.create();
    let data = random_bytes(12 * MIB);
    // the first 5 MiB part reaches the store, then the store goes down for a while
    let before = rig.proxy_a.carried_up();
    let (status, _) = upload_paced(&rig.g, &id, "flaky", &data, true, 7 * MIB, || {
        eventually(
            "the first part reached the store",
            Duration::from_secs(10),
            || rig.proxy_a.carried_up() >= before + 5 * MIB as u64,
        );
        rig.proxy_a.set(Mode::Refuse);
    });
    assert_eq!(status, Some(503), "{}", rig.g.log());
    assert_eq!(rig.status(&id), "queued");
    rig.proxy_a.set(Mode::Pass);
    assert!(rig.bucket_a.object(&id).is_none());
    eventually(
        "the multipart upload is aborted once the store answers again",
        Duration::from_secs(10),
        || rig.bucket_a.multipart_uploads().is_empty(),
    );
}

/// Runs `slow` on a thread of its own and, while it is still running, checks that the data
/// plane answers `GET /versions` and a download from the file store at once. Returns what
/// `slow` returned and how long it took.
fn while_hanging<T: Send + 'static>(
    rig: &Rig,
    file_image: (&str, &[u8]),
    started: impl FnOnce(),
    slow: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let t0 = Instant::now();
    let h = std::thread::spawn(move || {
        let out = slow();
        (out, t0.elapsed())
    });
    started();
    let mut answered_meanwhile = 0;
    for _ in 0..3 {
        if h.is_finished() {
            break;
        }
        let t = Instant::now();
        let r = rig.c.get(rig.g.url("/versions")).send().unwrap();
        assert_eq!(r.status(), 200);
        let (status, got) = rig.download(file_image.0, None);
        assert_eq!(status, 200);
        assert!(got == file_image.1);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "the data plane answered in {:?} while a store hangs",
            t.elapsed()
        );
        if !h.is_finished() {
            answered_meanwhile += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        answered_meanwhile > 0,
        "the stalled request ended too early"
    );
    h.join().unwrap()
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn a_stalled_store_times_out_and_never_holds_the_worker() {
    // one worker: a request hanging on the store must not keep it from the others
    let rig = Rig::start(Options {
        args: &["--workers", "1"],
        ..Options::default()
    });
    let local = rig.create();
    let local_data = random_bytes(MIB);
    assert_eq!(rig.upload(&local, "fast", &local_data), 204);
    let remote = rig.create();
    let remote_data = random_bytes(4 * MIB);
    assert_eq!(rig.upload(&remote, "flaky", &remote_data), 204);

    // an upload into a store that reads everything and never answers
    rig.proxy_a.set(Mode::Stall);
    let id = rig.create();
    let (g, i) = (rig.g.public_addr(), id.clone());
    let (status, took) = while_hanging(
        &rig,
        (&local, &local_data),
        || {
            eventually("the upload started", Duration::from_secs(10), || {
                rig.status(&id) == "saving"
            })
        },
        move || {
            let c = client();
            let r = c
                .put(format!("http://{g}/v2/images/{i}/file"))
                .header("Content-Type", "application/octet-stream")
                .header("X-Image-Meta-Store", "flaky")
                .body(random_bytes(2 * MIB))
                .send();
            r.map(|r| r.status().as_u16()).ok()
        },
    );
    assert_eq!(status, Some(503), "{}", rig.g.log());
    // one read timeout: the object a whole body may have made is its leftover's job, not
    // a second wait here
    assert!(
        took >= READ_TIMEOUT && took < READ_TIMEOUT * 8 / 5,
        "upload into a stalled store ended after {took:?}"
    );
    assert_eq!(rig.status(&id), "queued");

    // a download from it: no answer head from the store
    let (g, r) = (rig.g.public_addr(), remote.clone());
    let (status, took) = while_hanging(
        &rig,
        (&local, &local_data),
        || std::thread::sleep(Duration::from_millis(300)),
        move || {
            let c = client();
            let r = c.get(format!("http://{g}/v2/images/{r}/file")).send();
            r.map(|r| r.status().as_u16()).ok()
        },
    );
    assert_eq!(status, Some(503));
    assert!(
        took >= READ_TIMEOUT && took < READ_TIMEOUT * 4,
        "download from a stalled store ended after {took:?}"
    );

    // the store hangs mid-answer: the client gets a cut connection, not a short 200
    rig.proxy_a.set(Mode::StallAfter {
        answer_bytes: MIB as u64,
    });
    let t0 = Instant::now();
    let mut s = TcpStream::connect(rig.g.public_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("GET /v2/images/{remote}/file HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        match s.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break "read timed out",
            Err(_) => break "reset",
        }
    };
    let took = t0.elapsed();
    assert_ne!(ended, "read timed out", "glint kept the connection open");
    assert_eq!(parse_status(&got), Some(200));
    let head = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = got.len() - head;
    assert!(
        body < remote_data.len(),
        "{body} of {} bytes: the stall came too late",
        remote_data.len()
    );
    assert!(took < READ_TIMEOUT * 4, "cut after {took:?}");

    // the store is back: both work again, and the stalled upload left nothing
    rig.proxy_a.set(Mode::Pass);
    assert!(rig.download(&remote, None).1 == remote_data);
    rig.assert_nothing_left(&rig.bucket_a, &id);
}

/// The `image_locations` table, written directly (as copy-image will leave it).
struct Locations {
    rt: tokio::runtime::Runtime,
    conn: sqlx::PgConnection,
}

impl Locations {
    fn connect(url: &str) -> Locations {
        use sqlx::Connection;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(sqlx::PgConnection::connect(url)).unwrap();
        Locations { rt, conn }
    }

    /// Appends an active location in `store` at `url` and bumps the image's version (so the
    /// control planes' image caches see it).
    fn add(&mut self, image: &str, store: &str, url: &str) {
        let now = chrono::Utc::now().timestamp_micros();
        self.rt.block_on(async {
            let inserted = sqlx::query(
                "INSERT INTO image_locations (image_id, url, store_id, status, position, \
                 created_at, updated_at) SELECT $1, $2, $3, 'active', MAX(position) + 1, $4, $4 \
                 FROM image_locations WHERE image_id = $1",
            )
            .bind(image)
            .bind(url)
            .bind(store)
            .bind(now)
            .execute(&mut self.conn)
            .await
            .unwrap();
            assert_eq!(inserted.rows_affected(), 1);
            sqlx::query("UPDATE images SET version = version + 1, updated_at = $2 WHERE id = $1")
                .bind(image)
                .bind(now)
                .execute(&mut self.conn)
                .await
                .unwrap();
        });
    }
}

#[test]
#[ignore = "needs the S3 servers and PostgreSQL: run through ./scripts/test"]
fn a_download_fails_over_to_the_next_store_and_503_when_none_answers() {
    let rig = Rig::start(Options {
        postgres: true,
        ..Options::default()
    });
    let id = rig.create();
    let data = random_bytes(3 * MIB + 5);
    assert_eq!(rig.upload(&id, "flaky", &data), 204);
    // a second copy, the way copy-image will leave it: the bytes in spare's bucket under
    // the same key, and a location row for it
    rig.bucket_b.put(&id, &data);
    let url = format!(
        "s3://{}/{}/{id}",
        rig.proxy_b.endpoint().trim_start_matches("http://"),
        rig.bucket_b.name
    );
    Locations::connect(rig.db.as_ref().unwrap().url()).add(&id, "spare", &url);
    assert_eq!(show(&rig.g, &rig.c, &id)["stores"], "flaky,spare");

    // flaky (the heavier store) is down: spare serves, whole and ranged
    let failovers = rig.metric("glint_dp_download_failovers_total");
    rig.proxy_a.set(Mode::Refuse);
    let (status, got) = rig.download(&id, None);
    assert_eq!(status, 200, "{}", rig.g.log());
    assert!(got == data, "bytes from spare differ");
    let (status, got) = rig.download(&id, Some("bytes=1000000-2000000"));
    assert_eq!(status, 206);
    assert!(got[..] == data[1_000_000..=2_000_000], "range from spare");
    assert!(
        rig.metric("glint_dp_download_failovers_total") >= failovers + 2.0,
        "failovers counted"
    );

    // both down: 503
    rig.proxy_b.set(Mode::Refuse);
    assert_eq!(rig.download(&id, None).0, 503);
    assert_eq!(rig.download(&id, Some("bytes=0-99")).0, 503);

    // flaky is back: it serves again
    rig.proxy_a.set(Mode::Pass);
    let (status, got) = rig.download(&id, None);
    assert_eq!(status, 200);
    assert!(got == data);
    rig.proxy_b.set(Mode::Pass);
}

#[test]
#[ignore = "needs the S3 servers: run through ./scripts/test"]
fn a_store_5xx_is_retried() {
    let rig = Rig::start(Options::default());
    let id = rig.create();
    let data = random_bytes(MIB + 17);
    assert_eq!(rig.upload(&id, "flaky", &data), 204);
    let failovers = rig.metric("glint_dp_download_failovers_total");
    // glint's pooled connections go; the next new one is answered 503
    rig.proxy_a.set(Mode::Fail503 { answers: 1 });
    rig.proxy_a.reset_open();
    let (status, got) = rig.download(&id, None);
    assert_eq!(status, 200, "{}", rig.g.log());
    assert!(got == data);
    assert_eq!(rig.proxy_a.injected(), 1, "the 503 was given");
    assert_eq!(
        rig.metric("glint_dp_download_failovers_total"),
        failovers,
        "retried in the store, not failed over"
    );
}

/// Runs `radosgw-admin` on the test cluster.
fn radosgw_admin(args: &[&str]) -> String {
    let conf = env("GLINT_TEST_CEPH_CEPH_CONF");
    let out = std::process::Command::new("radosgw-admin")
        .arg("--conf")
        .arg(&conf)
        .args(args)
        .output()
        .expect("radosgw-admin runs");
    assert!(
        out.status.success(),
        "radosgw-admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs radosgw: run through ./scripts/test"]
fn a_full_store_answers_413_and_keeps_the_image_queued() {
    let rig = Rig::start(Options::default());
    // flaky's bucket may hold 2 MiB
    let b = rig.bucket_a.name.as_str();
    let quota = (2 * MIB).to_string();
    radosgw_admin(&[
        "quota",
        "set",
        "--quota-scope=bucket",
        &format!("--bucket={b}"),
        &format!("--max-size={quota}"),
    ]);
    radosgw_admin(&[
        "quota",
        "enable",
        "--quota-scope=bucket",
        &format!("--bucket={b}"),
    ]);

    // under the quota: stored
    let small = rig.create();
    let data = random_bytes(100_000);
    assert_eq!(rig.upload(&small, "flaky", &data), 204, "{}", rig.g.log());

    // over it, sized (one PUT) and chunked (multipart): 413, queued, nothing left
    let id = rig.create();
    let big = random_bytes(3 * MIB);
    assert_eq!(rig.upload(&id, "flaky", &big), 413, "{}", rig.g.log());
    assert_eq!(rig.status(&id), "queued");
    rig.assert_nothing_left(&rig.bucket_a, &id);
    let big = random_bytes(11 * MIB);
    let (status, _) = upload_paced(&rig.g, &id, "flaky", &big, true, 0, || {});
    assert_eq!(status, Some(413), "{}", rig.g.log());
    assert_eq!(rig.status(&id), "queued");
    rig.assert_nothing_left(&rig.bucket_a, &id);
    assert_eq!(rig.bucket_a.keys(), [small]);
}

// === credentials refused at start ===

/// A Swift container on the Swift all-in-one, looked at with the native API (tempauth).
struct SwiftContainer {
    storage: String,
    token: String,
    name: String,
    http: Client,
}

impl SwiftContainer {
    fn new(name: &str) -> SwiftContainer {
        let http = client();
        let r = http
            .get(env("GLINT_TEST_SWIFT_SWIFT_AUTH_URL"))
            .header("X-Auth-User", env("GLINT_TEST_SWIFT_SWIFT_USER"))
            .header("X-Auth-Key", env("GLINT_TEST_SWIFT_SWIFT_KEY"))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "swift auth: {}", r.status());
        let header = |n: &str| r.headers()[n].to_str().unwrap().to_owned();
        SwiftContainer {
            storage: header("x-storage-url"),
            token: header("x-auth-token"),
            name: name.to_owned(),
            http,
        }
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        let r = self
            .http
            .get(format!("{}/{}/{key}", self.storage, self.name))
            .header("X-Auth-Token", &self.token)
            .send()
            .unwrap();
        match r.status().as_u16() {
            200 => Some(r.bytes().unwrap().to_vec()),
            404 => None,
            s => panic!("GET {key}: {s}"),
        }
    }
}

impl Drop for SwiftContainer {
    fn drop(&mut self) {
        let base = format!("{}/{}", self.storage, self.name);
        let listed = self
            .http
            .get(&base)
            .header("X-Auth-Token", &self.token)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        for key in listed.lines().filter(|l| !l.is_empty()) {
            let _ = self
                .http
                .delete(format!("{base}/{key}"))
                .header("X-Auth-Token", &self.token)
                .send();
        }
        let _ = self
            .http
            .delete(&base)
            .header("X-Auth-Token", &self.token)
            .send();
    }
}

#[test]
#[ignore = "needs the S3 and Swift servers: run through ./scripts/test"]
fn stores_refusing_glints_credentials_are_named_and_the_others_keep_working() {
    let ceph = Server::from_env("GLINT_TEST_S3B");
    let bucket = Bucket::create(&ceph);
    let container = SwiftContainer::new(&format!("glint-{}", faultproxy::hex_suffix(12)));
    let dir = tempfile::Builder::new()
        .prefix("glint-sf")
        .tempdir_in("/tmp")
        .unwrap();
    let config = format!(
        r#"enabled_backends = "fast:file, bads3:s3, badswift:swift, swift:swift"
[glance_store]
default_backend = "fast"
[backends.fast]
filesystem_store_datadir = "{dir}/fast"
[backends.bads3]
s3_store_host = "{endpoint}"
s3_store_access_key = "{access}"
s3_store_secret_key = "not-the-secret"
s3_store_bucket = "{bucket}"
connect_timeout_seconds = 2
read_timeout_seconds = 3
[backends.badswift]
swift_store_auth_address = "{auth}"
swift_store_auth_version = "1"
swift_store_user = "{user}"
swift_store_key = "not-the-key"
swift_store_container = "{container}"
swift_store_create_container_on_put = true
connect_timeout_seconds = 2
read_timeout_seconds = 3
[backends.swift]
swift_store_auth_address = "{auth}"
swift_store_auth_version = "1"
swift_store_user = "{user}"
swift_store_key = "{key}"
swift_store_container = "{container}"
swift_store_create_container_on_put = true
"#,
        dir = dir.path().display(),
        endpoint = ceph.endpoint,
        access = ceph.access,
        bucket = bucket.name,
        auth = env("GLINT_TEST_SWIFT_SWIFT_AUTH_URL"),
        user = env("GLINT_TEST_SWIFT_SWIFT_USER"),
        key = env("GLINT_TEST_SWIFT_SWIFT_KEY"),
        container = container.name,
    );
    let path = dir.path().join("glint.toml");
    std::fs::write(&path, config).unwrap();
    let g = Glint::start(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", path.to_str().unwrap()],
    )
    .expect("glint starts with two stores refusing it");
    let c = client();

    // each refusing store is named in the log, with why
    let log = g.log();
    for (store, why) in [("bads3", "403"), ("badswift", "401")] {
        assert!(
            log.lines()
                .any(|l| l.contains("store unavailable") && l.contains(store) && l.contains(why)),
            "{store} named with {why} in the log:\n{log}"
        );
    }

    // uploads to them: 503, the image stays queued
    let id = create(&g, &c);
    for store in ["bads3", "badswift"] {
        assert_eq!(upload(&g, &c, &id, store, b"data"), 503, "{store}");
        assert_eq!(show(&g, &c, &id)["status"], "queued");
    }
    assert!(bucket.keys().is_empty());

    // the others work: the file store, and Swift with the right key
    let data = random_bytes(500_000);
    for store in ["swift", "fast"] {
        let id = create(&g, &c);
        assert_eq!(
            upload(&g, &c, &id, store, &data),
            204,
            "{store}\n{}",
            g.log()
        );
        let img = show(&g, &c, &id);
        assert_eq!(img["stores"], store);
        assert_eq!(img["checksum"], md5_hex(&data));
        let r = c
            .get(g.url(&format!("/v2/images/{id}/file")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().unwrap()[..] == data[..], "{store}: bytes differ");
        if store == "swift" {
            assert!(
                container.object(&id) == Some(data.clone()),
                "in the container"
            );
        }
    }
    drop(g);
}
