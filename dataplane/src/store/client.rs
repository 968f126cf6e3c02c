//! [`Client`]: the HTTP/1.1 client the remote stores (S3 today; Swift and HTTP next) speak
//! through, on compio and the data plane's own HTTP code ([`crate::http::Conn`]), over plain
//! TCP or TLS (rustls, ring provider, certificates **verified**: the system's roots plus an
//! optional CA file, [`tls_config`]).
//!
//! One [`Client`] per origin (scheme, host, port) per worker thread. It keeps a bounded pool
//! of idle keep-alive connections; a connection goes back to the pool when its response body
//! has been read to the end, and is closed otherwise.
//!
//! Requests:
//! - [`Client::send`]: a request with no body or a body in memory. GET, HEAD, PUT and DELETE
//!   are idempotent and retried: a pooled connection that turns out closed before any byte of
//!   the response is retried once on a fresh connection (not counted); a connection failure
//!   (other than a timeout) or a 5xx answer is retried up to [`RETRIES`] times, after
//!   100 ms, 300 ms and 900 ms. POST is never retried. The last answer, 5xx or not, is
//!   returned: [`Client::send`] fails only when no answer came.
//! - [`Client::start`]: a request whose body of known length the caller streams
//!   ([`Request::write`], [`Request::finish`]), for a big PUT without buffering it. It cannot
//!   be retried (the bytes are gone), so it only takes a pooled connection that still looks
//!   open.
//!
//! Timeouts ([`Options`]): one for connecting (TCP and the TLS handshake each), one for every
//! read and write (idle: how long the server may be silent, not how long a transfer takes).

use crate::http::{BodyBuf, BodyError, BodyState, Conn, HeadError};
use compio::buf::{BufResult, IoBuf, IoBufMut};
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;
use compio::tls::{TlsConnector, TlsStream};
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::io::Write as _;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How many times an idempotent request is retried after a connection failure or a 5xx.
pub const RETRIES: u32 = 3;

/// Bytes of a read buffer a connection keeps while idle in the pool.
const IDLE_BUFFER_BYTES: usize = 16 * 1024;

/// The most of a response body [`Response::finish`] reads to keep the connection.
const DRAIN_BYTES: u64 = 64 * 1024;

/// Bodies up to this size go out in one write with the head.
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address did not resolve, or the connection was refused or unreachable.
    #[error("connecting to {origin}: {source}")]
    Connect {
        /// The origin.
        origin: String,
        /// The cause.
        source: io::Error,
    },
    /// No connection within the connect timeout.
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(String),
    /// The TLS handshake failed (e.g. a certificate that does not verify).
    #[error("TLS handshake with {origin}: {source}")]
    Tls {
        /// The origin.
        origin: String,
        /// The cause.
        source: io::Error,
    },
    /// The server was silent for longer than the read/write timeout.
    #[error("{0}: timed out waiting for the server")]
    Timeout(String),
    /// The connection failed mid-exchange.
    #[error("{origin}: {source}")]
    Io {
        /// The origin.
        origin: String,
        /// The cause.
        source: io::Error,
    },
    /// The server's answer is not valid HTTP/1.1, or the request was used wrongly.
    #[error("{origin}: {what}")]
    Protocol {
        /// The origin.
        origin: String,
        /// What was wrong.
        what: String,
    },
}

impl Error {
    /// Whether another attempt may succeed where this one failed (not after a timeout: the
    /// server had its chance).
    fn retryable(&self) -> bool {
        matches!(self, Error::Connect { .. } | Error::Io { .. })
    }
}

// === impl Origin ===

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// TLS.
    Https,
}

/// Where a [`Client`] connects: scheme, host, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The scheme.
    pub scheme: Scheme,
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Origin {
    /// The origin of an `http://` or `https://` URL.
    pub fn of(url: &url::Url) -> Option<Origin> {
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        Some(Origin {
            scheme,
            host,
            port: url.port_or_known_default()?,
        })
    }

    fn default_port(&self) -> u16 {
        match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `host[:port]` as the `Host` header gives it (the port only when not the default).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// Timeouts and pool size of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Longest wait for a TCP connection, and again for the TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for each read from or write to the server.
    pub io_timeout: Duration,
    /// Idle keep-alive connections kept (at least 1).
    pub max_idle: usize,
}

/// The TLS configuration for store clients: the system's trusted roots (the operator's CA
/// store, updated with the OS), plus the certificates in `extra_ca` (PEM) when given;
/// ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn tls_config(extra_ca: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(errors = ?native.errors, "some system CA certificates could not be read");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca {
        let bad = |e: &dyn fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("reading CA certificates from {}: {e}", path.display()),
            )
        };
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad(&"no certificate found"));
        }
    }
    if roots.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no trusted CA certificates: the system store is empty and no CA file is configured",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS configuration that accepts any server certificate: only for the HTTP store's
/// explicit `https_insecure` (signatures are still checked, names and chains are not).
pub fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts every certificate chain (see [`insecure_tls_config`]).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// === impl Stream ===

/// A connection to a server: plain TCP or TLS over TCP.
pub enum Stream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS; the TCP socket is kept beside it to poll whether an idle connection is open.
    Tls(Box<TlsStream<TcpStream>>, TcpStream),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Stream::Tls(_, s) => f.debug_tuple("Tls").field(s).finish(),
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) | Stream::Tls(_, s) => s,
        }
    }
}

impl AsyncRead for Stream {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s, _) => s.read(buf).await,
        }
    }
}

impl AsyncWrite for Stream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(s, _) => s.write(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s, _) => s.shutdown().await,
        }
    }
}

// === impl Client ===

/// An HTTP/1.1 client for one origin, with a pool of keep-alive connections. Cheap to
/// clone (clones share the pool); single-threaded, like the worker that owns it.
#[derive(Clone)]
pub struct Client(Rc<Inner>);

struct Inner {
    origin: Origin,
    /// `Host` header value.
    authority: String,
    /// For errors.
    name: String,
    tls: Option<TlsConnector>,
    options: Options,
    idle: RefCell<Vec<Conn<Stream>>>,
    /// Connect here instead of resolving the origin's host (an address already checked).
    address: Option<std::net::SocketAddr>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("origin", &self.0.origin)
            .field("options", &self.0.options)
            .field("idle", &self.0.idle.borrow().len())
            .finish_non_exhaustive()
    }
}

/// A request body held in memory; the buffer is given back after the request (empty only if
/// a write timed out with it).
#[derive(Debug)]
pub enum Body<'a> {
    /// No body (`Content-Length: 0` for PUT and POST).
    Empty,
    /// These bytes.
    Bytes(&'a mut Vec<u8>),
}

impl Body<'_> {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len(),
        }
    }
}

/// A failed exchange, and whether it failed on a stale connection (before any response byte,
/// not by a timeout) so that a fresh connection may be tried.
struct Failure {
    error: Error,
    stale: bool,
}

impl Client {
    /// A client for `origin`; `tls` is required for `https` (see [`tls_config`]) and ignored
    /// for `http`.
    pub fn new(origin: Origin, tls: Option<Arc<rustls::ClientConfig>>, options: Options) -> Self {
        let tls = match origin.scheme {
            Scheme::Https => {
                Some(TlsConnector::from(tls.unwrap_or_else(|| {
                    tls_config(None).unwrap_or_else(|_| empty_roots())
                })))
            }
            Scheme::Http => None,
        };
        Client(Rc::new(Inner {
            authority: origin.authority(),
            name: origin.to_string(),
            origin,
            tls,
            options: Options {
                max_idle: options.max_idle.max(1),
                ..options
            },
            idle: RefCell::new(Vec::new()),
            address: None,
        }))
    }

    /// A client for `origin` that connects to `address` (resolved and checked by the caller)
    /// instead of resolving the host again; the `Host` header and the TLS server name are
    /// still the origin's.
    pub fn pinned(
        origin: Origin,
        address: std::net::SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        options: Options,
    ) -> Self {
        let c = Client::new(origin, tls, options);
        let inner =
            Rc::try_unwrap(c.0).unwrap_or_else(|_| unreachable!("a new client is unshared"));
        Client(Rc::new(Inner {
            address: Some(address),
            ..inner
        }))
    }

    /// The origin requests go to.
    pub fn origin(&self) -> &Origin {
        &self.0.origin
    }

    fn io_error(&self, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::TimedOut {
            return Error::Timeout(self.0.name.clone());
        }
        Error::Io {
            origin: self.0.name.clone(),
            source,
        }
    }

    fn protocol(&self, what: impl Into<String>) -> Error {
        Error::Protocol {
            origin: self.0.name.clone(),
            what: what.into(),
        }
    }

    async fn connect(&self) -> Result<Conn<Stream>, Error> {
        let o = &self.0.origin;
        let timeout = self.0.options.connect_timeout;
        let connect = async {
            if let Some(addr) = self.0.address {
                TcpStream::connect(addr).await
            } else if is_localhost_name(&o.host) {
                // RFC 6761 §6.3: names under `localhost.` are the loopback address, whatever
                // the resolver says (glibc does not know them; curl and browsers do this too).
                // S3 virtual-host style names a bucket `<bucket>.localhost` on a local server.
                TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, o.port)).await
            } else {
                TcpStream::connect((o.host.as_str(), o.port)).await
            }
        };
        let tcp = compio::time::timeout(timeout, connect)
            .await
            .map_err(|_| Error::ConnectTimeout(self.0.name.clone()))?
            .map_err(|source| Error::Connect {
                origin: self.0.name.clone(),
                source,
            })?;
        // A head and a body go out in two writes; don't let Nagle hold the second.
        let _ = tcp.set_nodelay(true);
        let stream = match &self.0.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let probe = tcp.clone();
                let s = compio::time::timeout(timeout, tls.connect(&o.host, tcp))
                    .await
                    .map_err(|_| Error::ConnectTimeout(self.0.name.clone()))?
                    .map_err(|source| Error::Tls {
                        origin: self.0.name.clone(),
                        source,
                    })?;
                Stream::Tls(Box::new(s), probe)
            }
        };
        Ok(Conn::new(stream, IDLE_BUFFER_BYTES))
    }

    /// The most recently used idle connection that still looks open (one non-blocking poll;
    /// closed ones are dropped).
    fn take_idle(&self) -> Option<Conn<Stream>> {
        use std::os::fd::AsFd;
        let mut idle = self.0.idle.borrow_mut();
        while let Some(c) = idle.pop() {
            if crate::io::idle_connection_is_alive(c.stream.tcp().as_fd()) {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, mut c: Conn<Stream>) {
        if !c.buffered().is_empty() {
            // bytes past the answer (a server that framed a HEAD's or a 401's empty body as
            // chunked, as Swift behind keystonemiddleware does): the next answer read on this
            // connection would start with them
            return;
        }
        let mut idle = self.0.idle.borrow_mut();
        if idle.len() < self.0.options.max_idle {
            c.trim(IDLE_BUFFER_BYTES);
            idle.push(c);
        }
    }

    /// Idle connections in the pool.
    pub fn idle(&self) -> usize {
        self.0.idle.borrow().len()
    }

    fn head(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
    ) -> Vec<u8> {
        let mut h = Vec::with_capacity(256 + target.len());
        let _ = write!(
            h,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: glint\r\n",
            self.0.authority
        );
        for (name, value) in headers {
            let _ = write!(h, "{name}: {value}\r\n");
        }
        if let Some(n) = content_length {
            let _ = write!(h, "Content-Length: {n}\r\n");
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    /// Sends a request with no body or a body in memory and reads the response head.
    /// Idempotent methods are retried as the [module docs](self) say. `target` is the path
    /// and query; `headers` must not include `Host` or `Content-Length`.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        mut body: Body<'_>,
    ) -> Result<Response, Error> {
        let idempotent = matches!(method, "GET" | "HEAD" | "PUT" | "DELETE");
        let content_length =
            (body.len() > 0 || matches!(method, "PUT" | "POST")).then_some(body.len() as u64);
        let mut attempt = 0;
        loop {
            let result = self
                .attempt(method, target, headers, content_length, &mut body)
                .await;
            let retry = idempotent
                && attempt < RETRIES
                && match &result {
                    Ok(r) => r.status >= 500,
                    // a body lost to a timed-out write cannot be sent again
                    Err(e) => e.retryable() && body.len() as u64 == content_length.unwrap_or(0),
                };
            if !retry {
                return result;
            }
            match result {
                Ok(r) => {
                    tracing::debug!(origin = %self.0.name, method, status = r.status, attempt, "retrying after a server error");
                    r.finish().await;
                }
                Err(e) => {
                    tracing::debug!(origin = %self.0.name, method, error = %e, attempt, "retrying after a connection failure");
                }
            }
            compio::time::sleep(Duration::from_millis(100 * 3u64.pow(attempt))).await;
            attempt += 1;
        }
    }

    /// One attempt: on a pooled connection if one is open, again on a fresh one if that one
    /// turns out stale (idempotent requests only).
    async fn attempt(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
        body: &mut Body<'_>,
    ) -> Result<Response, Error> {
        let idempotent = matches!(method, "GET" | "HEAD" | "PUT" | "DELETE");
        if let Some(conn) = self.take_idle() {
            let head = self.head(method, target, headers, content_length);
            match self.exchange(conn, method, head, body).await {
                Ok(r) => return Ok(r),
                Err(f) if f.stale && idempotent => {
                    tracing::debug!(origin = %self.0.name, error = %f.error, "pooled connection was closed; retrying on a new one");
                }
                Err(f) => return Err(f.error),
            }
        }
        let conn = self.connect().await?;
        let head = self.head(method, target, headers, content_length);
        self.exchange(conn, method, head, body)
            .await
            .map_err(|f| f.error)
    }

    async fn exchange(
        &self,
        mut conn: Conn<Stream>,
        method: &str,
        mut head: Vec<u8>,
        body: &mut Body<'_>,
    ) -> Result<Response, Failure> {
        let io_timeout = self.0.options.io_timeout;
        let stale = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            )
        };
        let big = match body {
            Body::Bytes(b) if b.len() > INLINE_BODY_BYTES => Some(b),
            Body::Bytes(b) => {
                head.extend_from_slice(b);
                None
            }
            Body::Empty => None,
        };
        let (res, _) = conn.write_all(head, io_timeout).await;
        if let Err(e) = res {
            return Err(Failure {
                stale: stale(&e),
                error: self.io_error(e),
            });
        }
        if let Some(b) = big {
            let (res, buf) = conn.write_all(std::mem::take(*b), io_timeout).await;
            **b = buf;
            if let Err(e) = res {
                return Err(Failure {
                    stale: false,
                    error: self.io_error(e),
                });
            }
        }
        self.read_head(conn, method).await
    }

    /// Reads the response head from `conn`.
    async fn read_head(&self, mut conn: Conn<Stream>, method: &str) -> Result<Response, Failure> {
        let mut scratch = Vec::new();
        match conn
            .read_response(method, self.0.options.io_timeout, &mut scratch)
            .await
        {
            Ok((meta, n)) => {
                let headers = parse_headers(&conn.buffered()[..n]);
                conn.consume(n);
                let mut r = Response {
                    status: meta.status,
                    headers,
                    state: BodyState::new(meta.framing),
                    keep_alive: meta.keep_alive,
                    conn: Some(conn),
                    client: self.clone(),
                };
                r.release_if_done();
                Ok(r)
            }
            Err(e) => {
                let nothing = conn.buffered().is_empty();
                let (stale, error) = match e {
                    HeadError::Eof => (
                        nothing,
                        self.io_error(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed before a complete response head",
                        )),
                    ),
                    HeadError::Io(e) => (
                        nothing
                            && matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                            ),
                        self.io_error(e),
                    ),
                    HeadError::Timeout => (false, Error::Timeout(self.0.name.clone())),
                    HeadError::TooLarge => (false, self.protocol("response head too large")),
                    HeadError::Malformed(m) => (false, self.protocol(m)),
                };
                Err(Failure { error, stale })
            }
        }
    }

    /// Starts a request whose body of `content_length` bytes the caller writes with
    /// [`Request::write`], then [`Request::finish`]es. Not retried; a pooled connection is
    /// used only if it still looks open, and if writing the head on it fails, a fresh
    /// connection is tried.
    pub async fn start(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        content_length: u64,
    ) -> Result<Request, Error> {
        let head = self.head(method, target, headers, Some(content_length));
        let io_timeout = self.0.options.io_timeout;
        let mut conn = match self.take_idle() {
            Some(mut c) => {
                let (res, _) = c.write_all(head.clone(), io_timeout).await;
                match res {
                    Ok(()) => Some(c),
                    Err(e) => {
                        tracing::debug!(origin = %self.0.name, error = %e, "pooled connection was closed; starting on a new one");
                        None
                    }
                }
            }
            None => None,
        };
        if conn.is_none() {
            let mut c = self.connect().await?;
            let (res, _) = c.write_all(head, io_timeout).await;
            res.map_err(|e| self.io_error(e))?;
            conn = Some(c);
        }
        Ok(Request {
            conn,
            remaining: content_length,
            method: method.to_owned(),
            client: self.clone(),
            failed: false,
        })
    }
}

/// A TLS configuration that trusts nothing: what an `https` client gets when the caller gave
/// none and the system has no roots (every handshake then fails with a clear error).
fn empty_roots() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let mut storage = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Response::new(&mut storage);
    let _ = r.parse(head);
    r.headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect()
}

// === impl Request ===

/// A request whose body is being streamed ([`Client::start`]). Dropping it closes the
/// connection, so the server never takes a partial body as complete.
#[derive(Debug)]
pub struct Request {
    conn: Option<Conn<Stream>>,
    remaining: u64,
    method: String,
    client: Client,
    failed: bool,
}

impl Request {
    /// Body bytes still to write.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Writes `buf` (all of it, then flushes). More bytes than the Content-Length left is an
    /// error. After an error, [`Request::finish`] returns the server's answer if it sent one
    /// (e.g. a refusal before closing), else the error again.
    pub async fn write<B: IoBuf>(&mut self, buf: B) -> Result<(), Error> {
        let len = buf.buf_len() as u64;
        if self.failed {
            return Err(self.client.protocol("request body write after a failure"));
        }
        if len > self.remaining {
            self.failed = true;
            return Err(self
                .client
                .protocol("request body longer than its Content-Length"));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.client.protocol("request already failed"));
        };
        let stream = &mut conn.stream;
        let op = async move {
            let (res, _) = stream.write_all(buf).await.into();
            match res {
                Ok(()) => stream.flush().await,
                Err(e) => Err(e),
            }
        };
        let res = match compio::time::timeout(self.client.0.options.io_timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        };
        match res {
            Ok(()) => {
                self.remaining -= len;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(self.client.io_error(e))
            }
        }
    }

    /// Reads the response once the whole body is written. After a failed write, returns the
    /// answer the server sent before closing, if any (waiting at most one read timeout).
    pub async fn finish(mut self) -> Result<Response, Error> {
        let Some(conn) = self.conn.take() else {
            return Err(self.client.protocol("request already failed"));
        };
        if !self.failed && self.remaining > 0 {
            return Err(self.client.protocol(format!(
                "request body {} bytes shorter than its Content-Length",
                self.remaining
            )));
        }
        let mut r = self
            .client
            .read_head(conn, &self.method)
            .await
            .map_err(|f| f.error)?;
        if self.failed {
            // the server answered mid-body: the connection cannot carry another request
            r.keep_alive = false;
        }
        Ok(r)
    }
}

// === impl Response ===

/// A response: status, headers, and the body, read with [`Response::read`]. The connection
/// goes back to the pool when the body has been read to the end; dropping the response
/// before that closes it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    headers: Vec<(String, String)>,
    state: BodyState,
    keep_alive: bool,
    conn: Option<Conn<Stream>>,
    client: Client,
}

impl Response {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Content-Length` header's value (for a HEAD: the size of what a GET would send).
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.parse().ok()
    }

    /// Whether the body has been read to the end.
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }

    fn release_if_done(&mut self) {
        if self.state.is_done()
            && let Some(c) = self.conn.take()
            && self.keep_alive
        {
            self.client.give_back(c);
        }
    }

    /// Reads the next body bytes, appending to `buf` (up to its room: give it some). Returns
    /// how many were appended, 0 when the body is complete. The buffer comes back `None`
    /// only when a timeout dropped the read that held it.
    pub async fn read<B: BodyBuf>(&mut self, buf: B) -> (Result<usize, Error>, Option<B>) {
        if self.state.is_done() {
            return (Ok(0), Some(buf));
        }
        let Some(conn) = self.conn.as_mut() else {
            return (
                Err(self.client.protocol("response body already failed")),
                Some(buf),
            );
        };
        let before = buf.filled();
        let (res, buf) = conn
            .read_body(&mut self.state, buf, self.client.0.options.io_timeout)
            .await;
        let got = buf.as_ref().map_or(0, |b| b.filled() - before);
        match res {
            Ok(()) => {
                self.release_if_done();
                (Ok(got), buf)
            }
            Err(e) => {
                self.conn = None;
                let e = match e {
                    BodyError::Timeout => Error::Timeout(self.client.0.name.clone()),
                    BodyError::Eof => self.client.io_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-body",
                    )),
                    BodyError::Io(e) => self.client.io_error(e),
                    BodyError::Chunked(m) => self.client.protocol(m),
                };
                (Err(e), buf)
            }
        }
    }

    /// Reads the whole body, refusing one of more than `limit` bytes.
    pub async fn read_to_end(mut self, limit: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while !self.state.is_done() {
            if out.len() >= limit {
                return Err(self
                    .client
                    .protocol(format!("response body larger than {limit} bytes")));
            }
            let mut buf = std::mem::take(&mut out);
            buf.reserve((limit + 1 - buf.len()).min(64 * 1024));
            let (res, buf) = self.read(buf).await;
            out = buf.unwrap_or_default();
            res?;
        }
        Ok(out)
    }

    /// Reads and drops what is left of a small body so the connection can be reused (a body
    /// larger than 64 KiB closes it instead).
    pub async fn finish(mut self) {
        let mut read = 0u64;
        let mut buf = Vec::with_capacity(8192);
        while !self.state.is_done() && read <= DRAIN_BYTES {
            buf.clear();
            let (res, b) = self.read(buf).await;
            match (res, b) {
                (Ok(n), Some(b)) => {
                    read += n as u64;
                    buf = b;
                }
                _ => return,
            }
        }
    }
}

/// Checks a 200/206 answer to `Range: bytes=<offset>-<offset+len-1>`: a 206 must name that
/// range and a 200 (a server ignoring the Range) is taken only from offset 0; either way the
/// body must be exactly `len` bytes. The reason when it is not.
pub fn check_range(r: &Response, offset: u64, len: u64) -> Result<(), String> {
    match r.status {
        206 => {
            let want = format!("bytes {offset}-{}/", offset + len - 1);
            if !r
                .header("content-range")
                .is_some_and(|v| v.starts_with(&want))
            {
                return Err(format!(
                    "answered Content-Range {:?}",
                    r.header("content-range")
                ));
            }
        }
        200 if offset == 0 => {}
        200 => return Err("the server ignored the Range".into()),
        s => return Err(format!("answered {s}")),
    }
    if r.content_length() != Some(len) {
        return Err(format!("answered Content-Length {:?}", r.content_length()));
    }
    Ok(())
}

// === impl Download ===

/// `len` bytes of a remote object being read (an answer to a ranged GET whose length was
/// checked): every store's reader. Ending early is an error (a download is cut, never ended
/// cleanly short); errors name the store.
pub struct Download {
    store: Rc<str>,
    response: Option<Response>,
    /// An RBD location's reads (instead of `response`; boxed: most downloads are HTTP).
    rbd: Option<Box<super::rbd::Reading>>,
    remaining: u64,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("store", &self.store)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Download {
    /// `len` bytes of `response`'s body, from store `store` (`None`, `len` 0: nothing).
    pub fn new(store: &str, response: Option<Response>, len: u64) -> Download {
        Download {
            store: Rc::from(store),
            response,
            rbd: None,
            remaining: len,
        }
    }

    /// `len` bytes of an RBD image, from store `store`.
    pub fn rbd(store: &str, reading: super::rbd::Reading, len: u64) -> Download {
        Download {
            store: Rc::from(store),
            response: None,
            rbd: Some(Box::new(reading)),
            remaining: len,
        }
    }

    /// Bytes still to read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Appends the next bytes to `buf` (up to its spare capacity: give it some); 0 at the
    /// end. The buffer comes back emptied only when a timed-out read kept it.
    pub async fn read(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        if let Some(rbd) = self.rbd.as_mut() {
            let (res, buf) = rbd.read(buf).await;
            return match res {
                Ok(0) if self.remaining > 0 => {
                    self.rbd = None;
                    let e = format!(
                        "store {}: the image ended {} bytes early",
                        self.store, self.remaining
                    );
                    (Err(io::Error::new(io::ErrorKind::UnexpectedEof, e)), buf)
                }
                Ok(n) => {
                    self.remaining = self.remaining.saturating_sub(n as u64);
                    (Ok(n), buf)
                }
                Err(e) => {
                    self.rbd = None;
                    (
                        Err(io::Error::other(format!("store {}: {e}", self.store))),
                        buf,
                    )
                }
            };
        }
        let Some(r) = self.response.as_mut() else {
            return (Ok(0), buf);
        };
        if self.remaining == 0 {
            return (Ok(0), buf);
        }
        let (res, buf) = r.read(buf).await;
        let buf = buf.unwrap_or_default();
        match res {
            Ok(0) => {
                self.response = None;
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "store {}: the object ended {} bytes early",
                        self.store, self.remaining
                    ),
                );
                (Err(e), buf)
            }
            Ok(n) => {
                self.remaining = self.remaining.saturating_sub(n as u64);
                (Ok(n), buf)
            }
            Err(e) => {
                self.response = None;
                let kind = match e {
                    Error::Timeout(_) => io::ErrorKind::TimedOut,
                    _ => io::ErrorKind::Other,
                };
                (
                    Err(io::Error::new(kind, format!("store {}: {e}", self.store))),
                    buf,
                )
            }
        }
    }
}

/// Whether `host` is a name under `localhost.` (not `localhost` itself, which the system's
/// hosts file answers).
fn is_localhost_name(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    h.len() > ".localhost".len()
        && h[h.len() - ".localhost".len()..].eq_ignore_ascii_case(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    use compio::net::TcpListener;

    fn options() -> Options {
        Options {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            max_idle: 4,
        }
    }

    fn origin(addr: std::net::SocketAddr, scheme: Scheme) -> Origin {
        Origin {
            scheme,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// Reads one request head (and a Content-Length body) from a test server's socket.
    async fn read_request<S: AsyncRead + AsyncWrite>(c: &mut Conn<S>) -> Option<(String, Vec<u8>)> {
        let mut head = crate::http::RequestHead::default();
        if !c
            .read_request(&mut head, 16384, 100, Duration::from_secs(5))
            .await
            .ok()?
        {
            return None;
        }
        let mut state = BodyState::new(head.framing);
        let mut body = Vec::new();
        while !state.is_done() {
            let mut b = std::mem::take(&mut body);
            b.reserve(64 * 1024);
            let (res, b) = c.read_body(&mut state, b, Duration::from_secs(5)).await;
            res.ok()?;
            body = b?;
        }
        Some((format!("{} {}", head.method(), head.target()), body))
    }

    fn url(s: &str) -> url::Url {
        s.parse().unwrap()
    }

    #[test]
    fn names_under_localhost_are_loopback() {
        for yes in ["b.localhost", "glint-x.LOCALHOST", "a.b.localhost."] {
            assert!(is_localhost_name(yes), "{yes}");
        }
        for no in [
            "localhost",
            "localhost.",
            "notlocalhost",
            "b.localhost.example",
            ".localhost",
        ] {
            assert!(!is_localhost_name(no), "{no}");
        }
    }

    #[test]
    fn origins_and_authorities() {
        let o = Origin::of(&url("https://s3.example.net/x")).unwrap();
        assert_eq!((o.port, o.authority()), (443, "s3.example.net".into()));
        let o = Origin::of(&url("http://127.0.0.1:9000")).unwrap();
        assert_eq!(o.authority(), "127.0.0.1:9000");
        assert_eq!(o.to_string(), "http://127.0.0.1:9000");
        let o = Origin::of(&url("http://[::1]:8080/")).unwrap();
        assert_eq!(
            (o.host.as_str(), o.authority()),
            ("::1", "[::1]:8080".into())
        );
        assert!(Origin::of(&url("ftp://h/")).is_none());
    }

    /// A HEAD answered with a chunked empty body (Swift behind keystonemiddleware sends
    /// `0\r\n\r\n` after a HEAD's 401): those bytes are not the next answer; the connection
    /// is not pooled.
    #[compio::test]
    async fn bytes_past_an_answer_keep_its_connection_out_of_the_pool() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = compio::runtime::spawn(async move {
            let mut connections = 0;
            loop {
                let (s, _) = l.accept().await.unwrap();
                connections += 1;
                let mut c = Conn::new(s, 8192);
                while let Some((line, _)) = read_request(&mut c).await {
                    let resp: &[u8] = if line.starts_with("HEAD") {
                        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    };
                    let (r, _) = c.write_all(resp.to_vec(), Duration::from_secs(5)).await;
                    r.unwrap();
                    if line.starts_with("GET") {
                        return connections;
                    }
                }
            }
        });
        let client = Client::new(origin(addr, Scheme::Http), None, options());
        let r = client.send("HEAD", "/x", &[], Body::Empty).await.unwrap();
        assert_eq!(r.status, 401);
        r.finish().await;
        // the stray bytes may arrive after the head: give them time to be read with it
        compio::time::sleep(Duration::from_millis(50)).await;
        let r = client.send("GET", "/y", &[], Body::Empty).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.read_to_end(100).await.unwrap(), b"ok");
        assert_eq!(server.await.unwrap(), 2, "a fresh connection for the GET");
    }

    /// A server that answers 503 twice, then 200; that closes a kept-alive connection when
    /// the next request arrives, without answering; and streamed PUTs: the client retries the
    /// 503s, retries the PUT on a fresh connection after the stale one, and reuses
    /// connections otherwise.
    #[compio::test]
    async fn retries_5xx_and_stale_connections_and_reuses_others() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = compio::runtime::spawn(async move {
            let mut seen = Vec::new();
            let mut connections = 0;
            'accept: loop {
                let (s, _) = l.accept().await.unwrap();
                connections += 1;
                let mut c = Conn::new(s, 8192);
                while let Some((line, body)) = read_request(&mut c).await {
                    seen.push(format!("{line} {}", body.len()));
                    let resp: &[u8] = match seen.len() {
                        1 | 2 => b"HTTP/1.1 503 Slow Down\r\nContent-Length: 4\r\n\r\nbusy",
                        3 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nETag: \"e\"\r\n\r\nok",
                        // the keep-alive race: the server closes as the request arrives
                        4 => continue 'accept,
                        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                    };
                    let (r, _) = c.write_all(resp.to_vec(), Duration::from_secs(5)).await;
                    r.unwrap();
                    if line.starts_with("DELETE") {
                        break 'accept;
                    }
                }
            }
            (seen, connections)
        });
        let client = Client::new(origin(addr, Scheme::Http), None, options());
        let r = client
            .send("GET", "/a", &[("Range", "bytes=0-1")], Body::Empty)
            .await
            .unwrap();
        assert_eq!((r.status, r.header("etag")), (200, Some("\"e\"")));
        assert_eq!(r.read_to_end(100).await.unwrap(), b"ok");
        assert_eq!(client.idle(), 1);
        let mut body = vec![7u8; 100_000];
        let r = client
            .send("PUT", "/b", &[], Body::Bytes(&mut body))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(body.len(), 100_000, "the body buffer comes back");
        // too long: refused before writing; dropping the request closes its connection
        let mut req = client.start("PUT", "/c", &[], 6).await.unwrap();
        req.write(b"abc".to_vec()).await.unwrap();
        assert!(req.write(b"defg".to_vec()).await.is_err());
        drop(req);
        let mut req = client.start("PUT", "/d", &[], 6).await.unwrap();
        req.write(b"abc".to_vec()).await.unwrap();
        req.write(b"def".to_vec()).await.unwrap();
        assert_eq!(req.finish().await.unwrap().status, 200);
        let r = client.send("DELETE", "/e", &[], Body::Empty).await.unwrap();
        assert_eq!(r.status, 200);
        let (seen, connections) = server.await.unwrap();
        assert_eq!(
            seen,
            [
                "GET /a 0",
                "GET /a 0",
                "GET /a 0",
                "PUT /b 100000",
                "PUT /b 100000",
                "PUT /d 6",
                "DELETE /e 0"
            ]
        );
        // GETs and the stale PUT; the retried PUT and the dropped /c; /d and the DELETE
        assert_eq!(connections, 3);
    }

    /// A server that takes no more connections: a non-idempotent request is not retried, and
    /// a refused connection is an error naming the origin.
    #[compio::test]
    async fn unreachable_origin_is_named() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let client = Client::new(origin(addr, Scheme::Http), None, options());
        let e = client
            .send("POST", "/x", &[], Body::Empty)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }

    /// Certificates are verified: a server with a self-signed certificate is refused by the
    /// default roots and accepted once its certificate is given as the extra CA file.
    #[compio::test]
    async fn tls_verifies_the_server_certificate() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = compio::tls::TlsAcceptor::from(Arc::new(server_config));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = compio::runtime::spawn(async move {
            let mut answered = 0;
            for _ in 0..2 {
                let (s, _) = l.accept().await.unwrap();
                let Ok(tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut c = Conn::new(tls, 8192);
                if read_request(&mut c).await.is_some() {
                    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
                    let (r, _) = c.write_all(resp, Duration::from_secs(5)).await;
                    r.unwrap();
                    answered += 1;
                }
            }
            answered
        });
        let o = Origin {
            scheme: Scheme::Https,
            host: "localhost".into(),
            port,
        };
        let system = Client::new(o.clone(), Some(tls_config(None).unwrap()), options());
        let e = system.send("GET", "/", &[], Body::Empty).await.unwrap_err();
        assert!(matches!(e, Error::Tls { .. }), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");
        let trusted = Client::new(o, Some(tls_config(Some(&ca)).unwrap()), options());
        let r = trusted.send("GET", "/", &[], Body::Empty).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.read_to_end(100).await.unwrap(), b"hello");
        assert_eq!(server.await.unwrap(), 1);
        assert!(tls_config(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
