//! Discovery documents and per-image task lists:
//! `GET /v2/info/import`, `GET /v2/info/stores`, `GET /v2/images/{image_id}/tasks`.
//!
//! glint has no interoperable import yet, so the import methods list is empty (clients then
//! use `PUT …/file`) and every image's task list is empty. There is one store, the
//! filesystem store, which is the default.

use super::ApiError;
use super::extract::{Caller, ImagePath, NoBody};
use super::images::load_visible;
use crate::app::App;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// The import methods this deployment enables (none until the import issue).
pub const IMPORT_METHODS: &[&str] = &[];

/// `GET /v2/info/import`.
pub(crate) async fn import(_: NoBody) -> Json<Value> {
    Json(json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": IMPORT_METHODS,
        }
    }))
}

/// `GET /v2/info/stores`: the single filesystem store.
pub(crate) async fn stores(_: NoBody) -> Json<Value> {
    Json(json!({
        "stores": [
            {"id": "file", "description": "Filesystem store", "default": "true"}
        ]
    }))
}

/// `GET /v2/images/{image_id}/tasks`: 404 for invisible images, else the (empty) task list.
pub(crate) async fn image_tasks(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<Json<Value>, ApiError> {
    load_visible(&app, &ctx, id).await?;
    Ok(Json(json!({"tasks": []})))
}
