//! TLS on the public listener: uploads and downloads over HTTPS with identical bytes, and a
//! certificate reload on SIGHUP that keeps open connections alive.

use loadtest::harness::{Glint, binary, md5_hex, random_bytes};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a fresh self-signed certificate for 127.0.0.1/localhost; returns its PEM.
fn write_cert(dir: &Path) -> String {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = ck.cert.pem();
    std::fs::write(dir.join("cert.pem.new"), &cert).unwrap();
    std::fs::write(dir.join("key.pem.new"), ck.key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(
        dir.join("key.pem.new"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    cert
}

fn client_trusting(pem: &str) -> Client {
    Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .https_only(true)
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

#[test]
fn https_round_trip_and_certificate_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_cert(dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let g = Glint::start_with_env(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &[],
        &[
            ("GLINT_TLS_CERT_FILE", cert.to_str().unwrap()),
            ("GLINT_TLS_KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .expect("glint starts with TLS");
    let url = |p: &str| format!("https://{}{p}", g.public);
    let c = client_trusting(&first);

    // metadata, upload and download over TLS
    let r = c
        .post(url("/v2/images"))
        .json(&json!({"name": "tls", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = random_bytes(3 * 1024 * 1024 + 11);
    let r = c
        .put(url(&format!("/v2/images/{id}/file")))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c.get(url(&format!("/v2/images/{id}/file"))).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-md5"], md5_hex(&data).as_str());
    assert!(r.bytes().unwrap()[..] == data[..], "bytes differ over TLS");
    let r = c
        .get(url(&format!("/v2/images/{id}/file")))
        .header("Range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert!(r.bytes().unwrap()[..] == data[100..200]);

    // plain HTTP on the TLS port gets no HTTP answer
    let plain =
        loadtest::harness::raw_status(&g.public, "GET /versions HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(plain, None);

    // new certificate + SIGHUP: new connections get it, the open connection keeps working
    let second = write_cert(dir.path());
    Glint::kill(g.pid(), rustix::process::Signal::HUP);
    let c2 = client_trusting(&second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c2.get(url("/versions")).send() {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "new certificate not served: {other:?}\n{}",
                    g.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // `c` trusts only the first certificate: this succeeds only on its kept-alive connection
    let r = c
        .get(url(&format!("/v2/images/{id}")))
        .send()
        .expect("open connection survived the reload");
    assert_eq!(r.status(), 200);
    assert!(g.log().contains("TLS certificate reloaded"));
}
