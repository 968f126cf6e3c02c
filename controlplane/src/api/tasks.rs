//! `/v2/tasks` and `/v2/tasks/{task_id}` (Glance's `glance/api/v2/tasks.py`): the list (stubs,
//! `status`/`type` filters, `sort_key`/`sort_dir`, `limit`/`marker`), one task, and `DELETE`,
//! always 405 (tasks go when they expire). Every call needs `tasks_api_access` (admin by
//! default); a caller that is not admin sees only its project's tasks. Expired tasks are never
//! shown (and are purged by the control plane's periodic work).
//!
//! Tasks are made by imports (`POST /v2/images/{id}/import`), and by `POST /v2/tasks` with
//! Glance's legacy `import` task (`input`: `import_from`, `import_from_format`,
//! `image_properties`): an image is created from `image_properties` and imported from
//! `import_from` as a `web-download` is, with the same filters ([`shared::import_filter`]);
//! the `import_from` URI is checked when the task is asked (400, Glance's texts), the rest
//! fails the task.

use super::ApiError;
use super::extract::{Caller, NoBody};
use super::list_params::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::app::App;
use crate::db;
use crate::domain::task::{Task, TaskStatus};
use crate::policy::{Context, Denied, Rule, Target};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

/// `tasks_api_access`, checked before anything else (Glance enforces it in the deserializer).
fn access(app: &App, ctx: &Context) -> Result<(), ApiError> {
    if app
        .policy
        .check(ctx, Rule::TasksApiAccess, &Target::caller(ctx))
    {
        Ok(())
    } else {
        Err(Denied::Forbidden(Rule::TasksApiAccess).into())
    }
}

/// The tasks `ctx` may see: every one for an admin, its project's otherwise.
fn owner_scope(ctx: &Context) -> Option<&str> {
    if ctx.is_admin {
        None
    } else {
        Some(ctx.project_id.as_deref().unwrap_or(""))
    }
}

/// A parsed `GET /v2/tasks` query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    limit: usize,
    marker: Option<String>,
    sort_key: String,
    desc: bool,
    status: Option<TaskStatus>,
    kind: Option<String>,
    /// The query without `marker`, for the `first`/`next` links.
    rest: Vec<(String, String)>,
}

/// The sort keys a task list takes (the task columns).
const SORT_KEYS: &[&str] = &[
    "created_at",
    "updated_at",
    "id",
    "type",
    "status",
    "owner",
    "expires_at",
];

fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let mut q = Query {
        limit: DEFAULT_LIMIT as usize,
        marker: None,
        sort_key: "created_at".into(),
        desc: true,
        status: None,
        kind: None,
        rest: Vec::new(),
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        match k.as_str() {
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| bad("limit param must be an integer".into()))?;
                if n < 0 {
                    return Err(bad("limit param must be positive".into()));
                }
                q.limit = (n as u64).min(u64::from(MAX_LIMIT)) as usize;
            }
            "marker" => {
                if uuid::Uuid::parse_str(&v).is_err() {
                    return Err(bad("Invalid marker format".into()));
                }
                q.marker = Some(v);
                continue;
            }
            "sort_dir" => match v.as_str() {
                "asc" => q.desc = false,
                "desc" => q.desc = true,
                other => return Err(bad(format!("Invalid sort direction: {other}"))),
            },
            "sort_key" => {
                if !SORT_KEYS.contains(&v.as_str()) {
                    return Err(bad(format!("Invalid sort key: {v}")));
                }
                q.sort_key = v.clone();
            }
            "status" => {
                q.status = Some(
                    v.parse()
                        .map_err(|_| bad(format!("Invalid status value: {v}")))?,
                );
            }
            "type" => {
                if v != "import" {
                    return Err(bad(format!("Invalid type value: {v}")));
                }
                q.kind = Some(v.clone());
            }
            _ => {}
        }
        q.rest.push((k, v));
    }
    Ok(q)
}

/// How `a` and `b` compare under sort key `key` (ties: by id).
fn compare(a: &Task, b: &Task, key: &str) -> std::cmp::Ordering {
    let by = match key {
        "updated_at" => a.updated_at.cmp(&b.updated_at),
        "id" => std::cmp::Ordering::Equal,
        "type" => a.kind.cmp(&b.kind),
        "status" => a.status.as_str().cmp(b.status.as_str()),
        "owner" => a.owner.cmp(&b.owner),
        "expires_at" => a.expires_at.cmp(&b.expires_at),
        _ => a.created_at.cmp(&b.created_at),
    };
    by.then_with(|| a.id.cmp(&b.id))
}

fn link(rest: &[(String, String)], marker: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in rest {
        s.append_pair(k, v);
    }
    if let Some(m) = marker {
        s.append_pair("marker", m);
    }
    let query = s.finish();
    if query.is_empty() {
        "/v2/tasks".into()
    } else {
        format!("/v2/tasks?{query}")
    }
}

/// `GET /v2/tasks`.
pub(crate) async fn list(
    State(app): State<App>,
    Caller(ctx): Caller,
    RawQuery(raw): RawQuery,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    access(&app, &ctx)?;
    let q = parse_query(raw.as_deref())?;
    let mut tasks = db::tasks::list(&app.db, owner_scope(&ctx), Utc::now()).await?;
    tasks.retain(|t| {
        q.status.is_none_or(|s| t.status == s) && q.kind.as_deref().is_none_or(|k| t.kind == k)
    });
    tasks.sort_by(|a, b| {
        let ord = compare(a, b, &q.sort_key);
        if q.desc { ord.reverse() } else { ord }
    });
    let start = match &q.marker {
        None => 0,
        Some(m) => match tasks.iter().position(|t| &t.id == m) {
            Some(i) => i + 1,
            None => {
                return Err(ApiError::BadRequest(format!(
                    "Task with identifier {m} not found"
                )));
            }
        },
    };
    let page: Vec<&Task> = tasks.iter().skip(start).take(q.limit).collect();
    let mut body = json!({
        "tasks": page.iter().map(|t| t.stub()).collect::<Vec<_>>(),
        "first": link(&q.rest, None),
        "schema": "/v2/schemas/tasks",
    });
    if q.limit > 0
        && page.len() == q.limit
        && let Some(last) = page.last()
    {
        body["next"] = json!(link(&q.rest, Some(&last.id)));
    }
    Ok(Json(body))
}

/// The task `id` as `ctx` may see it (404 otherwise, as Glance's task repo).
async fn find(app: &App, ctx: &Context, id: &str) -> Result<Task, ApiError> {
    let not_found = || ApiError::NotFound(format!("Could not find task {id}"));
    let task = db::tasks::get(&app.db, id).await?.ok_or_else(not_found)?;
    let visible = owner_scope(ctx).is_none_or(|o| task.owner.as_deref() == Some(o));
    let live = task.expires_at.is_none_or(|e| e >= Utc::now());
    if visible && live {
        Ok(task)
    } else {
        Err(not_found())
    }
}

/// `GET /v2/tasks/{task_id}`.
pub(crate) async fn show(
    State(app): State<App>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, ApiError> {
    access(&app, &ctx)?;
    Ok(Json(find(&app, &ctx, &id).await?.view()))
}

/// `POST /v2/tasks`: Glance's legacy `import` task; 201 with the task.
pub(crate) async fn create(
    State(app): State<App>,
    Caller(ctx): Caller,
    super::extract::ReqId(request_id): super::extract::ReqId,
    super::extract::GlanceJson(body): super::extract::GlanceJson,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    access(&app, &ctx)?;
    let bad = |m: &str| ApiError::BadRequest(m.to_owned());
    let Some(obj) = body.as_object() else {
        return Err(bad("Request body must be a JSON object."));
    };
    for key in ["type", "input"] {
        if !obj.contains_key(key) {
            return Err(ApiError::BadRequest(format!("Task '{key}' is required")));
        }
    }
    let kind = obj["type"].as_str().unwrap_or_default();
    if kind != "import" {
        return Err(ApiError::BadRequest(format!(
            "Provided object does not match schema 'task': '{kind}' is not one of ['import']"
        )));
    }
    let Some(input) = obj["input"].as_object() else {
        return Err(bad(
            "Provided object does not match schema 'task': input is not an object",
        ));
    };
    let from = input
        .get("import_from")
        .and_then(Value::as_str)
        .unwrap_or("");
    legacy_uri(&app, from)?;
    let now = Utc::now();
    let mut task = Task {
        id: uuid::Uuid::new_v4().to_string(),
        kind: "import".into(),
        status: TaskStatus::Pending,
        owner: ctx.project_id.clone(),
        image_id: None,
        request_id: Some(request_id.to_string()),
        user_id: ctx.user_id.clone(),
        input: obj["input"].clone(),
        result: None,
        message: String::new(),
        expires_at: None,
        created_at: now,
        updated_at: now,
    };
    match legacy_image(&app, &ctx, input, now) {
        Ok(mut image) => {
            task.image_id = Some(image.id);
            db::images::insert(&app.db, &image).await?;
            image.version = db::images::get(&app.db, image.id)
                .await?
                .map_or(image.version, |i| i.version);
            let stores = vec![app.stores.default.clone()];
            crate::domain::import::begin(
                &mut image,
                crate::domain::import::Method::WebDownload,
                &task.id,
                &stores,
                app.stores.multistore,
                &[],
                now,
            )?;
            let node = app.config.self_reference_url();
            if !db::tasks::begin_import(&app.db, &image, &task, &node, now).await? {
                return Err(ApiError::Conflict(
                    "The image changed; retry the task.".into(),
                ));
            }
            tracing::info!(task_id = %task.id, image_id = %image.id, %request_id, "legacy import task queued");
        }
        Err(message) => {
            // Glance creates the task and fails it in its flow
            task.status = TaskStatus::Failure;
            task.message = message;
            task.expires_at =
                Some(now + crate::domain::task::ttl(app.config.task.task_time_to_live));
            db::tasks::insert(&app.db, &task).await?;
        }
    }
    Ok((StatusCode::CREATED, Json(task.view())))
}

/// Glance's `validate_legacy_import_from_uri`: `http(s)://` only (`file://` refused), then the
/// import filters.
fn legacy_uri(app: &App, uri: &str) -> Result<(), ApiError> {
    if uri.is_empty() {
        return Err(ApiError::BadRequest(format!("Invalid location: {uri}")));
    }
    if uri.starts_with("file:///") || uri.starts_with("filesystem:///") {
        return Err(ApiError::BadRequest(
            "File based imports are not allowed. Please use a non-local source of image data."
                .into(),
        ));
    }
    if !(uri.starts_with("http://") || uri.starts_with("https://")) {
        return Err(ApiError::BadRequest(
            "The given uri is not valid. Please specify a valid uri from the following list of              supported uri ['http']"
                .into(),
        ));
    }
    if !shared::import_filter::uri_text_passes(&app.config.import_filtering_opts, uri) {
        return Err(ApiError::BadRequest(format!(
            "URI for legacy import task does not pass filtering: {uri}"
        )));
    }
    Ok(())
}

/// The image a legacy import task makes: `image_properties` as an image create takes them,
/// `disk_format` from `import_from_format` when they leave it out, `bare` by default; the
/// reason the task fails otherwise.
fn legacy_image(
    app: &App,
    ctx: &Context,
    input: &serde_json::Map<String, Value>,
    now: chrono::DateTime<Utc>,
) -> Result<crate::domain::Image, String> {
    let missing = |k: &str| format!("Input does not contain '{k}' field");
    let format = input
        .get("import_from_format")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("import_from_format"))?;
    let mut props = input
        .get("image_properties")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| missing("image_properties"))?;
    props
        .entry("disk_format")
        .or_insert_with(|| Value::String(format.to_owned()));
    props
        .entry("container_format")
        .or_insert_with(|| Value::String("bare".to_owned()));
    let new = crate::domain::create::parse(&props, &app.config.image).map_err(|e| e.to_string())?;
    let owner = match &new.owner {
        Some(owner) => owner.clone(),
        None => ctx.project_id.clone(),
    };
    Ok(new.into_image(owner, now))
}

/// `DELETE /v2/tasks/{task_id}`: 405 with Glance's explanation and `Allow: GET`.
pub(crate) async fn delete(
    State(app): State<App>,
    Caller(ctx): Caller,
) -> Result<Response, ApiError> {
    access(&app, &ctx)?;
    let msg = "This operation is currently not permitted on Glance Tasks. They are auto \
               deleted after reaching the time based on their expires_at property.";
    let mut r = (StatusCode::METHOD_NOT_ALLOWED, msg).into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked_as_glance_does() {
        let err = |q: &str| match parse_query(Some(q)) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(err("limit=x"), "limit param must be an integer");
        assert_eq!(err("limit=-1"), "limit param must be positive");
        assert_eq!(err("marker=nope"), "Invalid marker format");
        assert_eq!(err("sort_dir=up"), "Invalid sort direction: up");
        assert_eq!(err("status=done"), "Invalid status value: done");
        assert_eq!(err("type=export"), "Invalid type value: export");
        assert_eq!(err("sort_key=size"), "Invalid sort key: size");
        let q = parse_query(Some("limit=5000&sort_dir=asc&status=success")).unwrap();
        assert_eq!(q.limit, MAX_LIMIT as usize);
        assert!(!q.desc);
        assert_eq!(q.status, Some(TaskStatus::Success));
        assert_eq!(
            link(&q.rest, Some("m")),
            "/v2/tasks?limit=5000&sort_dir=asc&status=success&marker=m"
        );
        assert_eq!(link(&[], None), "/v2/tasks");
    }
}
