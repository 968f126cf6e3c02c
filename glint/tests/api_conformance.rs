//! API conformance: the real `glint serve` driven over HTTP, organised by the sections of
//! `../shared/GLANCE-API.md`, acting as several projects through the noauth identity headers:
//! `p1` owns images (role member), `p2` is an image member, `p3` a stranger, `p1r` a reader
//! of `p1`, and an admin.
//!
//! The whole suite runs once per database backend: SQLite, PostgreSQL and MariaDB/MySQL
//! (a fresh database per run on the servers named by `GLINT_TEST_POSTGRES_URL` and
//! `GLINT_TEST_MYSQL_URL`; an unreachable server fails the test, it never skips).

use controlplane::db::Backend;
use controlplane::db::scratch::ScratchDb;
use loadtest::harness::{Glint, binary};
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PATCH: &str = "application/openstack-images-v2.1-json-patch";

#[derive(Clone, Copy, Debug)]
enum Who {
    Owner,
    Reader,
    Member,
    Stranger,
    Admin,
}

impl Who {
    fn headers(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Who::Owner => vec![("X-Project-Id", "p1"), ("X-Roles", "member")],
            Who::Reader => vec![("X-Project-Id", "p1"), ("X-Roles", "reader")],
            Who::Member => vec![("X-Project-Id", "p2"), ("X-Roles", "member")],
            Who::Stranger => vec![("X-Project-Id", "p3"), ("X-Roles", "member")],
            Who::Admin => vec![("X-Project-Id", "padmin"), ("X-Roles", "admin")],
        }
    }
}

struct Api {
    g: Glint,
    c: Client,
}

struct Reply {
    status: u16,
    body: Value,
}

impl Api {
    fn start(extra: &[&str]) -> Api {
        let g = Glint::start(&binary(env!("CARGO_BIN_EXE_glint")), extra).expect("glint starts");
        let c = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Api { g, c }
    }

    fn call(&self, method: Method, path: &str, who: Who, body: Option<(&str, Vec<u8>)>) -> Reply {
        let mut r = self.c.request(method, self.g.url(path));
        for (k, v) in who.headers() {
            r = r.header(k, v);
        }
        if let Some((ctype, bytes)) = body {
            r = r.header("Content-Type", ctype).body(bytes);
        }
        let res = r.send().unwrap();
        let status = res.status().as_u16();
        let text = res.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    fn get(&self, path: &str, who: Who) -> Reply {
        self.call(Method::GET, path, who, None)
    }
    fn post(&self, path: &str, who: Who, body: Value) -> Reply {
        self.call(
            Method::POST,
            path,
            who,
            Some(("application/json", body.to_string().into_bytes())),
        )
    }
    fn put_json(&self, path: &str, who: Who, body: Value) -> Reply {
        self.call(
            Method::PUT,
            path,
            who,
            Some(("application/json", body.to_string().into_bytes())),
        )
    }
    fn patch(&self, id: &str, who: Who, ops: Value) -> Reply {
        self.call(
            Method::PATCH,
            &format!("/v2/images/{id}"),
            who,
            Some((PATCH, ops.to_string().into_bytes())),
        )
    }
    fn delete(&self, path: &str, who: Who) -> Reply {
        self.call(Method::DELETE, path, who, None)
    }
    fn action(&self, id: &str, action: &str, who: Who) -> u16 {
        self.call(
            Method::POST,
            &format!("/v2/images/{id}/actions/{action}"),
            who,
            None,
        )
        .status
    }

    fn create(&self, who: Who, body: Value) -> String {
        let r = self.post("/v2/images", who, body);
        assert_eq!(r.status, 201, "create: {}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    fn upload(&self, id: &str, who: Who, data: &[u8]) -> u16 {
        self.call(
            Method::PUT,
            &format!("/v2/images/{id}/file"),
            who,
            Some(("application/octet-stream", data.to_vec())),
        )
        .status
    }

    fn ids(&self, query: &str, who: Who) -> Vec<String> {
        let r = self.get(&format!("/v2/images?{query}"), who);
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.body["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn start(backend: Backend) -> (Api, Option<ScratchDb>) {
    match backend {
        Backend::Sqlite => (Api::start(&[]), None),
        _ => {
            let db = ScratchDb::create_blocking(backend);
            let api = Api::start(&["--database-url", db.url()]);
            (api, Some(db))
        }
    }
}

fn suite(backend: Backend) {
    let (api, _db) = start(backend);
    discovery_1_1(&api);
    images_1_2(&api);
    listing_1_3(&api);
    data_and_lifecycle_1_4(&api);
    members_1_6(&api);
    schemas_1_7(&api);
    metadefs_1_10(&api);
    concurrency(&api);
}

#[test]
fn conformance_on_sqlite() {
    suite(Backend::Sqlite);
}

#[test]
fn conformance_on_postgres() {
    suite(Backend::Postgres);
}

#[test]
fn conformance_on_mysql() {
    suite(Backend::Mysql);
}

// === §1.1 discovery and versions ===

fn discovery_1_1(api: &Api) {
    assert_eq!(api.get("/", Who::Owner).status, 300);
    assert_eq!(api.get("/versions", Who::Owner).status, 200);
    let r = api.get("/v2/info/import", Who::Owner);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["import-methods"]["type"], "array");
    // without enabled_backends there is no multi-store API, as Glance (discovery.py)
    let r = api.get("/v2/info/stores", Who::Stranger);
    assert_eq!(r.status, 404);
}

// === §1.2 images ===

fn images_1_2(api: &Api) {
    let id = api.create(
        Who::Owner,
        json!({"name": "c12", "disk_format": "raw", "container_format": "bare", "hw.prop": ""}),
    );
    let r = api.get(&format!("/v2/images/{id}"), Who::Owner);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["visibility"], "shared");
    assert_eq!(r.body["owner"], "p1");
    assert_eq!(r.body["hw.prop"], "");
    // invisible → 404 (never 403); admin and the owner's reader see it
    assert_eq!(
        api.get(&format!("/v2/images/{id}"), Who::Stranger).status,
        404
    );
    assert_eq!(
        api.get(&format!("/v2/images/{id}"), Who::Reader).status,
        200
    );
    assert_eq!(api.get(&format!("/v2/images/{id}"), Who::Admin).status, 200);
    assert_eq!(api.get("/v2/images/not-a-uuid", Who::Owner).status, 404);
    // create rules
    assert_eq!(api.post("/v2/images", Who::Reader, json!({})).status, 403);
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"owner": "p9"}))
            .status,
        403
    );
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"visibility": "public"}))
            .status,
        403
    );
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"os_glance_x": "1"}))
            .status,
        403
    );
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"status": "active"}))
            .status,
        403
    );
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"id": id})).status,
        409
    );
    // PATCH rules
    let p = |who, ops: Value| api.patch(&id, who, ops).status;
    for path in [
        "/status",
        "/checksum",
        "/size",
        "/id",
        "/created_at",
        "/self",
        "/os_hash_value",
    ] {
        assert_eq!(
            p(
                Who::Owner,
                json!([{"op": "replace", "path": path, "value": "x"}])
            ),
            403,
            "{path}"
        );
    }
    for path in ["/os_glance_import_task", "/location", "/deleted_at"] {
        assert_eq!(
            p(
                Who::Owner,
                json!([{"op": "add", "path": path, "value": "x"}])
            ),
            403,
            "{path}"
        );
    }
    assert_eq!(
        p(Who::Owner, json!([{"op": "add", "path": "/n", "value": 5}])),
        400
    );
    let long = format!("/{}", "k".repeat(256));
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "add", "path": long, "value": "x"}])
        ),
        400
    );
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "add", "path": "/os_distro", "value": "cirros"}])
        ),
        200
    );
    assert_eq!(
        p(Who::Owner, json!([{"op": "remove", "path": "/os_distro"}])),
        200
    );
    assert_eq!(
        p(Who::Owner, json!([{"op": "remove", "path": "/os_distro"}])),
        409
    );
    assert_eq!(
        p(
            Who::Reader,
            json!([{"op": "replace", "path": "/name", "value": "x"}])
        ),
        403
    );
    assert_eq!(
        p(
            Who::Stranger,
            json!([{"op": "replace", "path": "/name", "value": "x"}])
        ),
        404
    );
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/owner", "value": "p2"}])
        ),
        403
    );
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}])
        ),
        403
    );
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/visibility", "value": "community"}])
        ),
        200
    );
    assert_eq!(
        p(
            Who::Admin,
            json!([{"op": "replace", "path": "/visibility", "value": "public"}])
        ),
        200
    );
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/visibility", "value": "shared"}])
        ),
        200
    );
    let wrong_type = api.call(
        Method::PATCH,
        &format!("/v2/images/{id}"),
        Who::Owner,
        Some(("application/json", b"[]".to_vec())),
    );
    assert_eq!(wrong_type.status, 415);
    // quotas: 128 properties, 128 tags → 413
    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"op": "add", "path": format!("/q{i}"), "value": "v"}))
        .collect();
    assert_eq!(p(Who::Owner, Value::Array(ops)), 413);
    let tags: Vec<String> = (0..129).map(|i| format!("t{i}")).collect();
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/tags", "value": tags}])
        ),
        413
    );
    // protected delete → 403; delete → 204; again → 404; the id is never reused
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/protected", "value": true}])
        ),
        200
    );
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Owner).status,
        403
    );
    assert_eq!(
        p(
            Who::Owner,
            json!([{"op": "replace", "path": "/protected", "value": false}])
        ),
        200
    );
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Stranger)
            .status,
        404
    );
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Reader).status,
        403
    );
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Owner).status,
        204
    );
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Owner).status,
        404
    );
    assert_eq!(api.get(&format!("/v2/images/{id}"), Who::Admin).status, 404);
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"id": id})).status,
        409
    );
    // tasks of an image: empty list, 404 when invisible
    let other = api.create(Who::Owner, json!({"name": "tasks"}));
    let r = api.get(&format!("/v2/images/{other}/tasks"), Who::Owner);
    assert_eq!((r.status, r.body["tasks"].clone()), (200, json!([])));
    assert_eq!(
        api.get(&format!("/v2/images/{other}/tasks"), Who::Stranger)
            .status,
        404
    );
}

// === §1.3 listing ===

fn listing_1_3(api: &Api) {
    let tag = format!("L{}", std::process::id());
    let mk = |who: Who, body: Value| {
        let mut body = body;
        body["tags"] = match body.get("tags") {
            Some(Value::Array(t)) => {
                let mut t = t.clone();
                t.push(json!(tag));
                Value::Array(t)
            }
            _ => json!([tag]),
        };
        api.create(who, body)
    };
    let a = mk(
        Who::Owner,
        json!({"name": "alpha", "disk_format": "raw", "container_format": "bare", "tags": ["x", "y"], "os_distro": "ubuntu"}),
    );
    let b = mk(
        Who::Owner,
        json!({"name": "beta,gamma", "disk_format": "qcow2", "container_format": "bare", "tags": ["x"], "protected": true}),
    );
    let c = mk(Who::Owner, json!({"name": "hidden", "os_hidden": true}));
    let d = mk(Who::Stranger, json!({"name": "theirs"}));
    let e = mk(
        Who::Owner,
        json!({"name": "comm", "visibility": "community"}),
    );
    let f = mk(Who::Owner, json!({"name": "priv", "visibility": "private"}));
    assert_eq!(api.upload(&a, Who::Owner, &[7u8; 100]), 204);
    // b claims qcow2 and bare, so its content is inspected: a qcow2 header
    let mut qcow2 = vec![0u8; 3000];
    qcow2[..8].copy_from_slice(b"QFI\xfb\0\0\0\x03");
    assert_eq!(api.upload(&b, Who::Owner, &qcow2), 204);
    let q = |query: &str, who: Who| {
        let mut ids = api.ids(&format!("tag={tag}&{query}"), who);
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    // default: hidden images left out; community only when owned
    assert_eq!(q("", Who::Owner), sorted(vec![&a, &b, &e, &f]));
    assert_eq!(q("", Who::Stranger), sorted(vec![&d]));
    assert_eq!(q("visibility=community", Who::Stranger), sorted(vec![&e]));
    assert_eq!(q("os_hidden=true", Who::Owner), sorted(vec![&c]));
    assert_eq!(q("os_hidden=True", Who::Owner), sorted(vec![&c]));
    assert_eq!(
        q("visibility=all", Who::Admin),
        sorted(vec![&a, &b, &d, &e, &f])
    );
    assert_eq!(q("visibility=private", Who::Owner), sorted(vec![&f]));
    assert_eq!(q("owner=p3", Who::Admin), sorted(vec![&d]));
    // in: lists with quoting, tags AND, ranges, booleans, properties, times
    assert_eq!(
        q("name=in:alpha,\"beta,gamma\"", Who::Owner),
        sorted(vec![&a, &b])
    );
    assert_eq!(q("tag=x&tag=y", Who::Owner), sorted(vec![&a]));
    assert_eq!(q("size_min=1000", Who::Owner), sorted(vec![&b]));
    assert_eq!(q("size_max=1000", Who::Owner), sorted(vec![&a]));
    assert_eq!(q("protected=true", Who::Owner), sorted(vec![&b]));
    assert_eq!(q("os_distro=ubuntu", Who::Owner), sorted(vec![&a]));
    assert_eq!(
        q("disk_format=in:raw,qcow2", Who::Owner),
        sorted(vec![&a, &b])
    );
    assert_eq!(q("status=active", Who::Owner), sorted(vec![&a, &b]));
    assert_eq!(
        q("created_at=lt:2000-01-01T00:00:00Z", Who::Owner),
        Vec::<String>::new()
    );
    assert_eq!(
        q(
            "created_at=gte:2000-01-01T00:00:00Z&updated_at=neq:2000-01-01T00:00:00Z&name=alpha",
            Who::Owner
        ),
        sorted(vec![&a])
    );
    // validation → 400
    for bad in [
        "changes-since=2020-01-01",
        "limit=-1",
        "limit=x",
        "sort_key=bogus",
        "sort_dir=up",
        "sort=name&sort_key=name",
        "visibility=everyone",
        "protected=yes",
        "member_status=maybe",
        "created_at=about:2020-01-01T00:00:00Z",
        "size_min=big",
        "marker=0b3a8c7e-1234-4321-abcd-0123456789ab",
        "name=in:\"open",
    ] {
        let r = api.get(&format!("/v2/images?{bad}"), Who::Owner);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    // both sort syntaxes, all eight keys
    for key in [
        "name",
        "status",
        "container_format",
        "disk_format",
        "size",
        "id",
        "created_at",
        "updated_at",
    ] {
        for dir in ["asc", "desc"] {
            let classic = api.ids(
                &format!("tag={tag}&sort_key={key}&sort_dir={dir}"),
                Who::Owner,
            );
            let new = api.ids(&format!("tag={tag}&sort={key}:{dir}"), Who::Owner);
            assert_eq!(classic, new, "{key} {dir}");
            assert_eq!(classic.len(), 4);
        }
    }
    let by_name = api.ids(&format!("tag={tag}&sort=name:asc"), Who::Owner);
    assert_eq!(by_name, vec![a.clone(), b.clone(), e.clone(), f.clone()]);
    // pages: next links keep the query and cover everything once; markers survive deletes
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "/v2/images?tag={tag}&limit=1&sort_key=name&sort_dir=asc"
    ));
    let mut deleted_marker = false;
    while let Some(link) = next {
        let r = api.get(&link, Who::Owner);
        assert_eq!(r.status, 200, "{link}: {}", r.body);
        assert!(r.body["first"].as_str().unwrap().contains(&tag));
        for i in r.body["images"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_owned());
        }
        next = r.body["next"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.contains("limit=1") && n.contains("sort_key=name"), "{n}");
            if !deleted_marker && seen.len() == 2 {
                // delete the marker image (b is protected: use e)
                assert_eq!(seen[1], b);
                assert_eq!(
                    api.patch(
                        &b,
                        Who::Owner,
                        json!([{"op": "replace", "path": "/protected", "value": false}])
                    )
                    .status,
                    200
                );
                assert_eq!(
                    api.delete(&format!("/v2/images/{b}"), Who::Owner).status,
                    204
                );
                deleted_marker = true;
            }
        }
    }
    assert_eq!(seen, vec![a.clone(), b.clone(), e.clone(), f.clone()]);
    // limit default 25, max 1000
    let r = api.get("/v2/images?limit=5000", Who::Admin);
    assert_eq!(r.status, 200);
}

// === §1.4 data, deactivate/reactivate (§1.2) ===

fn data_and_lifecycle_1_4(api: &Api) {
    let id = api.create(
        Who::Owner,
        json!({"name": "data", "disk_format": "raw", "container_format": "bare"}),
    );
    assert_eq!(
        api.action(&id, "deactivate", Who::Owner),
        403,
        "queued cannot be deactivated"
    );
    assert_eq!(api.upload(&id, Who::Stranger, b"abc"), 404);
    assert_eq!(api.upload(&id, Who::Reader, b"abc"), 403);
    assert_eq!(api.upload(&id, Who::Owner, b"abcdef"), 204);
    assert_eq!(api.upload(&id, Who::Owner, b"abcdef"), 409);
    // formats only while queued
    assert_eq!(
        api.patch(
            &id,
            Who::Owner,
            json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}])
        )
        .status,
        403
    );
    let file = format!("/v2/images/{id}/file");
    assert_eq!(api.get(&file, Who::Owner).status, 200);
    assert_eq!(api.get(&file, Who::Stranger).status, 404);
    assert_eq!(api.action(&id, "deactivate", Who::Reader), 403);
    assert_eq!(api.action(&id, "deactivate", Who::Stranger), 404);
    assert_eq!(api.action(&id, "deactivate", Who::Owner), 204);
    assert_eq!(api.action(&id, "deactivate", Who::Owner), 204, "no-op");
    assert_eq!(
        api.get(&format!("/v2/images/{id}"), Who::Owner).body["status"],
        "deactivated"
    );
    assert_eq!(api.get(&file, Who::Owner).status, 403);
    assert_eq!(api.get(&file, Who::Admin).status, 200);
    assert_eq!(api.action(&id, "reactivate", Who::Owner), 204);
    assert_eq!(api.action(&id, "reactivate", Who::Owner), 204, "no-op");
    assert_eq!(api.get(&file, Who::Owner).status, 200);
    // restore is admin-only and only for pending_delete images (no delayed delete here)
    assert_eq!(api.action(&id, "restore", Who::Owner), 404);
    assert_eq!(api.action(&id, "restore", Who::Admin), 409);
}

// === §1.6 members ===

fn members_1_6(api: &Api) {
    let id = api.create(
        Who::Owner,
        json!({"name": "shared", "disk_format": "raw", "container_format": "bare"}),
    );
    assert_eq!(api.upload(&id, Who::Owner, b"shared-bytes"), 204);
    let members = format!("/v2/images/{id}/members");
    let p2 = format!("{members}/p2");
    // only the owner adds; 200 (not 201); pending
    assert_eq!(
        api.post(&members, Who::Member, json!({"member": "p2"}))
            .status,
        404
    );
    let r = api.post(&members, Who::Owner, json!({"member": "p2"}));
    assert_eq!(
        (r.status, r.body["status"].clone()),
        (200, json!("pending"))
    );
    assert_eq!(r.body["schema"], "/v2/schemas/member");
    assert_eq!(
        api.post(&members, Who::Owner, json!({"member": "p2"}))
            .status,
        409
    );
    assert_eq!(api.post(&members, Who::Owner, json!({})).status, 400);
    assert_eq!(
        api.post(&members, Who::Reader, json!({"member": "p4"}))
            .status,
        403
    );
    assert_eq!(
        api.post(&members, Who::Owner, json!({"member": "p4"}))
            .status,
        200
    );
    // a pending member can show the image but it is not in its default list
    assert_eq!(
        api.get(&format!("/v2/images/{id}"), Who::Member).status,
        200
    );
    assert!(!api.ids("", Who::Member).contains(&id));
    assert!(api.ids("member_status=pending", Who::Member).contains(&id));
    assert!(
        api.ids("visibility=shared&member_status=all", Who::Member)
            .contains(&id)
    );
    assert_eq!(
        api.get(&format!("/v2/images/{id}"), Who::Stranger).status,
        404
    );
    // who sees which members
    let r = api.get(&members, Who::Owner);
    assert_eq!(
        (r.status, r.body["members"].as_array().unwrap().len()),
        (200, 2)
    );
    assert_eq!(r.body["schema"], "/v2/schemas/members");
    let r = api.get(&members, Who::Member);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["members"][0]["member_id"], "p2");
    assert_eq!(api.get(&members, Who::Stranger).status, 404);
    assert_eq!(api.get(&format!("{members}/p4"), Who::Member).status, 404);
    assert_eq!(api.get(&p2, Who::Member).status, 200);
    // status changes: the member (or admin), never the owner
    assert_eq!(
        api.put_json(&p2, Who::Owner, json!({"status": "accepted"}))
            .status,
        403
    );
    assert_eq!(
        api.put_json(&p2, Who::Member, json!({"status": "maybe"}))
            .status,
        400
    );
    assert_eq!(
        api.put_json(
            &format!("{members}/p4"),
            Who::Member,
            json!({"status": "accepted"})
        )
        .status,
        404
    );
    let r = api.put_json(&p2, Who::Member, json!({"status": "accepted"}));
    assert_eq!(
        (r.status, r.body["status"].clone()),
        (200, json!("accepted"))
    );
    assert!(api.ids("", Who::Member).contains(&id));
    assert!(!api.ids("member_status=pending", Who::Member).contains(&id));
    // an accepted member downloads over the data plane; strangers still 404
    let file = format!("/v2/images/{id}/file");
    assert_eq!(api.get(&file, Who::Member).status, 200);
    assert_eq!(api.get(&file, Who::Stranger).status, 404);
    assert_eq!(
        api.put_json(&p2, Who::Member, json!({"status": "rejected"}))
            .status,
        200
    );
    assert!(!api.ids("", Who::Member).contains(&id));
    assert!(api.ids("member_status=rejected", Who::Member).contains(&id));
    assert_eq!(
        api.put_json(&p2, Who::Admin, json!({"status": "accepted"}))
            .status,
        200
    );
    // members cannot modify the image or remove themselves; the owner removes
    assert_eq!(
        api.patch(
            &id,
            Who::Member,
            json!([{"op": "replace", "path": "/name", "value": "x"}])
        )
        .status,
        403
    );
    assert_eq!(api.delete(&p2, Who::Member).status, 403);
    assert_eq!(api.delete(&p2, Who::Owner).status, 204);
    assert_eq!(api.delete(&p2, Who::Owner).status, 404);
    assert_eq!(
        api.get(&format!("/v2/images/{id}"), Who::Member).status,
        404
    );
    // private images take no members; community images are visible to all
    let private = api.create(Who::Owner, json!({"visibility": "private"}));
    assert_eq!(
        api.post(
            &format!("/v2/images/{private}/members"),
            Who::Owner,
            json!({"member": "p2"})
        )
        .status,
        403
    );
    assert_eq!(
        api.get(&format!("/v2/images/{private}/members"), Who::Owner)
            .status,
        403
    );
    let community = api.create(Who::Owner, json!({"visibility": "community"}));
    assert_eq!(
        api.get(&format!("/v2/images/{community}"), Who::Stranger)
            .status,
        200
    );
    assert_eq!(
        api.patch(
            &community,
            Who::Stranger,
            json!([{"op": "replace", "path": "/name", "value": "x"}])
        )
        .status,
        403
    );
}

// === §1.7 schemas ===

fn schemas_1_7(api: &Api) {
    for name in ["image", "images", "member", "members", "task", "tasks"] {
        let r = api.get(&format!("/v2/schemas/{name}"), Who::Stranger);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.body["name"], name);
    }
}

// === 1.10 metadata definitions: as each role sees them ===

fn metadefs_1_10(api: &Api) {
    let ns = "/v2/metadefs/namespaces";
    // writes are metadef_admin's
    let body = json!({"namespace": "Conf::Private", "visibility": "private",
                      "owner": "p1", "properties": {"speed": {"title": "Speed", "type": "integer"}}});
    for who in [Who::Owner, Who::Reader, Who::Member, Who::Stranger] {
        assert_eq!(
            api.post(ns, who, body.clone()).status,
            403,
            "{who:?} creates"
        );
    }
    assert_eq!(api.post(ns, Who::Admin, body.clone()).status, 201);
    assert_eq!(api.post(ns, Who::Admin, body).status, 409, "a duplicate");
    let public = json!({"namespace": "Conf::Public", "visibility": "public", "owner": "p1",
                        "tags": [{"name": "a"}], "resource_type_associations": [
                            {"name": "OS::Glance::Image", "prefix": "conf_"}]});
    assert_eq!(api.post(ns, Who::Admin, public).status, 201);

    // reads: admin, the owner's project (member or reader), public namespaces
    let names = |who: Who| -> Vec<String> {
        let r = api.get(ns, who);
        assert_eq!(r.status, 200, "{who:?}: {}", r.body);
        let mut v: Vec<String> = r.body["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap().to_owned())
            .filter(|n| n.starts_with("Conf::"))
            .collect();
        v.sort();
        v
    };
    let both = vec!["Conf::Private".to_owned(), "Conf::Public".to_owned()];
    assert_eq!(names(Who::Admin), both);
    assert_eq!(names(Who::Owner), both);
    assert_eq!(names(Who::Reader), both);
    assert_eq!(names(Who::Stranger), ["Conf::Public"]);
    for (who, want) in [
        (Who::Owner, 200),
        (Who::Reader, 200),
        (Who::Stranger, 404),
        (Who::Admin, 200),
    ] {
        let r = api.get(&format!("{ns}/Conf::Private/properties/speed"), who);
        assert_eq!(
            r.status, want,
            "{who:?} reads a private namespace's property: {}",
            r.body
        );
    }
    let r = api.get(
        &format!("{ns}/Conf::Public?resource_type=OS::Glance::Image"),
        Who::Stranger,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["tags"][0]["name"], "a");
    // the owner's project may not write either (writes are admin's)
    let r = api.call(
        Method::POST,
        &format!("{ns}/Conf::Private/tags/b"),
        Who::Owner,
        None,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = api.get("/v2/metadefs/resource_types", Who::Stranger);
    assert_eq!(r.status, 200);
    assert!(
        r.body["resource_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "OS::Nova::Flavor")
    );
    for name in [
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
    ] {
        assert_eq!(
            api.get(&format!("/v2/schemas/metadefs/{name}"), Who::Stranger)
                .status,
            200,
            "{name}"
        );
    }
    // a stranger cannot see the private one (404) and may not delete the public one (403)
    for (n, stranger) in [("Conf::Private", 404), ("Conf::Public", 403)] {
        assert_eq!(
            api.delete(&format!("{ns}/{n}"), Who::Stranger).status,
            stranger,
            "{n}"
        );
        assert_eq!(
            api.delete(&format!("{ns}/{n}"), Who::Admin).status,
            204,
            "{n}"
        );
    }
}

// === concurrency: parallel PATCHes lose no write ===

fn concurrency(api: &Api) {
    let id = api.create(Who::Owner, json!({"name": "race"}));
    std::thread::scope(|s| {
        for i in 0..8 {
            let id = id.clone();
            s.spawn(move || {
                let r = api.patch(
                    &id,
                    Who::Owner,
                    json!([{"op": "add", "path": format!("/k{i}"), "value": "v"}]),
                );
                assert_eq!(r.status, 200, "{}", r.body);
            });
        }
    });
    let r = api.get(&format!("/v2/images/{id}"), Who::Owner);
    for i in 0..8 {
        assert_eq!(r.body[format!("k{i}")], "v", "write {i} lost: {}", r.body);
    }
}

// === delayed delete and the scrubber (§3) ===

#[test]
fn delayed_delete_keeps_data_until_scrubbed_and_can_be_restored() {
    let dir = tempfile_dir();
    let cfg = dir.join("glint.toml");
    std::fs::write(
        &cfg,
        "[controlplane]\ndelayed_delete = true\nscrub_time_seconds = 2\nscrub_wakeup_seconds = 1\n",
    )
    .unwrap();
    let api = Api::start(&["--config", cfg.to_str().unwrap()]);
    let id = api.create(
        Who::Owner,
        json!({"disk_format": "raw", "container_format": "bare"}),
    );
    assert_eq!(api.upload(&id, Who::Owner, b"keep me"), 204);
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Owner).status,
        204
    );
    assert_eq!(api.get(&format!("/v2/images/{id}"), Who::Owner).status, 404);
    assert!(!api.ids("", Who::Admin).contains(&id));
    assert!(
        api.g.store_files().iter().any(|f| f.contains(&id)),
        "data kept"
    );
    // restore: admin only
    assert_eq!(api.action(&id, "restore", Who::Owner), 404);
    assert_eq!(api.action(&id, "restore", Who::Admin), 204);
    let r = api.get(&format!("/v2/images/{id}/file"), Who::Owner);
    assert_eq!((r.status, r.body.clone()), (200, json!("keep me")));
    // delete again: the scrubber removes the data after scrub_time
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Owner).status,
        204
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.g.store_files().iter().any(|f| f.contains(&id)) {
        assert!(Instant::now() < deadline, "not scrubbed\n{}", api.g.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(api.action(&id, "restore", Who::Admin), 404);
    assert_eq!(
        api.post("/v2/images", Who::Owner, json!({"id": id})).status,
        409
    );
    std::fs::remove_dir_all(dir).ok();
}

// === policy file (§3) ===

#[test]
fn operator_policy_file_overrides_defaults() {
    let dir = tempfile_dir();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "# members may publicize; nobody may delete\n\"publicize_image\": \"role:member\"\n\"delete_image\": \"!\"\n",
    )
    .unwrap();
    let g = Glint::start_with_env(
        &binary(env!("CARGO_BIN_EXE_glint")),
        &[],
        &[("GLINT_POLICY_FILE", policy.to_str().unwrap())],
    )
    .expect("glint starts");
    let api = Api {
        g,
        c: Client::new(),
    };
    let id = api.create(Who::Owner, json!({"visibility": "public"}));
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Owner).status,
        403
    );
    assert_eq!(
        api.delete(&format!("/v2/images/{id}"), Who::Admin).status,
        403
    );
    std::fs::remove_dir_all(dir).ok();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("glint-api-{}-{}", std::process::id(), uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid_like() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}
