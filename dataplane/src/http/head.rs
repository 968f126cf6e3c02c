//! Request and response heads: parsing a request head in place with `httparse`
//! ([`parse_request_into`]), deriving body framing with the request-smuggling rules
//! ([`request_framing`]), and reading a response head from an upstream server
//! ([`parse_response`]), rewritten for the client it is forwarded to.
//!
//! Limits: a request head with more than `max_headers` headers is [`HeadError::TooLarge`]
//! (431). A request carrying both `Content-Length` and `Transfer-Encoding`, several different
//! `Content-Length`s, or a transfer coding other than `chunked` is [`HeadError::Malformed`]
//! (400, and the connection closed).

use std::io;
use std::io::Write as _;

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Malformed request (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Head too large or too many headers (431).
    #[error("request header fields too large")]
    TooLarge,
    /// The peer closed mid-head.
    #[error("connection closed mid-request")]
    Eof,
    /// The head did not arrive in time (408).
    #[error("timed out reading request head")]
    Timeout,
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// No body.
    #[default]
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

/// Where a part of the head lies in [`RequestHead`]'s text.
type Span = (u32, u32);

/// A parsed request head: the head's text and where each part lies in it.
///
/// A connection keeps one and parses every request into it ([`parse_request_into`]), so once
/// its text and header list have grown to the usual size, reading a request allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    text: String,
    method: Span,
    target: Span,
    headers: Vec<(Span, Span)>,
    /// HTTP minor version (0 or 1).
    pub minor: u8,
    /// Body framing derived from the headers.
    pub framing: Framing,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
}

impl RequestHead {
    fn at(&self, (a, b): Span) -> &str {
        &self.text[a as usize..b as usize]
    }

    /// Method, as sent.
    pub fn method(&self) -> &str {
        self.at(self.method)
    }

    /// Request target, as sent (path and query).
    pub fn target(&self) -> &str {
        self.at(self.target)
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target().split('?').next().unwrap_or("")
    }

    /// Headers in order: names as sent, values trimmed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.headers.iter().map(|(n, v)| (self.at(*n), self.at(*v)))
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the client sent `Expect: 100-continue`.
    pub fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    }
}

/// Derives body framing from headers, applying the smuggling rules.
pub fn request_framing<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Framing, HeadError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeadError::Malformed("invalid Content-Length"));
                }
                let n: u64 = part
                    .parse()
                    .map_err(|_| HeadError::Malformed("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length headers"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te_seen = true;
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if chunked || !coding.eq_ignore_ascii_case("chunked") {
                    return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
                }
                chunked = true;
            }
        }
    }
    match (te_seen, length) {
        (true, Some(_)) => Err(HeadError::Malformed(
            "both Content-Length and Transfer-Encoding",
        )),
        (true, None) if chunked => Ok(Framing::Chunked),
        (true, None) => Err(HeadError::Malformed("unsupported Transfer-Encoding")),
        (false, Some(0)) | (false, None) => Ok(Framing::Empty),
        (false, Some(n)) => Ok(Framing::Length(n)),
    }
}

fn wants_keep_alive<'a>(minor: u8, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let mut close = false;
    let mut keep = false;
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("connection") {
            for tok in v.split(',').map(str::trim) {
                close |= tok.eq_ignore_ascii_case("close");
                keep |= tok.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    if minor >= 1 { !close } else { keep && !close }
}

/// Most headers parsed without a heap allocation; `max_headers` above it costs one per parse.
const STACK_HEADERS: usize = 128;

/// Most headers accepted in a control-plane response (it sends a handful).
const RESPONSE_HEADERS: usize = 64;

/// `part` (a slice of `base`) as a span of `base`, with surrounding whitespace left out.
fn span_in(base: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    let lead = part.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let trail = part[lead..]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    ((start + lead) as u32, (start + part.len() - trail) as u32)
}

/// Parses a request head from `buf` into `head` (reusing its allocations). `Ok(None)` means
/// more bytes are needed; `Ok(Some(n))` that the head took the first `n` bytes.
pub fn parse_request_into(
    buf: &[u8],
    max_headers: usize,
    head: &mut RequestHead,
) -> Result<Option<usize>, HeadError> {
    let mut on_stack =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut on_heap;
    let storage: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] =
        if max_headers <= STACK_HEADERS {
            &mut on_stack[..max_headers]
        } else {
            on_heap = Vec::with_capacity(max_headers);
            on_heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
            &mut on_heap[..]
        };
    let mut req = httparse::Request::new(&mut []);
    let used = match req.parse_with_uninit_headers(buf, storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("invalid request head")),
    };
    let text = std::str::from_utf8(&buf[..used])
        .map_err(|_| HeadError::Malformed("request head is not UTF-8"))?;
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    head.text.clear();
    head.text.push_str(text);
    head.method = span_in(buf, method.as_bytes());
    head.target = span_in(buf, target.as_bytes());
    head.headers.clear();
    for h in req.headers.iter() {
        head.headers
            .push((span_in(buf, h.name.as_bytes()), span_in(buf, h.value)));
    }
    head.minor = req.version.unwrap_or(1);
    head.framing = request_framing(head.headers())?;
    head.keep_alive = wants_keep_alive(head.minor, head.headers());
    Ok(Some(used))
}

/// [`parse_request_into`] into a new head.
pub fn parse_request(
    buf: &[u8],
    max_headers: usize,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut head = RequestHead::default();
    Ok(parse_request_into(buf, max_headers, &mut head)?.map(|used| (head, used)))
}

/// What the data plane needs of a response head from the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMeta {
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the upstream connection may be reused.
    pub keep_alive: bool,
}

/// Tries to parse a response head from the control plane; `request_method` decides whether a
/// body follows. `Ok(Some((meta, n)))`: the head took the first `n` bytes, and `out` holds the
/// head to forward to the client — status line, end-to-end headers, the framing header for
/// `meta.framing` — still open: [`end_forwarded_head`] finishes it once the caller knows
/// whether the client connection stays open. One parse serves both.
pub fn parse_response(
    buf: &[u8],
    request_method: &str,
    out: &mut Vec<u8>,
) -> Result<Option<(ResponseMeta, usize)>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(HeadError::Malformed("invalid upstream response head")),
    };
    let status = resp.code.unwrap_or(500);
    let minor = resp.version.unwrap_or(1);
    let headers = || {
        resp.headers
            .iter()
            .map(|h| (h.name, std::str::from_utf8(h.value).unwrap_or("").trim()))
    };
    let mut keep_alive = wants_keep_alive(minor, headers());
    let framing = if request_method.eq_ignore_ascii_case("HEAD")
        || status == 204
        || status == 304
        || status < 200
    {
        Framing::Empty
    } else {
        match request_framing(headers())? {
            Framing::Empty if headers().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) => {
                Framing::Empty
            }
            Framing::Empty => {
                keep_alive = false;
                Framing::UntilClose
            }
            f => f,
        }
    };
    out.clear();
    let reason = match resp.reason {
        Some(r) if !r.is_empty() => r,
        _ => shared::error::status_title(status),
    };
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    for h in resp.headers.iter() {
        if HOP_BY_HOP.iter().any(|x| h.name.eq_ignore_ascii_case(x))
            || h.name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty => {
            if status != 204 && status != 304 && status >= 200 {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
        Framing::UntilClose => {}
    }
    Ok(Some((
        ResponseMeta {
            status,
            framing,
            keep_alive,
        },
        used,
    )))
}

/// Finishes a head [`parse_response`] wrote: `Connection: close` unless `keep`, then the
/// blank line.
pub fn end_forwarded_head(out: &mut Vec<u8>, keep: bool) {
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Headers that describe one connection, not the message: never forwarded as they came.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "transfer-encoding",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_rules() {
        let ok = [
            (vec![], Framing::Empty),
            (vec![("Content-Length", "0")], Framing::Empty),
            (vec![("Content-Length", "12")], Framing::Length(12)),
            (
                vec![("content-length", "12"), ("Content-Length", "12")],
                Framing::Length(12),
            ),
            (vec![("Transfer-Encoding", "chunked")], Framing::Chunked),
        ];
        for (h, want) in ok {
            assert_eq!(request_framing(h.iter().copied()).unwrap(), want, "{h:?}");
        }
        let bad = [
            vec![("Content-Length", "12"), ("Transfer-Encoding", "chunked")],
            vec![("Content-Length", "12"), ("Content-Length", "13")],
            vec![("Content-Length", "1,2")],
            vec![("Content-Length", "-1")],
            vec![("Content-Length", "+5")],
            vec![("Content-Length", "")],
            vec![("Transfer-Encoding", "gzip, chunked")],
            vec![("Transfer-Encoding", "chunked, chunked")],
            vec![("Transfer-Encoding", "identity")],
        ];
        for h in bad {
            assert!(
                request_framing(h.iter().copied()).is_err(),
                "{h:?} accepted"
            );
        }
    }

    #[test]
    fn parses_heads_and_keep_alive() {
        let raw = b"PUT /v2/images/x/file?a=b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let (head, used) = parse_request(raw, 10).unwrap().unwrap();
        assert_eq!(
            (head.method(), head.path(), head.framing, head.keep_alive),
            ("PUT", "/v2/images/x/file", Framing::Length(3), true)
        );
        assert_eq!(&raw[used..], b"abc");
        assert!(
            parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n", 10)
                .unwrap()
                .is_none()
        );
        let (h, _) = parse_request(b"GET / HTTP/1.0\r\n\r\n", 10)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let (h, _) = parse_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 10)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", 2),
            Err(HeadError::TooLarge)
        ));
        assert!(matches!(
            parse_request(b"GET http://x/ HTTP/1.1\r\n\r\n", 2),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"\x01\x02 / HTTP/1.1\r\n\r\n", 2),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn one_head_is_reused_for_every_request() {
        let mut head = RequestHead::default();
        let a = b"GET /v2/images?limit=25 HTTP/1.1\r\nHost: h\r\nX-Auth-Token:  tok  \r\nX-Long: aaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        assert_eq!(parse_request_into(a, 10, &mut head).unwrap(), Some(a.len()));
        assert_eq!(head.header("x-auth-token"), Some("tok"));
        assert_eq!(head.path(), "/v2/images");
        let b = b"PUT /x HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            parse_request_into(b, 10, &mut head).unwrap(),
            Some(b.len() - 2)
        );
        assert_eq!(
            (head.method(), head.target(), head.framing, head.keep_alive),
            ("PUT", "/x", Framing::Length(2), false)
        );
        assert_eq!(head.header("x-auth-token"), None);
        assert_eq!(head.headers().count(), 1);
        assert!(matches!(
            parse_request_into(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n", 10, &mut head),
            Err(HeadError::Malformed(_))
        ));
        // more headers than fit on the stack still parse
        let many: String = (0..200).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let c = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(
            parse_request_into(c.as_bytes(), 300, &mut head)
                .unwrap()
                .is_some()
        );
        assert_eq!(head.header("x-199"), Some("199"));
    }

    #[test]
    fn response_heads_are_rewritten_for_the_client() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\ncontent-length: 2\r\nx-openstack-request-id: req-1\r\n\r\n";
        let mut out = Vec::new();
        let (meta, used) = parse_response(raw, "GET", &mut out).unwrap().unwrap();
        assert_eq!(
            meta,
            ResponseMeta {
                status: 200,
                framing: Framing::Length(2),
                keep_alive: true
            }
        );
        assert_eq!(used, raw.len());
        end_forwarded_head(&mut out, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-openstack-request-id: req-1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        let raw = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut out = b"leftover".to_vec();
        parse_response(raw, "DELETE", &mut out).unwrap().unwrap();
        end_forwarded_head(&mut out, true);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
        // neither a length nor chunked: the body runs until the upstream closes
        let (meta, _) = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", "GET", &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(
            (meta.framing, meta.keep_alive),
            (Framing::UntilClose, false)
        );
    }
}
