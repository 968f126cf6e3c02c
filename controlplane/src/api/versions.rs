//! `GET /` (300) and `GET /versions` (200): the versions document.
//!
//! The list is exactly what Glance's `glance/api/versions.py` builds for a deployment without
//! an image cache and without multiple stores: v2.17 CURRENT; v2.15, v2.9 and v2.7 … v2.0
//! SUPPORTED, in Glance's order. Paths under `/v2.N/` for these N are accepted as aliases of
//! `/v2/` ([`ALIASES`]).

use super::extract::HostHeader;
use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// (id, status) in the order Glance lists them.
pub const VERSIONS: &[(&str, &str)] = &[
    ("v2.15", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.17", "CURRENT"),
    ("v2.7", "SUPPORTED"),
    ("v2.6", "SUPPORTED"),
    ("v2.5", "SUPPORTED"),
    ("v2.4", "SUPPORTED"),
    ("v2.3", "SUPPORTED"),
    ("v2.2", "SUPPORTED"),
    ("v2.1", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

/// First path segments accepted as the v2 API (Glance's version negotiation).
pub const ALIASES: &[&str] = &[
    "v2", "v2.0", "v2.1", "v2.2", "v2.3", "v2.4", "v2.5", "v2.6", "v2.7", "v2.9", "v2.15", "v2.17",
];

/// The versions document with links under `http://<host>/v2/`.
pub fn document(host: &str) -> Value {
    let href = format!("http://{host}/v2/");
    let versions: Vec<Value> = VERSIONS
        .iter()
        .map(|(id, status)| json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]}))
        .collect();
    json!({ "versions": versions })
}

/// `GET /versions`: 200.
pub(crate) async fn list(HostHeader(host): HostHeader) -> impl IntoResponse {
    Json(document(&host))
}

/// `GET /` and any path that names no known version: 300 Multiple Choices.
pub(crate) async fn multiple_choices(HostHeader(host): HostHeader) -> impl IntoResponse {
    (StatusCode::MULTIPLE_CHOICES, Json(document(&host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape() {
        let d = document("example:9292");
        let versions = d["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 11);
        let current: Vec<&Value> = versions
            .iter()
            .filter(|v| v["status"] == "CURRENT")
            .collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], "v2.17");
        assert_eq!(
            versions[0]["links"][0],
            json!({"rel": "self", "href": "http://example:9292/v2/"})
        );
        for v in versions {
            assert!(ALIASES.contains(&v["id"].as_str().unwrap()));
        }
    }
}
