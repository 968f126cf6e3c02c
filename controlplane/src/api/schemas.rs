//! `GET /v2/schemas/{image,images,member,members,task,tasks}`.
//!
//! The same structure Glance publishes (`get_schema().raw()` and
//! `get_collection_schema().raw()` in `glance/api/v2/images.py`): the base properties with
//! their types, `additionalProperties: {"type": "string"}` for custom properties, and the
//! `self`/`enclosure`/`describedby` links. The `disk_format` and `container_format` enums come
//! from the configuration. python-glanceclient builds its image model from this schema with
//! warlock and validates every image we return against it, so the two must agree (see the
//! tests, which validate rendered images with a JSON-schema validator).

use super::extract::NoBody;
use crate::app::App;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};
use shared::config::ImageOptions;

fn nullable_enum(values: &[String]) -> Value {
    let mut e = vec![Value::Null];
    e.extend(values.iter().map(|v| Value::String(v.clone())));
    Value::Array(e)
}

/// The base properties of an image, as JSON-schema.
pub fn base_properties(opts: &ImageOptions) -> Map<String, Value> {
    let props = json!({
        "id": {
            "type": "string",
            "description": "Identifier of the image (a UUID)",
            "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
        },
        "name": {"type": ["null", "string"], "description": "Human-readable name of the image", "maxLength": 255},
        "status": {
            "type": "string",
            "readOnly": true,
            "description": "Lifecycle status of the image",
            "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing",
                     "pending_delete", "deactivated"]
        },
        "visibility": {
            "type": "string",
            "description": "Who can see the image",
            "enum": ["community", "public", "private", "shared"]
        },
        "protected": {"type": "boolean", "description": "When true, the image cannot be deleted."},
        "os_hidden": {"type": "boolean", "description": "When true, the image is left out of default image lists."},
        "checksum": {"type": ["null", "string"], "readOnly": true, "description": "MD5 digest of the image data", "maxLength": 32},
        "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "description": "Algorithm used for os_hash_value", "maxLength": 64},
        "os_hash_value": {"type": ["null", "string"], "readOnly": true, "description": "Hex digest of the image data computed with os_hash_algo", "maxLength": 128},
        "owner": {"type": ["null", "string"], "description": "Project that owns the image", "maxLength": 255},
        "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of the image data in bytes"},
        "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of the image in bytes"},
        "container_format": {
            "type": ["null", "string"],
            "description": "Container format of the image",
            "enum": nullable_enum(&opts.container_formats)
        },
        "disk_format": {
            "type": ["null", "string"],
            "description": "Disk format of the image",
            "enum": nullable_enum(&opts.disk_formats)
        },
        "created_at": {"type": "string", "readOnly": true, "description": "When the image was registered"},
        "updated_at": {"type": "string", "readOnly": true, "description": "When the image was last modified"},
        "tags": {
            "type": "array",
            "description": "Strings attached to the image",
            "items": {"type": "string", "maxLength": 255}
        },
        "direct_url": {"type": "string", "readOnly": true, "description": "URL of the image data in its store"},
        "min_ram": {"type": "integer", "description": "RAM (in MB) needed to boot the image"},
        "min_disk": {"type": "integer", "description": "Disk space (in GB) needed to boot the image"},
        "self": {"type": "string", "readOnly": true, "description": "URL of this image"},
        "file": {"type": "string", "readOnly": true, "description": "URL of the image data"},
        "stores": {
            "type": "string",
            "readOnly": true,
            "description": "Comma-separated ids of the stores holding the data (multi-store deployments only)"
        },
        "schema": {"type": "string", "readOnly": true, "description": "URL of the image schema"},
        "locations": {
            "type": "array",
            "description": "Locations of the image data in external stores",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "maxLength": 255},
                    "metadata": {"type": "object"},
                    "validation_data": {
                        "description": "Checksum and hash the location's data must match; write-only.",
                        "type": "object",
                        "writeOnly": true,
                        "additionalProperties": false,
                        "properties": {
                            "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                            "os_hash_algo": {"type": "string", "maxLength": 64},
                            "os_hash_value": {"type": "string", "maxLength": 128}
                        },
                        "required": ["os_hash_algo", "os_hash_value"]
                    }
                },
                "required": ["url", "metadata"]
            }
        }
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The image schema (`/v2/schemas/image`).
pub fn image_schema(opts: &ImageOptions) -> Value {
    json!({
        "name": "image",
        "properties": base_properties(opts),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// The collection schema (`/v2/schemas/images`).
pub fn images_schema(opts: &ImageOptions) -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema(opts)},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

/// A collection schema around `item` (Glance's `CollectionSchema.raw()`).
fn collection(name: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            name: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// The member schema (`/v2/schemas/member`, Glance's `_MEMBER_SCHEMA`).
pub fn member_schema() -> Value {
    json!({
        "name": "member",
        "properties": {
            "member_id": {"type": "string", "description": "An identifier for the image member (tenantId)"},
            "image_id": {"type": "string", "description": "An identifier for the image", "pattern": UUID_PATTERN},
            "created_at": {"type": "string", "description": "Date and time of image member creation"},
            "updated_at": {"type": "string", "description": "Date and time of last modification of image member"},
            "status": {"type": "string", "description": "The status of this image member", "enum": ["pending", "accepted", "rejected"]},
            "schema": {"readOnly": true, "type": "string"}
        },
        "additionalProperties": false
    })
}

fn task_properties(partial: bool) -> Map<String, Value> {
    let all = json!({
        "id": {"description": "An identifier for the task", "pattern": UUID_PATTERN, "type": "string"},
        "type": {"description": "The type of task represented by this content", "enum": ["import", "api_image_import", "location_import"], "type": "string"},
        "status": {"description": "The current status of this task", "enum": ["pending", "processing", "success", "failure"], "type": "string"},
        "input": {"description": "The parameters required by task, JSON blob", "type": ["null", "object"]},
        "result": {"description": "The result of current task, JSON blob", "type": ["null", "object"]},
        "owner": {"description": "An identifier for the owner of this task", "type": "string"},
        "message": {"description": "Human-readable informative message only included when appropriate (usually on failure)", "type": "string"},
        "image_id": {"description": "Image associated with the task", "type": "string"},
        "request_id": {"description": "Human-readable informative request-id", "type": "string"},
        "user_id": {"description": "User associated with the task", "type": "string"},
        "expires_at": {"description": "Datetime when this resource would be subject to removal", "type": ["null", "string"]},
        "created_at": {"description": "Datetime when this resource was created", "type": "string"},
        "updated_at": {"description": "Datetime when this resource was updated", "type": "string"},
        "self": {"readOnly": true, "type": "string"},
        "schema": {"readOnly": true, "type": "string"}
    });
    let mut m = match all {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if partial {
        for hidden in ["input", "result", "message"] {
            m.remove(hidden);
        }
    }
    m
}

/// The task schema (`/v2/schemas/task`).
pub fn task_schema() -> Value {
    json!({"name": "task", "properties": task_properties(false), "additionalProperties": false})
}

/// `GET /v2/schemas/member`.
pub(crate) async fn member(_: NoBody) -> Json<Value> {
    Json(member_schema())
}

/// `GET /v2/schemas/members`.
pub(crate) async fn members(_: NoBody) -> Json<Value> {
    Json(collection("members", member_schema()))
}

/// `GET /v2/schemas/task`.
pub(crate) async fn task(_: NoBody) -> Json<Value> {
    Json(task_schema())
}

/// `GET /v2/schemas/tasks` (items without `input`, `result`, `message`, as Glance).
pub(crate) async fn tasks(_: NoBody) -> Json<Value> {
    let item =
        json!({"name": "task", "properties": task_properties(true), "additionalProperties": false});
    Json(collection("tasks", item))
}

/// `GET /v2/schemas/image`.
pub(crate) async fn image(State(app): State<App>, _: NoBody) -> Json<Value> {
    Json(image_schema(&app.config.image))
}

/// `GET /v2/schemas/metadefs/{name}`: the ten metadata-definition documents
/// ([`super::metadef_schemas`]); any other name is 404, as Glance's router.
pub(crate) async fn metadef(
    Path(name): Path<String>,
    _: NoBody,
) -> Result<Json<Value>, super::ApiError> {
    super::metadef_schemas::by_name(&name)
        .map(Json)
        .ok_or_else(|| super::ApiError::NotFound("The resource could not be found.".into()))
}

/// `GET /v2/schemas/images`.
pub(crate) async fn images(State(app): State<App>, _: NoBody) -> Json<Value> {
    Json(images_schema(&app.config.image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::view::ImageView;
    use crate::domain::image::tests::sample;
    use shared::image::ImageStatus;

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::validator_for(schema).expect("the published schema is valid JSON-schema")
    }

    #[test]
    fn rendered_images_validate_against_the_schema() {
        let opts = ImageOptions::default();
        let v = validator(&image_schema(&opts));

        let queued = sample();
        let mut active = sample();
        active.status = ImageStatus::Active;
        active.disk_format = Some("qcow2".into());
        active.container_format = Some("bare".into());
        active.size = Some(1 << 40);
        active.virtual_size = Some(1 << 41);
        active.checksum = Some("d41d8cd98f00b204e9800998ecf8427e".into());
        active.os_hash_algo = Some("sha512".into());
        active.os_hash_value = Some("ab".repeat(64));
        active.name = None;
        active.owner = None;
        active.tags.insert("x".repeat(255));
        active
            .properties
            .insert("os_distro".into(), "cirros".into());
        active
            .properties
            .insert("hw_disk_bus".into(), String::new());
        for img in [queued, active] {
            let view = ImageView::of(&img, &crate::api::view::tests::single()).into_value();
            let errors: Vec<String> = v.iter_errors(&view).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{view}: {errors:?}");
        }
    }

    #[test]
    fn schema_rejects_what_we_reject() {
        let opts = ImageOptions::default();
        let v = validator(&image_schema(&opts));
        let mut view = ImageView::of(&sample(), &crate::api::view::tests::single()).into_value();
        view["disk_format"] = json!("floppy");
        assert!(!v.is_valid(&view));
        let mut view = ImageView::of(&sample(), &crate::api::view::tests::single()).into_value();
        view["custom"] = json!(5);
        assert!(!v.is_valid(&view));
    }

    #[test]
    fn collection_schema_validates_a_page() {
        let opts = ImageOptions::default();
        let v = validator(&images_schema(&opts));
        let page = json!({
            "images": [ImageView::of(&sample(), &crate::api::view::tests::single()).into_value()],
            "first": "/v2/images",
            "next": "/v2/images?marker=x",
            "schema": "/v2/schemas/images"
        });
        assert!(v.is_valid(&page));
    }

    #[test]
    fn member_views_validate_against_the_member_schemas() {
        use crate::api::members::member_view;
        use crate::domain::{Member, MemberStatus};
        let now = chrono::Utc::now();
        let m = Member {
            image_id: sample().id,
            member: "p2".into(),
            status: MemberStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        let one = validator(&member_schema());
        assert!(one.is_valid(&member_view(&m)));
        let many = validator(&collection("members", member_schema()));
        assert!(
            many.is_valid(&json!({"members": [member_view(&m)], "schema": "/v2/schemas/members"}))
        );
        let mut bad = member_view(&m);
        bad["status"] = json!("maybe");
        assert!(!one.is_valid(&bad));
        validator(&task_schema());
    }

    #[test]
    fn format_enums_follow_config() {
        let opts = ImageOptions {
            disk_formats: vec!["raw".into()],
            ..ImageOptions::default()
        };
        let s = image_schema(&opts);
        assert_eq!(s["properties"]["disk_format"]["enum"], json!([null, "raw"]));
    }
}
