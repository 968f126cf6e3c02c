//! `PUT` and `DELETE /v2/images/{image_id}/tags/{tag_value}`: 204 both; tags are a set.

use super::ApiError;
use super::extract::{Caller, NoBody, image_id};
use super::images::write_image;
use crate::app::App;
use crate::domain::property;
use crate::policy::Rule;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// `PUT …/tags/{tag}`: idempotent add (400 above 255 characters, 413 above the tag quota).
pub(crate) async fn add(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((raw_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&raw_id)?;
    if tag.chars().count() > property::MAX_STRING_CHARS {
        return Err(ApiError::BadRequest(format!(
            "Tag '{tag}' is longer than 255 characters."
        )));
    }
    write_image(&app, &ctx, id, Rule::ModifyImage, |image| {
        if !image.tags.insert(tag.clone()) {
            return Ok(false);
        }
        property::check_quotas(image.properties.len(), image.tags.len()).map_err(ApiError::from)?;
        Ok(true)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/tags/{tag}`: 404 when the image does not have the tag.
pub(crate) async fn remove(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    Path((raw_id, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&raw_id)?;
    write_image(&app, &ctx, id, Rule::ModifyImage, |image| {
        if !image.tags.remove(&tag) {
            return Err(ApiError::NotFound(format!(
                "Tag {tag} not found on image {id}."
            )));
        }
        Ok(true)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
