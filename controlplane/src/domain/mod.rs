//! The image entity and Glance's rules for changing it, with no HTTP and no SQL.
//!
//! - [`Image`] is the entity every other layer converts to and from.
//! - [`status`] decides every status move: the next status and which fields it sets or
//!   clears ([`Move`]); the database only executes a move, conditional on the current status.
//! - [`property`] classifies property names (read-only, reserved, base, custom) and validates
//!   values the way Glance's image schema does.
//! - [`create`] turns a `POST /v2/images` body into a [`NewImage`].
//! - [`location`] holds where the data lives ([`Location`]: one per store copy) and the
//!   rules for removing copies.
//! - [`member`] holds image members (sharing) and their statuses.
//! - [`metadef`] holds the metadata definitions catalog (namespaces, objects, properties,
//!   tags, resource types): Glance's body checks and JSON.
//! - [`import`] holds the interoperable import's rules (body, preconditions, stores, the
//!   lock, progress properties); [`task`] the task record and its views.
//! - [`patch`] parses both JSON-patch media types and applies them to an [`Image`]
//!   (Glance's `_do_add`/`_do_replace`/`_do_remove`).
//!
//! Policy is *not* checked here: handlers call `policy` first, then `domain`, then `db`.

pub mod create;
pub mod image;
pub mod import;
pub mod location;
pub mod member;
pub mod metadef;
pub mod patch;
pub mod property;
pub mod status;
pub mod task;

pub use create::NewImage;
pub use image::Image;
pub use location::{Location, LocationStatus};
pub use member::{Member, MemberStatus};
pub use patch::{Change, Op, PatchMedia};
pub use status::{DataChange, Move, UploadedData};

/// Why a domain rule refused a request. `api::error` maps each variant to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a value is invalid (Glance's `Invalid`; 400).
    #[error("{0}")]
    Invalid(String),
    /// The property may not be written by clients (403).
    #[error("Attribute '{0}' is read-only.")]
    ReadOnly(String),
    /// The property name is reserved for Glance itself (403).
    #[error("Attribute '{0}' is reserved.")]
    Reserved(String),
    /// The change is not allowed in the image's current state (403).
    #[error("{0}")]
    Forbidden(String),
    /// Something the request names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the image's current properties (409).
    #[error("{0}")]
    Conflict(String),
    /// A property or tag quota would be exceeded (413).
    #[error("{0}")]
    LimitExceeded(String),
    /// The image is protected and cannot be deleted (403).
    #[error("Image {0} is protected and cannot be deleted.")]
    Protected(shared::image::ImageId),
    /// Data cannot be stored before both formats are set (400): which ones are missing.
    #[error("{}", shared::error::formats_missing(*disk_format, *container_format))]
    FormatsMissing {
        /// `disk_format` is not set.
        disk_format: bool,
        /// `container_format` is not set.
        container_format: bool,
    },
    /// The status transition is not in Glance's table.
    #[error("{}", shared::error::transition(*from, *to))]
    InvalidTransition {
        /// Current status.
        from: shared::image::ImageStatus,
        /// Requested status.
        to: shared::image::ImageStatus,
    },
}
