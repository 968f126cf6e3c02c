//! Per-request plumbing, applied to every route (and the fallbacks) by [`super::router`]:
//!
//! 1. [`request_id`]: read `x-openstack-request-id` (the data plane forwards the client's),
//!    prefix `req-`, refuse more than 64 bytes with 431, or generate `req-<uuid4>`; echo it.
//! 2. [`observe`]: one `request{method, route, request_id}` span per request, where `route` is
//!    the matched template, or for a path no route matched its `unmatched:<family>` (the Glance APIs not served yet, else `unmatched:other`); logs the error report once (4xx at debug, 5xx at
//!    error); counts `glint_api_requests_total` and `glint_api_request_duration_seconds`.
//!
//! 3. [`auth`]: authenticate the caller (Keystone token or noauth headers), or answer 401/503;
//!    the context goes into the request's extensions as [`identity::Authenticated`].
//!
//! All are plain `axum::middleware::from_fn` functions; see [`observe::observe`]. What the
//! middleware hands to the handlers' extractors lives in [`identity`], so that neither imports
//! the other.

pub mod auth;
pub mod identity;
pub mod observe;
pub mod request_id;

pub use request_id::RequestId;
