//! The catalog's routes through the whole router (`oneshot`), on a scratch database of every
//! backend: Glance's functional tests' scenarios, status codes and messages.

use crate::app::App;
use crate::db::scratch::ScratchDb;
use crate::db::{Backend, Db};
use crate::metrics::Metrics;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Harness {
    backend: Backend,
    router: Router,
    _scratch: ScratchDb,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

type Who = Vec<(&'static str, String)>;

fn admin(project: &str) -> Who {
    vec![
        ("x-project-id", project.to_owned()),
        ("x-roles", "admin".to_owned()),
    ]
}

fn member(project: &str) -> Who {
    vec![
        ("x-project-id", project.to_owned()),
        ("x-roles", "reader,member".to_owned()),
    ]
}

fn reader(project: &str) -> Who {
    vec![
        ("x-project-id", project.to_owned()),
        ("x-roles", "reader".to_owned()),
    ]
}

fn no_role(project: &str) -> Who {
    vec![
        ("x-project-id", project.to_owned()),
        ("x-roles", "".to_owned()),
    ]
}

async fn harness(backend: Backend) -> Harness {
    let scratch = ScratchDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::test_util::config_in(dir.path());
    let db = Db::connect(scratch.url(), 4).await.unwrap();
    db.migrate().await.unwrap();
    let app = App::new(config, db, Metrics::new());
    Harness {
        backend,
        router: crate::api::router(app),
        _scratch: scratch,
        _dir: dir,
    }
}

const NS: &str = "/v2/metadefs/namespaces";

impl Harness {
    async fn call(&self, method: Method, uri: &str, who: &Who, body: Option<Value>) -> Reply {
        self.call_with(method, uri, who, &[], body).await
    }

    async fn call_with(
        &self,
        method: Method,
        uri: &str,
        who: &Who,
        extra: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "glint.test:9292");
        for (k, v) in who.iter() {
            req = req.header(*k, v.as_str());
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                let text = v.to_string();
                req = req
                    .header("content-type", "application/json")
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

    async fn get(&self, uri: &str, who: &Who) -> Reply {
        self.call(Method::GET, uri, who, None).await
    }

    async fn post(&self, uri: &str, who: &Who, body: Value) -> Reply {
        self.call(Method::POST, uri, who, Some(body)).await
    }

    async fn put(&self, uri: &str, who: &Who, body: Value) -> Reply {
        self.call(Method::PUT, uri, who, Some(body)).await
    }

    async fn delete(&self, uri: &str, who: &Who) -> Reply {
        self.call(Method::DELETE, uri, who, None).await
    }

    /// Creates a namespace as an admin of `owner`, expecting 201.
    async fn namespace(&self, body: Value) -> Value {
        let owner = body["owner"].as_str().unwrap_or("p1").to_owned();
        let r = self.post(NS, &admin(&owner), body).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{:?} {}",
            self.backend,
            r.body
        );
        r.body
    }

    fn expect(&self, r: &Reply, status: StatusCode, what: &str) {
        assert_eq!(r.status, status, "{:?} {what}: {}", self.backend, r.body);
    }
}

async fn on_every_backend<F, Fut>(test: F)
where
    F: Fn(Harness) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in Backend::ALL {
        test(harness(backend).await).await;
    }
}

// === namespaces ===

#[tokio::test]
async fn namespace_lifecycle() {
    on_every_backend(namespace_lifecycle_on).await;
}

async fn namespace_lifecycle_on(h: Harness) {
    let a = admin("p1");
    h.expect(
        &h.get(&format!("{NS}/MyNamespace"), &a).await,
        StatusCode::NOT_FOUND,
        "absent",
    );
    let body = json!({
        "namespace": "MyNamespace",
        "display_name": "My User Friendly Namespace",
        "description": "My description"
    });
    let r = h.post(NS, &a, body.clone()).await;
    h.expect(&r, StatusCode::CREATED, "create");
    assert_eq!(
        r.headers["location"],
        "http://glint.test:9292/v2/metadefs/namespaces/MyNamespace"
    );
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "display_name",
            "namespace",
            "owner",
            "protected",
            "schema",
            "self",
            "updated_at",
            "visibility"
        ]
    );
    assert_eq!(r.body["visibility"], "private");
    assert_eq!(r.body["protected"], false);
    assert_eq!(r.body["owner"], "p1");
    assert_eq!(r.body["self"], "/v2/metadefs/namespaces/MyNamespace");
    assert_eq!(r.body["schema"], "/v2/schemas/metadefs/namespace");
    assert!(r.body["created_at"].as_str().unwrap().ends_with('Z'));

    let dup = h.post(NS, &a, body).await;
    h.expect(&dup, StatusCode::CONFLICT, "duplicate");
    assert_eq!(
        dup.message(),
        "The metadata definition namespace=MyNamespace already exists."
    );

    let r = h.get(&format!("{NS}/MyNamespace"), &a).await;
    h.expect(&r, StatusCode::OK, "show");
    assert!(r.body.get("objects").is_none());

    // update and rename; what the body leaves out goes back to its default
    let r = h
        .put(
            &format!("{NS}/MyNamespace"),
            &a,
            json!({"namespace": "MyNamespace-UPDATED", "display_name": "display_name-UPDATED",
                   "description": "description-UPDATED", "visibility": "private",
                   "protected": true, "owner": "p2"}),
        )
        .await;
    h.expect(&r, StatusCode::OK, "update");
    assert_eq!(r.body["namespace"], "MyNamespace-UPDATED");
    assert_eq!(r.body["protected"], true);
    assert_eq!(r.body["owner"], "p2");
    h.expect(
        &h.get(&format!("{NS}/MyNamespace"), &a).await,
        StatusCode::NOT_FOUND,
        "old name",
    );
    let r = h.get(&format!("{NS}/MyNamespace-UPDATED"), &a).await;
    assert_eq!(r.body["description"], "description-UPDATED");

    // protected: no delete
    let r = h.delete(&format!("{NS}/MyNamespace-UPDATED"), &a).await;
    h.expect(&r, StatusCode::FORBIDDEN, "protected delete");
    assert_eq!(
        r.message(),
        "Metadata definition namespace MyNamespace-UPDATED is protected and cannot be deleted."
    );

    // a rename onto another namespace's name: 409
    h.namespace(json!({"namespace": "Other"})).await;
    let r = h
        .put(
            &format!("{NS}/MyNamespace-UPDATED"),
            &a,
            json!({"namespace": "Other"}),
        )
        .await;
    h.expect(&r, StatusCode::CONFLICT, "rename clash");
    assert!(
        r.message().contains("same name of Other"),
        "{}",
        r.message()
    );

    let r = h
        .put(
            &format!("{NS}/MyNamespace-UPDATED"),
            &a,
            json!({"namespace": "MyNamespace-UPDATED"}),
        )
        .await;
    h.expect(&r, StatusCode::OK, "unprotect");
    assert_eq!(r.body["protected"], false);
    assert_eq!(r.body["owner"], "p1", "owner back to the caller's project");
    assert!(r.body.get("description").is_none(), "cleared");
    h.expect(
        &h.delete(&format!("{NS}/MyNamespace-UPDATED"), &a).await,
        StatusCode::NO_CONTENT,
        "delete",
    );
    h.expect(
        &h.get(&format!("{NS}/MyNamespace-UPDATED"), &a).await,
        StatusCode::NOT_FOUND,
        "gone",
    );
    h.expect(
        &h.delete(&format!("{NS}/MyNamespace-UPDATED"), &a).await,
        StatusCode::NOT_FOUND,
        "twice",
    );

    // bodies
    for (body, status, want) in [
        (
            json!({"namespace": "x", "self": "/y"}),
            StatusCode::FORBIDDEN,
            "Attribute 'self' is read-only.",
        ),
        (
            json!({"namespace": "x", "created_at": "now"}),
            StatusCode::FORBIDDEN,
            "read-only",
        ),
        (
            json!({"display_name": "x"}),
            StatusCode::BAD_REQUEST,
            "'namespace' is a required property",
        ),
        (
            json!({"namespace": "n".repeat(81)}),
            StatusCode::BAD_REQUEST,
            "is too long",
        ),
        (
            json!({"namespace": "x", "visibility": "shared"}),
            StatusCode::BAD_REQUEST,
            "is not one of",
        ),
        (
            json!({"namespace": "x", "foo": 1}),
            StatusCode::BAD_REQUEST,
            "unexpected",
        ),
        (
            json!({"namespace": "x\u{1F693}"}),
            StatusCode::BAD_REQUEST,
            "Couldn't create metadata namespace: Namespace can't contain 4 byte unicode characters.",
        ),
    ] {
        let r = h.post(NS, &a, body.clone()).await;
        h.expect(&r, status, &body.to_string());
        assert!(r.message().contains(want), "{body}: {}", r.message());
    }
    let r = h.call(Method::POST, NS, &a, None).await;
    h.expect(&r, StatusCode::BAD_REQUEST, "no body");

    // 405 with Allow, as Glance's reject_method_resource
    let r = h.call(Method::PATCH, NS, &a, Some(json!({}))).await;
    h.expect(&r, StatusCode::METHOD_NOT_ALLOWED, "PATCH namespaces");
    let allow = r.headers["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let r = h
        .call(Method::POST, &format!("{NS}/Other"), &a, Some(json!({})))
        .await;
    h.expect(&r, StatusCode::METHOD_NOT_ALLOWED, "POST namespace");
    let r = h
        .call(
            Method::PUT,
            "/v2/metadefs/resource_types",
            &a,
            Some(json!({})),
        )
        .await;
    h.expect(&r, StatusCode::METHOD_NOT_ALLOWED, "PUT resource_types");
    let r = h
        .get(&format!("{NS}/Other/resource_types/OS::Nova::Flavor"), &a)
        .await;
    h.expect(&r, StatusCode::METHOD_NOT_ALLOWED, "GET association");
    let r = h
        .call(
            Method::PATCH,
            &format!("{NS}/Other/tags/t"),
            &a,
            Some(json!({})),
        )
        .await;
    h.expect(&r, StatusCode::METHOD_NOT_ALLOWED, "PATCH tag");
    // GET/DELETE routes refuse a body, as Glance's body_reject
    let r = h
        .call(Method::GET, &format!("{NS}/Other"), &a, Some(json!({})))
        .await;
    h.expect(&r, StatusCode::BAD_REQUEST, "body on show");
}

#[tokio::test]
async fn namespace_with_content_show_prefix_and_cascade() {
    on_every_backend(namespace_with_content_on).await;
}

async fn namespace_with_content_on(h: Harness) {
    let a = admin("p1");
    let created = h
        .namespace(json!({
            "namespace": "Hw",
            "visibility": "public",
            "resource_type_associations": [
                {"name": "OS::Nova::Flavor", "prefix": "hw:"},
                {"name": "OS::Glance::Image", "prefix": "hw_", "properties_target": "image"}
            ],
            "properties": {"cpu_cores": {"type": "integer", "title": "Cores", "default": 4, "minimum": 1}},
            "objects": [{"name": "Numa", "required": ["numa_nodes"],
                         "properties": {"numa_nodes": {"type": "integer", "title": "Nodes"}}}],
            "tags": [{"name": "cpu"}, {"name": "numa"}]
        }))
        .await;
    // the answer echoes the body (normalized), as Glance's
    assert_eq!(created["properties"]["cpu_cores"]["default"], "4");
    assert_eq!(
        created["objects"],
        json!([{"name": "Numa", "required": ["numa_nodes"],
        "properties": {"numa_nodes": {"type": "integer", "title": "Nodes"}}}])
    );
    assert_eq!(created["tags"], json!([{"name": "cpu"}, {"name": "numa"}]));
    assert_eq!(
        created["resource_type_associations"][1]["properties_target"],
        "image"
    );

    let r = h.get(&format!("{NS}/Hw"), &reader("p9")).await;
    h.expect(&r, StatusCode::OK, "show public as another project");
    assert_eq!(r.body["properties"]["cpu_cores"]["minimum"], 1);
    assert_eq!(
        r.body["objects"][0]["self"],
        "/v2/metadefs/namespaces/Hw/objects/Numa"
    );
    assert_eq!(r.body["objects"][0]["required"], json!(["numa_nodes"]));
    let mut tags: Vec<&str> = r.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["cpu", "numa"]);
    assert_eq!(
        r.body["resource_type_associations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let r = h
        .get(&format!("{NS}/Hw?resource_type=OS::Nova::Flavor"), &a)
        .await;
    h.expect(&r, StatusCode::OK, "show prefixed");
    assert!(
        r.body["properties"].get("hw:cpu_cores").is_some(),
        "{}",
        r.body
    );
    assert!(
        r.body["objects"][0]["properties"]
            .get("hw:numa_nodes")
            .is_some()
    );
    assert_eq!(r.body["objects"][0]["required"], json!(["hw:numa_nodes"]));
    let r = h
        .get(
            &format!("{NS}/Hw?resource_type=OS%3A%3AGlance%3A%3AImage"),
            &a,
        )
        .await;
    assert!(
        r.body["properties"].get("hw_cpu_cores").is_some(),
        "{}",
        r.body
    );
    let r = h
        .get(&format!("{NS}/Hw?resource_type=OS::Cinder::Volume"), &a)
        .await;
    assert!(
        r.body["properties"].get("cpu_cores").is_some(),
        "not associated: no prefix"
    );
    h.expect(
        &h.get(&format!("{NS}/Hw?visibility=bogus"), &a).await,
        StatusCode::BAD_REQUEST,
        "show visibility",
    );

    // property show through the prefix
    let r = h
        .get(
            &format!("{NS}/Hw/properties/hw:cpu_cores?resource_type=OS::Nova::Flavor"),
            &a,
        )
        .await;
    h.expect(&r, StatusCode::OK, "prefixed property");
    assert_eq!(r.body["name"], "cpu_cores");
    let r = h
        .get(
            &format!("{NS}/Hw/properties/cpu_cores?resource_type=OS::Nova::Flavor"),
            &a,
        )
        .await;
    h.expect(&r, StatusCode::NOT_FOUND, "prefix missing");
    assert_eq!(
        r.message(),
        "Property cpu_cores does not start with the expected resource type association prefix of 'hw:'."
    );
    let r = h
        .get(
            &format!("{NS}/Hw/properties/cpu_cores?resource_type=Nope"),
            &a,
        )
        .await;
    h.expect(&r, StatusCode::NOT_FOUND, "unknown resource type");
    let r = h
        .get(
            &format!("{NS}/Hw/properties/cpu_cores?resource_type=OS::Cinder::Volume"),
            &a,
        )
        .await;
    h.expect(&r, StatusCode::NOT_FOUND, "not associated");

    // what a show gave can be sent back (glanceclient's update: less self, schema and the
    // times); only the namespace's fields change
    let mut shown = h.get(&format!("{NS}/Hw"), &a).await.body;
    for key in ["self", "schema", "created_at", "updated_at"] {
        shown.as_object_mut().unwrap().remove(key);
    }
    shown["display_name"] = json!("Hardware");
    let r = h.put(&format!("{NS}/Hw"), &a, shown).await;
    h.expect(&r, StatusCode::OK, "round trip");
    assert_eq!(r.body["display_name"], "Hardware");
    assert!(r.body.get("objects").is_none());
    assert_eq!(
        h.get(&format!("{NS}/Hw/objects"), &a).await.body["objects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = h
        .put(
            &format!("{NS}/Hw"),
            &a,
            json!({"namespace": "Hw", "visibility": "public",
        "properties": {"p": {"type": "bogus", "title": "t"}}}),
        )
        .await;
    h.expect(&r, StatusCode::BAD_REQUEST, "update checks the content too");

    // embedded duplicates: 409, nothing created
    let r = h
        .post(
            NS,
            &a,
            json!({"namespace": "Dup", "tags": [{"name": "x"}, {"name": "x"}]}),
        )
        .await;
    h.expect(&r, StatusCode::CONFLICT, "duplicate embedded tags");
    let r = h
        .post(
            NS,
            &a,
            json!({"namespace": "Dup", "objects": [{"name": "o"}, {"name": "o"}]}),
        )
        .await;
    h.expect(&r, StatusCode::CONFLICT, "duplicate embedded objects");
    h.expect(
        &h.get(&format!("{NS}/Dup"), &a).await,
        StatusCode::NOT_FOUND,
        "not created",
    );
    // an embedded property is checked as one posted alone would be
    let r = h
        .post(
            NS,
            &a,
            json!({"namespace": "Bad", "properties": {"p": {"type": "text", "title": "t"}}}),
        )
        .await;
    h.expect(&r, StatusCode::BAD_REQUEST, "bad embedded property");

    // deleting the namespace deletes its content; a new one of that name is empty
    h.expect(
        &h.delete(&format!("{NS}/Hw"), &a).await,
        StatusCode::NO_CONTENT,
        "delete",
    );
    h.namespace(json!({"namespace": "Hw"})).await;
    let r = h.get(&format!("{NS}/Hw"), &a).await;
    for key in [
        "objects",
        "properties",
        "tags",
        "resource_type_associations",
    ] {
        assert!(
            r.body.get(key).is_none(),
            "{:?} {key}: {}",
            h.backend,
            r.body
        );
    }
    assert_eq!(
        h.get(&format!("{NS}/Hw/objects"), &a).await.body["objects"],
        json!([])
    );
    // the resource types stay
    let r = h.get("/v2/metadefs/resource_types", &a).await;
    assert!(
        r.body["resource_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "OS::Nova::Flavor")
    );
}

#[tokio::test]
async fn namespace_lists() {
    on_every_backend(namespace_lists_on).await;
}

async fn namespace_lists_on(h: Harness) {
    for (name, owner, vis) in [
        ("p1_public", "p1", "public"),
        ("p1_private", "p1", "private"),
        ("p2_public", "p2", "public"),
        ("p2_private", "p2", "private"),
    ] {
        h.namespace(
            json!({"namespace": name, "owner": owner, "visibility": vis, "display_name": name}),
        )
        .await;
    }
    let a = admin("p1");
    let r = h
        .post(
            &format!("{NS}/p2_private/resource_types"),
            &a,
            json!({"name": "OS::Glance::Image"}),
        )
        .await;
    h.expect(&r, StatusCode::CREATED, "associate");
    let r = h
        .post(
            &format!("{NS}/p1_public/resource_types"),
            &a,
            json!({"name": "OS::Nova::Flavor", "prefix": "f:"}),
        )
        .await;
    h.expect(&r, StatusCode::CREATED, "associate 2");

    let names = |r: &Reply| -> Vec<String> {
        r.body["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = h.get(NS, &a).await;
    h.expect(&r, StatusCode::OK, "list");
    // newest first
    assert_eq!(
        names(&r),
        ["p2_private", "p2_public", "p1_private", "p1_public"]
    );
    assert_eq!(r.body["first"], "/v2/metadefs/namespaces");
    assert_eq!(r.body["schema"], "/v2/schemas/metadefs/namespaces");
    assert!(r.body.get("next").is_none());
    let listed = &r.body["namespaces"][3];
    assert_eq!(listed["resource_type_associations"][0]["prefix"], "f:");
    assert!(
        r.body["namespaces"][1]
            .get("resource_type_associations")
            .is_none()
    );

    // each project sees its own and the public ones
    for (project, want) in [
        ("p1", vec!["p2_public", "p1_private", "p1_public"]),
        ("p2", vec!["p2_private", "p2_public", "p1_public"]),
        ("p3", vec!["p2_public", "p1_public"]),
    ] {
        let r = h.get(NS, &member(project)).await;
        h.expect(&r, StatusCode::OK, project);
        assert_eq!(names(&r), want, "{:?} {project}", h.backend);
    }
    assert_eq!(
        names(
            &h.get(&format!("{NS}?visibility=private"), &member("p1"))
                .await
        ),
        ["p1_private"]
    );
    assert_eq!(
        names(&h.get(&format!("{NS}?visibility=public"), &a).await),
        ["p2_public", "p1_public"]
    );
    assert_eq!(
        names(
            &h.get(
                &format!("{NS}?resource_types=OS::Glance::Image,OS::Nova::Flavor"),
                &a
            )
            .await
        ),
        ["p2_private", "p1_public"]
    );
    assert!(
        names(
            &h.get(
                &format!("{NS}?resource_types=OS::Glance::Image"),
                &member("p1")
            )
            .await
        )
        .is_empty()
    );

    // pages of two, by name ascending, with first/next links that carry the query
    let r = h
        .get(&format!("{NS}?limit=2&sort_key=namespace&sort_dir=asc"), &a)
        .await;
    assert_eq!(names(&r), ["p1_private", "p1_public"]);
    assert_eq!(
        r.body["first"],
        "/v2/metadefs/namespaces?limit=2&sort_key=namespace&sort_dir=asc"
    );
    let next = r.body["next"].as_str().unwrap().to_owned();
    assert_eq!(
        next,
        "/v2/metadefs/namespaces?limit=2&sort_key=namespace&sort_dir=asc&marker=p1_public"
    );
    let r = h.get(&next, &a).await;
    assert_eq!(names(&r), ["p2_private", "p2_public"]);
    let r = h.get(r.body["next"].as_str().unwrap(), &a).await;
    assert!(names(&r).is_empty());
    assert!(r.body.get("next").is_none());
    assert_eq!(
        r.body["first"],
        "/v2/metadefs/namespaces?limit=2&sort_key=namespace&sort_dir=asc"
    );
    // by display name descending
    let r = h
        .get(
            &format!("{NS}?sort_key=display_name&sort_dir=desc&limit=3"),
            &a,
        )
        .await;
    assert_eq!(names(&r), ["p2_public", "p2_private", "p1_public"]);
    let r = h.get(&format!("{NS}?limit=0"), &a).await;
    assert!(names(&r).is_empty() && r.body.get("next").is_none());

    // parameters
    for (query, status, want) in [
        (
            "limit=x",
            StatusCode::BAD_REQUEST,
            "limit param must be an integer",
        ),
        (
            "limit=-1",
            StatusCode::BAD_REQUEST,
            "limit param must be positive",
        ),
        (
            "sort_dir=up",
            StatusCode::BAD_REQUEST,
            "Invalid sort direction: up",
        ),
        (
            "visibility=shared",
            StatusCode::BAD_REQUEST,
            "Invalid visibility value: shared",
        ),
        ("sort_key=size", StatusCode::BAD_REQUEST, "Invalid sort key"),
        (
            "marker=nope",
            StatusCode::NOT_FOUND,
            "Metadata definition namespace=nope was not found.",
        ),
    ] {
        let r = h.get(&format!("{NS}?{query}"), &a).await;
        h.expect(&r, status, query);
        assert!(r.message().contains(want), "{query}: {}", r.message());
    }
    // another project's private namespace as a marker: Glance's 403
    let r = h
        .get(&format!("{NS}?marker=p2_private"), &member("p1"))
        .await;
    h.expect(&r, StatusCode::FORBIDDEN, "invisible marker");
    // listing needs a reader: no role at all is refused
    let r = h.get(NS, &no_role("p1")).await;
    h.expect(&r, StatusCode::NOT_FOUND, "no role");
}

// === objects ===

#[tokio::test]
async fn objects() {
    on_every_backend(objects_on).await;
}

async fn objects_on(h: Harness) {
    let a = admin("p1");
    h.namespace(json!({"namespace": "MyNamespace", "visibility": "public", "owner": "p1"}))
        .await;
    let base = format!("{NS}/MyNamespace/objects");
    h.expect(
        &h.get(&format!("{base}/object1"), &a).await,
        StatusCode::NOT_FOUND,
        "absent",
    );
    let body = json!({
        "name": "object1",
        "description": "object1 description.",
        "required": ["property1"],
        "properties": {
            "property1": {"type": "integer", "title": "property1", "description": "property1 description",
                          "operators": ["<all-in>"], "default": 100, "minimum": 100, "maximum": 30000369},
            "property2": {"type": "string", "title": "property2", "description": "property2 description ",
                          "default": "value2", "minLength": 2, "maxLength": 50}
        }
    });
    let r = h.post(&base, &a, body.clone()).await;
    h.expect(&r, StatusCode::CREATED, "create");
    assert_eq!(
        r.body["self"],
        "/v2/metadefs/namespaces/MyNamespace/objects/object1"
    );
    let r = h.post(&base, &a, body).await;
    h.expect(&r, StatusCode::CONFLICT, "duplicate");
    assert_eq!(
        r.message(),
        "A metadata definition object with name=object1 already exists in namespace=MyNamespace."
    );

    let r = h.get(&format!("{base}/object1"), &a).await;
    h.expect(&r, StatusCode::OK, "show");
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "description",
            "name",
            "properties",
            "required",
            "schema",
            "self",
            "updated_at"
        ]
    );
    assert_eq!(r.body["properties"]["property1"]["default"], "100");
    assert_eq!(
        r.body["properties"]["property2"],
        json!({"type": "string", "title": "property2",
        "description": "property2 description ", "default": "value2", "minLength": 2, "maxLength": 50})
    );
    assert_eq!(r.body["schema"], "/v2/schemas/metadefs/object");

    // an object made with just a name shows empty required/properties, its create answer none
    let r = h.post(&base, &a, json!({"name": "bare"})).await;
    assert!(r.body.get("required").is_none() && r.body.get("properties").is_none());
    let r = h.get(&format!("{base}/bare"), &a).await;
    assert_eq!(
        (r.body["required"].clone(), r.body["properties"].clone()),
        (json!([]), json!({}))
    );

    // update with rename; a clash is 409
    let r = h
        .put(&format!("{base}/object1"), &a, json!({"name": "bare"}))
        .await;
    h.expect(&r, StatusCode::CONFLICT, "rename clash");
    assert!(
        r.message()
            .contains("duplicate metadata definition object with the same name=bare")
    );
    let r = h
        .put(&format!("{base}/object1"), &a, json!({"name": "object1-UPDATED", "description": "desc-UPDATED",
              "required": ["property2"], "properties": {"property2": {"type": "string", "title": "p2", "confidential": true}}}))
        .await;
    h.expect(&r, StatusCode::OK, "update");
    assert_eq!(r.body["name"], "object1-UPDATED");
    let r = h.get(&format!("{base}/object1-UPDATED"), &a).await;
    assert_eq!(r.body["required"], json!(["property2"]));
    assert_eq!(r.body["properties"]["property2"]["confidential"], true);
    h.expect(
        &h.get(&format!("{base}/object1"), &a).await,
        StatusCode::NOT_FOUND,
        "old name",
    );
    let r = h
        .put(&format!("{base}/nope"), &a, json!({"name": "x"}))
        .await;
    h.expect(&r, StatusCode::NOT_FOUND, "update missing");
    assert_eq!(r.message(), "Could not find metadata object nope");

    let r = h.get(&base, &reader("p9")).await;
    h.expect(&r, StatusCode::OK, "list");
    assert_eq!(r.body["schema"], "v2/schemas/metadefs/objects");
    let names: Vec<&str> = r.body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["object1-UPDATED", "bare"]);
    h.expect(
        &h.get(&format!("{base}?limit=0"), &a).await,
        StatusCode::BAD_REQUEST,
        "limit=0",
    );
    h.expect(
        &h.get(&format!("{base}?sort_dir=x"), &a).await,
        StatusCode::BAD_REQUEST,
        "sort_dir",
    );
    h.expect(
        &h.get(&format!("{base}?visibility=shared"), &a).await,
        StatusCode::OK,
        "shared is accepted here",
    );

    for (body, status) in [
        (json!({"name": "o".repeat(81)}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "o", "properties": {"p": {"type": "integer", "title": "t", "test-key": "v"}}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "o", "properties": {"p": {"type": "integer", "title": "t", "confidential": true}}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"description": "no name"}), StatusCode::BAD_REQUEST),
        (json!({"name": "o", "schema": "x"}), StatusCode::FORBIDDEN),
        (json!({"name": "o\u{1F693}"}), StatusCode::BAD_REQUEST),
    ] {
        let r = h.post(&base, &a, body.clone()).await;
        h.expect(&r, status, &body.to_string());
    }
    let r = h
        .post(&format!("{NS}/Nope/objects"), &a, json!({"name": "o"}))
        .await;
    h.expect(&r, StatusCode::NOT_FOUND, "no namespace");
    assert_eq!(
        r.message(),
        "Metadata definition namespace=Nope was not found."
    );

    // a protected namespace keeps its objects
    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public", "protected": true}),
    )
    .await;
    let r = h.delete(&format!("{base}/bare"), &a).await;
    h.expect(&r, StatusCode::FORBIDDEN, "protected object");
    assert_eq!(
        r.message(),
        "Metadata definition object bare is protected and cannot be deleted."
    );
    h.expect(
        &h.delete(&base, &a).await,
        StatusCode::FORBIDDEN,
        "protected delete all",
    );
    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public"}),
    )
    .await;
    h.expect(
        &h.delete(&format!("{base}/bare"), &a).await,
        StatusCode::NO_CONTENT,
        "delete",
    );
    h.expect(
        &h.delete(&format!("{base}/bare"), &a).await,
        StatusCode::NOT_FOUND,
        "delete twice",
    );
    h.expect(
        &h.delete(&base, &a).await,
        StatusCode::NO_CONTENT,
        "delete all",
    );
    assert_eq!(h.get(&base, &a).await.body["objects"], json!([]));
}

// === properties ===

#[tokio::test]
async fn properties() {
    on_every_backend(properties_on).await;
}

async fn properties_on(h: Harness) {
    let a = admin("p1");
    h.namespace(
        json!({"namespace": "MyNamespace", "visibility": "public", "owner": "The Test Owner",
        "resource_type_associations": [{"name": "MyResourceType", "prefix": "MyPrefix"}]}),
    )
    .await;
    let base = format!("{NS}/MyNamespace/properties");
    h.expect(
        &h.get(&format!("{base}/property1"), &a).await,
        StatusCode::NOT_FOUND,
        "absent",
    );
    let body = json!({"name": "property1", "type": "integer", "title": "property1",
        "description": "property1 description", "default": 100, "minimum": 100,
        "maximum": 30000369, "readonly": false});
    let r = h.post(&base, &a, body.clone()).await;
    h.expect(&r, StatusCode::CREATED, "create");
    assert_eq!(r.body["default"], "100");
    h.expect(
        &h.post(&base, &a, body).await,
        StatusCode::CONFLICT,
        "duplicate",
    );

    let r = h.get(&format!("{base}/property1"), &a).await;
    h.expect(&r, StatusCode::OK, "show");
    assert_eq!(
        r.body,
        json!({"name": "property1", "type": "integer", "title": "property1",
               "description": "property1 description", "default": "100", "minimum": 100,
               "maximum": 30000369, "readonly": false})
    );
    h.expect(
        &h.get(
            &format!("{base}/property1?resource_type=MyResourceType"),
            &a,
        )
        .await,
        StatusCode::NOT_FOUND,
        "no prefix",
    );
    let r = h
        .get(
            &format!("{base}/MyPrefixproperty1?resource_type=MyResourceType"),
            &a,
        )
        .await;
    h.expect(&r, StatusCode::OK, "prefixed");
    assert_eq!(r.body["name"], "property1");
    assert_eq!(r.body["readonly"], false);

    // update and rename
    let r = h
        .put(
            &format!("{base}/property1"),
            &a,
            json!({"name": "property1-UPDATED", "type": "string",
              "title": "string property", "description": "desc-UPDATED", "operators": ["<or>"],
              "default": "value-UPDATED", "minLength": 5, "maxLength": 10, "readonly": true}),
        )
        .await;
    h.expect(&r, StatusCode::OK, "update");
    assert_eq!(r.body["name"], "property1-UPDATED");
    let r = h.get(&format!("{base}/property1-UPDATED"), &a).await;
    assert_eq!(
        (r.body["minLength"].clone(), r.body["operators"].clone()),
        (json!(5), json!(["<or>"]))
    );
    h.post(
        &base,
        &a,
        json!({"name": "other", "type": "string", "title": "o"}),
    )
    .await;
    let r = h
        .put(
            &format!("{base}/other"),
            &a,
            json!({"name": "property1-UPDATED", "type": "string", "title": "o"}),
        )
        .await;
    h.expect(&r, StatusCode::CONFLICT, "rename clash");
    let r = h
        .put(
            &format!("{base}/missing"),
            &a,
            json!({"name": "x", "type": "string", "title": "o"}),
        )
        .await;
    h.expect(&r, StatusCode::NOT_FOUND, "update missing");
    assert_eq!(r.message(), "Could not find property missing");

    let r = h.get(&base, &reader("p9")).await;
    h.expect(&r, StatusCode::OK, "list");
    let mut names: Vec<&str> = r.body["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["other", "property1-UPDATED"]);

    for (body, status, want) in [
        (
            json!({"name": "a".repeat(81), "type": "string", "title": "fake"}),
            StatusCode::BAD_REQUEST,
            "Failed validating 'maxLength' in schema['properties']['name']",
        ),
        (
            json!({"name": "p", "type": "text", "title": "t"}),
            StatusCode::BAD_REQUEST,
            "is not one of",
        ),
        (
            json!({"name": "p", "type": "string"}),
            StatusCode::BAD_REQUEST,
            "'title' is a required property",
        ),
        (
            json!({"type": "string", "title": "t"}),
            StatusCode::BAD_REQUEST,
            "'name' is a required property",
        ),
        (
            json!({"name": "p", "type": "array", "title": "t", "items": {"type": "string", "enum": [1]}}),
            StatusCode::BAD_REQUEST,
            "Wrong type",
        ),
        (
            json!({"name": "p", "type": "string", "title": "t", "created_at": "x"}),
            StatusCode::FORBIDDEN,
            "read-only",
        ),
        (
            json!({"name": "p\u{1F693}", "type": "string", "title": "t"}),
            StatusCode::BAD_REQUEST,
            "Couldn't create metadata property: Name can't contain 4 byte unicode characters.",
        ),
    ] {
        let r = h.post(&base, &a, body.clone()).await;
        h.expect(&r, status, &body.to_string());
        assert!(r.message().contains(want), "{body}: {}", r.message());
    }
    let r = h
        .post(
            &base,
            &a,
            json!({"name": "arr", "type": "array", "title": "t",
        "items": {"type": "string", "enum": ["a", "b"]}, "uniqueItems": true, "minItems": 1}),
        )
        .await;
    h.expect(&r, StatusCode::CREATED, "array property");

    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public", "protected": true}),
    )
    .await;
    let r = h.delete(&format!("{base}/other"), &a).await;
    h.expect(&r, StatusCode::FORBIDDEN, "protected");
    assert_eq!(
        r.message(),
        "Metadata definition property other is protected and cannot be deleted."
    );
    h.expect(
        &h.delete(&base, &a).await,
        StatusCode::FORBIDDEN,
        "protected delete all",
    );
    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public"}),
    )
    .await;
    h.expect(
        &h.delete(&format!("{base}/other"), &a).await,
        StatusCode::NO_CONTENT,
        "delete",
    );
    h.expect(
        &h.get(&format!("{base}/other"), &a).await,
        StatusCode::NOT_FOUND,
        "gone",
    );
    h.expect(
        &h.delete(&base, &a).await,
        StatusCode::NO_CONTENT,
        "delete all",
    );
    assert_eq!(h.get(&base, &a).await.body["properties"], json!({}));
}

// === tags ===

#[tokio::test]
async fn tags() {
    on_every_backend(tags_on).await;
}

async fn tags_on(h: Harness) {
    let a = admin("p1");
    h.namespace(json!({"namespace": "MyNamespace", "visibility": "public"}))
        .await;
    let base = format!("{NS}/MyNamespace/tags");
    let tag1 = format!("{base}/tag1");
    h.expect(&h.get(&tag1, &a).await, StatusCode::NOT_FOUND, "absent");
    let r = h.call(Method::POST, &tag1, &a, None).await;
    h.expect(&r, StatusCode::CREATED, "create one");
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "name", "updated_at"]);
    let r = h.call(Method::POST, &tag1, &a, None).await;
    h.expect(&r, StatusCode::CONFLICT, "duplicate");
    assert_eq!(
        r.message(),
        "A metadata tag with name=tag1 already exists in namespace=MyNamespace. (Please note that metadata tag names are case insensitive)."
    );
    let r = h
        .call(
            Method::POST,
            &format!("{base}/{}", "t".repeat(81)),
            &a,
            None,
        )
        .await;
    h.expect(&r, StatusCode::BAD_REQUEST, "long name");

    let r = h.put(&tag1, &a, json!({"name": "tag1-UPDATED"})).await;
    h.expect(&r, StatusCode::OK, "rename");
    assert_eq!(r.body["name"], "tag1-UPDATED");
    h.expect(
        &h.get(&format!("{base}/tag1-UPDATED"), &a).await,
        StatusCode::OK,
        "renamed",
    );
    h.expect(
        &h.delete(&format!("{base}/tag1-UPDATED"), &a).await,
        StatusCode::NO_CONTENT,
        "delete",
    );
    h.expect(
        &h.get(&format!("{base}/tag1-UPDATED"), &a).await,
        StatusCode::NOT_FOUND,
        "deleted",
    );

    let names = |r: &Reply| -> Vec<String> {
        let mut v: Vec<String> = r.body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let r = h
        .post(
            &base,
            &a,
            json!({"tags": [{"name": "tag1"}, {"name": "tag2"}, {"name": "tag3"}]}),
        )
        .await;
    h.expect(&r, StatusCode::CREATED, "create several");
    assert_eq!(
        r.body,
        json!({"tags": [{"name": "tag1"}, {"name": "tag2"}, {"name": "tag3"}]})
    );
    assert_eq!(names(&h.get(&base, &a).await), ["tag1", "tag2", "tag3"]);
    // a name twice: 409, the tags stay
    let r = h
        .post(
            &base,
            &a,
            json!({"tags": [{"name": "tag4"}, {"name": "tag5"}, {"name": "tag4"}]}),
        )
        .await;
    h.expect(&r, StatusCode::CONFLICT, "bogus duplicate");
    assert!(r.message().contains("name=tag4"));
    assert_eq!(names(&h.get(&base, &a).await).len(), 3);
    // appending
    let append = [("x-openstack-append", "True")];
    let r = h
        .call_with(
            Method::POST,
            &base,
            &a,
            &append,
            Some(json!({"tags": [{"name": "tag4"}, {"name": "tag5"}, {"name": "tag6"}]})),
        )
        .await;
    h.expect(&r, StatusCode::CREATED, "append");
    assert_eq!(names(&h.get(&base, &a).await).len(), 6);
    let r = h
        .call_with(
            Method::POST,
            &base,
            &a,
            &append,
            Some(json!({"tags": [{"name": "tag6"}, {"name": "tag7"}]})),
        )
        .await;
    h.expect(&r, StatusCode::CONFLICT, "append existing");
    assert!(r.message().contains("name=tag6"), "{}", r.message());
    assert_eq!(names(&h.get(&base, &a).await).len(), 6);
    // replacing
    let r = h.post(&base, &a, json!({"tags": [{"name": "only"}]})).await;
    h.expect(&r, StatusCode::CREATED, "replace");
    assert_eq!(names(&h.get(&base, &a).await), ["only"]);
    // an empty list writes nothing
    h.expect(
        &h.post(&base, &a, json!({"tags": []})).await,
        StatusCode::CREATED,
        "empty",
    );
    assert_eq!(names(&h.get(&base, &a).await), ["only"]);
    for (body, status) in [
        (
            json!({"tags": [{"name": "a", "x": 1}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"tags": [{"name": "a"}], "created_at": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (json!({}), StatusCode::BAD_REQUEST),
    ] {
        h.expect(
            &h.post(&base, &a, body.clone()).await,
            status,
            &body.to_string(),
        );
    }

    // list order, limit and marker
    h.post(
        &base,
        &a,
        json!({"tags": [{"name": "b"}, {"name": "c"}, {"name": "a"}]}),
    )
    .await;
    let ordered = |r: &Reply| -> Vec<String> {
        r.body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ordered(
            &h.get(&format!("{base}?sort_key=name&sort_dir=asc"), &a)
                .await
        ),
        ["a", "b", "c"]
    );
    assert_eq!(
        ordered(
            &h.get(&format!("{base}?sort_key=name&sort_dir=desc&limit=2"), &a)
                .await
        ),
        ["c", "b"]
    );
    assert_eq!(
        ordered(
            &h.get(&format!("{base}?sort_key=name&sort_dir=asc&marker=a"), &a)
                .await
        ),
        ["b", "c"]
    );
    assert!(ordered(&h.get(&format!("{base}?limit=0"), &a).await).is_empty());
    let r = h.get(&format!("{base}?marker=zz"), &a).await;
    h.expect(&r, StatusCode::NOT_FOUND, "unknown marker");
    assert_eq!(r.message(), "Could not find metadata tag zz");
    h.expect(
        &h.get(&format!("{base}?limit=-1"), &a).await,
        StatusCode::BAD_REQUEST,
        "negative limit",
    );
    h.expect(
        &h.get(&format!("{base}?sort_key=bogus"), &a).await,
        StatusCode::BAD_REQUEST,
        "sort key",
    );

    let r = h.put(&format!("{base}/a"), &a, json!({"name": "b"})).await;
    h.expect(&r, StatusCode::CONFLICT, "rename clash");

    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public", "protected": true}),
    )
    .await;
    let r = h.delete(&format!("{base}/a"), &a).await;
    h.expect(&r, StatusCode::FORBIDDEN, "protected");
    assert_eq!(
        r.message(),
        "Metadata definition tag a is protected and cannot be deleted."
    );
    h.expect(
        &h.delete(&base, &a).await,
        StatusCode::FORBIDDEN,
        "protected delete all",
    );
    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public"}),
    )
    .await;
    h.expect(
        &h.delete(&base, &a).await,
        StatusCode::NO_CONTENT,
        "delete all",
    );
    assert_eq!(h.get(&base, &a).await.body, json!({"tags": []}));
}

// === resource types ===

#[tokio::test]
async fn resource_types() {
    on_every_backend(resource_types_on).await;
}

async fn resource_types_on(h: Harness) {
    let a = admin("p1");
    let r = h.get("/v2/metadefs/resource_types", &reader("p5")).await;
    h.expect(&r, StatusCode::OK, "list");
    let names: Vec<&str> = r.body["resource_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
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
        ]
    );
    assert!(r.body["resource_types"][0].get("updated_at").is_none());
    assert!(
        r.body["resource_types"][0]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    h.namespace(
        json!({"namespace": "MyNamespace", "visibility": "public", "owner": "The Test Owner"}),
    )
    .await;
    let base = format!("{NS}/MyNamespace/resource_types");
    assert_eq!(
        h.get(&base, &a).await.body,
        json!({"resource_type_associations": []})
    );
    let body = json!({"name": "resource_type1", "prefix": "hw_", "properties_target": "image"});
    let r = h.post(&base, &a, body.clone()).await;
    h.expect(&r, StatusCode::CREATED, "associate");
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "name",
            "prefix",
            "properties_target",
            "updated_at"
        ]
    );
    let r = h.post(&base, &a, body).await;
    h.expect(&r, StatusCode::CONFLICT, "duplicate");
    assert_eq!(
        r.message(),
        "The metadata definition resource-type association of resource-type=resource_type1 to namespace=MyNamespace already exists."
    );
    let r = h.get(&base, &a).await;
    assert_eq!(
        r.body["resource_type_associations"][0]["name"],
        "resource_type1"
    );
    assert_eq!(r.body["resource_type_associations"][0]["prefix"], "hw_");
    // the new type is listed
    let r = h.get("/v2/metadefs/resource_types", &a).await;
    assert_eq!(r.body["resource_types"].as_array().unwrap().len(), 7);
    assert!(r.body["resource_types"][6].get("updated_at").is_some());

    for (body, status) in [
        (json!({"prefix": "x"}), StatusCode::BAD_REQUEST),
        (json!({"name": "r".repeat(81)}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "r", "created_at": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (json!({"name": "r", "bogus": 1}), StatusCode::BAD_REQUEST),
    ] {
        h.expect(
            &h.post(&base, &a, body.clone()).await,
            status,
            &body.to_string(),
        );
    }

    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public", "protected": true}),
    )
    .await;
    let r = h.delete(&format!("{base}/resource_type1"), &a).await;
    h.expect(&r, StatusCode::FORBIDDEN, "protected");
    assert_eq!(
        r.message(),
        "Metadata definition resource-type-association resource_type1 is protected and cannot be deleted."
    );
    h.put(
        &format!("{NS}/MyNamespace"),
        &a,
        json!({"namespace": "MyNamespace", "visibility": "public"}),
    )
    .await;
    h.expect(
        &h.delete(&format!("{base}/resource_type1"), &a).await,
        StatusCode::NO_CONTENT,
        "dissociate",
    );
    let r = h.delete(&format!("{base}/resource_type1"), &a).await;
    h.expect(&r, StatusCode::NOT_FOUND, "dissociate twice");
    assert_eq!(
        r.message(),
        "Failed to find resource type resource_type1 to delete"
    );
    assert_eq!(
        h.get(&base, &a).await.body["resource_type_associations"],
        json!([])
    );
    let r = h.get(&format!("{NS}/Nope/resource_types"), &a).await;
    h.expect(&r, StatusCode::NOT_FOUND, "no namespace");
    assert_eq!(r.message(), "Namespace Nope not found");
}

// === policy ===

#[tokio::test]
async fn policy_by_project_and_role() {
    on_every_backend(policy_on).await;
}

async fn policy_on(h: Harness) {
    for (project, vis) in [("p1", "public"), ("p1", "private"), ("p2", "private")] {
        let name = format!("{project}_{vis}");
        h.namespace(json!({"namespace": name, "owner": project, "visibility": vis}))
            .await;
        let a = admin(project);
        h.post(&format!("{NS}/{name}/objects"), &a, json!({"name": "o"}))
            .await;
        h.post(
            &format!("{NS}/{name}/properties"),
            &a,
            json!({"name": "p", "type": "string", "title": "t"}),
        )
        .await;
        h.call(Method::POST, &format!("{NS}/{name}/tags/t"), &a, None)
            .await;
        h.post(
            &format!("{NS}/{name}/resource_types"),
            &a,
            json!({"name": "OS::Nova::Server"}),
        )
        .await;
    }
    let reads = |ns: &str| {
        vec![
            format!("{NS}/{ns}"),
            format!("{NS}/{ns}/objects"),
            format!("{NS}/{ns}/objects/o"),
            format!("{NS}/{ns}/properties"),
            format!("{NS}/{ns}/properties/p"),
            format!("{NS}/{ns}/tags"),
            format!("{NS}/{ns}/tags/t"),
            format!("{NS}/{ns}/resource_types"),
        ]
    };
    // (who, namespace, status of every read)
    for (who, ns, want) in [
        (reader("p1"), "p1_private", StatusCode::OK),
        (member("p1"), "p1_private", StatusCode::OK),
        (reader("p2"), "p1_public", StatusCode::OK),
        (reader("p2"), "p1_private", StatusCode::NOT_FOUND),
        (member("p2"), "p1_private", StatusCode::NOT_FOUND),
        (admin("p9"), "p2_private", StatusCode::OK),
        (no_role("p1"), "p1_private", StatusCode::NOT_FOUND),
    ] {
        for uri in reads(ns) {
            let r = h.get(&uri, &who).await;
            assert_eq!(r.status, want, "{:?} {who:?} {uri}: {}", h.backend, r.body);
        }
    }
    // another project's private namespace is 404 for writes too, never 403
    let other = member("p2");
    for (method, uri, body) in [
        (
            Method::PUT,
            format!("{NS}/p1_private"),
            Some(json!({"namespace": "p1_private"})),
        ),
        (Method::DELETE, format!("{NS}/p1_private"), None),
        (
            Method::POST,
            format!("{NS}/p1_private/objects"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("{NS}/p1_private/tags"), None),
        (Method::POST, format!("{NS}/p1_private/tags/x"), None),
    ] {
        let r = h.call(method.clone(), &uri, &other, body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{:?} {method} {uri}: {}",
            h.backend,
            r.body
        );
    }
    // the owner's members (and anyone on a public one) may read but not write: 403
    for who in [member("p1"), reader("p1"), member("p2")] {
        for (method, uri, body, rule) in [
            (
                Method::PUT,
                format!("{NS}/p1_public"),
                Some(json!({"namespace": "p1_public"})),
                "modify_metadef_namespace",
            ),
            (
                Method::DELETE,
                format!("{NS}/p1_public"),
                None,
                "delete_metadef_namespace",
            ),
            (
                Method::POST,
                format!("{NS}/p1_public/objects"),
                Some(json!({"name": "x"})),
                "add_metadef_object",
            ),
            (
                Method::PUT,
                format!("{NS}/p1_public/objects/o"),
                Some(json!({"name": "o"})),
                "modify_metadef_object",
            ),
            (
                Method::DELETE,
                format!("{NS}/p1_public/objects/o"),
                None,
                "delete_metadef_object",
            ),
            (
                Method::DELETE,
                format!("{NS}/p1_public/objects"),
                None,
                "delete_metadef_namespace",
            ),
            (
                Method::POST,
                format!("{NS}/p1_public/properties"),
                Some(json!({"name": "x", "type": "string", "title": "t"})),
                "add_metadef_property",
            ),
            (
                Method::DELETE,
                format!("{NS}/p1_public/properties/p"),
                None,
                "remove_metadef_property",
            ),
            (
                Method::POST,
                format!("{NS}/p1_public/tags"),
                Some(json!({"tags": []})),
                "add_metadef_tags",
            ),
            (
                Method::POST,
                format!("{NS}/p1_public/tags/x"),
                None,
                "add_metadef_tag",
            ),
            (
                Method::PUT,
                format!("{NS}/p1_public/tags/t"),
                Some(json!({"name": "u"})),
                "modify_metadef_tag",
            ),
            (
                Method::DELETE,
                format!("{NS}/p1_public/tags/t"),
                None,
                "delete_metadef_tag",
            ),
            (
                Method::POST,
                format!("{NS}/p1_public/resource_types"),
                Some(json!({"name": "R"})),
                "add_metadef_resource_type_association",
            ),
            (
                Method::DELETE,
                format!("{NS}/p1_public/resource_types/OS::Nova::Server"),
                None,
                "remove_metadef_resource_type_association",
            ),
        ] {
            let r = h.call(method.clone(), &uri, &who, body).await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{:?} {who:?} {method} {uri}: {}",
                h.backend,
                r.body
            );
            assert_eq!(
                r.message(),
                format!("You are not authorized to complete {rule} action.")
            );
        }
    }
    let r = h
        .post(NS, &member("p1"), json!({"namespace": "mine"}))
        .await;
    h.expect(&r, StatusCode::FORBIDDEN, "member create");
    assert_eq!(
        r.message(),
        "You are not authorized to complete add_metadef_namespace action."
    );
    // an admin of any project writes anywhere; the anonymous (noauth) caller is one
    let r = h
        .put(
            &format!("{NS}/p2_private"),
            &admin("p9"),
            json!({"namespace": "p2_private", "owner": "p2"}),
        )
        .await;
    h.expect(&r, StatusCode::OK, "admin update");
    let r = h.post(NS, &vec![], json!({"namespace": "anonymous"})).await;
    h.expect(&r, StatusCode::CREATED, "noauth admin");
    assert!(
        r.body.get("owner").is_none(),
        "no project, no owner: {}",
        r.body
    );
    // an ownerless namespace passes Glance's visibility rule, but policy still wants the
    // owner's project (`None` matches nobody) or a public namespace
    h.expect(
        &h.get(&format!("{NS}/anonymous/objects"), &member("p7"))
            .await,
        StatusCode::NOT_FOUND,
        "ownerless",
    );
    h.put(
        &format!("{NS}/anonymous"),
        &vec![],
        json!({"namespace": "anonymous", "visibility": "public"}),
    )
    .await;
    h.expect(
        &h.get(&format!("{NS}/anonymous/objects"), &member("p7"))
            .await,
        StatusCode::OK,
        "ownerless public",
    );
}

// === the data plane forwards the catalog ===

#[test]
fn the_data_plane_forwards_metadefs() {
    use shared::route::{Features, Route, classify};
    for (method, path) in [
        ("GET", "/v2/metadefs/namespaces"),
        ("POST", "/v2/metadefs/namespaces"),
        ("PUT", "/v2/metadefs/namespaces/N/tags/t"),
        ("DELETE", "/v2/metadefs/namespaces/N/objects"),
        ("GET", "/v2/metadefs/resource_types"),
        ("GET", "/v2.1/metadefs/namespaces/N"),
    ] {
        assert_eq!(
            classify(method, path, None, Features::default()),
            Route::Forward,
            "{method} {path}"
        );
    }
}

#[test]
fn python_quoting() {
    assert_eq!(
        super::quote_plus("OS::Glance::Image,a b~_.-"),
        "OS%3A%3AGlance%3A%3AImage%2Ca+b~_.-"
    );
    assert_eq!(super::quote_plus("é"), "%C3%A9");
    assert_eq!(super::path_segment("My Namespace/x"), "My%20Namespace%2Fx");
}
