//! `x-openstack-request-id`: the one rule both planes apply to a client's request id
//! (glance `api/middleware/context.py`).
//!
//! - no header, or one that is empty after trimming: a new `req-<uuid4>`;
//! - longer than [`MAX_BYTES`] (after trimming): refused, 431;
//! - anything but printable ASCII: ignored, a new id is made (it is echoed in a response
//!   header, where other bytes cannot go);
//! - otherwise the client's id, with `req-` put in front unless it starts with it.
//!
//! The data plane decides once and forwards the result, so the control plane sees the same id
//! (already resolved, so resolving it again changes nothing).
//!
//! A [`RequestId`] is kept inline (68 bytes), so naming a request allocates nothing.

/// Header carrying the request id, in and out.
pub const HEADER: &str = "x-openstack-request-id";

/// Longest accepted incoming id, in bytes (Glance's `max_request_id_length`).
pub const MAX_BYTES: usize = 64;

/// The client's id is longer than [`MAX_BYTES`] (431).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("x-openstack-request-id is too long, max size 64")]
pub struct TooLong;

const PREFIX: &[u8] = b"req-";
const CAPACITY: usize = MAX_BYTES + PREFIX.len();

/// A request id (`req-…`, at most 68 bytes). Dereferences to `str`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    buf: [u8; CAPACITY],
    len: u8,
    /// Whether `req-` was put in front of the client's id.
    prefixed: bool,
}

impl RequestId {
    /// A new `req-<uuid v4>`.
    pub fn generate() -> RequestId {
        let mut id = RequestId {
            buf: [0; CAPACITY],
            len: 40,
            prefixed: false,
        };
        id.buf[..4].copy_from_slice(PREFIX);
        uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut id.buf[4..40]);
        id
    }

    /// The id for a request whose `x-openstack-request-id` header is `header`.
    pub fn resolve(header: Option<&str>) -> Result<RequestId, TooLong> {
        let Some(v) = header.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            return Ok(RequestId::generate());
        };
        if v.len() > MAX_BYTES {
            return Err(TooLong);
        }
        if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Ok(RequestId::generate());
        }
        let mut out = RequestId {
            buf: [0; CAPACITY],
            len: 0,
            prefixed: false,
        };
        let mut at = 0;
        if !v.as_bytes().starts_with(PREFIX) {
            out.buf[..4].copy_from_slice(PREFIX);
            out.prefixed = true;
            at = 4;
        }
        out.buf[at..at + v.len()].copy_from_slice(v.as_bytes());
        out.len = (at + v.len()) as u8;
        Ok(out)
    }

    /// What to send on as `x-openstack-request-id` so that [`RequestId::resolve`] gives this
    /// id again: the client's own value where `req-` was added to it (`req-` and 64 bytes
    /// would be refused as too long), else the id.
    pub fn forwarded(&self) -> &str {
        let s = self.as_str();
        if self.prefixed { &s[PREFIX.len()..] } else { s }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever written into `buf`.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("req-")
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_table() {
        let fresh = |r: Result<RequestId, TooLong>| {
            let id = r.unwrap();
            id.len() == 40 && id.starts_with("req-") && id[4..].parse::<uuid::Uuid>().is_ok()
        };
        assert!(fresh(RequestId::resolve(None)));
        assert!(fresh(RequestId::resolve(Some(""))));
        assert!(fresh(RequestId::resolve(Some("   "))));
        assert!(fresh(RequestId::resolve(Some("caf\u{e9}"))));
        assert!(fresh(RequestId::resolve(Some("a\u{1}b"))));
        let kept = |v: &str| RequestId::resolve(Some(v)).unwrap().to_string();
        assert_eq!(kept("req-abc"), "req-abc");
        assert_eq!(kept("abc"), "req-abc");
        assert_eq!(kept("  abc  "), "req-abc");
        assert_eq!(kept("a b"), "req-a b");
        assert_eq!(kept(&"a".repeat(64)).len(), 68);
        assert_eq!(kept(&format!("req-{}", "a".repeat(60))).len(), 64);
        assert_eq!(RequestId::resolve(Some(&"a".repeat(65))), Err(TooLong));
        // the forwarded form resolves to the same id (the data plane forwards its decision)
        for v in [
            Some("abc"),
            Some("req-x"),
            Some(&*"b".repeat(64)),
            None,
            Some("\u{7f}"),
        ] {
            let once = RequestId::resolve(v).unwrap();
            assert_eq!(
                RequestId::resolve(Some(once.forwarded())).unwrap(),
                once,
                "{v:?}"
            );
        }
    }
}
