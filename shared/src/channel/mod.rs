//! The channel between the data plane and the control plane.
//!
//! A Unix domain socket (`<run_dir>/channel.sock`, served by the control plane) carrying
//! length-prefixed frames ([`frame`]) whose payloads are [`messages::Request`] (data plane →
//! control plane) and [`messages::Response`] (back). Payloads are postcard-encoded serde values.
//!
//! Lifecycle of one connection:
//! 1. The data plane connects and sends [`messages::Request::Hello`] with the range of protocol
//!    versions it speaks ([`version`]).
//! 2. The control plane answers [`messages::Response::HelloAck`] with the version chosen, or
//!    `Denied(Reason::Protocol)` and closes if there is none in common.
//! 3. Strictly alternating request/response pairs follow; each frame carries a correlation id
//!    that the response echoes.
//!
//! Upload lease: an upload is authorised on one connection (`AuthorizeUpload`, image moves
//! `queued → saving`) and reported on the **same** connection (`UploadComplete` or
//! `UploadAborted`). If that connection closes while the lease is open (the data plane
//! crashed), the control plane puts the image back to `queued`. When the control plane itself
//! restarts, it resets every `saving` image to `queued` at start, and the data plane aborts
//! the upload whose connection broke. Either way no plane is left believing the other.

pub mod frame;
pub mod messages;
pub mod version;

pub use frame::{Frame, FrameError, MAX_FRAME_BYTES};
pub use messages::{CacheAction, Credentials, Job, Request, Response, Work};
