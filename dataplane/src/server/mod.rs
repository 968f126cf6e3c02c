//! The dispatcher: thread-per-core HTTP/1.1 serving, one compio (io_uring) runtime per worker
//! thread ([`bootstrap`]), all accepting on the listener the supervisor bound. Each
//! connection is served by one task on one core for its whole life.
//!
//! Routing is [`shared::route::classify`], the table the control plane negotiates versions by:
//! `PUT` and `GET` of `/v2/images/{id}/file` (or under an advertised `/v2.N/`) are served here
//! ([`upload`], [`download`]); every other request — an unknown version prefix included — is
//! forwarded to the control plane ([`proxy`]), which answers it as Glance would.
//!
//! Handlers take what they share from [`worker`] and [`respond`], never from this module.

mod audit;
pub mod bootstrap;
mod cache_api;
pub(crate) mod cached;
mod delete;
pub mod download;
pub mod import;
pub mod locate;
pub mod proxy;
pub mod respond;
pub mod staged;
pub mod tls;
pub mod upload;
pub mod upstream;
pub mod web;
pub mod worker;

use crate::http::{Conn, HeadError, RequestHead, error_response};
use compio::net::TcpStream;
use shared::request_id::RequestId;
use shared::route::{Route, classify};
use std::rc::Rc;
use tls::ClientStream;
use worker::{Open, Worker};

/// Answers 503 on a connection accepted above the limit, then closes it.
pub async fn refuse_connection(stream: TcpStream, worker: Rc<Worker>) {
    let Some(stream) = handshake(stream, &worker).await else {
        return;
    };
    let mut conn = Conn::new(stream, 0);
    let msg = "too many connections; retry later";
    close_with(&mut conn, 503, msg, worker.settings.header_timeout).await;
}

/// Answers a request that cannot be served at all (no request id of its own yet) with a
/// Glance-shaped error and `Connection: close`.
async fn close_with(
    conn: &mut Conn<ClientStream>,
    status: u16,
    message: &str,
    timeout: std::time::Duration,
) {
    let rid = RequestId::generate();
    let answer = error_response(status, message, &rid, false);
    let _ = conn.write_all(answer, timeout).await;
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
                close_with(&mut conn, status, &e.to_string(), s.idle_timeout).await;
                return;
            }
        };
        let rid = match RequestId::resolve(head.header(shared::request_id::HEADER)) {
            Ok(rid) => rid,
            Err(e) => {
                close_with(&mut conn, 431, &e.to_string(), s.idle_timeout).await;
                return;
            }
        };
        let route = classify(
            head.method(),
            head.path(),
            head.header("accept"),
            worker.settings.features,
        );
        let started = std::time::Instant::now();
        conn.status = 0;
        let (keep, which) = match route {
            Route::Upload(id) => (
                upload::handle(&mut conn, &head, id, &rid, &worker, false).await,
                crate::metrics::Route::Upload,
            ),
            Route::Stage(id) => (
                upload::handle(&mut conn, &head, id, &rid, &worker, true).await,
                crate::metrics::Route::Upload,
            ),
            Route::Download(id) => (
                download::handle(&mut conn, &head, id, &rid, &worker, &mut splicer, started).await,
                crate::metrics::Route::Download,
            ),
            Route::Cache(cache) => (
                cache_api::handle(&mut conn, &head, cache, &rid, &worker).await,
                crate::metrics::Route::Forward,
            ),
            Route::Delete { image, store } => (
                delete::handle(&mut conn, &head, image, store, &rid, &worker).await,
                crate::metrics::Route::Forward,
            ),
            Route::Forward => (
                proxy::handle(&mut conn, &head, &rid, &worker).await,
                crate::metrics::Route::Forward,
            ),
        };
        // a request that was never answered (the client left first) is not counted, as in
        // glint_dp_requests_total
        if conn.status != 0 {
            worker
                .metrics
                .request_duration(which, conn.status, started.elapsed());
        }
        if !keep || !head.keep_alive {
            return;
        }
    }
}
