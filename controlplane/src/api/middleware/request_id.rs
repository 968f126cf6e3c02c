//! `x-openstack-request-id`: read, validate, or generate (glance `api/middleware/context.py`).

use axum::http::HeaderMap;

/// Header carrying the request id, in and out.
pub const HEADER: &str = "x-openstack-request-id";

/// Longest accepted incoming id, in bytes (Glance's `max_request_id_length`).
pub const MAX_BYTES: usize = 64;

/// The request id of the current request, stored in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The incoming id was longer than [`MAX_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// A fresh `req-<uuid4>`.
pub fn generate() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}

/// The id to use for a request: the client's (prefixed with `req-` if needed), or a new one.
pub fn resolve(headers: &HeaderMap) -> Result<String, TooLong> {
    let incoming = headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    match incoming {
        None => Ok(generate()),
        Some(v) if v.len() > MAX_BYTES => Err(TooLong),
        Some(v) if v.starts_with("req-") => Ok(v.to_owned()),
        Some(v) => Ok(format!("req-{v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn resolution_table() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_str(v).unwrap());
            resolve(&h)
        };
        assert!(resolve(&HeaderMap::new()).unwrap().starts_with("req-"));
        assert_eq!(with("req-abc"), Ok("req-abc".into()));
        assert_eq!(with("abc"), Ok("req-abc".into()));
        assert_eq!(with(&"a".repeat(64)).unwrap().len(), 68);
        assert_eq!(with(&"a".repeat(65)), Err(TooLong));
    }
}
