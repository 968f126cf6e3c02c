//! Authentication of every API request (keystonemiddleware's place in Glance's pipeline).
//!
//! Runs the [`Authenticator`] on the request's credential headers and stores the resulting
//! [`Authenticated`] context for the [`crate::api::extract::Caller`] extractor. Version
//! discovery (`GET /`, `GET /versions`) needs no token, as in Glance's paste pipeline. Failures
//! answer with keystonemiddleware's texts from [`shared::error`] in Glance's JSON error body
//! ([`shared::error::body`], the data plane's too): 401 with
//! `WWW-Authenticate: Keystone uri="…"`, or 503 when Keystone cannot be asked.

use super::identity::{Authenticated, credentials};
use crate::api::error::{ErrorReport, error_response};
use crate::auth::{Authenticator, Error};
use crate::policy::Context;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// Authenticates the request, or answers 401/503.
pub async fn authenticate(
    State(auth): State<Authenticator>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if matches!(auth, Authenticator::Noauth) || path == "/" || path == "/versions" {
        if let Authenticator::Noauth = auth {
            let mut ctx = Context::from_credentials(&credentials(req.headers()));
            // trusted like every identity header in this mode
            ctx.service_roles = req
                .headers()
                .get_all("x-service-roles")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(crate::policy::role_list)
                .collect();
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
        Error::Invalid(_) => (StatusCode::UNAUTHORIZED, shared::error::UNAUTHENTICATED),
        Error::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            shared::error::IDENTITY_UNAVAILABLE,
        ),
    };
    let mut response = error_response(status, message);
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use shared::config::Config;

    async fn body(r: Response) -> Vec<u8> {
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn refusals_use_the_shared_texts_and_body() {
        let mut config = Config::default();
        crate::test_util::unreachable_keystone(&mut config);
        let auth = Authenticator::new(&config);

        let r = refusal(&auth, &Error::Invalid("expired".into()));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            config.keystone_authtoken.www_authenticate().as_str()
        );
        assert_eq!(
            body(r).await,
            shared::error::body(401, shared::error::UNAUTHENTICATED)
        );

        let r = refusal(&auth, &Error::Unavailable("refused".into()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            body(r).await,
            shared::error::body(503, shared::error::IDENTITY_UNAVAILABLE)
        );
    }
}
