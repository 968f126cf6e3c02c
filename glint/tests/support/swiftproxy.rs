//! A Swift proxy of a test's own over the all-in-one's storage: Debian's `swift-proxy-server`
//! with a pipeline the test chooses (Keystone auth, or S3 with virtual-host buckets), on a free
//! loopback port, in front of the rings and storage servers of the Swift all-in-one that the
//! test command starts (`GLINT_TEST_SWIFT_SWIFT_AIO_DIR`, from
//! `../shared/services/swift-aio-start.sh`).
//!
//! The proxy runs under a small shell wrapper that stops it when its stdin reaches EOF, i.e.
//! when the test process exits however it exits; `GLINT_KEEP_SWIFT_PROXY=1` keeps its
//! directory (`proxy-server.conf`, `proxy.log`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running proxy.
pub(crate) struct SwiftProxy {
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// Its port.
    pub(crate) port: u16,
    /// Its directory (config and log).
    pub(crate) dir: PathBuf,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

/// Runs the proxy until stdin reaches EOF, then stops it: `$1` config, `$2` log, `$3` dir.
const WRAPPER: &str = r#"
swift-proxy-server "$1" -v </dev/null >>"$2" 2>&1 &
pid=$!
cat >/dev/null
kill -TERM "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "${GLINT_KEEP_SWIFT_PROXY:-0}" = 1 ] || rm -rf "$3"
"#;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SwiftProxy {
    /// Starts a proxy named `name` whose pipeline has `auth` (filter names) between the
    /// all-in-one's cache and large-object filters, with `filters` (their config sections)
    /// added; the system python must import every module of `imports` (comma list).
    pub(crate) fn start(name: &str, auth: &str, filters: &str, imports: &str) -> SwiftProxy {
        let aio = std::env::var("GLINT_TEST_SWIFT_SWIFT_AIO_DIR").expect(
            "GLINT_TEST_SWIFT_SWIFT_AIO_DIR is not set: run ./scripts/test (it starts the Swift \
             all-in-one whose rings and storage servers this proxy uses)",
        );
        let rings = PathBuf::from(&aio).join("etc");
        assert!(
            rings.join("object.ring.gz").is_file(),
            "no Swift rings in {}",
            rings.display()
        );
        // Debian's swift-proxy-server runs under the system python, which must have the modules
        let usable = Command::new("/usr/bin/python3")
            .args(["-c", &format!("import swift.proxy.server, {imports}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            usable,
            "/usr/bin/python3 cannot import swift and {imports}: install them (./scripts/test does)"
        );
        let dir = std::env::temp_dir().join(format!("glint-swift-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let me = Command::new("id").arg("-un").output().unwrap();
        let me = String::from_utf8(me.stdout).unwrap().trim().to_owned();
        // memcached is the all-in-one's
        let conf = format!(
            r#"[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
user = {me}
swift_dir = {rings}
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats {auth} copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

{filters}

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:19011

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
"#,
            rings = rings.display(),
        );
        let conf_path = dir.join("proxy-server.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.join("proxy.log");
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(WRAPPER)
            .arg(format!("swift-{name}-proxy"))
            .arg(&conf_path)
            .arg(&log)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swift-proxy-server");
        let stdin = child.stdin.take().unwrap();
        let c = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = c
                .get(format!("{base}/healthcheck"))
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok_and(|r| r.status() == 200);
            if up {
                break;
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                Instant::now() < deadline && !log.contains("Traceback"),
                "the {name} Swift proxy did not come up; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        SwiftProxy {
            base,
            port,
            dir,
            _child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
        }
    }

    /// The proxy's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }
}
