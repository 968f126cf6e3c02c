//! `/v2/metadefs/namespaces[/{namespace}]` (Glance's `NamespaceController`).
//!
//! | call | rule | notes |
//! |---|---|---|
//! | `GET /v2/metadefs/namespaces` | `get_metadef_namespaces`, `list_metadef_resource_types`, each listed one `get_metadef_namespace` | `visibility` (`public`/`private`), `resource_types` (comma list), `limit` (25, at most 1000), `marker` (a namespace name), `sort_key` (any column, default `created_at`), `sort_dir` (default `desc`); `first`, `next` and `schema` links |
//! | `POST /v2/metadefs/namespaces` | `add_metadef_namespace` (+ `add_metadef_{resource_type_association,object,property,tag}` for what it embeds) | 201 with `Location`; 409 when the name exists |
//! | `GET …/{namespace}` | `get_metadef_namespace` (refused: 404), then `list_metadef_resource_types`, `get_metadef_{objects,properties,tags}` | `?resource_type=` prefixes property names |
//! | `PUT …/{namespace}` | `modify_metadef_namespace` | replaces the fields (what is left out is cleared or back to its default); renames; 409 on a clash |
//! | `DELETE …/{namespace}` | `delete_metadef_namespace` | 204; `protected` → 403; its content goes with it |

use super::{Missing, allowed, authorize, find_namespace, last, parse_int, query_pairs};
use crate::api::ApiError;
use crate::api::extract::{Caller, GlanceJson, HostHeader, NoBody};
use crate::api::list_params::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::app::App;
use crate::db::metadefs::{self as store, NamespaceQuery, NamespaceSort};
use crate::domain::metadef::{self, Namespace};
use crate::policy::Rule;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

/// `GET /v2/metadefs/namespaces`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let limit = match last(&pairs, "limit") {
        None => i64::from(DEFAULT_LIMIT),
        Some(raw) => parse_int(raw)?.min(i64::from(MAX_LIMIT)),
    };
    let dir = super::sort_dir(&pairs)?;
    let visibility = last(&pairs, "visibility");
    if let Some(v) = visibility
        && !v.is_empty()
        && v.parse::<metadef::NamespaceVisibility>().is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "Invalid visibility value: {v}"
        )));
    }
    if limit < 0 {
        return Err(ApiError::BadRequest("limit param must be positive".into()));
    }
    let raw_key = last(&pairs, "sort_key").unwrap_or("created_at");
    let sort_key = NamespaceSort::from_name(raw_key).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "Invalid sort key: {raw_key}. It must be one of the following: id, namespace, \
             display_name, description, visibility, protected, owner, created_at, updated_at."
        ))
    })?;

    authorize(&app, &ctx, Rule::GetMetadefNamespaces, None)?;
    authorize(&app, &ctx, Rule::ListMetadefResourceTypes, None)?;

    let marker = match last(&pairs, "marker") {
        None => None,
        Some("") => {
            return Err(ApiError::NotFound(
                "Metadata definition namespace not found for id=".into(),
            ));
        }
        Some(name) => {
            let ns = store::get_namespace(&app.db, name).await?.ok_or_else(|| {
                ApiError::NotFound(format!(
                    "Metadata definition namespace={name} was not found."
                ))
            })?;
            if !ns.is_visible(ctx.is_admin, ctx.project_id.as_deref()) {
                return Err(ApiError::Forbidden(format!(
                    "Forbidding request, metadata definition namespace={name} is not visible."
                )));
            }
            Some(ns)
        }
    };
    let resource_types: Option<Vec<String>> =
        last(&pairs, "resource_types").map(|r| r.split(',').map(str::to_owned).collect());
    let query = NamespaceQuery {
        admin: ctx.is_admin,
        project: ctx.project_id.as_deref(),
        visibility,
        resource_types: resource_types.as_deref(),
        sort_key,
        sort_dir: dir,
        limit: limit as u32,
        marker: marker.as_ref(),
    };
    let namespaces: Vec<Namespace> = store::list_namespaces(&app.db, &query)
        .await?
        .into_iter()
        .filter(|ns| allowed(&app, &ctx, Rule::GetMetadefNamespace, Some(ns)))
        .collect();
    let ids: Vec<i64> = namespaces.iter().map(|n| n.id).collect();
    let associations = store::associations_of(&app.db, &ids).await?;
    let list: Vec<Value> = namespaces
        .iter()
        .map(|ns| {
            metadef::listed_namespace_json(
                ns,
                associations.get(&ns.id).map(Vec::as_slice).unwrap_or(&[]),
            )
        })
        .collect();

    // Glance's links: the request's parameters (each once, its last value) less `marker`,
    // and `next` with the last namespace as the marker.
    let mut params: Vec<(&str, &str)> = Vec::new();
    for (k, _) in &pairs {
        if k != "marker" && !params.iter().any(|(p, _)| p == k) {
            params.push((k, last(&pairs, k).unwrap_or("")));
        }
    }
    let encode = |params: &[(&str, &str)]| {
        params
            .iter()
            .map(|(k, v)| format!("{}={}", super::quote_plus(k), super::quote_plus(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let mut body = Map::new();
    body.insert("namespaces".into(), Value::Array(list));
    let first = if params.is_empty() {
        "/v2/metadefs/namespaces".to_owned()
    } else {
        format!("/v2/metadefs/namespaces?{}", encode(&params))
    };
    body.insert("first".into(), json!(first));
    body.insert("schema".into(), json!(metadef::NAMESPACES_SCHEMA));
    if !namespaces.is_empty() && namespaces.len() as i64 == limit {
        let next = &namespaces[namespaces.len() - 1].namespace;
        params.push(("marker", next));
        body.insert(
            "next".into(),
            json!(format!("/v2/metadefs/namespaces?{}", encode(&params))),
        );
    }
    Ok(Json(Value::Object(body)))
}

/// `POST /v2/metadefs/namespaces`: 201 with `Location` and the namespace as created.
pub(crate) async fn create(
    State(app): State<App>,
    Caller(ctx): Caller,
    HostHeader(host): HostHeader,
    GlanceJson(body): GlanceJson,
) -> Result<Response, ApiError> {
    let new = metadef::parse_new_namespace(&body)?;
    authorize(&app, &ctx, Rule::AddMetadefNamespace, None)?;
    let non_empty = |n: Option<usize>| n.is_some_and(|n| n > 0);
    for (present, rule) in [
        (
            non_empty(new.associations.as_ref().map(Vec::len)),
            Rule::AddMetadefResourceTypeAssociation,
        ),
        (
            non_empty(new.objects.as_ref().map(Vec::len)),
            Rule::AddMetadefObject,
        ),
        (
            non_empty(new.properties.as_ref().map(|p| p.len())),
            Rule::AddMetadefProperty,
        ),
        (
            non_empty(new.tags.as_ref().map(Vec::len)),
            Rule::AddMetadefTag,
        ),
    ] {
        if present {
            authorize(&app, &ctx, rule, None)?;
        }
    }

    // Glance's order: the namespace row (4-byte characters, then the name), then each
    // association, object, tag and property
    const WHAT: &str = "Couldn't create metadata namespace";
    let values = new.fields.for_create(ctx.project_id.as_deref());
    let name = values.namespace.clone();
    metadef::check_4byte(WHAT, &metadef::namespace_db_values(&values))?;
    let exists = || {
        ApiError::Conflict(format!(
            "The metadata definition namespace={name} already exists."
        ))
    };
    if store::get_namespace(&app.db, &name).await?.is_some() {
        return Err(exists());
    }
    if let Some(rt) = new
        .associations
        .as_ref()
        .and_then(|a| metadef::first_repeated(a.iter().map(|a| a.name.as_str())))
    {
        return Err(ApiError::Conflict(format!(
            "The metadata definition resource-type association of resource-type={rt} to \
             namespace={name} already exists."
        )));
    }
    let mut seen_objects = std::collections::HashSet::new();
    for o in new.objects.iter().flatten() {
        metadef::check_4byte(WHAT, &metadef::object_db_values(o))?;
        if !seen_objects.insert(o.name.as_str()) {
            return Err(ApiError::Conflict(format!(
                "A metadata definition object with name={} already exists in namespace={name}.",
                o.name
            )));
        }
    }
    let mut seen_tags = std::collections::HashSet::new();
    for t in new.tags.iter().flatten() {
        metadef::check_4byte(WHAT, &metadef::tag_db_values(t))?;
        if !seen_tags.insert(t.as_str()) {
            return Err(ApiError::Conflict(super::tags::duplicate_message(t, &name)));
        }
    }
    for (p, def) in new.properties.iter().flatten() {
        metadef::check_4byte(WHAT, &metadef::property_db_values(p, def))?;
    }

    let ns = store::create_namespace(&app.db, &values, &new, Utc::now())
        .await
        .map_err(|e| super::conflict(e, || exists().to_string()))?;
    tracing::info!(namespace = %ns.namespace, "metadef namespace created");
    let mut response = (
        StatusCode::CREATED,
        Json(metadef::created_namespace_json(&ns, &new)),
    )
        .into_response();
    let location = format!(
        "http://{host}/v2/metadefs/namespaces/{}",
        super::path_segment(&ns.namespace)
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /v2/metadefs/namespaces/{namespace}`.
pub(crate) async fn show(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    _: NoBody,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    super::check_visibility_filter(&pairs, &["public", "private"])?;
    let ns = find_namespace(&app, &ctx, &name, Missing::Show).await?;
    authorize(&app, &ctx, Rule::GetMetadefNamespace, Some(&ns))?;
    for rule in [
        Rule::ListMetadefResourceTypes,
        Rule::GetMetadefObjects,
        Rule::GetMetadefProperties,
        Rule::GetMetadefTags,
    ] {
        authorize(&app, &ctx, rule, Some(&ns))?;
    }
    let detail = store::namespace_detail(&app.db, &ns).await?;
    Ok(Json(detail.to_json(last(&pairs, "resource_type"))))
}

/// `PUT /v2/metadefs/namespaces/{namespace}`.
pub(crate) async fn update(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    GlanceJson(body): GlanceJson,
) -> Result<Json<Value>, ApiError> {
    let fields = metadef::parse_namespace_update(&body)?;
    let ns = find_namespace(&app, &ctx, &name, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::ModifyMetadefNamespace, Some(&ns))?;
    let values = fields.for_update(ctx.project_id.as_deref());
    metadef::check_4byte(
        "Couldn't update metadata namespace",
        &metadef::namespace_db_values(&values),
    )?;
    let updated = store::update_namespace(&app.db, ns.id, &values, Utc::now())
        .await
        .map_err(|e| {
            super::conflict(e, || {
                format!(
                    "Invalid update. It would result in a duplicate metadata definition \
                     namespace with the same name of {}",
                    values.namespace
                )
            })
        })?
        .ok_or_else(|| ApiError::NotFound(format!("Namespace {name} not found")))?;
    Ok(Json(Value::Object(metadef::namespace_json(&updated))))
}

/// Glance's refusal to delete a protected namespace (or all of one kind of its content).
pub(crate) fn protected(ns: &Namespace) -> Result<(), ApiError> {
    if ns.protected {
        return Err(ApiError::Forbidden(format!(
            "Metadata definition namespace {} is protected and cannot be deleted.",
            ns.namespace
        )));
    }
    Ok(())
}

/// `DELETE /v2/metadefs/namespaces/{namespace}`: 204.
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(name): Path<String>,
    _: NoBody,
) -> Result<StatusCode, ApiError> {
    let ns = find_namespace(&app, &ctx, &name, Missing::Plain).await?;
    authorize(&app, &ctx, Rule::DeleteMetadefNamespace, Some(&ns))?;
    protected(&ns)?;
    if !store::delete_namespace(&app.db, ns.id).await? {
        return Err(ApiError::NotFound(format!(
            "The specified namespace {name} could not be found"
        )));
    }
    tracing::info!(namespace = %name, "metadef namespace deleted");
    Ok(StatusCode::NO_CONTENT)
}
