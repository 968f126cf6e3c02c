//! What the store-fault tests put between glint and a real store server, and how they look at
//! that server behind glint's back.
//!
//! [`FaultProxy`] is a TCP forwarder on a loopback port (std threads, two per connection)
//! whose [`Mode`] the test switches at any time: forward, refuse, stall (at once or after some
//! bytes of an answer), cut each connection after some bytes of a request, or answer the next
//! new connections `503`. A switch applies to the
//! connections already open as well as to new ones, so "the store went down in the middle of
//! an upload" is one call. The proxy knows nothing of HTTP except for the injected `503`.
//!
//! [`Server`] and [`Bucket`] are the other half: an S3 server as the test command exported it
//! (`GLINT_TEST_<prefix>_*`), and one bucket on it looked at with signed requests of our own
//! (objects, multipart uploads in progress), created and removed again by the test.

#![allow(dead_code)]

use reqwest::blocking::Client;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

// === impl FaultProxy ===

/// What the proxy does with the bytes it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forward both ways.
    Pass,
    /// The store is down: open connections are reset at once, new ones as soon as accepted.
    Refuse,
    /// The store hangs: what glint sends is read and dropped and nothing is answered, on open
    /// connections as on new ones.
    Stall,
    /// Every connection forwards `answer_bytes` more of the server's answers since this mode
    /// was set, then stalls (as [`Mode::Stall`]): a store that hangs mid-stream.
    StallAfter {
        /// Bytes each connection may still carry from the server.
        answer_bytes: u64,
    },
    /// Every connection is cut (reset both ways) once it has carried more than `after_bytes`
    /// towards the server since this mode was set; smaller requests pass.
    Cut {
        /// Bytes each connection may still carry towards the server.
        after_bytes: u64,
    },
    /// Every connection flips one byte of the server's answers, `at` bytes after this mode
    /// was set (then forwards as [`Mode::Pass`]): a store that returns wrong bytes.
    Corrupt {
        /// Where, counted in each connection's answer bytes since the switch.
        at: u64,
    },
    /// The server's answers are forwarded at most `bytes_per_second` on each connection: a
    /// slow store.
    Throttle {
        /// The rate.
        bytes_per_second: u64,
    },
    /// The next `answers` new connections get `503 Service Unavailable` (an S3 error body,
    /// `Connection: close`) to their first request, read whole first; then as [`Mode::Pass`].
    Fail503 {
        /// How many such answers are left.
        answers: u32,
    },
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// Bumped at every switch (a [`Mode::Cut`] or [`Mode::StallAfter`] budget counts from its
    /// own switch).
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Every open connection's sockets, to cut them.
    open: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_id: AtomicU64,
    stop: AtomicBool,
    accepted: AtomicU64,
    injected: AtomicU64,
    /// Bytes forwarded towards the server.
    carried_up: AtomicU64,
    /// Bytes forwarded from the server (its answers: what glint read from the store).
    carried_down: AtomicU64,
}

/// A TCP forwarder to one server, with switchable faults. Dropping it resets every connection.
#[derive(Debug)]
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port` or
    /// `host:port`), in [`Mode::Pass`].
    pub(crate) fn start(upstream: &str) -> FaultProxy {
        let hostport = upstream
            .split_once("://")
            .map_or(upstream, |(_, r)| r)
            .trim_end_matches('/');
        let upstream: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .unwrap_or_else(|e| panic!("fault proxy upstream {hostport:?}: {e}"))
            .next()
            .expect("an address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                mode: Mode::Pass,
                generation: 0,
            }),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            carried_up: AtomicU64::new(0),
            carried_down: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("faultproxy-accept".into())
            .spawn(move || accept_loop(listener, s))
            .unwrap();
        FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>`: what glint's store is configured with.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode; [`Mode::Refuse`] also resets every open connection.
    pub(crate) fn set(&self, mode: Mode) {
        {
            let mut st = self.shared.state.lock().unwrap();
            st.mode = mode;
            st.generation += 1;
        }
        if mode == Mode::Refuse {
            self.reset_open();
        }
    }

    /// Resets every open connection (glint's pooled ones too), whatever the mode.
    pub(crate) fn reset_open(&self) {
        let all: Vec<u64> = self.shared.open.lock().unwrap().keys().copied().collect();
        for id in all {
            kill(&self.shared, id);
        }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Bytes forwarded towards the server so far.
    pub(crate) fn carried_up(&self) -> u64 {
        self.shared.carried_up.load(Ordering::Relaxed)
    }

    /// Bytes forwarded from the server so far (heads and bodies of its answers).
    pub(crate) fn carried_down(&self) -> u64 {
        self.shared.carried_down.load(Ordering::Relaxed)
    }

    /// `503` answers given so far ([`Mode::Fail503`]).
    pub(crate) fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // wake the accept loop
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        self.reset_open();
    }
}

impl Shared {
    fn mode(&self) -> (Mode, u64) {
        let st = self.state.lock().unwrap();
        (st.mode, st.generation)
    }

    fn register(&self, sockets: &[&TcpStream]) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clones = sockets.iter().filter_map(|s| s.try_clone().ok()).collect();
        self.open.lock().unwrap().insert(id, clones);
        id
    }
}

/// Resets connection `id` both ways (the sockets close with `SO_LINGER` 0 once its threads
/// let go of them).
fn kill(shared: &Shared, id: u64) {
    let sockets = shared.open.lock().unwrap().remove(&id);
    for s in sockets.into_iter().flatten() {
        let _ = rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO));
        let _ = s.shutdown(Shutdown::Both);
    }
}

fn reset(s: TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO));
    drop(s);
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let Ok(client) = conn else { continue };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let mode = {
            let mut st = shared.state.lock().unwrap();
            let mode = st.mode;
            if let Mode::Fail503 { answers } = &mut st.mode
                && *answers > 0
            {
                *answers -= 1;
            }
            mode
        };
        let s = shared.clone();
        match mode {
            Mode::Refuse => reset(client),
            Mode::Stall => {
                let id = s.register(&[&client]);
                std::thread::spawn(move || {
                    let mut c = client;
                    let mut buf = vec![0u8; 64 * 1024];
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                    s.open.lock().unwrap().remove(&id);
                });
            }
            Mode::Fail503 { answers } if answers > 0 => {
                std::thread::spawn(move || answer_503(client, &s));
            }
            Mode::Pass
            | Mode::Cut { .. }
            | Mode::StallAfter { .. }
            | Mode::Corrupt { .. }
            | Mode::Throttle { .. }
            | Mode::Fail503 { .. } => {
                std::thread::spawn(move || forward(client, s));
            }
        }
    }
}

/// Reads one request (head, then `Content-Length` bytes) and answers 503.
fn answer_503(mut c: TcpStream, shared: &Shared) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match c.read(&mut buf) {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut left = length.saturating_sub(got.len() - head_end);
    while left > 0 {
        match c.read(&mut buf[..left.min(64 * 1024)]) {
            Ok(n) if n > 0 => left -= n,
            _ => return,
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>\
                <Message>injected by the test's fault proxy</Message></Error>";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if c.write_all(answer.as_bytes()).is_ok() {
        shared.injected.fetch_add(1, Ordering::Relaxed);
    }
    let _ = c.shutdown(Shutdown::Write);
    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
}

fn forward(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) else {
        reset(client);
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let id = shared.register(&[&client, &server]);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        kill(&shared, id);
        return;
    };
    let s = shared.clone();
    let down = std::thread::spawn(move || pump(s2, c2, false, &s, id));
    pump(client, server, true, &shared, id);
    let _ = down.join();
    shared.open.lock().unwrap().remove(&id);
}

/// Copies `src` to `dst` under the mode of the moment; `up` is the direction towards the
/// server.
fn pump(mut src: TcpStream, mut dst: TcpStream, up: bool, shared: &Shared, id: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut generation = u64::MAX;
    // bytes carried since the last switch (a budget counts from its own switch)
    let mut carried = 0u64;
    let mut stalled = false;
    loop {
        let n = match src.read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => {
                let _ = dst.shutdown(Shutdown::Write);
                return;
            }
        };
        let (mode, g) = shared.mode();
        if g != generation {
            generation = g;
            carried = 0;
            stalled = false;
        }
        match mode {
            Mode::Refuse => {
                kill(shared, id);
                return;
            }
            Mode::Stall => continue,
            Mode::Cut { after_bytes } if up => {
                if carried + n as u64 > after_bytes {
                    let room = (after_bytes - carried) as usize;
                    let _ = dst.write_all(&buf[..room]);
                    kill(shared, id);
                    return;
                }
                carried += n as u64;
            }
            Mode::StallAfter { .. } if stalled => continue,
            Mode::StallAfter { answer_bytes } if !up => {
                if carried + n as u64 > answer_bytes {
                    let room = (answer_bytes - carried) as usize;
                    let _ = dst.write_all(&buf[..room]);
                    stalled = true;
                    continue;
                }
                carried += n as u64;
            }
            Mode::Corrupt { at } if !up => {
                if (carried..carried + n as u64).contains(&at) {
                    buf[(at - carried) as usize] ^= 0x5a;
                }
                carried += n as u64;
            }
            Mode::Throttle { bytes_per_second } if !up => {
                let pause = n as f64 / bytes_per_second.max(1) as f64;
                std::thread::sleep(Duration::from_secs_f64(pause));
            }
            _ => {}
        }
        if dst.write_all(&buf[..n]).is_err() {
            let _ = src.shutdown(Shutdown::Read);
            return;
        }
        let counter = if up {
            &shared.carried_up
        } else {
            &shared.carried_down
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

// === impl Server, Bucket ===

/// One S3 server, as the test command exported it.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) endpoint: String,
    pub(crate) access: String,
    pub(crate) secret: String,
}

impl Server {
    /// `<prefix>_ENDPOINT`, `_ACCESS_KEY`, `_SECRET_KEY`; panics (failing the test) without.
    pub(crate) fn from_env(prefix: &str) -> Server {
        Server {
            endpoint: env(&format!("{prefix}_ENDPOINT")),
            access: env(&format!("{prefix}_ACCESS_KEY")),
            secret: env(&format!("{prefix}_SECRET_KEY")),
        }
    }
}

/// A variable the test command exports; panics (failing the test) without it.
pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test (it starts the store servers)")
    })
}

/// A random lower-case hex string of `n` characters (bucket names, suffixes).
pub(crate) fn hex_suffix(n: usize) -> String {
    let b = loadtest::harness::random_bytes(n.div_ceil(2));
    let s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s[..n].to_owned()
}

/// One bucket of a [`Server`], looked at directly (never through glint). Created by
/// [`Bucket::create`] (dropping it then removes what is left in it, objects and multipart
/// uploads, and the bucket itself) or [`Bucket::open`]ed by name (left alone).
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) name: String,
    /// Made by [`Bucket::create`]: removed on drop.
    owned: bool,
    bucket: rusty_s3::Bucket,
    creds: rusty_s3::Credentials,
    http: Client,
}

impl Bucket {
    /// A new bucket `glint-<suffix>` on `server`, created now.
    pub(crate) fn create(server: &Server) -> Bucket {
        let mut b = Bucket::open(server, &format!("glint-{}", hex_suffix(12)));
        b.owned = true;
        use rusty_s3::S3Action;
        let url = b
            .bucket
            .create_bucket(&b.creds)
            .sign(Duration::from_secs(60));
        let r = b.http.put(url).send().unwrap();
        assert_eq!(r.status(), 200, "create bucket {}: {:?}", b.name, r.text());
        b
    }

    /// A bucket by name (not created).
    pub(crate) fn open(server: &Server, name: &str) -> Bucket {
        Bucket {
            name: name.to_owned(),
            owned: false,
            bucket: rusty_s3::Bucket::new(
                server.endpoint.parse().unwrap(),
                rusty_s3::UrlStyle::Path,
                name.to_owned(),
                "us-east-1",
            )
            .unwrap(),
            creds: rusty_s3::Credentials::new(server.access.clone(), server.secret.clone()),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// Every key in the bucket.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.try_keys().expect("list objects")
    }

    fn try_keys(&self) -> Result<Vec<String>, String> {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .list_objects_v2(Some(&self.creds))
            .sign(Duration::from_secs(60));
        let r = self.http.get(url).send().map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            404 => return Ok(Vec::new()),
            200 => {}
            s => return Err(format!("list objects of {}: {s}", self.name)),
        }
        let text = r.text().map_err(|e| e.to_string())?;
        let listed =
            rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| e.to_string())?;
        Ok(listed.contents.into_iter().map(|c| c.key).collect())
    }

    /// The object's bytes, `None` if there is none.
    pub(crate) fn object(&self, key: &str) -> Option<Vec<u8>> {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .get_object(Some(&self.creds), key)
            .sign(Duration::from_secs(60));
        let r = self.http.get(url).send().unwrap();
        match r.status().as_u16() {
            // a body cut short: the object is being deleted under the read, still there
            200 => Some(r.bytes().map(|b| b.to_vec()).unwrap_or_default()),
            404 => None,
            s => panic!("GET {key}: {s}"),
        }
    }

    /// Whether the object exists (HEAD: a GET could race the deletion it waits for).
    pub(crate) fn exists(&self, key: &str) -> bool {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .head_object(Some(&self.creds), key)
            .sign(Duration::from_secs(60));
        match self.http.head(url).send().unwrap().status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("HEAD {key}: {s}"),
        }
    }

    /// Writes an object.
    pub(crate) fn put(&self, key: &str, data: &[u8]) {
        use rusty_s3::S3Action;
        let url = self
            .bucket
            .put_object(Some(&self.creds), key)
            .sign(Duration::from_secs(60));
        let r = self.http.put(url).body(data.to_vec()).send().unwrap();
        assert_eq!(r.status(), 200, "PUT {key}: {:?}", r.text());
    }

    /// Multipart uploads started and neither completed nor aborted: `(key, upload id)`.
    pub(crate) fn multipart_uploads(&self) -> Vec<(String, String)> {
        self.try_multipart_uploads()
            .expect("list multipart uploads")
    }

    fn try_multipart_uploads(&self) -> Result<Vec<(String, String)>, String> {
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.bucket.base_url().clone(),
            self.creds.key(),
            self.creds.secret(),
            None,
            self.bucket.region(),
            60,
            [("uploads", "")].into_iter(),
            std::iter::empty(),
        );
        let r = self.http.get(url).send().map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            404 => return Ok(Vec::new()),
            200 => {}
            s => return Err(format!("list multipart uploads of {}: {s}", self.name)),
        }
        /// ListMultipartUploads' answer, the parts read here.
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Listing {
            #[serde(rename = "Upload")]
            uploads: Vec<Upload>,
        }
        #[derive(serde::Deserialize)]
        struct Upload {
            #[serde(rename = "Key")]
            key: String,
            #[serde(rename = "UploadId")]
            upload_id: String,
        }
        let text = r.text().map_err(|e| e.to_string())?;
        let listing: Listing = quick_xml::de::from_str(&text).map_err(|e| e.to_string())?;
        Ok(listing
            .uploads
            .into_iter()
            .map(|u| (u.key, u.upload_id))
            .collect())
    }

    /// Removes every object and multipart upload, then the bucket (best effort: what fails
    /// is only reported).
    fn remove(&self) -> Result<(), String> {
        use rusty_s3::S3Action;
        let send = |url: String| {
            self.http
                .delete(url)
                .send()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for (key, id) in self.try_multipart_uploads()? {
            let action = self
                .bucket
                .abort_multipart_upload(Some(&self.creds), &key, &id);
            send(action.sign(Duration::from_secs(60)).to_string())?;
        }
        for key in self.try_keys()? {
            let action = self.bucket.delete_object(Some(&self.creds), &key);
            send(action.sign(Duration::from_secs(60)).to_string())?;
        }
        send(
            self.bucket
                .delete_bucket(&self.creds)
                .sign(Duration::from_secs(60))
                .to_string(),
        )
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = self.remove()
        {
            eprintln!("could not remove bucket {}: {e}", self.name);
        }
    }
}
