//! `POST /v2/images/{image_id}/locations` (API 2.17, Glance 33's `add_location`): registers
//! data that already exists in a store (an RBD snapshot, an HTTP URL) as a queued image's
//! location.
//!
//! Checked in Glance's order and words: the body (400: `url`, and `validation_data` with
//! `os_hash_algo` (sha1, sha256, sha512, md5) and `os_hash_value` together, or neither), the image (404), its
//! status (409 unless `queued`), the policy (`add_image_location`), a caller without the
//! `service` role may only add an `http(s)` URL and only with an http store configured (403),
//! the hash's form (400: hex of the algorithm's digest size), the `os_glance_import_task` lock
//! (409; a stale one is taken over). The URL must be a location of one of this node's rbd or
//! http stores (400 otherwise).
//!
//! Then one transaction records the task (`location_import`, input `{"image_id", "loc_url",
//! "validation_data"}` as Glance's), takes the lock and queues the job; 202. The data plane
//! (`Work::LocationImport`) reads the location's size and, with `do_secure_hash`, hashes it
//! (md5 and the secure hash, retried `http_retries` times); the control plane then checks
//! the hashes against `validation_data` ("os_hash_value: (…) not matched with actual
//! os_hash_value: (…)"), adds the location and makes the image `active`
//! (`dataplane_link`'s `location_checked`). Unlike Glance, which makes an image without
//! validation data `active` before hashing it, glint hashes first: the image is `active` once
//! its hashes are known.

use super::ApiError;
use super::extract::{Caller, GlanceJson, ImagePath, ReqId};
use super::images::{WRITE_ATTEMPTS, not_found};
use crate::app::App;
use crate::db;
use crate::domain::import::{self, Lock};
use crate::domain::task::{Task, TaskStatus};
use crate::policy::Rule;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};
use shared::config::{StoreKind, StoreSet};
use shared::image::{HashAlgo, ImageStatus};

/// The task type of an added location (Glance's).
pub const LOCATION_IMPORT: &str = "location_import";

/// What the body asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddLocation {
    /// The location.
    pub url: String,
    /// `validation_data`, as given (`{}` when absent).
    pub validation: serde_json::Map<String, Value>,
}

/// The body, checked as Glance's location schema does.
pub fn parse(body: &Value) -> Result<AddLocation, ApiError> {
    let bad = |m: &str| ApiError::BadRequest(m.to_owned());
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Request body must be a JSON object"))?;
    for k in obj.keys() {
        if k != "url" && k != "validation_data" {
            return Err(bad(&format!(
                "Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    let url = match obj.get("url") {
        Some(Value::String(u)) => u.clone(),
        Some(_) => return Err(bad("'url' is not of type 'string'")),
        None => return Err(bad("'url' is a required property")),
    };
    let validation = match obj.get("validation_data") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(v)) => {
            for k in v.keys() {
                if !matches!(k.as_str(), "os_hash_algo" | "os_hash_value") {
                    return Err(bad(&format!(
                        "Additional properties are not allowed ('{k}' was unexpected)"
                    )));
                }
            }
            // each needs the other (Glance's `dependentRequired`); `{}` asks nothing
            for (k, other) in [
                ("os_hash_value", "os_hash_algo"),
                ("os_hash_algo", "os_hash_value"),
            ] {
                if v.contains_key(k) && !v.contains_key(other) {
                    return Err(bad(&format!("'{other}' is a dependency of '{k}'")));
                }
            }
            match v.get("os_hash_algo") {
                None => {}
                Some(Value::String(a))
                    if ["sha1", "sha256", "sha512", "md5"].contains(&a.as_str()) => {}
                Some(other) => {
                    return Err(bad(&format!(
                        "{other} is not one of ['sha1', 'sha256', 'sha512', 'md5']"
                    )));
                }
            }
            match v.get("os_hash_value") {
                None => {}
                Some(Value::String(h)) if h.len() <= 128 => {}
                Some(Value::String(_)) => return Err(bad("'os_hash_value' is too long")),
                Some(_) => return Err(bad("'os_hash_value' is not of type 'string'")),
            }
            v.clone()
        }
        Some(_) => return Err(bad("'validation_data' is not of type 'object'")),
    };
    Ok(AddLocation { url, validation })
}

/// The secure hash algorithm of the request (`os_hash_algo`, else the configured one) after
/// Glance's `_validate_hashing_data`: `os_hash_value` hex of its digest size.
pub fn check_hash(req: &AddLocation, configured: HashAlgo) -> Result<HashAlgo, ApiError> {
    let algo = match req.validation.get("os_hash_algo").and_then(Value::as_str) {
        Some(a) => a
            .parse::<HashAlgo>()
            .map_err(|_| ApiError::BadRequest(format!("unsupported hash type {a}")))?,
        None => configured,
    };
    if let Some(value) = req.validation.get("os_hash_value").and_then(Value::as_str) {
        let Ok(bytes) = hex::decode(value) else {
            return Err(ApiError::BadRequest(format!(
                "os_hash_value ({value}) is not a valid hexadecimal value"
            )));
        };
        let want = algo.digest_len();
        if bytes.len() != want {
            return Err(ApiError::BadRequest(format!(
                "os_hash_value: ({value}) is not the correct size for ({}) (should be ({want}) bytes)",
                algo.as_str()
            )));
        }
    }
    Ok(algo)
}

/// The store of this node whose location `url` is: an rbd store (of the URL's pool) or the
/// http store.
pub fn store_for(url: &str, stores: &StoreSet) -> Option<String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())?;
    stores
        .stores
        .iter()
        .find(|s| match (&s.kind, scheme.as_str()) {
            (StoreKind::Http(_), "http" | "https") => true,
            (StoreKind::Rbd(r), "rbd") => {
                let parts: Vec<&str> = url["rbd://".len()..].split('/').collect();
                match parts.as_slice() {
                    [_image] => true,
                    [_fsid, pool, _image, _snap] => *pool == r.rbd_store_pool,
                    _ => false,
                }
            }
            _ => false,
        })
        .map(|s| s.id.clone())
}

/// `POST /v2/images/{image_id}/locations`: 202 once the location's check is queued.
pub(crate) async fn add_location(
    State(app): State<App>,
    Caller(ctx): Caller,
    ReqId(request_id): ReqId,
    ImagePath(id): ImagePath,
    GlanceJson(body): GlanceJson,
) -> Result<StatusCode, ApiError> {
    let req = parse(&body)?;
    // what could never be stored (credentials in the URL, whitespace): refused now
    crate::domain::location::check_url(&req.url)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let _serialised = app.lock_image(id).await;
    for _ in 0..WRITE_ATTEMPTS {
        let current = app
            .find_visible(&ctx, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if current.status != ImageStatus::Queued {
            return Err(ApiError::Conflict(format!(
                "It's not allowed to add locations if image status is {}.",
                current.status
            )));
        }
        app.policy.authorize(
            &ctx,
            Rule::AddImageLocation,
            &crate::policy::Target::of(&current),
        )?;
        let http = req.url.starts_with("http://") || req.url.starts_with("https://");
        let http_store = app
            .stores
            .stores
            .iter()
            .any(|s| matches!(s.kind, StoreKind::Http(_)));
        let service = ctx.has_role("service") || ctx.is_service();
        if !(service || (http && http_store)) {
            return Err(ApiError::Forbidden(
                "http store must be enabled to use location API by normal user.".into(),
            ));
        }
        let algo = check_hash(&req, app.config.image.hashing_algorithm)?;
        let store = store_for(&req.url, &app.stores)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid location: {}", req.url)))?;
        let now = Utc::now();
        let holder = super::import::holder(&app, &current).await?;
        let stale = match import::lock_state(&current, holder.as_ref(), now) {
            Lock::Free => None,
            Lock::Held => {
                return Err(ApiError::Conflict(format!(
                    "New operation on image '{id}' is not permitted as prior operation is still in progress"
                )));
            }
            Lock::Stale(task) => Some(task),
        };
        let task = Task {
            id: uuid::Uuid::new_v4().to_string(),
            kind: LOCATION_IMPORT.into(),
            status: TaskStatus::Pending,
            owner: ctx.project_id.clone(),
            image_id: Some(id),
            request_id: Some(request_id.to_string()),
            user_id: ctx.user_id.clone(),
            input: json!({
                "image_id": id.to_string(),
                "loc_url": req.url,
                "validation_data": req.validation,
                "store": store,
                "hash_algo": algo.as_str(),
                "service": service,
            }),
            result: None,
            message: String::new(),
            expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut next = (*current).clone();
        next.properties
            .insert(import::IMPORT_TASK.into(), task.id.clone());
        next.updated_at = now;
        let node = app.config.self_reference_url();
        if db::tasks::begin_import(&app.db, &next, &task, &node, now).await? {
            if let Some(old) = &stale {
                tracing::warn!(image_id = %id, stale_task = %old, "stale import lock taken over");
            }
            tracing::info!(image_id = %id, %request_id, task_id = %task.id, store, "location check queued");
            return Ok(StatusCode::ACCEPTED);
        }
        tracing::debug!(image_id = %id, "concurrent update; retrying the location add");
    }
    Err(ApiError::Conflict(format!(
        "Image {id} is being modified concurrently; retry the request."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_as_glances_schema() {
        let ok = parse(&json!({"url": "http://h/x"})).unwrap();
        assert_eq!(ok.url, "http://h/x");
        assert!(ok.validation.is_empty());
        // what python-glanceclient sends without validation data
        let empty = parse(&json!({"url": "http://h/x", "validation_data": {}})).unwrap();
        assert!(empty.validation.is_empty());
        let full = json!({"url": "rbd://a/b/c/snap", "validation_data": {"os_hash_algo": "sha256", "os_hash_value": "ab"}});
        assert_eq!(parse(&full).unwrap().validation.len(), 2);
        for bad in [
            json!({}),
            json!({"url": 3}),
            json!({"url": "http://h/x", "extra": 1}),
            json!({"url": "http://h/x", "validation_data": {"os_hash_algo": "sha512"}}),
            json!({"url": "http://h/x", "validation_data": {"os_hash_value": "ab"}}),
            json!({"url": "http://h/x", "validation_data": {"os_hash_algo": "sha3_256", "os_hash_value": "ab"}}),
            json!({"url": "http://h/x", "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab", "checksum": "0123456789abcdef0123456789abcdef"}}),
            json!({"url": "http://h/x", "validation_data": []}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hash_values_have_the_algorithms_size() {
        let with = |algo: &str, value: &str| AddLocation {
            url: "http://h/x".into(),
            validation: json!({"os_hash_algo": algo, "os_hash_value": value})
                .as_object()
                .unwrap()
                .clone(),
        };
        assert_eq!(
            check_hash(&with("sha256", &"ab".repeat(32)), HashAlgo::Sha512).unwrap(),
            HashAlgo::Sha256
        );
        assert!(check_hash(&with("sha256", &"ab".repeat(31)), HashAlgo::Sha512).is_err());
        assert!(check_hash(&with("sha256", "zz"), HashAlgo::Sha512).is_err());
        assert!(check_hash(&with("nope", "ab"), HashAlgo::Sha512).is_err());
        let none = AddLocation {
            url: "http://h/x".into(),
            validation: Default::default(),
        };
        assert_eq!(
            check_hash(&none, HashAlgo::Sha512).unwrap(),
            HashAlgo::Sha512
        );
    }
}
