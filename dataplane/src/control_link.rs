//! The data plane's side of the channel: framed request/response over the control plane's
//! Unix socket (see `shared::channel` for the protocol and the upload-lease rules).
//!
//! Each worker keeps a small pool of handshaken connections. Downloads borrow one for a
//! single round trip; an upload holds one for its whole life, because the lease it gets
//! from `AuthorizeUpload` belongs to that connection.
//!
//! A download's exchange allocates nothing: the request is built from borrowed strings
//! (`Request<&str>`), encoded into the connection's reused write buffer, and the answer is
//! read in place from its read buffer (`Response<&str>`, [`Conn::response`]).

use crate::metrics::Metrics;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::UnixStream;
use serde::Serialize;
use shared::channel::frame::{self, FrameError};
use shared::channel::{Job, Request, Response, Work, version};
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
    /// Correlation id and length of the answer frame at the front of `rbuf`, if one is there.
    answer: Option<(u32, usize)>,
    /// Where round trips are timed (`glint_dp_channel_round_trip_seconds`).
    metrics: Metrics,
}

impl Conn {
    /// Connects to `path` and performs the version handshake; round trips are timed into
    /// `metrics`.
    pub async fn connect(path: &std::path::Path, metrics: Metrics) -> Result<Conn, Error> {
        let stream = UnixStream::connect(path).await?;
        let mut conn = Conn {
            stream,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(512),
            next_corr: 1,
            answer: None,
            metrics,
        };
        let hello: Request<&str> = Request::Hello {
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

    /// Sends one request and waits until its whole answer is buffered; read it with
    /// [`Conn::response`] (borrowed, no allocation) or use [`Conn::call`].
    pub async fn exchange<S: Serialize>(&mut self, req: &Request<S>) -> Result<(), Error> {
        let started = std::time::Instant::now();
        if let Some((_, used)) = self.answer.take() {
            self.rbuf.drain(..used);
        }
        let corr = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1);
        let mut wbuf = std::mem::take(&mut self.wbuf);
        wbuf.clear();
        frame::encode(corr, req, &mut wbuf)?;
        let (res, wbuf) = self.stream.write_all(wbuf).await.into();
        self.wbuf = wbuf;
        res?;
        loop {
            if let Some(len) = frame::frame_len(&self.rbuf)?
                && self.rbuf.len() >= frame::HEADER_BYTES + len
            {
                self.answer = Some((corr, frame::HEADER_BYTES + len));
                self.metrics
                    .channel_round_trip(req.kind_index(), started.elapsed());
                return Ok(());
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

    /// The answer to the last [`Conn::exchange`], its strings pointing into this connection's
    /// buffer.
    pub fn response(&self) -> Result<Response<&str>, Error> {
        let Some((corr, _)) = self.answer else {
            return Err(Error::Protocol("no answer buffered"));
        };
        match frame::decode_borrowed::<Response<&str>>(&self.rbuf)? {
            Some((f, _)) if f.corr == corr => Ok(f.body),
            Some(_) => Err(Error::Protocol("response correlation id mismatch")),
            None => Err(Error::Protocol("no answer buffered")),
        }
    }

    /// Sends one request and returns its answer, owned.
    pub async fn call<S: Serialize>(&mut self, req: &Request<S>) -> Result<Response, Error> {
        self.exchange(req).await?;
        self.response().map(owned)
    }
}

/// A per-worker pool of channel connections (single-threaded: the worker's runtime only).
#[derive(Debug, Clone)]
pub struct Link {
    path: PathBuf,
    idle: Rc<RefCell<Vec<Conn>>>,
    max_idle: usize,
    metrics: Metrics,
}

impl Link {
    /// A pool connecting to the channel socket at `path`, timing round trips into `metrics`.
    pub fn new(path: PathBuf, max_idle: usize, metrics: Metrics) -> Self {
        Link {
            path,
            idle: Rc::new(RefCell::new(Vec::new())),
            max_idle,
            metrics,
        }
    }

    /// Returns a healthy connection to the pool.
    pub fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// One round trip on a pooled (or new) connection; its answer is buffered in the
    /// connection returned ([`Conn::response`]). Give the connection back when done with the
    /// answer.
    ///
    /// A pooled connection may be stale (the control plane restarted since it was opened);
    /// if it fails before an answer arrives, the request is sent once more on a fresh
    /// connection. That is safe: a control plane that restarted has forgotten the first
    /// attempt (it resets `saving` images at start), and a live one never drops a connection
    /// mid-request. So no liveness check (a system call) is spent on a pooled connection.
    pub async fn exchange<S: Serialize>(&self, req: &Request<S>) -> Result<Conn, Error> {
        let pooled = self.idle.borrow_mut().pop();
        if let Some(mut c) = pooled {
            if c.exchange(req).await.is_ok() {
                return Ok(c);
            }
            // stale: so are the others, opened before the same restart
            self.idle.borrow_mut().clear();
        }
        let mut c = Conn::connect(&self.path, self.metrics).await?;
        c.exchange(req).await?;
        Ok(c)
    }

    /// One round trip, keeping the connection (an upload holds its lease on it); the answer
    /// is owned.
    pub async fn call_keep<S: Serialize>(
        &self,
        req: &Request<S>,
    ) -> Result<(Conn, Response), Error> {
        let c = self.exchange(req).await?;
        let resp = c.response().map(owned)?;
        Ok((c, resp))
    }
}

/// An owned copy of a borrowed answer.
pub fn owned(r: Response<&str>) -> Response {
    let s = |v: Option<&str>| v.map(str::to_owned);
    match r {
        Response::HelloAck { version } => Response::HelloAck { version },
        Response::UploadGranted {
            hash_algo,
            max_size_bytes,
            store,
            inspect_as,
        } => Response::UploadGranted {
            hash_algo,
            max_size_bytes,
            store: store.to_owned(),
            inspect_as: s(inspect_as),
        },
        Response::UploadCommitted => Response::UploadCommitted,
        Response::DeleteGranted { locations } => Response::DeleteGranted {
            locations: locations.to_owned(),
        },
        Response::DownloadGranted {
            locations,
            size,
            checksum,
            os_hash_value,
        } => Response::DownloadGranted {
            locations: locations.to_owned(),
            size,
            checksum: s(checksum),
            os_hash_value: s(os_hash_value),
        },
        Response::Ack => Response::Ack,
        Response::CacheGranted {
            locations,
            size,
            nodes,
            queued,
        } => Response::CacheGranted {
            locations: locations.to_owned(),
            size,
            nodes: nodes.to_owned(),
            queued: queued.to_owned(),
        },
        Response::BlockHashes {
            block_size,
            hashes,
            checksum,
            os_hash_algo,
            os_hash_value,
        } => Response::BlockHashes {
            block_size,
            hashes: hashes.to_owned(),
            checksum: s(checksum),
            os_hash_algo: s(os_hash_algo),
            os_hash_value: s(os_hash_value),
        },
        Response::Jobs(jobs) => Response::Jobs(
            jobs.into_iter()
                .map(|j| Job {
                    id: j.id,
                    attempt: j.attempt,
                    work: match j.work {
                        Work::DeleteData {
                            image_id,
                            store,
                            url,
                        } => Work::DeleteData {
                            image_id,
                            store: store.to_owned(),
                            url: url.to_owned(),
                        },
                        Work::AbortUpload {
                            image_id,
                            store,
                            url,
                            upload,
                        } => Work::AbortUpload {
                            image_id,
                            store: store.to_owned(),
                            url: url.to_owned(),
                            upload: upload.map(str::to_owned),
                        },
                        Work::Prefetch {
                            image_id,
                            size,
                            locations,
                        } => Work::Prefetch {
                            image_id,
                            size,
                            locations: locations.to_owned(),
                        },
                        Work::LocationImport {
                            task_id,
                            image_id,
                            store,
                            url,
                            hash_algo,
                            retries,
                            filtered,
                        } => Work::LocationImport {
                            task_id: task_id.to_owned(),
                            image_id,
                            store: store.to_owned(),
                            url: url.to_owned(),
                            hash_algo: s(hash_algo),
                            retries,
                            filtered,
                        },
                        Work::Import {
                            task_id,
                            image_id,
                            method,
                            uri,
                            size,
                            stores,
                            all_stores_must_succeed,
                            decompress,
                            convert_from,
                            convert_to,
                            auth_token,
                            refused,
                        } => Work::Import {
                            task_id: task_id.to_owned(),
                            image_id,
                            method: method.to_owned(),
                            uri: uri.map(str::to_owned),
                            size,
                            stores: stores.to_owned(),
                            all_stores_must_succeed,
                            decompress,
                            convert_from: convert_from.map(str::to_owned),
                            convert_to: convert_to.map(str::to_owned),
                            auth_token: auth_token.map(str::to_owned),
                            refused: refused.map(str::to_owned),
                        },
                    },
                })
                .collect(),
        ),
        Response::AuditTargets(targets) => Response::AuditTargets(
            targets
                .into_iter()
                .map(|t| shared::channel::messages::AuditTarget {
                    image_id: t.image_id,
                    store: t.store.to_owned(),
                    url: t.url.to_owned(),
                    size: t.size,
                    block_size: t.block_size,
                    hashes: t.hashes.to_owned(),
                })
                .collect(),
        ),
        Response::ImportSource { size, disk_format } => Response::ImportSource {
            size,
            disk_format: disk_format.to_owned(),
        },
        Response::ImportRefused(m) => Response::ImportRefused(m.to_owned()),
        Response::Denied(code) => Response::Denied(code),
    }
}
