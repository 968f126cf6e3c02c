//! `/v2/metadefs/…`: the metadata definitions catalog (GLANCE-API.md §1.10), Glance 33's
//! routes, status codes, defaults and query parameters.
//!
//! | route | methods | file |
//! |---|---|---|
//! | `/v2/metadefs/namespaces[/{ns}]` | list, create (201) / show, update, delete (204) | [`namespaces`] |
//! | `…/{ns}/objects[/{name}]` | list, create (201), delete all (204) / show, update, delete | [`objects`] |
//! | `…/{ns}/properties[/{name}]` | the same | [`properties`] |
//! | `…/{ns}/tags[/{name}]` | list, create several (201), delete all / show, create one (201), rename, delete | [`tags`] |
//! | `/v2/metadefs/resource_types`, `…/{ns}/resource_types[/{rt}]` | list / list, associate (201) / remove (204) | [`resource_types`] |
//!
//! Any other method on these paths is 405 with `Allow` (Glance's `reject_method_resource`).
//!
//! Every handler follows Glance's controllers, in their order: the body is checked
//! (`domain::metadef`, 403 for read-only keys, 400), the namespace is looked up **as the
//! caller may see it** (Glance's `_is_namespace_visible`: another project's private namespace
//! is 404, never 403), the rule is enforced on it ([`authorize`]: refused → 403, or 404 when
//! the caller could not even `get_metadef_namespace` it), then the domain rule
//! (`protected` → 403; 4-byte characters → 400), then the database (a clash → 409).
//! Reads are `admin`, the owner project's readers, or anyone's for a public namespace;
//! writes are `metadef_admin` (admin).

pub mod namespaces;
pub mod objects;
pub mod properties;
pub mod resource_types;
pub mod tags;

use super::ApiError;
use super::view::ApiState;
use crate::app::App;
use crate::db::{self, SortDir};
use crate::domain::metadef::Namespace;
use crate::policy::{Context, Denied, Rule, Target};
use axum::Router;
use axum::routing::get;

/// webob's `HTTPNotFound()` text, what Glance answers when policy hides a namespace.
pub(crate) const NOT_FOUND: &str = "The resource could not be found.";

/// The catalog's routes (merged into the API router).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/v2/metadefs/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}",
            get(namespaces::show)
                .put(namespaces::update)
                .delete(namespaces::delete),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/objects",
            get(objects::list)
                .post(objects::create)
                .delete(objects::delete_all),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/objects/{name}",
            get(objects::show)
                .put(objects::update)
                .delete(objects::delete),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/properties",
            get(properties::list)
                .post(properties::create)
                .delete(properties::delete_all),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/properties/{name}",
            get(properties::show)
                .put(properties::update)
                .delete(properties::delete),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/tags",
            get(tags::list)
                .post(tags::create_many)
                .delete(tags::delete_all),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/tags/{name}",
            get(tags::show)
                .post(tags::create)
                .put(tags::update)
                .delete(tags::delete),
        )
        .route("/v2/metadefs/resource_types", get(resource_types::list))
        .route(
            "/v2/metadefs/namespaces/{namespace}/resource_types",
            get(resource_types::list_associations).post(resource_types::associate),
        )
        .route(
            "/v2/metadefs/namespaces/{namespace}/resource_types/{name}",
            axum::routing::delete(resource_types::dissociate),
        )
}

/// How a handler words "no such namespace": Glance's controllers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// "Namespace X not found" whether it does not exist or cannot be seen (properties,
    /// tags, resource types, namespace update and delete).
    Plain,
    /// Unknown: the database's "Metadata definition namespace=X was not found."; not
    /// visible: "Namespace X not found" (objects).
    Objects,
    /// Unknown: the database's message; not visible: webob's bare 404 (namespace show).
    Show,
}

fn plain_missing(name: &str) -> ApiError {
    ApiError::NotFound(format!("Namespace {name} not found"))
}

fn db_missing(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Metadata definition namespace={name} was not found."
    ))
}

/// The namespace named `name` as the caller may see it (Glance's `ns_repo.get`).
pub(crate) async fn find_namespace(
    app: &App,
    ctx: &Context,
    name: &str,
    missing: Missing,
) -> Result<Namespace, ApiError> {
    let Some(ns) = db::metadefs::get_namespace(&app.db, name).await? else {
        return Err(match missing {
            Missing::Plain => plain_missing(name),
            Missing::Objects | Missing::Show => db_missing(name),
        });
    };
    if !ns.is_visible(ctx.is_admin, ctx.project_id.as_deref()) {
        return Err(match missing {
            Missing::Plain | Missing::Objects => plain_missing(name),
            Missing::Show => ApiError::NotFound(NOT_FOUND.into()),
        });
    }
    Ok(ns)
}

/// The policy target of `ns` (or, with none, the caller's own project).
fn target<'a>(ctx: &'a Context, ns: Option<&'a Namespace>) -> Target<'a> {
    match ns {
        Some(ns) => Target::of_namespace(ns.owner.as_deref(), ns.visibility.for_policy()),
        None => Target::caller(ctx),
    }
}

/// Enforces `rule` on `ns` (Glance's `MetadefAPIPolicy._enforce`).
pub(crate) fn authorize(
    app: &App,
    ctx: &Context,
    rule: Rule,
    ns: Option<&Namespace>,
) -> Result<(), ApiError> {
    app.policy
        .authorize_metadef(ctx, rule, &target(ctx, ns))
        .map_err(|d| match d {
            Denied::NotFound => ApiError::NotFound(NOT_FOUND.into()),
            forbidden @ Denied::Forbidden(_) => ApiError::Policy(forbidden),
        })
}

/// Whether `rule` allows the caller on `ns` (Glance's soft `check`).
pub(crate) fn allowed(app: &App, ctx: &Context, rule: Rule, ns: Option<&Namespace>) -> bool {
    app.policy.check(ctx, rule, &target(ctx, ns))
}

/// The pairs of a raw query string, decoded, in order.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The last value of `key` (webob's `params[key]`).
pub(crate) fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `sort_dir` (default `desc`).
pub(crate) fn sort_dir(pairs: &[(String, String)]) -> Result<SortDir, ApiError> {
    match last(pairs, "sort_dir").unwrap_or("desc") {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(ApiError::BadRequest(format!(
            "Invalid sort direction: {other}"
        ))),
    }
}

/// Glance's `_get_filters` of the object and tag lists: `visibility`, when given, must be
/// `public`, `private` or `shared` (and filters nothing).
pub(crate) fn check_visibility_filter(
    pairs: &[(String, String)],
    allowed: &[&str],
) -> Result<(), ApiError> {
    match last(pairs, "visibility") {
        Some(v) if !v.is_empty() && !allowed.contains(&v) => Err(ApiError::BadRequest(format!(
            "Invalid visibility value: {v}"
        ))),
        _ => Ok(()),
    }
}

/// A `limit` as Python's `int()` reads it (400 otherwise).
pub(crate) fn parse_int(raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::BadRequest("limit param must be an integer".into()))
}

/// Python's `urllib.parse.quote_plus`: letters, digits and `_.-~` stay, a space is `+`,
/// every other byte `%XX`.
pub(crate) fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A path segment for a `Location` header: characters a URL path cannot carry are
/// percent-encoded.
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z'
            | b'A'..=b'Z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Maps a duplicate key to 409 with `message`; other database errors pass.
pub(crate) fn conflict(e: db::Error, message: impl FnOnce() -> String) -> ApiError {
    match e {
        db::Error::Duplicate => ApiError::Conflict(message()),
        other => ApiError::Db(other),
    }
}

#[cfg(test)]
mod tests;
