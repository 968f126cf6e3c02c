//! Per-request plumbing, applied to every route (and the fallbacks) by [`super::router`]:
//!
//! 1. [`request_id`]: read `x-openstack-request-id` (the data plane forwards the client's),
//!    prefix `req-`, refuse more than 64 bytes with 431, or generate `req-<uuid4>`; echo it.
//! 2. [`observe`]: one `request{method, route, request_id}` span per request, where `route` is
//!    the matched template or `unmatched`; logs the error report once (4xx at debug, 5xx at
//!    error); counts `glint_api_requests_total` and `glint_api_request_duration_seconds`.
//!
//! Both are plain `axum::middleware::from_fn` functions; see [`observe::observe`].

pub mod auth;
pub mod observe;
pub mod request_id;

pub use request_id::RequestId;
