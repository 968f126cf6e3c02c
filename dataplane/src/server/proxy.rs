//! Forwarding of every non-data request to the control plane's HTTP API over its Unix socket.
//!
//! The request head is passed on with hop-by-hop headers removed and the request id set;
//! bodies are streamed both ways (a chunked body is decoded and re-chunked, never buffered
//! whole). Each worker keeps a pool of keep-alive connections to the control plane.
//!
//! The common case — a bodiless request answered with a small JSON body — costs four socket
//! operations: the client's head is read, the forwarded head written upstream in one write,
//! the answer read, and the client's head plus body written back in one write. Heads are
//! built in pooled buffers ([`crate::io::Scratch`]) and never parsed into owned strings, so a forwarded
//! request allocates nothing of its own in the steady state.

use super::tls::ClientStream;
use super::worker::Worker;
use crate::http::{
    BodyState, Conn, Framing, HOP_BY_HOP, HeadError, RequestHead, end_forwarded_head,
    error_response,
};
use shared::request_id::RequestId;
use std::io::Write as _;

/// Writes the head to send upstream: the client's, minus hop-by-hop headers, with the request
/// id in the form that resolves to the same id there ([`RequestId::forwarded`]) and the body
/// framing we will send.
fn forwarded_head(head: &RequestHead, rid: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (n, v) in head.headers() {
        if HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h))
            || n.eq_ignore_ascii_case("x-openstack-request-id")
            || n.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"x-openstack-request-id: ");
    out.extend_from_slice(rid.as_bytes());
    out.extend_from_slice(b"\r\n");
    match head.framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {
            if !matches!(head.method(), "GET" | "HEAD" | "DELETE" | "OPTIONS") {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `data` framed as one chunk (or the last chunk when empty).
fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Copies a body from `from` to `to`, re-chunking when `chunked`, through two pooled buffers.
async fn pump<A, B>(
    from: &mut Conn<A>,
    to: &mut Conn<B>,
    mut state: BodyState,
    chunked: bool,
    w: &Worker,
) -> Result<(), (bool, String)>
where
    A: compio::io::AsyncRead + compio::io::AsyncWrite,
    B: compio::io::AsyncRead + compio::io::AsyncWrite,
{
    let idle = w.settings.idle_timeout;
    let mut buf = w.scratch.take();
    let mut framed = w.scratch.take();
    let res = async {
        while !state.is_done() {
            buf.clear();
            let (res, b) = from
                .read_body(&mut state, std::mem::take(&mut buf), idle)
                .await;
            buf = b.unwrap_or_default();
            res.map_err(|e| (true, e.to_string()))?;
            if buf.is_empty() {
                continue;
            }
            let data = if chunked {
                framed.clear();
                chunk(&buf, &mut framed);
                std::mem::take(&mut framed)
            } else {
                std::mem::take(&mut buf)
            };
            let (res, d) = to.write_all(data, idle).await;
            if chunked {
                framed = d;
            } else {
                buf = d;
            }
            res.map_err(|e| (false, e.to_string()))?;
        }
        if chunked {
            framed.clear();
            chunk(&[], &mut framed);
            let (res, d) = to.write_all(std::mem::take(&mut framed), idle).await;
            framed = d;
            res.map_err(|e| (false, e.to_string()))?;
        }
        Ok(())
    }
    .await;
    w.scratch.put(buf);
    w.scratch.put(framed);
    res
}

async fn unavailable(conn: &mut Conn<ClientStream>, status: u16, rid: &str, w: &Worker) {
    let idle = w.settings.idle_timeout;
    super::respond::answered(conn, w, crate::metrics::Route::Forward, status);
    let msg = if status == 503 {
        shared::error::PLANE_UNAVAILABLE
    } else {
        "Bad answer from the image service's control plane."
    };
    let _ = conn
        .write_all(error_response(status, msg, rid, false), idle)
        .await;
}

/// Forwards one request; returns whether the client connection may be reused.
pub async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    rid: &RequestId,
    w: &Worker,
) -> bool {
    let mut out = w.scratch.take();
    let keep = forward(conn, head, rid, w, &mut out).await;
    w.scratch.put(out);
    keep
}

async fn forward(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    rid: &RequestId,
    w: &Worker,
    out: &mut Vec<u8>,
) -> bool {
    let idle = w.settings.idle_timeout;
    if head.expects_continue() {
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let (res, b) = conn.write_all(std::mem::take(out), idle).await;
        *out = b;
        if res.is_err() {
            return false;
        }
    }
    // A pooled connection may have been closed by the control plane; only a request with no
    // body is retried, and only if nothing came back.
    let retryable = head.framing == Framing::Empty;
    let mut up = match w.upstream.take_idle(!retryable) {
        Some(c) => c,
        None => match w.upstream.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the control plane API socket");
                unavailable(conn, 503, rid, w).await;
                return false;
            }
        },
    };
    let mut attempt = 0;
    // Whether part of the client's body is still unread in its socket (the control plane
    // answered — e.g. 413 — and closed before taking all of it): the client connection cannot
    // carry another request then.
    let mut client_body_left = head.framing != Framing::Empty;
    let (meta, head_len) = loop {
        attempt += 1;
        forwarded_head(head, rid.forwarded(), out);
        let (res, written) = up.write_all(std::mem::take(out), idle).await;
        *out = written;
        let mut sent = res.is_ok();
        if sent && head.framing != Framing::Empty {
            let state = BodyState::new(head.framing);
            match pump(conn, &mut up, state, head.framing == Framing::Chunked, w).await {
                Ok(()) => client_body_left = false,
                Err((true, e)) => {
                    tracing::debug!(error = %e, "client body ended early while forwarding");
                    return false;
                }
                Err((false, _)) => sent = false,
            }
        }
        match up.read_response(head.method(), idle, out).await {
            Ok(a) => break a,
            Err(e)
                if attempt == 1 && retryable && matches!(e, HeadError::Eof | HeadError::Io(_)) =>
            {
                match w.upstream.connect().await {
                    Ok(c) => up = c,
                    Err(_) => {
                        unavailable(conn, 503, rid, w).await;
                        return false;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, sent, "no answer from the control plane");
                unavailable(conn, if sent { 502 } else { 503 }, rid, w).await;
                return false;
            }
        }
    };
    let keep = head.keep_alive && meta.framing != Framing::UntilClose && !client_body_left;
    super::respond::answered(conn, w, crate::metrics::Route::Forward, meta.status);
    end_forwarded_head(out, keep);
    up.consume(head_len);
    let mut state = BodyState::new(meta.framing);
    // A body that arrived with the head goes out in the same write.
    if let Framing::Length(n) = meta.framing
        && up.buffered().len() as u64 >= n
    {
        let n = n as usize;
        out.extend_from_slice(&up.buffered()[..n]);
        up.consume(n);
        state = BodyState::Done;
    }
    let (res, b) = conn.write_all(std::mem::take(out), idle).await;
    *out = b;
    if res.is_err() {
        return false;
    }
    let done = if state.is_done() {
        Ok(())
    } else {
        pump(&mut up, conn, state, meta.framing == Framing::Chunked, w).await
    };
    match done {
        Ok(()) => {
            if meta.keep_alive && meta.framing != Framing::UntilClose && up.buffered().is_empty() {
                w.upstream.give_back(up);
            }
            keep
        }
        Err((_, e)) => {
            tracing::debug!(error = %e, "response forwarding ended early");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request;

    #[test]
    fn forwarded_heads_drop_hop_by_hop_headers() {
        let (head, _) = parse_request(
            b"PATCH /v2/images/x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\
              Content-Length: 2\r\nX-Openstack-Request-Id: theirs\r\nX-Auth-Token: t\r\n\r\n",
            20,
        )
        .unwrap()
        .unwrap();
        let mut out = b"leftover".to_vec();
        forwarded_head(&head, "req-1", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PATCH /v2/images/x HTTP/1.1\r\nHost: h\r\nX-Auth-Token: t\r\n\
             x-openstack-request-id: req-1\r\nContent-Length: 2\r\n\r\n"
        );
    }

    #[test]
    fn chunks_are_framed_in_hex() {
        let mut out = Vec::new();
        chunk(&[7u8; 300], &mut out);
        assert!(out.starts_with(b"12c\r\n"));
        assert!(out.ends_with(b"\r\n"));
        out.clear();
        chunk(&[], &mut out);
        assert_eq!(out, b"0\r\n\r\n");
    }
}
