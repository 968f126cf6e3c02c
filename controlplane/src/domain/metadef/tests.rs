use super::*;
use chrono::TimeZone;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn ns(name: &str, owner: Option<&str>, visibility: NamespaceVisibility) -> Namespace {
    Namespace {
        id: 1,
        namespace: name.into(),
        display_name: None,
        description: None,
        visibility,
        protected: false,
        owner: owner.map(str::to_owned),
        created_at: t0(),
        updated_at: t0(),
    }
}

fn invalid(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn visibility_is_glances() {
    use NamespaceVisibility::*;
    let private = ns("n", Some("p1"), Private);
    assert!(private.is_visible(false, Some("p1")));
    assert!(!private.is_visible(false, Some("p2")));
    assert!(!private.is_visible(false, None));
    assert!(private.is_visible(true, Some("p2")));
    assert!(ns("n", Some("p1"), Public).is_visible(false, None));
    assert!(ns("n", None, Private).is_visible(false, Some("p2")));
}

#[test]
fn namespace_bodies() {
    let new = parse_new_namespace(&json!({
        "namespace": "N", "display_name": "D", "visibility": "public",
        "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}],
        "properties": {"p": {"type": "integer", "title": "P", "default": 1}},
        "objects": [{"name": "o", "required": ["p"], "properties": {"p": {"type": "string", "title": "t"}}}],
        "tags": [{"name": "t1"}, {"name": "t2"}],
    }))
    .unwrap();
    assert_eq!(new.fields.namespace, "N");
    assert_eq!(new.fields.visibility, Some(NamespaceVisibility::Public));
    assert_eq!(new.fields.protected, None);
    assert_eq!(
        new.tags.as_deref(),
        Some(&["t1".to_owned(), "t2".to_owned()][..])
    );
    assert_eq!(
        new.properties.as_ref().unwrap()["p"].as_map()["default"],
        json!("1")
    );
    let a = &new.associations.as_ref().unwrap()[0];
    assert_eq!(
        (a.name.as_str(), a.prefix.as_deref()),
        ("OS::Glance::Image", Some("hw_"))
    );
    assert_eq!(
        new.objects.as_ref().unwrap()[0].required.as_deref(),
        Some(&["p".to_owned()][..])
    );

    // defaults: private, unprotected, owner = caller; update clears what is left out
    let v = new.fields.for_create(Some("p1"));
    assert_eq!(v.owner.as_deref(), Some("p1"));
    let f = parse_namespace_update(&json!({"namespace": "N", "owner": ""})).unwrap();
    let v = f.for_update(Some("p9"));
    assert_eq!(
        (v.visibility, v.protected, v.owner.as_deref(), v.description),
        (NamespaceVisibility::Private, false, Some("p9"), None)
    );

    for key in ["self", "schema", "created_at", "updated_at"] {
        let mut b = json!({"namespace": "N"});
        b[key] = json!("x");
        assert_eq!(
            parse_new_namespace(&b).unwrap_err(),
            Error::ReadOnly(key.into())
        );
    }
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "'namespace' is a required property"),
        (json!([]), "[] is not of type 'object'"),
        (json!({"namespace": "a".repeat(81)}), "is too long"),
        (
            json!({"namespace": "N", "display_name": "d".repeat(81)}),
            "Failed validating 'maxLength' in schema['properties']['display_name']",
        ),
        (
            json!({"namespace": "N", "description": "d".repeat(501)}),
            "is too long",
        ),
        (
            json!({"namespace": "N", "owner": "o".repeat(256)}),
            "is too long",
        ),
        (
            json!({"namespace": "N", "visibility": "shared"}),
            "'shared' is not one of ['public', 'private']",
        ),
        (
            json!({"namespace": "N", "protected": "yes"}),
            "'yes' is not of type 'boolean'",
        ),
        (
            json!({"namespace": "N", "display_name": null}),
            "None is not of type 'string'",
        ),
        (
            json!({"namespace": "N", "bogus": 1}),
            "('bogus' was unexpected)",
        ),
        (
            json!({"namespace": "N", "tags": [{}]}),
            "Mandatory field missing",
        ),
        (
            json!({"namespace": "N", "tags": [{"name": "t", "x": 1}]}),
            "Unknown attribute",
        ),
        (
            json!({"namespace": "N", "tags": [{"name": "t".repeat(81)}]}),
            "longer than 80",
        ),
        (
            json!({"namespace": "N", "objects": [{"description": "d"}]}),
            "Mandatory field missing",
        ),
        (
            json!({"namespace": "N", "objects": [{"name": "o", "required": ["a", "a"]}]}),
            "non-unique",
        ),
        (
            json!({"namespace": "N", "resource_type_associations": [{"prefix": "x"}]}),
            "Mandatory field missing",
        ),
        (
            json!({"namespace": "N", "resource_type_associations": [{"name": "r", "prefix": "p".repeat(81)}]}),
            "is too long",
        ),
        (
            json!({"namespace": "N", "properties": {"p": {"type": "string"}}}),
            "'title' is a required property",
        ),
        (
            json!({"namespace": "N", "properties": {"p": {"type": "string", "title": "t", "x": 1}}}),
            "Unknown attribute for argument properties.p: x",
        ),
        (
            json!({"namespace": "N", "properties": {"p".repeat(81): {"type": "string", "title": "t"}}}),
            "longer than 80",
        ),
    ];
    for (body, want) in cases {
        let m = invalid(parse_new_namespace(&body));
        assert!(m.contains(want), "{body}: {m}");
    }
    // confidential passes in a namespace body (Glance's schema lets it through)
    assert!(parse_new_namespace(&json!({"namespace": "N", "properties": {"p": {"type": "string", "title": "t", "confidential": true}}})).is_ok());
}

#[test]
fn object_bodies() {
    let o = parse_object(
        &json!({"name": "o", "description": "d", "required": ["a"], "properties": {"a": {"type": "integer", "title": "A", "minimum": 2.5}}}),
        ObjectBody::Create,
    )
    .unwrap();
    assert_eq!(
        o.properties.as_ref().unwrap()["a"].as_map()["minimum"],
        json!(2)
    );
    let m = invalid(parse_object(
        &json!({"name": "a".repeat(81)}),
        ObjectBody::Create,
    ));
    assert!(
        m.contains("Failed validating 'maxLength' in schema['properties']['name']"),
        "{m}"
    );
    let bad_prop = json!({"name": "o", "properties": {"p": {"type": "integer", "title": "t", "test-key": "v"}}});
    assert!(parse_object(&bad_prop, ObjectBody::Create).is_err());
    // `confidential`: the property schema refuses it on create, the object schema allows it
    let conf = json!({"name": "o", "properties": {"p": {"type": "integer", "title": "t", "confidential": true}}});
    assert!(parse_object(&conf, ObjectBody::Create).is_err());
    assert!(parse_object(&conf, ObjectBody::Update).is_ok());
    assert_eq!(
        parse_object(&json!({"name": "o", "self": "x"}), ObjectBody::Update).unwrap_err(),
        Error::ReadOnly("self".into())
    );
    assert!(
        invalid(parse_object(
            &json!({"description": "d"}),
            ObjectBody::Update
        ))
        .contains("'name' is a required property")
    );
    assert_eq!(
        join_required(Some(&["a".into(), "b".into()])),
        Some("a,b".into())
    );
    assert_eq!(join_required(Some(&[])), None);
    assert_eq!(split_required(Some("a,b")), ["a", "b"]);
    assert!(split_required(None).is_empty());
}

#[test]
fn property_tag_and_association_bodies() {
    let (name, def) =
        parse_property(&json!({"name": "p", "type": "string", "title": "t", "enum": ["a"]}))
            .unwrap();
    assert_eq!(name, "p");
    assert_eq!(def.as_map()["name"], json!("p"));
    assert_eq!(
        parse_property(&json!({"name": "p", "type": "string", "title": "t", "created_at": "x"}))
            .unwrap_err(),
        Error::ReadOnly("created_at".into())
    );
    assert_eq!(
        parse_tags(&json!({"tags": [{"name": "a"}, {"name": "b"}]})).unwrap(),
        ["a", "b"]
    );
    for (body, want) in [
        (
            json!({"tags": [{"name": "a", "x": 1}]}),
            "('x' was unexpected)",
        ),
        (json!({"tags": [{}]}), "'name' is a required property"),
        (json!({"tags": "a"}), "'a' is not of type 'array'"),
        (json!({"x": []}), "('x' was unexpected)"),
        (json!({}), "'tags' is a required property"),
    ] {
        let m = invalid(parse_tags(&body));
        assert!(m.contains(want), "{body}: {m}");
    }
    assert_eq!(parse_tag_update(&json!({"name": "n"})).unwrap(), "n");
    assert!(check_tag_name(&"t".repeat(80)).is_ok());
    assert!(invalid(check_tag_name(&"t".repeat(81))).contains("is too long"));
    let a = parse_association(&json!({"name": "R", "prefix": "p_", "properties_target": "image"}))
        .unwrap();
    assert_eq!(a.properties_target.as_deref(), Some("image"));
    assert!(
        invalid(parse_association(&json!({"prefix": "p"})))
            .contains("'name' is a required property")
    );
    assert!(invalid(parse_association(&json!({"name": "R", "x": 1}))).contains("unexpected"));
    assert_eq!(
        parse_association(&json!({"name": "R", "updated_at": "x"})).unwrap_err(),
        Error::ReadOnly("updated_at".into())
    );
}

#[test]
fn four_byte_characters_are_refused_as_glance_does() {
    let mut v = parse_new_namespace(&json!({"namespace": "N"}))
        .unwrap()
        .fields
        .for_create(None);
    assert!(
        check_4byte(
            "Couldn't create metadata namespace",
            &namespace_db_values(&v)
        )
        .is_ok()
    );
    v.display_name = Some("car \u{1F693}".into());
    assert_eq!(
        invalid(check_4byte(
            "Couldn't create metadata namespace",
            &namespace_db_values(&v)
        )),
        "Couldn't create metadata namespace: Display_Name can't contain 4 byte unicode characters."
    );
    let (name, def) =
        parse_property(&json!({"name": "p", "type": "string", "title": "\u{1F693}"})).unwrap();
    assert!(
        invalid(check_4byte("x", &property_db_values(&name, &def))).contains("Title can't contain")
    );
    // lists are not searched (Glance's decorator does not look into them)
    let (name, def) = parse_property(
        &json!({"name": "p", "type": "string", "title": "t", "enum": ["\u{1F693}"]}),
    )
    .unwrap();
    assert!(check_4byte("x", &property_db_values(&name, &def)).is_ok());
    assert!(check_4byte("x", &tag_db_values("\u{1F693}")).is_err());
}

#[test]
fn rendering_and_prefixes() {
    let mut n = ns("N", Some("p1"), NamespaceVisibility::Public);
    n.display_name = Some("D".into());
    let j = Value::Object(namespace_json(&n));
    assert_eq!(
        j,
        json!({
            "namespace": "N", "display_name": "D", "visibility": "public", "protected": false,
            "owner": "p1", "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
            "self": "/v2/metadefs/namespaces/N", "schema": "/v2/schemas/metadefs/namespace",
        })
    );
    let def = |t: &str| {
        PropertyDef::parse(
            &json!({"type": t, "title": t}),
            Where::Nested,
            &At::top("x"),
        )
        .unwrap()
    };
    let detail = NamespaceDetail {
        namespace: n.clone(),
        objects: vec![MetadefObject {
            name: "o".into(),
            description: None,
            required: Some(vec!["a".into()]),
            properties: Some([("a".to_owned(), def("string"))].into()),
            created_at: t0(),
            updated_at: t0(),
        }],
        properties: vec![Property {
            name: "cores".into(),
            def: def("integer"),
        }],
        tags: vec![Tag {
            name: "t".into(),
            created_at: t0(),
            updated_at: t0(),
        }],
        associations: vec![Association {
            name: "OS::Nova::Flavor".into(),
            prefix: Some("hw:".into()),
            properties_target: None,
            created_at: t0(),
            updated_at: t0(),
        }],
    };
    let plain = detail.to_json(None);
    assert_eq!(
        plain["properties"],
        json!({"cores": {"type": "integer", "title": "integer"}})
    );
    assert_eq!(plain["tags"], json!([{"name": "t"}]));
    assert_eq!(
        plain["objects"][0]["self"],
        json!("/v2/metadefs/namespaces/N/objects/o")
    );
    assert_eq!(
        plain["objects"][0]["schema"],
        json!("/v2/schemas/metadefs/object")
    );
    assert_eq!(
        plain["resource_type_associations"][0]["prefix"],
        json!("hw:")
    );
    assert!(
        plain["resource_type_associations"][0]
            .get("properties_target")
            .is_none()
    );
    let prefixed = detail.to_json(Some("OS::Nova::Flavor"));
    assert!(prefixed["properties"].get("hw:cores").is_some());
    assert!(prefixed["objects"][0]["properties"].get("hw:a").is_some());
    assert_eq!(prefixed["objects"][0]["required"], json!(["hw:a"]));
    // another resource type, or none associated: no prefix
    assert!(
        detail.to_json(Some("OS::Glance::Image"))["properties"]
            .get("cores")
            .is_some()
    );
    // empty parts are left out
    let bare = NamespaceDetail {
        objects: vec![],
        properties: vec![],
        tags: vec![],
        associations: vec![],
        ..detail
    };
    let j = bare.to_json(None);
    for key in [
        "objects",
        "properties",
        "tags",
        "resource_type_associations",
    ] {
        assert!(j.get(key).is_none(), "{key}");
    }
    assert_eq!(
        objects_json("N", &[])["schema"],
        json!("v2/schemas/metadefs/objects")
    );
    let p = Property {
        name: "x".into(),
        def: def("string"),
    };
    assert_eq!(
        property_json(&p),
        json!({"name": "x", "type": "string", "title": "string"})
    );
    assert_eq!(
        resource_types_json(&[ResourceType {
            name: "R".into(),
            protected: true,
            created_at: t0(),
            updated_at: None
        }]),
        json!({"resource_types": [{"name": "R", "created_at": "2026-01-02T03:04:05Z"}]})
    );
}

#[test]
fn the_create_answer_echoes_the_body() {
    let new =
        parse_new_namespace(&json!({"namespace": "N", "tags": [], "objects": [{"name": "o"}]}))
            .unwrap();
    let j = created_namespace_json(&ns("N", None, NamespaceVisibility::Private), &new);
    assert_eq!(j["tags"], json!([]));
    assert_eq!(j["objects"], json!([{"name": "o"}]));
    assert!(j.get("properties").is_none() && j.get("owner").is_none());
    assert_eq!(first_repeated(["a", "b", "a"]), Some("a"));
    assert_eq!(first_repeated(["a", "b"]), None);
}
