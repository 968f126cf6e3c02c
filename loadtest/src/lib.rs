//! `loadtest`: drives a **real** running glint from outside.
//!
//! Two things live here, and neither is linked into glint itself:
//!
//! - the test harness ([`harness`]): it starts the real `glint serve` binary on port 0 in a temp
//!   directory, waits for readiness by polling (never by sleeping), and keeps the logs when a
//!   test fails. The end-to-end tests in `glint/tests/` and the client compatibility scripts in
//!   `loadtest/compat/` run against it;
//! - the load generator (the `loadtest` binary, `src/main.rs`), which behaves like a fleet of
//!   Nova nodes: [`download`] (N concurrent downloads of one or many images, optional `Range`
//!   resumes, keep-alive or not), [`upload`], [`metadata`] (show, list with filters), and
//!   [`compare`] (glint against nginx and against its own limits; `benches/compare` runs it),
//!   and [`compare_stores`] (glint's S3 and Swift stores against rclone on real servers, and the
//!   data plane's memory per upload; `benches/compare-stores` runs it).
//!
//! Every mode is bounded (duration and/or request count, [`run::Bounds`]) and only targets
//! loopback addresses or Unix sockets ([`target`]). A run reports MB/s, req/s, p50/p99/p999
//! latency, time to first byte ([`stats`]), the server's CPU seconds per GiB and peak RSS per
//! process read from `/proc` ([`procs`]), and JSON summaries carry the machine, kernel and git
//! revision ([`machine`]).
//!
//! Start with [`download::run`] and [`run::Report`].

pub mod cold_pull;
pub mod compare;
pub mod compare_stores;
pub mod download;
pub mod harness;
pub mod hashlimit;
pub mod http;
pub mod machine;
pub mod metadata;
pub mod procs;
pub mod run;
pub mod stats;
pub mod target;
pub mod upload;
