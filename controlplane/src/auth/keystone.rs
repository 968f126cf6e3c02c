//! Token validation against Keystone v3, as keystonemiddleware's `auth_token` does it.
//!
//! 1. glint logs in as its own service user (`POST /v3/auth/tokens`, password method, scoped
//!    to `project_name`) and keeps that token until a minute before it expires (or until
//!    Keystone refuses it, then it logs in again once).
//! 2. A caller's token is validated with `GET /v3/auth/tokens?nocatalog` (`X-Auth-Token`: our
//!    token, `X-Subject-Token`: theirs). 200 → valid; 404 → revoked, expired or garbage (401 to
//!    the caller); anything else, a timeout or a refused connection → Keystone unavailable (503
//!    to the caller). Never a bypass.
//! 3. Results, valid and invalid, are cached ([`super::cache`]) for `token_cache_time`, and a
//!    valid one never past the token's own `expires_at`. Like keystonemiddleware, a token
//!    revoked after it was cached keeps working until its cache entry ends.
//! 4. `glance-download` reads the caller's service catalog (`GET /v3/auth/catalog`, as the
//!    caller) to find the other region's Glance ([`Keystone::catalog`]).

use super::cache::{Cache, Key};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::config::KeystoneAuthtoken;
use std::time::{Duration, Instant};

/// Why a token did not produce an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The token is missing, revoked, expired or not a token (401).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Keystone could not be asked (down, slow, or refusing glint's own credentials) (503).
    #[error("keystone unavailable: {0}")]
    Unavailable(String),
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The user's id.
    pub user_id: String,
    /// The user's domain id.
    pub user_domain_id: Option<String>,
    /// Project scope, if project-scoped.
    pub project_id: Option<String>,
    /// Domain of the scoped project.
    pub project_domain_id: Option<String>,
    /// Domain scope, if domain-scoped.
    pub domain_id: Option<String>,
    /// Whether the token is system-scoped (`system: {all: true}`).
    pub system_scope: bool,
    /// Role names (Keystone already expanded implied roles), lower-cased.
    pub roles: Vec<String>,
    /// When the token stops being valid.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
enum Validation {
    Valid(TokenInfo),
    Invalid,
}

/// Refresh our own token this long before it expires.
const SERVICE_TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The `outcome` labels of `glint_keystone_validations_total`.
pub const OUTCOMES: [&str; 3] = ["valid", "invalid", "unavailable"];

/// Counts a token cache lookup (the process's global recorder; none in unit tests).
fn cache_lookup(result: &'static str) {
    metrics::counter!(shared::metrics::KEYSTONE_CACHE_LOOKUPS_TOTAL, "result" => result)
        .increment(1);
}

/// Validates tokens against one Keystone, with a cache.
#[derive(Debug)]
pub struct Keystone {
    http: reqwest::Client,
    /// `…/v3`, no trailing slash.
    base: String,
    settings: KeystoneAuthtoken,
    own_token: tokio::sync::Mutex<Option<(String, DateTime<Utc>)>>,
    cache: Cache<Validation>,
}

impl Keystone {
    /// A validator for these settings (no request is made until the first token).
    pub fn new(settings: &KeystoneAuthtoken) -> Keystone {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.http_connect_timeout))
            .timeout(Duration::from_secs(settings.http_request_timeout_seconds))
            .user_agent(concat!(
                "glint/",
                env!("CARGO_PKG_VERSION"),
                " keystone-auth"
            ))
            .build()
            .unwrap_or_default();
        let url = settings
            .auth_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/');
        let base = if url.ends_with("/v3") {
            url.to_owned()
        } else {
            format!("{url}/v3")
        };
        let capacity = if settings.token_cache_time < 0 {
            0
        } else {
            settings.token_cache_max_entries
        };
        Keystone {
            http,
            base,
            settings: settings.clone(),
            own_token: tokio::sync::Mutex::new(None),
            cache: Cache::new(capacity),
        }
    }

    /// The service-token role check of keystonemiddleware: whether `info` carries one of
    /// `service_token_roles`.
    pub fn is_service(&self, info: &TokenInfo) -> bool {
        self.settings
            .service_token_roles
            .iter()
            .any(|r| info.roles.iter().any(|have| have.eq_ignore_ascii_case(r)))
    }

    /// `service_token_roles_required`.
    pub fn service_roles_required(&self) -> bool {
        self.settings.service_token_roles_required
    }

    /// Validates `token`. With `allow_expired`, a token past its expiry (within Keystone's
    /// `allow_expired_window`) still counts, as for a user token that comes with a valid
    /// service token.
    pub async fn validate(&self, token: &str, allow_expired: bool) -> Result<TokenInfo, Error> {
        let key = Key::new(token, allow_expired);
        let now = Instant::now();
        let found = match self.cache.get(&key, now) {
            Some(v) => {
                cache_lookup("hit");
                v
            }
            None => {
                cache_lookup("miss");
                let asked = Instant::now();
                let fetched = self.fetch(token, allow_expired).await;
                let outcome = match &fetched {
                    Ok(Validation::Valid(_)) => "valid",
                    Ok(Validation::Invalid) | Err(Error::Invalid(_)) => "invalid",
                    Err(Error::Unavailable(_)) => "unavailable",
                };
                metrics::counter!(shared::metrics::KEYSTONE_VALIDATIONS_TOTAL, "outcome" => outcome)
                    .increment(1);
                metrics::histogram!(shared::metrics::KEYSTONE_VALIDATION_DURATION_SECONDS, "outcome" => outcome)
                    .record(asked.elapsed().as_secs_f64());
                let v = fetched?;
                self.remember(key, &v, allow_expired);
                v
            }
        };
        match found {
            Validation::Valid(info) if allow_expired || info.expires_at > Utc::now() => Ok(info),
            Validation::Valid(_) => Err(Error::Invalid("token expired".into())),
            Validation::Invalid => Err(Error::Invalid("token not found".into())),
        }
    }

    fn remember(&self, key: Key, v: &Validation, allow_expired: bool) {
        let Ok(secs) = u64::try_from(self.settings.token_cache_time) else {
            return;
        };
        let mut ttl = Duration::from_secs(secs);
        if let (Validation::Valid(info), false) = (v, allow_expired) {
            let left = (info.expires_at - Utc::now()).to_std().unwrap_or_default();
            ttl = ttl.min(left);
        }
        let now = Instant::now();
        self.cache.insert(key, v.clone(), now + ttl, now);
    }

    async fn fetch(&self, token: &str, allow_expired: bool) -> Result<Validation, Error> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(Validation::Invalid);
        }
        let mut url = format!("{}/auth/tokens?nocatalog", self.base);
        if allow_expired {
            url.push_str("&allow_expired=1");
        }
        for renew in [false, true] {
            let own = self.own_token(renew).await?;
            let resp = self
                .http
                .get(&url)
                .header("X-Auth-Token", own)
                .header("X-Subject-Token", token)
                .send()
                .await
                .map_err(|e| unavailable("validating a token", &e))?;
            match resp.status().as_u16() {
                200 => {
                    let body: TokenBody = resp
                        .json()
                        .await
                        .map_err(|e| unavailable("reading a token", &e))?;
                    return Ok(Validation::Valid(body.token.into_info()));
                }
                404 => return Ok(Validation::Invalid),
                401 if !renew => continue, // our own token was revoked or expired: log in again
                status => {
                    return Err(Error::Unavailable(format!(
                        "GET {}/auth/tokens answered {status}",
                        self.base
                    )));
                }
            }
        }
        Err(Error::Unavailable(
            "Keystone refuses glint's service token".into(),
        ))
    }

    /// The service catalog of the caller's `token` (`GET /v3/auth/catalog`, asked as the
    /// caller): the `catalog` list, for `glance-download` to find another region's Glance.
    pub async fn catalog(&self, token: &str) -> Result<serde_json::Value, Error> {
        let url = format!("{}/auth/catalog", self.base);
        let resp = self
            .http
            .get(&url)
            .header("X-Auth-Token", token)
            .send()
            .await
            .map_err(|e| unavailable("reading the service catalog", &e))?;
        match resp.status().as_u16() {
            200 => {
                let mut body: serde_json::Value = resp
                    .json()
                    .await
                    .map_err(|e| unavailable("reading the service catalog", &e))?;
                Ok(body["catalog"].take())
            }
            401 | 403 | 404 => Err(Error::Invalid("the token has no catalog".into())),
            status => Err(Error::Unavailable(format!("GET {url} answered {status}"))),
        }
    }

    /// glint's own token, logging in when there is none, it is about to expire, or `renew`.
    async fn own_token(&self, renew: bool) -> Result<String, Error> {
        let mut own = self.own_token.lock().await;
        if !renew
            && let Some((token, expires)) = own.as_ref()
            && *expires - SERVICE_TOKEN_MARGIN > Utc::now()
        {
            return Ok(token.clone());
        }
        let password = self.settings.password().map_err(|e| {
            tracing::error!(error = %e, "cannot read keystone_authtoken password");
            Error::Unavailable(format!("keystone_authtoken password: {e}"))
        })?;
        let resp = self
            .http
            .post(format!("{}/auth/tokens?nocatalog", self.base))
            .json(&self.login_body(&password))
            .send()
            .await
            .map_err(|e| unavailable("logging in", &e))?;
        let status = resp.status().as_u16();
        if status != 201 {
            tracing::error!(
                status,
                username = self.settings.username.as_deref().unwrap_or(""),
                "Keystone refused glint's service user; check [keystone_authtoken]"
            );
            return Err(Error::Unavailable(format!(
                "POST {}/auth/tokens answered {status}",
                self.base
            )));
        }
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| Error::Unavailable("login answer without X-Subject-Token".into()))?;
        let body: TokenBody = resp
            .json()
            .await
            .map_err(|e| unavailable("reading the login answer", &e))?;
        *own = Some((token.clone(), body.token.expires_at));
        Ok(token)
    }

    fn login_body(&self, password: &str) -> serde_json::Value {
        let s = &self.settings;
        let domain = |id: &Option<String>, name: &Option<String>| match (id, name) {
            (Some(id), _) => serde_json::json!({ "id": id }),
            (None, Some(name)) => serde_json::json!({ "name": name }),
            (None, None) => serde_json::json!({ "name": "Default" }),
        };
        let project = match (&s.project_id, &s.project_name) {
            (Some(id), _) => serde_json::json!({ "id": id }),
            (None, name) => serde_json::json!({
                "name": name,
                "domain": domain(&s.project_domain_id, &s.project_domain_name),
            }),
        };
        serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": { "user": {
                        "name": s.username,
                        "domain": domain(&s.user_domain_id, &s.user_domain_name),
                        "password": password,
                    }},
                },
                "scope": { "project": project },
            }
        })
    }
}

fn unavailable(what: &str, e: &reqwest::Error) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

// === Keystone's token document ===

#[derive(Debug, Deserialize)]
struct TokenBody {
    token: Token,
}

#[derive(Debug, Deserialize)]
struct Token {
    expires_at: DateTime<Utc>,
    user: Named,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    domain: Option<Named>,
    #[serde(default)]
    system: Option<serde_json::Value>,
    #[serde(default)]
    roles: Vec<Role>,
}

#[derive(Debug, Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    domain: Option<Box<Named>>,
}

#[derive(Debug, Deserialize)]
struct Role {
    name: String,
}

impl Token {
    fn into_info(self) -> TokenInfo {
        TokenInfo {
            user_domain_id: self.user.domain.map(|d| d.id),
            user_id: self.user.id,
            project_domain_id: self
                .project
                .as_ref()
                .and_then(|p| p.domain.as_ref())
                .map(|d| d.id.clone()),
            project_id: self.project.map(|p| p.id),
            domain_id: self.domain.map(|d| d.id),
            system_scope: self
                .system
                .as_ref()
                .is_some_and(|s| s.get("all").and_then(|a| a.as_bool()) == Some(true)),
            roles: self
                .roles
                .into_iter()
                .map(|r| r.name.to_ascii_lowercase())
                .collect(),
            expires_at: self.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keystone_token_documents() {
        let project = r#"{"token": {"methods": ["password"], "user": {"domain": {"id": "default",
            "name": "Default"}, "id": "u1", "name": "alice", "password_expires_at": null},
            "audit_ids": ["x"], "expires_at": "2026-11-22T08:23:27.000000Z",
            "issued_at": "2026-11-22T07:23:27.000000Z", "project": {"domain": {"id": "default",
            "name": "Default"}, "id": "p1", "name": "alpha"}, "is_domain": false,
            "roles": [{"id": "r1", "name": "Member"}, {"id": "r2", "name": "reader"}]}}"#;
        let info = serde_json::from_str::<TokenBody>(project)
            .unwrap()
            .token
            .into_info();
        assert_eq!(info.user_id, "u1");
        assert_eq!(info.project_id.as_deref(), Some("p1"));
        assert_eq!(info.project_domain_id.as_deref(), Some("default"));
        assert_eq!(info.roles, ["member", "reader"]);
        assert!(!info.system_scope);

        let system = r#"{"token": {"user": {"id": "u2"}, "system": {"all": true},
            "expires_at": "2026-11-22T08:23:27Z", "roles": [{"id": "r", "name": "admin"}]}}"#;
        let info = serde_json::from_str::<TokenBody>(system)
            .unwrap()
            .token
            .into_info();
        assert!(info.system_scope && info.project_id.is_none());
    }

    #[test]
    fn base_url_and_login_body() {
        let mut s = KeystoneAuthtoken {
            auth_url: Some("http://127.0.0.1:5000/v3/".into()),
            username: Some("glint".into()),
            project_name: Some("service".into()),
            ..Default::default()
        };
        assert_eq!(Keystone::new(&s).base, "http://127.0.0.1:5000/v3");
        s.auth_url = Some("http://127.0.0.1:5000".into());
        let k = Keystone::new(&s);
        assert_eq!(k.base, "http://127.0.0.1:5000/v3");
        let body = k.login_body("pw");
        let user = &body["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "glint");
        assert_eq!(user["domain"]["name"], "Default");
        assert_eq!(body["auth"]["scope"]["project"]["name"], "service");
    }

    #[tokio::test]
    async fn keystone_down_is_unavailable_never_a_bypass() {
        // a port nothing listens on
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let k = Keystone::new(&KeystoneAuthtoken {
            auth_url: Some(format!("http://127.0.0.1:{port}/v3")),
            username: Some("glint".into()),
            password: Some("pw".into()),
            project_name: Some("service".into()),
            ..Default::default()
        });
        assert!(matches!(
            k.validate("some-token", false).await,
            Err(Error::Unavailable(_))
        ));
        // garbage never reaches Keystone
        assert!(matches!(
            k.validate("bad token\n", false).await,
            Err(Error::Invalid(_))
        ));
    }
}
