//! `GET /` (300) and `GET /versions` (200): the versions document.
//!
//! The list is [`shared::route::versions`]: Glance's (`glance/api/versions.py`) for what
//! this deployment serves, in Glance's order, never naming a version whose endpoints glint
//! does not serve. Paths under `/v2.N/` for these N are aliases of `/v2/` (the same table).

use super::extract::HostHeader;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use shared::route::Features;

/// The versions document with links under `http://<host>/v2/`.
pub fn document(host: &str, features: Features) -> Value {
    let href = format!("http://{host}/v2/");
    let versions: Vec<Value> = shared::route::versions(features)
        .iter()
        .map(|v| json!({"id": v.to_string(), "status": v.status(), "links": [{"rel": "self", "href": href}]}))
        .collect();
    json!({ "versions": versions })
}

/// `GET /versions`: 200.
pub(crate) async fn list(
    HostHeader(host): HostHeader,
    State(features): State<Features>,
) -> impl IntoResponse {
    Json(document(&host, features))
}

/// `GET /` and any path that names no advertised version: 300 Multiple Choices.
pub(crate) async fn multiple_choices(
    HostHeader(host): HostHeader,
    State(features): State<Features>,
) -> impl IntoResponse {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(document(&host, features)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_shape() {
        let d = document("example:9292", Features::default());
        let versions = d["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 10);
        let current: Vec<&Value> = versions
            .iter()
            .filter(|v| v["status"] == "CURRENT")
            .collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], "v2.15");
        assert_eq!(
            versions[0]["links"][0],
            json!({"rel": "self", "href": "http://example:9292/v2/"})
        );
        for v in versions {
            let id = v["id"].as_str().unwrap();
            assert!(
                shared::route::accepts_prefix(id, Features::default()),
                "{id}"
            );
        }
    }
}
