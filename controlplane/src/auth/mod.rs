//! Who is calling: turns the [`Credentials`] a request carries (HTTP headers, or the copy the
//! data plane sends over the channel) into the policy [`Context`].
//!
//! - `noauth` (default): the identity headers are trusted ([`Context::from_credentials`]).
//! - `keystone`: `X-Auth-Token` is validated against Keystone v3 ([`keystone`]); the token's
//!   user, project and roles make the context, and identity headers sent by the client are
//!   ignored. No token, or a revoked/expired/garbage one → [`Error::Invalid`] (401 with
//!   `WWW-Authenticate: Keystone uri="…"`); Keystone unreachable → [`Error::Unavailable`] (503).
//!
//! Service tokens follow keystonemiddleware: an `X-Service-Token` is validated first; an
//! invalid one refuses the request. A valid one carrying a `service_token_roles` role lets the
//! user token be validated with `allow_expired`, so a service (Nova) can finish a long
//! operation for a user whose token expired meanwhile. A valid service token without such a
//! role is refused only when `service_token_roles_required`.
//!
//! ```
//! # async fn demo() {
//! use controlplane::auth::Authenticator;
//! use shared::channel::Credentials;
//! let auth = Authenticator::new(&shared::config::Config::default()); // noauth
//! let ctx = auth.context(&Credentials::default()).await.unwrap();
//! assert!(ctx.is_admin);
//! # }
//! ```

pub mod cache;
pub mod keystone;

pub use keystone::{Error, Keystone, TokenInfo};

use crate::policy::Context;
use shared::channel::Credentials;
use shared::config::{AuthMode, Config};
use std::sync::Arc;

/// Builds request contexts according to `[auth] mode`.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Trust the identity headers.
    Noauth,
    /// Validate tokens against Keystone.
    Keystone {
        /// The validator (shared by every request and channel connection).
        keystone: Arc<Keystone>,
        /// Value of `WWW-Authenticate` on 401: `Keystone uri="…"`.
        www_authenticate: String,
    },
}

impl Authenticator {
    /// The authenticator `config` asks for. Makes no request yet.
    pub fn new(config: &Config) -> Authenticator {
        match config.auth.mode {
            AuthMode::Noauth => Authenticator::Noauth,
            AuthMode::Keystone => {
                let k = &config.keystone_authtoken;
                Authenticator::Keystone {
                    keystone: Arc::new(Keystone::new(k)),
                    www_authenticate: k.www_authenticate(),
                }
            }
        }
    }

    /// The `WWW-Authenticate` value for 401 answers (keystone mode only).
    pub fn www_authenticate(&self) -> Option<&str> {
        match self {
            Authenticator::Noauth => None,
            Authenticator::Keystone {
                www_authenticate, ..
            } => Some(www_authenticate),
        }
    }

    /// The caller's context.
    pub async fn context(&self, creds: &Credentials) -> Result<Context, Error> {
        match self {
            Authenticator::Noauth => Ok(Context::from_credentials(creds)),
            Authenticator::Keystone { keystone, .. } => {
                let (info, service) = authenticate(keystone, creds).await?;
                let mut ctx = context_of(&info);
                if let Some(service) = service {
                    ctx.service_roles = service.roles;
                }
                Ok(ctx)
            }
        }
    }
}

/// keystonemiddleware's `process_request`: the service token first, then the user token.
/// The user's token, and the service token's when there is one.
async fn authenticate(
    k: &Keystone,
    creds: &Credentials,
) -> Result<(TokenInfo, Option<TokenInfo>), Error> {
    let mut allow_expired = false;
    let mut service_info = None;
    if let Some(service) = creds.service_token.as_deref() {
        let info = k.validate(service, false).await.map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("service token: {m}")),
            other => other,
        })?;
        let is_service = k.is_service(&info);
        if !is_service && k.service_roles_required() {
            return Err(Error::Invalid(
                "service token lacks a service_token_roles role".into(),
            ));
        }
        allow_expired = is_service;
        service_info = Some(info);
    }
    let user = creds
        .auth_token
        .as_deref()
        .ok_or_else(|| Error::Invalid("no X-Auth-Token".into()))?;
    Ok((k.validate(user, allow_expired).await?, service_info))
}

/// The policy context of a validated token. The token's roles are used as Keystone lists
/// them (implied roles included); admin is the `admin` role, as Glance's `context_is_admin`.
///
/// Only a project-scoped token brings its roles: Glance's image rules have
/// `scope_types = ["project"]` and it enforces scope, so a system-, domain-scoped or unscoped
/// token is refused by every rule that needs a role (403), never taken as an administrator.
pub fn context_of(info: &TokenInfo) -> Context {
    let roles = if info.project_id.is_some() {
        info.roles.join(",")
    } else {
        String::new()
    };
    Context::from_credentials(&Credentials {
        project_id: info.project_id.clone(),
        user_id: Some(info.user_id.clone()),
        roles: Some(roles),
        ..Credentials::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn info(project: Option<&str>, roles: &[&str]) -> TokenInfo {
        TokenInfo {
            user_id: "u1".into(),
            user_domain_id: Some("default".into()),
            project_id: project.map(str::to_owned),
            project_domain_id: None,
            domain_id: None,
            system_scope: project.is_none(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            expires_at: Utc::now(),
        }
    }

    #[test]
    fn contexts_from_tokens() {
        let reader = context_of(&info(Some("p1"), &["reader"]));
        assert_eq!(reader.project_id.as_deref(), Some("p1"));
        assert_eq!(reader.user_id.as_deref(), Some("u1"));
        assert!(!reader.is_admin && reader.has_role("reader") && !reader.has_role("member"));

        let member = context_of(&info(Some("p1"), &["member", "reader"]));
        assert!(!member.is_admin && member.has_role("member"));

        let admin = context_of(&info(Some("p1"), &["admin", "member", "reader"]));
        assert!(admin.is_admin);

        // a token with no role at all is never the anonymous administrator of noauth
        let nobody = context_of(&info(Some("p1"), &[]));
        assert!(!nobody.is_admin && nobody.roles.is_empty());
        // system scope: Glance's image rules are project-scoped only
        let system_admin = context_of(&info(None, &["admin", "member", "reader"]));
        assert!(!system_admin.is_admin && system_admin.roles.is_empty());
        assert!(system_admin.project_id.is_none());
    }

    #[tokio::test]
    async fn keystone_mode_ignores_identity_headers() {
        let mut config = Config::default();
        crate::test_util::unreachable_keystone(&mut config);
        let auth = Authenticator::new(&config);
        assert_eq!(
            auth.www_authenticate(),
            Some("Keystone uri=\"https://ks.example/v3\"")
        );
        // the noauth headers alone (no token) are refused, not trusted
        let headers_only = Credentials {
            project_id: Some("p1".into()),
            roles: Some("admin".into()),
            ..Default::default()
        };
        assert!(matches!(
            auth.context(&headers_only).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            auth.context(&Credentials::default()).await,
            Err(Error::Invalid(_))
        ));
        assert_eq!(
            Authenticator::new(&Config::default()).www_authenticate(),
            None
        );
    }
}
