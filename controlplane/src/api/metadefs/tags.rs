//! `/v2/metadefs/namespaces/{namespace}/tags[/{name}]` (Glance's `TagsController`; deleting
//! them all is the namespace controller's).
//!
//! | call | rule | notes |
//! |---|---|---|
//! | `GET …/tags` | `get_metadef_tags` | `{"tags": [{"name": …}]}`; `limit`, `marker` (a tag name), `sort_key` (default `created_at`), `sort_dir` (default `desc`) |
//! | `POST …/tags` `{"tags": [{"name": …}]}` | `add_metadef_tags` | 201; replaces the namespace's tags, or adds to them with `X-Openstack-Append: true`; a name given twice, or one that exists when appending, is 409 and changes nothing |
//! | `DELETE …/tags` | `delete_metadef_namespace`, `delete_metadef_tags` | 204; a `protected` namespace → 403 |
//! | `GET …/tags/{name}` | `get_metadef_tag` | |
//! | `POST …/tags/{name}` | `add_metadef_tag` | 201, no body; 409 when it exists |
//! | `PUT …/tags/{name}` `{"name": …}` | `modify_metadef_tag` | renames (409 on a clash) |
//! | `DELETE …/tags/{name}` | `delete_metadef_tag` | 204; in a `protected` namespace → 403 |

use super::{Missing, authorize, find_namespace, last, parse_int, query_pairs};
use crate::api::ApiError;
use crate::api::extract::{Caller, GlanceJson, NoBody};
use crate::app::App;
use crate::db::metadefs::{self as store, TagQuery, TagSort};
use crate::domain::metadef;
use crate::policy::Rule;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde_json::Value;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find metadata tag {name}"))
}

/// Glance's 409 text for a tag that exists.
pub(crate) fn duplicate_message(tag: &str, namespace: &str) -> String {
    format!(
        "A metadata tag with name={tag} already exists in namespace={namespace}. (Please note \
         that metadata tag names are case insensitive)."
    )
}

/// oslo's `bool_from_string` (anything else, or no header, is false).
fn truthy(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "true" | "on" | "y" | "yes"))
}

/// `GET …/tags`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let raw_key = last(&pairs, "sort_key").unwrap_or("created_at");
    let dir = super::sort_dir(&pairs)?;
    super::check_visibility_filter(&pairs, &["public", "private", "shared"])?;
    let marker = last(&pairs, "marker").filter(|m| !m.is_empty());
    let limit = match last(&pairs, "limit").filter(|l| !l.is_empty()) {
        None => None,
        Some(raw) => {
            let n = parse_int(raw)?;
            if n < 0 {
                return Err(ApiError::BadRequest("limit param must be positive".into()));
            }
            Some(u32::try_from(n).unwrap_or(u32::MAX))
        }
    };
    let sort_key = TagSort::from_name(raw_key).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "Invalid sort key: {raw_key}. It must be one of the following: id, name, \
             created_at, updated_at."
        ))
    })?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::GetMetadefTags, Some(&ns))?;
    let marker = match marker {
        None => None,
        Some(m) => Some(
            store::tag_marker(&app.db, ns.id, m)
                .await?
                .ok_or_else(|| not_found(m))?,
        ),
    };
    let q = TagQuery {
        sort_key,
        sort_dir: dir,
        limit,
        marker: marker.as_ref(),
    };
    let tags = store::list_tags(&app.db, ns.id, &q).await?;
    Ok(Json(metadef::tag_names_json(
        tags.iter().map(|t| t.name.as_str()),
    )))
}

/// `POST …/tags`: 201 with the names created.
pub(crate) async fn create_many(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    GlanceJson(body): GlanceJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let names = metadef::parse_tags(&body)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::AddMetadefTags, Some(&ns))?;
    let append = truthy(&headers, "x-openstack-append");
    if let Some(twice) = metadef::first_repeated(names.iter().map(String::as_str)) {
        return Err(ApiError::Conflict(duplicate_message(twice, &namespace)));
    }
    // Glance writes nothing for an empty list (its tags stay, even when replacing)
    if !names.is_empty() {
        match store::create_tags(&app.db, ns.id, &names, append, Utc::now()).await {
            Ok(()) => {}
            Err(crate::db::Error::Duplicate) => {
                let mut clash = names[0].clone();
                for n in &names {
                    if store::get_tag(&app.db, ns.id, n).await?.is_some() {
                        clash = n.clone();
                        break;
                    }
                }
                return Err(ApiError::Conflict(duplicate_message(&clash, &namespace)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(metadef::tag_names_json(names.iter().map(String::as_str))),
    ))
}

/// `GET …/tags/{name}`.
pub(crate) async fn show(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::GetMetadefTag, Some(&ns))?;
    let tag = store::get_tag(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(metadef::tag_json(&tag)))
}

/// `POST …/tags/{name}`: 201.
pub(crate) async fn create(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    _: NoBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    metadef::check_tag_name(&name)?;
    authorize(&app, &ctx, Rule::AddMetadefTag, Some(&ns))?;
    metadef::check_4byte(
        "Couldn't create metadata tag",
        &metadef::tag_db_values(&name),
    )?;
    let tag = store::create_tag(&app.db, ns.id, &name, Utc::now())
        .await
        .map_err(|e| super::conflict(e, || duplicate_message(&name, &namespace)))?;
    Ok((StatusCode::CREATED, Json(metadef::tag_json(&tag))))
}

/// `PUT …/tags/{name}`: renames the tag.
pub(crate) async fn update(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    GlanceJson(body): GlanceJson,
) -> Result<Json<Value>, ApiError> {
    let new_name = metadef::parse_tag_update(&body)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::ModifyMetadefTag, Some(&ns))?;
    store::get_tag(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    metadef::check_4byte(
        "Couldn't update metadata tag",
        &metadef::tag_db_values(&new_name),
    )?;
    let tag = store::update_tag(&app.db, ns.id, &name, &new_name, Utc::now())
        .await
        .map_err(|e| super::conflict(e, || duplicate_message(&new_name, &namespace)))?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(metadef::tag_json(&tag)))
}

/// `DELETE …/tags/{name}`: 204.
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::DeleteMetadefTag, Some(&ns))?;
    store::get_tag(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition tag {name} is protected and cannot be deleted."
        )));
    }
    if !store::delete_tag(&app.db, ns.id, &name).await? {
        return Err(ApiError::NotFound(format!(
            "The specified metadata tag {name} could not be found"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/tags`: 204.
pub(crate) async fn delete_all(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::DeleteMetadefNamespace, Some(&ns))?;
    authorize(&app, &ctx, Rule::DeleteMetadefTags, Some(&ns))?;
    super::namespaces::protected(&ns)?;
    store::delete_tags(&app.db, ns.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
