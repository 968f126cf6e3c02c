//! `DELETE /v2/stores/{store_id}/{image_id}` (Glance 2.10, `ImagesController.delete_from_store`
//! in `glance/api/v2/images.py`): removes one store's copy of an image's data, keeping the
//! others. Served only with multi-store. In Glance's order:
//!
//! 1. Without multi-store: 404.
//! 2. A store not configured: 409 "The selected store X is not available on this node."
//! 3. No image the caller can see (or not a UUID): 404 "Failed to find image X".
//! 4. Policy `get_image_location`, then `delete_image_location` (default admin): 403.
//! 5. Image not `active`: 409; its only copy: 403; no copy in that store: 404
//!    ([`crate::domain::Image::remove_from_store`]).
//! 6. 204: the copy moves to `pending_delete` with its `delete_data` job for the data plane
//!    (one transaction, see `db::images::update`), and leaves the image's `stores`.

use super::ApiError;
use super::extract::{Caller, NoBody, ReqId};
use super::images::write_image;
use crate::app::App;
use crate::policy::{Rule, Target};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use shared::image::ImageId;

/// `DELETE /v2/stores/{store_id}/{image_id}`: 204.
pub(crate) async fn delete_from_store(
    State(app): State<App>,
    Caller(ctx): Caller,
    ReqId(request_id): ReqId,
    _: NoBody,
    Path((store_id, raw_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !app.stores.multistore {
        return Err(ApiError::NotFound(
            "The resource could not be found.".into(),
        ));
    }
    if app.stores.get(&store_id).is_none() {
        return Err(ApiError::Conflict(format!(
            "The selected store {store_id} is not available on this node."
        )));
    }
    let not_found = || ApiError::NotFound(format!("Failed to find image {raw_id}"));
    let id: ImageId = raw_id.parse().map_err(|_| not_found())?;
    let written = write_image(&app, &ctx, id, Rule::GetImageLocation, |image| {
        app.policy
            .authorize(&ctx, Rule::DeleteImageLocation, &Target::of(image))?;
        image.remove_from_store(&store_id)?;
        Ok(true)
    })
    .await;
    match written {
        Ok(_) => {
            tracing::info!(image_id = %id, request_id = %request_id, store = %store_id,
                "image data removed from store; deletion queued");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(ApiError::NotFound(_)) => Err(not_found()),
        Err(e) => Err(e),
    }
}
