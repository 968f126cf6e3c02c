//! The Glance v2 HTTP API, served over the control plane's Unix socket (the data plane
//! forwards every request except `PUT`/`GET /v2/images/{id}/file`).
//!
//! Start at [`router`]. One file per resource: [`versions`], [`images`], [`tags`],
//! [`members`], [`actions`] (deactivate/reactivate/restore), [`info`] (discovery and image
//! tasks), [`tasks`] (`/v2/tasks`), [`stores`] (removing one store's copy, multi-store), [`schemas`]; [`view`] renders image JSON; [`list_params`] parses list queries;
//! [`extract`] holds our extractors (Glance-style errors for bad input); [`error`] is the only
//! place that maps errors to status codes; [`middleware`] adds the request id, the span and
//! the metrics.
//!
//! Routing follows Glance's version negotiation, decided by [`shared::route`] (the table the
//! data plane routes by, so a path means the same on both planes): `/versions` → 200;
//! `/v2.N/…` for an advertised N is the same as `/v2/…`; an unknown route under `/v2/` → 404;
//! a path naming no advertised version (`/`, `/v3/…`, `/v2.99/…`, `/foo`) → 300 with the
//! versions document; a known route with the wrong method → 405 with `Allow`.

pub mod actions;
pub mod error;
pub mod extract;
pub mod images;
pub mod import;
pub mod info;
pub mod list_params;
pub mod locations;
pub mod members;
pub mod metadef_schemas;
pub mod metadefs;
pub mod middleware;
pub mod schemas;
pub mod stores;
pub mod tags;
pub mod tasks;
pub mod versions;
pub mod view;

pub use error::ApiError;
pub use view::ImageView;

use crate::app::App;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use extract::HostHeader;
use shared::route::{self, Features};
use tower::ServiceExt;

/// `http://<host>/v2/images`.
pub fn images_url(host: &str) -> String {
    format!("http://{host}/v2/images")
}

/// The whole API as an axum [`Router`] (usable without a socket, e.g. with `oneshot`).
pub fn router(app: App) -> Router {
    let limit = app.config.controlplane.max_request_body_bytes;
    let state = view::ApiState::new(app.clone());
    let features = state.features;
    let api = Router::new()
        .route("/", get(versions::multiple_choices))
        .route("/versions", get(versions::list))
        .route("/v2/images", get(images::list).post(images::create))
        .route(
            "/v2/images/{image_id}",
            get(images::show)
                .patch(images::update)
                .delete(images::delete),
        )
        .route(
            "/v2/images/{image_id}/file",
            get(served_by_data_plane).put(served_by_data_plane),
        )
        .route(
            "/v2/images/{image_id}/tags/{tag_value}",
            axum::routing::put(tags::add).delete(tags::remove),
        )
        .route(
            "/v2/images/{image_id}/members",
            get(members::list).post(members::create),
        )
        .route(
            "/v2/images/{image_id}/members/{member_id}",
            get(members::show)
                .put(members::update)
                .delete(members::delete),
        )
        .route(
            "/v2/images/{image_id}/actions/deactivate",
            post(actions::deactivate),
        )
        .route(
            "/v2/images/{image_id}/actions/reactivate",
            post(actions::reactivate),
        )
        .route(
            "/v2/images/{image_id}/actions/restore",
            post(actions::restore),
        )
        .route("/v2/images/{image_id}/import", post(import::import_image))
        .route(
            "/v2/images/{image_id}/locations",
            get(images::locations).post(locations::add_location),
        )
        .route(
            "/v2/images/{image_id}/stage",
            axum::routing::put(served_by_data_plane),
        )
        .route("/v2/images/{image_id}/tasks", get(info::image_tasks))
        .route("/v2/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/v2/tasks/{task_id}",
            get(tasks::show).delete(tasks::delete),
        )
        .route("/v2/info/import", get(info::import))
        .route("/v2/info/stores", get(info::stores))
        .route("/v2/info/stores/detail", get(info::stores_detail))
        .route("/v2/info/usage", get(info::usage))
        .route(
            "/v2/stores/{store_id}/{image_id}",
            axum::routing::delete(stores::delete_from_store),
        )
        .route("/v2/schemas/image", get(schemas::image))
        .route("/v2/schemas/images", get(schemas::images))
        .route("/v2/schemas/member", get(schemas::member))
        .route("/v2/schemas/members", get(schemas::members))
        .route("/v2/schemas/task", get(schemas::task))
        .route("/v2/schemas/tasks", get(schemas::tasks))
        .merge(metadefs::routes())
        .route("/v2/schemas/metadefs/{name}", get(schemas::metadef))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            app.auth.clone(),
            middleware::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            middleware::observe::observe,
        ))
        .with_state(state);
    Router::new().fallback_service(api.map_request(move |req| negotiate_version(features, req)))
}

/// Glance's version negotiation, by [`shared::route::negotiate`] (the rule the data plane
/// routes by): `/v2.N/rest` → `/v2/rest` for an advertised N (or `/rest` with an
/// `Accept: application/vnd.openstack.images-v2.N` header); a path naming no advertised
/// version is marked [`Choices`] and answered with the versions document (300).
fn negotiate_version(features: Features, mut req: Request) -> Request {
    let uri = req.uri();
    let accept = req
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let new = match route::negotiate(uri.path(), accept, features) {
        route::Path::V2 { rest } if !uri.path().starts_with("/v2/") && uri.path() != "/v2" => {
            Some(format!("/v2{rest}"))
        }
        route::Path::V2 { .. } | route::Path::Versions => None,
        route::Path::Choices => {
            req.extensions_mut().insert(Choices);
            // A path a route would match (possible only with a version-naming `Accept`) must
            // not reach it: it goes to one no route matches, and the fallback answers 300.
            let first = req.uri().path().trim_start_matches('/').split('/').next();
            matches!(first, Some("v2" | "versions")).then(|| "/choices".to_owned())
        }
    };
    if let Some(mut new) = new {
        if let Some(q) = req.uri().query() {
            new = format!("{new}?{q}");
        }
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = new.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Marks a request whose path names no advertised version.
#[derive(Debug, Clone, Copy)]
struct Choices;

/// No route matched: the versions document (300) for a path naming no advertised version,
/// 404 under `/v2/`, the versions document (200) under `/versions`, as Glance does.
async fn fallback(
    host: HostHeader,
    features: State<Features>,
    choices: Option<axum::Extension<Choices>>,
    uri: Uri,
) -> Response {
    let first = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    match first {
        _ if choices.is_some() => versions::multiple_choices(host, features)
            .await
            .into_response(),
        "versions" => versions::list(host, features).await.into_response(),
        _ => ApiError::NotFound("The resource could not be found.".into()).into_response(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Image data routes belong to the data plane; they only exist here so that other methods
/// get 405 with the right `Allow`.
async fn served_by_data_plane() -> ApiError {
    ApiError::NotFound("Image data is served by the data plane.".into())
}

#[cfg(test)]
mod tests;
