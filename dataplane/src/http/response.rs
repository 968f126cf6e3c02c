//! Response heads the data plane writes itself, and its error responses: Glance's JSON body
//! rendered by [`shared::error::body`] (the renderer the control plane uses too), with the
//! status titles of [`shared::error::status_title`].

use std::io::Write as _;

/// Builds a response head. `Content-Length` is added when `content_length` is `Some`.
pub fn response_head(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    content_length: Option<u64>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    response_head_into(
        &mut out,
        status,
        reason,
        headers,
        content_length,
        keep_alive,
    );
    out
}

/// Appends a response head to `out` (see [`response_head`]); no allocation beyond `out`.
pub fn response_head_into(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    content_length: Option<u64>,
    keep_alive: bool,
) {
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = content_length {
        let _ = write!(out, "Content-Length: {len}\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of a status (one table for both planes).
pub fn reason(status: u16) -> &'static str {
    shared::error::status_title(status)
}

/// A complete JSON error response, Glance-shaped ([`shared::error::body`]).
pub fn error_response(status: u16, message: &str, request_id: &str, keep_alive: bool) -> Vec<u8> {
    error_response_with(status, message, request_id, keep_alive, &[])
}

/// [`error_response`] with extra headers (e.g. `WWW-Authenticate` on a 401, `Content-Range`
/// on a 416).
pub fn error_response_with(
    status: u16,
    message: &str,
    request_id: &str,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let body = shared::error::body(status, message);
    let mut headers = [("", ""); 8];
    headers[0] = ("Content-Type", "application/json");
    headers[1] = ("x-openstack-request-id", request_id);
    let n = 2 + extra.len().min(headers.len() - 2);
    headers[2..n].copy_from_slice(&extra[..n - 2]);
    let mut out = response_head(
        status,
        reason(status),
        &headers[..n],
        Some(body.len() as u64),
        keep_alive,
    );
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_carry_the_shared_body() {
        let r = error_response_with(
            416,
            "no \"such\" range",
            "req-1",
            true,
            &[("Content-Range", "bytes */10")],
        );
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 416 Requested Range Not Satisfiable\r\n"));
        assert!(head.contains("\r\nContent-Range: bytes */10"));
        assert!(head.contains("\r\nx-openstack-request-id: req-1"));
        assert_eq!(
            body.as_bytes(),
            shared::error::body(416, "no \"such\" range")
        );
    }
}
