//! Low-level I/O: taking over the listener the supervisor bound, moving file bytes into a
//! socket without a user-space copy (`sendfile` on the worker thread, `splice` through a pipe
//! where sendfile cannot), aligned buffers for `O_DIRECT` uploads ([`AlignedBuf`]), and the
//! shared-memory counters. **The only module allowed `unsafe`**, and each block says why it is
//! sound.
//!
//! Why sendfile and not io_uring's splice: see [`sendfile_to_socket`]. Both take the file
//! offset per call, which is what lets many connections read the same image file without
//! sharing a file position.
#![allow(unsafe_code)]

mod aligned;

pub use aligned::{ALIGN, AlignedBuf};

use std::cell::RefCell;

use compio::fs::File;
use compio::fs::pipe::{Receiver, Sender, anonymous, splice};
use compio::net::TcpStream;
use compio::time::timeout;
use std::future::IntoFuture;
use std::io;
use std::os::fd::{AsFd, FromRawFd, RawFd};
use std::time::Duration;

/// Makes the allocator give large buffers (parts of remote uploads, transfer buffers) back to
/// the kernel when they are freed. glibc raises its mmap threshold each time a large block is
/// freed, after which blocks of several MiB come from the heap and their pages stay resident
/// after use: the data plane's RSS then grew with each upload's part buffers instead of
/// staying at parts × part size. A fixed threshold keeps every block of 256 KiB or more in a
/// mapping of its own. Call once at start, before the worker threads.
pub fn return_large_blocks() {
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate (glibc serialises it anyway), and the arguments are valid parameter values.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
    if ok != 1 {
        tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused; large blocks may stay resident");
    }
}

/// Adopts the listening socket the supervisor passed as file descriptor `fd`.
///
/// The fd is marked close-on-exec again so it does not leak into anything we spawn.
pub fn inherited_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    if fd < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "listener fd must be >= 3",
        ));
    }
    // SAFETY: the supervisor passes the number of a listening TCP socket it opened and left
    // open for us (GLINT_LISTEN_FD); nothing else in this process owns that descriptor, so
    // taking ownership here is the only owner. We check it is a socket right after.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(listener.as_fd(), rustix::io::FdFlags::CLOEXEC)?;
    listener.local_addr()?;
    Ok(listener)
}

/// Creates (or truncates) the shared-memory counters file at `path` with `len` bytes, maps it
/// for the life of the process and returns it as atomics. The first `header` bytes are written
/// once, before any counter is used.
pub fn map_counters(
    path: &std::path::Path,
    len: usize,
    header: &[u8],
) -> io::Result<&'static [std::sync::atomic::AtomicU64]> {
    use std::sync::atomic::AtomicU64;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.set_len(len as u64)?;
    // SAFETY: the file was just created/truncated by us and is only ever written through this
    // mapping (the control plane reads it with plain reads). The mapping is leaked below, so
    // it outlives every reference handed out.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file)? };
    map[..header.len()].copy_from_slice(header);
    let map: &'static mut memmap2::MmapMut = Box::leak(Box::new(map));
    let words = map.len() / 8;
    // SAFETY: the mapping is page-aligned (so 8-aligned) and `words * 8` bytes long;
    // AtomicU64 has the size and alignment of u64, and all access after this point goes
    // through the atomics.
    Ok(unsafe { std::slice::from_raw_parts(map.as_mut_ptr() as *const AtomicU64, words) })
}

/// Recycled byte buffers of one worker (heads, forwarded bodies, TLS download copies): taken per request and
/// given back, so that forwarding allocates nothing once the pool is warm.
#[derive(Debug)]
pub struct Scratch {
    free: RefCell<Vec<Vec<u8>>>,
    capacity: usize,
    max_idle: usize,
}

impl Scratch {
    /// A pool of buffers of `capacity` bytes keeping at most `max_idle` idle ones.
    pub fn new(capacity: usize, max_idle: usize) -> Self {
        Scratch {
            free: RefCell::new(Vec::new()),
            capacity,
            max_idle,
        }
    }

    /// An empty buffer of at least the pool's capacity.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Returns a buffer; one that grew far beyond the pool's size is freed instead.
    pub fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.capacity || buf.capacity() > 16 * self.capacity {
            return;
        }
        buf.clear();
        let mut free = self.free.borrow_mut();
        if free.len() < self.max_idle {
            free.push(buf);
        }
    }
}

/// A compio file owning `file`'s descriptor (for the splice and TLS copy paths, which use
/// compio's operations).
pub fn into_compio(file: std::fs::File) -> File {
    use std::os::fd::IntoRawFd;
    // SAFETY: `into_raw_fd` gives up ownership of an open descriptor, which the compio file
    // takes over; nothing else refers to it.
    unsafe { File::from_raw_fd(file.into_raw_fd()) }
}

/// Whether an idle pooled connection is still usable: nothing to read and no hang-up.
/// (A peer that restarted has closed it; reusing it would fail a request whose body is
/// already consumed.) One non-blocking `poll`, no data read.
pub fn idle_connection_is_alive(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&fd, PollFlags::IN | PollFlags::RDHUP)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(0))
}

/// Sends `len` bytes of `file` from `offset` to a plain TCP socket with `sendfile(2)` on the
/// calling (worker) thread, waiting for socket space with an io_uring poll when it is full.
///
/// Why not splice through io_uring: the kernel cannot complete `IORING_OP_SPLICE` inline, so it
/// hands every one to an io-wq worker thread; measured, that was most of the data plane's CPU
/// per GiB. `sendfile` on a non-blocking socket copies page-cache pages straight into the
/// socket on this thread, as nginx does. The socket is non-blocking only while this runs (no
/// other operation is in flight on it meanwhile). A page-cache miss blocks this worker while
/// the disk reads, as it would nginx; downloads set a sequential-readahead hint to keep that
/// rare.
///
/// Returns `Unsupported` (before sending anything) when the file system cannot sendfile, so
/// the caller can use [`Splicer`] instead.
pub async fn sendfile_to_socket(
    file: std::os::fd::BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sock: &TcpStream,
    idle: Duration,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let fd = sock.as_fd();
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    let _ = rustix::net::sockopt::set_tcp_cork(fd, true);
    let res = sendfile_loop(file, offset, len, sock, idle, progress).await;
    let _ = rustix::net::sockopt::set_tcp_cork(fd, false);
    let _ = rustix::fs::fcntl_setfl(fd, flags);
    res
}

/// Most bytes one `sendfile` call moves before the worker lets its other connections go
/// (nginx's `sendfile_max_chunk` idea): without it, one call fills a socket buffer of
/// several MiB while every other download on the worker waits, which is what their time to
/// first byte would measure when many start at once.
const SENDFILE_CHUNK: usize = 512 << 10;

async fn sendfile_loop(
    file: std::os::fd::BorrowedFd<'_>,
    offset: u64,
    len: u64,
    sock: &TcpStream,
    idle: Duration,
    progress: &dyn Fn(u64),
) -> io::Result<()> {
    let mut poll = None;
    let mut off = offset;
    let end = offset + len;
    while off < end {
        let want = ((end - off) as usize).min(SENDFILE_CHUNK);
        match rustix::fs::sendfile(sock.as_fd(), file, Some(&mut off), want) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "image file shorter than its recorded size",
                ));
            }
            Ok(n) => {
                progress(n as u64);
                if off < end {
                    YieldNow(false).await;
                }
            }
            Err(rustix::io::Errno::AGAIN) => {
                let poll = match &mut poll {
                    Some(p) => p,
                    None => poll.insert(sock.to_poll_fd()?),
                };
                timeout(idle, poll.write_ready()).await.map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading")
                })??;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(
                e @ (rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP),
            ) if off == offset => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, e));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A pipe used to splice file data into a socket. One per connection, reused across
/// requests; after an error it must be dropped (it may hold bytes).
#[derive(Debug)]
pub struct Splicer {
    rx: Receiver,
    tx: Sender,
    capacity: usize,
}

impl Splicer {
    /// A splicer whose pipe holds up to `capacity` bytes (the kernel may round or refuse it;
    /// the real size is used).
    pub async fn new(capacity: usize) -> io::Result<Self> {
        let (rx, tx) = anonymous().await?;
        let capacity = rustix::pipe::fcntl_setpipe_size(tx.as_fd(), capacity)
            .or_else(|_| rustix::pipe::fcntl_getpipe_size(tx.as_fd()))?;
        Ok(Splicer { rx, tx, capacity })
    }

    /// Sends `len` bytes of `file` starting at `offset` to `sock`, telling `progress` each
    /// part that reached the socket. Each splice must make progress within `idle`, or the
    /// transfer fails with `TimedOut`.
    pub async fn file_to_socket(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        sock: &TcpStream,
        idle: Duration,
        progress: &dyn Fn(u64),
    ) -> io::Result<()> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "peer stopped reading");
        let mut offset = offset;
        let mut left = len;
        while left > 0 {
            let want = left.min(self.capacity as u64) as usize;
            let n = timeout(
                idle,
                splice(file, &self.tx, want)
                    .offset_in(offset as i64)
                    .into_future(),
            )
            .await
            .map_err(|_| timed_out())??;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "image file shorter than its recorded size",
                ));
            }
            let mut in_pipe = n;
            while in_pipe > 0 {
                let m = timeout(idle, splice(&self.rx, sock, in_pipe).into_future())
                    .await
                    .map_err(|_| timed_out())??;
                if m == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                progress(m as u64);
                in_pipe -= m;
            }
            offset += n as u64;
            left -= n as u64;
        }
        Ok(())
    }
}

/// Lets the runtime run its other tasks once (it wakes itself, so it goes to the back of the
/// queue).
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}
