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

/// The route label of a path no route matched (bounded cardinality: never the raw path): `unmatched:<family>` for the Glance APIs glint
/// does not serve (yet), so operators see which ones clients call, else `unmatched:other`. A
/// fixed list: the label stays bounded whatever clients send.
pub fn unmatched_route(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or("");
    let mut seg = path.trim_start_matches('/').split('/');
    let (a, b, c, d) = (seg.next(), seg.next(), seg.next(), seg.next());
    let v2 = a.is_some_and(|v| v == "v2" || (v.starts_with("v2.") && v.len() <= 5));
    match (v2, a, b, c, d) {
        (_, Some("v1"), ..) => "unmatched:/v1",
        (true, _, Some("images"), Some(_), Some("import")) => {
            "unmatched:/v2/images/{image_id}/import"
        }
        (true, _, Some("images"), Some(_), Some("stage")) => {
            "unmatched:/v2/images/{image_id}/stage"
        }
        (true, _, Some("images"), Some(_), Some("locations")) => {
            "unmatched:/v2/images/{image_id}/locations"
        }
        (true, _, Some("images"), ..) => "unmatched:/v2/images",
        (true, _, Some("tasks"), ..) => "unmatched:/v2/tasks",
        (true, _, Some("cache"), ..) => "unmatched:/v2/cache",
        (true, _, Some("metadefs"), ..) => "unmatched:/v2/metadefs",
        (true, _, Some("schemas"), ..) => "unmatched:/v2/schemas",
        (true, _, Some("info"), ..) => "unmatched:/v2/info",
        (true, _, Some("stores"), ..) => "unmatched:/v2/stores",
        _ => "unmatched:other",
    }
}

/// Wraps one request: resolves the request id, runs the handler inside a
/// `request{method, route, request_id}` span, logs failures and records metrics.
pub async fn observe(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = match route {
        Some(r) => r,
        None => unmatched_route(req.uri().path()).to_owned(),
    };

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

#[cfg(test)]
mod tests {
    use super::unmatched_route;

    #[test]
    fn unmatched_paths_fall_into_a_bounded_family() {
        for (path, want) in [
            (
                "/v2/images/abc/import",
                "unmatched:/v2/images/{image_id}/import",
            ),
            (
                "/v2.12/images/abc/stage",
                "unmatched:/v2/images/{image_id}/stage",
            ),
            (
                "/v2/images/abc/locations?x=1",
                "unmatched:/v2/images/{image_id}/locations",
            ),
            ("/v2/tasks", "unmatched:/v2/tasks"),
            ("/v2/tasks/1234", "unmatched:/v2/tasks"),
            ("/v2/cache/abc", "unmatched:/v2/cache"),
            ("/v1/images", "unmatched:/v1"),
            ("/v2/bogus/path", "unmatched:other"),
            ("/v2.9999/images", "unmatched:other"),
            ("/", "unmatched:other"),
            ("/favicon.ico", "unmatched:other"),
        ] {
            assert_eq!(unmatched_route(path), want, "{path}");
        }
    }
}
