//! `controlplane`: the glint control plane — the Glance Image API v2 *metadata* service.
//!
//! It owns the database and every decision about images: the HTTP API (create, list, show,
//! patch, delete, tags, members, deactivate/reactivate, schemas, versions, discovery) served over a Unix socket that the data plane
//! forwards requests to; the policy (Glance rule names); image status transitions; and the
//! channel server that authorises the data plane's uploads and downloads.
//!
//! It is **not** the data path: it never reads, writes or deletes image bytes (data to delete
//! becomes a job the data plane claims, see [`db::jobs`]), and it has no public TCP
//! listener (only the admin listener for `/healthz`, `/readyz` and `/metrics`). The data plane
//! serves `PUT`/`GET /v2/images/{id}/file` and never touches the database.
//!
//! Where to start:
//! - [`run`] is what the `glint` binary calls; [`serve`] is the same without the runtime and
//!   signal handling (tests use it).
//! - [`api::router`] builds the HTTP API; handlers live in [`api::images`] and friends.
//! - [`dataplane_link`] is the channel server (upload leases, download grants, jobs).
//! - [`scrubber`] finishes delayed deletes: after `scrub_time` a `pending_delete` image
//!   becomes `deleted` and its data a job for the data plane.
//! - [`domain`] holds the image rules and decides every status move, [`policy`] who may do
//!   what, [`db`] the queries (which execute the domain's moves). [`App::find_authorized`] is
//!   the step the API and the channel both take before acting on an image.
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod dataplane_link;
pub mod db;
pub mod domain;
pub mod glance_download;
pub mod manage;
pub mod metrics;
pub mod policy;
pub mod process_metrics;
pub mod scrubber;
mod server;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use app::App;
pub use server::{Error, run, serve};
