//! Glance's interoperable import rules (`glance/api/v2/images.py` `import_image`,
//! `glance/async_/flows/api_image_import.py`), with no HTTP and no SQL: the request body, the
//! status each method needs, the stores it goes to, the `os_glance_import_task` lock (and when
//! a stale one may be taken over), and the progress properties the import keeps on the image.
//!
//! The flow, as the API and the channel server drive it with these rules:
//!
//! 1. `POST /v2/images/{id}/import` checks the body ([`parse`]), the status ([`check_status`]),
//!    the stores ([`target_stores`]) and the lock ([`lock_state`]); then, in one transaction,
//!    the task is recorded, the image takes the lock and the progress properties
//!    ([`begin`]: `importing` for every method but `copy-image`), and an `import` job is queued
//!    for the node that runs it (the stage host for `glance-direct`).
//! 2. The data plane writes each store in turn; each copy committed is a location, and the
//!    last one (or, without `all_stores_must_succeed`, the first) makes the image `active`
//!    ([`store_done`]); a store that fails is listed in `os_glance_failed_import`
//!    ([`store_failed`]).
//! 3. When the job reports the end, the task succeeds if the image is active (for
//!    `copy-image`: if no required store failed); otherwise what the import added is removed
//!    and the image goes back to `queued` ([`finish`]).

use super::{Error, Image};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::config::StoreSet;
use shared::image::ImageStatus;

/// The lock: the id of the task importing into the image.
pub const IMPORT_TASK: &str = "os_glance_import_task";
/// The stores an import still has to write (comma-separated; multi-store only).
pub const IMPORTING_TO_STORES: &str = "os_glance_importing_to_stores";
/// The stores an import failed to write (comma-separated; multi-store only).
pub const FAILED_IMPORT: &str = "os_glance_failed_import";
/// The node holding the staged data (`worker_self_reference_url`; hidden from clients).
pub const STAGE_HOST: &str = "os_glance_stage_host";

/// How long a lock holds before another import may take it over (Glance: 60 minutes, twice
/// that for a task still `pending`).
pub const LOCK_EXPIRY_MINUTES: i64 = 60;

/// An import method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Data staged with `PUT …/stage`.
    GlanceDirect,
    /// Data fetched from a URI.
    WebDownload,
    /// An active image's data copied into more stores.
    CopyImage,
    /// An image of another region's Glance (its metadata, then its data).
    GlanceDownload,
}

impl Method {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::GlanceDirect => "glance-direct",
            Method::WebDownload => "web-download",
            Method::CopyImage => "copy-image",
            Method::GlanceDownload => "glance-download",
        }
    }

    /// The method named `name`.
    pub fn from_name(name: &str) -> Option<Method> {
        [
            Method::GlanceDirect,
            Method::WebDownload,
            Method::CopyImage,
            Method::GlanceDownload,
        ]
        .into_iter()
        .find(|m| m.as_str() == name)
    }
}

/// A checked `POST /v2/images/{id}/import` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// `method.uri` (web-download).
    pub uri: Option<String>,
    /// `stores`, as given.
    pub stores: Option<Vec<String>>,
    /// `all_stores`.
    pub all_stores: bool,
    /// `all_stores_must_succeed` (default true).
    pub all_stores_must_succeed: bool,
    /// glance-download's `glance_region`, `glance_image_id` and `glance_service_interface`,
    /// or the 400 their absence is (checked after the status, as Glance does:
    /// [`check_remote`]).
    pub remote: Option<Result<Remote, String>>,
}

/// Where a `glance-download` takes its image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `glance_region`: the region whose `image` endpoint serves it.
    pub region: String,
    /// `glance_image_id`: the image there.
    pub image_id: String,
    /// `glance_service_interface` (default `public`).
    pub interface: String,
}

/// The glance-download fields of `method` (the request's, or the one its task keeps; Glance's
/// texts).
pub fn remote(method: &Value) -> Result<Remote, String> {
    let field = |key: &str| method.get(key).filter(|v| !v.is_null());
    let region = field("glance_region")
        .ok_or("'glance_region' needs to be set for glance-download import method")?;
    let image_id = field("glance_image_id")
        .ok_or("'glance_image_id' needs to be set for glance-download import method")?;
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let image_id = text(image_id);
    if uuid::Uuid::parse_str(&image_id).is_err() {
        return Err(format!(
            "Remote image id does not look like a UUID: {image_id}"
        ));
    }
    Ok(Remote {
        region: text(region),
        image_id,
        interface: field("glance_service_interface").map_or_else(|| "public".to_owned(), text),
    })
}

/// glance-download's body checks (400), made after the status ones as Glance does.
pub fn check_remote(req: &Request) -> Result<Option<&Remote>, Error> {
    match &req.remote {
        None => Ok(None),
        Some(Ok(r)) => Ok(Some(r)),
        Some(Err(m)) => Err(Error::Invalid(m.clone())),
    }
}

/// Glance's `_validate_import_body`, and the shape of `stores` and `uri`: every refusal 400.
/// `enabled` says whether a method name is in `enabled_import_methods`.
pub fn parse(body: &Value, enabled: impl Fn(&str) -> bool) -> Result<Request, Error> {
    let bad = |m: &str| Error::Invalid(m.to_owned());
    let Some(obj) = body.as_object() else {
        return Err(bad("Request body must be a JSON object."));
    };
    let method = obj
        .get("method")
        .ok_or_else(|| bad("Import request requires a 'method' field."))?;
    let name = method
        .get("name")
        .ok_or_else(|| bad("Import request requires a 'name' field."))?;
    let name = name.as_str().unwrap_or_default();
    let method_kind = Method::from_name(name)
        .filter(|m| enabled(m.as_str()))
        .ok_or_else(|| Error::Invalid(format!("Unknown import method name '{name}'.")))?;
    let flag = |key: &str, default: bool| match obj.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::Invalid(format!(
            "'{key}' must be boolean value only"
        ))),
    };
    let all_stores_must_succeed = flag("all_stores_must_succeed", true)?;
    let all_stores = flag("all_stores", false)?;
    let stores = match obj.get("stores") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("'stores' must be a list of store ids."))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(bad("'stores' must be a list of store ids.")),
    };
    let uri = match method.get("uri") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err(bad("'uri' must be a string.")),
    };
    let remote = (method_kind == Method::GlanceDownload).then(|| remote(method));
    Ok(Request {
        method: method_kind,
        uri,
        stores,
        all_stores,
        all_stores_must_succeed,
        remote,
    })
}

/// The status and format preconditions of `method` on `image` (Glance's order and texts;
/// every refusal 409).
pub fn check_status(image: &Image, method: Method) -> Result<(), Error> {
    let conflict = |m: &str| Err(Error::Conflict(m.to_owned()));
    let s = image.status;
    if s == ImageStatus::Active && method != Method::CopyImage {
        return conflict("Image with status active cannot be target for import");
    }
    if s != ImageStatus::Active && method == Method::CopyImage {
        return conflict("Only images with status active can be targeted for copying");
    }
    if s != ImageStatus::Queued && matches!(method, Method::WebDownload | Method::GlanceDownload) {
        return Err(Error::Conflict(format!(
            "Image needs to be in 'queued' state to use '{}' method",
            method.as_str()
        )));
    }
    if s != ImageStatus::Uploading && method == Method::GlanceDirect {
        return conflict("Image needs to be staged before 'glance-direct' method can be used");
    }
    if image.container_format.is_none() {
        return conflict("'container_format' needs to be set before import");
    }
    if image.disk_format.is_none() {
        return conflict("'disk_format' needs to be set before import");
    }
    Ok(())
}

/// Why the stores of a request are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoresError {
    /// 400.
    Invalid(String),
    /// An unknown store (409, Glance's `UnknownScheme` here).
    Unknown(String),
}

/// The stores the import writes, in order (Glance's `get_stores_from_request`, then the
/// copy-image rules): `all_stores` → every writable store (copy-image: less those holding the
/// image already; empty: nothing to do); else `stores`, else `X-Image-Meta-Store`, else the
/// default store. Without multi-store: the one store.
pub fn target_stores(
    req: &Request,
    header_store: Option<&str>,
    stores: &StoreSet,
    image: &Image,
) -> Result<Vec<String>, StoresError> {
    if !stores.multistore {
        return Ok(vec![stores.default.clone()]);
    }
    let mut list: Vec<String> = if req.all_stores {
        if req.stores.is_some() || header_store.is_some() {
            return Err(StoresError::Invalid(
                "All_stores parameter can't be used with x-image-meta-store header or stores \
                 parameter"
                    .into(),
            ));
        }
        stores
            .stores
            .iter()
            .filter(|s| !s.read_only())
            .map(|s| s.id.clone())
            .collect()
    } else if let Some(list) = &req.stores {
        if header_store.is_some() {
            return Err(StoresError::Invalid(
                "Stores parameter and x-image-meta-store header can't be both specified".into(),
            ));
        }
        list.clone()
    } else {
        vec![header_store.unwrap_or(&stores.default).to_owned()]
    };
    for s in &list {
        if stores.get(s).is_none() {
            return Err(StoresError::Unknown(shared::error::unknown_store(s)));
        }
    }
    if req.method == Method::CopyImage {
        let holding: Vec<&str> = image.active_locations().map(|l| l.store.as_str()).collect();
        if req.all_stores {
            list.retain(|s| !holding.contains(&s.as_str()));
        } else if let Some(s) = list.iter().find(|s| holding.contains(&s.as_str())) {
            return Err(StoresError::Invalid(format!(
                "Image is already present at store '{s}'"
            )));
        }
    }
    let mut seen = Vec::with_capacity(list.len());
    list.retain(|s| {
        let first = !seen.contains(s);
        seen.push(s.clone());
        first
    });
    Ok(list)
}

/// The lock on an image, seen against the task holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// No lock: the import may go.
    Free,
    /// Held by a task that is gone or older than the expiry: it may be taken over (the id of
    /// the task that held it).
    Stale(String),
    /// Held (409 "Image has active task").
    Held,
}

/// Glance's `_enforce_import_lock`: the lock is stale when its task is gone, or when its task
/// was last updated [`LOCK_EXPIRY_MINUTES`] ago (twice that while `pending`).
pub fn lock_state(image: &Image, holder: Option<&super::task::Task>, now: DateTime<Utc>) -> Lock {
    let Some(id) = image.properties.get(IMPORT_TASK) else {
        return Lock::Free;
    };
    let Some(task) = holder else {
        return Lock::Stale(id.clone());
    };
    let mut expiry = chrono::Duration::minutes(LOCK_EXPIRY_MINUTES);
    if task.status == super::task::TaskStatus::Pending {
        expiry = expiry * 2;
    }
    if now - task.updated_at >= expiry {
        Lock::Stale(id.clone())
    } else {
        Lock::Held
    }
}

fn split(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

fn set_list(image: &mut Image, key: &str, list: &[String]) {
    if list.is_empty() {
        image.properties.remove(key);
    } else {
        image.properties.insert(key.to_owned(), list.join(","));
    }
}

/// Adds `add` to (and removes `remove` from) the comma list in property `key`.
fn edit_list(image: &mut Image, key: &str, add: &[String], remove: &[String]) {
    let mut list = split(image.properties.get(key));
    list.retain(|s| !remove.contains(s));
    for s in add {
        if !list.contains(s) {
            list.push(s.clone());
        }
    }
    set_list(image, key, &list);
}

/// The image as an import starts on it (Glance's `get_flow` prologue): the lock taken for
/// `task_id` (what a stale holder left of its progress cleared), `importing` unless copying,
/// the stores to write listed in `os_glance_importing_to_stores` and taken off
/// `os_glance_failed_import` (multi-store only), and `os_glance_stage_host` dropped.
pub fn begin(
    image: &mut Image,
    method: Method,
    task_id: &str,
    stores: &[String],
    multistore: bool,
    stale_stores: &[String],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if method != Method::CopyImage {
        image.transition(ImageStatus::Importing)?;
    }
    image
        .properties
        .insert(IMPORT_TASK.to_owned(), task_id.to_owned());
    if multistore {
        edit_list(image, IMPORTING_TO_STORES, &[], stale_stores);
        edit_list(image, FAILED_IMPORT, &[], stale_stores);
        edit_list(image, IMPORTING_TO_STORES, stores, &[]);
        edit_list(image, FAILED_IMPORT, &[], stores);
    }
    image.properties.remove(STAGE_HOST);
    image.updated_at = now;
    Ok(())
}

/// The stores of `all` still listed in `os_glance_importing_to_stores` (without multi-store,
/// where the property is not kept: `all` unless the image already has a copy in them).
pub fn remaining(image: &Image, all: &[String], multistore: bool) -> Vec<String> {
    if multistore {
        let left = split(image.properties.get(IMPORTING_TO_STORES));
        all.iter().filter(|s| left.contains(s)).cloned().collect()
    } else {
        let holding: Vec<&str> = image.active_locations().map(|l| l.store.as_str()).collect();
        all.iter()
            .filter(|s| !holding.contains(&s.as_str()))
            .cloned()
            .collect()
    }
}

/// Progress after a copy into `store` committed: no longer importing to it.
pub fn store_done(image: &mut Image, store: &str, multistore: bool) {
    if multistore {
        edit_list(image, IMPORTING_TO_STORES, &[], &[store.to_owned()]);
    }
}

/// Progress after a copy into `store` failed: listed as failed, no longer importing to it.
pub fn store_failed(image: &mut Image, store: &str, multistore: bool) {
    if multistore {
        let s = [store.to_owned()];
        edit_list(image, IMPORTING_TO_STORES, &[], &s);
        edit_list(image, FAILED_IMPORT, &s, &[]);
    }
}

/// Whether the copy into the `done`-th of `total` stores makes the image `active` (Glance's
/// `set_active`: the last store, or any with `all_stores_must_succeed` off; never for
/// `copy-image`).
pub fn sets_active(method: Method, must_succeed: bool, remaining_after: usize) -> bool {
    method != Method::CopyImage && (!must_succeed || remaining_after == 0)
}

/// The image as the import `task_id` ends: the lock released (if still its own) and, on
/// failure, the stores it did not finish taken off `os_glance_importing_to_stores` and listed
/// as failed. Returns whether the lock was its own.
pub fn finish(image: &mut Image, task_id: &str, unfinished: &[String], multistore: bool) -> bool {
    let own = image.properties.get(IMPORT_TASK).map(String::as_str) == Some(task_id);
    if own {
        image.properties.remove(IMPORT_TASK);
    }
    if multistore {
        edit_list(image, IMPORTING_TO_STORES, &[], unfinished);
        edit_list(image, FAILED_IMPORT, unfinished, &[]);
    }
    own
}

/// The `image` endpoint of `region` for `interface` in a service catalog: Keystone v3's
/// (`GET /v3/auth/catalog`: endpoints with `interface`, `region`/`region_id` and `url`) or
/// the v2 form keystonemiddleware passes as `X-Service-Catalog` (`publicURL`, …). Regions
/// compare case-insensitively (Glance's `get_glance_endpoint`); `Err` is Glance's
/// `GlanceEndpointNotFound` text.
pub fn glance_endpoint(catalog: &Value, region: &str, interface: &str) -> Result<String, String> {
    let services = catalog
        .get("catalog")
        .unwrap_or(catalog)
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let v2_key = format!("{interface}URL");
    services
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("image"))
        .flat_map(|s| {
            s.get("endpoints")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
        .filter(|e| {
            ["region", "region_id"].iter().any(|k| {
                e.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.eq_ignore_ascii_case(region))
            })
        })
        .find_map(|e| {
            let v2 = e.get(&v2_key).and_then(Value::as_str);
            let v3 = (e.get("interface").and_then(Value::as_str) == Some(interface))
                .then(|| e.get("url").and_then(Value::as_str))
                .flatten();
            v2.or(v3).map(str::to_owned)
        })
        .ok_or_else(|| format!("{interface} glance endpoint not found for region {region}"))
}

/// The remote image's URL on its Glance `endpoint` (`…/v2/images/{id}`; its data is that
/// followed by `/file`).
pub fn remote_image_url(endpoint: &str, image_id: &str) -> String {
    format!("{}/v2/images/{image_id}", endpoint.trim_end_matches('/'))
}

/// What taking a remote image's metadata changed on the image, to undo if the import fails
/// (Glance's `_ImportMetadata.revert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRevert {
    disk_format: Option<String>,
    container_format: Option<String>,
    /// Each property set, with the value it had (`None`: it was not there).
    properties: Vec<(String, Option<String>)>,
}

/// Glance's `_ImportMetadata.execute` on the remote image (`GET /v2/images/{id}` of the
/// other Glance): it must be `active`; `image` takes its `disk_format`, `container_format`
/// (each one this Glance accepts) and the properties whose names start with one of
/// `prefixes` (never a reserved `os_glance*` one nor a base attribute). The size its data
/// must have, and how to undo.
pub fn take_remote(
    image: &mut Image,
    remote: &Value,
    prefixes: &[String],
    opts: &shared::config::ImageOptions,
    remote_id: &str,
) -> Result<(u64, RemoteRevert), String> {
    let status = remote.get("status").and_then(Value::as_str);
    if status != Some("active") {
        return Err(format!(
            "Source image status should be active instead of {}",
            status.unwrap_or("None")
        ));
    }
    let size = remote
        .get("size")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .ok_or_else(|| {
            format!("Size attribute of remote image {remote_id} could not be determined.")
        })?;
    let format = |key: &str, allowed: &[String]| -> Result<String, String> {
        let f = remote.get(key).and_then(Value::as_str).unwrap_or("None");
        if allowed.iter().any(|a| a == f) {
            Ok(f.to_owned())
        } else {
            Err(format!(
                "The remote image's {key} {f} is not one this Glance accepts"
            ))
        }
    };
    let disk_format = format("disk_format", &opts.disk_formats)?;
    let container_format = format("container_format", &opts.container_formats)?;
    let mut revert = RemoteRevert {
        disk_format: image.disk_format.replace(disk_format),
        container_format: image.container_format.replace(container_format),
        properties: Vec::new(),
    };
    let copied = remote.as_object().into_iter().flatten().filter(|(k, _)| {
        prefixes.iter().any(|p| k.starts_with(p.as_str()))
            && !super::property::is_reserved(k)
            && !super::property::is_base(k)
    });
    for (key, value) in copied {
        let value = value
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        let old = image.properties.insert(key.clone(), value);
        revert.properties.push((key.clone(), old));
    }
    // the copied properties count in image_property_quota (Glance saves them through its
    // quota proxy)
    if let Err(e) = super::property::check_quotas(image.properties.len(), image.tags.len()) {
        undo_remote(image, &revert);
        return Err(e.to_string());
    }
    Ok((size, revert))
}

/// Undoes [`take_remote`]: the formats and properties as they were.
pub fn undo_remote(image: &mut Image, revert: &RemoteRevert) {
    image.disk_format = revert.disk_format.clone();
    image.container_format = revert.container_format.clone();
    for (key, old) in &revert.properties {
        match old {
            Some(v) => image.properties.insert(key.clone(), v.clone()),
            None => image.properties.remove(key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::sample;
    use serde_json::json;

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn bodies_are_checked_as_glance_does() {
        let cases = [
            (json!({}), "Import request requires a 'method' field."),
            (
                json!({"method": {}}),
                "Import request requires a 'name' field.",
            ),
            (
                json!({"method": {"name": "nope"}}),
                "Unknown import method name 'nope'.",
            ),
            (
                json!({"method": {"name": "glance-direct"}, "all_stores": "yes"}),
                "'all_stores' must be boolean value only",
            ),
            (
                json!({"method": {"name": "glance-direct"}, "all_stores_must_succeed": 1}),
                "'all_stores_must_succeed' must be boolean value only",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse(&body, all),
                Err(Error::Invalid(want.into())),
                "{body}"
            );
        }
        let r = parse(
            &json!({"method": {"name": "web-download", "uri": "http://x/y"}, "stores": ["a"]}),
            all,
        )
        .unwrap();
        assert_eq!(r.method, Method::WebDownload);
        assert_eq!(r.uri.as_deref(), Some("http://x/y"));
        assert!(r.all_stores_must_succeed && !r.all_stores);
        // a method that is not enabled is unknown
        assert!(
            parse(&json!({"method": {"name": "copy-image"}}), |m| m
                != "copy-image")
            .is_err()
        );
    }

    #[test]
    fn glance_download_bodies() {
        let id = "0b5e0f84-7f3c-4d6d-9a7a-1f5a3c1e2b9d";
        let parsed = |method: Value| {
            let r = parse(&json!({ "method": method }), all).unwrap();
            check_remote(&r).map(|r| r.cloned())
        };
        assert_eq!(
            parsed(json!({"name": "glance-download", "glance_image_id": id})),
            Err(Error::Invalid(
                "'glance_region' needs to be set for glance-download import method".into()
            ))
        );
        assert_eq!(
            parsed(json!({"name": "glance-download", "glance_region": "R2"})),
            Err(Error::Invalid(
                "'glance_image_id' needs to be set for glance-download import method".into()
            ))
        );
        assert_eq!(
            parsed(
                json!({"name": "glance-download", "glance_region": "R2", "glance_image_id": "x1"})
            ),
            Err(Error::Invalid(
                "Remote image id does not look like a UUID: x1".into()
            ))
        );
        let r = parsed(
            json!({"name": "glance-download", "glance_region": "R2", "glance_image_id": id}),
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.region.as_str(), r.interface.as_str()), ("R2", "public"));
        assert_eq!(r.image_id, id);
        let r = parsed(json!({"name": "glance-download", "glance_region": "R2",
            "glance_image_id": id, "glance_service_interface": "internal"}))
        .unwrap()
        .unwrap();
        assert_eq!(r.interface, "internal");
        // other methods carry none
        assert_eq!(parsed(json!({"name": "glance-direct"})), Ok(None));
        let mut img = sample();
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img.status = ImageStatus::Uploading;
        assert_eq!(
            check_status(&img, Method::GlanceDownload),
            Err(Error::Conflict(
                "Image needs to be in 'queued' state to use 'glance-download' method".into()
            ))
        );
    }

    #[test]
    fn glance_endpoints_from_either_catalog_form() {
        let v3 = json!({"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "region": "R2", "url": "http://ks"}]},
            {"type": "image", "endpoints": [
                {"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": "http://one"},
                {"interface": "internal", "region": "R2", "region_id": "R2", "url": "http://two-internal"},
                {"interface": "public", "region": "R2", "region_id": "R2", "url": "http://two/"},
            ]},
        ]});
        assert_eq!(glance_endpoint(&v3, "r2", "public").unwrap(), "http://two/");
        assert_eq!(
            glance_endpoint(&v3, "R2", "internal").unwrap(),
            "http://two-internal"
        );
        assert_eq!(
            glance_endpoint(&v3, "R3", "public"),
            Err("public glance endpoint not found for region R3".into())
        );
        let v2 = json!([{"type": "image", "name": "glance", "endpoints": [
            {"region": "R2", "publicURL": "http://two", "internalURL": "http://in"}]}]);
        assert_eq!(glance_endpoint(&v2, "R2", "internal").unwrap(), "http://in");
        assert!(glance_endpoint(&v2, "R2", "admin").is_err());
        assert!(glance_endpoint(&json!(null), "R2", "public").is_err());
        assert_eq!(
            remote_image_url("http://two/", "abc"),
            "http://two/v2/images/abc"
        );
    }

    #[test]
    fn remote_metadata_taken_and_undone() {
        let opts = shared::config::ImageOptions::default();
        let prefixes = shared::config::GlanceDownloadProperties::default().extra_properties;
        let mut img = sample();
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img.properties.insert("hw_disk_bus".into(), "ide".into());
        img.properties.insert("mine".into(), "1".into());
        let before = img.clone();
        let remote = json!({"status": "active", "size": 4096, "disk_format": "qcow2",
            "container_format": "bare", "hw_disk_bus": "virtio", "hw_rng_model": "virtio",
            "os_distro": "debian", "os_glance_import_task": "x", "os_hidden": false,
            "owner": "them", "other": "no", "trait:CUSTOM_X": "required"});
        let (size, revert) = take_remote(&mut img, &remote, &prefixes, &opts, "r").unwrap();
        assert_eq!(size, 4096);
        assert_eq!(img.disk_format.as_deref(), Some("qcow2"));
        assert_eq!(img.properties["hw_disk_bus"], "virtio");
        assert_eq!(img.properties["hw_rng_model"], "virtio");
        assert_eq!(img.properties["os_distro"], "debian");
        assert_eq!(img.properties["trait:CUSTOM_X"], "required");
        for absent in ["os_glance_import_task", "os_hidden", "other", "owner"] {
            assert!(!img.properties.contains_key(absent), "{absent}");
        }
        assert_eq!(img.properties["mine"], "1");
        undo_remote(&mut img, &revert);
        assert_eq!(img, before);
        // refusals, in Glance's words
        let mut bad = remote.clone();
        bad["status"] = json!("queued");
        assert_eq!(
            take_remote(&mut img, &bad, &prefixes, &opts, "r").unwrap_err(),
            "Source image status should be active instead of queued"
        );
        bad["status"] = json!("active");
        bad["size"] = json!(null);
        assert_eq!(
            take_remote(&mut img, &bad, &prefixes, &opts, "r").unwrap_err(),
            "Size attribute of remote image r could not be determined."
        );
        bad["size"] = json!(1);
        bad["disk_format"] = json!("nope");
        assert!(take_remote(&mut img, &bad, &prefixes, &opts, "r").is_err());
        assert_eq!(img, before, "a refusal changes nothing");
        // more properties than image_property_quota once copied: refused, nothing kept
        let mut many = remote.clone();
        let max = crate::domain::property::MAX_PROPERTIES;
        for i in 0..max {
            many[format!("hw_extra_{i}")] = json!("x");
        }
        let why = take_remote(&mut img, &many, &prefixes, &opts, "r").unwrap_err();
        assert!(why.contains("Maximum number of image properties"), "{why}");
        assert_eq!(img, before, "a refusal changes nothing");
    }

    #[test]
    fn preconditions_by_method() {
        let mut img = sample();
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img.status = ImageStatus::Queued;
        assert!(check_status(&img, Method::WebDownload).is_ok());
        assert!(check_status(&img, Method::GlanceDirect).is_err());
        assert!(check_status(&img, Method::CopyImage).is_err());
        img.status = ImageStatus::Uploading;
        assert!(check_status(&img, Method::GlanceDirect).is_ok());
        img.status = ImageStatus::Active;
        assert!(check_status(&img, Method::CopyImage).is_ok());
        assert_eq!(
            check_status(&img, Method::GlanceDirect),
            Err(Error::Conflict(
                "Image with status active cannot be target for import".into()
            ))
        );
        img.status = ImageStatus::Queued;
        img.disk_format = None;
        assert_eq!(
            check_status(&img, Method::WebDownload),
            Err(Error::Conflict(
                "'disk_format' needs to be set before import".into()
            ))
        );
    }

    #[test]
    fn progress_lists() {
        let mut img = sample();
        img.status = ImageStatus::Uploading;
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img.properties.insert(STAGE_HOST.into(), "http://n1".into());
        img.properties.insert(FAILED_IMPORT.into(), "b".into());
        let stores = vec!["a".to_owned(), "b".to_owned()];
        begin(
            &mut img,
            Method::GlanceDirect,
            "t1",
            &stores,
            true,
            &[],
            Utc::now(),
        )
        .unwrap();
        assert_eq!(img.status, ImageStatus::Importing);
        assert_eq!(img.properties[IMPORT_TASK], "t1");
        assert_eq!(img.properties[IMPORTING_TO_STORES], "a,b");
        assert!(!img.properties.contains_key(FAILED_IMPORT));
        assert!(!img.properties.contains_key(STAGE_HOST));
        assert_eq!(remaining(&img, &stores, true), stores);
        store_done(&mut img, "a", true);
        assert_eq!(remaining(&img, &stores, true), vec!["b".to_owned()]);
        store_failed(&mut img, "b", true);
        assert_eq!(img.properties[FAILED_IMPORT], "b");
        assert!(!img.properties.contains_key(IMPORTING_TO_STORES));
        assert!(finish(&mut img, "t1", &[], true));
        assert!(!img.properties.contains_key(IMPORT_TASK));
        assert!(sets_active(Method::GlanceDirect, true, 0));
        assert!(!sets_active(Method::GlanceDirect, true, 1));
        assert!(sets_active(Method::WebDownload, false, 1));
        assert!(!sets_active(Method::CopyImage, false, 0));
    }

    #[test]
    fn stale_locks() {
        use crate::domain::task::TaskStatus;
        let now = Utc::now();
        let mut img = sample();
        assert_eq!(lock_state(&img, None, now), Lock::Free);
        img.properties.insert(IMPORT_TASK.into(), "t0".into());
        assert_eq!(lock_state(&img, None, now), Lock::Stale("t0".into()));
        let mut t = crate::domain::task::tests::task_at(
            "p1",
            None,
            TaskStatus::Processing,
            now - chrono::Duration::minutes(30),
        );
        assert_eq!(lock_state(&img, Some(&t), now), Lock::Held);
        t.updated_at = now - chrono::Duration::minutes(61);
        assert_eq!(lock_state(&img, Some(&t), now), Lock::Stale("t0".into()));
        t.status = TaskStatus::Pending;
        assert_eq!(lock_state(&img, Some(&t), now), Lock::Held);
    }
}
