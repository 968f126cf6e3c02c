//! `x-openstack-request-id` for the API: the rule is [`shared::request_id`]'s, the same the
//! data plane applies before forwarding (so an id it forwards resolves to itself here).

use axum::http::HeaderMap;
pub use shared::request_id::{HEADER, MAX_BYTES, TooLong};

/// The request id of the current request, stored in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A fresh `req-<uuid4>`.
pub fn generate() -> String {
    shared::request_id::RequestId::generate().to_string()
}

/// The id to use for a request: the client's (prefixed with `req-` if needed), or a new one.
pub fn resolve(headers: &HeaderMap) -> Result<String, TooLong> {
    // The raw bytes, as the data plane sees them (not `to_str`, which refuses UTF-8).
    let incoming = headers
        .get(HEADER)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
    shared::request_id::RequestId::resolve(incoming).map(|id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn resolution_follows_the_shared_rule() {
        let with = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, HeaderValue::from_bytes(v).unwrap());
            resolve(&h)
        };
        assert!(resolve(&HeaderMap::new()).unwrap().starts_with("req-"));
        assert_eq!(with(b"req-abc"), Ok("req-abc".into()));
        assert_eq!(with(b"abc"), Ok("req-abc".into()));
        assert_eq!(with(b"a b"), Ok("req-a b".into()));
        assert_eq!(with("a".repeat(64).as_bytes()).unwrap().len(), 68);
        assert_eq!(with("a".repeat(65).as_bytes()), Err(TooLong));
        // non-ASCII: a new id, unless too long (checked first, as the data plane does)
        assert_ne!(with("caf\u{e9}".as_bytes()), Ok("req-caf\u{e9}".into()));
        assert_eq!(with("\u{e9}".repeat(40).as_bytes()), Err(TooLong));
    }
}
