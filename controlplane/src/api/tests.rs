//! Router tests without sockets (`oneshot`), against a real temporary SQLite database.

use super::router;
use crate::db;
use crate::test_util::TestApp;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shared::image::{ImageId, ImageStatus};
use tower::ServiceExt;

const V21: &str = "application/openstack-images-v2.1-json-patch";
const V20: &str = "application/openstack-images-v2.0-json-patch";

struct Harness {
    t: TestApp,
    router: Router,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn harness() -> Harness {
    let t = TestApp::new().await;
    let router = router(t.app.clone());
    Harness { t, router }
}

/// Identity headers of a project member.
fn member(project: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-project-id", project.to_owned()),
        ("x-roles", "member".to_owned()),
    ]
}

/// Identity headers of a project reader.
fn reader(project: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-project-id", project.to_owned()),
        ("x-roles", "reader".to_owned()),
    ]
}

fn admin() -> Vec<(&'static str, String)> {
    vec![]
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, String)],
        body: Option<(&str, String)>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "glint.test:9292");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let body = match body {
            Some((ctype, text)) => {
                req = req
                    .header("content-type", ctype)
                    .header("content-length", text.len().to_string());
                Body::from(text)
            }
            None => Body::empty(),
        };
        let res = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str, who: &[(&str, String)]) -> Reply {
        self.call(Method::GET, uri, who, None).await
    }

    async fn post(&self, uri: &str, who: &[(&str, String)], body: Value) -> Reply {
        self.call(
            Method::POST,
            uri,
            who,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    async fn patch(&self, id: &str, who: &[(&str, String)], media: &str, body: Value) -> Reply {
        self.call(
            Method::PATCH,
            &format!("/v2/images/{id}"),
            who,
            Some((media, body.to_string())),
        )
        .await
    }

    async fn delete(&self, uri: &str, who: &[(&str, String)]) -> Reply {
        self.call(Method::DELETE, uri, who, None).await
    }

    /// Creates an image and returns its id.
    async fn create(&self, who: &[(&str, String)], body: Value) -> String {
        let r = self.post("/v2/images", who, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    async fn stored(&self, id: &str) -> crate::domain::Image {
        (*db::images::get(&self.t.app.db, id.parse().unwrap())
            .await
            .unwrap()
            .unwrap())
        .clone()
    }

    /// Sets the status and, when given, adds an active location in the `file` store.
    async fn set_status(&self, id: &str, status: ImageStatus, location: Option<String>) {
        let mut img = self.stored(id).await;
        img.status = status;
        assert!(db::images::update(&self.t.app.db, &img).await.unwrap());
        if let Some(url) = location {
            let added =
                db::images::add_location(&self.t.app.db, img.id, "file", &url, chrono::Utc::now());
            assert!(added.await.unwrap());
        }
    }
}

// === versions, routing, request ids ===

#[tokio::test]
async fn versions_documents() {
    let h = harness().await;
    let r = h.get("/", &admin()).await;
    assert_eq!(r.status, StatusCode::MULTIPLE_CHOICES);
    let versions = r.body["versions"].as_array().unwrap();
    // Glance's layout without the cache: 2.17 (the location API) CURRENT after 2.15 and 2.9
    assert!(
        versions
            .iter()
            .any(|v| v["id"] == "v2.17" && v["status"] == "CURRENT")
    );
    assert!(
        versions
            .iter()
            .any(|v| v["id"] == "v2.15" && v["status"] == "SUPPORTED")
    );
    assert_eq!(
        versions[0]["links"][0]["href"],
        "http://glint.test:9292/v2/"
    );
    assert_eq!(h.get("/versions", &admin()).await.status, StatusCode::OK);
    assert_eq!(
        h.get("/v3/images", &admin()).await.status,
        StatusCode::MULTIPLE_CHOICES
    );
    // /v2.N/ aliases reach the same routes
    let r = h.get("/v2.15/images", &admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        h.get("/v2.17/images", &admin()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/v2.16/images", &admin()).await.status,
        StatusCode::MULTIPLE_CHOICES
    );
    assert_eq!(
        h.get("/v2.1/schemas/image", &admin()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/v2.8/images", &admin()).await.status,
        StatusCode::MULTIPLE_CHOICES
    );
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let h = harness().await;
    let r = h.get("/v2/nothing", &admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], 404);
    assert!(r.body["error"]["message"].is_string());
    assert_eq!(h.get("/v2/", &admin()).await.status, StatusCode::NOT_FOUND);

    let r = h.call(Method::PUT, "/v2/images", &admin(), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = r.header("allow");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(r.body["error"]["code"], 405);
    assert!(r.header("x-openstack-request-id").starts_with("req-"));

    let id = ImageId::new_random();
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/images/{id}/file"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.header("allow").contains("PUT"));
    let r = h
        .call(Method::POST, "/v2/schemas/image", &admin(), None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn request_ids() {
    let h = harness().await;
    let r = h.get("/v2/images", &admin()).await;
    assert!(r.header("x-openstack-request-id").starts_with("req-"));
    let r = h
        .get(
            "/v2/images",
            &[("x-openstack-request-id", "req-abc".into())],
        )
        .await;
    assert_eq!(r.header("x-openstack-request-id"), "req-abc");
    let r = h
        .get("/v2/nope", &[("x-openstack-request-id", "abc".into())])
        .await;
    assert_eq!(r.header("x-openstack-request-id"), "req-abc");
    let r = h
        .get("/v2/images", &[("x-openstack-request-id", "x".repeat(65))])
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(r.header("x-openstack-request-id").starts_with("req-"));
}

// === create ===

#[tokio::test]
async fn create_and_show() {
    let h = harness().await;
    let me = member("p1");
    let r = h
        .post(
            "/v2/images",
            &me,
            json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare", "tags": ["a"],
                   "os_distro": "cirros", "min_ram": 64}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.header("location"),
        format!("http://glint.test:9292/v2/images/{id}")
    );
    assert_eq!(r.header("content-type"), "application/json");
    let b = &r.body;
    assert_eq!(b["status"], "queued");
    assert_eq!(b["visibility"], "shared");
    assert_eq!(b["owner"], "p1");
    assert_eq!(b["protected"], false);
    assert_eq!(b["os_hidden"], false);
    assert_eq!(b["size"], Value::Null);
    assert_eq!(b["checksum"], Value::Null);
    assert_eq!(b["os_distro"], "cirros");
    assert_eq!(b["tags"], json!(["a"]));
    assert_eq!(b["min_ram"], 64);
    assert_eq!(b["self"], format!("/v2/images/{id}"));
    assert_eq!(b["file"], format!("/v2/images/{id}/file"));
    assert_eq!(b["schema"], "/v2/schemas/image");
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));

    let shown = h.get(&format!("/v2/images/{id}"), &me).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, r.body);

    // noauth without identity headers: admin, no owner
    let r = h.post("/v2/images", &admin(), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["owner"], Value::Null);
}

#[tokio::test]
async fn create_with_id_and_duplicates() {
    let h = harness().await;
    let id = "0b3a8c7e-1234-4321-abcd-0123456789ab";
    let r = h.post("/v2/images", &admin(), json!({"id": id})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["id"], id);
    assert_eq!(
        h.post("/v2/images", &admin(), json!({"id": id}))
            .await
            .status,
        StatusCode::CONFLICT
    );
    // a deleted image's id is never reused
    assert_eq!(
        h.delete(&format!("/v2/images/{id}"), &admin()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.post("/v2/images", &admin(), json!({"id": id}))
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn create_errors() {
    let h = harness().await;
    let me = member("p1");
    let cases: Vec<(Value, StatusCode)> = vec![
        (json!({"id": "not-a-uuid"}), StatusCode::BAD_REQUEST),
        (json!({"name": 5}), StatusCode::BAD_REQUEST),
        (json!({"disk_format": "floppy"}), StatusCode::BAD_REQUEST),
        (json!({"container_format": "box"}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "everyone"}), StatusCode::BAD_REQUEST),
        (json!({"custom": 5}), StatusCode::BAD_REQUEST),
        (json!({"min_disk": -1}), StatusCode::BAD_REQUEST),
        (json!({"k".repeat(256): "v"}), StatusCode::BAD_REQUEST),
        (json!({"status": "active"}), StatusCode::FORBIDDEN),
        (json!({"size": 5}), StatusCode::FORBIDDEN),
        (json!({"checksum": "x"}), StatusCode::FORBIDDEN),
        (json!({"os_hash_algo": "sha512"}), StatusCode::FORBIDDEN),
        (json!({"created_at": "x"}), StatusCode::FORBIDDEN),
        (json!({"self": "x"}), StatusCode::FORBIDDEN),
        (json!({"file": "x"}), StatusCode::FORBIDDEN),
        (json!({"schema": "x"}), StatusCode::FORBIDDEN),
        (json!({"direct_url": "x"}), StatusCode::FORBIDDEN),
        (json!({"locations": []}), StatusCode::FORBIDDEN),
        (json!({"location": "x"}), StatusCode::FORBIDDEN),
        (json!({"deleted": "x"}), StatusCode::FORBIDDEN),
        (json!({"deleted_at": "x"}), StatusCode::FORBIDDEN),
        (json!({"os_glance_import_task": "x"}), StatusCode::FORBIDDEN),
        (json!({"owner": "someone-else"}), StatusCode::FORBIDDEN),
        (json!({"visibility": "public"}), StatusCode::FORBIDDEN),
        (json!([]), StatusCode::BAD_REQUEST),
    ];
    for (body, want) in cases {
        let r = h.post("/v2/images", &me, body.clone()).await;
        assert_eq!(r.status, want, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["code"], want.as_u16(), "{body}");
    }
    for raw in ["{", "", "5", "\"x\""] {
        let r = h
            .call(
                Method::POST,
                "/v2/images",
                &me,
                Some(("application/json", raw.to_owned())),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{raw:?}");
    }
    // own project as explicit owner, community by a member, and public by an admin are fine
    assert_eq!(
        h.post(
            "/v2/images",
            &me,
            json!({"owner": "p1", "visibility": "community"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.post(
            "/v2/images",
            &admin(),
            json!({"owner": "x", "visibility": "public"})
        )
        .await
        .status,
        StatusCode::CREATED
    );
    // a reader cannot create
    let reader = reader("p1");
    assert_eq!(
        h.post("/v2/images", &reader, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    // nothing was stored by the failures
    let r = h.get("/v2/images?visibility=all", &admin()).await;
    assert_eq!(r.body["images"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let t = TestApp::with_config(|c| c.controlplane.max_request_body_bytes = 256).await;
    let h = Harness {
        router: router(t.app.clone()),
        t,
    };
    let r = h
        .post(
            "/v2/images",
            &admin(),
            json!({"description": "x".repeat(300)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        h.post("/v2/images", &admin(), json!({"description": "x"}))
            .await
            .status,
        StatusCode::CREATED
    );
}

// === show / visibility ===

#[tokio::test]
async fn show_errors_and_visibility() {
    let h = harness().await;
    let private = h
        .create(&member("p1"), json!({"visibility": "private"}))
        .await;
    let public = h
        .create(&admin(), json!({"visibility": "public", "owner": "p1"}))
        .await;
    let community = h
        .create(&member("p1"), json!({"visibility": "community"}))
        .await;

    assert_eq!(
        h.get(&format!("/v2/images/{private}"), &member("p1"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.get(&format!("/v2/images/{private}"), &member("p2"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("/v2/images/{private}"), &admin())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.get(&format!("/v2/images/{public}"), &member("p2"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.get(&format!("/v2/images/{community}"), &member("p2"))
            .await
            .status,
        StatusCode::OK
    );

    let unknown = ImageId::new_random();
    assert_eq!(
        h.get(&format!("/v2/images/{unknown}"), &admin())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get("/v2/images/not-a-uuid", &admin()).await.status,
        StatusCode::NOT_FOUND
    );

    // a body on GET is refused
    let r = h
        .call(
            Method::GET,
            &format!("/v2/images/{private}"),
            &admin(),
            Some(("application/json", "{}".into())),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        h.delete(&format!("/v2/images/{private}"), &admin())
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(&format!("/v2/images/{private}"), &admin())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

// === list ===

#[tokio::test]
async fn list_filters() {
    let h = harness().await;
    let p1 = member("p1");
    let a = h.create(&p1, json!({"name": "alpha", "tags": ["x", "y"], "os_distro": "ubuntu", "disk_format": "raw"})).await;
    let b = h
        .create(
            &p1,
            json!({"name": "beta", "tags": ["x"], "protected": true}),
        )
        .await;
    let hidden = h
        .create(&p1, json!({"name": "hidden", "os_hidden": true}))
        .await;
    let other = h
        .create(
            &member("p2"),
            json!({"name": "theirs", "visibility": "private"}),
        )
        .await;
    let comm = h
        .create(
            &member("p2"),
            json!({"name": "comm", "visibility": "community"}),
        )
        .await;
    let public = h
        .create(
            &admin(),
            json!({"name": "pub", "visibility": "public", "owner": "p2"}),
        )
        .await;
    let gone = h.create(&p1, json!({"name": "gone"})).await;
    h.delete(&format!("/v2/images/{gone}"), &p1).await;

    let ids = |r: &Reply| -> Vec<String> {
        let mut v: Vec<String> = r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };

    let r = h.get("/v2/images", &p1).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["schema"], "/v2/schemas/images");
    assert_eq!(r.body["first"], "/v2/images");
    assert!(r.body.get("next").is_none());
    assert_eq!(ids(&r), sorted(vec![&a, &b, &public]));

    assert_eq!(
        ids(&h.get("/v2/images?name=alpha", &p1).await),
        vec![a.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?name=in:alpha,beta", &p1).await),
        sorted(vec![&a, &b])
    );
    assert_eq!(
        ids(&h.get("/v2/images?tag=x&tag=y", &p1).await),
        vec![a.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?tag=x", &p1).await),
        sorted(vec![&a, &b])
    );
    assert_eq!(
        ids(&h.get("/v2/images?os_distro=ubuntu", &p1).await),
        vec![a.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?protected=true", &p1).await),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?disk_format=raw", &p1).await),
        vec![a.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?os_hidden=true", &p1).await),
        vec![hidden.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?visibility=community", &p1).await),
        vec![comm.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?visibility=public", &p1).await),
        vec![public.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?owner=p2", &p1).await),
        vec![public.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?status=queued&name=beta", &p1).await),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&h.get("/v2/images?visibility=all", &p1).await),
        sorted(vec![&a, &b, &comm, &public])
    );
    // p2 sees its own private and community images by default
    assert_eq!(
        ids(&h.get("/v2/images", &member("p2")).await),
        sorted(vec![&other, &comm, &public])
    );
    // the admin sees everything but deleted, hidden and others' community images
    assert_eq!(
        ids(&h.get("/v2/images", &admin()).await),
        sorted(vec![&a, &b, &other, &public])
    );

    for bad in [
        "limit=-1",
        "limit=x",
        "marker=nope",
        "visibility=everyone",
        "sort_key=bogus",
        "changes-since=2020",
    ] {
        let r = h.get(&format!("/v2/images?{bad}"), &p1).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let unknown = ImageId::new_random();
    assert_eq!(
        h.get(&format!("/v2/images?marker={unknown}"), &p1)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // a marker the caller cannot see is unknown to it
    assert_eq!(
        h.get(&format!("/v2/images?marker={other}"), &p1)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn pagination_follows_next_links_across_three_pages() {
    let h = harness().await;
    let p1 = member("p1");
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            h.create(
                &p1,
                json!({"name": format!("img-{i}"), "os_distro": "cirros"}),
            )
            .await,
        );
    }
    let mut url = "/v2/images?limit=3&os_distro=cirros".to_owned();
    let mut pages = Vec::new();
    loop {
        let r = h.get(&url, &p1).await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.body);
        assert_eq!(r.body["first"], "/v2/images?limit=3&os_distro=cirros");
        let page: Vec<String> = r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        pages.push(page);
        match r.body.get("next").and_then(Value::as_str) {
            Some(next) => {
                assert!(
                    next.contains("limit=3")
                        && next.contains("os_distro=cirros")
                        && next.contains("marker=")
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 1]
    );
    // default order is created_at desc: newest first
    let all: Vec<String> = pages.concat();
    let mut expected = created.clone();
    expected.reverse();
    assert_eq!(all, expected);

    // sort by name ascending, two per page
    let mut url = "/v2/images?limit=2&sort=name:asc".to_owned();
    let mut names = Vec::new();
    loop {
        let r = h.get(&url, &p1).await;
        names.extend(
            r.body["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned()),
        );
        match r.body.get("next").and_then(Value::as_str) {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..7).map(|i| format!("img-{i}")).collect::<Vec<_>>()
    );
}

// === patch ===

#[tokio::test]
async fn patch_media_types_and_ops() {
    let h = harness().await;
    let me = member("p1");
    let id = h.create(&me, json!({"name": "a", "os_distro": "x"})).await;

    let r = h.patch(&id, &me, "application/json", json!([])).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        r.header("accept-patch"),
        "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch"
    );
    // the media type is checked before the body
    assert_eq!(
        h.call(Method::PATCH, &format!("/v2/images/{id}"), &me, None)
            .await
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let r = h
        .patch(
            &id,
            &me,
            V21,
            json!([
                {"op": "replace", "path": "/name", "value": "b"},
                {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
                {"op": "remove", "path": "/os_distro"},
                {"op": "replace", "path": "/tags", "value": ["t1", "t2"]},
                {"op": "replace", "path": "/min_disk", "value": 2},
                {"op": "replace", "path": "/disk_format", "value": "qcow2"},
                {"op": "replace", "path": "/visibility", "value": "private"}
            ]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "b");
    assert_eq!(r.body["hw_disk_bus"], "virtio");
    assert!(r.body.get("os_distro").is_none());
    assert_eq!(r.body["tags"], json!(["t1", "t2"]));
    assert_eq!(r.body["min_disk"], 2);
    assert_eq!(r.body["disk_format"], "qcow2");
    assert_eq!(r.body["visibility"], "private");
    assert_eq!(h.get(&format!("/v2/images/{id}"), &me).await.body, r.body);

    let r = h
        .patch(
            &id,
            &me,
            V20,
            json!([{"replace": "/name", "value": "c"}, {"add": "/extra", "value": "1"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "c");
    assert_eq!(
        h.patch(&id, &me, V20, json!([{"add": "/extra", "value": "2"}]))
            .await
            .status,
        StatusCode::CONFLICT
    );
    // v2.1 add of an existing property replaces it
    let r = h
        .patch(
            &id,
            &me,
            V21,
            json!([{"op": "add", "path": "/extra", "value": "2"}]),
        )
        .await;
    assert_eq!(r.body["extra"], "2");
}

#[tokio::test]
async fn patch_errors_change_nothing() {
    let h = harness().await;
    let me = member("p1");
    let id = h.create(&me, json!({"name": "a"})).await;
    let before = h.stored(&id).await;
    let cases: Vec<(Value, StatusCode)> = vec![
        (
            json!([{"op": "replace", "path": "/missing", "value": "x"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "remove", "path": "/missing"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "remove", "path": "/name"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/size", "value": 1}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/location", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/os_glance_x", "value": "x"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/owner", "value": "p2"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "move", "path": "/name", "from": "/x"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": 5}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/protected", "value": "yes"}]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "add", "path": "/custom", "value": 1}]),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"op": "replace"}), StatusCode::BAD_REQUEST),
        (
            json!([{"op": "replace", "path": "/name", "value": "changed"}, {"op": "replace", "path": "/nope", "value": "x"}]),
            StatusCode::CONFLICT,
        ),
    ];
    for (body, want) in cases {
        let r = h.patch(&id, &me, V21, body.clone()).await;
        assert_eq!(r.status, want, "{body}: {}", r.body);
    }
    let r = h
        .call(
            Method::PATCH,
            &format!("/v2/images/{id}"),
            &me,
            Some((V21, "[{".into())),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.stored(&id).await, before);

    // other projects: invisible → 404, visible but not theirs → 403
    assert_eq!(
        h.patch(&id, &member("p2"), V21, json!([])).await.status,
        StatusCode::NOT_FOUND
    );
    let public = h
        .create(&admin(), json!({"visibility": "public", "owner": "p1"}))
        .await;
    let r = h
        .patch(
            &public,
            &member("p2"),
            V21,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // admins may change the owner and publicize
    let r = h
        .patch(&id, &admin(), V21, json!([{"op": "replace", "path": "/owner", "value": "p2"},
                                          {"op": "replace", "path": "/visibility", "value": "public"}]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["owner"], "p2");
}

#[tokio::test]
async fn formats_change_only_while_queued() {
    let h = harness().await;
    let id = h
        .create(
            &admin(),
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    h.set_status(&id, ImageStatus::Active, Some("file:///nowhere".into()))
        .await;
    let r = h
        .patch(
            &id,
            &admin(),
            V21,
            json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .patch(
            &id,
            &admin(),
            V21,
            json!([{"op": "replace", "path": "/name", "value": "ok"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "active");
}

#[tokio::test]
async fn concurrent_patches_lose_no_write() {
    let h = harness().await;
    let me = member("p1");
    let id = h.create(&me, json!({})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let router = h.router.clone();
        let id = id.clone();
        tasks.spawn(async move {
            let body = json!([{"op": "add", "path": format!("/prop_{i}"), "value": i.to_string()}])
                .to_string();
            let req = Request::patch(format!("/v2/images/{id}"))
                .header("content-type", V21)
                .header("x-project-id", "p1")
                .header("x-roles", "member")
                .body(Body::from(body))
                .unwrap();
            router.oneshot(req).await.unwrap().status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let r = h.get(&format!("/v2/images/{id}"), &me).await;
    for i in 0..24 {
        assert_eq!(
            r.body[format!("prop_{i}")],
            i.to_string(),
            "prop_{i} lost: {}",
            r.body
        );
    }
}

// === delete ===

#[tokio::test]
async fn delete_rules_and_data_cleanup() {
    let h = harness().await;
    let me = member("p1");
    let id = h
        .create(
            &me,
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let file = h.t.app.config.store_dir().join(&id);
    std::fs::write(&file, b"data").unwrap();
    let url = format!("file://{}", file.display());
    h.set_status(&id, ImageStatus::Active, Some(url.clone()))
        .await;

    // a body on DELETE is refused
    let r = h
        .call(
            Method::DELETE,
            &format!("/v2/images/{id}"),
            &me,
            Some(("application/json", "{}".into())),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        h.delete(&format!("/v2/images/{id}"), &member("p2"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let reader = reader("p1");
    assert_eq!(
        h.delete(&format!("/v2/images/{id}"), &reader).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(db::jobs::all(&h.t.app.db).await.unwrap().is_empty());

    let r = h.delete(&format!("/v2/images/{id}"), &me).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    // the control plane touches no bytes: the data plane gets a delete job
    assert!(file.exists(), "data left to the data plane");
    let jobs = db::jobs::all(&h.t.app.db).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (
            jobs[0].kind.as_str(),
            jobs[0].image_id.as_str(),
            jobs[0].store_id.as_str(),
            jobs[0].url.as_str()
        ),
        ("delete_data", id.as_str(), "file", url.as_str())
    );
    let row = h.stored(&id).await;
    assert_eq!(row.status, ImageStatus::Deleted);
    assert!(row.deleted_at.is_some());
    assert_eq!(
        row.locations[0].status,
        crate::domain::LocationStatus::PendingDelete
    );
    assert_eq!(
        h.delete(&format!("/v2/images/{id}"), &me).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(db::jobs::all(&h.t.app.db).await.unwrap().len(), 1);

    // an image without data: deleted, no job
    let empty = h.create(&me, json!({})).await;
    assert_eq!(
        h.delete(&format!("/v2/images/{empty}"), &me).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(db::jobs::all(&h.t.app.db).await.unwrap().len(), 1);

    let prot = h.create(&me, json!({"protected": true})).await;
    assert_eq!(
        h.delete(&format!("/v2/images/{prot}"), &me).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.stored(&prot).await.status, ImageStatus::Queued);
    assert_eq!(
        h.delete("/v2/images/not-a-uuid", &me).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delayed_delete_keeps_data_until_the_scrubber() {
    let t = TestApp::with_config(|c| {
        c.controlplane.delayed_delete = true;
        c.controlplane.scrub_time_seconds = 0;
    })
    .await;
    let h = Harness {
        router: router(t.app.clone()),
        t,
    };
    let me = member("p1");
    let id = h
        .create(
            &me,
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    h.set_status(&id, ImageStatus::Active, Some("file:///d/x".into()))
        .await;
    let r = h.delete(&format!("/v2/images/{id}"), &me).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let row = h.stored(&id).await;
    assert_eq!(row.status, ImageStatus::PendingDelete);
    assert_eq!(
        row.locations[0].status,
        crate::domain::LocationStatus::Active
    );
    assert!(db::jobs::all(&h.t.app.db).await.unwrap().is_empty());
    // restore: nothing to undo on the locations
    let r = h
        .call(
            Method::POST,
            &format!("/v2/images/{id}/actions/restore"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(h.stored(&id).await.status, ImageStatus::Active);
    // deleted again and scrubbed: now the job
    assert_eq!(
        h.delete(&format!("/v2/images/{id}"), &me).await.status,
        StatusCode::NO_CONTENT
    );
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(crate::scrubber::scrub_once(&h.t.app).await.unwrap(), 1);
    assert_eq!(h.stored(&id).await.status, ImageStatus::Deleted);
    let jobs = db::jobs::all(&h.t.app.db).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].url, "file:///d/x");
}

// === tags ===

#[tokio::test]
async fn tags() {
    let h = harness().await;
    let me = member("p1");
    let id = h.create(&me, json!({})).await;
    let put = |tag: String| {
        let h = &h;
        let me = me.clone();
        let id = id.clone();
        async move {
            h.call(
                Method::PUT,
                &format!("/v2/images/{id}/tags/{tag}"),
                &me,
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(put("web".into()).await, StatusCode::NO_CONTENT);
    assert_eq!(put("web".into()).await, StatusCode::NO_CONTENT);
    assert_eq!(put("db%20server".into()).await, StatusCode::NO_CONTENT);
    assert_eq!(put("x".repeat(256)).await, StatusCode::BAD_REQUEST);
    let r = h.get(&format!("/v2/images/{id}"), &me).await;
    assert_eq!(r.body["tags"], json!(["db server", "web"]));

    assert_eq!(
        h.delete(&format!("/v2/images/{id}/tags/web"), &me)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(&format!("/v2/images/{id}/tags/web"), &me)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.delete(&format!("/v2/images/{id}/tags/x"), &member("p2"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let unknown = ImageId::new_random();
    assert_eq!(
        h.call(
            Method::PUT,
            &format!("/v2/images/{unknown}/tags/a"),
            &me,
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let r = h.get(&format!("/v2/images/{id}"), &me).await;
    assert_eq!(r.body["tags"], json!(["db server"]));
}

// === schemas and metrics ===

#[tokio::test]
async fn the_metadef_schemas_are_served_by_name() {
    let h = harness().await;
    for name in super::metadef_schemas::NAMES {
        let r = h
            .get(&format!("/v2/schemas/metadefs/{name}"), &member("p1"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}");
        assert_eq!(
            r.body,
            super::metadef_schemas::by_name(name).unwrap(),
            "{name}"
        );
    }
    let r = h.get("/v2/schemas/metadefs/namespace", &member("p1")).await;
    assert_eq!(r.body["name"], "namespace");
    let r = h.get("/v2/schemas/metadefs/nothing", &member("p1")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn schemas_validate_what_the_api_returns() {
    let h = harness().await;
    let r = h.get("/v2/schemas/image", &admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    let validator = jsonschema::validator_for(&r.body).unwrap();
    let id = h
        .create(
            &member("p1"),
            json!({"name": null, "disk_format": "iso", "tags": ["a"], "os_distro": "debian"}),
        )
        .await;
    let shown = h.get(&format!("/v2/images/{id}"), &member("p1")).await.body;
    assert!(validator.is_valid(&shown), "{shown}");

    let r = h.get("/v2/schemas/images", &admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    let validator = jsonschema::validator_for(&r.body).unwrap();
    let page = h.get("/v2/images", &member("p1")).await.body;
    assert!(validator.is_valid(&page), "{page}");

    let r = h
        .call(
            Method::GET,
            "/v2/schemas/image",
            &admin(),
            Some(("application/json", "{}".into())),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_use_route_templates() {
    let h = harness().await;
    let id = ImageId::new_random();
    h.get(&format!("/v2/images/{id}"), &admin()).await;
    h.get("/v2/bogus/path", &admin()).await;
    let text = h.t.app.metrics.render();
    assert!(
        text.contains(
            r#"glint_api_requests_total{method="GET",route="/v2/images/{image_id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched:other",status="404"} 1"#),
        "{text}"
    );
    assert!(!text.contains(&id.to_string()));
}

// === refusals: texts from shared::error, one find-and-authorize step ===

#[tokio::test]
async fn refusal_texts_are_glances() {
    let h = harness().await;
    let id = h.create(&member("p1"), json!({"name": "x"})).await;
    let reader = reader("p1");
    // 403 from the policy names the rule
    let r = h
        .patch(
            &id,
            &reader,
            V21,
            json!([{"op": "replace", "path": "/name", "value": "y"}]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.body["error"]["message"],
        shared::error::not_allowed("modify_image")
    );
    let r = h.delete(&format!("/v2/images/{id}"), &reader).await;
    assert_eq!(
        (r.status, r.body["error"]["message"].clone()),
        (
            StatusCode::FORBIDDEN,
            json!("You are not authorized to complete delete_image action.")
        )
    );
    // 404: an invisible image, an unknown one and a path that is no id read the same
    let stranger = member("p2");
    let r = h.delete(&format!("/v2/images/{id}"), &stranger).await;
    assert_eq!(
        (r.status, r.body["error"]["message"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!(shared::error::no_such_image(&id))
        )
    );
    let unknown = ImageId::new_random();
    let r = h.get(&format!("/v2/images/{unknown}"), &admin()).await;
    assert_eq!(
        r.body["error"]["message"],
        format!("No image found with ID {unknown}")
    );
    let r = h.get("/v2/images/not-a-uuid/members", &admin()).await;
    assert_eq!(
        (r.status, r.body["error"]["message"].clone()),
        (
            StatusCode::NOT_FOUND,
            json!("No image found with ID not-a-uuid")
        )
    );
}

#[tokio::test]
async fn find_authorized_is_the_one_step() {
    use crate::app::Refusal;
    use crate::policy::{Context, Rule};
    let h = harness().await;
    let id: ImageId = h
        .create(&member("p1"), json!({"name": "x"}))
        .await
        .parse()
        .unwrap();
    let ctx = |project: &str, roles: &str| {
        Context::from_credentials(&shared::channel::Credentials {
            project_id: Some(project.into()),
            roles: Some(roles.into()),
            ..Default::default()
        })
    };
    let app = &h.t.app;
    let owner = ctx("p1", "member");
    assert!(
        app.find_authorized(&owner, id, Rule::ModifyImage)
            .await
            .is_ok()
    );
    assert!(matches!(
        app.find_authorized(&ctx("p1", "reader"), id, Rule::ModifyImage)
            .await,
        Err(Refusal::Forbidden(Rule::ModifyImage))
    ));
    assert!(matches!(
        app.find_authorized(&ctx("p2", "member"), id, Rule::GetImage)
            .await,
        Err(Refusal::NotFound(i)) if i == id
    ));
    let unknown = ImageId::new_random();
    assert!(matches!(
        app.find_authorized(&owner, unknown, Rule::GetImage).await,
        Err(Refusal::NotFound(i)) if i == unknown
    ));
}

// === multi-store ===

/// A harness with three stores: `slow` (the default, described), `fast` (weight 10) and the
/// read-only `web`.
async fn multistore_harness() -> Harness {
    let t = TestApp::with_config(|c| {
        let dir = c.data_dir.clone();
        let text = format!(
            r#"
enabled_backends = "slow:file, fast:file, web:http"
[glance_store]
default_backend = "slow"
[backends.slow]
filesystem_store_datadir = "{}/slow"
store_description = "Big disks"
[backends.fast]
filesystem_store_datadir = "{}/fast"
weight = 10
"#,
            dir.display(),
            dir.display()
        );
        let parsed = shared::config::Config::from_toml(&text).unwrap();
        c.enabled_backends = parsed.enabled_backends;
        c.glance_store = parsed.glance_store;
        c.backends = parsed.backends;
    })
    .await;
    Harness {
        router: router(t.app.clone()),
        t,
    }
}

/// An active image owned by p1 with a copy in each of `stores` (in that order).
async fn stored_in(h: &Harness, stores: &[&str]) -> String {
    let id = h
        .create(
            &member("p1"),
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    h.set_status(&id, ImageStatus::Active, None).await;
    for s in stores {
        let url = format!("file:///{s}/{id}");
        let added = db::images::add_location(
            &h.t.app.db,
            id.parse().unwrap(),
            s,
            &url,
            chrono::Utc::now(),
        );
        assert!(added.await.unwrap());
    }
    id
}

#[tokio::test]
async fn info_stores_as_glance() {
    let h = multistore_harness().await;
    let r = h.get("/v2/info/stores", &reader("p1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        json!({"stores": [
            {"id": "slow", "description": "Big disks", "default": "true"},
            {"id": "fast"},
            {"id": "web", "read-only": "true"},
        ]})
    );
    // the detail: admin (or service) only
    for who in [member("p1"), reader("p1")] {
        let r = h.get("/v2/info/stores/detail", &who).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert_eq!(
            r.body["error"]["message"],
            "You are not authorized to complete stores_info_detail action."
        );
    }
    // (a caller who can see the image: get_image, and a private image is 404 to others)
    let service = vec![
        ("x-project-id", "p1".to_owned()),
        ("x-roles", "service,reader".to_owned()),
    ];
    assert_eq!(
        h.get("/v2/info/stores/detail", &service).await.status,
        StatusCode::OK
    );
    let r = h.get("/v2/info/stores/detail", &admin()).await;
    assert_eq!(r.status, StatusCode::OK);
    let dir = h.t.app.config.data_dir.display().to_string();
    let buffer = h.t.app.config.dataplane.transfer_buffer_bytes;
    assert_eq!(
        r.body,
        json!({"stores": [
            {"id": "slow", "description": "Big disks", "default": "true", "type": "file",
             "weight": 0, "properties": {"data_dir": format!("{dir}/slow"),
             "chunk_size": buffer, "thin_provisioning": false}},
            {"id": "fast", "type": "file", "weight": 10,
             "properties": {"data_dir": format!("{dir}/fast"), "chunk_size": buffer,
             "thin_provisioning": false}},
            {"id": "web", "read-only": "true", "type": "http", "weight": 0, "properties": {}},
        ]})
    );
    assert_eq!(
        h.call(Method::POST, "/v2/info/stores", &admin(), None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // 2.8–2.13 are advertised and reachable
    let r = h.get("/versions", &admin()).await;
    let ids: Vec<&str> = r.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    for v in ["v2.8", "v2.10", "v2.13"] {
        assert!(ids.contains(&v), "{v} in {ids:?}");
    }
    assert_eq!(
        h.get("/v2.10/info/stores", &admin()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/v2.13/info/usage", &admin()).await.body,
        json!({"usage": {}})
    );
}

#[tokio::test]
async fn without_multistore_the_store_routes_are_404() {
    let h = harness().await;
    for uri in ["/v2/info/stores", "/v2/info/stores/detail"] {
        let r = h.get(uri, &admin()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(
            r.body["error"]["message"],
            "Multi backend is not supported at this site."
        );
    }
    let id = h.create(&member("p1"), json!({})).await;
    assert_eq!(
        h.delete(&format!("/v2/stores/file/{id}"), &admin())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let r = h.post("/v2/images", &member("p1"), json!({})).await;
    assert_eq!(r.header("openstack-image-store-ids"), "");
    assert!(r.body.get("stores").is_none());
    // a single-store image with data shows no stores either
    let id = h.create(&member("p1"), json!({})).await;
    h.set_status(&id, ImageStatus::Active, Some("file:///x".into()))
        .await;
    let r = h.get(&format!("/v2/images/{id}"), &member("p1")).await;
    assert!(r.body.get("stores").is_none(), "{}", r.body);
}

#[tokio::test]
async fn the_stores_property_and_header() {
    let h = multistore_harness().await;
    let r = h.post("/v2/images", &member("p1"), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("openstack-image-store-ids"), "slow,fast,web");
    assert!(r.body.get("stores").is_none(), "{}", r.body);
    // stores is read-only
    let r = h
        .post("/v2/images", &member("p1"), json!({"stores": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let id = stored_in(&h, &["slow", "fast"]).await;
    let r = h.get(&format!("/v2/images/{id}"), &member("p1")).await;
    assert_eq!(r.body["stores"], "fast,slow", "weight first: {}", r.body);
    let r = h.get("/v2/images", &member("p1")).await;
    let listed = r.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["stores"], "fast,slow");
    let r = h
        .patch(
            &id,
            &member("p1"),
            V21,
            json!([{"op": "replace", "path": "/stores", "value": "x"}]),
        )
        .await;
    // as Glance: not a property that can be replaced
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = h
        .patch(
            &id,
            &member("p1"),
            V21,
            json!([{"op": "replace", "path": "/name", "value": "n"}]),
        )
        .await;
    assert_eq!(r.body["stores"], "fast,slow");
    assert!(!r.body.to_string().contains("file:///"));
}

#[tokio::test]
async fn delete_from_store_every_answer() {
    let h = multistore_harness().await;
    let id = stored_in(&h, &["slow", "fast"]).await;
    let uri = |store: &str, id: &str| format!("/v2/stores/{store}/{id}");
    let msg = |r: &Reply| r.body["error"]["message"].as_str().unwrap_or("").to_owned();

    // an unknown store: 409, before the image is even looked at
    let r = h
        .delete(&uri("nope", &ImageId::new_random().to_string()), &admin())
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        "The selected store nope is not available on this node."
    );
    // no such image, or not one the caller sees: 404
    for (who, image) in [
        (admin(), ImageId::new_random().to_string()),
        (admin(), "not-a-uuid".to_owned()),
        (member("p2"), id.clone()),
    ] {
        let r = h.delete(&uri("fast", &image), &who).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{image}");
        assert_eq!(msg(&r), format!("Failed to find image {image}"));
    }
    // delete_image_location is admin-only by default
    let r = h.delete(&uri("fast", &id), &member("p1")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        msg(&r),
        "You are not authorized to complete delete_image_location action."
    );
    // a store without a copy: 404
    let r = h.delete(&uri("web", &id), &admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(msg(&r), format!("Image {id} is not stored in store web."));
    // a body is refused
    let r = h
        .call(
            Method::DELETE,
            &uri("fast", &id),
            &admin(),
            Some(("application/json", "{}".into())),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(db::jobs::all(&h.t.app.db).await.unwrap().is_empty());

    // 204: the copy goes (by a job), the other stays
    let r = h.delete(&uri("fast", &id), &admin()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let jobs = db::jobs::all(&h.t.app.db).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].store_id.as_str(), jobs[0].url.clone()),
        ("fast", format!("file:///fast/{id}"))
    );
    let r = h.get(&format!("/v2/images/{id}"), &member("p1")).await;
    assert_eq!(r.body["stores"], "slow");
    // the last copy stays: 403, whatever store is named
    for store in ["slow", "fast"] {
        let r = h.delete(&uri(store, &id), &admin()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{store}");
        assert_eq!(
            msg(&r),
            "Cannot delete image data from the only store containing it. Consider deleting \
             the image instead."
        );
    }
    // an image that is not active: 409
    let other = stored_in(&h, &["slow", "fast"]).await;
    let r = h
        .call(
            Method::POST,
            &format!("/v2/images/{other}/actions/deactivate"),
            &admin(),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.delete(&uri("fast", &other), &admin()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        msg(&r),
        "It's not allowed to remove image data from store if image status is not 'active'"
    );
    // deleting the image then queues the remaining copy only (the removed one has its job)
    assert_eq!(
        h.delete(&format!("/v2/images/{id}"), &admin()).await.status,
        StatusCode::NO_CONTENT
    );
    let jobs = db::jobs::all(&h.t.app.db).await.unwrap();
    let stores: Vec<&str> = jobs.iter().map(|j| j.store_id.as_str()).collect();
    assert_eq!(stores, ["fast", "slow"]);
}

/// A task of `owner` on `image`, created `age_s` seconds ago, expiring at `expires`.
fn task_of(
    owner: &str,
    image: Option<ImageId>,
    age_s: i64,
    status: crate::domain::task::TaskStatus,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> crate::domain::task::Task {
    let at = chrono::Utc::now() - chrono::Duration::seconds(age_s);
    crate::domain::task::Task {
        request_id: Some("req-test".into()),
        expires_at: expires,
        ..crate::domain::task::tests::task_at(owner, image, status, at)
    }
}

#[tokio::test]
async fn tasks_api_lists_shows_and_refuses_delete() {
    use crate::domain::task::TaskStatus;
    let h = harness().await;
    let image: ImageId = h
        .create(&member("p1"), json!({"name": "t"}))
        .await
        .parse()
        .unwrap();
    let db = &h.t.app.db;
    let later = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    let expired = Some(chrono::Utc::now() - chrono::Duration::hours(1));
    let old = task_of("p1", Some(image), 30, TaskStatus::Success, later);
    let new = task_of("p1", Some(image), 10, TaskStatus::Processing, None);
    let other = task_of("p2", None, 20, TaskStatus::Failure, later);
    let gone = task_of("p1", Some(image), 5, TaskStatus::Failure, expired);
    for t in [&old, &new, &other, &gone] {
        crate::db::tasks::insert(db, t).await.unwrap();
    }

    // admin only by default (tasks_api_access)
    let r = h.get("/v2/tasks", &member("p1")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = h.get("/v2/tasks", &admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<&str> = r.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    // newest first; the expired one is not shown
    assert_eq!(ids, [new.id.as_str(), other.id.as_str(), old.id.as_str()]);
    assert_eq!(r.body["schema"], "/v2/schemas/tasks");
    assert_eq!(r.body["first"], "/v2/tasks");
    assert!(r.body["tasks"][0].get("input").is_none());

    // filters and pages
    let r = h.get("/v2/tasks?status=success", &admin()).await;
    assert_eq!(r.body["tasks"].as_array().unwrap().len(), 1);
    let r = h.get("/v2/tasks?limit=2&sort_dir=asc", &admin()).await;
    assert_eq!(r.body["tasks"][0]["id"], old.id.as_str());
    let next = r.body["next"].as_str().unwrap().to_owned();
    assert!(next.contains(&format!("marker={}", other.id)), "{next}");
    let r = h.get(&next, &admin()).await;
    assert_eq!(r.body["tasks"][0]["id"], new.id.as_str());
    assert!(r.body.get("next").is_none());
    let r = h.get("/v2/tasks?status=done", &admin()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // one task
    let r = h.get(&format!("/v2/tasks/{}", old.id), &admin()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "success");
    assert_eq!(r.body["image_id"], image.to_string());
    assert_eq!(r.body["self"], format!("/v2/tasks/{}", old.id));
    let r = h.get(&format!("/v2/tasks/{}", gone.id), &admin()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .get(&format!("/v2/tasks/{}", uuid::Uuid::new_v4()), &admin())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // never deleted by hand
    let r = h.delete(&format!("/v2/tasks/{}", old.id), &admin()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "GET");

    // the image's tasks (Glance's row shape), for whoever sees the image
    let r = h
        .get(&format!("/v2/images/{image}/tasks"), &member("p1"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = r.body["tasks"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", r.body);
    assert_eq!(list[0]["id"], old.id.as_str());
    assert_eq!(list[0]["deleted"], false);
    assert_eq!(list[0]["request_id"], "req-test");

    // expired tasks are purged
    assert_eq!(
        crate::db::tasks::purge_expired(db, chrono::Utc::now())
            .await
            .unwrap(),
        1
    );
    assert!(crate::db::tasks::get(db, &gone.id).await.unwrap().is_none());
}

// === locations (show_multiple_locations, show_image_direct_url, GET …/locations) ===

async fn harness_with(tweak: impl FnOnce(&mut shared::config::Config)) -> Harness {
    let t = TestApp::with_config(tweak).await;
    let router = router(t.app.clone());
    Harness { t, router }
}

/// An active image of project p1 with one location; its id and location.
async fn image_with_data(h: &Harness) -> (String, String) {
    let id = h
        .create(
            &member("p1"),
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let url = format!("file://{}", h.t.app.config.store_dir().join(&id).display());
    h.set_status(&id, ImageStatus::Active, Some(url.clone()))
        .await;
    (id, url)
}

#[tokio::test]
async fn locations_are_shown_as_configured_and_fetched_by_services() {
    let h = harness_with(|c| {
        c.show_multiple_locations = true;
        c.show_image_direct_url = true;
    })
    .await;
    let me = member("p1");
    // a queued image: locations [], no direct_url
    let queued = h
        .create(
            &me,
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let r = h.get(&format!("/v2/images/{queued}"), &me).await;
    assert_eq!(r.body["locations"], json!([]), "{}", r.body);
    assert!(r.body.get("direct_url").is_none(), "{}", r.body);

    let (id, url) = image_with_data(&h).await;
    let want = json!([{"url": url, "metadata": {}}]);
    for who in [me.clone(), reader("p1"), admin()] {
        let r = h.get(&format!("/v2/images/{id}"), &who).await;
        assert_eq!(r.body["direct_url"], url.as_str(), "{}", r.body);
        assert_eq!(r.body["locations"], want, "{}", r.body);
    }
    let r = h.get("/v2/images", &me).await;
    let listed: Vec<&Value> = r.body["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] == id.as_str())
        .collect();
    assert_eq!(listed[0]["locations"], want);

    // GET …/locations: fetch_image_location (service or admin)
    let path = format!("/v2/images/{id}/locations");
    let r = h.get(&path, &me).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.to_string().contains("fetch_image_location"),
        "{}",
        r.body
    );
    // (a caller who can see the image: get_image, and a private image is 404 to others)
    let service = vec![
        ("x-project-id", "p1".to_owned()),
        ("x-roles", "service,reader".to_owned()),
    ];
    for who in [admin(), service] {
        let r = h.get(&path, &who).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body, want);
    }
    // an image the caller cannot see: 404
    let r = h.get(&path, &member("p2")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // deactivated: users see no locations, admins do
    let deactivate = format!("/v2/images/{id}/actions/deactivate");
    let r = h.call(Method::POST, &deactivate, &admin(), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = h.get(&format!("/v2/images/{id}"), &me).await;
    assert_eq!(r.body["locations"], json!([]), "{}", r.body);
    assert!(r.body.get("direct_url").is_none(), "{}", r.body);
    let r = h.get(&format!("/v2/images/{id}"), &admin()).await;
    assert_eq!(r.body["locations"], want, "{}", r.body);
}

#[tokio::test]
async fn locations_are_hidden_by_default() {
    let h = harness().await;
    let (id, url) = image_with_data(&h).await;
    let r = h.get(&format!("/v2/images/{id}"), &admin()).await;
    assert!(r.body.get("locations").is_none(), "{}", r.body);
    assert!(r.body.get("direct_url").is_none(), "{}", r.body);
    assert!(!r.body.to_string().contains(&url), "{}", r.body);
}

#[tokio::test]
async fn locations_only_to_requests_with_a_service_token() {
    let h = harness_with(|c| {
        c.show_multiple_locations = true;
        c.show_image_direct_url = true;
        c.show_locations_only_to_services = true;
    })
    .await;
    let (id, url) = image_with_data(&h).await;
    let show = format!("/v2/images/{id}");
    let path = format!("/v2/images/{id}/locations");
    // users, admins too, see no store URL anywhere
    for who in [member("p1"), admin()] {
        let r = h.get(&show, &who).await;
        assert!(r.body.get("locations").is_none(), "{}", r.body);
        assert!(r.body.get("direct_url").is_none(), "{}", r.body);
        let r = h.get("/v2/images", &who).await;
        assert!(!r.body.to_string().contains(&url), "{}", r.body);
    }
    assert_eq!(h.get(&path, &admin()).await.status, StatusCode::FORBIDDEN);
    // a user's request with the service token's roles (keystonemiddleware's X-Service-Roles)
    let mut nova = member("p1");
    nova.push(("x-service-roles", "service".to_owned()));
    let r = h.get(&show, &nova).await;
    assert_eq!(r.body["direct_url"], url.as_str(), "{}", r.body);
    assert_eq!(r.body["locations"][0]["url"], url.as_str(), "{}", r.body);
    // fetch_image_location still asks for a service or admin user role
    assert_eq!(h.get(&path, &nova).await.status, StatusCode::FORBIDDEN);
    let mut nova_admin = admin();
    nova_admin.push(("x-project-id", "p9".to_owned()));
    nova_admin.push(("x-roles", "admin".to_owned()));
    nova_admin.push(("x-service-roles", "service".to_owned()));
    let r = h.get(&path, &nova_admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body[0]["url"], url.as_str());
}

#[tokio::test]
async fn a_location_removed_by_patch_has_its_data_deleted() {
    let h = harness_with(|c| c.show_multiple_locations = true).await;
    let (id, first) = image_with_data(&h).await;
    let iid: ImageId = id.parse().unwrap();
    let second = format!("{first}-copy");
    let added = db::images::add_location(&h.t.app.db, iid, "file", &second, chrono::Utc::now());
    assert!(added.await.unwrap());
    let path = format!("/v2/images/{id}");
    let remove =
        |pos: &str| json!([{"op": "remove", "path": format!("/locations/{pos}")}]).to_string();
    // delete_image_location is admin-only
    let r = h
        .call(
            Method::PATCH,
            &path,
            &member("p1"),
            Some((V21, remove("0"))),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.to_string().contains("delete_image_location"),
        "{}",
        r.body
    );
    let r = h
        .call(Method::PATCH, &path, &admin(), Some((V21, remove("2"))))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = h
        .call(Method::PATCH, &path, &admin(), Some((V21, remove("0"))))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["locations"],
        json!([{"url": second, "metadata": {}}])
    );
    // the removed location's data goes to the data plane as a delete job
    let jobs = db::jobs::all(&h.t.app.db).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].url.as_str()),
        ("delete_data", first.as_str())
    );
    // the last one stays
    let r = h
        .call(Method::PATCH, &path, &admin(), Some((V21, remove("0"))))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("Cannot remove last location in the image."),
        "{}",
        r.body
    );
    assert_eq!(
        h.get(&path, &admin()).await.body["locations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
