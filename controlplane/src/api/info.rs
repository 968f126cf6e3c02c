//! Discovery documents and per-image task lists: `GET /v2/info/import`, `GET /v2/info/stores`,
//! `GET /v2/info/stores/detail`, `GET /v2/info/usage`, `GET /v2/images/{image_id}/tasks`.
//!
//! The import methods are `enabled_import_methods` (clients use `PUT …/file` when the list is
//! empty); an image's task list comes from the `tasks` table. The store documents are Glance's
//! (`glance/api/v2/discovery.py`): only with multi-store (`enabled_backends`), else 404
//! "Multi backend is not supported at this site."; the detail needs `stores_info_detail`
//! (admin or service) and shows, per store, its type, weight and the driver properties
//! Glance shows for that type — never a credential. Usage is Glance's answer without
//! `use_keystone_limits`: an empty object.

use super::ApiError;
use super::extract::{Caller, ImagePath, NoBody};
use super::images::load_visible;
use crate::app::App;
use crate::policy::{Denied, Rule, Target};
use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use shared::config::{StoreConfig, StoreKind, StoreSet};

/// `GET /v2/info/import`: `enabled_import_methods`.
pub(crate) async fn import(State(app): State<App>, _: NoBody) -> Json<Value> {
    Json(json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": app.config.enabled_import_methods,
        }
    }))
}

const NO_MULTISTORE: &str = "Multi backend is not supported at this site.";

/// One store as `/v2/info/stores` lists it: `id`, `description` when set, `default` and
/// `read-only` (the http store) as the string `"true"` when they hold.
fn entry(stores: &StoreSet, s: &StoreConfig) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(s.id));
    if let Some(d) = s.description.as_deref().filter(|d| !d.is_empty()) {
        m.insert("description".into(), json!(d));
    }
    if s.id == stores.default {
        m.insert("default".into(), json!("true"));
    }
    if s.read_only() {
        m.insert("read-only".into(), json!("true"));
    }
    m
}

/// The properties `/v2/info/stores/detail` shows for a store's type (Glance's
/// `_get_<type>_properties`; sizes in bytes, as glance_store holds them).
fn properties(app: &App, s: &StoreConfig) -> Value {
    const MIB: u64 = 1024 * 1024;
    match &s.kind {
        StoreKind::File(f) => json!({
            "data_dir": f.filesystem_store_datadir.display().to_string(),
            "chunk_size": app.config.dataplane.transfer_buffer_bytes,
            "thin_provisioning": false,
        }),
        StoreKind::S3(s3) => json!({
            "s3_store_large_object_size": s3.s3_store_large_object_size.saturating_mul(MIB),
            "s3_store_large_object_chunk_size":
                s3.s3_store_large_object_chunk_size.saturating_mul(MIB),
            "s3_store_thread_pools": s3.s3_store_thread_pools,
        }),
        StoreKind::Swift(sw) => json!({
            "container": sw.swift_store_container,
            "large_object_size": sw.swift_store_large_object_size.saturating_mul(MIB),
            "large_object_chunk_size": sw.swift_store_large_object_chunk_size.saturating_mul(MIB),
        }),
        StoreKind::Http(_) => json!({}),
        StoreKind::Rbd(r) => json!({
            "chunk_size": r.rbd_store_chunk_size.saturating_mul(MIB),
            "pool": r.rbd_store_pool,
            "thin_provisioning": r.rbd_thin_provisioning,
        }),
    }
}

/// `GET /v2/info/stores`: every store in `enabled_backends` order.
pub(crate) async fn stores(State(app): State<App>, _: NoBody) -> Result<Json<Value>, ApiError> {
    let set = &app.stores;
    if !set.multistore {
        return Err(ApiError::NotFound(NO_MULTISTORE.into()));
    }
    let list: Vec<Value> = set
        .stores
        .iter()
        .map(|s| Value::Object(entry(set, s)))
        .collect();
    Ok(Json(json!({ "stores": list })))
}

/// `GET /v2/info/stores/detail`: the list plus `type`, `properties` and `weight`; 404
/// without multi-store (checked first, as Glance), 403 without `stores_info_detail`.
pub(crate) async fn stores_detail(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    let set = &app.stores;
    if !set.multistore {
        return Err(ApiError::NotFound(NO_MULTISTORE.into()));
    }
    let target = Target {
        owner: ctx.project_id.as_deref(),
        visibility: shared::image::Visibility::Private,
    };
    if !app.policy.check(&ctx, Rule::StoresInfoDetail, &target) {
        return Err(Denied::Forbidden(Rule::StoresInfoDetail).into());
    }
    let list: Vec<Value> = set
        .stores
        .iter()
        .map(|s| {
            let mut m = entry(set, s);
            m.insert("type".into(), json!(s.type_name()));
            m.insert("properties".into(), properties(&app, s));
            m.insert("weight".into(), json!(s.weight));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({ "stores": list })))
}

/// `GET /v2/info/usage`: Glance's answer without `use_keystone_limits` (`{"usage": {}}`).
pub(crate) async fn usage() -> Json<Value> {
    Json(json!({"usage": {}}))
}

/// `GET /v2/images/{image_id}/tasks`: 404 for invisible images, else the image's tasks not
/// expired yet (Glance returns their database rows, as [`crate::domain::task::Task::image_view`]).
pub(crate) async fn image_tasks(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<Json<Value>, ApiError> {
    load_visible(&app, &ctx, id).await?;
    let tasks = crate::db::tasks::of_image(&app.db, id, chrono::Utc::now()).await?;
    let views: Vec<Value> = tasks.iter().map(|t| t.image_view()).collect();
    Ok(Json(json!({ "tasks": views })))
}
