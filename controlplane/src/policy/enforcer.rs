//! The default rule table and its evaluation.

use super::Context;
use shared::image::Visibility;

/// A policy rule, named as in Glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// See one image.
    GetImage,
    /// List images at all (each listed image is also filtered by visibility).
    GetImages,
    /// Create an image.
    AddImage,
    /// Change an image's metadata or tags.
    ModifyImage,
    /// Delete an image.
    DeleteImage,
    /// Upload image data.
    UploadImage,
    /// Download image data.
    DownloadImage,
    /// Make an image `public`.
    PublicizeImage,
    /// Make an image `community`.
    CommunitizeImage,
}

impl Rule {
    /// Glance's rule name.
    pub fn name(self) -> &'static str {
        match self {
            Rule::GetImage => "get_image",
            Rule::GetImages => "get_images",
            Rule::AddImage => "add_image",
            Rule::ModifyImage => "modify_image",
            Rule::DeleteImage => "delete_image",
            Rule::UploadImage => "upload_image",
            Rule::DownloadImage => "download_image",
            Rule::PublicizeImage => "publicize_image",
            Rule::CommunitizeImage => "communitize_image",
        }
    }
}

/// What a rule is evaluated against: the image's (or proposed image's) owner and visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Owning project.
    pub owner: Option<&'a str>,
    /// Visibility.
    pub visibility: Visibility,
}

impl<'a> Target<'a> {
    /// The target describing an existing image.
    pub fn of(image: &'a crate::domain::Image) -> Target<'a> {
        Target {
            owner: image.owner.as_deref(),
            visibility: image.visibility,
        }
    }
}

/// Why [`Enforcer::authorize`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller cannot even see the image: report 404.
    #[error("image not found")]
    NotFound,
    /// The caller sees the image but may not do this: report 403.
    #[error("{} is not allowed", .0.name())]
    Forbidden(Rule),
}

/// Evaluates rules. The default table:
///
/// | rule | allowed when |
/// |---|---|
/// | `get_image`, `download_image` | admin, or visibility `public`/`community`, or the caller's project owns it |
/// | `get_images` | always (each image is filtered by `get_image`) |
/// | `add_image`, `modify_image`, `delete_image`, `upload_image`, `communitize_image` | admin, or owner == caller's project and role `member` |
/// | `publicize_image` | admin |
#[derive(Debug, Clone, Default)]
pub struct Enforcer {
    _private: (),
}

impl Enforcer {
    /// Whether `rule` allows `ctx` to act on `target`.
    pub fn check(&self, ctx: &Context, rule: Rule, target: &Target<'_>) -> bool {
        if ctx.is_admin {
            return true;
        }
        let owner_member = ctx.owns(target.owner) && ctx.has_role("member");
        match rule {
            Rule::GetImage | Rule::DownloadImage => {
                matches!(
                    target.visibility,
                    Visibility::Public | Visibility::Community
                ) || ctx.owns(target.owner)
            }
            Rule::GetImages => true,
            Rule::AddImage
            | Rule::ModifyImage
            | Rule::DeleteImage
            | Rule::UploadImage
            | Rule::CommunitizeImage => owner_member,
            Rule::PublicizeImage => false,
        }
    }

    /// Enforces `rule` on an existing image: refused and invisible → [`Denied::NotFound`],
    /// refused but visible → [`Denied::Forbidden`].
    pub fn authorize(&self, ctx: &Context, rule: Rule, target: &Target<'_>) -> Result<(), Denied> {
        if self.check(ctx, rule, target) {
            return Ok(());
        }
        if rule == Rule::GetImage || !self.check(ctx, Rule::GetImage, target) {
            Err(Denied::NotFound)
        } else {
            Err(Denied::Forbidden(rule))
        }
    }

    /// The visibility rule a change to `visibility` needs, if any.
    pub fn visibility_rule(visibility: Visibility) -> Option<Rule> {
        match visibility {
            Visibility::Public => Some(Rule::PublicizeImage),
            Visibility::Community => Some(Rule::CommunitizeImage),
            Visibility::Shared | Visibility::Private => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::channel::Credentials;

    fn ctx(project: &str, roles: &str) -> Context {
        Context::from_credentials(&Credentials {
            project_id: Some(project.into()),
            roles: Some(roles.into()),
            ..Default::default()
        })
    }

    #[test]
    fn rule_table() {
        let e = Enforcer::default();
        let owner = ctx("p1", "member");
        let reader = ctx("p1", "reader");
        let other = ctx("p2", "member");
        let admin = ctx("p9", "admin");
        let private = Target {
            owner: Some("p1"),
            visibility: Visibility::Private,
        };
        let shared = Target {
            owner: Some("p1"),
            visibility: Visibility::Shared,
        };
        let public = Target {
            owner: Some("p1"),
            visibility: Visibility::Public,
        };
        let community = Target {
            owner: Some("p1"),
            visibility: Visibility::Community,
        };

        for t in [&private, &shared, &public, &community] {
            assert!(e.check(&owner, Rule::GetImage, t));
            assert!(e.check(&reader, Rule::GetImage, t));
            assert!(e.check(&admin, Rule::GetImage, t));
            assert!(e.check(&owner, Rule::ModifyImage, t));
            assert!(!e.check(&reader, Rule::ModifyImage, t));
            assert!(!e.check(&other, Rule::ModifyImage, t));
            assert!(e.check(&admin, Rule::DeleteImage, t));
        }
        assert!(!e.check(&other, Rule::GetImage, &private));
        assert!(!e.check(&other, Rule::GetImage, &shared));
        assert!(e.check(&other, Rule::GetImage, &public));
        assert!(e.check(&other, Rule::DownloadImage, &community));
        assert!(!e.check(&owner, Rule::PublicizeImage, &private));
        assert!(e.check(&admin, Rule::PublicizeImage, &private));
        assert!(e.check(&owner, Rule::CommunitizeImage, &private));

        assert_eq!(
            e.authorize(&other, Rule::ModifyImage, &private),
            Err(Denied::NotFound)
        );
        assert_eq!(
            e.authorize(&other, Rule::ModifyImage, &public),
            Err(Denied::Forbidden(Rule::ModifyImage))
        );
        assert_eq!(
            e.authorize(&reader, Rule::DeleteImage, &private),
            Err(Denied::Forbidden(Rule::DeleteImage))
        );
        assert_eq!(e.authorize(&owner, Rule::UploadImage, &private), Ok(()));
    }

    #[test]
    fn ownerless_images_belong_to_nobody() {
        let e = Enforcer::default();
        let t = Target {
            owner: None,
            visibility: Visibility::Shared,
        };
        let no_project = Context::from_credentials(&Credentials {
            roles: Some("member".into()),
            ..Default::default()
        });
        assert!(!e.check(&no_project, Rule::GetImage, &t));
        assert!(!e.check(&no_project, Rule::ModifyImage, &t));
    }
}
