//! `PATCH /v2/images/{id}`: the two JSON-patch dialects Glance accepts, and how a change
//! applies to an [`Image`].
//!
//! | media type | shape of one change |
//! |---|---|
//! | `application/openstack-images-v2.1-json-patch` (RFC 6902 subset) | `{"op": "replace", "path": "/name", "value": "x"}` |
//! | `application/openstack-images-v2.0-json-patch` (draft 4) | `{"replace": "/name", "value": "x"}` |
//!
//! Only `add`, `remove` and `replace` exist. Semantics follow Glance's `_do_add`,
//! `_do_replace` and `_do_remove`:
//! - `replace` of a property that does not exist → 409;
//! - `add` of an existing property replaces it (v2.1) or is a 409 (v2.0);
//! - `remove` of a base property → 403, of a missing custom property → 409;
//! - read-only paths → 403, reserved names and `os_glance*` → 403, wrong value types → 400;
//! - `disk_format`/`container_format` change only while `queued` or `importing` (403);
//! - `/locations` only with `show_multiple_locations` (else 403 with Glance's three texts):
//!   `remove` of `/locations/<N>` as Glance's `_do_remove_locations` ([`LocationRules`]);
//!   `add` and `replace` are refused (403) for now.

use super::{Error, Image, create::non_negative, property};
use serde_json::Value;
use shared::config::ImageOptions;
use shared::image::ImageStatus;

/// Which JSON-patch dialect a request uses, chosen by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchMedia {
    /// `application/openstack-images-v2.0-json-patch` (draft-4 style).
    V20,
    /// `application/openstack-images-v2.1-json-patch` (RFC 6902 style).
    V21,
}

impl PatchMedia {
    /// Media type of the draft-4 dialect.
    pub const V20_TYPE: &'static str = "application/openstack-images-v2.0-json-patch";
    /// Media type of the RFC 6902 dialect.
    pub const V21_TYPE: &'static str = "application/openstack-images-v2.1-json-patch";
    /// Value of the `Accept-Patch` header sent with a 415.
    pub const ACCEPT_PATCH: &'static str = "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch";

    /// Picks the dialect from a `Content-Type` value (parameters ignored).
    pub fn from_content_type(value: &str) -> Option<PatchMedia> {
        let mime = value.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case(Self::V21_TYPE) {
            Some(PatchMedia::V21)
        } else if mime.eq_ignore_ascii_case(Self::V20_TYPE) {
            Some(PatchMedia::V20)
        } else {
            None
        }
    }
}

/// A patch operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `add`.
    Add,
    /// `remove`.
    Remove,
    /// `replace`.
    Replace,
}

impl Op {
    const ALL: [(&'static str, Op); 3] = [
        ("add", Op::Add),
        ("remove", Op::Remove),
        ("replace", Op::Replace),
    ];

    fn parse(s: &str) -> Option<Op> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, op)| *op)
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
            Op::Replace => "replace",
        }
    }
}

/// One parsed and validated change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The operation.
    pub op: Op,
    /// Decoded JSON-pointer tokens; `path[0]` is the property.
    pub path: Vec<String>,
    /// The value (absent for `remove`).
    pub value: Option<Value>,
    /// Dialect the change was written in (it changes `add` semantics).
    pub media: PatchMedia,
}

impl Change {
    /// The property the change touches.
    pub fn root(&self) -> &str {
        &self.path[0]
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

const OPS_LIST: &str = "add, remove, replace";

/// Parses and validates a patch document (everything Glance checks before touching the image).
pub fn parse(body: &Value, media: PatchMedia, opts: &ImageOptions) -> Result<Vec<Change>, Error> {
    let Value::Array(raw_changes) = body else {
        return Err(bad(
            "Request body must be a JSON array of operation objects.",
        ));
    };
    let mut changes = Vec::with_capacity(raw_changes.len());
    for raw in raw_changes {
        let Value::Object(raw) = raw else {
            return Err(bad("Operations must be JSON objects."));
        };
        let (op, pointer) = match media {
            PatchMedia::V21 => {
                let op = match raw.get("op") {
                    None => {
                        return Err(bad(format!(
                            "Unable to find `op` in JSON Schema change. It must be one of the following: {OPS_LIST}."
                        )));
                    }
                    Some(v) => v.as_str().and_then(Op::parse).ok_or_else(|| {
                        bad(format!(
                            "Invalid operation: `{v}`. It must be one of the following: {OPS_LIST}."
                        ))
                    })?,
                };
                let path = raw
                    .get("path")
                    .ok_or_else(|| bad("Unable to find 'path' in JSON Schema change"))?;
                (op, path)
            }
            PatchMedia::V20 => {
                let mut found = None;
                for (name, op) in Op::ALL {
                    if let Some(path) = raw.get(name) {
                        if found.is_some() {
                            return Err(bad(
                                "Operation objects must contain only one member named \"add\", \"remove\", or \"replace\".",
                            ));
                        }
                        found = Some((op, path));
                    }
                }
                found.ok_or_else(|| {
                    bad("Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".")
                })?
            }
        };
        let pointer = pointer
            .as_str()
            .ok_or_else(|| bad("JSON pointer must be a string."))?;
        let path = decode_pointer(pointer)?;
        validate_depth(op, &path)?;
        let value = if op == Op::Remove {
            None
        } else {
            Some(raw.get("value").cloned().ok_or_else(|| {
                bad(format!(
                    "Operation \"{}\" requires a member named \"value\".",
                    op.as_str()
                ))
            })?)
        };
        let change = Change {
            op,
            path,
            value,
            media,
        };
        validate_change(&change, opts)?;
        changes.push(change);
    }
    Ok(changes)
}

/// Glance's limited JSON-pointer syntax, decoded into tokens.
fn decode_pointer(pointer: &str) -> Result<Vec<String>, Error> {
    if !pointer.starts_with('/') {
        return Err(bad(format!(
            "Pointer `{pointer}` does not start with \"/\"."
        )));
    }
    let rest = &pointer[1..];
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' {
            let mut look = chars.clone();
            while look.peek().is_some_and(|c| c.is_whitespace()) {
                look.next();
            }
            if look.peek() == Some(&'/') {
                return Err(bad(format!("Pointer `{pointer}` contains adjacent \"/\".")));
            }
        }
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(bad(format!("Pointer `{pointer}` end with \"/\".")));
    }
    if rest.trim() == "/" {
        return Err(bad(format!(
            "Pointer `{pointer}` does not contains valid token."
        )));
    }
    let bytes = pointer.as_bytes();
    let bad_escape = bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'~' && !matches!(bytes.get(i + 1), Some(b'0') | Some(b'1')));
    if bad_escape {
        return Err(bad(format!(
            "Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    Ok(pointer
        .trim_start_matches('/')
        .split('/')
        .map(|part| part.replace("~1", "/").replace("~0", "~").trim().to_owned())
        .collect())
}

fn validate_depth(op: Op, path: &[String]) -> Result<(), Error> {
    let allowed = match (path[0].as_str(), op) {
        ("locations", Op::Add | Op::Remove) => 2,
        _ => 1,
    };
    if path.len() != allowed {
        return Err(bad(format!(
            "Invalid JSON pointer for this resource: '/{}'",
            path.join("/")
        )));
    }
    Ok(())
}

fn validate_change(change: &Change, opts: &ImageOptions) -> Result<(), Error> {
    let root = change.root();
    if property::READ_ONLY.contains(&root) {
        return Err(Error::ReadOnly(root.to_owned()));
    }
    if property::is_reserved(root) {
        return Err(Error::Reserved(root.to_owned()));
    }
    if !property::is_base(root) {
        property::validate_key(root)?;
    }
    let Some(value) = &change.value else {
        return Ok(());
    };
    if change.path.len() == 1 {
        property::validate_value(root, value, opts)
    } else {
        // `/locations/N`: the element must be a valid member of the array.
        property::validate_value(root, &Value::Array(vec![value.clone()]), opts)
    }
}

/// What a `PATCH` of `/locations` may do: Glance allows it only when `show_multiple_locations`
/// shows them (`visible`); positions count in the order shown (`stores`' weights).
#[derive(Debug, Clone, Copy)]
pub struct LocationRules<'a> {
    /// `show_multiple_locations`.
    pub visible: bool,
    /// The stores, for the order locations are shown in.
    pub stores: &'a shared::config::StoreSet,
}

/// A `PATCH` of `/locations` (Glance's `_do_add_locations`, `_do_replace_locations`,
/// `_do_remove_locations`): `remove` is done here; `add` and `replace`, which need the new
/// location's data looked at, are refused.
fn patch_locations(
    image: &mut Image,
    change: &Change,
    rules: LocationRules<'_>,
) -> Result<(), Error> {
    let verb = match change.op {
        Op::Add => "add",
        Op::Replace => "update",
        Op::Remove => "remove",
    };
    if !rules.visible {
        return Err(Error::Forbidden(format!(
            "It's not allowed to {verb} locations if locations are invisible."
        )));
    }
    match change.op {
        Op::Remove => {
            let pos = change.path.get(1).map(String::as_str).unwrap_or("");
            image.remove_location(pos, rules.stores)
        }
        Op::Add | Op::Replace => Err(Error::Forbidden(
            "Adding or replacing image locations is not supported here yet.".into(),
        )),
    }
}

/// Applies validated changes in order (`/locations` as `locations` allows). On error the
/// image may be half-changed; callers apply to a copy and discard it.
pub fn apply(
    image: &mut Image,
    changes: &[Change],
    locations: LocationRules<'_>,
) -> Result<(), Error> {
    for change in changes {
        let root = change.root();
        if root == "locations" {
            patch_locations(image, change, locations)?;
            continue;
        }
        let core = property::WRITABLE.contains(&root);
        match change.op {
            Op::Replace => {
                let Some(value) = change.value.as_ref() else {
                    return Err(bad(
                        "Operation \"replace\" requires a member named \"value\".",
                    ));
                };
                if core {
                    set_core(image, root, value)?;
                } else if image.properties.contains_key(root) {
                    image
                        .properties
                        .insert(root.to_owned(), string_value(value));
                } else {
                    return Err(Error::Conflict(format!("Property {root} does not exist.")));
                }
            }
            Op::Add => {
                let Some(value) = change.value.as_ref() else {
                    return Err(bad("Operation \"add\" requires a member named \"value\"."));
                };
                if change.media == PatchMedia::V20 && (core || image.properties.contains_key(root))
                {
                    return Err(Error::Conflict(format!("Property {root} already present.")));
                }
                if core {
                    set_core(image, root, value)?;
                } else {
                    image
                        .properties
                        .insert(root.to_owned(), string_value(value));
                }
            }
            Op::Remove => {
                if core {
                    return Err(Error::Forbidden(format!(
                        "Property {root} may not be removed."
                    )));
                } else if image.properties.remove(root).is_none() {
                    return Err(Error::Conflict(format!("Property {root} does not exist.")));
                }
            }
        }
    }
    property::check_quotas(image.properties.len(), image.tags.len())
}

fn string_value(value: &Value) -> String {
    value.as_str().map(str::to_owned).unwrap_or_default()
}

fn set_core(image: &mut Image, key: &str, value: &Value) -> Result<(), Error> {
    let opt_string = || value.as_str().map(str::to_owned);
    match key {
        "name" => image.name = opt_string(),
        "owner" => image.owner = opt_string(),
        "visibility" => {
            image.visibility = value
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("Invalid visibility"))?;
        }
        "protected" => image.protected = value.as_bool().unwrap_or(image.protected),
        "os_hidden" => image.os_hidden = value.as_bool().unwrap_or(image.os_hidden),
        "min_disk" => image.min_disk = non_negative(key, value)?,
        "min_ram" => image.min_ram = non_negative(key, value)?,
        "disk_format" | "container_format" => {
            if !matches!(image.status, ImageStatus::Queued | ImageStatus::Importing) {
                return Err(Error::Forbidden(format!(
                    "Attribute {key} can be only replaced for a queued image."
                )));
            }
            if key == "disk_format" {
                image.disk_format = opt_string();
            } else {
                image.container_format = opt_string();
            }
        }
        "tags" => {
            image.tags = value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
        }
        _ => return Err(bad(format!("Property {key} cannot be set."))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::sample;
    use serde_json::json;

    fn run(media: PatchMedia, body: Value, image: &mut Image) -> Result<(), Error> {
        let changes = parse(&body, media, &ImageOptions::default())?;
        let stores = shared::config::Config::default().stores();
        let hidden = LocationRules {
            visible: false,
            stores: &stores,
        };
        apply(image, &changes, hidden)
    }

    #[test]
    fn locations_are_patched_only_when_shown_and_only_removed() {
        use crate::domain::location::tests::loc;
        let stores = shared::config::Config::default().stores();
        let mut img = sample();
        img.status = shared::image::ImageStatus::Active;
        img.locations = vec![loc("file", 0), loc("file", 1)];
        let patch = |img: &mut Image, body: Value, visible: bool| {
            let changes = parse(&body, PatchMedia::V21, &ImageOptions::default())?;
            let stores = &stores;
            apply(img, &changes, LocationRules { visible, stores })
        };
        let remove = json!([{"op": "remove", "path": "/locations/0"}]);
        let add = json!([{"op": "add", "path": "/locations/-", "value": {"url": "http://x/y", "metadata": {}}}]);
        let replace = json!([{"op": "replace", "path": "/locations", "value": []}]);
        for (body, verb) in [(&remove, "remove"), (&add, "add"), (&replace, "update")] {
            match patch(&mut img, body.clone(), false) {
                Err(Error::Forbidden(m)) => assert_eq!(
                    m,
                    format!("It's not allowed to {verb} locations if locations are invisible.")
                ),
                other => panic!("{verb}: {other:?}"),
            }
        }
        assert!(matches!(
            patch(&mut img, add, true),
            Err(Error::Forbidden(_))
        ));
        patch(&mut img, remove.clone(), true).unwrap();
        assert_eq!(img.active_locations().count(), 1);
        assert!(matches!(
            patch(&mut img, remove, true),
            Err(Error::Forbidden(_))
        ));
    }

    /// The outcome class of a patch: "ok" or the HTTP status the error maps to.
    fn outcome(r: Result<(), Error>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(Error::Invalid(_)) => "400",
            Err(Error::ReadOnly(_) | Error::Reserved(_) | Error::Forbidden(_)) => "403",
            Err(Error::Conflict(_)) => "409",
            Err(Error::LimitExceeded(_)) => "413",
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn media_types() {
        assert_eq!(
            PatchMedia::from_content_type(PatchMedia::V21_TYPE),
            Some(PatchMedia::V21)
        );
        assert_eq!(
            PatchMedia::from_content_type(
                "application/openstack-images-v2.0-json-patch; charset=UTF-8"
            ),
            Some(PatchMedia::V20)
        );
        assert_eq!(
            PatchMedia::from_content_type("application/json-patch+json"),
            None
        );
        assert_eq!(PatchMedia::from_content_type("application/json"), None);
    }

    #[test]
    fn v21_table() {
        use PatchMedia::V21;
        let table: Vec<(Value, &str)> = vec![
            (
                json!([{"op": "replace", "path": "/name", "value": "x"}]),
                "ok",
            ),
            (json!([{"op": "add", "path": "/name", "value": "x"}]), "ok"),
            (
                json!([{"op": "replace", "path": "/name", "value": null}]),
                "ok",
            ),
            (json!([{"op": "remove", "path": "/name"}]), "403"),
            (
                json!([{"op": "add", "path": "/os_distro", "value": "cirros"}]),
                "ok",
            ),
            (
                json!([{"op": "replace", "path": "/missing", "value": "x"}]),
                "409",
            ),
            (json!([{"op": "remove", "path": "/missing"}]), "409"),
            (
                json!([{"op": "add", "path": "/os_distro", "value": 5}]),
                "400",
            ),
            (
                json!([{"op": "move", "path": "/name", "from": "/x"}]),
                "400",
            ),
            (
                json!([{"op": "test", "path": "/name", "value": "x"}]),
                "400",
            ),
            (json!([{"path": "/name", "value": "x"}]), "400"),
            (json!([{"op": "replace", "value": "x"}]), "400"),
            (json!([{"op": "replace", "path": "/name"}]), "400"),
            (
                json!([{"op": "replace", "path": "name", "value": "x"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/a//b", "value": "x"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/name/", "value": "x"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/na~2me", "value": "x"}]),
                "400",
            ),
            (
                json!([{"op": "add", "path": "/tags/-", "value": "x"}]),
                "400",
            ),
            (
                json!({"op": "replace", "path": "/name", "value": "x"}),
                "400",
            ),
            (json!(["replace"]), "400"),
            (
                json!([{"op": "replace", "path": "/status", "value": "active"}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/id", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/size", "value": 1}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/checksum", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/os_hash_value", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/created_at", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/self", "value": "x"}]),
                "403",
            ),
            (json!([{"op": "remove", "path": "/status"}]), "403"),
            (
                json!([{"op": "add", "path": "/location", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "add", "path": "/deleted_at", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "add", "path": "/os_glance_import_task", "value": "x"}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/locations", "value": []}]),
                "403",
            ),
            (
                json!([{"op": "add", "path": "/locations/-", "value": {"url": "file:///x", "metadata": {}}}]),
                "403",
            ),
            (
                json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
                "ok",
            ),
            (
                json!([{"op": "replace", "path": "/visibility", "value": "everyone"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/protected", "value": "true"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/min_ram", "value": -1}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/min_ram", "value": 128}]),
                "ok",
            ),
            (
                json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
                "ok",
            ),
            (
                json!([{"op": "replace", "path": "/disk_format", "value": "floppy"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/tags", "value": ["a", "b"]}]),
                "ok",
            ),
            (
                json!([{"op": "replace", "path": "/tags", "value": "a"}]),
                "400",
            ),
            (json!([{"op": "remove", "path": "/tags"}]), "403"),
            (json!([]), "ok"),
        ];
        for (body, want) in table {
            let mut img = sample();
            assert_eq!(outcome(run(V21, body.clone(), &mut img)), want, "{body}");
        }
    }

    #[test]
    fn v20_table() {
        use PatchMedia::V20;
        let table: Vec<(Value, &str)> = vec![
            (json!([{"replace": "/name", "value": "x"}]), "ok"),
            (json!([{"add": "/os_distro", "value": "x"}]), "ok"),
            (json!([{"add": "/name", "value": "x"}]), "409"),
            (json!([{"remove": "/missing"}]), "409"),
            (
                json!([{"add": "/name", "replace": "/name", "value": "x"}]),
                "400",
            ),
            (
                json!([{"op": "replace", "path": "/name", "value": "x"}]),
                "400",
            ),
            (json!([{"replace": "/status", "value": "x"}]), "403"),
            (json!([{"add": "/os_glance_x", "value": "x"}]), "403"),
        ];
        for (body, want) in table {
            let mut img = sample();
            assert_eq!(outcome(run(V20, body.clone(), &mut img)), want, "{body}");
        }
        // add of an existing custom property: 409 in v2.0, replace in v2.1
        let mut img = sample();
        img.properties.insert("os_distro".into(), "a".into());
        assert_eq!(
            outcome(run(
                V20,
                json!([{"add": "/os_distro", "value": "b"}]),
                &mut img
            )),
            "409"
        );
        assert_eq!(
            outcome(run(
                PatchMedia::V21,
                json!([{"op": "add", "path": "/os_distro", "value": "b"}]),
                &mut img
            )),
            "ok"
        );
        assert_eq!(img.properties["os_distro"], "b");
    }

    #[test]
    fn applies_in_order() {
        let mut img = sample();
        let body = json!([
            {"op": "add", "path": "/k", "value": "1"},
            {"op": "replace", "path": "/k", "value": "2"},
            {"op": "add", "path": "/gone", "value": "x"},
            {"op": "remove", "path": "/gone"},
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "replace", "path": "/tags", "value": ["t", "t"]},
            {"op": "replace", "path": "/a~1b~0c", "value": "x"}
        ]);
        // the last change replaces a missing property: everything before it applied, then 409
        assert_eq!(outcome(run(PatchMedia::V21, body, &mut img)), "409");
        assert_eq!(img.properties.get("k").map(String::as_str), Some("2"));
        assert!(!img.properties.contains_key("gone"));
        assert_eq!(img.name.as_deref(), Some("renamed"));
        assert_eq!(img.tags.len(), 1);
        let changes = parse(
            &json!([{"op": "add", "path": "/a~1b~0c", "value": "x"}]),
            PatchMedia::V21,
            &ImageOptions::default(),
        )
        .unwrap();
        assert_eq!(changes[0].root(), "a/b~c");
    }

    #[test]
    fn formats_only_while_queued_or_importing() {
        for (status, want) in [
            (ImageStatus::Queued, "ok"),
            (ImageStatus::Importing, "ok"),
            (ImageStatus::Saving, "403"),
            (ImageStatus::Active, "403"),
            (ImageStatus::Deactivated, "403"),
        ] {
            let mut img = sample();
            img.status = status;
            let body = json!([{"op": "replace", "path": "/container_format", "value": "bare"}]);
            assert_eq!(
                outcome(run(PatchMedia::V21, body, &mut img)),
                want,
                "{status}"
            );
        }
    }

    #[test]
    fn property_quota() {
        let mut img = sample();
        for i in 0..property::MAX_PROPERTIES {
            img.properties.insert(format!("p{i}"), "v".into());
        }
        let body = json!([{"op": "add", "path": "/one_more", "value": "x"}]);
        assert_eq!(outcome(run(PatchMedia::V21, body, &mut img)), "413");
    }
}
