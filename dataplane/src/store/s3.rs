//! The S3 store: one object per image, key `<image id>`, in one bucket; glance_store's
//! options (`s3_store_*`, sizes in MiB). Requests are signed by `rusty-s3` (SigV4 presigned
//! URLs, so the payload is not hashed) and sent by the store's [`Client`] (one per worker).
//!
//! Location: `s3://<host[:port]>/<bucket>/<image id>` (`s3+https://` for an `https`
//! endpoint), without the credentials Glance writes into its S3 locations. [`S3Store::key_of`]
//! takes only this store's host and bucket and an image id as the key (a Glance location with
//! `access:secret@` in it is read, the credentials ignored), so no location can address
//! another bucket or key.
//!
//! Uploads ([`S3Store::create_upload`]):
//! 1. a declared size up to `s3_store_large_object_size` (and S3's 5 GiB): one PutObject, the
//!    hashed chunks streamed straight into it with that Content-Length — never buffered
//!    (glance_store buffers objects under 100 MB in memory);
//! 2. otherwise multipart: the chunks are copied into parts of
//!    `s3_store_large_object_chunk_size` MiB (larger for a declared size that would need more
//!    than 10,000 parts), each part uploaded by a task of its own, with at most
//!    `s3_store_thread_pools` part buffers per upload (the one filling included; 2 when it is
//!    1): memory per upload ≤ that × part size, plus the upload pipeline's buffers. The
//!    multipart upload is created when the first part is full, so an upload of unknown size
//!    that fits in one part (a zero-byte one too) is one PutObject at commit;
//! 3. what the upload may leave is a [`Leftover`] for the control plane to record before it
//!    can exist: the object (from the start), and the multipart upload (once created, before
//!    its first part is sent: the chunk that needs it waits for the next push);
//! 4. any failure, [`S3Upload::abort`], or dropping the upload uncommitted cleans up: the
//!    multipart upload is aborted once its parts in flight have ended (once; if the store
//!    refuses, the recorded `abort_upload` job asks again); a single PUT cut short dies with
//!    its connection; one whose body went out whole is let finish in the background (so the
//!    server has stored it before anything deletes it), and the object is left to its job,
//!    which the control plane hands out only while no later upload owns the key. A drop
//!    spawns this as a task.
//!
//! Errors name the store and carry S3's error code and message. 403 (AccessDenied, a bad
//! signature or key) is [`Error::Denied`] (503); EntityTooLarge, QuotaExceeded, 413 and 507
//! are [`Error::Full`] (413); no answer, timeouts, 5xx (after the client's retries), 429 and
//! redirects (a wrong region or endpoint) are [`Error::Unavailable`] (503); 404 of an image's
//! object is [`Error::Missing`]; anything else is [`Error::Io`].

use super::client::{self, Body, Client, Options, Origin, Response};
use super::{Error, Leftover};
use crate::hash::pipeline::SharedChunk;
use compio::buf::IoBuf;
use compio::runtime::JoinHandle;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use shared::config::stores::BucketUrlFormat;
use shared::config::{StoreConfig, StoreKind};
use shared::image::ImageId;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// How long a signed request stays valid (it is sent right after signing).
const SIGN_SECONDS: u64 = 3600;
const MIB: u64 = 1 << 20;
/// S3's largest single PUT.
const MAX_SINGLE_PUT: u64 = 5 * 1024 * MIB;
/// S3's most parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;
/// The most of an error body read for its code and message.
const ERROR_BODY_BYTES: usize = 64 * 1024;

// === impl S3Store ===

/// An S3 bucket as a store. Cheap to clone; one per worker thread (it holds the thread's
/// connection pool).
#[derive(Clone)]
pub struct S3Store(Rc<Inner>);

struct Inner {
    id: String,
    bucket: Bucket,
    credentials: Credentials,
    client: Client,
    create_bucket: bool,
    /// `s3://host[:port]` or `s3+https://…`: locations start with it.
    loc_scheme: &'static str,
    /// `host[:port]` of locations.
    loc_authority: String,
    /// `[/endpoint path]/<bucket>` of locations.
    loc_path: String,
    large_object_bytes: u64,
    part_bytes: u64,
    parts_in_flight: usize,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("id", &self.0.id)
            .field("bucket", &self.0.bucket.name())
            .field("endpoint", &self.0.client.origin().to_string())
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Opens the store: checks the bucket (HEAD) and creates it when it is missing and
    /// `s3_store_create_bucket_on_put` is set. A wrong credential, a missing bucket or an
    /// endpoint that does not answer is an error naming the store.
    pub async fn open(cfg: &StoreConfig) -> Result<S3Store, Error> {
        let store = S3Store::new(cfg)?;
        store.check_bucket(store.0.create_bucket).await?;
        Ok(store)
    }

    /// The driver for `cfg`, without a request (configuration errors only).
    pub fn new(cfg: &StoreConfig) -> Result<S3Store, Error> {
        let StoreKind::S3(s3) = &cfg.kind else {
            return Err(config_error(&cfg.id, "not an s3 store"));
        };
        let secret =
            shared::config::stores::secret(&s3.s3_store_secret_key, &s3.s3_store_secret_key_file)
                .map_err(|e| config_error(&cfg.id, format!("reading the secret key: {e}")))?;
        let raw = s3.s3_store_host.trim();
        let with_scheme = if raw.contains("://") {
            raw.to_owned()
        } else {
            format!("https://{raw}")
        };
        let endpoint: url::Url = with_scheme
            .parse()
            .map_err(|e| config_error(&cfg.id, format!("s3_store_host {raw:?}: {e}")))?;
        let https = match endpoint.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(config_error(
                    &cfg.id,
                    format!("s3_store_host {raw:?}: scheme {other:?} is not http or https"),
                ));
            }
        };
        let host = endpoint
            .host_str()
            .ok_or_else(|| config_error(&cfg.id, format!("s3_store_host {raw:?} has no host")))?
            .to_owned();
        let style = url_style(s3.s3_store_bucket_url_format, &host);
        let region = s3
            .s3_store_region_name
            .clone()
            .unwrap_or_else(|| "us-east-1".to_owned());
        let bucket = Bucket::new(endpoint.clone(), style, s3.s3_store_bucket.clone(), region)
            .map_err(|e| {
                config_error(
                    &cfg.id,
                    format!("bucket {:?} at {raw:?}: {e}", s3.s3_store_bucket),
                )
            })?;
        let origin = Origin::of(bucket.base_url())
            .ok_or_else(|| config_error(&cfg.id, format!("s3_store_host {raw:?}: no origin")))?;
        let tls = if https {
            Some(
                client::tls_config(s3.s3_store_cacert.as_deref())
                    .map_err(|e| config_error(&cfg.id, format!("TLS: {e}")))?,
            )
        } else {
            None
        };
        let parts_in_flight = s3.s3_store_thread_pools.clamp(1, 64) as usize;
        let client = Client::new(
            origin,
            tls,
            Options {
                connect_timeout: Duration::from_secs(cfg.connect_timeout_seconds),
                io_timeout: Duration::from_secs(cfg.read_timeout_seconds),
                max_idle: parts_in_flight + 2,
            },
        );
        let loc_authority = match endpoint.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let loc_path = format!(
            "{}/{}",
            endpoint.path().trim_end_matches('/'),
            s3.s3_store_bucket
        );
        Ok(S3Store(Rc::new(Inner {
            id: cfg.id.clone(),
            bucket,
            credentials: Credentials::new(s3.s3_store_access_key.clone(), secret),
            client,
            create_bucket: s3.s3_store_create_bucket_on_put,
            loc_scheme: if https { "s3+https" } else { "s3" },
            loc_authority,
            loc_path,
            large_object_bytes: s3.s3_store_large_object_size.saturating_mul(MIB),
            part_bytes: s3
                .s3_store_large_object_chunk_size
                .max(5)
                .saturating_mul(MIB),
            parts_in_flight,
        })))
    }

    /// The store's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The location of an image's object.
    pub fn location_for(&self, image_id: &ImageId) -> String {
        let i = &self.0;
        format!(
            "{}://{}{}/{image_id}",
            i.loc_scheme, i.loc_authority, i.loc_path
        )
    }

    /// The image whose object a location names, refusing every location that is not this
    /// store's host and bucket with an image id as the key.
    pub fn key_of(&self, url: &str) -> Result<ImageId, Error> {
        let foreign = || Error::ForeignLocation(url.to_owned());
        let i = &self.0;
        let (scheme, rest) = url.split_once("://").ok_or_else(foreign)?;
        let scheme_ok = if i.loc_scheme == "s3+https" {
            scheme == "s3+https"
        } else {
            scheme == "s3" || scheme == "s3+http"
        };
        if !scheme_ok {
            return Err(foreign());
        }
        // Glance writes `access:secret@` before the host; a secret may hold '/', so the
        // credentials end at the last '@' (no host, bucket or image id has one).
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        let (authority, path) = rest.split_at(rest.find('/').ok_or_else(foreign)?);
        let (dir, key) = path.rsplit_once('/').ok_or_else(foreign)?;
        if !authority.eq_ignore_ascii_case(&i.loc_authority) || dir != i.loc_path {
            return Err(foreign());
        }
        key.parse::<ImageId>().map_err(|_| foreign())
    }

    fn sign<'a>(&self, action: &impl S3Action<'a>) -> String {
        let url = action.sign(Duration::from_secs(SIGN_SECONDS));
        url[url::Position::BeforePath..].to_owned()
    }

    /// Signs `action` and sends it; no answer at all is an [`Error::Unavailable`] naming
    /// `what`.
    async fn call<'a>(
        &self,
        method: &str,
        action: &impl S3Action<'a>,
        headers: &[(&str, &str)],
        body: Body<'_>,
        what: &str,
    ) -> Result<Response, Error> {
        let target = self.sign(action);
        self.0
            .client
            .send(method, &target, headers, body)
            .await
            .map_err(|e| self.unreachable(what, e))
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.0.credentials)
    }

    /// The error for a request that got no answer.
    fn unreachable(&self, what: &str, e: client::Error) -> Error {
        Error::Unavailable(format!("store {}: {what}: {e}", self.0.id))
    }

    /// The error for an answer that is not the expected one: reads S3's error code and
    /// message from the body (HEAD answers have none) and classifies it.
    async fn failure(&self, r: Response, what: &str) -> Error {
        let status = r.status;
        let region = r.header("x-amz-bucket-region").map(str::to_owned);
        let body = r.read_to_end(ERROR_BODY_BYTES).await.unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let S3ErrorBody { code, mut message } = S3ErrorBody::parse(&body);
        if let Some(region) = region
            && matches!(status, 301 | 307 | 400)
        {
            message =
                format!("{message} (the bucket is in region {region}: set s3_store_region_name)");
        }
        classify(&self.0.id, what, status, &code, &message)
    }

    async fn check_bucket(&self, create: bool) -> Result<(), Error> {
        let i = &self.0;
        let what = format!("HEAD bucket {}", i.bucket.name());
        let r = self
            .call(
                "HEAD",
                &i.bucket.head_bucket(self.creds()),
                &[],
                Body::Empty,
                &what,
            )
            .await?;
        match r.status {
            200 => Ok(()),
            404 if create => self.create_bucket().await,
            404 => Err(Error::Unavailable(format!(
                "store {}: bucket {} does not exist (create it, or set s3_store_create_bucket_on_put)",
                i.id,
                i.bucket.name()
            ))),
            403 => Err(Error::Denied(io::Error::other(format!(
                "store {}: {what}: HTTP 403: access denied: check s3_store_access_key and the secret key",
                i.id
            )))),
            _ => Err(self.failure(r, &what).await),
        }
    }

    async fn create_bucket(&self) -> Result<(), Error> {
        let i = &self.0;
        let what = format!("PUT bucket {}", i.bucket.name());
        let action = i.bucket.create_bucket(&i.credentials);
        let mut body = action.body().into_bytes();
        let r = self
            .call("PUT", &action, &[], Body::Bytes(&mut body), &what)
            .await?;
        match r.status {
            200 => {
                r.finish().await;
                tracing::info!(store = %i.id, bucket = i.bucket.name(), "created the bucket");
                Ok(())
            }
            // another worker created it first (or someone else owns it: the HEAD says which)
            409 => {
                r.finish().await;
                Box::pin(self.check_bucket(false)).await
            }
            _ => Err(self.failure(r, &what).await),
        }
    }

    /// Starts an upload of `image_id`'s data; `size` when the client declared it.
    pub async fn create_upload(
        &self,
        image_id: &ImageId,
        size: Option<u64>,
    ) -> Result<S3Upload, Error> {
        let i = &self.0;
        let key = image_id.to_string();
        let state = match size {
            Some(n) if n <= i.large_object_bytes.min(MAX_SINGLE_PUT) => {
                let target = self.sign(&i.bucket.put_object(self.creds(), &key));
                let req = i
                    .client
                    .start("PUT", &target, &[], n)
                    .await
                    .map_err(|e| self.unreachable(&format!("PUT object {key}"), e))?;
                UploadState::Single(req)
            }
            _ => {
                // a declared size that needs more than MAX_PARTS parts gets larger parts
                let part = match size {
                    Some(n) => i
                        .part_bytes
                        .max(n.div_ceil(MAX_PARTS).next_multiple_of(MIB)),
                    None => i.part_bytes,
                };
                UploadState::Parts(Parts {
                    part_bytes: part as usize,
                    upload_id: None,
                    filling: Vec::new(),
                    in_flight: VecDeque::new(),
                    etags: Vec::new(),
                    spare: Vec::new(),
                })
            }
        };
        Ok(S3Upload {
            store: self.clone(),
            image_id: *image_id,
            key: Rc::from(key),
            size,
            pushed: 0,
            state,
            unrecorded: VecDeque::from([Leftover {
                url: self.location_for(image_id),
                upload: None,
            }]),
            deferred: None,
        })
    }

    /// The size of the object at `url` (HEAD).
    pub async fn size(&self, url: &str) -> Result<u64, Error> {
        let key = self.key_of(url)?.to_string();
        let what = format!("HEAD object {key}");
        let r = self
            .call(
                "HEAD",
                &self.0.bucket.head_object(self.creds(), &key),
                &[],
                Body::Empty,
                &what,
            )
            .await?;
        match r.status {
            200 => r.content_length().ok_or_else(|| {
                Error::Io(io::Error::other(format!(
                    "store {}: {what}: no Content-Length",
                    self.0.id
                )))
            }),
            404 => Err(Error::Missing(url.to_owned())),
            _ => Err(self.failure(r, &what).await),
        }
    }

    /// Opens `len` bytes of the object at `url` from `offset` for reading (a ranged GET; the
    /// answer's range and length are checked). `len` 0 reads nothing and sends nothing.
    pub async fn get(&self, url: &str, offset: u64, len: u64) -> Result<client::Download, Error> {
        let key = self.key_of(url)?.to_string();
        if len == 0 {
            return Ok(client::Download::new(&self.0.id, None, 0));
        }
        let what = format!("GET object {key}");
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let action = self.0.bucket.get_object(self.creds(), &key);
        let r = self
            .call("GET", &action, &[("Range", &range)], Body::Empty, &what)
            .await?;
        match r.status {
            200 | 206 => {}
            404 => return Err(Error::Missing(url.to_owned())),
            _ => return Err(self.failure(r, &what).await),
        }
        client::check_range(&r, offset, len).map_err(|why| {
            Error::Io(io::Error::other(format!(
                "store {}: {what} {range}: {why}",
                self.0.id
            )))
        })?;
        Ok(client::Download::new(&self.0.id, Some(r), len))
    }

    /// Deletes the object at `url`; one already gone counts as deleted.
    pub async fn delete(&self, url: &str) -> Result<(), Error> {
        let key = self.key_of(url)?.to_string();
        self.delete_key(&key).await
    }

    async fn delete_key(&self, key: &str) -> Result<(), Error> {
        let what = format!("DELETE object {key}");
        let action = self.0.bucket.delete_object(self.creds(), key);
        self.call_delete(&action, &what).await
    }

    /// Aborts the multipart upload `upload_id` of the object at `url` (a failed upload's
    /// leftover; already gone counts as aborted).
    pub async fn abort_upload(&self, url: &str, upload_id: &str) -> Result<(), Error> {
        let key = self.key_of(url)?.to_string();
        if upload_id.is_empty() || upload_id.bytes().any(|b| b.is_ascii_control()) {
            return Err(Error::Io(io::Error::other(format!(
                "store {}: not a multipart upload id: {upload_id:?}",
                self.0.id
            ))));
        }
        self.abort_multipart(&key, upload_id).await
    }

    /// Aborts a multipart upload (already gone counts as aborted).
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        let what = format!("abort multipart upload of {key}");
        let action = self
            .0
            .bucket
            .abort_multipart_upload(self.creds(), key, upload_id);
        self.call_delete(&action, &what).await
    }

    /// A DELETE, done when the server says so or has nothing to delete (404).
    async fn call_delete<'a>(&self, action: &impl S3Action<'a>, what: &str) -> Result<(), Error> {
        let r = self.call("DELETE", action, &[], Body::Empty, what).await?;
        match r.status {
            200 | 204 | 404 => {
                r.finish().await;
                Ok(())
            }
            _ => Err(self.failure(r, what).await),
        }
    }
}

/// Virtual-host style for AWS's hosts under `auto`, path style otherwise.
fn url_style(format: BucketUrlFormat, host: &str) -> UrlStyle {
    let aws = |h: &str| {
        let h = h.to_ascii_lowercase();
        h == "amazonaws.com" || h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn")
    };
    match format {
        BucketUrlFormat::Path => UrlStyle::Path,
        BucketUrlFormat::Virtual => UrlStyle::VirtualHost,
        BucketUrlFormat::Auto if aws(host) => UrlStyle::VirtualHost,
        BucketUrlFormat::Auto => UrlStyle::Path,
    }
}

fn config_error(id: &str, what: impl fmt::Display) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("store {id}: {what}"),
    ))
}

/// S3's answer `status` / `code` to `what`, as a store error.
fn classify(id: &str, what: &str, status: u16, code: &str, message: &str) -> Error {
    let text = if code.is_empty() && message.is_empty() {
        format!("store {id}: {what}: HTTP {status}")
    } else {
        format!("store {id}: {what}: HTTP {status} {code}: {message}")
    };
    match (status, code) {
        (_, "EntityTooLarge" | "QuotaExceeded" | "InsufficientStorage" | "TooManyBuckets")
        | (413 | 507, _) => Error::Full(io::Error::other(text)),
        (403, _) => Error::Denied(io::Error::other(text)),
        (429, _) | (500.., _) | (300..=399, _) | (_, "SlowDown" | "RequestTimeout") => {
            Error::Unavailable(text)
        }
        _ => Error::Io(io::Error::other(text)),
    }
}

/// S3's error document (`<Error><Code>…</Code><Message>…</Message>…</Error>`), read by
/// quick-xml; any other body gives empty fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct S3ErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message")]
    message: String,
}

impl S3ErrorBody {
    fn parse(xml: &str) -> S3ErrorBody {
        quick_xml::de::from_str(xml).unwrap_or_default()
    }
}

// === impl S3Upload ===

/// An upload into the store ([`S3Store::create_upload`]): [`S3Upload::push`] each hashed
/// chunk in order, then [`S3Upload::commit`]. Dropped uncommitted, it leaves nothing: a
/// single PUT's connection is closed mid-body, a multipart upload is aborted.
pub struct S3Upload {
    store: S3Store,
    image_id: ImageId,
    key: Rc<str>,
    size: Option<u64>,
    pushed: u64,
    state: UploadState,
    /// What the control plane has not been told of yet ([`S3Upload::take_leftover`]).
    unrecorded: VecDeque<Leftover>,
    /// The chunk that made the multipart upload, held until that is recorded.
    deferred: Option<SharedChunk>,
}

enum UploadState {
    /// One PutObject, streamed.
    Single(client::Request),
    /// Parts, multipart once the first is full.
    Parts(Parts),
    /// Committed, aborted, or failed and cleaned up.
    Done,
}

/// The answer of one part upload: its ETag, and its buffer for the next part.
type PartResult = (Result<String, Error>, Vec<u8>);

struct Parts {
    part_bytes: usize,
    upload_id: Option<Rc<str>>,
    /// The part being filled.
    filling: Vec<u8>,
    /// Part uploads in part-number order.
    in_flight: VecDeque<JoinHandle<PartResult>>,
    /// ETags of the parts done, in order.
    etags: Vec<String>,
    /// Buffers of finished parts, for the next ones.
    spare: Vec<Vec<u8>>,
}

impl fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            UploadState::Single(_) => "single PUT",
            UploadState::Parts(p) if p.upload_id.is_some() => "multipart",
            UploadState::Parts(_) => "first part",
            UploadState::Done => "done",
        };
        f.debug_struct("S3Upload")
            .field("store", &self.store.0.id)
            .field("key", &self.key)
            .field("size", &self.size)
            .field("pushed", &self.pushed)
            .field("state", &state)
            .finish()
    }
}

impl S3Upload {
    /// Hands over the next hashed chunk (in order). A single PUT writes it to the socket; a
    /// multipart upload copies it into the current part, and may wait for an earlier part.
    /// On an error the upload has been cleaned up; only dropping it is left.
    pub async fn push(&mut self, chunk: SharedChunk) -> Result<(), Error> {
        let len = chunk.len();
        if let Some(size) = self.size
            && self.pushed + len as u64 > size
        {
            let e = Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "store {}: upload of {}: more than the declared {size} bytes",
                    self.store.0.id, self.key
                ),
            ));
            return Err(self.fail(e).await);
        }
        self.pushed += len as u64;
        if let Err(e) = self.push_deferred().await {
            return Err(self.fail(e).await);
        }
        if let UploadState::Parts(p) = &mut self.state
            && p.needs_multipart_for(len)
        {
            // the multipart upload is recorded before any part of it is sent
            return match p.start(&self.store, &self.key).await {
                Ok(id) => {
                    self.unrecorded.push_back(Leftover {
                        url: self.store.location_for(&self.image_id),
                        upload: Some(id.to_string()),
                    });
                    self.deferred = Some(chunk);
                    Ok(())
                }
                Err(e) => Err(self.fail(e).await),
            };
        }
        let result = match &mut self.state {
            UploadState::Single(req) => match req.write(chunk.slice(..len)).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let UploadState::Single(req) =
                        std::mem::replace(&mut self.state, UploadState::Done)
                    else {
                        unreachable!("matched above")
                    };
                    Err(self.store.answer_of(req, e, &self.key).await)
                }
            },
            UploadState::Parts(p) => p.push(&self.store, &self.key, &chunk).await,
            UploadState::Done => Err(Error::Io(io::Error::other("upload already finished"))),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// The next thing this upload may leave that the control plane has not recorded yet.
    pub fn take_leftover(&mut self) -> Option<Leftover> {
        self.unrecorded.pop_front()
    }

    /// Sends the chunk held back until its multipart upload was recorded (else the next
    /// push or the commit does). On an error the upload has been cleaned up.
    pub async fn resume(&mut self) -> Result<(), Error> {
        match self.push_deferred().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Sends the chunk held back until its multipart upload was recorded.
    async fn push_deferred(&mut self) -> Result<(), Error> {
        if let Some(chunk) = self.deferred.take()
            && let UploadState::Parts(p) = &mut self.state
        {
            p.push(&self.store, &self.key, &chunk).await?;
        }
        Ok(())
    }

    /// Finishes the upload (the last part, CompleteMultipartUpload) and returns the
    /// location. A size declared at the start must have been pushed exactly.
    pub async fn commit(mut self) -> Result<String, Error> {
        if let Err(e) = self.push_deferred().await {
            return Err(self.fail(e).await);
        }
        if let Some(size) = self.size
            && self.pushed != size
        {
            let e = Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "store {}: upload of {}: {} bytes of the declared {size}",
                    self.store.0.id, self.key, self.pushed
                ),
            ));
            return Err(self.fail(e).await);
        }
        let store = self.store.clone();
        let key = self.key.clone();
        let result = match &mut self.state {
            UploadState::Single(_) => {
                let UploadState::Single(req) =
                    std::mem::replace(&mut self.state, UploadState::Done)
                else {
                    unreachable!("matched above")
                };
                store.finish_put(req, &key).await
            }
            UploadState::Parts(p) => p.commit(&store, &key).await,
            UploadState::Done => Err(Error::Io(io::Error::other("upload already finished"))),
        };
        match result {
            Ok(()) => {
                self.state = UploadState::Done;
                Ok(store.location_for(&self.image_id))
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Drops what this upload owns alone: the multipart upload is aborted once its parts in
    /// flight end, a single PUT's connection is closed. (An object whose body went out whole
    /// is its recorded leftover's job.)
    pub async fn abort(mut self) {
        self.clean_up();
    }

    fn clean_up(&mut self) {
        let state = std::mem::replace(&mut self.state, UploadState::Done);
        clean_up(&self.store, &self.key, state);
    }

    async fn fail(&mut self, e: Error) -> Error {
        self.clean_up();
        e
    }
}

/// Cleans up an uncommitted upload's own state, in a task of its own (the client's answer
/// never waits for it): a multipart upload is aborted (the abort names this upload's id, so
/// it can never touch a later upload of the image); a single PUT cut short dies with its
/// connection, and one whose body went out whole is let finish, so that the server has stored
/// (or refused) the object before its recorded leftover's job deletes it — a DELETE that
/// overtook the PUT's last step would leave the object behind.
fn clean_up(store: &S3Store, key: &str, state: UploadState) {
    let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match state {
        UploadState::Parts(p) if p.upload_id.is_some() => {
            let (owner, name) = (store.clone(), key.to_owned());
            Box::pin(async move { p.abort(&owner, &name).await })
        }
        UploadState::Single(req) if req.remaining() == 0 => Box::pin(async move {
            if let Ok(r) = req.finish().await {
                r.finish().await;
            }
        }),
        UploadState::Parts(_) | UploadState::Single(_) | UploadState::Done => return,
    };
    let spawned = compio::runtime::Runtime::try_with_current(|rt| rt.spawn(task).detach());
    if spawned.is_err() {
        tracing::warn!(
            key,
            "upload dropped off its runtime: what it wrote is left to its abort_upload job"
        );
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, UploadState::Done);
        clean_up(&self.store, &self.key, state);
    }
}

impl S3Store {
    /// The error for a single PUT whose body could not be written: the server's answer if
    /// it sent one before closing (a refusal), else the connection's error.
    async fn answer_of(&self, req: client::Request, e: client::Error, key: &str) -> Error {
        let what = format!("PUT object {key}");
        match req.finish().await {
            Ok(r) if r.status >= 300 => self.failure(r, &what).await,
            _ => self.unreachable(&what, e),
        }
    }

    async fn finish_put(&self, req: client::Request, key: &str) -> Result<(), Error> {
        let what = format!("PUT object {key}");
        let r = req.finish().await.map_err(|e| self.unreachable(&what, e))?;
        if r.status != 200 {
            return Err(self.failure(r, &what).await);
        }
        r.finish().await;
        Ok(())
    }

    /// PutObject of a body in memory (an upload of unknown size that fit in one part).
    async fn put_bytes(&self, key: &str, body: &mut Vec<u8>) -> Result<(), Error> {
        let what = format!("PUT object {key}");
        let r = self
            .call(
                "PUT",
                &self.0.bucket.put_object(self.creds(), key),
                &[],
                Body::Bytes(body),
                &what,
            )
            .await?;
        if r.status != 200 {
            return Err(self.failure(r, &what).await);
        }
        r.finish().await;
        Ok(())
    }

    async fn create_multipart(&self, key: &str) -> Result<Rc<str>, Error> {
        let what = format!("create multipart upload of {key}");
        let r = self
            .call(
                "POST",
                &self.0.bucket.create_multipart_upload(self.creds(), key),
                &[],
                Body::Empty,
                &what,
            )
            .await?;
        if r.status != 200 {
            return Err(self.failure(r, &what).await);
        }
        let body = r
            .read_to_end(ERROR_BODY_BYTES)
            .await
            .map_err(|e| self.unreachable(&what, e))?;
        let text = String::from_utf8_lossy(&body);
        match rusty_s3::actions::CreateMultipartUpload::parse_response(&text) {
            Ok(parsed) => Ok(Rc::from(parsed.upload_id())),
            Err(e) => Err(Error::Io(io::Error::other(format!(
                "store {}: {what}: unreadable answer: {e}",
                self.0.id
            )))),
        }
    }

    async fn upload_part(
        self,
        key: Rc<str>,
        upload_id: Rc<str>,
        number: u16,
        mut buf: Vec<u8>,
    ) -> PartResult {
        let what = format!("upload part {number} of {key}");
        let action = self
            .0
            .bucket
            .upload_part(self.creds(), &key, number, &upload_id);
        let r = match self
            .call("PUT", &action, &[], Body::Bytes(&mut buf), &what)
            .await
        {
            Ok(r) => r,
            Err(e) => return (Err(e), buf),
        };
        if r.status != 200 {
            return (Err(self.failure(r, &what).await), buf);
        }
        let Some(etag) = r.header("etag").map(str::to_owned) else {
            return (
                Err(Error::Io(io::Error::other(format!(
                    "store {}: {what}: no ETag in the answer",
                    self.0.id
                )))),
                buf,
            );
        };
        r.finish().await;
        (Ok(etag), buf)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), Error> {
        let what = format!("complete multipart upload of {key}");
        let action = self.0.bucket.complete_multipart_upload(
            self.creds(),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let target = self.sign(&action);
        // the body consumes the action: signed first
        let mut body = action.body().into_bytes();
        let r = self
            .0
            .client
            .send("POST", &target, &[], Body::Bytes(&mut body))
            .await
            .map_err(|e| self.unreachable(&what, e))?;
        if r.status != 200 {
            return Err(self.failure(r, &what).await);
        }
        // S3 may answer 200 and report the failure in the body
        let body = r
            .read_to_end(ERROR_BODY_BYTES)
            .await
            .map_err(|e| self.unreachable(&what, e))?;
        let text = String::from_utf8_lossy(&body);
        match rusty_s3::actions::CompleteMultipartUploadResponse::parse(&text) {
            Ok(_) => Ok(()),
            Err(_) => {
                let e = S3ErrorBody::parse(&text);
                let message = if e.message.is_empty() {
                    "unreadable answer".to_owned()
                } else {
                    e.message
                };
                Err(classify(&self.0.id, &what, 500, &e.code, &message))
            }
        }
    }
}

impl Parts {
    async fn push(&mut self, store: &S3Store, key: &Rc<str>, chunk: &[u8]) -> Result<(), Error> {
        let mut data = chunk;
        while !data.is_empty() {
            // a full part goes out only when more data follows: an upload that fits in one
            // part stays one PutObject
            if self.filling.len() == self.part_bytes {
                self.send_part(store, key).await?;
            }
            if self.filling.capacity() == 0 {
                self.filling = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(self.part_bytes));
            }
            let n = (self.part_bytes - self.filling.len()).min(data.len());
            self.filling.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        // surface a failed part early
        while self.in_flight.front().is_some_and(|h| h.is_finished()) {
            self.collect_oldest(store).await?;
        }
        Ok(())
    }

    async fn collect_oldest(&mut self, store: &S3Store) -> Result<(), Error> {
        let Some(h) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match h.await {
            Ok((Ok(etag), mut buf)) => {
                buf.clear();
                self.spare.push(buf);
                self.etags.push(etag);
                Ok(())
            }
            Ok((Err(e), _)) => Err(e),
            Err(_) => Err(Error::Io(io::Error::other(format!(
                "store {}: a part upload task failed",
                store.0.id
            )))),
        }
    }

    /// Uploads the filled part (creating the multipart upload first if needed), waiting
    /// first while as many parts as allowed are in flight.
    async fn send_part(&mut self, store: &S3Store, key: &Rc<str>) -> Result<(), Error> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = store.create_multipart(key).await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        // the part filling next counts too: at most `parts_in_flight` part buffers exist
        // (one more only with a single part in flight, which must be filled meanwhile)
        while self.in_flight.len() >= store.0.parts_in_flight.saturating_sub(1).max(1) {
            self.collect_oldest(store).await?;
        }
        let number = self.etags.len() + self.in_flight.len() + 1;
        if number as u64 > MAX_PARTS {
            return Err(Error::Full(io::Error::other(format!(
                "store {}: upload of {key}: more than {MAX_PARTS} parts of {} MiB (raise s3_store_large_object_chunk_size)",
                store.0.id,
                self.part_bytes as u64 / MIB
            ))));
        }
        let buf = std::mem::take(&mut self.filling);
        let task = store
            .clone()
            .upload_part(key.clone(), upload_id, number as u16, buf);
        self.in_flight.push_back(compio::runtime::spawn(task));
        Ok(())
    }

    /// Sends the last part, waits for all, completes. Without a multipart upload (all of it
    /// fit in one part), one PutObject.
    async fn commit(&mut self, store: &S3Store, key: &Rc<str>) -> Result<(), Error> {
        if self.upload_id.is_none() {
            return store.put_bytes(key, &mut self.filling).await;
        }
        if !self.filling.is_empty() {
            self.send_part(store, key).await?;
        }
        while !self.in_flight.is_empty() {
            self.collect_oldest(store).await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_else(|| Rc::from(""));
        store
            .complete_multipart(key, &upload_id, &self.etags)
            .await?;
        self.upload_id = None;
        Ok(())
    }

    /// Lets the parts in flight end, then aborts the multipart upload, once: if the store
    /// refuses or is down, the upload's recorded `abort_upload` job asks again with backoff,
    /// from whichever data plane claims it. (Cancelling the parts instead could leave one
    /// whose body was already sent to be stored after the abort, as S3's documentation warns;
    /// each part is bounded by the client's timeouts.)
    async fn abort(mut self, store: &S3Store, key: &str) {
        for h in self.in_flight.drain(..) {
            let _ = h.await;
        }
        let Some(id) = self.upload_id.take() else {
            return;
        };
        if let Err(e) = store.abort_multipart(key, &id).await {
            tracing::warn!(store = %store.0.id, key, error = %e, "could not abort a multipart upload; its abort_upload job asks again");
        }
    }

    /// Whether pushing `len` more bytes needs the multipart upload, which does not exist yet.
    fn needs_multipart_for(&self, len: usize) -> bool {
        self.upload_id.is_none() && self.filling.len() + len > self.part_bytes
    }

    /// Creates the multipart upload.
    async fn start(&mut self, store: &S3Store, key: &Rc<str>) -> Result<Rc<str>, Error> {
        let id = store.create_multipart(key).await?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::pipeline::{BufferPool, PipelinedHasher};
    use shared::config::stores::S3Store as S3Options;
    use shared::image::HashAlgo;

    /// An S3 server the tests use, from `GLINT_TEST_S3_*` (and `GLINT_TEST_S3B_*`).
    struct Server {
        name: &'static str,
        endpoint: String,
        access: String,
        secret: String,
    }

    fn server(prefix: &'static str) -> Option<Server> {
        let var = |v: &str| std::env::var(format!("{prefix}_{v}")).ok();
        Some(Server {
            name: prefix,
            endpoint: var("ENDPOINT")?,
            access: var("ACCESS_KEY")?,
            secret: var("SECRET_KEY")?,
        })
    }

    /// The S3 servers to test against; fails loudly without one.
    fn servers() -> Vec<Server> {
        let first = server("GLINT_TEST_S3").unwrap_or_else(|| {
            panic!(
                "GLINT_TEST_S3_ENDPOINT, GLINT_TEST_S3_ACCESS_KEY and GLINT_TEST_S3_SECRET_KEY \
                 are not set: run ./scripts/test, which starts the S3 servers and exports them"
            )
        });
        let mut all = vec![first];
        all.extend(server("GLINT_TEST_S3B"));
        all
    }

    fn config(s: &Server, bucket: &str, tweak: impl FnOnce(&mut S3Options)) -> StoreConfig {
        let mut opts = S3Options {
            s3_store_host: s.endpoint.clone(),
            s3_store_access_key: s.access.clone(),
            s3_store_secret_key: Some(s.secret.clone()),
            s3_store_secret_key_file: None,
            s3_store_bucket: bucket.to_owned(),
            s3_store_create_bucket_on_put: true,
            s3_store_bucket_url_format: BucketUrlFormat::Path,
            s3_store_region_name: None,
            s3_store_large_object_size: 100,
            s3_store_large_object_chunk_size: 5,
            s3_store_thread_pools: 2,
            s3_store_cacert: None,
        };
        tweak(&mut opts);
        StoreConfig {
            id: "objects".into(),
            description: None,
            weight: 0,
            kind: StoreKind::S3(opts),
            connect_timeout_seconds: 5,
            read_timeout_seconds: 30,
        }
    }

    fn fresh_bucket() -> String {
        format!("glint-test-{}", uuid::Uuid::new_v4().simple())
    }

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    /// Pushes `data` in 1 MiB hashed chunks (as the upload path does), without committing.
    async fn push_all(up: &mut S3Upload, data: &[u8]) -> Result<(), Error> {
        let pool = BufferPool::new(1 << 20, 8);
        let mut hasher = PipelinedHasher::start(HashAlgo::Sha256, pool, 8, false, 8 << 20);
        for piece in data.chunks(1 << 20) {
            let mut buf = hasher.buffer().await;
            buf.push_slice(piece);
            let chunk = hasher.submit(buf, false);
            up.push(chunk).await?;
        }
        hasher.finish().await.unwrap();
        Ok(())
    }

    async fn upload(
        store: &S3Store,
        id: &ImageId,
        data: &[u8],
        declared: Option<u64>,
    ) -> Result<String, Error> {
        let mut up = store.create_upload(id, declared).await?;
        push_all(&mut up, data).await?;
        up.commit().await
    }

    async fn read_range(store: &S3Store, loc: &str, offset: u64, len: u64) -> Vec<u8> {
        let mut body = store.get(loc, offset, len).await.unwrap();
        let mut out = Vec::new();
        loop {
            let (res, b) = body.read(Vec::with_capacity(256 * 1024)).await;
            let n = res.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&b);
        }
        assert_eq!(body.remaining(), 0);
        out
    }

    /// A signed request of a test (ListMultipartUploads, HEAD for the ETag), answered as
    /// status and body text.
    async fn raw<'a>(
        store: &S3Store,
        method: &str,
        action: impl S3Action<'a>,
    ) -> (u16, String, Option<String>) {
        let target = store.sign(&action);
        let r = store
            .0
            .client
            .send(method, &target, &[], Body::Empty)
            .await
            .unwrap();
        let etag = r.header("etag").map(str::to_owned);
        let status = r.status;
        let body = r.read_to_end(1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), etag)
    }

    /// Multipart uploads in progress in the bucket (ListMultipartUploads).
    async fn uploads_in_progress(store: &S3Store) -> usize {
        let mut action = store.0.bucket.get_object(store.creds(), "");
        action.query_mut().insert("uploads", "");
        let (status, body, _) = raw(store, "GET", action).await;
        assert_eq!(status, 200, "{body}");
        body.matches("<UploadId>").count()
    }

    /// Deletes every object and the bucket (best effort: a failed clean-up does not fail a
    /// test that passed).
    async fn remove_bucket(store: &S3Store) {
        let list = store.0.bucket.list_objects_v2(store.creds());
        let (_, body, _) = raw(store, "GET", list).await;
        if let Ok(list) = rusty_s3::actions::ListObjectsV2::parse_response(&body) {
            for obj in list.contents {
                let del = store.0.bucket.delete_object(store.creds(), &obj.key);
                raw(store, "DELETE", del).await;
            }
        }
        // listings may lag a delete (Swift): BucketNotEmpty for a moment
        let (mut status, mut body) = (0, String::new());
        for _ in 0..50 {
            let delete = store.0.bucket.delete_bucket(&store.0.credentials);
            (status, body, _) = raw(store, "DELETE", delete).await;
            if status != 409 {
                break;
            }
            compio::time::sleep(Duration::from_millis(200)).await;
        }
        if status != 204 {
            eprintln!(
                "removing test bucket {}: {status} {body}",
                store.0.bucket.name()
            );
        }
    }

    #[test]
    fn locations_name_only_this_bucket_and_image_keys() {
        let s = Server {
            name: "none",
            endpoint: "http://127.0.0.1:9000".into(),
            access: "ak".into(),
            secret: "sk".into(),
        };
        let store = S3Store::new(&config(&s, "images", |_| {})).unwrap();
        let id = ImageId::new_random();
        let loc = store.location_for(&id);
        assert_eq!(loc, format!("s3://127.0.0.1:9000/images/{id}"));
        assert!(
            !loc.contains("sk") && !loc.contains("ak@"),
            "credentials in {loc}"
        );
        assert_eq!(store.key_of(&loc).unwrap(), id);
        // Glance's form, with credentials (a secret may hold '/'), and s3+http
        for ok in [
            format!("s3://ak:s/k@127.0.0.1:9000/images/{id}"),
            format!("s3+http://127.0.0.1:9000/images/{id}"),
        ] {
            assert_eq!(store.key_of(&ok).unwrap(), id, "{ok}");
        }
        for bad in [
            format!("s3://127.0.0.1:9000/other/{id}"),
            format!("s3://127.0.0.1:9001/images/{id}"),
            format!("s3://evil.example/images/{id}"),
            format!("s3://127.0.0.1:9000/images/../other/{id}"),
            format!("s3://127.0.0.1:9000/images/sub/{id}"),
            format!("s3://127.0.0.1:9000/images/{id}/x"),
            format!("s3://127.0.0.1:9000/images/{id}?versionId=1"),
            "s3://127.0.0.1:9000/images/not-an-id".into(),
            "s3://127.0.0.1:9000/images/".into(),
            format!("s3+https://127.0.0.1:9000/images/{id}"),
            format!("swift://127.0.0.1:9000/images/{id}"),
            format!("file:///images/{id}"),
            format!("s3://evil.example@127.0.0.1:9001/images/{id}"),
            format!("s3://127.0.0.1:9000images/{id}"),
        ] {
            assert!(
                matches!(store.key_of(&bad), Err(Error::ForeignLocation(_))),
                "{bad} accepted"
            );
        }
        // https (a bare host), virtual host style for AWS under auto
        let aws = S3Store::new(&config(&s, "images", |o| {
            o.s3_store_host = "s3.eu-west-1.amazonaws.com".into();
            o.s3_store_bucket_url_format = BucketUrlFormat::Auto;
        }))
        .unwrap();
        assert_eq!(
            aws.location_for(&id),
            format!("s3+https://s3.eu-west-1.amazonaws.com/images/{id}")
        );
        assert_eq!(
            aws.0.client.origin().host,
            "images.s3.eu-west-1.amazonaws.com"
        );
        assert!(
            aws.key_of(&format!("s3://s3.eu-west-1.amazonaws.com/images/{id}"))
                .is_err()
        );
        assert!(matches!(
            url_style(BucketUrlFormat::Auto, "minio.local"),
            UrlStyle::Path
        ));
    }

    #[test]
    fn errors_are_classified_by_status_and_code() {
        use shared::error::ErrorCode;
        let table = [
            (403, "AccessDenied", ErrorCode::ServiceUnavailable, "Denied"),
            (
                403,
                "SignatureDoesNotMatch",
                ErrorCode::ServiceUnavailable,
                "Denied",
            ),
            (403, "QuotaExceeded", ErrorCode::PayloadTooLarge, "Full"),
            (400, "EntityTooLarge", ErrorCode::PayloadTooLarge, "Full"),
            (413, "", ErrorCode::PayloadTooLarge, "Full"),
            (507, "", ErrorCode::PayloadTooLarge, "Full"),
            (
                503,
                "SlowDown",
                ErrorCode::ServiceUnavailable,
                "Unavailable",
            ),
            (
                500,
                "InternalError",
                ErrorCode::ServiceUnavailable,
                "Unavailable",
            ),
            (
                301,
                "PermanentRedirect",
                ErrorCode::ServiceUnavailable,
                "Unavailable",
            ),
            (400, "InvalidArgument", ErrorCode::Internal, "Io"),
        ];
        for (status, code, want, variant) in table {
            let e = classify("objects", "PUT object k", status, code, "the message");
            assert_eq!(e.code(), want, "{status} {code}: {e:?}");
            assert!(
                format!("{e:?}").starts_with(variant),
                "{status} {code}: {e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains("store objects") && text.contains(code),
                "{text}"
            );
        }
        let e = S3ErrorBody::parse(
            "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>a &amp; b</Message><RequestId>1</RequestId></Error>",
        );
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("NoSuchKey", "a & b")
        );
        assert!(S3ErrorBody::parse("not xml").code.is_empty());
    }

    #[compio::test]
    async fn an_unreachable_endpoint_is_unavailable_naming_the_store() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let s = Server {
            name: "none",
            endpoint: format!("http://127.0.0.1:{port}"),
            access: "ak".into(),
            secret: "sk".into(),
        };
        let e = S3Store::open(&config(&s, "images", |_| {}))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("store objects"), "{e}");
    }

    /// Bucket creation; single PUT (declared size) and multipart (unknown size, 23 MiB in
    /// 5 MiB parts; a declared size above the threshold) round trips; ranged reads; zero-byte
    /// uploads; idempotent delete. Against every configured server.
    #[compio::test]
    #[ignore = "needs S3 servers (GLINT_TEST_S3_*): run through ./scripts/test"]
    async fn uploads_round_trip() {
        for s in servers() {
            let bucket = fresh_bucket();
            let store = S3Store::open(&config(&s, &bucket, |o| o.s3_store_large_object_size = 10))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            // the bucket exists now: opening without create works
            S3Store::open(&config(&s, &bucket, |o| {
                o.s3_store_create_bucket_on_put = false
            }))
            .await
            .unwrap();

            // declared size: one PUT streamed from the chunks
            let small = data(3 * (1 << 20) + 5, 1);
            let id = ImageId::new_random();
            let loc = upload(&store, &id, &small, Some(small.len() as u64))
                .await
                .unwrap();
            assert_eq!(loc, store.location_for(&id));
            assert_eq!(store.size(&loc).await.unwrap(), small.len() as u64);
            assert_eq!(read_range(&store, &loc, 0, small.len() as u64).await, small);
            let mid = read_range(&store, &loc, (1 << 20) - 3, 10).await;
            assert_eq!(mid, &small[(1 << 20) - 3..(1 << 20) + 7]);
            let tail = read_range(&store, &loc, small.len() as u64 - 5, 5).await;
            assert_eq!(tail, &small[small.len() - 5..]);

            // unknown size: 23 MiB in 5 MiB parts, at most 2 in flight
            let big = data(23 * (1 << 20), 2);
            let id2 = ImageId::new_random();
            let loc2 = upload(&store, &id2, &big, None).await.unwrap();
            assert_eq!(store.size(&loc2).await.unwrap(), big.len() as u64);
            let key = id2.to_string();
            let (_, _, etag) = raw(
                &store,
                "HEAD",
                store.0.bucket.head_object(store.creds(), &key),
            )
            .await;
            assert!(
                etag.as_deref().unwrap_or("").ends_with("-5\""),
                "{}: not 5 parts: {etag:?}",
                s.name
            );
            assert_eq!(read_range(&store, &loc2, 0, big.len() as u64).await, big);
            let across = read_range(&store, &loc2, 5 * (1 << 20) - 100, 200).await;
            assert_eq!(across, &big[5 * (1 << 20) - 100..5 * (1 << 20) + 100]);

            // declared, above s3_store_large_object_size: multipart too
            let mid_size = data(12 * (1 << 20) + 1, 3);
            let id3 = ImageId::new_random();
            let loc3 = upload(&store, &id3, &mid_size, Some(mid_size.len() as u64))
                .await
                .unwrap();
            assert_eq!(
                read_range(&store, &loc3, 0, mid_size.len() as u64).await,
                mid_size
            );

            // unknown size that fits in one part, and zero bytes (declared or not)
            for (bytes, declared) in [
                (data(2 << 20, 4), None),
                (Vec::new(), Some(0)),
                (Vec::new(), None),
            ] {
                let id = ImageId::new_random();
                let loc = upload(&store, &id, &bytes, declared).await.unwrap();
                assert_eq!(store.size(&loc).await.unwrap(), bytes.len() as u64);
                assert_eq!(read_range(&store, &loc, 0, bytes.len() as u64).await, bytes);
                store.delete(&loc).await.unwrap();
            }

            // a declared size not kept is refused, and leaves nothing
            let id4 = ImageId::new_random();
            let mut up = store.create_upload(&id4, Some(10)).await.unwrap();
            assert!(push_all(&mut up, &data(11, 5)).await.is_err());
            drop(up);
            assert!(matches!(
                store.size(&store.location_for(&id4)).await,
                Err(Error::Missing(_))
            ));

            // delete is idempotent; a deleted object is Missing
            for l in [&loc, &loc2, &loc3] {
                store.delete(l).await.unwrap();
                store.delete(l).await.unwrap();
                assert!(
                    matches!(store.size(l).await, Err(Error::Missing(_))),
                    "{}",
                    s.name
                );
                assert!(matches!(store.get(l, 0, 1).await, Err(Error::Missing(_))));
            }
            assert_eq!(uploads_in_progress(&store).await, 0, "{}", s.name);
            remove_bucket(&store).await;
        }
    }

    /// An aborted or dropped multipart upload leaves no upload in progress and no object; an
    /// aborted or dropped single PUT leaves no object.
    #[compio::test]
    #[ignore = "needs S3 servers (GLINT_TEST_S3_*): run through ./scripts/test"]
    async fn aborted_and_dropped_uploads_leave_nothing() {
        for s in servers() {
            let store = S3Store::open(&config(&s, &fresh_bucket(), |_| {}))
                .await
                .unwrap();
            let bytes = data(12 * (1 << 20), 6);
            for dropped in [false, true] {
                let id = ImageId::new_random();
                let mut up = store.create_upload(&id, None).await.unwrap();
                push_all(&mut up, &bytes).await.unwrap();
                assert_eq!(uploads_in_progress(&store).await, 1, "{}", s.name);
                if dropped {
                    drop(up);
                } else {
                    up.abort().await;
                }
                {
                    // the abort runs as a task of its own: poll for it
                    let mut left = 1;
                    for _ in 0..100 {
                        left = uploads_in_progress(&store).await;
                        if left == 0 {
                            break;
                        }
                        compio::time::sleep(Duration::from_millis(100)).await;
                    }
                    assert_eq!(left, 0, "{}: the upload was not aborted", s.name);
                }
                let loc = store.location_for(&id);
                assert!(
                    matches!(store.size(&loc).await, Err(Error::Missing(_))),
                    "{}",
                    s.name
                );
            }
            // a single PUT: aborted part-way, it dies with its connection; dropped once its
            // body went out whole, the object may exist: that is its recorded leftover's, which
            // the job removes
            let small = data(3 << 20, 7);
            for whole in [false, true] {
                let id = ImageId::new_random();
                let mut up = store
                    .create_upload(&id, Some(small.len() as u64))
                    .await
                    .unwrap();
                let loc = store.location_for(&id);
                if whole {
                    push_all(&mut up, &small).await.unwrap();
                    drop(up);
                    // the dropped upload lets the server finish storing it; the job that
                    // removes it runs later (here: once the object is there)
                    let mut stored = false;
                    for _ in 0..100 {
                        if store.size(&loc).await.is_ok() {
                            stored = true;
                            break;
                        }
                        compio::time::sleep(Duration::from_millis(50)).await;
                    }
                    assert!(
                        stored,
                        "{}: the dropped whole PUT was not let finish",
                        s.name
                    );
                    super::super::Store::S3(store.clone())
                        .abort_leftover(&loc, None)
                        .await
                        .unwrap();
                } else {
                    push_all(&mut up, &small[..1 << 20]).await.unwrap();
                    up.abort().await;
                }
                let mut gone = false;
                for _ in 0..100 {
                    if matches!(store.size(&loc).await, Err(Error::Missing(_))) {
                        gone = true;
                        break;
                    }
                    compio::time::sleep(Duration::from_millis(100)).await;
                }
                assert!(gone, "{}: the object of a dropped PUT is left", s.name);
            }
            remove_bucket(&store).await;
        }
    }

    /// Parts sent of the multipart upload `upload_id` of `key` (ListParts).
    async fn parts_of(store: &S3Store, key: &str, upload_id: &str) -> usize {
        let mut action = store.0.bucket.get_object(store.creds(), key);
        action.query_mut().insert("uploadId", upload_id);
        let (status, body, _) = raw(store, "GET", action).await;
        assert_eq!(status, 200, "{body}");
        body.matches("<PartNumber>").count()
    }

    /// What an upload may leave is named before it exists: the object from the start, the
    /// multipart upload once created and before any part of it is sent; the job's abort
    /// (`abort_upload`) removes it, and again is fine.
    #[compio::test]
    #[ignore = "needs S3 servers (GLINT_TEST_S3_*): run through ./scripts/test"]
    async fn leftovers_are_named_before_they_exist() {
        for s in servers() {
            let store = S3Store::open(&config(&s, &fresh_bucket(), |_| {}))
                .await
                .unwrap();
            let id = ImageId::new_random();
            let loc = store.location_for(&id);
            let mut up = store.create_upload(&id, None).await.unwrap();
            assert_eq!(
                up.take_leftover(),
                Some(Leftover {
                    url: loc.clone(),
                    upload: None
                })
            );
            assert_eq!(up.take_leftover(), None);
            let mut hasher = PipelinedHasher::start(
                HashAlgo::Sha256,
                BufferPool::new(1 << 20, 8),
                8,
                false,
                8 << 20,
            );
            let bytes = data(12 * (1 << 20), 8);
            let mut multipart = None;
            for piece in bytes.chunks(1 << 20) {
                let mut buf = hasher.buffer().await;
                buf.push_slice(piece);
                up.push(hasher.submit(buf, false)).await.unwrap();
                if let Some(l) = up.take_leftover() {
                    assert_eq!(l.url, loc, "{}", s.name);
                    let upload_id = l.upload.expect("a multipart upload");
                    assert_eq!(uploads_in_progress(&store).await, 1, "{}", s.name);
                    assert_eq!(
                        parts_of(&store, &id.to_string(), &upload_id).await,
                        0,
                        "{}: a part went out before its upload was named",
                        s.name
                    );
                    multipart = Some(upload_id);
                }
            }
            let upload_id = multipart.expect("the upload named its multipart upload");
            store.abort_upload(&loc, &upload_id).await.unwrap();
            assert_eq!(uploads_in_progress(&store).await, 0, "{}", s.name);
            store.abort_upload(&loc, &upload_id).await.unwrap();
            drop(up);
            hasher.finish().await.unwrap();
            assert!(
                store.abort_upload(&loc, "").await.is_err(),
                "an empty upload id is refused"
            );
            remove_bucket(&store).await;
        }
    }

    /// A wrong secret is refused at open as Denied (503), naming the store.
    #[compio::test]
    #[ignore = "needs S3 servers (GLINT_TEST_S3_*): run through ./scripts/test"]
    async fn a_wrong_secret_is_denied_naming_the_store() {
        for s in servers() {
            let cfg = config(&s, &fresh_bucket(), |o| {
                o.s3_store_secret_key = Some("not-the-secret".into());
            });
            let e = S3Store::open(&cfg).await.unwrap_err();
            assert!(matches!(e, Error::Denied(_)), "{}: {e:?}", s.name);
            assert!(e.to_string().contains("store objects"), "{e}");
            assert_eq!(e.code(), shared::error::ErrorCode::ServiceUnavailable);
        }
    }
}
