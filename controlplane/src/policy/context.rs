//! The request context: who is calling, built the same way for HTTP and channel requests.

use shared::channel::Credentials;

/// The role names of a comma list (`X-Roles`, `X-Service-Roles`), trimmed and lower-cased.
pub fn role_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(|r| r.trim().to_ascii_lowercase())
        .filter(|r| !r.is_empty())
        .collect()
}

/// The caller, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context {
    /// Project the caller acts for.
    pub project_id: Option<String>,
    /// The calling user.
    pub user_id: Option<String>,
    /// Role names, lower-cased.
    pub roles: Vec<String>,
    /// Whether the caller is an administrator.
    pub is_admin: bool,
    /// The roles of the request's valid service token (keystonemiddleware's
    /// `X-Service-Roles`), lower-cased; none without one.
    pub service_roles: Vec<String>,
}

impl Context {
    /// Builds the context in "noauth" mode from the identity headers (`X-Project-Id` or
    /// `X-Tenant-Id`, `X-User-Id`, `X-Roles`; Keystone's implied roles are added: `admin`
    /// implies `member`, `member` implies `reader`). With **no** identity header at all the caller is
    /// an administrator (Glance's unauthenticated context); otherwise the caller is admin only
    /// with the `admin` role. Tokens are not validated in this mode.
    pub fn from_credentials(creds: &Credentials) -> Context {
        let anonymous =
            creds.project_id.is_none() && creds.user_id.is_none() && creds.roles.is_none();
        let mut roles = role_list(creds.roles.as_deref().unwrap_or(""));
        if anonymous {
            // Glance's unauthenticated context is an administrator.
            roles.push("admin".to_owned());
        }
        // Keystone's default implied roles: admin ⇒ member ⇒ reader.
        for (role, implied) in [("admin", "member"), ("member", "reader")] {
            if roles.iter().any(|r| r == role) && !roles.iter().any(|r| r == implied) {
                roles.push(implied.to_owned());
            }
        }
        let is_admin = anonymous || roles.iter().any(|r| r == "admin");
        let non_empty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Context {
            project_id: non_empty(&creds.project_id),
            user_id: non_empty(&creds.user_id),
            roles,
            is_admin,
            service_roles: Vec::new(),
        }
    }

    /// Whether the request carries a valid service token with the `service` role (Nova and
    /// Cinder acting for a user).
    pub fn is_service(&self) -> bool {
        self.service_roles.iter().any(|r| r == "service")
    }

    /// Whether the caller has `role` (case-insensitive).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// Whether the caller's project owns an image with this owner.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        matches!((self.project_id.as_deref(), owner), (Some(p), Some(o)) if p == o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_credentials_table() {
        let none = Context::from_credentials(&Credentials::default());
        assert!(none.is_admin && none.project_id.is_none());

        let token_only = Credentials {
            auth_token: Some("t".into()),
            ..Default::default()
        };
        assert!(Context::from_credentials(&token_only).is_admin);

        let member = Credentials {
            project_id: Some("p1".into()),
            user_id: Some("u1".into()),
            roles: Some("reader, Member".into()),
            ..Default::default()
        };
        let c = Context::from_credentials(&member);
        assert!(!c.is_admin);
        assert_eq!(c.roles, ["reader", "member"]);
        let admin_roles = Context::from_credentials(&Credentials {
            roles: Some("Admin".into()),
            ..Default::default()
        });
        assert_eq!(admin_roles.roles, ["admin", "member", "reader"]);
        assert!(c.has_role("member") && c.owns(Some("p1")) && !c.owns(Some("p2")) && !c.owns(None));

        let admin = Credentials {
            roles: Some("admin".into()),
            ..Default::default()
        };
        assert!(Context::from_credentials(&admin).is_admin);

        let project_only = Credentials {
            project_id: Some("p1".into()),
            ..Default::default()
        };
        assert!(!Context::from_credentials(&project_only).is_admin);
    }
}
