//! Authentication of every API request (keystonemiddleware's place in Glance's pipeline).
//!
//! Runs the [`Authenticator`] on the request's credential headers and stores the resulting
//! [`Authenticated`] context for the [`crate::api::extract::Caller`] extractor. Version
//! discovery (`GET /`, `GET /versions`) needs no token, as in Glance's paste pipeline. Failures
//! answer with keystonemiddleware's bodies: 401 with `WWW-Authenticate: Keystone uri="…"`, or 503
//! when Keystone cannot be asked.

use crate::api::error::{ErrorReport, error_body};
use crate::api::extract::credentials;
use crate::auth::{Authenticator, Error};
use crate::policy::Context;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The caller's context, as authenticated for this request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Context);

/// Authenticates the request, or answers 401/503.
pub async fn authenticate(
    State(auth): State<Authenticator>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if matches!(auth, Authenticator::Noauth) || path == "/" || path == "/versions" {
        if let Authenticator::Noauth = auth {
            let ctx = Context::from_credentials(&credentials(req.headers()));
            req.extensions_mut().insert(Authenticated(ctx));
        }
        return next.run(req).await;
    }
    match auth.context(&credentials(req.headers())).await {
        Ok(ctx) => {
            req.extensions_mut().insert(Authenticated(ctx));
            next.run(req).await
        }
        Err(e) => refusal(&auth, &e),
    }
}

/// The answer to a request whose credentials did not authenticate.
pub fn refusal(auth: &Authenticator, e: &Error) -> Response {
    let (status, message) = match e {
        Error::Invalid(_) => (
            StatusCode::UNAUTHORIZED,
            "The request you have made requires authentication.",
        ),
        Error::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The Keystone service is temporarily unavailable.",
        ),
    };
    let mut response = (status, Json(error_body(status, message))).into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Some(v) = auth
            .www_authenticate()
            .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response.extensions_mut().insert(ErrorReport {
        status,
        detail: e.to_string(),
    });
    response
}
