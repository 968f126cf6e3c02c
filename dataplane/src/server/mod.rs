//! Thread-per-core HTTP/1.1 server: one compio (io_uring) runtime per worker thread, all
//! accepting on the listener the supervisor bound. Each connection is served by one task on
//! one core for its whole life.
//!
//! Routing: `PUT` and `GET` of `/v2/images/{id}/file` (also under a `/v2.N/` alias) are served
//! here ([`upload`], [`download`]); every other request is forwarded to the control plane
//! ([`proxy`]).

pub mod download;
pub mod http;
pub mod proxy;
pub mod tls;
pub mod upload;

use crate::control_link::Link;
use crate::store::fs::FsStore;
use compio::net::TcpStream;
use http::{Conn, HeadError, RequestHead};
use std::rc::Rc;
use std::time::Duration;
use tls::ClientStream;

/// Settings every worker reads (copied out of the config once).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Time to receive a request head.
    pub header_timeout: Duration,
    /// Longest wait for the peer.
    pub idle_timeout: Duration,
    /// Buffer size for moving image bytes.
    pub transfer_buffer_bytes: usize,
    /// Most connections this worker serves at once.
    pub max_connections_per_worker: usize,
    /// `WWW-Authenticate` value for 401 answers (`Keystone uri="…"`; keystone auth mode only).
    pub www_authenticate: Option<String>,
}

impl Settings {
    /// Settings from the configuration.
    pub fn from_config(c: &shared::config::Config) -> Self {
        let d = &c.dataplane;
        Settings {
            max_header_bytes: d.max_header_bytes,
            max_headers: d.max_headers,
            header_timeout: Duration::from_secs(d.header_timeout_seconds),
            idle_timeout: Duration::from_secs(d.idle_timeout_seconds),
            transfer_buffer_bytes: d.transfer_buffer_bytes,
            max_connections_per_worker: d.max_connections,
            www_authenticate: (c.auth.mode == shared::config::AuthMode::Keystone).then(|| {
                format!(
                    "Keystone uri=\"{}\"",
                    c.keystone_authtoken.www_authenticate_uri()
                )
            }),
        }
    }
}

/// What one worker owns: settings, the store, and its pools towards the control plane.
#[derive(Debug)]
pub struct Worker {
    /// Limits and sizes.
    pub settings: Settings,
    /// The image store.
    pub store: FsStore,
    /// Channel connections (authorize/report).
    pub link: Link,
    /// HTTP connections for forwarded requests.
    pub upstream: proxy::Upstream,
    /// Recycled buffers for heads and forwarded bodies.
    pub scratch: crate::io::Scratch,
    /// Recycled upload buffers.
    pub buffers: std::sync::Arc<crate::hash::pipeline::BufferPool>,
    /// This worker's counters.
    pub metrics: crate::metrics::Metrics,
    /// Connections open on this worker.
    pub active: std::cell::Cell<usize>,
    /// TLS on the public listener, when configured.
    pub tls: Option<std::sync::Arc<tls::Tls>>,
}

impl Worker {
    /// A worker's state: its settings, the store, pools towards the control plane's sockets,
    /// its buffer pools and counters.
    pub fn new(
        settings: Settings,
        store: FsStore,
        channel_socket: std::path::PathBuf,
        api_socket: std::path::PathBuf,
        metrics: crate::metrics::Metrics,
        tls: Option<std::sync::Arc<tls::Tls>>,
    ) -> Worker {
        Worker {
            link: Link::new(channel_socket, 64),
            upstream: proxy::Upstream::new(api_socket, 64),
            scratch: crate::io::Scratch::new(16 * 1024, 64),
            // Idle buffers kept per worker: enough for one upload's pipeline, so RSS stays flat
            // after a burst of uploads.
            buffers: crate::hash::pipeline::BufferPool::new(settings.transfer_buffer_bytes, 4),
            metrics,
            active: std::cell::Cell::new(0),
            tls,
            settings,
            store,
        }
    }
}

/// Counts a connection as open until dropped.
struct Open(Rc<Worker>);

impl Open {
    fn new(w: Rc<Worker>) -> Self {
        w.active.set(w.active.get() + 1);
        w.metrics.connection_opened();
        Open(w)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get() - 1);
        self.0.metrics.connection_closed();
    }
}

/// Answers 503 on a connection accepted above the limit, then closes it.
pub async fn refuse_connection(stream: TcpStream, worker: Rc<Worker>) {
    let Some(stream) = handshake(stream, &worker).await else {
        return;
    };
    let mut conn = Conn::new(stream, 0);
    let rid = RequestId::generate();
    let msg = "too many connections; retry later";
    let _ = conn
        .write_all(
            http::error_response(503, msg, &rid, false),
            worker.settings.header_timeout,
        )
        .await;
}

/// The route a request takes.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Upload(&'a str),
    Download(&'a str),
    Forward,
}

fn route<'a>(method: &str, path: &'a str) -> Route<'a> {
    let mut parts = path.split('/');
    let (Some(""), Some(version), Some("images"), Some(id), Some("file"), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Route::Forward;
    };
    let versioned = version == "v2"
        || version
            .strip_prefix("v2.")
            .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    match (versioned, method) {
        (true, "PUT") => Route::Upload(id),
        (true, "GET") => Route::Download(id),
        _ => Route::Forward,
    }
}

/// The client's `x-openstack-request-id` is longer than 64 bytes (431).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("x-openstack-request-id longer than 64 bytes")]
pub struct RequestIdTooLong;

/// A request id (`req-…`, at most 68 bytes), kept inline so that naming a request allocates
/// nothing. Dereferences to `str`.
#[derive(Clone, Copy)]
pub struct RequestId {
    buf: [u8; 68],
    len: u8,
}

impl RequestId {
    /// A new `req-<uuid v4>`.
    pub fn generate() -> RequestId {
        let mut id = RequestId {
            buf: [0; 68],
            len: 40,
        };
        id.buf[..4].copy_from_slice(b"req-");
        uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut id.buf[4..40]);
        id
    }

    /// `id` (printable ASCII, at most 64 bytes), with `req-` put in front if it lacks it.
    fn from_client(id: &str) -> RequestId {
        let mut out = RequestId {
            buf: [0; 68],
            len: 0,
        };
        let mut at = 0;
        if !id.starts_with("req-") {
            out.buf[..4].copy_from_slice(b"req-");
            at = 4;
        }
        out.buf[at..at + id.len()].copy_from_slice(id.as_bytes());
        out.len = (at + id.len()) as u8;
        out
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into `buf`.
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

/// The request id for a request: the client's `x-openstack-request-id` if it sent a usable
/// one, else a new `req-<uuid>`.
pub fn request_id(head: &RequestHead) -> Result<RequestId, RequestIdTooLong> {
    match head.header("x-openstack-request-id") {
        Some(id) if id.len() > 64 => Err(RequestIdTooLong),
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(RequestId::from_client(id))
        }
        _ => Ok(RequestId::generate()),
    }
}

/// Answers a request with a Glance-shaped JSON error and counts it; returns whether the
/// connection may be reused.
pub(crate) async fn fail(
    conn: &mut Conn<ClientStream>,
    route: crate::metrics::Route,
    status: u16,
    msg: &str,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> bool {
    w.metrics.request(route, status);
    let extra: Vec<(&str, &str)> = match (&w.settings.www_authenticate, status) {
        (Some(v), 401) => vec![("WWW-Authenticate", v.as_str())],
        _ => Vec::new(),
    };
    let (res, _) = conn
        .write_all(
            http::error_response_with(status, msg, rid, keep, &extra),
            w.settings.idle_timeout,
        )
        .await;
    keep && res.is_ok()
}

/// Answers when the control plane gave no usable answer on the channel: 503 when it could
/// not be reached, 500 for an answer outside the protocol (a bug on one side).
pub(crate) async fn channel_failed<S: std::fmt::Debug>(
    conn: &mut Conn<ClientStream>,
    route: crate::metrics::Route,
    asked: &'static str,
    outcome: Result<shared::channel::Response<S>, crate::control_link::Error>,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> bool {
    match outcome {
        Ok(other) => {
            tracing::error!(?other, asked, "unexpected channel answer");
            fail(
                conn,
                route,
                500,
                "unexpected control plane answer",
                rid,
                false,
                w,
            )
            .await
        }
        Err(e) => {
            tracing::warn!(error = %e, asked, "control plane unavailable");
            fail(conn, route, 503, "control plane unavailable", rid, keep, w).await
        }
    }
}

/// Wraps a new connection in TLS when configured (handshake bounded by the header timeout).
async fn handshake(stream: TcpStream, worker: &Worker) -> Option<ClientStream> {
    let Some(tls) = &worker.tls else {
        return Some(ClientStream::Plain(stream));
    };
    let acceptor = tls.acceptor();
    match compio::time::timeout(worker.settings.header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(ClientStream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Serves one client connection until it closes or a response ends it.
pub async fn serve_connection(stream: TcpStream, worker: Rc<Worker>) {
    let _open = Open::new(worker.clone());
    let _ = stream.set_nodelay(true);
    let Some(stream) = handshake(stream, &worker).await else {
        return;
    };
    let s = &worker.settings;
    let mut conn = Conn::new(stream, 8 * 1024);
    let mut splicer: Option<crate::io::Splicer> = None;
    let mut head = RequestHead::default();
    loop {
        // Between requests a connection keeps at most one head's worth of read buffer.
        conn.trim(s.max_header_bytes.max(8 * 1024));
        match conn
            .read_request(
                &mut head,
                s.max_header_bytes,
                s.max_headers,
                s.header_timeout,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(HeadError::Eof) | Err(HeadError::Io(_)) => return,
            Err(e) => {
                let status = match e {
                    HeadError::TooLarge => 431,
                    HeadError::Timeout => 408,
                    _ => 400,
                };
                tracing::debug!(error = %e, status, "refusing request head");
                let rid = RequestId::generate();
                let _ = conn
                    .write_all(
                        http::error_response(status, &e.to_string(), &rid, false),
                        s.idle_timeout,
                    )
                    .await;
                return;
            }
        };
        let Ok(rid) = request_id(&head) else {
            let rid = RequestId::generate();
            let msg = "x-openstack-request-id longer than 64 bytes";
            let _ = conn
                .write_all(http::error_response(431, msg, &rid, false), s.idle_timeout)
                .await;
            return;
        };
        let keep = match route(head.method(), head.path()) {
            Route::Upload(id) => upload::handle(&mut conn, &head, id, &rid, &worker).await,
            Route::Download(id) => {
                download::handle(&mut conn, &head, id, &rid, &worker, &mut splicer).await
            }
            Route::Forward => proxy::handle(&mut conn, &head, &rid, &worker).await,
        };
        if !keep || !head.keep_alive {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let id = "0b3a8c7e-1234-4321-abcd-0123456789ab";
        assert_eq!(
            route("PUT", &format!("/v2/images/{id}/file")),
            Route::Upload(id)
        );
        assert_eq!(
            route("GET", &format!("/v2/images/{id}/file")),
            Route::Download(id)
        );
        assert_eq!(
            route("GET", &format!("/v2.17/images/{id}/file")),
            Route::Download(id)
        );
        assert_eq!(
            route("DELETE", &format!("/v2/images/{id}/file")),
            Route::Forward
        );
        assert_eq!(route("GET", &format!("/v2/images/{id}")), Route::Forward);
        assert_eq!(
            route("GET", &format!("/v2/images/{id}/file/x")),
            Route::Forward
        );
        assert_eq!(
            route("GET", &format!("/v3/images/{id}/file")),
            Route::Forward
        );
        assert_eq!(
            route("GET", &format!("/v2./images/{id}/file")),
            Route::Forward
        );
        assert_eq!(route("GET", "/versions"), Route::Forward);
    }
}
