//! `/v2/metadefs/resource_types` and `/v2/metadefs/namespaces/{namespace}/resource_types[/{name}]`
//! (Glance's `ResourceTypeController`).
//!
//! | call | rule | notes |
//! |---|---|---|
//! | `GET /v2/metadefs/resource_types` | `list_metadef_resource_types` | every resource type (the seeded `OS::…` ones and those associations created) |
//! | `GET …/{namespace}/resource_types` | `list_metadef_resource_types`, each `get_metadef_resource_type` | the namespace's associations |
//! | `POST …/{namespace}/resource_types` | `add_metadef_resource_type_association` | 201; an unknown resource type is created; 409 when associated already |
//! | `DELETE …/{namespace}/resource_types/{name}` | `remove_metadef_resource_type_association` | 204; in a `protected` namespace → 403 |

use super::{Missing, allowed, authorize, find_namespace};
use crate::api::ApiError;
use crate::api::extract::{Caller, GlanceJson, NoBody};
use crate::app::App;
use crate::db::metadefs as store;
use crate::domain::metadef;
use crate::policy::Rule;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::Value;

/// `GET /v2/metadefs/resource_types`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &ctx, Rule::ListMetadefResourceTypes, None)?;
    let list = store::list_resource_types(&app.db).await?;
    Ok(Json(metadef::resource_types_json(&list)))
}

/// `GET …/{namespace}/resource_types`.
pub(crate) async fn list_associations(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::ListMetadefResourceTypes, Some(&ns))?;
    let list = if allowed(&app, &ctx, Rule::GetMetadefResourceType, Some(&ns)) {
        store::list_associations(&app.db, ns.id).await?
    } else {
        Vec::new()
    };
    Ok(Json(metadef::associations_json(&list)))
}

/// `POST …/{namespace}/resource_types`: 201 with the association.
pub(crate) async fn associate(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    GlanceJson(body): GlanceJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let fields = metadef::parse_association(&body)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(
        &app,
        &ctx,
        Rule::AddMetadefResourceTypeAssociation,
        Some(&ns),
    )?;
    let association = store::create_association(&app.db, ns.id, &fields, Utc::now())
        .await
        .map_err(|e| {
            super::conflict(e, || {
                format!(
                    "The metadata definition resource-type association of resource-type={} to \
                     namespace={namespace} already exists.",
                    fields.name
                )
            })
        })?;
    Ok((
        StatusCode::CREATED,
        Json(metadef::association_json(&association)),
    ))
}

/// `DELETE …/{namespace}/resource_types/{name}`: 204.
pub(crate) async fn dissociate(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(
        &app,
        &ctx,
        Rule::RemoveMetadefResourceTypeAssociation,
        Some(&ns),
    )?;
    let missing = || ApiError::NotFound(format!("Failed to find resource type {name} to delete"));
    store::get_association(&app.db, ns.id, &name)
        .await?
        .ok_or_else(missing)?;
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition resource-type-association {name} is protected and cannot be \
             deleted."
        )));
    }
    if !store::delete_association(&app.db, ns.id, &name).await? {
        return Err(missing());
    }
    Ok(StatusCode::NO_CONTENT)
}
