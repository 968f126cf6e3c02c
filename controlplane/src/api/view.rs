//! [`ImageView`]: the Glance JSON of an image (GLANCE-API.md §2.1).
//!
//! Every base property is always present (null when unset); custom properties are flattened
//! into the top level; `self`, `file` and `schema` are relative links; timestamps are ISO 8601
//! at second precision with a `Z`. Locations and `direct_url` are never shown.

use crate::domain::{Image, rules};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The JSON object for one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ImageView(pub Map<String, Value>);

/// `2026-01-02T03:04:05Z`.
pub fn isotime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl ImageView {
    /// Renders `image`.
    pub fn of(image: &Image) -> ImageView {
        let mut m = Map::new();
        for (k, v) in &image.properties {
            if !rules::HIDDEN.contains(&k.as_str()) {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
        let id = image.id.to_string();
        let base = json!({
            "id": id,
            "name": image.name,
            "status": image.status.as_str(),
            "visibility": image.visibility.as_str(),
            "protected": image.protected,
            "os_hidden": image.os_hidden,
            "checksum": image.checksum,
            "os_hash_algo": image.os_hash_algo,
            "os_hash_value": image.os_hash_value,
            "owner": image.owner,
            "size": image.size,
            "virtual_size": image.virtual_size,
            "min_disk": image.min_disk,
            "min_ram": image.min_ram,
            "container_format": image.container_format,
            "disk_format": image.disk_format,
            "created_at": isotime(image.created_at),
            "updated_at": isotime(image.updated_at),
            "tags": image.tags.iter().collect::<Vec<_>>(),
            "self": format!("/v2/images/{id}"),
            "file": format!("/v2/images/{id}/file"),
            "schema": "/v2/schemas/image",
        });
        if let Value::Object(base) = base {
            m.extend(base);
        }
        ImageView(m)
    }

    /// As a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::sample;

    #[test]
    fn shape() {
        let mut img = sample();
        img.properties.insert("os_distro".into(), "cirros".into());
        img.properties
            .insert("os_glance_stage_host".into(), "hidden".into());
        img.tags.insert("b".into());
        img.tags.insert("a".into());
        img.location = Some("file:///secret".into());
        let v = ImageView::of(&img).into_value();
        let want = [
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
            "min_disk",
            "min_ram",
            "container_format",
            "disk_format",
            "created_at",
            "updated_at",
            "tags",
            "self",
            "file",
            "schema",
        ];
        for k in want {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v.as_object().unwrap().len(), want.len() + 1, "{v}");
        assert_eq!(v["os_distro"], "cirros");
        assert_eq!(v["size"], Value::Null);
        assert_eq!(v["checksum"], Value::Null);
        assert_eq!(v["created_at"], "2026-01-02T03:04:05Z");
        assert_eq!(v["tags"], json!(["a", "b"]));
        assert_eq!(v["self"], "/v2/images/0b3a8c7e-1234-4321-abcd-0123456789ab");
        assert_eq!(
            v["file"],
            "/v2/images/0b3a8c7e-1234-4321-abcd-0123456789ab/file"
        );
        assert_eq!(v["schema"], "/v2/schemas/image");
        assert!(!v.to_string().contains("secret"));
    }

    #[test]
    fn custom_properties_cannot_shadow_base_ones() {
        let mut img = sample();
        img.properties.insert("status".into(), "active".into());
        let v = ImageView::of(&img).into_value();
        assert_eq!(v["status"], "queued");
    }
}
