//! `POST /v2/images` bodies: Glance's checks, in Glance's order, producing a [`NewImage`].
//!
//! 1. Keys that may never be sent (`self`, `file`, `schema`, `direct_url`, `stores`) → 403.
//! 2. Every value must match the image schema (types, enums, lengths) → 400.
//! 3. Custom keys: at most 255 characters (400); reserved names and `os_glance*` → 403.
//! 4. Read-only base keys (`status`, `size`, `checksum`, …) and `locations` → 403.
//! 5. `min_disk`/`min_ram` must not be negative (400); property and tag quotas (413).

use super::{Error, Image, property};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use shared::config::ImageOptions;
use shared::image::{ImageId, ImageStatus, Visibility};
use std::collections::{BTreeMap, BTreeSet};

/// A validated create request, before the owner default and policy are applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewImage {
    /// Client-chosen id, if any.
    pub id: Option<ImageId>,
    /// `name`.
    pub name: Option<String>,
    /// `visibility`; `None` means Glance's default, `shared`.
    pub visibility: Option<Visibility>,
    /// `protected`.
    pub protected: bool,
    /// `os_hidden`.
    pub os_hidden: bool,
    /// `Some(owner)` when the body names an owner (which may be null).
    pub owner: Option<Option<String>>,
    /// `min_disk` in GB.
    pub min_disk: i64,
    /// `min_ram` in MB.
    pub min_ram: i64,
    /// `container_format`.
    pub container_format: Option<String>,
    /// `disk_format`.
    pub disk_format: Option<String>,
    /// `tags`.
    pub tags: BTreeSet<String>,
    /// Custom string properties.
    pub properties: BTreeMap<String, String>,
}

fn opt_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// Checks a create body and extracts the new image's fields.
pub fn parse(body: &Map<String, Value>, opts: &ImageOptions) -> Result<NewImage, Error> {
    if let Some(key) = property::DISALLOWED_ON_CREATE
        .iter()
        .find(|k| body.contains_key(**k))
    {
        return Err(Error::ReadOnly((*key).to_owned()));
    }
    for (key, value) in body {
        property::validate_value(key, value, opts)?;
    }
    for key in body.keys().filter(|k| !property::is_base(k)) {
        property::validate_key(key)?;
        if property::is_reserved(key) {
            return Err(Error::Reserved(key.clone()));
        }
    }
    if let Some(key) = property::READ_ONLY_ON_CREATE
        .iter()
        .find(|k| body.contains_key(**k))
    {
        return Err(Error::ReadOnly((*key).to_owned()));
    }
    if body.contains_key("locations") {
        return Err(Error::Reserved("locations".into()));
    }

    let mut new = NewImage::default();
    for (key, value) in body {
        match key.as_str() {
            "id" => new.id = value.as_str().and_then(|s| s.parse().ok()),
            "name" => new.name = opt_string(value),
            "visibility" => new.visibility = value.as_str().and_then(|s| s.parse().ok()),
            "protected" => new.protected = value.as_bool().unwrap_or(false),
            "os_hidden" => new.os_hidden = value.as_bool().unwrap_or(false),
            "owner" => new.owner = Some(opt_string(value)),
            "min_disk" => new.min_disk = non_negative("min_disk", value)?,
            "min_ram" => new.min_ram = non_negative("min_ram", value)?,
            "container_format" => new.container_format = opt_string(value),
            "disk_format" => new.disk_format = opt_string(value),
            "tags" => {
                new.tags = value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(opt_string)
                    .collect();
            }
            _ => {
                if let Some(s) = value.as_str() {
                    new.properties.insert(key.clone(), s.to_owned());
                }
            }
        }
    }
    property::check_quotas(new.properties.len(), new.tags.len())?;
    Ok(new)
}

/// `min_disk`/`min_ram` as a non-negative integer (the schema already checked the type).
pub fn non_negative(key: &str, value: &Value) -> Result<i64, Error> {
    let n = property::as_integer(value)
        .ok_or_else(|| Error::Invalid(format!("{key} must be an integer")))?;
    if n < 0 {
        return Err(Error::Invalid(format!(
            "Invalid value '{n}' for parameter '{key}': Cannot be a negative value"
        )));
    }
    Ok(n)
}

impl NewImage {
    /// The visibility the policy check sees (Glance assumes `private` when none is given).
    pub fn policy_visibility(&self) -> Visibility {
        self.visibility.unwrap_or(Visibility::Private)
    }

    /// Builds the `queued` image owned by `owner`.
    pub fn into_image(self, owner: Option<String>, now: DateTime<Utc>) -> Image {
        Image {
            id: self.id.unwrap_or_else(ImageId::new_random),
            name: self.name,
            status: ImageStatus::Queued,
            visibility: self.visibility.unwrap_or(Visibility::Shared),
            protected: self.protected,
            os_hidden: self.os_hidden,
            owner,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            min_disk: self.min_disk,
            min_ram: self.min_ram,
            container_format: self.container_format,
            disk_format: self.disk_format,
            locations: Vec::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            tags: self.tags,
            properties: self.properties,
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<NewImage, Error> {
        parse(v.as_object().unwrap(), &ImageOptions::default())
    }

    #[test]
    fn accepts_a_full_body() {
        let n = parse_json(json!({
            "id": "0b3a8c7e-1234-4321-abcd-0123456789ab", "name": "cirros", "visibility": "private",
            "protected": true, "os_hidden": false, "min_disk": 1, "min_ram": 64,
            "container_format": "bare", "disk_format": "qcow2", "tags": ["a", "a", "b"],
            "os_distro": "cirros", "owner": "p2"
        }))
        .unwrap();
        assert_eq!(
            n.id.unwrap().to_string(),
            "0b3a8c7e-1234-4321-abcd-0123456789ab"
        );
        assert_eq!(n.visibility, Some(Visibility::Private));
        assert_eq!(n.tags.len(), 2);
        assert_eq!(n.properties["os_distro"], "cirros");
        assert_eq!(n.owner, Some(Some("p2".into())));
        let img = n.into_image(Some("p2".into()), Utc::now());
        assert_eq!(img.status, ImageStatus::Queued);
    }

    #[test]
    fn error_table() {
        let long_key = "k".repeat(256);
        let cases: Vec<(Value, &str)> = vec![
            (json!({"self": "/x"}), "403"),
            (json!({"file": "/x"}), "403"),
            (json!({"schema": "/x"}), "403"),
            (json!({"direct_url": "x"}), "403"),
            (json!({"status": "active"}), "403"),
            (json!({"size": 5}), "403"),
            (json!({"checksum": "abc"}), "403"),
            (json!({"os_hash_value": "abc"}), "403"),
            (json!({"created_at": "2020"}), "403"),
            (json!({"locations": []}), "403"),
            (json!({"location": "x"}), "403"),
            (json!({"deleted": "x"}), "403"),
            (json!({"os_glance_import_task": "x"}), "403"),
            (json!({"id": "nope"}), "400"),
            (json!({"name": 5}), "400"),
            (json!({"visibility": "everyone"}), "400"),
            (json!({"disk_format": "floppy"}), "400"),
            (json!({"min_ram": -1}), "400"),
            (json!({"min_ram": "1"}), "400"),
            (json!({"protected": "yes"}), "400"),
            (json!({"custom": 1}), "400"),
            (json!({"custom": null}), "400"),
            (json!({long_key: "x"}), "400"),
            (json!({"tags": [1]}), "400"),
        ];
        for (body, want) in cases {
            let err = parse_json(body.clone()).unwrap_err();
            let got = match err {
                Error::Invalid(_) => "400",
                Error::ReadOnly(_) | Error::Reserved(_) => "403",
                _ => "other",
            };
            assert_eq!(got, want, "{body}: {err:?}");
        }
    }

    #[test]
    fn quotas() {
        let mut props = Map::new();
        for i in 0..=property::MAX_PROPERTIES {
            props.insert(format!("p{i}"), json!("v"));
        }
        assert!(matches!(
            parse(&props, &ImageOptions::default()),
            Err(Error::LimitExceeded(_))
        ));
        let tags: Vec<String> = (0..=property::MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(matches!(
            parse_json(json!({ "tags": tags })),
            Err(Error::LimitExceeded(_))
        ));
    }
}
