//! The data plane's side of the channel: framed request/response over the control plane's
//! Unix socket (see `shared::channel` for the protocol and the upload-lease rules).
//!
//! Each worker keeps a small pool of handshaken connections. Downloads borrow one for a
//! single round trip; an upload holds one for its whole life, because the lease it gets
//! from `AuthorizeUpload` belongs to that connection.

use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::UnixStream;
use shared::channel::frame::{self, FrameError};
use shared::channel::{Request, Response, version};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// Channel failures. All of them mean "the control plane is unavailable" to the client (503).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, reading or writing failed.
    #[error("channel I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be encoded or decoded.
    #[error("channel frame: {0}")]
    Frame(#[from] FrameError),
    /// The control plane closed the connection.
    #[error("control plane closed the channel")]
    Closed,
    /// The handshake failed or the peer broke the protocol.
    #[error("channel protocol: {0}")]
    Protocol(&'static str),
}

/// One handshaken channel connection.
#[derive(Debug)]
pub struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    next_corr: u32,
}

impl Conn {
    /// Connects to `path` and performs the version handshake.
    pub async fn connect(path: &std::path::Path) -> Result<Conn, Error> {
        let stream = UnixStream::connect(path).await?;
        let mut conn = Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(512),
            next_corr: 1,
        };
        let hello = Request::Hello {
            min_version: version::MIN_VERSION,
            max_version: version::MAX_VERSION,
            pid: std::process::id(),
        };
        match conn.call(&hello).await? {
            Response::HelloAck { version }
                if (version::MIN_VERSION..=version::MAX_VERSION).contains(&version) =>
            {
                Ok(conn)
            }
            _ => Err(Error::Protocol("handshake refused")),
        }
    }

    /// Sends one request and waits for its response.
    pub async fn call(&mut self, req: &Request) -> Result<Response, Error> {
        let corr = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1);
        let mut wbuf = std::mem::take(&mut self.wbuf);
        wbuf.clear();
        frame::encode(corr, req, &mut wbuf)?;
        let (res, wbuf) = self.stream.write_all(wbuf).await.into();
        self.wbuf = wbuf;
        res?;
        loop {
            if let Some((f, used)) = frame::decode::<Response>(&self.rbuf)? {
                self.rbuf.drain(..used);
                if f.corr != corr {
                    return Err(Error::Protocol("response correlation id mismatch"));
                }
                return Ok(f.body);
            }
            let mut rbuf = std::mem::take(&mut self.rbuf);
            rbuf.reserve(4096);
            let (res, rbuf) = self.stream.append(rbuf).await.into();
            self.rbuf = rbuf;
            if res? == 0 {
                return Err(Error::Closed);
            }
        }
    }
}

/// A per-worker pool of channel connections (single-threaded: the worker's runtime only).
#[derive(Debug, Clone)]
pub struct Link {
    path: PathBuf,
    idle: Rc<RefCell<Vec<Conn>>>,
    max_idle: usize,
}

impl Link {
    /// A pool connecting to the channel socket at `path`.
    pub fn new(path: PathBuf, max_idle: usize) -> Self {
        Link {
            path,
            idle: Rc::new(RefCell::new(Vec::new())),
            max_idle,
        }
    }

    /// Returns a healthy connection to the pool.
    pub fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// One round trip on a pooled connection, which stays in the pool.
    pub async fn call(&self, req: &Request) -> Result<Response, Error> {
        let (conn, resp) = self.call_keep(req).await?;
        self.give_back(conn);
        Ok(resp)
    }

    /// One round trip, keeping the connection (an upload holds its lease on it).
    ///
    /// A pooled connection may be stale (the control plane restarted since it was opened);
    /// if it fails before an answer arrives, the request is sent once more on a fresh
    /// connection. That is safe: a control plane that restarted has forgotten the first
    /// attempt (it resets `saving` images at start), and a live one never drops a connection
    /// mid-request.
    pub async fn call_keep(&self, req: &Request) -> Result<(Conn, Response), Error> {
        let pooled = {
            use std::os::fd::AsFd;
            let mut idle = self.idle.borrow_mut();
            match idle.pop() {
                Some(c) if crate::io::idle_connection_is_alive(c.stream.as_fd()) => Some(c),
                Some(_) => {
                    idle.clear();
                    None
                }
                None => None,
            }
        };
        if let Some(mut c) = pooled
            && let Ok(resp) = c.call(req).await
        {
            return Ok((c, resp));
        }
        let mut c = Conn::connect(&self.path).await?;
        let resp = c.call(req).await?;
        Ok((c, resp))
    }
}
