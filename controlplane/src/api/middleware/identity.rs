//! Who the request says it is, as the [`auth`](super::auth) middleware reads it and the
//! handlers' [`Caller`](crate::api::extract::Caller) extractor receives it: the
//! [`credentials`] a request's headers carry and the [`Authenticated`] context the middleware
//! stores in the request's extensions.
//!
//! Both the middleware and the extractors import from here, and this module from neither, so
//! they never import each other.

use crate::policy::Context;
use axum::http::HeaderMap;
use shared::channel::Credentials;

/// The caller's context, as authenticated for this request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Context);

/// Credentials from request headers (the same fields the channel carries).
pub fn credentials(headers: &HeaderMap) -> Credentials {
    let mut creds = Credentials::default();
    for name in Credentials::HEADERS {
        for value in headers.get_all(name) {
            if let Ok(v) = value.to_str() {
                creds.absorb_header(name, v);
            }
        }
    }
    creds
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn credentials_from_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-tenant-id", HeaderValue::from_static("legacy"));
        h.insert("x-project-id", HeaderValue::from_static("p1"));
        h.insert("x-roles", HeaderValue::from_static("member"));
        let c = credentials(&h);
        assert_eq!(c.project_id.as_deref(), Some("p1"));
        assert_eq!(c.roles.as_deref(), Some("member"));
    }
}
