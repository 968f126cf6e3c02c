//! Image data stores: the data plane owns every image byte (read, write, delete).
//!
//! One driver per store type, dispatched by enum ([`Store`]): compio's futures are `!Send`,
//! and the set of types is closed. Shaped like glance_store's drivers: an upload
//! ([`Store::create_upload`] → [`Upload::push`] each hashed buffer in order →
//! [`Upload::commit`] returns the location, or [`Upload::abort`]); a read of a location at an
//! offset ([`Store::open`]: a local file descriptor where there is one, so downloads keep
//! `sendfile`, a stream otherwise); and delete.
//!
//! [`Stores`] holds every configured store of one worker thread (remote drivers keep
//! per-thread connection pools). A location names its store by id; a location whose id is no
//! longer configured (or came from before multi-store) is served by the store whose driver
//! claims its URL ([`Stores::for_location`]). Each driver refuses a URL outside its own
//! directory, bucket or container, so no location can address anything else.
//!
//! What an upload may leave in a store if it never commits (the object at its location, an
//! S3 multipart upload, Swift segments) is a [`Leftover`]: the upload handler takes each from
//! [`Upload::take_leftover`] after creating the upload and after every push, and records it
//! with the control plane (`UploadLeftover`) before the upload goes on, so the driver never
//! writes anything unrecorded. A failed upload removes its own multipart upload or segments
//! at once (they are its own, whatever happens next); the object at the location is removed
//! only by the job the control plane makes of the record ([`Store::abort_leftover`]), since a
//! later upload of the same image may own it by then.
//!
//! Drivers: [`fs`] (the filesystem), [`s3`], [`swift`], [`http`] (read-only), [`rbd`] (Ceph,
//! through librbd); the HTTP ones' connections come from [`client`].

pub mod client;
pub mod fs;
pub mod http;
pub mod rbd;
pub mod s3;
pub mod swift;

use crate::hash::pipeline::SharedChunk;
use shared::config::{StoreConfig, StoreKind, StoreSet};
use shared::image::ImageId;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Store failures, classified so the caller can pick Glance's status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store is full (413).
    #[error("store full: {0}")]
    Full(std::io::Error),
    /// The store refused the write (503).
    #[error("store write denied: {0}")]
    Denied(std::io::Error),
    /// The location is not one this store serves.
    #[error("location {0:?} is not in this store")]
    ForeignLocation(String),
    /// The data at a location is missing.
    #[error("no data at location {0:?}")]
    Missing(String),
    /// The store cannot be reached or failed (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The data is in use outside glint (clones of an RBD snapshot) and was kept (409).
    #[error("in use: {0}")]
    InUse(String),
    /// Any other I/O failure.
    #[error("store I/O error: {0}")]
    Io(std::io::Error),
}

impl Error {
    /// Classifies an I/O error from a write path.
    pub fn from_write(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => Error::Full(e),
            Some(code) if code == rustix::io::Errno::DQUOT.raw_os_error() => Error::Full(e),
            Some(code)
                if code == rustix::io::Errno::ACCESS.raw_os_error()
                    || code == rustix::io::Errno::PERM.raw_os_error()
                    || code == rustix::io::Errno::ROFS.raw_os_error() =>
            {
                Error::Denied(e)
            }
            _ => Error::Io(e),
        }
    }

    /// The channel error code Glance answers with for this failure.
    pub fn code(&self) -> shared::error::ErrorCode {
        use shared::error::ErrorCode;
        match self {
            Error::Full(_) => ErrorCode::PayloadTooLarge,
            Error::Denied(_) | Error::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Error::ForeignLocation(_) | Error::Missing(_) => ErrorCode::ServiceUnavailable,
            Error::InUse(_) => ErrorCode::Conflict,
            Error::Io(_) => ErrorCode::Internal,
        }
    }
}

/// One store's driver.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory.
    File(fs::FsStore),
    /// An S3 bucket.
    S3(s3::S3Store),
    /// A Swift container.
    Swift(swift::SwiftStore),
    /// Read-only HTTP(S) locations.
    Http(http::HttpStore),
    /// A Ceph RBD pool.
    Rbd(rbd::RbdStore),
}

/// Store writes one filesystem upload may have in flight before reading waits for the oldest.
const MAX_FILE_WRITES: usize = 2;

/// Something an upload may leave in its store if it never commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The location the upload writes.
    pub url: String,
    /// An S3 multipart upload id, a Swift segment name prefix; `None`: the object at `url`.
    pub upload: Option<String>,
}

/// An upload being written.
#[derive(Debug)]
pub enum Upload {
    /// Into a temp file of a filesystem store.
    File(FileUpload),
    /// Into an S3 object (single PUT or multipart).
    S3(s3::S3Upload),
    /// Into a Swift object (single PUT or a Static Large Object).
    Swift(swift::SwiftUpload),
    /// Into an RBD image.
    Rbd(rbd::RbdUpload),
}

/// A filesystem upload and its writes in flight: each runs as a task of its own while the
/// next buffer is read; the oldest is awaited once [`MAX_FILE_WRITES`] are in flight.
#[derive(Debug)]
pub struct FileUpload {
    store: fs::FsStore,
    upload: fs::Upload,
    offset: u64,
    writes: VecDeque<compio::runtime::JoinHandle<std::io::Result<()>>>,
    /// The file at the location, once renamed into place, until recorded.
    leftover: Option<Leftover>,
}

impl FileUpload {
    fn check<E>(joined: Result<std::io::Result<()>, E>) -> Result<(), Error> {
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from_write(e)),
            Err(_) => Err(Error::Io(std::io::Error::other("store write task failed"))),
        }
    }

    async fn drain(&mut self) -> Result<(), Error> {
        while let Some(h) = self.writes.pop_front() {
            Self::check(h.await)?;
        }
        Ok(())
    }
}

impl Upload {
    /// The next thing this upload may leave behind that the control plane has not been told
    /// of yet; the caller records it before pushing more.
    pub fn take_leftover(&mut self) -> Option<Leftover> {
        match self {
            Upload::File(f) => f.leftover.take(),
            Upload::S3(u) => u.take_leftover(),
            Upload::Swift(u) => u.take_leftover(),
            Upload::Rbd(u) => u.take_leftover(),
        }
    }

    /// Goes on with what waited for its leftovers to be recorded (an S3 upload's chunk that
    /// created the multipart upload). May wait for earlier writes.
    pub async fn resume(&mut self) -> Result<(), Error> {
        match self {
            Upload::S3(u) => u.resume().await,
            Upload::File(_) | Upload::Swift(_) | Upload::Rbd(_) => Ok(()),
        }
    }

    /// Whether every buffer but the last must be whole [`crate::io::ALIGN`] blocks and the
    /// last zero-padded (a filesystem upload written with `O_DIRECT`).
    pub fn direct(&self) -> bool {
        match self {
            Upload::File(f) => f.upload.direct(),
            Upload::S3(_) | Upload::Swift(_) | Upload::Rbd(_) => false,
        }
    }

    /// Hands over the next hashed buffer (in order; its real length is `len`, which is less
    /// than the chunk only for a padded direct write). May wait for earlier writes.
    pub async fn push(&mut self, chunk: SharedChunk, len: usize) -> Result<(), Error> {
        match self {
            Upload::File(f) => {
                let write = f.upload.write_at(chunk, f.offset);
                f.offset += len as u64;
                f.writes.push_back(compio::runtime::spawn(write));
                while f.writes.len() > MAX_FILE_WRITES
                    || f.writes.front().is_some_and(|h| h.is_finished())
                {
                    if let Some(h) = f.writes.pop_front() {
                        FileUpload::check(h.await)?;
                    }
                }
                Ok(())
            }
            Upload::S3(u) => u.push(chunk).await,
            Upload::Swift(u) => u.push(chunk).await,
            Upload::Rbd(u) => u.push(chunk).await,
        }
    }

    /// Waits for every write, makes the data durable, and returns its location.
    pub async fn commit(self, size: u64) -> Result<String, Error> {
        match self {
            Upload::File(mut f) => {
                f.drain().await?;
                f.store.commit(f.upload, size).await
            }
            Upload::S3(u) => u.commit().await,
            Upload::Swift(u) => u.commit().await,
            Upload::Rbd(u) => u.commit().await,
        }
    }

    /// Drops what was written (a temp file, parts, an object).
    pub async fn abort(self) {
        match self {
            Upload::File(mut f) => {
                // let the writes end before the temp file is removed (on drop)
                let _ = f.drain().await;
            }
            Upload::S3(u) => u.abort().await,
            Upload::Swift(u) => u.abort().await,
            Upload::Rbd(u) => u.abort().await,
        }
    }
}

/// A byte range of a remote location being read (every remote store's reader).
pub type Reader = client::Download;

impl Store {
    /// Whether `url` is a location of this store.
    pub fn claims(&self, url: &str) -> bool {
        match self {
            Store::File(f) => f.resolve_id(url).is_ok(),
            Store::S3(s) => s.key_of(url).is_ok(),
            Store::Swift(s) => s.key_of(url).is_ok(),
            Store::Http(s) => s.claims(url),
            Store::Rbd(s) => s.claims(url),
        }
    }

    /// Starts an upload of `image_id` (`size` when the client declared it).
    pub async fn create_upload(
        &self,
        image_id: &ImageId,
        size: Option<u64>,
    ) -> Result<Upload, Error> {
        match self {
            Store::File(f) => Ok(Upload::File(FileUpload {
                store: f.clone(),
                upload: f.create_upload(image_id).await?,
                offset: 0,
                writes: VecDeque::new(),
                leftover: Some(Leftover {
                    url: f.location_for(image_id),
                    upload: None,
                }),
            })),
            Store::S3(s) => Ok(Upload::S3(s.create_upload(image_id, size).await?)),
            Store::Swift(s) => Ok(Upload::Swift(s.create_upload(image_id, size).await?)),
            Store::Rbd(s) => Ok(Upload::Rbd(s.create_upload(image_id, size))),
            Store::Http(_) => Err(Error::Denied(std::io::Error::other(
                shared::error::STORE_ADD_DISABLED,
            ))),
        }
    }

    /// Reads `len` bytes of a remote location from `offset` (a local file is opened with
    /// [`fs::FsStore::open_read`] instead).
    pub async fn read(&self, url: &str, offset: u64, len: u64) -> Result<Reader, Error> {
        match self {
            Store::File(_) => Err(Error::ForeignLocation(url.to_owned())),
            Store::S3(s) => s.get(url, offset, len).await,
            Store::Swift(s) => s.get(url, offset, len).await,
            Store::Http(s) => s.get(url, offset, len).await,
            Store::Rbd(s) => s.get(url, offset, len).await,
        }
    }

    /// Deletes the data at `url` (already gone counts as deleted).
    pub async fn delete(&self, url: &str) -> Result<(), Error> {
        match self {
            Store::File(f) => f.delete(url),
            Store::S3(s) => s.delete(url).await,
            Store::Swift(s) => s.delete(url).await,
            // Glance leaves the data of an HTTP location alone
            Store::Http(_) => Ok(()),
            Store::Rbd(s) => s.delete(url).await,
        }
    }

    /// Removes what a failed upload left ([`Leftover`]): with `upload`, that multipart upload
    /// or those segments; without, the object at `url`. Already gone counts as done.
    pub async fn abort_leftover(&self, url: &str, upload: Option<&str>) -> Result<(), Error> {
        match (self, upload) {
            (_, None) => self.delete(url).await,
            (Store::S3(s), Some(id)) => s.abort_upload(url, id).await,
            (Store::Swift(s), Some(prefix)) => s.delete_segments(url, prefix).await,
            // nothing of a filesystem, HTTP or RBD upload is named apart from its location
            (Store::File(_) | Store::Http(_) | Store::Rbd(_), Some(_)) => Ok(()),
        }
    }

    /// The bytes at `url` (a location added through the API: its size is read from the
    /// store). The stores whose locations can be added (HTTP, RBD) answer; others refuse.
    pub async fn size(&self, url: &str) -> Result<u64, Error> {
        match self {
            Store::Http(s) => s.size(url).await,
            Store::Rbd(s) => s.size(url).await,
            _ => Err(Error::ForeignLocation(url.to_owned())),
        }
    }

    /// Whether the data at `url` is in use outside glint, so a delete would be refused
    /// (clones of an RBD snapshot); other stores never are.
    pub async fn in_use(&self, url: &str) -> Result<bool, Error> {
        match self {
            Store::Rbd(s) => s.in_use(url).await,
            _ => Ok(false),
        }
    }

    /// Whether reads are local files (opened without a round trip).
    pub fn is_local(&self) -> bool {
        matches!(self, Store::File(_))
    }
}

/// A configured store and its driver, or why the driver is not up.
#[derive(Debug)]
struct Slot {
    config: StoreConfig,
    state: RefCell<State>,
}

#[derive(Debug)]
enum State {
    Up(Store),
    /// Opening failed; tried again at the first use after `retry_at`.
    Down {
        error: String,
        retry_at: Instant,
    },
}

/// How long a store that failed to open is left alone before the next attempt.
const RETRY_OPEN: Duration = Duration::from_secs(5);

/// Every store of one worker thread.
#[derive(Debug)]
pub struct Stores {
    slots: Vec<Slot>,
    default: usize,
}

/// The stores opened once per process (filesystem stores: a directory each), before the
/// workers open their remote drivers ([`Prepared::open`]).
#[derive(Debug, Clone)]
pub struct Prepared {
    set: StoreSet,
    files: Vec<Option<fs::FsStore>>,
}

impl Prepared {
    /// Opens the filesystem stores (creating their directories) and removes the temp files of
    /// uploads a crash interrupted.
    pub fn new(set: StoreSet) -> Result<Prepared, crate::Error> {
        let mut files = Vec::with_capacity(set.stores.len());
        for s in &set.stores {
            files.push(match &s.kind {
                StoreKind::File(f) => {
                    let dir = &f.filesystem_store_datadir;
                    let store = fs::FsStore::open(dir, f.upload_direct_io).map_err(|source| {
                        crate::Error::Store {
                            path: dir.clone(),
                            source,
                        }
                    })?;
                    Some(store)
                }
                _ => None,
            });
        }
        Ok(Prepared { set, files })
    }

    /// The stores of `config`, and the staging store when an import method is enabled
    /// ([`shared::config::Config::staging_store`]).
    pub fn for_config(config: &shared::config::Config) -> Result<Prepared, crate::Error> {
        let mut set = config.stores();
        if config.import_on() {
            set.stores.push(config.staging_store());
        }
        Prepared::new(set)
    }

    /// Removes temp files of interrupted uploads from every filesystem store.
    pub fn sweep_temp(&self) -> usize {
        self.files
            .iter()
            .flatten()
            .map(|f| f.sweep_temp().unwrap_or(0))
            .sum()
    }

    /// The store ids, in configuration order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.set.stores.iter().map(|s| s.id.as_str())
    }

    /// The stores, for log lines.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .set
            .stores
            .iter()
            .map(|s| format!("{}:{}", s.id, s.type_name()))
            .collect();
        names.join(",")
    }

    /// A worker's stores: the filesystem stores shared, remote drivers opened on this thread.
    /// A store that cannot be opened is logged by name and tried again later; the others work.
    pub async fn open(&self) -> Stores {
        let mut slots = Vec::with_capacity(self.set.stores.len());
        for (config, file) in self.set.stores.iter().zip(&self.files) {
            let state = match file {
                Some(f) => State::Up(Store::File(f.clone())),
                None => open_remote(config).await,
            };
            slots.push(Slot {
                config: config.clone(),
                state: RefCell::new(state),
            });
        }
        let default = self
            .set
            .stores
            .iter()
            .position(|s| s.id == self.set.default)
            .unwrap_or(0);
        Stores { slots, default }
    }
}

async fn open_remote(config: &StoreConfig) -> State {
    let opened = match &config.kind {
        StoreKind::S3(_) => s3::S3Store::open(config).await.map(Store::S3),
        StoreKind::Swift(_) => swift::SwiftStore::open(config).await.map(Store::Swift),
        StoreKind::Http(_) => http::HttpStore::open(config).map(Store::Http),
        StoreKind::Rbd(_) => rbd::RbdStore::open(config).await.map(Store::Rbd),
        StoreKind::File(_) => unreachable!("filesystem stores are opened once per process"),
    };
    match opened {
        Ok(store) => State::Up(store),
        Err(e) => {
            tracing::error!(store = %config.id, error = %e, "store unavailable; the other stores keep working");
            State::Down {
                error: e.to_string(),
                retry_at: Instant::now() + RETRY_OPEN,
            }
        }
    }
}

impl Stores {
    /// The store with this id, if configured, opening its driver again if it was down.
    pub async fn get(&self, id: &str) -> Option<Result<Store, Error>> {
        let i = self.slots.iter().position(|s| s.config.id == id)?;
        Some(self.slot(i).await)
    }

    /// The staging store (`os_glance_staging_store`), when an import method is enabled.
    pub fn staging(&self) -> Option<fs::FsStore> {
        let slot = self
            .slots
            .iter()
            .find(|s| s.config.id == shared::config::STAGING_STORE)?;
        match &*slot.state.borrow() {
            State::Up(Store::File(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The metrics slot of the store with this id (`glint_dp_transfer_bytes_total{store}`;
    /// a store this node lacks counts as `other`).
    pub fn metric_slot(&self, id: &str) -> usize {
        shared::metrics::shm::store_slot(self.slots.iter().position(|s| s.config.id == id))
    }

    /// The default store's id.
    pub fn default_id(&self) -> &str {
        &self.slots[self.default].config.id
    }

    /// The configuration of a store.
    pub fn config(&self, id: &str) -> Option<&StoreConfig> {
        self.slots.iter().map(|s| &s.config).find(|c| c.id == id)
    }

    /// The store serving a location: the one named `store` if it claims the URL, else any
    /// store that does. Only stores that are up are asked.
    pub fn for_location(&self, store: &str, url: &str) -> Option<Store> {
        let up = |s: &Slot| match &*s.state.borrow() {
            State::Up(st) if st.claims(url) => Some(st.clone()),
            _ => None,
        };
        self.slots
            .iter()
            .filter(|s| s.config.id == store)
            .chain(self.slots.iter().filter(|s| s.config.id != store))
            .find_map(up)
    }

    /// Opens a location of a filesystem store for reading, without allocating (the download
    /// path): `None` when no filesystem store serves it.
    pub fn open_local(
        &self,
        store: &str,
        url: &str,
    ) -> Option<Result<(std::fs::File, u64), Error>> {
        let open = |s: &Slot| match &*s.state.borrow() {
            State::Up(Store::File(f)) if f.resolve_id(url).is_ok() => Some(f.open_read(url)),
            _ => None,
        };
        self.slots
            .iter()
            .filter(|s| s.config.id == store)
            .chain(self.slots.iter().filter(|s| s.config.id != store))
            .find_map(open)
    }

    /// The store serving a location, opening drivers that were down (jobs, failover).
    pub async fn resolve(&self, store: &str, url: &str) -> Result<Store, Error> {
        if let Some(s) = self.for_location(store, url) {
            return Ok(s);
        }
        for i in 0..self.slots.len() {
            if let Ok(s) = self.slot(i).await
                && s.claims(url)
            {
                return Ok(s);
            }
        }
        Err(Error::ForeignLocation(url.to_owned()))
    }

    async fn slot(&self, i: usize) -> Result<Store, Error> {
        let slot = &self.slots[i];
        let retry = match &*slot.state.borrow() {
            State::Up(s) => return Ok(s.clone()),
            State::Down { error, retry_at } => {
                if Instant::now() < *retry_at {
                    return Err(Error::Unavailable(format!(
                        "store {}: {error}",
                        slot.config.id
                    )));
                }
                true
            }
        };
        if retry {
            let state = open_remote(&slot.config).await;
            if matches!(state, State::Up(_)) {
                tracing::info!(store = %slot.config.id, "store is up again");
            }
            *slot.state.borrow_mut() = state;
        }
        match &*slot.state.borrow() {
            State::Up(s) => Ok(s.clone()),
            State::Down { error, .. } => Err(Error::Unavailable(format!(
                "store {}: {error}",
                slot.config.id
            ))),
        }
    }
}
