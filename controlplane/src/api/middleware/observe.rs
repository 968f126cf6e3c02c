//! The request span, the error log line and the API metrics.

use super::request_id::{self, RequestId};
use crate::api::ApiError;
use crate::api::error::ErrorReport;
use crate::app::App;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing::Instrument;

/// Route label when no route matched (bounded cardinality: never the raw path).
pub const UNMATCHED: &str = "unmatched";

/// Wraps one request: resolves the request id, runs the handler inside a
/// `request{method, route, request_id}` span, logs failures and records metrics.
pub async fn observe(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = route.as_deref().unwrap_or(UNMATCHED).to_owned();

    let (request_id, mut response) = match request_id::resolve(req.headers()) {
        Ok(id) => {
            req.extensions_mut().insert(RequestId(id.clone()));
            let span =
                tracing::info_span!("request", method = %method, route = %route, request_id = %id);
            let response = next.run(req).instrument(span.clone()).await;
            let _entered = span.enter();
            log_outcome(&response, started);
            (id, response)
        }
        Err(request_id::TooLong) => {
            let id = request_id::generate();
            let response = ApiError::RequestIdTooLong.into_response();
            let span =
                tracing::info_span!("request", method = %method, route = %route, request_id = %id);
            let _entered = span.enter();
            log_outcome(&response, started);
            (id, response)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(request_id::HEADER), v);
    }
    app.metrics.api_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn log_outcome(response: &Response, started: Instant) {
    let status = response.status();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    match response.extensions().get::<ErrorReport>() {
        Some(report) if status.is_server_error() => {
            tracing::error!(status = status.as_u16(), error = %report.detail, elapsed_ms, "request failed");
        }
        Some(report) => {
            tracing::debug!(status = status.as_u16(), error = %report.detail, elapsed_ms, "request refused");
        }
        None => tracing::debug!(status = status.as_u16(), elapsed_ms, "request done"),
    }
}
