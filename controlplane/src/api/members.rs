//! `/v2/images/{image_id}/members[/{member_id}]`: sharing (GLANCE-API.md §1.6).
//!
//! | call | who | notes |
//! |---|---|---|
//! | `POST …/members` `{"member": p}` | owner (`add_member`) | 200; only `shared` images (403); duplicate 409; 128 members (413) |
//! | `GET …/members` | owner sees all, a member only itself (`get_members`) | `shared` only (403) |
//! | `GET …/members/{m}` | owner, or `m` itself (`get_member`) | others' memberships are 404 |
//! | `PUT …/members/{m}` `{"status": s}` | `m` itself or admin (`modify_member`) | the owner gets 403 |
//! | `DELETE …/members/{m}` | owner (`delete_member`) | 204 |
//!
//! Each call starts with [`App::find_authorized`] for its rule (`get_member` before a
//! membership is looked up): the image must be visible to the caller (404 otherwise, never
//! 403), then the rule must allow the call (403).

use super::ApiError;
use super::extract::{Caller, GlanceJson, NoBody, image_id};
use super::view::isotime;
use crate::app::App;
use crate::db;
use crate::domain::{Image, Member, MemberStatus, member};
use crate::policy::{Context, Rule, Target};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};
use shared::image::Visibility;

/// The JSON of one membership.
pub fn member_view(m: &Member) -> Value {
    json!({
        "member_id": m.member,
        "image_id": m.image_id.to_string(),
        "status": m.status.as_str(),
        "created_at": isotime(m.created_at),
        "updated_at": isotime(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

fn only_shared(image: &Image) -> Result<(), ApiError> {
    if image.visibility != Visibility::Shared {
        return Err(ApiError::Forbidden(
            "Only shared images have members.".into(),
        ));
    }
    Ok(())
}

/// Whether `ctx` may see the membership of `member` (Glance's member repo filter: the owner
/// and admins see every member, anyone else only itself).
fn sees_member(ctx: &Context, image: &Image, member: &str) -> bool {
    ctx.is_admin || ctx.owns(image.owner.as_deref()) || ctx.project_id.as_deref() == Some(member)
}

fn member_not_found(image: &Image, member: &str) -> ApiError {
    ApiError::NotFound(format!(
        "{member} not found in the member list of the image {}.",
        image.id
    ))
}

/// Glance's `_lookup_member` on an image already authorized for `get_member`: the
/// membership if the caller may see it.
async fn lookup_member(
    app: &App,
    ctx: &Context,
    image: &Image,
    member: &str,
) -> Result<Member, ApiError> {
    if !sees_member(ctx, image, member) {
        return Err(member_not_found(image, member));
    }
    db::members::get(&app.db, image.id, member)
        .await?
        .ok_or_else(|| member_not_found(image, member))
}

fn body_object(body: Value) -> Result<serde_json::Map<String, Value>, ApiError> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::BadRequest(
            "Request body must be a JSON object.".into(),
        )),
    }
}

/// `POST /v2/images/{image_id}/members`.
pub(crate) async fn create(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(raw_id): Path<String>,
    GlanceJson(body): GlanceJson,
) -> Result<Json<Value>, ApiError> {
    let id = image_id(&raw_id)?;
    let body = body_object(body)?;
    let member_id = member::validate_member_id(
        body.get("member")
            .ok_or_else(|| ApiError::BadRequest("Member to be added not specified".into()))?,
    )?;
    let image = app.find_authorized(&ctx, id, Rule::AddMember).await?;
    only_shared(&image)?;
    let _serialised = app.lock_image(id).await;
    if db::members::count(&app.db, id).await? >= member::MAX_MEMBERS {
        return Err(ApiError::PayloadTooLarge(format!(
            "Image member limit exceeded for image {id}: the limit is {}",
            member::MAX_MEMBERS
        )));
    }
    let now = Utc::now();
    let m = Member {
        image_id: id,
        member: member_id.clone(),
        status: MemberStatus::Pending,
        created_at: now,
        updated_at: now,
    };
    match db::members::insert(&app.db, &m).await {
        Ok(()) => {}
        Err(db::Error::Duplicate) => {
            return Err(ApiError::Conflict(format!(
                "Member {member_id} is duplicated for image {id}"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(image_id = %id, member = %member_id, "image member added");
    Ok(Json(member_view(&m)))
}

/// `GET /v2/images/{image_id}/members`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = image_id(&raw_id)?;
    let image = app.find_authorized(&ctx, id, Rule::GetMembers).await?;
    only_shared(&image)?;
    let members: Vec<Value> = db::members::list(&app.db, id)
        .await?
        .iter()
        .filter(|m| sees_member(&ctx, &image, &m.member))
        .map(member_view)
        .collect();
    Ok(Json(
        json!({"members": members, "schema": "/v2/schemas/members"}),
    ))
}

/// `GET /v2/images/{image_id}/members/{member_id}`.
pub(crate) async fn show(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    Path((raw_id, member_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = image_id(&raw_id)?;
    let image = app.find_authorized(&ctx, id, Rule::GetMember).await?;
    let m = lookup_member(&app, &ctx, &image, &member_id).await?;
    Ok(Json(member_view(&m)))
}

/// `PUT /v2/images/{image_id}/members/{member_id}` `{"status": …}`.
pub(crate) async fn update(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path((raw_id, member_id)): Path<(String, String)>,
    GlanceJson(body): GlanceJson,
) -> Result<Json<Value>, ApiError> {
    let id = image_id(&raw_id)?;
    let body = body_object(body)?;
    let status: MemberStatus = body
        .get("status")
        .ok_or_else(|| ApiError::BadRequest("Status not specified".into()))?
        .as_str()
        .ok_or_else(|| ApiError::BadRequest("Status must be a string.".into()))?
        .parse()?;
    let image = app.find_authorized(&ctx, id, Rule::GetMember).await?;
    only_shared(&image)?;
    let mut m = lookup_member(&app, &ctx, &image, &member_id).await?;
    app.policy
        .authorize(&ctx, Rule::ModifyMember, &Target::of(&image))
        .map_err(|_| {
            ApiError::Forbidden(format!("Not allowed to update members for image {id}."))
        })?;
    let now = Utc::now();
    if !db::members::set_status(&app.db, id, &member_id, status, now).await? {
        return Err(member_not_found(&image, &member_id));
    }
    m.status = status;
    m.updated_at = now;
    tracing::info!(image_id = %id, member = %member_id, status = %status, "image member status changed");
    Ok(Json(member_view(&m)))
}

/// `DELETE /v2/images/{image_id}/members/{member_id}`: 204.
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
    _: NoBody,
    Path((raw_id, member_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = image_id(&raw_id)?;
    let image = app.find_authorized(&ctx, id, Rule::GetMember).await?;
    only_shared(&image)?;
    lookup_member(&app, &ctx, &image, &member_id).await?;
    app.policy
        .authorize(&ctx, Rule::DeleteMember, &Target::of(&image))?;
    if !db::members::delete(&app.db, id, &member_id).await? {
        return Err(member_not_found(&image, &member_id));
    }
    tracing::info!(image_id = %id, member = %member_id, "image member removed");
    Ok(StatusCode::NO_CONTENT)
}
