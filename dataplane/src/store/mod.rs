//! Image data stores. Shaped like glance_store's driver: add (stream in, get a location),
//! get (open a location for reading, with offset), delete. Today only the filesystem store
//! ([`fs::FsStore`]); S3, Swift and HTTP come later behind the same shape.

pub mod fs;

/// Store failures, classified so the caller can pick Glance's status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store is full (413).
    #[error("store full: {0}")]
    Full(std::io::Error),
    /// The store refused the write (503).
    #[error("store write denied: {0}")]
    Denied(std::io::Error),
    /// The location is not one this store serves.
    #[error("location {0:?} is not in this store")]
    ForeignLocation(String),
    /// The data at a location is missing.
    #[error("no data at location {0:?}")]
    Missing(String),
    /// Any other I/O failure.
    #[error("store I/O error: {0}")]
    Io(std::io::Error),
}

impl Error {
    /// Classifies an I/O error from a write path.
    pub fn from_write(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => Error::Full(e),
            Some(code) if code == rustix::io::Errno::DQUOT.raw_os_error() => Error::Full(e),
            Some(code)
                if code == rustix::io::Errno::ACCESS.raw_os_error()
                    || code == rustix::io::Errno::PERM.raw_os_error()
                    || code == rustix::io::Errno::ROFS.raw_os_error() =>
            {
                Error::Denied(e)
            }
            _ => Error::Io(e),
        }
    }

    /// The channel error code Glance answers with for this failure.
    pub fn code(&self) -> shared::error::ErrorCode {
        use shared::error::ErrorCode;
        match self {
            Error::Full(_) => ErrorCode::PayloadTooLarge,
            Error::Denied(_) => ErrorCode::ServiceUnavailable,
            Error::ForeignLocation(_) | Error::Missing(_) => ErrorCode::ServiceUnavailable,
            Error::Io(_) => ErrorCode::Internal,
        }
    }
}
