//! The real Keystone shared by every test of one test binary, and glint instances that use it.
//!
//! `scripts/keystone-venv.sh` makes the venv and a prepared Keystone state; the test command
//! exports its python as `GLINT_KEYSTONE_PYTHON`. The first test that needs Keystone starts
//! `loadtest/keystone/keystone_fixture.py serve` on a free loopback port; it exits when this
//! process does (its stdin closes) and removes its directory (`GLINT_KEEP_KEYSTONE=1` keeps it,
//! with `keystone.log` and `fixture.err`). Without the variable the tests fail loudly.

#![allow(dead_code)]

use loadtest::harness::{Glint, binary};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The running Keystone.
pub(crate) struct Keystone {
    /// `http://127.0.0.1:<port>/v3/`.
    pub(crate) auth_url: String,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// Every test user's password.
    pub(crate) password: String,
    /// What the fixture printed (ids of users, projects, roles).
    pub(crate) info: Value,
    /// The venv's python (also runs the client scripts).
    pub(crate) python: PathBuf,
    /// Where the fixture keeps its files (keystone.log).
    pub(crate) dir: PathBuf,
    tokens: Mutex<HashMap<String, String>>,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

static KEYSTONE: OnceLock<Keystone> = OnceLock::new();

/// HTTP client for tests.
pub(crate) fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The Keystone of this test binary, started on first use.
pub(crate) fn keystone() -> &'static Keystone {
    KEYSTONE.get_or_init(start)
}

fn start() -> Keystone {
    let python = PathBuf::from(std::env::var("GLINT_KEYSTONE_PYTHON").expect(
        "GLINT_KEYSTONE_PYTHON is not set: run ./scripts/test, or scripts/keystone-venv.sh and export it",
    ));
    let venv = python.parent().and_then(|p| p.parent()).unwrap();
    let template = venv.join("keystone-template");
    let dir = std::env::temp_dir().join(format!("glint-keystone-{}", std::process::id()));
    let fixture = format!(
        "{}/../loadtest/keystone/keystone_fixture.py",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::create_dir_all(&dir).unwrap();
    let stderr = std::fs::File::create(dir.join("fixture.err")).unwrap();
    let mut child = Command::new(&python)
        .arg(&fixture)
        .arg("serve")
        .arg(&template)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start the keystone fixture");
    let stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "keystone fixture failed ({e}); stderr:\n{}",
            std::fs::read_to_string(dir.join("fixture.err")).unwrap_or_default()
        )
    });
    Keystone {
        auth_url: info["auth_url"].as_str().unwrap().to_owned(),
        base: info["base"].as_str().unwrap().to_owned(),
        password: info["password"].as_str().unwrap().to_owned(),
        info,
        python,
        dir,
        tokens: Mutex::new(HashMap::new()),
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    }
}

impl Keystone {
    /// The project id of a test project (`alpha`, `beta`, …).
    pub(crate) fn project(&self, name: &str) -> String {
        self.info["projects"][name].as_str().unwrap().to_owned()
    }

    /// The user id of a test user.
    pub(crate) fn user(&self, name: &str) -> String {
        self.info["users"][name]["id"].as_str().unwrap().to_owned()
    }

    /// A new project-scoped token for `user` (scoped to its test project).
    pub(crate) fn fresh_token(&self, user: &str) -> String {
        let project = self.info["users"][user]["project"].as_str().unwrap();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let r = client()
            .post(format!("{}/v3/auth/tokens?nocatalog", self.base))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "login {user}");
        r.headers()["x-subject-token"].to_str().unwrap().to_owned()
    }

    /// A system-scoped (`system: all`) token for `user` (bootstrap gives admin that role).
    pub(crate) fn system_token(&self, user: &str) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"system": {"all": true}}}});
        let r = client()
            .post(format!("{}/v3/auth/tokens?nocatalog", self.base))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "system login {user}");
        r.headers()["x-subject-token"].to_str().unwrap().to_owned()
    }

    /// A token for `user`, reused across tests.
    pub(crate) fn token(&self, user: &str) -> String {
        if let Some(t) = self.tokens.lock().unwrap().get(user) {
            return t.clone();
        }
        let t = self.fresh_token(user);
        self.tokens
            .lock()
            .unwrap()
            .insert(user.to_owned(), t.clone());
        t
    }

    /// Revokes `token` (`DELETE /v3/auth/tokens`, as its own bearer).
    pub(crate) fn revoke(&self, token: &str) {
        let r = client()
            .delete(format!("{}/v3/auth/tokens", self.base))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 204, "revoke");
    }

    /// A token for `user` that expires `seconds` from now: issued from an application
    /// credential whose own `expires_at` is that moment (Keystone caps the token's expiry at the
    /// credential's), so it is a real token that really expires.
    pub(crate) fn short_token(
        &self,
        user: &str,
        seconds: i64,
    ) -> (String, chrono::DateTime<chrono::Utc>) {
        let c = client();
        let user_token = self.fresh_token(user);
        // counted from now, after the login (which is slow on a busy machine)
        let expires = chrono::Utc::now() + chrono::TimeDelta::seconds(seconds);
        let r = c
            .post(format!(
                "{}/v3/users/{}/application_credentials",
                self.base,
                self.user(user)
            ))
            .header("X-Auth-Token", user_token)
            .json(&json!({"application_credential": {
                "name": format!("short-{}", uuid_like()),
                "expires_at": expires.format("%Y-%m-%dT%H:%M:%S").to_string()}}))
            .send()
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            201,
            "application credential: {}",
            r.text().unwrap_or_default()
        );
        let ac: Value = r.json().unwrap();
        let ac = &ac["application_credential"];
        let r = c
            .post(format!("{}/v3/auth/tokens?nocatalog", self.base))
            .json(
                &json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": ac["id"], "secret": ac["secret"]}}}}),
            )
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "application credential login");
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
        let body: Value = r.json().unwrap();
        let at = body["token"]["expires_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        (token, at)
    }

    /// The settings glint needs to validate tokens against this Keystone.
    pub(crate) fn glint_config(&self, extra: &str) -> String {
        format!(
            "[auth]\nmode = \"keystone\"\n[keystone_authtoken]\n\
             www_authenticate_uri = \"{}\"\nauth_url = \"{}\"\nusername = \"glint\"\n\
             password = \"{}\"\nproject_name = \"service\"\n\
             user_domain_name = \"Default\"\nproject_domain_name = \"Default\"\n{extra}",
            self.auth_url, self.auth_url, self.password
        )
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros()
    )
}

/// A glint whose `[auth]` is this Keystone; `config` is TOML (the keystone settings plus
/// anything else), `env` extra environment.
pub(crate) fn glint_with(config: &str, env: &[(&str, &str)]) -> Glint {
    let file = tempfile::Builder::new()
        .prefix("glint-ks-")
        .suffix(".toml")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), config).unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    // read once by `glint serve` at start (the planes get it from the supervisor), so the
    // file goes when `file` drops
    Glint::start_with_env(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &["--config", &path],
        env,
    )
    .expect("glint starts")
}

/// A glint authenticating against the shared Keystone.
pub(crate) fn glint() -> Glint {
    glint_with(&keystone().glint_config(""), &[])
}
