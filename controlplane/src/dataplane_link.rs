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
//! 1. `AuthorizeUpload` first resolves the store (with multi-store: the one named by the
//!    client's `X-Image-Meta-Store`, else the default; one not configured is 400
//!    `UnknownStore`, checked before the image as Glance does; without multi-store the header
//!    is ignored and the store is `file`), checks visibility (404), `upload_image` (403), then
//!    asks the domain to begin the upload (`queued → saving`: 409 `Transition` from any other
//!    status, 400 `FormatsMissing` naming the missing ones), checks the declared size (413
//!    `TooLarge`) and that the store takes uploads (410 `ReadOnlyStore`), executes the move
//!    (409 if someone else won) and records the lease, with its store, **on this
//!    connection**. `UploadGranted` names the store.
//! 2. `UploadComplete` on the same connection commits `saving → active` with size, checksum,
//!    hash and the location (url and store, recorded in `image_locations`) — or answers
//!    `DeletedDuringUpload` when the image was deleted meanwhile, `TooLarge` (and back to
//!    `queued`) above the size cap, and `Protocol` without a lease on this connection (out of
//!    order), for another store than the one granted, or for a URL that cannot be stored
//!    (credentials in it, whitespace; the image goes back to `queued`).
//! 3. `UploadAborted` puts the image back to `queued`.
//! 4. If the connection closes (EOF, error, or our shutdown) while it holds leases, every
//!    leased image still `saving` goes back to `queued`
//!    (`glint_channel_leases_reverted_total`).
//! 5. `UploadLeftover`, sent by the data plane before its upload can leave anything in the
//!    store (the object at the URL, an S3 multipart upload, Swift segments), records that as
//!    a held `abort_upload` job of the lease ([`db::jobs::record_leftover`]). The commit of
//!    step 2 drops the lease's held jobs in its transaction (and refuses with 409
//!    `CleanupPending` while a delete of the same URL is queued or running); every other end
//!    of the lease (refused commit, abort, closed connection) makes them due at once, so a
//!    data plane claims and removes what the upload left.
//!
//! `AuthorizeDownload` answers the image's active locations best first (store weight, then
//! position) as a [`shared::location::List`], empty when it has no data.
//!
//! Jobs ([`db::jobs`]; leases there are time-based, not tied to a connection):
//! `ClaimJobs { max, lease_seconds }` hands out up to `max` (at most [`MAX_CLAIM`]) due jobs,
//! pending ones and those whose lease expired, each leased for `lease_seconds`; `JobDone`
//! deletes the job (for `delete_data`, its location becomes `deleted`) and `JobFailed` puts it
//! back with a backoff of `min(5·2^(attempts-1), 3600)` s; both are acknowledged even for a
//! job no longer known (idempotent). Only this node's jobs and those of no node are handed
//! out; a `prefetch` goes out with the image's size and locations as they are now, or is
//! dropped (done) when the image is no longer active.
//!
//! `AuthorizeCache` keeps this node's prefetch queue, its `prefetch` jobs: `Queue` enqueues
//! one, `Delete` and `Clear` with the queue as target remove them, `List` answers them.

use crate::app::{App, Refusal};
use crate::db;
use crate::domain::{self, Image, Move, UploadedData};
use crate::policy::{Context, Target};
use chrono::Utc;
use shared::channel::frame::{self, FrameError, HEADER_BYTES};
use shared::channel::{CacheAction, Credentials, Request, Response, Work, version};
use shared::error::{Action, ErrorCode, Reason};
use shared::image::{ImageId, ImageStatus};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Most jobs handed out by one `ClaimJobs`.
pub const MAX_CLAIM: u32 = 256;

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

/// Every `kind` label of `glint_channel_requests_total` (initialised at 0 with result `ok`).
pub const KINDS: [&str; 15] = Request::<String>::KINDS;

fn internal(e: db::Error) -> Reason {
    tracing::error!(error = %e, "channel request failed");
    Reason::Internal
}

/// One data-plane connection and the upload leases it holds.
struct Connection {
    app: App,
    leases: HashMap<ImageId, Lease>,
    handshaken: bool,
}

/// An upload lease: the store granted and the held jobs recording what the upload may leave.
#[derive(Debug)]
struct Lease {
    store: String,
    leftovers: Vec<u64>,
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
            leases: HashMap::new(),
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
        let kind = req.kind();
        let started = std::time::Instant::now();
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
                    store,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.authorize_upload(
                        &request_id,
                        image_id,
                        &credentials,
                        declared_size,
                        store.as_deref(),
                    )
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
                    store,
                    virtual_size,
                    block_size,
                    block_hashes,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    let data = UploadedData {
                        virtual_size,
                        block_size,
                        block_hashes,
                        size,
                        checksum,
                        os_hash_algo: os_hash_algo.as_str().to_owned(),
                        os_hash_value,
                        location,
                        store,
                    };
                    self.upload_complete(&request_id, image_id, data)
                        .instrument(span)
                        .await
                }
                Request::UploadLeftover {
                    request_id,
                    image_id,
                    url,
                    upload,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.upload_leftover(image_id, &url, upload.as_deref())
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
                Request::ClaimJobs { max, lease_seconds } => {
                    self.claim_jobs(max, lease_seconds).await
                }
                Request::JobDone { id } => self.job_done(id).await,
                Request::JobFailed { id, error } => self.job_failed(id, &error).await,
                Request::BlockHashes { image_id } => self.block_hashes(image_id).await,
                Request::AuditTargets { after, max } => {
                    db::images::audit_targets(&self.app.db, after, max.min(MAX_CLAIM))
                        .await
                        .map(Response::AuditTargets)
                        .map_err(internal)
                }
                Request::Quarantine {
                    image_id,
                    url,
                    reason,
                } => self.quarantine(image_id, &url, &reason).await,
                Request::RecordBlockHashes {
                    image_id,
                    block_size,
                    hashes,
                    checksum,
                } => {
                    self.record_block_hashes(image_id, block_size, &hashes, &checksum)
                        .await
                }
                Request::AuthorizeCache {
                    request_id,
                    action,
                    image_id,
                    credentials,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, ?action);
                    self.authorize_cache(action, image_id, &credentials)
                        .instrument(span)
                        .await
                }
                Request::CacheReport { image_id, bytes } => {
                    let node = self.app.config.self_reference_url();
                    db::cached::record(&self.app.db, &node, image_id, bytes)
                        .await
                        .map_err(internal)
                        .map(|()| Response::Ack)
                }
            };
            (response.unwrap_or_else(Response::Denied), Next::Continue)
        };
        let result = match &response {
            Response::Denied(reason) => reason.code().label(),
            _ => "ok",
        };
        self.app.metrics.channel_request(kind, result);
        self.app
            .metrics
            .channel_duration(kind, started.elapsed().as_secs_f64());
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
        store: Option<&str>,
    ) -> Result<Response, Reason> {
        let stores = &self.app.stores;
        // Glance resolves the store before it looks at the image (image_data.py upload)
        let store = match store {
            Some(asked) if stores.multistore => stores.get(asked).ok_or_else(|| {
                tracing::debug!(store = asked, "upload to an unknown store");
                Reason::UnknownStore
            })?,
            _ => stores.get(&stores.default).ok_or_else(|| {
                tracing::error!(store = %stores.default, "the default store is not configured");
                Reason::Internal
            })?,
        };
        let (read_only, store) = (store.read_only(), store.id.clone());
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
        if read_only {
            return Err(Reason::ReadOnlyStore);
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
        self.leases.insert(
            id,
            Lease {
                store: store.clone(),
                leftovers: Vec::new(),
            },
        );
        self.log_transition(request_id, id, begin.from, begin.to);
        // Glance inspects bare images only (glance/location.py set_data)
        let inspect_as = (image.container_format.as_deref() == Some("bare"))
            .then(|| image.disk_format.clone())
            .flatten();
        Ok(Response::UploadGranted {
            hash_algo: app.config.image.hashing_algorithm,
            max_size_bytes: cap,
            store,
            inspect_as,
        })
    }

    /// Records what the upload under the lease of `id` may leave at `url`.
    async fn upload_leftover(
        &mut self,
        id: ImageId,
        url: &str,
        upload: Option<&str>,
    ) -> Result<Response, Reason> {
        let Some(lease) = self.leases.get_mut(&id) else {
            tracing::warn!(image_id = %id, "UploadLeftover without a lease on this connection");
            return Err(Reason::Protocol);
        };
        if let Err(e) = domain::location::check_url(url) {
            tracing::error!(image_id = %id, error = %e, "UploadLeftover with a location that cannot be stored");
            return Err(Reason::Protocol);
        }
        let job =
            db::jobs::record_leftover(&self.app.db, id, &lease.store, url, upload, Utc::now())
                .await
                .map_err(internal)?;
        lease.leftovers.push(job);
        tracing::debug!(image_id = %id, job_id = job, multipart = upload.is_some(), "upload leftover recorded");
        Ok(Response::Ack)
    }

    /// Ends the lease of `id` without a commit: what its upload left is due for removal.
    async fn end_lease(&mut self, id: ImageId) {
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        if lease.leftovers.is_empty() {
            return;
        }
        match db::jobs::release(&self.app.db, &lease.leftovers, Utc::now()).await {
            Ok(n) if n > 0 => {
                tracing::info!(image_id = %id, jobs = n, "upload ended uncommitted; its leftovers are due for removal")
            }
            Ok(_) => {}
            // held jobs are released at the next start-up at the latest
            Err(e) => {
                tracing::error!(image_id = %id, error = %e, "could not release an upload's leftovers")
            }
        }
    }

    /// Puts a leased image back to `queued` (the lease is gone either way).
    /// The image first: an object abort due while its image is still `saving` would wait.
    async fn revert(&mut self, request_id: &str, id: ImageId) -> Result<bool, Reason> {
        let revert = Move::revert_upload();
        let moved = db::images::apply_move(&self.app.db, id, &revert, Utc::now()).await;
        self.end_lease(id).await;
        let moved = moved.map_err(internal)?;
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
        let Some(granted) = self.leases.get(&id).map(|l| &l.store) else {
            // out of order: no AuthorizeUpload granted this upload on this connection
            tracing::warn!(image_id = %id, "UploadComplete without a lease on this connection");
            return Err(Reason::Protocol);
        };
        if *granted != data.store {
            tracing::error!(image_id = %id, granted = %granted, reported = %data.store,
                "UploadComplete for another store than the one granted");
            self.revert(request_id, id).await?;
            return Err(Reason::Protocol);
        }
        if !shared::blocks::consistent(data.size, data.block_size, &data.block_hashes) {
            tracing::error!(image_id = %id, size = data.size, block_size = data.block_size,
                "UploadComplete with block hashes that do not fit the size");
            self.revert(request_id, id).await?;
            return Err(Reason::Protocol);
        }
        if let Err(e) = domain::location::check_url(&data.location) {
            // never logged with the URL: it may hold the credentials it is refused for
            tracing::error!(image_id = %id, error = %e, "UploadComplete with a location that cannot be stored");
            self.revert(request_id, id).await?;
            return Err(Reason::Protocol);
        }
        let app = self.app.clone();
        if data.size > app.config.image.image_size_cap_bytes {
            self.revert(request_id, id).await?;
            return Err(Reason::TooLarge);
        }
        let commit = Move::commit_upload(data);
        let committed = match db::images::apply_move(&app.db, id, &commit, Utc::now()).await {
            Ok(c) => c,
            Err(db::Error::CleanupPending) => {
                tracing::warn!(image_id = %id, request_id, "upload not committed: earlier data at its location is still being deleted");
                self.revert(request_id, id).await?;
                return Err(Reason::CleanupPending);
            }
            Err(e) => {
                self.end_lease(id).await;
                return Err(internal(e));
            }
        };
        if committed {
            // the commit dropped the lease's held jobs
            self.leases.remove(&id);
            self.log_transition(request_id, id, commit.from, commit.to);
            return Ok(Response::UploadCommitted);
        }
        self.end_lease(id).await;
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
        if self.leases.contains_key(&id) && self.revert(request_id, id).await? {
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
        let mut list = shared::location::List::default();
        if matches!(image.status, ImageStatus::Active | ImageStatus::Deactivated) {
            for l in image.locations_best_first(&self.app.stores) {
                if let Err(e) = list.push(&l.store, &l.url) {
                    tracing::error!(image_id = %id, error = %e, "stored location cannot be sent; skipped");
                }
            }
        }
        let locations = list.into_string();
        if locations.is_empty() && image.has_data() {
            // every copy is quarantined: never an empty answer for an image with data
            return Err(Reason::Quarantined);
        }
        tracing::debug!(image_id = %id, status = %image.status, "download authorized");
        if locations.is_empty() {
            return Ok(Response::DownloadGranted {
                locations,
                size: 0,
                checksum: None,
                os_hash_value: None,
            });
        }
        Ok(Response::DownloadGranted {
            locations,
            size: image.size.unwrap_or(0),
            checksum: image.checksum.clone(),
            os_hash_value: image.os_hash_value.clone(),
        })
    }

    async fn claim_jobs(&self, max: u32, lease_seconds: u32) -> Result<Response, Reason> {
        let app = &self.app;
        let node = app.config.self_reference_url();
        let now = Utc::now();
        let claimed = db::jobs::claim(&app.db, &node, max.min(MAX_CLAIM), lease_seconds, now)
            .await
            .map_err(internal)?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for mut job in claimed {
            tracing::debug!(job_id = job.id, attempt = job.attempt, "job claimed");
            if let Work::Prefetch {
                image_id,
                size,
                locations,
            } = &mut job.work
            {
                // the image as it is now: one no longer active has nothing to prefetch
                let image = db::images::get(&app.db, *image_id)
                    .await
                    .map_err(internal)?;
                let Some(image) = image.filter(|i| i.status == ImageStatus::Active) else {
                    tracing::info!(job_id = job.id, %image_id, "prefetch of an image no longer active dropped");
                    db::jobs::done(&app.db, job.id, now)
                        .await
                        .map_err(internal)?;
                    continue;
                };
                let mut list = shared::location::List::default();
                for l in image.locations_best_first(&app.stores) {
                    let _ = list.push(&l.store, &l.url);
                }
                *locations = list.into_string();
                *size = image.size.unwrap_or(0);
            }
            jobs.push(job);
        }
        Ok(Response::Jobs(jobs))
    }

    async fn job_done(&self, id: u64) -> Result<Response, Reason> {
        match db::jobs::done(&self.app.db, id, Utc::now())
            .await
            .map_err(internal)?
        {
            db::jobs::Done::Finished(kind) => {
                self.app.metrics.job_done(kind);
                tracing::info!(job_id = id, kind, "job done");
            }
            db::jobs::Done::Unknown => tracing::debug!(job_id = id, "job done again, or unknown"),
        }
        Ok(Response::Ack)
    }

    /// The block hashes recorded with an image's data (block size 0: none).
    /// A cache API request: the caller's context, the image where the action names one (it
    /// must exist and be visible; `Queue` needs it active), and the action's Glance rule.
    async fn authorize_cache(
        &self,
        action: CacheAction,
        image_id: Option<ImageId>,
        credentials: &Credentials,
    ) -> Result<Response, Reason> {
        let app = &self.app;
        let ctx = app.auth.context(credentials).await.map_err(auth_reason)?;
        let rule = match action {
            CacheAction::List => Action::CacheList,
            CacheAction::Queue => Action::CacheImage,
            CacheAction::Delete | CacheAction::Clear { .. } => Action::CacheDelete,
            CacheAction::Clean => Action::CacheClean,
            CacheAction::Prune => Action::CachePrune,
            CacheAction::Nodes => Action::ListCachedNodes,
        };
        let image = match (action.on_image(), image_id) {
            // an image that is gone had its cached blocks dropped with its data
            (true, Some(id)) => Some(
                app.find_visible(&ctx, id)
                    .await
                    .map_err(internal)?
                    .ok_or(Reason::NoSuchImage)?,
            ),
            (true, None) => return Err(Reason::Protocol),
            (false, _) => None,
        };
        let target = match &image {
            Some(i) => Target::of(i),
            None => Target {
                owner: ctx.project_id.as_deref(),
                visibility: shared::image::Visibility::Private,
            },
        };
        if !app.policy.check(&ctx, rule.into(), &target) {
            return Err(Reason::NotAllowed(rule));
        }
        // the prefetch queue is this node's `prefetch` jobs
        let node = app.config.self_reference_url();
        let (mut locations, mut size) = (String::new(), 0);
        let (mut nodes, mut queued) = (String::new(), String::new());
        match (action, image) {
            (CacheAction::Queue, Some(image)) => {
                if image.status != ImageStatus::Active {
                    return Err(Reason::NotQueueable);
                }
                let mut list = shared::location::List::default();
                for l in image.locations_best_first(&app.stores) {
                    let _ = list.push(&l.store, &l.url);
                }
                locations = list.into_string();
                size = image.size.unwrap_or(0);
                let added = db::jobs::enqueue_prefetch(&app.db, &node, image.id, Utc::now())
                    .await
                    .map_err(internal)?;
                tracing::info!(image_id = %image.id, added, "image queued for prefetch");
            }
            (CacheAction::Delete, Some(image)) => {
                db::jobs::cancel_prefetch(&app.db, &node, Some(image.id))
                    .await
                    .map_err(internal)?;
            }
            (CacheAction::Clear { queue: true, .. }, _) => {
                let n = db::jobs::cancel_prefetch(&app.db, &node, None)
                    .await
                    .map_err(internal)?;
                tracing::info!(removed = n, "prefetch queue cleared");
            }
            (CacheAction::List, _) => {
                let ids = db::jobs::queued_prefetches(&app.db, &node)
                    .await
                    .map_err(internal)?;
                queued = ids.iter().map(|i| format!("{i}\n")).collect();
            }
            (CacheAction::Nodes, Some(image)) => {
                nodes = db::cached::nodes(&app.db, image.id)
                    .await
                    .map_err(internal)?
                    .join("\n");
            }
            _ => {}
        }
        Ok(Response::CacheGranted {
            locations,
            size,
            nodes,
            queued,
        })
    }

    async fn block_hashes(&self, id: ImageId) -> Result<Response, Reason> {
        let db = &self.app.db;
        let recorded = db::images::block_hashes(db, id).await.map_err(internal)?;
        if let Some((block_size, hashes)) = recorded {
            return Ok(Response::BlockHashes {
                block_size,
                hashes,
                checksum: None,
                os_hash_algo: None,
                os_hash_value: None,
            });
        }
        // none: what a fill of the whole image verifies against instead
        let image = db::images::get(db, id).await.map_err(internal)?;
        let image = image.as_deref();
        Ok(Response::BlockHashes {
            block_size: 0,
            hashes: String::new(),
            checksum: image.and_then(|i| i.checksum.clone()),
            os_hash_algo: image.and_then(|i| i.os_hash_algo.clone()),
            os_hash_value: image.and_then(|i| i.os_hash_value.clone()),
        })
    }

    /// Quarantines a location whose data failed the auditor's verification.
    async fn quarantine(&self, id: ImageId, url: &str, reason: &str) -> Result<Response, Reason> {
        let done = db::images::quarantine(&self.app.db, id, url, Utc::now())
            .await
            .map_err(internal)?;
        tracing::error!(image_id = %id, location = %url, reason, quarantined = done, "image data failed verification; location quarantined, never served again");
        Ok(Response::Ack)
    }

    /// Records block hashes a data plane computed for an image that had none (see
    /// [`Request::RecordBlockHashes`]); acknowledged whether kept or not.
    async fn record_block_hashes(
        &self,
        id: ImageId,
        block_size: u64,
        hashes: &str,
        checksum: &str,
    ) -> Result<Response, Reason> {
        let db = &self.app.db;
        let image = db::images::get(db, id).await.map_err(internal)?;
        let fits = image.as_deref().is_some_and(|i| {
            i.status == ImageStatus::Active
                && i.checksum.as_deref() == Some(checksum)
                && i.size
                    .is_some_and(|size| shared::blocks::consistent(size, block_size, hashes))
        });
        if !fits {
            tracing::info!(image_id = %id, "block hashes computed by a cache fill not recorded: the image changed");
            return Ok(Response::Ack);
        }
        let added = db::images::add_block_hashes(db, id, block_size, hashes)
            .await
            .map_err(internal)?;
        tracing::info!(image_id = %id, added, "block hashes computed by a cache fill recorded");
        Ok(Response::Ack)
    }

    async fn job_failed(&self, id: u64, error: &str) -> Result<Response, Reason> {
        match db::jobs::failed(&self.app.db, id, error, Utc::now())
            .await
            .map_err(internal)?
        {
            Some(kind) => {
                self.app.metrics.job_failed(kind);
                tracing::warn!(job_id = id, kind, error, "job failed; retried later");
            }
            None => tracing::debug!(job_id = id, "failure of a job not claimed, or unknown"),
        }
        Ok(Response::Ack)
    }

    async fn revert_leases(&mut self) {
        let revert = Move::revert_upload();
        let ids: Vec<ImageId> = self.leases.keys().copied().collect();
        for id in ids {
            let moved = db::images::apply_move(&self.app.db, id, &revert, Utc::now()).await;
            // after the image: an object abort due while its image is `saving` would wait
            self.end_lease(id).await;
            match moved {
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
