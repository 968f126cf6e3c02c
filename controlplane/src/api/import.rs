//! `POST /v2/images/{image_id}/import` (Glance's interoperable import, API 2.6): checks the
//! request in Glance's order, then starts the import and answers 202.
//!
//! The order and texts are Glance 33's `import_image`: the body (400,
//! [`domain::import::parse`]), the image (404), the status and formats for the method (409,
//! [`domain::import::check_status`]), the policy (`modify_image`), the `os_glance_import_task`
//! lock (409 "Image has active task" while valid; a stale one is taken over,
//! [`domain::import::lock_state`]), the stores (400, or 409 for an unknown one,
//! [`domain::import::target_stores`]), `all_stores_must_succeed` only with multi-store (400).
//!
//! For `glance-download` (after the status, 400 without `glance_region` or a UUID
//! `glance_image_id`), the other region's Glance is looked up in the caller's service catalog
//! and kept with the caller's token in memory ([`crate::glance_download`]) for the job.
//!
//! Then one transaction ([`db::tasks::begin_import`]) records the task (`pending`, input
//! `{"image_id", "import_req", "backend"}` as Glance's), moves the image (`uploading →
//! importing` with the lock and `os_glance_importing_to_stores`, [`domain::import::begin`]) and
//! queues the `import` job for the node that holds the staged data (`os_glance_stage_host`):
//! that node's data plane runs it, whichever node took the request, so a deployment of several
//! nodes needs no proxying between them.

use super::ApiError;
use super::extract::{Caller, GlanceJson, ImagePath, ReqId};
use super::images::{WRITE_ATTEMPTS, not_found};
use crate::app::App;
use crate::db;
use crate::domain::import::{self, Lock, Method, StoresError};
use crate::domain::task::{API_IMAGE_IMPORT, Task, TaskStatus};
use crate::policy::Rule;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};

/// `POST /v2/images/{image_id}/import`: 202 once the import is queued.
pub(crate) async fn import_image(
    State(app): State<App>,
    Caller(ctx): Caller,
    ReqId(request_id): ReqId,
    ImagePath(id): ImagePath,
    headers: HeaderMap,
    GlanceJson(body): GlanceJson,
) -> Result<StatusCode, ApiError> {
    let req = import::parse(&body, |m| app.config.import_enabled(m))?;
    let header_store = headers
        .get("x-image-meta-store")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let multistore = app.stores.multistore;
    let _serialised = app.lock_image(id).await;
    for _ in 0..WRITE_ATTEMPTS {
        let current = app
            .find_visible(&ctx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        import::check_status(&current, req.method)?;
        let remote = import::check_remote(&req)?;
        // copy-image has its own rule; the other methods need to own the image (Glance)
        let rule = match req.method {
            Method::CopyImage => Rule::CopyImage,
            _ => Rule::ModifyImage,
        };
        app.policy
            .authorize(&ctx, rule, &crate::policy::Target::of(&current))?;
        let now = Utc::now();
        let stale = match import::lock_state(&current, holder(&app, &current).await?.as_ref(), now)
        {
            Lock::Free => None,
            Lock::Held => return Err(ApiError::Conflict("Image has active task".into())),
            Lock::Stale(task) => Some(task),
        };
        let stores = import::target_stores(&req, header_store, &app.stores, &current).map_err(
            |e| match e {
                StoresError::Invalid(m) => ApiError::BadRequest(m),
                StoresError::Unknown(m) => ApiError::Conflict(m),
            },
        )?;
        if req.method == Method::CopyImage && !multistore {
            // the one store holds the image already
            return Err(ApiError::BadRequest(format!(
                "Image is already present at store '{}'",
                app.stores.default
            )));
        }
        if req.method == Method::CopyImage && stores.is_empty() {
            // Glance: "the image is available in all configured stores": nothing to do
            tracing::info!(image_id = %id, "copy-image: every store holds the image already");
            return Ok(StatusCode::ACCEPTED);
        }
        if !req.all_stores_must_succeed && !multistore {
            let uri = req.uri.as_deref().unwrap_or("None");
            return Err(ApiError::BadRequest(format!(
                "All_stores_must_succeed can only be set with enabled_backends {uri}"
            )));
        }
        if req.method == Method::WebDownload
            && !req.uri.as_deref().is_some_and(|u| {
                shared::import_filter::uri_text_passes(&app.config.import_filtering_opts, u)
            })
        {
            let uri = req.uri.as_deref().unwrap_or("None");
            tracing::debug!(image_id = %id, uri, "web-download URI refused by import filtering");
            return Err(ApiError::BadRequest(format!(
                "URI for web-download does not pass filtering: {uri}"
            )));
        }
        let stale_stores = match &stale {
            Some(task) => stale_task_stores(&app, task).await?,
            None => Vec::new(),
        };
        // the node that runs it: the stage host holds the staged data
        let node = match req.method {
            Method::GlanceDirect => current.properties.get(import::STAGE_HOST).cloned(),
            _ => None,
        }
        .unwrap_or_else(|| app.config.self_reference_url());
        // glance-download: the other region's Glance, found now in the caller's catalog (the
        // task fails later if there is none, as Glance's does)
        let download = match remote {
            Some(r) => Some(glance_source(&app, &headers, r).await),
            None => None,
        };
        let mut import_req = body.clone();
        if let Some(r) = remote {
            // Glance records the default interface in the request it keeps
            import_req["method"]["glance_service_interface"] = json!(r.interface);
        }
        let task = Task {
            id: uuid::Uuid::new_v4().to_string(),
            kind: API_IMAGE_IMPORT.into(),
            status: TaskStatus::Pending,
            owner: ctx.project_id.clone(),
            image_id: Some(id),
            request_id: Some(request_id.to_string()),
            user_id: ctx.user_id.clone(),
            input: json!({
                "image_id": id.to_string(),
                "import_req": import_req,
                "backend": if multistore { json!(stores) } else { json!([null]) },
            }),
            result: None,
            message: String::new(),
            expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut next = (*current).clone();
        import::begin(
            &mut next,
            req.method,
            &task.id,
            &stores,
            multistore,
            &stale_stores,
            now,
        )?;
        // the inject_image_metadata plugin (Glance's: every import but copy-image, unless the
        // caller has one of `ignore_user_roles`)
        let inject = &app.config.inject_metadata_properties;
        if req.method != Method::CopyImage
            && app.config.import_plugin("inject_image_metadata")
            && !ctx.roles.iter().any(|r| {
                inject
                    .ignore_user_roles
                    .iter()
                    .any(|i| i.eq_ignore_ascii_case(r))
            })
        {
            for (k, v) in &inject.inject {
                next.properties.insert(k.clone(), v.clone());
            }
        }
        // in memory before the job exists: the data plane may claim it at once
        if let Some((token, source)) = download {
            app.glance_downloads.insert(&task.id, token, source);
        }
        let begun = db::tasks::begin_import(&app.db, &next, &task, &node, now).await;
        if !matches!(begun, Ok(true)) {
            app.glance_downloads.remove(&task.id);
        }
        if begun? {
            if let Some(old) = &stale {
                tracing::warn!(image_id = %id, stale_task = %old, "stale import lock taken over");
            }
            if next.status != current.status {
                app.metrics.transition(current.status, next.status);
            }
            tracing::info!(image_id = %id, %request_id, task_id = %task.id, method = req.method.as_str(),
                stores = %stores.join(","), %node, "import queued");
            return Ok(StatusCode::ACCEPTED);
        }
        tracing::debug!(image_id = %id, "concurrent update; retrying the import");
    }
    Err(ApiError::Conflict(format!(
        "Image {id} is being modified concurrently; retry the request."
    )))
}

/// What a `glance-download` needs: the caller's token, and the remote image's URL on the
/// `image` endpoint of its region in the caller's service catalog (Keystone's, asked with the
/// token; without Keystone, the `X-Service-Catalog` header as keystonemiddleware would have
/// set it), or why there is none.
async fn glance_source(
    app: &App,
    headers: &HeaderMap,
    remote: &import::Remote,
) -> (String, Result<String, String>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = header("x-auth-token").unwrap_or("").to_owned();
    let catalog = match &app.auth {
        crate::auth::Authenticator::Keystone { keystone, .. } => keystone
            .catalog(&token)
            .await
            .map_err(|e| format!("Cannot read the service catalog: {e}")),
        crate::auth::Authenticator::Noauth => match header("x-service-catalog") {
            Some(c) => serde_json::from_str(c)
                .map_err(|e| format!("X-Service-Catalog is not a JSON catalog: {e}")),
            None => Ok(Value::Null),
        },
    };
    let source = catalog
        .and_then(|c| import::glance_endpoint(&c, &remote.region, &remote.interface))
        .map(|endpoint| import::remote_image_url(&endpoint, &remote.image_id));
    match &source {
        Ok(url) => tracing::info!(region = %remote.region, %url, "glance-download source"),
        Err(e) => {
            tracing::warn!(region = %remote.region, error = %e, "glance-download has no source")
        }
    }
    (token, source)
}

/// The task holding the image's import lock, if the lock is set and the task still exists.
pub(crate) async fn holder(
    app: &App,
    image: &crate::domain::Image,
) -> Result<Option<Task>, ApiError> {
    match image.properties.get(import::IMPORT_TASK) {
        Some(task) => Ok(db::tasks::get(&app.db, task).await?),
        None => Ok(None),
    }
}

/// The stores a stale import was writing (its task's `backend`), whose progress entries the
/// new import clears (Glance's `_cleanup_stale_task_progress`).
async fn stale_task_stores(app: &App, task: &str) -> Result<Vec<String>, ApiError> {
    let Some(task) = db::tasks::get(&app.db, task).await? else {
        return Ok(Vec::new());
    };
    Ok(task
        .input
        .get("backend")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}
