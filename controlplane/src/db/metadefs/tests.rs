//! The catalog's queries on every backend (a scratch database each).

use super::*;
use crate::db::Backend;
use crate::db::scratch::ScratchDb;
use crate::domain::metadef::{self, NamespaceFields, NamespaceVisibility};
use chrono::Duration;
use serde_json::json;

async fn db(backend: Backend) -> (ScratchDb, Db) {
    let scratch = ScratchDb::create(backend).await;
    let db = Db::connect(scratch.url(), 2).await.unwrap();
    db.migrate().await.unwrap();
    (scratch, db)
}

fn values(name: &str, owner: &str, visibility: NamespaceVisibility) -> NamespaceValues {
    NamespaceFields {
        namespace: name.into(),
        visibility: Some(visibility),
        owner: Some(owner.into()),
        ..Default::default()
    }
    .for_create(None)
}

fn def(v: serde_json::Value) -> PropertyDef {
    metadef::PropertyDef::parse(&v, metadef::Where::Nested, &metadef::property::At::top("t"))
        .unwrap()
}

#[tokio::test]
async fn seeded_resource_types_on_every_backend() {
    for backend in Backend::ALL {
        let (_s, db) = db(backend).await;
        let names: Vec<String> = list_resource_types(&db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                assert!(r.protected && r.updated_at.is_none(), "{backend:?} {r:?}");
                assert!(
                    (Utc::now() - r.created_at).num_minutes().abs() < 10,
                    "{r:?}"
                );
                r.name
            })
            .collect();
        assert_eq!(
            names,
            [
                "OS::Glance::Image",
                "OS::Cinder::Volume",
                "OS::Nova::Flavor",
                "OS::Nova::Aggregate",
                "OS::Nova::Server",
                "OS::Trove::Instance"
            ],
            "{backend:?}"
        );
        db.close().await;
    }
}

#[tokio::test]
async fn namespaces_with_content_on_every_backend() {
    for backend in Backend::ALL {
        namespaces_with_content(backend).await;
    }
}

async fn namespaces_with_content(backend: Backend) {
    let (_s, db) = db(backend).await;
    let now = Utc::now();
    let new = metadef::parse_new_namespace(&json!({
        "namespace": "N",
        "resource_type_associations": [
            {"name": "OS::Glance::Image", "prefix": "hw_"},
            {"name": "Brand::New", "properties_target": "image"}
        ],
        "properties": {"cores": {"type": "integer", "title": "Cores", "minimum": 1}},
        "objects": [{"name": "o", "required": ["a", "b"], "properties": {"a": {"type": "string", "title": "A"}}}],
        "tags": [{"name": "t1"}, {"name": "t2"}],
    }))
    .unwrap();
    let v = new.fields.for_create(Some("p1"));
    let ns = create_namespace(&db, &v, &new, now).await.unwrap();
    assert_eq!(ns.owner.as_deref(), Some("p1"));
    assert_eq!(ns.visibility, NamespaceVisibility::Private);
    assert!(matches!(
        create_namespace(&db, &v, &NewNamespace::default(), now).await,
        Err(Error::Duplicate)
    ));
    // the failed create left nothing behind
    assert_eq!(list_namespaces_all(&db).await.len(), 1);

    let detail = namespace_detail(&db, &ns).await.unwrap();
    assert_eq!(detail.properties[0].name, "cores");
    assert_eq!(detail.properties[0].def.as_map()["minimum"], json!(1));
    assert_eq!(
        detail.objects[0].required.as_deref(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
    assert_eq!(detail.tags.len(), 2);
    let names: Vec<&str> = detail
        .associations
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["OS::Glance::Image", "Brand::New"], "{backend:?}");
    let brand = get_resource_type(&db, "Brand::New").await.unwrap().unwrap();
    assert!(!brand.protected && brand.updated_at.is_some());

    // rename; a clash is Duplicate
    let other = create_namespace(
        &db,
        &values("Other", "p2", NamespaceVisibility::Public),
        &NewNamespace::default(),
        now,
    )
    .await
    .unwrap();
    let mut renamed = v.clone();
    renamed.namespace = "Other".into();
    assert!(matches!(
        update_namespace(&db, ns.id, &renamed, now).await,
        Err(Error::Duplicate)
    ));
    renamed.namespace = "N2".into();
    renamed.protected = true;
    let later = now + Duration::seconds(5);
    let ns2 = update_namespace(&db, ns.id, &renamed, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ns2.namespace.as_str(), ns2.protected, ns2.id),
        ("N2", true, ns.id)
    );
    assert_eq!(ns2.updated_at.timestamp(), later.timestamp());
    assert!(get_namespace(&db, "N").await.unwrap().is_none());

    // objects
    let o = metadef::parse_object(
        &json!({"name": "o2", "description": "d"}),
        metadef::ObjectBody::Create,
    )
    .unwrap();
    create_object(&db, ns.id, &o, now).await.unwrap();
    assert!(matches!(
        create_object(&db, ns.id, &o, now).await,
        Err(Error::Duplicate)
    ));
    create_object(&db, other.id, &o, now).await.unwrap(); // same name elsewhere is fine
    let mut o3 = o.clone();
    o3.name = "o".into();
    assert!(matches!(
        update_object(&db, ns.id, "o2", &o3, now).await,
        Err(Error::Duplicate)
    ));
    o3.name = "o3".into();
    assert!(update_object(&db, ns.id, "o2", &o3, now).await.unwrap());
    assert!(!update_object(&db, ns.id, "o2", &o3, now).await.unwrap());
    let got = get_object(&db, ns.id, "o3").await.unwrap().unwrap();
    assert_eq!(
        (
            got.required.as_deref(),
            got.properties.as_ref().map(|p| p.len())
        ),
        (Some(&[][..]), Some(0))
    );
    assert_eq!(list_objects(&db, ns.id).await.unwrap().len(), 2);
    assert!(delete_object(&db, ns.id, "o3").await.unwrap());
    assert!(!delete_object(&db, ns.id, "o3").await.unwrap());
    assert_eq!(delete_objects(&db, ns.id).await.unwrap(), 1);

    // properties
    let d = def(json!({"name": "speed", "type": "integer", "title": "S"}));
    create_property(&db, ns.id, "speed", &d, now).await.unwrap();
    assert!(matches!(
        create_property(&db, ns.id, "speed", &d, now).await,
        Err(Error::Duplicate)
    ));
    assert!(matches!(
        update_property(&db, ns.id, "speed", "cores", &d, now).await,
        Err(Error::Duplicate)
    ));
    assert!(
        update_property(
            &db,
            ns.id,
            "speed",
            "speed2",
            &def(json!({"name": "speed2", "type": "integer", "title": "S"})),
            now
        )
        .await
        .unwrap()
    );
    let p = get_property(&db, ns.id, "speed2").await.unwrap().unwrap();
    assert_eq!(p.def.as_map()["name"], json!("speed2"));
    assert!(delete_property(&db, ns.id, "speed2").await.unwrap());
    assert_eq!(delete_properties(&db, ns.id).await.unwrap(), 1);

    // tags: replace, append, duplicates roll back
    create_tags(&db, ns.id, &["a".into(), "b".into()], false, now)
        .await
        .unwrap();
    assert_eq!(tag_names(&db, ns.id).await, ["a", "b"]);
    assert!(matches!(
        create_tags(&db, ns.id, &["c".into(), "c".into()], false, now).await,
        Err(Error::Duplicate)
    ));
    assert_eq!(tag_names(&db, ns.id).await, ["a", "b"]);
    assert!(matches!(
        create_tags(&db, ns.id, &["a".into()], true, now).await,
        Err(Error::Duplicate)
    ));
    create_tags(&db, ns.id, &["c".into()], true, now)
        .await
        .unwrap();
    assert_eq!(tag_names(&db, ns.id).await, ["a", "b", "c"]);
    assert!(matches!(
        create_tag(&db, ns.id, "c", now).await,
        Err(Error::Duplicate)
    ));
    create_tag(&db, ns.id, "C", now).await.unwrap(); // case matters
    assert!(matches!(
        update_tag(&db, ns.id, "C", "a", now).await,
        Err(Error::Duplicate)
    ));
    assert_eq!(
        update_tag(&db, ns.id, "C", "d", now)
            .await
            .unwrap()
            .unwrap()
            .name,
        "d"
    );
    assert!(
        update_tag(&db, ns.id, "C", "e", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(delete_tag(&db, ns.id, "d").await.unwrap());
    assert!(!delete_tag(&db, ns.id, "d").await.unwrap());

    // associations
    let a =
        metadef::parse_association(&json!({"name": "OS::Nova::Flavor", "prefix": "hw:"})).unwrap();
    create_association(&db, ns.id, &a, now).await.unwrap();
    assert!(matches!(
        create_association(&db, ns.id, &a, now).await,
        Err(Error::Duplicate)
    ));
    create_association(&db, other.id, &a, now).await.unwrap();
    assert_eq!(
        get_association(&db, ns.id, "OS::Nova::Flavor")
            .await
            .unwrap()
            .unwrap()
            .prefix
            .as_deref(),
        Some("hw:")
    );
    let by_ns = associations_of(&db, &[ns.id, other.id]).await.unwrap();
    assert_eq!((by_ns[&ns.id].len(), by_ns[&other.id].len()), (3, 1));
    assert!(
        delete_association(&db, ns.id, "OS::Nova::Flavor")
            .await
            .unwrap()
    );
    assert!(
        !delete_association(&db, ns.id, "OS::Nova::Flavor")
            .await
            .unwrap()
    );
    assert!(
        get_resource_type(&db, "OS::Nova::Flavor")
            .await
            .unwrap()
            .is_some()
    );

    // deleting a namespace deletes its content, nothing else
    create_object(&db, ns.id, &o, now).await.unwrap();
    assert!(delete_namespace(&db, ns.id).await.unwrap());
    assert!(!delete_namespace(&db, ns.id).await.unwrap());
    for table in CONTENT_TABLES {
        let row = db
            .sql(&format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE namespace_id = ?"
            ))
            .arg(ns.id)
            .query()
            .fetch_one(&mut *db.conn().await.unwrap())
            .await
            .unwrap();
        assert_eq!(int_required(&row, "n").unwrap(), 0, "{backend:?} {table}");
    }
    assert_eq!(list_objects(&db, other.id).await.unwrap().len(), 1);
    assert_eq!(list_associations(&db, other.id).await.unwrap().len(), 1);
    db.close().await;
}

async fn list_namespaces_all(db: &Db) -> Vec<Namespace> {
    list_namespaces(
        db,
        &NamespaceQuery {
            admin: true,
            project: None,
            visibility: None,
            resource_types: None,
            sort_key: NamespaceSort::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: 1000,
            marker: None,
        },
    )
    .await
    .unwrap()
}

async fn tag_names(db: &Db, ns: i64) -> Vec<String> {
    let q = TagQuery {
        sort_key: TagSort::Name,
        sort_dir: SortDir::Asc,
        ..TagQuery::default()
    };
    list_tags(db, ns, &q)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}

#[tokio::test]
async fn namespace_lists_page_and_filter_on_every_backend() {
    for backend in Backend::ALL {
        namespace_lists(backend).await;
    }
}

async fn namespace_lists(backend: Backend) {
    let (_s, db) = db(backend).await;
    let t0 = Utc::now();
    // five namespaces, one second apart; display names with a NULL among them
    let specs = [
        ("a", "p1", NamespaceVisibility::Private, Some("zz")),
        ("b", "p2", NamespaceVisibility::Public, None),
        ("c", "p2", NamespaceVisibility::Private, Some("aa")),
        ("d", "p1", NamespaceVisibility::Public, Some("mm")),
        ("e", "p3", NamespaceVisibility::Private, None),
    ];
    for (i, (name, owner, vis, display)) in specs.iter().enumerate() {
        let mut v = values(name, owner, *vis);
        v.display_name = display.map(str::to_owned);
        create_namespace(
            &db,
            &v,
            &NewNamespace::default(),
            t0 + Duration::seconds(i as i64),
        )
        .await
        .unwrap();
    }
    let a = get_namespace(&db, "a").await.unwrap().unwrap();
    let rt = metadef::parse_association(&json!({"name": "OS::Nova::Flavor"})).unwrap();
    create_association(&db, a.id, &rt, t0).await.unwrap();
    let c = get_namespace(&db, "c").await.unwrap().unwrap();
    let rt2 = metadef::parse_association(&json!({"name": "OS::Glance::Image"})).unwrap();
    create_association(&db, c.id, &rt2, t0).await.unwrap();

    let base = NamespaceQuery {
        admin: false,
        project: Some("p1"),
        visibility: None,
        resource_types: None,
        sort_key: NamespaceSort::CreatedAt,
        sort_dir: SortDir::Desc,
        limit: 25,
        marker: None,
    };
    let names = |list: Vec<Namespace>| list.into_iter().map(|n| n.namespace).collect::<Vec<_>>();
    // p1 sees its own and the public ones, newest first
    assert_eq!(
        names(list_namespaces(&db, &base).await.unwrap()),
        ["d", "b", "a"],
        "{backend:?}"
    );
    let anon = NamespaceQuery {
        project: None,
        ..base.clone()
    };
    assert_eq!(
        names(list_namespaces(&db, &anon).await.unwrap()),
        ["d", "b"]
    );
    let admin = NamespaceQuery {
        admin: true,
        ..base.clone()
    };
    assert_eq!(
        names(list_namespaces(&db, &admin).await.unwrap()),
        ["e", "d", "c", "b", "a"]
    );
    let public = NamespaceQuery {
        visibility: Some("public"),
        ..admin.clone()
    };
    assert_eq!(
        names(list_namespaces(&db, &public).await.unwrap()),
        ["d", "b"]
    );
    let empty = NamespaceQuery {
        visibility: Some(""),
        ..admin.clone()
    };
    assert!(list_namespaces(&db, &empty).await.unwrap().is_empty());
    let rts = [
        "OS::Nova::Flavor".to_owned(),
        "OS::Glance::Image".to_owned(),
    ];
    let by_rt = NamespaceQuery {
        resource_types: Some(&rts),
        ..admin.clone()
    };
    assert_eq!(
        names(list_namespaces(&db, &by_rt).await.unwrap()),
        ["c", "a"]
    );
    let none = ["Nope".to_owned()];
    let by_none = NamespaceQuery {
        resource_types: Some(&none),
        ..admin.clone()
    };
    assert!(list_namespaces(&db, &by_none).await.unwrap().is_empty());

    // pages of two, each direction, by several keys (NULL display names first ascending)
    for (key, dir, want) in [
        (
            NamespaceSort::CreatedAt,
            SortDir::Desc,
            vec!["e", "d", "c", "b", "a"],
        ),
        (
            NamespaceSort::CreatedAt,
            SortDir::Asc,
            vec!["a", "b", "c", "d", "e"],
        ),
        (
            NamespaceSort::Id,
            SortDir::Asc,
            vec!["a", "b", "c", "d", "e"],
        ),
        (
            NamespaceSort::Namespace,
            SortDir::Desc,
            vec!["e", "d", "c", "b", "a"],
        ),
        (
            NamespaceSort::DisplayName,
            SortDir::Asc,
            vec!["b", "e", "c", "d", "a"],
        ),
        (
            NamespaceSort::DisplayName,
            SortDir::Desc,
            vec!["a", "d", "c", "e", "b"],
        ),
        (
            NamespaceSort::Owner,
            SortDir::Asc,
            vec!["a", "d", "b", "c", "e"],
        ),
        (
            NamespaceSort::Visibility,
            SortDir::Asc,
            vec!["a", "c", "e", "b", "d"],
        ),
    ] {
        let mut got = Vec::new();
        let mut marker: Option<Namespace> = None;
        loop {
            let q = NamespaceQuery {
                sort_key: key,
                sort_dir: dir,
                limit: 2,
                marker: marker.as_ref(),
                ..admin.clone()
            };
            let page = list_namespaces(&db, &q).await.unwrap();
            assert!(page.len() <= 2);
            let done = page.len() < 2;
            marker = page.last().cloned();
            got.extend(page.into_iter().map(|n| n.namespace));
            if done {
                break;
            }
        }
        assert_eq!(got, want, "{backend:?} {key:?} {dir:?}");
    }

    // tags page by name after a marker
    let ns = get_namespace(&db, "a").await.unwrap().unwrap();
    create_tags(&db, ns.id, &["x".into(), "y".into(), "z".into()], false, t0)
        .await
        .unwrap();
    let m = tag_marker(&db, ns.id, "x").await.unwrap().unwrap();
    let q = TagQuery {
        sort_key: TagSort::Name,
        sort_dir: SortDir::Asc,
        limit: Some(1),
        marker: Some(&m),
    };
    let page = list_tags(&db, ns.id, &q).await.unwrap();
    assert_eq!(
        page.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["y"]
    );
    assert!(tag_marker(&db, ns.id, "nope").await.unwrap().is_none());
    db.close().await;
}
