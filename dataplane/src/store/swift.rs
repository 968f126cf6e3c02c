//! The Swift store, native API, single tenant (one account, one container): glance_store's
//! `swift` driver with its option names.
//!
//! - **Auth**: tempauth/swauth (`swift_store_auth_version = "1"`: `X-Auth-User`/`X-Auth-Key`
//!   → `X-Storage-Url`, `X-Auth-Token`) or Keystone v3 password auth (project-scoped token, the
//!   `object-store` endpoint of the catalog by region and interface). The token is fetched at
//!   open and again whenever the storage answers 401 (then the request is repeated once).
//! - **Upload**: a known size up to `swift_store_large_object_size` MiB is one PUT streamed
//!   from the hashed chunks. Larger or unknown sizes become a Static Large Object: segments of
//!   `swift_store_large_object_chunk_size` MiB named `<image id>-<attempt>-<00001…>` in the
//!   same container (names no location can take: a location's object must be an image id;
//!   the attempt's random part keeps a retried upload's segments apart from a failed one's),
//!   then the manifest. Memory per upload: at most two segments (one filling, one being
//!   sent). The object and the segment prefix are [`Leftover`]s the control plane records
//!   before they can exist; a failure deletes the segments already written (and the
//!   recorded `abort_upload` job deletes any the failure could not).
//! - **Read**: ranged GETs of the object (plain, DLO or SLO: Swift assembles large objects).
//! - **Delete**: SLOs with `?multipart-manifest=delete` (their segments go too); a DLO's
//!   segments (the `X-Object-Manifest` prefix) are listed and deleted, then the manifest.
//!
//! A location is `swift+<storage url>/<container>/<image id>` (e.g.
//! `swift+https://swift.example.net/v1/AUTH_glance/glance/<id>`): it never carries
//! credentials, unlike Glance's `swift+https://user:key@auth/…` (OSSN-0065).

use super::client::{self, Body, Client, Options, Origin};
use super::{Error, Leftover};
use crate::hash::pipeline::SharedChunk;
use shared::config::stores::SwiftAuthVersion;
use shared::config::{StoreConfig, StoreKind};
use shared::image::ImageId;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// A Swift container of one account.
#[derive(Clone)]
pub struct SwiftStore(Rc<Inner>);

struct Inner {
    id: String,
    config: shared::config::stores::SwiftStore,
    key: String,
    options: Options,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    auth: Client,
    auth_url: url::Url,
    session: RefCell<Option<Session>>,
    large_object_bytes: u64,
    segment_bytes: usize,
}

/// A token and where to use it.
#[derive(Clone)]
struct Session {
    token: String,
    storage: Client,
    /// The storage URL's path (`/v1/AUTH_x`).
    account_path: String,
    /// `swift+<storage url>/<container>/`: every location of this store starts with it.
    location_prefix: String,
    /// When the token runs out, if the auth service said (Keystone's `expires_at`,
    /// tempauth's `X-Auth-Token-Expires`).
    expires: Option<std::time::SystemTime>,
}

/// A token this close to its end is replaced before use (keystoneauth's
/// `will_expire_soon` does the same), so an upload never starts with a dying one.
const TOKEN_REFRESH_BEFORE: Duration = Duration::from_secs(120);

impl fmt::Debug for SwiftStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftStore")
            .field("id", &self.0.id)
            .field("container", &self.0.config.swift_store_container)
            .finish_non_exhaustive()
    }
}

fn fail(id: &str, what: impl fmt::Display) -> Error {
    Error::Unavailable(format!("store {id}: {what}"))
}

/// Swift's answer to `what`, as a store error.
fn classify(id: &str, what: &str, status: u16) -> Error {
    let text = format!("store {id}: {what}: HTTP {status}");
    match status {
        413 | 507 => Error::Full(io::Error::other(text)),
        401 | 403 => Error::Denied(io::Error::other(text)),
        _ => Error::Unavailable(text),
    }
}

impl SwiftStore {
    /// Opens the store: authenticates, and checks the container (creating it when missing
    /// and `swift_store_create_container_on_put` is set).
    pub async fn open(cfg: &StoreConfig) -> Result<SwiftStore, Error> {
        let StoreKind::Swift(sw) = &cfg.kind else {
            return Err(fail(&cfg.id, "not a swift store"));
        };
        let key = shared::config::stores::secret(&sw.swift_store_key, &sw.swift_store_key_file)
            .map_err(|e| fail(&cfg.id, format!("reading the key: {e}")))?;
        let auth_url: url::Url = sw.swift_store_auth_address.parse().map_err(|e| {
            fail(
                &cfg.id,
                format!(
                    "swift_store_auth_address {:?}: {e}",
                    sw.swift_store_auth_address
                ),
            )
        })?;
        let tls = match sw.swift_store_cacert.as_deref() {
            _ if !needs_tls(&auth_url) && sw.swift_store_cacert.is_none() => None,
            ca => Some(client::tls_config(ca).map_err(|e| fail(&cfg.id, format!("TLS: {e}")))?),
        };
        let options = Options {
            connect_timeout: Duration::from_secs(cfg.connect_timeout_seconds),
            io_timeout: Duration::from_secs(cfg.read_timeout_seconds),
            max_idle: 4,
        };
        let origin = Origin::of(&auth_url)
            .ok_or_else(|| fail(&cfg.id, "swift_store_auth_address is not http(s)"))?;
        let store = SwiftStore(Rc::new(Inner {
            id: cfg.id.clone(),
            config: sw.clone(),
            key,
            auth: Client::new(origin, tls.clone(), options),
            options,
            tls,
            auth_url,
            session: RefCell::new(None),
            large_object_bytes: sw.swift_store_large_object_size.saturating_mul(MIB),
            segment_bytes: sw
                .swift_store_large_object_chunk_size
                .max(1)
                .saturating_mul(MIB) as usize,
        }));
        store.login().await?;
        store.check_container().await?;
        Ok(store)
    }

    fn id(&self) -> &str {
        &self.0.id
    }

    fn container(&self) -> &str {
        &self.0.config.swift_store_container
    }

    fn session(&self) -> Result<Session, Error> {
        self.0
            .session
            .borrow()
            .clone()
            .ok_or_else(|| fail(self.id(), "not authenticated"))
    }

    /// The session, logged in again first when its token is about to run out.
    async fn fresh_session(&self) -> Result<Session, Error> {
        let session = self.session()?;
        let soon = std::time::SystemTime::now() + TOKEN_REFRESH_BEFORE;
        if session.expires.is_some_and(|t| t <= soon) {
            return self.login().await;
        }
        Ok(session)
    }

    /// Gets a token and the storage URL.
    async fn login(&self) -> Result<Session, Error> {
        let (token, storage_url, expires) = match self.0.config.swift_store_auth_version {
            SwiftAuthVersion::V1 => self.login_v1().await?,
            SwiftAuthVersion::V3 => self.login_v3().await?,
        };
        let url: url::Url = storage_url
            .parse()
            .map_err(|e| fail(self.id(), format!("storage URL {storage_url:?}: {e}")))?;
        let origin = Origin::of(&url)
            .ok_or_else(|| fail(self.id(), format!("storage URL {storage_url:?}")))?;
        let tls = match &self.0.tls {
            Some(t) => Some(t.clone()),
            None if needs_tls(&url) => {
                Some(client::tls_config(None).map_err(|e| fail(self.id(), format!("TLS: {e}")))?)
            }
            None => None,
        };
        // reuse the connection pool when the storage is where it was
        let storage = match &*self.0.session.borrow() {
            Some(s) if s.storage.origin() == &origin => s.storage.clone(),
            _ => Client::new(origin, tls, self.0.options),
        };
        let account_path = url.path().trim_end_matches('/').to_owned();
        let session = Session {
            token,
            expires,
            storage,
            location_prefix: format!(
                "swift+{}/{}/",
                storage_url.trim_end_matches('/'),
                self.container()
            ),
            account_path,
        };
        *self.0.session.borrow_mut() = Some(session.clone());
        Ok(session)
    }

    async fn login_v1(&self) -> Result<(String, String, Option<std::time::SystemTime>), Error> {
        let path = self.0.auth_url.path().to_owned();
        let r = self
            .0
            .auth
            .send(
                "GET",
                &path,
                &[
                    ("X-Auth-User", &self.0.config.swift_store_user),
                    ("X-Auth-Key", &self.0.key),
                ],
                Body::Empty,
            )
            .await
            .map_err(|e| fail(self.id(), format!("auth: {e}")))?;
        let status = r.status;
        let token = r.header("x-auth-token").map(str::to_owned);
        let storage = r.header("x-storage-url").map(str::to_owned);
        let expires = r
            .header("x-auth-token-expires")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| std::time::SystemTime::now() + Duration::from_secs(secs));
        r.finish().await;
        match (status, token, storage) {
            (200..=299, Some(t), Some(s)) => Ok((t, s, expires)),
            (200..=299, ..) => Err(fail(
                self.id(),
                "auth answered without a token or storage URL",
            )),
            (status, ..) => Err(classify(self.id(), "auth", status)),
        }
    }

    async fn login_v3(&self) -> Result<(String, String, Option<std::time::SystemTime>), Error> {
        let sw = &self.0.config;
        let (project, user) = sw
            .swift_store_user
            .split_once(':')
            .unwrap_or(("", sw.swift_store_user.as_str()));
        let user_domain = sw
            .swift_store_user_domain_id
            .as_deref()
            .unwrap_or("default");
        let project_domain = sw
            .swift_store_project_domain_id
            .as_deref()
            .unwrap_or("default");
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": user_domain}, "password": self.0.key}}},
            "scope": {"project": {"name": project, "domain": {"id": project_domain}}}
        }});
        let mut bytes = serde_json::to_vec(&body).expect("JSON");
        let path = format!(
            "{}/auth/tokens",
            self.0.auth_url.path().trim_end_matches('/')
        );
        let r = self
            .0
            .auth
            .send(
                "POST",
                &path,
                &[("Content-Type", "application/json")],
                Body::Bytes(&mut bytes),
            )
            .await
            .map_err(|e| fail(self.id(), format!("Keystone: {e}")))?;
        let status = r.status;
        let token = r.header("x-subject-token").map(str::to_owned);
        let doc = r
            .read_to_end(4 << 20)
            .await
            .map_err(|e| fail(self.id(), format!("Keystone: {e}")))?;
        let (200..=299, Some(token)) = (status, token) else {
            return Err(classify(self.id(), "Keystone auth", status));
        };
        let doc: serde_json::Value = serde_json::from_slice(&doc)
            .map_err(|e| fail(self.id(), format!("Keystone answer: {e}")))?;
        let interface = match sw.swift_store_endpoint_type.as_deref() {
            Some("internalURL") | Some("internal") => "internal",
            Some("adminURL") | Some("admin") => "admin",
            _ => "public",
        };
        let url = doc["token"]["catalog"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["type"] == "object-store")
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .find(|e| {
                e["interface"] == interface
                    && sw
                        .swift_store_region
                        .as_deref()
                        .is_none_or(|r| e["region"] == r || e["region_id"] == r)
            })
            .and_then(|e| e["url"].as_str())
            .ok_or_else(|| {
                fail(
                    self.id(),
                    "no object-store endpoint in the Keystone catalog",
                )
            })?;
        let expires = doc["token"]["expires_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(std::time::SystemTime::from);
        Ok((token, url.to_owned(), expires))
    }

    /// One storage request with the token; a 401 logs in again and repeats it once.
    async fn call(
        &self,
        method: &str,
        rest: &str,
        headers: &[(&str, &str)],
        mut body: Option<&mut Vec<u8>>,
    ) -> Result<client::Response, Error> {
        let mut session = self.fresh_session().await?;
        for attempt in 0..2 {
            let target = format!("{}{rest}", session.account_path);
            let mut all: Vec<(&str, &str)> = vec![("X-Auth-Token", session.token.as_str())];
            all.extend_from_slice(headers);
            let b = match body.as_deref_mut() {
                Some(b) => Body::Bytes(b),
                None => Body::Empty,
            };
            let r = session
                .storage
                .send(method, &target, &all, b)
                .await
                .map_err(|e| fail(self.id(), format!("{method} {rest}: {e}")))?;
            if r.status == 401 && attempt == 0 {
                r.finish().await;
                session = self.login().await?;
                continue;
            }
            return Ok(r);
        }
        unreachable!("the loop returns")
    }

    async fn check_container(&self) -> Result<(), Error> {
        let rest = format!("/{}", self.container());
        let r = self.call("HEAD", &rest, &[], None).await?;
        let status = r.status;
        r.finish().await;
        match status {
            200..=299 => Ok(()),
            404 if self.0.config.swift_store_create_container_on_put => {
                let r = self.call("PUT", &rest, &[], None).await?;
                let status = r.status;
                r.finish().await;
                match status {
                    200..=299 => Ok(()),
                    s => Err(classify(self.id(), "create container", s)),
                }
            }
            404 => Err(fail(
                self.id(),
                format!(
                    "container {:?} does not exist (set swift_store_create_container_on_put)",
                    self.container()
                ),
            )),
            s => Err(classify(self.id(), "HEAD container", s)),
        }
    }

    /// The location of an image's object.
    pub fn location_for(&self, image_id: &ImageId) -> Result<String, Error> {
        Ok(format!("{}{image_id}", self.session()?.location_prefix))
    }

    /// The image a location of this store names: `<prefix><image id>` exactly, nothing else.
    pub fn key_of(&self, url: &str) -> Result<ImageId, Error> {
        let foreign = || Error::ForeignLocation(url.to_owned());
        let session = self.0.session.borrow();
        let prefix = &session.as_ref().ok_or_else(foreign)?.location_prefix;
        url.strip_prefix(prefix.as_str())
            .and_then(|k| k.parse::<ImageId>().ok())
            .ok_or_else(foreign)
    }

    fn object_path(&self, name: &str) -> String {
        format!("/{}/{name}", self.container())
    }

    /// Starts an upload of `image_id` (`size` when declared).
    pub async fn create_upload(
        &self,
        image_id: &ImageId,
        size: Option<u64>,
    ) -> Result<SwiftUpload, Error> {
        let location = self.location_for(image_id)?;
        let prefix = format!(
            "{image_id}-{}-",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut unrecorded = VecDeque::from([Leftover {
            url: location.clone(),
            upload: None,
        }]);
        let state = match size {
            Some(n) if n <= self.0.large_object_bytes => {
                let session = self.fresh_session().await?;
                let target = format!(
                    "{}{}",
                    session.account_path,
                    self.object_path(&image_id.to_string())
                );
                let req = session
                    .storage
                    .start("PUT", &target, &[("X-Auth-Token", &session.token)], n)
                    .await
                    .map_err(|e| fail(self.id(), format!("PUT {image_id}: {e}")))?;
                State::Single(Some(req))
            }
            _ => {
                unrecorded.push_back(Leftover {
                    url: location.clone(),
                    upload: Some(prefix.clone()),
                });
                State::Segments {
                    filling: Vec::new(),
                    sending: None,
                    done: Vec::new(),
                }
            }
        };
        Ok(SwiftUpload {
            store: self.clone(),
            image_id: *image_id,
            location,
            prefix,
            unrecorded,
            state,
        })
    }

    /// Opens `len` bytes from `offset` of the object at `url`.
    pub async fn get(&self, url: &str, offset: u64, len: u64) -> Result<client::Download, Error> {
        let id = self.key_of(url)?;
        if len == 0 {
            return Ok(client::Download::new(self.id(), None, 0));
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let what = format!("GET {id} {range}");
        let r = self
            .call(
                "GET",
                &self.object_path(&id.to_string()),
                &[("Range", &range)],
                None,
            )
            .await?;
        match r.status {
            200 | 206 => {}
            404 => return Err(Error::Missing(url.to_owned())),
            s => return Err(classify(self.id(), &what, s)),
        }
        client::check_range(&r, offset, len)
            .map_err(|why| fail(self.id(), format!("{what}: {why}")))?;
        Ok(client::Download::new(self.id(), Some(r), len))
    }

    /// Deletes the object at `url` (and its segments); already gone counts as deleted.
    pub async fn delete(&self, url: &str) -> Result<(), Error> {
        let id = self.key_of(url)?.to_string();
        let path = self.object_path(&id);
        let head = self.call("HEAD", &path, &[], None).await?;
        let status = head.status;
        let dlo = head.header("x-object-manifest").map(str::to_owned);
        let slo = head
            .header("x-static-large-object")
            .is_some_and(|v| v == "True" || v == "true");
        head.finish().await;
        match status {
            404 => return Ok(()),
            200..=299 => {}
            s => return Err(classify(self.id(), &format!("HEAD {id}"), s)),
        }
        // `X-Object-Manifest` is `<container>/<prefix>`, percent-encoded
        if let Some(manifest) = dlo
            && let Some((container, prefix)) = manifest.split_once('/')
        {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            self.delete_prefixed(&decode(container), &decode(prefix))
                .await?;
        }
        let rest = if slo {
            format!("{path}?multipart-manifest=delete")
        } else {
            path
        };
        self.delete_path(&rest).await
    }

    async fn delete_path(&self, rest: &str) -> Result<(), Error> {
        let r = self.call("DELETE", rest, &[], None).await?;
        let status = r.status;
        r.finish().await;
        match status {
            200..=299 | 404 => Ok(()),
            s => Err(classify(self.id(), &format!("DELETE {rest}"), s)),
        }
    }

    /// Deletes the segments a failed upload of the object at `url` wrote, named `prefix…`
    /// (its [`Leftover`]); only a prefix of that image's segment names is taken.
    pub async fn delete_segments(&self, url: &str, prefix: &str) -> Result<(), Error> {
        let id = self.key_of(url)?.to_string();
        let ok = prefix
            .strip_prefix(&id)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            });
        if !ok {
            return Err(fail(
                self.id(),
                format!("not a segment prefix of image {id}: {prefix:?}"),
            ));
        }
        let container = self.container().to_owned();
        self.delete_prefixed(&container, prefix).await
    }

    /// Deletes every object of `container` whose name starts with `prefix` (a Dynamic Large
    /// Object's segments, or a failed upload's), a listing page (at most 10,000 names) at a
    /// time.
    async fn delete_prefixed(&self, container: &str, prefix: &str) -> Result<(), Error> {
        let mut marker = String::new();
        loop {
            let rest = format!(
                "/{}?format=json&prefix={}&marker={}",
                encode(container),
                encode(prefix),
                encode(&marker)
            );
            let r = self.call("GET", &rest, &[], None).await?;
            if r.status == 404 {
                r.finish().await;
                return Ok(());
            }
            let status = r.status;
            let doc = r
                .read_to_end(16 << 20)
                .await
                .map_err(|e| fail(self.id(), format!("list segments: {e}")))?;
            if !(200..=299).contains(&status) {
                return Err(classify(self.id(), "list segments", status));
            }
            let list: Vec<serde_json::Value> = serde_json::from_slice(&doc)
                .map_err(|e| fail(self.id(), format!("list segments: {e}")))?;
            let names: Vec<&str> = list.iter().filter_map(|o| o["name"].as_str()).collect();
            let Some(last) = names.last() else {
                return Ok(());
            };
            for name in &names {
                self.delete_path(&format!("/{}/{}", encode(container), encode(name)))
                    .await?;
            }
            marker = (*last).to_owned();
        }
    }

    async fn put_segment(&self, name: &str, data: &mut Vec<u8>) -> Result<(), Error> {
        let r = self
            .call("PUT", &self.object_path(name), &[], Some(data))
            .await?;
        let status = r.status;
        r.finish().await;
        match status {
            200..=299 => Ok(()),
            s => Err(classify(self.id(), &format!("PUT segment {name}"), s)),
        }
    }
}

/// Percent-encodes a container or object name (or a query value) for a request target.
fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn needs_tls(url: &url::Url) -> bool {
    url.scheme() == "https"
}

// === impl SwiftUpload ===

/// An upload into the store: [`SwiftUpload::push`] each chunk in order, then
/// [`SwiftUpload::commit`] (or [`SwiftUpload::abort`]).
pub struct SwiftUpload {
    store: SwiftStore,
    image_id: ImageId,
    location: String,
    /// Segment names: `<image id>-<attempt>-`.
    prefix: String,
    /// What the control plane has not been told of yet ([`SwiftUpload::take_leftover`]).
    unrecorded: VecDeque<Leftover>,
    state: State,
}

enum State {
    Single(Option<client::Request>),
    Segments {
        filling: Vec<u8>,
        /// The segment being sent while the next one fills.
        sending: Option<compio::runtime::JoinHandle<Result<(String, u64), Error>>>,
        /// Segments written: name and size.
        done: Vec<(String, u64)>,
    },
}

impl fmt::Debug for SwiftUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftUpload")
            .field("image_id", &self.image_id)
            .finish_non_exhaustive()
    }
}

impl SwiftUpload {
    /// The next thing this upload may leave that the control plane has not recorded yet.
    pub fn take_leftover(&mut self) -> Option<Leftover> {
        self.unrecorded.pop_front()
    }

    /// Writes the next chunk (a single PUT's body, or into the segment filling).
    pub async fn push(&mut self, chunk: SharedChunk) -> Result<(), Error> {
        let seg = self.store.0.segment_bytes;
        match &mut self.state {
            State::Single(req) => {
                let r = req.as_mut().expect("upload already finished");
                r.write(chunk)
                    .await
                    .map_err(|e| fail(self.store.id(), format!("PUT {}: {e}", self.image_id)))
            }
            State::Segments { .. } => {
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    let State::Segments { filling, .. } = &mut self.state else {
                        unreachable!("segmented upload")
                    };
                    if filling.capacity() == 0 {
                        filling.reserve_exact(seg);
                    }
                    let take = (seg - filling.len()).min(rest.len());
                    filling.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    let full = filling.len() == seg;
                    if full {
                        self.send_segment().await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Sends the filled segment in the background once the previous one has landed.
    async fn send_segment(&mut self) -> Result<(), Error> {
        let State::Segments {
            filling,
            sending,
            done,
        } = &mut self.state
        else {
            return Ok(());
        };
        if let Some(h) = sending.take() {
            done.push(join(h).await?);
        }
        let mut data = std::mem::take(filling);
        let n = done.len() + 1;
        let name = format!("{}{n:05}", self.prefix);
        let store = self.store.clone();
        *sending = Some(compio::runtime::spawn(async move {
            let len = data.len() as u64;
            store.put_segment(&name, &mut data).await?;
            Ok((name, len))
        }));
        Ok(())
    }

    /// Finishes the upload: the single PUT's answer, or the last segment and the manifest.
    /// Returns the location.
    pub async fn commit(mut self) -> Result<String, Error> {
        let id = self.store.id().to_owned();
        match &mut self.state {
            State::Single(req) => {
                let r = req.take().expect("upload already finished");
                let r = r
                    .finish()
                    .await
                    .map_err(|e| fail(&id, format!("PUT {}: {e}", self.image_id)))?;
                let status = r.status;
                r.finish().await;
                if status == 401 {
                    // the streamed body cannot be sent again, but the next upload gets a
                    // token that works
                    if let Err(e) = self.store.login().await {
                        tracing::warn!(store = %id, error = %e, "could not log in again after a 401");
                    }
                }
                if !(200..=299).contains(&status) {
                    return Err(classify(&id, &format!("PUT {}", self.image_id), status));
                }
            }
            State::Segments { filling, .. } => {
                let last = !filling.is_empty();
                if last {
                    self.send_segment().await?;
                }
                let State::Segments { sending, done, .. } = &mut self.state else {
                    unreachable!()
                };
                if let Some(h) = sending.take() {
                    done.push(join(h).await?);
                }
                if done.is_empty() {
                    // zero bytes of unknown size: an empty plain object
                    self.store
                        .put_segment(&self.image_id.to_string(), &mut Vec::new())
                        .await?;
                } else {
                    let container = self.store.container().to_owned();
                    let manifest: Vec<serde_json::Value> = done
                        .iter()
                        .map(|(name, size)| {
                            serde_json::json!({"path": format!("/{container}/{name}"), "etag": null, "size_bytes": size})
                        })
                        .collect();
                    let mut body = serde_json::to_vec(&manifest).expect("JSON");
                    let rest = format!(
                        "{}?multipart-manifest=put",
                        self.store.object_path(&self.image_id.to_string())
                    );
                    let r = self.store.call("PUT", &rest, &[], Some(&mut body)).await?;
                    let status = r.status;
                    r.finish().await;
                    if !(200..=299).contains(&status) {
                        return Err(classify(
                            &id,
                            &format!("PUT manifest {}", self.image_id),
                            status,
                        ));
                    }
                }
            }
        }
        let location = std::mem::take(&mut self.location);
        // nothing left to clean up
        self.state = State::Single(None);
        Ok(location)
    }

    /// Drops what was written: the single PUT's connection is closed mid-body (Swift keeps
    /// nothing of it); written segments are deleted.
    pub async fn abort(mut self) {
        self.cleanup().await;
        self.state = State::Single(None);
    }

    async fn cleanup(&mut self) {
        if let State::Segments { sending, done, .. } = &mut self.state {
            if let Some(h) = sending.take()
                && let Ok(seg) = join(h).await
            {
                done.push(seg);
            }
            for (name, _) in std::mem::take(done) {
                let path = self.store.object_path(&name);
                if let Err(e) = self.store.delete_path(&path).await {
                    tracing::warn!(store = %self.store.id(), segment = %name, error = %e, "could not delete an aborted upload's segment");
                }
            }
        }
    }
}

impl Drop for SwiftUpload {
    fn drop(&mut self) {
        if let State::Segments { sending, done, .. } = &mut self.state
            && (sending.is_some() || !done.is_empty())
        {
            let mut orphan = SwiftUpload {
                store: self.store.clone(),
                image_id: self.image_id,
                location: String::new(),
                prefix: String::new(),
                unrecorded: VecDeque::new(),
                state: State::Segments {
                    filling: Vec::new(),
                    sending: sending.take(),
                    done: std::mem::take(done),
                },
            };
            compio::runtime::spawn(async move {
                orphan.cleanup().await;
                // cleaned: the orphan's own drop has nothing left to do
                drop(orphan);
            })
            .detach();
        }
    }
}

async fn join(
    h: compio::runtime::JoinHandle<Result<(String, u64), Error>>,
) -> Result<(String, u64), Error> {
    match h.await {
        Ok(r) => r,
        Err(_) => Err(Error::Io(io::Error::other("segment upload task failed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::pipeline::{BufferPool, PipelinedHasher};
    use shared::config::stores::SwiftStore as SwiftOptions;
    use shared::image::HashAlgo;

    /// A Swift endpoint with tempauth, from `GLINT_TEST_<NAME>_SWIFT_*` (the test command
    /// exports the Swift all-in-one's as `SWIFT` and radosgw's Swift API as `CEPH`).
    struct Server {
        name: &'static str,
        auth: String,
        user: String,
        key: String,
    }

    fn server(name: &'static str) -> Option<Server> {
        let var = |v: &str| std::env::var(format!("GLINT_TEST_{name}_SWIFT_{v}")).ok();
        Some(Server {
            name,
            auth: var("AUTH_URL")?,
            user: var("USER")?,
            key: var("KEY")?,
        })
    }

    fn servers() -> Vec<Server> {
        let all: Vec<Server> = ["SWIFT", "CEPH"].into_iter().filter_map(server).collect();
        assert!(
            !all.is_empty(),
            "GLINT_TEST_SWIFT_SWIFT_AUTH_URL/USER/KEY are not set: run ./scripts/test, which \
             starts the Swift servers and exports them"
        );
        all
    }

    fn config(s: &Server, container: &str) -> StoreConfig {
        StoreConfig {
            id: "cold".into(),
            description: None,
            weight: 0,
            kind: StoreKind::Swift(SwiftOptions {
                swift_store_auth_address: s.auth.clone(),
                swift_store_auth_version: SwiftAuthVersion::V1,
                swift_store_user: s.user.clone(),
                swift_store_key: Some(s.key.clone()),
                swift_store_key_file: None,
                swift_store_container: container.to_owned(),
                swift_store_create_container_on_put: true,
                swift_store_large_object_size: 2,
                swift_store_large_object_chunk_size: 1,
                swift_store_user_domain_id: None,
                swift_store_project_domain_id: None,
                swift_store_region: None,
                swift_store_endpoint_type: None,
                swift_store_cacert: None,
            }),
            connect_timeout_seconds: 5,
            read_timeout_seconds: 30,
        }
    }

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    async fn push_all(up: &mut SwiftUpload, data: &[u8]) -> Result<(), Error> {
        let pool = BufferPool::new(1 << 20, 8);
        let mut hasher = PipelinedHasher::start(HashAlgo::Sha256, pool, 8, false, 8 << 20);
        for piece in data.chunks(300_000) {
            let mut buf = hasher.buffer().await;
            buf.push_slice(piece);
            up.push(hasher.submit(buf, false)).await?;
        }
        hasher.finish().await.unwrap();
        Ok(())
    }

    async fn read(store: &SwiftStore, loc: &str, offset: u64, len: u64) -> Vec<u8> {
        let mut body = store.get(loc, offset, len).await.unwrap();
        let mut out = Vec::new();
        loop {
            let (res, b) = body.read(Vec::with_capacity(256 * 1024)).await;
            if res.unwrap() == 0 {
                break;
            }
            out.extend_from_slice(&b);
        }
        out
    }

    /// Object names in the container.
    async fn names(store: &SwiftStore) -> Vec<String> {
        let rest = format!("/{}?format=json", store.container());
        let r = store.call("GET", &rest, &[], None).await.unwrap();
        let body = r.read_to_end(1 << 20).await.unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        list.iter()
            .filter_map(|o| o["name"].as_str().map(str::to_owned))
            .collect()
    }

    async fn eventually_names(store: &SwiftStore, want: usize) -> Vec<String> {
        // container listings may lag a write or delete for a moment
        for _ in 0..50 {
            let n = names(store).await;
            if n.len() == want {
                return n;
            }
            compio::time::sleep(Duration::from_millis(100)).await;
        }
        names(store).await
    }

    /// Single PUT and Static Large Object round trips, ranges across segments, delete with
    /// segments, aborted uploads leaving no segment, a token refreshed after a 401, and
    /// locations that name only this container's image objects. On the Swift all-in-one and
    /// on radosgw's Swift API.
    #[compio::test]
    #[ignore = "needs the Swift servers: run through ./scripts/test"]
    async fn swift_store_round_trips() {
        for s in servers() {
            let container = format!("glint-test-{}", uuid::Uuid::new_v4().simple());
            let store = SwiftStore::open(&config(&s, &container))
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));

            // declared 1.5 MiB (under swift_store_large_object_size): one PUT
            let small = data(1_500_000, 1);
            let id = ImageId::new_random();
            let mut up = store
                .create_upload(&id, Some(small.len() as u64))
                .await
                .unwrap();
            push_all(&mut up, &small).await.unwrap();
            let loc = up.commit().await.unwrap();
            assert!(loc.starts_with("swift+http://"), "{loc}");
            assert!(!loc.contains(&s.key), "credentials in {loc}");
            assert_eq!(store.key_of(&loc).unwrap(), id);
            assert_eq!(read(&store, &loc, 0, small.len() as u64).await, small);

            // unknown size, 3.5 MiB in 1 MiB segments: a Static Large Object
            let big = data(3 * (1 << 20) + (1 << 19), 2);
            let id2 = ImageId::new_random();
            let mut up = store.create_upload(&id2, None).await.unwrap();
            push_all(&mut up, &big).await.unwrap();
            let loc2 = up.commit().await.unwrap();
            assert_eq!(
                read(&store, &loc2, 0, big.len() as u64).await,
                big,
                "{}",
                s.name
            );
            let across = read(&store, &loc2, (1 << 20) - 10, 20).await;
            assert_eq!(across, &big[(1 << 20) - 10..(1 << 20) + 10]);
            assert_eq!(
                eventually_names(&store, 6).await.len(),
                6,
                "{}: 2 objects + 4 segments",
                s.name
            );

            // an aborted segmented upload leaves no segment
            let id3 = ImageId::new_random();
            let mut up = store.create_upload(&id3, None).await.unwrap();
            push_all(&mut up, &big).await.unwrap();
            up.abort().await;
            assert_eq!(eventually_names(&store, 6).await.len(), 6, "{}", s.name);

            // a stale token: the next call logs in again
            if let Some(sess) = store.0.session.borrow_mut().as_mut() {
                sess.token = "AUTH_tkexpired".into();
            }
            assert_eq!(read(&store, &loc, 0, 10).await, &small[..10]);

            // delete removes the SLO's segments too; twice is fine
            store.delete(&loc2).await.unwrap();
            store.delete(&loc2).await.unwrap();
            store.delete(&loc).await.unwrap();
            assert!(matches!(
                store.get(&loc, 0, 1).await,
                Err(Error::Missing(_))
            ));
            assert!(eventually_names(&store, 0).await.is_empty(), "{}", s.name);

            // locations outside the container, or not an image id, are refused
            let prefix = loc.trim_end_matches(&id.to_string()).to_owned();
            for bad in [
                format!("{prefix}{id}-00001"),
                format!("{prefix}../other/{id}"),
                loc.replace(&container, "other"),
                format!("{prefix}{id}/x"),
                format!("swift://{id}"),
            ] {
                assert!(store.key_of(&bad).is_err(), "{bad}");
            }
            store.delete_path(&format!("/{container}")).await.unwrap();
        }
    }

    /// A wrong key is refused at open, naming the store.
    #[compio::test]
    #[ignore = "needs the Swift servers: run through ./scripts/test"]
    async fn a_wrong_key_is_named() {
        let mut s = servers().remove(0);
        s.key = "wrong".into();
        let e = SwiftStore::open(&config(&s, "glint-nope"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Denied(_)), "{e}");
        assert!(e.to_string().contains("cold"), "{e}");
    }

    /// A Dynamic Large Object as older Glance wrote them (glance_store's `swift` driver:
    /// segments `<image id>-00001…`, then a manifest `X-Object-Manifest: <container>/<image
    /// id>-`), made with raw requests: read whole and by ranges crossing segment boundaries,
    /// then deleted with its segments. Once with the segments in the image's container, once
    /// in a container of their own (the manifest may name any container of the account).
    #[compio::test]
    #[ignore = "needs the Swift servers: run through ./scripts/test"]
    async fn dynamic_large_objects_are_read_and_deleted_with_their_segments() {
        let s = server("SWIFT").expect(
            "GLINT_TEST_SWIFT_SWIFT_AUTH_URL/USER/KEY are not set: run ./scripts/test, which \
             starts the Swift all-in-one and exports it",
        );
        let container = format!("glint-dlo-{}", uuid::Uuid::new_v4().simple());
        let elsewhere = format!("{container}_segments");
        let store = SwiftStore::open(&config(&s, &container)).await.unwrap();
        let put = |path: String, headers: Vec<(&'static str, String)>, mut body: Vec<u8>| {
            let store = store.clone();
            async move {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = store.call("PUT", &path, &h, Some(&mut body)).await.unwrap();
                let status = r.status;
                r.finish().await;
                assert!((200..=299).contains(&status), "PUT {path}: {status}");
            }
        };
        put(format!("/{elsewhere}"), Vec::new(), Vec::new()).await;
        // uneven segments, so that every boundary is somewhere else
        let sizes = [700_000usize, 1 << 20, 333_333, 1];
        for segments in [&container, &elsewhere] {
            let id = ImageId::new_random();
            let whole = data(sizes.iter().sum(), 7);
            let mut at = 0;
            for (n, len) in sizes.iter().enumerate() {
                let name = format!("{id}-{:05}", n + 1);
                put(
                    format!("/{segments}/{name}"),
                    Vec::new(),
                    whole[at..at + len].to_vec(),
                )
                .await;
                at += len;
            }
            let manifest = format!("{segments}/{id}-");
            put(
                format!("/{container}/{id}"),
                vec![("X-Object-Manifest", manifest)],
                Vec::new(),
            )
            .await;
            let loc = store.location_for(&id).unwrap();
            assert_eq!(store.key_of(&loc).unwrap(), id);
            // Swift lists a new object a moment after writing it, and a DLO is its listing
            let total = whole.len() as u64;
            for _ in 0..50 {
                let r = store
                    .call("HEAD", &store.object_path(&id.to_string()), &[], None)
                    .await
                    .unwrap();
                let len = r.content_length();
                r.finish().await;
                if len == Some(total) {
                    break;
                }
                compio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(read(&store, &loc, 0, total).await == whole, "{segments}");
            let b1 = sizes[0] as u64;
            let b2 = b1 + sizes[1] as u64;
            let b3 = b2 + sizes[2] as u64;
            for (offset, len) in [
                (b1 - 10, 20),         // first/second segment
                (b1 - 1, b2 - b1 + 2), // across both ends of the second
                (100, total - 100),    // every segment from inside the first
                (b2 - 5, 6),           // the second's last five bytes, the third's first
                (b3 - 2, 3),           // into the one-byte last segment
                (total - 1, 1),        // the last byte alone
                (b2, sizes[2] as u64), // exactly the third
            ] {
                let got = read(&store, &loc, offset, len).await;
                let (o, l) = (offset as usize, len as usize);
                assert!(got == whole[o..o + l], "{segments}: {offset}+{len}");
            }

            store.delete(&loc).await.unwrap();
            assert!(matches!(
                store.get(&loc, 0, 1).await,
                Err(Error::Missing(_))
            ));
            // the manifest and every segment, wherever they were
            assert!(eventually_names(&store, 0).await.is_empty(), "{segments}");
            let left = segment_names(&store, &elsewhere).await;
            assert!(left.is_empty(), "{segments}: left {left:?}");
            // a deleted DLO deletes again quietly
            store.delete(&loc).await.unwrap();
        }
        store.delete_path(&format!("/{elsewhere}")).await.unwrap();
        store.delete_path(&format!("/{container}")).await.unwrap();
    }

    /// Object names in another container of the account (waits for the listing to empty).
    async fn segment_names(store: &SwiftStore, container: &str) -> Vec<String> {
        let list = || async {
            let r = store
                .call("GET", &format!("/{container}?format=json"), &[], None)
                .await
                .unwrap();
            let body = r.read_to_end(1 << 20).await.unwrap();
            let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
            list.iter()
                .filter_map(|o| o["name"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        for _ in 0..50 {
            let n = list().await;
            if n.is_empty() {
                return n;
            }
            compio::time::sleep(Duration::from_millis(100)).await;
        }
        list().await
    }

    /// A single PUT refused with 401 (the token expired or was revoked) cannot be repeated (its
    /// body was streamed), but the driver logs in again so that the next upload is stored; and a
    /// token about to run out is replaced before an upload starts.
    #[compio::test]
    #[ignore = "needs the Swift servers: run through ./scripts/test"]
    async fn a_single_put_refused_with_401_logs_in_again_for_the_next() {
        let s = server("SWIFT").expect(
            "GLINT_TEST_SWIFT_SWIFT_AUTH_URL/USER/KEY are not set: run ./scripts/test, which \
             starts the Swift all-in-one and exports it",
        );
        let container = format!("glint-401-{}", uuid::Uuid::new_v4().simple());
        let store = SwiftStore::open(&config(&s, &container)).await.unwrap();
        let small = data(100_000, 5);
        let put = |id: ImageId| {
            let store = store.clone();
            let small = small.clone();
            async move {
                let mut up = store.create_upload(&id, Some(small.len() as u64)).await?;
                push_all(&mut up, &small).await?;
                up.commit().await
            }
        };
        // the token goes stale (expired or revoked)
        if let Some(sess) = store.0.session.borrow_mut().as_mut() {
            sess.token = "AUTH_tkexpired".into();
        }
        let refused = put(ImageId::new_random()).await;
        if let Err(e) = &refused {
            assert!(matches!(e, Error::Denied(_)), "{e}");
        }
        let next = put(ImageId::new_random()).await;
        // clean up first (`delete` goes through `call`, which logs in again)
        for loc in [&refused, &next].into_iter().flatten() {
            store.delete(loc).await.unwrap();
        }
        assert!(eventually_names(&store, 0).await.is_empty());
        let next = next.map(|loc| store.key_of(&loc).unwrap());
        assert!(next.is_ok(), "the driver kept the refused token: {next:?}");

        // a token said to expire within the refresh margin is not used
        if let Some(sess) = store.0.session.borrow_mut().as_mut() {
            sess.token = "AUTH_tkexpiring".into();
            sess.expires = Some(std::time::SystemTime::now() + Duration::from_secs(30));
        }
        let loc = put(ImageId::new_random())
            .await
            .expect("stored with a fresh token");
        assert!(store.session().unwrap().token != "AUTH_tkexpiring");
        assert!(
            store.session().unwrap().expires.is_some(),
            "tempauth says when its token runs out"
        );
        store.delete(&loc).await.unwrap();
        store.delete_path(&format!("/{container}")).await.unwrap();
    }

    /// A segmented upload names its object and its attempt's segment prefix before writing;
    /// the job's `delete_segments` removes that attempt's segments (and only a prefix of that
    /// image's segment names is taken).
    #[compio::test]
    #[ignore = "needs the Swift servers: run through ./scripts/test"]
    async fn an_uploads_segments_are_named_and_removed_by_their_prefix() {
        let s = servers().remove(0);
        let container = format!("glint-left-{}", uuid::Uuid::new_v4().simple());
        let store = SwiftStore::open(&config(&s, &container)).await.unwrap();
        let id = ImageId::new_random();
        let loc = store.location_for(&id).unwrap();
        let mut up = store.create_upload(&id, None).await.unwrap();
        let object = up.take_leftover().unwrap();
        let segments = up.take_leftover().unwrap();
        assert_eq!(up.take_leftover(), None);
        assert_eq!((object.url.as_str(), object.upload), (loc.as_str(), None));
        assert_eq!(segments.url, loc);
        let prefix = segments.upload.unwrap();
        assert!(
            prefix.starts_with(&format!("{id}-")) && prefix.ends_with('-'),
            "{prefix}"
        );
        push_all(&mut up, &data(3 << 20, 9)).await.unwrap();
        // as if the data plane died here: nothing cleans up but the job
        std::mem::forget(up);
        let written = eventually_names(&store, 2).await;
        assert!(written.len() >= 2, "{written:?}");
        assert!(
            written.iter().all(|n| n.starts_with(&prefix)),
            "{written:?}"
        );
        for bad in [
            format!("{}-", ImageId::new_random()),
            format!("{id}-"),
            format!("{id}-../x"),
            format!("{id}"),
        ] {
            assert!(store.delete_segments(&loc, &bad).await.is_err(), "{bad}");
        }
        store.delete_segments(&loc, &prefix).await.unwrap();
        assert!(eventually_names(&store, 0).await.is_empty());
        store.delete_segments(&loc, &prefix).await.unwrap();
        store.delete_path(&format!("/{container}")).await.unwrap();
    }
}
