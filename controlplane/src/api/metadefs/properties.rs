//! `/v2/metadefs/namespaces/{namespace}/properties[/{name}]` (Glance's
//! `NamespacePropertiesController`; deleting them all is the namespace controller's).
//!
//! | call | rule | notes |
//! |---|---|---|
//! | `GET …/properties` | `get_metadef_properties` | `{"properties": {name: definition}}` |
//! | `POST …/properties` | `add_metadef_property` | 201; 409 on a name the namespace has |
//! | `DELETE …/properties` | `delete_metadef_namespace` | 204; a `protected` namespace → 403 |
//! | `GET …/properties/{name}` | `get_metadef_property` (+ `get_metadef_resource_type` with `?resource_type=`) | with `?resource_type=`, `name` carries the association's prefix, which is stripped (404 if it does not) |
//! | `PUT …/properties/{name}` | `modify_metadef_property` | replaces it (renames; 409 on a clash) |
//! | `DELETE …/properties/{name}` | `remove_metadef_property` | 204; in a `protected` namespace → 403 |

use super::{Missing, authorize, find_namespace, last, query_pairs};
use crate::api::ApiError;
use crate::api::extract::{Caller, GlanceJson, NoBody};
use crate::app::App;
use crate::db::metadefs as store;
use crate::domain::metadef::{self, Property};
use crate::policy::Rule;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::Value;

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("Could not find property {name}"))
}

/// `GET …/properties`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::GetMetadefProperties, Some(&ns))?;
    let props = store::list_properties(&app.db, ns.id).await?;
    Ok(Json(metadef::properties_json(&props)))
}

/// `POST …/properties`: 201.
pub(crate) async fn create(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
    GlanceJson(body): GlanceJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (name, def) = metadef::parse_property(&body)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::AddMetadefProperty, Some(&ns))?;
    metadef::check_4byte(
        "Couldn't create metadata property",
        &metadef::property_db_values(&name, &def),
    )?;
    store::create_property(&app.db, ns.id, &name, &def, Utc::now())
        .await
        .map_err(|e| {
            super::conflict(e, || {
                format!(
                    "A metadata definition property with name={name} already exists in \
                     namespace={namespace}."
                )
            })
        })?;
    Ok((
        StatusCode::CREATED,
        Json(metadef::property_json(&Property { name, def })),
    ))
}

/// `GET …/properties/{name}[?resource_type=…]`.
pub(crate) async fn show(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::GetMetadefProperty, Some(&ns))?;
    let mut name = name.as_str();
    if let Some(rt) = last(&pairs, "resource_type").filter(|r| !r.is_empty()) {
        authorize(&app, &ctx, Rule::GetMetadefResourceType, Some(&ns))?;
        if store::get_resource_type(&app.db, rt).await?.is_none() {
            return Err(ApiError::NotFound(format!(
                "The metadata definition resource-type with name={rt}, was not found."
            )));
        }
        let association = store::get_association(&app.db, ns.id, rt)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "The metadata definition resource-type association of resource-type={rt} \
                     to namespace={namespace}, was not found."
                ))
            })?;
        match association.prefix.as_deref() {
            Some(prefix) if !prefix.is_empty() && name.starts_with(prefix) => {
                name = &name[prefix.len()..];
            }
            prefix => {
                return Err(ApiError::NotFound(format!(
                    "Property {name} does not start with the expected resource type \
                     association prefix of '{}'.",
                    prefix.unwrap_or("None")
                )));
            }
        }
    }
    let property = store::get_property(&app.db, ns.id, name)
        .await?
        .ok_or_else(|| not_found(name))?;
    Ok(Json(metadef::property_json(&property)))
}

/// `PUT …/properties/{name}`.
pub(crate) async fn update(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
    GlanceJson(body): GlanceJson,
) -> Result<Json<Value>, ApiError> {
    let (new_name, def) = metadef::parse_property(&body)?;
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::ModifyMetadefProperty, Some(&ns))?;
    store::get_property(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    metadef::check_4byte(
        "Couldn't update metadata property",
        &metadef::property_db_values(&new_name, &def),
    )?;
    let found = store::update_property(&app.db, ns.id, &name, &new_name, &def, Utc::now())
        .await
        .map_err(|e| {
            super::conflict(e, || {
                format!(
                    "Invalid update. It would result in a duplicate metadata definition \
                     property with the same name={new_name} in namespace={namespace}."
                )
            })
        })?;
    if !found {
        return Err(not_found(&name));
    }
    Ok(Json(metadef::property_json(&Property {
        name: new_name,
        def,
    })))
}

/// `DELETE …/properties/{name}`: 204.
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::RemoveMetadefProperty, Some(&ns))?;
    store::get_property(&app.db, ns.id, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition property {name} is protected and cannot be deleted."
        )));
    }
    if !store::delete_property(&app.db, ns.id, &name).await? {
        return Err(ApiError::NotFound(format!(
            "The specified property {name} could not be found"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/properties`: 204.
pub(crate) async fn delete_all(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(namespace): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &namespace, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::DeleteMetadefNamespace, Some(&ns))?;
    super::namespaces::protected(&ns)?;
    store::delete_properties(&app.db, ns.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
