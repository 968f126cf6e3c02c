//! `shared`: the vocabulary both glint planes speak.
//!
//! This crate holds the types that cross the boundary between the control plane and the data
//! plane: image identifiers and statuses ([`image`]), the framed channel protocol ([`channel`]),
//! the closed set of error codes and refusal reasons sent over it with the one table of client
//! messages ([`error`]), metric names ([`metrics`]), the configuration both planes load
//! ([`config`]) and the tracing setup ([`telemetry`]).
//!
//! It also owns every rule both planes apply to a request, so that each has one owner: what a
//! path means and which versions are advertised ([`route`]), how a request id is chosen
//! ([`request_id`]), how a store location is parsed ([`location`]), and which `web-download`
//! sources may be fetched ([`import_filter`]).
//!
//! It is **not** a place for I/O: no async runtime, no HTTP, no SQL. Start with
//! [`channel::messages`] to see what the planes say to each other.
#![forbid(unsafe_code)]

pub mod blocks;
pub mod channel;
pub mod config;
pub mod error;
pub mod image;
pub mod import_filter;
pub mod location;
pub mod lockfile;
pub mod metrics;
pub mod request_id;
pub mod route;
pub mod telemetry;
