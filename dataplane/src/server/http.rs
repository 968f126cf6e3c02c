//! HTTP/1.1 framing for the data plane: request heads (parsed with `httparse`), body framing
//! (sized or chunked) with the request-smuggling rules, a streaming chunked decoder, a
//! buffered connection over any compio stream, and response heads.
//!
//! Limits: a request head larger than `max_header_bytes` or with more than `max_headers`
//! headers is answered 431. A request carrying both `Content-Length` and
//! `Transfer-Encoding`, several different `Content-Length`s, or a transfer coding other than
//! `chunked` is answered 400 and the connection closed.

use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io;
use std::io::Write as _;
use std::time::Duration;

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

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Invalid chunked framing (400).
    #[error("invalid chunked encoding: {0}")]
    Chunked(&'static str),
    /// The peer closed before the body was complete.
    #[error("connection closed mid-body")]
    Eof,
    /// No body bytes for longer than the idle timeout.
    #[error("timed out waiting for body bytes")]
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
        _ => reason(status),
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

// === impl ChunkedDecoder ===

/// A streaming decoder for `Transfer-Encoding: chunked`, strict about framing.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    remaining: u64,
    digits: u8,
    line_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            remaining: 0,
            digits: 0,
            line_bytes: 0,
        }
    }

    /// Whether the terminating chunk and trailers have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out` until `out` holds `out_limit` bytes.
    /// Returns how many input bytes were consumed.
    pub fn decode<B: BodyBuf>(
        &mut self,
        input: &[u8],
        out: &mut B,
        out_limit: usize,
    ) -> Result<usize, BodyError> {
        use ChunkState::*;
        let bad = BodyError::Chunked;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            if self.state == Data {
                let room = out_limit.saturating_sub(out.filled());
                if room == 0 {
                    break;
                }
                let n = (input.len() - i)
                    .min(room)
                    .min(self.remaining.min(usize::MAX as u64) as usize);
                out.push(&input[i..i + n]);
                i += n;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == 16 {
                            return Err(bad("chunk size too large"));
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.remaining = (self.remaining << 4) | v;
                        self.digits += 1;
                        Size
                    }
                    b';' if self.digits > 0 => {
                        self.line_bytes = 0;
                        Ext
                    }
                    b'\r' if self.digits > 0 => SizeLf,
                    _ => return Err(bad("invalid chunk size")),
                },
                Ext => {
                    self.line_bytes += 1;
                    if self.line_bytes > MAX_CHUNK_LINE {
                        return Err(bad("chunk extension too long"));
                    }
                    if b == b'\r' {
                        SizeLf
                    } else if b == b'\n' {
                        return Err(bad("bare LF in chunk extension"));
                    } else {
                        Ext
                    }
                }
                SizeLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after chunk size"));
                    }
                    self.digits = 0;
                    if self.remaining == 0 {
                        TrailerStart
                    } else {
                        Data
                    }
                }
                DataCr => {
                    if b != b'\r' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    DataLf
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(bad("missing CRLF after chunk data"));
                    }
                    Size
                }
                TrailerStart => {
                    if b == b'\r' {
                        EndLf
                    } else {
                        self.line_bytes = 1;
                        TrailerLine
                    }
                }
                TrailerLine => {
                    self.line_bytes += 1;
                    if self.line_bytes > MAX_CHUNK_LINE {
                        return Err(bad("trailer line too long"));
                    }
                    if b == b'\r' { TrailerLf } else { TrailerLine }
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after trailer"));
                    }
                    TrailerStart
                }
                EndLf => {
                    if b != b'\n' {
                        return Err(bad("expected LF after last chunk"));
                    }
                    Done
                }
                Data | Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }
}

// === impl BodyBuf ===

/// A buffer a body is read into: a `Vec<u8>` (forwarded bodies) or an
/// [`AlignedBuf`](crate::io::AlignedBuf) (uploads, written with `O_DIRECT`). Reads append up to
/// [`BodyBuf::room`] bytes, never more.
pub trait BodyBuf: compio::buf::IoBufMut {
    /// Bytes held.
    fn filled(&self) -> usize;
    /// Most bytes it will hold.
    fn room(&self) -> usize;
    /// Appends `src` (the caller keeps within [`BodyBuf::room`]).
    fn push(&mut self, src: &[u8]);
    /// Keeps the first `len` bytes.
    fn cut(&mut self, len: usize);
}

impl BodyBuf for Vec<u8> {
    fn filled(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn push(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl BodyBuf for crate::io::AlignedBuf {
    fn filled(&self) -> usize {
        self.len()
    }
    fn room(&self) -> usize {
        self.capacity()
    }
    fn push(&mut self, src: &[u8]) {
        self.push_slice(src);
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
}

// === impl Conn ===

/// A stream with a read buffer for heads and leftover bytes.
#[derive(Debug)]
pub struct Conn<S> {
    /// The underlying stream.
    pub stream: S,
    buf: Vec<u8>,
    start: usize,
}

/// Where a body read stands.
#[derive(Debug, Clone)]
pub enum BodyState {
    /// Bytes left of a sized body.
    Length(u64),
    /// A chunked body being decoded.
    Chunked(ChunkedDecoder),
    /// A body delimited by the peer closing.
    UntilClose,
    /// Complete.
    Done,
}

impl BodyState {
    /// The state at the start of a body with this framing.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyState::UntilClose,
        }
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyState::Done)
    }
}

async fn with_timeout<T>(d: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    compio::time::timeout(d, f).await.ok()
}

impl<S: AsyncRead + AsyncWrite> Conn<S> {
    /// Wraps a stream with a read buffer of `capacity` bytes to start with.
    pub fn new(stream: S, capacity: usize) -> Self {
        Conn {
            stream,
            buf: Vec::with_capacity(capacity),
            start: 0,
        }
    }

    /// Gives back read-buffer memory above `keep` bytes when nothing is buffered, so a
    /// connection that once read a large head or a chunked body does not hold that memory for
    /// the rest of its life (the per-connection budget).
    pub fn trim(&mut self, keep: usize) {
        if self.start == self.buf.len() && self.buf.capacity() > keep {
            self.buf = Vec::with_capacity(keep);
            self.start = 0;
        }
    }

    /// Bytes read but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Drops the first `n` buffered bytes.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes into the buffer; returns how many (0 = EOF).
    async fn fill(&mut self, want: usize) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        let buf = std::mem::take(&mut self.buf);
        let (res, buf) = self.stream.append(buf).await.into();
        self.buf = buf;
        res
    }

    /// Reads the next request head into `head`. `Ok(false)` on a clean close before any byte.
    pub async fn read_request(
        &mut self,
        head: &mut RequestHead,
        max_bytes: usize,
        max_headers: usize,
        timeout: Duration,
    ) -> Result<bool, HeadError> {
        let mut deadline = None;
        loop {
            if !self.buffered().is_empty() {
                let limit = self.buffered().len().min(max_bytes);
                match parse_request_into(&self.buffered()[..limit], max_headers, head)? {
                    Some(used) => {
                        self.consume(used);
                        return Ok(true);
                    }
                    None if limit >= max_bytes => return Err(HeadError::TooLarge),
                    None => {}
                }
            }
            let deadline = *deadline.get_or_insert_with(|| std::time::Instant::now() + timeout);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let n = with_timeout(left, self.fill(4096))
                .await
                .ok_or(HeadError::Timeout)??;
            if n == 0 {
                return if self.buffered().is_empty() {
                    Ok(false)
                } else {
                    Err(HeadError::Eof)
                };
            }
        }
    }

    /// Reads a response head (from the control plane), skipping interim 1xx responses, and
    /// writes the head to forward into `out` ([`parse_response`]). The head's `n` bytes stay at
    /// the front of [`Conn::buffered`] until [`Conn::consume`]d.
    pub async fn read_response(
        &mut self,
        method: &str,
        timeout: Duration,
        out: &mut Vec<u8>,
    ) -> Result<(ResponseMeta, usize), HeadError> {
        loop {
            if !self.buffered().is_empty()
                && let Some((meta, used)) = parse_response(self.buffered(), method, out)?
            {
                if meta.status < 200 {
                    self.consume(used);
                    continue;
                }
                return Ok((meta, used));
            }
            if self.buffered().len() > 1 << 20 {
                return Err(HeadError::TooLarge);
            }
            let n = with_timeout(timeout, self.fill(8192))
                .await
                .ok_or(HeadError::Timeout)??;
            if n == 0 {
                return Err(HeadError::Eof);
            }
        }
    }

    /// Reads the next decoded body bytes, appending to `out` (up to its room). Returns the
    /// buffer — `None` when a timeout dropped the read that held it; after the call
    /// `out.filled()` grew unless the body is done (`state.is_done()`).
    pub async fn read_body<B: BodyBuf>(
        &mut self,
        state: &mut BodyState,
        mut out: B,
        idle: Duration,
    ) -> (Result<(), BodyError>, Option<B>) {
        let limit = out.room();
        let before = out.filled();
        loop {
            match state {
                BodyState::Done => return (Ok(()), Some(out)),
                BodyState::Length(remaining) => {
                    if !self.buffered().is_empty() {
                        let n = self
                            .buffered()
                            .len()
                            .min(limit - out.filled())
                            .min(*remaining as usize);
                        out.push(&self.buffered()[..n]);
                        self.consume(n);
                        *remaining -= n as u64;
                    } else {
                        let (res, buf) = match with_timeout(idle, self.stream.append(out)).await {
                            Some(r) => r.into(),
                            None => return (Err(BodyError::Timeout), None),
                        };
                        out = buf;
                        match res {
                            Ok(0) => return (Err(BodyError::Eof), Some(out)),
                            Ok(_) => {}
                            Err(e) => return (Err(e.into()), Some(out)),
                        }
                        let got = (out.filled() - before) as u64;
                        if got > *remaining {
                            // Pipelined bytes past the body belong to the next request.
                            let keep = before + *remaining as usize;
                            self.buf.splice(
                                self.start..self.start,
                                out.as_init()[keep..].iter().copied(),
                            );
                            out.cut(keep);
                            *remaining = 0;
                        } else {
                            *remaining -= got;
                        }
                    }
                    if *remaining == 0 {
                        *state = BodyState::Done;
                    }
                    return (Ok(()), Some(out));
                }
                BodyState::Chunked(dec) => {
                    if !self.buffered().is_empty() {
                        let consumed = match dec.decode(&self.buf[self.start..], &mut out, limit) {
                            Ok(n) => n,
                            Err(e) => return (Err(e), Some(out)),
                        };
                        self.consume(consumed);
                        if dec.is_done() {
                            *state = BodyState::Done;
                            return (Ok(()), Some(out));
                        }
                        if out.filled() > before || out.filled() == limit {
                            return (Ok(()), Some(out));
                        }
                    }
                    match with_timeout(idle, self.fill(64 * 1024)).await {
                        None => return (Err(BodyError::Timeout), Some(out)),
                        Some(Ok(0)) => return (Err(BodyError::Eof), Some(out)),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return (Err(e.into()), Some(out)),
                    }
                }
                BodyState::UntilClose => {
                    if !self.buffered().is_empty() {
                        let n = self.buffered().len().min(limit - out.filled());
                        out.push(&self.buffered()[..n]);
                        self.consume(n);
                        return (Ok(()), Some(out));
                    }
                    let (res, buf) = match with_timeout(idle, self.stream.append(out)).await {
                        Some(r) => r.into(),
                        None => return (Err(BodyError::Timeout), None),
                    };
                    out = buf;
                    match res {
                        Ok(0) => *state = BodyState::Done,
                        Ok(_) => {}
                        Err(e) => return (Err(e.into()), Some(out)),
                    }
                    return (Ok(()), Some(out));
                }
            }
        }
    }

    /// Writes all of `data` and flushes (a TLS stream holds records until flushed), with an
    /// idle timeout.
    pub async fn write_all(&mut self, data: Vec<u8>, idle: Duration) -> (io::Result<()>, Vec<u8>) {
        let stream = &mut self.stream;
        let op = async move {
            let (res, data) = stream.write_all(data).await.into();
            match res {
                Ok(()) => (stream.flush().await, data),
                Err(e) => (Err(e), data),
            }
        };
        match with_timeout(idle, op).await {
            Some(r) => r,
            None => (
                Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
                Vec::new(),
            ),
        }
    }
}

// === response heads ===

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

/// The reason phrase for the statuses the data plane sends itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete JSON error response: `{"error": {"code", "title", "message"}}`.
///
/// Nested on purpose: python-glanceclient reads `message` from every top-level value of a
/// JSON error body, openstacksdk and keystoneauth both understand the `error` object.
pub fn error_response(status: u16, message: &str, request_id: &str, keep_alive: bool) -> Vec<u8> {
    error_response_with(status, message, request_id, keep_alive, &[])
}

/// [`error_response`] with extra headers (e.g. `WWW-Authenticate` on a 401).
pub fn error_response_with(
    status: u16,
    message: &str,
    request_id: &str,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let title = reason(status);
    let body = format!(
        "{{\"error\": {{\"code\": {status}, \"title\": \"{title}\", \"message\": {}}}}}",
        json_string(message)
    );
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("x-openstack-request-id", request_id),
    ];
    headers.extend_from_slice(extra);
    let mut out = response_head(status, title, &headers, Some(body.len() as u64), keep_alive);
    out.extend_from_slice(body.as_bytes());
    out
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

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

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), BodyError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() && !d.is_done() {
            let end = (at + step).min(input.len());
            let n = d.decode(&input[at..end], &mut out, usize::MAX)?;
            at += n;
        }
        assert!(d.is_done(), "not done");
        Ok((out, at))
    }

    #[test]
    fn chunked_decodes_at_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (out, used) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello, world");
            assert_eq!(&body[used..], b"NEXT");
        }
        let (out, _) = decode_all(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(out, b"0123456789");
    }

    #[test]
    fn chunked_rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"11111111111111111\r\n",
            b"-1\r\n",
            b" 5\r\nhello\r\n",
            b"0\r\n\r\r",
        ] {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            assert!(
                d.decode(bad, &mut out, usize::MAX).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn chunked_respects_out_limit() {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let n = d.decode(body, &mut out, 4).unwrap();
        assert_eq!(out, b"0123");
        out.clear();
        let m = d.decode(&body[n..], &mut out, 100).unwrap();
        assert_eq!(out, b"456789");
        assert!(d.is_done());
        assert_eq!(n + m, body.len());
    }

    #[test]
    fn error_body_is_json() {
        let r = error_response(404, "no \"such\" image", "req-1", true);
        let text = String::from_utf8(r).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            r#"{"error": {"code": 404, "title": "Not Found", "message": "no \"such\" image"}}"#
        );
    }
}
#[cfg(test)]
mod socket_tests {
    use super::*;
    #[compio::test]
    async fn head_arriving_in_pieces_is_reassembled() {
        let l = compio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let big = format!(
            "GET /versions HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let t = std::thread::spawn(move || {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(big.as_bytes()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
        });
        let (s, _) = l.accept().await.unwrap();
        let mut c = Conn::new(s, 8192);
        // 20 KB of head arrives over several reads: the buffer must keep what came first and
        // refuse the head as too large (431), not as malformed.
        let r = c
            .read_request(
                &mut RequestHead::default(),
                16384,
                100,
                Duration::from_secs(5),
            )
            .await;
        t.join().unwrap();
        assert!(matches!(r, Err(HeadError::TooLarge)), "{r:?}");
    }
}
