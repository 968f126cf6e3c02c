//! The channel server: the control plane's side of the link to the data plane.
//!
//! The data plane connects to the channel socket and speaks length-prefixed postcard frames
//! ([`shared::channel::frame`]) carrying [`Request`]s; each gets exactly one [`Response`] with
//! the same correlation id. Per connection:
//!
//! 1. The first frame must be `Hello`; we answer `HelloAck` with the negotiated version, or
//!    `Denied(BadRequest)` and close.
//! 2. Then requests are handled one at a time, in order.
//!
//! Both authorisations use [`App::find_visible`] and the policy [`Enforcer`](crate::policy::Enforcer)
//! exactly like the HTTP API: an image the caller cannot see is `NotFound`; `upload_image` /
//! `download_image` refused is `Forbidden`; a `deactivated` image is `Forbidden` to
//! non-admins; a shared image is downloadable by its members.
//!
//! Upload leases (see [`shared::channel`]):
//!
//! 1. `AuthorizeUpload` checks visibility (404), `upload_image` (403), status `queued` (409),
//!    both formats set (400) and the declared size (413), then moves the image
//!    `queued → saving` with a conditional update (409 if someone else won) and records the
//!    lease **on this connection**.
//! 2. `UploadComplete` on the same connection commits `saving → active` with size, checksum,
//!    hash and location — or answers `Gone` when the image was deleted meanwhile.
//! 3. `UploadAborted` puts the image back to `queued`.
//! 4. If the connection closes (EOF, error, or our shutdown) while it holds leases, every
//!    leased image still `saving` goes back to `queued`
//!    (`glint_channel_leases_reverted_total`).

use crate::app::App;
use crate::db::{self, images::UploadedData};
use crate::policy::{Denied, Rule, Target};
use chrono::Utc;
use shared::channel::frame::{self, FrameError, HEADER_BYTES};
use shared::channel::{Credentials, Request, Response, version};
use shared::error::ErrorCode;
use shared::image::{ImageId, ImageStatus};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Accepts channel connections until `shutdown` turns true, then waits for every connection
/// to finish (each reverts the leases it holds).
pub async fn serve(app: App, listener: UnixListener, shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                    let span = tracing::info_span!("channel", conn);
                    connections.spawn(Connection::new(app.clone()).run(stream, shutdown.clone()).instrument(span));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "channel accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}

/// Resolves once `rx` reads true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The metric label of a refusal.
fn code_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::NotFound => "not_found",
        ErrorCode::Conflict => "conflict",
        ErrorCode::Gone => "gone",
        ErrorCode::PayloadTooLarge => "payload_too_large",
        ErrorCode::UnsupportedMediaType => "unsupported_media_type",
        ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
        ErrorCode::ServiceUnavailable => "service_unavailable",
        ErrorCode::Internal => "internal",
    }
}

fn kind_label(req: &Request) -> &'static str {
    match req {
        Request::Hello { .. } => "hello",
        Request::AuthorizeUpload { .. } => "authorize_upload",
        Request::UploadComplete { .. } => "upload_complete",
        Request::UploadAborted { .. } => "upload_aborted",
        Request::AuthorizeDownload { .. } => "authorize_download",
    }
}

fn denied_from_policy(d: Denied) -> ErrorCode {
    match d {
        Denied::NotFound => ErrorCode::NotFound,
        Denied::Forbidden(_) => ErrorCode::Forbidden,
    }
}

fn internal(e: db::Error) -> ErrorCode {
    tracing::error!(error = %e, "channel request failed");
    ErrorCode::Internal
}

/// One data-plane connection and the upload leases it holds.
struct Connection {
    app: App,
    leases: HashSet<ImageId>,
    handshaken: bool,
}

/// What to do after answering a frame.
enum Next {
    Continue,
    Close,
}

impl Connection {
    fn new(app: App) -> Connection {
        Connection {
            app,
            leases: HashSet::new(),
            handshaken: false,
        }
    }

    async fn run(mut self, stream: UnixStream, mut shutdown: watch::Receiver<bool>) {
        let (mut rd, mut wr) = stream.into_split();
        let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        'conn: loop {
            loop {
                let (corr, used, request) = match frame::decode::<Request>(&buf) {
                    Ok(Some((f, used))) => (f.corr, used, Some(f.body)),
                    Ok(None) => break,
                    Err(FrameError::Payload(e)) => {
                        // framing is intact: skip the frame and refuse it
                        let Ok(Some(len)) = frame::frame_len(&buf) else {
                            break 'conn;
                        };
                        let corr = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        tracing::warn!(error = %e, "undecodable channel frame");
                        (corr, HEADER_BYTES + len, None)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "bad channel frame; closing");
                        break 'conn;
                    }
                };
                buf.drain(..used);
                let (response, next) = match request {
                    Some(req) => self.handle(req).await,
                    None => (Response::Denied(ErrorCode::BadRequest), Next::Continue),
                };
                out.clear();
                if let Err(e) = frame::encode(corr, &response, &mut out) {
                    tracing::error!(error = %e, "cannot encode channel response");
                    break 'conn;
                }
                if let Err(e) = wr.write_all(&out).await {
                    tracing::debug!(error = %e, "channel write failed");
                    break 'conn;
                }
                if matches!(next, Next::Close) {
                    break 'conn;
                }
            }
            tokio::select! {
                read = rd.read_buf(&mut buf) => match read {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "channel read failed");
                        break;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            }
        }
        self.revert_leases().await;
    }

    async fn handle(&mut self, req: Request) -> (Response, Next) {
        let kind = kind_label(&req);
        let (response, next) = if !self.handshaken {
            match req {
                Request::Hello {
                    min_version,
                    max_version,
                    pid,
                } => match version::negotiate(min_version, max_version) {
                    Some(v) => {
                        self.handshaken = true;
                        tracing::info!(peer_pid = pid, version = v, "data plane connected");
                        (Response::HelloAck { version: v }, Next::Continue)
                    }
                    None => {
                        tracing::warn!(
                            peer_pid = pid,
                            min_version,
                            max_version,
                            "no common channel version"
                        );
                        (Response::Denied(ErrorCode::BadRequest), Next::Close)
                    }
                },
                _ => {
                    tracing::warn!(kind, "channel request before Hello");
                    (Response::Denied(ErrorCode::BadRequest), Next::Close)
                }
            }
        } else {
            let response = match req {
                Request::Hello { .. } => Err(ErrorCode::BadRequest),
                Request::AuthorizeUpload {
                    request_id,
                    image_id,
                    credentials,
                    declared_size,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.authorize_upload(&request_id, image_id, &credentials, declared_size)
                        .instrument(span)
                        .await
                }
                Request::UploadComplete {
                    request_id,
                    image_id,
                    size,
                    checksum,
                    os_hash_algo,
                    os_hash_value,
                    location,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    let data = UploadedData {
                        size,
                        checksum,
                        os_hash_algo: os_hash_algo.as_str().to_owned(),
                        os_hash_value,
                        location,
                    };
                    self.upload_complete(&request_id, image_id, &data)
                        .instrument(span)
                        .await
                }
                Request::UploadAborted {
                    request_id,
                    image_id,
                    code,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.upload_aborted(&request_id, image_id, code)
                        .instrument(span)
                        .await
                }
                Request::AuthorizeDownload {
                    request_id,
                    image_id,
                    credentials,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.authorize_download(image_id, &credentials)
                        .instrument(span)
                        .await
                }
            };
            (response.unwrap_or_else(Response::Denied), Next::Continue)
        };
        let result = match &response {
            Response::Denied(code) => code_label(*code),
            _ => "ok",
        };
        self.app.metrics.channel_request(kind, result);
        (response, next)
    }

    fn log_transition(
        &self,
        request_id: &str,
        image_id: ImageId,
        from: ImageStatus,
        to: ImageStatus,
    ) {
        self.app.metrics.transition(from, to);
        tracing::info!(%image_id, request_id, %from, %to, "image status changed");
    }

    async fn authorize_upload(
        &mut self,
        request_id: &str,
        id: ImageId,
        credentials: &Credentials,
        declared_size: Option<u64>,
    ) -> Result<Response, ErrorCode> {
        let app = &self.app;
        let ctx = app.auth.context(credentials).await.map_err(auth_code)?;
        // the same visibility (members, community, …) and rules as the HTTP API
        let image = app
            .find_visible(&ctx, id)
            .await
            .map_err(internal)?
            .ok_or(ErrorCode::NotFound)?;
        app.policy
            .authorize(&ctx, Rule::UploadImage, &Target::of(&image))
            .map_err(denied_from_policy)?;
        if image.status != ImageStatus::Queued {
            return Err(ErrorCode::Conflict);
        }
        let cap = app.config.image.image_size_cap_bytes;
        let mut next = (*image).clone();
        next.transition(ImageStatus::Saving)
            .map_err(|_| ErrorCode::BadRequest)?;
        if declared_size.is_some_and(|s| s > cap) {
            return Err(ErrorCode::PayloadTooLarge);
        }
        if !db::images::begin_saving(&app.db, id, Utc::now())
            .await
            .map_err(internal)?
        {
            return Err(ErrorCode::Conflict);
        }
        self.leases.insert(id);
        self.log_transition(request_id, id, ImageStatus::Queued, ImageStatus::Saving);
        Ok(Response::UploadGranted {
            hash_algo: app.config.image.hashing_algorithm,
            max_size_bytes: cap,
        })
    }

    async fn upload_complete(
        &mut self,
        request_id: &str,
        id: ImageId,
        data: &UploadedData,
    ) -> Result<Response, ErrorCode> {
        if !self.leases.contains(&id) {
            tracing::warn!(image_id = %id, "UploadComplete without a lease on this connection");
            return Err(ErrorCode::Conflict);
        }
        let app = self.app.clone();
        let now = Utc::now();
        if data.size > app.config.image.image_size_cap_bytes {
            self.leases.remove(&id);
            if db::images::revert_saving(&app.db, id, now)
                .await
                .map_err(internal)?
            {
                self.log_transition(request_id, id, ImageStatus::Saving, ImageStatus::Queued);
            }
            return Err(ErrorCode::PayloadTooLarge);
        }
        if db::images::commit_upload(&app.db, id, data, now)
            .await
            .map_err(internal)?
        {
            self.leases.remove(&id);
            self.log_transition(request_id, id, ImageStatus::Saving, ImageStatus::Active);
            return Ok(Response::UploadCommitted);
        }
        self.leases.remove(&id);
        match db::images::status(&app.db, id).await.map_err(internal)? {
            None | Some(ImageStatus::Deleted) => {
                tracing::info!(image_id = %id, request_id, "image deleted during upload");
                Err(ErrorCode::Gone)
            }
            Some(status) => {
                tracing::warn!(image_id = %id, request_id, %status, "upload completed but image is no longer saving");
                Err(ErrorCode::Conflict)
            }
        }
    }

    async fn upload_aborted(
        &mut self,
        request_id: &str,
        id: ImageId,
        code: ErrorCode,
    ) -> Result<Response, ErrorCode> {
        if self.leases.remove(&id)
            && db::images::revert_saving(&self.app.db, id, Utc::now())
                .await
                .map_err(internal)?
        {
            tracing::info!(image_id = %id, request_id, reason = %code, "upload aborted");
            self.log_transition(request_id, id, ImageStatus::Saving, ImageStatus::Queued);
        }
        Ok(Response::Ack)
    }

    async fn authorize_download(
        &self,
        id: ImageId,
        credentials: &Credentials,
    ) -> Result<Response, ErrorCode> {
        let app = &self.app;
        let ctx = app.auth.context(credentials).await.map_err(auth_code)?;
        // the same visibility (members, community, …) and rules as the HTTP API
        let image = app
            .find_visible(&ctx, id)
            .await
            .map_err(internal)?
            .ok_or(ErrorCode::NotFound)?;
        app.policy
            .authorize(&ctx, Rule::DownloadImage, &Target::of(&image))
            .map_err(denied_from_policy)?;
        if image.status == ImageStatus::Deactivated && !ctx.is_admin {
            return Err(ErrorCode::Forbidden);
        }
        match (&image.location, image.status) {
            (Some(location), ImageStatus::Active | ImageStatus::Deactivated) => {
                Ok(Response::DownloadGranted {
                    location: Some(location.clone()),
                    size: image.size.unwrap_or(0),
                    checksum: image.checksum.clone(),
                })
            }
            _ => Ok(Response::DownloadGranted {
                location: None,
                size: 0,
                checksum: None,
            }),
        }
    }

    async fn revert_leases(&mut self) {
        for id in std::mem::take(&mut self.leases) {
            match db::images::revert_saving(&self.app.db, id, Utc::now()).await {
                Ok(true) => {
                    self.app.metrics.lease_reverted();
                    self.app
                        .metrics
                        .transition(ImageStatus::Saving, ImageStatus::Queued);
                    tracing::warn!(image_id = %id, from = %ImageStatus::Saving, to = %ImageStatus::Queued,
                        "channel closed during upload; image back to queued");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(image_id = %id, error = %e, "could not revert upload lease")
                }
            }
        }
    }
}

/// The channel code for a caller that did not authenticate (401, or 503 when Keystone is down).
fn auth_code(e: crate::auth::Error) -> ErrorCode {
    match e {
        crate::auth::Error::Invalid(_) => ErrorCode::Unauthorized,
        crate::auth::Error::Unavailable(m) => {
            tracing::warn!(error = %m, "keystone unavailable");
            ErrorCode::ServiceUnavailable
        }
    }
}

#[cfg(test)]
mod tests;
