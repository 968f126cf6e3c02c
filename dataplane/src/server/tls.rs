//! TLS on the public listener (rustls with the ring provider, through compio-tls), and the
//! stream type every handler works on: [`ClientStream`], plain TCP or TLS.
//!
//! Downloads over plain TCP are spliced from the file to the socket; over TLS the bytes must be
//! encrypted in user space, so they go through a buffer (see `download::send_file`).
//!
//! Certificates are re-read on SIGHUP ([`Tls::reload`]): new connections get the new
//! certificate, connections already open keep theirs, nothing is dropped.

use compio::buf::{BufResult, IoBuf, IoBufMut};
use compio::io::{AsyncRead, AsyncWrite};
use compio::net::TcpStream;
use compio::tls::{TlsAcceptor, TlsStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate file is unreadable or holds no certificate.
    #[error("reading certificates from {0}: {1}")]
    Certs(PathBuf, String),
    /// The key file is unreadable or holds no private key.
    #[error("reading the private key from {0}: {1}")]
    Key(PathBuf, String),
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS acceptor shared by all workers; swapped on reload.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Certs(cert.to_owned(), e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Certs(cert.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::Certs(cert.to_owned(), "no certificate found".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| Error::Key(key.to_owned(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Tls {
    /// Loads the certificate and key; `Ok(None)` when TLS is not configured.
    pub fn load(cfg: &shared::config::Tls) -> Result<Option<Arc<Tls>>, Error> {
        let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) else {
            return Ok(None);
        };
        let acceptor = TlsAcceptor::from(server_config(cert, key)?);
        Ok(Some(Arc::new(Tls {
            cert: cert.clone(),
            key: key.clone(),
            current: RwLock::new(acceptor),
        })))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files; on error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), Error> {
        let acceptor = TlsAcceptor::from(server_config(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }
}

/// A client connection: plain TCP or TLS over TCP.
pub enum ClientStream {
    /// Plain HTTP (downloads use splice).
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientStream::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            ClientStream::Tls(_) => f.write_str("Tls(..)"),
        }
    }
}

impl ClientStream {
    /// The TCP socket when no TLS layer sits on it (so file bytes may be spliced into it).
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            ClientStream::Plain(s) => Some(s),
            ClientStream::Tls(_) => None,
        }
    }
}

impl AsyncRead for ClientStream {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            ClientStream::Plain(s) => s.read(buf).await,
            ClientStream::Tls(s) => s.read(buf).await,
        }
    }
}

impl AsyncWrite for ClientStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientStream::Plain(s) => s.write(buf).await,
            ClientStream::Tls(s) => s.write(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush().await,
            ClientStream::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.shutdown().await,
            ClientStream::Tls(s) => s.shutdown().await,
        }
    }
}
