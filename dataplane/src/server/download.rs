//! `GET /v2/images/{id}/file`. [`handle`] runs four steps, each a function: `check` the id,
//! `authorize` over the channel (and open the best location it lists), `plan` the range,
//! `send` the head and then the bytes: from a filesystem store's file into the socket without
//! a user-space copy (`sendfile` on the worker thread, `splice` through a pipe where sendfile
//! is not supported, a pooled buffer under TLS), or from a remote store's ranged GET. The
//! locations are tried best first (store weight); one whose store fails is logged, counted and
//! skipped; none left → 503.
//!
//! Answers as Glance does: 200 with `Content-Length`, `Content-Type: application/octet-stream`
//! and `Content-MD5` (the image's md5 **hex**); 204 when the image has no data; 206 with
//! `Content-Range` for one range (`bytes=a-b`, `bytes=a-`, `bytes=-n`, or the legacy
//! `Content-Range` request header); 416 with `Content-Range: bytes */size` for an
//! unsatisfiable range; 400 for several ranges. Beyond Glance, so that clients resume safely:
//! `ETag` is the image's `os_hash_value` (quoted), `If-None-Match` with it (or `*`) answers
//! 304, and `If-Range` honours the range only when it names that tag (else the whole image).
//!
//! With the block cache on (`image_cache_dir`), an image in a remote store is served through
//! it ([`super::cached`]): present blocks with `sendfile`, missing ones filled once however
//! many downloads want them.

use super::cached::{self, Piece};
use super::respond::{Refusal, credentials, no_content, refuse};
use super::tls::ClientStream;
use super::worker::Worker;
use crate::http::{Conn, Framing, RequestHead, response_head_into};
use crate::io::Splicer;
use crate::metrics::{Route, Side};
use compio::io::AsyncReadAt;
use shared::channel::{Request, Response};
use shared::image::ImageId;
use std::io::Write as _;
use std::rc::Rc;

/// The part of the image to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The whole image (200).
    Full,
    /// Bytes `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
}

/// Why a range cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// Several ranges (400, as Glance).
    Multiple,
    /// Malformed or outside the image (416).
    Unsatisfiable,
}

fn parse_u64(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Decides what to send from the `Range` (or legacy `Content-Range`) request header.
pub fn span(
    range: Option<&str>,
    content_range: Option<&str>,
    size: u64,
) -> Result<Span, RangeError> {
    use RangeError::*;
    if let Some(r) = range {
        if r.contains(',') {
            return Err(Multiple);
        }
        let spec = r.trim().strip_prefix("bytes=").ok_or(Unsatisfiable)?.trim();
        let (a, b) = spec.split_once('-').ok_or(Unsatisfiable)?;
        let (start, end) = if a.is_empty() {
            let n = parse_u64(b).ok_or(Unsatisfiable)?;
            if n == 0 {
                return Err(Unsatisfiable);
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        } else {
            let start = parse_u64(a).ok_or(Unsatisfiable)?;
            let end = if b.is_empty() {
                u64::MAX
            } else {
                parse_u64(b).ok_or(Unsatisfiable)?
            };
            if end < start {
                return Err(Unsatisfiable);
            }
            (start, end.min(size.saturating_sub(1)))
        };
        if start >= size {
            return Err(Unsatisfiable);
        }
        return Ok(Span::Part { start, end });
    }
    if let Some(cr) = content_range {
        // bytes a-b/len or bytes a-b/*
        let spec = cr.trim().strip_prefix("bytes").ok_or(Unsatisfiable)?.trim();
        let (span, _len) = spec.split_once('/').ok_or(Unsatisfiable)?;
        let (a, b) = span.split_once('-').ok_or(Unsatisfiable)?;
        let (start, end) = (
            parse_u64(a).ok_or(Unsatisfiable)?,
            parse_u64(b).ok_or(Unsatisfiable)?,
        );
        if end < start || end >= size {
            return Err(Unsatisfiable);
        }
        return Ok(Span::Part { start, end });
    }
    Ok(Span::Full)
}

/// Serves one download: check → authorize (and open the data) → plan the range → send.
/// Returns whether the connection may be reused.
pub async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    id: &str,
    rid: &str,
    w: &Rc<Worker>,
    splicer: &mut Option<Splicer>,
    started: std::time::Instant,
) -> bool {
    let keep = head.keep_alive && head.framing == Framing::Empty;
    let planned = async {
        let image_id = check(id, keep)?;
        let data = authorize(head, image_id, rid, keep, w).await?;
        data.map(|d| plan(head, d, keep))
            .transpose()
            .map(|p| (image_id, p))
    };
    match planned.await {
        Ok((_, Some(plan))) if plan.not_modified => not_modified(conn, &plan, rid, keep, w).await,
        Ok((image_id, Some(plan))) => {
            send(conn, image_id, plan, rid, keep, w, splicer, started).await
        }
        Ok((_, None)) => no_content(conn, Route::Download, rid, keep, w).await,
        Err(refusal) => refuse(conn, Route::Download, refusal, rid, w).await,
    }
}

/// Step 1: the image id (404 for one that cannot be an image's).
fn check(id: &str, keep: bool) -> Result<ImageId, Refusal> {
    id.parse::<ImageId>()
        .map_err(|_| Refusal::new(404, shared::error::no_such_image(&id), keep))
}

/// The image's data: a local file, open, or remote locations to read from.
#[derive(Debug)]
struct Data {
    source: Source,
    size: u64,
    /// md5 hex for `Content-MD5`, kept on the stack past the channel connection's return.
    md5: Option<[u8; 32]>,
    /// The `ETag`: `os_hash_value`, quoted, likewise on the stack.
    etag: Option<Tag>,
}

/// A quoted `os_hash_value` (at most 128 hex digits: sha512), held without allocating.
#[derive(Debug, Clone, Copy)]
struct Tag {
    buf: [u8; 130],
    len: u8,
}

impl Tag {
    fn new(hash: &str) -> Option<Tag> {
        let mut buf = [0u8; 130];
        if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        buf[0] = b'"';
        buf[1..=hash.len()].copy_from_slice(hash.as_bytes());
        buf[hash.len() + 1] = b'"';
        Some(Tag {
            buf,
            len: (hash.len() + 2) as u8,
        })
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }

    /// Whether a condition header's list of tags (`"a", W/"b"`, or `*`) names this one
    /// (weak comparison, as `If-None-Match` uses).
    fn listed_in(&self, header: &str) -> bool {
        let me = &self.as_str()[1..self.len as usize - 1];
        header
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).trim_matches('"') == me)
    }

    /// Whether an `If-Range` value is exactly this (strong) tag.
    fn is(&self, header: &str) -> bool {
        header.trim() == self.as_str()
    }
}

#[derive(Debug)]
enum Source {
    /// A file of a filesystem store (sent with `sendfile`), and the store's metrics slot.
    File(std::fs::File, usize),
    /// Remote locations, best first: each is tried in turn when the data is sent.
    Remote(Vec<(String, String)>),
}

/// Step 2: `AuthorizeDownload`, then open the best location it names. `None`: the image has
/// no data (204). The answer's strings point into the channel connection's buffer, so a local
/// file is opened before the connection goes back to the pool: nothing is copied or
/// allocated. Locations in remote stores are copied out and tried when sending (the first
/// that answers serves the download; a failure moves on to the next).
async fn authorize(
    head: &RequestHead,
    image_id: ImageId,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> Result<Option<Data>, Refusal> {
    let ask = Request::AuthorizeDownload {
        request_id: rid,
        image_id,
        credentials: credentials(head),
    };
    let chan = w.link.exchange(&ask).await.map_err(|e| {
        w.metrics.download_failed(Side::Control);
        Refusal::unavailable("AuthorizeDownload", &e, keep)
    })?;
    let (locations, size, checksum, etag) = match chan.response() {
        Ok(Response::DownloadGranted {
            locations,
            size,
            checksum,
            os_hash_value,
        }) => (locations, size, checksum, os_hash_value.and_then(Tag::new)),
        Ok(Response::Denied(reason)) => {
            w.link.give_back(chan);
            return Err(Refusal::denied(reason, &image_id, keep));
        }
        other => {
            let other = other.map(crate::control_link::owned);
            return Err(Refusal::from_channel("AuthorizeDownload", other, keep));
        }
    };
    let md5 = checksum.and_then(|c| <[u8; 32]>::try_from(c.as_bytes()).ok());
    let mut missing = false;
    let mut failed = false;
    let mut remote: Option<Vec<(String, String)>> = None;
    let mut opened = None;
    for (store, url) in shared::location::entries(locations) {
        if let Some(opened_local) = w.stores.open_local(store, url) {
            match opened_local {
                Ok((file, size)) => {
                    opened = Some((file, size, w.stores.metric_slot(store)));
                    break;
                }
                Err(crate::store::Error::Missing(_)) => missing = true,
                Err(e) => {
                    tracing::error!(%image_id, store, error = %e, "cannot open image data");
                    failed = true;
                }
            }
            w.metrics.download_failover();
        } else {
            remote
                .get_or_insert_with(Vec::new)
                .push((store.to_owned(), url.to_owned()));
        }
    }
    w.link.give_back(chan);
    if let Some((file, size, slot)) = opened {
        return Ok(Some(Data {
            source: Source::File(file, slot),
            size,
            md5,
            etag,
        }));
    }
    if let Some(remote) = remote {
        return Ok(Some(Data {
            source: Source::Remote(remote),
            size,
            md5,
            etag,
        }));
    }
    if failed {
        return Err(Refusal::new(503, shared::error::DATA_UNAVAILABLE, keep));
    }
    if missing {
        tracing::warn!(%image_id, "image data missing from the store");
    }
    Ok(None)
}

/// What to send: status, which bytes, and the data.
#[derive(Debug)]
struct Plan {
    data: Data,
    span: Span,
    /// `If-None-Match` names the image's tag: 304.
    not_modified: bool,
}

/// Step 3: the conditions (`If-None-Match`, `If-Range`) and the range (`Range`, or the legacy
/// `Content-Range` request header): 400 for several ranges, 416 (with
/// `Content-Range: bytes */size`) for one outside the image.
fn plan(head: &RequestHead, data: Data, keep: bool) -> Result<Plan, Refusal> {
    let tag = data.etag;
    let not_modified =
        matches!((tag, head.header("if-none-match")), (Some(t), Some(h)) if t.listed_in(h));
    // a range under an `If-Range` that does not name this tag is ignored: the whole image
    let ranged = match head.header("if-range") {
        Some(cond) => tag.is_some_and(|t| t.is(cond)),
        None => true,
    };
    let (range, content_range) = match ranged {
        true => (head.header("range"), head.header("content-range")),
        false => (None, None),
    };
    match span(range, content_range, data.size) {
        Ok(span) => Ok(Plan {
            data,
            span,
            not_modified,
        }),
        Err(RangeError::Multiple) => Err(Refusal::new(
            400,
            "Requests with multiple ranges are not supported; make several single-range requests.",
            keep,
        )),
        Err(RangeError::Unsatisfiable) => {
            Err(
                Refusal::new(416, "The requested range is not satisfiable.", keep)
                    .with_header("Content-Range", format!("bytes */{}", data.size)),
            )
        }
    }
}

/// `304 Not Modified` (`If-None-Match` named the image's tag), with the tag.
async fn not_modified(
    conn: &mut Conn<ClientStream>,
    plan: &Plan,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> bool {
    let tag = plan.data.etag.as_ref().map_or("", Tag::as_str);
    let mut h = w.scratch.take();
    let fields = [("ETag", tag), ("x-openstack-request-id", rid)];
    response_head_into(&mut h, 304, crate::http::reason(304), &fields, None, keep);
    super::respond::answered(conn, w, Route::Download, 304);
    let (res, h) = conn.write_all(h, w.settings.idle_timeout).await;
    w.scratch.put(h);
    res.is_ok() && keep
}

/// Step 4: the head (in a pooled buffer, `Content-Range` written on the stack: no
/// allocation), then the bytes.
#[allow(clippy::too_many_arguments)]
async fn send(
    conn: &mut Conn<ClientStream>,
    image_id: ImageId,
    plan: Plan,
    rid: &str,
    keep: bool,
    w: &Rc<Worker>,
    splicer: &mut Option<Splicer>,
    started: std::time::Instant,
) -> bool {
    let Plan { data, span, .. } = plan;
    let size = data.size;
    let (status, offset, len) = match span {
        Span::Full => (200, 0, size),
        Span::Part { start, end } => (206, start, end - start + 1),
    };
    let cache = w.cache.as_ref();
    // an image being read through the cache is not evicted meanwhile
    let mut _pin = None;
    let (body, slot) = match data.source {
        Source::File(file, slot) => (Body::File(file), slot),
        Source::Remote(_) if len == 0 => (Body::Empty, 0),
        Source::Remote(locations) => {
            let slot = w.stores.metric_slot(&locations[0].0);
            let locations: std::rc::Rc<[(String, String)]> = locations.into();
            let through = match cache {
                Some(c) => {
                    let span = (size, offset, len);
                    let blocks = cached::blocks(w, c, image_id, locations.clone(), span).await;
                    // pinned before its first block is read (a download streamed past the
                    // cache leaves no entry in it)
                    _pin = blocks.as_ref().map(|_| c.blocks.pin(image_id));
                    blocks
                }
                None => None,
            };
            let opened = match through {
                Some(mut blocks) => match blocks.next().await {
                    Some(Ok(first)) => Some(Body::Cached(blocks, first)),
                    Some(Err(e)) => {
                        tracing::warn!(%image_id, error = %e, "no location gave the first block");
                        None
                    }
                    None => Some(Body::Empty),
                },
                _ => open_remote(&locations, offset, len, w)
                    .await
                    .map(|(reader, _)| Body::Remote(reader)),
            };
            match opened {
                Some(body) => (body, slot),
                None => {
                    w.metrics.download_failed(Side::Store);
                    let refusal = Refusal::new(503, shared::error::DATA_UNAVAILABLE, keep);
                    return refuse(conn, Route::Download, refusal, rid, w).await;
                }
            }
        }
    };
    let mut range_buf = [0u8; 72];
    let content_range = match span {
        Span::Full => None,
        Span::Part { start, end } => {
            let mut rest = &mut range_buf[..];
            let _ = write!(rest, "bytes {start}-{end}/{size}");
            let written = 72 - rest.len();
            std::str::from_utf8(&range_buf[..written]).ok()
        }
    };
    let md5 = data.md5.as_ref().and_then(|m| std::str::from_utf8(m).ok());
    let mut fields = [("Content-Type", "application/octet-stream"); 5];
    fields[1] = ("x-openstack-request-id", rid);
    let mut n = 2;
    for field in [
        md5.map(|v| ("Content-MD5", v)),
        data.etag.as_ref().map(|t| ("ETag", t.as_str())),
        content_range.map(|v| ("Content-Range", v)),
    ]
    .into_iter()
    .flatten()
    {
        fields[n] = field;
        n += 1;
    }
    let mut h = w.scratch.take();
    response_head_into(
        &mut h,
        status,
        crate::http::reason(status),
        &fields[..n],
        Some(len),
        keep,
    );
    super::respond::answered(conn, w, Route::Download, status);
    let (res, h) = conn.write_all(h, w.settings.idle_timeout).await;
    w.scratch.put(h);
    if res.is_err() {
        return false;
    }
    w.metrics.time_to_first_byte(started.elapsed());
    if len == 0 {
        return keep;
    }
    let _moving = w.metrics.in_flight(Route::Download);
    // counted as they go: a download cut short counts what it moved
    let moved = std::cell::Cell::new(0u64);
    let progress = |n: u64| {
        moved.set(moved.get() + n);
        w.metrics.bytes_out(slot, n);
    };
    let sent = match body {
        Body::File(file) => send_file(conn, file, offset, len, w, splicer, &progress).await,
        Body::Remote(reader) => send_stream(conn, reader, len, w, &progress).await,
        Body::Cached(blocks, first) => {
            send_blocks(conn, blocks, first, w, splicer, &progress).await
        }
        Body::Empty => Ok(()),
    };
    w.metrics.transfer_size(Route::Download, moved.get());
    if let Err(e) = sent {
        tracing::debug!(%image_id, error = %e, "download ended early");
        w.metrics.download_failed(e.side);
        return false;
    }
    tracing::debug!(%image_id, request_id = rid, bytes = len, "download sent");
    keep
}

/// What the bytes come from.
enum Body<'a> {
    File(std::fs::File),
    Remote(crate::store::Reader),
    /// Through the block cache: the blocks, and the first piece (found before the head).
    Cached(cached::Blocks<'a>, Piece),
    Empty,
}

/// Sends a download through the block cache, piece by piece: cached blocks with `sendfile`,
/// blocks just filled from memory, what the cache could not take from the store. A block no
/// location can give cuts the connection.
async fn send_blocks(
    conn: &mut Conn<ClientStream>,
    mut blocks: cached::Blocks<'_>,
    first: Piece,
    w: &Worker,
    splicer: &mut Option<Splicer>,
    progress: &dyn Fn(u64),
) -> Result<(), Cut> {
    let mut piece = first;
    loop {
        match piece {
            Piece::File { file, start, len } => {
                send_file(conn, file, start, len, w, splicer, progress).await?;
            }
            Piece::Memory {
                mut part,
                index,
                block_len,
            } => {
                // a buffer at a time, so that a slow reader lets the block's memory go as soon
                // as the block is on disk: the rest is sent from its file
                while part.len() > 0 {
                    if let Some(file) = blocks.on_disk(index, block_len) {
                        let (start, len) = (part.start() as u64, part.len() as u64);
                        drop(part);
                        send_file(conn, file, start, len, w, splicer, progress).await?;
                        break;
                    }
                    let chunk = part.split_front(w.settings.transfer_buffer_bytes);
                    let n = compio::buf::IoBuf::as_init(&chunk).len() as u64;
                    conn.write_buf(chunk, w.settings.idle_timeout)
                        .await
                        .map_err(|e| Cut::by(Side::Client, e))?;
                    progress(n);
                }
            }
            Piece::Direct(reader, len) => send_stream(conn, reader, len, w, progress).await?,
        }
        piece = match blocks.next().await {
            None => return Ok(()),
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(Cut::by(Side::Store, std::io::Error::other(e))),
        };
    }
}

/// The first remote location that answers a read of `len` bytes from `offset`, with its
/// store's metrics slot; a store that fails is logged and counted, and the next one tried.
pub(super) async fn open_remote(
    locations: &[(String, String)],
    offset: u64,
    len: u64,
    w: &Worker,
) -> Option<(crate::store::Reader, usize)> {
    for (store, url) in locations {
        let opened = match w.stores.resolve(store, url).await {
            Ok(s) => s.read(url, offset, len).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(r) => return Some((r, w.stores.metric_slot(store))),
            Err(e) => {
                tracing::warn!(store = %store, location = %url, error = %e, "location unreadable; trying the next");
                w.metrics.download_failover();
            }
        }
    }
    None
}

/// Copies `len` bytes from a remote store's answer to the client, a whole buffer at a time.
/// A store that ends early cuts the connection (the client sees a short body against its
/// `Content-Length`, never a clean short answer).
async fn send_stream(
    conn: &mut Conn<ClientStream>,
    mut reader: crate::store::Reader,
    len: u64,
    w: &Worker,
    progress: &dyn Fn(u64),
) -> Result<(), Cut> {
    let idle = w.settings.idle_timeout;
    let cap = w.settings.transfer_buffer_bytes;
    let mut buf = Vec::with_capacity(cap);
    let mut left = len;
    while left > 0 {
        buf.clear();
        buf = fill_from(&mut reader, buf, left.min(cap as u64) as usize)
            .await
            .map_err(|e| Cut::by(Side::Store, e))?;
        left -= buf.len() as u64;
        let n = buf.len() as u64;
        let (res, b) = conn.write_all(buf, idle).await;
        buf = b;
        res.map_err(|e| Cut::by(Side::Client, e))?;
        progress(n);
    }
    Ok(())
}

/// Why a download stopped before its last byte, and whose side failed.
#[derive(Debug)]
struct Cut {
    side: Side,
    error: std::io::Error,
}

impl Cut {
    fn by(side: Side, error: std::io::Error) -> Cut {
        Cut { side, error }
    }

    /// A local file transfer's failure: the file ending early is ours (its recorded size is
    /// wrong), anything else the client's (gone, stopped reading).
    fn of_file(error: std::io::Error) -> Cut {
        let side = match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Side::Internal,
            _ => Side::Client,
        };
        Cut { side, error }
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?} side)", self.error, self.side)
    }
}

/// Reads from a store until `buf` holds `want` bytes.
async fn fill_from(
    reader: &mut crate::store::Reader,
    mut buf: Vec<u8>,
    want: usize,
) -> std::io::Result<Vec<u8>> {
    while buf.len() < want {
        let (res, b) = reader.read(buf).await;
        buf = b;
        if res? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf)
}

async fn send_file(
    conn: &mut Conn<ClientStream>,
    file: std::fs::File,
    offset: u64,
    len: u64,
    w: &Worker,
    splicer: &mut Option<Splicer>,
    progress: &dyn Fn(u64),
) -> Result<(), Cut> {
    use std::os::fd::AsFd;
    let idle = w.settings.idle_timeout;
    if let Some(sock) = conn.stream.plain() {
        match crate::io::sendfile_to_socket(file.as_fd(), offset, len, sock, idle, progress).await {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::debug!(error = %e, "sendfile not supported here; splicing instead");
            }
            other => return other.map_err(Cut::of_file),
        }
        if splicer.is_none() {
            match Splicer::new(w.settings.transfer_buffer_bytes).await {
                Ok(s) => *splicer = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create splice pipe; copying through user space")
                }
            }
        }
        if let Some(s) = splicer.as_mut() {
            let file = crate::io::into_compio(file);
            let res = s
                .file_to_socket(&file, offset, len, sock, idle, progress)
                .await;
            if res.is_err() {
                // The pipe may still hold bytes of this response: never reuse it.
                *splicer = None;
            }
            return res.map_err(Cut::of_file);
        }
    }
    // TLS (bytes must be encrypted in user space) or no pipe: copy through a pooled buffer.
    let file = crate::io::into_compio(file);
    let mut buf = w.scratch.take();
    let mut pos = offset;
    let end = offset + len;
    let res = loop {
        if pos >= end {
            break Ok(());
        }
        buf.clear();
        let want = ((end - pos) as usize).min(buf.capacity());
        let (res, b) = file.read_at(buf, pos).await.into();
        buf = b;
        match res {
            Ok(0) => {
                break Err(Cut::by(
                    Side::Internal,
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(n) => buf.truncate(want.min(n)),
            Err(e) => break Err(Cut::by(Side::Internal, e)),
        }
        pos += buf.len() as u64;
        let n = buf.len() as u64;
        let (res, b) = conn.write_all(buf, idle).await;
        buf = b;
        if let Err(e) = res {
            break Err(Cut::by(Side::Client, e));
        }
        progress(n);
    };
    w.scratch.put(buf);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |s, e| Ok(Span::Part { start: s, end: e });
        assert_eq!(span(None, None, 10), Ok(Span::Full));
        assert_eq!(span(Some("bytes=0-4"), None, 10), p(0, 4));
        assert_eq!(span(Some("bytes=5-"), None, 10), p(5, 9));
        assert_eq!(span(Some("bytes=5-100"), None, 10), p(5, 9));
        assert_eq!(span(Some("bytes=-3"), None, 10), p(7, 9));
        assert_eq!(span(Some("bytes=-30"), None, 10), p(0, 9));
        assert_eq!(span(Some("bytes=9-9"), None, 10), p(9, 9));
        assert_eq!(span(None, Some("bytes 2-5/*"), 10), p(2, 5));
        assert_eq!(span(None, Some("bytes 2-5/10"), 10), p(2, 5));
        for bad in [
            "bytes=10-",
            "bytes=10-20",
            "bytes=5-4",
            "bytes=-0",
            "bytes=x-1",
            "items=0-1",
            "bytes=",
            "bytes=1",
        ] {
            assert_eq!(
                span(Some(bad), None, 10),
                Err(RangeError::Unsatisfiable),
                "{bad}"
            );
        }
        assert_eq!(
            span(Some("bytes=0-1,3-4"), None, 10),
            Err(RangeError::Multiple)
        );
        assert_eq!(
            span(None, Some("bytes 2-10/*"), 10),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            span(Some("bytes=0-"), None, 0),
            Err(RangeError::Unsatisfiable)
        );
    }
}
