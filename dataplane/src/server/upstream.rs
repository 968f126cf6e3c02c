//! [`Upstream`]: each worker's pool of keep-alive HTTP connections to the control plane's API
//! socket, used by the proxy and held by the [`Worker`](super::worker::Worker).

use crate::http::Conn;
use compio::net::UnixStream;
use std::cell::RefCell;
use std::path::PathBuf;

/// A pool of HTTP connections to the control plane (one per worker, single-threaded).
#[derive(Debug)]
pub struct Upstream {
    path: PathBuf,
    idle: RefCell<Vec<Conn<UnixStream>>>,
    max_idle: usize,
}

impl Upstream {
    /// A pool for the control plane's API socket at `path`.
    pub fn new(path: PathBuf, max_idle: usize) -> Self {
        Upstream {
            path,
            idle: RefCell::new(Vec::new()),
            max_idle,
        }
    }

    pub(crate) async fn connect(&self) -> std::io::Result<Conn<UnixStream>> {
        Ok(Conn::new(UnixStream::connect(&self.path).await?, 16 * 1024))
    }

    /// An idle connection, or `None`. With `check`, it must still be open (one non-blocking
    /// poll): finding a closed one means the control plane restarted, and every pooled
    /// connection is dropped then. Requests without a body skip the check: they are retried
    /// on a fresh connection if the pooled one turns out closed.
    pub(crate) fn take_idle(&self, check: bool) -> Option<Conn<UnixStream>> {
        use std::os::fd::AsFd;
        let mut idle = self.idle.borrow_mut();
        let c = idle.pop()?;
        if !check || crate::io::idle_connection_is_alive(c.stream.as_fd()) {
            Some(c)
        } else {
            idle.clear();
            None
        }
    }

    pub(crate) fn give_back(&self, c: Conn<UnixStream>) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(c);
        }
    }
}
