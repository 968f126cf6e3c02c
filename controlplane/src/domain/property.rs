//! Image properties: which names clients may write, which values Glance's image schema
//! accepts, and the quotas on custom properties and tags.
//!
//! The lists are Glance's (`glance/api/v2/images.py` `RequestDeserializer`,
//! `glance/domain/__init__.py` `ImageFactory`); the value checks mirror
//! `get_base_properties()` so that a value we accept always validates against the schema we
//! publish at `/v2/schemas/image`.

use super::Error;
use serde_json::Value;
use shared::config::ImageOptions;

/// Paths a PATCH may not touch (403).
pub const READ_ONLY: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "direct_url",
    "self",
    "file",
    "schema",
    "id",
    "os_hash_algo",
    "os_hash_value",
];

/// Keys a create body may not carry at all (403, checked first).
pub const DISALLOWED_ON_CREATE: &[&str] = &["direct_url", "self", "file", "schema", "stores"];

/// Base keys a create body may not set (403, after schema validation).
pub const READ_ONLY_ON_CREATE: &[&str] = &[
    "created_at",
    "updated_at",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
];

/// Names reserved for Glance itself (403).
pub const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];

/// Namespace of properties only Glance writes (`os_glance_*`, 403).
pub const RESERVED_NAMESPACE: &str = "os_glance";

/// Internal properties never shown to clients.
pub const HIDDEN: &[&str] = &["os_glance_stage_host", "os_glance_hash_op_host"];

/// Glance's `image_property_quota`: most custom properties per image (413 above).
pub const MAX_PROPERTIES: usize = 128;

/// Glance's `image_tag_quota`: most tags per image (413 above).
pub const MAX_TAGS: usize = 128;

/// Longest name, owner, tag or property key, in characters.
pub const MAX_STRING_CHARS: usize = 255;

/// Base properties clients may change with PATCH (Glance's writable image attributes).
pub const WRITABLE: &[&str] = &[
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "min_disk",
    "min_ram",
    "container_format",
    "disk_format",
    "tags",
];

/// Every property of Glance's base image schema.
pub const BASE: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "container_format",
    "disk_format",
    "created_at",
    "updated_at",
    "tags",
    "direct_url",
    "min_ram",
    "min_disk",
    "self",
    "file",
    "stores",
    "schema",
    "locations",
];

/// Whether `key` is reserved: one of [`RESERVED`] or in the `os_glance` namespace.
pub fn is_reserved(key: &str) -> bool {
    RESERVED.contains(&key) || key.starts_with(RESERVED_NAMESPACE)
}

/// Whether `key` is a base (schema) property.
pub fn is_base(key: &str) -> bool {
    BASE.contains(&key)
}

const STATUSES: &[&str] = &[
    "queued",
    "saving",
    "active",
    "killed",
    "deleted",
    "uploading",
    "importing",
    "pending_delete",
    "deactivated",
];
const VISIBILITIES: &[&str] = &["community", "public", "private", "shared"];

fn invalid(key: &str, value: &Value, expected: &str) -> Error {
    Error::Invalid(format!(
        "Provided object does not match schema 'image': {value} is not valid for '{key}': expected {expected}"
    ))
}

fn chars_at_most(s: &str, n: usize) -> bool {
    s.chars().count() <= n
}

/// `value` as a JSON-schema `integer` (a number without a fractional part).
pub fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

fn check_string(key: &str, value: &Value, nullable: bool, max: Option<usize>) -> Result<(), Error> {
    match value {
        Value::Null if nullable => Ok(()),
        Value::String(s) => match max {
            Some(m) if !chars_at_most(s, m) => {
                Err(invalid(key, value, &format!("at most {m} characters")))
            }
            _ => Ok(()),
        },
        _ => Err(invalid(
            key,
            value,
            if nullable {
                "null or a string"
            } else {
                "a string"
            },
        )),
    }
}

fn check_enum(key: &str, value: &Value, nullable: bool, allowed: &[&str]) -> Result<(), Error> {
    match value {
        Value::Null if nullable => Ok(()),
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(()),
        _ => Err(invalid(key, value, &format!("one of {allowed:?}"))),
    }
}

/// Validates one base property value against the image schema (400 on mismatch).
/// Unknown keys are accepted here; see [`validate_custom`].
pub fn validate_base(key: &str, value: &Value, opts: &ImageOptions) -> Result<(), Error> {
    match key {
        "id" => match value {
            Value::String(s) if s.parse::<shared::image::ImageId>().is_ok() => Ok(()),
            _ => Err(invalid(key, value, "a UUID string")),
        },
        "name" | "owner" => check_string(key, value, true, Some(MAX_STRING_CHARS)),
        "checksum" => check_string(key, value, true, Some(32)),
        "os_hash_algo" => check_string(key, value, true, Some(64)),
        "os_hash_value" => check_string(key, value, true, Some(128)),
        "status" => check_enum(key, value, false, STATUSES),
        "visibility" => check_enum(key, value, false, VISIBILITIES),
        "protected" | "os_hidden" => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(invalid(key, value, "a boolean")),
        },
        "size" | "virtual_size" => match value {
            Value::Null => Ok(()),
            v if as_integer(v).is_some() => Ok(()),
            _ => Err(invalid(key, value, "null or an integer")),
        },
        "min_ram" | "min_disk" => match as_integer(value) {
            Some(_) => Ok(()),
            None => Err(invalid(key, value, "an integer")),
        },
        "container_format" => {
            let allowed: Vec<&str> = opts.container_formats.iter().map(String::as_str).collect();
            check_enum(key, value, true, &allowed)
        }
        "disk_format" => {
            let allowed: Vec<&str> = opts.disk_formats.iter().map(String::as_str).collect();
            check_enum(key, value, true, &allowed)
        }
        "created_at" | "updated_at" | "direct_url" | "self" | "file" | "stores" | "schema" => {
            check_string(key, value, false, None)
        }
        "tags" => match value {
            Value::Array(items) => items
                .iter()
                .try_for_each(|t| check_string(key, t, false, Some(MAX_STRING_CHARS))),
            _ => Err(invalid(key, value, "an array of strings")),
        },
        "locations" => match value {
            Value::Array(items)
                if items.iter().all(|l| {
                    l.get("url").is_some_and(Value::is_string)
                        && l.get("metadata").is_some_and(Value::is_object)
                }) =>
            {
                Ok(())
            }
            _ => Err(invalid(key, value, "an array of {url, metadata} objects")),
        },
        _ => Ok(()),
    }
}

/// Custom properties are strings (`additionalProperties: {"type": "string"}`).
pub fn validate_custom(key: &str, value: &Value) -> Result<(), Error> {
    match value {
        Value::String(_) => Ok(()),
        _ => Err(invalid(key, value, "a string")),
    }
}

/// Validates any property value: base keys by their schema, others as custom strings.
pub fn validate_value(key: &str, value: &Value, opts: &ImageOptions) -> Result<(), Error> {
    if is_base(key) {
        validate_base(key, value, opts)
    } else {
        validate_custom(key, value)
    }
}

/// A property key is at most 255 characters (Glance LP #1737952) and not empty.
pub fn validate_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::Invalid("Property names must not be empty.".into()));
    }
    if !chars_at_most(key, MAX_STRING_CHARS) {
        return Err(Error::Invalid(
            "Custom property should not be greater than 255 characters.".into(),
        ));
    }
    Ok(())
}

/// Glance's quota checks on the final set of properties and tags.
pub fn check_quotas(properties: usize, tags: usize) -> Result<(), Error> {
    if properties > MAX_PROPERTIES {
        return Err(Error::LimitExceeded(format!(
            "Maximum number of image properties ({MAX_PROPERTIES}) exceeded: {properties}"
        )));
    }
    if tags > MAX_TAGS {
        return Err(Error::LimitExceeded(format!(
            "Maximum number of image tags ({MAX_TAGS}) exceeded: {tags}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn value_table() {
        let opts = ImageOptions::default();
        let cases: &[(&str, Value, bool)] = &[
            ("name", json!(null), true),
            ("name", json!("x"), true),
            ("name", json!("é".repeat(255)), true),
            ("name", json!("x".repeat(256)), false),
            ("name", json!(5), false),
            ("visibility", json!("community"), true),
            ("visibility", json!("everyone"), false),
            ("visibility", json!(null), false),
            ("protected", json!(true), true),
            ("protected", json!("true"), false),
            ("min_ram", json!(512), true),
            ("min_ram", json!(1.0), true),
            ("min_ram", json!(1.5), false),
            ("min_ram", json!("512"), false),
            ("min_ram", json!(null), false),
            ("disk_format", json!("qcow2"), true),
            ("disk_format", json!(null), true),
            ("disk_format", json!("floppy"), false),
            ("container_format", json!("bare"), true),
            ("tags", json!(["a", "b"]), true),
            ("tags", json!(["a", 1]), false),
            ("tags", json!("a"), false),
            ("id", json!("0b3a8c7e-1234-4321-abcd-0123456789ab"), true),
            ("id", json!("not-a-uuid"), false),
            ("hw_cpu", json!("2"), true),
            ("hw_cpu", json!(2), false),
            ("hw_cpu", json!(null), false),
        ];
        for (k, v, ok) in cases {
            assert_eq!(validate_value(k, v, &opts).is_ok(), *ok, "{k} = {v}");
        }
    }

    #[test]
    fn reserved_names() {
        for k in [
            "location",
            "deleted",
            "deleted_at",
            "os_glance_import_task",
            "os_glance",
        ] {
            assert!(is_reserved(k), "{k}");
        }
        for k in ["os_hidden", "locations", "os_distro", "glance"] {
            assert!(!is_reserved(k), "{k}");
        }
    }
}
