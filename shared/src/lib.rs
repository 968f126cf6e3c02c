//! `shared`: the vocabulary both glint planes speak.
//!
//! This crate holds the types that cross the boundary between the control plane and the data
//! plane: image identifiers and statuses ([`image`]), the framed channel protocol ([`channel`]),
//! the closed set of error codes sent over it ([`error`]), metric names ([`metrics`]), the
//! configuration both planes load ([`config`]) and the tracing setup ([`telemetry`]).
//!
//! It is **not** a place for I/O: no async runtime, no HTTP, no SQL. Start with
//! [`channel::messages`] to see what the planes say to each other.
#![forbid(unsafe_code)]

pub mod channel;
pub mod config;
pub mod error;
pub mod image;
pub mod lockfile;
pub mod metrics;
pub mod telemetry;
