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
use crate::domain::task::{Task, TaskStatus};
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
pub const KINDS: [&str; 21] = Request::<String>::KINDS;

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

/// An upload lease: the store granted, the held jobs recording what the upload may leave,
/// and what the upload is for.
#[derive(Debug)]
struct Lease {
    store: String,
    leftovers: Vec<u64>,
    kind: LeaseKind,
}

/// What an upload lease writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LeaseKind {
    /// `PUT …/file`: `saving`, `active` at the commit, `queued` if it ends otherwise.
    Upload,
    /// `PUT …/stage`: `uploading`, still `uploading` (staged) at the commit, `queued` if it
    /// ends otherwise.
    Stage,
    /// One store of an import job (`ImportBegin`): the commit adds the location (and may make
    /// the image `active`); any other end leaves the image to the job.
    Import {
        task_id: String,
        method: domain::import::Method,
        all_stores_must_succeed: bool,
    },
}

/// What the data plane found at an added location (`LocationChecked`).
struct Checked {
    size: u64,
    checksum: Option<String>,
    os_hash_value: Option<String>,
    error: Option<String>,
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
                    stage,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.authorize_upload(
                        &request_id,
                        image_id,
                        &credentials,
                        declared_size,
                        store.as_deref(),
                        stage,
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
                Request::AuthorizeDelete {
                    request_id,
                    image_id,
                    credentials,
                    store,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %request_id, %image_id);
                    self.authorize_delete(image_id, &credentials, store.as_deref())
                        .instrument(span)
                        .await
                }
                Request::LocationChecked {
                    job,
                    task_id,
                    image_id,
                    size,
                    checksum,
                    os_hash_value,
                    error,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %task_id, %image_id);
                    let found = Checked {
                        size,
                        checksum,
                        os_hash_value,
                        error,
                    };
                    self.location_checked(job, &task_id, image_id, found)
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
                Request::ImportBegin {
                    task_id,
                    image_id,
                    store,
                    disk_format,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %task_id, %image_id);
                    self.import_begin(&task_id, image_id, &store, disk_format.as_deref())
                        .instrument(span)
                        .await
                }
                Request::ImportProgress {
                    task_id,
                    image_id,
                    copied,
                } => self.import_progress(&task_id, image_id, copied).await,
                Request::ImportFinished {
                    job,
                    task_id,
                    image_id,
                    error,
                    failed_stores,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %task_id, %image_id);
                    self.import_finished(job, &task_id, image_id, error.as_deref(), &failed_stores)
                        .instrument(span)
                        .await
                }
                Request::ImportMetadata {
                    task_id,
                    image_id,
                    image,
                } => {
                    let span = tracing::info_span!("channel_request", kind, %task_id, %image_id);
                    self.import_metadata(&task_id, image_id, &image)
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
        stage: bool,
    ) -> Result<Response, Reason> {
        if stage {
            return self
                .authorize_stage(request_id, id, credentials, declared_size)
                .await;
        }
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
                kind: LeaseKind::Upload,
            },
        );
        self.log_transition(request_id, id, begin.from, begin.to);
        Ok(self.grant(&image, store))
    }

    /// The terms of an upload of `image` into `store`.
    fn grant(&self, image: &Image, store: String) -> Response {
        let app = &self.app;
        // Glance inspects bare images only (glance/location.py set_data)
        let inspect_as = (image.container_format.as_deref() == Some("bare"))
            .then(|| image.disk_format.clone())
            .flatten();
        Response::UploadGranted {
            hash_algo: app.config.image.hashing_algorithm,
            max_size_bytes: app.config.image.image_size_cap_bytes,
            store,
            inspect_as,
        }
    }

    /// `PUT …/stage` (Glance's `stage`): `glance-direct` must be enabled (404), the image
    /// visible (404) and `modify_image` allowed (403); `queued → uploading` (409 from any
    /// other status); the data goes to the staging store.
    async fn authorize_stage(
        &mut self,
        request_id: &str,
        id: ImageId,
        credentials: &Credentials,
        declared_size: Option<u64>,
    ) -> Result<Response, Reason> {
        let app = self.app.clone();
        if !app
            .config
            .import_enabled(domain::import::Method::GlanceDirect.as_str())
        {
            return Err(Reason::StagingDisabled);
        }
        let (_, image) = self
            .find_authorized(credentials, id, Action::ModifyImage)
            .await?;
        let begin = image.begin_stage().map_err(|e| match e {
            domain::Error::InvalidTransition { from, to } => Reason::Transition { from, to },
            other => {
                tracing::error!(error = %other, "unexpected refusal to begin a stage");
                Reason::Internal
            }
        })?;
        if declared_size.is_some_and(|s| s > app.config.image.image_size_cap_bytes) {
            return Err(Reason::TooLarge);
        }
        if !db::images::apply_move(&app.db, id, &begin, Utc::now())
            .await
            .map_err(internal)?
        {
            let from = db::images::status(&app.db, id)
                .await
                .map_err(internal)?
                .unwrap_or(ImageStatus::Deleted);
            return Err(Reason::Transition { from, to: begin.to });
        }
        let store = shared::config::STAGING_STORE.to_owned();
        self.leases.insert(
            id,
            Lease {
                store: store.clone(),
                leftovers: Vec::new(),
                kind: LeaseKind::Stage,
            },
        );
        self.log_transition(request_id, id, begin.from, begin.to);
        let mut grant = self.grant(&image, store);
        if app.config.import_plugin("image_decompression")
            && let Response::UploadGranted { inspect_as, .. } = &mut grant
        {
            // staged data may be compressed: its content is judged once decompressed, when
            // the import writes it into each store
            *inspect_as = None;
        }
        Ok(grant)
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
        // a stage's leftover is in this node's staging directory: only this node removes it
        let node = (lease.kind == LeaseKind::Stage).then(|| self.app.config.self_reference_url());
        let job = db::jobs::record_leftover(
            &self.app.db,
            id,
            &lease.store,
            url,
            upload,
            node.as_deref(),
            Utc::now(),
        )
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
        let Some(revert) = self.leases.get(&id).and_then(|l| l.kind.revert()) else {
            // an import's store: the job goes on with the next store or fails the import
            self.end_lease(id).await;
            return Ok(false);
        };
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
        match self.leases.get(&id).map(|l| l.kind.clone()) {
            Some(LeaseKind::Stage) => return self.stage_complete(request_id, id, data).await,
            Some(LeaseKind::Import {
                task_id,
                method,
                all_stores_must_succeed,
            }) => {
                let committed = self
                    .import_store_complete(&task_id, method, all_stores_must_succeed, id, data)
                    .await;
                match &committed {
                    // the commit dropped the lease's held jobs
                    Ok(_) => {
                        self.leases.remove(&id);
                    }
                    Err(_) => self.end_lease(id).await,
                }
                return committed;
            }
            _ => {}
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
        let locations = if matches!(image.status, ImageStatus::Active | ImageStatus::Deactivated) {
            image.location_list(&self.app.stores)
        } else {
            String::new()
        };
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

    /// The locations a delete of `id` (from `store` only) would remove, if the caller may
    /// delete it; refused otherwise (a protected image too: the forwarded request then gets
    /// the control plane's own answer, before any in-use check).
    async fn authorize_delete(
        &self,
        id: ImageId,
        credentials: &Credentials,
        store: Option<&str>,
    ) -> Result<Response, Reason> {
        let (_, image) = self
            .find_authorized(credentials, id, Action::DeleteImage)
            .await?;
        if image.protected {
            return Err(Reason::NotAllowed(Action::DeleteImage));
        }
        let all = image.location_list(&self.app.stores);
        // from one store: refused unless active with another location (the forwarded request
        // then gets the control plane's 409 or its 403 for the last location, as Glance checks
        // those before the store)
        if store.is_some()
            && (image.status != ImageStatus::Active || shared::location::entries(&all).count() < 2)
        {
            return Err(Reason::NotAllowed(Action::DeleteImage));
        }
        let Some(store) = store else {
            return Ok(Response::DeleteGranted { locations: all });
        };
        let mut locations = shared::location::List::default();
        for (s, url) in shared::location::entries(&all).filter(|(s, _)| *s == store) {
            // entries of a list that was built whole: each pushes again
            let _ = locations.push(s, url);
        }
        Ok(Response::DeleteGranted {
            locations: locations.into_string(),
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
                *locations = image.location_list(&app.stores);
                *size = image.size.unwrap_or(0);
            }
            if let Work::Import { .. } = &job.work
                && !self.fill_import(&mut job.work, job.id).await?
            {
                continue;
            }
            jobs.push(job);
        }
        Ok(Response::Jobs(jobs))
    }

    /// Fills a claimed `import` job from its task and image (method, URI, the stores left);
    /// `false` when there is nothing to run: the task is gone or over (the job is dropped), or
    /// the image is no longer its (the task fails, the job is dropped).
    async fn fill_import(&self, work: &mut Work, job: u64) -> Result<bool, Reason> {
        let app = &self.app;
        let Work::Import { task_id, .. } = &*work else {
            return Ok(true);
        };
        let task = db::tasks::get(&app.db, task_id).await.map_err(internal)?;
        if let Some(t) = task
            .as_ref()
            .filter(|t| t.kind == crate::api::locations::LOCATION_IMPORT)
        {
            return self.fill_location(work, t, job).await;
        }
        let Work::Import {
            task_id,
            image_id,
            method,
            uri,
            size,
            stores,
            all_stores_must_succeed,
            decompress,
            convert_from,
            convert_to,
            auth_token,
            refused,
        } = work
        else {
            return Ok(true);
        };
        let now = Utc::now();
        let image = db::images::get(&app.db, *image_id)
            .await
            .map_err(internal)?;
        let runnable = match (&task, &image) {
            (Some(t), Some(i)) if !t.status.is_final() && importing(i, task_id) => {
                import_request(t).map(|r| (t, i, r))
            }
            _ => None,
        };
        let Some((task, image, (m, u, must))) = runnable else {
            app.glance_downloads.remove(task_id);
            self.drop_import_job(task.as_ref(), job, now).await?;
            return Ok(false);
        };
        *method = m.as_str().to_owned();
        *uri = u;
        // Glance runs the plugins on every import but copy-image; a `compressed` container is
        // kept as it is (glance-download: the remote image's container, which the data plane
        // reads from its metadata)
        *decompress = m != domain::import::Method::CopyImage
            && app.config.import_plugin("image_decompression")
            && (m == domain::import::Method::GlanceDownload
                || image.container_format.as_deref() != Some("compressed"));
        if m != domain::import::Method::CopyImage && app.config.import_plugin("image_conversion") {
            *convert_from = image.disk_format.clone();
            *convert_to = Some(app.config.image_conversion.output_format.clone());
        }
        if m == domain::import::Method::CopyImage {
            // the source: the image's data where it is now
            *uri = Some(image.location_list(&app.stores));
            *size = image.size.unwrap_or(0);
        }
        if m == domain::import::Method::GlanceDownload {
            // the other region's image, with the caller's token (in memory only)
            match app.glance_downloads.source(task_id) {
                Ok((token, url)) => {
                    *uri = Some(url);
                    *auth_token = Some(token);
                }
                Err(why) => *refused = Some(why),
            }
        }
        *all_stores_must_succeed = must;
        *stores = stores_left(task, image, app).join(",");
        Ok(true)
    }

    /// An import job with nothing left to run (its task ended or lost the image's lock) is
    /// done; a task not ended yet fails.
    async fn drop_import_job(
        &self,
        task: Option<&Task>,
        job: u64,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), Reason> {
        let app = &self.app;
        if let Some(t) = task.filter(|t| !t.status.is_final()) {
            let ttl = crate::domain::task::ttl(app.config.task.task_time_to_live);
            let msg = "The image is no longer being imported by this task";
            db::tasks::finish(&app.db, &t.id, TaskStatus::Failure, None, msg, ttl, now)
                .await
                .map_err(internal)?;
        }
        tracing::info!(job_id = job, "import job with nothing left to run dropped");
        db::jobs::done(&app.db, job, now).await.map_err(internal)?;
        Ok(())
    }

    /// Ends task `task_id` of image `id` as `outcome` says: success with Glance's result
    /// `{"image_id"}`, or failure with the message.
    async fn end_task(
        &self,
        task_id: &str,
        id: ImageId,
        outcome: &Result<(), String>,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), Reason> {
        let ttl = crate::domain::task::ttl(self.app.config.task.task_time_to_live);
        let (status, result, message) = match outcome {
            Ok(()) => (
                TaskStatus::Success,
                Some(serde_json::json!({"image_id": id.to_string()})),
                "",
            ),
            Err(m) => (TaskStatus::Failure, None, m.as_str()),
        };
        db::tasks::finish(
            &self.app.db,
            task_id,
            status,
            result.as_ref(),
            message,
            ttl,
            now,
        )
        .await
        .map_err(internal)?;
        Ok(())
    }

    /// A `location_import` task's job becomes [`Work::LocationImport`]: the location, its
    /// store, and the hash to compute (`do_secure_hash`). `false` (the job done) when the task
    /// or the image's lock is gone.
    async fn fill_location(&self, work: &mut Work, task: &Task, job: u64) -> Result<bool, Reason> {
        let app = &self.app;
        let now = Utc::now();
        let image = match task.image_id {
            Some(id) => db::images::get(&app.db, id).await.map_err(internal)?,
            None => None,
        };
        let live = !task.status.is_final()
            && image
                .as_ref()
                .is_some_and(|i| importing(i, &task.id) && i.status == ImageStatus::Queued);
        let field = |k: &str| {
            task.input
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let (Some(image), Some(url), Some(store), true) =
            (image, field("loc_url"), field("store"), live)
        else {
            self.drop_import_job(Some(task), job, now).await?;
            return Ok(false);
        };
        if task.status == TaskStatus::Pending {
            db::tasks::start(&app.db, &task.id, now)
                .await
                .map_err(internal)?;
        }
        *work = Work::LocationImport {
            task_id: task.id.clone(),
            image_id: image.id,
            store,
            url,
            hash_algo: field("hash_algo").filter(|_| app.config.do_secure_hash),
            retries: app.config.http_retries,
            filtered: task.input.get("service").and_then(|v| v.as_bool()) != Some(true),
        };
        Ok(true)
    }

    /// The end of a [`Work::LocationImport`]: the task ends, and with the location good
    /// (and its hash the `validation_data`'s), the image has it and is `active`.
    async fn location_checked(
        &self,
        job: u64,
        task_id: &str,
        id: ImageId,
        found: Checked,
    ) -> Result<Response, Reason> {
        let app = &self.app;
        let now = Utc::now();
        if let Some(task) = db::tasks::get(&app.db, task_id).await.map_err(internal)?
            && !task.status.is_final()
        {
            let outcome = self.settle_location(&task, id, &found).await?;
            self.end_task(task_id, id, &outcome, now).await?;
            match &outcome {
                Ok(()) => tracing::info!(image_id = %id, task_id, "location added"),
                Err(m) => tracing::warn!(image_id = %id, task_id, error = %m, "location not added"),
            }
        }
        db::jobs::done(&app.db, job, now).await.map_err(internal)?;
        Ok(Response::Ack)
    }

    async fn settle_location(
        &self,
        task: &Task,
        id: ImageId,
        found: &Checked,
    ) -> Result<Result<(), String>, Reason> {
        let app = &self.app;
        let field = |k: &str| task.input.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let validation = task.input.get("validation_data");
        let given = |k: &str| validation.and_then(|v| v.get(k)).and_then(|v| v.as_str());
        for _ in 0..crate::api::images::WRITE_ATTEMPTS {
            let Some(image) = db::images::get(&app.db, id).await.map_err(internal)? else {
                return Ok(Err(format!("Image {id} was deleted")));
            };
            if !importing(&image, &task.id) {
                return Ok(Err(
                    "The image is no longer being imported by this task".into()
                ));
            }
            let now = Utc::now();
            let mut next = (*image).clone();
            next.properties.remove(domain::import::IMPORT_TASK);
            next.updated_at = now;
            let mut verdict = match &found.error {
                Some(e) => Err(e.clone()),
                None if image.status != ImageStatus::Queued => Err(format!(
                    "It's not allowed to add locations if image status is {}.",
                    image.status
                )),
                None => Ok(()),
            };
            if verdict.is_ok()
                && let (Some(want), Some(got)) = (given("os_hash_value"), &found.os_hash_value)
                && !want.eq_ignore_ascii_case(got)
            {
                verdict = Err(format!(
                    "os_hash_value: ({want}) not matched with actual os_hash_value: ({got})"
                ));
            }
            if verdict.is_ok() {
                next.size = Some(found.size);
                next.status = ImageStatus::Active;
                let algo = given("os_hash_algo").unwrap_or(field("hash_algo"));
                match (&found.checksum, &found.os_hash_value) {
                    (Some(c), Some(h)) => {
                        next.checksum = Some(c.clone());
                        next.os_hash_algo = Some(field("hash_algo").to_owned());
                        next.os_hash_value = Some(h.clone());
                    }
                    // not hashed (`do_secure_hash` off): the validation data's, as Glance
                    _ => {
                        next.checksum = None;
                        next.os_hash_algo = given("os_hash_value").map(|_| algo.to_owned());
                        next.os_hash_value = given("os_hash_value").map(str::to_owned);
                    }
                }
                if db::images::update_adding_location(
                    &app.db,
                    &next,
                    field("store"),
                    field("loc_url"),
                )
                .await
                .map_err(internal)?
                {
                    app.metrics.transition(image.status, ImageStatus::Active);
                    return Ok(Ok(()));
                }
            } else if db::images::update(&app.db, &next).await.map_err(internal)? {
                return Ok(verdict);
            }
        }
        Err(Reason::Internal)
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
                locations = image.location_list(&app.stores);
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
        let ids: Vec<ImageId> = self.leases.keys().copied().collect();
        for id in ids {
            let Some(revert) = self.leases.get(&id).and_then(|l| l.kind.revert()) else {
                // an import's store: the job is claimed again when its lease runs out
                self.end_lease(id).await;
                continue;
            };
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

impl LeaseKind {
    /// The move back to `queued` when the lease ends without a commit (`None`: an import's
    /// store, left to the import job).
    fn revert(&self) -> Option<Move> {
        match self {
            LeaseKind::Upload => Some(Move::revert_upload()),
            LeaseKind::Stage => Some(Move::revert_stage()),
            LeaseKind::Import { .. } => None,
        }
    }
}

/// What an import task was asked: the method, `web-download`'s URI, and
/// `all_stores_must_succeed` (from its input's `import_req`, as Glance records it).
fn import_request(task: &Task) -> Option<(domain::import::Method, Option<String>, bool)> {
    if task.kind == "import" {
        // Glance's legacy import task (`POST /v2/tasks`): a web-download of `import_from`
        let from = task.input.get("import_from")?.as_str()?.to_owned();
        return Some((domain::import::Method::WebDownload, Some(from), true));
    }
    let req = task.input.get("import_req")?;
    let method = req.get("method")?;
    let name = method.get("name")?.as_str()?;
    let uri = method
        .get("uri")
        .and_then(|u| u.as_str())
        .map(str::to_owned);
    let must = req
        .get("all_stores_must_succeed")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    Some((domain::import::Method::from_name(name)?, uri, must))
}

/// The stores an import task writes (its input's `backend`; without multi-store, the store).
fn task_stores(task: &Task, app: &App) -> Vec<String> {
    if !app.stores.multistore {
        return vec![app.stores.default.clone()];
    }
    match task.input.get("backend").and_then(|b| b.as_array()) {
        Some(l) => l
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        // a legacy import task names none: the default store
        None => vec![app.stores.default.clone()],
    }
}

/// The stores an import still has to write: the task's, less those done (Glance's
/// `os_glance_importing_to_stores`) and those already holding a copy (a commit whose
/// progress update a crash cut off).
fn stores_left(task: &Task, image: &Image, app: &App) -> Vec<String> {
    let all = task_stores(task, app);
    let holding: Vec<&str> = image.active_locations().map(|l| l.store.as_str()).collect();
    domain::import::remaining(image, &all, app.stores.multistore)
        .into_iter()
        .filter(|s| !holding.contains(&s.as_str()))
        .collect()
}

/// Task `task_id`, while it has not ended (else `ImportOver`).
async fn running_task(db: &db::Db, task_id: &str) -> Result<Task, Reason> {
    db::tasks::get(db, task_id)
        .await
        .map_err(internal)?
        .filter(|t| !t.status.is_final())
        .ok_or(Reason::ImportOver)
}

/// Image `id`, while task `task_id` imports it (else `ImportOver`).
async fn imported_image(
    db: &db::Db,
    id: ImageId,
    task_id: &str,
) -> Result<std::sync::Arc<Image>, Reason> {
    db::images::get(db, id)
        .await
        .map_err(internal)?
        .filter(|i| importing(i, task_id))
        .ok_or(Reason::ImportOver)
}

/// Whether `image` is still being imported by task `task_id` (it holds the lock).
fn importing(image: &Image, task_id: &str) -> bool {
    image.status != ImageStatus::Deleted
        && image
            .properties
            .get(domain::import::IMPORT_TASK)
            .map(String::as_str)
            == Some(task_id)
}

impl Connection {
    /// Commits a stage: the image, still `uploading`, records the size and this node as
    /// `os_glance_stage_host` (Glance's `stage`); the lease's held jobs are dropped.
    async fn stage_complete(
        &mut self,
        request_id: &str,
        id: ImageId,
        data: UploadedData,
    ) -> Result<Response, Reason> {
        let app = self.app.clone();
        for _ in 0..crate::api::images::WRITE_ATTEMPTS {
            let image = db::images::get(&app.db, id).await.map_err(internal)?;
            let image = match image {
                Some(i) if i.status == ImageStatus::Uploading => i,
                None => {
                    self.end_lease(id).await;
                    return Err(Reason::DeletedDuringUpload);
                }
                Some(i) if i.status == ImageStatus::Deleted => {
                    self.end_lease(id).await;
                    return Err(Reason::DeletedDuringUpload);
                }
                Some(i) => {
                    self.end_lease(id).await;
                    return Err(Reason::Transition {
                        from: i.status,
                        to: ImageStatus::Uploading,
                    });
                }
            };
            let mut next = (*image).clone();
            next.size = Some(data.size);
            next.properties.insert(
                domain::import::STAGE_HOST.to_owned(),
                app.config.self_reference_url(),
            );
            next.updated_at = Utc::now();
            match db::images::commit_stage(&app.db, &next, &data.location).await {
                Ok(true) => {
                    self.leases.remove(&id);
                    tracing::info!(image_id = %id, request_id, size = data.size, "image data staged");
                    return Ok(Response::UploadCommitted);
                }
                Ok(false) => continue,
                Err(db::Error::CleanupPending) => {
                    self.revert(request_id, id).await?;
                    return Err(Reason::CleanupPending);
                }
                Err(e) => {
                    self.end_lease(id).await;
                    return Err(internal(e));
                }
            }
        }
        self.revert(request_id, id).await?;
        Err(Reason::Internal)
    }

    /// An import job starts writing `store` (see [`Request::ImportBegin`]).
    async fn import_begin(
        &mut self,
        task_id: &str,
        id: ImageId,
        store: &str,
        disk_format: Option<&str>,
    ) -> Result<Response, Reason> {
        let app = self.app.clone();
        let task = running_task(&app.db, task_id).await?;
        let (method, _, must) = import_request(&task).ok_or(Reason::ImportOver)?;
        let image = imported_image(&app.db, id, task_id).await?;
        let config = app.stores.get(store).ok_or(Reason::UnknownStore)?;
        if config.read_only() {
            return Err(Reason::ReadOnlyStore);
        }
        // converted by the image_conversion plugin: the image is now of that format
        let image = match disk_format {
            Some(f) if image.disk_format.as_deref() != Some(f) => {
                let mut next = (*image).clone();
                next.disk_format = Some(f.to_owned());
                next.container_format = Some("bare".to_owned());
                next.updated_at = Utc::now();
                if !db::images::update(&app.db, &next).await.map_err(internal)? {
                    // written meanwhile: the job tries this store again
                    return Err(Reason::Internal);
                }
                tracing::info!(image_id = %id, task_id, disk_format = f, "image converted");
                std::sync::Arc::new(next)
            }
            _ => image,
        };
        if task.status == TaskStatus::Pending {
            db::tasks::start(&app.db, task_id, Utc::now())
                .await
                .map_err(internal)?;
        }
        // a lease left by an earlier attempt of this job on this connection ends first
        self.end_lease(id).await;
        self.leases.insert(
            id,
            Lease {
                store: store.to_owned(),
                leftovers: Vec::new(),
                kind: LeaseKind::Import {
                    task_id: task_id.to_owned(),
                    method,
                    all_stores_must_succeed: must,
                },
            },
        );
        tracing::info!(image_id = %id, task_id, store, "import writing a store");
        Ok(self.grant(&image, store.to_owned()))
    }

    /// An import's copy into `data.store` is stored: it becomes a location of the image, which
    /// becomes `active` when Glance's `set_active` says so; the store is taken off
    /// `os_glance_importing_to_stores`.
    async fn import_store_complete(
        &mut self,
        task_id: &str,
        method: domain::import::Method,
        must_succeed: bool,
        id: ImageId,
        data: UploadedData,
    ) -> Result<Response, Reason> {
        let app = self.app.clone();
        let multistore = app.stores.multistore;
        let task = running_task(&app.db, task_id).await?;
        let store = data.store.clone();
        let mut data = Some(data);
        for _ in 0..crate::api::images::WRITE_ATTEMPTS {
            let image = imported_image(&app.db, id, task_id).await?;
            if let Some(d) = data.take() {
                if method == domain::import::Method::CopyImage
                    && (image.checksum.as_deref() != Some(d.checksum.as_str())
                        || image.os_hash_value.as_deref() != Some(d.os_hash_value.as_str()))
                {
                    tracing::error!(image_id = %id, task_id, store = %store,
                        "copy-image wrote data whose hashes are not the image's; not recorded");
                    return Err(Reason::Protocol);
                }
                let after = stores_left(&task, &image, &app)
                    .into_iter()
                    .filter(|s| *s != store)
                    .count();
                let activate = image.status == ImageStatus::Importing
                    && domain::import::sets_active(method, must_succeed, after);
                let step = if activate {
                    Move::commit_import(d.clone())
                } else {
                    // another copy: the image stays where it is, with one more location
                    Move {
                        from: image.status,
                        to: image.status,
                        data: domain::DataChange::Record(d.clone()),
                    }
                };
                let now = Utc::now();
                match db::images::apply_move_if(&app.db, id, &step, Some(image.version), now).await
                {
                    Ok(true) => {
                        if step.from != step.to {
                            self.log_transition(task_id, id, step.from, step.to);
                        }
                        tracing::info!(image_id = %id, task_id, store = %store, activate, "import copy committed");
                    }
                    Ok(false) => {
                        data = Some(d);
                        continue;
                    }
                    Err(db::Error::CleanupPending) => return Err(Reason::CleanupPending),
                    Err(e) => return Err(internal(e)),
                }
                continue;
            }
            // the progress: no longer importing to this store
            let mut next = (*image).clone();
            domain::import::store_done(&mut next, &store, multistore);
            if next.properties == image.properties {
                return Ok(Response::UploadCommitted);
            }
            next.updated_at = Utc::now();
            if db::images::update(&app.db, &next).await.map_err(internal)? {
                return Ok(Response::UploadCommitted);
            }
        }
        Err(Reason::Internal)
    }

    /// Progress of a running import (the task's message), or `ImportOver` to stop it.
    async fn import_progress(
        &self,
        task_id: &str,
        id: ImageId,
        copied: u64,
    ) -> Result<Response, Reason> {
        let db = &self.app.db;
        let live = db::tasks::get(db, task_id)
            .await
            .map_err(internal)?
            .is_some_and(|t| !t.status.is_final());
        let image = db::images::get(db, id).await.map_err(internal)?;
        if !live || !image.is_some_and(|i| importing(&i, task_id)) {
            return Err(Reason::ImportOver);
        }
        let message = format!("Copied {} MiB", copied >> 20);
        db::tasks::progress(db, task_id, &message, Utc::now())
            .await
            .map_err(internal)?;
        Ok(Response::Ack)
    }

    /// An import job ended (see [`Request::ImportFinished`]): the task succeeds or fails, the
    /// image's lock and progress properties are settled, and on failure the image goes back
    /// to `queued` with what the import wrote retired. The job is done.
    async fn import_finished(
        &mut self,
        job: u64,
        task_id: &str,
        id: ImageId,
        error: Option<&str>,
        failed_stores: &str,
    ) -> Result<Response, Reason> {
        let app = self.app.clone();
        let now = Utc::now();
        if let Some(task) = db::tasks::get(&app.db, task_id).await.map_err(internal)?
            && !task.status.is_final()
        {
            let outcome = self.settle_import(&task, id, error, failed_stores).await?;
            self.end_task(task_id, id, &outcome, now).await?;
            match &outcome {
                Ok(()) => tracing::info!(image_id = %id, task_id, "import succeeded"),
                Err(m) => tracing::warn!(image_id = %id, task_id, error = %m, "import failed"),
            }
        }
        self.end_lease(id).await;
        app.glance_downloads.remove(task_id);
        db::jobs::done(&app.db, job, now).await.map_err(internal)?;
        Ok(Response::Ack)
    }

    /// `glance-download`'s remote image (see [`Request::ImportMetadata`]): checked, and its
    /// formats and chosen properties taken by the image (how to undo that is kept for a
    /// failure).
    async fn import_metadata(
        &self,
        task_id: &str,
        id: ImageId,
        remote: &str,
    ) -> Result<Response, Reason> {
        let app = &self.app;
        let task = running_task(&app.db, task_id).await?;
        let remote_id = domain::import::remote(&task.input["import_req"]["method"])
            .map(|r| r.image_id)
            .unwrap_or_default();
        let remote: serde_json::Value = match serde_json::from_str(remote) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Response::ImportRefused(format!(
                    "The metadata of remote image {remote_id} is not JSON: {e}"
                )));
            }
        };
        if task.status == TaskStatus::Pending {
            db::tasks::start(&app.db, task_id, Utc::now())
                .await
                .map_err(internal)?;
        }
        let prefixes = &app.config.glance_download_properties.extra_properties;
        for _ in 0..crate::api::images::WRITE_ATTEMPTS {
            let image = imported_image(&app.db, id, task_id).await?;
            let mut next = (*image).clone();
            let (size, revert) = match domain::import::take_remote(
                &mut next,
                &remote,
                prefixes,
                &app.config.image,
                &remote_id,
            ) {
                Ok(taken) => taken,
                Err(why) => return Ok(Response::ImportRefused(why)),
            };
            next.updated_at = Utc::now();
            if db::images::update(&app.db, &next).await.map_err(internal)? {
                app.glance_downloads.taken(task_id, revert);
                let disk_format = next.disk_format.clone().unwrap_or_default();
                tracing::info!(image_id = %id, task_id, %remote_id, size, %disk_format,
                    "glance-download took the remote image's metadata");
                return Ok(Response::ImportSource { size, disk_format });
            }
        }
        Err(Reason::Internal)
    }

    /// The image as the import ends: `Ok` if the import succeeded (the image active, or a
    /// copy made), else why it failed, after the lock is released, the stores not written
    /// listed as failed and, where the import must fail, its copies retired and the image put
    /// back to `queued`.
    async fn settle_import(
        &mut self,
        task: &Task,
        id: ImageId,
        error: Option<&str>,
        failed_stores: &str,
    ) -> Result<Result<(), String>, Reason> {
        let app = self.app.clone();
        let multistore = app.stores.multistore;
        let failed: Vec<String> = failed_stores
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let (method, _, must) =
            import_request(task).unwrap_or((domain::import::Method::GlanceDirect, None, true));
        for _ in 0..crate::api::images::WRITE_ATTEMPTS {
            let Some(image) = db::images::get(&app.db, id).await.map_err(internal)? else {
                return Ok(Err("Image not found".into()));
            };
            if image.status == ImageStatus::Deleted {
                return Ok(Err("Image was deleted during import".into()));
            }
            if !importing(&image, &task.id) {
                return Ok(Err("Another import took over the image".into()));
            }
            let mut next = (*image).clone();
            let left = stores_left(task, &image, &app);
            let failure = match error {
                Some(e) => Some(e.to_owned()),
                None if image.status == ImageStatus::Importing => {
                    Some("The import wrote no store".to_owned())
                }
                None => None,
            };
            let mut unfinished = left.clone();
            unfinished.extend(failed.iter().cloned());
            domain::import::finish(&mut next, &task.id, &unfinished, multistore);
            let from = next.status;
            if failure.is_some() {
                // glance-download: the remote metadata taken off again (Glance's revert)
                if let Some(revert) = app.glance_downloads.revert(&task.id) {
                    domain::import::undo_remote(&mut next, &revert);
                }
                let ours = task_stores(task, &app);
                if method != domain::import::Method::CopyImage || must {
                    for l in &mut next.locations {
                        if l.status == domain::LocationStatus::Active && ours.contains(&l.store) {
                            l.status = domain::LocationStatus::PendingDelete;
                        }
                    }
                }
                if next.status == ImageStatus::Importing {
                    next.transition(ImageStatus::Queued).map_err(|e| {
                        tracing::error!(error = %e, "cannot revert a failed import");
                        Reason::Internal
                    })?;
                }
            }
            next.updated_at = Utc::now();
            if db::images::update(&app.db, &next).await.map_err(internal)? {
                if from != next.status {
                    self.log_transition(&task.id, id, from, next.status);
                }
                return Ok(failure.map_or(Ok(()), Err));
            }
        }
        Err(Reason::Internal)
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
