//! Errors as both planes show them: the closed set of codes sent across the channel
//! ([`ErrorCode`]), why a transfer was refused ([`Reason`]), the one table of messages a
//! client reads, and the one renderer of Glance's JSON error body ([`body`]).
//!
//! The control plane never sends a message string that the data plane would have to parse; it
//! sends a [`Reason`], and either plane renders its message from the table here, so the same
//! refusal reads the same on the data routes and on the metadata routes.

use crate::image::ImageStatus;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

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
        status_title(self.http_status())
    }

    /// A short `snake_case` name (metric label values).
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Gone => "gone",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The reason phrase of a status, as Glance (webob) writes it: the status line's text and the
/// `title` of an error body.
pub fn status_title(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Glance's JSON error body: `{"error": {"code": 404, "title": "Not Found", "message": "…"}}`.
///
/// Nested on purpose: python-glanceclient reads `message` from every top-level value of a
/// JSON error body; openstacksdk and keystoneauth both understand the `error` object.
pub fn body(status: u16, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        code: u16,
        title: &'static str,
        message: &'a str,
    }
    let b = Body {
        error: Inner {
            code: status,
            title: status_title(status),
            message,
        },
    };
    serde_json::to_vec(&b).unwrap_or_default()
}

/// Why a request was refused: sent across the channel with the refusal, and rendered into the
/// client's message by [`Reason::message`] on either plane. Each maps to one status
/// ([`Reason::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The request carried no valid credentials (401).
    Unauthenticated,
    /// Keystone could not be asked (503).
    IdentityUnavailable,
    /// No image with that id, or not one the caller may see (404).
    NoSuchImage,
    /// The policy refused this rule (403).
    NotAllowed(Action),
    /// Data of a deactivated image, asked for by a non-admin (403).
    Deactivated,
    /// The image's status does not allow the move to `to` (409).
    Transition {
        /// Status the image is in.
        from: ImageStatus,
        /// Status the request needs to move it to.
        to: ImageStatus,
    },
    /// `disk_format` and/or `container_format` is not set yet (400).
    FormatsMissing {
        /// `disk_format` is missing.
        disk_format: bool,
        /// `container_format` is missing.
        container_format: bool,
    },
    /// The data is larger than `image_size_cap` (413).
    TooLarge,
    /// The image was deleted while its data was uploaded (410).
    DeletedDuringUpload,
    /// The channel message was malformed or out of order (400): a bug on one side.
    Protocol,
    /// `X-Image-Meta-Store` names no configured store (400).
    UnknownStore,
    /// The store asked for takes no uploads (410, as Glance's `StoreAddDisabled`).
    ReadOnlyStore,
    /// The data this upload would replace is still being deleted from its store (after an
    /// earlier failed upload, or a store removal): committing now could lose the new data to
    /// that delete (409; the client uploads again in a moment).
    CleanupPending,
    /// `PUT /v2/cache/{id}` of an image that is not active (400, Glance's text).
    NotQueueable,
    /// Every copy of the image's data failed verification and was quarantined by the
    /// auditor: none is served (503).
    Quarantined,
    /// `PUT …/stage` where `glance-direct` is not in `enabled_import_methods` (404, Glance's
    /// text).
    StagingDisabled,
    /// An import job's request for a task that is no longer running its import (finished,
    /// failed by another node, expired) or for an image no longer importing (409): the data
    /// plane stops that import.
    ImportOver,
    /// The control plane failed (500).
    Internal,
}

/// The policy rules a transfer is checked against (Glance's rule names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// `upload_image`.
    UploadImage,
    /// `download_image`.
    DownloadImage,
    /// `cache_image`.
    CacheImage,
    /// `cache_list`.
    CacheList,
    /// `cache_delete`.
    CacheDelete,
    /// `cache_clean`.
    CacheClean,
    /// `cache_prune`.
    CachePrune,
    /// `list_cached_nodes`.
    ListCachedNodes,
    /// `modify_image` (what `PUT …/stage` is checked against, as in Glance).
    ModifyImage,
    /// `delete_image`.
    DeleteImage,
}

impl Action {
    /// Glance's rule name.
    pub fn rule(self) -> &'static str {
        match self {
            Action::UploadImage => "upload_image",
            Action::DownloadImage => "download_image",
            Action::CacheImage => "cache_image",
            Action::CacheList => "cache_list",
            Action::CacheDelete => "cache_delete",
            Action::CacheClean => "cache_clean",
            Action::CachePrune => "cache_prune",
            Action::ListCachedNodes => "list_cached_nodes",
            Action::ModifyImage => "modify_image",
            Action::DeleteImage => "delete_image",
        }
    }
}

impl Reason {
    /// The code (and so the status) of this refusal.
    pub fn code(self) -> ErrorCode {
        match self {
            Reason::Unauthenticated => ErrorCode::Unauthorized,
            Reason::IdentityUnavailable | Reason::Quarantined => ErrorCode::ServiceUnavailable,
            Reason::NoSuchImage | Reason::StagingDisabled => ErrorCode::NotFound,
            Reason::NotAllowed(_) | Reason::Deactivated => ErrorCode::Forbidden,
            Reason::Transition { .. } | Reason::CleanupPending | Reason::ImportOver => {
                ErrorCode::Conflict
            }
            Reason::FormatsMissing { .. }
            | Reason::Protocol
            | Reason::UnknownStore
            | Reason::NotQueueable => ErrorCode::BadRequest,
            Reason::ReadOnlyStore => ErrorCode::Gone,
            Reason::TooLarge => ErrorCode::PayloadTooLarge,
            Reason::DeletedDuringUpload => ErrorCode::Gone,
            Reason::Internal => ErrorCode::Internal,
        }
    }

    /// The message the client reads, about the image `image_id`.
    pub fn message(self, image_id: &dyn std::fmt::Display) -> Cow<'static, str> {
        match self {
            Reason::Unauthenticated => UNAUTHENTICATED.into(),
            Reason::IdentityUnavailable => IDENTITY_UNAVAILABLE.into(),
            Reason::NoSuchImage => no_such_image(image_id).into(),
            Reason::NotAllowed(a) => not_allowed(a.rule()).into(),
            Reason::Deactivated => DEACTIVATED.into(),
            Reason::Transition { from, to } => transition(from, to).into(),
            Reason::FormatsMissing {
                disk_format,
                container_format,
            } => formats_missing(disk_format, container_format).into(),
            Reason::TooLarge => TOO_LARGE.into(),
            Reason::DeletedDuringUpload => format!(
                "Image {image_id} could not be found after upload. The image may have been deleted during the upload."
            )
            .into(),
            Reason::Protocol => "Malformed request between glint's planes.".into(),
            Reason::UnknownStore => "Unknown scheme found in URI".into(),
            Reason::ReadOnlyStore => STORE_ADD_DISABLED.into(),
            Reason::CleanupPending => format!(
                "Earlier data of image {image_id} is still being removed from its store; upload the image again."
            )
            .into(),
            Reason::NotQueueable => "Only images with status active can be targeted for queueing".into(),
            Reason::Quarantined => format!(
                "The data of image {image_id} failed verification and is quarantined; no intact copy is available."
            )
            .into(),
            Reason::StagingDisabled => "'glance-direct' method is not available at this site.".into(),
            Reason::ImportOver => format!("The import into image {image_id} is no longer running.").into(),
            Reason::Internal => INTERNAL.into(),
        }
    }
}

// === the message table ===
// Glance's texts (glance/common/exception.py, glance/api/v2/image_data.py, keystonemiddleware),
// so that clients and operators read what they would read from Glance.

/// 401 without valid credentials (keystonemiddleware's text).
pub const UNAUTHENTICATED: &str = "The request you have made requires authentication.";
/// 503 when Keystone cannot be asked.
pub const IDENTITY_UNAVAILABLE: &str = "The Keystone service is temporarily unavailable.";
/// 403 for data of a deactivated image.
pub const DEACTIVATED: &str =
    "The requested image has been deactivated. Image data download is prohibited.";
/// 413 for data over `image_size_cap`.
pub const TOO_LARGE: &str = "The provided image is too large.";
/// 500: the client never sees internals.
pub const INTERNAL: &str =
    "The server has either erred or is incapable of performing the requested operation.";
/// 410 for an upload to a read-only store (Glance's `StoreAddDisabled` answer).
pub const STORE_ADD_DISABLED: &str =
    "Error in store configuration. Adding images to store is disabled.";

/// 400 for an `X-Image-Meta-Store` (or `stores`) naming no configured store (glance_store's
/// `UnknownScheme`).
pub fn unknown_store(store: &dyn std::fmt::Display) -> String {
    format!("Unknown scheme '{store}' found in URI")
}

/// 503 when no location of an image's data can be read now.
pub const DATA_UNAVAILABLE: &str = "The image data is temporarily unavailable.";

/// 503 when the other plane cannot be reached.
pub const PLANE_UNAVAILABLE: &str = "The image service is temporarily unavailable.";

/// 404 for an image that does not exist or that the caller may not see.
pub fn no_such_image(image_id: &dyn std::fmt::Display) -> String {
    format!("No image found with ID {image_id}")
}

/// 400 for data sent before both formats are set, naming the missing ones (Glance's text).
pub fn formats_missing(disk_format: bool, container_format: bool) -> String {
    let missing: Vec<&str> = [
        ("disk_format", disk_format),
        ("container_format", container_format),
    ]
    .into_iter()
    .filter_map(|(k, m)| m.then_some(k))
    .collect();
    let noun = if missing.len() == 1 {
        "Property"
    } else {
        "Properties"
    };
    format!(
        "{noun} {} must be set prior to saving data.",
        missing.join(", ")
    )
}

/// 403 when the policy refuses `rule`.
pub fn not_allowed(rule: &str) -> String {
    format!("You are not authorized to complete {rule} action.")
}

/// 409 for a status move the image's status does not allow.
pub fn transition(from: ImageStatus, to: ImageStatus) -> String {
    format!("Image status transition from {from} to {to} is not allowed")
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
            assert_ne!(code.reason(), "Unknown", "{code:?}");
        }
    }

    #[test]
    fn reasons_render_glance_messages() {
        let id = "0b3a8c7e-1234-4321-abcd-0123456789ab";
        let table = [
            (Reason::Unauthenticated, 401, UNAUTHENTICATED.to_owned()),
            (
                Reason::NoSuchImage,
                404,
                format!("No image found with ID {id}"),
            ),
            (
                Reason::NotAllowed(Action::UploadImage),
                403,
                "You are not authorized to complete upload_image action.".into(),
            ),
            (
                Reason::Transition {
                    from: ImageStatus::Active,
                    to: ImageStatus::Saving,
                },
                409,
                "Image status transition from active to saving is not allowed".into(),
            ),
            (
                Reason::FormatsMissing {
                    disk_format: true,
                    container_format: true,
                },
                400,
                "Properties disk_format, container_format must be set prior to saving data.".into(),
            ),
            (
                Reason::FormatsMissing {
                    disk_format: false,
                    container_format: true,
                },
                400,
                "Property container_format must be set prior to saving data.".into(),
            ),
            (Reason::TooLarge, 413, TOO_LARGE.into()),
            (
                Reason::IdentityUnavailable,
                503,
                IDENTITY_UNAVAILABLE.into(),
            ),
            (
                Reason::Quarantined,
                503,
                format!(
                    "The data of image {id} failed verification and is quarantined; no intact copy is available."
                ),
            ),
        ];
        for (reason, status, message) in table {
            assert_eq!(reason.code().http_status(), status, "{reason:?}");
            assert_eq!(reason.message(&id), message, "{reason:?}");
        }
    }

    #[test]
    fn body_is_glance_shaped() {
        let b = body(404, "no \"such\" image");
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"error":{"code":404,"title":"Not Found","message":"no \"such\" image"}}"#
        );
    }
}
