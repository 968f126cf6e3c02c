//! What the planes say to each other. Data plane → control plane is a [`Request`]; the control
//! plane answers each with exactly one [`Response`].
//!
//! Each message is generic over its string type `S` (default `String`). Both instantiations
//! encode to the same bytes, so a side can send `Request<&str>` built from borrowed data and
//! decode `Response<&str>` pointing into its receive buffer ([`super::frame::decode_borrowed`]):
//! the data plane's download path exchanges its messages without allocating. The control plane
//! uses the owned forms.

use crate::error::{ErrorCode, Reason};
use crate::image::{HashAlgo, ImageId};
use serde::{Deserialize, Serialize};

/// The caller's identity as the client presented it. The data plane copies these headers
/// verbatim; only the control plane interprets them (token validation, noauth headers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials<S = String> {
    /// `X-Auth-Token`.
    pub auth_token: Option<S>,
    /// `X-Service-Token`.
    pub service_token: Option<S>,
    /// `X-Project-Id` (or the legacy `X-Tenant-Id`), honoured in noauth mode.
    pub project_id: Option<S>,
    /// `X-User-Id`, honoured in noauth mode.
    pub user_id: Option<S>,
    /// `X-Roles` (comma list), honoured in noauth mode.
    pub roles: Option<S>,
}

impl Credentials {
    /// The header names (lower case) whose values make up [`Credentials`].
    pub const HEADERS: [&'static str; 6] = [
        "x-auth-token",
        "x-service-token",
        "x-project-id",
        "x-tenant-id",
        "x-user-id",
        "x-roles",
    ];
}

impl<'a, S: From<&'a str>> Credentials<S> {
    /// Fills the matching field from one request header; other headers are ignored.
    pub fn absorb_header(&mut self, name: &str, value: &'a str) {
        let v = || Some(S::from(value));
        if name.eq_ignore_ascii_case("x-auth-token") {
            self.auth_token = v();
        } else if name.eq_ignore_ascii_case("x-service-token") {
            self.service_token = v();
        } else if name.eq_ignore_ascii_case("x-project-id")
            || (name.eq_ignore_ascii_case("x-tenant-id") && self.project_id.is_none())
        {
            self.project_id = v();
        } else if name.eq_ignore_ascii_case("x-user-id") {
            self.user_id = v();
        } else if name.eq_ignore_ascii_case("x-roles") {
            self.roles = v();
        }
    }
}

/// Data plane → control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request<S = String> {
    /// First frame on every connection.
    Hello {
        /// Oldest protocol version the data plane speaks.
        min_version: u16,
        /// Newest protocol version the data plane speaks.
        max_version: u16,
        /// Process id of the data plane (for logs).
        pid: u32,
    },
    /// May this caller upload data into this image? On success the image is `saving` and
    /// the connection holds the upload lease until `UploadComplete`/`UploadAborted`.
    AuthorizeUpload {
        /// `x-openstack-request-id` of the client request (`req-…`).
        request_id: S,
        /// Target image.
        image_id: ImageId,
        /// Caller identity.
        credentials: Credentials<S>,
        /// `x-openstack-image-size` or `Content-Length`, when the client declared one.
        declared_size: Option<u64>,
        /// `X-Image-Meta-Store`: the store the client asked for (multi-store only).
        store: Option<S>,
        /// `PUT …/stage` rather than `PUT …/file`: the data goes to the staging store, the
        /// image `queued → uploading` (policy `modify_image`), and the commit records only its
        /// size and this node as `os_glance_stage_host`; the image stays `uploading` for the
        /// import.
        stage: bool,
    },
    /// The data is durably stored at `location`; commit `active`.
    UploadComplete {
        /// `x-openstack-request-id` of the client request.
        request_id: S,
        /// Target image.
        image_id: ImageId,
        /// Bytes stored.
        size: u64,
        /// md5 hex digest (Glance's `checksum`).
        checksum: S,
        /// Algorithm of `os_hash_value`.
        os_hash_algo: HashAlgo,
        /// Hex digest.
        os_hash_value: S,
        /// Store URL of the data, e.g. `file:///var/lib/glint/images/<id>`; never carries
        /// credentials.
        location: S,
        /// Id of the store holding it (the one granted).
        store: S,
        /// The virtual size the content inspection found (`None`: not inspected, or a format
        /// without one).
        virtual_size: Option<u64>,
        /// The block size of `block_hashes`.
        block_size: u64,
        /// The xxh3-64 of each block of the data, 16 hex digits each, in order (for the block
        /// cache's verification; empty for an empty image).
        block_hashes: S,
    },
    /// What this upload may leave in its store if it never commits, told before it can
    /// exist (the control plane records it as a held `abort_upload` job of the lease: dropped
    /// when the upload commits, due at once when the lease ends any other way, so a crash of
    /// either plane leaves nothing behind). Answered `Ack`, or `Denied(Protocol)` without a
    /// lease for `image_id` on this connection.
    UploadLeftover {
        /// `x-openstack-request-id` of the client request.
        request_id: S,
        /// Target image (the lease).
        image_id: ImageId,
        /// The location the data is written to.
        url: S,
        /// What else the upload makes before it commits, by driver: an S3 multipart upload's
        /// id, a Swift segment name prefix. `None`: the object at `url` itself.
        upload: Option<S>,
    },
    /// The upload failed; put the image back to `queued`.
    UploadAborted {
        /// `x-openstack-request-id` of the client request.
        request_id: S,
        /// Target image.
        image_id: ImageId,
        /// Why (sent for logs and metrics).
        code: ErrorCode,
    },
    /// May this caller download this image, and where is the data?
    AuthorizeDownload {
        /// `x-openstack-request-id` of the client request.
        request_id: S,
        /// Target image.
        image_id: ImageId,
        /// Caller identity.
        credentials: Credentials<S>,
    },
    /// A `LocationImport` job ended: with `error` it failed (the task fails, the image stays
    /// `queued`); else the location holds `size` bytes (and, when they were asked for, these
    /// hashes): the control plane checks them against the request's `validation_data`,
    /// adds the location and makes the image `active`. The job is done either way; answered
    /// `Ack`.
    LocationChecked {
        /// [`Job::id`].
        job: u64,
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// Bytes at the location.
        size: u64,
        /// md5 hex of the data, when hashed.
        checksum: Option<S>,
        /// The secure hash, when hashed.
        os_hash_value: Option<S>,
        /// Why the location could not be used.
        error: Option<S>,
    },
    /// May this caller delete this image (with `store`: its data in that store only, as
    /// `DELETE /v2/stores/{store}/{id}`)? Asked before a delete is forwarded when a store's
    /// data can be in use outside glint (clones of an RBD snapshot), so the data plane can
    /// refuse it (409) while the image is still whole; any refusal lets the control plane
    /// answer the forwarded request itself.
    AuthorizeDelete {
        /// `x-openstack-request-id` of the client request.
        request_id: S,
        /// Target image.
        image_id: ImageId,
        /// Caller identity.
        credentials: Credentials<S>,
        /// The one store to delete from.
        store: Option<S>,
    },
    /// Hand this data plane up to `max` jobs that are due ([`Response::Jobs`]); each is
    /// leased to it for `lease_seconds`, after which another claim may take it again.
    ClaimJobs {
        /// Most jobs wanted.
        max: u32,
        /// How long the data plane may hold each one.
        lease_seconds: u32,
    },
    /// The job is done (idempotent: a job done twice, or no longer known, is acknowledged).
    JobDone {
        /// [`Job::id`].
        id: u64,
    },
    /// The block hashes recorded with the image's data ([`Response::BlockHashes`]), for a
    /// block cache fill to verify what it reads (asked after `AuthorizeDownload` granted).
    BlockHashes {
        /// The image.
        image_id: ImageId,
    },
    /// May the caller use the cache API for `action` (on `image_id` where it names one)? The
    /// data plane serves `/v2/cache…` from its own cache once granted
    /// ([`Response::CacheGranted`]).
    AuthorizeCache {
        /// The client request's id.
        request_id: S,
        /// What is asked.
        action: CacheAction,
        /// The image, for the actions on one.
        image_id: Option<ImageId>,
        /// The caller.
        credentials: Credentials<S>,
    },
    /// How many bytes of `image_id` this node's cache holds now (0: none any more), recorded
    /// for `GET /v2/cache/nodes/{image_id}` under this node's `worker_self_reference_url`.
    CacheReport {
        /// The image.
        image_id: ImageId,
        /// Bytes held.
        bytes: u64,
    },
    /// Block hashes the data plane computed for an image that had none (a block cache fill
    /// that read all of it and found it matching `checksum` and `os_hash_value`); recorded
    /// when the image is still active with that `checksum`, its size consistent with them,
    /// and none recorded meanwhile, so every node's cache fills it block by block from then on.
    RecordBlockHashes {
        /// The image.
        image_id: ImageId,
        /// Bytes per block.
        block_size: u64,
        /// 16 hex digits per block, in order.
        hashes: S,
        /// The md5 hex digest of the data that was read (must be the image's `checksum`).
        checksum: S,
    },
    /// What the auditor re-verifies next ([`Response::AuditTargets`]): the active locations
    /// of active images that have block hashes, for images after `after` in id order, at most
    /// `max` images.
    AuditTargets {
        /// The last image of the previous batch (`None`: from the first).
        after: Option<ImageId>,
        /// Most images.
        max: u32,
    },
    /// The data at a location of `image_id` no longer matches its block hashes (found by the
    /// auditor): the location is quarantined, never served again (the image's other copies
    /// are; with none left, downloads are 503).
    Quarantine {
        /// The image.
        image_id: ImageId,
        /// The location.
        url: S,
        /// What was found (kept in the log).
        reason: S,
    },
    /// An import job ([`Work::Import`]) is about to write its data into `store`: answered
    /// `UploadGranted` (with the terms of an upload into that store) and an upload lease on
    /// this connection, so `UploadLeftover`, `UploadComplete` and `UploadAborted` work as
    /// for an upload; the commit adds the location (and makes the image `active` when it is
    /// the store that does, Glance's `set_active`). `Denied(ImportOver)` when the task no
    /// longer runs the import.
    ImportBegin {
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// The target store.
        store: S,
        /// The format the data now is, when the `image_conversion` plugin converted it: the
        /// image takes this `disk_format` (and `container_format` `bare`) before the grant.
        disk_format: Option<S>,
    },
    /// How far an import is (the task's `message`: "Copied N MiB"); also tells the control
    /// plane the task is alive. Answered `Ack`, or `Denied(ImportOver)` to stop it.
    ImportProgress {
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// Bytes copied so far into the current store.
        copied: u64,
    },
    /// `glance-download`'s first step: the remote image's metadata, as the other region's
    /// Glance answered `GET /v2/images/{id}` (JSON text). The control plane checks it (it
    /// must be `active` with a size) and takes onto the image its `disk_format`,
    /// `container_format` and the properties `[glance_download_properties]` names; answered
    /// `ImportSource`, `ImportRefused` (the import fails with that message) or
    /// `Denied(ImportOver)`.
    ImportMetadata {
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// The remote image (JSON).
        image: S,
    },
    /// An import job ended: with `error`, it failed (the task fails, what it added is
    /// retired, the image goes back to `queued`); without, every store was written. The job
    /// is done either way; answered `Ack`.
    ImportFinished {
        /// [`Job::id`].
        job: u64,
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// Why it failed, for the task's `message`.
        error: Option<S>,
        /// The stores it could not write (multi-store, `all_stores_must_succeed` off: the
        /// import may succeed without them), comma-separated.
        failed_stores: S,
    },
    /// The job failed this time; it is retried later with backoff.
    JobFailed {
        /// [`Job::id`].
        id: u64,
        /// What went wrong (kept on the job row for operators).
        error: S,
    },
}

impl<S> Request<S> {
    /// Every request kind, as the `kind` label of the channel metrics of both planes has it
    /// (in [`Request::kind_index`] order).
    pub const KINDS: [&'static str; 21] = [
        "hello",
        "authorize_upload",
        "upload_leftover",
        "upload_complete",
        "upload_aborted",
        "authorize_download",
        "claim_jobs",
        "job_done",
        "job_failed",
        "block_hashes",
        "authorize_cache",
        "cache_report",
        "record_block_hashes",
        "audit_targets",
        "quarantine",
        "import_begin",
        "import_progress",
        "import_finished",
        "import_metadata",
        "authorize_delete",
        "location_checked",
    ];

    /// This request's position in [`Request::KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            Request::Hello { .. } => 0,
            Request::AuthorizeUpload { .. } => 1,
            Request::UploadLeftover { .. } => 2,
            Request::UploadComplete { .. } => 3,
            Request::UploadAborted { .. } => 4,
            Request::AuthorizeDownload { .. } => 5,
            Request::ClaimJobs { .. } => 6,
            Request::JobDone { .. } => 7,
            Request::JobFailed { .. } => 8,
            Request::BlockHashes { .. } => 9,
            Request::AuthorizeCache { .. } => 10,
            Request::CacheReport { .. } => 11,
            Request::RecordBlockHashes { .. } => 12,
            Request::AuditTargets { .. } => 13,
            Request::Quarantine { .. } => 14,
            Request::ImportBegin { .. } => 15,
            Request::ImportProgress { .. } => 16,
            Request::ImportFinished { .. } => 17,
            Request::ImportMetadata { .. } => 18,
            Request::AuthorizeDelete { .. } => 19,
            Request::LocationChecked { .. } => 20,
        }
    }

    /// This request's kind (one of [`Request::KINDS`]).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }
}

/// What a cache API request asks (each checked against its Glance policy rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheAction {
    /// `GET /v2/cache` (`cache_list`).
    List,
    /// `PUT /v2/cache/{id}`: prefetch (`cache_image`; the image must be active).
    Queue,
    /// `DELETE /v2/cache/{id}` (`cache_delete`).
    Delete,
    /// `DELETE /v2/cache` (`cache_delete`), of the cached images, the prefetch queue, or
    /// both (`x-image-cache-clear-target`).
    Clear {
        /// The cached images.
        cache: bool,
        /// The queue (this node's prefetch jobs).
        queue: bool,
    },
    /// `POST /v2/cache/clean` (`cache_clean`).
    Clean,
    /// `POST /v2/cache/prune` (`cache_prune`).
    Prune,
    /// `GET /v2/cache/nodes/{id}` (`list_cached_nodes`).
    Nodes,
}

impl CacheAction {
    /// Whether the action names an image.
    pub fn on_image(self) -> bool {
        matches!(
            self,
            CacheAction::Queue | CacheAction::Delete | CacheAction::Nodes
        )
    }
}

/// Work the control plane asks of the data plane: persisted in the database, claimed with a
/// lease, reported done or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job<S = String> {
    /// The job's id.
    pub id: u64,
    /// How many claims came before this one (0 on the first).
    pub attempt: u32,
    /// What to do.
    pub work: Work<S>,
}

/// One copy of an image's data to re-verify against its block hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTarget<S = String> {
    /// The image.
    pub image_id: ImageId,
    /// The location's store id.
    pub store: S,
    /// The location.
    pub url: S,
    /// The image's size.
    pub size: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// 16 hex digits per block, in order.
    pub hashes: S,
}

/// What a [`Job`] asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Work<S = String> {
    /// Delete the data at `url` in store `store` (a missing object counts as deleted).
    DeleteData {
        /// The image the data belonged to.
        image_id: ImageId,
        /// The store's id (may name a store no longer configured: the URL decides then).
        store: S,
        /// The location.
        url: S,
    },
    /// Remove what a failed upload left ([`Request::UploadLeftover`]): with `upload`, that
    /// multipart upload or those segments (never the object at `url`); without, the object at
    /// `url` (the control plane hands this out only while no committed location, and no upload in
    /// progress, has that URL). Already gone counts as done.
    AbortUpload {
        /// The image uploaded to.
        image_id: ImageId,
        /// The store's id.
        store: S,
        /// The location the upload wrote to.
        url: S,
        /// As in [`Request::UploadLeftover`].
        upload: Option<S>,
    },
    /// Fill this node's block cache with the image (`PUT /v2/cache/{id}` queued it for the
    /// node it reached: only that node's data plane is handed the job). Blocks already
    /// present are not read again, so a prefetch cut short by a restart resumes where it was.
    Prefetch {
        /// The image.
        image_id: ImageId,
        /// Its size.
        size: u64,
        /// Its locations, best first, as in `DownloadGranted` (looked up when claimed).
        locations: S,
    },
    /// Run the import of task `task_id` (`POST /v2/images/{id}/import`): get the data
    /// (`glance-direct`: this node's staging store; `web-download`: `uri`), then write it into
    /// each of `stores` in turn (`ImportBegin` … `UploadComplete`), then remove the staged
    /// data and report `ImportFinished`. Handed only to the node that holds the staged data.
    /// `copy-image` first copies the image's data from one of its locations into staging.
    Import {
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// The method (`glance-direct`, …).
        method: S,
        /// `web-download`'s URI; for `copy-image`, the image's locations, best first, as in
        /// `DownloadGranted` (filled when claimed).
        uri: Option<S>,
        /// For `copy-image`: the image's size (filled when claimed).
        size: u64,
        /// The stores still to write, comma-separated, in order (filled when claimed, from
        /// `os_glance_importing_to_stores`: a job claimed again after a crash writes only
        /// those left).
        stores: S,
        /// `all_stores_must_succeed`.
        all_stores_must_succeed: bool,
        /// The `image_decompression` plugin: a gzip or single-file zip staged image is
        /// decompressed before it is written (filled when claimed; never for `copy-image` or
        /// a `compressed` container).
        decompress: bool,
        /// The `image_conversion` plugin: the image's `disk_format` (the staged data is
        /// inspected as it, then converted to `convert_to`), filled when claimed; never for
        /// `copy-image`.
        convert_from: Option<S>,
        /// The format to convert to (`[image_conversion] output_format`).
        convert_to: Option<S>,
        /// For `glance-download`: the caller's token, sent to the other region's Glance (kept
        /// in the control plane's memory only, never in the database; filled when claimed).
        /// `uri` is then the remote image's URL (`…/v2/images/{id}`).
        auth_token: Option<S>,
        /// Why the control plane cannot run the import (filled when claimed; e.g. no image
        /// endpoint for the region): the data plane reports it `ImportFinished` with this
        /// error.
        refused: Option<S>,
    },
    /// Check a location added by `POST /v2/images/{id}/locations` (task `location_import`,
    /// queued as an `import` job and made this work when claimed): its size, read from its
    /// store, and with `hash_algo` its md5 and secure hash, read whole (`do_secure_hash`;
    /// a failed read is tried again up to `retries` times). Reported `LocationChecked`.
    LocationImport {
        /// The task.
        task_id: S,
        /// The image.
        image_id: ImageId,
        /// The store the control plane found for the URL.
        store: S,
        /// The location.
        url: S,
        /// The secure hash to compute (with md5), if any.
        hash_algo: Option<S>,
        /// Reads tried again after a failure (`http_retries`).
        retries: u32,
        /// Added by a user (not a service): an HTTP URL must pass `[import_filtering_opts]`
        /// and the address checks of `web-download` before it is read.
        filtered: bool,
    },
}

impl<S> Work<S> {
    /// Every job kind, as the database, logs and metric labels name them.
    pub const KINDS: [&'static str; 5] = [
        "delete_data",
        "abort_upload",
        "prefetch",
        "import",
        "location_import",
    ];

    /// This work's kind (one of [`Work::KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Work::DeleteData { .. } => Self::KINDS[0],
            Work::AbortUpload { .. } => Self::KINDS[1],
            Work::Prefetch { .. } => Self::KINDS[2],
            Work::Import { .. } => Self::KINDS[3],
            Work::LocationImport { .. } => Self::KINDS[4],
        }
    }
}

/// Control plane → data plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response<S = String> {
    /// Handshake accepted with this version.
    HelloAck {
        /// The version both sides now speak.
        version: u16,
    },
    /// Upload may proceed; the image is now `saving`.
    UploadGranted {
        /// Which secure hash to compute for `os_hash_value`.
        hash_algo: HashAlgo,
        /// Refuse bodies larger than this (`image_size_cap`).
        max_size_bytes: u64,
        /// The store to write to (the one asked for, else the default).
        store: S,
        /// The image's `disk_format`, when its content is to be inspected (its
        /// `container_format` is `bare`, as Glance inspects): the upload is refused if the
        /// content is hostile or, with `require_image_format_match`, another format.
        inspect_as: Option<S>,
    },
    /// The image is `active` with the reported data.
    UploadCommitted,
    /// The delete may go ahead; these are the locations it removes, as a
    /// [`crate::location::List`] string (reply to `AuthorizeDelete`).
    DeleteGranted {
        /// The locations.
        locations: S,
    },
    /// Download may proceed.
    DownloadGranted {
        /// Where the data lives, best first, as a [`crate::location::List`] string (read it
        /// with [`crate::location::entries`]); empty when the image has no data (answer 204).
        locations: S,
        /// Stored size in bytes (0 when there is no data).
        size: u64,
        /// md5 hex digest for `Content-MD5`, when known.
        checksum: Option<S>,
        /// The secure hash (`os_hash_value`), the download's `ETag`, when known.
        os_hash_value: Option<S>,
    },
    /// Acknowledged (reply to `UploadLeftover`, `UploadAborted`, `JobDone`, `JobFailed`).
    Ack,
    /// The image's block hashes (reply to `BlockHashes`); `block_size` 0 when none are
    /// recorded (data uploaded before they were, or no data): a fill then reads the image
    /// whole and verifies it against its `checksum` and `os_hash_value`, sent with them.
    BlockHashes {
        /// Bytes per block.
        block_size: u64,
        /// 16 hex digits per block, in order.
        hashes: S,
        /// The image's md5 hex digest.
        checksum: Option<S>,
        /// The algorithm of `os_hash_value` (a hashlib name).
        os_hash_algo: Option<S>,
        /// The image's secure hash, hex.
        os_hash_value: Option<S>,
    },
    /// A cache API request may proceed (reply to `AuthorizeCache`).
    CacheGranted {
        /// For `Queue`: the image's locations, best first, as in `DownloadGranted`.
        locations: S,
        /// For `Queue`: the image's size.
        size: u64,
        /// For `Nodes`: the `worker_self_reference_url` of each node caching the image, one
        /// per line.
        nodes: S,
        /// For `List`: the images queued for prefetch on this node (prefetch jobs not done
        /// yet), oldest first, one id per line.
        queued: S,
    },
    /// Jobs claimed (reply to `ClaimJobs`; empty when none is due).
    Jobs(Vec<Job<S>>),
    /// What to audit (reply to `AuditTargets`; empty after the last image).
    AuditTargets(Vec<AuditTarget<S>>),
    /// The remote image of a `glance-download`, as the image has now taken it (reply to
    /// `ImportMetadata`).
    ImportSource {
        /// The remote image's size: the bytes its data must have.
        size: u64,
        /// Its `disk_format`, now the image's.
        disk_format: S,
    },
    /// The import cannot go on; it fails with this message (reply to `ImportMetadata`).
    ImportRefused(S),
    /// Refused; the data plane answers the client with this reason's status and message.
    Denied(Reason),
}
