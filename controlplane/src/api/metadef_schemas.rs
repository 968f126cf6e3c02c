//! `GET /v2/schemas/metadefs/{name}`: the ten JSON-schema documents of the metadata
//! definitions catalog (namespaces, objects, properties, resource type associations, tags).
//!
//! Each document is what Glance 33 serves at the same path: an item schema is Glance's
//! `Schema.raw()` (`name`, `properties`, `additionalProperties: false`, then `definitions`
//! and `required` when it has them, and no `links`), a collection schema is its
//! `CollectionSchema.raw()` (the items under the collection's name, `first`/`next`/`schema`
//! strings and the `first`/`next`/`describedby` links, with the item's `definitions` moved
//! up to the top level). `properties` is the one dictionary collection: its properties are an
//! object keyed by property name (`additionalProperties` is the item schema) and the items
//! do not require `name`, which is the key. The `required` lists follow the declaration order
//! of the mandatory fields in Glance's models (`["type", "title", "name"]` for a property).
//!
//! Two `stringArray` definitions exist, as in Glance: the one shared by the namespace and
//! object schemas allows an empty array, the property schema's has `minItems: 1`.
//!
//! Start at [`by_name`], which maps the path tail to its document.

use serde_json::{Map, Value, json};

/// The values the `type` of a property (and of its `items`) may take; `null` included.
const PROPERTY_TYPES: [Option<&str>; 7] = [
    Some("array"),
    Some("boolean"),
    Some("integer"),
    Some("number"),
    Some("object"),
    Some("string"),
    None,
];

/// The names [`by_name`] knows, i.e. the path tails under `/v2/schemas/metadefs/`.
pub const NAMES: [&str; 10] = [
    "namespace",
    "namespaces",
    "object",
    "objects",
    "property",
    "properties",
    "resource_type",
    "resource_types",
    "tag",
    "tags",
];

/// The document served at `/v2/schemas/metadefs/{name}`, or `None` for an unknown name.
pub fn by_name(name: &str) -> Option<Value> {
    let doc = match name {
        "namespace" => namespace(),
        "namespaces" => namespaces(),
        "object" => object(),
        "objects" => objects(),
        "property" => property(),
        "properties" => properties(),
        "resource_type" => resource_type(),
        "resource_types" => resource_types(),
        "tag" => tag(),
        "tags" => tags(),
        _ => return None,
    };
    Some(doc)
}

// === building blocks ===

/// The members of a `json!({...})` literal.
fn members(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An item schema (Glance's `Schema.raw()`): closed to other keys; `definitions` and
/// `required` appear only when given.
fn item(
    name: &str,
    properties: Map<String, Value>,
    required: &[&str],
    definitions: Option<Map<String, Value>>,
) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("name".into(), json!(name));
    doc.insert("properties".into(), Value::Object(properties));
    doc.insert("additionalProperties".into(), json!(false));
    if let Some(defs) = definitions {
        doc.insert("definitions".into(), Value::Object(defs));
    }
    if !required.is_empty() {
        doc.insert("required".into(), json!(required));
    }
    doc
}

/// A collection schema around `item` whose members sit under the collection's name in
/// `container` (`{"type": "array", "items": …}` or `{"type": "object",
/// "additionalProperties": …}`). The item's `definitions` move to the top level.
fn collection(name: &str, mut item: Map<String, Value>, container: fn(Value) -> Value) -> Value {
    let definitions = item.remove("definitions");
    let mut doc = members(json!({
        "name": name,
        "properties": {
            name: container(Value::Object(item)),
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    }));
    if let Some(defs) = definitions {
        doc.insert("definitions".into(), defs);
    }
    Value::Object(doc)
}

fn array_of(item: Value) -> Value {
    json!({"type": "array", "items": item})
}

fn object_of(item: Value) -> Value {
    json!({"type": "object", "additionalProperties": item})
}

/// A read-only `date-time` string.
fn timestamp(description: &str) -> Value {
    json!({"type": "string", "readOnly": true, "description": description, "format": "date-time"})
}

/// `positiveInteger`, `positiveIntegerDefault0` and `stringArray`; the last one with
/// `minItems: 1` when `non_empty_string_array`.
fn base_definitions(non_empty_string_array: bool) -> Map<String, Value> {
    let mut string_array =
        json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true});
    if non_empty_string_array {
        string_array["minItems"] = json!(1);
    }
    members(json!({
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {
            "allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]
        },
        "stringArray": string_array
    }))
}

/// The definitions of the namespace and object schemas: the base ones plus `property`, a
/// dictionary of property types keyed by property name.
fn namespace_definitions() -> Map<String, Value> {
    let mut defs = base_definitions(false);
    defs.insert(
        "property".into(),
        json!({
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["title", "type"],
                "properties": property_attributes()
            }
        }),
    );
    defs
}

/// The attributes of one property type: the `property` definition's entries, and the
/// properties of the property schema.
fn property_attributes() -> Map<String, Value> {
    members(json!({
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": PROPERTY_TYPES},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": PROPERTY_TYPES},
                "enum": {"type": "array"}
            }
        },
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": false},
        "additionalItems": {"type": "boolean"}
    }))
}

// === namespaces ===

fn namespace_item() -> Map<String, Value> {
    let read_only_string = json!({"readOnly": true, "type": "string"});
    let properties = members(json!({
        "namespace": {
            "type": "string",
            "description": "The unique namespace text.",
            "maxLength": 80
        },
        "display_name": {
            "type": "string",
            "description": "The user friendly name for the namespace. Used by UI if available.",
            "maxLength": 80
        },
        "description": {
            "type": "string",
            "description": "Provides a user friendly description of the namespace.",
            "maxLength": 500
        },
        "visibility": {
            "type": "string",
            "description": "Scope of namespace accessibility.",
            "enum": ["public", "private"]
        },
        "protected": {
            "type": "boolean",
            "description": "If true, namespace will not be deletable."
        },
        "owner": {
            "type": "string",
            "description": "Owner of the namespace.",
            "maxLength": 255
        },
        "created_at": timestamp("Date and time of namespace creation"),
        "updated_at": timestamp("Date and time of the last namespace modification"),
        "schema": read_only_string,
        "self": read_only_string,
        "resource_type_associations": array_of(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "prefix": {"type": "string"},
                "properties_target": {"type": "string"}
            }
        })),
        "properties": {"$ref": "#/definitions/property"},
        "objects": array_of(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "required": {"$ref": "#/definitions/stringArray"},
                "properties": {"$ref": "#/definitions/property"}
            }
        })),
        "tags": array_of(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}}
        }))
    }));
    item(
        "namespace",
        properties,
        &["namespace"],
        Some(namespace_definitions()),
    )
}

/// `/v2/schemas/metadefs/namespace`: one namespace, with its inline resource type
/// associations, properties, objects and tags (as `POST /v2/metadefs/namespaces` takes it).
pub fn namespace() -> Value {
    Value::Object(namespace_item())
}

/// `/v2/schemas/metadefs/namespaces`: a page of namespaces.
pub fn namespaces() -> Value {
    collection("namespaces", namespace_item(), array_of)
}

// === objects ===

fn object_item() -> Map<String, Value> {
    let read_only_string = json!({"readOnly": true, "type": "string"});
    let properties = members(json!({
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"},
        "schema": read_only_string,
        "self": read_only_string,
        "created_at": timestamp("Date and time of object creation"),
        "updated_at": timestamp("Date and time of the last object modification")
    }));
    item(
        "object",
        properties,
        &["name"],
        Some(namespace_definitions()),
    )
}

/// `/v2/schemas/metadefs/object`: one metadata definition object.
pub fn object() -> Value {
    Value::Object(object_item())
}

/// `/v2/schemas/metadefs/objects`: a page of objects.
pub fn objects() -> Value {
    collection("objects", object_item(), array_of)
}

// === properties ===

fn property_item(required: &[&str]) -> Map<String, Value> {
    item(
        "property",
        property_attributes(),
        required,
        Some(base_definitions(true)),
    )
}

/// `/v2/schemas/metadefs/property`: one property type, named by its `name`.
pub fn property() -> Value {
    Value::Object(property_item(&["type", "title", "name"]))
}

/// `/v2/schemas/metadefs/properties`: a namespace's properties, keyed by property name (so
/// the items don't require `name`).
pub fn properties() -> Value {
    collection("properties", property_item(&["type", "title"]), object_of)
}

// === resource type associations ===

fn resource_type_item() -> Map<String, Value> {
    let properties = members(json!({
        "name": {
            "type": "string",
            "description": "Resource type names should be aligned with Heat resource types \
                            whenever possible: \
                            https://docs.openstack.org/heat/latest/template_guide/openstack.html",
            "maxLength": 80
        },
        "prefix": {
            "type": "string",
            "description": "Specifies the prefix to use for the given resource type. Any \
                            properties in the namespace should be prefixed with this prefix \
                            when being applied to the specified resource type. Must include \
                            prefix separator (e.g. a colon :).",
            "maxLength": 80
        },
        "properties_target": {
            "type": "string",
            "description": "Some resource types allow more than one key / value pair per \
                            instance.  For example, Cinder allows user and image metadata on \
                            volumes. Only the image properties metadata is evaluated by Nova \
                            (scheduling or drivers). This property allows a namespace target \
                            to remove the ambiguity.",
            "maxLength": 80
        },
        "created_at": timestamp("Date and time of resource type association"),
        "updated_at": timestamp("Date and time of the last resource type association modification")
    }));
    item("resource_type_association", properties, &["name"], None)
}

/// `/v2/schemas/metadefs/resource_type`: one resource type association of a namespace
/// (named `resource_type_association`, as in Glance).
pub fn resource_type() -> Value {
    Value::Object(resource_type_item())
}

/// `/v2/schemas/metadefs/resource_types`: a namespace's resource type associations (named
/// `resource_type_associations`, as in Glance).
pub fn resource_types() -> Value {
    collection("resource_type_associations", resource_type_item(), array_of)
}

// === tags ===

fn tag_item() -> Map<String, Value> {
    let properties = members(json!({
        "name": {"type": "string", "maxLength": 80},
        "created_at": timestamp("Date and time of tag creation"),
        "updated_at": timestamp("Date and time of the last tag modification")
    }));
    item("tag", properties, &["name"], None)
}

/// `/v2/schemas/metadefs/tag`: one tag.
pub fn tag() -> Value {
    Value::Object(tag_item())
}

/// `/v2/schemas/metadefs/tags`: a page of tags. A `POST …/tags` body (`{"tags": [{"name":
/// …}]}`) has the same shape.
pub fn tags() -> Value {
    collection("tags", tag_item(), array_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn keys(v: &Value) -> BTreeSet<&str> {
        v.as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
        names.iter().copied().collect()
    }

    fn validator(schema: &Value) -> jsonschema::Validator {
        jsonschema::validator_for(schema).expect("a valid JSON-schema document")
    }

    const PROPERTY_ATTRIBUTES: [&str; 19] = [
        "name",
        "title",
        "description",
        "operators",
        "type",
        "required",
        "minimum",
        "maximum",
        "maxLength",
        "minLength",
        "pattern",
        "enum",
        "readonly",
        "default",
        "items",
        "maxItems",
        "minItems",
        "uniqueItems",
        "additionalItems",
    ];

    /// `(path tail, name, top-level keys, property names, required)` of every document.
    #[allow(clippy::type_complexity)]
    fn table() -> Vec<(
        &'static str,
        &'static str,
        Vec<&'static str>,
        Vec<&'static str>,
        Value,
    )> {
        let item_keys = vec![
            "name",
            "properties",
            "additionalProperties",
            "definitions",
            "required",
        ];
        let plain_item_keys = vec!["name", "properties", "additionalProperties", "required"];
        let collection_keys = vec!["name", "properties", "links", "definitions"];
        let plain_collection_keys = vec!["name", "properties", "links"];
        vec![
            (
                "namespace",
                "namespace",
                item_keys.clone(),
                vec![
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
                ],
                json!(["namespace"]),
            ),
            (
                "namespaces",
                "namespaces",
                collection_keys.clone(),
                vec!["namespaces", "first", "next", "schema"],
                Value::Null,
            ),
            (
                "object",
                "object",
                item_keys.clone(),
                vec![
                    "name",
                    "description",
                    "required",
                    "properties",
                    "schema",
                    "self",
                    "created_at",
                    "updated_at",
                ],
                json!(["name"]),
            ),
            (
                "objects",
                "objects",
                collection_keys.clone(),
                vec!["objects", "first", "next", "schema"],
                Value::Null,
            ),
            (
                "property",
                "property",
                item_keys,
                PROPERTY_ATTRIBUTES.to_vec(),
                json!(["type", "title", "name"]),
            ),
            (
                "properties",
                "properties",
                collection_keys,
                vec!["properties", "first", "next", "schema"],
                Value::Null,
            ),
            (
                "resource_type",
                "resource_type_association",
                plain_item_keys.clone(),
                vec![
                    "name",
                    "prefix",
                    "properties_target",
                    "created_at",
                    "updated_at",
                ],
                json!(["name"]),
            ),
            (
                "resource_types",
                "resource_type_associations",
                plain_collection_keys.clone(),
                vec!["resource_type_associations", "first", "next", "schema"],
                Value::Null,
            ),
            (
                "tag",
                "tag",
                plain_item_keys,
                vec!["name", "created_at", "updated_at"],
                json!(["name"]),
            ),
            (
                "tags",
                "tags",
                plain_collection_keys,
                vec!["tags", "first", "next", "schema"],
                Value::Null,
            ),
        ]
    }

    #[test]
    fn names_top_level_keys_properties_and_required() {
        for (tail, name, top, props, required) in table() {
            let doc = by_name(tail).expect(tail);
            assert_eq!(doc["name"], json!(name), "{tail}");
            assert_eq!(keys(&doc), set(&top), "{tail}: top-level keys");
            assert_eq!(keys(&doc["properties"]), set(&props), "{tail}: properties");
            assert_eq!(doc["required"], required, "{tail}: required");
            validator(&doc);
        }
    }

    #[test]
    fn by_name_covers_exactly_the_ten_documents() {
        let tails: BTreeSet<&str> = table().iter().map(|row| row.0).collect();
        assert_eq!(tails, set(&NAMES));
        assert_eq!(tails.len(), 10);
        for tail in NAMES {
            assert!(by_name(tail).is_some(), "{tail}");
        }
        for unknown in [
            "",
            "image",
            "images",
            "member",
            "resource_type_association",
            "resource_type_associations",
            "Namespace",
            "namespace/",
            "tags ",
        ] {
            assert_eq!(by_name(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn item_schemas_are_closed_and_collections_link_their_pages() {
        for tail in ["namespace", "object", "property", "resource_type", "tag"] {
            let doc = by_name(tail).expect(tail);
            assert_eq!(doc["additionalProperties"], json!(false), "{tail}");
            assert!(doc.get("links").is_none(), "{tail}");
        }
        let links = json!([
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]);
        for (tail, item, member) in [
            ("namespaces", "namespace", "namespaces"),
            ("objects", "object", "objects"),
            (
                "resource_types",
                "resource_type",
                "resource_type_associations",
            ),
            ("tags", "tag", "tags"),
        ] {
            let doc = by_name(tail).expect(tail);
            assert_eq!(doc["links"], links, "{tail}");
            assert!(doc.get("additionalProperties").is_none(), "{tail}");
            for page in ["first", "next", "schema"] {
                assert_eq!(doc["properties"][page], json!({"type": "string"}));
            }
            // The items are the item schema less its definitions, which moved up.
            let mut expected = by_name(item).expect(item);
            let definitions = expected
                .as_object_mut()
                .and_then(|m| m.remove("definitions"));
            assert_eq!(doc.get("definitions"), definitions.as_ref(), "{tail}");
            assert_eq!(
                doc["properties"][member],
                json!({"type": "array", "items": expected}),
                "{tail}"
            );
        }
        let doc = properties();
        assert_eq!(doc["links"], links);
        assert_eq!(doc["properties"]["properties"]["type"], json!("object"));
        let entry = &doc["properties"]["properties"]["additionalProperties"];
        assert_eq!(entry["name"], json!("property"));
        assert_eq!(entry["required"], json!(["type", "title"]));
        assert!(entry.get("definitions").is_none());
        assert_eq!(doc["definitions"], property()["definitions"]);
    }

    #[test]
    fn namespace_details() {
        let doc = namespace();
        let p = &doc["properties"];
        assert_eq!(p["visibility"]["enum"], json!(["public", "private"]));
        assert_eq!(p["namespace"]["maxLength"], json!(80));
        assert_eq!(p["display_name"]["maxLength"], json!(80));
        assert_eq!(p["description"]["maxLength"], json!(500));
        assert_eq!(p["owner"]["maxLength"], json!(255));
        assert_eq!(p["protected"]["type"], json!("boolean"));
        assert_eq!(p["self"], json!({"readOnly": true, "type": "string"}));
        assert_eq!(p["schema"], json!({"readOnly": true, "type": "string"}));
        assert_eq!(
            p["updated_at"],
            json!({
                "type": "string",
                "readOnly": true,
                "description": "Date and time of the last namespace modification",
                "format": "date-time"
            })
        );
        assert_eq!(p["properties"], json!({"$ref": "#/definitions/property"}));
        assert_eq!(
            keys(&p["resource_type_associations"]["items"]["properties"]),
            set(&["name", "prefix", "properties_target"])
        );
        assert_eq!(
            p["objects"]["items"]["properties"]["required"],
            json!({"$ref": "#/definitions/stringArray"})
        );
        assert_eq!(
            p["tags"]["items"],
            json!({"type": "object", "properties": {"name": {"type": "string"}}})
        );

        let defs = &doc["definitions"];
        assert_eq!(
            keys(defs),
            set(&[
                "positiveInteger",
                "positiveIntegerDefault0",
                "stringArray",
                "property"
            ])
        );
        assert_eq!(
            defs["positiveInteger"],
            json!({"type": "integer", "minimum": 0})
        );
        assert_eq!(
            defs["positiveIntegerDefault0"],
            json!({"allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]})
        );
        // No `minItems` here (Glance has it commented out), unlike the property schema's.
        assert_eq!(
            defs["stringArray"],
            json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true})
        );
        let property = &defs["property"];
        assert_eq!(property["type"], json!("object"));
        let entry = &property["additionalProperties"];
        assert_eq!(entry["type"], json!("object"));
        assert_eq!(entry["required"], json!(["title", "type"]));
        assert_eq!(keys(&entry["properties"]), set(&PROPERTY_ATTRIBUTES));
        let types = json!([
            "array", "boolean", "integer", "number", "object", "string", null
        ]);
        assert_eq!(entry["properties"]["type"]["enum"], types);
        assert_eq!(
            entry["properties"]["items"]["properties"]["type"]["enum"],
            types
        );
        assert_eq!(
            entry["properties"]["uniqueItems"],
            json!({"type": "boolean", "default": false})
        );
        assert_eq!(
            entry["properties"]["pattern"],
            json!({"type": "string", "format": "regex"})
        );
        assert_eq!(entry["properties"]["default"], json!({}));
        assert_eq!(
            entry["properties"]["minLength"],
            json!({"$ref": "#/definitions/positiveIntegerDefault0"})
        );
    }

    #[test]
    fn object_and_property_details() {
        let obj = object();
        assert_eq!(obj["definitions"], namespace()["definitions"]);
        assert_eq!(obj["properties"]["name"]["maxLength"], json!(80));
        assert_eq!(
            obj["properties"]["created_at"]["description"],
            json!("Date and time of object creation")
        );

        let prop = property();
        let types = json!([
            "array", "boolean", "integer", "number", "object", "string", null
        ]);
        assert_eq!(prop["properties"]["type"]["enum"], types);
        assert_eq!(
            prop["properties"]["items"],
            json!({
                "type": "object",
                "properties": {"type": {"type": "string", "enum": types}, "enum": {"type": "array"}}
            })
        );
        // The property schema's properties are the namespace `property` definition's entries.
        assert_eq!(
            prop["properties"],
            namespace()["definitions"]["property"]["additionalProperties"]["properties"]
        );
        let defs = &prop["definitions"];
        assert_eq!(
            keys(defs),
            set(&["positiveInteger", "positiveIntegerDefault0", "stringArray"])
        );
        assert_eq!(
            defs["stringArray"],
            json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": true})
        );
    }

    #[test]
    fn resource_type_and_tag_details() {
        let rt = resource_type();
        assert!(rt.get("definitions").is_none());
        for field in ["name", "prefix", "properties_target"] {
            assert_eq!(rt["properties"][field]["maxLength"], json!(80), "{field}");
        }
        assert_eq!(
            rt["properties"]["name"]["description"],
            json!(
                "Resource type names should be aligned with Heat resource types whenever \
                 possible: https://docs.openstack.org/heat/latest/template_guide/openstack.html"
            )
        );
        let target = rt["properties"]["properties_target"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            target.contains("per instance.  For example, Cinder"),
            "{target}"
        );
        assert!(target.ends_with("to remove the ambiguity."), "{target}");

        let t = tag();
        assert!(t.get("definitions").is_none());
        assert_eq!(
            t["properties"]["name"],
            json!({"type": "string", "maxLength": 80})
        );
        assert_eq!(
            t["properties"]["updated_at"]["description"],
            json!("Date and time of the last tag modification")
        );
    }

    #[test]
    fn sample_documents_validate() {
        // Shapes from Glance's API reference samples.
        let ns = validator(&namespace());
        let body = json!({
            "namespace": "FredCo::SomeCategory::Example",
            "display_name": "An Example Namespace",
            "description": "A metadata definitions namespace for example use.",
            "visibility": "public",
            "protected": true,
            "resource_type_associations": [{"name": "OS::Cinder::Volume", "prefix": "hw_", "properties_target": "image"}],
            "properties": {
                "nsprop1": {"title": "My namespace property", "type": "string", "default": "value", "enum": ["value", "other"]}
            },
            "objects": [{
                "name": "object1",
                "required": [],
                "properties": {"prop1": {"title": "One", "type": "array", "items": {"type": "integer"}, "uniqueItems": true}}
            }],
            "tags": [{"name": "tag1"}]
        });
        assert!(ns.is_valid(&body));
        let mut bad = body.clone();
        bad["visibility"] = json!("shared");
        assert!(!ns.is_valid(&bad));
        let mut bad = body.clone();
        bad["properties"]["nsprop1"]
            .as_object_mut()
            .map(|m| m.remove("title"));
        assert!(!ns.is_valid(&bad));
        assert!(!ns.is_valid(&json!({"display_name": "no namespace"})));
        assert!(!ns.is_valid(&json!({"namespace": "n", "unknown": 1})));

        let prop = validator(&property());
        let body =
            json!({"name": "hw_cpu_cores", "title": "Cores", "type": "integer", "minimum": 1});
        assert!(prop.is_valid(&body));
        let mut bad = body.clone();
        bad["type"] = json!("float");
        assert!(!prop.is_valid(&bad));
        assert!(!prop.is_valid(&json!({"title": "Cores", "type": "integer"})));
        assert!(
            !prop.is_valid(&json!({"name": "p", "title": "t", "type": "string", "required": []}))
        );

        let page = validator(&properties());
        assert!(page.is_valid(&json!({
            "properties": {"hw_cpu_cores": {"title": "Cores", "type": "integer"}},
            "schema": "/v2/schemas/metadefs/properties"
        })));

        // The body of `POST /v2/metadefs/namespaces/{ns}/tags`.
        let tag_page = validator(&tags());
        assert!(
            tag_page.is_valid(&json!({"tags": [{"name": "sample-tag1"}, {"name": "sample-tag2"}]}))
        );
        assert!(!tag_page.is_valid(&json!({"tags": [{"title": "no name"}]})));
        assert!(!tag_page.is_valid(&json!({"tags": [{"name": "t", "extra": 1}]})));

        let assoc = validator(&resource_type());
        assert!(assoc.is_valid(&json!({"name": "OS::Nova::Flavor", "prefix": "hw:"})));
        assert!(!assoc.is_valid(&json!({"prefix": "hw:"})));
    }
}
