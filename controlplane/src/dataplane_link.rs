//! The channel server: the control plane's side of the link to the data plane.
//!
//! The data plane connects to the channel socket and speaks length-prefixed postcard frames
//! ([`shared::channel::frame`]) carrying [`Request`]s; each gets exactly one [`Response`] with
//! the same correlation id. Per connection:
//!
//! 1. The first frame must be `Hello`; we answer `HelloAck` with the negotiated version, or
//!    `Denied(Reason::Protocol)` and close.
//! 2. Then requests are handled one at a time, in order.
//!
//! Every refusal is a `Denied(`[`Reason`]`)` saying precisely why, so the data plane answers
//! with the same status and message the HTTP API would; the metric label is the reason's code.
//! Both authorisations start with [`App::find_authorized`], the step the HTTP API takes too:
//! an image the caller cannot see is `NoSuchImage`; `upload_image` / `download_image` refused
//! is `NotAllowed`; a `deactivated` image is `Deactivated` to non-admins; a shared image is
//! downloadable by its members.
//!
//! Upload leases (see [`shared::channel`]); the status moves are the domain's
//! ([`crate::domain::status`]), executed as conditional updates:
//!
//! 1. `AuthorizeUpload` checks visibility (404), `upload_image` (403), then asks the domain to
//!    begin the upload (`queued → saving`: 409 `Transition` from any other status, 400
//!    `FormatsMissing` naming the missing ones), checks the declared size (413 `TooLarge`), executes the move (409 if
//!    someone else won) and records the lease **on this connection**.
//! 2. `UploadComplete` on the same connection commits `saving → active` with size, checksum,
//!    hash and location — or answers `DeletedDuringUpload` when the image was deleted
//!    meanwhile, `TooLarge` (and back to `queued`) above the size cap, and `Protocol` without
//!    a lease on this connection (out of order).
//! 3. `UploadAborted` puts the image back to `queued`.
//! 4. If the connection closes (EOF, error, or our shutdown) while it holds leases, every
//!    leased image still `saving` goes back to `queued`
//!    (`glint_channel_leases_reverted_total`).

use crate::app::{App, Refusal};
use crate::db;
use crate::domain::{self, Image, Move, UploadedData};
use crate::policy::Context;
use chrono::Utc;
use shared::channel::frame::{self, FrameError, HEADER_BYTES};
use shared::channel::{Credentials, Request, Response, version};
use shared::error::{Action, ErrorCode, Reason};
use shared::image::{ImageId, ImageStatus};
use std::collections::HashSet;
use std::sync::Arc;
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

fn kind_label(req: &Request) -> &'static str {
    match req {
        Request::Hello { .. } => "hello",
        Request::AuthorizeUpload { .. } => "authorize_upload",
        Request::UploadComplete { .. } => "upload_complete",
        Request::UploadAborted { .. } => "upload_aborted",
        Request::AuthorizeDownload { .. } => "authorize_download",
    }
}

fn internal(e: db::Error) -> Reason {
    tracing::error!(error = %e, "channel request failed");
    Reason::Internal
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
                    None => (Response::Denied(Reason::Protocol), Next::Continue),
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
                        (Response::Denied(Reason::Protocol), Next::Close)
                    }
                },
                _ => {
                    tracing::warn!(kind, "channel request before Hello");
                    (Response::Denied(Reason::Protocol), Next::Close)
                }
            }
        } else {
            let response = match req {
                Request::Hello { .. } => Err(Reason::Protocol),
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
                    self.upload_complete(&request_id, image_id, data)
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
            Response::Denied(reason) => reason.code().label(),
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

    /// The image `id` if the caller of `credentials` may see it and `action` on it.
    async fn find_authorized(
        &self,
        credentials: &Credentials,
        id: ImageId,
        action: Action,
    ) -> Result<(Context, Arc<Image>), Reason> {
        let app = &self.app;
        let ctx = app.auth.context(credentials).await.map_err(auth_reason)?;
        // the same step, visibility (members, community, …) and rules as the HTTP API
        match app.find_authorized(&ctx, id, action.into()).await {
            Ok(image) => Ok((ctx, image)),
            Err(Refusal::NotFound(_)) => Err(Reason::NoSuchImage),
            Err(Refusal::Forbidden(_)) => Err(Reason::NotAllowed(action)),
            Err(Refusal::Db(e)) => Err(internal(e)),
        }
    }

    async fn authorize_upload(
        &mut self,
        request_id: &str,
        id: ImageId,
        credentials: &Credentials,
        declared_size: Option<u64>,
    ) -> Result<Response, Reason> {
        let (_, image) = self
            .find_authorized(credentials, id, Action::UploadImage)
            .await?;
        let begin = image.begin_upload().map_err(|e| match e {
            domain::Error::InvalidTransition { from, to } => Reason::Transition { from, to },
            domain::Error::FormatsMissing {
                disk_format,
                container_format,
            } => Reason::FormatsMissing {
                disk_format,
                container_format,
            },
            other => {
                tracing::error!(error = %other, "unexpected refusal to begin an upload");
                Reason::Internal
            }
        })?;
        let app = &self.app;
        let cap = app.config.image.image_size_cap_bytes;
        if declared_size.is_some_and(|s| s > cap) {
            return Err(Reason::TooLarge);
        }
        if !db::images::apply_move(&app.db, id, &begin, Utc::now())
            .await
            .map_err(internal)?
        {
            // someone else moved it first: say from what, as Glance would
            let from = db::images::status(&app.db, id)
                .await
                .map_err(internal)?
                .unwrap_or(ImageStatus::Deleted);
            return Err(Reason::Transition { from, to: begin.to });
        }
        self.leases.insert(id);
        self.log_transition(request_id, id, begin.from, begin.to);
        Ok(Response::UploadGranted {
            hash_algo: app.config.image.hashing_algorithm,
            max_size_bytes: cap,
        })
    }

    /// Puts a leased image back to `queued` (the lease is gone either way).
    async fn revert(&mut self, request_id: &str, id: ImageId) -> Result<bool, Reason> {
        self.leases.remove(&id);
        let revert = Move::revert_upload();
        let moved = db::images::apply_move(&self.app.db, id, &revert, Utc::now())
            .await
            .map_err(internal)?;
        if moved {
            self.log_transition(request_id, id, revert.from, revert.to);
        }
        Ok(moved)
    }

    async fn upload_complete(
        &mut self,
        request_id: &str,
        id: ImageId,
        data: UploadedData,
    ) -> Result<Response, Reason> {
        if !self.leases.contains(&id) {
            // out of order: no AuthorizeUpload granted this upload on this connection
            tracing::warn!(image_id = %id, "UploadComplete without a lease on this connection");
            return Err(Reason::Protocol);
        }
        let app = self.app.clone();
        if data.size > app.config.image.image_size_cap_bytes {
            self.revert(request_id, id).await?;
            return Err(Reason::TooLarge);
        }
        let commit = Move::commit_upload(data);
        let committed = db::images::apply_move(&app.db, id, &commit, Utc::now())
            .await
            .map_err(internal)?;
        self.leases.remove(&id);
        if committed {
            self.log_transition(request_id, id, commit.from, commit.to);
            return Ok(Response::UploadCommitted);
        }
        match db::images::status(&app.db, id).await.map_err(internal)? {
            None | Some(ImageStatus::Deleted) => {
                tracing::info!(image_id = %id, request_id, "image deleted during upload");
                Err(Reason::DeletedDuringUpload)
            }
            Some(status) => {
                tracing::warn!(image_id = %id, request_id, %status, "upload completed but image is no longer saving");
                Err(Reason::Transition {
                    from: status,
                    to: commit.to,
                })
            }
        }
    }

    async fn upload_aborted(
        &mut self,
        request_id: &str,
        id: ImageId,
        code: ErrorCode,
    ) -> Result<Response, Reason> {
        if self.leases.contains(&id) && self.revert(request_id, id).await? {
            tracing::info!(image_id = %id, request_id, reason = %code, "upload aborted");
        }
        Ok(Response::Ack)
    }

    async fn authorize_download(
        &self,
        id: ImageId,
        credentials: &Credentials,
    ) -> Result<Response, Reason> {
        let (ctx, image) = self
            .find_authorized(credentials, id, Action::DownloadImage)
            .await?;
        if image.status == ImageStatus::Deactivated && !ctx.is_admin {
            return Err(Reason::Deactivated);
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
        let revert = Move::revert_upload();
        for id in std::mem::take(&mut self.leases) {
            match db::images::apply_move(&self.app.db, id, &revert, Utc::now()).await {
                Ok(true) => {
                    self.app.metrics.lease_reverted();
                    self.app.metrics.transition(revert.from, revert.to);
                    tracing::warn!(image_id = %id, from = %revert.from, to = %revert.to,
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

/// The reason for a caller that did not authenticate (401, or 503 when Keystone is down).
fn auth_reason(e: crate::auth::Error) -> Reason {
    match e {
        crate::auth::Error::Invalid(_) => Reason::Unauthenticated,
        crate::auth::Error::Unavailable(m) => {
            tracing::warn!(error = %m, "keystone unavailable");
            Reason::IdentityUnavailable
        }
    }
}

#[cfg(test)]
mod tests;
