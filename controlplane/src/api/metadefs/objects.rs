//! `/v2/metadefs/namespaces/{namespace}/objects[/{name}]` (Glance's
//! `MetadefObjectsController`; deleting them all is the namespace controller's).
//!
//! | call | rule | notes |
//! |---|---|---|
//! | `GET …/objects` | `get_metadef_objects`, each `get_metadef_object` | `limit` (> 0), `sort_dir`, `visibility` are checked, then every object is listed in creation order (Glance pages nothing either) |
//! | `POST …/objects` | `add_metadef_object` | 201; 409 on a name the namespace has |
//! | `DELETE …/objects` | `delete_metadef_namespace` | 204; a `protected` namespace → 403 |
//! | `GET …/objects/{name}` | `get_metadef_object` | |
//! | `PUT …/objects/{name}` | `modify_metadef_object` | replaces it (renames; 409 on a clash) |
//! | `DELETE …/objects/{name}` | `delete_metadef_object` | 204; in a `protected` namespace → 403 |

use super::{Missing, allowed, authorize, find_namespace, last, parse_int, query_pairs};
use crate::api::ApiError;
use crate::api::extract::{Caller, GlanceJson, NoBody};
use crate::app::App;
use crate::db::metadefs as store;
use crate::domain::metadef::{self, MetadefObject, ObjectBody};
use crate::policy::Rule;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::Value;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find metadata object {name}"))
}

/// `GET …/objects`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    super::sort_dir(&pairs)?;
    super::check_visibility_filter(&pairs, &["public", "private", "shared"])?;
    if let Some(raw) = last(&pairs, "limit")
        && parse_int(raw)? <= 0
    {
        return Err(ApiError::BadRequest("limit param must be positive".into()));
    }
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Objects).await?;
    authorize(&app, &ctx, Rule::GetMetadefObjects, Some(&ns))?;
    let objects = if allowed(&app, &ctx, Rule::GetMetadefObject, Some(&ns)) {
        store::list_objects(&app.db, ns.id).await?
    } else {
        Vec::new()
    };
    Ok(Json(metadef::objects_json(&ns.namespace, &objects)))
}

/// `POST …/objects`: 201.
pub(crate) async fn create(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    GlanceJson(body): GlanceJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let fields = metadef::parse_object(&body, ObjectBody::Create)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Objects).await?;
    authorize(&app, &ctx, Rule::AddMetadefObject, Some(&ns))?;
    metadef::check_4byte(
        "Couldn't create metadata object",
        &metadef::object_db_values(&fields),
    )?;
    let now = Utc::now();
    store::create_object(&app.db, ns.id, &fields, now)
        .await
        .map_err(|e| {
            super::conflict(e, || {
                format!(
                    "A metadata definition object with name={} already exists in \
                     namespace={namespace}.",
                    fields.name
                )
            })
        })?;
    let object = MetadefObject::from_fields(&fields, now, now);
    Ok((
        StatusCode::CREATED,
        Json(metadef::object_json(&ns.namespace, &object)),
    ))
}

/// `GET …/objects/{name}`.
pub(crate) async fn show(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Objects).await?;
    authorize(&app, &ctx, Rule::GetMetadefObject, Some(&ns))?;
    let object = store::get_object(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(metadef::object_json(&ns.namespace, &object)))
}

/// `PUT …/objects/{name}`: the object as the body makes it.
pub(crate) async fn update(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    GlanceJson(body): GlanceJson,
) -> Result<Json<Value>, ApiError> {
    let fields = metadef::parse_object(&body, ObjectBody::Update)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Objects).await?;
    authorize(&app, &ctx, Rule::ModifyMetadefObject, Some(&ns))?;
    let old = store::get_object(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    metadef::check_4byte(
        "Couldn't update metadata object",
        &metadef::object_db_values(&fields),
    )?;
    let now = Utc::now();
    let found = store::update_object(&app.db, ns.id, &name, &fields, now)
        .await
        .map_err(|e| {
            super::conflict(e, || {
                format!(
                    "Invalid update. It would result in a duplicate metadata definition object \
                     with the same name={} in namespace={namespace}.",
                    fields.name
                )
            })
        })?;
    if !found {
        return Err(not_found(&name));
    }
    let object = MetadefObject::from_fields(&fields, old.created_at, now);
    Ok(Json(metadef::object_json(&ns.namespace, &object)))
}

/// `DELETE …/objects/{name}`: 204.
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Objects).await?;
    authorize(&app, &ctx, Rule::DeleteMetadefObject, Some(&ns))?;
    store::get_object(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition object {name} is protected and cannot be deleted."
        )));
    }
    if !store::delete_object(&app.db, ns.id, &name).await? {
        return Err(ApiError::NotFound(format!(
            "The specified metadata object {name} could not be found"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/objects`: 204.
pub(crate) async fn delete_all(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::DeleteMetadefNamespace, Some(&ns))?;
    super::namespaces::protected(&ns)?;
    store::delete_objects(&app.db, ns.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
