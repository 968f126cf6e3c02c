//! `/v2/images` and `/v2/images/{image_id}`: create, list, show, update (PATCH), delete.
//!
//! Each handler calls `policy`, then `domain`, then `db`, in that visible order. Writes to an
//! existing image read it and authorize their rule in one step ([`App::find_authorized`], the
//! step the channel server takes too), apply the change to a copy, and store it only if nobody
//! wrote in between (optimistic `version`); on a lost race the whole read–check–apply step is
//! retried, so concurrent PATCHes never lose a write.

use super::extract::{Caller, GlanceJson, HostHeader, ImagePath, NoBody, PatchBody, ReqId};
use super::list_params::ListParams;
use super::view::ApiState;
use super::{ApiError, images_url};
use crate::app::{App, Refusal};
use crate::db::{self, ListQuery, Scope};
use crate::domain::{self, Image, patch};
use crate::policy::{Context, Denied, Enforcer, Rule, Target};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;
use shared::image::{ImageId, ImageStatus};

/// How often a write is retried after losing an optimistic-concurrency race.
pub(crate) const WRITE_ATTEMPTS: usize = 16;

pub(crate) fn not_found(id: ImageId) -> ApiError {
    ApiError::NotFound(shared::error::no_such_image(&id))
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::NotFound(id) => not_found(id),
            Refusal::Forbidden(rule) => ApiError::Policy(Denied::Forbidden(rule)),
            Refusal::Db(e) => ApiError::Db(e),
        }
    }
}

/// Loads an image the caller may see ([`App::find_visible`]); deleted, unknown and invisible
/// are all 404, never 403.
pub(crate) async fn load_visible(
    app: &App,
    ctx: &Context,
    id: ImageId,
) -> Result<std::sync::Arc<Image>, ApiError> {
    app.find_visible(ctx, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Runs `change` against a fresh read of the image, found and authorized for `rule` by
/// [`App::find_authorized`] each time, until it is stored without a race. `change` returns
/// `Ok(false)` when there is nothing to write.
pub(crate) async fn write_image<F>(
    app: &App,
    ctx: &Context,
    id: ImageId,
    rule: Rule,
    mut change: F,
) -> Result<Image, ApiError>
where
    F: FnMut(&mut Image) -> Result<bool, ApiError>,
{
    let _serialised = app.lock_image(id).await;
    for _ in 0..WRITE_ATTEMPTS {
        let current = app.find_authorized(ctx, id, rule).await?;
        let mut next = (*current).clone();
        if !change(&mut next)? {
            return Ok(next);
        }
        next.updated_at = Utc::now();
        if db::images::update(&app.db, &next).await? {
            next.version += 1;
            return Ok(next);
        }
        tracing::debug!(image_id = %id, "concurrent update; retrying");
    }
    Err(ApiError::Conflict(format!(
        "Image {id} is being modified concurrently; retry the request."
    )))
}

/// `POST /v2/images`: 201 with `Location` and the new image (and, with multi-store,
/// `OpenStack-image-store-ids`).
pub(crate) async fn create(
    State(ApiState { app, views, .. }): State<ApiState>,
    Caller(ctx): Caller,
    HostHeader(host): HostHeader,
    ReqId(request_id): ReqId,
    GlanceJson(body): GlanceJson,
) -> Result<Response, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::BadRequest(
            "Request body must be a JSON object.".into(),
        ));
    };
    let new = domain::create::parse(&body, &app.config.image)?;

    let owner = match &new.owner {
        Some(owner) => owner.clone(),
        None => ctx.project_id.clone(),
    };
    let target = Target {
        owner: owner.as_deref(),
        visibility: new.policy_visibility(),
    };
    if !app.policy.check(&ctx, Rule::AddImage, &target) {
        if owner != ctx.project_id {
            return Err(ApiError::Forbidden(format!(
                "You are not permitted to create images owned by '{}'.",
                owner.as_deref().unwrap_or("None")
            )));
        }
        return Err(ApiError::Forbidden(
            "You are not authorized to create images.".into(),
        ));
    }
    if let Some(rule) = Enforcer::visibility_rule(target.visibility)
        && !app.policy.check(&ctx, rule, &target)
    {
        return Err(ApiError::Forbidden(format!(
            "You are not authorized to set visibility {}.",
            target.visibility.as_str()
        )));
    }

    let image = new.into_image(owner, Utc::now());
    db::images::insert(&app.db, &image).await?;
    tracing::info!(image_id = %image.id, request_id = %request_id, status = %image.status, "image created");

    let mut response = json_response(StatusCode::CREATED, views.render(&image, &ctx));
    if let Ok(loc) = HeaderValue::from_str(&format!("{}/{}", images_url(&host), image.id)) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    // Glance: the methods when any is enabled, every store of `enabled_backends`, read-only
    // ones too (`ResponseSerializer.create`)
    let methods = &app.config.enabled_import_methods;
    if !methods.is_empty()
        && let Ok(v) = HeaderValue::from_str(&methods.join(","))
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static("openstack-image-import-methods"), v);
    }
    if app.stores.multistore {
        let ids: Vec<&str> = app.stores.stores.iter().map(|s| s.id.as_str()).collect();
        if let Ok(v) = HeaderValue::from_str(&ids.join(",")) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("openstack-image-store-ids"), v);
        }
    }
    Ok(response)
}

/// `GET /v2/images`.
pub(crate) async fn list(
    State(ApiState { app, views, .. }): State<ApiState>,
    Caller(ctx): Caller,
    _: NoBody,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = ListParams::parse(query.as_deref().unwrap_or(""))?;
    // Glance's target for get_images is just the caller's project.
    if !app.policy.check(
        &ctx,
        Rule::GetImages,
        &Target {
            owner: ctx.project_id.as_deref(),
            visibility: shared::image::Visibility::Private,
        },
    ) {
        return Err(ApiError::Forbidden(
            "You are not authorized to list images.".into(),
        ));
    }
    let marker = match &params.marker {
        None => None,
        Some(raw) => {
            let bad_marker = || ApiError::BadRequest(format!("Marker {raw} could not be found."));
            let id: ImageId = raw.parse().map_err(|_| bad_marker())?;
            Some(app.find_marker(&ctx, id).await?.ok_or_else(bad_marker)?)
        }
    };
    let query = ListQuery {
        scope: if ctx.is_admin {
            Scope::All
        } else {
            Scope::Project(ctx.project_id.clone())
        },
        visibility: params.visibility,
        member_status: params.member_status,
        filters: params.filters.clone(),
        sort: params.sort.clone(),
        tie_break_dir: params.tie_break_dir,
        limit: params.limit,
        marker,
    };
    let (images, more) = db::images::list(&app.db, &query).await?;
    // `{"images": [<view>, …], "first": …, "schema": …[, "next": …]}`, the views spliced in
    // as rendered (and cached) bytes.
    let views: Vec<Bytes> = images.iter().map(|i| views.of(i, &ctx)).collect();
    let mut body = Vec::with_capacity(views.iter().map(|v| v.len() + 1).sum::<usize>() + 256);
    body.extend_from_slice(b"{\"images\":[");
    for (i, v) in views.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(v);
    }
    body.extend_from_slice(b"],\"first\":");
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, &params.first_link());
    body.extend_from_slice(b",\"schema\":\"/v2/schemas/images\"");
    if more && let Some(last) = images.last() {
        body.extend_from_slice(b",\"next\":");
        let _ = serde_json::to_writer(&mut body, &params.next_link(&last.id));
    }
    body.push(b'}');
    Ok(json_response(StatusCode::OK, Bytes::from(body)))
}

/// A response with a JSON body already rendered.
pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `GET /v2/images/{image_id}`.
pub(crate) async fn show(
    State(ApiState { app, views, .. }): State<ApiState>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<Response, ApiError> {
    let image = load_visible(&app, &ctx, id).await?;
    Ok(json_response(StatusCode::OK, views.of(&image, &ctx)))
}

/// `GET /v2/images/{image_id}/locations` (API 2.17, Glance's `get_locations`): the image's
/// locations, best first, as a bare list of `{"url", "metadata"}`; policy
/// `fetch_image_location` (services and admins), 403 otherwise; with
/// `show_locations_only_to_services`, 403 too without a service token; `[]` for a deactivated
/// image to a caller who is not an admin.
pub(crate) async fn locations(
    State(ApiState { app, views, .. }): State<ApiState>,
    Caller(ctx): Caller,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<Response, ApiError> {
    let image = app
        .find_authorized(&ctx, id, Rule::FetchImageLocation)
        .await?;
    if !views.locations().may_see(&ctx) {
        return Err(ApiError::Forbidden(
            "Locations are shown only to services.".into(),
        ));
    }
    let list = if super::view::hidden_from(&ctx, &image) {
        Vec::new()
    } else {
        super::view::location_views(&image, &app.stores)
    };
    let body = serde_json::to_vec(&list).unwrap_or_else(|_| b"[]".to_vec());
    Ok(json_response(StatusCode::OK, Bytes::from(body)))
}

/// `PATCH /v2/images/{image_id}`.
pub(crate) async fn update(
    State(ApiState { app, views, .. }): State<ApiState>,
    Caller(ctx): Caller,
    ImagePath(id): ImagePath,
    body: PatchBody,
) -> Result<Response, ApiError> {
    let changes = patch::parse(&body.value, body.media, &app.config.image)?;
    if changes.is_empty() {
        // nothing to change: no rule beyond seeing the image
        let image = load_visible(&app, &ctx, id).await?;
        return Ok(json_response(StatusCode::OK, views.render(&image, &ctx)));
    }
    let image = write_image(&app, &ctx, id, Rule::ModifyImage, |image| {
        let target = Target::of(image);
        for change in &changes {
            match change.root() {
                "owner" if !ctx.is_admin => {
                    return Err(ApiError::Forbidden(
                        "Owner can't be updated by non admin.".into(),
                    ));
                }
                "visibility" => {
                    let wanted = change
                        .value
                        .as_ref()
                        .and_then(Value::as_str)
                        .and_then(|v| v.parse().ok());
                    if let Some(rule) = wanted.and_then(Enforcer::visibility_rule) {
                        app.policy.authorize(&ctx, rule, &target)?;
                    }
                }
                "locations" => {
                    let rule = match change.op {
                        patch::Op::Remove => Rule::DeleteImageLocation,
                        patch::Op::Add | patch::Op::Replace => Rule::SetImageLocation,
                    };
                    app.policy.authorize(&ctx, rule, &target)?;
                }
                _ => {}
            }
        }
        let locations = patch::LocationRules {
            visible: views.locations().may_patch(&ctx),
            stores: &app.stores,
        };
        patch::apply(image, &changes, locations)?;
        Ok(true)
    })
    .await?;
    Ok(json_response(StatusCode::OK, views.render(&image, &ctx)))
}

/// `DELETE /v2/images/{image_id}`: 204; the row stays. The data goes by the data plane's
/// jobs: at once (each active location moves to `pending_delete` with its `delete_data` job,
/// in the transaction that stores the status), or with delayed delete after `scrub_time`
/// ([`crate::scrubber`]).
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
    ReqId(request_id): ReqId,
    _: NoBody,
    ImagePath(id): ImagePath,
) -> Result<StatusCode, ApiError> {
    let mut from = ImageStatus::Queued;
    let mut staged_on = None;
    let delayed = app.config.controlplane.delayed_delete;
    let image = write_image(&app, &ctx, id, Rule::DeleteImage, |image| {
        from = image.status;
        staged_on = image
            .properties
            .get(domain::import::STAGE_HOST)
            .filter(|_| image.status == ImageStatus::Uploading)
            .cloned();
        image.delete(Utc::now(), delayed)?;
        Ok(true)
    })
    .await?;
    // staged data goes with the image (Glance deletes it from the staging store); an import
    // running on it stops and removes what it staged itself
    if let Some(node) = staged_on {
        let url = shared::location::file_location(&app.config.staging_dir(), &id);
        db::jobs::enqueue_staged_delete(&app.db, id, &url, &node, Utc::now()).await?;
    }
    app.metrics.transition(from, image.status);
    tracing::info!(image_id = %id, request_id = %request_id, from = %from, to = %image.status, "image status changed");
    Ok(StatusCode::NO_CONTENT)
}
