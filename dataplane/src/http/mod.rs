//! HTTP/1.1 as the data plane speaks it, to its clients and to the servers it is a client
//! of (the control plane's API socket today; the stores' HTTP endpoints next):
//!
//! - [`head`]: request heads parsed in place, body framing with the smuggling rules, response
//!   heads read from an upstream;
//! - [`body`]: body state, the strict chunked decoder, the buffers bodies are read into;
//! - [`conn`]: [`Conn`], a buffered connection over any compio stream;
//! - [`response`]: response heads and Glance-shaped error responses.
//!
//! It is exactly the HTTP/1.1 glint needs, not a framework: no HTTP/2, no pipelining beyond
//! keeping bytes that arrive early for the next request.

pub mod body;
pub mod conn;
pub mod head;
pub mod response;

pub use body::{BodyBuf, BodyError, BodyState, ChunkedDecoder};
pub use conn::Conn;
pub use head::{
    Framing, HOP_BY_HOP, HeadError, RequestHead, ResponseMeta, end_forwarded_head, parse_request,
    parse_request_into, parse_response, request_framing,
};
pub use response::{
    error_response, error_response_with, reason, response_head, response_head_into,
};
