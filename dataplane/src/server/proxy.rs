//! Forwarding of every non-data request to the control plane's HTTP API over its Unix socket.
//!
//! The request head is passed on with hop-by-hop headers removed and the request id set;
//! bodies are streamed both ways (a chunked body is decoded and re-chunked, never buffered
//! whole). Each worker keeps a pool of keep-alive connections to the control plane.

use super::Worker;
use super::http::{BodyState, Conn, Framing, HeadError, RequestHead, ResponseHead, error_response};
use super::tls::ClientStream;
use compio::net::UnixStream;
use std::cell::RefCell;
use std::path::PathBuf;

/// A pool of HTTP connections to the control plane (one per worker, single-threaded).
#[derive(Debug)]
pub struct Upstream {
    path: PathBuf,
    idle: RefCell<Vec<Conn<UnixStream>>>,
    max_idle: usize,
}

impl Upstream {
    /// A pool for the control plane's API socket at `path`.
    pub fn new(path: PathBuf, max_idle: usize) -> Self {
        Upstream {
            path,
            idle: RefCell::new(Vec::new()),
            max_idle,
        }
    }

    async fn connect(&self) -> std::io::Result<Conn<UnixStream>> {
        Ok(Conn::new(UnixStream::connect(&self.path).await?, 16 * 1024))
    }

    /// An idle connection that is still open, or `None`. Finding a closed one means the
    /// control plane restarted: every pooled connection is dropped then.
    fn take_idle(&self) -> Option<Conn<UnixStream>> {
        use std::os::fd::AsFd;
        let mut idle = self.idle.borrow_mut();
        let c = idle.pop()?;
        if crate::io::idle_connection_is_alive(c.stream.as_fd()) {
            Some(c)
        } else {
            idle.clear();
            None
        }
    }

    fn give_back(&self, c: Conn<UnixStream>) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }
}

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "transfer-encoding",
    "x-openstack-request-id",
    "content-length",
];

fn forwarded_head(head: &RequestHead, rid: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", head.method, head.target).as_bytes());
    for (n, v) in &head.headers {
        if HOP_BY_HOP.iter().any(|h| n.eq_ignore_ascii_case(h)) {
            continue;
        }
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("x-openstack-request-id: {rid}\r\n").as_bytes());
    match head.framing {
        Framing::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::UntilClose => {
            if !matches!(head.method.as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS") {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn client_head(resp: &ResponseHead, framing: Framing, keep: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let reason = if resp.reason.is_empty() {
        super::http::reason(resp.status)
    } else {
        resp.reason.as_str()
    };
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", resp.status).as_bytes());
    for (n, v) in &resp.headers {
        if HOP_BY_HOP[..8].iter().any(|h| n.eq_ignore_ascii_case(h))
            || n.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    match framing {
        Framing::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty => {
            if resp.status != 204 && resp.status != 304 && resp.status >= 200 {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
        }
        Framing::UntilClose => {}
    }
    if !keep {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Frames `data` as one chunk (or the last chunk when empty).
fn chunk(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if data.is_empty() {
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Copies a body from `from` to `to`, re-chunking when `chunked`.
async fn pump<A, B>(
    from: &mut Conn<A>,
    to: &mut Conn<B>,
    framing: Framing,
    chunked: bool,
    idle: std::time::Duration,
) -> Result<(), (bool, String)>
where
    A: compio::io::AsyncRead + compio::io::AsyncWrite,
    B: compio::io::AsyncRead + compio::io::AsyncWrite,
{
    let mut state = BodyState::new(framing);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut framed = Vec::with_capacity(64 * 1024 + 16);
    while !state.is_done() {
        buf.clear();
        let (res, b) = from.read_body(&mut state, buf, idle).await;
        buf = b;
        res.map_err(|e| (true, e.to_string()))?;
        if buf.is_empty() {
            continue;
        }
        let data = if chunked {
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
        chunk(&[], &mut framed);
        let (res, _) = to.write_all(framed, idle).await;
        res.map_err(|e| (false, e.to_string()))?;
    }
    Ok(())
}

async fn unavailable(conn: &mut Conn<ClientStream>, status: u16, rid: &str, w: &Worker) {
    let idle = w.settings.idle_timeout;
    w.metrics.request(crate::metrics::Route::Forward, status);
    let msg = if status == 503 {
        "control plane unavailable"
    } else {
        "bad answer from the control plane"
    };
    let _ = conn
        .write_all(error_response(status, msg, rid, false), idle)
        .await;
}

/// Forwards one request; returns whether the client connection may be reused.
pub async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    rid: &str,
    w: &Worker,
) -> bool {
    let idle = w.settings.idle_timeout;
    if head.expects_continue() {
        let (res, _) = conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), idle)
            .await;
        if res.is_err() {
            return false;
        }
    }
    let mut fwd = forwarded_head(head, rid);
    // A pooled connection may have been closed by the control plane; only a request with no
    // body is retried, and only if nothing came back.
    let pooled = w.upstream.take_idle();
    let retryable = head.framing == Framing::Empty;
    let mut up = match pooled {
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
    let (resp, framing) = loop {
        attempt += 1;
        let (res, written) = up.write_all(fwd, idle).await;
        // The write hands the head back for a retry (a timed-out write drops it: rebuild).
        fwd = if written.is_empty() {
            forwarded_head(head, rid)
        } else {
            written
        };
        let mut sent = res.is_ok();
        if sent && head.framing != Framing::Empty {
            match pump(
                conn,
                &mut up,
                head.framing,
                head.framing == Framing::Chunked,
                idle,
            )
            .await
            {
                Ok(()) => {}
                Err((true, e)) => {
                    tracing::debug!(error = %e, "client body ended early while forwarding");
                    return false;
                }
                Err((false, _)) => sent = false,
            }
        }
        let answer = up.read_response(&head.method, idle).await;
        match answer {
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
    let keep = head.keep_alive && framing != Framing::UntilClose;
    w.metrics
        .request(crate::metrics::Route::Forward, resp.status);
    let (res, _) = conn
        .write_all(client_head(&resp, framing, keep), idle)
        .await;
    if res.is_err() {
        return false;
    }
    match pump(&mut up, conn, framing, framing == Framing::Chunked, idle).await {
        Ok(()) => {
            if resp.keep_alive && framing != Framing::UntilClose {
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
