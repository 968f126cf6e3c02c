//! Steps of the workloads the tests drive through a real `glint serve`: images made and
//! uploaded as a client would, transfers cut short at the socket, and `/metrics` read back.

#![allow(dead_code)]

use loadtest::harness::{Glint, random_bytes};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Creates a raw/bare image named `name`; its id.
pub(crate) fn create(g: &Glint, name: &str) -> String {
    create_as(g, name, "raw", "bare")
}

/// Creates an image named `name` with these formats; its id.
pub(crate) fn create_as(
    g: &Glint,
    name: &str,
    disk_format: &str,
    container_format: &str,
) -> String {
    let r = reqwest::blocking::Client::new()
        .post(g.url("/v2/images"))
        .json(&json!({"name": name, "disk_format": disk_format, "container_format": container_format}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Uploads `data` into image `id`; the answer's status and body.
pub(crate) fn put(g: &Glint, id: &str, data: Vec<u8>) -> (u16, String) {
    let r = reqwest::blocking::Client::new()
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .body(data)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Creates an image with `len` random bytes uploaded (204); its id.
pub(crate) fn uploaded(g: &Glint, name: &str, len: usize) -> String {
    let id = create(g, name);
    assert_eq!(put(g, &id, random_bytes(len)).0, 204);
    id
}

/// The admin listener's `/metrics` page.
pub(crate) fn scrape(g: &Glint) -> String {
    reqwest::blocking::get(g.admin_url("/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

/// The value of `series` (name and labels, exactly) in a `/metrics` page.
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
}

/// Starts an upload of `declared` bytes and sends `sent` of them; the connection stays open
/// while the returned stream lives.
pub(crate) fn upload_part_of(
    g: &Glint,
    id: &str,
    declared: usize,
    sent: usize,
) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(g.public_addr()).unwrap();
    write!(
        s,
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    s.write_all(&random_bytes(sent)).unwrap();
    s
}

/// Downloads at least `at_least` bytes of `id`, then drops the connection.
pub(crate) fn download_part_of(g: &Glint, id: &str, at_least: usize) {
    let mut s = std::net::TcpStream::connect(g.public_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    while got < at_least {
        got += s.read(&mut buf).unwrap();
    }
}

/// Kills the data plane (SIGKILL) and waits until the supervisor has a new one serving.
pub(crate) fn kill_dataplane(g: &Glint) {
    let dp = g.plane_pid("dataplane").expect("data plane pid");
    Glint::kill(dp, rustix::process::Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(60);
    while g.plane_pid("dataplane").is_none_or(|p| p == dp) {
        assert!(Instant::now() < deadline, "data plane not restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    g.wait_public(Duration::from_secs(60)).unwrap();
}

/// A small HTTP/1.1 server on `ip` for web-download sources: `GET /image` is `body`
/// (with `Content-Length`), `GET /to/<url>` answers `302 Location: <url>`; anything else 404.
/// Each request on its own connection; runs until the test process ends.
pub(crate) fn source_server(ip: &str, body: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let body = std::sync::Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                let mut s = stream;
                if path == "/image" {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(&body);
                } else if let Some(to) = path.strip_prefix("/to/") {
                    let _ = write!(
                        s,
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                } else {
                    let _ = write!(
                        s,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            });
        }
    });
    base
}
