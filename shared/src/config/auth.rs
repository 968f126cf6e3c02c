//! Authentication settings: the `[auth]` mode and the Keystone options, which keep the names of
//! keystonemiddleware's `[keystone_authtoken]` section (as in `glance-api.conf`) so operators
//! recognise them.
//!
//! ```toml
//! [auth]
//! mode = "keystone"
//! [keystone_authtoken]
//! www_authenticate_uri = "https://keystone.example.com:5000/v3"
//! auth_url = "http://keystone.internal:5000/v3"
//! auth_type = "password"
//! username = "glance"
//! password_file = "/etc/glint/keystone-password"
//! project_name = "service"
//! user_domain_name = "Default"
//! project_domain_name = "Default"
//! ```

use super::Env;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How callers are identified (Glance's `[paste_deploy] flavor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No token validation: the `X-Project-Id`/`X-User-Id`/`X-Roles` headers are trusted, and a
    /// caller without them is an administrator. For development and tests only.
    #[default]
    Noauth,
    /// `X-Auth-Token` is validated against Keystone v3; the token decides who the caller is.
    Keystone,
}

impl std::str::FromStr for AuthMode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "noauth" => Ok(AuthMode::Noauth),
            "keystone" => Ok(AuthMode::Keystone),
            _ => Err(()),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// `noauth` (default) or `keystone`. Env `GLINT_AUTH_MODE`.
    pub mode: AuthMode,
}

/// `[keystone_authtoken]`: keystonemiddleware's option names, used when `auth.mode = "keystone"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeystoneAuthtoken {
    /// Public Keystone URL put in `WWW-Authenticate: Keystone uri="…"` on 401. Default: `auth_url`.
    /// Env `GLINT_KEYSTONE_WWW_AUTHENTICATE_URI`.
    pub www_authenticate_uri: Option<String>,
    /// Keystone URL glint talks to (`…/v3`; a bare `http://host:5000` works too). Required in
    /// keystone mode. Env `GLINT_KEYSTONE_AUTH_URL`.
    pub auth_url: Option<String>,
    /// Only `password` is supported. Default `password`.
    pub auth_type: String,
    /// glint's own service user, which validates tokens. Env `GLINT_KEYSTONE_USERNAME`.
    pub username: Option<String>,
    /// Its password (or use `password_file`). Env `GLINT_KEYSTONE_PASSWORD`.
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored; must not be world-readable).
    /// Env `GLINT_KEYSTONE_PASSWORD_FILE`.
    pub password_file: Option<PathBuf>,
    /// The service user's project (usually `service`). Env `GLINT_KEYSTONE_PROJECT_NAME`.
    pub project_name: Option<String>,
    /// The service user's project by id (instead of `project_name`).
    pub project_id: Option<String>,
    /// Domain of `username` by name. Default `Default` when no `user_domain_id`.
    pub user_domain_name: Option<String>,
    /// Domain of `username` by id.
    pub user_domain_id: Option<String>,
    /// Domain of `project_name` by name. Default `Default` when no `project_domain_id`.
    pub project_domain_name: Option<String>,
    /// Domain of `project_name` by id.
    pub project_domain_id: Option<String>,
    /// Seconds a validated token is cached (never past its expiry); `-1` disables the cache.
    /// Default 300 (keystonemiddleware's).
    pub token_cache_time: i64,
    /// Most tokens kept in the validation cache. Default 10000.
    pub token_cache_max_entries: usize,
    /// Seconds to connect to Keystone before it counts as unreachable (503). Default 5.
    pub http_connect_timeout: u64,
    /// Seconds for a whole Keystone request before it counts as unreachable (503). Default 10.
    pub http_request_timeout_seconds: u64,
    /// Roles one of which an `X-Service-Token` must carry to count as a service token.
    /// Default `["service"]`.
    pub service_token_roles: Vec<String>,
    /// When false (keystonemiddleware's default) a service token without those roles is
    /// still accepted as valid; it then gives no extra power (an expired user token stays
    /// refused). When true such a request is refused (401).
    pub service_token_roles_required: bool,
}

impl Default for KeystoneAuthtoken {
    fn default() -> Self {
        KeystoneAuthtoken {
            www_authenticate_uri: None,
            auth_url: None,
            auth_type: "password".into(),
            username: None,
            password: None,
            password_file: None,
            project_name: None,
            project_id: None,
            user_domain_name: None,
            user_domain_id: None,
            project_domain_name: None,
            project_domain_id: None,
            token_cache_time: 300,
            token_cache_max_entries: 10_000,
            http_connect_timeout: 5,
            http_request_timeout_seconds: 10,
            service_token_roles: vec!["service".into()],
            service_token_roles_required: false,
        }
    }
}

impl KeystoneAuthtoken {
    /// The URI advertised in `WWW-Authenticate` (`www_authenticate_uri`, else `auth_url`).
    pub fn www_authenticate_uri(&self) -> &str {
        self.www_authenticate_uri
            .as_deref()
            .or(self.auth_url.as_deref())
            .unwrap_or("")
    }

    /// The `WWW-Authenticate` value of a 401 (`Keystone uri="…"`): built here once for both
    /// planes.
    pub fn www_authenticate(&self) -> String {
        format!("Keystone uri=\"{}\"", self.www_authenticate_uri())
    }

    /// The service user's password, from `password` or `password_file`.
    pub fn password(&self) -> std::io::Result<String> {
        match (&self.password, &self.password_file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(f)) => Ok(std::fs::read_to_string(f)?
                .trim_end_matches(['\r', '\n'])
                .to_owned()),
            (None, None) => Err(std::io::Error::other("no password configured")),
        }
    }

    pub(super) fn apply_env(&mut self, env: &dyn Env) {
        let set = |key: &str, field: &mut Option<String>| {
            if let Some(v) = env.get(key) {
                *field = Some(v);
            }
        };
        set(
            "GLINT_KEYSTONE_WWW_AUTHENTICATE_URI",
            &mut self.www_authenticate_uri,
        );
        set("GLINT_KEYSTONE_AUTH_URL", &mut self.auth_url);
        set("GLINT_KEYSTONE_USERNAME", &mut self.username);
        set("GLINT_KEYSTONE_PASSWORD", &mut self.password);
        set("GLINT_KEYSTONE_PROJECT_NAME", &mut self.project_name);
        if let Some(v) = env.get("GLINT_KEYSTONE_PASSWORD_FILE") {
            self.password_file = Some(v.into());
        }
    }

    /// Problems with these settings when `mode = "keystone"`.
    pub(super) fn validate(&self, mode: AuthMode, errors: &mut Vec<String>) {
        if mode != AuthMode::Keystone {
            return;
        }
        let mut need = |ok: bool, what: &str| {
            if !ok {
                errors.push(format!(
                    "keystone_authtoken: {what} (auth.mode = \"keystone\")"
                ));
            }
        };
        need(
            self.auth_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")),
            "auth_url must be an http:// or https:// URL",
        );
        need(
            self.auth_type == "password",
            "auth_type must be \"password\"",
        );
        need(self.username.is_some(), "username is required");
        need(
            self.password.is_some() != self.password_file.is_some(),
            "set exactly one of password and password_file",
        );
        need(
            self.project_name.is_some() || self.project_id.is_some(),
            "project_name or project_id is required",
        );
        need(
            self.token_cache_time >= -1,
            "token_cache_time must be -1 or more",
        );
        need(
            self.http_connect_timeout > 0,
            "http_connect_timeout must be at least 1",
        );
        need(
            self.http_request_timeout_seconds > 0,
            "http_request_timeout_seconds must be at least 1",
        );
        if let Some(f) = &self.password_file {
            match std::fs::metadata(f) {
                Err(e) => errors.push(format!(
                    "keystone_authtoken.password_file: {}: {e}",
                    f.display()
                )),
                Ok(meta)
                    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o004
                        != 0 =>
                {
                    errors.push(format!(
                        "keystone_authtoken.password_file: {} is world-readable; chmod o-r it",
                        f.display()
                    ))
                }
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Overrides};
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_is_noauth_and_keystone_needs_settings() {
        let c = Config::load(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Noauth);
        assert_eq!(c.keystone_authtoken.token_cache_time, 300);
        assert_eq!(c.keystone_authtoken.service_token_roles, ["service"]);

        let err = Config::load(
            None,
            &env(&[("GLINT_AUTH_MODE", "keystone")]),
            &Overrides::default(),
        )
        .unwrap_err();
        let all = err.0.join("\n");
        for want in ["auth_url", "username", "password", "project_name"] {
            assert!(all.contains(want), "{want} missing from {all}");
        }
        let bad = Config::load(
            None,
            &env(&[("GLINT_AUTH_MODE", "kerberos")]),
            &Overrides::default(),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn keystone_from_file_and_env() {
        let dir = std::env::temp_dir().join(format!("glint-auth-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("glint.toml");
        std::fs::write(
            &file,
            "[auth]\nmode = \"keystone\"\n[keystone_authtoken]\n\
             auth_url = \"http://127.0.0.1:5000/v3\"\nusername = \"glance\"\n\
             project_name = \"service\"\nservice_token_roles = [\"service\", \"admin\"]\n\
             token_cache_time = 60\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            &env(&[("GLINT_KEYSTONE_PASSWORD", "s3cret")]),
            &Overrides::default(),
        )
        .unwrap();
        let k = &c.keystone_authtoken;
        assert_eq!(c.auth.mode, AuthMode::Keystone);
        assert_eq!(k.password().unwrap(), "s3cret");
        assert_eq!(k.www_authenticate_uri(), "http://127.0.0.1:5000/v3");
        assert_eq!(k.token_cache_time, 60);
        assert!(!c.to_redacted_toml().contains("s3cret"));

        let secret = dir.join("pw");
        std::fs::write(&secret, "from-file\n").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let e = env(&[("GLINT_KEYSTONE_PASSWORD_FILE", secret.to_str().unwrap())]);
        let err = Config::load(Some(&file), &e, &Overrides::default()).unwrap_err();
        assert!(err.0.join("\n").contains("world-readable"));
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert_eq!(c.keystone_authtoken.password().unwrap(), "from-file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
