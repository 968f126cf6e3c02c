//! The data routes' handlers, below end-to-end: a real control plane (in-process, its own
//! tokio threads, SQLite, the real channel and API sockets in a temp directory) and one
//! data-plane worker (the runtime setup, worker state and `serve_connection` the binary
//! uses) on a loopback port. Each failure answer the handlers give is checked here, and so is
//! every rule both planes apply: the version table, request ids, messages and their bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[path = "support/inproc.rs"]
mod inproc;

use inproc::{Options, Stack};

/// Requests against a [`Stack`] (an inherent impl: the type is this test crate's).
impl Stack {
    /// One request on a fresh connection (`Connection: close`); the whole answer.
    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: glint\r\nConnection: close\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "PUT" || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        Answer::parse(&raw)
    }

    fn create(&self, body: &str) -> String {
        let a = self.call(
            "POST",
            "/v2/images",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(a.status, 201, "{}", a.text());
        a.json()["id"].as_str().unwrap().to_owned()
    }

    fn create_image(&self) -> String {
        self.create(r#"{"name": "x", "disk_format": "raw", "container_format": "bare"}"#)
    }

    fn upload(&self, id: &str, data: &[u8]) -> Answer {
        self.call(
            "PUT",
            &format!("/v2/images/{id}/file"),
            &[("Content-Type", "application/octet-stream")],
            data,
        )
    }

    fn status_of(&self, id: &str) -> String {
        let a = self.call("GET", &format!("/v2/images/{id}"), &[], b"");
        assert_eq!(a.status, 200, "{}", a.text());
        a.json()["status"].as_str().unwrap().to_owned()
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no response head");
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The error body's `message`, checking the body is Glance's shape for this status.
    fn message(&self) -> String {
        let v = self.json();
        assert_eq!(v["error"]["code"], self.status, "{v}");
        assert_eq!(
            v["error"]["title"],
            shared::error::status_title(self.status),
            "{v}"
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
        v["error"]["message"].as_str().unwrap().to_owned()
    }
}

const MEMBER: [(&str, &str); 3] = [
    ("X-Project-Id", "p1"),
    ("X-User-Id", "u1"),
    ("X-Roles", "member"),
];

#[test]
fn upload_failures_answer_as_glance_and_leave_the_image_queued() {
    let s = Stack::start(|c| c.image.image_size_cap_bytes = 1000, Options::default());
    let id = s.create_image();
    let file = format!("/v2/images/{id}/file");

    // 415: wrong media type
    let a = s.call("PUT", &file, &[("Content-Type", "text/plain")], b"abc");
    assert_eq!(a.status, 415, "{}", a.text());
    assert!(a.message().contains("application/octet-stream"));

    // 400: declared size and body disagree
    let a = s.call(
        "PUT",
        &file,
        &[
            ("Content-Type", "application/octet-stream"),
            ("x-openstack-image-size", "5"),
        ],
        b"abc",
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.message().contains("does not match"), "{}", a.text());

    // 413: over image_size_cap, refused before any byte is stored
    let a = s.upload(&id, &[7u8; 2000]);
    assert_eq!(a.status, 413, "{}", a.text());
    assert_eq!(a.message(), shared::error::TOO_LARGE);
    assert_eq!(s.status_of(&id), "queued");

    // 400: formats missing (the channel's reason, not a guess from the code)
    let bare = s.create(r#"{"name": "no formats"}"#);
    let a = s.upload(&bare, b"abc");
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(
        a.message(),
        "Properties disk_format, container_format must be set prior to saving data."
    );
    // the message names what is missing, as the metadata routes' does
    let half = s.create(r#"{"name": "half", "disk_format": "raw"}"#);
    let a = s.upload(&half, b"abc");
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(
        a.message(),
        "Property container_format must be set prior to saving data."
    );

    // 404 on the data route reads as it does on the metadata route
    let ghost = "0b3a8c7e-1234-4321-abcd-0123456789ab";
    let data = s.upload(ghost, b"abc");
    let meta = s.call("GET", &format!("/v2/images/{ghost}"), &[], b"");
    assert_eq!((data.status, meta.status), (404, 404));
    assert_eq!(data.message(), meta.message());
    assert_eq!(data.message(), format!("No image found with ID {ghost}"));

    // 409: data for an image that has it already
    assert_eq!(s.upload(&id, b"hello").status, 204);
    let a = s.upload(&id, b"again");
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(
        a.message(),
        "Image status transition from active to saving is not allowed"
    );
    assert_eq!(s.status_of(&id), "active");

    // 403: the policy refuses a project that does not own the image
    let other = s.create(r#"{"name": "o", "disk_format": "raw", "container_format": "bare", "visibility": "public"}"#);
    let mut h = MEMBER.to_vec();
    h.push(("Content-Type", "application/octet-stream"));
    let a = s.call("PUT", &format!("/v2/images/{other}/file"), &h, b"x");
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(
        a.message(),
        "You are not authorized to complete upload_image action."
    );
}

#[test]
fn download_failures_answer_as_glance() {
    let s = Stack::start(|_| {}, Options::default());
    // 204: no data yet
    let id = s.create(
        r#"{"name": "x", "disk_format": "raw", "container_format": "bare", "visibility": "public"}"#,
    );
    let file = format!("/v2/images/{id}/file");
    let a = s.call("GET", &file, &[], b"");
    assert_eq!((a.status, a.body.len()), (204, 0));

    assert_eq!(s.upload(&id, b"0123456789").status, 204);
    // 206 and 416 with the size in Content-Range
    let a = s.call("GET", &file, &[("Range", "bytes=2-4")], b"");
    assert_eq!((a.status, a.body.as_slice()), (206, &b"234"[..]));
    assert_eq!(a.header("content-range"), Some("bytes 2-4/10"));
    let a = s.call("GET", &file, &[("Range", "bytes=10-")], b"");
    assert_eq!(a.status, 416, "{}", a.text());
    assert_eq!(a.header("content-range"), Some("bytes */10"));
    a.message();
    let a = s.call("GET", &file, &[("Range", "bytes=0-1,4-5")], b"");
    assert_eq!(a.status, 400, "{}", a.text());

    // 403: deactivated, for a non-admin; an admin still downloads
    let a = s.call(
        "POST",
        &format!("/v2/images/{id}/actions/deactivate"),
        &[],
        b"",
    );
    assert_eq!(a.status, 204, "{}", a.text());
    let a = s.call("GET", &file, &MEMBER, b"");
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(a.message(), shared::error::DEACTIVATED);
    assert_eq!(s.call("GET", &file, &[], b"").body, b"0123456789");
}

#[test]
fn a_control_plane_that_cannot_be_reached_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let s = Stack::start(
        |_| {},
        Options {
            channel: Some(dir.path().join("nothing-listens-here.sock")),
            ..Options::default()
        },
    );
    let id = s.create_image();
    let a = s.upload(&id, b"abc");
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.message(), shared::error::PLANE_UNAVAILABLE);
    let a = s.call("GET", &format!("/v2/images/{id}/file"), &[], b"");
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(s.status_of(&id), "queued");
}

#[test]
fn a_path_means_the_same_on_both_planes() {
    let s = Stack::start(|_| {}, Options::default());
    let id = s.create_image();
    // v2.17, the location API, is advertised (Glance's layout without the cache: CURRENT after
    // 2.15 and 2.9); its GET of an image's locations is served (the caller, noauth's anonymous
    // admin, may fetch them: none before an upload)
    let a = s.call("GET", "/versions", &[], b"");
    assert_eq!(a.status, 200);
    let v = a.json();
    let listed: Vec<(&str, &str)> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed[..3],
        [
            ("v2.15", "SUPPORTED"),
            ("v2.9", "SUPPORTED"),
            ("v2.17", "CURRENT")
        ]
    );
    let a = s.call("GET", &format!("/v2/images/{id}/locations"), &[], b"");
    assert_eq!(
        (a.status, a.json()),
        (200, serde_json::json!([])),
        "{}",
        a.text()
    );

    // an unadvertised prefix is the versions document on the data routes as on the others
    let h = [("Content-Type", "application/octet-stream")];
    for prefix in ["v2.8", "v2.16", "v2.99"] {
        let a = s.call("PUT", &format!("/{prefix}/images/{id}/file"), &h, b"abc");
        assert_eq!(a.status, 300, "PUT {prefix}: {}", a.text());
        assert!(a.json()["versions"].is_array());
        let a = s.call("GET", &format!("/{prefix}/images/{id}/file"), &[], b"");
        assert_eq!(a.status, 300, "GET {prefix}");
        let a = s.call("GET", &format!("/{prefix}/images/{id}"), &[], b"");
        assert_eq!(a.status, 300, "GET {prefix} metadata");
    }
    assert_eq!(s.status_of(&id), "queued");
    // an advertised one is /v2/ on both
    let a = s.call("PUT", &format!("/v2.15/images/{id}/file"), &h, b"abc");
    assert_eq!(a.status, 204, "{}", a.text());
    let a = s.call("GET", &format!("/v2.9/images/{id}/file"), &[], b"");
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abc"[..]));
    let a = s.call("GET", &format!("/v2.9/images/{id}"), &[], b"");
    assert_eq!(a.status, 200);
}

#[test]
fn request_ids_follow_one_rule_on_both_planes() {
    let s = Stack::start(|_| {}, Options::default());
    let id = s.create_image();
    let data = format!("/v2/images/{id}/file");
    let meta = format!("/v2/images/{id}");
    let sixty_four = "a".repeat(64);
    for sent in ["abc", "req-abc", "a b", sixty_four.as_str()] {
        let h = [("x-openstack-request-id", sent)];
        let d = s.call("GET", &data, &h, b"");
        let m = s.call("GET", &meta, &h, b"");
        assert_eq!((d.status, m.status), (204, 200), "{sent}: {}", m.text());
        let want = if sent.starts_with("req-") {
            sent.to_owned()
        } else {
            format!("req-{sent}")
        };
        assert_eq!(d.header("x-openstack-request-id"), Some(want.as_str()));
        assert_eq!(m.header("x-openstack-request-id"), Some(want.as_str()));
    }
    // too long: 431 from both
    let long = "a".repeat(65);
    let h = [("x-openstack-request-id", long.as_str())];
    assert_eq!(s.call("GET", &data, &h, b"").status, 431);
    assert_eq!(s.call("GET", &meta, &h, b"").status, 431);
}

#[test]
fn unauthenticated_requests_read_the_same_on_both_planes() {
    // Keystone is never asked: a request without a token is refused before any validation.
    let s = Stack::start(
        |c| {
            c.auth.mode = shared::config::AuthMode::Keystone;
            c.keystone_authtoken.auth_url = Some("http://127.0.0.1:9/v3".into());
            c.keystone_authtoken.username = Some("glint".into());
            c.keystone_authtoken.password = Some("secret".into());
            c.keystone_authtoken.project_name = Some("service".into());
        },
        Options::default(),
    );
    let ghost = "0b3a8c7e-1234-4321-abcd-0123456789ab";
    let data = s.call("GET", &format!("/v2/images/{ghost}/file"), &[], b"");
    let meta = s.call("GET", &format!("/v2/images/{ghost}"), &[], b"");
    assert_eq!((data.status, meta.status), (401, 401));
    assert_eq!(data.message(), meta.message());
    assert_eq!(data.message(), shared::error::UNAUTHENTICATED);
    let want = "Keystone uri=\"http://127.0.0.1:9/v3\"";
    assert_eq!(data.header("www-authenticate"), Some(want));
    assert_eq!(meta.header("www-authenticate"), Some(want));
}
