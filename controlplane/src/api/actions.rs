//! `POST /v2/images/{image_id}/actions/{deactivate,reactivate}` (Glance 2.3), and glint's
//! `…/actions/restore` (admin; brings a `pending_delete` image back to `active`, what
//! `glance-scrubber --restore` does).
//!
//! Deactivate is allowed from `active` (a no-op when already `deactivated`); any other status
//! is 403. A deactivated image can be shown and listed but its data is refused (403) to
//! everyone but admins. Reactivate is the reverse. Both answer 204.

use super::ApiError;
use super::extract::{Caller, ImagePath, NoBody};
use super::images::{not_found, write_image};
use crate::app::App;
use crate::db;
use crate::domain::Image;
use crate::policy::{Rule, Target};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use shared::image::ImageStatus;

async fn act(
    app: &App,
    ctx: &crate::policy::Context,
    id: shared::image::ImageId,
    rule: Rule,
    step: fn(&mut Image) -> Result<bool, crate::domain::Error>,
) -> Result<StatusCode, ApiError> {
    let mut from = ImageStatus::Active;
    let image = write_image(app, ctx, id, rule, |image| {
        from = image.status;
        Ok(step(image)?)
    })
    .await?;
    if image.status != from {
        app.metrics.transition(from, image.status);
        tracing::info!(image_id = %id, from = %from, to = %image.status, "image status changed");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/actions/deactivate`.
pub(crate) async fn deactivate(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<StatusCode, ApiError> {
    act(&app, &ctx, id, Rule::Deactivate, Image::deactivate).await
}

/// `POST …/actions/reactivate`.
pub(crate) async fn reactivate(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<StatusCode, ApiError> {
    act(&app, &ctx, id, Rule::Reactivate, Image::reactivate).await
}

/// `POST …/actions/restore` (glint): `pending_delete → active`. Policy `restore_image`
/// (admin); 404 for images that do not exist or are fully deleted, 409 when not pending.
pub(crate) async fn restore(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<StatusCode, ApiError> {
    let _serialised = app.lock_image(id).await;
    let mut image = db::images::get(&app.db, id)
        .await?
        .filter(|i| i.status != ImageStatus::Deleted)
        .map(|i| (*i).clone())
        .ok_or_else(|| not_found(id))?;
    if !app
        .policy
        .check(&ctx, Rule::RestoreImage, &Target::of(&image))
    {
        return Err(not_found(id));
    }
    image.restore()?;
    image.updated_at = Utc::now();
    if !db::images::update(&app.db, &image).await? {
        return Err(ApiError::Conflict(format!(
            "Image {id} changed during restore; retry."
        )));
    }
    app.metrics
        .transition(ImageStatus::PendingDelete, ImageStatus::Active);
    tracing::info!(image_id = %id, from = %ImageStatus::PendingDelete, to = %ImageStatus::Active, "image restored");
    Ok(StatusCode::NO_CONTENT)
}
