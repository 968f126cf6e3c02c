//! Length-prefixed frames.
//!
//! ```text
//! +----------------+----------------+----------------------------+
//! | len: u32 BE    | corr: u32 BE   | payload: postcard (len-4 B)|
//! +----------------+----------------+----------------------------+
//! ```
//! `len` counts the correlation id and the payload, not itself. Frames larger than
//! [`MAX_FRAME_BYTES`] are refused on both encode and decode, so a corrupt length can never
//! make a reader allocate without bound.

use serde::{Serialize, de::DeserializeOwned};

/// Largest accepted value of the `len` field.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// Bytes of the length prefix.
pub const HEADER_BYTES: usize = 4;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T> {
    /// Correlation id; a response echoes its request's.
    pub corr: u32,
    /// The message.
    pub body: T,
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length field exceeds [`MAX_FRAME_BYTES`] or is too short to hold a correlation id.
    #[error("frame length {0} out of range")]
    BadLength(usize),
    /// The payload is not a valid message.
    #[error("malformed frame payload: {0}")]
    Payload(#[from] postcard::Error),
}

/// Appends one encoded frame to `out`.
pub fn encode<T: Serialize>(corr: u32, body: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    let res = postcard::to_io(body, &mut *out);
    if let Err(e) = res {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - HEADER_BYTES;
    if len > MAX_FRAME_BYTES {
        out.truncate(start);
        return Err(FrameError::BadLength(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&corr.to_be_bytes());
    Ok(())
}

/// Tries to decode one frame from the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the frame and the number of bytes it
/// used.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(Frame<T>, usize)>, FrameError> {
    decode_borrowed(buf)
}

/// Like [`decode`], for a body that may borrow from `buf` (e.g. `Response<&str>`).
pub fn decode_borrowed<'a, T: serde::Deserialize<'a>>(
    buf: &'a [u8],
) -> Result<Option<(Frame<T>, usize)>, FrameError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    if buf.len() < HEADER_BYTES + len {
        return Ok(None);
    }
    let corr = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let body = postcard::from_bytes(&buf[8..HEADER_BYTES + len])?;
    Ok(Some((Frame { corr, body }, HEADER_BYTES + len)))
}

/// The validated `len` field of the frame at the front of `buf`, once 4 bytes are there.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(4..=MAX_FRAME_BYTES).contains(&len) {
        return Err(FrameError::BadLength(len));
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::messages::{Credentials, Request, Response};
    use crate::error::ErrorCode;
    use crate::image::{HashAlgo, ImageId};

    fn samples() -> Vec<Request> {
        let id = ImageId::new_random();
        vec![
            Request::Hello {
                min_version: 1,
                max_version: 1,
                pid: 42,
            },
            Request::AuthorizeUpload {
                request_id: "req-1".into(),
                image_id: id,
                credentials: Credentials {
                    roles: Some("admin".into()),
                    ..Default::default()
                },
                declared_size: Some(7),
                store: Some("fast".into()),
                stage: true,
            },
            Request::ImportFinished {
                job: 3,
                task_id: "t".into(),
                image_id: id,
                error: Some("no".into()),
                failed_stores: "a,b".into(),
            },
            Request::UploadComplete {
                request_id: "req-1".into(),
                image_id: id,
                size: 7,
                checksum: "abc".into(),
                os_hash_algo: HashAlgo::Sha512,
                os_hash_value: "def".into(),
                location: "file:///x".into(),
                store: "fast".into(),
                virtual_size: Some(1 << 30),
                block_size: 8 << 20,
                block_hashes: "0123456789abcdef".into(),
            },
            Request::BlockHashes { image_id: id },
            Request::RecordBlockHashes {
                image_id: id,
                block_size: 1 << 20,
                hashes: "0123456789abcdef".into(),
                checksum: "abc".into(),
            },
            Request::ClaimJobs {
                max: 16,
                lease_seconds: 300,
            },
            Request::JobFailed {
                id: 9,
                error: "store down".into(),
            },
            Request::UploadAborted {
                request_id: "r".into(),
                image_id: id,
                code: ErrorCode::Gone,
            },
        ]
    }

    #[test]
    fn round_trip_and_partial_input() {
        let msgs = samples();
        let mut buf = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            encode(i as u32, m, &mut buf).unwrap();
        }
        let mut at = 0;
        for (i, m) in msgs.iter().enumerate() {
            // every strict prefix of a frame asks for more bytes
            let (f, used): (Frame<Request>, usize) = decode(&buf[at..]).unwrap().unwrap();
            for cut in 0..used {
                assert!(decode::<Request>(&buf[at..at + cut]).unwrap().is_none());
            }
            assert_eq!(f.corr, i as u32);
            assert_eq!(&f.body, m);
            at += used;
        }
        assert_eq!(at, buf.len());
    }

    /// `Request<&str>`/`Response<&str>` and the owned forms are the same bytes on the wire,
    /// and a borrowed decode points into the buffer.
    #[test]
    fn borrowed_and_owned_forms_encode_alike() {
        let id = ImageId::new_random();
        let mut creds: Credentials<&str> = Credentials::default();
        creds.absorb_header("X-Auth-Token", "tok");
        creds.absorb_header("X-Roles", "reader");
        creds.absorb_header("Accept", "*/*");
        let borrowed = Request::AuthorizeDownload {
            request_id: "req-9",
            image_id: id,
            credentials: creds,
        };
        let mut owned_creds: Credentials = Credentials::default();
        owned_creds.absorb_header("x-auth-token", "tok");
        owned_creds.absorb_header("x-roles", "reader");
        let owned: Request = Request::AuthorizeDownload {
            request_id: "req-9".into(),
            image_id: id,
            credentials: owned_creds,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode(3, &borrowed, &mut a).unwrap();
        encode(3, &owned, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(decode::<Request>(&a).unwrap().unwrap().0.body, owned);

        let granted: Response = Response::DownloadGranted {
            locations: "fast file:///store/x".into(),
            size: 5,
            checksum: Some("abc".into()),
            os_hash_value: Some("def".into()),
        };
        let mut buf = Vec::new();
        encode(4, &granted, &mut buf).unwrap();
        let (f, used) = decode_borrowed::<Response<&str>>(&buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        match f.body {
            Response::DownloadGranted {
                locations: loc,
                size: 5,
                checksum: Some("abc"),
                os_hash_value: Some("def"),
            } => {
                assert_eq!(loc, "fast file:///store/x");
                let inside = buf.as_ptr_range();
                assert!(
                    inside.contains(&loc.as_ptr()),
                    "not borrowed from the frame"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_lengths_and_garbage() {
        assert!(matches!(
            decode::<Response>(&[0, 0, 0, 1]),
            Err(FrameError::BadLength(1))
        ));
        let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            decode::<Response>(&huge),
            Err(FrameError::BadLength(_))
        ));
        let garbage = [0, 0, 0, 6, 0, 0, 0, 1, 0xff, 0xff];
        assert!(matches!(
            decode::<Response>(&garbage),
            Err(FrameError::Payload(_))
        ));
    }
}
