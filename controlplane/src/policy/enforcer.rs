//! The [`Enforcer`]: Glance's rule table (names and default check strings from
//! `glance/policies/{base,image,discovery,metadef}.py`), overridable by an operator policy
//! file, plus Glance's image-visibility rule (`is_image_visible`), which no policy can widen.
//!
//! The metadef rules are checked against the namespace ([`Target::of_namespace`]: its owner
//! as `%(project_id)s`, its visibility); a check with no namespace (list, create) targets the
//! caller's own project ([`Target::caller`]), as Glance's `MetadefAPIPolicy` does.

use super::Context;
use super::language::{self, Check};
use crate::domain::{Image, MemberStatus};
use shared::error::Action;
use shared::image::Visibility;
use std::collections::HashMap;
use std::path::Path;

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
    /// `POST …/actions/deactivate`.
    Deactivate,
    /// `POST …/actions/reactivate`.
    Reactivate,
    /// Share an image with a project.
    AddMember,
    /// Remove a member.
    DeleteMember,
    /// Show one membership.
    GetMember,
    /// List memberships.
    GetMembers,
    /// Accept/reject a membership.
    ModifyMember,
    /// See locations.
    GetImageLocation,
    /// Change locations.
    SetImageLocation,
    /// Remove a location.
    DeleteImageLocation,
    /// `POST /v2/images/{id}/locations` (API 2.17): a service, or a member of the owning
    /// project.
    AddImageLocation,
    /// `GET /v2/images/{id}/locations` (API 2.17): services (and admins).
    FetchImageLocation,
    /// glint extension: bring a `pending_delete` image back to `active` (Glance's
    /// `glance-scrubber --restore`). Default admin only.
    RestoreImage,
    /// Copy an active image's data into more stores (`copy-image` import).
    CopyImage,
    /// `GET /v2/info/stores/detail` (`glance/policies/discovery.py`): admin or service.
    StoresInfoDetail,
    /// Every `/v2/tasks` call (`glance/policies/tasks.py`): admin.
    TasksApiAccess,
    /// `PUT /v2/cache/{id}` (`glance/policies/cache.py`): admin.
    CacheImage,
    /// `GET /v2/cache`: admin.
    CacheList,
    /// `DELETE /v2/cache/{id}`, `DELETE /v2/cache`: admin.
    CacheDelete,
    /// `POST /v2/cache/clean`: admin.
    CacheClean,
    /// `POST /v2/cache/prune`: admin.
    CachePrune,
    /// `GET /v2/cache/nodes/{id}`: admin.
    ListCachedNodes,
    /// See one metadef namespace (and, by the namespace, what it holds).
    GetMetadefNamespace,
    /// List metadef namespaces at all (each listed one is also checked with
    /// `get_metadef_namespace`).
    GetMetadefNamespaces,
    /// Update (or rename) a metadef namespace.
    ModifyMetadefNamespace,
    /// Create a metadef namespace.
    AddMetadefNamespace,
    /// Delete a metadef namespace (also checked to delete all of its objects, properties or
    /// tags).
    DeleteMetadefNamespace,
    /// See one metadef object.
    GetMetadefObject,
    /// List a namespace's metadef objects.
    GetMetadefObjects,
    /// Update (or rename) a metadef object.
    ModifyMetadefObject,
    /// Create a metadef object.
    AddMetadefObject,
    /// Delete a metadef object.
    DeleteMetadefObject,
    /// List the metadef resource types (and a namespace's associations).
    ListMetadefResourceTypes,
    /// See a namespace's resource type associations.
    GetMetadefResourceType,
    /// Associate a resource type with a namespace.
    AddMetadefResourceTypeAssociation,
    /// Remove a resource type association.
    RemoveMetadefResourceTypeAssociation,
    /// See one metadef property.
    GetMetadefProperty,
    /// List a namespace's metadef properties.
    GetMetadefProperties,
    /// Update (or rename) a metadef property.
    ModifyMetadefProperty,
    /// Create a metadef property.
    AddMetadefProperty,
    /// Delete a metadef property.
    RemoveMetadefProperty,
    /// See one metadef tag.
    GetMetadefTag,
    /// List a namespace's metadef tags.
    GetMetadefTags,
    /// Rename a metadef tag.
    ModifyMetadefTag,
    /// Create one metadef tag.
    AddMetadefTag,
    /// Create several metadef tags at once (appending or replacing).
    AddMetadefTags,
    /// Delete one metadef tag.
    DeleteMetadefTag,
    /// Delete every tag of a namespace.
    DeleteMetadefTags,
}

/// The rules that exist only to be referenced (`rule:context_is_admin`, …), with defaults.
const BASE_RULES: &[(&str, &str)] = &[
    ("context_is_admin", "role:admin"),
    ("default", ""),
    ("service_api", "role:service or role:admin"),
    // glance/policies/metadef.py
    ("metadef_default", ""),
    ("metadef_admin", ADMIN),
];

const ADMIN: &str = "rule:context_is_admin";
const ADMIN_OR_PROJECT_MEMBER: &str =
    "rule:context_is_admin or (role:member and project_id:%(project_id)s)";
const ADMIN_OR_PROJECT_READER: &str =
    "rule:context_is_admin or (role:reader and project_id:%(project_id)s)";
/// Glance's `ADMIN_OR_PROJECT_READER_GET_NAMESPACE`: the owner project's readers, or a public
/// namespace.
const ADMIN_OR_PROJECT_READER_GET_NAMESPACE: &str = "rule:context_is_admin or (role:reader and \
     (project_id:%(project_id)s or 'public':%(visibility)s))";
/// Glance's `METADEF_ADMIN`.
const METADEF_ADMIN: &str = "rule:metadef_admin";

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 57] = [
        Rule::GetImage,
        Rule::GetImages,
        Rule::AddImage,
        Rule::ModifyImage,
        Rule::DeleteImage,
        Rule::UploadImage,
        Rule::DownloadImage,
        Rule::PublicizeImage,
        Rule::CommunitizeImage,
        Rule::Deactivate,
        Rule::Reactivate,
        Rule::AddMember,
        Rule::DeleteMember,
        Rule::GetMember,
        Rule::GetMembers,
        Rule::ModifyMember,
        Rule::GetImageLocation,
        Rule::SetImageLocation,
        Rule::DeleteImageLocation,
        Rule::AddImageLocation,
        Rule::FetchImageLocation,
        Rule::RestoreImage,
        Rule::CopyImage,
        Rule::StoresInfoDetail,
        Rule::TasksApiAccess,
        Rule::CacheImage,
        Rule::CacheList,
        Rule::CacheDelete,
        Rule::CacheClean,
        Rule::CachePrune,
        Rule::ListCachedNodes,
        Rule::GetMetadefNamespace,
        Rule::GetMetadefNamespaces,
        Rule::ModifyMetadefNamespace,
        Rule::AddMetadefNamespace,
        Rule::DeleteMetadefNamespace,
        Rule::GetMetadefObject,
        Rule::GetMetadefObjects,
        Rule::ModifyMetadefObject,
        Rule::AddMetadefObject,
        Rule::DeleteMetadefObject,
        Rule::ListMetadefResourceTypes,
        Rule::GetMetadefResourceType,
        Rule::AddMetadefResourceTypeAssociation,
        Rule::RemoveMetadefResourceTypeAssociation,
        Rule::GetMetadefProperty,
        Rule::GetMetadefProperties,
        Rule::ModifyMetadefProperty,
        Rule::AddMetadefProperty,
        Rule::RemoveMetadefProperty,
        Rule::GetMetadefTag,
        Rule::GetMetadefTags,
        Rule::ModifyMetadefTag,
        Rule::AddMetadefTag,
        Rule::AddMetadefTags,
        Rule::DeleteMetadefTag,
        Rule::DeleteMetadefTags,
    ];

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
            Rule::Deactivate => "deactivate",
            Rule::Reactivate => "reactivate",
            Rule::AddMember => "add_member",
            Rule::DeleteMember => "delete_member",
            Rule::GetMember => "get_member",
            Rule::GetMembers => "get_members",
            Rule::ModifyMember => "modify_member",
            Rule::GetImageLocation => "get_image_location",
            Rule::SetImageLocation => "set_image_location",
            Rule::DeleteImageLocation => "delete_image_location",
            Rule::AddImageLocation => "add_image_location",
            Rule::FetchImageLocation => "fetch_image_location",
            Rule::RestoreImage => "restore_image",
            Rule::CopyImage => "copy_image",
            Rule::StoresInfoDetail => "stores_info_detail",
            Rule::TasksApiAccess => "tasks_api_access",
            Rule::CacheImage => "cache_image",
            Rule::CacheList => "cache_list",
            Rule::CacheDelete => "cache_delete",
            Rule::CacheClean => "cache_clean",
            Rule::CachePrune => "cache_prune",
            Rule::ListCachedNodes => "list_cached_nodes",
            Rule::GetMetadefNamespace => "get_metadef_namespace",
            Rule::GetMetadefNamespaces => "get_metadef_namespaces",
            Rule::ModifyMetadefNamespace => "modify_metadef_namespace",
            Rule::AddMetadefNamespace => "add_metadef_namespace",
            Rule::DeleteMetadefNamespace => "delete_metadef_namespace",
            Rule::GetMetadefObject => "get_metadef_object",
            Rule::GetMetadefObjects => "get_metadef_objects",
            Rule::ModifyMetadefObject => "modify_metadef_object",
            Rule::AddMetadefObject => "add_metadef_object",
            Rule::DeleteMetadefObject => "delete_metadef_object",
            Rule::ListMetadefResourceTypes => "list_metadef_resource_types",
            Rule::GetMetadefResourceType => "get_metadef_resource_type",
            Rule::AddMetadefResourceTypeAssociation => "add_metadef_resource_type_association",
            Rule::RemoveMetadefResourceTypeAssociation => {
                "remove_metadef_resource_type_association"
            }
            Rule::GetMetadefProperty => "get_metadef_property",
            Rule::GetMetadefProperties => "get_metadef_properties",
            Rule::ModifyMetadefProperty => "modify_metadef_property",
            Rule::AddMetadefProperty => "add_metadef_property",
            Rule::RemoveMetadefProperty => "remove_metadef_property",
            Rule::GetMetadefTag => "get_metadef_tag",
            Rule::GetMetadefTags => "get_metadef_tags",
            Rule::ModifyMetadefTag => "modify_metadef_tag",
            Rule::AddMetadefTag => "add_metadef_tag",
            Rule::AddMetadefTags => "add_metadef_tags",
            Rule::DeleteMetadefTag => "delete_metadef_tag",
            Rule::DeleteMetadefTags => "delete_metadef_tags",
        }
    }

    /// Glance's default check string (GLANCE-API.md §3).
    pub fn default_check(self) -> &'static str {
        match self {
            Rule::GetImage => {
                "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or \
                 project_id:%(member_id)s or 'community':%(visibility)s or \
                 'public':%(visibility)s or 'shared':%(visibility)s))"
            }
            Rule::DownloadImage => {
                "rule:context_is_admin or (role:member and (project_id:%(project_id)s or \
                 project_id:%(member_id)s or 'community':%(visibility)s or \
                 'public':%(visibility)s or 'shared':%(visibility)s))"
            }
            Rule::AddImage => {
                "rule:context_is_admin or (role:member and project_id:%(project_id)s and \
                 project_id:%(owner)s)"
            }
            Rule::GetImages | Rule::GetImageLocation => ADMIN_OR_PROJECT_READER,
            Rule::ModifyImage
            | Rule::DeleteImage
            | Rule::UploadImage
            | Rule::CommunitizeImage
            | Rule::Deactivate
            | Rule::Reactivate
            | Rule::AddMember
            | Rule::DeleteMember
            | Rule::SetImageLocation => ADMIN_OR_PROJECT_MEMBER,
            Rule::GetMember | Rule::GetMembers => {
                "rule:context_is_admin or role:reader and (project_id:%(project_id)s or \
                 project_id:%(member_id)s)"
            }
            Rule::ModifyMember => {
                "rule:context_is_admin or (role:member and project_id:%(member_id)s)"
            }
            Rule::PublicizeImage
            | Rule::DeleteImageLocation
            | Rule::RestoreImage
            | Rule::CopyImage => ADMIN,
            Rule::StoresInfoDetail => "rule:context_is_admin or rule:service_api",
            Rule::AddImageLocation => {
                "rule:service_api or (role:member and project_id:%(project_id)s and \
                 project_id:%(owner)s)"
            }
            Rule::FetchImageLocation => "rule:service_api",
            Rule::TasksApiAccess => "role:admin",
            Rule::CacheImage
            | Rule::CacheList
            | Rule::CacheDelete
            | Rule::CacheClean
            | Rule::CachePrune
            | Rule::ListCachedNodes => "rule:context_is_admin",
            Rule::GetMetadefNamespace
            | Rule::GetMetadefObject
            | Rule::GetMetadefObjects
            | Rule::ListMetadefResourceTypes
            | Rule::GetMetadefResourceType
            | Rule::GetMetadefProperty
            | Rule::GetMetadefProperties
            | Rule::GetMetadefTag
            | Rule::GetMetadefTags => ADMIN_OR_PROJECT_READER_GET_NAMESPACE,
            Rule::GetMetadefNamespaces => ADMIN_OR_PROJECT_READER,
            Rule::ModifyMetadefNamespace
            | Rule::AddMetadefNamespace
            | Rule::DeleteMetadefNamespace
            | Rule::ModifyMetadefObject
            | Rule::AddMetadefObject
            | Rule::DeleteMetadefObject
            | Rule::AddMetadefResourceTypeAssociation
            | Rule::RemoveMetadefResourceTypeAssociation
            | Rule::ModifyMetadefProperty
            | Rule::AddMetadefProperty
            | Rule::RemoveMetadefProperty
            | Rule::ModifyMetadefTag
            | Rule::AddMetadefTag
            | Rule::AddMetadefTags
            | Rule::DeleteMetadefTag
            | Rule::DeleteMetadefTags => METADEF_ADMIN,
        }
    }
}

/// The rule a data transfer is checked against (the channel names it by [`Action`]).
impl From<Action> for Rule {
    fn from(action: Action) -> Rule {
        match action {
            Action::UploadImage => Rule::UploadImage,
            Action::DownloadImage => Rule::DownloadImage,
            Action::CacheImage => Rule::CacheImage,
            Action::CacheList => Rule::CacheList,
            Action::CacheDelete => Rule::CacheDelete,
            Action::CacheClean => Rule::CacheClean,
            Action::CachePrune => Rule::CachePrune,
            Action::ListCachedNodes => Rule::ListCachedNodes,
            Action::ModifyImage => Rule::ModifyImage,
            Action::DeleteImage => Rule::DeleteImage,
        }
    }
}

/// What a rule is evaluated against: the image's (or proposed image's) owner and visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Owning project (`%(owner)s` and `%(project_id)s`).
    pub owner: Option<&'a str>,
    /// Visibility (`%(visibility)s`).
    pub visibility: Visibility,
}

impl<'a> Target<'a> {
    /// The target of a metadef rule on a namespace with this owner and visibility (only
    /// `public` and `private` exist for namespaces).
    pub fn of_namespace(owner: Option<&'a str>, visibility: Visibility) -> Target<'a> {
        Target { owner, visibility }
    }

    /// The target of a metadef rule naming no namespace: the caller's own project, and no
    /// visibility (Glance's target has none, so `'public':%(visibility)s` is false; `private`
    /// makes it false here).
    pub fn caller(ctx: &'a Context) -> Target<'a> {
        Target {
            owner: ctx.project_id.as_deref(),
            visibility: Visibility::Private,
        }
    }

    /// The target describing an existing image.
    pub fn of(image: &'a Image) -> Target<'a> {
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
    /// The caller sees the image but may not do this: report 403 with Glance's "You are not
    /// authorized to complete {rule} action." ([`shared::error::not_allowed`]).
    #[error("{}", shared::error::not_allowed(.0.name()))]
    Forbidden(Rule),
}

/// Evaluates Glance's rules: the defaults of [`Rule::default_check`] (and `context_is_admin`,
/// `default`, `service_api`), each replaceable by the operator's policy file.
#[derive(Debug, Clone)]
pub struct Enforcer {
    rules: HashMap<String, Check>,
}

impl Default for Enforcer {
    fn default() -> Self {
        let mut rules = HashMap::new();
        for (name, check) in BASE_RULES {
            rules.insert(
                (*name).to_owned(),
                language::parse(check).expect("valid default"),
            );
        }
        for rule in Rule::ALL {
            rules.insert(
                rule.name().to_owned(),
                language::parse(rule.default_check()).expect("valid default"),
            );
        }
        Enforcer { rules }
    }
}

struct Eval<'a> {
    enforcer: &'a Enforcer,
    ctx: &'a Context,
    target: &'a Target<'a>,
}

impl language::Env for Eval<'_> {
    fn credential(&self, key: &str) -> Option<String> {
        match key {
            "project_id" | "tenant" | "tenant_id" | "owner" => self.ctx.project_id.clone(),
            "user_id" | "user" => self.ctx.user_id.clone(),
            "is_admin" => Some(if self.ctx.is_admin { "True" } else { "False" }.to_owned()),
            _ => None,
        }
    }

    fn has_role(&self, role: &str) -> bool {
        self.ctx.has_role(role)
    }

    fn target(&self, key: &str) -> Option<Option<String>> {
        let owner = self.target.owner.map(str::to_owned);
        Some(match key {
            "project_id" | "owner" => owner,
            "visibility" => Some(self.target.visibility.as_str().to_owned()),
            // Glance sets the caller's project as the image's `member` whenever the caller
            // is not the owner (glance/db/__init__.py, ImageRepo._format_image_from_db).
            "member_id" | "member" => match (&self.ctx.project_id, self.target.owner) {
                (Some(p), Some(o)) if p != o => Some(p.clone()),
                (Some(p), None) => Some(p.clone()),
                _ => None,
            },
            _ => return None,
        })
    }

    fn rule(&self, name: &str) -> Option<&Check> {
        self.enforcer.rules.get(name)
    }
}

impl Enforcer {
    /// The defaults overridden by the policy file at `path` (YAML or JSON; see
    /// [`language::parse_policy_file`]). Every problem is reported at once.
    pub fn load(path: &Path) -> Result<Enforcer, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("policy file {}: {e}", path.display())])?;
        Self::with_overrides(&text).map_err(|errs| {
            errs.into_iter()
                .map(|e| format!("policy file {}: {e}", path.display()))
                .collect()
        })
    }

    /// The defaults overridden by the rules in `text` (a policy file's contents).
    pub fn with_overrides(text: &str) -> Result<Enforcer, Vec<String>> {
        let file = language::parse_policy_file(text)?;
        let mut enforcer = Enforcer::default();
        let mut errors = Vec::new();
        for (name, check) in file {
            match language::parse(&check) {
                Ok(c) => {
                    enforcer.rules.insert(name, c);
                }
                Err(e) => errors.push(format!("rule {name:?}: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(enforcer)
        } else {
            Err(errors)
        }
    }

    /// Whether `rule` allows `ctx` to act on `target`.
    pub fn check(&self, ctx: &Context, rule: Rule, target: &Target<'_>) -> bool {
        let env = Eval {
            enforcer: self,
            ctx,
            target,
        };
        self.rules
            .get(rule.name())
            .is_some_and(|c| language::eval(c, &env))
    }

    /// Enforces `rule` on an image the caller can see: refused and `get_image` refused too →
    /// [`Denied::NotFound`], refused but visible → [`Denied::Forbidden`] (Glance's
    /// `ImageAPIPolicy._enforce`).
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

    /// Enforces a metadef `rule` as Glance's `MetadefAPIPolicy._enforce` does: refused, and
    /// `get_metadef_namespace` refused on the same target too → [`Denied::NotFound`] (the
    /// namespace is not shown to the caller), refused but visible → [`Denied::Forbidden`].
    pub fn authorize_metadef(
        &self,
        ctx: &Context,
        rule: Rule,
        target: &Target<'_>,
    ) -> Result<(), Denied> {
        if self.check(ctx, rule, target) {
            return Ok(());
        }
        if rule == Rule::GetMetadefNamespace || !self.check(ctx, Rule::GetMetadefNamespace, target)
        {
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

/// Glance's `is_image_visible`: admin; ownerless images; public and community images; the
/// owner; and for `shared` images any member (whatever its status). `membership` is the
/// caller's membership of the image, if any.
pub fn is_visible(ctx: &Context, image: &Image, membership: Option<MemberStatus>) -> bool {
    if ctx.is_admin || image.owner.is_none() {
        return true;
    }
    if matches!(image.visibility, Visibility::Public | Visibility::Community) {
        return true;
    }
    if ctx.owns(image.owner.as_deref()) {
        return true;
    }
    image.visibility == Visibility::Shared && membership.is_some()
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

    fn t(owner: &str, visibility: Visibility) -> Target<'_> {
        Target {
            owner: Some(owner),
            visibility,
        }
    }

    #[test]
    fn default_rule_table() {
        use Rule::*;
        use Visibility::*;
        let e = Enforcer::default();
        let owner = ctx("p1", "member");
        let reader = ctx("p1", "reader");
        let other = ctx("p2", "member");
        let other_reader = ctx("p2", "reader");
        let admin = ctx("p9", "admin");
        let none = ctx("p1", "");
        // (who, rule, visibility, allowed)
        let table: Vec<(&Context, Rule, Visibility, bool)> = vec![
            (&owner, GetImage, Private, true),
            (&reader, GetImage, Private, true),
            (&none, GetImage, Private, false),
            (&other, GetImage, Private, true), // member_id = caller: visibility is checked separately
            (&other, GetImage, Shared, true),
            (&other_reader, DownloadImage, Public, false),
            (&other, DownloadImage, Community, true),
            (&owner, ModifyImage, Private, true),
            (&reader, ModifyImage, Private, false),
            (&other, ModifyImage, Public, false),
            (&admin, DeleteImage, Private, true),
            (&owner, PublicizeImage, Private, false),
            (&admin, PublicizeImage, Private, true),
            (&owner, CommunitizeImage, Private, true),
            (&other, CommunitizeImage, Private, false),
            (&owner, Deactivate, Shared, true),
            (&reader, Reactivate, Shared, false),
            (&owner, AddMember, Shared, true),
            (&other, AddMember, Shared, false),
            (&other, DeleteMember, Shared, false),
            (&owner, GetMembers, Shared, true),
            (&other_reader, GetMember, Shared, true),
            (&none, GetMembers, Shared, false),
            (&owner, ModifyMember, Shared, false),
            (&other, ModifyMember, Shared, true),
            (&other_reader, ModifyMember, Shared, false),
            (&admin, ModifyMember, Shared, true),
            (&reader, GetImageLocation, Shared, true),
            (&other, GetImageLocation, Shared, false),
            (&owner, DeleteImageLocation, Shared, false),
            (&owner, RestoreImage, Shared, false),
            (&admin, RestoreImage, Shared, true),
            (&reader, GetImages, Private, true),
            (&none, GetImages, Private, false),
        ];
        for (who, rule, vis, want) in table {
            assert_eq!(
                e.check(who, rule, &t("p1", vis)),
                want,
                "{rule:?} {vis:?} {who:?}"
            );
        }
        // add_image: the owner must be the caller's project
        assert!(e.check(&owner, AddImage, &t("p1", Private)));
        assert!(!e.check(&owner, AddImage, &t("p2", Private)));
        assert!(!e.check(&reader, AddImage, &t("p1", Private)));
    }

    #[test]
    fn authorize_hides_what_cannot_be_seen() {
        let e = Enforcer::with_overrides(
            "get_image: \"rule:context_is_admin or project_id:%(project_id)s\"\n",
        )
        .unwrap();
        let other = ctx("p2", "member");
        let owner_reader = ctx("p1", "reader");
        assert_eq!(
            e.authorize(&other, Rule::ModifyImage, &t("p1", Visibility::Public)),
            Err(Denied::NotFound)
        );
        assert_eq!(
            e.authorize(
                &owner_reader,
                Rule::DeleteImage,
                &t("p1", Visibility::Private)
            ),
            Err(Denied::Forbidden(Rule::DeleteImage))
        );
        // Glance's 403 text
        assert_eq!(
            Denied::Forbidden(Rule::DeleteImage).to_string(),
            "You are not authorized to complete delete_image action."
        );
    }

    #[test]
    fn metadef_rules_follow_glance() {
        use Rule::*;
        use Visibility::*;
        let e = Enforcer::default();
        let owner_reader = ctx("p1", "reader");
        let owner_member = ctx("p1", "member");
        let other = ctx("p2", "reader");
        let admin = ctx("p9", "admin");
        let none = ctx("p1", "");
        // (who, rule, visibility of p1's namespace, allowed)
        let table: Vec<(&Context, Rule, Visibility, bool)> = vec![
            (&owner_reader, GetMetadefNamespace, Private, true),
            (&other, GetMetadefNamespace, Private, false),
            (&other, GetMetadefNamespace, Public, true),
            (&none, GetMetadefNamespace, Public, false),
            (&admin, GetMetadefNamespace, Private, true),
            (&other, GetMetadefObjects, Public, true),
            (&other, GetMetadefTag, Private, false),
            (&owner_member, ModifyMetadefNamespace, Private, false),
            (&owner_member, AddMetadefProperty, Private, false),
            (&owner_member, DeleteMetadefTags, Public, false),
            (&admin, DeleteMetadefNamespace, Private, true),
            (&admin, AddMetadefResourceTypeAssociation, Private, true),
            (&owner_reader, GetMetadefNamespaces, Private, true),
            (&none, GetMetadefNamespaces, Private, false),
        ];
        for (who, rule, vis, want) in table {
            assert_eq!(
                e.check(who, rule, &t("p1", vis)),
                want,
                "{rule:?} {vis:?} {who:?}"
            );
        }
        // a write refused on a namespace the caller sees is 403, on one it cannot see 404
        assert_eq!(
            e.authorize_metadef(&owner_member, AddMetadefObject, &t("p1", Private)),
            Err(Denied::Forbidden(AddMetadefObject))
        );
        assert_eq!(
            e.authorize_metadef(&other, AddMetadefObject, &t("p1", Private)),
            Err(Denied::NotFound)
        );
        // no namespace: the caller's own project is the target
        assert!(e.check(
            &owner_reader,
            ListMetadefResourceTypes,
            &Target::caller(&owner_reader)
        ));
        assert!(!e.check(&none, ListMetadefResourceTypes, &Target::caller(&none)));
        // metadef_admin can be widened by an operator, as in Glance
        let e = Enforcer::with_overrides("metadef_admin: \"role:member\"\n").unwrap();
        assert!(e.check(&owner_member, AddMetadefTag, &t("p1", Private)));
        assert_eq!(
            Denied::Forbidden(AddMetadefTags).to_string(),
            "You are not authorized to complete add_metadef_tags action."
        );
    }

    #[test]
    fn channel_actions_are_glance_rules() {
        for action in [Action::UploadImage, Action::DownloadImage] {
            assert_eq!(Rule::from(action).name(), action.rule());
        }
    }

    #[test]
    fn policy_file_overrides_and_errors() {
        let e = Enforcer::with_overrides(
            "\"publicize_image\": \"role:member\"\n\"context_is_admin\": \"role:cloud_admin\"\n",
        )
        .unwrap();
        let owner = ctx("p1", "member");
        assert!(e.check(&owner, Rule::PublicizeImage, &t("p1", Visibility::Private)));
        // rule:context_is_admin now means role:cloud_admin for every default using it
        let boss = ctx("p9", "cloud_admin");
        assert!(e.check(&boss, Rule::DeleteImage, &t("p1", Visibility::Private)));
        let errs = Enforcer::with_overrides("get_image: \"role:a and\"\nadd_image: \"(x:y\"\n")
            .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn visibility_follows_glance() {
        use crate::domain::image::tests::sample;
        let mut img = sample(); // owner p1, shared
        let other = ctx("p2", "member");
        assert!(!is_visible(&other, &img, None));
        assert!(is_visible(&other, &img, Some(MemberStatus::Pending)));
        assert!(is_visible(&other, &img, Some(MemberStatus::Rejected)));
        img.visibility = Visibility::Private;
        assert!(!is_visible(&other, &img, Some(MemberStatus::Accepted)));
        img.visibility = Visibility::Community;
        assert!(is_visible(&other, &img, None));
        img.visibility = Visibility::Private;
        img.owner = None;
        assert!(is_visible(&other, &img, None));
        assert!(is_visible(&ctx("p9", "admin"), &sample(), None));
    }
}
