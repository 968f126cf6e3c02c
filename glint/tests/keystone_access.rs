//! Access control through a real Keystone (no fake): `glint serve` with `[auth] mode =
//! "keystone"` validating real fernet tokens from the Keystone that
//! `loadtest/keystone/keystone_fixture.py` serves (one per test binary, shared by these tests).
//!
//! Identities (see the fixture): alice member of alpha, rita reader of alpha, bob member of
//! beta, carol member of gamma, admin, and the service users glint and nova.
//!
//! `#[ignore]`d so a plain `cargo test` needs no Python; `./scripts/test` runs them with
//! `GLINT_KEYSTONE_PYTHON` set, and without it they fail loudly.

#[path = "support/keystone.rs"]
mod support;
#[path = "support/workload.rs"]
mod workload;

use controlplane::auth::{self, Keystone as Validator};
use loadtest::harness::Glint;
use reqwest::Method;
use serde_json::{Value, json};
use shared::config::KeystoneAuthtoken;
use support::{client, glint, glint_with, keystone};

const IGNORE: &str = "needs keystone: run through ./scripts/test";
const PATCH: &str = "application/openstack-images-v2.1-json-patch";

struct Reply {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

fn call(g: &Glint, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Reply {
    call_with(g, &[("X-Auth-Token", token)], method, path, body)
}

fn call_with(
    g: &Glint,
    headers: &[(&str, Option<&str>)],
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut req = client().request(method.clone(), g.url(path));
    for (k, v) in headers {
        if let Some(v) = v {
            req = req.header(*k, *v);
        }
    }
    req = match (&method, body) {
        (&Method::PATCH, Some(b)) => req.header("Content-Type", PATCH).body(b.to_string()),
        (&Method::PUT, Some(Value::String(data))) if path.ends_with("/file") => req
            .header("Content-Type", "application/octet-stream")
            .body(data.into_bytes()),
        (_, Some(b)) => req.json(&b),
        (_, None) => req,
    };
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let www_authenticate = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().unwrap_or_default();
    Reply {
        status,
        www_authenticate,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn create(g: &Glint, token: &str, extra: Value) -> String {
    let mut body = json!({"name": "img", "disk_format": "raw", "container_format": "bare"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = call(g, Some(token), Method::POST, "/v2/images", Some(body));
    assert_eq!(r.status, 201, "create: {}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

fn upload(g: &Glint, token: &str, id: &str, data: &str) -> u16 {
    call(
        g,
        Some(token),
        Method::PUT,
        &format!("/v2/images/{id}/file"),
        Some(Value::String(data.into())),
    )
    .status
}

fn listed(g: &Glint, token: &str, id: &str) -> bool {
    let r = call(g, Some(token), Method::GET, "/v2/images", None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id)
}

/// Every route (metadata and data) with the same token, expecting `want` everywhere.
fn every_route(g: &Glint, token: Option<&str>, id: &str, want: u16) {
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v2/images".into(), None),
        (
            Method::POST,
            "/v2/images".into(),
            Some(json!({"name": "x", "disk_format": "raw", "container_format": "bare"})),
        ),
        (Method::GET, format!("/v2/images/{id}"), None),
        (
            Method::PATCH,
            format!("/v2/images/{id}"),
            Some(json!([{"op": "replace", "path": "/name", "value": "y"}])),
        ),
        (
            Method::PUT,
            format!("/v2/images/{id}/file"),
            Some(Value::String("data".into())),
        ),
        (Method::GET, format!("/v2/images/{id}/file"), None),
        (Method::GET, format!("/v2/images/{id}/members"), None),
        (Method::PUT, format!("/v2/images/{id}/tags/t"), None),
        (
            Method::POST,
            format!("/v2/images/{id}/actions/deactivate"),
            None,
        ),
        (Method::GET, "/v2/schemas/image".into(), None),
        (Method::DELETE, format!("/v2/images/{id}"), None),
    ];
    for (method, path, body) in routes {
        let r = call(g, token, method.clone(), &path, body);
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
        if want == 401 {
            let uri = keystone().auth_url.clone();
            assert_eq!(
                r.www_authenticate.as_deref(),
                Some(format!("Keystone uri=\"{uri}\"").as_str()),
                "{method} {path}"
            );
        }
    }
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn validator_against_real_keystone() {
    let _ = IGNORE;
    let ks = keystone();
    let settings = KeystoneAuthtoken {
        auth_url: Some(ks.auth_url.clone()),
        username: Some("glint".into()),
        password: Some(ks.password.clone()),
        project_name: Some("service".into()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // tokens come from the blocking client, outside the runtime
    let alice = ks.fresh_token("alice");
    let admin_token = ks.fresh_token("admin");
    let doomed = ks.fresh_token("bob");
    ks.revoke(&doomed);
    rt.block_on(async {
        let v = Validator::new(&settings);
        let info = v
            .validate(&alice, false)
            .await
            .expect("alice's token is valid");
        assert_eq!(info.user_id, ks.user("alice"));
        assert_eq!(info.project_id, Some(ks.project("alpha")));
        assert!(
            info.roles.contains(&"member".to_owned()) && info.roles.contains(&"reader".to_owned())
        );
        assert!(info.expires_at > chrono::Utc::now());
        let ctx = auth::context_of(&info);
        assert!(!ctx.is_admin && ctx.has_role("member"));

        let admin = v.validate(&admin_token, false).await.unwrap();
        assert!(auth::context_of(&admin).is_admin);

        let mut tampered = alice.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(matches!(
            v.validate(&tampered, false).await,
            Err(auth::Error::Invalid(_))
        ));
        assert!(matches!(
            v.validate("garbage", false).await,
            Err(auth::Error::Invalid(_))
        ));

        // revoked before first use: Keystone says 404
        assert!(matches!(
            v.validate(&doomed, false).await,
            Err(auth::Error::Invalid(_))
        ));

        // wrong service password: Keystone refuses glint → 503, never a bypass
        let wrong = Validator::new(&KeystoneAuthtoken {
            password: Some("wrong".into()),
            ..settings.clone()
        });
        assert!(matches!(
            wrong.validate(&alice, false).await,
            Err(auth::Error::Unavailable(_))
        ));
    });
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn private_image_is_invisible_to_another_project() {
    let ks = keystone();
    let g = glint();
    let (alice, bob) = (ks.token("alice"), ks.token("bob"));
    let id = create(&g, &alice, json!({"visibility": "private"}));
    assert_eq!(upload(&g, &alice, &id, "private bytes"), 204);
    let r = call(
        &g,
        Some(&alice),
        Method::GET,
        &format!("/v2/images/{id}"),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["owner"],
        ks.project("alpha"),
        "owner is the token's project"
    );

    assert!(listed(&g, &alice, &id));
    assert!(!listed(&g, &bob, &id), "list");
    let path = format!("/v2/images/{id}");
    for (method, p, body) in [
        (Method::GET, path.clone(), None),
        (Method::GET, format!("{path}/file"), None),
        (
            Method::PUT,
            format!("{path}/file"),
            Some(Value::String("x".into())),
        ),
        (
            Method::PATCH,
            path.clone(),
            Some(json!([{"op": "replace", "path": "/name", "value": "mine"}])),
        ),
        (Method::DELETE, path.clone(), None),
    ] {
        let r = call(&g, Some(&bob), method.clone(), &p, body);
        assert_eq!(r.status, 404, "bob {method} {p}: {}", r.body);
    }
    // Keystone was asked once per token; the rest came from the token cache
    let text = workload::scrape(&g);
    let value = |series: &str| workload::metric(&text, series);
    assert!(value("glint_keystone_validations_total{outcome=\"valid\"}") >= 2.0);
    assert!(value("glint_keystone_token_cache_lookups_total{result=\"hit\"}") >= 5.0);
    assert!(value("glint_keystone_validation_duration_seconds_count{outcome=\"valid\"}") >= 2.0);
    // still there, unchanged
    let r = call(&g, Some(&alice), Method::GET, &path, None);
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("img")));
    // identity headers are ignored in keystone mode: bob cannot claim alpha
    let r = call_with(
        &g,
        &[
            ("X-Auth-Token", Some(&bob)),
            ("X-Project-Id", Some(&ks.project("alpha"))),
            ("X-Roles", Some("admin")),
        ],
        Method::GET,
        &path,
        None,
    );
    assert_eq!(r.status, 404);
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn shared_image_visible_after_member_accepts() {
    let ks = keystone();
    let g = glint();
    let (alice, bob, carol) = (ks.token("alice"), ks.token("bob"), ks.token("carol"));
    let id = create(&g, &alice, json!({"visibility": "shared"}));
    assert_eq!(upload(&g, &alice, &id, "shared bytes"), 204);
    let beta = ks.project("beta");
    let r = call(
        &g,
        Some(&alice),
        Method::POST,
        &format!("/v2/images/{id}/members"),
        Some(json!({"member": beta})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert!(!listed(&g, &bob, &id), "pending: not in bob's list");

    let r = call(
        &g,
        Some(&bob),
        Method::PUT,
        &format!("/v2/images/{id}/members/{beta}"),
        Some(json!({"status": "accepted"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(listed(&g, &bob, &id), "accepted: listed");
    let r = call(
        &g,
        Some(&bob),
        Method::GET,
        &format!("/v2/images/{id}/file"),
        None,
    );
    assert_eq!((r.status, r.body.as_str()), (200, Some("shared bytes")));
    // a member cannot change the image
    let r = call(
        &g,
        Some(&bob),
        Method::PATCH,
        &format!("/v2/images/{id}"),
        Some(json!([{"op": "replace", "path": "/name", "value": "bob's"}])),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // a non-member still sees nothing
    assert!(!listed(&g, &carol, &id));
    for p in [format!("/v2/images/{id}"), format!("/v2/images/{id}/file")] {
        assert_eq!(
            call(&g, Some(&carol), Method::GET, &p, None).status,
            404,
            "{p}"
        );
    }
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn publicize_is_admin_only_and_reader_cannot_write() {
    let ks = keystone();
    let g = glint();
    let (alice, rita, admin) = (ks.token("alice"), ks.token("rita"), ks.token("admin"));
    let r = call(
        &g,
        Some(&alice),
        Method::POST,
        "/v2/images",
        Some(json!({"name": "p", "visibility": "public"})),
    );
    assert_eq!(r.status, 403, "member creating a public image: {}", r.body);
    let id = create(&g, &alice, json!({}));
    let to_public = json!([{"op": "replace", "path": "/visibility", "value": "public"}]);
    let path = format!("/v2/images/{id}");
    let r = call(
        &g,
        Some(&alice),
        Method::PATCH,
        &path,
        Some(to_public.clone()),
    );
    assert_eq!(r.status, 403, "member publicizing: {}", r.body);

    // the reader of alpha sees alpha's image but writes nothing
    assert_eq!(call(&g, Some(&rita), Method::GET, &path, None).status, 200);
    assert!(listed(&g, &rita, &id));
    let r = call(
        &g,
        Some(&rita),
        Method::POST,
        "/v2/images",
        Some(json!({"name": "r", "disk_format": "raw", "container_format": "bare"})),
    );
    assert_eq!(r.status, 403, "reader create: {}", r.body);
    let r = call(
        &g,
        Some(&rita),
        Method::PATCH,
        &path,
        Some(json!([{"op": "replace", "path": "/name", "value": "r"}])),
    );
    assert_eq!(r.status, 403, "reader patch: {}", r.body);
    assert_eq!(upload(&g, &rita, &id, "r"), 403, "reader upload");
    assert_eq!(
        call(&g, Some(&rita), Method::DELETE, &path, None).status,
        403
    );

    let r = call(&g, Some(&admin), Method::PATCH, &path, Some(to_public));
    assert_eq!(r.status, 200, "admin publicizing: {}", r.body);
    assert_eq!(r.body["visibility"], "public");
    // now everyone sees it
    assert_eq!(
        call(&g, Some(&ks.token("carol")), Method::GET, &path, None).status,
        200
    );
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn deactivated_image_downloads_only_for_admin() {
    let ks = keystone();
    let g = glint();
    let (alice, admin) = (ks.token("alice"), ks.token("admin"));
    let id = create(&g, &alice, json!({}));
    assert_eq!(upload(&g, &alice, &id, "deactivate me"), 204);
    let deactivate = format!("/v2/images/{id}/actions/deactivate");
    // a stranger cannot even see it; the owner (member) may deactivate, as in Glance
    let bob = ks.token("bob");
    assert_eq!(
        call(&g, Some(&bob), Method::POST, &deactivate, None).status,
        404
    );
    assert_eq!(
        call(&g, Some(&admin), Method::POST, &deactivate, None).status,
        204
    );
    let file = format!("/v2/images/{id}/file");
    assert_eq!(call(&g, Some(&alice), Method::GET, &file, None).status, 403);
    let r = call(&g, Some(&admin), Method::GET, &file, None);
    assert_eq!((r.status, r.body.as_str()), (200, Some("deactivate me")));
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn bad_tokens_are_refused_on_every_route() {
    let ks = keystone();
    let g = glint();
    let alice = ks.fresh_token("alice");
    let id = create(&g, &alice, json!({}));

    // no token, garbage, tampered (one byte changed: the fernet HMAC fails)
    every_route(&g, None, &id, 401);
    every_route(&g, Some("garbage"), &id, 401);
    let mut t = alice.clone().into_bytes();
    let i = t.len() - 5;
    t[i] = if t[i] == b'x' { b'y' } else { b'x' };
    every_route(&g, Some(&String::from_utf8(t).unwrap()), &id, 401);

    // revoked before glint ever saw it
    let revoked = ks.fresh_token("alice");
    ks.revoke(&revoked);
    every_route(&g, Some(&revoked), &id, 401);

    // really expired: a token from an application credential that expired. Its first use
    // is after expiry; validations are cached no longer than the token lives either way.
    let (expired, at) = ks.short_token("alice", 6);
    while chrono::Utc::now() <= at + chrono::TimeDelta::seconds(1) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    every_route(&g, Some(&expired), &id, 401);

    // version discovery needs no token (as in Glance)
    assert_eq!(call(&g, None, Method::GET, "/versions", None).status, 200);
    // the image is untouched
    let r = call(
        &g,
        Some(&alice),
        Method::GET,
        &format!("/v2/images/{id}"),
        None,
    );
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("queued")));
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn cached_token_stops_working_at_its_expiry() {
    // token_cache_time is long, the token short: the cache must not outlive the token
    let ks = keystone();
    let g = glint_with(&ks.glint_config("token_cache_time = 3600\n"), &[]);
    let (short, at) = ks.short_token("alice", 12);
    let r = call(&g, Some(&short), Method::GET, "/v2/images", None);
    assert_eq!(r.status, 200, "valid while it lasts: {}", r.body);
    while chrono::Utc::now() <= at + chrono::TimeDelta::seconds(1) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = call(&g, Some(&short), Method::GET, "/v2/images", None);
    assert_eq!(r.status, 401, "expired, though cached: {}", r.body);
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn service_token_keeps_an_expired_user_token_usable() {
    let ks = keystone();
    let g = glint();
    let alice = ks.token("alice");
    let id = create(&g, &alice, json!({}));
    let (expired, at) = ks.short_token("alice", 6);
    while chrono::Utc::now() <= at + chrono::TimeDelta::seconds(1) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let nova = ks.token("nova");
    let file = format!("/v2/images/{id}/file");
    let put = |service: Option<&str>| {
        let r = client()
            .put(g.url(&file))
            .header("X-Auth-Token", &expired)
            .header("Content-Type", "application/octet-stream");
        let r = match service {
            Some(s) => r.header("X-Service-Token", s),
            None => r,
        };
        r.body("snapshot from nova")
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put(None), 401, "expired user token alone");
    // a user token is not a service token: alice has no service role
    assert_eq!(put(Some(&ks.token("bob"))), 401, "non-service token");
    assert_eq!(put(Some("garbage")), 401, "invalid service token");
    assert_eq!(
        put(Some(&nova)),
        204,
        "expired user token + nova's service token"
    );
    let headers = [
        ("X-Auth-Token", Some(expired.as_str())),
        ("X-Service-Token", Some(nova.as_str())),
    ];
    let r = call_with(&g, &headers, Method::GET, &format!("/v2/images/{id}"), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["owner"],
        ks.project("alpha"),
        "acts as alice, not nova"
    );
    let r = call_with(&g, &headers, Method::GET, &file, None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, Some("snapshot from nova"))
    );
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn keystone_down_is_503_never_a_bypass() {
    let ks = keystone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}/v3");
    let config = ks.glint_config("").replace(
        &format!("auth_url = \"{}\"", ks.auth_url),
        &format!("auth_url = \"{dead}\""),
    );
    let g = glint_with(&config, &[]);
    let alice = ks.token("alice");
    let id = "6f1e7b2c-1111-4c7e-9d55-0123456789ab";
    for (method, path) in [
        (Method::GET, "/v2/images".to_owned()),
        (Method::GET, format!("/v2/images/{id}")),
        (Method::GET, format!("/v2/images/{id}/file")),
    ] {
        let r = call(&g, Some(&alice), method.clone(), &path, None);
        assert_eq!(r.status, 503, "{method} {path}: {}", r.body);
    }
    assert_eq!(upload(&g, &alice, id, "x"), 503);
    let text = workload::scrape(&g);
    assert!(
        workload::metric(
            &text,
            "glint_keystone_validations_total{outcome=\"unavailable\"}"
        ) > 0.0
    );
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn policy_file_override_takes_effect() {
    let ks = keystone();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    // only admins may create images; readers may not even list
    std::fs::write(
        &policy,
        "add_image: \"role:admin\"\nget_images: \"role:member\"\n",
    )
    .unwrap();
    let g = glint_with(
        &ks.glint_config(""),
        &[("GLINT_POLICY_FILE", policy.to_str().unwrap())],
    );
    let body = json!({"name": "x", "disk_format": "raw", "container_format": "bare"});
    let r = call(
        &g,
        Some(&ks.token("alice")),
        Method::POST,
        "/v2/images",
        Some(body.clone()),
    );
    assert_eq!(
        r.status, 403,
        "member create under the override: {}",
        r.body
    );
    let r = call(
        &g,
        Some(&ks.token("admin")),
        Method::POST,
        "/v2/images",
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        call(&g, Some(&ks.token("rita")), Method::GET, "/v2/images", None).status,
        403
    );
    assert_eq!(
        call(
            &g,
            Some(&ks.token("alice")),
            Method::GET,
            "/v2/images",
            None
        )
        .status,
        200
    );
}

fn run_client_script(script: &str) {
    let ks = keystone();
    let python = std::env::var("GLINT_COMPAT_PYTHON").expect(
        "GLINT_COMPAT_PYTHON is not set: run ./scripts/test, or scripts/compat-venv.sh and export it",
    );
    let g = glint();
    let scratch = g.dir().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let path = format!("{}/../loadtest/compat/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&python)
        .arg(&path)
        .env("GLINT_ENDPOINT", g.url(""))
        .env("GLINT_SCRATCH", &scratch)
        .env("OS_AUTH_URL", &ks.auth_url)
        .env("GLINT_KEYSTONE_PASSWORD", &ks.password)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\nglint log:\n{}",
        out.status,
        g.log()
    );
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn openstack_cli_and_sdk_with_password_auth() {
    run_client_script("test_keystone_clients.py");
}

/// A body that trickles out until `until`, then ends.
struct Trickle {
    until: chrono::DateTime<chrono::Utc>,
    sent: usize,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if chrono::Utc::now() > self.until {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        let n = buf.len().min(1024);
        buf[..n].fill(b'z');
        self.sent += n;
        Ok(n)
    }
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn upload_outlives_the_user_token() {
    // authorized once at its start: a token that expires while the bytes stream does not
    // break the upload (what Glance needs service tokens for)
    let ks = keystone();
    let g = glint();
    let (short, at) = ks.short_token("alice", 8);
    let id = create(&g, &short, json!({}));
    let body = reqwest::blocking::Body::new(Trickle {
        until: at + chrono::TimeDelta::seconds(2),
        sent: 0,
    });
    let r = client()
        .put(g.url(&format!("/v2/images/{id}/file")))
        .header("X-Auth-Token", &short)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());
    assert!(
        chrono::Utc::now() > at,
        "the upload ended after the token expired"
    );
    let alice = ks.token("alice");
    let r = call(
        &g,
        Some(&alice),
        Method::GET,
        &format!("/v2/images/{id}"),
        None,
    );
    assert_eq!(r.body["status"], "active");
    // and the expired token itself is refused now
    let r = call(
        &g,
        Some(&short),
        Method::GET,
        &format!("/v2/images/{id}"),
        None,
    );
    assert_eq!(r.status, 401);
}

#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn system_scoped_token_gets_no_image_rights() {
    // Glance's image rules are project-scoped (scope_types = ["project"], enforced): a
    // system-scoped admin token is valid but grants nothing here
    let ks = keystone();
    let g = glint();
    let system = ks.system_token("admin");
    let alice = ks.token("alice");
    let id = create(&g, &alice, json!({}));
    assert_eq!(
        call(&g, Some(&system), Method::GET, "/v2/images", None).status,
        403
    );
    let r = call(
        &g,
        Some(&system),
        Method::POST,
        "/v2/images",
        Some(json!({"name": "s", "disk_format": "raw", "container_format": "bare"})),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = call(
        &g,
        Some(&system),
        Method::DELETE,
        &format!("/v2/images/{id}"),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
}

/// `show_locations_only_to_services`: a user's token alone never shows a store URL; the same
/// request with Nova's service token (role `service`) shows `direct_url` and `locations`.
#[test]
#[ignore = "needs keystone: run through ./scripts/test"]
fn locations_only_for_requests_with_a_service_token() {
    let ks = keystone();
    let cfg = format!(
        "show_multiple_locations = true\nshow_image_direct_url = true\n\
         show_locations_only_to_services = true\n{}",
        ks.glint_config("")
    );
    let g = glint_with(&cfg, &[]);
    let alice = ks.token("alice");
    let id = create(&g, &alice, json!({}));
    assert_eq!(upload(&g, &alice, &id, "disk bytes"), 204);
    let show = format!("/v2/images/{id}");
    for token in [&alice, &ks.token("admin")] {
        let r = call(&g, Some(token), Method::GET, &show, None);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("locations").is_none(), "{}", r.body);
        assert!(r.body.get("direct_url").is_none(), "{}", r.body);
        let r = call(&g, Some(token), Method::GET, "/v2/images", None);
        assert!(!r.body.to_string().contains("file://"), "{}", r.body);
    }
    let nova = ks.token("nova");
    let headers = [
        ("X-Auth-Token", Some(alice.as_str())),
        ("X-Service-Token", Some(nova.as_str())),
    ];
    let r = call_with(&g, &headers, Method::GET, &show, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let url = r.body["direct_url"]
        .as_str()
        .expect("direct_url")
        .to_owned();
    assert!(url.starts_with("file://") && url.ends_with(&id), "{url}");
    assert_eq!(r.body["locations"], json!([{"url": url, "metadata": {}}]));
    // a forged X-Service-Roles header counts for nothing with Keystone
    let forged = [
        ("X-Auth-Token", Some(alice.as_str())),
        ("X-Service-Roles", Some("service")),
    ];
    let r = call_with(&g, &forged, Method::GET, &show, None);
    assert!(r.body.get("direct_url").is_none(), "{}", r.body);
}
