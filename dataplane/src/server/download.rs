//! `GET /v2/images/{id}/file`: authorize over the channel, then move the bytes from the store
//! file into the socket without a user-space copy (`sendfile` on the worker thread, `splice`
//! through a pipe where sendfile is not supported), whole or one range.
//!
//! Answers as Glance does: 200 with `Content-Length`, `Content-Type: application/octet-stream`
//! and `Content-MD5` (the image's md5 **hex**); 204 when the image has no data; 206 with
//! `Content-Range` for one range (`bytes=a-b`, `bytes=a-`, `bytes=-n`, or the legacy
//! `Content-Range` request header); 416 for an unsatisfiable range; 400 for several ranges.

use super::http::{Conn, Framing, RequestHead, response_head, response_head_into};
use super::tls::ClientStream;
use super::upload::credentials;
use super::{Worker, channel_failed, fail};
use crate::io::Splicer;
use crate::metrics::Route;
use compio::io::AsyncReadAt;
use shared::channel::{Request, Response};
use shared::image::ImageId;
use std::io::Write as _;

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

async fn no_content(conn: &mut Conn<ClientStream>, rid: &str, keep: bool, w: &Worker) -> bool {
    w.metrics.request(Route::Download, 204);
    let h = response_head(
        204,
        "No Content",
        &[("x-openstack-request-id", rid)],
        None,
        keep,
    );
    conn.write_all(h, w.settings.idle_timeout).await.0.is_ok() && keep
}

/// Serves one download; returns whether the connection may be reused.
pub async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    id: &str,
    rid: &str,
    w: &Worker,
    splicer: &mut Option<Splicer>,
) -> bool {
    let keep = head.keep_alive && head.framing == Framing::Empty;
    let Ok(image_id) = id.parse::<ImageId>() else {
        return fail(
            conn,
            Route::Download,
            404,
            "no image found with that id",
            rid,
            keep,
            w,
        )
        .await;
    };
    let req = Request::AuthorizeDownload {
        request_id: rid,
        image_id,
        credentials: credentials(head),
    };
    let chan = match w.link.exchange(&req).await {
        Ok(c) => c,
        Err(e) => {
            return channel_failed::<&str>(
                conn,
                Route::Download,
                "AuthorizeDownload",
                Err(e),
                rid,
                keep,
                w,
            )
            .await;
        }
    };
    // The answer's strings point into the channel connection's buffer: it goes back to the
    // pool once they are used.
    let (location, checksum) = match chan.response() {
        Ok(Response::DownloadGranted {
            location, checksum, ..
        }) => (location, checksum),
        Ok(Response::Denied(code)) => {
            w.link.give_back(chan);
            let msg = match code.http_status() {
                404 => "no image found with that id",
                403 => "not allowed to download this image",
                _ => code.reason(),
            };
            return fail(conn, Route::Download, code.http_status(), msg, rid, keep, w).await;
        }
        other => {
            let other = other.map(crate::control_link::owned);
            return channel_failed(
                conn,
                Route::Download,
                "AuthorizeDownload",
                other,
                rid,
                keep,
                w,
            )
            .await;
        }
    };
    // Keep the md5 hex (32 characters) on the stack past the channel connection's return.
    let mut md5 = [0u8; 32];
    let has_md5 = match checksum {
        Some(c) if c.len() == md5.len() => {
            md5.copy_from_slice(c.as_bytes());
            true
        }
        _ => false,
    };
    let opened = location.map(|l| w.store.open_read(l));
    w.link.give_back(chan);
    let checksum = if has_md5 {
        std::str::from_utf8(&md5).ok()
    } else {
        None
    };
    let Some(opened) = opened else {
        return no_content(conn, rid, keep, w).await;
    };
    let (file, size) = match opened {
        Ok(x) => x,
        Err(crate::store::Error::Missing(_)) => {
            tracing::warn!(%image_id, "image data missing from the store");
            return no_content(conn, rid, keep, w).await;
        }
        Err(e) => {
            tracing::error!(%image_id, error = %e, "cannot open image data");
            return fail(
                conn,
                Route::Download,
                503,
                "image data unavailable",
                rid,
                keep,
                w,
            )
            .await;
        }
    };
    let span = match span(head.header("range"), head.header("content-range"), size) {
        Ok(s) => s,
        Err(RangeError::Multiple) => {
            let msg = "requests with multiple ranges are not supported; make several single-range requests";
            return fail(conn, Route::Download, 400, msg, rid, keep, w).await;
        }
        Err(RangeError::Unsatisfiable) => {
            let cr = format!("bytes */{size}");
            let body = "{\"error\": {\"code\": 416, \"title\": \"Requested Range Not Satisfiable\", \"message\": \"invalid range\"}}";
            let mut out = response_head(
                416,
                "Requested Range Not Satisfiable",
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Range", &cr),
                    ("x-openstack-request-id", rid),
                ],
                Some(body.len() as u64),
                keep,
            );
            out.extend_from_slice(body.as_bytes());
            w.metrics.request(Route::Download, 416);
            return conn.write_all(out, w.settings.idle_timeout).await.0.is_ok() && keep;
        }
    };
    let (status, offset, len) = match span {
        Span::Full => (200, 0, size),
        Span::Part { start, end } => (206, start, end - start + 1),
    };
    // The head, in a pooled buffer; `Content-Range` is written on the stack: no allocation.
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
    let mut fields = [("Content-Type", "application/octet-stream"); 4];
    fields[1] = ("x-openstack-request-id", rid);
    let mut n = 2;
    for field in [
        checksum.map(|v| ("Content-MD5", v)),
        content_range.map(|v| ("Content-Range", v)),
    ]
    .into_iter()
    .flatten()
    {
        fields[n] = field;
        n += 1;
    }
    let reason = if status == 200 {
        "OK"
    } else {
        "Partial Content"
    };
    let mut h = w.scratch.take();
    response_head_into(&mut h, status, reason, &fields[..n], Some(len), keep);
    w.metrics.request(Route::Download, status);
    let (res, h) = conn.write_all(h, w.settings.idle_timeout).await;
    w.scratch.put(h);
    if res.is_err() {
        return false;
    }
    if len == 0 {
        return keep;
    }
    if let Err(e) = send_file(conn, file, offset, len, w, splicer).await {
        tracing::debug!(%image_id, error = %e, "download ended early");
        return false;
    }
    w.metrics.bytes_out(len);
    tracing::debug!(%image_id, request_id = rid, bytes = len, "download sent");
    keep
}

async fn send_file(
    conn: &mut Conn<ClientStream>,
    file: std::fs::File,
    offset: u64,
    len: u64,
    w: &Worker,
    splicer: &mut Option<Splicer>,
) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let idle = w.settings.idle_timeout;
    if let Some(sock) = conn.stream.plain() {
        match crate::io::sendfile_to_socket(file.as_fd(), offset, len, sock, idle).await {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                tracing::debug!(error = %e, "sendfile not supported here; splicing instead");
            }
            other => return other,
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
            let res = s.file_to_socket(&file, offset, len, sock, idle).await;
            if res.is_err() {
                // The pipe may still hold bytes of this response: never reuse it.
                *splicer = None;
            }
            return res;
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
            Ok(0) => break Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.truncate(want.min(n)),
            Err(e) => break Err(e),
        }
        pos += buf.len() as u64;
        let (res, b) = conn.write_all(buf, idle).await;
        buf = b;
        if let Err(e) = res {
            break Err(e);
        }
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
