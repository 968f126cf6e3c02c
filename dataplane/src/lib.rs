//! `dataplane`: glint's byte mover.
//!
//! The only public listener. Thread-per-core on io_uring (compio): each worker thread runs its
//! own runtime and serves whole connections. It streams image uploads into the store while
//! hashing them ([`server::upload`], [`hash`]), serves downloads from the store with `splice`
//! ([`server::download`], [`io`]), and forwards every other request to the control plane
//! ([`server::proxy`]). Before each transfer it asks the control plane over the channel
//! ([`control_link`]) whether it may proceed and where the data lives; it never opens the
//! database.
//!
//! It is **not** an HTTP framework: it speaks exactly the HTTP/1.1 it needs ([`http`]), as a
//! server to its clients and as a client of the control plane (and, next, of the stores).
//!
//! Layout, each import pointing down: [`server::bootstrap`] starts the worker threads;
//! [`server`] is the dispatcher, routing each request by [`shared::route`]; the handlers
//! ([`server::upload`], [`server::download`], [`server::proxy`]) use what every handler shares
//! ([`server::worker`], [`server::respond`]), and below them [`http`], [`control_link`],
//! [`store`], [`hash`] and [`io`]. Start at [`run`].
#![deny(unsafe_code)]

pub mod cache;
pub mod control_link;
pub mod hash;
pub mod http;
pub mod io;
pub mod jobs;
pub mod metrics;
pub mod server;
pub mod store;

pub use server::bootstrap::{run, worker_runtime};

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store directory could not be opened.
    #[error("opening the store at {path}: {source}")]
    Store {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A worker runtime could not be built (no io_uring?).
    #[error(
        "starting an io_uring runtime: {0} (glint's data plane needs io_uring; check kernel.io_uring_disabled)"
    )]
    Runtime(std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] server::tls::Error),
    /// Any other I/O failure at start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
