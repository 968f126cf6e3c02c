//! `ErrorCode`: the stable, closed set of failure codes sent across the channel.
//!
//! The control plane never sends a message string that the data plane would have to parse; it
//! sends one of these codes and the data plane renders the Glance-shaped error body from it.

use serde::{Deserialize, Serialize};

/// A failure the control plane reports to the data plane (or the data plane reports back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request is malformed or violates a precondition the client can fix (400).
    BadRequest,
    /// No valid credentials (401).
    Unauthorized,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// The image does not exist or is not visible to the caller (404).
    NotFound,
    /// The image is in a status that does not allow the operation (409).
    Conflict,
    /// The image was deleted while the transfer ran (410).
    Gone,
    /// Size limit or quota exceeded, or the store is full (413).
    PayloadTooLarge,
    /// Wrong `Content-Type` (415).
    UnsupportedMediaType,
    /// The requested range cannot be served (416).
    RangeNotSatisfiable,
    /// A dependency (store, identity service, the other plane) is unavailable (503).
    ServiceUnavailable,
    /// Anything else (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status code Glance answers with for this failure.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::ServiceUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The reason phrase that goes with [`ErrorCode::http_status`].
    pub fn reason(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "Bad Request",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFound => "Not Found",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::Gone => "Gone",
            ErrorCode::PayloadTooLarge => "Request Entity Too Large",
            ErrorCode::UnsupportedMediaType => "Unsupported Media Type",
            ErrorCode::RangeNotSatisfiable => "Requested Range Not Satisfiable",
            ErrorCode::ServiceUnavailable => "Service Unavailable",
            ErrorCode::Internal => "Internal Server Error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.http_status(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let table = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Conflict, 409),
            (ErrorCode::Gone, 410),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::UnsupportedMediaType, 415),
            (ErrorCode::RangeNotSatisfiable, 416),
            (ErrorCode::ServiceUnavailable, 503),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in table {
            assert_eq!(code.http_status(), status, "{code:?}");
        }
    }
}
