//! [`ApiError`]: the only place that knows HTTP status codes, and the one error-body renderer.
//!
//! Lower-layer errors are 500 unless mapped here explicitly (STYLE §3). The body is
//! `{"error": {"code": 404, "title": "Not Found", "message": "…"}}`: python-glanceclient and
//! openstacksdk read `message` from each *object* at the top level of a JSON error body
//! (glanceclient's `exc.from_response` calls `.get("message")` on every top-level value), so
//! the fields are nested one level down.
//!
//! `IntoResponse` does not log: it puts an [`ErrorReport`] into the response extensions and the
//! `observe` middleware logs it once, inside the request span.

use crate::domain::{self, PatchMedia};
use crate::{db, policy};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405 (axum adds the `Allow` header).
    #[error("The method is not allowed for this resource.")]
    MethodNotAllowed,
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 for a PATCH with the wrong media type (adds `Accept-Patch`).
    #[error(
        "Image PATCH expects Content-Type one of: {}",
        PatchMedia::ACCEPT_PATCH
    )]
    PatchMediaType,
    /// 431: `x-openstack-request-id` longer than 64 bytes.
    #[error("x-openstack-request-id is too long, max size 64")]
    RequestIdTooLong,
    /// A domain rule refused.
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] db::Error),
    /// The policy refused.
    #[error(transparent)]
    Policy(#[from] policy::Denied),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

/// What the `observe` middleware logs about a failed request.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    /// Status sent.
    pub status: StatusCode,
    /// Full error text (for 500s this is more than the client sees).
    pub detail: String,
}

const INTERNAL_MESSAGE: &str = shared::error::INTERNAL;

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        use domain::Error as D;
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::PatchMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestIdTooLong => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Domain(e) => match e {
                D::Invalid(_) | D::FormatsMissing { .. } => StatusCode::BAD_REQUEST,
                D::ReadOnly(_) | D::Reserved(_) | D::Forbidden(_) | D::Protected(_) => {
                    StatusCode::FORBIDDEN
                }
                D::NotFound(_) => StatusCode::NOT_FOUND,
                D::Conflict(_) | D::InvalidTransition { .. } => StatusCode::CONFLICT,
                D::LimitExceeded(_) => StatusCode::PAYLOAD_TOO_LARGE,
            },
            ApiError::Db(db::Error::Duplicate) => StatusCode::CONFLICT,
            ApiError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Policy(policy::Denied::NotFound) => StatusCode::NOT_FOUND,
            ApiError::Policy(policy::Denied::Forbidden(_)) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the client sees (500s do not leak internals).
    fn client_message(&self) -> String {
        if self.status().is_server_error() {
            return INTERNAL_MESSAGE.to_owned();
        }
        match self {
            ApiError::Db(db::Error::Duplicate) => {
                "An image with this identifier already exists.".to_owned()
            }
            ApiError::Policy(policy::Denied::NotFound) => "No image found.".to_owned(),
            other => other.to_string(),
        }
    }
}

/// The Glance-shaped error response for `status` with `message`: the body from
/// [`shared::error::body`], the renderer the data plane uses too.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        shared::error::body(status.as_u16(), message),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = error_response(status, &self.client_message());
        if matches!(self, ApiError::PatchMediaType) {
            response.headers_mut().insert(
                HeaderName::from_static("accept-patch"),
                HeaderValue::from_static(PatchMedia::ACCEPT_PATCH),
            );
        }
        response.extensions_mut().insert(ErrorReport {
            status,
            detail: self.to_string(),
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::image::{ImageId, ImageStatus};

    #[test]
    fn status_table() {
        let id = ImageId::new_random();
        let table: Vec<(ApiError, u16)> = vec![
            (ApiError::BadRequest("x".into()), 400),
            (ApiError::Domain(domain::Error::Invalid("x".into())), 400),
            (
                ApiError::Domain(domain::Error::FormatsMissing {
                    disk_format: true,
                    container_format: false,
                }),
                400,
            ),
            (
                ApiError::Domain(domain::Error::ReadOnly("status".into())),
                403,
            ),
            (
                ApiError::Domain(domain::Error::Reserved("location".into())),
                403,
            ),
            (ApiError::Domain(domain::Error::Forbidden("x".into())), 403),
            (ApiError::Domain(domain::Error::Protected(id)), 403),
            (
                ApiError::Policy(policy::Denied::Forbidden(policy::Rule::ModifyImage)),
                403,
            ),
            (ApiError::Policy(policy::Denied::NotFound), 404),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::Domain(domain::Error::NotFound("x".into())), 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::Domain(domain::Error::Conflict("x".into())), 409),
            (
                ApiError::Domain(domain::Error::InvalidTransition {
                    from: ImageStatus::Active,
                    to: ImageStatus::Saving,
                }),
                409,
            ),
            (ApiError::Db(db::Error::Duplicate), 409),
            (
                ApiError::Domain(domain::Error::LimitExceeded("x".into())),
                413,
            ),
            (ApiError::PayloadTooLarge("x".into()), 413),
            (ApiError::PatchMediaType, 415),
            (ApiError::RequestIdTooLong, 431),
            (ApiError::Db(db::Error::Corrupt("x".into())), 500),
            (ApiError::Db(db::Error::OutOfRange("size")), 500),
            (ApiError::Internal("x".into()), 500),
        ];
        for (err, want) in table {
            assert_eq!(err.status().as_u16(), want, "{err:?}");
        }
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let e = ApiError::Db(db::Error::Corrupt("secret path".into()));
        assert_eq!(e.client_message(), INTERNAL_MESSAGE);
        let r = e.into_response();
        assert!(
            r.extensions()
                .get::<ErrorReport>()
                .unwrap()
                .detail
                .contains("secret path")
        );
    }
}
