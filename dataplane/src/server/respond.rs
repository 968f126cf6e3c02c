//! What every handler needs to refuse a request: a [`Refusal`] (status, message, whether the
//! connection may carry another request), built from a channel refusal's
//! [`Reason`](shared::error::Reason) or from the handler's own checks, and [`refuse`], which
//! writes it as Glance's JSON error and counts it; [`no_content`], the 204 both data routes
//! answer. Also the caller's [`credentials`], which every authorization sends.
//!
//! Messages come from the table in [`shared::error`], the one the control plane renders its
//! errors from, so a refusal reads the same on the data routes as on the metadata routes.

use super::tls::ClientStream;
use super::worker::Worker;
use crate::http::{Conn, RequestHead, error_response_with, response_head};
use crate::metrics::Route;
use shared::channel::{Credentials, Response};
use shared::error::Reason;
use std::borrow::Cow;

/// An answer that ends a request without its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What the client reads.
    pub message: Cow<'static, str>,
    /// Whether the connection may carry another request after it (false when part of the
    /// request's body is still unread, or the failure left the connection unusable).
    pub keep: bool,
    /// One more header (`Content-Range` of a 416).
    pub header: Option<(&'static str, String)>,
}

impl Refusal {
    /// A refusal with this status and message.
    pub fn new(status: u16, message: impl Into<Cow<'static, str>>, keep: bool) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            keep,
            header: None,
        }
    }

    /// The control plane's refusal of a request about `image_id`.
    pub fn denied(reason: Reason, image_id: &dyn std::fmt::Display, keep: bool) -> Refusal {
        Refusal::new(reason.code().http_status(), reason.message(image_id), keep)
    }

    /// With one more header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Refusal {
        self.header = Some((name, value));
        self
    }

    /// The control plane could not be reached over the channel (503).
    pub fn unavailable(asked: &'static str, e: &crate::control_link::Error, keep: bool) -> Refusal {
        tracing::warn!(error = %e, asked, "control plane unavailable");
        Refusal::new(503, shared::error::PLANE_UNAVAILABLE, keep)
    }

    /// The control plane answered outside the protocol (500; a bug on one side, so the
    /// connection is not reused).
    pub fn unexpected<S: std::fmt::Debug>(asked: &'static str, answer: &Response<S>) -> Refusal {
        tracing::error!(?answer, asked, "unexpected channel answer");
        Refusal::new(500, shared::error::INTERNAL, false)
    }

    /// [`Refusal::unavailable`] or [`Refusal::unexpected`], for a channel outcome that was not
    /// the answer asked for.
    pub fn from_channel<S: std::fmt::Debug>(
        asked: &'static str,
        outcome: Result<Response<S>, crate::control_link::Error>,
        keep: bool,
    ) -> Refusal {
        match outcome {
            Ok(answer) => Refusal::unexpected(asked, &answer),
            Err(e) => Refusal::unavailable(asked, &e, keep),
        }
    }
}

/// Counts an answer with `status` on `route` and remembers its status on the connection (for
/// the request's duration, recorded when it ends).
pub fn answered(conn: &mut Conn<ClientStream>, w: &Worker, route: Route, status: u16) {
    conn.status = status;
    w.metrics.request(route, status);
}

/// Answers `refusal` as a Glance-shaped JSON error and counts it; returns whether the
/// connection may be reused. A 401 carries `WWW-Authenticate` in keystone mode.
pub async fn refuse(
    conn: &mut Conn<ClientStream>,
    route: Route,
    refusal: Refusal,
    rid: &str,
    w: &Worker,
) -> bool {
    answered(conn, w, route, refusal.status);
    let mut extra: [(&str, &str); 2] = [("", ""); 2];
    let mut n = 0;
    if let (Some(v), 401) = (&w.settings.www_authenticate, refusal.status) {
        extra[n] = ("WWW-Authenticate", v.as_str());
        n += 1;
    }
    if let Some((name, value)) = &refusal.header {
        extra[n] = (name, value.as_str());
        n += 1;
    }
    let out = error_response_with(
        refusal.status,
        &refusal.message,
        rid,
        refusal.keep,
        &extra[..n],
    );
    let (res, _) = conn.write_all(out, w.settings.idle_timeout).await;
    refusal.keep && res.is_ok()
}

/// Answers 204 (an upload stored; a download of an image without data) and counts it;
/// returns whether the connection may be reused.
pub async fn no_content(
    conn: &mut Conn<ClientStream>,
    route: Route,
    rid: &str,
    keep: bool,
    w: &Worker,
) -> bool {
    answered(conn, w, route, 204);
    let h = response_head(
        204,
        "No Content",
        &[("x-openstack-request-id", rid)],
        None,
        keep,
    );
    conn.write_all(h, w.settings.idle_timeout).await.0.is_ok() && keep
}

/// Collects the caller's identity headers for the control plane (borrowed from the head).
pub fn credentials(head: &RequestHead) -> Credentials<&str> {
    let mut c = Credentials::default();
    for (n, v) in head.headers() {
        c.absorb_header(n, v);
    }
    c
}
