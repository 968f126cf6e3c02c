//! Metric names shared by both planes, the tests and `grafana/`.
//!
//! Shape: `<ns>_<subsystem>_<what>_<unit>`; counters end in `_total`. Labels are bounded:
//! method, route template, status, direction, store, result, side — never an id.

/// Build information gauge, label `version`.
pub const BUILD_INFO: &str = "glint_build_info";
/// Control-plane API requests, labels `method`, `route`, `status`.
pub const API_REQUESTS_TOTAL: &str = "glint_api_requests_total";
/// Control-plane API request duration histogram, labels `method`, `route`.
pub const API_REQUEST_DURATION_SECONDS: &str = "glint_api_request_duration_seconds";
/// Channel requests handled by the control plane, labels `kind`, `result`.
pub const CHANNEL_REQUESTS_TOTAL: &str = "glint_channel_requests_total";
/// Upload leases reverted because their channel connection closed.
pub const CHANNEL_LEASES_REVERTED_TOTAL: &str = "glint_channel_leases_reverted_total";
/// Image status transitions committed, labels `from`, `to`.
pub const IMAGE_TRANSITIONS_TOTAL: &str = "glint_db_image_transitions_total";
/// Plane restarts by the supervisor, label `plane`.
pub const SUPERVISOR_RESTARTS_TOTAL: &str = "glint_supervisor_restarts_total";

/// Every metric name above (for the README table and the dashboard check).
pub const ALL: &[&str] = &[
    BUILD_INFO,
    API_REQUESTS_TOTAL,
    API_REQUEST_DURATION_SECONDS,
    CHANNEL_REQUESTS_TOTAL,
    CHANNEL_LEASES_REVERTED_TOTAL,
    IMAGE_TRANSITIONS_TOTAL,
    SUPERVISOR_RESTARTS_TOTAL,
];
