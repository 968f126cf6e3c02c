//! librados and librbd through their C API, loaded at run time with `libloading`
//! (`librados.so.2`, `librbd.so.1`: Debian's `librados2`/`librbd1`, which `ceph-common`
//! brings). No Rust binding is kept up (librbd-sys was last released in 2016), so this is
//! glint's own small layer: the dozen calls the store needs, each wrapped in a safe method
//! that turns a negative return into an `io::Error` with that errno. Loading at run time
//! keeps Ceph out of the build: a node without librbd builds and runs, and only an `rbd`
//! store reports the library missing when it opens.
//!
//! **The only module of the store layer allowed `unsafe`.** Soundness rests on three rules
//! kept here: a handle is used only while the handle it came from lives (an [`Image`] holds
//! its [`Pool`], a pool its [`Cluster`], through `Arc`s); every pointer passed in points to
//! memory that lives for the call (C strings made per call, slices borrowed for the call);
//! librados and librbd handles may be used from any thread (both libraries are thread-safe,
//! and glint never runs two calls on one image handle that the library does not allow: reads
//! of a handle one at a time, writes of an upload at distinct offsets). Every call here
//! blocks: callers run them off the data-plane workers (`spawn_blocking`), and an image
//! dropped on a worker is closed by the closer thread ([`Image`]'s `Drop`).
#![allow(unsafe_code)]

use libloading::Library;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::sync::{Arc, OnceLock, mpsc};

type RadosT = *mut c_void;
type IoctxT = *mut c_void;
type ImageT = *mut c_void;

/// The functions glint calls, resolved once per process.
struct Api {
    rados_create2: unsafe extern "C" fn(*mut RadosT, *const c_char, *const c_char, u64) -> c_int,
    rados_conf_read_file: unsafe extern "C" fn(RadosT, *const c_char) -> c_int,
    rados_conf_set: unsafe extern "C" fn(RadosT, *const c_char, *const c_char) -> c_int,
    rados_connect: unsafe extern "C" fn(RadosT) -> c_int,
    rados_shutdown: unsafe extern "C" fn(RadosT),
    rados_cluster_fsid: unsafe extern "C" fn(RadosT, *mut c_char, usize) -> c_int,
    rados_ioctx_create: unsafe extern "C" fn(RadosT, *const c_char, *mut IoctxT) -> c_int,
    rados_ioctx_destroy: unsafe extern "C" fn(IoctxT),
    rbd_create: unsafe extern "C" fn(IoctxT, *const c_char, u64, *mut c_int) -> c_int,
    rbd_remove: unsafe extern "C" fn(IoctxT, *const c_char) -> c_int,
    rbd_open: unsafe extern "C" fn(IoctxT, *const c_char, *mut ImageT, *const c_char) -> c_int,
    rbd_open_read_only:
        unsafe extern "C" fn(IoctxT, *const c_char, *mut ImageT, *const c_char) -> c_int,
    rbd_close: unsafe extern "C" fn(ImageT) -> c_int,
    rbd_get_size: unsafe extern "C" fn(ImageT, *mut u64) -> c_int,
    rbd_resize: unsafe extern "C" fn(ImageT, u64) -> c_int,
    rbd_read: unsafe extern "C" fn(ImageT, u64, usize, *mut c_char) -> isize,
    rbd_write: unsafe extern "C" fn(ImageT, u64, usize, *const c_char) -> isize,
    rbd_flush: unsafe extern "C" fn(ImageT) -> c_int,
    rbd_snap_create: unsafe extern "C" fn(ImageT, *const c_char) -> c_int,
    rbd_snap_protect: unsafe extern "C" fn(ImageT, *const c_char) -> c_int,
    rbd_snap_unprotect: unsafe extern "C" fn(ImageT, *const c_char) -> c_int,
    rbd_snap_remove: unsafe extern "C" fn(ImageT, *const c_char) -> c_int,
    rbd_list_children:
        unsafe extern "C" fn(ImageT, *mut c_char, *mut usize, *mut c_char, *mut usize) -> isize,
    // kept loaded for as long as the function pointers above are used: the whole process
    _rados: Library,
    _rbd: Library,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> io::Result<&'static Api> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.clone()))
}

fn load() -> Result<Api, String> {
    // SAFETY: loading runs the libraries' initialisers, which librados and librbd keep free
    // of side effects beyond their own state.
    let open = |name: &str| {
        unsafe { Library::new(name) }.map_err(|e| format!("{name}: {e} (install librbd1)"))
    };
    let rados = open("librados.so.2")?;
    let rbd = open("librbd.so.1")?;
    macro_rules! sym {
        ($lib:ident, $name:ident) => {
            // SAFETY: the type given is the function's C prototype in librados.h/librbd.h
            // (Ceph 16 and later), copied field by field into `Api`.
            *unsafe { $lib.get(concat!(stringify!($name), "\0").as_bytes()) }
                .map_err(|e| format!("{}: {e}", stringify!($name)))?
        };
    }
    Ok(Api {
        rados_create2: sym!(rados, rados_create2),
        rados_conf_read_file: sym!(rados, rados_conf_read_file),
        rados_conf_set: sym!(rados, rados_conf_set),
        rados_connect: sym!(rados, rados_connect),
        rados_shutdown: sym!(rados, rados_shutdown),
        rados_cluster_fsid: sym!(rados, rados_cluster_fsid),
        rados_ioctx_create: sym!(rados, rados_ioctx_create),
        rados_ioctx_destroy: sym!(rados, rados_ioctx_destroy),
        rbd_create: sym!(rbd, rbd_create),
        rbd_remove: sym!(rbd, rbd_remove),
        rbd_open: sym!(rbd, rbd_open),
        rbd_open_read_only: sym!(rbd, rbd_open_read_only),
        rbd_close: sym!(rbd, rbd_close),
        rbd_get_size: sym!(rbd, rbd_get_size),
        rbd_resize: sym!(rbd, rbd_resize),
        rbd_read: sym!(rbd, rbd_read),
        rbd_write: sym!(rbd, rbd_write),
        rbd_flush: sym!(rbd, rbd_flush),
        rbd_snap_create: sym!(rbd, rbd_snap_create),
        rbd_snap_protect: sym!(rbd, rbd_snap_protect),
        rbd_snap_unprotect: sym!(rbd, rbd_snap_unprotect),
        rbd_snap_remove: sym!(rbd, rbd_snap_remove),
        rbd_list_children: sym!(rbd, rbd_list_children),
        _rados: rados,
        _rbd: rbd,
    })
}

/// A negative return as the `io::Error` of that errno.
fn check(rc: c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

/// A connection to a Ceph cluster (`rados_t`).
#[derive(Debug)]
pub struct Cluster {
    api: &'static Api,
    handle: RadosT,
}

// SAFETY: a rados_t may be used from several threads at once (librados is thread-safe).
unsafe impl Send for Cluster {}
// SAFETY: as above.
unsafe impl Sync for Cluster {}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("librbd")
    }
}

impl Cluster {
    /// Connects as `client.<user>` (the configuration's default user when `None`) with the
    /// configuration file `conf` (Ceph's search path when `None`) and the `options` set after
    /// it. Blocks until the monitors answer or `client_mount_timeout` passes.
    pub fn connect(
        user: Option<&str>,
        conf: Option<&str>,
        options: &[(&str, String)],
    ) -> io::Result<Cluster> {
        let api = api()?;
        let name = cstr(&format!("client.{}", user.unwrap_or("admin")))?;
        let cluster_name = cstr("ceph")?;
        let mut handle: RadosT = std::ptr::null_mut();
        // SAFETY: `handle` is written by the call; the names live for the call.
        check(unsafe {
            (api.rados_create2)(&mut handle, cluster_name.as_ptr(), name.as_ptr(), 0)
        })?;
        // from here on, Drop shuts the handle down
        let cluster = Cluster { api, handle };
        let path = conf.map(cstr).transpose()?;
        let path_ptr = path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        // SAFETY: a NULL path means Ceph's default search; else a C string living for the call.
        check(unsafe { (api.rados_conf_read_file)(cluster.handle, path_ptr) })?;
        for (k, v) in options {
            let (k, v) = (cstr(k)?, cstr(v)?);
            // SAFETY: both C strings live for the call.
            check(unsafe { (api.rados_conf_set)(cluster.handle, k.as_ptr(), v.as_ptr()) })?;
        }
        // SAFETY: a created, configured handle.
        check(unsafe { (api.rados_connect)(cluster.handle) })?;
        Ok(cluster)
    }

    /// The cluster's fsid (the first part of an `rbd://` location).
    pub fn fsid(&self) -> io::Result<String> {
        let mut buf = [0 as c_char; 64];
        // SAFETY: the buffer and its length are passed together; the call NUL-terminates.
        let rc = unsafe { (self.api.rados_cluster_fsid)(self.handle, buf.as_mut_ptr(), buf.len()) };
        check(rc)?;
        // SAFETY: rados_cluster_fsid wrote a NUL-terminated string into `buf`.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
        Ok(s.to_string_lossy().into_owned())
    }

    /// The pool `name` (`rados_ioctx_t`).
    pub fn pool(self: &Arc<Cluster>, name: &str) -> io::Result<Pool> {
        let n = cstr(name)?;
        let mut io: IoctxT = std::ptr::null_mut();
        // SAFETY: `io` is written by the call; the cluster is connected and outlives the pool.
        check(unsafe { (self.api.rados_ioctx_create)(self.handle, n.as_ptr(), &mut io) })?;
        Ok(Pool {
            cluster: self.clone(),
            handle: io,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the last user of the handle is gone (pools and images hold an Arc).
        unsafe { (self.api.rados_shutdown)(self.handle) }
    }
}

/// A pool's I/O context.
#[derive(Debug)]
pub struct Pool {
    cluster: Arc<Cluster>,
    handle: IoctxT,
}

// SAFETY: an ioctx may be shared between threads (librados is thread-safe).
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: no image of this pool is open any more (each holds an Arc of the pool).
        unsafe { (self.cluster.api.rados_ioctx_destroy)(self.handle) }
    }
}

impl Pool {
    fn api(&self) -> &'static Api {
        self.cluster.api
    }

    /// Creates image `name` of `size` bytes with objects of 2^`order` bytes (the
    /// configuration's default format and features).
    pub fn create(&self, name: &str, size: u64, order: u32) -> io::Result<()> {
        let n = cstr(name)?;
        let mut order = order as c_int;
        // SAFETY: the name lives for the call; `order` is read and written by it.
        check(unsafe { (self.api().rbd_create)(self.handle, n.as_ptr(), size, &mut order) })
    }

    /// Removes image `name` (`ENOENT` if there is none, `ENOTEMPTY` with snapshots, `EBUSY`
    /// while it is open elsewhere).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: the name lives for the call.
        check(unsafe { (self.api().rbd_remove)(self.handle, n.as_ptr()) })
    }

    /// Opens image `name` for writing, or (`snap`) read-only at that snapshot.
    pub fn open(
        self: &Arc<Pool>,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> io::Result<Image> {
        let n = cstr(name)?;
        let s = snap.map(cstr).transpose()?;
        let s_ptr = s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let mut handle: ImageT = std::ptr::null_mut();
        let open = if read_only {
            self.api().rbd_open_read_only
        } else {
            self.api().rbd_open
        };
        // SAFETY: `handle` is written by the call; the strings live for it (NULL: the head).
        check(unsafe { open(self.handle, n.as_ptr(), &mut handle, s_ptr) })?;
        Ok(Image {
            pool: Some(self.clone()),
            handle,
        })
    }
}

/// An open RBD image. Closed on drop, by a thread of its own (closing a written image flushes
/// and releases its lock, which must not block a data-plane worker).
#[derive(Debug)]
pub struct Image {
    // `None` only once handed to the closer
    pool: Option<Arc<Pool>>,
    handle: ImageT,
}

// SAFETY: an image handle may be used from any thread; glint serialises the calls the
// library requires serialised (see the module docs).
unsafe impl Send for Image {}
// SAFETY: concurrent writes at distinct offsets and concurrent reads are allowed by librbd.
unsafe impl Sync for Image {}

impl Image {
    fn api(&self) -> &'static Api {
        self.pool.as_ref().map(|p| p.api()).expect("open image")
    }

    /// The image's size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let mut size = 0u64;
        // SAFETY: `size` is written by the call on an open handle.
        check(unsafe { (self.api().rbd_get_size)(self.handle, &mut size) })?;
        Ok(size)
    }

    /// Makes the image `size` bytes long.
    pub fn resize(&self, size: u64) -> io::Result<()> {
        // SAFETY: an open, writable handle.
        check(unsafe { (self.api().rbd_resize)(self.handle, size) })
    }

    /// Writes all of `data` at `offset` (inside the image's size).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        // SAFETY: the slice is borrowed for the call, which only reads it.
        let n = unsafe {
            (self.api().rbd_write)(self.handle, offset, data.len(), data.as_ptr().cast())
        };
        if n < 0 {
            return Err(io::Error::from_raw_os_error(-(n as i32)));
        }
        if n as usize != data.len() {
            return Err(io::Error::other(format!(
                "rbd_write wrote {n} of {} bytes",
                data.len()
            )));
        }
        Ok(())
    }

    /// Appends up to `n` bytes read from `offset` to `buf` (into its spare capacity, which
    /// must hold them); the count read.
    pub fn read_into(&self, offset: u64, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        let n = n.min(spare.len());
        // SAFETY: librbd writes at most `n` bytes into the spare capacity, which holds `n`.
        let got =
            unsafe { (self.api().rbd_read)(self.handle, offset, n, spare.as_mut_ptr().cast()) };
        if got < 0 {
            return Err(io::Error::from_raw_os_error(-(got as i32)));
        }
        let got = (got as usize).min(n);
        // SAFETY: the first `got` bytes of the spare capacity were written by rbd_read.
        unsafe { buf.set_len(buf.len() + got) };
        Ok(got)
    }

    /// Makes every write durable.
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: an open handle.
        check(unsafe { (self.api().rbd_flush)(self.handle) })
    }

    fn snap_call(
        &self,
        f: unsafe extern "C" fn(ImageT, *const c_char) -> c_int,
        snap: &str,
    ) -> io::Result<()> {
        let s = cstr(snap)?;
        // SAFETY: `f` is one of the snapshot calls taking (image, name); the name lives for it.
        check(unsafe { f(self.handle, s.as_ptr()) })
    }

    /// Creates snapshot `snap` of the image's head.
    pub fn snap_create(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.api().rbd_snap_create, snap)
    }

    /// Protects `snap` (clones may be made of it; it cannot be removed).
    pub fn snap_protect(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.api().rbd_snap_protect, snap)
    }

    /// Unprotects `snap` (`EBUSY` while clones of it exist, `EINVAL` if not protected).
    pub fn snap_unprotect(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.api().rbd_snap_unprotect, snap)
    }

    /// Removes `snap`.
    pub fn snap_remove(&self, snap: &str) -> io::Result<()> {
        self.snap_call(self.api().rbd_snap_remove, snap)
    }

    /// Whether the snapshot this image was opened at has clones.
    pub fn has_children(&self) -> io::Result<bool> {
        let (mut pools_len, mut images_len) = (0usize, 0usize);
        // SAFETY: zero-length buffers: the call only reports the sizes it would need (and
        // returns -ERANGE) when there is anything to list; NULL pointers are never written.
        let n = unsafe {
            (self.api().rbd_list_children)(
                self.handle,
                std::ptr::null_mut(),
                &mut pools_len,
                std::ptr::null_mut(),
                &mut images_len,
            )
        };
        match n {
            n if n == -(libc::ERANGE as isize) => Ok(true),
            n if n < 0 => Err(io::Error::from_raw_os_error(-(n as i32))),
            n => Ok(n > 0),
        }
    }

    /// Closes the image now (on the calling thread), reporting a failed close.
    pub fn close(mut self) -> io::Result<()> {
        let api = self.api();
        // taken, so Drop does not close it again; dropped after the close (it owns the ioctx)
        let pool = self.pool.take();
        // SAFETY: the handle is open and its pool lives until after the call.
        let closed = check(unsafe { (api.rbd_close)(self.handle) });
        drop(pool);
        closed
    }
}

/// An image handle on its way to the closer thread.
struct Closing(ImageT, Arc<Pool>);

// SAFETY: see Image.
unsafe impl Send for Closing {}

static CLOSER: OnceLock<mpsc::Sender<Closing>> = OnceLock::new();

impl Drop for Image {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        let closer = CLOSER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Closing>();
            let spawned = std::thread::Builder::new()
                .name("rbd-close".into())
                .spawn(move || {
                    for Closing(handle, pool) in rx {
                        // SAFETY: the handle is open; its pool lives until after the call.
                        unsafe { (pool.api().rbd_close)(handle) };
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the rbd-close thread");
            }
            tx
        });
        if let Err(mpsc::SendError(Closing(handle, pool))) = closer.send(Closing(self.handle, pool))
        {
            // SAFETY: as above; the closer thread is gone, so close here.
            unsafe { (pool.api().rbd_close)(handle) };
        }
    }
}
