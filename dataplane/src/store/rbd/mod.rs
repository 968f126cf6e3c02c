//! The Ceph RBD store (glance_store's `rbd` driver): each image is an RBD image named by its
//! id in `rbd_store_pool`, with a protected snapshot `snap` that Nova and Cinder clone
//! copy-on-write; its location is `rbd://<fsid>/<pool>/<image id>/snap`.
//!
//! - **Upload**: the RBD image is made at the first buffer (after the control plane recorded
//!   the location as the upload's leftover, so a crash leaves nothing unrecorded), at the
//!   declared size, or grown ahead as data arrives when the size is unknown (doubling, at
//!   most 1 GiB at a time, cut to the exact size at commit). Each hashed buffer is written
//!   as the pipeline releases it, a few writes in flight; with `rbd_thin_provisioning` a
//!   buffer of zeros is not written (those objects stay unallocated). Commit flushes, makes
//!   and protects `snap`. A failed upload removes its RBD image.
//! - **Read** at any offset, from the snapshot (ranges, cache fills).
//! - **Delete** unprotects and removes the snapshot, then the image; while clones of the
//!   snapshot exist librbd refuses the unprotect and the store answers [`Error::InUse`]
//!   (Glance's 409 "image in use"), leaving the image whole. [`RbdStore::in_use`] asks the
//!   same without changing anything (the data plane checks it before forwarding a delete).
//!
//! Every librbd call blocks, so each runs on compio's blocking pool (`spawn_blocking`),
//! never on a data-plane worker; [`ffi`] is the C layer. Each worker thread holds its own
//! cluster connection, as the other remote drivers hold their connection pools per thread.

pub mod ffi;

use super::{Error, Leftover};
use crate::hash::pipeline::SharedChunk;
use shared::config::{StoreConfig, StoreKind};
use shared::image::ImageId;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

/// The snapshot every image gets (glance_store's `DEFAULT_SNAPNAME`).
pub const SNAPSHOT: &str = "snap";
/// Writes of one upload in flight before the next buffer waits for the oldest (the upload
/// pipeline holds 8 buffers: the others are being read and hashed).
const MAX_WRITES: usize = 6;
/// The most an image of unknown size is grown ahead at once.
const MAX_GROWTH: u64 = 1 << 30;

/// A pool of a Ceph cluster.
#[derive(Clone)]
pub struct RbdStore(Arc<Inner>);

struct Inner {
    id: String,
    fsid: String,
    pool_name: String,
    pool: Arc<ffi::Pool>,
    /// log2 of the object size.
    order: u32,
    thin: bool,
}

impl std::fmt::Debug for RbdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdStore")
            .field("id", &self.0.id)
            .field("pool", &self.0.pool_name)
            .finish()
    }
}

/// Runs a blocking librbd call off the worker thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    compio::runtime::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("librbd call panicked")))
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

impl RbdStore {
    /// Connects to the cluster of `cfg` and opens its pool (blocking work, off the worker).
    pub async fn open(cfg: &StoreConfig) -> Result<RbdStore, Error> {
        let StoreKind::Rbd(r) = &cfg.kind else {
            return Err(Error::Unavailable(format!(
                "store {}: not an rbd store",
                cfg.id
            )));
        };
        let (r, id) = (r.clone(), cfg.id.clone());
        let timeouts = [
            (
                "client_mount_timeout",
                cfg.connect_timeout_seconds.to_string(),
            ),
            ("rados_mon_op_timeout", cfg.read_timeout_seconds.to_string()),
            ("rados_osd_op_timeout", cfg.read_timeout_seconds.to_string()),
        ];
        let what = format!("store {id} (rbd pool {})", r.rbd_store_pool);
        let opened = blocking(move || {
            let conf = r
                .rbd_store_ceph_conf
                .as_ref()
                .map(|p| p.display().to_string());
            let opts: Vec<(&str, String)> = timeouts.to_vec();
            let cluster = Arc::new(ffi::Cluster::connect(
                r.rbd_store_user.as_deref(),
                conf.as_deref(),
                &opts,
            )?);
            let fsid = cluster.fsid()?;
            let pool = cluster.pool(&r.rbd_store_pool).map_err(|e| {
                if errno(&e) == libc::ENOENT {
                    io::Error::new(io::ErrorKind::NotFound, "the pool does not exist")
                } else {
                    e
                }
            })?;
            Ok(Inner {
                id,
                fsid,
                pool_name: r.rbd_store_pool.clone(),
                pool: Arc::new(pool),
                order: (r.rbd_store_chunk_size << 20).trailing_zeros(),
                thin: r.rbd_thin_provisioning,
            })
        })
        .await
        .map_err(|e| Error::Unavailable(format!("{what}: {e}")))?;
        Ok(RbdStore(Arc::new(opened)))
    }

    /// The location of image `name`'s snapshot.
    pub fn location_for(&self, name: &str) -> String {
        format!(
            "rbd://{}/{}/{}/{SNAPSHOT}",
            self.0.fsid,
            enc(&self.0.pool_name),
            enc(name)
        )
    }

    /// The image name and snapshot of a location of this store: `rbd://<fsid>/<pool>/<image>/<snap>`
    /// of this cluster and pool, or the legacy `rbd://<image>`.
    pub fn parse(&self, url: &str) -> Result<(String, Option<String>), Error> {
        let foreign = || Error::ForeignLocation(url.to_owned());
        let rest = url.strip_prefix("rbd://").ok_or_else(foreign)?;
        let parts: Vec<String> = rest
            .split('/')
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8()
                    .map(|s| s.into_owned())
            })
            .collect::<Result<_, _>>()
            .map_err(|_| foreign())?;
        let ok = |s: &str| !s.is_empty() && !s.contains('\0');
        match parts.as_slice() {
            [image] if ok(image) => Ok((image.clone(), None)),
            [fsid, pool, image, snap]
                if *fsid == self.0.fsid && *pool == self.0.pool_name && ok(image) && ok(snap) =>
            {
                Ok((image.clone(), Some(snap.clone())))
            }
            _ => Err(foreign()),
        }
    }

    /// Whether `url` is a location of this store.
    pub fn claims(&self, url: &str) -> bool {
        self.parse(url).is_ok()
    }

    /// Starts an upload of `image_id` (`size` when the client declared it). Nothing is made
    /// in the pool until the first buffer, after the location was recorded.
    pub fn create_upload(&self, image_id: &ImageId, size: Option<u64>) -> RbdUpload {
        let name = image_id.to_string();
        RbdUpload {
            store: self.clone(),
            leftover: Some(Leftover {
                url: self.location_for(&name),
                upload: None,
            }),
            name,
            image: None,
            declared: size,
            offset: 0,
            allocated: 0,
            writes: VecDeque::new(),
        }
    }

    fn failed(&self, what: &str, e: io::Error) -> Error {
        match errno(&e) {
            libc::ENOSPC | libc::EDQUOT => Error::Full(e),
            libc::EACCES | libc::EPERM | libc::EROFS => Error::Denied(e),
            _ => Error::Unavailable(format!("store {}: {what}: {e}", self.0.id)),
        }
    }

    /// Reads `len` bytes of `url` from `offset`.
    pub async fn get(&self, url: &str, offset: u64, len: u64) -> Result<super::Reader, Error> {
        let (name, snap) = self.parse(url)?;
        let pool = self.0.pool.clone();
        let opened = blocking(move || {
            let image = pool.open(&name, snap.as_deref(), true)?;
            let size = image.size()?;
            Ok((image, size))
        })
        .await;
        let (image, size) = match opened {
            Ok(o) => o,
            Err(e) if errno(&e) == libc::ENOENT => return Err(Error::Missing(url.to_owned())),
            Err(e) => return Err(self.failed(&format!("open {url}"), e)),
        };
        if offset.saturating_add(len) > size {
            return Err(Error::Unavailable(format!(
                "store {}: {url} holds {size} bytes, {} asked",
                self.0.id,
                offset.saturating_add(len)
            )));
        }
        Ok(super::client::Download::rbd(
            &self.0.id,
            Reading::new(image, offset, len),
            len,
        ))
    }

    /// The size of `url`'s image (at its snapshot).
    pub async fn size(&self, url: &str) -> Result<u64, Error> {
        let (name, snap) = self.parse(url)?;
        let pool = self.0.pool.clone();
        let got = blocking(move || pool.open(&name, snap.as_deref(), true)?.size()).await;
        match got {
            Ok(n) => Ok(n),
            Err(e) if errno(&e) == libc::ENOENT => Err(Error::Missing(url.to_owned())),
            Err(e) => Err(self.failed(&format!("size of {url}"), e)),
        }
    }

    /// Whether clones of `url`'s snapshot exist (a delete would be refused).
    pub async fn in_use(&self, url: &str) -> Result<bool, Error> {
        let (name, snap) = self.parse(url)?;
        let Some(snap) = snap else {
            return Ok(false);
        };
        let pool = self.0.pool.clone();
        let found = blocking(move || pool.open(&name, Some(&snap), true)?.has_children()).await;
        match found {
            Ok(b) => Ok(b),
            Err(e) if errno(&e) == libc::ENOENT => Ok(false),
            Err(e) => Err(self.failed(&format!("children of {url}"), e)),
        }
    }

    /// Deletes `url`'s snapshot and image; [`Error::InUse`] while clones exist (nothing is
    /// changed then). Already gone counts as deleted.
    pub async fn delete(&self, url: &str) -> Result<(), Error> {
        let (name, snap) = self.parse(url)?;
        let pool = self.0.pool.clone();
        let done = blocking(move || remove_image(&pool, &name, snap.as_deref())).await;
        match done {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), libc::EBUSY | libc::ENOTEMPTY) => {
                Err(Error::InUse(format!(
                    "store {}: {url}: {e} (clones or other users of it exist)",
                    self.0.id
                )))
            }
            Err(e) => Err(self.failed(&format!("delete {url}"), e)),
        }
    }
}

/// Removes snapshot `snap` (unprotecting it) and image `name`; `ENOENT` anywhere counts as
/// removed. `EBUSY` from the unprotect: clones exist.
fn remove_image(pool: &Arc<ffi::Pool>, name: &str, snap: Option<&str>) -> io::Result<()> {
    let gone = |e: &io::Error| errno(e) == libc::ENOENT;
    match pool.open(name, None, false) {
        Ok(image) => {
            if let Some(snap) = snap {
                match image.snap_unprotect(snap) {
                    // EINVAL: not protected (an upload that failed before protecting it)
                    Err(e) if !gone(&e) && errno(&e) != libc::EINVAL => return Err(e),
                    _ => {}
                }
                match image.snap_remove(snap) {
                    Err(e) if !gone(&e) => return Err(e),
                    _ => {}
                }
            }
            image.close()?;
        }
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    match pool.remove(name) {
        Err(e) if !gone(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Whether every byte of `data` is zero.
fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(16);
    words
        .by_ref()
        .all(|w| u128::from_ne_bytes(w.try_into().unwrap_or([1; 16])) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
}

/// An upload being written into an RBD image.
pub struct RbdUpload {
    store: RbdStore,
    name: String,
    image: Option<Arc<ffi::Image>>,
    declared: Option<u64>,
    /// Where the next buffer goes.
    offset: u64,
    /// The image's size now.
    allocated: u64,
    writes: VecDeque<compio::runtime::JoinHandle<io::Result<()>>>,
    leftover: Option<Leftover>,
}

impl std::fmt::Debug for RbdUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdUpload")
            .field("image", &self.name)
            .field("offset", &self.offset)
            .finish()
    }
}

impl RbdUpload {
    /// The location, until the caller recorded it.
    pub fn take_leftover(&mut self) -> Option<Leftover> {
        self.leftover.take()
    }

    async fn check(&self, h: compio::runtime::JoinHandle<io::Result<()>>) -> Result<(), Error> {
        match h.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.store.failed(&format!("write {}", self.name), e)),
            Err(_) => Err(Error::Io(io::Error::other("rbd write task failed"))),
        }
    }

    async fn drain(&mut self) -> Result<(), Error> {
        while let Some(h) = self.writes.pop_front() {
            self.check(h).await?;
        }
        Ok(())
    }

    /// Makes the image at least `end` bytes long (creating it at the first write).
    async fn reserve(&mut self, end: u64) -> Result<Arc<ffi::Image>, Error> {
        let chunk = 1u64 << self.store.0.order;
        if let Some(image) = &self.image {
            if end <= self.allocated {
                return Ok(image.clone());
            }
            let image = image.clone();
            self.drain().await?;
            let grown = (self.allocated.saturating_mul(2))
                .min(self.allocated + MAX_GROWTH)
                .max(end)
                .div_ceil(chunk)
                * chunk;
            let im = image.clone();
            blocking(move || im.resize(grown))
                .await
                .map_err(|e| self.store.failed(&format!("resize {}", self.name), e))?;
            self.allocated = grown;
            return Ok(image);
        }
        let size = match self.declared {
            Some(d) => d.max(end),
            None => end.max(chunk).div_ceil(chunk) * chunk,
        };
        let (pool, name, order) = (
            self.store.0.pool.clone(),
            self.name.clone(),
            self.store.0.order,
        );
        let made = blocking(move || {
            match pool.create(&name, size, order) {
                // an earlier upload's image, not yet removed by its leftover job
                Err(e) if errno(&e) == libc::EEXIST => {
                    remove_image(&pool, &name, Some(SNAPSHOT))?;
                    pool.create(&name, size, order)?;
                }
                r => r?,
            }
            let image = pool.open(&name, None, false)?;
            // librbd's cache writes through until its user first flushes (it cannot know
            // before that the user ever will); glint flushes at commit, so say so now and
            // let writes return once cached (rbd_cache), written back in the background
            image.flush()?;
            Ok(image)
        })
        .await
        .map_err(|e| self.store.failed(&format!("create {}", self.name), e))?;
        let image = Arc::new(made);
        self.image = Some(image.clone());
        self.allocated = size;
        Ok(image)
    }

    /// Writes the next hashed buffer (in order). May wait for earlier writes.
    pub async fn push(&mut self, chunk: SharedChunk) -> Result<(), Error> {
        let len = chunk.len() as u64;
        let at = self.offset;
        self.offset += len;
        if len == 0 || (self.store.0.thin && is_zero(&chunk)) {
            return Ok(());
        }
        let image = self.reserve(at + len).await?;
        self.writes
            .push_back(compio::runtime::spawn_blocking(move || {
                image.write_at(at, &chunk)
            }));
        while self.writes.len() > MAX_WRITES || self.writes.front().is_some_and(|h| h.is_finished())
        {
            if let Some(h) = self.writes.pop_front() {
                self.check(h).await?;
            }
        }
        Ok(())
    }

    /// Waits for the writes, cuts the image to `size`, flushes, makes and protects the
    /// snapshot; the location.
    pub async fn commit(mut self) -> Result<String, Error> {
        self.drain().await?;
        let size = self.offset;
        let image = match self.image.take() {
            Some(i) => i,
            None => {
                // nothing written (empty, or only zeros with thin provisioning)
                self.declared = Some(size);
                self.reserve(size).await?;
                self.image
                    .take()
                    .ok_or_else(|| Error::Io(io::Error::other("no image")))?
            }
        };
        let allocated = self.allocated;
        let done = blocking(move || {
            if allocated != size {
                image.resize(size)?;
            }
            image.flush()?;
            image.snap_create(SNAPSHOT)?;
            image.snap_protect(SNAPSHOT)?;
            match Arc::try_unwrap(image) {
                Ok(image) => image.close(),
                Err(_) => Ok(()),
            }
        })
        .await;
        match done {
            Ok(()) => Ok(self.store.location_for(&self.name)),
            Err(e) => {
                let what = format!("commit {}", self.name);
                let err = self.store.failed(&what, e);
                self.abort().await;
                Err(err)
            }
        }
    }

    /// Removes the image written so far.
    pub async fn abort(mut self) {
        let _ = self.drain().await;
        let image = self.image.take();
        let (pool, name) = (self.store.0.pool.clone(), self.name.clone());
        let removed = blocking(move || {
            if let Some(image) = image.and_then(|i| Arc::try_unwrap(i).ok()) {
                let _ = image.close();
            }
            remove_image(&pool, &name, Some(SNAPSHOT))
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(store = %self.store.0.id, image = %self.name, error = %e,
                "could not remove a failed upload's rbd image; its leftover job will");
        }
    }
}

/// The read side of an RBD location: reads of [`SEGMENT`] bytes from the snapshot, up to
/// [`READ_AHEAD`] in flight ahead of the caller (librbd answers each from one object, so
/// several at once keep the OSDs busy, as `rbd export` does), handed out in order.
#[derive(Debug)]
pub struct Reading {
    image: Arc<ffi::Image>,
    /// Where the next read to start begins.
    next: u64,
    /// The end of the bytes asked for.
    end: u64,
    in_flight: VecDeque<compio::runtime::JoinHandle<(io::Result<usize>, Vec<u8>)>>,
    /// The oldest segment read and how much of it was handed out.
    ready: Option<(Vec<u8>, usize)>,
}

/// Bytes of one read of a download (an object of the default 4 MiB, when aligned).
const SEGMENT: u64 = 4 << 20;
/// Reads of a download in flight at once.
const READ_AHEAD: usize = 4;

impl Reading {
    fn new(image: ffi::Image, offset: u64, len: u64) -> Reading {
        Reading {
            image: Arc::new(image),
            next: offset,
            end: offset + len,
            in_flight: VecDeque::new(),
            ready: None,
        }
    }

    fn start_reads(&mut self) {
        while self.in_flight.len() < READ_AHEAD && self.next < self.end {
            let n = SEGMENT.min(self.end - self.next) as usize;
            let (image, at) = (self.image.clone(), self.next);
            self.next += n as u64;
            self.in_flight
                .push_back(compio::runtime::spawn_blocking(move || {
                    let mut buf = Vec::with_capacity(n);
                    // a segment short of its length would shift every later byte
                    let r = match image.read_into(at, &mut buf, n) {
                        Ok(got) if got < n => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("read {got} of {n} bytes at {at}"),
                        )),
                        r => r,
                    };
                    (r, buf)
                }));
        }
    }

    /// Appends the next bytes to `buf` (up to its spare capacity); 0 at the end.
    pub async fn read(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            if let Some((seg, pos)) = &mut self.ready {
                let n = (buf.capacity() - buf.len()).min(seg.len() - *pos);
                buf.extend_from_slice(&seg[*pos..*pos + n]);
                *pos += n;
                if *pos == seg.len() {
                    self.ready = None;
                }
                return (Ok(n), buf);
            }
            self.start_reads();
            let Some(h) = self.in_flight.pop_front() else {
                return (Ok(0), buf);
            };
            match h.await {
                Ok((Ok(_), seg)) => {
                    self.ready = Some((seg, 0));
                    self.start_reads();
                }
                Ok((Err(e), _)) => return (Err(e), buf),
                Err(_) => return (Err(io::Error::other("rbd read task failed")), buf),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::pipeline::{BufferPool, PipelinedHasher};
    use shared::image::HashAlgo;

    /// The store over the test cluster's pool (`GLINT_TEST_CEPH_CEPH_CONF`, `GLINT_TEST_RBD_POOL`).
    async fn store(thin: bool) -> RbdStore {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run ./scripts/test"))
        };
        let cfg = StoreConfig {
            id: "ceph".into(),
            description: None,
            weight: 0,
            kind: StoreKind::Rbd(shared::config::stores::RbdStore {
                rbd_store_pool: var("GLINT_TEST_RBD_POOL"),
                rbd_store_user: None,
                rbd_store_ceph_conf: Some(var("GLINT_TEST_CEPH_CEPH_CONF").into()),
                rbd_store_chunk_size: 4,
                rbd_thin_provisioning: thin,
            }),
            connect_timeout_seconds: 10,
            read_timeout_seconds: 30,
        };
        RbdStore::open(&cfg).await.unwrap()
    }

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    async fn upload(s: &RbdStore, id: &ImageId, data: &[u8], declared: Option<u64>) -> String {
        let mut up = s.create_upload(id, declared);
        assert!(up.take_leftover().is_some());
        let pool = BufferPool::new(1 << 20, 8);
        let mut hasher = PipelinedHasher::start(HashAlgo::Sha256, pool, 8, false, 8 << 20);
        for piece in data.chunks(1 << 20) {
            let mut buf = hasher.buffer().await;
            buf.push_slice(piece);
            let chunk = hasher.submit(buf, false);
            up.push(chunk).await.unwrap();
        }
        hasher.finish().await.unwrap();
        up.commit().await.unwrap()
    }

    async fn read(s: &RbdStore, url: &str, offset: u64, len: u64) -> Vec<u8> {
        let mut r = s.get(url, offset, len).await.unwrap();
        let mut out = Vec::new();
        loop {
            let (res, b) = r.read(Vec::with_capacity(300 * 1024)).await;
            if res.unwrap() == 0 {
                break;
            }
            out.extend_from_slice(&b);
        }
        out
    }

    #[compio::test]
    #[ignore = "needs Ceph: run through ./scripts/test"]
    async fn uploads_read_back_and_delete_in_a_real_pool() {
        let s = store(false).await;
        for declared in [true, false] {
            let id = ImageId::new_random();
            // 9.5 MiB: unknown size grows the image twice past the first 4 MiB
            let bytes = data(9 * (1 << 20) + 512 * 1024, 7);
            let url = upload(&s, &id, &bytes, declared.then_some(bytes.len() as u64)).await;
            assert!(
                url.starts_with("rbd://") && url.ends_with(&format!("/{id}/snap")),
                "{url}"
            );
            assert!(s.claims(&url));
            assert_eq!(read(&s, &url, 0, bytes.len() as u64).await, bytes);
            assert_eq!(
                read(&s, &url, 4_000_000, 123_457).await,
                &bytes[4_000_000..4_123_457]
            );
            assert!(!s.in_use(&url).await.unwrap());
            s.delete(&url).await.unwrap();
            assert!(matches!(s.get(&url, 0, 1).await, Err(Error::Missing(_))));
            // already gone
            s.delete(&url).await.unwrap();
        }
        // an empty image
        let id = ImageId::new_random();
        let url = upload(&s, &id, &[], Some(0)).await;
        assert!(read(&s, &url, 0, 0).await.is_empty());
        s.delete(&url).await.unwrap();
    }

    #[compio::test]
    #[ignore = "needs Ceph: run through ./scripts/test"]
    async fn a_failed_upload_leaves_no_image_and_other_pools_are_foreign() {
        let s = store(false).await;
        let id = ImageId::new_random();
        let mut up = s.create_upload(&id, None);
        let pool = BufferPool::new(1 << 20, 8);
        let mut hasher = PipelinedHasher::start(HashAlgo::Sha256, pool, 8, false, 8 << 20);
        let mut buf = hasher.buffer().await;
        buf.push_slice(&data(1 << 20, 1));
        up.push(hasher.submit(buf, false)).await.unwrap();
        hasher.finish().await.unwrap();
        up.abort().await;
        let url = s.location_for(&id.to_string());
        assert!(matches!(s.get(&url, 0, 1).await, Err(Error::Missing(_))));
        let other = url.replace(&format!("/{}/", s.0.pool_name), "/elsewhere/");
        assert!(!s.claims(&other));
        assert!(!s.claims("rbd://"));
        assert!(!s.claims("file:///etc/passwd"));
    }

    #[test]
    fn zero_buffers() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 4099]));
        let mut v = vec![0u8; 4099];
        v[4098] = 1;
        assert!(!is_zero(&v));
        v[4098] = 0;
        v[17] = 9;
        assert!(!is_zero(&v));
    }

    #[test]
    fn names_are_encoded() {
        assert_eq!(enc("0b6d-ab"), "0b6d-ab");
        assert_eq!(enc("a/b"), "a%2Fb");
    }
}
