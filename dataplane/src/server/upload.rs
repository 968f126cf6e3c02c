//! `PUT /v2/images/{id}/file`: stream the body into the store while hashing it. [`handle`]
//! runs five steps, each a function:
//!
//! 1. `check`: `Content-Type: application/octet-stream` (else 415), a valid
//!    `x-openstack-image-size` that agrees with `Content-Length` (else 400), and with
//!    multi-store an `X-Image-Meta-Store` naming a configured store (else 400) that takes
//!    uploads (else 410).
//! 2. `authorize`: `AuthorizeUpload` over the channel; the control plane checks policy and
//!    status and moves the image `queued → saving`; the channel connection now holds the
//!    upload lease. A refusal carries its [`Reason`](shared::error::Reason), which gives the
//!    status and the message.
//! 3. `receive` (the transfer): answer `100 Continue` if asked, then read the body into pooled,
//!    aligned buffers; each filled buffer goes to the md5 and `os_hash_algo` threads and to the
//!    store the grant names (`X-Image-Meta-Store`, else the default) while the next one is read
//!    (see `hash::pipeline` and [`crate::store::Upload`]): a temp file written with `O_DIRECT`
//!    by a task of its own, or an S3/Swift object (one streamed PUT, or parts/segments with a
//!    bounded number in flight). Before the store can hold anything of the upload, each
//!    [`Leftover`](crate::store::Leftover) the driver names (the object at the location, a
//!    multipart upload, a segment prefix) is recorded on the lease (`UploadLeftover`): if the
//!    upload never commits, whatever it left is removed by a job, even after a crash of
//!    either plane. When the grant says so (a `bare` image), the secure hash's thread also feeds
//!    each buffer to a format [`inspect::Inspector`]; its verdict is judged against the
//!    image's `disk_format` (`judge`: hostile or mismatched content → 400, nothing kept). At
//!    the end the size is checked and the store commits the data (fsync + rename, multipart
//!    complete, SLO manifest); any failure aborts what was written.
//! 4. `commit`: `UploadComplete` on the lease; the control plane moves the image to `active`
//!    (or refuses: then the data just written is its recorded leftover, removed by a job, not
//!    here, since another upload of the image may own the location by the time this one
//!    could delete it). A failure in step 3 (client gone, bad size, store error) has aborted
//!    the store's upload (temp file removed, multipart upload aborted, segments deleted);
//!    `UploadAborted` then puts the image back to `queued`.
//! 5. `answer`: 204.

use super::respond::{Refusal, credentials, no_content, refuse};
use super::tls::ClientStream;
use super::worker::Worker;
use crate::control_link;
use crate::hash::Digests;
use crate::hash::pipeline::PipelinedHasher;
use crate::http::{BodyError, BodyState, Conn, Framing, RequestHead};
use crate::metrics::{Route, Side};
use shared::channel::{Request, Response};
use shared::error::ErrorCode;
use shared::image::{HashAlgo, ImageId};
use std::time::Instant;

/// Buffers one upload may have in flight (being read, hashed, written): bounds its memory
/// to `UPLOAD_DEPTH × transfer_buffer_bytes`.
const UPLOAD_DEPTH: usize = 8;

/// Serves one upload: check → authorize → transfer → commit → answer. Returns whether the
/// connection may be reused.
pub async fn handle(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    id: &str,
    rid: &str,
    w: &Worker,
    stage: bool,
) -> bool {
    let checked = match check(head, id, w.settings.features, &w.stores, stage) {
        Ok(c) => c,
        Err(refusal) => return refuse(conn, Route::Upload, refusal, rid, w).await,
    };
    let mut grant = match authorize(head, &checked, rid, w).await {
        Ok(g) => g,
        Err(refusal) => return refuse(conn, Route::Upload, refusal, rid, w).await,
    };
    let started = Instant::now();
    let moving = w.metrics.in_flight(Route::Upload);
    let stored = receive(conn, head, &checked, &mut grant, w).await;
    let committed = commit(grant, stored, &checked, rid, w).await;
    drop(moving);
    match committed {
        Ok(size) => answer(conn, head, &checked, size, started, rid, w).await,
        Err(Ended::ClientGone) => {
            super::respond::answered(conn, w, Route::Upload, 400);
            false
        }
        Err(Ended::Refused(refusal)) => refuse(conn, Route::Upload, refusal, rid, w).await,
    }
}

/// An upload request that passed the checks made before asking the control plane.
#[derive(Debug)]
struct Checked {
    image_id: ImageId,
    /// The size the client declared (`x-openstack-image-size`, else `Content-Length`).
    expected: Option<u64>,
    /// Whether a refusal before the body is read leaves the connection usable (no body).
    keep_if_refused: bool,
    /// `X-Image-Meta-Store` (multi-store only), checked against the configured stores.
    store: Option<String>,
    /// `PUT …/stage`: into the staging store.
    stage: bool,
}

/// Step 1: the image id, `Content-Type: application/octet-stream` (415), a valid
/// `x-openstack-image-size` that agrees with `Content-Length` (400), and with multi-store an
/// `X-Image-Meta-Store` naming a configured (400) writable (410) store.
fn check(
    head: &RequestHead,
    id: &str,
    features: shared::route::Features,
    stores: &crate::store::Stores,
    stage: bool,
) -> Result<Checked, Refusal> {
    // An error answered before the body is read leaves the body in the socket: close then.
    let keep = head.framing == Framing::Empty;
    let image_id = id
        .parse::<ImageId>()
        .map_err(|_| Refusal::new(404, shared::error::no_such_image(&id), keep))?;
    let media = head.header("content-type").map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if media.as_deref() != Some("application/octet-stream") {
        let msg = "Image data must be sent as application/octet-stream.";
        return Err(Refusal::new(415, msg, keep));
    }
    let declared = match head.header("x-openstack-image-size") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            let msg = "x-openstack-image-size must be a non-negative integer.";
            Refusal::new(400, msg, keep)
        })?),
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
            format!("x-openstack-image-size ({d}) does not match the request body size ({l}).");
        return Err(Refusal::new(400, msg, keep));
    }
    let store = match head.header("x-image-meta-store").map(str::trim) {
        // a stage goes to the staging store whatever the header says (the import picks stores)
        _ if stage => None,
        Some(id) if features.multistore => match stores.config(id) {
            None => return Err(Refusal::new(400, shared::error::unknown_store(&id), keep)),
            Some(c) if c.read_only() => {
                return Err(Refusal::new(410, shared::error::STORE_ADD_DISABLED, keep));
            }
            Some(_) => Some(id.to_owned()),
        },
        // Glance ignores the header without multi-store
        _ => None,
    };
    Ok(Checked {
        image_id,
        expected: declared.or(length),
        keep_if_refused: keep,
        store,
        stage,
    })
}

/// What the control plane granted: the lease (held on this channel connection) and the
/// upload's terms.
#[derive(Debug)]
pub(super) struct Grant {
    pub(super) lease: control_link::Conn,
    pub(super) hash_algo: HashAlgo,
    pub(super) max_size: u64,
    /// The store to write to.
    pub(super) store: String,
    /// The `disk_format` the content must be (`None`: not inspected).
    pub(super) inspect_as: Option<String>,
    /// The client request's id (for the channel requests made under the lease).
    pub(super) request_id: String,
}

/// Step 2: `AuthorizeUpload`. The control plane checks policy and status and moves the image
/// `queued → saving`; the channel connection now holds the upload lease.
async fn authorize(
    head: &RequestHead,
    c: &Checked,
    rid: &str,
    w: &Worker,
) -> Result<Grant, Refusal> {
    let ask = Request::AuthorizeUpload {
        request_id: rid,
        image_id: c.image_id,
        credentials: credentials(head),
        declared_size: c.expected,
        store: c.store.as_deref(),
        stage: c.stage,
    };
    match w.link.call_keep(&ask).await {
        Ok((
            lease,
            Response::UploadGranted {
                hash_algo,
                max_size_bytes,
                store,
                inspect_as,
            },
        )) => Ok(Grant {
            lease,
            hash_algo,
            max_size: max_size_bytes,
            store,
            inspect_as,
            request_id: rid.to_owned(),
        }),
        Ok((chan, Response::Denied(reason))) => {
            w.link.give_back(chan);
            Err(Refusal::denied(reason, &c.image_id, c.keep_if_refused))
        }
        other => Err(Refusal::from_channel(
            "AuthorizeUpload",
            other.map(|(_, answer)| answer),
            c.keep_if_refused,
        )),
    }
}

/// How an upload ended when it did not commit.
#[derive(Debug)]
enum Ended {
    /// The client is gone: nothing to answer.
    ClientGone,
    /// Answer this.
    Refused(Refusal),
}

/// Step 4: report the outcome on the lease. Stored data → `UploadComplete` (the control plane
/// moves the image to `active`); a failure → `UploadAborted` (back to `queued`; the temp file
/// is already gone). Returns the size committed.
async fn commit(
    grant: Grant,
    stored: Result<Stored, Failure>,
    c: &Checked,
    rid: &str,
    w: &Worker,
) -> Result<u64, Ended> {
    let image_id = c.image_id;
    let stored = match stored {
        Ok(x) => x,
        Err(failure) => return Err(abort(grant.lease, failure, image_id, rid, w).await),
    };
    let block_hashes = shared::blocks::to_hex(&stored.blocks.hashes);
    let complete = stored.complete(rid, image_id, &grant.store, &block_hashes);
    let mut lease = grant.lease;
    match lease.call(&complete).await {
        Ok(Response::UploadCommitted) => {
            w.link.give_back(lease);
            Ok(stored.digests.size)
        }
        Ok(Response::Denied(reason)) => {
            w.link.give_back(lease);
            w.metrics.upload_failed(Side::Control);
            tracing::info!(%image_id, request_id = rid, ?reason, "upload refused at commit; its data is left to its abort_upload job");
            Err(Ended::Refused(Refusal::denied(reason, &image_id, false)))
        }
        Ok(other) => Err(Ended::Refused(Refusal::unexpected(
            "UploadComplete",
            &other,
        ))),
        Err(e) => {
            w.metrics.upload_failed(Side::Control);
            // The control plane may or may not have committed: if not, the lease ended with
            // the connection and the data is its recorded leftover's job.
            tracing::warn!(%image_id, error = %e, "channel lost while committing an upload");
            Err(Ended::Refused(Refusal::unavailable(
                "UploadComplete",
                &e,
                false,
            )))
        }
    }
}

/// Reports a failed upload (`UploadAborted`): the image goes back to `queued`.
async fn abort(
    mut lease: control_link::Conn,
    failure: Failure,
    image_id: ImageId,
    rid: &str,
    w: &Worker,
) -> Ended {
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
        Ended::ClientGone
    } else {
        Ended::Refused(Refusal::new(
            failure.code.http_status(),
            failure.message,
            false,
        ))
    }
}

/// Step 5: 204.
async fn answer(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    c: &Checked,
    size: u64,
    started: Instant,
    rid: &str,
    w: &Worker,
) -> bool {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        image_id = %c.image_id, request_id = rid, size,
        mb_per_s = format!("{:.1}", size as f64 / 1e6 / secs.max(1e-9)),
        "upload stored"
    );
    no_content(conn, Route::Upload, rid, head.keep_alive, w).await
}

#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: ErrorCode,
    pub(super) message: String,
    client_gone: bool,
    pub(super) side: Side,
}

impl Failure {
    /// A failure the client caused.
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            client_gone: false,
            side: Side::Client,
        }
    }

    /// The client is gone (closed, timed out): nothing is answered.
    fn client_gone(message: impl Into<String>) -> Self {
        Failure {
            client_gone: true,
            ..Failure::new(ErrorCode::BadRequest, message)
        }
    }

    fn on(mut self, side: Side) -> Self {
        self.side = side;
        self
    }
}

/// Step 3: answer `100 Continue` if asked, then read the body into pooled, aligned buffers;
/// each goes to the hashing threads and to the store (a write task of its own, or a part of a
/// multipart upload) while the next one is read. At the end: check the size, finish the
/// hashes, and commit the data into the store (durable before the control plane hears of
/// it). Any failure aborts the store's upload: nothing partial is left.
async fn receive(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    c: &Checked,
    grant: &mut Grant,
    w: &Worker,
) -> Result<Stored, Failure> {
    let idle = w.settings.idle_timeout;
    if head.expects_continue() {
        let (res, _) = conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(), idle)
            .await;
        res.map_err(|_| Failure::client_gone("client went away"))?;
    }
    let store = match w.stores.get(&grant.store).await {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(store_failed(e)),
        None => {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                shared::error::unknown_store(&grant.store),
            ));
        }
    };
    let mut upload = store
        .create_upload(&c.image_id, c.expected)
        .await
        .map_err(store_failed)?;
    if let Err(f) = record_leftovers(&mut upload, grant, c.image_id).await {
        upload.abort().await;
        return Err(f);
    }
    let mut hasher = PipelinedHasher::start(
        grant.hash_algo,
        w.buffers.clone(),
        UPLOAD_DEPTH,
        grant.inspect_as.is_some(),
        w.settings.block_size,
    );
    let moved = std::cell::Cell::new(0);
    let transferred = transfer(conn, head, c, grant, &mut upload, &mut hasher, &moved, w).await;
    w.metrics.transfer_size(Route::Upload, moved.get());
    match transferred {
        Ok(()) => {}
        Err(f) => {
            upload.abort().await;
            return Err(f);
        }
    }
    let crate::hash::pipeline::Finished {
        digests,
        verdict,
        blocks,
    } = match hasher.finish().await {
        Ok(d) => d,
        Err(e) => {
            upload.abort().await;
            return Err(Failure::new(ErrorCode::Internal, e.to_string()).on(Side::Internal));
        }
    };
    let virtual_size = match (&grant.inspect_as, verdict) {
        (Some(disk_format), Some(verdict)) => match judge(verdict, disk_format, &c.image_id, w) {
            Ok(v) => v,
            Err(f) => {
                upload.abort().await;
                return Err(f);
            }
        },
        _ => None,
    };
    // a stage: the record of an earlier stage goes before the new data lands, this one's
    // after (its import then takes the digests from it, super::staged)
    let staging = w.stores.staging().filter(|_| c.stage);
    if let Some(staging) = &staging
        && let Err(e) = super::staged::forget(staging, &c.image_id)
    {
        upload.abort().await;
        return Err(store_failed(crate::store::Error::Io(e)));
    }
    let location = upload.commit(digests.size).await.map_err(store_failed)?;
    if let Some(staging) = &staging {
        let inspected_as = grant.inspect_as.as_deref();
        let record = super::staged::Staged::new(&digests, &blocks, inspected_as, virtual_size);
        if let Err(e) = super::staged::save(staging, &c.image_id, &record) {
            tracing::warn!(image_id = %c.image_id, error = %e, "cannot record the stage's hashes; its import hashes the data again");
        }
    }
    Ok(Stored {
        location,
        digests,
        virtual_size,
        blocks,
    })
}

/// What an upload (or an import's copy) stored, for the commit.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) location: String,
    pub(super) digests: Digests,
    pub(super) virtual_size: Option<u64>,
    pub(super) blocks: crate::hash::blocks::Blocks,
}

impl Stored {
    /// The `UploadComplete` reporting it (`block_hashes`: the blocks' hashes in hex).
    pub(super) fn complete<'a>(
        &'a self,
        request_id: &'a str,
        image_id: ImageId,
        store: &'a str,
        block_hashes: &'a str,
    ) -> Request<&'a str> {
        Request::UploadComplete {
            request_id,
            image_id,
            size: self.digests.size,
            checksum: self.digests.md5_hex.as_str(),
            os_hash_algo: self.digests.algo,
            os_hash_value: self.digests.secure_hex.as_str(),
            location: self.location.as_str(),
            store,
            virtual_size: self.virtual_size,
            block_size: self.blocks.block_size,
            block_hashes,
        }
    }
}

/// Glance's decision on an inspected upload (`glance/location.py` `set_data`): the content
/// against the claimed `disk_format`, hostile content refused (400, the image back to
/// `queued`, nothing kept); returns the `virtual_size` to record. Counted by format and by
/// refusal reason.
pub(super) fn judge(
    mut verdict: inspect::Verdict,
    disk_format: &str,
    image_id: &ImageId,
    w: &Worker,
) -> Result<Option<u64>, Failure> {
    let s = &w.settings;
    w.metrics.inspected(verdict.format);
    // safety checks the operator made non-fatal for GPT/MBR disks only log
    if let Some(r) = &verdict.refusal
        && matches!(verdict.format, inspect::Format::Gpt | inspect::Format::Mbr)
        && r.check_name()
            .is_some_and(|n| s.gpt_safety_checks_nonfatal.iter().any(|m| m == n))
    {
        tracing::warn!(%image_id, reason = r.reason(), "non-fatal GPT safety check failed: {r}");
        verdict.refusal = None;
    }
    inspect::check(&verdict, disk_format, s.require_image_format_match).map_err(|r| {
        w.metrics.upload_refused(&r);
        tracing::warn!(%image_id, disk_format, reason = r.reason(), "upload refused by inspection: {r}");
        let message = if r.is_safety() {
            format!("Image failed safety checks: {r}")
        } else {
            r.to_string()
        };
        Failure::new(ErrorCode::BadRequest, message)
    })
}

/// Records on the lease (`UploadLeftover`) what the upload has named since the last call,
/// then lets it go on with what waited for the record.
pub(super) async fn record_leftovers(
    upload: &mut crate::store::Upload,
    grant: &mut Grant,
    image_id: ImageId,
) -> Result<(), Failure> {
    let mut recorded = false;
    while let Some(l) = upload.take_leftover() {
        recorded = true;
        let ask = Request::UploadLeftover {
            request_id: grant.request_id.as_str(),
            image_id,
            url: l.url.as_str(),
            upload: l.upload.as_deref(),
        };
        match grant.lease.call(&ask).await {
            Ok(Response::Ack) => {}
            other => {
                let refusal = Refusal::from_channel("UploadLeftover", other, false);
                return Err(Failure {
                    code: ErrorCode::ServiceUnavailable,
                    message: refusal.message.into_owned(),
                    client_gone: false,
                    side: Side::Control,
                });
            }
        }
    }
    if recorded {
        upload.resume().await.map_err(store_failed)?;
    }
    Ok(())
}

/// The body into the hasher and the store, with the size checks; every body byte read is
/// added to `moved` (and counted in the metrics) as it arrives, a transfer cut short included.
#[allow(clippy::too_many_arguments)]
async fn transfer(
    conn: &mut Conn<ClientStream>,
    head: &RequestHead,
    c: &Checked,
    grant: &mut Grant,
    upload: &mut crate::store::Upload,
    hasher: &mut PipelinedHasher,
    moved: &std::cell::Cell<u64>,
    w: &Worker,
) -> Result<(), Failure> {
    let idle = w.settings.idle_timeout;
    let direct = upload.direct();
    let mut state = BodyState::new(head.framing);
    let limit = c.expected.unwrap_or(grant.max_size).min(grant.max_size);
    let slot = w.stores.metric_slot(&grant.store);
    let count = |n: u64| {
        moved.set(moved.get() + n);
        w.metrics.bytes_in(slot, n);
    };
    while !state.is_done() {
        let buf = fill(conn, &mut state, hasher, idle, &count).await?;
        if buf.is_empty() {
            hasher.give_back(Some(buf));
            continue;
        }
        let offset = hasher.size();
        if offset + buf.len() as u64 > limit {
            hasher.give_back(Some(buf));
            return Err(if c.expected.is_some_and(|e| e < grant.max_size) {
                Failure::new(
                    ErrorCode::BadRequest,
                    "The request body is larger than x-openstack-image-size.",
                )
            } else {
                Failure::new(ErrorCode::PayloadTooLarge, shared::error::TOO_LARGE)
            });
        }
        // Only the last buffer can be partial; a direct write gets it zero-padded.
        let len = buf.len();
        let pad = direct && !len.is_multiple_of(crate::io::ALIGN);
        let chunk = hasher.submit(buf, pad);
        upload.push(chunk, len).await.map_err(store_failed)?;
        record_leftovers(upload, grant, c.image_id).await?;
    }
    if let Some(e) = c.expected
        && hasher.size() != e
    {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            format!(
                "Received {} bytes but x-openstack-image-size said {e}.",
                hasher.size()
            ),
        ));
    }
    Ok(())
}

/// Fills one pooled buffer from the body: whole (a direct write needs whole blocks), or up to
/// the body's end.
/// `count` is told the bytes of each buffer, the one an early end (the client gone, the
/// framing broken) cuts short included.
async fn fill(
    conn: &mut Conn<ClientStream>,
    state: &mut BodyState,
    hasher: &mut PipelinedHasher,
    idle: std::time::Duration,
    count: &dyn Fn(u64),
) -> Result<crate::io::AlignedBuf, Failure> {
    let mut buf = hasher.buffer().await;
    while buf.len() < buf.capacity() && !state.is_done() {
        match conn.read_body(state, buf, idle).await {
            (Ok(()), Some(b)) => buf = b,
            (res, b) => {
                count(b.as_ref().map_or(0, |b| b.len() as u64));
                hasher.give_back(b);
                return Err(match res.err().unwrap_or(BodyError::Eof) {
                    BodyError::Chunked(m) => {
                        Failure::new(ErrorCode::BadRequest, format!("Invalid chunked body: {m}"))
                    }
                    other => Failure::client_gone(other.to_string()),
                });
            }
        }
    }
    count(buf.len() as u64);
    Ok(buf)
}

/// A store failure, logged.
pub(super) fn store_failed(e: crate::store::Error) -> Failure {
    tracing::warn!(error = %e, "store write failed");
    Failure::new(e.code(), format!("Error storing image data: {e}")).on(Side::Store)
}
