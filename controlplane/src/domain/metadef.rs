//! The metadata definitions catalog (Glance's "metadefs", GLANCE-API.md §1.10): namespaces
//! and what they hold — objects, properties, tags and resource type associations — with
//! Glance's rules for the bodies that create and change them, and their JSON.
//!
//! - [`Namespace`], [`MetadefObject`], [`Property`], [`Tag`], [`ResourceType`] and
//!   [`Association`] are the entities every layer converts to and from; the API names all of
//!   them by name (a namespace's `id` never leaves the database).
//! - The `parse_*` functions check a request body the way Glance's deserializers do, in
//!   their order: read-only keys first (403), then the JSON schema (400: keys, types,
//!   lengths — [`NAME_MAX`], [`DESCRIPTION_MAX`], [`OWNER_MAX`] — enums), then what Glance's
//!   WSME models refuse (400 here; Glance answers 500). Property definitions are
//!   [`property::PropertyDef`]s.
//! - [`check_4byte`] is Glance's `no_4byte_params` (its MySQL columns were 3-byte UTF-8): the
//!   database layer of Glance refuses characters beyond the BMP in what it writes.
//! - Rendering: `*_json` functions give Glance's shapes (absent rather than `null` when unset,
//!   timestamps as `api::view::isotime` writes them, `self`/`schema` links);
//!   [`NamespaceDetail::to_json`] applies a resource type's `prefix` (`?resource_type=`).
//!
//! Visibility ([`Namespace::is_visible`]) is Glance's `_is_namespace_visible`; policy is
//! checked by the API, not here.

pub mod property;

pub use property::{PropertyDef, Where};

use super::Error;
use chrono::{DateTime, Utc};
use property::{At, additional};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Longest namespace, display name, object, property, tag, resource type name, `prefix` and
/// `properties_target` (Glance's schemas and columns: 80).
pub const NAME_MAX: usize = 80;
/// Longest namespace description (Glance's namespace schema).
pub const DESCRIPTION_MAX: usize = 500;
/// Longest namespace owner.
pub const OWNER_MAX: usize = 255;

/// The schema link of a namespace.
pub const NAMESPACE_SCHEMA: &str = "/v2/schemas/metadefs/namespace";
/// The schema link of the namespace list.
pub const NAMESPACES_SCHEMA: &str = "/v2/schemas/metadefs/namespaces";
/// The schema link of an object.
pub const OBJECT_SCHEMA: &str = "/v2/schemas/metadefs/object";
/// The schema link of the object list (sic: Glance writes it without the leading slash).
pub const OBJECTS_SCHEMA: &str = "v2/schemas/metadefs/objects";

/// Who may see a namespace besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceVisibility {
    /// Everyone.
    Public,
    /// The owner project (and admins).
    Private,
}

impl NamespaceVisibility {
    /// `public` or `private`.
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceVisibility::Public => "public",
            NamespaceVisibility::Private => "private",
        }
    }

    /// The image visibility of the same name, what policy targets carry.
    pub fn for_policy(self) -> shared::image::Visibility {
        match self {
            NamespaceVisibility::Public => shared::image::Visibility::Public,
            NamespaceVisibility::Private => shared::image::Visibility::Private,
        }
    }
}

impl std::str::FromStr for NamespaceVisibility {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "public" => Ok(NamespaceVisibility::Public),
            "private" => Ok(NamespaceVisibility::Private),
            _ => Err(()),
        }
    }
}

/// A namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// Database id (never shown).
    pub id: i64,
    /// The unique name.
    pub namespace: String,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `visibility`.
    pub visibility: NamespaceVisibility,
    /// A protected namespace (and its content) cannot be deleted.
    pub protected: bool,
    /// The owning project.
    pub owner: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Namespace {
    /// Glance's `_is_namespace_visible`: admins, ownerless and public namespaces, the owner.
    pub fn is_visible(&self, is_admin: bool, project: Option<&str>) -> bool {
        is_admin
            || self.owner.is_none()
            || self.visibility == NamespaceVisibility::Public
            || (project.is_some() && project == self.owner.as_deref())
    }
}

/// The fields a namespace body sets (create or update).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceFields {
    /// `namespace` (required).
    pub namespace: String,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `visibility`, when given.
    pub visibility: Option<NamespaceVisibility>,
    /// `protected`, when given.
    pub protected: Option<bool>,
    /// `owner`, when given.
    pub owner: Option<String>,
}

/// What a namespace's row becomes: the fields with Glance's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceValues {
    /// `namespace`.
    pub namespace: String,
    /// `display_name`.
    pub display_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `visibility` (default `private`).
    pub visibility: NamespaceVisibility,
    /// `protected` (default false).
    pub protected: bool,
    /// `owner` (default: the caller's project).
    pub owner: Option<String>,
}

impl NamespaceFields {
    /// The values of a new namespace: the owner defaults to the caller's project when the
    /// body names none.
    pub fn for_create(&self, caller_project: Option<&str>) -> NamespaceValues {
        NamespaceValues {
            namespace: self.namespace.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            visibility: self.visibility.unwrap_or(NamespaceVisibility::Private),
            protected: self.protected.unwrap_or(false),
            owner: match &self.owner {
                Some(o) => Some(o.clone()),
                None => caller_project.map(str::to_owned),
            },
        }
    }

    /// The values an update writes (Glance's `update`: what the body leaves out is cleared,
    /// or back to its default — `private`, unprotected, the caller's project, which an empty
    /// owner means too).
    pub fn for_update(&self, caller_project: Option<&str>) -> NamespaceValues {
        let mut v = self.for_create(caller_project);
        if v.owner.as_deref() == Some("") {
            v.owner = caller_project.map(str::to_owned);
        }
        v
    }
}

/// A `POST /v2/metadefs/namespaces` body: the namespace and what it is created with. Each
/// list is `Some` when the body has it (even empty), as Glance echoes exactly those.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewNamespace {
    /// The namespace's own fields.
    pub fields: NamespaceFields,
    /// `properties`.
    pub properties: Option<BTreeMap<String, PropertyDef>>,
    /// `objects`.
    pub objects: Option<Vec<ObjectFields>>,
    /// `tags` (names).
    pub tags: Option<Vec<String>>,
    /// `resource_type_associations`.
    pub associations: Option<Vec<AssociationFields>>,
}

/// What an object body sets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectFields {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `required` (property names), when given.
    pub required: Option<Vec<String>>,
    /// `properties`, when given.
    pub properties: Option<BTreeMap<String, PropertyDef>>,
}

/// A metadef object as shown: the stored one has `required` and `properties` always (empty
/// when unset); the answer to a create or update shows what the body gave.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadefObject {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `required`.
    pub required: Option<Vec<String>>,
    /// `properties`.
    pub properties: Option<BTreeMap<String, PropertyDef>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl MetadefObject {
    /// The object an accepted body makes (what Glance answers a create or update with).
    pub fn from_fields(
        f: &ObjectFields,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    ) -> MetadefObject {
        MetadefObject {
            name: f.name.clone(),
            description: f.description.clone(),
            required: f.required.clone(),
            properties: f.properties.clone(),
            created_at,
            updated_at,
        }
    }
}

/// Glance's stored form of `required`: the names joined with commas (`None` when empty).
pub fn join_required(required: Option<&[String]>) -> Option<String> {
    required.filter(|r| !r.is_empty()).map(|r| r.join(","))
}

/// `required` read back (split on commas, as Glance does).
pub fn split_required(stored: Option<&str>) -> Vec<String> {
    match stored {
        Some(s) if !s.is_empty() => s.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A namespace property.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// `name`.
    pub name: String,
    /// Its definition (as stored: with a `name` key when the body that made it had one).
    pub def: PropertyDef,
}

/// A tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// `name`.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A resource type (global).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// `name` (`OS::Glance::Image`, …).
    pub name: String,
    /// Seeded system types are protected.
    pub protected: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change (none for the seeded ones).
    pub updated_at: Option<DateTime<Utc>>,
}

/// What a resource type association body sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssociationFields {
    /// The resource type's name (created when unknown).
    pub name: String,
    /// The prefix property names take for this resource type.
    pub prefix: Option<String>,
    /// Which of the resource's key/value sets the properties go to.
    pub properties_target: Option<String>,
}

/// A namespace's association with a resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// The resource type's name.
    pub name: String,
    /// `prefix`.
    pub prefix: Option<String>,
    /// `properties_target`.
    pub properties_target: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

// === parsing ===

fn as_object<'a>(body: &'a Value, at: &At<'_>) -> Result<&'a Map<String, Value>, Error> {
    body.as_object().ok_or_else(|| {
        at.fail(
            "type",
            format!("{} is not of type 'object'", property::py_repr(body)),
        )
    })
}

/// Glance's `_check_allowed`: these keys may never be sent (403).
fn read_only(body: &Map<String, Value>, keys: &[&str]) -> Result<(), Error> {
    match keys.iter().find(|k| body.contains_key(**k)) {
        Some(k) => Err(Error::ReadOnly((*k).to_owned())),
        None => Ok(()),
    }
}

/// The schema's `additionalProperties: false`.
fn only(body: &Map<String, Value>, allowed: &[&str], at: &At<'_>) -> Result<(), Error> {
    let unexpected: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(at.fail("additionalProperties", additional(&unexpected)))
    }
}

fn required(body: &Map<String, Value>, key: &str, at: &At<'_>) -> Result<(), Error> {
    if body.contains_key(key) {
        Ok(())
    } else {
        Err(at.fail("required", format!("'{key}' is a required property")))
    }
}

fn opt_string(
    body: &Map<String, Value>,
    key: &str,
    max: Option<usize>,
    at: &At<'_>,
) -> Result<Option<String>, Error> {
    body.get(key)
        .map(|v| at.key(key).string(v, max))
        .transpose()
}

/// The namespace schema's keys.
const NAMESPACE_KEYS: [&str; 14] = [
    "namespace",
    "display_name",
    "description",
    "visibility",
    "protected",
    "owner",
    "created_at",
    "updated_at",
    "schema",
    "self",
    "resource_type_associations",
    "properties",
    "objects",
    "tags",
];

fn namespace_fields(body: &Map<String, Value>, at: &At<'_>) -> Result<NamespaceFields, Error> {
    read_only(body, &["self", "schema", "created_at", "updated_at"])?;
    only(body, &NAMESPACE_KEYS, at)?;
    required(body, "namespace", at)?;
    let visibility = match body.get("visibility") {
        None => None,
        Some(v) => {
            let here = at.key("visibility");
            let s = here.string(v, None)?;
            Some(s.parse().map_err(|()| {
                here.fail(
                    "enum",
                    format!(
                        "{} is not one of ['public', 'private']",
                        property::py_repr(v)
                    ),
                )
            })?)
        }
    };
    Ok(NamespaceFields {
        namespace: opt_string(body, "namespace", Some(NAME_MAX), at)?.unwrap_or_default(),
        display_name: opt_string(body, "display_name", Some(NAME_MAX), at)?,
        description: opt_string(body, "description", Some(DESCRIPTION_MAX), at)?,
        visibility,
        protected: body
            .get("protected")
            .map(|v| at.key("protected").boolean(v))
            .transpose()?,
        owner: opt_string(body, "owner", Some(OWNER_MAX), at)?,
    })
}

/// A map of property definitions (`properties` of a namespace or object body).
fn property_map(
    v: &Value,
    place: Where,
    at: &At<'_>,
    field: &str,
) -> Result<BTreeMap<String, PropertyDef>, Error> {
    let defs = as_object(v, at)?;
    let mut out = BTreeMap::new();
    for (name, def) in defs {
        let here = At::nested(
            at.schema_name(),
            format!("{}['additionalProperties']", at.path()),
            format!("{field}.{name}"),
        );
        let parsed = PropertyDef::parse(def, Where::Nested, &here)?;
        if let Where::Standalone { .. } = place {
            // Glance validates each property of a new object against the property schema too
            PropertyDef::parse(
                def,
                Where::Standalone {
                    require_name: false,
                },
                &At::top("property"),
            )?;
        }
        // the column is 80 characters; Glance's schema does not check the key
        if name.chars().count() > NAME_MAX {
            return Err(Error::Invalid(format!(
                "Property name {} is longer than {NAME_MAX} characters.",
                property::py_repr(&Value::String(name.clone()))
            )));
        }
        out.insert(name.clone(), parsed);
    }
    Ok(out)
}

/// An array of objects each checked by `item`.
fn array_of<T>(
    v: &Value,
    at: &At<'_>,
    mut item: impl FnMut(&Map<String, Value>, &At<'_>) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let items = at.array(v)?;
    let item_at = At::nested(
        at.schema_name(),
        format!("{}['items']", at.path()),
        at.field_name().to_owned(),
    );
    items
        .iter()
        .map(|i| item(as_object(i, &item_at)?, &item_at))
        .collect()
}

/// Keys a model accepts; anything else is WSME's "Unknown attribute" (400 here).
fn model_only(body: &Map<String, Value>, keys: &[&str], at: &At<'_>) -> Result<(), Error> {
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !keys.contains(k))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(at.unknown(&unknown))
    }
}

fn mandatory<'v>(body: &'v Map<String, Value>, key: &str, at: &At<'_>) -> Result<&'v Value, Error> {
    body.get(key).ok_or_else(|| at.missing(key))
}

/// Checks a `POST /v2/metadefs/namespaces` body.
pub fn parse_new_namespace(body: &Value) -> Result<NewNamespace, Error> {
    let at = At::top("namespace");
    let body = as_object(body, &at)?;
    let fields = namespace_fields(body, &at)?;
    let associations = body
        .get("resource_type_associations")
        .map(|v| {
            array_of(v, &at.key("resource_type_associations"), |m, at| {
                for key in ["name", "prefix", "properties_target"] {
                    if let Some(v) = m.get(key) {
                        at.key(key).string(v, None)?;
                    }
                }
                model_only(
                    m,
                    &[
                        "name",
                        "prefix",
                        "properties_target",
                        "created_at",
                        "updated_at",
                    ],
                    at,
                )?;
                mandatory(m, "name", at)?;
                association_values(m, at)
            })
        })
        .transpose()?;
    let properties = body
        .get("properties")
        .map(|v| property_map(v, Where::Nested, &at.key("properties"), "properties"))
        .transpose()?;
    let objects = body
        .get("objects")
        .map(|v| {
            array_of(v, &at.key("objects"), |m, at| {
                if let Some(v) = m.get("name") {
                    at.key("name").string(v, None)?;
                }
                if let Some(v) = m.get("description") {
                    at.key("description").string(v, None)?;
                }
                let required = m
                    .get("required")
                    .map(|v| at.key("required").unique_string_array(v, 0))
                    .transpose()?;
                let properties = m
                    .get("properties")
                    .map(|v| {
                        property_map(
                            v,
                            Where::Nested,
                            &at.key("properties"),
                            "objects.properties",
                        )
                    })
                    .transpose()?;
                model_only(
                    m,
                    &[
                        "name",
                        "required",
                        "description",
                        "properties",
                        "created_at",
                        "updated_at",
                        "self",
                        "schema",
                    ],
                    at,
                )?;
                let name = mandatory(m, "name", at)?;
                let name = at.key("name").string(name, None)?;
                check_name_length("object", &name)?;
                Ok(ObjectFields {
                    name,
                    description: opt_string(m, "description", None, at)?,
                    required,
                    properties,
                })
            })
        })
        .transpose()?;
    let tags = body
        .get("tags")
        .map(|v| {
            array_of(v, &at.key("tags"), |m, at| {
                if let Some(v) = m.get("name") {
                    at.key("name").string(v, None)?;
                }
                model_only(m, &["name", "created_at", "updated_at"], at)?;
                let name = at.key("name").string(mandatory(m, "name", at)?, None)?;
                check_name_length("tag", &name)?;
                Ok(name)
            })
        })
        .transpose()?;
    Ok(NewNamespace {
        fields,
        properties,
        objects,
        tags,
        associations,
    })
}

/// The first name that comes again in `names` (the content of a new namespace, or a list of
/// tags, can only clash with itself: the API names what clashed).
pub fn first_repeated<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

/// Checks a `PUT /v2/metadefs/namespaces/{ns}` body: the same checks as a create (content
/// included: clients send back what a show gave them), but only the namespace's own fields
/// are written, as Glance does.
pub fn parse_namespace_update(body: &Value) -> Result<NamespaceFields, Error> {
    parse_new_namespace(body).map(|new| new.fields)
}

fn check_name_length(what: &str, name: &str) -> Result<(), Error> {
    if name.chars().count() > NAME_MAX {
        return Err(Error::Invalid(format!(
            "The {what} name {} is longer than {NAME_MAX} characters.",
            property::py_repr(&Value::String(name.to_owned()))
        )));
    }
    Ok(())
}

/// Whether an object body is a create (its properties are checked by the property schema
/// too) or an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectBody {
    /// `POST …/objects`.
    Create,
    /// `PUT …/objects/{name}`.
    Update,
}

/// Checks an object body.
pub fn parse_object(body: &Value, kind: ObjectBody) -> Result<ObjectFields, Error> {
    let at = At::top("object");
    let body = as_object(body, &at)?;
    read_only(body, &["self", "schema", "created_at", "updated_at"])?;
    only(
        body,
        &[
            "name",
            "description",
            "required",
            "properties",
            "schema",
            "self",
            "created_at",
            "updated_at",
        ],
        &at,
    )?;
    required(body, "name", &at)?;
    let name = opt_string(body, "name", Some(NAME_MAX), &at)?.unwrap_or_default();
    let description = opt_string(body, "description", None, &at)?;
    let required = body
        .get("required")
        .map(|v| at.key("required").unique_string_array(v, 0))
        .transpose()?;
    let place = match kind {
        ObjectBody::Create => Where::Standalone {
            require_name: false,
        },
        ObjectBody::Update => Where::Nested,
    };
    let properties = body
        .get("properties")
        .map(|v| property_map(v, place, &at.key("properties"), "properties"))
        .transpose()?;
    Ok(ObjectFields {
        name,
        description,
        required,
        properties,
    })
}

/// Checks a property body (`POST …/properties`, `PUT …/properties/{name}`): its name and
/// definition.
pub fn parse_property(body: &Value) -> Result<(String, PropertyDef), Error> {
    let at = At::top("property");
    let map = as_object(body, &at)?;
    read_only(map, &["created_at", "updated_at"])?;
    let def = PropertyDef::parse(body, Where::Standalone { require_name: true }, &at)?;
    let name = def
        .as_map()
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok((name, def))
}

/// Checks a tag name (from a path or a body): at most [`NAME_MAX`] characters.
pub fn check_tag_name(name: &str) -> Result<(), Error> {
    At::top("tag")
        .key("name")
        .string(&Value::String(name.to_owned()), Some(NAME_MAX))
        .map(drop)
}

/// Checks a `POST …/tags` body (`{"tags": [{"name": …}, …]}`): the names, in order.
pub fn parse_tags(body: &Value) -> Result<Vec<String>, Error> {
    let at = At::top("tags");
    let map = as_object(body, &at)?;
    read_only(map, &["created_at", "updated_at"])?;
    only(map, &["tags"], &at)?;
    required(map, "tags", &at)?;
    let tags_at = at.key("tags");
    let items = tags_at.array(&map["tags"])?;
    let item_at = At::nested(
        "tags",
        format!("{}['items']", tags_at.path()),
        "tags".into(),
    );
    items
        .iter()
        .map(|item| {
            let m = as_object(item, &item_at)?;
            only(m, &["name"], &item_at)?;
            required(m, "name", &item_at)?;
            let name = item_at.key("name").string(&m["name"], None)?;
            check_name_length("tag", &name)?;
            Ok(name)
        })
        .collect()
}

/// Checks a `PUT …/tags/{name}` body: the new name.
pub fn parse_tag_update(body: &Value) -> Result<String, Error> {
    let at = At::top("tag");
    let map = as_object(body, &at)?;
    read_only(map, &["created_at", "updated_at"])?;
    only(map, &["name", "created_at", "updated_at"], &at)?;
    required(map, "name", &at)?;
    Ok(opt_string(map, "name", Some(NAME_MAX), &at)?.unwrap_or_default())
}

fn association_values(m: &Map<String, Value>, at: &At<'_>) -> Result<AssociationFields, Error> {
    let name = opt_string(m, "name", None, at)?.unwrap_or_default();
    let prefix = opt_string(m, "prefix", None, at)?;
    let properties_target = opt_string(m, "properties_target", None, at)?;
    for (what, v) in [
        ("name", Some(&name)),
        ("prefix", prefix.as_ref()),
        ("properties_target", properties_target.as_ref()),
    ] {
        if let Some(v) = v {
            at.key(what)
                .string(&Value::String(v.clone()), Some(NAME_MAX))?;
        }
    }
    Ok(AssociationFields {
        name,
        prefix,
        properties_target,
    })
}

/// Checks a `POST …/resource_types` body.
pub fn parse_association(body: &Value) -> Result<AssociationFields, Error> {
    let at = At::top("resource_type_association");
    let map = as_object(body, &at)?;
    read_only(map, &["created_at", "updated_at"])?;
    only(
        map,
        &[
            "name",
            "prefix",
            "properties_target",
            "created_at",
            "updated_at",
        ],
        &at,
    )?;
    required(map, "name", &at)?;
    association_values(map, &at)
}

// === 4-byte characters ===

fn is_4byte(s: &str) -> bool {
    s.chars().any(|c| c as u32 > 0xFFFF)
}

/// Python's `str.title()` of an ASCII key (`display_name` → `Display_Name`).
fn title(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut prev_cased = false;
    for c in key.chars() {
        out.extend(if prev_cased {
            c.to_lowercase().collect::<Vec<_>>()
        } else {
            c.to_uppercase().collect::<Vec<_>>()
        });
        prev_cased = c.is_alphabetic();
    }
    out
}

/// Glance's `no_4byte_params` over the values written: a dict value is searched, a string
/// key or value beyond the BMP refused (`what` prefixes the message, e.g. `Couldn't create
/// metadata namespace`). Lists are not searched, as in Glance.
pub fn check_4byte(what: &str, values: &Map<String, Value>) -> Result<(), Error> {
    fn walk(m: &Map<String, Value>) -> Option<String> {
        for (k, v) in m {
            if let Value::Object(inner) = v {
                if let Some(e) = walk(inner) {
                    return Some(e);
                }
                continue;
            }
            if is_4byte(k) {
                return Some("Property names can't contain 4 byte unicode.".into());
            }
            if let Value::String(s) = v
                && is_4byte(s)
            {
                return Some(format!(
                    "{} can't contain 4 byte unicode characters.",
                    title(k)
                ));
            }
        }
        None
    }
    match walk(values) {
        Some(e) => Err(Error::Invalid(format!("{what}: {e}"))),
        None => Ok(()),
    }
}

/// What Glance's database layer is given for a namespace (for [`check_4byte`]).
pub fn namespace_db_values(v: &NamespaceValues) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("namespace".into(), json!(v.namespace));
    m.insert("display_name".into(), json!(v.display_name));
    m.insert("description".into(), json!(v.description));
    m.insert("visibility".into(), json!(v.visibility.as_str()));
    m.insert("protected".into(), json!(v.protected));
    m.insert("owner".into(), json!(v.owner));
    m
}

fn defs_value(defs: &BTreeMap<String, PropertyDef>) -> Value {
    Value::Object(
        defs.iter()
            .map(|(k, d)| (k.clone(), Value::Object(d.as_map().clone())))
            .collect(),
    )
}

/// What Glance's database layer is given for an object.
pub fn object_db_values(f: &ObjectFields) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(f.name));
    m.insert(
        "required".into(),
        json!(join_required(f.required.as_deref())),
    );
    m.insert("description".into(), json!(f.description));
    m.insert(
        "json_schema".into(),
        f.properties
            .as_ref()
            .map(defs_value)
            .unwrap_or_else(|| json!({})),
    );
    m
}

/// What Glance's database layer is given for a property.
pub fn property_db_values(name: &str, def: &PropertyDef) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("json_schema".into(), Value::Object(def.as_map().clone()));
    m
}

/// What Glance's database layer is given for a tag.
pub fn tag_db_values(name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m
}

// === rendering ===

/// Glance's `timeutils.isotime`, the format `api::view::isotime` writes.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `/v2/metadefs/namespaces/{name}`.
pub fn namespace_href(name: &str) -> String {
    format!("/v2/metadefs/namespaces/{name}")
}

/// A namespace's own fields, `self` and `schema`.
pub fn namespace_json(ns: &Namespace) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("namespace".into(), json!(ns.namespace));
    if let Some(d) = &ns.display_name {
        m.insert("display_name".into(), json!(d));
    }
    if let Some(d) = &ns.description {
        m.insert("description".into(), json!(d));
    }
    m.insert("visibility".into(), json!(ns.visibility.as_str()));
    m.insert("protected".into(), json!(ns.protected));
    if let Some(o) = &ns.owner {
        m.insert("owner".into(), json!(o));
    }
    m.insert("created_at".into(), json!(iso(ns.created_at)));
    m.insert("updated_at".into(), json!(iso(ns.updated_at)));
    m.insert("self".into(), json!(namespace_href(&ns.namespace)));
    m.insert("schema".into(), json!(NAMESPACE_SCHEMA));
    m
}

/// The answer to a namespace create: the namespace with what the body created, as the body
/// gave it.
pub fn created_namespace_json(ns: &Namespace, new: &NewNamespace) -> Value {
    let mut m = namespace_json(ns);
    if let Some(a) = &new.associations {
        let list: Vec<Value> = a
            .iter()
            .map(|a| {
                let mut o = Map::new();
                o.insert("name".into(), json!(a.name));
                if let Some(p) = &a.prefix {
                    o.insert("prefix".into(), json!(p));
                }
                if let Some(t) = &a.properties_target {
                    o.insert("properties_target".into(), json!(t));
                }
                Value::Object(o)
            })
            .collect();
        m.insert("resource_type_associations".into(), Value::Array(list));
    }
    if let Some(p) = &new.properties {
        m.insert("properties".into(), defs_value(p));
    }
    if let Some(objects) = &new.objects {
        let list: Vec<Value> = objects
            .iter()
            .map(|o| {
                let mut v = Map::new();
                v.insert("name".into(), json!(o.name));
                if let Some(d) = &o.description {
                    v.insert("description".into(), json!(d));
                }
                if let Some(r) = &o.required {
                    v.insert("required".into(), json!(r));
                }
                if let Some(p) = &o.properties {
                    v.insert("properties".into(), defs_value(p));
                }
                Value::Object(v)
            })
            .collect();
        m.insert("objects".into(), Value::Array(list));
    }
    if let Some(tags) = &new.tags {
        let list: Vec<Value> = tags.iter().map(|t| json!({ "name": t })).collect();
        m.insert("tags".into(), Value::Array(list));
    }
    Value::Object(m)
}

/// `/v2/metadefs/namespaces/{ns}/objects/{name}`.
pub fn object_href(namespace: &str, name: &str) -> String {
    format!("/v2/metadefs/namespaces/{namespace}/objects/{name}")
}

/// An object with its `self` and `schema` links.
pub fn object_json(namespace: &str, o: &MetadefObject) -> Value {
    object_json_prefixed(namespace, o, "")
}

fn object_json_prefixed(namespace: &str, o: &MetadefObject, prefix: &str) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(o.name));
    if let Some(d) = &o.description {
        m.insert("description".into(), json!(d));
    }
    if let Some(r) = &o.required {
        let r: Vec<String> = r.iter().map(|n| format!("{prefix}{n}")).collect();
        m.insert("required".into(), json!(r));
    }
    if let Some(p) = &o.properties {
        m.insert("properties".into(), prefixed_defs(p, prefix));
    }
    m.insert("created_at".into(), json!(iso(o.created_at)));
    m.insert("updated_at".into(), json!(iso(o.updated_at)));
    m.insert("self".into(), json!(object_href(namespace, &o.name)));
    m.insert("schema".into(), json!(OBJECT_SCHEMA));
    Value::Object(m)
}

fn prefixed_defs(defs: &BTreeMap<String, PropertyDef>, prefix: &str) -> Value {
    Value::Object(
        defs.iter()
            .map(|(k, d)| (format!("{prefix}{k}"), Value::Object(d.as_map().clone())))
            .collect(),
    )
}

/// `{"objects": […], "schema": …}`.
pub fn objects_json(namespace: &str, objects: &[MetadefObject]) -> Value {
    let list: Vec<Value> = objects.iter().map(|o| object_json(namespace, o)).collect();
    json!({ "objects": list, "schema": OBJECTS_SCHEMA })
}

/// One property (`GET/POST/PUT …/properties[/{name}]`): its definition, named.
pub fn property_json(p: &Property) -> Value {
    Value::Object(p.def.named(&p.name))
}

/// The properties of a namespace by name, each definition as stored.
pub fn properties_map(props: &[Property], prefix: &str) -> Map<String, Value> {
    props
        .iter()
        .map(|p| {
            (
                format!("{prefix}{}", p.name),
                Value::Object(p.def.as_map().clone()),
            )
        })
        .collect()
}

/// `{"properties": {name: definition, …}}`.
pub fn properties_json(props: &[Property]) -> Value {
    json!({ "properties": properties_map(props, "") })
}

/// One tag with its timestamps.
pub fn tag_json(t: &Tag) -> Value {
    json!({
        "name": t.name,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
    })
}

/// `{"tags": [{"name": …}, …]}` (lists show names only, as Glance's).
pub fn tag_names_json<'a>(names: impl IntoIterator<Item = &'a str>) -> Value {
    let list: Vec<Value> = names.into_iter().map(|n| json!({ "name": n })).collect();
    json!({ "tags": list })
}

/// One association.
pub fn association_json(a: &Association) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(a.name));
    if let Some(p) = &a.prefix {
        m.insert("prefix".into(), json!(p));
    }
    if let Some(t) = &a.properties_target {
        m.insert("properties_target".into(), json!(t));
    }
    m.insert("created_at".into(), json!(iso(a.created_at)));
    m.insert("updated_at".into(), json!(iso(a.updated_at)));
    Value::Object(m)
}

/// `{"resource_type_associations": […]}`.
pub fn associations_json(list: &[Association]) -> Value {
    let list: Vec<Value> = list.iter().map(association_json).collect();
    json!({ "resource_type_associations": list })
}

/// `{"resource_types": [{name, created_at, updated_at}, …]}`.
pub fn resource_types_json(list: &[ResourceType]) -> Value {
    let list: Vec<Value> = list
        .iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert("name".into(), json!(r.name));
            m.insert("created_at".into(), json!(iso(r.created_at)));
            if let Some(u) = r.updated_at {
                m.insert("updated_at".into(), json!(iso(u)));
            }
            Value::Object(m)
        })
        .collect();
    json!({ "resource_types": list })
}

/// A namespace in a list: its fields and its resource type associations (when any).
pub fn listed_namespace_json(ns: &Namespace, associations: &[Association]) -> Value {
    let mut m = namespace_json(ns);
    if !associations.is_empty() {
        let list: Vec<Value> = associations.iter().map(association_json).collect();
        m.insert("resource_type_associations".into(), Value::Array(list));
    }
    Value::Object(m)
}

/// Everything a namespace show renders.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceDetail {
    /// The namespace.
    pub namespace: Namespace,
    /// Its objects.
    pub objects: Vec<MetadefObject>,
    /// Its properties.
    pub properties: Vec<Property>,
    /// Its tags, newest first.
    pub tags: Vec<Tag>,
    /// Its resource type associations.
    pub associations: Vec<Association>,
}

impl NamespaceDetail {
    /// The prefix `resource_type` gives property names here (none unless the namespace is
    /// associated with it and the association has a non-empty prefix).
    pub fn prefix_for(&self, resource_type: Option<&str>) -> &str {
        resource_type
            .filter(|r| !r.is_empty())
            .and_then(|r| self.associations.iter().find(|a| a.name == r))
            .and_then(|a| a.prefix.as_deref())
            .unwrap_or("")
    }

    /// Glance's namespace show: each non-empty part of the namespace, property names (the
    /// namespace's and its objects', and objects' `required`) prefixed for `resource_type`.
    pub fn to_json(&self, resource_type: Option<&str>) -> Value {
        let prefix = self.prefix_for(resource_type);
        let name = &self.namespace.namespace;
        let mut m = namespace_json(&self.namespace);
        if !self.objects.is_empty() {
            let list: Vec<Value> = self
                .objects
                .iter()
                .map(|o| object_json_prefixed(name, o, prefix))
                .collect();
            m.insert("objects".into(), Value::Array(list));
        }
        if !self.associations.is_empty() {
            let list: Vec<Value> = self.associations.iter().map(association_json).collect();
            m.insert("resource_type_associations".into(), Value::Array(list));
        }
        if !self.properties.is_empty() {
            m.insert(
                "properties".into(),
                Value::Object(properties_map(&self.properties, prefix)),
            );
        }
        if !self.tags.is_empty() {
            let list: Vec<Value> = self
                .tags
                .iter()
                .map(|t| json!({ "name": t.name }))
                .collect();
            m.insert("tags".into(), Value::Array(list));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests;
