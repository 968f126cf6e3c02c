//! `PUT /v2/images/{id}/file`: stream the body into the store while hashing it.
//!
//! 1. Check the request: `Content-Type: application/octet-stream` (else 415), a valid
//!    `x-openstack-image-size` that agrees with `Content-Length` (else 400).
//! 2. `AuthorizeUpload` over the channel: the control plane checks policy and status and moves
//!    the image `queued → saving`; this connection now holds the upload lease.
//! 3. Answer `100 Continue` if asked, then read the body into pooled, aligned buffers; each
//!    filled buffer goes to the md5 and `os_hash_algo` threads and is written to a temp file at
//!    the running offset (with `O_DIRECT` where the file system takes it) by a write task of
//!    its own, while the next one is read (see `hash::pipeline`).
//! 4. At the end: check the size, cut the padding of the last direct block, fsync and rename
//!    the file into place, `UploadComplete`; the control plane moves the image to `active` and
//!    we answer 204.
//!
//! Any failure before the commit (client gone, bad size, store error) drops the temp file and
//! sends `UploadAborted`, which puts the image back to `queued`.

use super::http::{BodyError, BodyState, Conn, Framing, RequestHead, response_head};
use super::tls::ClientStream;
use super::{Worker, channel_failed, fail};
use crate::hash::pipeline::PipelinedHasher;
use crate::metrics::{Route, Side};
use shared::channel::{Credentials, Request, Response};
use shared::error::ErrorCode;
use shared::image::ImageId;
use std::collections::VecDeque;
use std::time::Instant;

/// Collects the caller's identity headers for the control plane (borrowed from the head).
pub fn credentials(head: &RequestHead) -> Credentials<&str> {
    let mut c = Credentials::default();
    for (n, v) in head.headers() {
        c.absorb_header(n, v);
    }
    c
}

/// Buffers one upload may have in flight (being read, hashed, written): bounds its memory
/// to `UPLOAD_DEPTH × transfer_buffer_bytes`.
const UPLOAD_DEPTH: usize = 8;

/// Store writes one upload may have in flight before reading waits for the oldest.
const MAX_WRITES: usize = 2;

/// Serves one upload; returns whether the connection may be reused.
pub async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    id: &str,
    rid: &str,
    w: &Worker,
) -> bool {
    // An error answered before the body is read leaves the body in the socket: close then.
    let keep_if_refused = head.framing == Framing::Empty;
    let Ok(image_id) = id.parse::<ImageId>() else {
        return fail(
            conn,
            Route::Upload,
            404,
            "no image found with that id",
            rid,
            keep_if_refused,
            w,
        )
        .await;
    };
    let media = head.header("content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if media.as_deref() != Some("application/octet-stream") {
        let msg = "image data must be sent as application/octet-stream";
        return fail(conn, Route::Upload, 415, msg, rid, keep_if_refused, w).await;
    }
    let declared = match head.header("x-openstack-image-size") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return fail(
                    conn,
                    Route::Upload,
                    400,
                    "x-openstack-image-size must be a non-negative integer",
                    rid,
                    keep_if_refused,
                    w,
                )
                .await;
            }
        },
    };
    let length = match head.framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => Some(0),
        _ => None,
    };
    if let (Some(d), Some(l)) = (declared, length)
        && d != l
    {
        let msg =
            format!("x-openstack-image-size ({d}) does not match the request body size ({l})");
        return fail(conn, Route::Upload, 400, &msg, rid, keep_if_refused, w).await;
    }
    let expected = declared.or(length);

    let authorize = Request::AuthorizeUpload {
        request_id: rid,
        image_id,
        credentials: credentials(head),
        declared_size: expected,
    };
    let (mut lease, hash_algo, max_size) = match w.link.call_keep(&authorize).await {
        Ok((
            c,
            Response::UploadGranted {
                hash_algo,
                max_size_bytes,
            },
        )) => (c, hash_algo, max_size_bytes),
        Ok((c, Response::Denied(code))) => {
            w.link.give_back(c);
            return fail(
                conn,
                Route::Upload,
                code.http_status(),
                &denied_message(code),
                rid,
                keep_if_refused,
                w,
            )
            .await;
        }
        other => {
            let outcome = other.map(|(_, resp)| resp);
            return channel_failed(
                conn,
                Route::Upload,
                "AuthorizeUpload",
                outcome,
                rid,
                keep_if_refused,
                w,
            )
            .await;
        }
    };

    let started = Instant::now();
    let outcome = receive(conn, head, &image_id, expected, hash_algo, max_size, w).await;
    match outcome {
        Ok((location, digests)) => {
            let complete = Request::UploadComplete {
                request_id: rid,
                image_id,
                size: digests.size,
                checksum: digests.md5_hex.as_str(),
                os_hash_algo: digests.algo,
                os_hash_value: digests.secure_hex.as_str(),
                location: location.as_str(),
            };
            match lease.call(&complete).await {
                Ok(Response::UploadCommitted) => {
                    w.link.give_back(lease);
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(
                        %image_id, request_id = rid, size = digests.size,
                        mb_per_s = format!("{:.1}", digests.size as f64 / 1e6 / secs.max(1e-9)),
                        "upload stored"
                    );
                    w.metrics.bytes_in(digests.size);
                    w.metrics.request(Route::Upload, 204);
                    let h = response_head(
                        204,
                        "No Content",
                        &[("x-openstack-request-id", rid)],
                        None,
                        head.keep_alive,
                    );
                    let (res, _) = conn.write_all(h, w.settings.idle_timeout).await;
                    res.is_ok()
                }
                Ok(Response::Denied(code)) => {
                    w.link.give_back(lease);
                    w.metrics.upload_failed(Side::Control);
                    let _ = w.store.delete(&location);
                    tracing::info!(%image_id, request_id = rid, %code, "upload refused at commit; data removed");
                    fail(
                        conn,
                        Route::Upload,
                        code.http_status(),
                        &denied_message(code),
                        rid,
                        head.keep_alive,
                        w,
                    )
                    .await
                }
                Ok(other) => {
                    tracing::error!(?other, "unexpected channel answer to UploadComplete");
                    fail(
                        conn,
                        Route::Upload,
                        500,
                        "unexpected control plane answer",
                        rid,
                        false,
                        w,
                    )
                    .await
                }
                Err(e) => {
                    w.metrics.upload_failed(Side::Control);
                    // The control plane may or may not have committed; keep the data (it is
                    // overwritten by the next upload if the image went back to queued).
                    tracing::warn!(%image_id, error = %e, "channel lost while committing an upload");
                    fail(
                        conn,
                        Route::Upload,
                        503,
                        "control plane unavailable",
                        rid,
                        false,
                        w,
                    )
                    .await
                }
            }
        }
        Err(failure) => {
            w.metrics.upload_failed(failure.side);
            let abort = Request::UploadAborted {
                request_id: rid,
                image_id,
                code: failure.code,
            };
            match lease.call(&abort).await {
                Ok(_) => w.link.give_back(lease),
                Err(e) => tracing::warn!(%image_id, error = %e, "could not report aborted upload"),
            }
            tracing::info!(%image_id, request_id = rid, reason = %failure.message, "upload aborted; image back to queued");
            if failure.client_gone {
                w.metrics.request(Route::Upload, 400);
                return false;
            }
            fail(
                conn,
                Route::Upload,
                failure.code.http_status(),
                &failure.message,
                rid,
                false,
                w,
            )
            .await
        }
    }
}

#[derive(Debug)]
struct Failure {
    code: ErrorCode,
    message: String,
    client_gone: bool,
    side: Side,
}

impl Failure {
    /// A failure the client caused.
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            client_gone: false,
            side: Side::Client,
        }
    }

    fn on(mut self, side: Side) -> Self {
        self.side = side;
        self
    }
}

fn denied_message(code: ErrorCode) -> String {
    match code {
        ErrorCode::NotFound => "no image found with that id".into(),
        ErrorCode::Conflict => {
            "image is not in a state that accepts data (it must be queued)".into()
        }
        ErrorCode::BadRequest => {
            "image needs both disk_format and container_format before data is uploaded".into()
        }
        ErrorCode::Gone => "image was deleted during the upload".into(),
        ErrorCode::PayloadTooLarge => "image data exceeds the size limit".into(),
        ErrorCode::Forbidden => "not allowed to upload data to this image".into(),
        other => other.reason().into(),
    }
}

async fn receive(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    image_id: &ImageId,
    expected: Option<u64>,
    hash_algo: shared::image::HashAlgo,
    max_size: u64,
    w: &Worker,
) -> Result<(String, crate::hash::Digests), Failure> {
    let s = &w.settings;
    if head.expects_continue() {
        let (res, _) = conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), s.idle_timeout)
            .await;
        res.map_err(|_| Failure {
            client_gone: true,
            ..Failure::new(ErrorCode::BadRequest, "client went away")
        })?;
    }
    let store_err = |e: crate::store::Error| {
        tracing::warn!(error = %e, "store write failed");
        Failure::new(e.code(), format!("error storing image data: {e}")).on(Side::Store)
    };
    let upload = w.store.create_upload(image_id).await.map_err(store_err)?;
    let direct = upload.direct();
    let mut hasher = PipelinedHasher::start(hash_algo, w.buffers.clone(), UPLOAD_DEPTH);
    let mut state = BodyState::new(head.framing);
    let limit = expected.unwrap_or(max_size).min(max_size);
    // Store writes run as their own tasks while the next buffer is read; the oldest is
    // awaited once `MAX_WRITES` are in flight, and any finished one is checked right away.
    let mut writes: VecDeque<compio::runtime::JoinHandle<std::io::Result<()>>> = VecDeque::new();
    let write_failed = |e: std::io::Error| store_err(crate::store::Error::from_write(e));
    let task_failed =
        |_| Failure::new(ErrorCode::Internal, "store write task failed").on(Side::Internal);
    while !state.is_done() {
        // Fill a whole buffer (a direct write needs whole blocks), or up to the body's end.
        let mut buf = hasher.buffer().await;
        while buf.len() < buf.capacity() && !state.is_done() {
            let (res, b) = conn.read_body(&mut state, buf, s.idle_timeout).await;
            match (res, b) {
                (Ok(()), Some(b)) => buf = b,
                (res, b) => {
                    hasher.give_back(b);
                    let e = res.err().unwrap_or(BodyError::Eof);
                    return Err(match e {
                        BodyError::Chunked(m) => Failure::new(
                            ErrorCode::BadRequest,
                            format!("invalid chunked body: {m}"),
                        ),
                        other => Failure {
                            client_gone: true,
                            ..Failure::new(ErrorCode::BadRequest, other.to_string())
                        },
                    });
                }
            }
        }
        if buf.is_empty() {
            hasher.give_back(Some(buf));
            continue;
        }
        let offset = hasher.size();
        if offset + buf.len() as u64 > limit {
            hasher.give_back(Some(buf));
            return Err(if expected.is_some_and(|e| e < max_size) {
                Failure::new(
                    ErrorCode::BadRequest,
                    "request body is larger than x-openstack-image-size",
                )
            } else {
                Failure::new(
                    ErrorCode::PayloadTooLarge,
                    "image data exceeds the size limit",
                )
            });
        }
        // Only the last buffer can be partial; a direct write gets it zero-padded.
        let pad = direct && !buf.len().is_multiple_of(crate::io::ALIGN);
        let chunk = hasher.submit(buf, pad);
        writes.push_back(compio::runtime::spawn(upload.write_at(chunk, offset)));
        while writes.len() > MAX_WRITES || writes.front().is_some_and(|h| h.is_finished()) {
            if let Some(h) = writes.pop_front() {
                h.await.map_err(task_failed)?.map_err(write_failed)?;
            }
        }
    }
    while let Some(h) = writes.pop_front() {
        h.await.map_err(task_failed)?.map_err(write_failed)?;
    }
    if let Some(e) = expected
        && hasher.size() != e
    {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "received {} bytes but x-openstack-image-size said {e}",
                hasher.size()
            ),
        ));
    }
    let digests = hasher
        .finish()
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()).on(Side::Internal))?;
    let location = w
        .store
        .commit(upload, digests.size)
        .await
        .map_err(store_err)?;
    Ok((location, digests))
}
