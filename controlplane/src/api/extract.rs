//! Our own extractors, so malformed input produces Glance-style errors (never axum's plain
//! text): [`GlanceJson`], [`PatchBody`], [`NoBody`], [`Caller`], [`HostHeader`],
//! [`ImagePath`] and [`ReqId`]. [`Caller`] and [`ReqId`] read what the middleware stored
//! ([`super::middleware`]); nothing here is imported back by it.

use super::ApiError;
use super::middleware::RequestId;
use super::middleware::identity::{Authenticated, credentials};
use crate::domain::PatchMedia;
use crate::policy::Context;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use serde_json::Value;
use shared::image::ImageId;

/// Reads the whole body within the configured limit (413 above it).
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("Request body is larger than the allowed maximum.".into())
        } else {
            ApiError::BadRequest(format!("Cannot read the request body: {rejection}"))
        }
    })
}

/// Parses a body the way Glance's `JSONRequestDeserializer` does: it must be present, be
/// valid JSON, and be an object or an array.
fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("Body expected in request.".into()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(v),
        Ok(_) => Err(ApiError::BadRequest(
            "Unexpected body type. Expected list/dict.".into(),
        )),
        Err(_) => Err(ApiError::BadRequest(
            "Malformed JSON in request body.".into(),
        )),
    }
}

/// A JSON body (object or array). The `Content-Type` is not checked, as in Glance.
#[derive(Debug, Clone)]
pub struct GlanceJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for GlanceJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(GlanceJson)
    }
}

/// A PATCH body: the media type is checked first (415 with `Accept-Patch`), then the JSON.
#[derive(Debug, Clone)]
pub struct PatchBody {
    /// Dialect chosen by `Content-Type`.
    pub media: PatchMedia,
    /// The parsed document.
    pub value: Value,
}

impl<S: Send + Sync> FromRequest<S> for PatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(PatchMedia::from_content_type)
            .ok_or(ApiError::PatchMediaType)?;
        let bytes = read_body(req, state).await?;
        Ok(PatchBody {
            media,
            value: parse_json(&bytes)?,
        })
    }
}

/// Rejects requests that carry a body (Glance's `body_reject` on GET/DELETE routes).
#[derive(Debug, Clone, Copy)]
pub struct NoBody;

/// Whether the headers announce a request body.
pub fn has_body(headers: &HeaderMap) -> bool {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    chunked || length > 0
}

impl<S: Send + Sync> FromRequestParts<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if has_body(&parts.headers) {
            return Err(ApiError::BadRequest(
                "This request does not accept a body.".into(),
            ));
        }
        Ok(NoBody)
    }
}

/// The caller's policy context, as the auth middleware established it (Keystone token or
/// noauth identity headers).
#[derive(Debug, Clone)]
pub struct Caller(pub Context);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(Authenticated(ctx)) = parts.extensions.get() {
            return Ok(Caller(ctx.clone()));
        }
        Ok(Caller(Context::from_credentials(&credentials(
            &parts.headers,
        ))))
    }
}

/// The `Host` header (the data plane forwards the client's), used to build absolute URLs.
#[derive(Debug, Clone)]
pub struct HostHeader(pub String);

/// Used when a request has no usable `Host` header.
pub const DEFAULT_HOST: &str = "127.0.0.1:9292";

impl<S: Send + Sync> FromRequestParts<S> for HostHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
            .unwrap_or(DEFAULT_HOST);
        Ok(HostHeader(host.to_owned()))
    }
}

/// The `{image_id}` path segment. A value that is not a UUID names no image: 404.
#[derive(Debug, Clone, Copy)]
pub struct ImagePath(pub ImageId);

/// Parses an image id from a path segment (404 when it cannot name an image).
pub fn image_id(raw: &str) -> Result<ImageId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(shared::error::no_such_image(&raw)))
}

impl<S: Send + Sync> FromRequestParts<S> for ImagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        #[derive(serde::Deserialize)]
        struct P {
            image_id: String,
        }
        let Path(p) = Path::<P>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("Invalid path: {e}")))?;
        image_id(&p.image_id).map(ImagePath)
    }
}

/// The request id the middleware resolved (`req-…`).
#[derive(Debug, Clone)]
pub struct ReqId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ReqId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ReqId(
            parts
                .extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_bodies() {
        assert!(parse_json(b"").is_err());
        assert!(parse_json(b"{").is_err());
        assert!(parse_json(b"5").is_err());
        assert!(parse_json(b"\"x\"").is_err());
        assert!(parse_json(b"{}").is_ok());
        assert!(parse_json(b"[]").is_ok());
    }

    #[test]
    fn body_detection() {
        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert!(has_body(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(has_body(&h));
    }
}
